//! Tokens of Better Auth's JWT plugin: EdDSA, ES256 and RS256 keys from a JWKS served by
//! a small HTTP server of the test's own, picked by `kid`, with `iss`/`aud` checked, and
//! the refetch of an unknown `kid` rate-limited without refusing new keys or queueing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::helpers::*;

const BETTER_AUTH: &str = "http://localhost:3000";

/// Longer than the server's one second from the end of a JWKS fetch to the next, which
/// its `Retry-After: 1` tells a client to wait.
const PAST_THE_GAP: std::time::Duration = std::time::Duration::from_millis(1100);

/// A JWKS endpoint whose document the test can change, counting the fetches, and which
/// the test can take down (then it answers 503).
struct JwksServer {
    url: String,
    doc: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl JwksServer {
    fn start(keys: &[String]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/auth/jwks", listener.local_addr().unwrap());
        let doc = Arc::new(Mutex::new(String::new()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let server = JwksServer {
            url,
            doc: doc.clone(),
            fetches: fetches.clone(),
            down: down.clone(),
        };
        server.publish(keys);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = doc.lock().unwrap().clone();
                let mut out = &stream;
                if down.load(Ordering::SeqCst) {
                    let _ = write!(out, "HTTP/1.1 503 Service Unavailable\r\n\r\n");
                    continue;
                }
                // Chunked, as Node servers answer.
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                );
            }
        });
        server
    }

    fn publish(&self, keys: &[String]) {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::from_str(k).unwrap())
            .collect();
        *self.doc.lock().unwrap() = json!({ "keys": keys }).to_string();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

fn claims(sub: &str) -> JWTClaims<Value> {
    Claims::with_custom_claims(
        json!({"email": format!("{sub}@example.com"), "name": sub}),
        Duration::from_mins(15),
    )
    .with_subject(sub)
    .with_issuer(BETTER_AUTH)
    .with_audience(BETTER_AUTH)
}

fn app_for(jwks: &JwksServer, refetch: std::time::Duration) -> TestApp {
    TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| {
        c.jwks_url = jwks.url.clone();
        c.jwks_refetch = refetch;
    })
}

