#!/usr/bin/env bash
# Runs Tandem's default test suite. CGO_ENABLED=0 everywhere: the binary is pure Go.
# The race detector needs cgo, so the race run enables it for the concurrent packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0

echo "== unit and in-process cluster tests (race detector)"
CGO_ENABLED=1 go test -race -count=1 -timeout 20m ./internal/... ./server/... ./client/... ./driver/... ./wire/... ./bench/...

echo "== C heap leak check of the SQLite binding (needs modernc's allocation counters)"
go test -count=1 -tags memory.counters -run TestNoCLeaks ./internal/sqlite/

echo "== embedding API and multi-process tests (real binary)"
go test -count=1 -timeout 20m . ./cmd/... ./e2e/...

echo "== short fuzz runs of the frame decoder and the server's frame handling"
go test -run '^$' -fuzz '^FuzzReadFrame$' -fuzztime 10s ./wire/
go test -run '^$' -fuzz '^FuzzUnmarshal$' -fuzztime 10s ./wire/
go test -run '^$' -fuzz '^FuzzServerFrames$' -fuzztime 15s ./server/
echo "== short fuzz run of the changeset apply (library and direct paths)"
go test -run '^$' -fuzz '^FuzzApplyChangeset$' -fuzztime 15s ./internal/sqlite/

echo "== deploy/ with Docker: image from scratch, compose, kill of the leader, catch-up"
if docker info >/dev/null 2>&1 && { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }; then
  ./scripts/deploy-test.sh
else
  echo "NOT RUN: no Docker daemon or Compose on this machine (make deploy-test runs it where there is one)"
fi
