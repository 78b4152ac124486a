#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests that run the real payctl binary
# against moto servers the tests start themselves on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-emulator.sh
cargo test --workspace --locked "$@"