#[test]
fn eddsa_es256_and_rs256_tokens_from_the_jwks_are_accepted() {
    let ed = Ed25519KeyPair::generate().with_key_id("ed-1");
    let es = ES256KeyPair::generate().with_key_id("es-1");
    let rs = RS256KeyPair::generate(2048).unwrap().with_key_id("rs-1");
    let jwks = JwksServer::start(&[
        ed.public_key().to_jwk(),
        es.public_key().to_jwk(),
        rs.public_key().to_jwk(),
    ]);
    let app = app_for(&jwks, std::time::Duration::from_secs(30));

    let tokens = [
        ed.sign(claims("ba-user")).unwrap(),
        es.sign(claims("ba-user")).unwrap(),
        rs.sign(claims("ba-user")).unwrap(),
    ];
    let first = app.create(
        &app.with_token(&tokens[0]),
        r#"{"title": "signed by Better Auth"}"#,
    );
    for token in &tokens {
        let r = app
            .with_token(token)
            .get(&format!("/api/tasks/{}", first["id"]));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // HS256 tokens for the same user id reach the same tasks.
    assert_eq!(
        app.user("ba-user")
            .get(&format!("/api/tasks/{}", first["id"]))
            .status,
        200
    );
    assert_eq!(jwks.fetches(), 1, "the key set is cached");
}

#[test]
fn jwks_tokens_are_refused_when_anything_is_off() {
    let ed = Ed25519KeyPair::generate().with_key_id("ed-1");
    let jwks = JwksServer::start(&[ed.public_key().to_jwk()]);
    let app = app_for(&jwks, std::time::Duration::from_secs(30));
    let stranger = Ed25519KeyPair::generate().with_key_id("ed-1");
    let no_kid = Ed25519KeyPair::from_bytes(&ed.to_bytes()).unwrap();
    let cases = [
        (
            stranger.sign(claims("u")).unwrap(),
            "same kid, another instance's key",
        ),
        (no_kid.sign(claims("u")).unwrap(), "no kid"),
        (
            ed.sign(claims("u").with_issuer("http://evil.example"))
                .unwrap(),
            "wrong iss",
        ),
        (
            ed.sign(claims("u").with_audience("another-app")).unwrap(),
            "wrong aud",
        ),
        (
            ed.sign(
                Claims::with_custom_claims(json!({}), Duration::from_mins(15)).with_subject("u"),
            )
            .unwrap(),
            "no iss/aud",
        ),
        (
            ed.sign(
                Claims::with_custom_claims(json!({}), Duration::from_mins(15))
                    .with_issuer(BETTER_AUTH)
                    .with_audience(BETTER_AUTH),
            )
            .unwrap(),
            "no sub",
        ),
    ];
    for (token, why) in &cases {
        assert_invalid_token(&app, token, why);
    }
    // An HS256-signed token whose header claims the JWKS key (algorithm confusion).
    let good = ed.sign(claims("u")).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let header = r#"{"alg":"HS256","kid":"ed-1"}"#;
    let b64 = |b: &[u8]| Base64UrlSafeNoPadding::encode_to_string(b).unwrap();
    let input = format!("{}.{}", b64(header.as_bytes()), parts[1]);
    let tag =
        HS256Key::from_bytes(&ed.public_key().to_bytes()).authentication_tag(input.as_bytes());
    let confused = format!("{input}.{}", b64(&tag));
    assert_eq!(
        app.with_token(&confused).get("/api/tasks").status,
        401,
        "HS256 keyed with the public key"
    );
    assert_eq!(app.with_token(&good).get("/api/tasks").status, 200);
}

#[test]
fn a_flood_of_unknown_kids_fetches_at_most_once_a_second() {
    let ed = Ed25519KeyPair::generate().with_key_id("ed-1");
    let jwks = JwksServer::start(&[ed.public_key().to_jwk()]);
    let app = app_for(&jwks, std::time::Duration::from_secs(30));
    assert_eq!(
        app.with_token(&ed.sign(claims("u")).unwrap())
            .get("/api/tasks")
            .status,
        200
    );
    assert_eq!(jwks.fetches(), 1);
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for i in 0..8 {
            let app = &app;
            s.spawn(move || {
                for j in 0..10 {
                    let rogue = Ed25519KeyPair::generate().with_key_id(&format!("rogue-{i}-{j}"));
                    let r = app
                        .with_token(&rogue.sign(claims("u")).unwrap())
                        .get("/api/tasks");
                    // 401 when a fetch begun after it was asked for did not have it, else
                    // 503: it cannot be told yet.
                    assert!([401, 503].contains(&r.status), "{}", r.text());
                }
            });
        }
    });
    // Fetches start at least a second apart.
    let most = 2 + started.elapsed().as_secs() as usize;
    assert!(jwks.fetches() <= most, "{} fetches", jwks.fetches());
    // A made-up kid sent again and again is 401 each time: refused from the record of the
    // fetch it started, or fetched for again once a fetch may start.
    std::thread::sleep(PAST_THE_GAP);
    let (fetched, started) = (jwks.fetches(), std::time::Instant::now());
    let rogue = Ed25519KeyPair::generate().with_key_id("rogue");
    let rogue = app.with_token(&rogue.sign(claims("u")).unwrap());
    for _ in 0..10 {
        assert_eq!(rogue.get("/api/tasks").status, 401);
    }
    let most = fetched + 1 + started.elapsed().as_secs() as usize;
    assert!(jwks.fetches() <= most, "{} fetches", jwks.fetches());
}

