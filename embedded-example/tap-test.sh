#!/usr/bin/env bash
# The Embassy stack on the host against a real redis-server, over a TAP
# device, all inside a network namespace this script creates (run as root).
#
#   namespace resilis-tap-<pid>
#     tap device rtap0 198.51.100.1/24  <- redis-server: plain :6379, TLS :6380
#     embassy-net on the same TAP    198.51.100.2/24 (the host binary)
#
# 198.51.100.0/24 is TEST-NET-2 (documentation only; chosen not to overlap
# the machine's own subnet), and every address lives in the namespace:
# nothing is added to the machine's own namespace, and nothing leaves it. Certificates are made here with openssl: an EC P-256 CA,
# a server certificate it signs (CA:FALSE, serverAuth, SAN redis.test and
# 198.51.100.1), and a second CA that signed nothing, for the negative check.
#
# Then: the binary checks plain and TLS (PING, SET/GET, verification), this
# script restarts redis-server while the binary keeps writing and reading
# (cached keys from the fallback cache, uncached keys and writes failing with
# the reason), and the binary must see the core's backoff reconnect. Every
# wait is bounded; teardown (kill by PID, delete TAP and namespace) runs on any exit.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if [[ $EUID -ne 0 ]]; then
    echo "FAIL tap-test: needs root (network namespace, TAP device)"
    exit 1
fi
for tool in ip openssl redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "FAIL tap-test: $tool not installed"; exit 1; }
done

NS="resilis-tap-$$"
TAP=rtap0
REDIS_IP=198.51.100.1
SELF_CIDR=198.51.100.2/24
PORT=6379
TLS_PORT=6380
WORK="$(mktemp -d /tmp/resilis-tap.XXXXXX)"
REDIS_PID=""
HOST_PID=""
LOG="$WORK/host.log"

