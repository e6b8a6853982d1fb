//! Long task lists: a client that does not read its answer holds no request slot, and the
//! memory such answers take together is bounded (`http::BodyBudget`).

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dbtest;
use crate::helpers::*;

/// Tasks whose description is 1,000 U+0001, each written as `\u0001` in the list: some
/// 6 KB of JSON a task, so `n` tasks are a list far longer than socket buffers hold.
fn create_long_tasks(app: &TestApp, user: &Client, n: usize) {
    let body = format!(
        r#"{{"title": "long", "description": "{}"}}"#,
        "\\u0001".repeat(1000)
    );
    for _ in 0..n {
        app.create(user, &body);
    }
}

/// Sends `GET /api/tasks` as `user` on a connection of its own and does not read the
/// answer, with a receive buffer of 4 KiB: the server's writes stall once its own send
/// buffer is full (at most 4 MiB on Linux).
fn ask_and_stall(app: &TestApp, user: &Client) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&app.addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    let raw = request_bytes("GET", "/api/tasks", user.token.as_deref(), None, &[]);
    stream.write_all(&raw).unwrap();
    stream
}

/// The start of an answer, for a failure message (a list here is megabytes long).
fn brief(r: &Response) -> String {
    let text = r.text();
    format!("{} {}", r.status, &text[..text.len().min(200)])
}

/// Reads the whole answer a stalled connection was sent.
fn read_stalled(stream: TcpStream) -> Response {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let r = read_response(&mut reader);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    r
}

dbtest!(clients_not_reading_long_lists_hold_up_nobody, |app| {
    let mut app = app;
    app.config.workers = 2;
    app.config.pool_size = 2;
    app.restart();
    let alice = app.user("alice");
    let bob = app.user("bob");
    create_long_tasks(&app, &alice, 1000);

    // Twice as many clients as there are request slots ask for alice's 6 MB list and do not
    // read it: its writes wait on them, for up to the 10 s write timeout.
    let stalled: Vec<_> = (0..4).map(|_| ask_and_stall(&app, &alice)).collect();
    std::thread::sleep(Duration::from_millis(500));

    // Everyone else is served meanwhile (well within the 10 s after which the stalled
    // writes would time out).
    for i in 0..3 {
        let asked = Instant::now();
        let created = bob.post("/api/tasks", &format!(r#"{{"title": "b{i}"}}"#));
        assert_eq!(created.status, 201, "{}", created.text());
        let listed = bob.get("/api/tasks");
        assert_eq!(listed.status, 200);
        assert_eq!(listed.json().as_array().unwrap().len(), i + 1);
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "bob waited {:?} behind clients that do not read",
            asked.elapsed()
        );
    }

    // And the slow clients get their whole answer once they read.
    for stream in stalled {
        let r = read_stalled(stream);
        assert_eq!(r.status, 200, "{}", brief(&r));
        let tasks: Value = r.json();
        // Longer than the 500 rows fetched whole: streamed, newest first all the same.
        let ids: Vec<i64> = tasks
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    }
});

dbtest!(
    long_lists_beyond_the_body_budget_are_503_and_small_answers_go_on,
    |app| {
        let mut app = app;
        app.config.body_budget = 8 << 20;
        app.restart();
        let alice = app.user("alice");
        let bob = app.user("bob");
        create_long_tasks(&app, &alice, 1000);

        // A first unread 6 MB list holds its share of the 8 MB budget until it is written: a
        // second one is refused.
        let first = ask_and_stall(&app, &alice);
        // Its answer has begun to arrive: it was built first, and holds its share.
        first
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        first
            .peek(&mut [0; 1])
            .expect("the first list begins to arrive");
        let mut refused = alice.get("/api/tasks");
        for _ in 0..20 {
            if refused.status == 503 {
                break;
            }
            assert_eq!(refused.status, 200, "{}", brief(&refused));
            std::thread::sleep(Duration::from_millis(250));
            refused = alice.get("/api/tasks");
        }
        assert_eq!(
            refused.status,
            503,
            "a second 6 MB list: {}",
            brief(&refused)
        );
        assert_eq!(refused.header("Retry-After"), Some("1"));
        assert!(refused.detail().contains("busy"), "{}", refused.detail());
        assert!(
            refused.detail().len() < 200,
            "no list in the refusal: {}",
            refused.detail()
        );
        // Small answers are not counted.
        app.create(&bob, r#"{"title": "small"}"#);
        assert_eq!(bob.get("/api/tasks").status, 200);

        // Once the first is written, its share is back.
        let r = read_stalled(first);
        assert_eq!(r.status, 200);
        assert_eq!(r.json().as_array().unwrap().len(), 1000);
        // (Its share is given back just after its last byte is written.)
        let mut again = alice.get("/api/tasks");
        for _ in 0..20 {
            if again.status == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            again = alice.get("/api/tasks");
        }
        assert_eq!(again.status, 200, "{}", brief(&again));
        assert_eq!(again.json().as_array().unwrap().len(), 1000);
    }
);
