package webhook_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/connectors/webhook"
	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/outbound/outboundtest"
)

// Example posts one entry to an endpoint as the forwarder does.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.Method, r.URL.Path, r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("url: "+srv.URL+"/ingest\nencoding: json_batch\nbatch_rows: 50"), &doc); err != nil {
		log.Fatal(err)
	}
	cfg, errs := webhook.Spec.Parse("site.yaml", &doc)
	if len(errs) > 0 {
		log.Fatal(errs)
	}
	pub, err := webhook.New(cfg, engine.BuildContext{})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	entry := outboundtest.Entries(1, 100)[0]
	defer entry.Rec.Release()
	msgs, err := pub.Encoder("site-a", "stats").Encode(entry)
	if err != nil {
		log.Fatal(err)
	}
	if err := pub.Publish(pub.Topic, msgs...); err != nil {
		fmt.Println("retry later:", err, "permanent:", pub.IsPermanent(err))
	}
	// Output:
	// POST /ingest site-a/stats/1-50 application/json
	// POST /ingest site-a/stats/51-100 application/json
}
