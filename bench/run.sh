#!/usr/bin/env bash
# bench/run.sh: load benchmark of todo-api against PostgreSQL and embedded SQLite, with the
# database-only ceiling (pgbench running the same SQL) beside it, plus three PostgreSQL row
# sets: unnamed statements (statement cache off), through PgBouncer in transaction mode, two
# servers on one database. See bench/README.md.
#
#   TODO_API_BIN=/path/to/todo-api bash bench/run.sh      # or: bash bench/run.sh (cargo build)
#
# Options (environment):
#   TODO_API_BIN        binary to test (default: cargo build --release, target/release/todo-api)
#   BENCH_SECONDS       length of each measured run, seconds (default 10)
#   BENCH_WARMUP        warm-up before each measured run, seconds (default 2; 0 = none)
#   BENCH_SCENARIOS     subset of "list get create toggle mixed" (default: all five)
#   BENCH_CONNECTIONS   connection counts (default "16 64")
#   BENCH_SKIP_SQLITE   1 = skip the SQLite runs (default 0)
#   BENCH_EXTRA         extra PostgreSQL row sets, any of "unnamed pgbouncer two" (default:
#                       all three; "none" = skip them): unnamed = the server with
#                       DB_STATEMENT_CACHE=false; pgbouncer = the server behind a local
#                       PgBouncer in transaction mode; two = two servers on one database
#   BENCH_EXTRA_SECONDS length of each measured run of the extra row sets (default 6)
#   BENCH_TWO_SCENARIOS scenarios of the two-instance row set (default "get mixed")
#   BENCH_PGBOUNCER_POOL  PgBouncer default_pool_size (default 16)
#   BENCH_STARTUP_RUNS  start-up time samples on SQLite (default 5)
#   BENCH_OUT           also write the results (markdown) to this file
#   BENCH_KEEP          1 = keep the work directory (server logs, wrk and pgbench output)
#   PGHOST PGPORT PGUSER  PostgreSQL to use (default 127.0.0.1, 5432, postgres; trust auth)
#   RUST_LOG, WORKERS, DB_POOL_SIZE  passed through to the server (defaults: the server's)
#
# Exit status: 0; 3 when any measured run saw a non-2xx response or a socket error (the
# table is printed all the same); anything else: the benchmark itself failed.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export BENCH_DIR   # read by bench/*.lua
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
SECS=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNECTIONS:-16 64}
SCENARIOS=${BENCH_SCENARIOS:-list get create toggle mixed}
SKIP_SQLITE=${BENCH_SKIP_SQLITE:-0}
EXTRA=${BENCH_EXTRA-unnamed pgbouncer two}
[ "$EXTRA" = none ] && EXTRA=""
EXTRA_SECS=${BENCH_EXTRA_SECONDS:-6}
TWO_SCENARIOS=${BENCH_TWO_SCENARIOS:-get mixed}
PGB_POOL=${BENCH_PGBOUNCER_POOL:-16}
STARTUP_RUNS=${BENCH_STARTUP_RUNS:-5}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}

# Data shape. Users are numbered so that pgbench can compute them (bench/sql/*.sql).
NTASKS=50          # tasks per seeded user
NMIX=8             # users of the mixed load
LIST_SUB=1001      # the list/get/toggle user
CREATE_SUB=1002    # the create user (its task count grows; nobody lists it)
MIX_BASE=2001      # mixed-load users: 2001 .. 2008
SECRET="bench-only-hs256-secret-0123456789abcdef0123456789abcdef"
# The mixed load's weights; bench/mixed.lua has the same numbers (create+delete = 8+8).
PGBENCH_MIX=(list.sql@35 get.sql@35 toggle.sql@7 update.sql@7 create_delete.sql@8)

T0=$(date +%s)
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for s in $SCENARIOS; do
    case $s in list|get|create|toggle|mixed) ;; *) die "unknown scenario '$s' in BENCH_SCENARIOS" ;; esac
done
for s in $TWO_SCENARIOS; do
    case $s in list|get|create|toggle|mixed) ;; *) die "unknown scenario '$s' in BENCH_TWO_SCENARIOS" ;; esac
done
for s in $EXTRA; do
    case $s in unnamed|pgbouncer|two) ;; *) die "unknown row set '$s' in BENCH_EXTRA (unnamed, pgbouncer, two, or none)" ;; esac
done
has_extra() { [[ " $EXTRA " == *" $1 "* ]]; }
[[ $SECS =~ ^[0-9]+$ && $SECS -ge 1 ]] || die "BENCH_SECONDS must be a positive integer"
[[ $EXTRA_SECS =~ ^[0-9]+$ && $EXTRA_SECS -ge 1 ]] || die "BENCH_EXTRA_SECONDS must be a positive integer"
[[ $PGB_POOL =~ ^[0-9]+$ && $PGB_POOL -ge 1 ]] || die "BENCH_PGBOUNCER_POOL must be a positive integer"
for c in $CONNS; do
    [[ $c =~ ^[0-9]+$ && $c -ge 2 ]] || die "BENCH_CONNECTIONS: '$c' is not a count of at least 2"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a non-negative integer"

# --- tools -----------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk (apt-get)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 wrk >/dev/null
fi
for t in wrk pgbench psql createdb dropdb curl; do
    command -v "$t" >/dev/null 2>&1 || die "'$t' not found (pgbench/psql come with postgresql-client)"
done
HAVE_PY=0; command -v python3 >/dev/null 2>&1 && HAVE_PY=1

# --- binary ----------------------------------------------------------------------------
if [ -n "${TODO_API_BIN:-}" ]; then
    SRC_BIN=$TODO_API_BIN
else
    log "building: cargo build --release (in $REPO_DIR)"
    (cd "$REPO_DIR" && cargo build --release)
    SRC_BIN=$REPO_DIR/target/release/todo-api
fi
[ -x "$SRC_BIN" ] || die "no executable binary at $SRC_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/todo-bench.XXXXXX")
DB="todo_bench_$$_${RANDOM}"
DB_CREATED=0
SERVER_PID=""
ALL_SERVER_PIDS=()   # every server this script started (two run at once in the "two" row set)
SAMPLER_PID=""
PROBE_PID=""
EXTRA_BG_PIDS=()     # samplers and probes of the two-instance runs
PGB_DIR=""           # PgBouncer's directory, readable by the postgres OS user
PGB_PID=""           # pgbouncer itself (from its pidfile)
PGB_LAUNCH_PID=""    # runuser (or pgbouncer, when not root)
STALLED="?"
# Our own copy, so that a binary replaced mid-run does not change what is measured, under
# a name that a `pkill todo-api` elsewhere on the machine does not hit.
BIN=$WORK/bench-server
cp "$SRC_BIN" "$BIN"

