package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluice-edge/sluice/connectors/mqtt"
	"github.com/sluice-edge/sluice/engine/agent"
	"github.com/sluice-edge/sluice/engine/agent/localapi"
	"github.com/sluice-edge/sluice/engine/assets"
	"github.com/sluice-edge/sluice/engine/command"
	"github.com/sluice-edge/sluice/engine/control"
	"github.com/sluice-edge/sluice/engine/control/controlapi"
)

// controlPattern is where the local API serves the control API.
const controlPattern = "/v1/control/"

// edgeControl is the command arbiter of an edge and what serves it.
type edgeControl struct {
	arbiter *control.Arbiter // nil without a control section
	dls     []downlink       // the EnOS downlink, then the JSON ones
	json    []agent.ControlJSONDevices
	cancel  context.CancelFunc // stops the downlinks' first connection
	log     *slog.Logger
}

// downlink is what edgeControl needs of an MQTT downlink.
type downlink interface {
	control.Transport
	Start(ctx context.Context) error
	Close() error
}

// edgeCommands is the arbiter as the pipelines' components see it: it
// also says which generic JSON command topics the control section
// declares (mqtt sinks with a command_topic check theirs).
type edgeCommands struct {
	*control.Arbiter
	json []agent.ControlJSONDevices
}

// JSONCommandTopic reports whether the control section declares the
// command topic template with this reply topic template.
func (e edgeCommands) JSONCommandTopic(commandTopic, replyTopic string) bool {
	for _, jd := range e.json {
		if jd.CommandTopic == commandTopic && jd.ReplyTopic == replyTopic {
			return true
		}
	}
	return false
}

// commands is the arbiter for the pipelines' components (nil interface
// without one).
func (c *edgeControl) commands() control.Submitter {
	if c.arbiter == nil {
		return nil
	}
	return edgeCommands{c.arbiter, c.json}
}

// routes are what the local API serves for the arbiter.
func (c *edgeControl) routes() []localapi.Route {
	if c.arbiter == nil {
		return nil
	}
	return []localapi.Route{{Pattern: controlPattern, Handler: controlapi.Handler(c.arbiter, nil, c.log)}}
}

// setModels gives the arbiter the thing models of the release that now
// runs: set-point commands for its assets are checked against them (the
// assets of a release without models/ are not checked).
func (c *edgeControl) setModels(cat *assets.Catalog) {
	if c.arbiter == nil {
		return
	}
	if cat == nil {
		c.arbiter.SetModels(nil)
		return
	}
	c.arbiter.SetModels(cat)
}

// stop closes the arbiter (its log) and the downlink.
func (c *edgeControl) stop() {
	if c.arbiter == nil {
		return
	}
	c.cancel()
	if err := c.arbiter.Close(); err != nil {
		c.log.Error("control: closing the log", "err", err)
	}
	for _, dl := range c.dls {
		_ = dl.Close()
	}
}

// startControl opens the command arbiter of the edge configuration's
// control section (docs/control.md) in <data_dir>/control, with the EnOS
// MQTT downlink to the configured broker as the transport of every
// command, except those to the devices of control.json_devices, which go
// over their JSON command topics (a control.Router chooses): the control
// API of the local API, the pipelines' command sinks and the Modbus
// server submit to it. Without a control section it returns an empty
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
	ec := &edgeControl{arbiter: a, json: cc.JSONDevices, log: log}
	fail := func(err error) (*edgeControl, error) {
		for _, dl := range ec.dls {
			_ = dl.Close()
		}
		a.Close()
		return nil, err
	}
	clientOpts := func(id string) mqtt.ClientOptions {
		return mqtt.ClientOptions{URLs: []string{cc.BrokerURL}, ClientID: id, Username: cc.Username, Password: cc.Password}
	}
	enos, err := mqtt.NewDownlink(mqtt.DownlinkOptions{Tracker: a.Tracker(), Log: log, Client: clientOpts(cc.ClientID)})
	if err != nil {
		return fail(err)
	}
	ec.dls = append(ec.dls, enos)
	var routes []control.Route
	for i, jd := range cc.JSONDevices {
		dl, err := mqtt.NewJSONDownlink(mqtt.JSONDownlinkOptions{Tracker: a.Tracker(), Log: log,
			Client: clientOpts(fmt.Sprintf("%s-json%d", cc.ClientID, i+1)), Topic: jd.CommandTopic, ReplyTopic: jd.ReplyTopic})
		if err != nil {
			return fail(fmt.Errorf("control.json_devices[%d]: %w", i, err))
		}
		ec.dls = append(ec.dls, dl)
		routes = append(routes, control.Route{Name: "json command topic " + jd.CommandTopic, Assets: jd.Assets, Products: jd.Products, Transport: dl})
	}
	var t control.Transport = enos
	if len(routes) > 0 {
		if t, err = control.NewRouter(enos, routes...); err != nil {
			return fail(err)
		}
	}
	// The downlinks connect now, so that the replies to commands sent
	// before a restart are heard, and reconnect by themselves; commands
	// wait in their queues while they are down.
	ctx, cancel := context.WithCancel(context.Background())
	ec.cancel = cancel
	for _, dl := range ec.dls {
		go func() { _ = dl.Start(ctx) }()
	}
	late.Set(t)
	log.Info("control: commands go through the arbiter", "dir", cfg.ControlDir(), "broker", cc.BrokerURL, "json_topics", len(cc.JSONDevices))
	return ec, nil
}
