# Build, test and lint Tandem. `make demo` and `make test` are the README's two commands.
GO      ?= go
BIN     := bin/tandem
PKGS    := ./...
# Packages with concurrency run under the race detector.
RACE    := ./internal/... ./server/... ./client/... ./driver/... ./wire/...
STATICCHECK_VERSION := 2026.1

export CGO_ENABLED := 0

.PHONY: build demo test unit race e2e lint fuzz bench deploy-test clean

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/tandem

demo: build
	./$(BIN) demo

# The full default suite: lint, unit and in-process cluster tests (race detector on the
# concurrent packages), then multi-process tests that start the real binary.
test: lint
	./scripts/test.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck $(PKGS)

fuzz:
	$(GO) test ./wire/ -run '^$$' -fuzz FuzzReadFrame -fuzztime 30s
	$(GO) test ./wire/ -run '^$$' -fuzz FuzzUnmarshal -fuzztime 30s

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3s ./e2e/

# deploy/ as an operator uses it, with Docker Engine and Compose: image, three containers,
# kill of the leader, catch-up (`make test` runs it too where a Docker daemon answers).
deploy-test:
	./scripts/deploy-test.sh

clean:
	rm -rf bin
