#!/usr/bin/env bash
# rustfmt on this workspace's own files only. (`cargo fmt --all` would also
# format resilis-core and the rest of the host workspace: path dependencies.)
set -euo pipefail
cd "$(dirname "$0")"
find . -path ./target -prune -o -name '*.rs' -print0 | xargs -0 rustfmt --edition 2024 "$@"
