#!/usr/bin/env bash
# The main job, locally, end to end: install the emulator if missing, build the function
# packages (arm64 zips, what `up` deploys) and the same functions for this machine, find
# or start a PostgreSQL, start the emulator on 127.0.0.1, stand up the dev environment
# with payctl, serve its API locally with `payctl local start-api`, send one payment
# through it with curl (validate, then process), and show the row in PostgreSQL and the
# audit record. The local API is stopped at the end (Ctrl-C, as a user would); the
# emulator keeps running so you can explore, and the script prints how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PAYCTL_EMULATOR_PORT:-5000}"
API_PORT="${PAYCTL_LOCAL_PORT:-3000}"
scripts/setup-emulator.sh
scripts/package-functions.sh
cargo build --locked --bin payctl
cargo build --release --locked -p validator -p processor -p audit-logger
# A PostgreSQL: 127.0.0.1:5432 if one answers, else a throwaway cluster under .pgtest/.
DB_URL="$(scripts/test-postgres.sh)"
DB_URL="${DB_URL%/*}/payments"
PSQL="$(command -v psql || echo "$(cat .pgtest/bin 2>/dev/null)/psql")"

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export PAYCTL_CONFIG=scripts/demo.toml
if curl -fsS "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1; then
  echo "using the emulator already running on $AWS_ENDPOINT_URL" >&2
else
  MOTO_IAM_LOAD_MANAGED_POLICIES=true nohup .venv/bin/moto_server -H 127.0.0.1 -p "$PORT" > .venv/moto.log 2>&1 &
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

# The API, served locally by the functions' host binaries.
LOG=.venv/local-api.log
./target/debug/payctl local start-api --env dev --port "$API_PORT" --database-url "$DB_URL" --poll-event-sources 2>"$LOG" &
LOCAL=$!
trap 'kill -INT $LOCAL 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q "listens on" "$LOG" && break
  kill -0 "$LOCAL" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.2
done
API="http://127.0.0.1:$API_PORT"
KEY="$(./target/debug/payctl outputs --env dev --json --show-api-key | python3 -c 'import json,sys; print(json.load(sys.stdin)["APIKey"])')"
TXN="txn_demo_$(date +%s)"
echo
echo "POST $API/validate"
curl -sS -X POST "$API/validate" -H "x-api-key: $KEY" -H 'content-type: application/json' \
  -d "{\"transaction_id\": \"$TXN\", \"amount\": \"100.00\", \"currency\": \"USD\", \"customer_id\": \"cust_456\"}"
echo
echo "POST $API/process"
curl -sS -X POST "$API/process" -H "x-api-key: $KEY" -H 'content-type: application/json' \
  -d "{\"transaction_id\": \"$TXN\"}"
echo
echo
echo "PostgreSQL ($DB_URL):"
"$PSQL" "$DB_URL" -c "SELECT transaction_id, amount_minor, currency, customer_id, processed_at FROM payments WHERE transaction_id = '$TXN'"
echo "Audit trail (the table's stream, through the audit logger):"
for _ in $(seq 1 150); do
  [ "$(grep -c "audit record s3://.*/$TXN/" "$LOG")" -ge 2 ] && break
  sleep 0.2
done
grep -o "audit record s3://.*/$TXN/.*" "$LOG" || { echo "no audit record yet; see $LOG" >&2; exit 1; }
kill -INT "$LOCAL"
wait "$LOCAL" || true
trap - EXIT
echo "(the local API's log, with each function's lines: $LOG)"

cat >&2 <<EOT

The stack runs on the local emulator. To use it from this shell:
  export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 PAYCTL_CONFIG=scripts/demo.toml
  ./target/debug/payctl local start-api --env dev --database-url $DB_URL --poll-event-sources
  ./target/debug/payctl down --env dev --purge
Stop the emulator with: kill \$(cat .venv/moto.pid)
EOT
