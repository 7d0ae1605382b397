#!/usr/bin/env bash
# proxy/smoke/run.sh: developer smoke run of pgshim against a throw-away PostgreSQL.
# Not the formal integration suite (tests/integration/); a quick check that pass-through works in
# both pool modes. Usage: proxy/smoke/run.sh BUILD_DIR [PG_PORT] [PGSHIM_PORT]
# Starts PostgreSQL with tests/harness/pgenv, runs psql, pgbench and the Python checks through
# pgshim in transaction and session mode, stops everything it started (by PID).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:?build dir}
PGPORT_=${2:-54201}
PORT=${3:-64201}
WORK=$(mktemp -d /tmp/pgshim-smoke.XXXXXX)
PY=/usr/bin/python3
fail=0
eval "$("$ROOT/tests/harness/pgenv" start --dir "$WORK/pg" --pg-port "$PGPORT_" --no-redis)" || exit 1
cleanup() { [ -n "${PID:-}" ] && kill -INT "$PID" 2>/dev/null; "$ROOT/tests/harness/pgenv" stop --dir "$WORK/pg" >/dev/null 2>&1; }
trap cleanup EXIT
printf '"postgres" "%s"\n' "$PGPASSWORD" > "$WORK/userlist.txt"
pgbench -h 127.0.0.1 -p "$PGPORT_" -U postgres -i -s 1 postgres >/dev/null 2>&1
for mode in transaction session; do
  cat > "$WORK/$mode.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PGPORT_ pool_size=5
[pgshim]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir = $WORK
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = $mode
max_client_conn = 400
logfile = $WORK/pgshim-$mode.log
INI
  "$BUILD/pgshim" -c "$WORK/$mode.ini" & PID=$!
  sleep 0.5
  echo "== $mode mode"
  psql -h "$WORK" -p "$PORT" -U postgres -d postgres -Atc "select 'unix socket ok'" || fail=1
  for m in simple extended $([ $mode = session ] && echo prepared); do
    out=$(pgbench -h 127.0.0.1 -p "$PORT" -U postgres -c 5 -j 2 -T 3 -M $m postgres 2>&1)
    echo "pgbench -M $m: $(echo "$out" | grep -E '^tps' | head -1)"
    echo "$out" | grep -q "failed transactions: 0 " || { echo "$out" | tail -3; fail=1; }
  done
  timeout 60 $PY "$ROOT/proxy/smoke/clients.py" "$PORT" $([ $mode = session ] && echo session) || fail=1
  [ $mode = transaction ] && { timeout 60 $PY "$ROOT/proxy/smoke/params.py" "$PORT" || fail=1; }
  kill -INT "$PID"; wait "$PID" 2>/dev/null; PID=
done
echo "smoke: $([ $fail = 0 ] && echo PASS || echo FAIL) (logs in $WORK)"
exit $fail