# --- PgBouncer (the "pgbouncer" row set) ------------------------------------------------
# A local PgBouncer 1.18 in transaction mode in front of the bench database, configured as
# tests/api/pgbouncer.rs does. It refuses to run as root, so as root it runs as the
# `postgres` OS user (runuser), from a directory of its own that user can write to.
pgbouncer_binary() {
    local b
    for b in /usr/sbin/pgbouncer /usr/bin/pgbouncer /usr/local/bin/pgbouncer "$(command -v pgbouncer || true)"; do
        [ -n "$b" ] && [ -x "$b" ] && { echo "$b"; return 0; }
    done
    return 1
}
# start_pgbouncer: sets PGB_PORT, PGB_PID, PGB_LAUNCH_PID, PGB_DIR; returns 1 (with a
# warning) when it cannot be started
start_pgbouncer() {
    local bin ini
    bin=$(pgbouncer_binary) || { WARNINGS+=("pgbouncer row set skipped: pgbouncer is not installed (apt-get install pgbouncer)"); return 1; }
    PGB_VERSION=$("$bin" --version 2>/dev/null | head -1 || echo "PgBouncer ?")
    PGB_PORT=$(free_port) || { WARNINGS+=("pgbouncer row set skipped: no free port"); return 1; }
    PGB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/todo-bench-pgbouncer.XXXXXX")
    chmod 0777 "$PGB_DIR"
    ini=$PGB_DIR/pgbouncer.ini
    printf '"%s" ""\n' "$PGUSER" >"$PGB_DIR/users.txt"
    cat >"$ini" <<EOF
[databases]
* = host=$PGHOST port=$PGPORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $PGB_DIR/users.txt
pool_mode = transaction
default_pool_size = $PGB_POOL
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,options
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
EOF
    chmod 0644 "$ini" "$PGB_DIR/users.txt"
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$bin" "$ini" </dev/null >"$PGB_DIR/stdout.log" 2>&1 &
    else
        "$bin" "$ini" </dev/null >"$PGB_DIR/stdout.log" 2>&1 &
    fi
    PGB_LAUNCH_PID=$!
    local i
    for i in $(seq 100); do
        if [ -s "$PGB_DIR/pgbouncer.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$PGB_PORT") 2>/dev/null; then
            PGB_PID=$(cat "$PGB_DIR/pgbouncer.pid")
            return 0
        fi
        kill -0 "$PGB_LAUNCH_PID" 2>/dev/null || break
        sleep 0.1
    done
    WARNINGS+=("pgbouncer row set skipped: pgbouncer did not start: $(tail -3 "$PGB_DIR/pgbouncer.log" "$PGB_DIR/stdout.log" 2>/dev/null | tr '\n' ' ' | cut -c1-300)")
    stop_pgbouncer
    return 1
}
# pgbouncer_cpu: user+system CPU seconds pgbouncer has used so far
pgbouncer_cpu() {
    [ -n "$PGB_PID" ] && [ -r "/proc/$PGB_PID/stat" ] || { echo ""; return 0; }
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / hz }' "/proc/$PGB_PID/stat"
}
stop_pgbouncer() {
    # SIGTERM is an immediate shutdown for pgbouncer; the server in front has stopped already
    if [ -n "$PGB_PID" ] && kill -0 "$PGB_PID" 2>/dev/null; then
        kill -TERM "$PGB_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PGB_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PGB_PID" 2>/dev/null || true
    fi
    if [ -n "$PGB_LAUNCH_PID" ] && kill -0 "$PGB_LAUNCH_PID" 2>/dev/null; then
        kill -TERM "$PGB_LAUNCH_PID" 2>/dev/null || true
    fi
    [ -n "$PGB_LAUNCH_PID" ] && wait "$PGB_LAUNCH_PID" 2>/dev/null || true
    if [ -n "$PGB_DIR" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ] && [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
            cp -r "$PGB_DIR" "$WORK/pgbouncer" 2>/dev/null || true
        fi
        rm -rf "$PGB_DIR"
    fi
    PGB_PID=""; PGB_LAUNCH_PID=""; PGB_DIR=""
    return 0
}

cleanup() {
    local rc=$? p
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
    [ -n "$PROBE_PID" ] && kill "$PROBE_PID" 2>/dev/null || true
    for p in "${EXTRA_BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${ALL_SERVER_PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    stop_pgbouncer
    if [ "$DB_CREATED" = 1 ]; then
        dropdb --if-exists --force "$DB" 2>/dev/null || log "could not drop database $DB"
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ---------------------------------------------------------------------------
# kv LINE KEY: the value of KEY=value in a BENCH_RESULT line
kv() { local re="(^| )$2=([^ ]*)"; if [[ $1 =~ $re ]]; then printf '%s' "${BASH_REMATCH[2]}"; fi; return 0; }
fmt_ms() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else if (v < 10) printf "%.2f", v; else if (v < 100) printf "%.1f", v; else printf "%.0f", v }'; }
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else printf "%.0f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }

free_port() {
    local p
    for _ in $(seq 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}

server_env() {
    # the server's environment: only what we set, plus the tuning knobs if the caller set them
    local dburl=$1
    ENV_ARGS=(-i PATH="$PATH" HOME="${HOME:-/tmp}" DATABASE_URL="$dburl" BETTER_AUTH_SECRET="$SECRET"
              HOST=127.0.0.1 RUST_LOG="${RUST_LOG:-info}")
    [ -n "${WORKERS:-}" ] && ENV_ARGS+=(WORKERS="$WORKERS")
    [ -n "${DB_POOL_SIZE:-}" ] && ENV_ARGS+=(DB_POOL_SIZE="$DB_POOL_SIZE")
    return 0
}

# start_server NAME DATABASE_URL [VAR=VALUE ...]: sets SERVER_PID, URL; PORT=0, the port
# read from the log; VAR=VALUE are added to the server's environment
start_server() {
    local name=$1 dburl=$2 slog=$WORK/$1.server.log port="" line
    shift 2
    server_env "$dburl"
    ENV_ARGS+=("$@")
    # run from the work directory, so that no ./.env of the caller's is read
    (cd "$WORK" && exec env "${ENV_ARGS[@]}" PORT=0 "$BIN") >"$WORK/$name.server.out" 2>"$slog" &
    SERVER_PID=$!
    ALL_SERVER_PIDS+=("$SERVER_PID")
    for _ in $(seq 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$slog" >&2; die "$name server exited at start-up"; }
        line=$(grep -m1 -aoE 'listening on http://[0-9.]+:[0-9]+' "$slog" || true)
        if [ -n "$line" ]; then port=${line##*:}; break; fi
        sleep 0.1
    done
    [ -n "$port" ] || { tail -20 "$slog" >&2; die "$name server: no 'listening on' line in 30 s"; }
    URL="http://127.0.0.1:$port"
    # "(database: ..., workers: 8, pool: 8, ...)" from the start-up line, if it says so
    SERVER_INFO[$name]=$(grep -m1 -aoE 'workers: [0-9]+, pool: [0-9]+(, statement cache)?' "$slog" || true)
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health" || true)" = 200 ] && return 0
        sleep 0.1
    done
    tail -20 "$slog" >&2
    die "$name server: /health not 200 within 30 s"
}

# stop_server NAME: SIGTERM, expect exit 0 within 15 s
stop_server() {
    local name=$1 rc=0
    kill -TERM "$SERVER_PID"
    for _ in $(seq 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        WARNINGS+=("$name server did not exit within 15 s of SIGTERM (killed)")
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 137 ] || WARNINGS+=("$name server exited with status $rc on SIGTERM (contract: 0)")
    local p keep=()
    for p in "${ALL_SERVER_PIDS[@]}"; do [ "$p" = "$SERVER_PID" ] || keep+=("$p"); done
    ALL_SERVER_PIDS=("${keep[@]}")
    SERVER_PID=""
}

# conn_bytes PORT: "peer bytes_received" for each established connection to the server
conn_bytes() {
    ss -tniH state established "( sport = :$1 )" 2>/dev/null | awk '
        /^[^ \t]/ { if (peer != "") print peer, br; peer = $4; br = 0; next }
        { if (match($0, /bytes_received:[0-9]+/)) br = substr($0, RSTART + 15, RLENGTH - 15) }
        END { if (peer != "") print peer, br }'
}
# stall_probe PORT SECONDS OUTFILE: how many connections received no new bytes (so got no
# response: wrk sends the next request as soon as a response arrives) between 25 % and 85 %
# of a run; "?" when ss is not available
stall_probe() {
    local port=$1 secs=$2 out=$3
    if ! command -v ss >/dev/null 2>&1; then echo "?" >"$out"; return 0; fi
    sleep "$(awk -v s="$secs" 'BEGIN { print s * 0.25 }')"
    conn_bytes "$port" | sort >"$out.a"
    sleep "$(awk -v s="$secs" 'BEGIN { print s * 0.6 }')"
    conn_bytes "$port" | sort >"$out.b"
    join "$out.a" "$out.b" | awk '$2 == $3 { n++ } END { print n + 0 }' >"$out"
}

rss_kb() {
    local k v _
    while read -r k v _; do [ "$k" = "VmRSS:" ] && { echo "$v"; return 0; }; done <"/proc/$1/status"
    echo 0
}

# sample_rss PID FILE: VmRSS (kB) every 0.1 s into FILE until killed
sample_rss() {
    local pid=$1 out=$2 k v _
    while [ -r "/proc/$pid/status" ]; do
        while read -r k v _; do [ "$k" = "VmRSS:" ] && echo "$v"; done <"/proc/$pid/status" >>"$out" || true
        sleep 0.1
    done
}

token() {
    local sub=$1 t
    t=$(cd "$WORK" && env -i PATH="$PATH" BETTER_AUTH_SECRET="$SECRET" "$BIN" token --sub "$sub" \
            --email "bench$sub@example.com" --name "Bench user $sub" --ttl 3h) \
        || die "'todo-api token --sub $sub' failed"
    [ -n "$t" ] || die "'todo-api token' printed nothing"
    printf '%s' "$t"
}

# api METHOD PATH TOKEN [BODY]: prints the status; the body lands in $WORK/resp.json
api() {
    local args=(-sS -o "$WORK/resp.json" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $3")
    [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' --data "$4")
    curl "${args[@]}" "$URL$2" || echo 000
}

ids_of() { # TOKEN: the ids of the user's tasks, ascending, one a line
    local code
    code=$(api GET /api/tasks "$1")
    [ "$code" = 200 ] || die "GET /api/tasks -> $code: $(head -c 300 "$WORK/resp.json")"
    { grep -oE '"id" *: *[0-9]+' "$WORK/resp.json" || true; } | grep -oE '[0-9]+$' | sort -n || true
}

seed_tasks() { # TOKEN N
    local tok=$1 n=$2 i body code desc due done_
    for i in $(seq 1 "$n"); do
        desc=null; due=null; done_=false
        (( i % 2 == 1 )) && desc="\"Seeded task $i: buy milk, call the plumber, water the plants.\""
        (( i % 3 == 0 )) && due=$(printf '"2026-%02d-%02dT09:30:00Z"' $(( i % 12 + 1 )) $(( i % 28 + 1 )))
        (( i % 4 == 0 )) && done_=true
        body="{\"title\":\"Bench task $i\",\"description\":$desc,\"due_date\":$due,\"completed\":$done_}"
        code=$(api POST /api/tasks "$tok" "$body")
        [ "$code" = 201 ] || die "seeding: POST /api/tasks -> $code: $(head -c 300 "$WORK/resp.json")"
    done
}

# seed NAME: users, tasks and tokens on the server at $URL; writes $WORK/data-NAME.lua and
# sets LIST_IDS, MIX_IDS[k] (space-separated ids), LIST_IDBASE, MIX_IDBASE, CONTIGUOUS
seed() {
    local name=$1 k ids n
    T_LIST=${T_LIST:-$(token $LIST_SUB)}
    T_CREATE=${T_CREATE:-$(token $CREATE_SUB)}
    if [ -z "${T_MIX[0]:-}" ]; then
        for ((k = 0; k < NMIX; k++)); do T_MIX[k]=$(token $((MIX_BASE + k))); done
    fi
    seed_tasks "$T_LIST" $NTASKS
    for ((k = 0; k < NMIX; k++)); do seed_tasks "${T_MIX[k]}" $NTASKS; done
    ids_of "$T_CREATE" >/dev/null   # creates the create user's row (pgbench inserts for it)
    LIST_IDS=$(ids_of "$T_LIST" | tr '\n' ' ')
    n=$(wc -w <<<"$LIST_IDS"); [ "$n" = $NTASKS ] || die "list user has $n tasks, expected $NTASKS"
    for ((k = 0; k < NMIX; k++)); do
        MIX_IDS[k]=$(ids_of "${T_MIX[k]}" | tr '\n' ' ')
        n=$(wc -w <<<"${MIX_IDS[k]}"); [ "$n" = $NTASKS ] || die "mix user $k has $n tasks"
    done
    # pgbench computes ids as base + k*NTASKS + i: check the seeded ids are contiguous
    LIST_IDBASE=$(awk '{print $1}' <<<"$LIST_IDS")
    MIX_IDBASE=$(awk '{print $1}' <<<"${MIX_IDS[0]}")
    CONTIGUOUS=1
    [ "$(echo $LIST_IDS)" = "$(echo $(seq "$LIST_IDBASE" $((LIST_IDBASE + NTASKS - 1))))" ] || CONTIGUOUS=0
    for ((k = 0; k < NMIX; k++)); do
        ids=$(seq $((MIX_IDBASE + k * NTASKS)) $((MIX_IDBASE + (k + 1) * NTASKS - 1)))
        [ "$(echo ${MIX_IDS[k]})" = "$(echo $ids)" ] || CONTIGUOUS=0
    done
    {
        echo "return {"
        echo "  list = { token = \"$T_LIST\", ids = { $(echo $LIST_IDS | tr ' ' ',') } },"
        echo "  create = { token = \"$T_CREATE\" },"
        echo "  mix = {"
        for ((k = 0; k < NMIX; k++)); do
            echo "    { token = \"${T_MIX[k]}\", ids = { $(echo ${MIX_IDS[k]} | tr ' ' ',') } },"
        done
        echo "  },"
        echo "}"
    } >"$WORK/data-$name.lua"
}

# After a mixed run: delete the tasks it created and did not delete, so that every run
# starts from 8 users x 50 tasks.
reset_mix_users() {
    local k id code ids
    for ((k = 0; k < NMIX; k++)); do
        ids=$(ids_of "${T_MIX[k]}")
        for id in $ids; do
            [[ " ${MIX_IDS[k]} " == *" $id "* ]] && continue
            code=$(api DELETE "/api/tasks/$id" "${T_MIX[k]}")
            [ "$code" = 204 ] || WARNINGS+=("reset: DELETE /api/tasks/$id -> $code")
        done
    done
}

# check_accepting BACKEND: the server must answer /health on a new connection within 5 s
check_accepting() {
    local code
    code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL/health" || true)
    [ "$code" = 200 ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || die "$1 server has exited; last log lines: $(tail -3 "$WORK/$1.server.log" | tr '\n' ' ')"
    die "$1 server (pid $SERVER_PID, still running) does not answer GET /health on a new connection (got '$code' within 5 s): it stopped accepting connections. Last WARN/ERROR in its log: $(grep -aE '\b(ERROR|WARN)\b' "$WORK/$1.server.log" | tail -2 | tr '\n' ' ')"
}

# CPU time the hypervisor gave to other guests ("steal", /proc/stat) during the measured runs,
# ours (wrk against the default PostgreSQL server) and pgbench's: on a shared VM it can differ
# between the two and skew the ratio. steal_add NAME T0: adds the ticks since T0 (cpu_ticks).
# Also the disk reads (/proc/vmstat pgpgin, KiB) in the same runs: the benchmark itself reads
# nothing from disk, so reads there are another process's (or pages the kernel evicted and
# faults back in), and on these VMs they came with machine-wide stalls of 20-240 ms.
declare -A STEAL=([ours]=0 [ours_total]=0 [pgbench]=0 [pgbench_total]=0)
declare -A READ_KB=([ours]=0 [pgbench]=0)
cpu_ticks() {
    awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; printf "%d %d ", t, $9; exit }' /proc/stat
    awk '/^pgpgin / { print $2 }' /proc/vmstat
}
steal_add() {
    local name=$1 t0 s0 r0 t1 s1 r1
    read -r t0 s0 r0 <<<"$2"
    read -r t1 s1 r1 <<<"$(cpu_ticks)"
    STEAL[$name]=$(( ${STEAL[$name]} + s1 - s0 ))
    READ_KB[$name]=$(( ${READ_KB[$name]} + ${r1:-0} - ${r0:-0} ))
    STEAL[${name}_total]=$(( ${STEAL[${name}_total]} + t1 - t0 ))
}
# Where the CPU goes in a measured run: cpu_split SERVER_PID prints the clock ticks used so
# far by the server (all its threads), by PostgreSQL (every postgres process, plus the
# exited backends the postmaster has reaped, so pgbench's own backends count), by the whole
# machine (user, nice, system, irq, softirq) and the machine's total including idle and
# steal. cpu_per_request BEFORE AFTER REQUESTS turns two of them into
# "server=µs pg=µs rest=µs busy=µs idle=%" per request; rest is the machine's busy time
# less the server and PostgreSQL: the load generator (wrk or pgbench) and anything else.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
declare -A CPU_OURS CPU_PGB
cpu_split() {
    {
        head -1 /proc/stat
        sed 's/^/S /' "/proc/${1:-0}/stat" 2>/dev/null || true
        # one file at a time: a backend that exits between the glob and the read is skipped
        for f in /proc/[0-9]*/stat; do
            read -r l 2>/dev/null <"$f" && printf '%s\n' "$l"
        done | awk '$2 == "(postgres)" { print "P " $0 }' || true
    } | awk '
        $1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8; total = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }
        $1 == "S" { s = $15 + $16 }
        $1 == "P" { p += $15 + $16 + $17 + $18 }
        END { printf "%d %d %d %d", s, p, busy, total }'
}
cpu_per_request() {
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        if (n <= 0 || y[4] <= x[4]) exit
        us = 1e6 / hz / n
        s = (y[1] - x[1]) * us; p = (y[2] - x[2]) * us; busy = (y[3] - x[3]) * us
        rest = busy - s - p; if (rest < 0) rest = 0
        printf "server=%.0f pg=%.0f rest=%.0f busy=%.0f idle=%.0f", s, p, rest, busy,
            100 * (1 - (y[3] - x[3]) / (y[4] - x[4]))
    }'
}
steal_pct() { awk -v s="${STEAL[$1]}" -v t="${STEAL[$1_total]}" 'BEGIN { if (t > 0) printf "%.1f", 100 * s / t; else printf "?" }'; }

# run_wrk BACKEND SCENARIO CONNS SECONDS OUTFILE [sample]: sets RUN_LINE (BENCH_RESULT line)
run_wrk() {
    local backend=$1 scen=$2 c=$3 secs=$4 out=$5 sample=${6:-} line
    check_accepting "$backend"
    if [ -n "$sample" ]; then
        : >"$WORK/rss.samples"
        sample_rss "$SERVER_PID" "$WORK/rss.samples" </dev/null >/dev/null 2>&1 &
        SAMPLER_PID=$!
        stall_probe "${URL##*:}" "$secs" "$WORK/stalls.txt" </dev/null >/dev/null 2>&1 &
        PROBE_PID=$!
    fi
    local ticks cpu0; ticks=$(cpu_ticks); cpu0=$(cpu_split "$SERVER_PID")
    BENCH_DATA="$WORK/data-$backend.lua" BENCH_NAME="$backend/$scen/$c" \
        wrk -t2 -c"$c" -d"${secs}s" --timeout 10s --latency -s "$BENCH_DIR/$scen.lua" "$URL" \
        >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed ($backend $scen $c)"; }
    local cpu1; cpu1=$(cpu_split "$SERVER_PID")
    [ -n "$sample" ] && [ "$backend" = pg ] && steal_add ours "$ticks"
    if [ -n "$sample" ]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=""
        wait "$PROBE_PID" 2>/dev/null || true
        PROBE_PID=""
        STALLED=$(cat "$WORK/stalls.txt" 2>/dev/null || true); STALLED=${STALLED:-?}
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/$backend.server.log" >&2; die "$backend server died during $scen/$c"; }
    line=$(grep -a '^BENCH_RESULT ' "$out" | tail -1 || true)
    [ -n "$line" ] || { cat "$out" >&2; die "no BENCH_RESULT line from wrk ($backend $scen $c)"; }
    RUN_LINE=$line
    [ -n "$sample" ] && [ "$backend" = pg ] && CPU_OURS[$scen:$c]=$(cpu_per_request "$cpu0" "$cpu1" "$(kv "$line" requests)")
    return 0
}

# run_pgbench SCENARIO CONNS SECONDS OUTFILE: sets PG_TPS (mixed: requests/s equivalent,
# create_delete.sql counting as two requests), PG_FAILED and, for a measured run, PG_P99
# (ms; from a 5 % sample of the transactions, logged by pgbench itself)
run_pgbench() {
    local scen=$1 c=$2 secs=$3 out=$4 files=() defs=() tps failed total cd label="" logargs=()
    local prefix=$WORK/pgblog-$scen-$c
    if [[ $out == *.warmup.txt ]]; then
        label=" (warm-up)"
    else
        logargs=(--log --sampling-rate=0.05 "--log-prefix=$prefix")
    fi
    case $scen in
        list|get|toggle) defs=(-D "ubase=$LIST_SUB" -D nusers=1 -D idbase="$LIST_IDBASE"); files=("$scen.sql") ;;
        create) defs=(-D "ubase=$CREATE_SUB" -D nusers=1 -D idbase="$LIST_IDBASE"); files=(create.sql) ;;
        mixed) defs=(-D "ubase=$MIX_BASE" -D "nusers=$NMIX" -D idbase="$MIX_IDBASE"); files=("${PGBENCH_MIX[@]}") ;;
    esac
    defs+=(-D "ntasks=$NTASKS")
    local fargs=()
    for f in "${files[@]}"; do fargs+=(-f "$BENCH_DIR/sql/$f"); done
    local try ok=0
    for try in 1 2 3 4 5 6; do
        rm -f "$prefix".*
        local ticks cpu0; ticks=$(cpu_ticks); cpu0=$(cpu_split)
        if (cd "$WORK" && pgbench -n -M prepared -T "$secs" -c "$c" -j 2 "${logargs[@]}" "${defs[@]}" "${fargs[@]}" "$DB") >"$out" 2>&1; then
            [ -n "$label" ] || steal_add pgbench "$ticks"
            PG_CPU="$cpu0|$(cpu_split)"
            ok=1; break
        fi
        # PostgreSQL is shared: other clients can leave fewer than $c connections free
        grep -aq 'too many clients' "$out" || break
        log "pgbench $scen/$c: too many clients on PostgreSQL ($(psql -Atc 'select count(*) from pg_stat_activity' postgres 2>/dev/null || echo ?) connected), retry $try in 5 s"
        sleep 5
    done
    [ "$ok" = 1 ] || WARNINGS+=("pgbench $scen/$c$label exited non-zero: $(grep -m2 -aiE 'error|abort' "$out" | tr '\n' ' ' || true)")
    tps=$(awk '/^tps = / { print $3; exit }' "$out")
    failed=$(awk -F'[: ]+' '/^number of failed transactions/ { print $5; exit }' "$out")
    if [ "$scen" = mixed ] && [ -n "$tps" ]; then
        total=$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$out")
        cd=$(awk '/create_delete.sql/ { f = 1; next } f && / transactions \(/ { print $2; exit }' "$out")
        [ -n "$total" ] && [ -n "$cd" ] && [ "$total" -gt 0 ] &&
            tps=$(awk -v t="$tps" -v n="$total" -v d="$cd" 'BEGIN { printf "%.1f", t * (n + d) / n }')
    fi
    PG_TPS=${tps:-}
    PG_FAILED=${failed:-0}
    # requests (mixed: their equivalent) = tps × the run's length
    if [ -z "$label" ] && [ "$ok" = 1 ] && [ -n "$tps" ]; then
        PG_CPU=$(cpu_per_request "${PG_CPU%%|*}" "${PG_CPU#*|}" "$(awk -v t="$tps" -v s="$secs" 'BEGIN { printf "%.0f", t * s }')")
    else
        PG_CPU=""
    fi
    # per-transaction log lines: client_id transaction_no latency_us script_no epoch us
    PG_P99=""
    if [ ${#logargs[@]} -gt 0 ] && compgen -G "$prefix.*" >/dev/null; then
        PG_P99=$(cat "$prefix".* | awk '{ print $3 }' | sort -n |
            awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", v[int(NR * 0.99 + 0.999)] / 1000 }')
    fi
    rm -f "$prefix".*
}

# The server's access log (one line per request, "... METHOD PATH STATUS 1.2ms id=...") is
# read back for each run: wrk never sees a response that arrives after it stops, so a
# request stuck for seconds at the end of a run would otherwise go unreported.
log_lines() { wc -l <"$WORK/$1.server.log"; }
wait_log_quiet() { # NAME: until the log stops growing (in-flight requests done), 15 s at most
    local a b
    for _ in $(seq 50); do
        a=$(log_lines "$1"); sleep 0.3; b=$(log_lines "$1")
        [ "$a" = "$b" ] && return 0
    done
    return 0
}
# log_stats NAME FROM_LINE: sets LOG_STATS "logged=N bad=N slow=N max_ms=X codes=503:2,..."
log_stats() {
    LOG_STATS=$(tail -n +"$(( $2 + 1 ))" "$WORK/$1.server.log" | awk '
        match($0, /\] [A-Z]+ [^ ]+ [0-9][0-9][0-9] [0-9.]+ms/) {
            split(substr($0, RSTART + 2, RLENGTH - 2), f, " ")
            st = f[3]; ms = f[4]; sub(/ms$/, "", ms); ms += 0
            n++; if (ms > max) max = ms; if (ms > 1000) slow++
            if (st !~ /^2/) { bad++; codes[st]++ }
        }
        END {
            c = ""; for (k in codes) c = c (c == "" ? "" : ",") k ":" codes[k]
            printf "logged=%d bad=%d slow=%d max_ms=%.1f codes=%s", n, bad, slow, max, (c == "" ? "-" : c)
        }')
}

WARNINGS=()
declare -A RES PGB PGB_P99 RSS LOGS SERVER_INFO STALLS
BAD_RUNS=0

errors_of() { # BENCH_RESULT line -> "N" total of non-2xx + socket errors + timeouts
    echo $(( $(kv "$1" non2xx) + $(kv "$1" sock_err) + $(kv "$1" timeouts) ))
}

# Every PostgreSQL run, ours and pgbench's, starts from a vacuumed table: the toggle and
# update runs leave tens of thousands of dead row versions behind them (HOT updates since
# d34dd45, so no longer in every index, but still in the pages a list reads), and each run
# should start from the same state whichever client runs it.
vacuum_db() {
    psql -qAtX -d "$DB" -c 'vacuum (analyze) tasks' -c 'vacuum (analyze) users' >/dev/null 2>&1 ||
        WARNINGS+=("vacuum of $DB failed")
}

# record_run BACKEND KEY OUTFILES...: the bookkeeping after a measured run, from RUN_LINE,
# LOG_STATS, STALLED and RSS_MAX; OUTFILES are the wrk outputs (two for the "two" row set)
record_run() {
    local backend=$1 key=$2 line=$RUN_LINE max=$RSS_MAX label f
    shift 2
    label="$backend ${key#*:}"; label=${label/:/\/}
    LOGS[$key]=$LOG_STATS
    if [ "$(kv "$LOG_STATS" bad)" != 0 ] || [ "$(kv "$LOG_STATS" slow)" != 0 ]; then
        WARNINGS+=("$label, server log (incl. responses wrk did not wait for): $LOG_STATS")
    fi
    RSS[$key]=$max
    RES[$key]=$line
    log "$label: $(kv "$line" rps) req/s, stalled conns $STALLED/$(kv "$line" conns), p50 $(kv "$line" p50_ms) ms, p99 $(kv "$line" p99_ms) ms, non-2xx $(kv "$line" non2xx), sock $(kv "$line" sock_err), timeouts $(kv "$line" timeouts), RSS max $((max / 1024)) MB"
    STALLS[$key]=$STALLED
    if [ "$STALLED" != 0 ] && [ "$STALLED" != "?" ]; then
        WARNINGS+=("$label: $STALLED of $(kv "$line" conns) connections made no progress through the middle of the run (server-side bytes_received unchanged from 25 % to 85 % of it): requests the server left unanswered, which wrk does not count")
    fi
    if [ "$(errors_of "$line")" != 0 ] || [ "$(kv "$LOG_STATS" bad)" != 0 ]; then
        BAD_RUNS=$((BAD_RUNS + 1))
        WARNINGS+=("$label: $(kv "$line" non2xx) non-2xx, $(kv "$line" sock_err) socket errors, $(kv "$line" timeouts) timeouts; first: $(grep -ah '^BENCH_ERRORS' "$@" | cut -c14-400 | head -2 | tr '\n' ' ' || true)")
    fi
    for f in "$@"; do
        if grep -aq '^BENCH_EXTRA' "$f"; then
            local extra; extra=$(grep -a '^BENCH_EXTRA' "$f" | tail -1)
            log "  ops: ${extra#BENCH_EXTRA }"
            # a few deletes become creates while the threads' pools of created tasks fill
            # up at the start; more than that means creates are not being tracked
            [ $(( $(kv "$extra" delete_fallback) * 20 )) -le "$(kv "$extra" D)" ] ||
                WARNINGS+=("$label: delete_fallback=$(kv "$extra" delete_fallback) of D=$(kv "$extra" D)")
            for k in created_untracked no_request_id; do
                [ "$(kv "$extra" $k)" = 0 ] || WARNINGS+=("$label: $k=$(kv "$extra" $k)")
            done
        fi
    done
}

# bench_backend NAME [SECONDS]: warm-up + measured wrk run per scenario and connection
# count against the server at $URL. NAME is pg, sqlite, or a PostgreSQL row set (pgunnamed,
# pgbouncer); SECONDS defaults to BENCH_SECONDS
bench_backend() {
    local backend=$1 secs=${2:-$SECS} scen c w from
    for scen in $SCENARIOS; do
        for c in $CONNS; do
            if [ "$backend" != sqlite ]; then vacuum_db; fi
            if [ "$WARMUP" -gt 0 ]; then
                from=$(log_lines "$backend")
                run_wrk "$backend" "$scen" "$c" "$WARMUP" "$WORK/$backend-$scen-$c.warmup.txt"; w=$RUN_LINE
                wait_log_quiet "$backend"; log_stats "$backend" "$from"
                [ "$(errors_of "$w")" = 0 ] || WARNINGS+=("$backend $scen/$c warm-up: $(kv "$w" non2xx) non-2xx, $(kv "$w" sock_err) socket errors, $(kv "$w" timeouts) timeouts")
                [ "$(kv "$LOG_STATS" bad)" = 0 ] || WARNINGS+=("$backend $scen/$c warm-up, server log: $LOG_STATS")
                if [ "$scen" = mixed ]; then reset_mix_users; fi
            fi
            from=$(log_lines "$backend")
            run_wrk "$backend" "$scen" "$c" "$secs" "$WORK/$backend-$scen-$c.txt" sample
            wait_log_quiet "$backend"; log_stats "$backend" "$from"
            RSS_MAX=$(sort -n "$WORK/rss.samples" | tail -1); RSS_MAX=${RSS_MAX:-$(rss_kb "$SERVER_PID")}
            RUN_LINE="$RUN_LINE conns=$c"
            record_run "$backend" "$backend:$scen:$c" "$WORK/$backend-$scen-$c.txt"
            if [ "$scen" = mixed ]; then reset_mix_users; fi
            # The ceiling for the same cell right after ours, so that both sides of a ratio
            # are measured within seconds of each other rather than minutes apart (these
            # machines' speed drifts by more than the differences we look for).
            if [ "$backend" = pg ] && [ "$CONTIGUOUS" = 1 ]; then pgbench_cell "$scen" "$c"; fi
        done
    done
}

# --- two instances (the "two" row set) -------------------------------------------------
# Two servers on the same database, each at URL_A/URL_B (pids PID_A/PID_B, logs two-a and
# two-b), driven at the same time by two wrk processes with one thread and half the
# connections each, so the load generator has the same two threads as in a one-server run.

# merge_results LINE LINE: one BENCH_RESULT line with the sums of requests, req/s and errors
# and the worse of the two of each latency figure
merge_results() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a " " b, f, " ")
        for (i = 1; i <= n; i++) {
            if (split(f[i], kv, "=") != 2) continue
            k = kv[1]; v = kv[2]
            if (k == "name") continue
            if (!(k in val)) { keys[++nk] = k; val[k] = v; continue }
            if (k ~ /_ms$/ || k == "secs") { if (v + 0 > val[k] + 0) val[k] = v }
            else val[k] += v
        }
        out = "BENCH_RESULT name=two"
        for (i = 1; i <= nk; i++) out = out " " keys[i] "=" val[keys[i]]
        print out
    }'
}

