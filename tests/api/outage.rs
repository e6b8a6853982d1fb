//! Database outages, for real: a throwaway PostgreSQL cluster stopped under load, frozen,
//! and started again; an SQLite file locked by another writer. The server must answer
//! 503 with a `detail` in bounded time, keep running, recover by itself, and lose nothing
//! it acknowledged.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use todo_api::config::Database;

use crate::helpers::*;

/// The longest any request may take while the database is away.
const OUTAGE_LATENCY: Duration = Duration::from_secs(5);
/// How soon after the database returns the server must serve again by itself.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

// A throwaway PostgreSQL cluster.

/// A PostgreSQL cluster of our own in a temp directory, on a free port of 127.0.0.1,
/// stopped and removed on drop.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run PostgreSQL's tools as this OS user (initdb refuses root).
    run_as: Option<&'static str>,
}

impl Cluster {
    /// Whether the outage test must run: when a PostgreSQL is expected on this machine.
    fn required() -> bool {
        std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty())
            || std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
    }

    /// Creates and starts a cluster, or says exactly why it cannot.
    fn start() -> Result<Cluster, String> {
        let bin = postgres_bin_dir()?;
        let run_as = is_root().then_some("postgres");
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "todo-outage-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let port = free_port();
        let cluster = Cluster {
            bin,
            dir,
            port,
            run_as,
        };
        if let Some(user) = run_as {
            check(Command::new("chown").arg(user).arg(&cluster.dir))?;
        }
        check(
            cluster
                .tool("initdb")
                .arg("-D")
                .arg(cluster.data())
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"])
                .arg("--no-sync"),
        )?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A command running one of PostgreSQL's tools, as the cluster's owner.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=40",
            self.port,
            self.dir.display()
        );
        check(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("postgres.log"))
                .args(["-w", "-t", "30", "-o", &options, "start"]),
        )
        .map_err(|e| format!("{e}\nserver log:\n{}", self.log()))
    }

    /// Stops the cluster the hard way: every backend dies at once, as in a crash.
    fn stop_immediately(&self) -> Result<(), String> {
        check(self.tool("pg_ctl").arg("-D").arg(self.data()).args([
            "-m",
            "immediate",
            "-w",
            "-t",
            "30",
            "stop",
        ]))
    }

    /// The postmaster and its children: the processes `pg_ctl start` started for us.
    fn pids(&self) -> Vec<u32> {
        let Ok(pidfile) = std::fs::read_to_string(self.data().join("postmaster.pid")) else {
            return Vec::new();
        };
        let Some(postmaster) = pidfile.lines().next().and_then(|l| l.trim().parse().ok()) else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // Field 4 of /proc/PID/stat, after the parenthesised command name.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if parent == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Sends a signal (`STOP`, `CONT`) to the postmaster and its children, by pid.
    fn signal_all(&self, signal: &str) {
        for pid in self.pids() {
            // A child may have exited since the listing: ignore what kill says about it.
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.signal_all("CONT");
        let _ = self.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command to its end; its output is the error when it fails.
fn check(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The newest `/usr/lib/postgresql/*/bin` with initdb and pg_ctl, or the ones on `PATH`.
fn postgres_bin_dir() -> Result<PathBuf, String> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    if let Some((_, bin)) = dirs.pop() {
        return Ok(bin);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .ok_or_else(|| "no initdb and pg_ctl under /usr/lib/postgresql/*/bin or on PATH".into())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The cluster for an outage test; `None` (the test is skipped) only where PostgreSQL
/// is not expected at all, as for the other PostgreSQL tests.
fn cluster_or_skip() -> Option<Cluster> {
    match Cluster::start() {
        Ok(cluster) => Some(cluster),
        Err(e) if Cluster::required() => panic!("cannot start a PostgreSQL cluster: {e}"),
        Err(e) => {
            eprintln!(
                "TEST_DATABASE_URL is not set and no PostgreSQL cluster could be started \
                 ({e}): skipping the PostgreSQL outage test"
            );
            None
        }
    }
}

// Requests that may fail, timed.

/// One request on a new connection, waiting at most `patience` for the answer.
fn timed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    user: Option<&str>,
    body: Option<&str>,
    patience: Duration,
) -> (Duration, io::Result<Response>) {
    let started = Instant::now();
    let result = (|| {
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(sub) = user {
            head.push_str(&format!("Authorization: Bearer {}\r\n", token(sub)));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or_default());
        let mut stream = TcpStream::connect_timeout(&addr, patience)?;
        stream.set_read_timeout(Some(patience))?;
        stream.write_all(head.as_bytes())?;
        let mut reader = BufReader::new(stream);
        // `read_response` panics on a closed connection; see that as an error instead.
        if reader.fill_buf()?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed without an answer",
            ));
        }
        Ok(read_response(&mut reader))
    })();
    (started.elapsed(), result)
}

fn outcome(r: &io::Result<Response>) -> String {
    match r {
        Ok(r) => format!("{} {}", r.status, r.text()),
        Err(e) => format!("error: {e}"),
    }
}

/// Asserts the contract's 503: JSON with a `detail`, promptly.
fn assert_unavailable(took: Duration, r: &io::Result<Response>, context: &str) {
    let r = r
        .as_ref()
        .unwrap_or_else(|e| panic!("{context}: no answer after {took:?} ({e})"));
    assert_eq!(r.status, 503, "{context}: {}", r.text());
    assert!(!r.detail().is_empty(), "{context}");
    assert_eq!(r.header("Retry-After"), Some("1"), "{context}");
    assert!(took < OUTAGE_LATENCY, "{context}: the 503 took {took:?}");
}

/// What load threads saw: every answer with when it was sent.
#[derive(Default)]
struct Record {
    /// (ms since the epoch when sent, latency, status or error).
    sent: Vec<(u128, Duration, Result<u16, String>)>,
    /// Task ids acknowledged with 201.
    acknowledged: BTreeSet<i64>,
}

/// `threads` threads creating tasks for `sub` until `stop`, recording everything.
fn run_load(
    addr: SocketAddr,
    sub: &'static str,
    threads: usize,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Record>> {
    (0..threads)
        .map(|i| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut record = Record::default();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!(r#"{{"title": "load {i}-{n}"}}"#);
                    let at = epoch.elapsed().as_millis();
                    let (took, r) = timed(
                        addr,
                        "POST",
                        "/api/tasks",
                        Some(sub),
                        Some(&body),
                        Duration::from_secs(15),
                    );
                    let status = match &r {
                        Ok(r) if r.status == 201 => {
                            record.acknowledged.insert(r.json()["id"].as_i64().unwrap());
                            Ok(201)
                        }
                        Ok(r) => Ok(r.status),
                        Err(e) => Err(e.to_string()),
                    };
                    if status != Ok(201) {
                        // An outage is no reason to spin.
                        thread::sleep(Duration::from_millis(20));
                    }
                    record.sent.push((at, took, status));
                    n += 1;
                }
                record
            })
        })
        .collect()
}

