package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-edge/sluice/engine/topic"
)

// TopicKind is what an EnOS device topic carries.
type TopicKind uint8

// EnOS topic kinds.
const (
	// OtherTopic is any topic that is not one of the kinds below.
	OtherTopic TopicKind = iota
	// PostTopic: /sys/{productKey}/{deviceKey}/thing/measurepoint/post
	PostTopic
	// ResumeTopic: .../thing/measurepoint/resume (offline history)
	ResumeTopic
	// PostBatchTopic: .../thing/measurepoint/post/batch (a gateway posting
	// for its sub-devices; each item names its device)
	PostBatchTopic
	// ResumeBatchTopic: .../thing/measurepoint/resume/batch
	ResumeBatchTopic
	// ServiceTopic: .../thing/service/{service} (a command to the device)
	ServiceTopic
	// ReplyTopic: a /sys/{productKey}/{deviceKey}/... topic followed by
	// "_reply"; Topic.Of says what it answers
	ReplyTopic
)

var topicKindNames = [...]string{"other", "post", "resume", "post/batch", "resume/batch", "service", "reply"}

// String names the kind.
func (k TopicKind) String() string {
	if int(k) < len(topicKindNames) {
		return topicKindNames[k]
	}
	return "TopicKind(" + strconv.Itoa(int(k)) + ")"
}

// History reports whether the topic carries offline history (resume).
func (k TopicKind) History() bool { return k == ResumeTopic || k == ResumeBatchTopic }

// Batch reports whether each params item names its own device.
func (k TopicKind) Batch() bool { return k == PostBatchTopic || k == ResumeBatchTopic }

// Topic is a parsed EnOS device topic. Its strings point into the parsed
// topic: parsing does not allocate.
type Topic struct {
	Kind       TopicKind
	ProductKey string
	DeviceKey  string
	// Service is the service of a ServiceTopic (or of the ServiceTopic a
	// ReplyTopic answers) with slashes as dots: "measurepoint.set",
	// "reboot".
	Service string
	// Of is, for a ReplyTopic, the kind of topic it answers.
	Of TopicKind
}

// ReplySuffix ends every reply topic: a reply to a message on topic T is
// published on T + ReplySuffix.
const ReplySuffix = "_reply"

// ParseTopic parses an EnOS device topic:
// /sys/{productKey}/{deviceKey}/thing/{measurepoint/post|...|service/...}.
// A topic that does not start with /sys/{productKey}/{deviceKey}/ has
// kind OtherTopic and empty keys.
func ParseTopic(topic string) Topic {
	rest, ok := strings.CutPrefix(topic, "/sys/")
	if !ok {
		return Topic{}
	}
	pk, rest, ok := strings.Cut(rest, "/")
	if !ok || pk == "" {
		return Topic{}
	}
	dk, rest, ok := strings.Cut(rest, "/")
	if !ok || dk == "" {
		return Topic{}
	}
	t := Topic{ProductKey: pk, DeviceKey: dk}
	var isReply bool
	rest, isReply = strings.CutSuffix(rest, ReplySuffix)
	switch rest {
	case "thing/measurepoint/post":
		t.Kind = PostTopic
	case "thing/measurepoint/resume":
		t.Kind = ResumeTopic
	case "thing/measurepoint/post/batch":
		t.Kind = PostBatchTopic
	case "thing/measurepoint/resume/batch":
		t.Kind = ResumeBatchTopic
	default:
		// Service paths hold no dots: dots in service names stand for
		// slashes.
		if svc, ok := strings.CutPrefix(rest, "thing/service/"); ok && svc != "" && !strings.HasSuffix(svc, "/") && !strings.Contains(svc, ".") {
			t.Kind = ServiceTopic
			t.Service = svc
			if strings.IndexByte(svc, '/') >= 0 {
				t.Service = strings.ReplaceAll(svc, "/", ".")
			}
		}
	}
	if isReply {
		t.Of, t.Kind = t.Kind, ReplyTopic
	}
	return t
}

func sysPrefix(productKey, deviceKey string) string {
	return "/sys/" + productKey + "/" + deviceKey + "/thing/"
}

// PostTopicFor returns the topic a device posts its measure points on.
func PostTopicFor(productKey, deviceKey string) string {
	return sysPrefix(productKey, deviceKey) + "measurepoint/post"
}

// ResumeTopicFor returns the topic a device posts offline history on.
func ResumeTopicFor(productKey, deviceKey string) string {
	return sysPrefix(productKey, deviceKey) + "measurepoint/resume"
}