cleanup() {
    local status=$?
    # A signal can land in a command substitution's subshell: only the
    # script itself tears down.
    [[ "$BASHPID" == "$$" ]] || exit "$status"
    set +e
    for pid in "$HOST_PID" "$REDIS_PID"; do
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null
    done
    for pid in "$HOST_PID" "$REDIS_PID"; do
        [[ -n "$pid" ]] || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    done
    ip -n "$NS" link del "$TAP" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
check() { # check DESCRIPTION COMMAND...
    local what="$1"; shift
    if "$@"; then
        echo "PASS tap-test: $what"; passed=$((passed + 1))
    else
        echo "FAIL tap-test: $what"; failed=$((failed + 1))
    fi
}
in_log() { grep -q -- "$1" "$LOG"; }
count_in_log() { grep -c -- "$1" "$LOG" || true; }

# wait_for SECONDS COMMAND...: polls every 100 ms; false on timeout.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
# After "PASS <what>: shut down" the binary prints no event of that connection.
no_events_after_shutdown() {
    local pair what tag line
    for pair in "wrong-ca|wrong-ca" "plaintext to the TLS port|plain-to-tls-port" \
        "TLS to the plaintext port|tls-to-plain-port"; do
        what="${pair%%|*}"
        tag="event[${pair##*|}]"
        line=$(grep -n -F "PASS $what: shut down" "$LOG" | head -1 | cut -d: -f1)
        [[ -n "$line" ]] || return 1
        if tail -n +"$((line + 1))" "$LOG" | grep -q -F "$tag"; then
            return 1
        fi
    done
}
host_running() { [[ -n "$HOST_PID" ]] && kill -0 "$HOST_PID" 2>/dev/null; }

echo "== build the host binary"
cargo build --quiet -p resilis-embassy-host
BIN="$CARGO_TARGET_DIR/debug/resilis-embassy-host"

echo "== certificates (EC P-256)"
(
    cd "$WORK"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=resilis test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
    openssl ecparam -name prime256v1 -genkey -noout -out other-ca.key
    openssl req -x509 -new -key other-ca.key -sha256 -days 2 -subj "/CN=some other CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out other-ca.pem
    openssl ecparam -name prime256v1 -genkey -noout -out server.key
    openssl req -new -key server.key -subj "/CN=redis.test" -out server.csr
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=DNS:redis.test,IP:$REDIS_IP" > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -sha256 -extfile server.ext -out server.pem 2>/dev/null
    openssl x509 -in ca.pem -outform der -out ca.der
    openssl x509 -in other-ca.pem -outform der -out other-ca.der
    openssl verify -CAfile ca.pem server.pem >/dev/null
)

echo "== namespace $NS, TAP $TAP"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip -n "$NS" addr add "$REDIS_IP/24" dev "$TAP"
ip -n "$NS" link set "$TAP" up

start_redis() {
    ip netns exec "$NS" redis-server --bind "$REDIS_IP" --port "$PORT" \
        --tls-port "$TLS_PORT" --tls-cert-file "$WORK/server.pem" \
        --tls-key-file "$WORK/server.key" --tls-ca-cert-file "$WORK/ca.pem" \
        --tls-auth-clients no --protected-mode no --save '' --appendonly no \
        --dir "$WORK" --logfile "$WORK/redis.log" &
    REDIS_PID=$!
    redis_up() {
        [[ "$(ip netns exec "$NS" redis-cli -h "$REDIS_IP" -p "$PORT" ping 2>/dev/null)" == PONG ]]
    }
    wait_for 10 redis_up || { echo "FAIL tap-test: redis-server did not start"; cat "$WORK/redis.log"; exit 1; }
    echo "redis-server pid $REDIS_PID on $REDIS_IP:$PORT (TLS :$TLS_PORT)"
}

stop_redis() {
    kill "$REDIS_PID"
    local pid=$REDIS_PID
    gone() { ! kill -0 "$pid" 2>/dev/null; }
    wait_for 10 gone || kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    REDIS_PID=""
}

start_redis

echo "== host binary in the namespace"
ip netns exec "$NS" "$BIN" --tap "$TAP" --address "$SELF_CIDR" --redis "$REDIS_IP" \
    --port "$PORT" --tls-port "$TLS_PORT" --ca "$WORK/ca.der" \
    --wrong-ca "$WORK/other-ca.der" --server-name redis.test >"$LOG" 2>&1 &
HOST_PID=$!

outage_ready() { in_log OUTAGE_READY || ! host_running; }
wait_for 60 outage_ready || true
if ! in_log OUTAGE_READY; then
    echo "FAIL tap-test: the host binary never got to the outage step"
    cat "$LOG"
    exit 1
fi

echo "== restart redis-server (the binary keeps reading)"
stop_redis
down_long_enough() {
    ! host_running || { (($(count_in_log "source=Fallback") >= 3)) && in_log "event\[plain\].*Reconnecting { attempt: 4,"; }
}
wait_for 30 down_long_enough || true
start_redis

host_done() { ! host_running; }
if ! wait_for 110 host_done; then
    echo "FAIL tap-test: the host binary did not finish in time"
fi
host_status=0
wait "$HOST_PID" || host_status=$?
HOST_PID=""

echo "== host binary output (events and checks)"
grep -E "^(PASS|FAIL)|event\[(plain|tls)\].*(Disconnected|Reconnecting|Down|Ready|Fallback)|event\[wrong-ca\].*Failed|event\[[a-z-]+\].*to: Shutdown|source=Fallback|Unavailable" "$LOG" | head -80 || true

check "host binary exited 0 (was $host_status)" test "$host_status" -eq 0
check "plain: PING -> PONG" in_log "PASS plain: PING -> PONG"
check "plain: SET then GET" in_log "PASS plain: SET resilis:e2e:plain then GET"
check "TLS 1.3 verified: PING -> PONG" in_log "PASS tls: PING -> PONG"
check "TLS 1.3 verified: SET then GET" in_log "PASS tls: SET resilis:e2e:tls then GET"
check "TLS with an untrusted CA refused" in_log "PASS tls with an untrusted CA"
check "plaintext to the TLS port diagnosed (the seed's failure)" in_log "PASS plaintext to the TLS port: diagnosed as TlsRequired"
check "TLS to the plaintext port diagnosed" in_log "PASS TLS to the plaintext port: diagnosed as TlsTimeout"
check "shutdown ends the failing connections" test "$(count_in_log "shut down, no more reconnects")" -eq 3
check "no reconnect after shutdown" no_events_after_shutdown
check "redis-server stop seen by the core (plain: EOF)" in_log "event\[plain\].*Disconnected { reason: Transport(Closed) }"
check "redis-server stop seen by the core (TLS: EOF)" in_log "event\[tls\].*Disconnected { reason: Transport(Closed) }"
check "reconnects refused while redis-server is down" in_log "event\[plain\].*Disconnected { reason: Transport(Refused) }"
check "backoff: reconnect attempt 1" in_log "event\[plain\].*Reconnecting { attempt: 1,"
check "backoff: attempt 2 after 200ms" in_log "event\[plain\].*Reconnecting { attempt: 2, max_attempts: 10, delay: 200ms }"
check "backoff: attempt 3 after 400ms" in_log "event\[plain\].*Reconnecting { attempt: 3, max_attempts: 10, delay: 400ms }"
check "backoff: attempt 4 after 800ms" in_log "event\[plain\].*Reconnecting { attempt: 4, max_attempts: 10, delay: 800ms }"
check "TLS connection reconnected too" in_log "event\[tls\].*FallbackReleased"
check "fallback cache served reads of cached keys while down" in_log 'source=Fallback'
check "reads of uncached keys failed with the reason while down" in_log "PASS outage: .* reads of an uncached key failed as Unavailable"
check "writes failed as not applied, with the reason, while down" in_log "PASS outage: .* heartbeats refused as not applied"
check "fallback released on reconnect" in_log "event\[plain\].*FallbackReleased"
check "both connections answer after the restart" in_log "PASS outage: both connections answer again"

if ((failed > 0)); then
    echo "== full host binary log"
    cat "$LOG"
    echo "== redis-server log (tail)"
    tail -20 "$WORK/redis.log" || true
fi
echo "tap-test: $passed passed, $failed failed"
((failed == 0))