# run_wrk_two SCENARIO CONNS SECONDS OUTPREFIX [sample]: sets RUN_LINE (merged), and with
# sample also STALLED (sum of both servers) and RSS_MAX (the higher of the two servers')
run_wrk_two() {
    local scen=$1 c=$2 secs=$3 out=$4 sample=${5:-} half=$(( $2 / 2 )) i rc=0 lines=()
    local urls=("$URL_A" "$URL_B") spids=("$PID_A" "$PID_B") names=(two-a two-b) samplers=() probes=() wrks=()
    for i in 0 1; do URL=${urls[i]}; SERVER_PID=${spids[i]}; check_accepting "${names[i]}"; done
    if [ -n "$sample" ]; then
        for i in 0 1; do
            : >"$WORK/rss.samples.$i"
            sample_rss "${spids[i]}" "$WORK/rss.samples.$i" </dev/null >/dev/null 2>&1 &
            samplers+=($!)
            stall_probe "${urls[i]##*:}" "$secs" "$WORK/stalls.$i.txt" </dev/null >/dev/null 2>&1 &
            probes+=($!)
        done
    fi
    for i in 0 1; do
        BENCH_DATA="$WORK/data-pg.lua" BENCH_NAME="two/$scen/$c/${names[i]}" \
            wrk -t1 -c"$half" -d"${secs}s" --timeout 10s --latency -s "$BENCH_DIR/$scen.lua" "${urls[i]}" \
            >"$out.$i" 2>&1 &
        wrks+=($!)
    done
    EXTRA_BG_PIDS=("${samplers[@]}" "${probes[@]}" "${wrks[@]}")
    for i in 0 1; do wait "${wrks[i]}" || rc=1; done
    for i in "${samplers[@]}"; do kill "$i" 2>/dev/null || true; wait "$i" 2>/dev/null || true; done
    for i in "${probes[@]}"; do wait "$i" 2>/dev/null || true; done
    EXTRA_BG_PIDS=()
    [ "$rc" = 0 ] || { cat "$out.0" "$out.1" >&2; die "wrk failed (two instances, $scen $c)"; }
    for i in 0 1; do
        kill -0 "${spids[i]}" 2>/dev/null || { tail -20 "$WORK/${names[i]}.server.log" >&2; die "${names[i]} server died during $scen/$c"; }
        lines[i]=$(grep -a '^BENCH_RESULT ' "$out.$i" | tail -1 || true)
        [ -n "${lines[i]}" ] || { cat "$out.$i" >&2; die "no BENCH_RESULT line from wrk (two instances, ${names[i]} $scen $c)"; }
    done
    RUN_LINE=$(merge_results "${lines[0]}" "${lines[1]}")
    if [ -n "$sample" ]; then
        local s0 s1
        s0=$(cat "$WORK/stalls.0.txt" 2>/dev/null || true); s1=$(cat "$WORK/stalls.1.txt" 2>/dev/null || true)
        if [[ $s0 =~ ^[0-9]+$ && $s1 =~ ^[0-9]+$ ]]; then STALLED=$((s0 + s1)); else STALLED="?"; fi
        RSS_MAX=$(sort -n "$WORK/rss.samples.0" "$WORK/rss.samples.1" | tail -1)
        RSS_MAX=${RSS_MAX:-$(rss_kb "$PID_A")}
    fi
}

