//! Test support: a real server on an ephemeral port over a fresh database (a temp SQLite
//! file, or a scratch PostgreSQL database made from `TEST_DATABASE_URL`), real HS256
//! tokens, and a small HTTP/1.1 client that can also send what no polite client would.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use todo_api::config::Database;
use todo_api::{Config, Server};

/// The secret every test server and token shares.
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// Runs a test body once on SQLite and once on PostgreSQL (when `TEST_DATABASE_URL` is set),
/// as ripgrep's `rgtest!` runs one body under two engines.
#[macro_export]
macro_rules! dbtest {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn sqlite() {
                #[allow(unused_mut)]
                let mut $app = $crate::helpers::TestApp::spawn($crate::helpers::Engine::Sqlite);
                $body
            }

            #[test]
            fn postgres() {
                let Some(engine) = $crate::helpers::Engine::postgres() else {
                    return;
                };
                #[allow(unused_mut)]
                let mut $app = $crate::helpers::TestApp::spawn(engine);
                $body
            }
        }
    };
}

/// Which database a test runs on.
#[derive(Clone, Debug)]
pub enum Engine {
    Sqlite,
    Postgres(String),
}

impl Engine {
    /// PostgreSQL when `TEST_DATABASE_URL` is set. CI sets `REQUIRE_POSTGRES=1` so that a
    /// missing URL fails the run instead of silently testing only SQLite.
    pub fn postgres() -> Option<Engine> {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(Engine::Postgres(url)),
            _ if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
                panic!("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
            }
            _ => {
                eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
                None
            }
        }
    }
}

/// A scratch database, removed on drop.
pub enum TestDb {
    Sqlite(tempdir::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub fn new(engine: &Engine) -> TestDb {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        match engine {
            Engine::Sqlite => TestDb::Sqlite(tempdir::TempDir::new(&format!("todo-test-{n}"))),
            Engine::Postgres(admin_url) => {
                let name = format!("todo_test_{}_{n}", std::process::id());
                let mut admin = postgres::Client::connect(admin_url, postgres::NoTls)
                    .expect("connect to TEST_DATABASE_URL");
                admin
                    .batch_execute(&format!("drop database if exists {name} with (force)"))
                    .unwrap();
                admin
                    .batch_execute(&format!("create database {name}"))
                    .unwrap();
                TestDb::Postgres {
                    admin_url: admin_url.clone(),
                    name,
                }
            }
        }
    }

    pub fn database(&self) -> Database {
        match self {
            TestDb::Sqlite(dir) => Database::Sqlite(dir.path("todo.db")),
            TestDb::Postgres { admin_url, name } => {
                Database::Postgres(with_db_name(admin_url, name))
            }
        }
    }

    /// The scratch database's name (PostgreSQL only).
    pub fn postgres_name(&self) -> Option<&str> {
        match self {
            TestDb::Postgres { name, .. } => Some(name),
            TestDb::Sqlite(_) => None,
        }
    }

    /// The URL a test can open its own connection with (PostgreSQL only).
    pub fn postgres_url(&self) -> Option<String> {
        match self {
            TestDb::Postgres { admin_url, name } => Some(with_db_name(admin_url, name)),
            TestDb::Sqlite(_) => None,
        }
    }

    /// A connection of the test's own to the database (PostgreSQL only).
    pub fn postgres_client(&self) -> Option<postgres::Client> {
        let url = self.postgres_url()?;
        Some(postgres::Client::connect(&url, postgres::NoTls).unwrap())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            if let Ok(mut admin) = postgres::Client::connect(admin_url, postgres::NoTls) {
                let _ =
                    admin.batch_execute(&format!("drop database if exists {name} with (force)"));
            }
        }
    }
}

/// Replaces the database name in a `postgres://` URL, keeping any query string.
pub fn with_db_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A running server with its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub config: Config,
    server: Option<Server>,
}

impl TestApp {
    pub fn spawn(engine: Engine) -> TestApp {
        let db = TestDb::new(&engine);
        TestApp::spawn_with(db, |_| {})
    }

