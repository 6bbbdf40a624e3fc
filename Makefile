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
	# -p 1: packages one at a time, so whole-process timings are not shared
	# with another package's benchmark.
	$(GO) test -p 1 -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

## fuzz: spec loading and plan decoding under the fuzzer, 60 s each
fuzz:
	$(GO) test ./planner/spec -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s
	$(GO) test ./plan -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 60s

## demo: bale's main job on embedded defaults: the real bootstrap pack from
## specs/airgap and the fixtures in testdata/, offline, then checked
demo:
	$(GO) build -o bin/bale ./cmd/bale
	bin/bale vet specs/...
	bin/bale build specs/airgap -o $(OUT)
	bin/bale verify $(OUT)/bootstrap-pack-v1.tar
	cd $(OUT) && sha256sum -c bootstrap-pack-v1.tar.sha256

clean:
	rm -rf bin $(OUT)