# merge_log_stats STATS STATS: LOG_STATS of both servers' logs together
merge_log_stats() {
    local c1 c2 codes
    c1=$(kv "$1" codes); c2=$(kv "$2" codes)
    codes=$(printf '%s\n%s\n' "${c1//,/$'\n'}" "${c2//,/$'\n'}" | grep -v '^-$' | grep . | paste -sd, || true)
    LOG_STATS="logged=$(( $(kv "$1" logged) + $(kv "$2" logged) )) bad=$(( $(kv "$1" bad) + $(kv "$2" bad) )) slow=$(( $(kv "$1" slow) + $(kv "$2" slow) )) max_ms=$(awk -v a="$(kv "$1" max_ms)" -v b="$(kv "$2" max_ms)" 'BEGIN { print (a + 0 > b + 0) ? a : b }') codes=${codes:--}"
}

bench_two() {
    local scen c w fa fb la
    for scen in $TWO_SCENARIOS; do
        for c in $CONNS; do
            vacuum_db
            if [ "$WARMUP" -gt 0 ]; then
                fa=$(log_lines two-a); fb=$(log_lines two-b)
                run_wrk_two "$scen" "$c" "$WARMUP" "$WORK/two-$scen-$c.warmup.txt"; w=$RUN_LINE
                wait_log_quiet two-a; wait_log_quiet two-b
                log_stats two-a "$fa"; la=$LOG_STATS; log_stats two-b "$fb"; merge_log_stats "$la" "$LOG_STATS"
                [ "$(errors_of "$w")" = 0 ] || WARNINGS+=("two $scen/$c warm-up: $(kv "$w" non2xx) non-2xx, $(kv "$w" sock_err) socket errors, $(kv "$w" timeouts) timeouts")
                [ "$(kv "$LOG_STATS" bad)" = 0 ] || WARNINGS+=("two $scen/$c warm-up, server logs: $LOG_STATS")
                if [ "$scen" = mixed ]; then URL=$URL_A; reset_mix_users; fi
            fi
            fa=$(log_lines two-a); fb=$(log_lines two-b)
            run_wrk_two "$scen" "$c" "$EXTRA_SECS" "$WORK/two-$scen-$c.txt" sample
            wait_log_quiet two-a; wait_log_quiet two-b
            log_stats two-a "$fa"; la=$LOG_STATS; log_stats two-b "$fb"; merge_log_stats "$la" "$LOG_STATS"
            RUN_LINE="$RUN_LINE conns=$c"
            record_run two "two:$scen:$c" "$WORK/two-$scen-$c.txt.0" "$WORK/two-$scen-$c.txt.1"
            if [ "$scen" = mixed ]; then URL=$URL_A; reset_mix_users; fi
        done
    done
}

