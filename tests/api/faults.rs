//! Hostile and unlucky clients: hundreds of idle and byte-at-a-time connections, slow and
//! never-ending bodies, every transport limit (414, 431, 413, 400 framing, deep JSON),
//! SIGTERM under load with nothing acknowledged lost, and two servers on one database.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

/// The longest one stalled read may hold a worker (server.rs).
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// A normal request must never wait longer than this, whatever other clients do.
const NORMAL_LATENCY: Duration = Duration::from_secs(2);

// A client that reports failures instead of panicking, for traffic that may legitimately
// fail (load during shutdown) or whose failure is what the test measures.

/// One request of `normal_traffic`: when it started, how long it took, how it ended.
type Logged = (Duration, Duration, io::Result<Response>);

/// Writes `raw` on a new connection and reads one response, waiting at most `patience`
/// for any one read.
fn exchange(addr: SocketAddr, raw: &[u8], patience: Duration) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, patience)?;
    stream.set_read_timeout(Some(patience))?;
    stream.set_write_timeout(Some(patience))?;
    stream.write_all(raw)?;
    try_read_response(&mut BufReader::new(stream))
}

/// `exchange`, timed.
fn timed_exchange(
    addr: SocketAddr,
    raw: &[u8],
    patience: Duration,
) -> (Duration, io::Result<Response>) {
    let started = Instant::now();
    let r = exchange(addr, raw, patience);
    (started.elapsed(), r)
}

/// Reads one response like `read_response`, but returns I/O trouble as an error.
fn try_read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a status line",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed inside the headers".into()));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(Ok(0), |(_, v)| v.parse::<usize>())
        .map_err(|e| bad(format!("bad Content-Length: {e}")))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A one-line account of an outcome, for failure messages.
fn outcome(r: &io::Result<Response>) -> String {
    match r {
        Ok(r) => format!("{} {}", r.status, r.text()),
        Err(e) => format!("error: {e}"),
    }
}

/// Asserts an error answer: the status, JSON with a non-empty `detail`, a request id.
fn assert_json_error(r: &Response, status: u16, context: &str) {
    assert_eq!(r.status, status, "{context}: {}", r.text());
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json"),
        "{context}: Content-Type"
    );
    assert!(
        r.header("X-Request-Id").is_some_and(|id| !id.is_empty()),
        "{context}: no X-Request-Id"
    );
    assert!(!r.detail().trim().is_empty(), "{context}: empty detail");
}

/// Max, median and 99th percentile of some latencies.
fn summary(latencies: &[Duration]) -> String {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return "no requests".into();
    }
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    format!(
        "{} requests, p50 {:?}, p99 {:?}, max {:?}",
        sorted.len(),
        at(0.5),
        at(0.99),
        sorted[sorted.len() - 1]
    )
}

/// Normal traffic for `length`: alternately a create and a list by `sub`, one at a time.
/// Returns each request's start (since `epoch`), latency and outcome.
fn normal_traffic(
    addr: SocketAddr,
    sub: &str,
    epoch: Instant,
    length: Duration,
    patience: Duration,
) -> Vec<Logged> {
    let token = token(sub);
    let mut log = Vec::new();
    let until = Instant::now() + length;
    let mut n = 0;
    while Instant::now() < until {
        let raw = if n % 2 == 0 {
            let body = format!(r#"{{"title": "normal {n}"}}"#);
            request_bytes(
                "POST",
                "/api/tasks",
                Some(&token),
                Some(body.as_bytes()),
                &[],
            )
        } else {
            request_bytes("GET", "/api/tasks", Some(&token), None, &[])
        };
        let start = epoch.elapsed();
        let (latency, r) = timed_exchange(addr, &raw, patience);
        log.push((start, latency, r));
        n += 1;
    }
    log
}

/// Asserts that every request of `normal_traffic` got its 201 or 200 within `NORMAL_LATENCY`.
fn assert_all_served(log: &[Logged], context: &str) {
    let failed = |(_, latency, r): &&Logged| {
        *latency > NORMAL_LATENCY || !matches!(r, Ok(r) if r.status == 200 || r.status == 201)
    };
    let slow: Vec<String> = log
        .iter()
        .filter(failed)
        .map(|(start, latency, r)| format!("at {start:?} took {latency:?}: {}", outcome(r)))
        .collect();
    if !slow.is_empty() {
        let timeline: Vec<String> = log
            .iter()
            .map(|(start, latency, r)| {
                format!(
                    "at {start:?} took {latency:?}: {}",
                    outcome(r).chars().take(60).collect::<String>()
                )
            })
            .collect();
        eprintln!("{context}: timeline:\n{}", timeline.join("\n"));
    }
    let latencies: Vec<Duration> = log.iter().map(|(_, l, _)| *l).collect();
    assert!(
        slow.is_empty() && !log.is_empty(),
        "{context}: {} of {} normal requests failed or took over {NORMAL_LATENCY:?} ({}):\n{}",
        slow.len(),
        log.len(),
        summary(&latencies),
        slow.join("\n")
    );
}

/// Makes sure this process may open `wanted` more descriptors, raising the soft limit
/// toward the hard one if needed; returns how many connections a test may open.
fn descriptors_for(wanted: usize) -> usize {
    let limit = || -> Option<(u64, u64)> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let mut numbers = line.split_whitespace().skip(3);
        let soft = numbers.next()?.parse().unwrap_or(u64::MAX);
        let hard = numbers.next()?.parse().unwrap_or(u64::MAX);
        Some((soft, hard))
    };
    // Each connection costs a descriptor here and one in the server, which runs in this
    // process; other tests run alongside.
    let need = (wanted * 2 + 512) as u64;
    let Some((soft, hard)) = limit() else {
        return wanted;
    };
    if soft < need {
        let _ = Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={}:{hard}", need.min(hard)))
            .status();
    }
    let soft = limit().map_or(soft, |(s, _)| s);
    if soft >= need {
        wanted
    } else {
        let fits = (soft.saturating_sub(512) / 2) as usize;
        eprintln!("open-file limit {soft}: using {fits} connections instead of {wanted}");
        fits
    }
}

// Slow and idle clients.

