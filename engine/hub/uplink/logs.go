package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	natsgo "github.com/nats-io/nats.go"

	"github.com/sluice-edge/sluice/engine/hub/protocol"
	"github.com/sluice-edge/sluice/engine/logquery"
)

// ServeLogs answers the hub's log queries on the edge's logs subject
// (protocol.LogsSubject) from the log files in dir, until the returned
// function is called. Queries are answered one at a time, each searched
// for at most protocol.LogsSearchTimeout; a request that is not a valid
// logquery.Request gets an answer saying why. Answers hold at most the
// request's max_bytes.
func ServeLogs(nc *natsgo.Conn, edge, dir string, log *slog.Logger) (func(), error) {
	subj, err := protocol.LogsSubject(edge)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := nc.Subscribe(subj, func(m *natsgo.Msg) {
		if m.Reply == "" {
			return
		}
		_ = m.Respond(answerLogs(ctx, dir, m.Data, log))
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("uplink: logs: %w", err)
	}
	// One request's payload at most: a flood waits in NATS, not here.
	_ = sub.SetPendingLimits(64, 64*logquery.MaxRequestBytes)
	return func() {
		cancel()
		_ = sub.Unsubscribe()
	}, nil
}

// answerLogs searches dir for the request data and encodes the answer.
func answerLogs(ctx context.Context, dir string, data []byte, log *slog.Logger) []byte {
	req, err := logquery.DecodeRequest(data)
	if err != nil {
		log.Warn("hub: refused a log query", "err", err)
		return logquery.ErrorAnswer(err)
	}
	q, err := req.Query()
	if err != nil {
		return logquery.ErrorAnswer(err)
	}
	ctx, cancel := context.WithTimeout(ctx, protocol.LogsSearchTimeout)
	defer cancel()
	res, err := logquery.Search(ctx, dir, q)
	if errors.Is(err, context.DeadlineExceeded) {
		return logquery.ErrorAnswer(fmt.Errorf("the search took longer than %s: narrow the time window", protocol.LogsSearchTimeout))
	}
	if err != nil {
		log.Warn("hub: log query failed", "err", err)
		return logquery.ErrorAnswer(errors.New("the edge could not read its log"))
	}
	return logquery.EncodeAnswer(req, res)
}