# pgbench_cell SCENARIO CONNS: the database-only ceiling, pgbench's warm-up and measured
# run of the same SQL per request against the same database and data, right after our own
# run of that cell. Our server sits idle meanwhile; its pooled connections (8 by default)
# count against max_connections, and "too many clients" is retried (run_pgbench).
pgbench_cell() {
    local scen=$1 c=$2
    vacuum_db
    if [ "$WARMUP" -gt 0 ]; then
        run_pgbench "$scen" "$c" "$WARMUP" "$WORK/pgbench-$scen-$c.warmup.txt"
    fi
    run_pgbench "$scen" "$c" "$SECS" "$WORK/pgbench-$scen-$c.txt"
    PGB[$scen:$c]=$PG_TPS
    PGB_P99[$scen:$c]=$PG_P99
    CPU_PGB[$scen:$c]=$PG_CPU
    [ "$PG_FAILED" = 0 ] || WARNINGS+=("pgbench $scen/$c: $PG_FAILED failed transactions")
    log "pgbench $scen c=$c: ${PG_TPS:-failed} tps, p99 ${PG_P99:-?} ms"
}

server_log_check() { # NAME: count error/warn lines and 5xx in the server log
    local name=$1 slog=$WORK/$1.server.log n
    n=$(grep -acE '\b(ERROR|WARN|panicked)\b' "$slog" || true)
    if [ "${n:-0}" != 0 ]; then
        WARNINGS+=("$name server log: $n ERROR/WARN/panic lines, first: $(grep -m2 -aE '\b(ERROR|WARN|panicked)\b' "$slog" | cut -c1-200 | tr '\n' ' ' || true)")
    fi
}

