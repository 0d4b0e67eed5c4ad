#!/usr/bin/env bash
# The README's five-minute tour, offline: convosd on the CLI double (tests/fakeconvos), driven
# by convosctl, with a second member ("Bob", the double used directly) who joins and writes.
#
#   scripts/tour.sh                 # after `make setup`; re-runnable: every run starts clean
#   TOUR_DIR=/tmp/x scripts/tour.sh # where its state, socket, log and network go
#
# tests/test_tour.py runs it, so what the README shows stays true.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY="$REPO/.venv/bin/python"
CTL="$REPO/.venv/bin/convosctl"
FAKE="$REPO/tests/fakeconvos/convos"
TOUR_DIR=${TOUR_DIR:-/tmp/convosd-tour-$(id -u)}
START_TIMEOUT_S=${START_TIMEOUT_S:-30}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "tour: $*" >&2; exit 1; }
[ -x "$CTL" ] || die "run \`make setup\` first ($CTL is missing)"

# A clean start on every run: a second run must not find the first one's binding.
if [ -f "$TOUR_DIR/convosd.pid" ]; then
  kill "$(cat "$TOUR_DIR/convosd.pid")" 2>/dev/null || true
fi
rm -rf "$TOUR_DIR"
mkdir -p "$TOUR_DIR/net"
chmod 700 "$TOUR_DIR"

# The daemon and Bob share this "network" directory; convosctl finds the daemon through
# CONVOSD_SOCKET (without it, it looks in the default places: convosctl --help).
export FAKECONVOS_NETWORK="$TOUR_DIR/net"
export CONVOSD_SOCKET="$TOUR_DIR/convosd.sock"

step "start convosd on the CLI double"
CONVOSD_ENV=dev CONVOSD_CLI="$PY $FAKE" CONVOSD_CLI_ENV_PASSTHROUGH='FAKECONVOS_*' \
  "$REPO/.venv/bin/convosd" --state-dir "$TOUR_DIR/state" --log-format json \
  >"$TOUR_DIR/convosd.log" 2>&1 &
DAEMON=$!
echo "$DAEMON" >"$TOUR_DIR/convosd.pid"
trap 'kill "$DAEMON" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true' EXIT

# Fail fast: give up when the daemon exits or is not ready in time (no endless loop).
deadline=$((SECONDS + START_TIMEOUT_S))
until grep -Eq '"event": ?"ready"' "$TOUR_DIR/convosd.log" 2>/dev/null; do
  if ! kill -0 "$DAEMON" 2>/dev/null; then
    cat "$TOUR_DIR/convosd.log" >&2
    die "convosd exited at start (its log is above)"
  fi
  [ "$SECONDS" -lt "$deadline" ] || die "convosd not ready after ${START_TIMEOUT_S}s: $TOUR_DIR/convosd.log"
  sleep 0.1
done
"$CTL" health

step "create a conversation (the agent's side)"
created=$("$CTL" --json create "Demo" --profile-name Agent)
echo "$created"
field() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$@"; }
conversation=$(field "$created" conversationId)
slug=$(field "$created" inviteSlug)

step "Bob joins with the invite; the daemon accepts him"
bob() {
  CONVOS_HOME="$TOUR_DIR/bob" CONVOS_SKIP_NEW_VERSION_CHECK=true \
    "$PY" "$FAKE" "$@" --env dev --json
}
bob conversations join "$slug" --profile-name Bob --timeout 20 >/dev/null
echo "Bob is a member of $conversation"

step "Bob writes; the agent sees the event"
bob conversation send-text "$conversation" "hi agent, it's Bob" >/dev/null
seen=""
for _ in $(seq 100); do
  seen=$("$CTL" --json events --after 0 | grep '"type": "message"' || true)
  [ -n "$seen" ] && break
  sleep 0.1
done
[ -n "$seen" ] || die "the agent never saw Bob's message"
echo "$seen"

step "the agent answers; Bob reads it"
"$CTL" send "hello Bob" --idempotency-key tour-1
bob conversation messages "$conversation" --sync | "$PY" -c '
import json, sys
texts = [m.get("content") for m in json.load(sys.stdin)]
assert "hello Bob" in texts, texts
print("Bob sees:", "hello Bob")'

step "what the agent journaled"
"$CTL" events --after 0

step "stop (SIGTERM: a graceful stop)"
kill -TERM "$DAEMON"
wait "$DAEMON"
trap - EXIT
rm -f "$TOUR_DIR/convosd.pid"
echo "tour done; state, log and network in $TOUR_DIR"
