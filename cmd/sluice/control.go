package main

import (
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

// startControl opens the command arbiter of the edge configuration's
// control section (docs/control.md) in <data_dir>/control, with the EnOS
// MQTT downlink to the configured broker as the one transport of every
// command, and returns the route the local API serves it on and a
// function that stops both. Without a control section it returns no
// route.
func startControl(cfg *agent.Config, log *slog.Logger) ([]localapi.Route, func(), error) {
	cc := cfg.Control
	if cc == nil {
		return nil, func() {}, nil
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
	if err != nil {
		return nil, nil, err
	}
	dl, err := mqtt.NewDownlink(mqtt.DownlinkOptions{Tracker: a.Tracker(), Log: log, Client: mqtt.ClientOptions{
		URLs: []string{cc.BrokerURL}, ClientID: cc.ClientID, Username: cc.Username, Password: cc.Password}})
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	// The downlink connects when the first command is due, and
	// reconnects by itself; commands wait in their queues meanwhile.
	late.Set(dl)
	log.Info("control: commands go through the arbiter", "dir", cfg.ControlDir(), "broker", cc.BrokerURL)
	route := localapi.Route{Pattern: controlPattern, Handler: controlapi.Handler(a, nil, log)}
	return []localapi.Route{route}, func() {
		if err := a.Close(); err != nil {
			log.Error("control: closing the log", "err", err)
		}
		_ = dl.Close()
	}, nil
}