#[test]
fn idle_and_byte_at_a_time_connections_do_not_slow_normal_requests() {
    // Arrange: half the connections say nothing, half send a request head one byte every
    // 200 ms (a head long enough to last the whole test).
    let app = TestApp::spawn(Engine::Sqlite);
    let count = descriptors_for(500);
    let mut idle: Vec<TcpStream> = (0..count / 2)
        .map(|_| TcpStream::connect(app.addr).expect("connect an idle client"))
        .collect();
    let trickling: Vec<TcpStream> = (0..count - count / 2)
        .map(|_| TcpStream::connect(app.addr).expect("connect a slow client"))
        .collect();
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(200)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut trickling = trickling;
            for byte in head.bytes() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for s in &mut trickling {
                    let _ = s.write_all(&[byte]);
                }
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    thread::sleep(Duration::from_millis(300));

    // Act: normal traffic for five seconds, from two clients at once.
    let epoch = Instant::now();
    let addr = app.addr;
    let clients: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|sub| {
            thread::spawn(move || {
                normal_traffic(addr, sub, epoch, Duration::from_secs(5), SOCKET_TIMEOUT)
            })
        })
        .collect();
    let log: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    // Assert
    let latencies: Vec<Duration> = log.iter().map(|(_, l, _)| *l).collect();
    eprintln!(
        "with {} idle and {} byte-at-a-time connections: {}",
        count / 2,
        count - count / 2,
        summary(&latencies)
    );
    assert_all_served(&log, "beside idle and slow connections");
    // The idle connections were really held open all along: one still works.
    let held = &mut idle[0];
    held.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    held.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = try_read_response(&mut BufReader::new(held.try_clone().unwrap()))
        .expect("an idle connection of 6 s is still served");
    assert_eq!(r.status, 200);
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
}

/// A POST whose 5,000-byte body arrives one byte every 250 ms (20 minutes in all).
struct SlowBody {
    stream: TcpStream,
    /// When the server answered or closed, since the head was sent; `None` while open.
    cut: Arc<Mutex<Option<(Duration, String)>>>,
}

impl SlowBody {
    fn start(addr: SocketAddr, epoch: Instant) -> SlowBody {
        let mut stream = TcpStream::connect(addr).expect("connect a slow body");
        let head = format!(
            "POST /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{",
            token("slowpoke")
        );
        stream.write_all(head.as_bytes()).unwrap();
        let cut = Arc::new(Mutex::new(None));
        let mut reader = stream.try_clone().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let seen = cut.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            let what = match reader.read(&mut buf) {
                Ok(0) => "closed without an answer".to_string(),
                Ok(n) => String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                Err(e) => format!("error: {e}"),
            };
            *seen.lock().unwrap() = Some((epoch.elapsed(), what));
        });
        SlowBody { stream, cut }
    }

    fn is_open(&self) -> bool {
        self.cut.lock().unwrap().is_none()
    }
}

