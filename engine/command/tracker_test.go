package command_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-edge/sluice/engine/command"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// op is one step applied to a tracker holding one command "c".
type op struct {
	do      string // submit, sent, reply, fail, reject, advance
	code    int
	reason  string
	advance time.Duration
	err     error // the error the step must return (errors.Is)
}

func TestTransitions(t *testing.T) {
	cases := []struct {
		name   string
		expiry time.Duration // from t0; 0 is none
		ops    []op
		want   command.Status
		path   []command.Status
		code   int
	}{
		{"acked", 0, []op{{do: "sent"}, {do: "advance", advance: 5 * time.Second}, {do: "reply", code: 200}},
			command.Acked, []command.Status{command.Accepted, command.Sent, command.Acked}, 200},
		{"failed by the device", 0, []op{{do: "sent"}, {do: "reply", code: 500, reason: "overheated"}},
			command.Failed, []command.Status{command.Accepted, command.Sent, command.Failed}, 500},
		{"not sent", 0, []op{{do: "fail", reason: "broker down"}},
			command.Failed, []command.Status{command.Accepted, command.Failed}, 0},
		{"rejected", 0, []op{{do: "reject", reason: "lower priority"}, {do: "sent", err: command.ErrFinal}},
			command.Rejected, []command.Status{command.Accepted, command.Rejected}, 0},
		{"timeout", 0, []op{{do: "sent"}, {do: "advance", advance: 9 * time.Second}, {do: "advance", advance: time.Second}},
			command.Timeout, []command.Status{command.Accepted, command.Sent, command.Timeout}, 0},
		{"late reply is audited only", 0, []op{{do: "sent"}, {do: "advance", advance: 10 * time.Second}, {do: "reply", code: 200, err: command.ErrFinal}},
			command.Timeout, []command.Status{command.Accepted, command.Sent, command.Timeout, command.Timeout}, 0},
		{"reply before sent is confirmed", 0, []op{{do: "reply", code: 200}, {do: "sent", err: command.ErrFinal}},
			command.Acked, []command.Status{command.Accepted, command.Sent, command.Acked}, 200},
		{"expires before sending", 3 * time.Second, []op{{do: "advance", advance: 3 * time.Second}, {do: "sent", err: command.ErrFinal}},
			command.Expired, []command.Status{command.Accepted, command.Expired}, 0},
		{"sent before expiry", 3 * time.Second, []op{{do: "sent"}, {do: "advance", advance: 5 * time.Second}, {do: "reply", code: 200}},
			command.Acked, []command.Status{command.Accepted, command.Sent, command.Acked}, 200},
		{"expired on submit", -time.Second, nil,
			command.Expired, []command.Status{command.Accepted, command.Expired}, 0},
		{"queued then expired", 3 * time.Second, []op{{do: "queue"}, {do: "advance", advance: 3 * time.Second}, {do: "sent", err: command.ErrFinal}},
			command.Expired, []command.Status{command.Accepted, command.Queued, command.Expired}, 0},
		{"queued then sent", 3 * time.Second, []op{{do: "queue"}, {do: "sent"}, {do: "reply", code: 200}},
			command.Acked, []command.Status{command.Accepted, command.Queued, command.Sent, command.Acked}, 200},
		{"superseded", 0, []op{{do: "queue"}, {do: "supersede"}, {do: "sent", err: command.ErrFinal}},
			command.Superseded, []command.Status{command.Accepted, command.Queued, command.Superseded}, 0},
		{"a sent command is not superseded", 0, []op{{do: "sent"}, {do: "supersede", err: errAny}, {do: "reply", code: 200}},
			command.Acked, []command.Status{command.Accepted, command.Sent, command.Acked}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := command.NewManualClock(t0)
			var seen []command.Transition
			tr := command.New(command.Options{Clock: clock, Timeout: 10 * time.Second,
				OnTransition: func(x command.Transition) { seen = append(seen, x) }})
			defer tr.Close()
			c := command.Command{ID: "c", Product: "pk", Asset: "T1", Service: command.SetPoints, Inputs: map[string]any{"p": 1.0}}
			target := c.Target()
			if tc.expiry != 0 {
				c.Expiry = t0.Add(tc.expiry)
			}
			_, err := tr.Submit(c)
			if tc.expiry < 0 {
				if !errors.Is(err, command.ErrExpired) {
					t.Fatalf("Submit: %v, want ErrExpired", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for i, o := range tc.ops {
				var err error
				switch o.do {
				case "sent":
					_, err = tr.Sent("c")
				case "reply":
					_, err = tr.Reply("c", target, o.code, o.reason, []byte(`{"ok":true}`))
				case "fail":
					_, err = tr.Fail("c", o.reason)
				case "reject":
					_, err = tr.Reject("c", o.reason)
				case "queue":
					_, err = tr.Queue("c", "")
				case "supersede":
					_, err = tr.Supersede("c", "superseded by d")
				case "advance":
					clock.Advance(o.advance)
				}
				if o.err == nil && err != nil || o.err != nil && o.err != errAny && !errors.Is(err, o.err) || o.err == errAny && err == nil {
					t.Fatalf("step %d (%s): error %v, want %v", i, o.do, err, o.err)
				}
			}
			got, ok := tr.Get("c")
			if !ok {
				t.Fatal("command forgotten")
			}
			if got.Status != tc.want || got.Code != tc.code {
				t.Errorf("status %s code %d, want %s code %d", got.Status, got.Code, tc.want, tc.code)
			}
			if got.Status.Final() && got.Done.IsZero() {
				t.Error("a final command has no Done time")
			}
			var path []command.Status
			for _, x := range tr.Audit("c") {
				path = append(path, x.To)
			}
			if !slices.Equal(path, tc.path) {
				t.Errorf("audit %v, want %v", path, tc.path)
			}
			if len(seen) != len(tc.path) {
				t.Errorf("OnTransition saw %d transitions, want %d", len(seen), len(tc.path))
			}
			if clock.Pending() != 0 && got.Status.Final() {
				t.Errorf("%d timers left after a final state", clock.Pending())
			}
		})
	}
}

// errAny stands for any error in a step.
var errAny = errors.New("any error")

func TestTimestampsFollowTheClock(t *testing.T) {
	clock := command.NewManualClock(t0)
	tr := command.New(command.Options{Clock: clock})
	defer tr.Close()
	c, _ := tr.Submit(command.Command{Asset: "T1", Service: "reboot"})
	clock.Advance(time.Second)
	tr.Sent(c.ID)
	clock.Advance(2 * time.Second)
	got, _ := tr.Reply(c.ID, c.Target(), 200, "", nil)
	if !got.Created.Equal(t0) || !got.Sent.Equal(t0.Add(time.Second)) || !got.Done.Equal(t0.Add(3*time.Second)) {
		t.Errorf("created %v sent %v done %v", got.Created, got.Sent, got.Done)
	}
	if got.Timeout != 30*time.Second {
		t.Errorf("default timeout %v, want 30s", got.Timeout)
	}
}

func TestSubmitChecks(t *testing.T) {
	tr := command.New(command.Options{Clock: command.NewManualClock(t0)})
	defer tr.Close()
	a, err := tr.Submit(command.Command{Asset: "T1", Service: "x"})
	if err != nil || a.ID == "" || a.Status != command.Accepted {
		t.Fatalf("Submit: %+v, %v", a, err)
	}
	b, _ := tr.Submit(command.Command{Asset: "T1", Service: "x"})
	if a.ID == b.ID {
		t.Error("generated ids repeat")
	}
	if _, err := tr.Submit(command.Command{ID: a.ID}); !errors.Is(err, command.ErrDuplicate) {
		t.Errorf("duplicate id: %v", err)
	}
	if _, err := tr.Sent("nope"); !errors.Is(err, command.ErrUnknown) {
		t.Errorf("unknown id: %v", err)
	}
	inputs := map[string]any{"p": 1}
	c, _ := tr.Submit(command.Command{Asset: "T1", Service: "x", Inputs: inputs})
	inputs["p"] = 2
	if got, _ := tr.Get(c.ID); got.Inputs["p"] != 1 {
		t.Error("the tracker shares the caller's inputs map")
	}
	if got := tr.List(func(c *command.Command) bool { return c.Status == command.Accepted }); len(got) != 3 || got[0].ID != a.ID {
		t.Errorf("List: %d commands, first %v", len(got), got)
	}
}

func TestRetainAndAuditSize(t *testing.T) {
	tr := command.New(command.Options{Clock: command.NewManualClock(t0), Retain: 2, AuditSize: 5})
	defer tr.Close()
	var ids []string
	for range 4 {
		c, _ := tr.Submit(command.Command{Asset: "T1", Service: "x"})
		tr.Fail(c.ID, "no")
		ids = append(ids, c.ID)
	}
	if _, ok := tr.Get(ids[0]); ok {
		t.Error("the oldest final command is still held")
	}
	if _, ok := tr.Get(ids[3]); !ok {
		t.Error("the newest final command is gone")
	}
	audit := tr.Audit("")
	if len(audit) != 5 || audit[4].ID != ids[3] || audit[4].To != command.Failed {
		t.Errorf("audit %+v", audit)
	}
	for i := 1; i < len(audit); i++ {
		if audit[i].Seq != audit[i-1].Seq+1 {
			t.Errorf("audit out of order: %+v", audit)
		}
	}
}

func TestWait(t *testing.T) {
	tr := command.New(command.Options{Clock: command.NewManualClock(t0)})
	defer tr.Close()
	c, _ := tr.Submit(command.Command{Asset: "T1", Service: "x"})
	tr.Sent(c.ID)
	var wg sync.WaitGroup
	var got command.Command
	wg.Go(func() { got, _ = tr.Wait(context.Background(), c.ID) })
	tr.Reply(c.ID, c.Target(), 200, "done", nil)
	wg.Wait()
	if got.Status != command.Acked || got.Reason != "done" {
		t.Errorf("Wait returned %+v", got)
	}
	d, _ := tr.Submit(command.Command{Asset: "T1", Service: "x"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := tr.Wait(ctx, d.ID); !errors.Is(err, context.Canceled) || got.Status != command.Accepted {
		t.Errorf("Wait on a cancelled context: %+v, %v", got, err)
	}
}

func TestSystemClockTimeout(t *testing.T) {
	tr := command.New(command.Options{})
	defer tr.Close()
	c, _ := tr.Submit(command.Command{Asset: "T1", Service: "x", Timeout: time.Millisecond})
	tr.Sent(c.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := tr.Wait(ctx, c.ID)
	if err != nil || got.Status != command.Timeout {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestManualClockOrder(t *testing.T) {
	clock := command.NewManualClock(t0)
	var got []int
	clock.AfterFunc(3*time.Second, func() { got = append(got, 3) })
	clock.AfterFunc(time.Second, func() { got = append(got, 1) })
	stop := clock.AfterFunc(2*time.Second, func() { got = append(got, 2) })
	clock.AfterFunc(time.Second, func() {
		got = append(got, 10)
		clock.AfterFunc(0, func() { got = append(got, 11) }) // due at once
	})
	if !stop.Stop() || stop.Stop() {
		t.Error("Stop reports wrongly")
	}
	clock.Advance(5 * time.Second)
	if want := []int{1, 10, 11, 3}; !slices.Equal(got, want) {
		t.Errorf("ran %v, want %v", got, want)
	}
	if !clock.Now().Equal(t0.Add(5 * time.Second)) {
		t.Errorf("now %v", clock.Now())
	}
}

// TestReplyOnlyFromTheTarget: a reply counts only when it comes from the
// device and service the command was sent to; others change nothing and
// are counted.
func TestReplyOnlyFromTheTarget(t *testing.T) {
	cases := []struct {
		name string
		id   string
		from command.Target
		err  error
		want command.Status
	}{
		{"the target", "c", command.Target{Product: "pk", Asset: "T1", Service: "reboot"}, nil, command.Acked},
		{"another device", "c", command.Target{Product: "pk", Asset: "T2", Service: "reboot"}, command.ErrMisdirected, command.Sent},
		{"another product", "c", command.Target{Product: "pk2", Asset: "T1", Service: "reboot"}, command.ErrMisdirected, command.Sent},
		{"another service", "c", command.Target{Product: "pk", Asset: "T1", Service: command.SetPoints}, command.ErrMisdirected, command.Sent},
		{"no device", "c", command.Target{}, command.ErrMisdirected, command.Sent},
		{"unknown command", "nope", command.Target{Product: "pk", Asset: "T1", Service: "reboot"}, command.ErrUnknown, command.Sent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := command.New(command.Options{Clock: command.NewManualClock(t0)})
			defer tr.Close()
			c, _ := tr.Submit(command.Command{ID: "c", Product: "pk", Asset: "T1", Service: "reboot"})
			if _, err := tr.Sent(c.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := tr.Reply(tc.id, tc.from, 200, "", nil); !errors.Is(err, tc.err) {
				t.Fatalf("Reply: %v, want %v", err, tc.err)
			}
			got, _ := tr.Get("c")
			if got.Status != tc.want {
				t.Errorf("status %s, want %s", got.Status, tc.want)
			}
			st := tr.ReplyStats()
			if wantMis := tc.err == command.ErrMisdirected; (st.Misdirected == 1) != wantMis || (st.Unknown == 1) != (tc.err == command.ErrUnknown) {
				t.Errorf("reply stats %+v", st)
			}
			if tc.err == command.ErrMisdirected {
				audit := tr.Audit("c")
				if last := audit[len(audit)-1]; last.From != command.Sent || last.To != command.Sent || last.Reason == "" {
					t.Errorf("a misdirected reply is not audited: %+v", last)
				}
			}
		})
	}
}

func TestRestore(t *testing.T) {
	clock := command.NewManualClock(t0)
	tr := command.New(command.Options{Clock: clock, Timeout: 10 * time.Second})
	defer tr.Close()
	audit := []command.Transition{{Seq: 7, ID: "sent", To: command.Sent}}
	cmds := []command.Command{
		{ID: "done", Asset: "T1", Status: command.Acked, Version: 3},
		{ID: "queued", Asset: "T1", Status: command.Queued, Expiry: t0.Add(time.Minute), Version: 4},
		{ID: "stale", Asset: "T1", Status: command.Queued, Expiry: t0, Version: 5},
		{ID: "sent", Asset: "T1", Status: command.Sent, Sent: t0.Add(-4 * time.Second), Timeout: 10 * time.Second, Version: 7},
		{ID: "late", Asset: "T1", Status: command.Sent, Sent: t0.Add(-time.Hour), Version: 6},
	}
	if err := tr.Restore(cmds, audit); err != nil {
		t.Fatal(err)
	}
	want := map[string]command.Status{"done": command.Acked, "queued": command.Queued, "stale": command.Expired, "sent": command.Sent, "late": command.Timeout}
	for id, st := range want {
		if got, _ := tr.Get(id); got.Status != st {
			t.Errorf("%s: %s, want %s", id, got.Status, st)
		}
	}
	// The sent one has the rest of its timeout; the queued one expires.
	clock.Advance(6 * time.Second)
	if got, _ := tr.Get("sent"); got.Status != command.Timeout {
		t.Errorf("sent after its timeout: %s", got.Status)
	}
	clock.Advance(time.Minute)
	if got, _ := tr.Get("queued"); got.Status != command.Expired {
		t.Errorf("queued after its expiry: %s", got.Status)
	}
	// Sequence numbers go on after the restored ones.
	if a := tr.Audit(""); a[0].Seq != 7 || a[1].Seq <= 7 {
		t.Errorf("audit %v", a)
	}
	if err := tr.Restore([]command.Command{{ID: "done"}}, nil); !errors.Is(err, command.ErrDuplicate) {
		t.Errorf("restoring a held id: %v", err)
	}
}