/// Finding F1 of the probe: a made-up `kid` every 30 s used to keep the set from being
/// fetched again, so that the first real tokens of a new key were 401, which signs the
/// user out. A kid no fetch was asked about is now at worst a 503 with `Retry-After: 1`.
#[test]
fn a_made_up_kid_does_not_make_a_new_key_unknown() {
    let k1 = Ed25519KeyPair::generate().with_key_id("k1");
    let k2 = Ed25519KeyPair::generate().with_key_id("k2");
    let jwks = JwksServer::start(&[k1.public_key().to_jwk()]);
    let app = app_for(&jwks, std::time::Duration::from_secs(30));
    let forged = Ed25519KeyPair::generate().with_key_id("garbage");
    let forged = app.with_token(&forged.sign(claims("u")).unwrap());
    assert_eq!(forged.get("/api/tasks").status, 401);
    assert_eq!(jwks.fetches(), 1);

    jwks.publish(&[k1.public_key().to_jwk(), k2.public_key().to_jwk()]);
    let real = app.with_token(&k2.sign(claims("u")).unwrap());
    let r = real.get("/api/tasks");
    // 503 when within a second of the fetch (the usual case here), never a 401.
    assert!(
        r.status == 200 || (r.status == 503 && r.header("Retry-After") == Some("1")),
        "{}: {}",
        r.status,
        r.text()
    );
    std::thread::sleep(PAST_THE_GAP);
    assert_eq!(real.get("/api/tasks").status, 200, "the new key is fetched");
    assert_eq!(jwks.fetches(), 2);

    // A kid asked for before its key existed (Better Auth's kids can be serial numbers).
    let k4 = Ed25519KeyPair::generate().with_key_id("k4");
    let early = app.with_token(&k4.sign(claims("u")).unwrap());
    std::thread::sleep(PAST_THE_GAP);
    assert_eq!(early.get("/api/tasks").status, 401);
    jwks.publish(&[k2.public_key().to_jwk(), k4.public_key().to_jwk()]);
    std::thread::sleep(PAST_THE_GAP);
    assert_eq!(
        early.get("/api/tasks").status,
        200,
        "k4 is fetched for again"
    );

    // The same while made-up kids arrive all the time: whichever request fetches, the new
    // key is cached, so a client that waits as told is answered.
    let k3 = Ed25519KeyPair::generate().with_key_id("k3");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let rogue = Ed25519KeyPair::generate().with_key_id(&format!("rogue-{i}"));
                let status = app
                    .with_token(&rogue.sign(claims("u")).unwrap())
                    .get("/api/tasks")
                    .status;
                assert!([401, 503].contains(&status), "{status}");
            }
        });
        std::thread::sleep(PAST_THE_GAP);
        jwks.publish(&[k4.public_key().to_jwk(), k3.public_key().to_jwk()]);
        let real = app.with_token(&k3.sign(claims("u")).unwrap());
        let mut statuses = Vec::new();
        while statuses.last() != Some(&200) && statuses.len() < 5 {
            if !statuses.is_empty() {
                std::thread::sleep(PAST_THE_GAP);
            }
            statuses.push(real.get("/api/tasks").status);
        }
        stop.store(true, Ordering::SeqCst);
        assert!(
            statuses.iter().all(|&s| s == 503 || s == 200) && statuses.last() == Some(&200),
            "{statuses:?}"
        );
    });
}

#[test]
fn a_rotated_in_key_is_fetched_and_a_rotated_out_key_stops_working() {
    let old = Ed25519KeyPair::generate().with_key_id("old");
    let new = Ed25519KeyPair::generate().with_key_id("new");
    let jwks = JwksServer::start(&[old.public_key().to_jwk()]);
    let app = app_for(&jwks, std::time::Duration::from_secs(30));
    // One token throughout: the second use would be answered from the verified-token cache
    // if the cache outlived the key.
    let old_token = old.sign(claims("u")).unwrap();
    for _ in 0..2 {
        assert_eq!(app.with_token(&old_token).get("/api/tasks").status, 200);
    }
    jwks.publish(&[new.public_key().to_jwk()]);
    std::thread::sleep(PAST_THE_GAP);
    assert_eq!(
        app.with_token(&new.sign(claims("u")).unwrap())
            .get("/api/tasks")
            .status,
        200,
        "new kid fetched"
    );
    assert_eq!(jwks.fetches(), 2);
    // The fetch that had begun after "old" was asked for did not have it: 401 at once.
    assert_eq!(
        app.with_token(&old_token).get("/api/tasks").status,
        401,
        "old key gone"
    );
    assert_eq!(jwks.fetches(), 2);
}

/// A JWKS endpoint that is down: a token whose key cannot be fetched is 503 with
/// `Retry-After` (it may well be good; a 401 would make the frontend drop it and sign in
/// again, in a loop while the endpoint is down), within the fetch's bound, and again 503
/// without a fetch for a second.
#[test]
fn a_dead_jwks_endpoint_costs_503s_not_hung_workers() {
    // A listener that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| c.jwks_url = url.clone());
    let ed = Ed25519KeyPair::generate().with_key_id("k");
    let client = app.with_token(&ed.sign(claims("u")).unwrap());
    let started = std::time::Instant::now();
    let r = client.get("/api/tasks");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(r.header("WWW-Authenticate"), None);
    assert!(r.detail().contains("JWKS"), "{}", r.text());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "fetch is bounded"
    );
    let again = std::time::Instant::now();
    assert_eq!(client.get("/api/tasks").status, 503);
    assert!(
        again.elapsed() < std::time::Duration::from_secs(1),
        "no second fetch within the second"
    );
    // HS256 callers are unaffected meanwhile.
    assert_eq!(app.user("alice").get("/api/tasks").status, 200);
    drop(listener);
}

