#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60). cargo-fuzz needs nightly features; the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in scenario report; do
  echo "== fuzz $target for ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds"
done
