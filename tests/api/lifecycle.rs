//! The server as a process: health, unknown routes, request ids, restart persistence,
//! schema idempotence, TLS to PostgreSQL, the `todo-api` command line and SIGTERM.

use std::io::BufReader;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::dbtest;
use crate::helpers::*;

dbtest!(health_reports_the_database, |app| {
    let r = app.anonymous().get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok", "database": "ok"}));
    let r = app.anonymous().send("POST", "/health", Some(b"{}"), &[]);
    assert_eq!(
        (r.status, r.header("Allow")),
        (405, Some("GET, HEAD, OPTIONS"))
    );
});

dbtest!(unknown_routes_are_json_404s, |app| {
    for path in ["/", "/nope", "/api", "/tasks"] {
        let r = app.anonymous().get(path);
        if path == "/api" {
            assert_eq!(r.status, 401, "{path} is under /api");
            continue;
        }
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert!(!r.detail().is_empty());
    }
});

dbtest!(paths_match_after_unreserved_escapes_are_decoded, |app| {
    let alice = app.user("alice");
    let id = app.create(&alice, r#"{"title": "escaped"}"#)["id"].clone();
    // RFC 3986 §6.2.2.2: `%74` is `t`, and every digit of the id may be escaped too.
    let escaped_id: String = id
        .to_string()
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let r = alice.get(&format!("/api/%74asks/{escaped_id}"));
    assert_eq!((r.status, r.json()["id"].clone()), (200, id.clone()));
    assert_eq!(alice.get("/api/%74asks").status, 200);
    let r = alice.send("PATCH", &format!("/api/tasks/{id}/%63omplete"), None, &[]);
    assert_eq!(
        (r.status, r.json()["completed"].clone()),
        (200, json!(true))
    );
    assert_eq!(app.anonymous().get("/%68ealth").status, 200);
    // A reserved escape is not path structure: `%2F` is no `/`.
    assert_eq!(alice.get(&format!("/api/tasks%2F{id}")).status, 404);
    // A path with an empty segment is no route (not a task with an empty id, 400).
    for (method, path) in [
        ("GET", "/api/tasks//".to_string()),
        ("DELETE", "/api/tasks//".to_string()),
        ("PATCH", "/api/tasks//complete".to_string()),
        ("GET", format!("/api/tasks/{id}//")),
    ] {
        let r = alice.send(method, &path, None, &[]);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
    }
    assert_eq!(
        alice.get(&format!("/api/tasks/{id}")).json()["completed"],
        json!(true)
    );
});

dbtest!(request_ids_are_echoed_or_made, |app| {
    let r = app
        .anonymous()
        .send("GET", "/health", None, &[("X-Request-Id", "trace-42.a_b")]);
    assert_eq!(r.header("X-Request-Id"), Some("trace-42.a_b"));
    let bad = "x".repeat(65);
    for sent in [bad.as_str(), "has space", "semi;colon"] {
        let r = app
            .anonymous()
            .send("GET", "/health", None, &[("X-Request-Id", sent)]);
        let got = r.header("X-Request-Id").expect("an id").to_string();
        assert_ne!(got, sent);
        assert!(!got.is_empty() && got.len() <= 64);
    }
    let a = app.anonymous().get("/nope");
    let b = app.anonymous().get("/nope");
    assert_ne!(a.header("X-Request-Id"), b.header("X-Request-Id"));
});

dbtest!(tasks_survive_a_restart, |app| {
    let alice = app.user("alice");
    let t = app.create(
        &alice,
        r#"{"title": "persist me", "due_date": "2026-07-04"}"#,
    );
    let toggled = alice
        .patch(&format!("/api/tasks/{}/complete", t["id"]), "")
        .json();
    app.restart();
    let alice = app.user("alice");
    let r = alice.get(&format!("/api/tasks/{}", t["id"]));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), toggled);
    assert_eq!(alice.get("/api/tasks").json(), json!([toggled]));
});