/// Waits until `/health` says 200, returning how long that took, or `None` after `limit`.
fn wait_for_health(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let (_, r) = timed(addr, "GET", "/health", None, None, Duration::from_secs(5));
        if matches!(&r, Ok(r) if r.status == 200) {
            return Some(started.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Every task id of the user's, as stored.
fn stored_ids(app: &TestApp, sub: &str) -> BTreeSet<i64> {
    let r = app.user(sub).get("/api/tasks");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

// PostgreSQL.

#[test]
fn postgres_stopped_under_load_is_503_then_recovers_and_keeps_every_acknowledged_task() {
    let Some(cluster) = cluster_or_skip() else {
        return;
    };
    // Arrange
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| {
        c.database = Database::Postgres(cluster.url());
    });
    let probe = app.user("alice");
    assert_eq!(app.anonymous().get("/health").status, 200);
    app.create(&probe, r#"{"title": "before"}"#);
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = run_load(app.addr, "alice", 4, epoch, stop.clone());
    thread::sleep(Duration::from_millis(1500));

    // Act 1: the database goes away.
    let down_at = epoch.elapsed();
    cluster.stop_immediately().expect("pg_ctl stop");
    let down = Instant::now();
    thread::sleep(Duration::from_millis(300));

    // Assert 1: 503s with a detail, promptly, for every kind of request, all at once
    // (each may wait for the pool's checkout timeout). A user not seen before needs a
    // write first; that too is a 503.
    let checks: Vec<_> = [
        (
            "POST",
            "/api/tasks",
            Some(r#"{"title": "during"}"#),
            Some("alice"),
        ),
        ("GET", "/api/tasks", None, Some("alice")),
        ("GET", "/api/tasks/1", None, Some("alice")),
        ("PATCH", "/api/tasks/1/complete", None, Some("alice")),
        ("GET", "/api/tasks", None, Some("newcomer")),
        ("GET", "/health", None, None),
    ]
    .into_iter()
    .map(|(method, path, body, user)| {
        let addr = app.addr;
        thread::spawn(move || {
            let (took, r) = timed(addr, method, path, user, body, Duration::from_secs(15));
            (format!("{method} {path} by {user:?}"), took, r)
        })
    })
    .collect();
    for check in checks {
        let (what, took, r) = check.join().unwrap();
        assert_unavailable(took, &r, &format!("{what} with the database down"));
        if what.contains("/health") {
            assert_eq!(r.unwrap().json()["database"], "unavailable");
        }
    }
    // Stay down for a few seconds of load.
    thread::sleep(Duration::from_secs(3).saturating_sub(down.elapsed()));

    // Act 2: the database returns.
    let up_at = epoch.elapsed();
    cluster.pg_ctl_start().expect("pg_ctl start again");
    let recovered = wait_for_health(app.addr, RECOVERY_LIMIT);
    let healthy_at = epoch.elapsed();
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let records: Vec<Record> = load.into_iter().map(|t| t.join().unwrap()).collect();

    // Assert 2
    let recovered = recovered.unwrap_or_else(|| {
        panic!("/health was not 200 within {RECOVERY_LIMIT:?} of the database's return")
    });
    let all: Vec<&(u128, Duration, Result<u16, String>)> =
        records.iter().flat_map(|r| &r.sent).collect();
    let first_503 = all
        .iter()
        .filter(|(at, _, s)| *at >= down_at.as_millis() && *s == Ok(503))
        .map(|(at, took, _)| *at + took.as_millis())
        .min();
    let max_latency = all
        .iter()
        .map(|(_, took, _)| *took)
        .max()
        .unwrap_or_default();
    let count = |want: &dyn Fn(&Result<u16, String>) -> bool| {
        all.iter().filter(|(_, _, s)| want(s)).count()
    };
    eprintln!(
        "PostgreSQL outage: down at {down_at:?}, up at {up_at:?}, /health 200 again {recovered:?} \
         after pg_ctl start returned (at {healthy_at:?}); first 503 {} ms after the stop; \
         load: {} requests, {} 201, {} 503, {} other; max latency {max_latency:?}",
        first_503.map_or(-1, |t| t as i64 - down_at.as_millis() as i64),
        all.len(),
        count(&|s| *s == Ok(201)),
        count(&|s| *s == Ok(503)),
        count(&|s| *s != Ok(201) && *s != Ok(503)),
    );
    let wrong: Vec<String> = all
        .iter()
        .filter(|(_, took, s)| !matches!(s, Ok(201 | 503)) || *took >= OUTAGE_LATENCY)
        .map(|(at, took, s)| format!("sent at {at} ms, took {took:?}: {s:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "during the outage every request must be a prompt 201 or 503, never a 500, an \
         error or a hang (down at {down_at:?}, up at {up_at:?}):\n{}",
        wrong.join("\n")
    );
    // Once healthy, the server serves writes again with no stale connection left over.
    let late_503: Vec<String> = all
        .iter()
        .filter(|(at, _, s)| *at > healthy_at.as_millis() && *s != Ok(201))
        .map(|(at, took, s)| format!("sent at {at} ms, took {took:?}: {s:?}"))
        .collect();
    assert!(
        late_503.is_empty(),
        "after /health was 200 again (at {healthy_at:?}) a create still failed:\n{}",
        late_503.join("\n")
    );
    assert!(
        count(&|s| *s == Ok(503)) > 0,
        "the load never saw the outage"
    );
    let after = all
        .iter()
        .filter(|(at, _, s)| *at > healthy_at.as_millis() && *s == Ok(201))
        .count();
    assert!(after > 0, "no create succeeded after the recovery");
    // Every task acknowledged with 201, before and after the outage, is stored.
    let acknowledged: BTreeSet<i64> = records
        .iter()
        .flat_map(|r| r.acknowledged.clone())
        .collect();
    let stored = stored_ids(&app, "alice");
    let lost: Vec<&i64> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} tasks acknowledged with 201 are gone: {lost:?}",
        lost.len()
    );
    eprintln!(
        "{} acknowledged tasks all stored ({} stored in all)",
        acknowledged.len(),
        stored.len()
    );
}

/// A PostgreSQL that hangs without closing its sockets (SIGSTOP; a host whose kernel still
/// acknowledges), thawed before the statement deadline: `/health` says so within its 2 s
/// bound, though requests wait on the database, and every waiting request completes
/// normally once the database answers again.
#[test]
fn a_frozen_postgres_is_reported_by_health_and_waiting_requests_complete_after() {
    frozen_postgres(Duration::ZERO);
}

/// Frozen for longer than the statement deadline (5 s) and its cancel's grace (1 s): the
/// server's cancel requests reach a postmaster that cannot take them, so the server shuts
/// the waiting connections down and answers 503 within the deadline's bound, without
/// waiting for the thaw (it used to wait as long as the freeze lasted, and for good when a
/// connection never came back); it serves again after the thaw, on new connections.
/// Nothing acknowledged is lost: a write answered 503 was sent, so it may yet be applied
/// at the thaw (API.md, Errors). That cancels work is statements.rs's and pgbouncer.rs's
/// to show; this shows what happens when they cannot get through.
#[test]
fn a_postgres_frozen_past_the_statement_deadline_is_503_within_the_bound() {
    frozen_postgres(Duration::from_secs(9));
}

/// How long a request waiting on a database that does not answer may take: the statement
/// deadline (5 s), the cancel's grace (1 s), the watchdog's period (0.25 s twice), and slack
/// for a loaded machine; well before the thaw (11 s).
const FROZEN_ANSWER_LIMIT: Duration = Duration::from_millis(8_500);

/// Freezes PostgreSQL, checks `/health`, waits `more`, thaws, and checks the three requests
/// that waited: their success when the thaw came before the statement deadline; else a 503
/// within `FROZEN_ANSWER_LIMIT`, before the thaw; and the state they leave matches their
/// answers.
fn frozen_postgres(more: Duration) {
    let Some(cluster) = cluster_or_skip() else {
        return;
    };
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| {
        c.database = Database::Postgres(cluster.url());
    });
    let alice = app.user("alice");
    let task = app.create(&alice, r#"{"title": "before the freeze"}"#);
    let id = task["id"].as_i64().unwrap();

    // Act: freeze (twice: a backend forked while the first listing was taken would be
    // missed), ask for health and start three requests that need the database.
    cluster.signal_all("STOP");
    thread::sleep(Duration::from_millis(200));
    cluster.signal_all("STOP");
    let waiting: Vec<_> = [
        ("GET", "/api/tasks".to_string(), None, 200),
        (
            "POST",
            "/api/tasks".to_string(),
            Some(r#"{"title": "frozen"}"#),
            201,
        ),
        ("PATCH", format!("/api/tasks/{id}/complete"), None, 200),
    ]
    .into_iter()
    .map(|(method, path, body, want)| {
        let addr = app.addr;
        thread::spawn(move || {
            let (took, r) = timed(
                addr,
                method,
                &path,
                Some("alice"),
                body,
                Duration::from_secs(30),
            );
            (format!("{method} {path}"), want, took, r)
        })
    })
    .collect();
    let (took, health) = timed(
        app.addr,
        "GET",
        "/health",
        None,
        None,
        Duration::from_secs(8),
    );
    thread::sleep(more);
    cluster.signal_all("CONT");

    // Assert
    assert_unavailable(took, &health, "GET /health with PostgreSQL frozen");
    let mut answered = Vec::new();
    for handle in waiting {
        let (what, want, took, r) = handle.join().unwrap();
        let r = r.unwrap_or_else(|e| panic!("{what}: no answer after the thaw ({e}) in {took:?}"));
        if more.is_zero() {
            assert_eq!(r.status, want, "{what} after the thaw: {}", r.text());
        } else {
            // Answered while the database was still frozen (thawed after 2 + 9 s).
            assert_eq!(r.status, 503, "{what} with PostgreSQL frozen: {}", r.text());
            assert_eq!(r.header("Retry-After"), Some("1"), "{what}");
            assert!(took < FROZEN_ANSWER_LIMIT, "{what}: the 503 took {took:?}");
        }
        answered.push(r.status);
    }
    assert!(
        wait_for_health(app.addr, RECOVERY_LIMIT).is_some(),
        "no recovery after the thaw"
    );
    let tasks = alice.get("/api/tasks").json();
    let frozen = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["title"] == "frozen")
        .count();
    let after = alice.get(&format!("/api/tasks/{id}")).json();
    if more.is_zero() {
        assert_eq!(
            (frozen, after["completed"].clone()),
            (1, json!(true)),
            "both writes acknowledged and stored: {answered:?}"
        );
    } else {
        // Answered 503: sent before the freeze was noticed, so applied at the thaw or not;
        // never twice.
        assert!(frozen <= 1, "the create stored {frozen} times");
        // And the server works again, on connections opened after the thaw.
        let r = alice.post("/api/tasks", r#"{"title": "after the thaw"}"#);
        assert_eq!(r.status, 201, "{}", r.text());
        let r = alice.send("PATCH", &format!("/api/tasks/{id}/complete"), None, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

// SQLite.

#[test]
fn sqlite_locked_by_another_writer_is_503_for_writes_while_reads_go_on() {
    // Arrange: as root, file permissions do not stop writes (chmod 0444 is ignored), so
    // the outage is another process's write lock held past the 5 s busy timeout.
    let app = TestApp::spawn(Engine::Sqlite);
    let alice = app.user("alice");
    let task = app.create(&alice, r#"{"title": "before the lock"}"#);
    let id = task["id"].as_i64().unwrap();
    let Database::Sqlite(path) = app.db.database() else {
        unreachable!()
    };
    let locker = rusqlite::Connection::open(Path::new(&path)).unwrap();
    locker.execute_batch("begin exclusive").unwrap();
    let locked = Instant::now();

    // Act: writes and reads side by side. The lock is released only once every write has
    // been answered, so each of them meets it for its whole busy timeout.
    let addr = app.addr;
    let writes: Vec<_> = [
        (
            "POST",
            "/api/tasks".to_string(),
            Some(r#"{"title": "locked out"}"#),
            "alice",
        ),
        ("PATCH", format!("/api/tasks/{id}/complete"), None, "alice"),
        (
            "PUT",
            format!("/api/tasks/{id}"),
            Some(r#"{"title": "renamed"}"#),
            "alice",
        ),
        ("DELETE", format!("/api/tasks/{id}"), None, "alice"),
        ("GET", "/api/tasks".to_string(), None, "newcomer"),
    ]
    .into_iter()
    .map(|(method, path, body, user)| {
        thread::spawn(move || {
            let (took, r) = timed(
                addr,
                method,
                &path,
                Some(user),
                body,
                Duration::from_secs(15),
            );
            (format!("{method} {path} by {user}"), took, r)
        })
    })
    .collect();
    let mut reads = Vec::new();
    while locked.elapsed() < Duration::from_secs(4) {
        for (path, user) in [("/api/tasks", Some("alice")), ("/health", None)] {
            let (took, r) = timed(addr, "GET", path, user, None, Duration::from_secs(15));
            reads.push((path, took, r));
        }
        thread::sleep(Duration::from_millis(200));
    }
    let writes: Vec<(String, Duration, io::Result<Response>)> =
        writes.into_iter().map(|w| w.join().unwrap()).collect();
    locker.execute_batch("rollback").unwrap();
    let held = locked.elapsed();
    let (after_took, after) = timed(
        addr,
        "POST",
        "/api/tasks",
        Some("alice"),
        Some(r#"{"title": "after the lock"}"#),
        Duration::from_secs(15),
    );

    // Assert
    let shown: Vec<String> = writes
        .iter()
        .map(|(what, took, r)| format!("{what}: {} after {took:?}", outcome(r)))
        .collect();
    let read_latencies: Vec<Duration> = reads.iter().map(|(_, took, _)| *took).collect();
    eprintln!(
        "SQLite locked for {held:?}: writes {shown:#?}; {} reads, max {:?}; first write \
         after the lock: {after_took:?}",
        reads.len(),
        read_latencies.iter().max()
    );
    for (what, took, r) in &writes {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("{what}: no answer after {took:?} ({e})"));
        assert_eq!(r.status, 503, "{what} with the file locked: {}", r.text());
        assert!(!r.detail().is_empty());
        // The busy timeout (5 s) and a margin: a 503, not a hang.
        assert!(
            *took < Duration::from_secs(8),
            "{what}: the 503 took {took:?}"
        );
    }
    for (path, took, r) in &reads {
        let r = r.as_ref().unwrap_or_else(|e| panic!("read {path}: {e}"));
        assert_eq!(
            r.status,
            200,
            "a read of {path} while only writes are locked: {}",
            r.text()
        );
        assert!(
            *took < Duration::from_secs(1),
            "a read of {path} took {took:?}"
        );
    }
    let after = after.expect("an answer after the lock");
    assert_eq!(after.status, 201, "after the lock: {}", after.text());
    assert!(
        after_took < Duration::from_secs(1),
        "the first write after took {after_took:?}"
    );
    let r = alice.get(&format!("/api/tasks/{id}"));
    assert_eq!(
        r.json()["title"],
        "before the lock",
        "a refused write changed the task"
    );
}

/// A tmpfs of its own, unmounted on drop: a disk that fills up. `None` where this process
/// may not mount one (not root).
struct SmallDisk(tempdir::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempdir::TempDir::new("todo-full-disk");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path(""))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk(dir))
    }

    fn path(&self, file: &str) -> String {
        self.0.path(file)
    }

    /// Writes a file until the disk refuses another byte.
    fn fill(&self) -> String {
        let filler = self.path("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&block[..1]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path("")).status();
    }
}

#[test]
fn sqlite_on_a_full_disk_acknowledges_only_what_it_keeps() {
    let Some(disk) = SmallDisk::mount("1m") else {
        assert!(!is_root(), "root, and cannot mount a tmpfs");
        eprintln!("skipped: only root can mount the small disk this test fills");
        return;
    };
    let db = disk.path("tasks.db");
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| {
        c.database = Database::Sqlite(db.clone());
    });
    let alice = app.user("alice");
    let first = app.create(&alice, r#"{"title": "before the disk filled"}"#)["id"].clone();
    let filler = disk.fill();

    // Writes on the full disk: each is kept and acknowledged, or refused with a 503.
    let mut acknowledged = BTreeSet::new();
    let mut refused = 0;
    for i in 0..30 {
        let r = alice.post("/api/tasks", &format!(r#"{{"title": "full disk {i}"}}"#));
        match r.status {
            201 => assert!(
                acknowledged.insert(r.json()["id"].as_i64().unwrap()),
                "an id twice"
            ),
            503 => refused += 1,
            other => panic!("create on a full disk: {other} {}", r.text()),
        }
    }
    let toggle = alice.patch(&format!("/api/tasks/{first}/complete"), "");
    assert!([200, 503].contains(&toggle.status), "{}", toggle.text());
    let rename = alice.put(&format!("/api/tasks/{first}"), r#"{"title": "renamed"}"#);
    assert!([200, 503].contains(&rename.status), "{}", rename.text());
    assert!(refused > 0, "the disk never filled: {acknowledged:?}");

    // Space again: what was acknowledged is there, the rest is not, and writes work.
    std::fs::remove_file(filler).unwrap();
    let stored: BTreeSet<i64> = alice.get("/api/tasks").json().as_array().unwrap()[..]
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .filter(|id| Some(*id) != first.as_i64())
        .collect();
    assert_eq!(
        stored, acknowledged,
        "acknowledged on a full disk, stored after"
    );
    let now = alice.get(&format!("/api/tasks/{first}")).json();
    assert_eq!(
        now["completed"],
        toggle.status == 200,
        "the toggle's answer"
    );
    let title = if rename.status == 200 {
        "renamed"
    } else {
        "before the disk filled"
    };
    assert_eq!(now["title"], title, "the rename's answer");
    assert_eq!(
        alice.post("/api/tasks", r#"{"title": "after"}"#).status,
        201
    );
}

#[test]
fn sqlite_writes_again_once_its_file_is_writable_again() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |path: &str, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Root ignores file modes: the server then runs as nobody.
    let dir = tempdir::TempDir::new("todo-read-only");
    chmod(&dir.path(""), 0o777);
    let db = dir.path("tasks.db");
    let url = format!("sqlite:{db}");
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("BETTER_AUTH_SECRET", SECRET),
        ("PORT", "0"),
        ("WORKERS", "4"),
    ];
    let p = Process::start_as(is_root().then_some(65534), &dir.path(""), &env);
    let alice = Client {
        addr: p.addr,
        token: Some(token("alice")),
    };
    // One connection so far; eight clients at once make the pool open more.
    assert_eq!(alice.post("/api/tasks", r#"{"title": "t"}"#).status, 201);
    let burst = || -> Vec<u16> {
        thread::scope(|s| {
            let clients: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..20)
                            .map(|_| {
                                assert_eq!(alice.get("/api/tasks").status, 200);
                                alice.post("/api/tasks", r#"{"title": "w"}"#).status
                            })
                            .collect::<Vec<u16>>()
                    })
                })
                .collect();
            clients
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect()
        })
    };

    // The file and its directory read-only while the pool grows: SQLite opens the new
    // connections read-only, and their writes are refused.
    chmod(&db, 0o444);
    chmod(&dir.path(""), 0o555);
    // (A machine busy with other tests may serve a burst with the connections already
    // open: up to five bursts.)
    let mut during = Vec::new();
    for _ in 0..5 {
        during.extend(burst());
        if during.contains(&503) {
            break;
        }
    }
    assert!(during.iter().all(|s| [201, 503].contains(s)), "{during:?}");
    assert!(
        during.contains(&503),
        "no connection was opened read-only: {during:?}"
    );

    // Writable again: every write works, without a restart.
    chmod(&dir.path(""), 0o777);
    chmod(&db, 0o666);
    let after = burst();
    let why: Vec<String> = p
        .logged()
        .into_iter()
        .filter(|l| l.contains(" 503 ") || l.contains("ERROR") || l.contains("WARN"))
        .collect();
    assert!(
        after.iter().all(|&s| s == 201),
        "after: {after:?}\n{}",
        why.join("\n")
    );
}

/// A TCP relay to a PostgreSQL server, whose way with new connections can be switched:
/// `HOLD`: accepted, never read from nor answered, kept open for good, as by a frozen host
/// (whose kernel still completes the handshake) or a hung proxy; `MUTE_AFTER_START`:
/// relayed until the server's first ReadyForQuery, after which the server is heard no more,
/// as a pooler that hangs after the start-up; `FORWARD`: relayed; `FORWARD_REPLIES`: relayed
/// a whole reply (up to its ReadyForQuery) at a time, so that the session can be ended right
/// after one (`end_after_next_write`) or within one (`end_within_next`).
struct Relay {
    addr: SocketAddr,
    mode: Arc<AtomicUsize>,
    /// The SQLSTATE of a FATAL to end a session with, in one piece with the next reply to
    /// an INSERT, UPDATE or DELETE (`FORWARD_REPLIES` only); taken when sent.
    end_after_write: Arc<Mutex<Option<&'static str>>>,
    /// The message (its type byte and how its body starts) of a reply to end the session
    /// within, in place of that message and the rest of the reply (`FORWARD_REPLIES`
    /// only); taken when sent.
    end_within: Arc<Mutex<Option<Message>>>,
}

/// A server message to look for: its type byte, and how its body starts.
type Message = (u8, &'static [u8]);

/// The reply to a connection test (the empty query of `is_valid`): EmptyQueryResponse.
const PING: Message = (b'I', b"");
/// The reply to a SELECT: its CommandComplete.
const SELECT: Message = (b'C', b"SELECT");
/// The reply to an INSERT: its CommandComplete.
const INSERT: Message = (b'C', b"INSERT");

impl Relay {
    const HOLD: usize = 0;
    const MUTE_AFTER_START: usize = 1;
    const FORWARD: usize = 2;
    const FORWARD_REPLIES: usize = 3;

    fn start(target: SocketAddr, mode: usize) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicUsize::new(mode));
        let now = mode.clone();
        let end_after_write = Arc::new(Mutex::new(None));
        let end_within = Arc::new(Mutex::new(None));
        let end = (end_after_write.clone(), end_within.clone());
        thread::spawn(move || {
            let mut held = Vec::new();
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mode = now.load(Ordering::SeqCst);
                if mode == Relay::HOLD {
                    held.push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (mut up_from, mut up_to) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = io::copy(&mut up_from, &mut up_to);
                    let _ = up_to.shutdown(std::net::Shutdown::Write);
                });
                let (mut from, mut to) = (server, client);
                let end = end.clone();
                thread::spawn(move || {
                    if mode == Relay::FORWARD_REPLIES {
                        Relay::forward_replies(&mut from, &mut to, &end.0, &end.1);
                        return;
                    }
                    if mode == Relay::MUTE_AFTER_START {
                        // Message by message (a type byte, then a length that counts itself)
                        // up to the first ReadyForQuery ('Z'), then nothing more.
                        let mut head = [0u8; 5];
                        while from.read_exact(&mut head).is_ok() {
                            let len = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
                            let mut body = vec![0; len.saturating_sub(4)];
                            if from.read_exact(&mut body).is_err()
                                || to.write_all(&head).is_err()
                                || to.write_all(&body).is_err()
                            {
                                return;
                            }
                            if head[0] == b'Z' {
                                let _ = io::copy(&mut from, &mut io::sink());
                                return;
                            }
                        }
                        return;
                    }
                    let _ = io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Relay {
            addr,
            mode,
            end_after_write,
            end_within,
        }
    }

    /// Has the session that carries the next reply with `message` (`PING`, `SELECT`,
    /// `INSERT`) end within it: the messages before that one are relayed, then a FATAL 57P01
    /// in their place, and end of file 50 ms later, as when PostgreSQL terminates a backend
    /// (`pg_terminate_backend`) while a statement waits on it: the FATAL comes first, and
    /// the socket closes once the backend has run its exit callbacks.
    fn end_within_next(&self, message: Message) {
        *self.end_within.lock().unwrap() = Some(message);
    }

    /// Whether the session end asked for by `end_within_next` has been sent.
    fn ended_within(&self) -> bool {
        self.end_within.lock().unwrap().is_none()
    }

    /// Has the session that carries the next write's reply end right after it, with a
    /// FATAL of SQLSTATE `code` in the same piece as the reply, then end of file: as
    /// PostgreSQL does when `pg_terminate_backend` (57P01) or `idle_session_timeout`
    /// (57P05) comes just after a statement, and a read takes both at once.
    fn end_after_next_write(&self, code: &'static str) {
        *self.end_after_write.lock().unwrap() = Some(code);
    }

    /// Whether the session end asked for has been sent.
    fn ended_a_session(&self) -> bool {
        self.end_after_write.lock().unwrap().is_none()
    }

    /// Relays the server's messages (a type byte, then a length that counts itself) a reply
    /// at a time: up to each ReadyForQuery ('Z'), or authentication request ('R'), which
    /// waits for the client.
    fn forward_replies(
        from: &mut TcpStream,
        to: &mut TcpStream,
        end_after_write: &Mutex<Option<&'static str>>,
        end_within: &Mutex<Option<Message>>,
    ) {
        let mut reply = Vec::new();
        let mut wrote = false;
        // Where in `reply` the message to end the session within begins.
        let mut cut = None;
        let mut head = [0u8; 5];
        while from.read_exact(&mut head).is_ok() {
            let len = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
            let mut body = vec![0; len.saturating_sub(4)];
            if from.read_exact(&mut body).is_err() {
                break;
            }
            if head[0] == b'C'
                && [&b"INSERT"[..], b"UPDATE", b"DELETE"]
                    .iter()
                    .any(|t| body.starts_with(t))
            {
                wrote = true;
            }
            if cut.is_none() {
                let mut wanted = end_within.lock().unwrap();
                if matches!(*wanted, Some((kind, start))
                    if head[0] == kind && body.starts_with(start))
                {
                    // Taken at once, so that one session only is ended for it.
                    wanted.take();
                    cut = Some(reply.len());
                }
            }
            reply.extend_from_slice(&head);
            reply.extend_from_slice(&body);
            if head[0] != b'Z' && head[0] != b'R' {
                continue;
            }
            if let Some(at) = cut {
                reply.truncate(at);
                reply.extend_from_slice(&fatal("57P01"));
                let _ = to.write_all(&reply);
                thread::sleep(Duration::from_millis(50));
                let _ = from.shutdown(std::net::Shutdown::Both);
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            let code = if head[0] == b'Z' && std::mem::take(&mut wrote) {
                end_after_write.lock().unwrap().take()
            } else {
                None
            };
            if let Some(code) = code {
                reply.extend_from_slice(&fatal(code));
            }
            if to.write_all(&reply).is_err() {
                return;
            }
            reply.clear();
            if code.is_some() {
                // The session is over for both: PostgreSQL's backend sees end of file and
                // exits, and the client reads the FATAL and then end of file.
                let _ = from.shutdown(std::net::Shutdown::Both);
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
        }
        let _ = to.write_all(&reply);
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
}

/// An ErrorResponse of severity FATAL with SQLSTATE `code`, as PostgreSQL ends a session.
fn fatal(code: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', "terminating connection (the test's relay)"),
    ] {
        fields.push(field);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    message
}

/// A PostgreSQL URL's scheme, `host:port`, user info (with its `@`) and what follows them.
fn authority(url: &str) -> (&str, String, &str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (user, host) = match rest[..end].rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..end]),
        None => ("", &rest[..end]),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    (scheme, host, user, &rest[end..])
}

/// The URL with its address replaced by `addr`, and a 1 s `connect_timeout`.
fn relayed(url: &str, addr: SocketAddr) -> String {
    let (scheme, _, user, tail) = authority(url);
    let joiner = if tail.contains('?') { '&' } else { '?' };
    format!("{scheme}://{user}{addr}{tail}{joiner}connect_timeout=1")
}

/// A database address that accepts connections and never answers them (a frozen host, a
/// hung proxy or pooler; a failover then sends new connections elsewhere), or answers the
/// start-up and nothing after it (`target_session_attrs` asks one more question there):
/// each attempt gives up after `connect_timeout`, and the server serves again as soon as
/// connections are answered. The start-up after the TCP handshake had no bound: r2d2
/// connects on three threads of its own, each was held for good, and the pool never
/// connected again.
#[test]
fn connections_that_are_never_answered_are_given_up_and_the_pool_recovers() {
    let Some(engine) = Engine::postgres() else {
        return;
    };
    for (mode, parameter) in [
        (Relay::HOLD, ""),
        (Relay::MUTE_AFTER_START, "&target_session_attrs=read-write"),
    ] {
        let db = TestDb::new(&engine);
        let url = db.postgres_url().unwrap();
        // Arrange: every connection is held (or muted), from the server's start on.
        let target = {
            use std::net::ToSocketAddrs;
            authority(&url).1.to_socket_addrs().unwrap().next().unwrap()
        };
        let relay = Relay::start(target, mode);
        let through_relay = relayed(&url, relay.addr) + parameter;
        let app = TestApp::spawn_with(db, |c| c.database = Database::Postgres(through_relay));
        let alice = app.user("alice");
        for _ in 0..3 {
            let r = alice.get("/api/tasks");
            assert_eq!(r.status, 503, "mode {mode}: {}", r.text());
        }

        // Act: the address answers again (the held connections stay held).
        relay.mode.store(Relay::FORWARD, Ordering::SeqCst);

        // Assert: served again, soon.
        alice.wait_for_200(
            "/api/tasks",
            Duration::from_secs(15),
            Duration::from_millis(200),
            &format!("mode {mode}, once the database answered again"),
        );
        app.create(&alice, r#"{"title": "after the hang"}"#);
    }
}

/// PostgreSQL may end a session right after a statement's reply (`pg_terminate_backend`,
/// a fast shutdown, `idle_session_timeout`), and the server may read that end in the same
/// piece as the reply. The write was done, and its reply came whole: it is answered as
/// done, and done once. The driver used to return the session's end instead: a 503 for a
/// write that was committed (57P01), or, for the idle timeout (57P05, which `write` takes
/// for a session that ended before the write and runs again), a second run: two tasks for
/// one 201, a toggle applied twice, a delete answered 404.
#[test]
fn a_write_whose_reply_came_before_the_session_ended_is_answered_as_done_once() {
    let Some(engine) = Engine::postgres() else {
        return;
    };
    // The user's row is written before any session is ended.
    let (relay, _app, alice, mut own) = behind_a_replies_relay(&engine);
    let mut count =
        |sql: &str, title: &str| -> i64 { own.query_one(sql, &[&title]).unwrap().get(0) };

    for code in ["57P01", "57P05"] {
        let title = format!("ended by {code}");
        let ended = |send: &dyn Fn() -> Response| {
            relay.end_after_next_write(code);
            let r = send();
            assert!(
                relay.ended_a_session(),
                "{code}: no write reached the relay"
            );
            r
        };
        let r = ended(&|| alice.post("/api/tasks", &json!({ "title": title }).to_string()));
        assert_eq!(r.status, 201, "{code}: create: {}", r.text());
        let rows = count("select count(*) from tasks where title = $1", &title);
        assert_eq!(rows, 1, "{code}: one 201, {rows} tasks");
        let id = r.json()["id"].as_i64().unwrap();

        let r = ended(&|| alice.patch(&format!("/api/tasks/{id}/complete"), ""));
        assert_eq!(r.status, 200, "{code}: toggle: {}", r.text());
        assert_eq!(r.json()["completed"], true, "{code}");
        let completed = count(
            "select count(*) from tasks where title = $1 and completed",
            &title,
        );
        assert_eq!(
            completed, 1,
            "{code}: one toggle acknowledged, applied twice"
        );

        let r = ended(&|| alice.delete(&format!("/api/tasks/{id}")));
        assert_eq!(r.status, 204, "{code}: delete: {}", r.text());
        let rows = count("select count(*) from tasks where title = $1", &title);
        assert_eq!(rows, 0, "{code}");
    }
}

/// The database ends every pooled connection (a restart, a failover, an administrator's
/// `pg_terminate_backend`) and stays up: `/health` says so at once, 200, as requests do.
/// Its check took a plain connection from the pool and one more after a failure: each
/// probe used up two dead ones, and `/health` said 503 for half the pool's size of probes.
#[test]
fn health_answers_200_at_once_after_the_pooled_connections_were_ended() {
    let Some(engine) = Engine::postgres() else {
        return;
    };
    let app = TestApp::spawn_with(TestDb::new(&engine), |_| {});
    let alice = app.user("alice");
    let id = app.create(&alice, r#"{"title": "contended"}"#)["id"]
        .as_i64()
        .unwrap();
    let mut own = app.db.postgres_client().unwrap();
    let server_backends = |own: &mut postgres::Client, waiting: bool| -> i64 {
        own.query_one(
            "select count(*) from pg_stat_activity where datname = current_database() \
             and pid <> pg_backend_pid() and (not $1 or wait_event_type = 'Lock')",
            &[&waiting],
        )
        .unwrap()
        .get(0)
    };

    // Arrange: every pooled connection in use at once (toggles waiting for a row the test
    // holds, released well within the statement deadline), then idle in the pool.
    let pool_size = app.config.pool_size as i64;
    let mut tx = own.transaction().unwrap();
    tx.execute("select 1 from tasks where id = $1 for update", &[&id])
        .unwrap();
    let toggles: Vec<_> = (0..pool_size)
        .map(|_| {
            let alice = alice.clone();
            thread::spawn(move || alice.patch(&format!("/api/tasks/{id}/complete"), ""))
        })
        .collect();
    let mut watcher = app.db.postgres_client().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while server_backends(&mut watcher, true) < pool_size && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    tx.commit().unwrap();
    for toggle in toggles {
        let r = toggle.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let pooled = server_backends(&mut own, false);
    assert!(pooled >= 4, "only {pooled} pooled connections");

    // Act: the database ends them all.
    own.batch_execute(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = current_database() and pid <> pg_backend_pid()",
    )
    .unwrap();
    thread::sleep(Duration::from_millis(200));

    // Assert: every probe says the database answers, as it does.
    for probe in 0..pooled {
        let r = app.anonymous().get("/health");
        assert_eq!(r.status, 200, "probe {probe}: {}", r.text());
    }
    assert_eq!(alice.get(&format!("/api/tasks/{id}")).status, 200);
}

/// A server on a scratch database reached through a `FORWARD_REPLIES` relay, with alice's
/// row written, and the test's own client to count rows with.
fn behind_a_replies_relay(engine: &Engine) -> (Relay, TestApp, Client, postgres::Client) {
    let db = TestDb::new(engine);
    let url = db.postgres_url().unwrap();
    let target = {
        use std::net::ToSocketAddrs;
        authority(&url).1.to_socket_addrs().unwrap().next().unwrap()
    };
    let relay = Relay::start(target, Relay::FORWARD_REPLIES);
    let through_relay = relayed(&url, relay.addr);
    let app = TestApp::spawn_with(db, |c| c.database = Database::Postgres(through_relay));
    let alice = app.user("alice");
    app.create(&alice, r#"{"title": "first"}"#);
    let own = app.db.postgres_client().unwrap();
    (relay, app, alice, own)
}

/// PostgreSQL ends a backend (`pg_terminate_backend`, FATAL 57P01) just as a connection
/// test arrives on it: the test is answered at once, with the session's end, and the
/// socket closes a little later. That connection is gone, not the database: `/health` says
/// 200 and a write goes on the next connection. The driver hands the FATAL to the test as
/// an ordinary error and says the connection is closed only once it reads the socket's
/// end, so the test was taken for one the database did not answer: the connection was shut
/// down, `/health` said 503 and the write got a 503 in a millisecond, with the database up.
#[test]
fn a_connection_test_answered_with_the_sessions_end_goes_on_to_the_next_connection() {
    let Some(engine) = Engine::postgres() else {
        return;
    };
    let (relay, app, alice, mut own) = behind_a_replies_relay(&engine);
    // Arrange: a few connections in the pool.
    let load: Vec<_> = (0..4)
        .map(|_| {
            let alice = alice.clone();
            thread::spawn(move || alice.get("/api/tasks").status)
        })
        .collect();
    for request in load {
        assert_eq!(request.join().unwrap(), 200);
    }

    // Act and assert: /health's own test is answered with the FATAL.
    relay.end_within_next(PING);
    let r = app.anonymous().get("/health");
    assert!(relay.ended_within(), "no connection test reached the relay");
    assert_eq!(r.status, 200, "/health: {}", r.text());

    // A connection was found gone: checkouts test their connection first for a while, and
    // the next test is answered with the FATAL too.
    relay.end_within_next(PING);
    let r = alice.post("/api/tasks", r#"{"title": "after a test was ended"}"#);
    assert!(relay.ended_within(), "no connection test reached the relay");
    assert_eq!(r.status, 201, "create: {}", r.text());
    let rows: i64 = own
        .query_one(
            "select count(*) from tasks where title = 'after a test was ended'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

/// PostgreSQL ends a backend while a statement waits on it (`pg_terminate_backend` of an
/// active backend, a fast shutdown): the FATAL comes in place of the rest of its reply, and
/// the socket closes a little later. A write is then a 503, since it may have committed,
/// and is not run again; but the connection is gone: it used to go back to the pool, and
/// the next write on it was a 503 "connection closed" too. A read is run again, on another
/// connection, as for one found closed; it used to be a 503.
#[test]
fn a_statement_answered_with_the_sessions_end_is_a_lost_connection() {
    let Some(engine) = Engine::postgres() else {
        return;
    };
    let (relay, _app, alice, mut own) = behind_a_replies_relay(&engine);
    let mut count = |title: &str| -> i64 {
        own.query_one("select count(*) from tasks where title = $1", &[&title])
            .unwrap()
            .get(0)
    };

    // A write: 503, done at most once (PostgreSQL committed it before it was ended).
    relay.end_within_next(INSERT);
    let r = alice.post("/api/tasks", r#"{"title": "ended in its reply"}"#);
    assert!(relay.ended_within(), "no insert reached the relay");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(count("ended in its reply"), 1, "run again");
    // The next writes are not sent on the connection that was ended.
    for n in 0..3 {
        let title = format!("next {n}");
        let r = alice.post("/api/tasks", &json!({ "title": title }).to_string());
        assert_eq!(r.status, 201, "{title}: {}", r.text());
        assert_eq!(count(&title), 1);
    }

    // A read: run again.
    relay.end_within_next(SELECT);
    let r = alice.get("/api/tasks");
    assert!(relay.ended_within(), "no select reached the relay");
    assert_eq!(r.status, 200, "list: {}", r.text());
    assert_eq!(r.json().as_array().unwrap().len(), 5);
}
