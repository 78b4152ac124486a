#!/usr/bin/env bash
# Builds the three payment functions for Lambda (provided.al2023, arm64) as
# target/lambda/<function>/bootstrap.zip, with cargo-lambda from PyPI (it brings its own
# zig linker) installed into .venv/, and the Rust arm64 target added by rustup.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/cargo-lambda ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "cargo-lambda==1.9.2"
fi
rustup target add aarch64-unknown-linux-gnu >/dev/null
PATH="$PWD/.venv/bin:$PATH" cargo lambda build --release --arm64 --output-format zip --locked \
  -p validator -p processor -p audit-logger
ls -l target/lambda/*/bootstrap.zip
