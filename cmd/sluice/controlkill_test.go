package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/control/controlclient"
	"github.com/sluice-edge/sluice/engine/enginetest"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
	"github.com/sluice-edge/sluice/pipelines/drilltest"
)

// slowDevices are EnOS devices and devices on a generic JSON command
// topic, on the shared Mosquitto: they count every command id they
// receive and answer with success, at once or, while holding, when
// released.
type slowDevices struct {
	cl   paho.Client
	mu   sync.Mutex
	seen map[string]int
	hold bool
	held []paho.Message
}

func newSlowDevices(t *testing.T, id, enosFilter, jsonFilter string) *slowDevices {
	t.Helper()
	d := &slowDevices{cl: drilltest.Client(t, id), seen: map[string]int{}}
	for _, f := range []string{enosFilter, jsonFilter} {
		if tok := d.cl.Subscribe(f, 1, func(_ paho.Client, m paho.Message) { d.receive(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	return d
}

func (d *slowDevices) receive(m paho.Message) {
	var body struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(m.Payload(), &body) != nil || body.ID == "" {
		return
	}
	d.mu.Lock()
	d.seen[body.ID]++
	hold := d.hold
	if hold {
		d.held = append(d.held, m)
	}
	d.mu.Unlock()
	if !hold {
		d.answer(m)
	}
}

// answer replies with success: EnOS on the topic + "_reply", the JSON
// topic on topic + "/reply".
func (d *slowDevices) answer(m paho.Message) {
	var body struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(m.Payload(), &body)
	topic, payload := m.Topic()+"/reply", fmt.Sprintf(`{"id":%q,"code":200}`, body.ID)
	if strings.HasPrefix(m.Topic(), "/sys/") {
		topic, payload = m.Topic()+"_reply", fmt.Sprintf(`{"id":%q,"code":200,"data":{}}`, body.ID)
	}
	d.cl.Publish(topic, 1, false, payload).WaitTimeout(10 * time.Second)
}

func (d *slowDevices) holdReplies() {
	d.mu.Lock()
	d.hold = true
	d.mu.Unlock()
}

// release answers the commands held and answers the next ones at once.
func (d *slowDevices) release() {
	d.mu.Lock()
	held := d.held
	d.hold, d.held = false, nil
	d.mu.Unlock()
	for _, m := range held {
		d.answer(m)
	}
}

func (d *slowDevices) counts() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int, len(d.seen))
	for k, v := range d.seen {
		out[k] = v
	}
	return out
}

// engineChild is `sluice run --config` in a child process.
type engineChild struct {
	cmd    *exec.Cmd
	stderr *enginetest.LogBuffer
	exited chan error
}

func startEngineChild(t *testing.T, config string) *engineChild {
	t.Helper()
	arg, _ := json.Marshal(crashChild{Args: []string{"run", "--config", config, "--log-format", "json"}, Step: "none"})
	c := &engineChild{cmd: exec.Command(os.Args[0], "-test.run=^$"), stderr: &enginetest.LogBuffer{}, exited: make(chan error, 1)}
	c.cmd.Env = append(os.Environ(), crashChildEnv+"="+string(arg))
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() { _ = c.cmd.Process.Kill() })
	return c
}

// controlClient waits for the child's control API (the local API the
// child records in edge.json) to answer.
func (c *engineChild) controlClient(t *testing.T, data string) *controlclient.Client {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-c.exited:
			t.Fatalf("the engine exited: %v\n%s", err, c.stderr.String())
		default:
		}
		raw, err := os.ReadFile(filepath.Join(data, "agent", "edge.json"))
		var rec agent.EdgeRecord
		if err == nil && json.Unmarshal(raw, &rec) == nil && rec.Listen != "" {
			if token, err := agent.ReadToken(filepath.Join(data, "agent", "api.token")); err == nil {
				cl := controlclient.New("http://"+rec.Listen, token, nil)
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := cl.Leases(ctx)
				cancel()
				if err == nil {
					return cl
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control API did not answer\n%s", c.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestControlKill9: an engine (`sluice run --config` with a control
// section) is killed with SIGKILL while commands are in flight to EnOS
// devices and to devices on a generic JSON command topic, each device
// holding its reply to the command it has, with more commands queued
// behind it. After a restart every record is there with a final or
// resumable status; the devices' replies, sent while the engine was down,
// reach the restarted engine (its downlinks' sessions kept them) and ack
// the commands sent before the kill; the queued commands are sent then;
// and no device received any command twice.
func TestControlKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test")
	}
	sfx := outboundtest.Suffix()
	pk, root := "pkk"+sfx, "kplant"+sfx
	dev := newSlowDevices(t, "kdev-"+sfx, "/sys/"+pk+"/+/thing/service/measurepoint/set", root+"/+/cmd")

	e := newEdgeSetup(t)
	e.appendConfig(t, fmt.Sprintf("control:\n  broker: tcp://%s\n  client_id: kctl-%s\n  timeout: 5m\n  json_devices:\n    - {command_topic: %q, assets: [P1, P2]}\n",
		drilltest.Broker, sfx, root+"/{asset}/cmd"))

	child := startEngineChild(t, e.config)
	c := child.controlClient(t, e.data)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	targets := []struct{ product, asset string }{{pk, "T1"}, {pk, "T2"}, {"", "P1"}, {"", "P2"}}
	submit := func(product, asset, point string, v float64) control.Record {
		t.Helper()
		r, err := c.Submit(ctx, control.Command{Product: product, Asset: asset, Origin: "cloud", Inputs: map[string]any{point: v}})
		if err != nil {
			t.Fatalf("submit %s.%s: %s %v", asset, point, r.Status, err)
		}
		return r
	}
	waitFinal := func(c *controlclient.Client, id string) control.Record {
		t.Helper()
		for {
			r, err := c.Wait(ctx, id)
			if err != nil {
				t.Fatalf("wait %s: %v", id, err)
			}
			if r.Status.Final() {
				return r
			}
		}
	}

	// The devices answer at once.
	var ids, inFlight []string
	for _, tg := range targets {
		r := submit(tg.product, tg.asset, "p0", 1)
		if got := waitFinal(c, r.ID); got.Status != command.Acked {
			t.Fatalf("%s: %s %q", tg.asset, got.Status, got.Reason)
		}
		ids = append(ids, r.ID)
	}
	// The devices hold their replies: one command per device is sent,
	// two more wait behind it.
	dev.holdReplies()
	for i := 1; i <= 3; i++ {
		for _, tg := range targets {
			r := submit(tg.product, tg.asset, fmt.Sprintf("p%d", i), float64(i))
			ids = append(ids, r.ID)
			if i == 1 {
				inFlight = append(inFlight, r.ID)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(dev.counts()) < len(targets)*2 {
		if time.Now().After(deadline) {
			t.Fatalf("the devices received %v", dev.counts())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, id := range inFlight {
		if r, err := c.Get(ctx, id); err != nil || r.Status != command.Sent {
			t.Fatalf("%s before the kill: %s %v", id, r.Status, err)
		}
	}

	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := <-child.exited; !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the engine ended with %v, not SIGKILL\n%s", err, child.stderr.String())
	}
	// The devices answer while the engine is down.
	dev.release()

	child = startEngineChild(t, e.config)
	c = child.controlClient(t, e.data)
	for _, id := range ids {
		r, err := c.Get(ctx, id)
		if err != nil {
			t.Fatalf("%s after the restart: %v", id, err)
		}
		switch r.Status {
		case command.Acked, command.Sent, command.Queued:
		default:
			t.Errorf("%s after the restart: %s %q, want acked, sent or queued", id, r.Status, r.Reason)
		}
	}
	for _, id := range ids {
		if got := waitFinal(c, id); got.Status != command.Acked {
			t.Errorf("%s (%s): %s %q", id, got.Asset, got.Status, got.Reason)
		}
	}
	for _, id := range inFlight {
		audit, err := c.Audit(ctx, control.Filter{ID: id})
		if err != nil || !strings.Contains(fmt.Sprint(audit), "found sent after a restart") {
			t.Errorf("audit of %s: %v %v", id, audit, err)
		}
	}
	seen := dev.counts()
	if len(seen) != len(ids) {
		t.Errorf("the devices received %d commands, want %d: %v", len(seen), len(ids), seen)
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("command %s received %d times", id, seen[id])
		}
	}
	if err := child.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-child.exited; err != nil {
		t.Errorf("stop: %v\n%s", err, child.stderr.String())
	}
}