#[test]
fn slow_body_senders_are_cut_off_and_do_not_starve_other_requests() {
    // Arrange: more slow bodies than the server has workers (8 in tests).
    let app = TestApp::spawn(Engine::Sqlite);
    assert_eq!(app.config.workers, 8);
    let epoch = Instant::now();
    let mut slow: Vec<SlowBody> = (0..10).map(|_| SlowBody::start(app.addr, epoch)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Trickle for at most 16 s, so that the test ends even if nothing cuts them off.
    let trickler = {
        let stop = stop.clone();
        let mut streams: Vec<TcpStream> =
            slow.iter().map(|s| s.stream.try_clone().unwrap()).collect();
        thread::spawn(move || {
            let until = epoch + Duration::from_secs(16);
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                for s in &mut streams {
                    let _ = s.write_all(b" ");
                }
                thread::sleep(Duration::from_millis(250));
            }
            for s in &streams {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        })
    };
    thread::sleep(Duration::from_millis(500));

    // Act: normal requests throughout the window in which the slow ones should be cut.
    let log = normal_traffic(
        app.addr,
        "alice",
        epoch,
        SOCKET_TIMEOUT + Duration::from_secs(2),
        Duration::from_secs(4),
    );
    let deadline = epoch + SOCKET_TIMEOUT + Duration::from_secs(3);
    while Instant::now() < deadline && slow.iter().any(SlowBody::is_open) {
        thread::sleep(Duration::from_millis(100));
    }
    let cuts: Vec<String> = slow
        .iter()
        .map(|s| match &*s.cut.lock().unwrap() {
            Some((at, what)) => format!("cut at {at:?}: {what}"),
            None => "still open".to_string(),
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    slow.clear();

    // Assert
    let latencies: Vec<Duration> = log.iter().map(|(_, l, _)| *l).collect();
    eprintln!(
        "beside 10 slow bodies: {}; slow bodies: {cuts:?}",
        summary(&latencies)
    );
    assert_all_served(
        &log,
        &format!("beside 10 bodies trickling a byte every 250 ms (slow bodies: {cuts:?})"),
    );
    assert!(
        cuts.iter().all(|c| c.starts_with("cut")),
        "a body trickling one byte every 250 ms held its connection (and a worker) past \
         {SOCKET_TIMEOUT:?} + 3 s: {cuts:#?}"
    );
    // The server is whole again.
    assert_eq!(app.anonymous().get("/health").status, 200);
}

#[test]
fn huge_declared_bodies_are_refused_at_once_and_do_not_pin_workers() {
    // Arrange: more clients than workers declare 100 GB and then send nothing, keeping
    // their connections open as an upload that is still starting would.
    let app = TestApp::spawn(Engine::Sqlite);
    let head = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n",
        token("alice")
    );
    let epoch = Instant::now();

    // Act
    let refused: Vec<_> = (0..10)
        .map(|_| {
            let head = head.clone();
            let addr = app.addr;
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(15)))
                    .unwrap();
                stream.write_all(head.as_bytes()).unwrap();
                let r = try_read_response(&mut BufReader::new(stream.try_clone().unwrap()));
                let answered = epoch.elapsed();
                // Hold the connection a while after the answer, saying nothing.
                thread::sleep(SOCKET_TIMEOUT + Duration::from_secs(1));
                drop(stream);
                (answered, r)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let log = normal_traffic(
        app.addr,
        "bob",
        epoch,
        Duration::from_secs(3),
        Duration::from_secs(12),
    );
    let refused: Vec<(Duration, io::Result<Response>)> =
        refused.into_iter().map(|t| t.join().unwrap()).collect();

    // Assert
    let late: Vec<String> = refused
        .iter()
        .filter(|(at, r)| *at > NORMAL_LATENCY || !matches!(r, Ok(r) if r.status == 413))
        .map(|(at, r)| format!("at {at:?}: {}", outcome(r)))
        .collect();
    let latencies: Vec<Duration> = log.iter().map(|(_, l, _)| *l).collect();
    eprintln!(
        "beside 10 silent 100 GB uploads: {}; 413s at {:?}",
        summary(&latencies),
        refused.iter().map(|(at, _)| *at).collect::<Vec<_>>()
    );
    assert!(
        late.is_empty(),
        "every 100 GB declaration must get its 413 within {NORMAL_LATENCY:?}: {late:#?}"
    );
    for (_, r) in &refused {
        assert_json_error(r.as_ref().unwrap(), 413, "Content-Length 100000000000");
    }
    assert_all_served(
        &log,
        "beside 10 connections that declared 100 GB and went quiet",
    );
}

// Transport limits.

/// Sends raw bytes and expects an answer within 5 s (the limits must not wait for more).
fn answer(app: &TestApp, raw: &[u8], context: &str) -> Response {
    let (took, r) = timed_exchange(app.addr, raw, Duration::from_secs(5));
    let r = r.unwrap_or_else(|e| panic!("{context}: no answer ({e}) after {took:?}"));
    assert!(took < Duration::from_secs(5), "{context}: took {took:?}");
    r
}

/// A POST /api/tasks head by alice with extra header lines, without the blank line.
fn post_head(extra: &str) -> String {
    format!(
        "POST /api/tasks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n{extra}",
        token("alice")
    )
}

#[test]
fn the_request_line_is_limited_to_8_kib() {
    let app = TestApp::spawn(Engine::Sqlite);
    // `GET <path> HTTP/1.1` of exactly `len` bytes; /health ignores its query string.
    let line = |len: usize| {
        let frame = "GET /health?p= HTTP/1.1".len();
        format!("GET /health?p={} HTTP/1.1", "a".repeat(len - frame))
    };
    for (len, want) in [
        (8 * 1024 - 1, 200),
        (8 * 1024, 200),
        (8 * 1024 + 1, 414),
        (64 * 1024, 414),
    ] {
        let raw = format!("{}\r\nHost: x\r\nConnection: close\r\n\r\n", line(len));
        let context = format!("a request line of {len} bytes");
        let r = answer(&app, raw.as_bytes(), &context);
        if want == 200 {
            assert_eq!(r.status, 200, "{context}: {}", r.text());
        } else {
            assert_json_error(&r, want, &context);
        }
    }
    assert_eq!(app.anonymous().get("/health").status, 200);
}

#[test]
fn headers_are_limited_to_16_kib_and_100_lines() {
    let app = TestApp::spawn(Engine::Sqlite);
    let get = |extra: &str| {
        format!("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").into_bytes()
    };
    // Host and Connection are two of the lines.
    let lines = |n: usize| {
        (0..n)
            .map(|i| format!("X-H{i}: {i}\r\n"))
            .collect::<String>()
    };
    let cases: Vec<(&str, String, u16)> = vec![
        ("100 header lines", lines(98), 200),
        ("101 header lines", lines(99), 431),
        ("10,000 header lines", lines(9_998), 431),
        (
            "one header of 17 KiB",
            format!("X-Big: {}\r\n", "a".repeat(17 * 1024)),
            431,
        ),
        (
            "twenty headers of 1 KiB",
            (0..20)
                .map(|i| format!("X-H{i}: {}\r\n", "a".repeat(1024)))
                .collect(),
            431,
        ),
        (
            "headers of 15 KiB in all",
            format!("X-Big: {}\r\n", "a".repeat(15 * 1024)),
            200,
        ),
        // Header bytes are counted without their CRLF: Host (7), Connection (17), X-Big.
        (
            "headers of exactly 16 KiB",
            format!("X-Big: {}\r\n", "a".repeat(16 * 1024 - 31)),
            200,
        ),
        (
            "headers of 16 KiB + 1",
            format!("X-Big: {}\r\n", "a".repeat(16 * 1024 - 30)),
            431,
        ),
    ];
    for (context, extra, want) in cases {
        let r = answer(&app, &get(&extra), context);
        if want == 200 {
            assert_eq!(r.status, 200, "{context}: {}", r.text());
        } else {
            assert_json_error(&r, want, context);
        }
    }
    assert_eq!(app.anonymous().get("/health").status, 200);
}

#[test]
fn a_token_over_8_kib_is_401_before_any_parsing() {
    let app = TestApp::spawn(Engine::Sqlite);
    // auth.rs covers a signed token over 8 KiB; here the bytes are not even a JWT.
    for (why, token) in [
        ("8 KiB + 1 of garbage", "a".repeat(8 * 1024 + 1)),
        ("12 KiB of dots", ".".repeat(12 * 1024)),
        (
            "a valid token padded with 9 KiB of spaces",
            format!("{}{}", token("alice"), " ".repeat(9 * 1024)),
        ),
    ] {
        let r = app.with_token(&token).get("/api/tasks");
        if why.starts_with("a valid token") {
            // Surrounding white space is trimmed before the length is checked.
            assert_eq!(r.status, 200, "{why}: {}", r.text());
            continue;
        }
        assert_json_error(&r, 401, why);
        assert!(r.header("WWW-Authenticate").is_some(), "{why}");
    }
}

#[test]
fn deeply_nested_json_is_400_and_the_server_lives_on() {
    let app = TestApp::spawn(Engine::Sqlite);
    let alice = app.user("alice");
    let depth = 10_000;
    let cases = [
        (
            "10,000 nested arrays",
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        ),
        ("10,000 unclosed arrays", "[".repeat(depth)),
        (
            "10,000 nested objects",
            format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)),
        ),
        (
            "a title beside 10,000 nested arrays",
            format!(
                r#"{{"title":"x","x":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        ),
    ];
    let task = app.create(&alice, r#"{"title": "target"}"#);
    for (context, body) in &cases {
        let r = alice.post("/api/tasks", body);
        assert_json_error(&r, 400, &format!("POST {context}"));
        let r = alice.put(&format!("/api/tasks/{}", task["id"]), body);
        assert_json_error(&r, 400, &format!("PUT {context}"));
        assert_eq!(
            app.anonymous().get("/health").status,
            200,
            "after {context}"
        );
    }
    assert_eq!(alice.get("/api/tasks").json().as_array().unwrap().len(), 1);
}

#[test]
fn body_framing_that_is_ambiguous_or_broken_is_400() {
    let app = TestApp::spawn(Engine::Sqlite);
    let body = r#"{"title": "framed"}"#;
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let cases: Vec<(&str, String)> = vec![
        (
            "Content-Length with Transfer-Encoding",
            format!(
                "{}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}",
                post_head(""),
                chunked.len()
            ),
        ),
        (
            "Transfer-Encoding then Content-Length",
            format!(
                "{}Transfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{chunked}",
                post_head(""),
                chunked.len()
            ),
        ),
        (
            "two different Content-Lengths",
            format!(
                "{}Content-Length: {}\r\nContent-Length: 5\r\n\r\n{body}",
                post_head(""),
                body.len()
            ),
        ),
        (
            "Transfer-Encoding gzip",
            format!("{}Transfer-Encoding: gzip\r\n\r\n{chunked}", post_head("")),
        ),
        (
            "Transfer-Encoding gzip, chunked",
            format!(
                "{}Transfer-Encoding: gzip, chunked\r\n\r\n{chunked}",
                post_head("")
            ),
        ),
        (
            "Content-Length abc",
            format!("{}Content-Length: abc\r\n\r\n{body}", post_head("")),
        ),
        (
            "Content-Length -1",
            format!("{}Content-Length: -1\r\n\r\n{body}", post_head("")),
        ),
        (
            "Content-Length +19",
            format!("{}Content-Length: +19\r\n\r\n{body}", post_head("")),
        ),
        (
            "Content-Length 1e3",
            format!("{}Content-Length: 1e3\r\n\r\n{body}", post_head("")),
        ),
        (
            "Content-Length beyond 64 bits",
            format!(
                "{}Content-Length: 99999999999999999999999\r\n\r\n{body}",
                post_head("")
            ),
        ),
        (
            "Content-Length with a byte outside ASCII",
            format!(
                "{}Content-Length: {}\u{e9}\r\n\r\n{body}",
                post_head(""),
                body.len()
            ),
        ),
        (
            "Transfer-Encoding with a byte outside ASCII",
            format!(
                "{}Transfer-Encoding: chunked\u{e9}\r\n\r\n{chunked}",
                post_head("")
            ),
        ),
        (
            "a chunk size that is not hex",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\nzz\r\n{body}\r\n0\r\n\r\n",
                post_head("")
            ),
        ),
        // Chunk-size lines off RFC 9112 §7.1's grammar (each was taken as a size before).
        (
            "a chunk size with a sign",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n+{:x}\r\n{body}\r\n0\r\n\r\n",
                post_head(""),
                body.len()
            ),
        ),
        (
            "a chunk size between spaces",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n {:x} \r\n{body}\r\n0\r\n\r\n",
                post_head(""),
                body.len()
            ),
        ),
        (
            // A parser that ends the line at the bare line feed reads other chunks.
            "a bare line feed in a chunk extension",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n{:x};a\nb\r\n{body}\r\n0\r\n\r\n",
                post_head(""),
                body.len()
            ),
        ),
        (
            "a chunk-size line of 5,000 bytes",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n{}{:x}\r\n{body}\r\n0\r\n\r\n",
                post_head(""),
                "0".repeat(5000),
                body.len()
            ),
        ),
        (
            "a trailer line that is not a field",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\nnot a field\r\n\r\n",
                post_head(""),
                body.len()
            ),
        ),
        (
            // RFC 9112 §6.1: faulty framing, whatever it says.
            "Transfer-Encoding in an HTTP/1.0 request",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n{chunked}",
                post_head("").replacen("HTTP/1.1", "HTTP/1.0", 1)
            ),
        ),
    ];
    let alice = app.user("alice");
    for (context, raw) in &cases {
        let r = answer(&app, raw.as_bytes(), context);
        assert_json_error(&r, 400, context);
    }
    assert_eq!(
        alice.get("/api/tasks").json(),
        Value::Array(vec![]),
        "a refused request created a task"
    );
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_are_read() {
    let app = TestApp::spawn(Engine::Sqlite);
    let alice = app.user("alice");
    let (a, b) = (r#"{"title": "#, r#""chunked"}"#);
    let raw = format!(
        "{}Transfer-Encoding: chunked\r\n\r\n\
         {:x};name=value ; q=\"x \\\" y\"\r\n{a}\r\n00{:x}\r\n{b}\r\n\
         0\r\nX-Checksum: abc\r\nX-Other:\r\n\r\n",
        post_head(""),
        a.len(),
        b.len()
    );
    let r = answer(&app, raw.as_bytes(), "extensions and trailers");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["title"], "chunked");
    assert_eq!(alice.get("/api/tasks").json().as_array().unwrap().len(), 1);
}

