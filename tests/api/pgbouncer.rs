//! The server behind PgBouncer in transaction mode, as Neon's `-pooler` endpoint is:
//! every route works when consecutive statements may land on different server connections
//! and named prepared statements do not survive a transaction (PgBouncer 1.18).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use todo_api::config::Database;

use crate::helpers::*;

/// A PgBouncer in transaction mode in front of the test PostgreSQL server.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempdir::TempDir,
}

impl Bouncer {
    /// `pool_size` server connections per database and user, opened ahead of demand
    /// (`min_pool_size`) and handed out in turn (`server_round_robin`), so that consecutive
    /// transactions of one client move between them whenever there is more than one.
    fn start(upstream_host: &str, upstream_port: u16, pool_size: u32) -> Bouncer {
        let dir = tempdir::TempDir::new("todo-pgbouncer");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ini = dir.path("pgbouncer.ini");
        let users = dir.path("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={upstream_host} port={upstream_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 default_pool_size = {pool_size}\nmin_pool_size = {pool_size}\n\
                 server_round_robin = 1\n\
                 max_client_conn = 200\nlogfile = {}\n\
                 ignore_startup_parameters = extra_float_digits,options\n\
                 pidfile = {}\n",
                dir.path("pgbouncer.log"),
                dir.path("pgbouncer.pid")
            ),
        )
        .unwrap();
        // PgBouncer refuses to run as root; the `postgres` OS user exists wherever the
        // server is installed from Debian's packages.
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let _ = Command::new("chmod")
            .args(["-R", "a+rwX", &dir.path("")])
            .status();
        let binary = pgbouncer_binary().expect("pgbouncer is installed");
        let mut cmd = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &binary, &ini]);
            c
        } else {
            let mut c = Command::new(&binary);
            c.arg(&ini);
            c
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start: {:?}",
                std::fs::read_to_string(dir.path("pgbouncer.log"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Bouncer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // Killing `runuser` would orphan pgbouncer: stop pgbouncer itself, by its pidfile.
        if let Ok(pid) = std::fs::read_to_string(self._dir.path("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian installs it in /usr/sbin, which is not always on a test's PATH.
fn pgbouncer_binary() -> Option<String> {
    [
        "/usr/sbin/pgbouncer",
        "/usr/bin/pgbouncer",
        "/usr/local/bin/pgbouncer",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(String::from)
}

/// A scratch PostgreSQL database, a PgBouncer in transaction mode with `pool_size` server
/// connections in front of it, and the URL through the pooler; `None` (skip) without
/// PostgreSQL or PgBouncer, which fails under `REQUIRE_POSTGRES` (CI).
fn pooled_database(pool_size: u32) -> Option<(TestDb, Bouncer, String)> {
    let engine = Engine::postgres()?;
    if pgbouncer_binary().is_none() {
        assert!(
            std::env::var("REQUIRE_POSTGRES").is_err(),
            "pgbouncer is not installed (apt-get install pgbouncer)"
        );
        eprintln!("pgbouncer is not installed: skipping");
        return None;
    }
    let db = TestDb::new(&engine);
    let name = db.postgres_name().unwrap().to_string();
    let bouncer = Bouncer::start("127.0.0.1", 5432, pool_size);
    let url = format!("postgres://postgres@127.0.0.1:{}/{name}", bouncer.port);
    Some((db, bouncer, url))
}

/// With the default statement cache on: 8 pooled clients share 4 server connections, so
/// statements prepared on one are soon missing on another; the store must notice and
/// answer every request all the same.
#[test]
fn every_route_works_through_pgbouncer_in_transaction_mode() {
    let Some((db, _bouncer, pooled)) = pooled_database(4) else {
        return;
    };
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| {
        c.database = Database::Postgres(pooled.clone());
        c.pool_size = 8;
        assert!(c.statement_cache, "the default");
    });

    let alice = app.user("alice");
    let bob = app.user("bob");
    let t = app.create(
        &alice,
        r#"{"title": "through the pooler", "due_date": "2026-05-01"}"#,
    );
    let path = format!("/api/tasks/{}", t["id"]);
    assert_eq!(alice.get(&path).json(), t);
    assert_eq!(
        alice
            .get("/api/tasks?status=pending&sort=due_date&order=desc")
            .json(),
        json!([t.clone()])
    );
    assert_eq!(
        alice.put(&path, r#"{"title": "renamed"}"#).json()["title"],
        "renamed"
    );
    assert_eq!(
        alice.patch(&path, r#"{"description": "d"}"#).json()["description"],
        "d"
    );
    assert_eq!(
        alice.patch(&format!("{path}/complete"), "").json()["completed"],
        true
    );
    assert_eq!(bob.get(&path).status, 404);
    // Concurrency through 4 server connections shared by 8 pooled clients.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let alice = alice.clone();
                let path = format!("{path}/complete");
                s.spawn(move || {
                    if i % 2 == 0 {
                        alice.patch(&path, "").status
                    } else {
                        alice.post("/api/tasks", r#"{"title": "x"}"#).status
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|s| [200, 201].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(
        alice.get(&path).json()["completed"],
        true,
        "20 more toggles keep it true"
    );
    assert_eq!(alice.get("/api/tasks").json().as_array().unwrap().len(), 21);
    assert_eq!(alice.delete(&path).status, 204);
    assert_eq!(app.anonymous().get("/health").status, 200);
    drop(app);
    drop(db);
}

/// Two server processes behind a pooler with a single server connection: every statement
/// of both lands in the same PostgreSQL session, so neither ever misses one and both keep
/// preparing. Statements named alike in both processes (tokio-postgres 0.7.18 names them
/// `s0`, `s1`, ... in every process) would collide there: the second process could not
/// prepare its `s0`, or would bind the first one's. Each process must get its own answers.
#[test]
fn two_processes_sharing_one_server_connection_never_run_each_others_statements() {
    let Some((db, _bouncer, pooled)) = pooled_database(1) else {
        return;
    };
    let env = [
        ("DATABASE_URL", pooled.as_str()),
        ("BETTER_AUTH_SECRET", SECRET),
        ("DB_POOL_SIZE", "2"),
    ];
    let first = Process::start(&env);
    let second = Process::start(&env);
    let client = |p: &Process, sub: &str| Client {
        addr: p.addr,
        token: Some(token(sub)),
    };
    let (alice, bob) = (client(&first, "alice"), client(&second, "bob"));
    // Different first statements in the two processes, so that equal names would mean
    // different SQL: alice's process starts with a list, bob's with a create.
    assert_eq!(alice.get("/api/tasks").json(), json!([]));
    let b = bob.post("/api/tasks", r#"{"title": "bob's"}"#);
    assert_eq!(b.status, 201, "{}", b.text());
    for round in 0..3 {
        let a = alice.post("/api/tasks", &format!(r#"{{"title": "alice {round}"}}"#));
        assert_eq!(a.status, 201, "{}", a.text());
        let a = a.json();
        let path = format!("/api/tasks/{}", a["id"]);
        assert_eq!(alice.get(&path).json(), a);
        assert_eq!(bob.get(&path).status, 404);
        assert_eq!(
            alice.patch(&format!("{path}/complete"), "").json()["completed"],
            true
        );
        let bobs = bob.get("/api/tasks").json();
        assert_eq!(bobs.as_array().unwrap().len(), 1, "{bobs}");
        assert_eq!(bobs[0]["title"], "bob's");
        assert_eq!(alice.delete(&path).status, 204);
        assert_eq!(alice.get(&path).status, 404);
    }
    let logged: Vec<String> = [&first, &second].iter().flat_map(|p| p.logged()).collect();
    assert!(
        !logged
            .iter()
            .any(|l| l.contains("ERROR") || l.contains("unnamed")),
        "{logged:#?}"
    );
    drop((first, second));
    drop(db);
}

/// The fallback itself: one pooled client, two server connections taken in turn, so the
/// second use of a statement is bound on the server connection that never prepared it.
/// That request must still succeed, and the server must say once that it stopped preparing.
#[test]
fn a_statement_missing_on_the_server_connection_is_sent_unnamed_and_the_cache_turned_off() {
    let Some((db, _bouncer, pooled)) = pooled_database(2) else {
        return;
    };
    let server = Process::start(&[
        ("DATABASE_URL", pooled.as_str()),
        ("BETTER_AUTH_SECRET", SECRET),
        ("DB_POOL_SIZE", "1"),
    ]);
    let alice = Client {
        addr: server.addr,
        token: Some(token("alice")),
    };
    // The first request makes PgBouncer open its pool; wait until both server connections
    // are there, so that the next transactions alternate between them.
    let t = alice.post("/api/tasks", r#"{"title": "one"}"#);
    assert_eq!(t.status, 201, "{}", t.text());
    let mut admin = db.postgres_client().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let name = db.postgres_name().unwrap().to_string();
    let backends = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "select count(*) from pg_stat_activity where datname = $1 \
                 and pid <> pg_backend_pid() and backend_type = 'client backend'",
                &[&name],
            )
            .unwrap()
            .get(0)
    };
    while backends(&mut admin) < 2 {
        assert!(
            Instant::now() < deadline,
            "PgBouncer did not open 2 server connections"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(admin);
    let t = t.json();
    let path = format!("/api/tasks/{}", t["id"]);
    for _ in 0..6 {
        assert_eq!(alice.get(&path).json(), t);
        assert_eq!(alice.get("/api/tasks").json(), json!([t.clone()]));
    }
    std::thread::sleep(Duration::from_millis(200));
    let logged = server.logged();
    let warnings: Vec<&String> = logged.iter().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), 1, "{logged:#?}");
    assert!(
        warnings[0].contains("sending every statement unnamed"),
        "{warnings:?}"
    );
    assert!(!logged.iter().any(|l| l.contains("ERROR")), "{logged:#?}");
    drop(server);
    drop(db);
}

/// Cancel requests reach the statements through the pooler, as through Neon's.
#[test]
fn a_statement_waiting_too_long_behind_pgbouncer_is_cancelled_through_it() {
    let Some((db, _bouncer, pooled)) = pooled_database(4) else {
        return;
    };
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| {
        c.database = Database::Postgres(pooled.clone());
        c.workers = 4;
        c.pool_size = 4;
    });
    crate::statements::lock_waits_end_in_503s_and_health_answers_meanwhile(&app, &db);
}
