// Package topic holds the MQTT topic templates of generic JSON command
// devices ("plant/{asset}/set/{point}") and the check of the names filled
// into them; the edge's configuration and the MQTT connectors share it.
package topic

import (
	"errors"
	"fmt"
	"strings"
)

// Placeholders of a JSON command topic template; each stands for a whole
// topic segment.
const (
	PlaceholderProduct = "{product}"
	PlaceholderAsset   = "{asset}"
	PlaceholderPoint   = "{point}"
)

// MaxTemplateLen bounds a topic template.
const MaxTemplateLen = 256

// Template is a checked command or reply topic template such as
// "plant/{asset}/set/{point}".
type Template struct {
	text string
	segs []string
	has  map[string]bool
}

// Parse checks a template: at most MaxTemplateLen bytes, no
// wildcard (+, #) or NUL, not starting with $, placeholders ({product},
// {asset}, {point}) only as whole segments and at most once each, and
// {asset} present.
func Parse(s string) (Template, error) {
	t := Template{text: s, has: map[string]bool{}}
	switch {
	case s == "":
		return t, errors.New("empty topic template")
	case len(s) > MaxTemplateLen:
		return t, fmt.Errorf("topic template of %d bytes exceeds %d", len(s), MaxTemplateLen)
	case strings.ContainsAny(s, "+#\x00"):
		return t, fmt.Errorf("topic template %q holds a wildcard or NUL", s)
	case strings.HasPrefix(s, "$"):
		return t, fmt.Errorf("topic template %q starts with $ (broker topics)", s)
	}
	t.segs = strings.Split(s, "/")
	for _, seg := range t.segs {
		switch seg {
		case PlaceholderProduct, PlaceholderAsset, PlaceholderPoint:
			if t.has[seg] {
				return t, fmt.Errorf("topic template %q names %s twice", s, seg)
			}
			t.has[seg] = true
		default:
			if strings.ContainsAny(seg, "{}") {
				return t, fmt.Errorf("topic template %q: segment %q: placeholders are whole segments, one of {product}, {asset}, {point}", s, seg)
			}
		}
	}
	if !t.has[PlaceholderAsset] {
		return t, fmt.Errorf("topic template %q does not name the device ({asset})", s)
	}
	return t, nil
}

// String returns the template's text.
func (t Template) String() string { return t.text }

// Has reports whether the template holds a placeholder.
func (t Template) Has(placeholder string) bool { return t.has[placeholder] }

// Topic fills the template in.
func (t Template) Topic(product, asset, point string) string {
	var b strings.Builder
	for i, seg := range t.segs {
		if i > 0 {
			b.WriteByte('/')
		}
		switch seg {
		case PlaceholderProduct:
			b.WriteString(product)
		case PlaceholderAsset:
			b.WriteString(asset)
		case PlaceholderPoint:
			b.WriteString(point)
		default:
			b.WriteString(seg)
		}
	}
	return b.String()
}

// Filter is the subscription filter matching every topic of the template.
func (t Template) Filter() string { return t.Topic("+", "+", "+") }

// Match reads a topic of the template back into its placeholders' values
// (each non-empty).
func (t Template) Match(topic string) (product, asset, point string, ok bool) {
	if strings.Count(topic, "/") != len(t.segs)-1 {
		return "", "", "", false
	}
	for _, seg := range t.segs {
		var part string
		part, topic, _ = strings.Cut(topic, "/")
		switch seg {
		case PlaceholderProduct, PlaceholderAsset, PlaceholderPoint:
			if part == "" {
				return "", "", "", false
			}
			switch seg {
			case PlaceholderProduct:
				product = part
			case PlaceholderAsset:
				asset = part
			default:
				point = part
			}
		default:
			if part != seg {
				return "", "", "", false
			}
		}
	}
	return product, asset, point, true
}

// Overlaps reports whether some topic fits both templates.
func Overlaps(a, b Template) bool {
	if len(a.segs) != len(b.segs) {
		return false
	}
	for i, s := range a.segs {
		if !a.has[s] && !b.has[b.segs[i]] && s != b.segs[i] {
			return false
		}
	}
	return true
}

// CheckKey checks a name that fills a topic segment (a product or device
// key, a point): non-empty, at most maxLen bytes and free of the characters
// that would change the topic's structure (/, the wildcards + and #, and
// NUL).
func CheckKey(key string, maxLen int) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case len(key) > maxLen:
		return fmt.Errorf("key of %d bytes exceeds %d", len(key), maxLen)
	}
	if i := strings.IndexAny(key, "/+#\x00"); i >= 0 {
		return fmt.Errorf("key %q holds %q, which cannot be part of a topic segment", key, key[i])
	}
	return nil
}