/// A JWKS endpoint that answers each connection with `head`, then `drip` every 200 ms for
/// up to 15 s (or until the reader has gone).
fn trickling_jwks(head: &'static str, drip: &'static str) -> String {
    scripted_jwks(move |mut stream| {
        let _ = stream.write_all(head.as_bytes());
        for _ in 0..75 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            if stream.write_all(drip.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// A JWKS endpoint that plays `answer` to each connection, on a thread of its own.
fn scripted_jwks(answer: impl Fn(TcpStream) + Copy + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || answer(stream));
        }
    });
    url
}

#[test]
fn a_jwks_endpoint_that_trickles_its_answer_holds_nothing_for_long() {
    for (context, head, drip) in [
        (
            "headers a line at a time",
            "HTTP/1.1 200 OK\r\n",
            "X-A: b\r\n",
        ),
        (
            "a body a byte at a time",
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
            " ",
        ),
        (
            "chunks a byte at a time",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "1\r\n \r\n",
        ),
        (
            "a chunk size that overflows",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\nffffffffffffffff\r\n",
            "",
        ),
    ] {
        let url = trickling_jwks(head, drip);
        let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| c.jwks_url = url.clone());
        let started = std::time::Instant::now();
        // More requests for unknown keys than the server has workers, then an HS256
        // request and a health check behind them.
        let (unknown, alice, health) = std::thread::scope(|s| {
            let unknown = unknown_kids(s, &app, 9);
            std::thread::sleep(std::time::Duration::from_millis(300));
            let alice = app.user("alice").get("/api/tasks").status;
            let health = app.anonymous().get("/health").status;
            let unknown: Vec<u16> = unknown.into_iter().map(|h| h.join().unwrap()).collect();
            (unknown, alice, health)
        });
        let took = started.elapsed();
        // The key set cannot be had: whether those tokens are good cannot be told now.
        assert_eq!(unknown, [503; 9], "{context}");
        assert_eq!((alice, health), (200, 200), "{context}");
        assert!(
            took < std::time::Duration::from_secs(6),
            "{context}: answered after {took:?}"
        );
    }
}

