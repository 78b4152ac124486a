#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests that run the real payctl binary
# against moto servers the tests start on free ports, the payment functions' tests
# against moto and a real PostgreSQL (see scripts/test-postgres.sh), and checks of the
# deployable arm64 packages, which scripts/package-functions.sh builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-emulator.sh
scripts/package-functions.sh
PAYCTL_TEST_DATABASE_URL="$(scripts/test-postgres.sh)"
export PAYCTL_TEST_DATABASE_URL
if [ -f .pgtest/bin ]; then
  pg_bin="$(cat .pgtest/bin)"
  stop=("$pg_bin/pg_ctl" -D .pgtest/db -m fast stop)
  if [ "$(id -u)" = 0 ]; then stop=(runuser -u nobody -- "${stop[@]}"); fi
  trap '"${stop[@]}" >/dev/null 2>&1 || true' EXIT
fi
echo "PostgreSQL for the tests: $PAYCTL_TEST_DATABASE_URL" >&2
cargo test --workspace --locked "$@"
