# ndr: build, test and demo. `make demo` and `make test` are the two
# commands a newcomer runs (see README.md); both install what they need.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := $(CURDIR)/bin
NDR := $(BIN)/ndr
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

# Demo ClickHouse: a long-lived embedded server for the demo and hunting.
DEMO_DIR ?= $(CURDIR)/ndr-data/demo
DEMO_TCP_PORT ?= 19000
DEMO_HTTP_PORT ?= 18123

.PHONY: all build setup test lint proto proto-check demo demo-stop notebooks fuzz faults clean bench bench-go

all: build

setup:
	@./scripts/setup.sh base

build: setup
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(NDR) ./cmd/ndr

## test: formatting, vet, generated code, and every test with the race detector
test: setup lint proto-check
	$(GO) test -race -timeout 20m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## proto: regenerate proto/ndr/v1 Go code
proto:
	@./scripts/setup.sh protoc
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(BIN):$$PATH protoc --proto_path=proto \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		proto/ndr/v1/*.proto

## proto-check: fail if the committed generated code is not what `make proto` makes
proto-check: proto
	@git diff --exit-code -- proto || (echo "proto/: generated code differs from 'make proto'; commit the regenerated files"; exit 1)

## demo: embedded ClickHouse + a replayed sample + a SQL query of what landed
demo: build
	@NDR=$(NDR) DEMO_DIR=$(DEMO_DIR) TCP_PORT=$(DEMO_TCP_PORT) HTTP_PORT=$(DEMO_HTTP_PORT) ./scripts/demo.sh start

demo-stop:
	@NDR=$(NDR) DEMO_DIR=$(DEMO_DIR) ./scripts/demo.sh stop

## notebooks: execute every hunting notebook headless against a freshly seeded ClickHouse (fails on any error)
notebooks: build
	@./scripts/setup.sh notebooks
	@NDR=$(NDR) ./scripts/notebooks.sh

## faults: kill and restart serve and ClickHouse while ndr send streams; prints sent, acked, stored
FAULTS_EVENTS ?= 300000
faults: setup
	NDR_FAULTS_EVENTS=$(FAULTS_EVENTS) $(GO) test -tags faults -run TestFaults -v -count=1 -timeout 60m ./cmd/ndr

## quality: detection quality on the seeded labelled benchmark (1,000 hosts x 4 days, no ClickHouse):
## precision and recall per use case, false positives per 1,000 hosts per day, beacon ROC, RITA row
.PHONY: quality
quality: build
	$(NDR) quality --check

## fuzz: run every fuzz target for FUZZTIME each (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

## bench: throughput, latency and memory from one run (docs/performance.md); about 8 minutes, not part of test
bench: build
	@NDR=$(NDR) ./scripts/bench.sh

## bench-go: the Go benchmarks of the hot paths with -benchmem (BENCHTIME per benchmark, default 1s)
BENCHTIME ?= 1s
bench-go: setup
	$(GO) test -run '^$$' -benchmem -benchtime $(BENCHTIME) -bench 'ReadZeekTSV$$|ReadZeekJSON$$' ./ingest
	$(GO) test -run '^$$' -benchmem -benchtime $(BENCHTIME) -bench . ./ingest/wire ./ingest/spool ./ingest/client
	$(GO) test -run '^$$' -benchmem -benchtime $(BENCHTIME) -bench 'Process$$' ./features
	$(GO) test -run '^$$' -benchmem -benchtime $(BENCHTIME) -bench . ./scoring/...
	$(GO) test -run '^$$' -benchmem -benchtime $(BENCHTIME) -bench 'ConnBuffer|ArrowTable|ConnWriter' ./internal/store

clean:
	rm -rf $(BIN)
