# Ops: the two commands are `make run` and `make test`.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X github.com/opsgraph/ops/internal/app.Version=$(VERSION) -X github.com/opsgraph/ops/internal/app.Commit=$(COMMIT)
FUZZTIME ?= 30s
ARGS     ?=

.PHONY: run build test test-deps lint fuzz bench bench-go bench-smoke clean

## run: start Ops on embedded defaults (http://127.0.0.1:7070, data in ./data)
# The binary replaces the shell (exec), so Ctrl-C reaches Ops itself, which
# stops cleanly and exits 0.
run: build
	exec bin/ops serve $(ARGS)

## build: the ops binary in bin/
build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ops ./cmd/ops

## test: install what the tests need, then vet and run every test with the race detector
test: test-deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal bench web)" || { echo "gofmt needed:"; gofmt -l cmd internal bench web; exit 1; }
	$(GO) test -race -count=1 -timeout 12m ./...
	$(MAKE) bench-smoke

# Tests use only the embedded NATS server so far; system packages that later
# modules need (slapd, krb5-kdc, promtool, ...) are installed here.
test-deps:
	@bash scripts/test-deps.sh

## lint: go vet, gofmt and golangci-lint (fetched through the module proxy)
lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal bench web)" || { gofmt -l cmd internal bench web; exit 1; }
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run ./...

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## bench: Go benchmarks, then the side-by-side scripts in bench/
bench: bench-go
	bash bench/run.sh

## bench-smoke: every bench script in a tiny mode (seconds each): they still run
bench-smoke:
	SMOKE=1 bash bench/run.sh

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin data