    /// Spawns with a configuration adjusted by `tweak`.
    pub fn spawn_with(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = test_config(db.database());
        tweak(&mut config);
        let server = todo_api::start(config.clone()).expect("server starts");
        TestApp {
            addr: server.addr(),
            db,
            config,
            server: Some(server),
        }
    }

    /// Stops the server (gracefully) and starts a new one on the same database.
    pub fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        let server = todo_api::start(self.config.clone()).expect("server restarts");
        self.addr = server.addr();
        self.server = Some(server);
    }

    /// Begins a graceful shutdown on a thread of its own (it returns once the server has
    /// stopped); the server is not restarted.
    pub fn shut_down_in_background(&mut self) -> std::thread::JoinHandle<()> {
        let server = self.server.take().expect("the server is running");
        std::thread::spawn(move || server.shutdown())
    }

    /// A client acting as user `sub`, with a fresh one-hour token.
    pub fn user(&self, sub: &str) -> Client {
        Client {
            addr: self.addr,
            token: Some(token(sub)),
        }
    }

    /// A client sending no token.
    pub fn anonymous(&self) -> Client {
        Client {
            addr: self.addr,
            token: None,
        }
    }

    /// A client sending this exact token.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            addr: self.addr,
            token: Some(token.to_string()),
        }
    }

    /// Creates a task for `user` and returns it, asserting the 201.
    pub fn create(&self, user: &Client, body: &str) -> Value {
        let r = user.post("/api/tasks", body);
        assert_eq!(r.status, 201, "create {body}: {}", r.text());
        r.json()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// The configuration every test server starts from.
pub fn test_config(database: Database) -> Config {
    let mut config = Config::from_lookup(|key| match key {
        "BETTER_AUTH_SECRET" => Some(SECRET.to_string()),
        "PORT" => Some("0".to_string()),
        "WORKERS" => Some("8".to_string()),
        _ => None,
    })
    .expect("test config");
    config.database = database;
    config
}

/// An HS256 token for `sub`, valid for an hour, as `todo-api token` makes it.
pub fn token(sub: &str) -> String {
    todo_api::auth::mint(
        SECRET.as_bytes(),
        sub,
        Some(&format!("{sub}@example.com")),
        Some(sub),
        Duration::from_secs(3600),
    )
}

/// Asserts a 401 for a token that fails verification, with RFC 6750's challenge, and that
/// the token is not echoed back.
pub fn assert_invalid_token(app: &TestApp, token: &str, why: &str) {
    let r = app.with_token(token).get("/api/tasks");
    assert_eq!(r.status, 401, "{why}: {}", r.text());
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some(r#"Bearer error="invalid_token""#),
        "{why}"
    );
    assert!(!r.text().contains(token), "{why}: the token is echoed");
    assert!(!r.detail().is_empty(), "{why}");
}

/// A response, fully read.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// The `detail` of an error body, asserting the error shape.
    pub fn detail(&self) -> String {
        let v = self.json();
        v["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no detail in {v}"))
            .to_string()
    }
}

/// A tiny HTTP/1.1 client: one connection per request, so tests never share state.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Client {
    pub fn get(&self, path: &str) -> Response {
        self.send("GET", path, None, &[])
    }

    /// GETs `path` every `every` until it is 200; fails the test, saying `what`, when it is
    /// still not after `limit`.
    pub fn wait_for_200(&self, path: &str, limit: Duration, every: Duration, what: &str) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let r = self.get(path);
            if r.status == 200 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: still {} after {limit:?}: {}",
                r.status,
                r.text()
            );
            std::thread::sleep(every);
        }
    }
    pub fn post(&self, path: &str, body: &str) -> Response {
        self.send("POST", path, Some(body.as_bytes()), &[])
    }
    pub fn put(&self, path: &str, body: &str) -> Response {
        self.send("PUT", path, Some(body.as_bytes()), &[])
    }
    pub fn patch(&self, path: &str, body: &str) -> Response {
        self.send("PATCH", path, Some(body.as_bytes()), &[])
    }
    pub fn delete(&self, path: &str) -> Response {
        self.send("DELETE", path, None, &[])
    }

    /// Sends a request with extra headers; adds the bearer token if the client has one.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Response {
        let raw = request_bytes(method, path, self.token.as_deref(), body, headers);
        raw_request(self.addr, &raw)
    }
}

