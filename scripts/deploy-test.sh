#!/usr/bin/env bash
# Tests deploy/ as an operator would use it: builds the FROM-scratch image from the static
# binary, starts the compose file's three nodes on their own network, writes, kills the
# leader's container, writes on the new leader, starts the old one again and checks that
# every node holds the same rows. Needs Docker Engine and Compose (v2 plugin or v1
# docker-compose). Leaves nothing behind: its own project, volumes and image are removed.
#
#   make deploy-test
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "deploy-test: needs Docker Compose (docker compose or docker-compose)" >&2
  exit 1
fi
docker info >/dev/null 2>&1 || { echo "deploy-test: the Docker daemon does not answer" >&2; exit 1; }

project="tandemdeploytest$$"
image="tandem:deploytest-$$"
work=$(mktemp -d)
dc() { TANDEM_IMAGE="$image" "${compose[@]}" -p "$project" -f deploy/docker-compose.yml "$@"; }
cleanup() {
  dc down -v --remove-orphans >/dev/null 2>&1 || true
  docker rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
fail() { echo "deploy-test: FAILED: $*" >&2; dc logs --tail 30 >&2 || true; exit 1; }

step "building the static binary and the image $image"
CGO_ENABLED=0 go build -trimpath -o "$work/tandem" ./cmd/tandem
cp deploy/Dockerfile "$work/"
docker build -q -t "$image" "$work" >/dev/null

step "starting the three nodes (project $project)"
dc up -d >/dev/null 2>&1 || fail "compose up"

cluster=n1:9001,n2:9001,n3:9001
# tandem runs a CLI command inside the container of a running node.
tandem() {
  local node=$1; shift
  docker exec "$(dc ps -q "$node")" /tandem "$@"
}
# members prints "ID ADDRESS ROLE LEADER APPLIED HEALTHY" lines as seen through node $1.
members() { tandem "$1" cluster list --cluster "$cluster" --timeout 5s 2>/dev/null | tail -n +2; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    [ $SECONDS -lt $until ] || fail "waited $what"
    sleep 1
  done
}
three_voters() { [ "$(members "$1" | awk '$3 == "voter" && $6 == "true"' | wc -l)" = 3 ] && members "$1" | awk '$4 == "true"' | grep -q .; }
wait_for 90 "for 3 healthy voters and a leader" three_voters n2

health() { docker inspect --format '{{.State.Health.Status}}' "$(dc ps -q "$1")"; }
all_healthy() { [ "$(health n1)" = healthy ] && [ "$(health n2)" = healthy ] && [ "$(health n3)" = healthy ]; }
wait_for 60 "for Docker to report the three containers healthy (their health check)" all_healthy

step "writing"
tandem n2 sql --cluster "$cluster" "CREATE TABLE t(x); INSERT INTO t VALUES (1)" || fail "first write"

leader=$(members n2 | awk '$4 == "true" {split($2, a, ":"); print a[1]}')
[ -n "$leader" ] || fail "no leader in the member list"
survivor=n1
[ "$leader" != n1 ] || survivor=n2
step "killing the leader's container ($leader)"
docker kill "$(dc ps -q "$leader")" >/dev/null

step "writing on the new leader"
write_again() { tandem "$survivor" sql --cluster "$cluster" --timeout 5s "INSERT INTO t VALUES (2)" >/dev/null 2>&1; }
wait_for 60 "for a write after the kill" write_again

step "starting $leader again; it catches up"
dc start "$leader" >/dev/null 2>&1 || fail "compose start $leader"
caught_up() {
  local n
  for n in n1 n2 n3; do
    [ "$(tandem "$n" sql --cluster "$n:9001" --consistency stale --format csv "SELECT count(*) AS c FROM t" 2>/dev/null | tail -1)" = 2 ] || return 1
  done
}
wait_for 60 "for every node to hold both rows" caught_up
wait_for 60 "for 3 healthy voters after the restart" three_voters "$survivor"
wait_for 60 "for Docker to report the three containers healthy after the restart" all_healthy

step "deploy test passed: every node holds the same 2 rows"
