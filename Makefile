# Lodestar. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
GEN   := tools/generators
# The generators are pinned in their own module, outside go.work.
GENERATORS := $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

TEST_TIMEOUT ?= 15m
TEST_FLAGS   ?= -race -count=1
# The Online Retail invoices of the predictive benchmark.
PREDICT_DATA ?= ../shared/data/online-retail-invoices.csv

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(GENERATORS) &: $(GEN)/go.mod $(GEN)/go.sum
	@mkdir -p $(BIN)
	cd $(GEN) && GOWORK=off GOBIN=$(BIN) $(GO) install \
		github.com/bufbuild/buf/cmd/buf \
		google.golang.org/protobuf/cmd/protoc-gen-go \
		google.golang.org/grpc/cmd/protoc-gen-go-grpc
	@touch $(GENERATORS)

.PHONY: tools
tools: $(GENERATORS) ## Build the pinned generators into bin/ (once; buf takes minutes).

.PHONY: generate
generate: $(GENERATORS) ## Regenerate proto/gen/go from proto/.
	rm -rf proto/gen/go
	PATH=$(BIN):$$PATH $(BIN)/buf generate

.PHONY: check-generate
check-generate: generate ## Fail when regeneration changes the committed code.
	@git add -N proto/gen && git diff --exit-code --stat -- proto/gen \
		|| { echo "generated code is stale: run make generate and commit"; exit 1; }

.PHONY: lint
lint: $(GENERATORS) ## buf lint, gofmt and go vet.
	$(BIN)/buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^proto/gen/')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd deploy && GOWORK=off $(GO) vet ./...

.PHONY: build
build: ## Build bin/lodestar and the tools.
	$(GO) build -o $(BIN)/lodestar ./cmd/lodestar
	$(GO) build -o $(BIN)/loadgen ./tools/loadgen
	$(GO) build -o $(BIN)/lodestarctl ./tools/lodestarctl

.PHONY: test
test: ## Run every test (race detector on); starts (or installs) Redis when it is not up, installs Chromium for the console's browser tests.
	@scripts/ensure-redis.sh
	@scripts/ensure-chromium.sh
	$(GO) test $(TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...
	cd deploy && GOWORK=off $(GO) test -count=1 ./...

# Fuzz targets, one per external decoder, as package:FuzzName. Their seeds
# (f.Add and testdata/fuzz/) run in `make test`; `make fuzz` mutates them.
FUZZ_TARGETS := \
	./services/ingest/internal/segment:FuzzDecode \
	./services/ingest/internal/segment:FuzzGzipBody \
	./internal/scorecore/scorecard:FuzzParse \
	./pkg/cache:FuzzPageToken \
	./services/churnalert/internal/api:FuzzParsePageToken \
	./services/renewalforecast/internal/api:FuzzParseToken
FUZZTIME   ?= 30s
# Minimizing each new input may take 60 s by default, the whole budget.
FUZZ_FLAGS ?= -parallel 2 -fuzzminimizetime 3s

.PHONY: fuzz
fuzz: ## Fuzz each external decoder for FUZZTIME (30s) each; a crash stops it, its input under testdata/fuzz.
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg), $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZ_FLAGS) $$pkg; \
	done

.PHONY: run
run: ## The demo: the all-in-one fed 300 simulated accounts; prints the worst ones every 10 s until Ctrl-C.
	scripts/run-demo.sh

.PHONY: bench
bench: ## Micro-benchmarks of the hot paths.
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: bench-report
bench-report: ## The benchmark report: docs/benchmarks.md and .json (starts what it measures itself).
	@scripts/ensure-redis.sh
	$(GO) run ./tools/bench -out docs/benchmarks.md -json docs/benchmarks.json -profile

.PHONY: bench-predict
bench-predict: ## The predictive benchmark: docs/predict.md and .json (real invoices and the simulation; starts its own Lodestar).
	$(GO) run ./tools/predict -data $(PREDICT_DATA) -out docs/predict.md -json docs/predict.json

.PHONY: chaos
chaos: ## Scale-out under failures (docs/runbooks/replicas.md): a 3-node NATS cluster, scoring and churn-alert replicas killed, paused and added; failover and throughput figures. ~10 min.
	@scripts/ensure-redis.sh
	$(GO) build -o $(BIN)/lodestar ./cmd/lodestar
	$(GO) run ./tools/chaos -lodestar $(BIN)/lodestar

.PHONY: clean
clean:
	rm -rf $(BIN) data