# --- machine ---------------------------------------------------------------------------
NPROC=$(nproc)
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
VERSION=$("$BIN" --version 2>/dev/null || echo "?"); VERSION=${VERSION%%$'\n'*}
log "binary $SRC_BIN ($VERSION); work dir $WORK; $NPROC cores, $CPU"
log "scenarios: $SCENARIOS; connections: $CONNS; ${SECS}s each after ${WARMUP}s warm-up; extra row sets: ${EXTRA:-none} (${EXTRA_SECS}s each)"
log "load average: $LOAD_START"
awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.5) }' &&
    WARNINGS+=("load average was $LOAD_START at the start: other work on the machine competes with the benchmark")

# --- PostgreSQL ------------------------------------------------------------------------
createdb "$DB" || die "createdb $DB failed (PostgreSQL at $PGHOST:$PGPORT, user $PGUSER)"
DB_CREATED=1
start_server pg "postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
RSS_PG_START=$(rss_kb "$SERVER_PID")
log "pg server up at $URL (pid $SERVER_PID, RSS $((RSS_PG_START / 1024)) MB); seeding"
declare -a T_MIX MIX_IDS
seed pg
RSS_PG_SEEDED=$(rss_kb "$SERVER_PID")
[ "$CONTIGUOUS" = 1 ] || WARNINGS+=("seeded task ids are not contiguous: pgbench columns skipped")
bench_backend pg
RSS_PG_END=$(rss_kb "$SERVER_PID")
stop_server pg
server_log_check pg
PG_LOG_LINES=$(wc -l <"$WORK/pg.server.log")

# --- PostgreSQL row sets: unnamed statements, PgBouncer, two instances --------------------
# Same database and data as above (the seeded ids are in data-pg.lua); each set starts its
# own server(s), so the per-run RSS and logs are theirs.
PG_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
if has_extra unnamed; then
    cp "$WORK/data-pg.lua" "$WORK/data-pgunnamed.lua"
    start_server pgunnamed "$PG_URL" DB_STATEMENT_CACHE=false
    [[ ${SERVER_INFO[pgunnamed]:-} != *"statement cache"* ]] ||
        WARNINGS+=("pgunnamed: the server's start-up line says 'statement cache': DB_STATEMENT_CACHE=false did not take effect")
    log "pgunnamed server (DB_STATEMENT_CACHE=false) up at $URL (pid $SERVER_PID)"
    bench_backend pgunnamed "$EXTRA_SECS"
    stop_server pgunnamed
    server_log_check pgunnamed
