package protocol

import "time"

// LogsSubject is the subject on which edge answers log queries (core NATS
// request/reply, no stream captures it): the request is a
// logquery.Request, the reply a logquery.Answer (docs/format/hub-protocol.md,
// section 7).
func LogsSubject(edge string) (string, error) { return edgeSubject(edge, "logs") }

// LogsTimeout is how long the hub waits for an edge's answer to a log
// query; the edge stops searching after LogsSearchTimeout.
const (
	LogsTimeout       = 15 * time.Second
	LogsSearchTimeout = 10 * time.Second
)
