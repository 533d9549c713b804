package mqtt

import (
	"fmt"
	"strings"

	"github.com/sluice-edge/sluice/connectors/codec"
)

// access is what one identity may do on the embedded broker.
//
// Topics under /sys/{productKey}/{deviceKey}/ follow the EnOS directions:
// a device posts (measure points, events, replies to commands) and the
// engine sends (service requests, replies to posts). A topic there is
// downlink when it is a service topic (.../thing/service/...) that is not
// a reply, or a reply (..._reply) to anything but a service topic. Only
// the engine publishes downlink topics, whatever the patterns say.
//
// A batch post (.../thing/measurepoint/post/batch, resume/batch) names the
// device of each of its items, so whoever sends one may post rows for any
// device key: a device's own prefix does not grant batch topics, only
// publish patterns that name them do (a gateway, trusted for the keys of
// its sub-devices).
type access struct {
	name string
	// all grants every topic, downlink included: the engine's own clients,
	// and every client of a broker configured without users.
	all bool
	// productKey and deviceKey make the identity a device: it publishes
	// under /sys/{productKey}/{deviceKey}/ (but no downlink topic) and
	// receives the downlink topics there.
	productKey, deviceKey string
	// publish and subscribe are further topic filters.
	publish, subscribe []string
}

// canPublish reports whether a may publish to topic (a topic name, no
// wildcards).
func (a *access) canPublish(topic string) bool {
	if a.all {
		return true
	}
	if isDownlink(topic) {
		return false
	}
	if a.deviceKey != "" && underDevice(topic, a.productKey, a.deviceKey) && !codec.ParseTopic(topic).Kind.Batch() {
		return true
	}
	for _, f := range a.publish {
		if topicMatches(f, topic) {
			return true
		}
	}
	return false
}

// canSubscribe reports whether a may subscribe to filter, or receive a
// message published to it (a topic name is a filter without wildcards).
func (a *access) canSubscribe(filter string) bool {
	if a.all {
		return true
	}
	filter = stripShare(filter)
	// A device gets its own downlink topics: a filter under its prefix
	// with wildcards may be subscribed to, but only downlink topics are
	// delivered through it.
	if a.deviceKey != "" && underDevice(filter, a.productKey, a.deviceKey) &&
		(strings.ContainsAny(filter, "+#") || isDownlink(filter)) {
		return true
	}
	for _, f := range a.subscribe {
		if filterCovers(f, filter) {
			return true
		}
	}
	return false
}

// stripShare returns the topic filter of a shared subscription
// ($share/{group}/{filter}), or filter itself.
func stripShare(filter string) string {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			return f
		}
		return ""
	}
	return filter
}

// underDevice reports whether the first four levels of topic (or filter)
// are exactly "", "sys", productKey, deviceKey and more levels follow:
// wildcards in those levels do not count as matching.
func underDevice(topic, productKey, deviceKey string) bool {
	rest, ok := strings.CutPrefix(topic, "/sys/")
	if !ok {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, productKey); !ok || !strings.HasPrefix(rest, "/") {
		return false
	}
	rest, ok = strings.CutPrefix(rest[1:], deviceKey)
	return ok && len(rest) > 1 && rest[0] == '/'
}

// isDownlink reports whether topic is an EnOS topic only the engine may
// publish: a service request, or a reply to a post.
func isDownlink(topic string) bool {
	rest, ok := strings.CutPrefix(topic, "/sys/")
	if !ok {
		return false
	}
	// Skip the product and device keys.
	for range 2 {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return false
		}
		rest = rest[i+1:]
	}
	service := strings.HasPrefix(rest, "thing/service/")
	reply := strings.HasSuffix(rest, codec.ReplySuffix)
	return service != reply
}

// nextLevel splits the first level off s: level, the rest, and whether
// there was a separator.
func nextLevel(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// topicMatches reports whether the topic filter f matches topic.
func topicMatches(f, topic string) bool {
	if dollarGuard(f, topic) {
		return false
	}
	for {
		fl, frest, fmore := nextLevel(f)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := nextLevel(topic)
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			// "a/#" matches "a" too.
			return fmore == tmore || (fmore && frest == "#")
		}
		f, topic = frest, trest
	}
}

// filterCovers reports whether every topic that filter g matches is
// matched by filter f.
func filterCovers(f, g string) bool {
	if dollarGuard(f, g) {
		return false
	}
	for {
		fl, frest, fmore := nextLevel(f)
		if fl == "#" {
			return true
		}
		gl, grest, gmore := nextLevel(g)
		switch {
		case gl == "#":
			return false
		case fl == "+":
		case gl == "+" || fl != gl:
			return false
		}
		if !fmore || !gmore {
			return fmore == gmore || (fmore && frest == "#")
		}
		f, g = frest, grest
	}
}

// dollarGuard reports whether f starts with a wildcard and topic with $:
// such topics ($SYS) are matched only by filters that name them.
func dollarGuard(f, topic string) bool {
	return strings.HasPrefix(topic, "$") && (strings.HasPrefix(f, "#") || strings.HasPrefix(f, "+"))
}

// checkPattern reports what is wrong with an ACL topic filter.
func checkPattern(f string) error {
	if f == "" {
		return fmt.Errorf("empty topic filter")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("topic filter %q: # must be the last level", f)
		case l != "#" && l != "+" && strings.ContainsAny(l, "#+"):
			return fmt.Errorf("topic filter %q: a wildcard must be a whole level", f)
		}
	}
	if strings.HasPrefix(f, "$share/") {
		return fmt.Errorf("topic filter %q: name the topics, not a shared subscription", f)
	}
	return nil
}
