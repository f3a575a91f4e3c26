# Keyledger — the two set-up commands are `make run` and `make test`.
GO              ?= go
STATICCHECK     ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCH_COUNT     ?= 5
BENCH_PKGS      ?= ./eventstore/embedded/ ./projections/readmodel/ ./projections/runner/
BIN             := bin/keyledger

.PHONY: run build test fuzz lint bench clean

## run: start the server on the embedded store in ./data (no other service needed)
run:
	$(GO) run ./cmd/keyledger serve

## build: build the binary into bin/keyledger
build:
	$(GO) build -o $(BIN) ./cmd/keyledger

FUZZTIME        ?= 10s

## test: the whole suite, with the race detector, never from cache; then each parser of
## untrusted input fuzzed for FUZZTIME (a panic or a failed property fails the run)
test:
	$(GO) test -race -count=1 -timeout 12m ./...
	$(MAKE) fuzz

## fuzz: run every fuzz target for FUZZTIME each (go test -fuzz takes one target at a time)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseTokenRequest$$' -fuzztime $(FUZZTIME) ./voucher/
	$(GO) test -run '^$$' -fuzz '^FuzzParseAssertion$$' -fuzztime $(FUZZTIME) ./voucher/
	$(GO) test -run '^$$' -fuzz '^FuzzObjectMembers$$' -fuzztime $(FUZZTIME) ./voucher/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./domain/keys/

## lint: gofmt, go vet, staticcheck, and the domain import rule
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) test -count=1 -run TestDomainImportsNoInfrastructure ./domain/

## bench: the benchmarks an issue names, the token endpoint's load generator (flags in
## TOKENLOAD_FLAGS, e.g. "-keys 1k -c 16"; see go run ./bench/tokenload -h), then one
## table of targets met or not
bench:
	$(GO) test -p 1 -run '^$$' -bench . -count $(BENCH_COUNT) -timeout 40m $(BENCH_PKGS) | tee bench.out
	$(GO) run ./bench/tokenload $(TOKENLOAD_FLAGS) | tee -a bench.out
	@$(GO) run ./bench/report -targets bench/targets.tsv bench.out

clean:
	rm -rf bin bench.out
