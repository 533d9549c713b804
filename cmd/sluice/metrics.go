package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-edge/sluice/engine/httpapi"
	"github.com/sluice-edge/sluice/engine/outbound"
	"github.com/sluice-edge/sluice/engine/spec"
	"github.com/sluice-edge/sluice/pipelines"
)

// maxMetricsConns bounds the connections the metrics server holds at once.
const maxMetricsConns = 16

// metricsTokenEnv names the environment variable that may hold the bearer
// token of the metrics endpoint (--metrics-token-file takes precedence).
const metricsTokenEnv = "SLUICE_METRICS_TOKEN"

// metricsListenAddr turns ":port" into "127.0.0.1:port": the endpoint binds
// to every interface only when told so (0.0.0.0:port, [::]:port).
func metricsListenAddr(addr string) string {
	if strings.HasPrefix(addr, ":") {
		return "127.0.0.1" + addr
	}
	return addr
}

// metricsToken reads the bearer token from tokenFile (a regular file of at
// most outbound.MaxSecretFileBytes), or from SLUICE_METRICS_TOKEN; empty
// means none.
func metricsToken(tokenFile string) (string, error) {
	if tokenFile == "" {
		return strings.TrimSpace(os.Getenv(metricsTokenEnv)), nil
	}
	data, err := spec.ReadConfigFile(tokenFile, outbound.MaxSecretFileBytes)
	if err != nil {
		return "", fmt.Errorf("--metrics-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("--metrics-token-file: %s is empty", tokenFile)
	}
	return tok, nil
}

// checkListenAddr checks that addr is host:port with a port number a TCP
// listener takes (0 to 65535; 0 picks one).
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("%q: the port must be a number from 0 to 65535", addr)
	}
	return nil
}

// serveMetrics serves the pipelines' metrics, plus Go runtime and process
// metrics, at /metrics on addr. With a token, every request must carry
// "Authorization: Bearer <token>". The returned function stops the server.
func serveMetrics(addr, token string, c *pipelines.Collector, log *slog.Logger) (func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		c,
	)
	var h http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, MaxRequestsInFlight: 4})
	warn := ""
	if token != "" {
		h = httpapi.Bearer(token, "sluice", "unauthorized", nil, h)
	} else {
		warn = "the metrics endpoint is reachable from other hosts without a token: set --metrics-token-file or " + metricsTokenEnv
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv, err := httpapi.Listen(metricsListenAddr(addr), mux, httpapi.Options{
		Name: "metrics server", MaxConns: maxMetricsConns,
		ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		RemoteWarning: warn, Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	log.Info("serving metrics", "url", "http://"+srv.Addr()+"/metrics", "token", token != "")
	return func() { _ = srv.Close(2 * time.Second) }, nil
}