// ServiceTopicFor returns the topic that invokes a service on a device;
// dots in the service become slashes ("measurepoint.set" ->
// .../thing/service/measurepoint/set).
func ServiceTopicFor(productKey, deviceKey, service string) string {
	return sysPrefix(productKey, deviceKey) + "service/" + strings.ReplaceAll(service, ".", "/")
}

// ReplyTopicFor returns the topic that answers a message on topic.
func ReplyTopicFor(topic string) string { return topic + ReplySuffix }

// IsReplyTopic reports whether topic is a reply topic (ends with
// ReplySuffix), whatever its format: a component that answers messages
// must never take one of these for a message to answer.
func IsReplyTopic(topic string) bool { return strings.HasSuffix(topic, ReplySuffix) }

// MaxKeyLen is the longest product or device key CheckKey accepts by
// default, in bytes; EnOS keys are far shorter.
const MaxKeyLen = 128

// CheckKey checks a product or device key that becomes a topic segment: it
// must be non-empty, at most maxLen bytes (0: MaxKeyLen) and free of the
// characters that would change the topic's structure (/, the wildcards +
// and #, and NUL).
func CheckKey(key string, maxLen int) error {
	if maxLen <= 0 {
		maxLen = MaxKeyLen
	}
	return topic.CheckKey(key, maxLen)
}

// ServiceMethod returns the method named in a service invocation
// ("thing.service.measurepoint.set").
func ServiceMethod(service string) string { return "thing.service." + service }

// Reply codes the source answers bad input with.
const (
	CodeOK              = 200
	CodeBadRequest      = 400 // malformed payload or wrong value types
	CodeUnknownDevice   = 404 // the device is not in the allow-list or assets
	CodePayloadTooLarge = 413 // the payload exceeds max_payload
	CodeTooManyRequests = 429 // the device exceeds max_rate_per_device
)

// AppendReply appends an EnOS reply payload:
// {"id":"1","code":200,"data":{}}, with "message" when message is set.
func AppendReply(dst []byte, id string, code int, message string) []byte {
	dst = append(dst, `{"id":`...)
	dst = AppendJSONString(dst, id)
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	if message != "" {
		dst = append(dst, `,"message":`...)
		dst = AppendJSONString(dst, message)
	}
	return append(dst, `,"data":{}}`...)
}

// Reply is a device's answer to a command.
type Reply struct {
	ID      string          `json:"id"`
	Code    int             `json:"code"`
	Message string          `json:"message,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// ParseReply reads a reply payload. The id may be a string or a number.
func ParseReply(payload []byte) (Reply, error) {
	var raw struct {
		ID      json.RawMessage `json:"id"`
		Code    *int            `json:"code"`
		Message string          `json:"message"`
		Msg     string          `json:"msg"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return Reply{}, fmt.Errorf("reply: %w", err)
	}
	id := IDText(raw.ID)
	if id == "" {
		return Reply{}, errors.New("reply: no id")
	}
	if raw.Code == nil {
		return Reply{}, errors.New("reply: no code")
	}
	r := Reply{ID: id, Code: *raw.Code, Message: raw.Message, Data: raw.Data}
	if r.Message == "" {
		r.Message = raw.Msg
	}
	return r, nil
}

// Request is a service invocation as a device receives it.
type Request struct {
	ID      string         `json:"id"`
	Version string         `json:"version"`
	Method  string         `json:"method"`
	Params  map[string]any `json:"params"`
}

// AppendRequest appends the payload of a service invocation: for
// "measurepoint.set", params are {"measurepoints": inputs}; for other
// services, the inputs themselves.
func AppendRequest(dst []byte, id, service string, inputs map[string]any) ([]byte, error) {
	params := inputs
	if params == nil {
		params = map[string]any{}
	}
	if service == "measurepoint.set" {
		params = map[string]any{"measurepoints": params}
	}
	b, err := json.Marshal(Request{ID: id, Version: "1.0", Method: ServiceMethod(service), Params: params})
	if err != nil {
		return dst, fmt.Errorf("command %s: %w", id, err)
	}
	return append(dst, b...), nil
}

// ParseRequest reads a service invocation payload.
func ParseRequest(payload []byte) (Request, error) {
	var raw struct {
		ID      json.RawMessage `json:"id"`
		Version string          `json:"version"`
		Method  string          `json:"method"`
		Params  map[string]any  `json:"params"`
	}
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil {
		return Request{}, fmt.Errorf("request: %w", err)
	}
	c := Request{ID: IDText(raw.ID), Version: raw.Version, Method: raw.Method, Params: raw.Params}
	if c.ID == "" {
		return c, errors.New("request: no id")
	}
	return c, nil
}

// IDText returns a JSON id as text: a string's contents or a number's text.
func IDText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return ""
	}
	if raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9' {
		return string(raw)
	}
	return ""
}