fi
if has_extra pgbouncer; then
    if start_pgbouncer; then
        log "$PGB_VERSION (pid $PGB_PID) on 127.0.0.1:$PGB_PORT, pool_mode=transaction, default_pool_size=$PGB_POOL"
        cp "$WORK/data-pg.lua" "$WORK/data-pgbouncer.lua"
        start_server pgbouncer "postgres://$PGUSER@127.0.0.1:$PGB_PORT/$DB"
        log "pgbouncer server up at $URL (pid $SERVER_PID), database through PgBouncer"
        PGB_CPU0=$(pgbouncer_cpu); PGB_T0=$(date +%s)
        bench_backend pgbouncer "$EXTRA_SECS"
        PGB_CPU1=$(pgbouncer_cpu); PGB_T1=$(date +%s)
        PGB_CPU_TXT=$(awk -v a="$PGB_CPU0" -v b="$PGB_CPU1" -v t="$((PGB_T1 - PGB_T0))" 'BEGIN { if (a == "" || b == "") print "?"; else printf "%.1f s of CPU in %d s (%.0f %% of one core on average, warm-ups and pauses included)", b - a, t, (t > 0 ? 100 * (b - a) / t : 0) }')
        stop_server pgbouncer
        server_log_check pgbouncer
        n=$(grep -acE ' (WARNING|ERROR|FATAL) ' "$PGB_DIR/pgbouncer.log" || true)
        [ "${n:-0}" = 0 ] || WARNINGS+=("pgbouncer log: $n WARNING/ERROR lines, first: $(grep -m2 -aE ' (WARNING|ERROR|FATAL) ' "$PGB_DIR/pgbouncer.log" | cut -c1-200 | tr '\n' ' ' || true)")
        stop_pgbouncer
    fi
fi
if has_extra two; then
    start_server two-a "$PG_URL"; PID_A=$SERVER_PID; URL_A=$URL
    start_server two-b "$PG_URL"; PID_B=$SERVER_PID; URL_B=$URL
    log "two servers on one database: $URL_A (pid $PID_A), $URL_B (pid $PID_B)"
    bench_two
    SERVER_PID=$PID_B; stop_server two-b
    SERVER_PID=$PID_A; stop_server two-a
    server_log_check two-a
    server_log_check two-b
fi

# --- SQLite ----------------------------------------------------------------------------
if [ "$SKIP_SQLITE" != 1 ]; then
    start_server sqlite "sqlite:$WORK/bench.sqlite.db"
    RSS_SQ_START=$(rss_kb "$SERVER_PID")
    log "sqlite server up at $URL (pid $SERVER_PID); seeding"
    seed sqlite
    bench_backend sqlite
    RSS_SQ_END=$(rss_kb "$SERVER_PID")
    stop_server sqlite
    server_log_check sqlite
fi

# --- start-up time on SQLite -------------------------------------------------------------
measure_startup() { # prints milliseconds from spawn to the first 200 from /health
    local port db=$WORK/startup-$1.db
    port=$(free_port) || die "no free port"
    server_env "sqlite:$db"
    if [ "$HAVE_PY" = 1 ]; then
        (cd "$WORK" && python3 - "$port" "$WORK/startup.server.log" env "${ENV_ARGS[@]}" PORT="$port" "$BIN") <<'PY'
import socket, subprocess, sys, time
port, logfile, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
with open(logfile, "ab") as log:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=log, stderr=log)
    ms = None
    while time.perf_counter() - t0 < 30 and p.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    ms = (time.perf_counter() - t0) * 1000
                    break
        except OSError:
            time.sleep(0.0005)
    p.terminate()
    p.wait(10)
print("%.1f" % ms if ms is not None else "")
PY
    else
        local t0 t1 pid
        t0=$(date +%s%N)
        (cd "$WORK" && exec env "${ENV_ARGS[@]}" PORT="$port" "$BIN") >>"$WORK/startup.server.log" 2>&1 &
        pid=$!
        while [ $(( $(date +%s%N) - t0 )) -lt 30000000000 ]; do
            if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)" = 200 ]; then
                t1=$(date +%s%N); break
            fi
        done
        kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
        [ -n "${t1:-}" ] && awk -v d=$((t1 - t0)) 'BEGIN { printf "%.1f\n", d / 1e6 }' || echo ""
    fi
}
STARTUPS=()
for i in $(seq 1 "$STARTUP_RUNS"); do
    for try in 1 2 3; do
        ms=$(measure_startup "$i-$try")
        [ -n "$ms" ] && break
        # free_port's pick can be taken meanwhile (wrk's and pgbench's ephemeral ports share
        # the range): that is the harness's race, not a start-up failure, so try another port
        tail -1 "$WORK/startup.server.log" | grep -q 'Address already in use' || break
    done
    [ -n "$ms" ] && STARTUPS+=("$ms") || WARNINGS+=("start-up run $i: no 200 from /health within 30 s")
