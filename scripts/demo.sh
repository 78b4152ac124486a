#!/usr/bin/env bash
# The main job, locally: install the emulator if missing, build the function packages
# (arm64 zips, scripts/package-functions.sh), start the emulator on 127.0.0.1, stand up
# the dev environment against it with payctl and print the outputs. The emulator keeps
# running afterwards so you can explore; the script prints how to use and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PAYCTL_EMULATOR_PORT:-5000}"
scripts/setup-emulator.sh
scripts/package-functions.sh
cargo build --locked --bin payctl

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
if curl -fsS "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1; then
  echo "using the emulator already running on $AWS_ENDPOINT_URL" >&2
else
  nohup .venv/bin/moto_server -H 127.0.0.1 -p "$PORT" > .venv/moto.log 2>&1 &
  echo $! > .venv/moto.pid
  for _ in $(seq 1 100); do
    curl -fsS "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break
    sleep 0.2
  done
  echo "started the emulator on $AWS_ENDPOINT_URL (pid $(cat .venv/moto.pid), log .venv/moto.log)" >&2
fi

./target/debug/payctl up --env dev
echo
./target/debug/payctl outputs --env dev

cat >&2 <<EOT

The stack runs on the local emulator. To use it from this shell:
  export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  ./target/debug/payctl outputs --env dev
  ./target/debug/payctl down --env dev
Stop the emulator with: kill \$(cat .venv/moto.pid)
EOT
