package mqtt

import (
	"testing"

	"github.com/sluice-edge/sluice/engine"
)

// TestSharedSubscription runs two sources in one share group: the broker
// splits the messages between them, each delivered once.
func TestSharedSubscription(t *testing.T) {
	for _, b := range brokers(t) {
		for _, version := range []string{"5", "3.1.1"} {
			t.Run(b.name+"/v"+version, func(t *testing.T) {
				sfx := suffix()
				topic := "shared/" + sfx
				var cs [2]*collector
				for i := range cs {
					cfg := seqSource(b.url, version, "src-"+sfx+itoa(i), topic, "clean_session: true\nshare_group: g"+sfx+"\n")
					cs[i] = newCollector()
					start(t, buildSource(t, cfg, engine.BuildContext{}), cs[i])
				}
				pub := newPublisher(t, b.url, 5)
				const n = 40
				for i := range n {
					pub.publish(topic, seqPayload(i))
				}
				seen := map[int]int{}
				for total := 0; total < n; {
					select {
					case <-cs[0].changed:
					case <-cs[1].changed:
					}
					total = len(cs[0].snapshot()) + len(cs[1].snapshot())
				}
				for _, c := range cs {
					rows := c.snapshot()
					if len(rows) == 0 {
						t.Errorf("a member of the group got nothing")
					}
					for _, s := range seqs(toAny(rows), 1) {
						seen[s]++
					}
				}
				for i := range n {
					if seen[i] != 1 {
						t.Errorf("message %d delivered %d times", i, seen[i])
					}
				}
			})
		}
	}
}

func itoa(i int) string { return string(rune('0' + i)) }