/// One connection sending `0` for ever as a chunk size grew the server by 40 MB/s (the
/// line was collected without a limit); it is refused at 4 KiB, and the server's memory
/// stays where it was.
#[test]
fn an_endless_chunk_size_line_is_refused_early() {
    let app = TestApp::spawn(Engine::Sqlite);
    let mut stream = sent(
        app.addr,
        format!("{}Transfer-Encoding: chunked\r\n\r\n", post_head("")).as_bytes(),
    );
    // Written until the server stops reading (it closes after its 400), at most 8 MB.
    let zeros = vec![b'0'; 64 * 1024];
    let mut sent = 0;
    while sent < 8 << 20 && stream.write_all(&zeros).is_ok() {
        sent += zeros.len();
    }
    assert!(
        sent < 8 << 20,
        "the server read 8 MB of one chunk-size line"
    );
    let r = try_read_response(&mut BufReader::new(stream)).expect("an answer");
    assert_json_error(&r, 400, "an endless chunk-size line");
}

/// A chunk extension trickled a byte at a time was read until its line ended, past the
/// 10 s body deadline (1,024 such connections held every connection slot). Now every byte
/// counts against the deadline: 408 once it has passed.
#[test]
fn a_trickled_chunk_extension_gets_408_at_the_body_deadline() {
    let app = TestApp::spawn(Engine::Sqlite);
    let mut stream = TcpStream::connect(app.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(format!("{}Transfer-Encoding: chunked\r\n\r\nf;", post_head("")).as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let answer = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no answer after 20 s"
        );
        if stream.write_all(b"a").is_err() {
            break try_read_response(&mut reader);
        }
        match reader.fill_buf() {
            Ok([]) => panic!("closed with no answer after {:?}", started.elapsed()),
            Ok(_) => break try_read_response(&mut reader),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
    };
    let took = started.elapsed();
    let r = answer.expect("an answer");
    assert_json_error(&r, 408, "a trickled chunk extension");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_millis(11_500),
        "answered after {took:?}"
    );
}

/// A byte sent just before the 10 s deadline of a request's headers or body kept the
/// request alive for up to 10 s more: the deadline was only checked when a read returned,
/// and a read waited up to the socket's 10 s timeout. Now a read waits at most until the
/// deadline: 408 at 10 s, in each of the three places a request is read.
#[test]
fn a_byte_just_before_the_deadline_does_not_extend_it() {
    let app = TestApp::spawn(Engine::Sqlite);
    let heads = [
        (
            "headers",
            "GET /health HTTP/1.1\r\nHost: x\r\n".to_string(),
            "X",
        ),
        (
            "a Content-Length body",
            format!("{}Content-Length: 20\r\n\r\n{{", post_head("")),
            "\"",
        ),
        (
            "a chunked body",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n14\r\n{{",
                post_head("")
            ),
            "\"",
        ),
    ];
    let probes: Vec<_> = heads
        .into_iter()
        .map(|(what, head, late)| {
            let addr = app.addr;
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let started = Instant::now();
                stream.write_all(head.as_bytes()).unwrap();
                thread::sleep(Duration::from_millis(9_300));
                stream.write_all(late.as_bytes()).unwrap();
                let r = try_read_response(&mut BufReader::new(stream));
                (what, started.elapsed(), r)
            })
        })
        .collect();
    for probe in probes {
        let (what, took, r) = probe.join().unwrap();
        let r = r.unwrap_or_else(|e| panic!("{what}: no answer after {took:?} ({e})"));
        assert_json_error(&r, 408, what);
        assert!(
            took >= Duration::from_millis(9_900) && took < Duration::from_millis(11_500),
            "{what}: 408 after {took:?}, not at the 10 s deadline"
        );
    }
}

