#!/usr/bin/env bash
# Runs examples/curl.sh against the release binary, on SQLite and on PostgreSQL, so the
# README's curl examples can never go stale. Needs TODO_API_BIN and TEST_DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${TODO_API_BIN:?set TODO_API_BIN}"
secret="ci-walkthrough-secret-0123456789"
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

run_against() { # run_against DATABASE_URL
  PORT=0 DATABASE_URL="$1" BETTER_AUTH_SECRET="$secret" "$bin" 2>"$work/server.log" &
  pid=$!
  for _ in $(seq 1 100); do grep -q 'listening on http://' "$work/server.log" && break; sleep 0.1; done
  addr=$(grep -o 'listening on http://[^ ]*' "$work/server.log" | head -n 1 | sed 's|listening on ||')
  [ -n "$addr" ] || { cat "$work/server.log"; exit 1; }
  BASE="$addr" TODO_API="$bin" BETTER_AUTH_SECRET="$secret" bash examples/curl.sh >"$work/walk.log" 2>&1 \
    || { cat "$work/walk.log"; echo "--- server log"; cat "$work/server.log"; exit 1; }
  echo "walkthrough ok against ${1%%:*}"
  kill -TERM "$pid"; wait "$pid"; pid=""
}

run_against "sqlite:$work/walk.db"
pg_db="todo_walk_$$"
psql -h 127.0.0.1 -U postgres -qc "create database $pg_db" postgres
run_against "${TEST_DATABASE_URL%/*}/$pg_db"
psql -h 127.0.0.1 -U postgres -qc "drop database if exists $pg_db with (force)" postgres
