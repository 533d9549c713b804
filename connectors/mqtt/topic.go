package mqtt

import (
	"fmt"
	"slices"
	"strings"
)

// topicField names one segment of a topic: segment 0 is what comes before
// the first slash, so in /sys/{productKey}/{deviceKey}/... productKey is
// segment 2.
type topicField struct {
	name string
	seg  int
}

// enosTopicFields are the segments of EnOS device topics.
var enosTopicFields = []topicField{{"productKey", 2}, {"deviceKey", 3}}

// parseTopicPattern reads a pattern such as
// /sys/{productKey}/{deviceKey}/thing/measurepoint/post: each {name}
// segment names a field. Other segments are not checked against topics
// (the subscriptions select the topics).
func parseTopicPattern(p string) ([]topicField, error) {
	var out []topicField
	for i, seg := range strings.Split(p, "/") {
		if !strings.HasPrefix(seg, "{") && !strings.HasSuffix(seg, "}") {
			continue
		}
		name, ok := strings.CutPrefix(seg, "{")
		if ok {
			name, ok = strings.CutSuffix(name, "}")
		}
		if !ok || name == "" || strings.ContainsAny(name, "{}") {
			return nil, fmt.Errorf("topic pattern %q: segment %q must be {name}", p, seg)
		}
		if slices.ContainsFunc(out, func(f topicField) bool { return f.name == name }) {
			return nil, fmt.Errorf("topic pattern %q: {%s} appears twice", p, name)
		}
		out = append(out, topicField{name: name, seg: i})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("topic pattern %q names no segment ({name})", p)
	}
	return out, nil
}

// segment returns segment i of topic without allocating.
func segment(topic string, i int) (string, bool) {
	for ; i > 0; i-- {
		j := strings.IndexByte(topic, '/')
		if j < 0 {
			return "", false
		}
		topic = topic[j+1:]
	}
	if j := strings.IndexByte(topic, '/'); j >= 0 {
		topic = topic[:j]
	}
	return topic, true
}

// shareTopic prefixes a filter for a shared subscription of group.
func shareTopic(group, filter string) string {
	if group == "" || strings.HasPrefix(filter, "$share/") {
		return filter
	}
	return "$share/" + group + "/" + filter
}

// checkFilter checks a subscription topic filter.
func checkFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty topic filter")
	}
	rest := f
	if g, ok := strings.CutPrefix(f, "$share/"); ok {
		group, filter, ok := strings.Cut(g, "/")
		if !ok || group == "" || filter == "" || strings.ContainsAny(group, "+#") {
			return fmt.Errorf("topic filter %q: a shared subscription is $share/{group}/{filter}", f)
		}
		rest = filter
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		switch {
		case s == "#" && i != len(segs)-1:
			return fmt.Errorf("topic filter %q: # must be the last segment", f)
		case s != "#" && s != "+" && strings.ContainsAny(s, "+#"):
			return fmt.Errorf("topic filter %q: + and # must fill a whole segment", f)
		}
	}
	return nil
}
