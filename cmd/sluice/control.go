package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/agent/localapi"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/control/controlapi"
)

// controlPattern is where the local API serves the control API.
const controlPattern = "/v1/control/"

// edgeControl is the command arbiter of an edge and what serves it.
type edgeControl struct {
	arbiter *control.Arbiter // nil without a control section
	dl      *mqtt.Downlink
	log     *slog.Logger
}

// commands is the arbiter for the pipelines' components (nil interface
// without one).
func (c *edgeControl) commands() control.Submitter {
	if c.arbiter == nil {
		return nil
	}
	return c.arbiter
}

// routes are what the local API serves for the arbiter.
func (c *edgeControl) routes() []localapi.Route {
	if c.arbiter == nil {
		return nil
	}
	return []localapi.Route{{Pattern: controlPattern, Handler: controlapi.Handler(c.arbiter, nil, c.log)}}
}

// stop closes the arbiter (its log) and the downlink.
func (c *edgeControl) stop() {
	if c.arbiter == nil {
		return
	}
	if err := c.arbiter.Close(); err != nil {
		c.log.Error("control: closing the log", "err", err)
	}
	_ = c.dl.Close()
}

// startControl opens the command arbiter of the edge configuration's
// control section (docs/control.md) in <data_dir>/control, with the EnOS
// MQTT downlink to the configured broker as the one transport of every
// command: the control API of the local API and the pipelines' command
// sinks submit to it. Without a control section it returns an empty
// edgeControl.
func startControl(cfg *agent.Config, log *slog.Logger) (*edgeControl, error) {
	cc := cfg.Control
	if cc == nil {
		return &edgeControl{log: log}, nil
	}
	late := &control.LateTransport{}
	a, err := control.Open(control.Options{Dir: cfg.ControlDir(), Transport: late, Timeout: cc.Timeout,
		MaxExpiry: cc.MaxExpiry, Classes: cc.Classes, OriginClasses: cc.Origins, NoSync: cc.NoSync, Log: log,
		OnTransition: func(tr command.Transition) {
			switch tr.To {
			case command.Rejected, command.Failed, command.Timeout, command.Expired:
				log.Warn("control: command "+string(tr.To), "id", tr.ID, "asset", tr.Asset, "origin", tr.Origin, "reason", tr.Reason)
			}
		}})
	if errors.Is(err, control.ErrLocked) {
		return nil, fmt.Errorf("another engine runs on %s: %w", cfg.DataDir, err)
	}
	if err != nil {
		return nil, err
	}
	dl, err := mqtt.NewDownlink(mqtt.DownlinkOptions{Tracker: a.Tracker(), Log: log, Client: mqtt.ClientOptions{
		URLs: []string{cc.BrokerURL}, ClientID: cc.ClientID, Username: cc.Username, Password: cc.Password}})
	if err != nil {
		a.Close()
		return nil, err
	}
	// The downlink connects when the first command is due, and
	// reconnects by itself; commands wait in their queues meanwhile.
	late.Set(dl)
	log.Info("control: commands go through the arbiter", "dir", cfg.ControlDir(), "broker", cc.BrokerURL)
	return &edgeControl{arbiter: a, dl: dl, log: log}, nil
}
