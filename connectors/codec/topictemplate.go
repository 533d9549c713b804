package codec

import "github.com/sluice-edge/sluice/engine/topic"

// Placeholders of a JSON command topic template; each stands for a whole
// topic segment (see package topic).
const (
	PlaceholderProduct = topic.PlaceholderProduct
	PlaceholderAsset   = topic.PlaceholderAsset
	PlaceholderPoint   = topic.PlaceholderPoint
)

// MaxTemplateLen bounds a topic template.
const MaxTemplateLen = topic.MaxTemplateLen

// TopicTemplate is a checked command or reply topic template such as
// "plant/{asset}/set/{point}"; see topic.Template.
type TopicTemplate = topic.Template

// ParseTopicTemplate checks a template; see topic.Parse.
func ParseTopicTemplate(s string) (TopicTemplate, error) { return topic.Parse(s) }

// Overlaps reports whether some topic fits both templates.
func Overlaps(a, b TopicTemplate) bool { return topic.Overlaps(a, b) }