/// `Connection: upgrade` handed the rest of the connection over as the body: the request
/// waited for the 10 s read timeout and got a 400 (an h2c upgrade from curl --http2, or any
/// `Connection` value containing "upgrade"). Nothing here takes an upgrade; it is ignored.
#[test]
fn an_upgrade_request_is_served_as_a_plain_one() {
    let app = TestApp::spawn(Engine::Sqlite);
    let alice = app.user("alice");
    let (took, r) = timed_exchange(
        app.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        Duration::from_secs(5),
    );
    let r = r.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let body = r#"{"title": "upgraded"}"#;
    let raw = format!(
        "{}Connection: upgrade\r\nUpgrade: websocket\r\nContent-Length: {}\r\n\r\n{body}",
        post_head(""),
        body.len()
    );
    let (took, r) = timed_exchange(app.addr, raw.as_bytes(), Duration::from_secs(5));
    let r = r.expect("an answer");
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(alice.get("/api/tasks").json()[0]["title"], "upgraded");
}

/// RFC 9110 §10.1.1 and §15.2: an HTTP/1.0 client's `Expect: 100-continue` is ignored, and
/// it is never sent a 1xx (it would read the 100 as the final answer).
#[test]
fn an_http_1_0_client_gets_no_100_continue() {
    let app = TestApp::spawn(Engine::Sqlite);
    let body = r#"{"title": "old client"}"#;
    let raw = format!(
        "{}Expect: 100-continue\r\nContent-Length: {}\r\n\r\n{body}",
        post_head("").replacen("HTTP/1.1", "HTTP/1.0", 1),
        body.len()
    );
    let r = answer(&app, raw.as_bytes(), "HTTP/1.0 with Expect");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = answer(
        &app,
        b"GET /health HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
        "HTTP/1.0 GET with Expect",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn oversized_bodies_are_413_however_they_are_framed() {
    let app = TestApp::spawn(Engine::Sqlite);
    let alice = app.user("alice");
    // validation.rs covers 65,537 bytes in one chunk and a 10 MB declaration.
    let kib = format!(r#"{{"title":"x","pad":"{}"}}"#, "a".repeat(1000));
    let many_chunks: String = (0..70)
        .map(|_| format!("{:x}\r\n{kib}\r\n", kib.len()))
        .collect::<String>()
        + "0\r\n\r\n";
    let one_huge_chunk = format!("10000000000\r\n{}", "a".repeat(70 * 1024));
    let cases: Vec<(&str, String)> = vec![
        (
            "70 chunks of 1 KiB",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n{many_chunks}",
                post_head("")
            ),
        ),
        (
            "one chunk declaring 64 GiB, 70 KiB of it sent",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\n{one_huge_chunk}",
                post_head("")
            ),
        ),
        (
            "Content-Length 100000000000 without a body",
            format!("{}Content-Length: 100000000000\r\n\r\n", post_head("")),
        ),
        (
            "OPTIONS with 65,537 bytes",
            format!(
                "OPTIONS /api/tasks HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:3000\r\n\
                 Access-Control-Request-Method: POST\r\nContent-Length: 65537\r\n\
                 Connection: close\r\n\r\n{}",
                "a".repeat(65_537)
            ),
        ),
        (
            "Content-Length 18446744073709551615 without a body",
            format!(
                "{}Content-Length: 18446744073709551615\r\n\r\n",
                post_head("")
            ),
        ),
    ];
    for (context, raw) in &cases {
        let r = answer(&app, raw.as_bytes(), context);
        assert_json_error(&r, 413, context);
        assert_eq!(
            app.anonymous().get("/health").status,
            200,
            "after {context}"
        );
    }
    assert_eq!(alice.get("/api/tasks").json(), Value::Array(vec![]));
}

/// What follows the answer on the same connection: the second request's status, or how
/// the connection ended.
fn after_answer(reader: &mut BufReader<TcpStream>) -> String {
    let raw = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    if let Err(e) = reader.get_mut().write_all(raw) {
        return format!("closed ({e})");
    }
    match try_read_response(reader) {
        Ok(r) => r.status.to_string(),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => "closed".to_string(),
        Err(e) => format!("closed ({e})"),
    }
}

#[test]
fn an_answer_says_connection_close_when_its_connection_ends() {
    let app = TestApp::spawn(Engine::Sqlite);
    let bearer = format!("Authorization: Bearer {}\r\n", token("alice"));
    // API.md, Errors: bodies up to 65,536 bytes; one byte more is declared and never sent.
    let over_limit = format!("{}Content-Length: 65537\r\n\r\n", post_head(""))
        .replace("Connection: close\r\n", "");
    // (request, whether the answer must say `Connection: close` and the server then close)
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "HTTP/1.1, Connection: close",
            format!("GET /api/tasks HTTP/1.1\r\nHost: x\r\n{bearer}Connection: close\r\n\r\n"),
            true,
        ),
        (
            "HTTP/1.1, Connection: Keep-Alive, Close",
            format!(
                "GET /api/tasks HTTP/1.1\r\nHost: x\r\n{bearer}Connection: Keep-Alive, Close\r\n\r\n"
            ),
            true,
        ),
        (
            "HTTP/1.0 without Connection",
            format!("GET /api/tasks HTTP/1.0\r\nHost: x\r\n{bearer}\r\n"),
            true,
        ),
        (
            "HTTP/1.1 without Connection",
            format!("GET /api/tasks HTTP/1.1\r\nHost: x\r\n{bearer}\r\n"),
            false,
        ),
        (
            "HTTP/1.0, Connection: keep-alive",
            format!("GET /api/tasks HTTP/1.0\r\nHost: x\r\n{bearer}Connection: keep-alive\r\n\r\n"),
            false,
        ),
        (
            "HTTP/1.1 keep-alive, an unauthenticated request",
            "GET /api/tasks HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            false,
        ),
        (
            "HTTP/1.1 keep-alive, a body over the limit, left unread",
            over_limit,
            true,
        ),
    ];
    for (context, raw, closes) in &cases {
        let stream = sent(app.addr, raw.as_bytes());
        let mut reader = BufReader::new(stream);
        let r = try_read_response(&mut reader).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert!(
            matches!(r.status, 200 | 401 | 413),
            "{context}: status {}",
            r.status
        );
        let said = r.header("Connection").map(str::to_ascii_lowercase);
        let next = after_answer(&mut reader);
        if *closes {
            assert_eq!(said.as_deref(), Some("close"), "{context}");
            assert!(next.starts_with("closed"), "{context}: then {next}");
        } else {
            // An HTTP/1.0 client is told that the connection stays (RFC 9112 §9.3).
            let kept = raw.contains(" HTTP/1.0\r\n").then_some("keep-alive");
            assert_eq!(said.as_deref(), kept, "{context}");
            assert_eq!(next, "200", "{context}: the connection is reused");
        }
    }
}

