#!/usr/bin/env bash
# Flash and RAM of resilis-core + its RESP codec on thumbv7em-none-eabihf,
# measured with arm-none-eabi-size, printed as a markdown table.
#
#   footprint-baseline   cortex-m-rt + panic handler + an empty loop
#   footprint-core       the same plus resilis-core driven over a scripted peer
#   core + codec         the difference: what the core costs a firmware
#   firmware             the full Nucleo-F767ZI example (Ethernet, DHCP, TLS)
#
# Flash = .vector_table + .text + .rodata + .data; RAM = .data + .bss (+ .uninit).
# Nothing here uses a heap: the binaries link no allocator at all.
#
# Usage: ./footprint.sh            (builds what it measures, release profile)
# Exit status: non-zero when a build or a measurement fails. The 16 KiB goal
# is reported, not enforced (see the README for why it is missed today).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
TARGET=thumbv7em-none-eabihf
OUT="$CARGO_TARGET_DIR/$TARGET/release"
GOAL=$((16 * 1024))

cargo build --quiet -p resilis-qemu --target "$TARGET" --release --bins
if [[ "${FOOTPRINT_SKIP_FIRMWARE:-0}" != 1 ]]; then
    cargo build --quiet -p resilis-gateway-f767 --target "$TARGET" --release
fi

# Prints "flash ram" for an ELF, from the sizes of its allocated sections.
measure() {
    arm-none-eabi-size -A -d "$1" | awk '
        $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" { flash += $2 }
        $1 == ".data" { flash += $2; ram += $2 }
        $1 == ".bss" || $1 == ".uninit" { ram += $2 }
        END { if (flash == 0) exit 1; print flash, ram }'
}

# Bytes of flash taken by symbols matching a regex (nm sizes, decimal).
symbols() {
    arm-none-eabi-nm --radix=d -S -C "$1" | awk -v re="$2" '
        NF >= 4 && $0 ~ re { sum += $2 } END { print sum + 0 }'
}

read -r base_flash base_ram < <(measure "$OUT/footprint-baseline")
read -r core_flash core_ram < <(measure "$OUT/footprint-core")
core_only_flash=$((core_flash - base_flash))
core_only_ram=$((core_ram - base_ram))
float_parse=$(symbols "$OUT/footprint-core" 'dec2flt|f64 as core::str::traits::FromStr|__muldf3|__divdf3|__aeabi_ul2d')

kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }

echo "| binary (thumbv7em-none-eabihf, opt-level z, LTO) | flash | RAM (static) |"
echo "| --- | ---: | ---: |"
echo "| footprint-baseline (cortex-m-rt, panic-halt, empty loop) | $base_flash B | $base_ram B |"
echo "| footprint-core (baseline + resilis-core, Connection<8> in a static) | $core_flash B | $core_ram B |"
echo "| **core + codec** (difference) | **$core_only_flash B ($(kib "$core_only_flash"))** | **$core_only_ram B** |"
echo "| of which f64 parsing for RESP3 doubles (core::num::dec2flt + soft-float) | $float_parse B ($(kib "$float_parse")) | 0 B |"
if [[ -f "$OUT/resilis-gateway-f767" ]]; then
    read -r fw_flash fw_ram < <(measure "$OUT/resilis-gateway-f767")
    echo "| resilis-gateway-f767 (full firmware: Ethernet, DHCP, TLS 1.3, cache) | $fw_flash B ($(kib "$fw_flash")) | $fw_ram B ($(kib "$fw_ram")) |"
fi
echo
echo "heap: none (no global allocator is linked in any of these binaries)"
if ((core_only_flash <= GOAL)); then
    echo "goal core + codec <= 16 KiB flash: MET ($core_only_flash B)"
else
    echo "goal core + codec <= 16 KiB flash: NOT MET ($core_only_flash B; $((core_only_flash - float_parse)) B without f64 parsing)"
fi
# No allocator symbol may be linked: the core promises no heap.
for elf in "$OUT/footprint-core" ${fw_flash:+"$OUT/resilis-gateway-f767"}; do
    if arm-none-eabi-nm "$elf" | grep -q '__rust_alloc\b\|__rg_alloc'; then
        echo "FAIL: $(basename "$elf") links a heap allocator" >&2
        exit 1
    fi
done
