#!/usr/bin/env bash
# CI entry point for embedded-example (run as root by .ci/run):
#   1. the Nucleo-F767ZI firmware builds for thumbv7em-none-eabihf in release
#   2. resilis-core's transcript and RESP codec tests pass on a Cortex-M4
#      under qemu-system-arm (mps2-an386, semihosting)
#   3. host tests: the driver and the gateway against an in-memory Redis,
#      the firmware's constants, the TLS server-authentication guards (a
#      scripted hostile TLS 1.3 server); and each driver feature set compiles
#   4. the footprint table (flash/RAM of core + codec, and of the firmware)
#   5. the Embassy host binary against a real redis-server over TAP, in a
#      network namespace (plain, verified TLS 1.3, restart with backoff and
#      fallback reads)
# Every step prints PASS or FAIL; the last line counts them; the exit status
# is non-zero when any step failed. Needs: the thumbv7em-none-eabihf target,
# qemu-system-arm, binutils-arm-none-eabi, redis-server, iproute2, openssl.
set -uo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR=never
TARGET=thumbv7em-none-eabihf

passed=0
failed=0
step() { # step NAME COMMAND...
    local name="$1"; shift
    local started=$SECONDS
    echo "::: $name"
    if "$@"; then
        echo "PASS embedded-example: $name ($((SECONDS - started)) s)"
        passed=$((passed + 1))
    else
        echo "FAIL embedded-example: $name ($((SECONDS - started)) s)"
        failed=$((failed + 1))
    fi
}

prerequisites() {
    local ok=0
    for tool in cargo qemu-system-arm arm-none-eabi-size arm-none-eabi-nm redis-server redis-cli ip openssl; do
        command -v "$tool" >/dev/null || { echo "missing: $tool"; ok=1; }
    done
    if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
        echo "missing: rustup target add $TARGET"
        ok=1
    fi
    return $ok
}

host_tests() {
    cargo test -p resilis-gateway --lib &&
        cargo test -p resilis-embassy-host --test firmware_config &&
        cargo test -p resilis-embassy --test mock_server &&
        cargo test -p resilis-embassy --features tls --lib --test server_auth --test hostile_server
}
# Features are additive: each set a firmware may pick compiles on its own.
driver_features() {
    local features
    for features in "" net net,defmt tls,log; do
        echo "resilis-embassy features: [${features}]"
        cargo check -q -p resilis-embassy --target "$TARGET" --no-default-features \
            ${features:+--features "$features"} || return 1
    done
}

step "prerequisites" prerequisites
step "firmware builds (release, $TARGET)" \
    cargo build -p resilis-gateway-f767 --target "$TARGET" --release
step "driver feature sets compile for $TARGET" driver_features
# Both profiles: debug keeps overflow checks, release is the code firmware ships.
qemu_tests() {
    cargo test -p resilis-qemu --target "$TARGET" &&
        cargo test -p resilis-qemu --target "$TARGET" --release
}
step "core tests on Cortex-M4 under QEMU (debug and release)" qemu_tests
step "driver and application tests (host)" host_tests
step "footprint table" ./footprint.sh
step "Embassy over TAP against redis-server" ./tap-test.sh

echo "embedded-example: $passed passed, $failed failed"
((failed == 0))
