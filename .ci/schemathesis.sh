#!/usr/bin/env bash
# Conformance fuzzing: schemathesis against a live todo-api, first over SQLite, then over a
# scratch PostgreSQL database, with the server's own GET /openapi.json as the oracle and
# every check on. See docs/FUZZING.md.
#
#   TODO_API_BIN=target/release/todo-api \
#   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bash .ci/schemathesis.sh
#
# SCHEMATHESIS_EXAMPLES (default 200; the longer run: 1000) test cases per operation and
# phase; SCHEMATHESIS_SEED (default 20261122) the seed; SCHEMATHESIS_DATABASES (default
# "sqlite postgres") which runs. Per database: a main pass (all phases, positive and negative
# data) and a negative-data fuzzing pass. Fails on any schemathesis failure, error or
# warning, a panic or a 5xx in the server's log, no authenticated success at all, or a
# server that does not exit 0 on SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bin="${TODO_API_BIN:?set TODO_API_BIN to the todo-api binary}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
[ -x "$bin" ] || { echo "TODO_API_BIN=$bin is not an executable" >&2; exit 2; }
examples="${SCHEMATHESIS_EXAMPLES:-200}"
seed="${SCHEMATHESIS_SEED:-20261122}"
databases="${SCHEMATHESIS_DATABASES:-sqlite postgres}"
secret="schemathesis-fuzz-secret-0123456789"
reports="$root/target/schemathesis"
venv="$root/target/venv-schemathesis"
req="$root/.ci/requirements-schemathesis.txt"

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

# --- the tool, in its own virtualenv, rebuilt when the pinned requirements change
step "schemathesis virtualenv ($venv)"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install -q -r "$req"
  echo "$want" >"$stamp"
fi
"$venv/bin/schemathesis" --version

work=$(mktemp -d)
# Our own copy, under a name that a `pkill todo-api` elsewhere on the machine does not hit.
cp "$bin" "$work/fuzz-server"
pid=""
pg_db=""
admin_url=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$pg_db" ]; then
    psql "$admin_url" -qc "drop database if exists $pg_db with (force)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A hook that works around a schemathesis 4.32 bug: its dependency inference can feed a task