/// The columns of a table in a PostgreSQL or SQLite database, as `(name, nullable)`.
fn columns(app: &TestApp, table: &str) -> Vec<(String, bool)> {
    match app.db.postgres_client() {
        Some(mut db) => db
            .query(
                "select column_name::text, is_nullable = 'YES' from information_schema.columns \
                 where table_name = $1 order by ordinal_position",
                &[&table],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        None => {
            let todo_api::config::Database::Sqlite(path) = app.db.database() else {
                unreachable!()
            };
            let db = rusqlite::Connection::open(path).unwrap();
            let mut stmt = db.prepare(&format!("pragma table_info({table})")).unwrap();
            stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(3)? == 0 && r.get::<_, i64>(5)? == 0,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        }
    }
}

dbtest!(both_schemas_have_the_same_columns, |app| {
    let want_users = [
        ("id", false),
        ("email", true),
        ("name", true),
        ("created_at", false),
    ];
    let want_tasks = [
        ("id", false),
        ("user_id", false),
        ("title", false),
        ("description", true),
        ("completed", false),
        ("due_date", true),
        ("created_at", false),
        ("updated_at", false),
    ];
    let owned = |w: &[(&str, bool)]| {
        w.iter()
            .map(|(n, b)| (n.to_string(), *b))
            .collect::<Vec<_>>()
    };
    assert_eq!(columns(&app, "users"), owned(&want_users));
    assert_eq!(columns(&app, "tasks"), owned(&want_tasks));
});

dbtest!(schema_creation_leaves_existing_data_alone, |app| {
    let alice = app.user("alice");
    app.create(&alice, r#"{"title": "old"}"#);
    // A second server on the same database applies the schema again.
    app.restart();
    app.restart();
    assert_eq!(
        app.user("alice")
            .get("/api/tasks")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
});

#[test]
fn sigterm_and_sigint_finish_in_flight_requests_and_exit_zero() {
    for signal in ["TERM", "INT"] {
        let dir = tempdir::TempDir::new(&format!("todo-sig-{signal}"));
        let url = format!("sqlite:{}", dir.path("todo.db"));
        let mut p = Process::start(&[("DATABASE_URL", &url), ("BETTER_AUTH_SECRET", SECRET)]);
        let client = Client {
            addr: p.addr,
            token: Some(token("alice")),
        };
        // A request whose body is still arriving when the signal lands.
        let body = br#"{"title": "in flight"}"#;
        let head = format!(
            "POST /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            client.token.as_deref().unwrap(),
            body.len()
        );
        let mut stream = std::net::TcpStream::connect(p.addr).unwrap();
        use std::io::Write;
        stream.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        p.signal(signal);
        std::thread::sleep(Duration::from_millis(300));
        // The listener is closed at once: a new connection is refused...
        assert!(
            std::net::TcpStream::connect(p.addr).is_err(),
            "SIG{signal}: still accepting"
        );
        // ...while the request already under way is finished.
        stream.write_all(body).unwrap();
        let r = read_response(&mut BufReader::new(stream));
        assert_eq!(
            r.status,
            201,
            "SIG{signal}: the in-flight request completes: {}",
            r.text()
        );
        let (status, _) = p.wait(Duration::from_secs(10)).expect("exits within 10 s");
        assert!(status.success(), "SIG{signal}: exit status {status:?}");
        let log = p.logged().join("\n");
        assert!(log.contains("POST /api/tasks 201"), "{log}");
    }
}

#[test]
fn the_log_has_one_line_per_request_and_never_the_token_or_password() {
    let dir = tempdir::TempDir::new("todo-log");
    let url = format!("sqlite:{}", dir.path("todo.db"));
    let p = Process::start(&[("DATABASE_URL", &url), ("BETTER_AUTH_SECRET", SECRET)]);
    let client = Client {
        addr: p.addr,
        token: Some(token("alice")),
    };
    let r = client.send(
        "GET",
        "/api/tasks?status=all",
        None,
        &[("X-Request-Id", "log-check-1")],
    );
    assert_eq!(r.status, 200);
    let bad = Client {
        addr: p.addr,
        token: Some("not-a-jwt".into()),
    }
    .send(
        "GET",
        "/api/tasks",
        None,
        &[("X-Request-Id", "log-check-2")],
    );
    assert_eq!(bad.status, 401);
    std::thread::sleep(Duration::from_millis(200));
    let log = p.logged().join("\n");
    let line = log
        .lines()
        .find(|l| l.contains("id=log-check-1"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("GET /api/tasks 200"), "{line}");
    assert!(line.contains("ms"), "{line}");
    assert!(
        !log.contains(client.token.as_deref().unwrap()),
        "token in the log"
    );
    assert!(!log.contains("not-a-jwt"), "token in the log");
    assert!(!log.contains(SECRET), "secret in the log");
}

#[test]
fn without_a_secret_the_log_offers_a_working_demo_token() {
    // With JWT_ISSUER / JWT_AUDIENCE too: the demo token must carry them.
    let requiring = [
        ("JWT_ISSUER", "https://issuer.example"),
        ("JWT_AUDIENCE", "todo-api"),
    ];
    for extra in [&[][..], &requiring] {
        let dir = tempdir::TempDir::new("todo-demo");
        let url = format!("sqlite:{}", dir.path("todo.db"));
        let p = Process::start(&[&[("DATABASE_URL", url.as_str())][..], extra].concat());
        std::thread::sleep(Duration::from_millis(200));
        let log = p.logged().join("\n");
        let token = log
            .split("Authorization: Bearer ")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("no demo curl line in: {log}"));
        let r = Client {
            addr: p.addr,
            token: Some(token.to_string()),
        }
        .get("/api/tasks");
        assert_eq!(r.status, 200, "{extra:?}: {}", r.text());
    }
}

#[test]
fn the_password_never_reaches_the_log() {
    let Some(Engine::Postgres(admin)) = Engine::postgres() else {
        return;
    };
    // A URL with a password (trust auth ignores it) must be logged without it.
    let with_password = admin.replacen("postgres@", "postgres:hunter2-secret@", 1);
    assert_ne!(
        with_password, admin,
        "TEST_DATABASE_URL should name the postgres user"
    );
    let p = Process::start(&[
        ("DATABASE_URL", &with_password),
        ("BETTER_AUTH_SECRET", SECRET),
    ]);
    let r = Client {
        addr: p.addr,
        token: None,
    }
    .get("/health");
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(100));
    let log = p.logged().join("\n");
    assert!(!log.contains("hunter2-secret"), "{log}");
}

#[test]
fn token_command_mints_tokens_the_server_accepts() {
    let out = Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .args([
            "token",
            "--sub",
            "cli-user",
            "--email",
            "c@example.com",
            "--name",
            "C",
            "--ttl",
            "2h",
        ])
        .env("BETTER_AUTH_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let app = TestApp::spawn(Engine::Sqlite);
    let cli = app.with_token(&token);
    let t = app.create(&cli, r#"{"title": "via cli"}"#);
    assert_eq!(
        app.user("cli-user")
            .get(&format!("/api/tasks/{}", t["id"]))
            .status,
        200
    );

    let refused = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_todo-api"));
        cmd.env_remove("BETTER_AUTH_SECRET")
            .current_dir(std::env::temp_dir())
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!out.stderr.is_empty(), "{args:?} should say why");
    };
    refused(&["token", "--sub", "x"], &[]);
    refused(&["token"], &[("BETTER_AUTH_SECRET", SECRET)]);
    refused(
        &["token", "--sub", "x", "--ttl", "soon"],
        &[("BETTER_AUTH_SECRET", SECRET)],
    );
    refused(&["--bogus"], &[]);
}

/// `todo-api token` with these arguments and `BETTER_AUTH_SECRET`, away from any `.env`.
fn token_command(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_todo-api"));
    cmd.env("BETTER_AUTH_SECRET", SECRET)
        .current_dir(std::env::temp_dir())
        .arg("token")
        .args(args)
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

/// The token that `todo-api token` printed, after checking that it succeeded.
fn printed_token(out: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn token_command_prints_its_usage_and_takes_opt_equals_value() {
    for args in [&["--help"][..], &["-h"], &["--sub", "x", "--help"]] {
        let out = token_command(args, &[]);
        assert!(out.status.success(), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("todo-api token --sub"),
            "{args:?}: {stdout}"
        );
    }
    let token = printed_token(token_command(&["--sub=eq-user", "--ttl=2h"], &[]));
    let app = TestApp::spawn(Engine::Sqlite);
    let t = app.create(&app.with_token(&token), r#"{"title": "via --sub="}"#);
    let mine = app.user("eq-user").get(&format!("/api/tasks/{}", t["id"]));
    assert_eq!(mine.status, 200, "the token is eq-user's");
}

/// API.md, Authentication: a server with `JWT_ISSUER` / `JWT_AUDIENCE` refuses a token
/// without that `iss` / `aud`, so the command puts them in from the same configuration.
#[test]
fn token_command_follows_the_configured_issuer_and_audience() {
    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "todo-api";
    let env = [("JWT_ISSUER", ISSUER), ("JWT_AUDIENCE", AUDIENCE)];
    let token = printed_token(token_command(&["--sub", "iss-user"], &env));
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| {
        c.issuer = Some(ISSUER.into());
        c.audience = Some(AUDIENCE.into());
    });
    let r = app.with_token(&token).get("/api/tasks");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A ttl whose `exp` would fall past 2106-02-07 wrapped to a date in the past (36500 days
/// gave 1990); it is refused with the limit instead.
#[test]
fn token_command_refuses_a_ttl_no_token_can_carry() {
    for ttl in ["36500d", "999999999999999d", "4294967296"] {
        let out = token_command(&["--sub", "x", "--ttl", ttl], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{ttl}: {stderr}");
        assert!(stderr.contains("2106-02-07"), "{ttl}: {stderr}");
        assert!(stderr.contains("use a ttl of at most"), "{ttl}: {stderr}");
        assert!(out.stdout.is_empty(), "{ttl}: no token");
    }
}

/// CONTRACT: `sub` is at most 255 characters; the command signs nothing the server refuses.
#[test]
fn token_command_refuses_a_sub_over_255_characters() {
    let out = token_command(&["--sub", &"u".repeat(256)], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("256 characters"), "{stderr}");
    assert!(out.stdout.is_empty(), "no token");
    assert!(!printed_token(token_command(&["--sub", &"u".repeat(255)], &[])).is_empty());
}

#[test]
fn help_and_version() {
    for (arg, want) in [
        ("--help", "todo-api token --sub"),
        ("--version", env!("CARGO_PKG_VERSION")),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_todo-api"))
            .arg(arg)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains(want), "{arg}");
    }
}

/// `todo-api --help | head -3` closes the pipe before everything is written: the command
/// stops quietly, it does not panic with "failed printing to stdout".
#[test]
fn output_to_a_closed_pipe_is_no_panic() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["--version"],
        &["token", "--sub", "x"],
        &["token", "--help"],
    ] {
        // The reading end is closed before the command starts, so its write always fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_todo-api"))
            .args(args)
            .env("BETTER_AUTH_SECRET", SECRET)
            .current_dir(std::env::temp_dir())
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn bad_configuration_fails_fast_with_a_reason() {
    for (k, v) in [
        ("DATABASE_URL", "mysql://x"),
        ("PORT", "http"),
        ("BETTER_AUTH_SECRET", "short"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_todo-api"))
            .env(k, v)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{k}={v}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(k),
            "{k}={v}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_dotenv_file_configures_the_server_and_its_log() {
    let dir = tempdir::TempDir::new("todo-dotenv");
    let db = dir.path("tasks.db");
    std::fs::write(
        dir.path(".env"),
        format!(
            "# a comment line, as in .env.example\nPORT=0\nDATABASE_URL=sqlite:{db}\n\
             BETTER_AUTH_SECRET=\"{SECRET}\"\nRUST_LOG=info,todo_api::server=warn\n"
        ),
    )
    .unwrap();
    // The access log's lines (target todo_api::server) are silenced by `.env`'s RUST_LOG,
    // and come back when the environment's own RUST_LOG overrides it.
    for (env, access_logged) in [(&[][..], false), (&[("RUST_LOG", "info")][..], true)] {
        let mut p = Process::start_in(&dir.path(""), env);
        let alice = Client {
            addr: p.addr,
            token: Some(token("alice")),
        };
        assert_eq!(alice.get("/api/tasks/").status, 200, "the secret from .env");
        p.signal("TERM");
        assert!(p.wait(Duration::from_secs(15)).is_some(), "{env:?}: stops");
        let log = p.logged_to_the_end();
        assert!(
            log.iter().any(|l| l.contains("stopped")),
            "{env:?}: {log:?}"
        );
        let access = log.iter().any(|l| l.contains("GET /api/tasks/ 200"));
        assert_eq!(access, access_logged, "{env:?}: {log:?}");
    }
    assert!(std::path::Path::new(&db).exists(), "DATABASE_URL from .env");
}

/// The server's certificate, read from PostgreSQL itself, so the test trusts exactly it.
fn server_certificate(admin: &str) -> String {
    let mut db = postgres::Client::connect(admin, postgres::NoTls).unwrap();
    let row = db
        .query_one(
            "select current_setting('ssl'), current_setting('ssl_cert_file')",
            &[],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "on",
        "the local PostgreSQL must run with SSL on"
    );
    row.get(1)
}

#[test]
fn postgres_over_verified_tls() {
    let Some(Engine::Postgres(admin)) = Engine::postgres() else {
        return;
    };
    let cert = server_certificate(&admin);
    let db = TestDb::new(&Engine::Postgres(admin));
    let plain = db.postgres_url().unwrap();
    let name = db.postgres_name().unwrap().to_string();
    // The certificate names `localhost`: connect by that name, trusting exactly that CA.
    let tls_url = format!(
        "postgresql://postgres@localhost:5432/{name}?sslmode=require&channel_binding=prefer&sslrootcert={cert}"
    );
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| {
        c.database = todo_api::config::Database::Postgres(tls_url.clone());
    });
    let alice = app.user("alice");
    let t = app.create(&alice, r#"{"title": "over TLS"}"#);
    assert_eq!(alice.get(&format!("/api/tasks/{}", t["id"])).status, 200);
    let mut check = postgres::Client::connect(&plain, postgres::NoTls).unwrap();
    let encrypted: i64 = check
        .query_one(
            "select count(*) from pg_stat_ssl s join pg_stat_activity a using (pid) \
             where a.datname = $1 and s.ssl and a.pid <> pg_backend_pid()",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the server's connections are not encrypted");

    // Verification is real: by IP address the certificate's name does not match.
    let mismatched =
        format!("postgresql://postgres@127.0.0.1:5432/{name}?sslmode=require&sslrootcert={cert}");
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| {
        c.database = todo_api::config::Database::Postgres(mismatched.clone());
    });
    let r = app.anonymous().get("/health");
    assert_eq!(
        r.status, 503,
        "a certificate for another host name must be refused"
    );
    assert_eq!(r.json()["database"], "unavailable");
    drop(db);
}

#[test]
fn still_accepting_after_a_quiet_spell_and_idle_connections_are_closed() {
    // A receive timeout on the listening socket once made accept() fail after 10 s
    // without a new connection, and the server never accepted again.
    let app = TestApp::spawn(Engine::Sqlite);
    let mut idle = std::net::TcpStream::connect(app.addr).unwrap();
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(
        app.anonymous().get("/health").status,
        200,
        "new connections after 11 s"
    );
    // The idle keep-alive connection was closed by the server after its 10 s timeout.
    use std::io::Read;
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        idle.read(&mut [0u8; 16]).unwrap(),
        0,
        "idle connection closed"
    );
}
