#!/usr/bin/env bash
# bench/run.sh: load benchmark of todo-api against PostgreSQL and embedded SQLite, with the
# database-only ceiling (pgbench running the same SQL) beside it. See bench/README.md.
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
[[ $SECS =~ ^[0-9]+$ && $SECS -ge 1 ]] || die "BENCH_SECONDS must be a positive integer"
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
SAMPLER_PID=""
PROBE_PID=""
STALLED="?"
# Our own copy, so that a binary replaced mid-run does not change what is measured, under
# a name that a `pkill todo-api` elsewhere on the machine does not hit.
BIN=$WORK/bench-server
cp "$SRC_BIN" "$BIN"

cleanup() {
    local rc=$?
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
    [ -n "$PROBE_PID" ] && kill "$PROBE_PID" 2>/dev/null || true
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
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

# start_server NAME DATABASE_URL: sets SERVER_PID, URL; PORT=0, the port read from the log
start_server() {
    local name=$1 dburl=$2 slog=$WORK/$1.server.log port="" line
    server_env "$dburl"
    # run from the work directory, so that no ./.env of the caller's is read
    (cd "$WORK" && exec env "${ENV_ARGS[@]}" PORT=0 "$BIN") >"$WORK/$name.server.out" 2>"$slog" &
    SERVER_PID=$!
    for _ in $(seq 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$slog" >&2; die "$name server exited at start-up"; }
        line=$(grep -m1 -aoE 'listening on http://[0-9.]+:[0-9]+' "$slog" || true)
        if [ -n "$line" ]; then port=${line##*:}; break; fi
        sleep 0.1
    done
    [ -n "$port" ] || { tail -20 "$slog" >&2; die "$name server: no 'listening on' line in 30 s"; }
    URL="http://127.0.0.1:$port"
    # "(database: ..., workers: 8, pool: 8, ...)" from the start-up line, if it says so
    SERVER_INFO[$name]=$(grep -m1 -aoE 'workers: [0-9]+, pool: [0-9]+' "$slog" || true)
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
    BENCH_DATA="$WORK/data-$backend.lua" BENCH_NAME="$backend/$scen/$c" \
        wrk -t2 -c"$c" -d"${secs}s" --timeout 10s --latency -s "$BENCH_DIR/$scen.lua" "$URL" \
        >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed ($backend $scen $c)"; }
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
}

# run_pgbench SCENARIO CONNS SECONDS OUTFILE: sets PG_TPS (mixed: requests/s equivalent,
# create_delete.sql counting as two requests) and PG_FAILED
run_pgbench() {
    local scen=$1 c=$2 secs=$3 out=$4 files=() defs=() tps failed total cd label=""
    [[ $out == *.warmup.txt ]] && label=" (warm-up)"
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
        if (cd "$WORK" && pgbench -n -M prepared -T "$secs" -c "$c" -j 2 "${defs[@]}" "${fargs[@]}" "$DB") >"$out" 2>&1; then
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
declare -A RES PGB RSS LOGS SERVER_INFO STALLS
BAD_RUNS=0

errors_of() { # BENCH_RESULT line -> "N" total of non-2xx + socket errors + timeouts
    echo $(( $(kv "$1" non2xx) + $(kv "$1" sock_err) + $(kv "$1" timeouts) ))
}

# Every PostgreSQL run, ours and pgbench's, starts from a vacuumed table: the toggle and
# update runs leave tens of thousands of dead index entries on the seeded rows (completed
# is indexed, so those updates are not HOT), and a list run that has to step over them is
# several times slower, whichever client runs it.
vacuum_db() {
    psql -qAtX -d "$DB" -c 'vacuum (analyze) tasks' -c 'vacuum (analyze) users' >/dev/null 2>&1 ||
        WARNINGS+=("vacuum of $DB failed")
}

# bench_backend NAME: warm-up + measured wrk run per scenario and connection count, and
# (postgres) pgbench for the same SQL right after each
bench_backend() {
    local backend=$1 scen c line w from
    for scen in $SCENARIOS; do
        for c in $CONNS; do
            if [ "$backend" = pg ]; then vacuum_db; fi
            if [ "$WARMUP" -gt 0 ]; then
                from=$(log_lines "$backend")
                run_wrk "$backend" "$scen" "$c" "$WARMUP" "$WORK/$backend-$scen-$c.warmup.txt"; w=$RUN_LINE
                wait_log_quiet "$backend"; log_stats "$backend" "$from"
                [ "$(errors_of "$w")" = 0 ] || WARNINGS+=("$backend $scen/$c warm-up: $(kv "$w" non2xx) non-2xx, $(kv "$w" sock_err) socket errors, $(kv "$w" timeouts) timeouts")
                [ "$(kv "$LOG_STATS" bad)" = 0 ] || WARNINGS+=("$backend $scen/$c warm-up, server log: $LOG_STATS")
                if [ "$scen" = mixed ]; then reset_mix_users; fi
            fi
            from=$(log_lines "$backend")
            run_wrk "$backend" "$scen" "$c" "$SECS" "$WORK/$backend-$scen-$c.txt" sample; line=$RUN_LINE
            wait_log_quiet "$backend"; log_stats "$backend" "$from"
            LOGS[$backend:$scen:$c]=$LOG_STATS
            if [ "$(kv "$LOG_STATS" bad)" != 0 ] || [ "$(kv "$LOG_STATS" slow)" != 0 ]; then
                WARNINGS+=("$backend $scen/$c, server log (incl. responses wrk did not wait for): $LOG_STATS")
            fi
            local max; max=$(sort -n "$WORK/rss.samples" | tail -1); max=${max:-$(rss_kb "$SERVER_PID")}
            RSS[$backend:$scen:$c]=$max
            RES[$backend:$scen:$c]=$line
            log "$backend $scen c=$c: $(kv "$line" rps) req/s, stalled conns $STALLED/$c, p50 $(kv "$line" p50_ms) ms, p99 $(kv "$line" p99_ms) ms, non-2xx $(kv "$line" non2xx), sock $(kv "$line" sock_err), timeouts $(kv "$line" timeouts), RSS max $((max / 1024)) MB"
            STALLS[$backend:$scen:$c]=$STALLED
            if [ "$STALLED" != 0 ] && [ "$STALLED" != "?" ]; then
                WARNINGS+=("$backend $scen/$c: $STALLED of $c connections made no progress through the middle of the run (server-side bytes_received unchanged from 25 % to 85 % of it): requests the server left unanswered, which wrk does not count")
            fi
            if [ "$(errors_of "$line")" != 0 ] || [ "$(kv "$LOG_STATS" bad)" != 0 ]; then
                BAD_RUNS=$((BAD_RUNS + 1))
                WARNINGS+=("$backend $scen/$c: $(kv "$line" non2xx) non-2xx, $(kv "$line" sock_err) socket errors, $(kv "$line" timeouts) timeouts; first: $(grep -a '^BENCH_ERRORS' "$WORK/$backend-$scen-$c.txt" | cut -c14-400 || true)")
            fi
            if grep -aq '^BENCH_EXTRA' "$WORK/$backend-$scen-$c.txt"; then
                local extra; extra=$(grep -a '^BENCH_EXTRA' "$WORK/$backend-$scen-$c.txt" | tail -1)
                log "  ops: ${extra#BENCH_EXTRA }"
                # a few deletes become creates while the threads' pools of created tasks fill
                # up at the start; more than that means creates are not being tracked
                [ $(( $(kv "$extra" delete_fallback) * 20 )) -le "$(kv "$extra" D)" ] ||
                    WARNINGS+=("$backend $scen/$c: delete_fallback=$(kv "$extra" delete_fallback) of D=$(kv "$extra" D)")
                for key in created_untracked no_request_id; do
                    [ "$(kv "$extra" $key)" = 0 ] || WARNINGS+=("$backend $scen/$c: $key=$(kv "$extra" $key)")
                done
            fi
            if [ "$scen" = mixed ]; then reset_mix_users; fi
        done
    done
}

# bench_pgbench: the database-only ceiling, the same SQL per request against the same
# database and data, run once the server has stopped (so that its pool's connections do
# not count against max_connections)
bench_pgbench() {
    local scen c
    for scen in $SCENARIOS; do
        for c in $CONNS; do
            vacuum_db
            if [ "$WARMUP" -gt 0 ]; then
                run_pgbench "$scen" "$c" "$WARMUP" "$WORK/pgbench-$scen-$c.warmup.txt"
            fi
            run_pgbench "$scen" "$c" "$SECS" "$WORK/pgbench-$scen-$c.txt"
            PGB[$scen:$c]=$PG_TPS
            [ "$PG_FAILED" = 0 ] || WARNINGS+=("pgbench $scen/$c: $PG_FAILED failed transactions")
            log "pgbench $scen c=$c: ${PG_TPS:-failed} tps"
        done
    done
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
log "scenarios: $SCENARIOS; connections: $CONNS; ${SECS}s each after ${WARMUP}s warm-up"
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
if [ "$CONTIGUOUS" = 1 ]; then bench_pgbench; fi
PG_LOG_LINES=$(wc -l <"$WORK/pg.server.log")

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
    ms=$(measure_startup "$i")
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
    echo
    echo "| scenario | conns | stalled conns | req/s | p50 ms | p99 ms | non-2xx + socket errors | server RSS max MB | pgbench tps (same SQL, clients) | ours/pgbench | SQLite req/s | SQLite p99 ms | SQLite errors | SQLite/PG |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for scen in $SCENARIOS; do
        for c in $CONNS; do
            l=${RES[pg:$scen:$c]:-}; q=${RES[sqlite:$scen:$c]:-}; p=${PGB[$scen:$c]:-}
            pm=""; [ "$scen" = mixed ] && [ -n "$p" ] && pm="¹"
            echo "| $scen | $c | ${STALLS[pg:$scen:$c]:--} | $(fmt_int "$(kv "$l" rps)") | $(fmt_ms "$(kv "$l" p50_ms)") | $(fmt_ms "$(kv "$l" p99_ms)") | $(errs_cell "$l" "${LOGS[pg:$scen:$c]:-}") | $(mb "${RSS[pg:$scen:$c]:-}") | $(fmt_int "$p")$pm | $(ratio "$(kv "$l" rps)" "$p") | $(fmt_int "$(kv "$q" rps)") | $(fmt_ms "$(kv "$q" p99_ms)") | $(errs_cell "$q" "${LOGS[sqlite:$scen:$c]:-}") | $(ratio "$(kv "$q" rps)" "$(kv "$l" rps)") |"
        done
    done
    echo
    echo "stalled conns: connections that got no response from 25 % to 85 % of the run (PostgreSQL run; SQLite in the warnings). p50/p99 are wrk's, corrected for coordinated omission."
    [[ " $SCENARIOS " == *" mixed "* ]] && echo "¹ mixed: pgbench requests/s equivalent (weights list 35, get 35, toggle 7, update 7, create+delete 8 — that script is two requests)."
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