#[test]
fn transport_errors_are_answered_at_once_say_close_and_close() {
    let app = TestApp::spawn(Engine::Sqlite);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a request line over 8 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000)).into_bytes(),
            414,
        ),
        (
            "120 header lines",
            format!(
                "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
                "X-A: b\r\n".repeat(120)
            )
            .into_bytes(),
            431,
        ),
        (
            "Content-Length and Transfer-Encoding both",
            b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "HTTP/2.0",
            b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(),
            505,
        ),
        (
            "an HTTP/2 client's preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            505,
        ),
        (
            "an expectation other than 100-continue",
            b"GET /health HTTP/1.1\r\nHost: x\r\nExpect: coffee\r\n\r\n".to_vec(),
            417,
        ),
        (
            "a request line with a byte outside ASCII",
            b"GET /h\xc3\xa9alth HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            // It waited for the 10 s header deadline, then got a 408.
            "lines ended by a bare line feed",
            b"GET /health HTTP/1.1\nHost: x\n\n".to_vec(),
            400,
        ),
        (
            // It too waited 10 s for a 408.
            "a bare carriage return",
            b"GET /health HTTP/1.1\rHost: x\r\r".to_vec(),
            400,
        ),
        (
            "a bare line feed among the headers",
            b"GET /health HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a version that is not one",
            b"GET /health HTTP/1.x\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (context, raw, status) in &cases {
        let started = Instant::now();
        let stream = sent(app.addr, raw);
        let mut reader = BufReader::new(stream);
        let r = try_read_response(&mut reader).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{context}: answered after {:?}",
            started.elapsed()
        );
        assert_json_error(&r, *status, context);
        assert_eq!(r.header("Connection"), Some("close"), "{context}");
        // Closed: end of stream, or a reset where the server left some of the request unread.
        let mut rest = Vec::new();
        let ended = reader.read_to_end(&mut rest);
        assert!(
            rest.is_empty()
                && match &ended {
                    Ok(_) => true,
                    Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
                },
            "{context}: after the answer: {ended:?}, {} more bytes",
            rest.len()
        );
    }
    assert_eq!(app.anonymous().get("/health").status, 200);
}

/// Request forms RFC 9112 asks a server to accept: a later HTTP/1 minor version (served as
/// 1.1; it was 400), an absolute-form target (it was 404), and an empty line before a
/// request line, as a client may send after a POST body (it was 400 and a closed connection).
#[test]
fn request_forms_rfc_9112_accepts_are_served() {
    let app = TestApp::spawn(Engine::Sqlite);
    let bearer = format!("Authorization: Bearer {}\r\n", token("alice"));
    for (context, raw) in [
        (
            "HTTP/1.2",
            "GET /health HTTP/1.2\r\nHost: x\r\n\r\n".to_string(),
        ),
        (
            "HTTP/1.9",
            "GET /health HTTP/1.9\r\nHost: x\r\n\r\n".to_string(),
        ),
        (
            "absolute-form",
            format!(
                "GET http://127.0.0.1:{}/health HTTP/1.1\r\nHost: x\r\n\r\n",
                app.addr.port()
            ),
        ),
    ] {
        let r = answer(&app, raw.as_bytes(), context);
        assert_eq!(r.status, 200, "{context}: {}", r.text());
    }
    // The query of an absolute-form target is kept.
    let alice = app.user("alice");
    app.create(&alice, r#"{"title": "done", "completed": true}"#);
    app.create(&alice, r#"{"title": "to do"}"#);
    let raw = format!(
        "GET HTTP://example.com/api/tasks?status=pending HTTP/1.1\r\nHost: x\r\n{bearer}\r\n"
    );
    let pending = answer(&app, raw.as_bytes(), "absolute-form with a query");
    assert_eq!(pending.status, 200, "{}", pending.text());
    let titles: Vec<_> = pending
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, ["to do"]);

    // A CRLF split between two reads is one line end.
    let mut stream = sent(app.addr, b"GET /health HTTP/1.1\r");
    std::thread::sleep(Duration::from_millis(100));
    stream
        .write_all(b"\nHost: x\r\nConnection: close\r")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(b"\n\r\n").unwrap();
    let split = try_read_response(&mut BufReader::new(stream)).unwrap();
    assert_eq!(split.status, 200, "{}", split.text());

    // A POST with a stray CRLF after its body, then `next`, on one connection.
    let body = r#"{"title": "then a CRLF"}"#;
    let addr = app.addr;
    let post_then = |next: &str| {
        let raw = format!(
            "POST /api/tasks HTTP/1.1\r\nHost: x\r\n{bearer}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}\r\n{next}",
            body.len()
        );
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        BufReader::new(stream)
    };

    // Then a GET: both served.
    let mut reader = post_then(&format!(
        "GET /api/tasks HTTP/1.1\r\nHost: x\r\n{bearer}Connection: close\r\n\r\n"
    ));
    let created = try_read_response(&mut reader).unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let listed = try_read_response(&mut reader).unwrap();
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json()[0]["title"], "then a CRLF");

    // Then nothing: the connection is idle, not a request under way. No 408 comes down it,
    // and a shutdown does not wait for it (it waited its 10 s).
    let mut reader = post_then("");
    assert_eq!(try_read_response(&mut reader).unwrap().status, 201);
    std::thread::sleep(Duration::from_millis(300));
    let mut app = app;
    let stopping = Instant::now();
    app.restart();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the restart waited {:?} for the quiet connection",
        stopping.elapsed()
    );
    let mut after = Vec::new();
    let _ = reader.read_to_end(&mut after);
    assert!(
        !String::from_utf8_lossy(&after).contains(" 408 "),
        "a 408 for no request: {}",
        String::from_utf8_lossy(&after)
    );
}

// SIGTERM under load.

/// One request of the load: when it started (since the signal, negative before it) and
/// how it ended.
struct Sent {
    at_ms: i64,
    result: io::Result<Response>,
}

