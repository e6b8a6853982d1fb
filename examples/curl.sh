#!/usr/bin/env bash
# A tour of the whole API with curl: every endpoint and the usual errors, checking each
# status code, so CI can run it against a live server (docs/API.md is the contract).
#
#   export BETTER_AUTH_SECRET=$(openssl rand -base64 32)
#   todo-api &           # the server verifies tokens with BETTER_AUTH_SECRET ...
#   examples/curl.sh     # ... and `todo-api token` here signs them with it: share it.
#
# BASE is the server's URL, TODO_API the path of the todo-api binary.
set -euo pipefail

BASE=${BASE:-http://127.0.0.1:8000}
TODO_API=${TODO_API:-todo-api}
: "${BETTER_AUTH_SECRET:?set BETTER_AUTH_SECRET to the secret the server runs with}"

BODY=$(mktemp)
HEADERS=$(mktemp)
trap 'rm -f "$BODY" "$HEADERS"' EXIT

# step TITLE: print a heading for the next request.
step() { printf '\n## %s\n' "$1"; }

# shown CURL_ARGS...: the curl command for a message, tokens elided.
shown() { echo "curl $*" | sed 's/Bearer [^ ]*/Bearer .../g'; }

# call STATUS CURL_ARGS...: run curl, print status and body, fail unless the status is STATUS.
call() {
  local want=$1 got
  shift
  got=$(curl -sS -o "$BODY" -D "$HEADERS" -w '%{http_code}' "$@") ||
    { echo "FAIL: no answer from $BASE: $(shown "$@")" >&2; exit 1; }
  echo "$got $(cat "$BODY")"
  if [ "$got" != "$want" ]; then
    echo "FAIL: expected HTTP $want, got $got from: $(shown "$@")" >&2
    exit 1
  fi
}

# field EXPR: evaluate a Python expression over the last body `d`; print it as JSON.
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps($1))" <"$BODY"; }

# header NAME: the value of a header of the last response.
header() { grep -i "^$1:" "$HEADERS" | cut -d: -f2- | sed 's/^ *//' | tr -d '\r'; }

# expect WHAT ACTUAL WANTED: fail unless ACTUAL equals WANTED.
expect() {
  if [ "$2" != "$3" ]; then
    echo "FAIL: $1: expected $3, got $2" >&2
    exit 1
  fi
}

# Two users, unique per run so that reruns against the same database start empty.
RUN=$(date +%s)$$
ALICE="Authorization: Bearer $("$TODO_API" token --sub "alice-$RUN" --email "alice-$RUN@example.com" --name Alice)"
BOB="Authorization: Bearer $("$TODO_API" token --sub "bob-$RUN" --email "bob-$RUN@example.com" --name Bob)"

step "Health (no token needed)"
call 200 "$BASE/health"

step "No token: 401 with WWW-Authenticate: Bearer"
call 401 "$BASE/api/tasks"
expect "WWW-Authenticate" "$(header WWW-Authenticate)" "Bearer"

step "Create a task without a due date: 201 and a Location header"
call 201 "$BASE/api/tasks" -H "$ALICE" -d '{"title": "Buy milk", "description": "2 litres"}'
MILK=$(field "d['id']")
expect "Location" "$(header Location)" "/api/tasks/$MILK"

step "Create one due on a date (stored as midnight UTC)"
call 201 "$BASE/api/tasks" -H "$ALICE" -d '{"title": "File taxes", "due_date": "2026-04-15"}'
TAXES=$(field "d['id']")
expect "due_date" "$(field "d['due_date']")" '"2026-04-15T00:00:00.000000Z"'

step "Create one due at a time with an offset (stored in UTC)"
call 201 "$BASE/api/tasks" -H "$ALICE" -d '{"title": "call the bank", "due_date": "2026-03-01T09:30:00+02:00"}'
CALL=$(field "d['id']")
expect "due_date" "$(field "d['due_date']")" '"2026-03-01T07:30:00.000000Z"'

step "List: newest first by default"
call 200 "$BASE/api/tasks" -H "$ALICE"
expect "ids" "$(field "[t['id'] for t in d]")" "[$CALL, $TAXES, $MILK]"

step "Sort by title, A to Z ignoring case"
call 200 "$BASE/api/tasks?sort=title" -H "$ALICE"
expect "ids" "$(field "[t['id'] for t in d]")" "[$MILK, $CALL, $TAXES]"

step "Sort by due date, soonest first; undated last"
call 200 "$BASE/api/tasks?sort=due_date" -H "$ALICE"
expect "ids" "$(field "[t['id'] for t in d]")" "[$CALL, $TAXES, $MILK]"

step "Sort by due date, latest first; undated still last"
call 200 "$BASE/api/tasks?sort=due_date&order=desc" -H "$ALICE"
expect "ids" "$(field "[t['id'] for t in d]")" "[$TAXES, $CALL, $MILK]"

step "Get one task"
call 200 "$BASE/api/tasks/$MILK" -H "$ALICE"

step "Update with PUT: only the fields sent change"
call 200 -X PUT "$BASE/api/tasks/$MILK" -H "$ALICE" -d '{"title": "Buy oat milk"}'
expect "title" "$(field "d['title']")" '"Buy oat milk"'
expect "description" "$(field "d['description']")" '"2 litres"'

step "Update with PATCH: null clears a field"
call 200 -X PATCH "$BASE/api/tasks/$MILK" -H "$ALICE" -d '{"description": null, "due_date": "2026-01-31"}'
expect "description" "$(field "d['description']")" "null"

step "Toggle completion"
call 200 -X PATCH "$BASE/api/tasks/$MILK/complete" -H "$ALICE"
expect "completed" "$(field "d['completed']")" "true"

step "Filter: completed, then pending"
call 200 "$BASE/api/tasks?status=completed" -H "$ALICE"
expect "ids" "$(field "[t['id'] for t in d]")" "[$MILK]"
call 200 "$BASE/api/tasks?status=pending" -H "$ALICE"
expect "ids" "$(field "[t['id'] for t in d]")" "[$CALL, $TAXES]"

step "Another user sees none of it: empty list, 404 for Alice's task"
call 200 "$BASE/api/tasks" -H "$BOB"
expect "Bob's tasks" "$(field "d")" "[]"
call 404 "$BASE/api/tasks/$MILK" -H "$BOB"
call 404 -X DELETE "$BASE/api/tasks/$MILK" -H "$BOB"

step "Errors: empty title, id that is not an integer, unknown sort"
call 400 "$BASE/api/tasks" -H "$ALICE" -d '{"title": ""}'
call 400 "$BASE/api/tasks/abc" -H "$ALICE"
call 400 "$BASE/api/tasks?sort=priority" -H "$ALICE"

step "Delete: 204, then the task is gone"
call 204 -X DELETE "$BASE/api/tasks/$MILK" -H "$ALICE"
call 404 "$BASE/api/tasks/$MILK" -H "$ALICE"

printf '\nAll checks passed.\n'
