# bale's build, test and benchmark entry points. `make test` is what CI runs.
GO          ?= go
GOBIN       := $(shell $(GO) env GOPATH)/bin
STATICCHECK ?= $(GOBIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
BENCHTIME   ?= 1x
OUT         ?= out

.PHONY: all build test fmt-check vet staticcheck unit bench fuzz demo clean

all: build

## build: the bale binary in bin/
build:
	$(GO) build -trimpath -o bin/bale ./cmd/bale

## test: formatting, go vet, staticcheck and the race-enabled tests
test: fmt-check vet staticcheck unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	@if [ -x "$(STATICCHECK)" ]; then "$(STATICCHECK)" ./...; \
	else $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...; fi

unit:
	$(GO) test -race -count=1 ./...

## bench: Go benchmarks and whole-process runs (figures go in the issue notes)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

## fuzz: spec loading under the fuzzer for 60 s
fuzz:
	$(GO) test ./planner/spec -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s

## demo: bale's main job on embedded defaults, offline, from the repo's specs and fixtures
demo:
	$(GO) run ./cmd/bale vet specs/...
	$(GO) run ./cmd/bale eval specs/airgap

clean:
	rm -rf bin $(OUT)