/// A proxy may add a header whose value is UTF-8 or Latin-1 (RFC 9110 §5.5 obs-text): such
/// requests are served (they were answered with nothing at all), and a value the server
/// reads that holds such bytes is refused as invalid, never half-read.
#[test]
fn header_values_outside_ascii_are_served() {
    let app = TestApp::spawn(Engine::Sqlite);
    let alice = app.user("alice");
    app.create(&alice, r#"{"title": "from São Paulo"}"#);
    let token = alice.token.clone().unwrap();
    let mut stream = TcpStream::connect(app.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // One keep-alive connection throughout: each answer must leave it in step.
    for (context, extra, status) in [
        ("UTF-8", &b"X-City: S\xc3\xa3o Paulo\r\n"[..], 200),
        ("Latin-1", b"X-City: S\xe3o Paulo\r\n", 200),
        (
            "in a request id",
            b"X-Request-Id: \xc3\xbcn\xc3\xaf\r\n",
            200,
        ),
        ("in the token", b"Authorization: Bearer \xc3\xa9\r\n", 401),
    ] {
        let auth = if status == 200 {
            format!("Authorization: Bearer {token}\r\n")
        } else {
            String::new()
        };
        let mut raw = format!("GET /api/tasks HTTP/1.1\r\nHost: x\r\n{auth}").into_bytes();
        raw.extend_from_slice(extra);
        raw.extend_from_slice(b"\r\n");
        stream.write_all(&raw).unwrap();
        let r = try_read_response(&mut reader).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(r.status, status, "{context}: {}", r.text());
        if status == 200 {
            assert_eq!(r.json()[0]["title"], "from São Paulo", "{context}");
        } else {
            assert_json_error(&r, 401, context);
            let challenge = r.header("WWW-Authenticate").unwrap_or_default();
            assert!(
                challenge.contains("invalid_token"),
                "{context}: {challenge}"
            );
        }
        let id = r.header("X-Request-Id").unwrap();
        assert!(
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{context}: a fresh id, not the one sent: {id:?}"
        );
    }
}

#[test]
fn sigterm_under_load_answers_what_it_accepts_and_loses_no_acknowledged_task() {
    // Arrange
    let db = TestDb::new(&Engine::Sqlite);
    let todo_api::config::Database::Sqlite(path) = db.database() else {
        unreachable!()
    };
    let mut p = Process::start(&[
        ("DATABASE_URL", &format!("sqlite:{path}")),
        ("BETTER_AUTH_SECRET", SECRET),
        ("WORKERS", "8"),
    ]);
    let addr = p.addr;
    let signalled: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let signalled = signalled.clone();
            thread::spawn(move || {
                let token = token("alice");
                let started = Instant::now();
                let mut sent = Vec::new();
                let mut refused = 0;
                for n in 0.. {
                    let body = format!(r#"{{"title": "load {i}-{n}"}}"#);
                    let raw = request_bytes(
                        "POST",
                        "/api/tasks",
                        Some(&token),
                        Some(body.as_bytes()),
                        &[],
                    );
                    let t = Instant::now();
                    let result = exchange(addr, &raw, Duration::from_secs(15));
                    let at_ms = match *signalled.lock().unwrap() {
                        Some(s) if t >= s => (t - s).as_millis() as i64,
                        Some(s) => -((s - t).as_millis() as i64),
                        None => -1,
                    };
                    let was_refused =
                        matches!(&result, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused);
                    sent.push(Sent { at_ms, result });
                    // Stop once the listener is gone for good, or after 25 s whatever happens.
                    refused = if was_refused { refused + 1 } else { 0 };
                    if refused >= 3 || started.elapsed() > Duration::from_secs(25) {
                        break;
                    }
                    if was_refused {
                        thread::sleep(Duration::from_millis(50));
                    }
                }
                sent
            })
        })
        .collect();

    // Act
    thread::sleep(Duration::from_millis(1500));
    *signalled.lock().unwrap() = Some(Instant::now());
    p.signal("TERM");
    let exit = p.wait(Duration::from_secs(15));
    let sent: Vec<Sent> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();

    // Assert
    let (status, took) = exit.expect("the process did not exit within 15 s of SIGTERM");
    let created: Vec<&Sent> = sent
        .iter()
        .filter(|s| matches!(&s.result, Ok(r) if r.status == 201))
        .collect();
    let after = created.iter().filter(|s| s.at_ms >= 0).count();
    let last_after = created.iter().map(|s| s.at_ms).max().unwrap_or(0);
    let refused = sent
        .iter()
        .filter(|s| matches!(&s.result, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused))
        .count();
    let broken: Vec<String> = sent
        .iter()
        .filter(|s| matches!(&s.result, Err(e) if e.kind() != io::ErrorKind::ConnectionRefused))
        .map(|s| format!("at {} ms: {}", s.at_ms, outcome(&s.result)))
        .collect();
    eprintln!(
        "SIGTERM under load: exit {status:?} after {took:?}; {} requests, {} created ({after} \
         begun after the signal, the last {last_after} ms after it), {refused} refused \
         connections, other connection errors: {broken:?}",
        sent.len(),
        created.len()
    );
    let wrong: Vec<String> = sent
        .iter()
        .filter(|s| matches!(&s.result, Ok(r) if r.status != 201))
        .map(|s| format!("at {} ms: {:?}", s.at_ms, outcome(&s.result)))
        .collect();
    assert!(created.len() >= 4, "the load did not get going");
    // Every acknowledged task is stored: restart on the same file and look.
    let acknowledged: BTreeSet<i64> = created
        .iter()
        .map(|s| s.result.as_ref().unwrap().json()["id"].as_i64().unwrap())
        .collect();
    let app = TestApp::spawn_with(db, |_| {});
    let stored: BTreeSet<i64> = app
        .user("alice")
        .get("/api/tasks")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let lost: Vec<&i64> = acknowledged.difference(&stored).collect();
    eprintln!(
        "{} acknowledged, {} stored, {} lost",
        acknowledged.len(),
        stored.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged with 201 but not stored: {lost:?}"
    );
    assert!(status.success(), "exit status {status:?}");
    assert!(
        wrong.is_empty(),
        "an answered request got something other than its 201 (times since SIGTERM; \
         the process exited {took:?} after it): {wrong:#?}"
    );
}

// Two servers, one database.

/// Two servers on one database: `a` owns it, `b` borrows it.
fn two_instances(engine: Engine) -> (TestApp, TestApp) {
    let a = TestApp::spawn(engine);
    let database = a.config.database.clone();
    let b = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| c.database = database);
    (a, b)
}