# id (an integer) into the optional X-Request-Id header (seen in the stateful phase), and `requests` refuses a non-string
# header value before anything is sent (a "Network Error" that is no server fault). The
# value is sent as its decimal string, which is what it would be on the wire anyway.
mkdir -p "$work/hooks"
cat >"$work/hooks/todo_fuzz_hooks.py" <<'PY'
import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers
    if headers:
        for name, value in list(headers.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                headers[name] = str(value)
PY

write_config() { # write_config TOKEN PEER_TOKEN
  # Two real users: every request is fuzz-user's (Authorization: Bearer <token>); fuzz-peer
  # replays fuzz-user's reads for the object_level_authorization check (another user's task
  # must be invisible: 404, never 200).
  cat >"$work/auth.json" <<JSON
{"schemaVersion": "1.0", "auth": [
  {"name": "fuzz-user", "fixedHeaders": [{"name": "Authorization", "value": "Bearer $1"}]},
  {"name": "fuzz-peer", "fixedHeaders": [{"name": "Authorization", "value": "Bearer $2"}]}
]}
JSON
  cat >"$work/schemathesis.toml" <<TOML
# Every warning schemathesis displays fails the run too.
[warnings]
fail-on = true

[auth.wfc]
path = "$work/auth.json"
user = "fuzz-user"
peers = ["fuzz-user", "fuzz-peer"]

# Stateful links from the Location header of 201 responses (POST /api/tasks -> GET, PUT,
# PATCH, DELETE /api/tasks/{id}, PATCH .../complete). schemathesis' other inference
# ("dependency-analysis") makes Hypothesis abort the stateful phase after a dozen
# scenarios (FlakyStrategyDefinition, reported as a pass); this one runs them all.
[phases.stateful.inference]
algorithms = ["location-headers"]
TOML
}

start_server() { # start_server DATABASE_URL -> sets pid, addr
  : >"$work/server.log"
  # From $work, so that a developer's .env in the repository is not read.
  (cd "$work" && exec env -u JWT_ISSUER -u JWT_AUDIENCE -u JWKS_URL -u CORS_ORIGINS \
    HOST=127.0.0.1 PORT=0 RUST_LOG=info DATABASE_URL="$1" BETTER_AUTH_SECRET="$secret" \
    ./fuzz-server 2>"$work/server.log") &
  pid=$!
  addr=""
  for _ in $(seq 1 150); do
    addr=$(grep -o 'listening on http://[^ ]*' "$work/server.log" | head -n 1 | sed 's|listening on ||' || true)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    echo "FAIL: the server did not start" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
}

stop_server() { # stop_server -> fails unless the server exits 0 on SIGTERM
  local rc=0
  kill -TERM "$pid" 2>/dev/null || { echo "FAIL: the server had died" >&2; return 1; }
  wait "$pid" || rc=$?
  pid=""
  if [ "$rc" != 0 ]; then echo "FAIL: the server exited $rc on SIGTERM" >&2; return 1; fi
}

st_run() { # st_run LABEL PASS ARGS... -> runs schemathesis, output in $reports/LABEL/PASS
  local label=$1 pass=$2 rc=0
  shift 2
  local dir="$reports/$label/$pass"
  mkdir -p "$dir"
  echo "--- $label, $pass pass"
  PYTHONPATH="$work/hooks" SCHEMATHESIS_HOOKS=todo_fuzz_hooks \
    "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" --no-color run \
    "$addr/openapi.json" \
    --checks all \
    --max-examples "$examples" \
    --seed "$seed" \
    --generation-database none \
    --continue-on-failure \
    --request-timeout 10 \
    --report junit,ndjson --report-dir "$dir" \
    "$@" 2>&1 | tee "$dir/schemathesis.log" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "FAIL: schemathesis exited $rc ($label, $pass pass)" >&2
    return 1
  fi
  # A case schemathesis could not run at all is an error, not a pass.
  if grep -qE '^ *Test cases:.* [1-9][0-9]* (errored|failed)' "$dir/schemathesis.log"; then
    echo "FAIL: schemathesis reported failed or errored test cases ($label, $pass pass)" >&2
    return 1
  fi
}

fuzz() { # fuzz LABEL DATABASE_URL
  local label=$1 url=$2 bad=0
  step "schemathesis against $label: $examples examples per operation, seed $seed"
  rm -rf "${reports:?}/$label"
  mkdir -p "$reports/$label"
  start_server "$url"
  echo "server: $addr"
  local token peer
  token=$(cd "$work" && BETTER_AUTH_SECRET="$secret" ./fuzz-server token --sub fuzz-user --ttl 2h)
  peer=$(cd "$work" && BETTER_AUTH_SECRET="$secret" ./fuzz-server token --sub fuzz-peer --ttl 2h)
  if [ -z "$token" ] || [ -z "$peer" ]; then
    echo "FAIL: could not mint tokens" >&2
    stop_server || true
    return 1
  fi
  write_config "$token" "$peer"

  # 1. Every phase (examples, coverage, fuzzing, stateful), positive and negative data.
  st_run "$label" main --mode all || bad=1
  # 2. Fuzzing again with negative data only: invalid input must be a documented 4xx.
  st_run "$label" negative --mode negative --phases fuzzing || bad=1

  cp "$work/server.log" "$reports/$label/server.log"
  if grep -q 'panicked' "$work/server.log"; then
    echo "FAIL: the server panicked on $label:" >&2
    grep -n -A3 'panicked' "$work/server.log" | head -n 40 >&2
    bad=1
  fi
  # The access log line: METHOD PATH STATUS MSms id=ID
  local server_errors requests created
  server_errors=$(grep -E ' 5[0-9]{2} [0-9.]+ms id=[^ ]+$' "$work/server.log" || true)
  if [ -n "$server_errors" ]; then
    echo "FAIL: the server answered 5xx on $label:" >&2
    echo "$server_errors" | head -n 40 >&2
    bad=1
  fi
  requests=$(grep -cE ' [1-5][0-9]{2} [0-9.]+ms id=[^ ]+$' "$work/server.log" || true)
  created=$(grep -cE ' POST /api/tasks 201 [0-9.]+ms id=' "$work/server.log" || true)
  echo "server on $label: $requests requests, $created tasks created, $(printf '%s' "$server_errors" | grep -c . || true) answers 5xx"
  # If the token were rejected everywhere, 401 is a documented answer and all would "pass".
  if [ "$created" -lt 1 ]; then
    echo "FAIL: no authenticated request succeeded on $label (token rejected?)" >&2
    bad=1
  fi
  stop_server || bad=1
  return "$bad"
}

failed=0
for db in $databases; do
  case "$db" in
    sqlite)
      fuzz sqlite "sqlite:$work/fuzz.db" || failed=1
      ;;
    postgres)
      pg="${TEST_DATABASE_URL:?set TEST_DATABASE_URL to a PostgreSQL server (postgres://...)}"
      base="${pg%%\?*}"
      query="${pg#"$base"}"
      admin_url="$pg"
      pg_db="todo_fuzz_$$"
      psql "$admin_url" -qc "create database $pg_db"
      fuzz postgres "${base%/*}/$pg_db$query" || failed=1
      psql "$admin_url" -qc "drop database if exists $pg_db with (force)" >/dev/null
      pg_db=""
      ;;
    *)
      echo "unknown database '$db' in SCHEMATHESIS_DATABASES" >&2
      exit 2
      ;;
  esac
done

step "done"
echo "reports: $reports/{${databases// /,}}/ (schemathesis.log, server.log, junit, ndjson)"
if [ "$failed" != 0 ]; then
  echo "schemathesis: FAILED" >&2
  exit 1
fi
echo "schemathesis: passed on ${databases// / and }"
