package uplink

import (
	"context"
	"fmt"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/hub/hubtest"
	"github.com/sluice-edge/sluice/engine/hub/protocol"
)

// TestForgedMessageIDsSilenceNothing: another edge, publishing on its own
// subjects only (as its NATS permissions allow), sends messages whose
// Nats-Msg-Id is this edge's next message ids. JetStream drops a message
// whose id it received within the duplicate window, on any subject of
// the stream: with the ids alone as Nats-Msg-Id, this edge's reports and
// heartbeat were acknowledged as duplicates and never reached the hub.
func TestForgedMessageIDsSilenceNothing(t *testing.T) {
	srv := enginetest.NewNATSServer(t)
	srv.Start()
	js := connect(t, srv.URL())
	createEdgeStream(t, js)
	ctx := context.Background()
	for _, stream := range []string{protocol.ReportStream, protocol.HeartbeatStream, protocol.ControlStream} {
		for seq := 1; seq <= 20; seq++ {
			m := natsgo.NewMsg("sluice.evil." + map[string]string{protocol.ReportStream: "reports",
				protocol.HeartbeatStream: "heartbeat", protocol.ControlStream: "control"}[stream])
			m.Header.Set(natsgo.MsgIdHdr, fmt.Sprintf("%s/%s/%d", testEdge, stream, seq))
			m.Data = []byte("{}")
			if _, err := js.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	u := open(t, Options{JS: js, Dir: t.TempDir()})
	rsub, hsub := subjects(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	reps := []agent.Report{
		{Time: now, Bundle: "windfarm", Version: 7, Outcome: agent.Applied},
		{Time: now.Add(time.Second), Bundle: "windfarm", Version: 8, Outcome: agent.Applied},
	}
	for _, r := range reps {
		if err := u.Report(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.Heartbeat(Heartbeat{Time: now, Bundle: "windfarm", Version: 8, Software: "v1"}); err != nil {
		t.Fatal(err)
	}
	rows := hubtest.EdgeRows(t, js, rsub, 2)
	checkReport(t, rows[0], reps[0], false)
	checkReport(t, rows[1], reps[1], false)
	hubtest.EdgeRows(t, js, hsub, 1)
}