/// Finding F2 of the probe: while one fetch hung, every request with an unknown `kid`
/// waited for it in a worker slot, and requests that need no key queued behind them. Now
/// they are answered at once, and an HS256 request is answered while the fetch still hangs.
#[test]
fn a_hanging_fetch_holds_up_no_other_request() {
    // A JWKS endpoint that reads the request and never answers; the test keeps the
    // connection, so it can tell whether the fetch is still waiting on it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let (accepted, fetches) = mpsc::channel::<TcpStream>();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            if accepted.send(stream).is_err() {
                return;
            }
        }
    });
    let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| c.jwks_url = url.clone());
    let still_waiting = |fetch: &TcpStream| {
        fetch.set_nonblocking(true).unwrap();
        let mut byte = [0; 1];
        let waiting = matches!(
            (&*fetch).read(&mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        fetch.set_nonblocking(false).unwrap();
        waiting
    };

    std::thread::scope(|s| {
        // Many more requests for unknown keys than the server has workers.
        let unknown = unknown_kids(s, &app, 30);
        let fetch = fetches
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a fetch started");
        // Time for the other requests to reach the server; nothing is measured.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(app.user("alice").get("/api/tasks").status, 200);
        assert!(
            still_waiting(&fetch),
            "the HS256 request was answered only after the fetch gave up"
        );
        let unknown: Vec<u16> = unknown.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(unknown, [503; 30]);
    });
    assert!(fetches.try_recv().is_err(), "one fetch at a time");
}

/// A JWKS endpoint that answers each connection with `head`, then `a`s as fast as it can
/// until the reader has gone.
fn endless_jwks(head: &'static str) -> String {
    scripted_jwks(move |mut stream| {
        let _ = stream.write_all(head.as_bytes());
        let block = [b'a'; 64 * 1024];
        while stream.write_all(&block).is_ok() {}
    })
}

/// The most memory this process has held so far, in bytes (Linux's `VmHWM`).
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Finding F1 of the re-probe: the status, header and chunk-size lines of the JWKS answer
/// were read without a bound, so an endpoint that sent one endless line took the server to
/// 1.5 GB within the fetch's 2 s. Each line is now refused past 8 KiB, before more is held.
#[test]
fn a_jwks_endpoint_that_sends_an_endless_line_costs_no_memory() {
    for (context, head) in [
        ("status line", "HTTP/1.1 200 "),
        ("header", "HTTP/1.1 200 OK\r\nX-Big: "),
        (
            "chunk size",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10;",
        ),
    ] {
        let url = endless_jwks(head);
        let app = TestApp::spawn_with(TestDb::new(&Engine::Sqlite), |c| c.jwks_url = url.clone());
        let key = Ed25519KeyPair::generate().with_key_id("k");
        let before = peak_memory();
        let r = app
            .with_token(&key.sign(claims("u")).unwrap())
            .get("/api/tasks");
        let grown = peak_memory() - before;
        assert_eq!(r.status, 503, "{context}: {}", r.text());
        // The other tests of this process run meanwhile: a generous margin.
        assert!(
            grown < 64 << 20,
            "{context}: the peak memory grew by {grown} bytes"
        );
    }
}

/// The refetch interval of the tests of the key set's age: time enough for a few requests.
const SHORT_REFETCH: std::time::Duration = std::time::Duration::from_millis(2000);

/// Finding F3 of the re-probe: a known kid never made the set be fetched again, so a key
/// removed from the JWKS (revoked) was accepted for as long as no unknown kid came. Once
/// the set is older than the refetch interval, a request fetches it again, and the token
/// remembered as verified by the removed key is verified again and refused.
#[test]
fn a_key_removed_from_the_jwks_stops_working_once_the_set_is_too_old() {
    let k1 = Ed25519KeyPair::generate().with_key_id("k1");
    let k2 = Ed25519KeyPair::generate().with_key_id("k2");
    let jwks = JwksServer::start(&[k1.public_key().to_jwk(), k2.public_key().to_jwk()]);
    let app = app_for(&jwks, SHORT_REFETCH);
    let revoked = app.with_token(&k1.sign(claims("u")).unwrap());
    let kept = app.with_token(&k2.sign(claims("u")).unwrap());
    // The second request is answered from the verified-token cache.
    for _ in 0..2 {
        assert_eq!(revoked.get("/api/tasks").status, 200);
    }
    jwks.publish(&[k2.public_key().to_jwk()]);
    assert_eq!(
        revoked.get("/api/tasks").status,
        200,
        "the set is still new"
    );
    assert_eq!(jwks.fetches(), 1);

    std::thread::sleep(SHORT_REFETCH + std::time::Duration::from_millis(100));
    let r = revoked.get("/api/tasks");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(jwks.fetches(), 2, "the set was fetched again");
    assert_eq!(kept.get("/api/tasks").status, 200);
    assert_eq!(revoked.get("/api/tasks").status, 401);
    assert_eq!(jwks.fetches(), 2);
}

/// The other side of F3: while the JWKS cannot be fetched, a set older than the refetch
/// interval is used as it is (nobody is signed out because Better Auth is briefly down),
/// fetched again at most once a second, and replaced once a fetch works.
#[test]
fn a_set_too_old_is_used_while_the_jwks_is_down() {
    let k1 = Ed25519KeyPair::generate().with_key_id("k1");
    let jwks = JwksServer::start(&[k1.public_key().to_jwk()]);
    let app = app_for(&jwks, SHORT_REFETCH);
    let client = app.with_token(&k1.sign(claims("u")).unwrap());
    assert_eq!(client.get("/api/tasks").status, 200);
    jwks.set_down(true);

    std::thread::sleep(SHORT_REFETCH + std::time::Duration::from_millis(100));
    for _ in 0..3 {
        let r = client.get("/api/tasks");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(jwks.fetches(), 2, "one fetch tried, then the gap");
    std::thread::sleep(PAST_THE_GAP);
    assert_eq!(client.get("/api/tasks").status, 200);
    assert_eq!(jwks.fetches(), 3, "and another once the gap is over");

    // Back up, without the key: the next fetch replaces the set.
    jwks.publish(&[]);
    jwks.set_down(false);
    std::thread::sleep(PAST_THE_GAP);
    assert_eq!(client.get("/api/tasks").status, 401);
    assert_eq!(jwks.fetches(), 4);
}

/// `n` requests at once, each with a token of a key the JWKS does not have (kids `k0`,
/// `k1`, ...): their statuses, once joined.
fn unknown_kids<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    app: &'s TestApp,
    n: usize,
) -> Vec<std::thread::ScopedJoinHandle<'s, u16>> {
    (0..n)
        .map(|i| {
            let key = Ed25519KeyPair::generate().with_key_id(&format!("k{i}"));
            let client = app.with_token(&key.sign(claims("u")).unwrap());
            s.spawn(move || client.get("/api/tasks").status)
        })
        .collect()
}
