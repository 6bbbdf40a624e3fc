# bale's build, test and benchmark entry points. `make test` is what CI runs.
GO          ?= go
GOBIN       := $(shell $(GO) env GOPATH)/bin
STATICCHECK ?= $(GOBIN)/staticcheck
BENCHTIME   ?= 1x
FUZZTIME    ?= 20s
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

# staticcheck's version is tools/go.mod's; it is built from there when it
# is not installed.
staticcheck:
	@if [ ! -x "$(STATICCHECK)" ]; then \
		$(GO) build -C tools -o "$(STATICCHECK)" honnef.co/go/tools/cmd/staticcheck; fi
	"$(STATICCHECK)" ./...

# The tests that need a tool that is not installed skip (BALE_REQUIRE_TOOLS=1
# fails them instead, as CI does); each skip is recorded in $$BALE_SKIPPED and
# summed up in one line at the end. The exit status is go test's.
# -ldflags=-w: no DWARF in the test binaries (a third of a race link's time;
# stack traces and race reports use the runtime's own tables).
unit:
	@skipped=$$(mktemp); \
	echo "$(GO) test -race -count=1 -ldflags=-w ./..."; \
	BALE_SKIPPED="$$skipped" $(GO) test -race -count=1 -ldflags=-w ./...; status=$$?; \
	$(GO) run ./testsupport/cmd/skipped "$$skipped"; \
	rm -f "$$skipped"; exit $$status

## bench: Go benchmarks and whole-process runs (figures go in the issue notes)
bench:
	# -p 1: packages one at a time, so whole-process timings are not shared
	# with another package's benchmark.
	$(GO) test -p 1 -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

## fuzz: every hostile-input reader under the fuzzer, FUZZTIME each, one
## after another (go test -fuzz takes one target at a time)
FUZZ_TARGETS = \
	./planner/spec:FuzzParse \
	./plan:FuzzDecode \
	./archive:FuzzWalk \
	./source:FuzzDockerTarball \
	./source:FuzzLayout \
	./verify:FuzzPack \
	./pack:FuzzScan

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); \
	done

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