/// The bytes of one request with `Connection: close`, a bearer token if given, and a JSON
/// body with its `Content-Length` if given.
pub fn request_bytes(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.unwrap_or_default());
    raw
}

/// A new connection to `addr` on which `raw` has been written, whose reads give up after 5 s.
pub fn sent(addr: SocketAddr, raw: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(raw).unwrap();
    stream
}

/// Writes raw bytes and reads one response (without a body if the request is a HEAD).
pub fn raw_request(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(raw).expect("write request");
    let mut reader = BufReader::new(stream);
    if raw.starts_with(b"HEAD ") {
        read_head_response(&mut reader)
    } else {
        read_response(&mut reader)
    }
}

/// Reads one response (status line, headers, Content-Length body) from a stream.
pub fn read_response(reader: &mut impl BufRead) -> Response {
    let mut response = read_head_response(reader);
    let len: usize = response
        .header("Content-Length")
        .map_or(0, |v| v.parse().unwrap());
    response.body = vec![0; len];
    reader.read_exact(&mut response.body).expect("body");
    response
}

/// Reads header lines up to the empty line that ends them, as (name, value) pairs.
pub fn read_headers(reader: &mut impl BufRead) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            return headers;
        }
        let (name, value) = line.split_once(':').expect("header has a colon");
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// Reads the status line and headers of one response, and no body: an answer to HEAD, which
/// has none whatever its `Content-Length` says.
pub fn read_head_response(reader: &mut impl BufRead) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let headers = read_headers(reader);
    Response {
        status,
        headers,
        body: Vec::new(),
    }
}

/// A `todo-api` process started from the built binary, the address it listens on, and
/// its log lines as they come.
pub struct Process {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    log: std::sync::mpsc::Receiver<String>,
}

impl Process {
    /// Starts the binary with only these variables (and PATH), on a free port, and waits
    /// for its `listening on` line. It runs in the temp directory, away from any `.env` of
    /// the repository's.
    pub fn start(env: &[(&str, &str)]) -> Process {
        let defaults = [("PORT", "0"), ("RUST_LOG", "info")];
        let dir = std::env::temp_dir();
        Process::start_in(&dir.to_string_lossy(), &[&defaults[..], env].concat())
    }

    /// Starts the binary in `dir` with only these variables and PATH (so that `dir/.env`
    /// gives the rest), and waits for its `listening on` line.
    pub fn start_in(dir: &str, env: &[(&str, &str)]) -> Process {
        Process::start_as(None, dir, env)
    }

    /// `start_in`, as the user and group with this id when one is given (through `setpriv`,
    /// which only root may do).
    pub fn start_as(id: Option<u32>, dir: &str, env: &[(&str, &str)]) -> Process {
        use std::process::{Command, Stdio};
        let bin = env!("CARGO_BIN_EXE_todo-api");
        let mut cmd = match id {
            None => Command::new(bin),
            Some(id) => {
                let mut cmd = Command::new("setpriv");
                cmd.args([&format!("--reuid={id}"), &format!("--regid={id}")])
                    .args(["--clear-groups", "--", bin]);
                cmd
            }
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start todo-api");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = std::sync::mpsc::channel();
        // Read the log as it comes, so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = log.recv_timeout(left).expect("a listening line");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        Process { child, addr, log }
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status and how long it took, or `None` if it took longer than `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The log lines so far that were not read before.
    pub fn logged(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Every log line not read before, up to the end of the log (the process has exited).
    pub fn logged_to_the_end(&self) -> Vec<String> {
        self.log.iter().collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp directory removed on drop (std has none; not worth a dependency).
pub mod tempdir {
    use std::path::PathBuf;

    pub struct TempDir(PathBuf);

    impl TempDir {
        /// A fresh directory: the process id and a counter keep tests running at the same
        /// time with the same prefix apart.
        pub fn new(prefix: &str) -> TempDir {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        pub fn path(&self, file: &str) -> String {
            self.0.join(file).to_string_lossy().into_owned()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
