# Build, test and try bastion. Needs only Go and a C compiler (for
# mattn/go-sqlite3); tools are installed into .tools/ on first use. With
# node and npm, the build also brings the console's session player
# (asciinema-player, "make player"); without them the console works but
# for replay in the browser.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# mattn/go-sqlite3 is a cgo package, and -race needs cgo too.
export CGO_ENABLED := 1

GO ?= go
TOOLS := $(CURDIR)/.tools
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)
# litewitness and witnessctl: a C2SP tlog-witness nobody here wrote, that
# the tests push the journal's checkpoints to.
TORCHWOOD_VERSION := v0.6.1
WITNESS_TOOLS := $(TOOLS)/torchwood-$(TORCHWOOD_VERSION)
export LITEWITNESS := $(WITNESS_TOOLS)/litewitness
export WITNESSCTL := $(WITNESS_TOOLS)/witnessctl

# The release version stamped into the binary: the nearest tag, if any.
# Without one, "bastion version" falls back to the Go build information.
VERSION ?= $(shell git describe --tags --dirty 2>/dev/null)
LDFLAGS := $(if $(VERSION),-X main.version=$(VERSION))

FUZZTIME ?= 10s

.PHONY: build install test fmt-check vet staticcheck witness-tools bench demo fuzz clean player

# make install copies the binary to $(PREFIX)/bin: /usr/local/bin, or
# "make install PREFIX=~/.local" for ~/.local/bin.
PREFIX ?= /usr/local

# The web console replays sessions with asciinema-player, pinned in
# bastion/console/player/package-lock.json: npm ci installs it, and its
# two files are copied into the directory the binary embeds (ignored by
# git: never committed). Without node and npm this says so and does
# nothing; the console then says replay needs this build.
PLAYER_DIR := bastion/console/player
PLAYER_FILES := asciinema-player.min.js asciinema-player.css

player:
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
		(cd $(PLAYER_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); \
		for f in $(PLAYER_FILES); do \
			cp $(PLAYER_DIR)/node_modules/asciinema-player/dist/bundle/$$f $(PLAYER_DIR)/dist/$$f.tmp; \
			mv $(PLAYER_DIR)/dist/$$f.tmp $(PLAYER_DIR)/dist/$$f; \
		done; \
	else \
		echo "make player: node and npm are not installed: the console is built without its session player"; \
	fi

build: player
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/bastion ./cmd/bastion

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/bastion $(DESTDIR)$(PREFIX)/bin/bastion

# Tests whose point is size, not concurrency: -race makes them five to
# ten times slower and finds nothing the other tests do not, so they run
# without it, beside the others. "go test -race ./..." still runs them.
SCALE_TESTS := ^(TestEvidenceQuarter|TestBundle)$$
SCALE_PKGS := ./cmd/bastion

# The packages whose tests take longest, first: go test runs two packages
# at a time, starting them in the order given, and the others fit in
# beside them.
SLOW_PKGS := ./cmd/bastion ./bastion

# What the browser tests keep for a person to look at afterwards (each
# step's screenshot): test-artefacts/, which git ignores. Give
# BASTION_TEST_ARTEFACTS to keep them elsewhere.
BASTION_TEST_ARTEFACTS ?= $(CURDIR)/test-artefacts

# The two go test runs side by side; each prints its own results, and the
# target fails if either does. A race-built process that exits 0 sleeps
# for GORACE's atexit_sleep_ms (1 s by default) so that goroutines still
# running can report a race; every test binary does. GORACE from the
# environment comes after, and wins.
test: player fmt-check vet staticcheck witness-tools
	export BASTION_TEST_ARTEFACTS='$(BASTION_TEST_ARTEFACTS)'; \
	$(GO) test -count=1 -timeout 15m -run '$(SCALE_TESTS)' $(SCALE_PKGS) & scale=$$!; \
	race=0; GORACE="atexit_sleep_ms=10 $${GORACE:-}" $(GO) test -race -count=1 -timeout 15m -skip '$(SCALE_TESTS)' $(SLOW_PKGS) ./... || race=$$?; \
	wait $$scale || { echo "make test: the scale tests (without -race) failed"; exit 1; }; \
	exit $$race

witness-tools: $(LITEWITNESS) $(WITNESSCTL)

$(LITEWITNESS) $(WITNESSCTL) &:
	@mkdir -p $(WITNESS_TOOLS).tmp
	GOBIN=$(WITNESS_TOOLS).tmp $(GO) install filippo.io/torchwood/cmd/litewitness@$(TORCHWOOD_VERSION) filippo.io/torchwood/cmd/witnessctl@$(TORCHWOOD_VERSION)
	@rm -rf $(WITNESS_TOOLS) && mv $(WITNESS_TOOLS).tmp $(WITNESS_TOOLS)

fmt-check:
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path './.tools/*' -not -path '*/testdata/*' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then \
		echo "these files need gofmt -w:"; echo "$$files"; exit 1; \
	fi

vet:
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

# Installed under a versioned name, so that changing STATICCHECK_VERSION
# installs the new one.
$(STATICCHECK):
	@mkdir -p $(TOOLS)/bin.tmp
	GOBIN=$(TOOLS)/bin.tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/bin.tmp/staticcheck $@
	@rmdir $(TOOLS)/bin.tmp

# The Go benchmarks, BENCHCOUNT times each for a median, then the end-to-end
# ones (.ci/bench.sh: bastion record against script(1), bastion verify against
# sha256sum, alternating, BENCH_ROUNDS rounds), which also prints the Go
# figures against their targets. Method and results: docs/BENCHMARKS.md.
# BenchmarkFrontIdle compares the process's resident set after its
# sessions closed with its start, so each of its counts runs in a fresh
# process: after other benchmarks the start is already large.
BENCHTIME ?= 3s
BENCHCOUNT ?= 3
FRESH_BENCH := ^BenchmarkFrontIdle$$

bench: player witness-tools
	@out=$$(mktemp -t bastion-gobench.XXXXXX); trap 'rm -f "$$out"' EXIT; \
	$(GO) test -run '^$$' -bench . -skip '$(FRESH_BENCH)' -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) ./... | tee "$$out"; \
	for i in $$(seq $(BENCHCOUNT)); do \
		$(GO) test -run '^$$' -bench '$(FRESH_BENCH)' -benchmem -benchtime 1x -count 1 ./cmd/bastion | tee -a "$$out"; \
	done; \
	./.ci/bench.sh "$$out"

# The demo gets a fresh home of its own, so it never touches ~/.bastion
# and always starts from nothing. The home is kept for a look afterwards.
demo: build
	@home=$$(mktemp -d -t bastion-demo.XXXXXX); \
	echo "BASTION_HOME=$$home"; \
	BASTION_HOME=$$home ./bin/bastion demo

# Runs every fuzz target for FUZZTIME each (go test -fuzz takes one target
# in one package at a time). Minimizing is bounded: a target whose every
# run commits to a journal would otherwise spend the whole FUZZTIME
# minimizing its first new input.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		list=$$($(GO) test -list '^Fuzz' "$$pkg"); \
		for target in $$(grep '^Fuzz' <<<"$$list" || true); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 50x "$$pkg"; \
		done; \
	done

clean:
	rm -rf bin .tools $(PLAYER_DIR)/node_modules
	rm -f $(addprefix $(PLAYER_DIR)/dist/,$(PLAYER_FILES))
	rm -f coverage.out coverage.html *.coverprofile