done
if [ ${#STARTUPS[@]} -gt 0 ]; then
    STARTUP=$(printf '%s\n' "${STARTUPS[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%s ms (median of %d fresh SQLite files; min %s, max %s)", a[int((NR + 1) / 2)], NR, a[1], a[NR] }')
else
    STARTUP="n/a"
fi
log "start-up: $STARTUP"

# --- binary size -----------------------------------------------------------------------
SIZE=$(stat -c %s "$BIN")
cp "$BIN" "$WORK/todo-api.stripped"
if command -v strip >/dev/null 2>&1 && strip "$WORK/todo-api.stripped" 2>/dev/null; then
    SSIZE=$(stat -c %s "$WORK/todo-api.stripped")
    SIZE_TXT=$(awk -v s="$SSIZE" -v o="$SIZE" 'BEGIN { printf "%.2f MiB stripped (%d bytes; as built: %d bytes%s)", s / 1048576, s, o, (s == o ? ", already stripped" : "") }')
else
    SIZE_TXT=$(awk -v o="$SIZE" 'BEGIN { printf "%.2f MiB as built (%d bytes; strip not available)", o / 1048576, o }')
fi

# --- report ----------------------------------------------------------------------------
mb() { awk -v k="$1" 'BEGIN { if (k == "") print "-"; else printf "%.1f", k / 1024 }'; }
errs_cell() { # BENCH_RESULT line, LOG_STATS of the same run
    local l=$1 g=${2:-}; [ -n "$l" ] || { echo "-"; return; }
    local n s t b; n=$(kv "$l" non2xx); s=$(kv "$l" sock_err); t=$(kv "$l" timeouts); b=$(kv "$g" bad)
    if [ "$((n + s + t))" = 0 ] && [ "${b:-0}" = 0 ]; then echo 0; return; fi
    local txt="$n non-2xx, $s sock, $t timeout"
    [ "${b:-0}" = 0 ] || txt="$txt; server log: $b non-2xx ($(kv "$g" codes))"
    echo "**$txt**"
}
REPORT=$WORK/results.md
{
    echo "todo-api benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'); $NPROC cores ($CPU), $MEM; loopback; load generator, server and PostgreSQL share the cores"
    echo "load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) — anything else running on the machine shows up in these numbers"
    echo "binary: $VERSION; wrk -t2, ${SECS}s per run after ${WARMUP}s warm-up; server defaults (WORKERS=${WORKERS:-default}, DB_POOL_SIZE=${DB_POOL_SIZE:-default}, RUST_LOG=${RUST_LOG:-info}; server says: ${SERVER_INFO[pg]:-?})"
    [ -n "$EXTRA" ] && echo "extra PostgreSQL row sets ($EXTRA): ${EXTRA_SECS}s per run after ${WARMUP}s warm-up"
    echo
    echo "**Ratios.** Our req/s ÷ pgbench's for the same SQL, client count and database (pgbench -M prepared, direct connection); SQLite/PG = SQLite req/s ÷ PostgreSQL (default) req/s."
    echo
    echo "| scenario | conns | PostgreSQL (default) | unnamed statements | through PgBouncer | two instances (summed) | SQLite/PG |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for scen in $SCENARIOS; do
        for c in $CONNS; do
            p=${PGB[$scen:$c]:-}
            echo "| $scen | $c | $(ratio "$(kv "${RES[pg:$scen:$c]:-}" rps)" "$p") | $(ratio "$(kv "${RES[pgunnamed:$scen:$c]:-}" rps)" "$p") | $(ratio "$(kv "${RES[pgbouncer:$scen:$c]:-}" rps)" "$p") | $(ratio "$(kv "${RES[two:$scen:$c]:-}" rps)" "$p") | $(ratio "$(kv "${RES[sqlite:$scen:$c]:-}" rps)" "$(kv "${RES[pg:$scen:$c]:-}" rps)") |"
        done
    done
    echo
    echo "**PostgreSQL (default: statement cache on, each statement prepared once per pooled connection) and SQLite**"
    echo
    echo "| scenario | conns | stalled conns | req/s | p50 ms | p99 ms | non-2xx + socket errors | server RSS max MB | pgbench tps (same SQL, clients) | pgbench p99 ms | ours/pgbench | SQLite req/s | SQLite p99 ms | SQLite errors | SQLite/PG |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for scen in $SCENARIOS; do
        for c in $CONNS; do
            l=${RES[pg:$scen:$c]:-}; q=${RES[sqlite:$scen:$c]:-}; p=${PGB[$scen:$c]:-}
            pm=""; [ "$scen" = mixed ] && [ -n "$p" ] && pm="¹"
            echo "| $scen | $c | ${STALLS[pg:$scen:$c]:--} | $(fmt_int "$(kv "$l" rps)") | $(fmt_ms "$(kv "$l" p50_ms)") | $(fmt_ms "$(kv "$l" p99_ms)") | $(errs_cell "$l" "${LOGS[pg:$scen:$c]:-}") | $(mb "${RSS[pg:$scen:$c]:-}") | $(fmt_int "$p")$pm | $(fmt_ms "${PGB_P99[$scen:$c]:-}") | $(ratio "$(kv "$l" rps)" "$p") | $(fmt_int "$(kv "$q" rps)") | $(fmt_ms "$(kv "$q" p99_ms)") | $(errs_cell "$q" "${LOGS[sqlite:$scen:$c]:-}") | $(ratio "$(kv "$q" rps)" "$(kv "$l" rps)") |"
        done
    done
    echo
    echo "stalled conns: connections that got no response from 25 % to 85 % of the run (PostgreSQL run; SQLite in the warnings). p50/p99 are wrk's, corrected for coordinated omission."
    [[ " $SCENARIOS " == *" mixed "* ]] && echo "¹ mixed: pgbench requests/s equivalent (weights list 35, get 35, toggle 7, update 7, create+delete 8 — that script is two requests)."
    echo
    echo "**Where the CPU goes** (µs of CPU per request in the measured runs above: the server's, PostgreSQL's, and the rest of the machine's busy time, which is mostly the load generator; idle: the machine's idle share of the run. While the machine is busy, ours/pgbench ≈ pgbench's busy µs ÷ ours.)"
    echo
    echo "| scenario | conns | ours: server | ours: PostgreSQL | ours: wrk + rest | ours: busy | ours: idle % | pgbench: PostgreSQL | pgbench: pgbench + rest | pgbench: busy | pgbench: idle % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for scen in $SCENARIOS; do
        for c in $CONNS; do
            o=${CPU_OURS[$scen:$c]:-}; g=${CPU_PGB[$scen:$c]:-}
            [ -n "$o$g" ] || continue
            echo "| $scen | $c | $(kv "$o" server) | $(kv "$o" pg) | $(kv "$o" rest) | $(kv "$o" busy) | $(kv "$o" idle) | $(kv "$g" pg) | $(kv "$g" rest) | $(kv "$g" busy) | $(kv "$g" idle) |"
        done
    done
    if [ -n "$EXTRA" ]; then
        echo
        echo "**Extra PostgreSQL row sets** (${EXTRA_SECS}s per run after ${WARMUP}s warm-up; same database, data and pgbench ceiling as above)"
        echo
        echo "| row set | scenario | conns | stalled conns | req/s | p50 ms | p99 ms | non-2xx + socket errors | server RSS max MB | pgbench tps | ours/pgbench | × default row |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for set in pgunnamed pgbouncer two; do
            case $set in
                pgunnamed) has_extra unnamed || continue; title="unnamed statements"; scens=$SCENARIOS ;;
                pgbouncer) has_extra pgbouncer || continue; title="PgBouncer (transaction mode)"; scens=$SCENARIOS ;;
                two) has_extra two || continue; title="two instances²"; scens=$TWO_SCENARIOS ;;
            esac
            for scen in $scens; do
                for c in $CONNS; do
                    l=${RES[$set:$scen:$c]:-}; p=${PGB[$scen:$c]:-}; d=${RES[pg:$scen:$c]:-}
                    [ -n "$l" ] || continue
                    cc=$c; [ "$set" = two ] && cc="2×$((c / 2))"
                    pm=""; [ "$scen" = mixed ] && [ -n "$p" ] && pm="¹"
                    echo "| $title | $scen | $cc | ${STALLS[$set:$scen:$c]:--} | $(fmt_int "$(kv "$l" rps)") | $(fmt_ms "$(kv "$l" p50_ms)") | $(fmt_ms "$(kv "$l" p99_ms)") | $(errs_cell "$l" "${LOGS[$set:$scen:$c]:-}") | $(mb "${RSS[$set:$scen:$c]:-}") | $(fmt_int "$p")$pm | $(ratio "$(kv "$l" rps)" "$p") | $(ratio "$(kv "$l" rps)" "$(kv "$d" rps)") |"
                done
            done
        done
        echo
        echo "unnamed statements: the server with DB_STATEMENT_CACHE=false (every statement parsed and planned each time, as behind a transaction-mode pooler). PgBouncer: ${PGB_VERSION:-PgBouncer}, pool_mode=transaction, default_pool_size=$PGB_POOL, DB_STATEMENT_CACHE unset (the server notices the first missing prepared statement and goes unnamed); pgbouncer used ${PGB_CPU_TXT:-?}. × default row: req/s ÷ the PostgreSQL (default) row of the same scenario and connection count (one server, ${SECS}s run)."
        has_extra two && echo "² two servers on the same database, each driven by its own wrk (-t1, half the connections) at the same time: req/s and errors summed; p50, p99 and RSS are the worse of the two servers."
    fi
    echo
    echo "- CPU steal (time the hypervisor gave to other guests) during the measured runs: $(steal_pct ours) % in ours on PostgreSQL (default), $(steal_pct pgbench) % in pgbench's — the more steal, the lower and noisier the figures; a large difference between the two skews the ratios"
    echo "- disk reads on the machine during the same runs: $(awk -v k="${READ_KB[ours]}" 'BEGIN { printf "%.1f", k / 1024 }') MB in ours, $(awk -v k="${READ_KB[pgbench]}" 'BEGIN { printf "%.1f", k / 1024 }') MB in pgbench's — the benchmark reads nothing itself; reads mean other work (or evicted pages faulting back in), which on these VMs came with stalls of every thread for 20-240 ms"
    echo "- start-up to first 200 from /health on SQLite: $STARTUP"
    echo "- binary: $SIZE_TXT"
    echo "- server RSS (MB) on PostgreSQL: $(mb "$RSS_PG_START") after start, $(mb "$RSS_PG_SEEDED") after seeding, $(mb "$RSS_PG_END") at the end ($PG_LOG_LINES log lines)"
    [ "$SKIP_SQLITE" != 1 ] && echo "- server RSS (MB) on SQLite: $(mb "$RSS_SQ_START") after start, $(mb "$RSS_SQ_END") at the end"
    if [ ${#WARNINGS[@]} -gt 0 ]; then
        echo
        echo "Warnings:"
        for w in "${WARNINGS[@]}"; do echo "- $w"; done
    fi
    echo
    echo "total bench time: $(( $(date +%s) - T0 )) s"
} >"$REPORT"
echo
cat "$REPORT"
[ -n "${BENCH_OUT:-}" ] && cp "$REPORT" "$BENCH_OUT"
[ "$BAD_RUNS" = 0 ] || { log "$BAD_RUNS measured run(s) saw errors"; exit 3; }
exit 0