fn two_instances_share_one_database(engine: Engine) {
    // Arrange
    let (a, b) = two_instances(engine);
    let servers = [a.addr, b.addr];
    let task = a.create(&a.user("alice"), r#"{"title": "shared"}"#);
    let id = task["id"].as_i64().unwrap();

    // Act: 60 toggles of one task, from 6 threads, alternating between the servers.
    let toggles: Vec<_> = (0..6)
        .map(|i| {
            thread::spawn(move || {
                (0..10)
                    .map(|n| {
                        let alice = Client {
                            addr: servers[(i + n) % 2],
                            token: Some(token("alice")),
                        };
                        alice.patch(&format!("/api/tasks/{id}/complete"), "").status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = toggles
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // 100 creates from 4 threads, alternating between the servers.
    let creates: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                (0..25)
                    .map(|n| {
                        let alice = Client {
                            addr: servers[(i + n) % 2],
                            token: Some(token("alice")),
                        };
                        let r = alice.post("/api/tasks", &format!(r#"{{"title": "c{i}-{n}"}}"#));
                        assert_eq!(r.status, 201, "{}", r.text());
                        r.json()["id"].as_i64().unwrap()
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    let created: BTreeSet<i64> = creates
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();

    // Assert
    assert!(statuses.iter().all(|&s| s == 200), "toggles: {statuses:?}");
    for app in [&a, &b] {
        let alice = app.user("alice");
        let r = alice.get(&format!("/api/tasks/{id}"));
        assert_eq!(
            r.json()["completed"],
            false,
            "60 toggles leave it as it was"
        );
        let list = alice.get("/api/tasks").json();
        let ids: BTreeSet<i64> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        assert_eq!(created.len(), 100, "ids are unique across both servers");
        assert_eq!(ids.len(), 101, "every create is kept, once");
        assert!(created.is_subset(&ids) && ids.contains(&id));
    }
    // Isolation holds across servers: bob on one and carol on the other see and touch
    // none of alice's tasks, nor she theirs.
    for (mine, other, sub) in [(&a, &b, "bob"), (&b, &a, "carol")] {
        let stranger = mine.user(sub);
        assert_eq!(stranger.get("/api/tasks").json(), Value::Array(vec![]));
        for (method, path) in [
            ("GET", format!("/api/tasks/{id}")),
            ("PATCH", format!("/api/tasks/{id}/complete")),
            ("DELETE", format!("/api/tasks/{id}")),
        ] {
            let r = stranger.send(method, &path, None, &[]);
            assert_eq!(r.status, 404, "{sub} {method} {path}: {}", r.text());
        }
        let theirs = mine.create(&stranger, r#"{"title": "not alice's"}"#);
        let r = other
            .user("alice")
            .get(&format!("/api/tasks/{}", theirs["id"]));
        assert_eq!(
            r.status, 404,
            "alice reads {sub}'s task through the other server"
        );
    }
    assert_eq!(
        b.user("alice").get(&format!("/api/tasks/{id}")).json()["completed"],
        false
    );
}

#[test]
fn two_instances_share_one_sqlite_file() {
    two_instances_share_one_database(Engine::Sqlite);
}

#[test]
fn two_instances_share_one_postgres_database() {
    if let Some(engine) = Engine::postgres() {
        two_instances_share_one_database(engine);
    }
}

// More clients than request slots.

/// Ten clients at once against two request slots (`WORKERS=2`): requests are answered on
/// their connection's thread while a slot is free and queued for a worker otherwise; every
/// one must be answered, once.
fn more_clients_than_slots(engine: Engine) {
    let app = TestApp::spawn_with(TestDb::new(&engine), |c| {
        c.workers = 2;
        c.pool_size = 2;
    });
    let clients: Vec<_> = (0..10)
        .map(|i| {
            let user = app.user(&format!("user-{i}"));
            thread::spawn(move || {
                let mut titles = BTreeSet::new();
                for n in 0..15 {
                    let title = format!("task {i}-{n}");
                    let r = user.post("/api/tasks", &format!(r#"{{"title": "{title}"}}"#));
                    assert_eq!(r.status, 201, "{title}: {}", r.text());
                    assert_eq!(r.json()["title"], title.as_str());
                    titles.insert(title);
                }
                let listed: BTreeSet<String> = user
                    .get("/api/tasks")
                    .json()
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["title"].as_str().unwrap().to_string())
                    .collect();
                assert_eq!(listed, titles, "user-{i} sees exactly its own 15 tasks");
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
}

mod more_clients_than_slots_are_all_answered {
    use super::*;

    #[test]
    fn sqlite() {
        more_clients_than_slots(Engine::Sqlite);
    }

    #[test]
    fn postgres() {
        if let Some(engine) = Engine::postgres() {
            more_clients_than_slots(engine);
        }
    }
}

#[test]
fn past_the_connection_cap_a_silent_connection_holds_up_nobody() {
    let app = TestApp::spawn(Engine::Sqlite);
    let cap = tiny_http::MAX_CONNECTIONS;
    assert!(
        descriptors_for(cap + 16) >= cap + 16,
        "not enough file descriptors for {cap} connections"
    );
    // The cap reached: each connection answered once, so each has its thread.
    let started = Instant::now();
    let held: Vec<BufReader<TcpStream>> = (0..cap)
        .map(|i| {
            let stream = sent(app.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut reader = BufReader::new(stream);
            let r = try_read_response(&mut reader).unwrap_or_else(|e| panic!("{i}: {e}"));
            assert_eq!(r.status, 200, "connection {i}");
            reader
        })
        .collect();
    // Past it: three connections that send nothing, one that sends a byte and stops (the
    // deadline of its request's headers waited up to 10 s for the rest, on the accept
    // thread), then one that asks.
    let opened = started.elapsed();
    let mut silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(app.addr).unwrap())
        .collect();
    let mut begun = TcpStream::connect(app.addr).unwrap();
    begun.write_all(b"G").unwrap();
    silent.push(begun);
    thread::sleep(Duration::from_millis(100));
    let (took, r) = timed_exchange(
        app.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    let r = r.unwrap_or_else(|e| panic!("no answer past the cap after {took:?}: {e}"));
    assert_json_error(&r, 503, "past the cap");
    assert_eq!(r.header("Retry-After"), Some("1"), "past the cap");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // Below the cap again: served.
    drop(silent);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = exchange(
            app.addr,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        if r.as_ref().is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served again: {}",
            outcome(&r)
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{cap} connections open after {opened:?}; past the cap answered in {took:?}; \
         served again after {:?}",
        started.elapsed()
    );
    // And nothing is left counted as under way: a shutdown does not wait for it.
    let stopping = Instant::now();
    drop(app);
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        stopping.elapsed()
    );
}

/// An answer tiny_http gives by itself, before a request is read whole (here 414 and 431),
/// carries a request id made as the server's own are, and that id is in the access log: it
/// was `conn-N`, counted from 1 in every process (so not unique), and logged nowhere.
#[test]
fn refusals_before_a_request_is_read_have_a_logged_request_id() {
    let dir = tempdir::TempDir::new("todo-early");
    let url = format!("sqlite:{}", dir.path("todo.db"));
    let p = Process::start(&[("DATABASE_URL", &url), ("BETTER_AUTH_SECRET", SECRET)]);
    let long_line = format!(
        "GET /health?p={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        "X-Filler: yes\r\n".repeat(200)
    );
    let mut ids = Vec::new();
    for (raw, status) in [(long_line, 414), (many_headers, 431)] {
        let r = raw_request(p.addr, raw.as_bytes());
        assert_eq!(r.status, status, "{}", r.text());
        let id = r.header("X-Request-Id").unwrap().to_string();
        assert!(!id.starts_with("conn-"), "{id}");
        assert!(
            id.split_once('-')
                .is_some_and(|(prefix, n)| prefix.len() == 8
                    && prefix.bytes().all(|b| b.is_ascii_hexdigit())
                    && n.bytes().all(|b| b.is_ascii_hexdigit())),
            "{id}"
        );
        ids.push((id, status));
    }
    // The log is written by its own thread: wait for the lines (at most 5 s).
    let mut log = String::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5)
        && !ids
            .iter()
            .all(|(id, status)| log.contains(&format!(" {status} id={id} ")))
    {
        std::thread::sleep(Duration::from_millis(20));
        for line in p.logged() {
            log.push_str(&line);
            log.push('\n');
        }
    }
    for (id, status) in ids {
        assert!(log.contains(&format!(" {status} id={id} ")), "{id}:\n{log}");
    }
}
