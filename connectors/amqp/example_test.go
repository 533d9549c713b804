package amqp_test

import (
	"log"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/amqp"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// Example builds a publisher from its configuration and publishes one
// entry as the forwarder does. (It needs a RabbitMQ server, so it is not run.)
func Example() {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("url: amqp://guest:guest@127.0.0.1:5672/\nqueue: site-a.stats"), &doc); err != nil {
		log.Fatal(err)
	}
	cfg, errs := amqp.Spec.Parse("site.yaml", &doc)
	if len(errs) > 0 {
		log.Fatal(errs)
	}
	pub, err := amqp.New(cfg, engine.BuildContext{Pipeline: "site", Name: "cloud"})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	entry := outboundtest.Entries(1, 100)[0] // rows 1-100 read from the buffer
	defer entry.Rec.Release()
	msgs, err := pub.Encoder("site-a", "stats").Encode(entry)
	if err != nil {
		log.Fatal(err)
	}
	switch err := pub.Publish(pub.Topic, msgs...); {
	case err == nil:
		// The broker has every message: advance the cursor past row 100.
	case pub.IsPermanent(err):
		// Never accepted: dead-letter the entry and move on.
	default:
		// Outage or timeout: retry later with the same messages.
	}
}
