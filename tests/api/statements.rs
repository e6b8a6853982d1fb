//! `DB_STATEMENT_CACHE=false`: every statement sent unnamed (what the store also falls back
//! to behind a transaction-mode pooler) gives the same answers as the default prepared
//! statements, on every route; a value that does not decode is 500, not 503; and a
//! prepared statement whose table changed under it is prepared again.

use std::time::{Duration, Instant};

use serde_json::json;
use todo_api::config::Database;
use todo_api::Config;

use crate::helpers::*;

/// A server on a scratch PostgreSQL database, its configuration adjusted by `tweak`; None
/// when the tests run without PostgreSQL.
fn postgres_app(tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let engine = Engine::postgres()?;
    Some(TestApp::spawn_with(TestDb::new(&engine), tweak))
}

/// Changes the schema under the running server, on a connection of the test's own.
fn alter_under_the_server(app: &TestApp, sql: &str) {
    app.db
        .postgres_client()
        .unwrap()
        .batch_execute(sql)
        .unwrap();
}

#[test]
fn every_route_answers_the_same_without_the_statement_cache() {
    let Some(app) = postgres_app(|c| c.statement_cache = false) else {
        return;
    };
    let alice = app.user("alice");
    let bob = app.user("bob");
    let mut ids = Vec::new();
    // Twice through, so that a statement cache, were it on, would be used.
    for round in 0..2 {
        let t = app.create(
            &alice,
            &json!({ "title": format!("t{round}"), "due_date": "2026-05-01" }).to_string(),
        );
        let path = format!("/api/tasks/{}", t["id"]);
        assert_eq!(alice.get(&path).json(), t);
        assert_eq!(
            alice.put(&path, r#"{"title": "renamed"}"#).json()["title"],
            "renamed"
        );
        assert_eq!(alice.patch(&path, r#"{"description": null}"#).status, 200);
        assert_eq!(
            alice.patch(&format!("{path}/complete"), "").json()["completed"],
            true
        );
        assert_eq!(bob.get(&path).status, 404);
        for query in [
            "",
            "?status=completed",
            "?sort=title",
            "?sort=due_date&order=desc",
        ] {
            let list = alice.get(&format!("/api/tasks{query}")).json();
            assert_eq!(list.as_array().unwrap().len(), round + 1, "{query}");
        }
        ids.push(t["id"].clone());
    }
    for id in ids {
        assert_eq!(alice.delete(&format!("/api/tasks/{id}")).status, 204);
    }
    assert_eq!(alice.get("/api/tasks").json(), json!([]));
}

/// A value that does not decode (here a column whose type changed under the server) is the
/// server's problem, 500, not a database that is away (503 with `Retry-After`, which a client
/// would retry for ever); the database itself stays usable.
#[test]
fn a_value_that_does_not_decode_is_500_not_503() {
    // Unnamed statements: each request describes its statement afresh, so the changed type
    // reaches the decoding (a prepared one would fail in PostgreSQL first: SQLSTATE 0A000).
    let Some(app) = postgres_app(|c| c.statement_cache = false) else {
        return;
    };
    let alice = app.user("alice");
    let t = app.create(&alice, r#"{"title": "x"}"#);
    let path = format!("/api/tasks/{}", t["id"]);
    alter_under_the_server(
        &app,
        "alter table tasks alter column completed drop default; \
         alter table tasks alter column completed type integer using completed::int",
    );
    for r in [alice.get(&path), alice.get("/api/tasks")] {
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(r.json(), json!({"detail": "internal server error"}));
        assert_eq!(r.header("Retry-After"), None);
    }
    assert_eq!(app.anonymous().get("/health").status, 200);
}

/// A migration that changes a column's type while the server runs: PostgreSQL refuses the
/// statements prepared before it ("cached plan must not change result type", 0A000) on every
/// pooled connection, until each is prepared again. The server does that at once.
#[test]
fn prepared_statements_survive_a_column_type_change() {
    let Some(app) = postgres_app(|c| {
        c.workers = 1;
        c.pool_size = 1;
    }) else {
        return;
    };
    let alice = app.user("alice");
    let t = app.create(&alice, r#"{"title": "before"}"#);
    let path = format!("/api/tasks/{}", t["id"]);
    // Prepared on the pool's one connection.
    assert_eq!(alice.get("/api/tasks").status, 200);
    assert_eq!(alice.get(&path).status, 200);
    alter_under_the_server(
        &app,
        "alter table tasks alter column title type varchar(300)",
    );
    for _ in 0..2 {
        let r = alice.get("/api/tasks");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()[0]["title"], "before");
        assert_eq!(alice.get(&path).json()["title"], "before");
        let r = alice.put(&path, r#"{"title": "after"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(alice.get(&path).json()["title"], "after");
        assert_eq!(alice.put(&path, r#"{"title": "before"}"#).status, 200);
    }
}

#[test]
fn a_statement_or_lock_timeout_is_503_and_passes() {
    // The database gives up on statements that wait, as one configured with a
    // statement_timeout or lock_timeout does, while another session locks the table.
    for option in ["lock_timeout", "statement_timeout"] {
        let Some(app) = postgres_app(|c| {
            let Database::Postgres(url) = &mut c.database else {
                unreachable!()
            };
            let joint = if url.contains('?') { '&' } else { '?' };
            url.push_str(&format!("{joint}options=-c%20{option}%3D300"));
        }) else {
            return;
        };
        let alice = app.user("alice");
        let id = app.create(&alice, r#"{"title": "locked"}"#)["id"].clone();
        let mut locker = app.db.postgres_client().unwrap();
        let mut lock = locker.transaction().unwrap();
        lock.batch_execute("lock table tasks in access exclusive mode")
            .unwrap();
        for (method, path) in [
            ("GET", "/api/tasks".to_string()),
            ("GET", format!("/api/tasks/{id}")),
            ("PATCH", format!("/api/tasks/{id}/complete")),
        ] {
            let r = alice.send(method, &path, None, &[]);
            let what = format!("{option}: {method} {path}");
            assert_eq!(r.status, 503, "{what}: {}", r.text());
            assert_eq!(r.header("Retry-After"), Some("1"), "{what}");
            assert!(!r.detail().is_empty(), "{what}");
        }
        lock.rollback().unwrap();
        let task = alice.get(&format!("/api/tasks/{id}")).json();
        assert_eq!(
            task["completed"], false,
            "{option}: the refused toggle did nothing"
        );
    }
}

#[test]
fn a_statement_that_waits_too_long_is_cancelled_and_health_answers_meanwhile() {
    // Another session holds a lock for long, as a migration or a stuck transaction does,
    // and the database has no statement_timeout: every worker ends up waiting on it.
    let Some(app) = postgres_app(|c| {
        c.workers = 4;
        c.pool_size = 4;
    }) else {
        return;
    };
    lock_waits_end_in_503s_and_health_answers_meanwhile(&app, &app.db);
}

/// Locks `tasks` in `db` (the database behind `app`, whose 4 workers and pooled connections
/// all end up waiting on the lock) and checks that the waits are cancelled in the database
/// and answered 503, that /health answers meanwhile, and that all is served once the lock
/// is gone. Shared with pgbouncer.rs: cancel requests go through the pooler.
pub fn lock_waits_end_in_503s_and_health_answers_meanwhile(app: &TestApp, db: &TestDb) {
    let alice = app.user("alice");
    let id = app.create(&alice, r#"{"title": "locked"}"#)["id"].clone();
    let mut locker = db.postgres_client().unwrap();
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute("lock table tasks in access exclusive mode")
        .unwrap();
    let started = Instant::now();
    let requests: Vec<_> = [
        ("GET", "/api/tasks".to_string()),
        ("GET", "/api/tasks?status=pending".to_string()),
        ("GET", format!("/api/tasks/{id}")),
        ("PATCH", format!("/api/tasks/{id}/complete")),
    ]
    .into_iter()
    .map(|(method, path)| {
        let alice = alice.clone();
        std::thread::spawn(move || {
            let r = alice.send(method, &path, None, &[]);
            (format!("{method} {path}"), r, started.elapsed())
        })
    })
    .collect();
    let mut watcher = db.postgres_client().unwrap();
    let waiting = |watcher: &mut postgres::Client| -> i64 {
        watcher
            .query_one(
                "select count(*) from pg_stat_activity \
                 where datname = current_database() and wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    while waiting(&mut watcher) < 4 {
        assert!(
            // Soon enough that /health's 2 s wait for a connection ends before the
            // first cancel (5 s) frees one.
            started.elapsed() < Duration::from_millis(1500),
            "the four requests never all waited on the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Every worker and pooled connection waits: a monitor still gets its answer, and the
    // docs are served.
    let asked = Instant::now();
    let health = app.anonymous().get("/health");
    assert_eq!(health.status, 503, "{}", health.text());
    assert_eq!(health.header("Retry-After"), Some("1"));
    assert_eq!(health.json()["database"], "unavailable");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "/health waited {:?}, behind the statements",
        asked.elapsed()
    );
    assert_eq!(app.anonymous().get("/openapi.json").status, 200);

    // The waiting statements are cancelled in the database, their requests told 503.
    for request in requests {
        let (what, r, took) = request.join().unwrap();
        assert_eq!(r.status, 503, "{what}: {}", r.text());
        assert_eq!(r.header("Retry-After"), Some("1"), "{what}");
        assert!(
            took < Duration::from_secs(15),
            "{what}: answered after {took:?}"
        );
    }
    assert_eq!(
        waiting(&mut watcher),
        0,
        "statements still wait on the lock in the database"
    );
    lock.rollback().unwrap();

    // Once the lock is gone all is served again, and the cancelled toggle changed nothing.
    let task = alice.get(&format!("/api/tasks/{id}"));
    assert_eq!(task.status, 200, "{}", task.text());
    assert_eq!(
        task.json()["completed"],
        false,
        "the cancelled toggle did nothing"
    );
    let toggled = alice.patch(&format!("/api/tasks/{id}/complete"), "");
    assert_eq!(toggled.status, 200, "{}", toggled.text());
    assert_eq!(toggled.json()["completed"], true);
    assert_eq!(alice.get("/api/tasks").json().as_array().unwrap().len(), 1);
    assert_eq!(app.anonymous().get("/health").status, 200);
}
