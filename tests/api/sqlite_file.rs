//! The SQLite file under the server's feet: deleted, replaced, dropped tables, an old
//! schema, junk bytes, another process's write lock, in-memory names. Each test runs the
//! real server (a process where its log is read) over a file of its own.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::tempdir::TempDir;
use crate::helpers::*;

/// The server binary over `dir/x.db`, with eight workers and info logging.
fn server(dir: &TempDir) -> Process {
    let url = format!("sqlite:{}", dir.path("x.db"));
    Process::start(&[
        ("DATABASE_URL", &url),
        ("BETTER_AUTH_SECRET", SECRET),
        ("WORKERS", "8"),
    ])
}

fn client(process: &Process, sub: &str) -> Client {
    Client {
        addr: process.addr,
        token: Some(token(sub)),
    }
}

/// The titles `alice` sees, in id order.
fn titles(alice: &Client) -> Result<Vec<String>, String> {
    let r = alice.get("/api/tasks?sort=created&order=asc");
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.text()));
    }
    Ok(r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect())
}

/// What `clients` threads see, each listing `rounds` times at once: enough requests in
/// flight to go through every pooled connection.
fn seen_by_many(
    alice: &Client,
    clients: usize,
    rounds: usize,
) -> BTreeSet<Result<Vec<String>, String>> {
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let alice = alice.clone();
            thread::spawn(move || (0..rounds).map(|_| titles(&alice)).collect::<Vec<_>>())
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// The titles stored in the file at `path`, read by a connection of the test's own.
fn titles_in_file(path: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(path).unwrap();
    let mut stmt = db.prepare("select title from tasks order by id").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn create(alice: &Client, title: &str) -> Value {
    let r = alice.post("/api/tasks", &format!(r#"{{"title": "{title}"}}"#));
    assert_eq!(r.status, 201, "create {title}: {}", r.text());
    r.json()
}

fn logged_line(process: &Process, wanted: &str, lines: &mut Vec<String>) -> bool {
    lines.extend(process.logged());
    lines.iter().any(|l| l.contains(wanted))
}

/// Every answer of `clients` threads each listing `rounds` times is 503: the store no
/// longer uses the database, over every pooled connection.
fn all_unavailable(alice: &Client, clients: usize, rounds: usize) {
    let seen = seen_by_many(alice, clients, rounds);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let only = seen.into_iter().next().unwrap();
    assert!(
        only.as_ref().is_err_and(|e| e.starts_with("503")),
        "{only:?}"
    );
}

/// Stops the server the way a deployment does (SIGTERM), then starts it again on the same
/// file; with the stopped one's log lines not read before.
fn restarted(mut process: Process, dir: &TempDir) -> (Process, Vec<String>) {
    process.signal("TERM");
    assert!(process.wait(Duration::from_secs(15)).is_some(), "no exit");
    (server(dir), process.logged_to_the_end())
}

#[test]
fn a_database_file_replaced_while_running_is_not_used_until_a_restart() {
    // Arrange: two tasks, a consistent copy of the file, then a third task.
    let dir = TempDir::new("sqlite-replaced");
    let path = dir.path("x.db");
    let process = server(&dir);
    let alice = client(&process, "alice");
    create(&alice, "one");
    create(&alice, "two");
    let backup = dir.path("backup.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("vacuum into ?1", [&backup])
        .unwrap();
    // Requests in parallel, so that the pool holds several connections to the first file.
    assert_eq!(seen_by_many(&alice, 16, 5).len(), 1);
    create(&alice, "three");

    // Act: the copy put in place of the file, as a restore from a backup does.
    std::fs::rename(&backup, &path).unwrap();

    // Assert: neither file is served or written (the old one is no longer at the path;
    // the new one would be read through the old one's -wal), every request over every
    // pooled connection is 503, /health says so, and the log says why.
    all_unavailable(&alice, 16, 10);
    let r = alice.post("/api/tasks", r#"{"title": "four"}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(process_health(&process).status, 503);
    let mut lines = Vec::new();
    assert!(
        logged_line(&process, "was replaced while the server ran", &mut lines),
        "no error logged about the replaced file: {lines:#?}"
    );
    // After a restart the restored file is the database.
    let (process, _) = restarted(process, &dir);
    let alice = client(&process, "alice");
    assert_eq!(
        titles(&alice),
        Ok(vec!["one".to_string(), "two".to_string()])
    );
    create(&alice, "four");
    drop(process);
    assert_eq!(titles_in_file(&path), ["one", "two", "four"]);
}

#[test]
fn a_database_file_deleted_while_running_gets_no_write_and_no_new_file() {
    // Arrange
    let dir = TempDir::new("sqlite-deleted");
    let path = dir.path("x.db");
    let process = server(&dir);
    let alice = client(&process, "alice");
    create(&alice, "before");
    assert_eq!(seen_by_many(&alice, 16, 5).len(), 1);

    // Act: the file and its -wal and -shm removed, as `rm x.db*` does.
    for suffix in ["", "-wal", "-shm"] {
        std::fs::remove_file(format!("{path}{suffix}")).unwrap();
    }
    let r = alice.post("/api/tasks", r#"{"title": "after"}"#);

    // Assert: the write is refused (it would have gone into the deleted file), nothing is
    // created at the path, and the log says why.
    assert_eq!(r.status, 503, "{}", r.text());
    all_unavailable(&alice, 16, 5);
    assert_eq!(process_health(&process).status, 503);
    assert!(!std::path::Path::new(&path).exists(), "a file was created");
    let mut lines = Vec::new();
    assert!(
        logged_line(&process, "was deleted while the server ran", &mut lines),
        "no error logged about the deleted file: {lines:#?}"
    );
    // A restart starts on a new, empty file.
    let (process, _) = restarted(process, &dir);
    let alice = client(&process, "alice");
    assert_eq!(titles(&alice), Ok(vec![]));
    create(&alice, "after");
}

fn process_health(process: &Process) -> Response {
    Client {
        addr: process.addr,
        token: None,
    }
    .get("/health")
}

#[test]
fn after_junk_bytes_in_the_file_the_server_recovers_once_the_file_is_good_again() {
    // Arrange: three tasks, all in the file itself (the -wal emptied), and its bytes.
    let dir = TempDir::new("sqlite-junk");
    let path = dir.path("x.db");
    let process = server(&dir);
    let alice = client(&process, "alice");
    for title in ["a", "b", "c"] {
        create(&alice, title);
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("pragma wal_checkpoint(truncate)")
        .unwrap();
    let good = std::fs::read(&path).unwrap();

    // Act: junk written over the file in place (the same inode), then the good bytes back.
    let junk: Vec<u8> = (0..good.len()).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&path, &junk).unwrap();
    let r = alice.get("/api/tasks");
    assert_eq!(r.status, 503, "a file of junk: {}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    std::fs::write(&path, &good).unwrap();

    // Assert: served again at once, over every pooled connection.
    alice.wait_for_200(
        "/api/tasks",
        Duration::from_secs(3),
        Duration::from_millis(100),
        "once the good file is back",
    );
    let seen = seen_by_many(&alice, 16, 5);
    let all = Ok(vec!["a".to_string(), "b".to_string(), "c".to_string()]);
    assert_eq!(seen, BTreeSet::from([all]));
    assert_eq!(process_health(&process).status, 200);
}

#[test]
fn a_table_dropped_while_running_is_created_again() {
    // Arrange
    let dir = TempDir::new("sqlite-dropped");
    let path = dir.path("x.db");
    let process = server(&dir);
    let alice = client(&process, "alice");
    create(&alice, "gone with the table");

    // Act
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("drop table tasks")
        .unwrap();

    // Assert: the table is back, empty, for reads and writes alike.
    assert_eq!(titles(&alice), Ok(vec![]));
    create(&alice, "new");
    assert_eq!(
        seen_by_many(&alice, 16, 5),
        BTreeSet::from([Ok(vec!["new".to_string()])])
    );
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("drop table tasks")
        .unwrap();
    create(&alice, "first write after the second drop");
    assert_eq!(titles_in_file(&path), ["first write after the second drop"]);
}

#[test]
fn a_file_whose_tables_lack_columns_is_refused_at_start_up() {
    // Arrange: an older version's tasks table, without description and updated_at.
    let dir = TempDir::new("sqlite-old-schema");
    let path = dir.path("x.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "create table users (id text primary key, email text unique, name text, \
             created_at text not null);
             create table tasks (id integer primary key autoincrement, user_id text not null, \
             title text not null, completed integer not null default 0, due_date text, \
             created_at text not null);",
        )
        .unwrap();

    // Act
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env("DATABASE_URL", format!("sqlite:{path}"))
        .env("BETTER_AUTH_SECRET", SECRET)
        .env("PORT", "0")
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    // A server that started anyway is stopped, and the test fails on its exit status.
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();

    // Assert
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {log}");
    assert!(
        log.contains("tasks.description, tasks.updated_at") && !log.contains("panicked"),
        "{log}"
    );
}

/// Another process's write transaction on the file, held until `release` is called.
struct OutsideLock(rusqlite::Connection);

impl OutsideLock {
    fn take(path: &str) -> OutsideLock {
        let db = rusqlite::Connection::open(path).unwrap();
        db.execute_batch("begin immediate").unwrap();
        OutsideLock(db)
    }

    fn release(self) {
        self.0.execute_batch("rollback").unwrap();
    }
}

#[test]
fn a_write_waits_for_another_process_lock_at_most_five_seconds_in_all() {
    // Arrange: a task, then another process holds the write lock.
    let dir = TempDir::new("sqlite-locked");
    let path = dir.path("x.db");
    let process = server(&dir);
    let alice = client(&process, "alice");
    let id = create(&alice, "one")["id"].as_i64().unwrap();
    let lock = OutsideLock::take(&path);

    // Act: a write that waits on SQLite's lock, and half a second later one that first
    // waits for the server's own write turn behind it.
    let toggle = |delay: Duration| {
        let alice = client(&process, "alice");
        thread::spawn(move || {
            thread::sleep(delay);
            let sent = Instant::now();
            let r = alice.patch(&format!("/api/tasks/{id}/complete"), "");
            (r, sent.elapsed())
        })
    };
    let first = toggle(Duration::ZERO);
    let second = toggle(Duration::from_millis(500));
    let answers = [first.join().unwrap(), second.join().unwrap()];
    lock.release();

    // Assert: each is 503 within its own 5 s (not 5 s for the turn, then 5 s more for the
    // lock), and nothing was toggled.
    for (i, (r, took)) in answers.iter().enumerate() {
        assert_eq!(r.status, 503, "write {i}: {}", r.text());
        assert!(
            *took < Duration::from_millis(6500),
            "write {i} answered after {took:?}"
        );
    }
    let task = alice.get(&format!("/api/tasks/{id}")).json();
    assert_eq!(task["completed"], false);
}

#[test]
fn updated_at_is_read_once_the_write_lock_is_held() {
    // Arrange: a task, then another process holds the write lock (as a second server on
    // the same file does while it writes).
    let dir = TempDir::new("sqlite-stamp");
    let path = dir.path("x.db");
    let process = server(&dir);
    let alice = client(&process, "alice");
    let id = create(&alice, "one")["id"].as_i64().unwrap();
    let lock = OutsideLock::take(&path);

    // Act: a toggle sent while the lock is held, which is released a second later.
    let toggle = {
        let alice = client(&process, "alice");
        thread::spawn(move || alice.patch(&format!("/api/tasks/{id}/complete"), ""))
    };
    thread::sleep(Duration::from_secs(1));
    let released = todo_api::time::Micros::now();
    lock.release();
    let r = toggle.join().unwrap();

    // Assert: its updated_at is from after the release, not from when it was sent: a write
    // by whoever held the lock cannot end up with a later time than this one.
    assert_eq!(r.status, 200, "{}", r.text());
    let stamp = r.json()["updated_at"].as_str().unwrap().to_string();
    let updated = todo_api::time::Micros::parse(&stamp).unwrap();
    assert!(
        updated.0 >= released.0,
        "updated_at {stamp} is before the lock was released ({})",
        released.to_rfc3339()
    );
}

#[test]
fn a_wal_removed_while_running_is_said_once_and_a_restart_recovers() {
    // Arrange: a task, its commit still in the -wal.
    let dir = TempDir::new("sqlite-wal-gone");
    let path = dir.path("x.db");
    let process = server(&dir);
    let alice = client(&process, "alice");
    create(&alice, "one");
    assert_eq!(seen_by_many(&alice, 16, 5).len(), 1);

    // Act: the -wal and -shm removed (SQLite's rules forbid it; commits in them are lost).
    for suffix in ["-wal", "-shm"] {
        std::fs::remove_file(format!("{path}{suffix}")).unwrap();
    }

    // Assert: every request is 503 (not a write into the removed -wal, nor a connection
    // opened onto the removed -shm), the reason is logged once, and a restart serves the
    // file again.
    let r = alice.post("/api/tasks", r#"{"title": "two"}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    all_unavailable(&alice, 16, 5);
    assert_eq!(process_health(&process).status, 503);
    let (process, log) = restarted(process, &dir);
    let said = log
        .iter()
        .filter(|l| l.contains("was deleted or replaced while the database was in use"))
        .count();
    assert_eq!(said, 1, "the reason logged {said} times");
    let alice = client(&process, "alice");
    assert!(titles(&alice).is_ok(), "{:?}", titles(&alice));
    create(&alice, "two");
}
