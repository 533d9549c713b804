# Sluice — common tasks. `make run` and `make test` are the two commands a
# fresh machine needs (see README).

GO       ?= go
PKGS     ?= ./...
BIN      ?= bin/sluice
# The version line (sluice version): the newest tag (dev when there is
# none, or no git) and the commit, "-dirty" when the tree has changes.
VERSION  ?= $(shell git describe --tags --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell c=$$(git rev-parse --short=12 HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || c=$$c-dirty; echo $$c; })
LDFLAGS  := -s -w -X main.version=$(VERSION) $(if $(COMMIT),-X main.commit=$(COMMIT))

.PHONY: run test test-short build lean install bench gobench fuzz docs check-docs vet fmt services clean

## run: the wind-farm demo (simulated turbines -> embedded MQTT broker -> stats -> alerts; nothing else to install)
run:
	$(GO) run ./cmd/sluice demo

## test: vet, then every test with the race detector
test: vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## test-short: the tests without the race detector (quicker)
test-short:
	$(GO) test -count=1 -timeout 10m $(PKGS)

## build: a static binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sluice

## lean: a smaller static edge binary, bin/sluice-lean: without the infer step, the kafka, redis,
## amqp and postgres sinks, `sluice hub` and the embedded NATS server (-tags sluice_lean; docs/bench.md#footprint)
lean:
	CGO_ENABLED=0 $(GO) build -tags sluice_lean -trimpath -ldflags '$(LDFLAGS)' -o bin/sluice-lean ./cmd/sluice

## install: sluice into $(go env GOPATH)/bin (or GOBIN), so that `sluice ...` works from any directory
install:
	$(GO) install -trimpath -ldflags '$(LDFLAGS)' ./cmd/sluice

## bench: the reference scenario of the bench harness (JSON + table)
bench:
	$(GO) run ./cmd/sluice bench

## gobench: every go test benchmark, with allocations
gobench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## fuzz: a short session of every fuzz target (FUZZTIME each, default 20s)
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## docs: regenerate the pipeline reference from the component declarations
docs:
	$(GO) run ./cmd/sluice docs > docs/reference.md

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
