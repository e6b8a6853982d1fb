//! The API test suite: every test starts the real server on an ephemeral port and talks
//! HTTP to it, on SQLite and (with `TEST_DATABASE_URL`) on PostgreSQL.

#[allow(dead_code)]
mod helpers;

mod auth;
mod cors;
mod explain;
mod faults;
mod http_syntax;
mod isolation;
mod jwks;
mod large;
mod lifecycle;
mod openapi;
mod outage;
mod pgbouncer;
mod sqlite_file;
mod statements;
mod tasks;
mod validation;
