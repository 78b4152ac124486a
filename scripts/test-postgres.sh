#!/usr/bin/env bash
# Prints a PostgreSQL URL for the tests, in this order:
#   1. PAYCTL_TEST_DATABASE_URL, if set;
#   2. a server answering on 127.0.0.1:5432 (user postgres, database test, trust auth);
#   3. a throwaway cluster made with the system's initdb/pg_ctl under .pgtest/ (started
#      here; scripts/test.sh stops it);
#   4. otherwise it fails naming the package to install. It never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PAYCTL_TEST_DATABASE_URL:-}" ]; then
  echo "$PAYCTL_TEST_DATABASE_URL"
  exit 0
fi
if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "postgres://postgres@127.0.0.1:5432/test"
  exit 0
fi

bin=""
for dir in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" /usr/lib/postgresql/*/bin; do
  if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then bin="$dir"; fi
done
if [ -z "$bin" ]; then
  echo "no PostgreSQL for the tests: set PAYCTL_TEST_DATABASE_URL, start a server on 127.0.0.1:5432, or install the package that provides initdb and pg_ctl (Debian: apt-get install postgresql)" >&2
  exit 1
fi

data="$PWD/.pgtest"
port=55432
run=()
# initdb refuses to run as root: use an unprivileged account for the throwaway cluster.
if [ "$(id -u)" = 0 ]; then run=(runuser -u nobody --); fi
rm -rf "$data" && mkdir -p "$data" && chmod 777 "$data"
"${run[@]}" "$bin/initdb" -D "$data/db" -U postgres -A trust >"$data/initdb.log" 2>&1
"${run[@]}" "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w \
  -o "-p $port -k $data -c listen_addresses=127.0.0.1" start >/dev/null
"${run[@]}" "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE DATABASE test" >/dev/null
echo "$bin" > "$data/bin"
echo "postgres://postgres@127.0.0.1:$port/test"
