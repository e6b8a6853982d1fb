//! Long task lists: a client that does not read its answer holds no request slot, and the
//! memory such answers take together is bounded (`http::BodyBudget`).

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
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

/// `request` (from `request_bytes`) without its `Connection: close`: one of several on a
/// connection.
fn keep_alive(request: &[u8]) -> Vec<u8> {
    String::from_utf8(request.to_vec())
        .unwrap()
        .replace("Connection: close\r\n", "")
        .into_bytes()
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

// A client that takes a long answer more slowly than `MIN_READ_RATE` (16 KiB/s) once the
// 10 s grace is over is cut off, and the share of the body budget its answer held is free
// again. The socket's write timeout alone ends a write only after 10 s without progress:
// a client reading a little now and then kept both for as long as it liked. It needs small
// segments: the kernel wakes a blocked writer once a third of its send buffer is free, and
// on loopback, with 64 KiB segments, that buffer is megabytes, which a slow client does not
// free within the 10 s (the write timeout then ends it anyway).
dbtest!(
    a_client_reading_too_slowly_is_cut_off_and_its_share_freed,
    |app| {
        let mut app = app;
        app.config.body_budget = 8 << 20;
        app.restart();
        let alice = app.user("alice");
        create_long_tasks(&app, &alice, 1000);
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.set_tcp_mss(536).unwrap();
        socket.connect(&app.addr.into()).unwrap();
        let mut slow: TcpStream = socket.into();
        let raw = request_bytes("GET", "/api/tasks", alice.token.as_deref(), None, &[]);
        slow.write_all(&raw).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let started = Instant::now();
        // 1 KiB every 250 ms: 4 KiB/s.
        let mut got = Vec::new();
        let mut buf = [0; 1024];
        loop {
            match slow.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "still reading after {:?}, {} bytes",
                started.elapsed(),
                got.len()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        let cut = started.elapsed();
        let head = String::from_utf8_lossy(&got[..got.len().min(4096)]).to_string();
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n"),
            "{}",
            &head[..head.len().min(200)]
        );
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            got.len() < length,
            "the whole answer ({length} bytes) was sent in {cut:?}"
        );
        assert!(
            cut >= Duration::from_secs(10),
            "cut off after {cut:?}, within the grace"
        );

        // Its share of the 8 MiB budget was given back: another 6 MB list fits.
        let listed = alice.get("/api/tasks");
        assert_eq!(listed.status, 200, "{}", brief(&listed));
        assert_eq!(listed.json().as_array().unwrap().len(), 1000);
    }
);

// The same for a client that pipelines short answers and reads 1 KiB a second: each answer
// is written within the grace (a blocked write goes on as soon as some of the kernel's
// buffer is free), so its pace was never measured and it kept a thread for as long as it
// liked; the pace now runs on across answers the client has not taken all of.
#[test]
fn a_client_reading_short_answers_too_slowly_is_cut_off_too() {
    let app = TestApp::spawn(Engine::Sqlite);
    let alice = app.user("alice");
    let id = app.create(&alice, r#"{"title": "short"}"#)["id"].clone();
    let one = keep_alive(&request_bytes(
        "GET",
        &format!("/api/tasks/{id}"),
        alice.token.as_deref(),
        None,
        &[],
    ));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_tcp_mss(536).unwrap();
    socket.connect(&app.addr.into()).unwrap();
    let mut slow: TcpStream = socket.into();
    // 1,000 requests, some 400 KB of answers: 400 s at this pace.
    let mut sender = slow.try_clone().unwrap();
    std::thread::spawn(move || {
        for _ in 0..1000 {
            if sender.write_all(&one).is_err() {
                return;
            }
        }
    });
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut got = 0;
    let mut buf = [0; 1024];
    loop {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "still reading after {:?}, {got} bytes",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let cut = started.elapsed();
    assert!(cut >= Duration::from_secs(10), "cut off after {cut:?}");
    assert!(got < 200_000, "{got} bytes in {cut:?}");
    // Others are served all along.
    assert_eq!(alice.get("/api/tasks").status, 200);
}

/// The pace is the client's, not the answer's: a client that pipelines two long lists and
/// reads at 250 KB/s (15 times the minimum) gets both whole. (When the pace was counted per
/// answer, the second was charged with the first's megabytes still in the kernel's send
/// buffer, and the connection was reset after 22 s, cutting the first list short.) The
/// transport is the same on both databases: SQLite only.
#[test]
fn a_pipelining_client_that_keeps_up_gets_every_answer_whole() {
    let app = TestApp::spawn(Engine::Sqlite);
    let alice = app.user("alice");
    create_long_tasks(&app, &alice, 1000);
    let mut stream = TcpStream::connect(app.addr).unwrap();
    let list = request_bytes("GET", "/api/tasks", alice.token.as_deref(), None, &[]);
    stream.write_all(&keep_alive(&list)).unwrap();
    stream.write_all(&list).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("after {:?} and {} bytes: {e}", started.elapsed(), got.len()),
        }
        // 250 KB/s: wait until the bytes so far are due.
        let due = Duration::from_secs_f64(got.len() as f64 / 250_000.0);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
    let mut reader = BufReader::new(&got[..]);
    for _ in 0..2 {
        let r = read_response(&mut reader);
        assert_eq!(r.status, 200, "{}", brief(&r));
        assert_eq!(r.json().as_array().unwrap().len(), 1000);
    }
}

/// A server with 2 workers and 2 pooled connections on a scratch PostgreSQL database; None
/// when the tests run without PostgreSQL.
fn two_worker_postgres_app() -> Option<TestApp> {
    let engine = Engine::postgres()?;
    Some(TestApp::spawn_with(TestDb::new(&engine), |c| {
        c.workers = 2;
        c.pool_size = 2;
    }))
}

/// Locks `tasks` on a connection of the test's own and has two requests of `user` wait on
/// the lock, which holds both request slots of a 2-worker server; returns the locking client
/// (`rollback` ends the lock) and the two requests, which then answer 200.
fn hold_both_slots(app: &TestApp, user: &Client) -> (postgres::Client, Vec<JoinHandle<u16>>) {
    let mut locker = app.db.postgres_client().unwrap();
    locker
        .batch_execute("begin; lock table tasks in access exclusive mode")
        .unwrap();
    let busy = (0..2)
        .map(|_| {
            let user = user.clone();
            std::thread::spawn(move || user.get("/api/tasks").status)
        })
        .collect();
    let mut watcher = app.db.postgres_client().unwrap();
    let started = Instant::now();
    while watcher
        .query_one(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        < 2
    {
        assert!(started.elapsed() < Duration::from_secs(3), "no slot waits");
        std::thread::sleep(Duration::from_millis(20));
    }
    (locker, busy)
}

/// The docs and the OpenAPI document take no request slot, however their path is spelled:
/// `/%64ocs` is routed as `/docs`, and waited for a slot as an API request does while the
/// check that lets them by saw the raw path. PostgreSQL only: a lock holds the slots.
#[test]
fn the_docs_are_served_while_every_slot_is_busy_even_with_escaped_paths() {
    let Some(app) = two_worker_postgres_app() else {
        return;
    };
    let bob = app.user("bob");
    assert_eq!(bob.get("/api/tasks").status, 200);
    let (mut locker, busy) = hold_both_slots(&app, &bob);
    for path in ["/docs", "/%64ocs", "/openapi%2Ejson", "/%6Fpenapi.json/"] {
        let started = Instant::now();
        let r = app.anonymous().get(path);
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(took < Duration::from_secs(2), "{path} waited {took:?}");
    }
    locker.batch_execute("rollback").unwrap();
    for status in busy {
        assert_eq!(status.join().unwrap(), 200);
    }
}

/// A client pipelining requests faster than they can be answered is read from no further
/// while 4 of its answers are unwritten. Each request read is queued for the workers with
/// its body (up to 64 KiB): without the bound, one connection queued as many as it sent,
/// and their memory with them. PostgreSQL only: a lock keeps the slots busy.
#[test]
fn a_connection_is_not_read_from_while_four_of_its_answers_are_unwritten() {
    let Some(app) = two_worker_postgres_app() else {
        return;
    };
    let bob = app.user("bob");
    assert_eq!(bob.get("/api/tasks").status, 200);
    let (mut locker, busy) = hold_both_slots(&app, &bob);

    // GETs with 60 KB bodies (read, then ignored), sent for 3 s.
    let body = vec![b' '; 60_000];
    let one = keep_alive(&request_bytes(
        "GET",
        "/api/tasks",
        bob.token.as_deref(),
        Some(&body),
        &[],
    ));
    let mut stream = TcpStream::connect(app.addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (mut offset, mut total) = (0, 0);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until && total < 300 << 20 {
        match stream.write(&one[offset..]) {
            Ok(n) => {
                total += n;
                offset = (offset + n) % one.len();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("after {total} bytes: {e}"),
        }
    }
    // What the kernel's buffers hold on both sides, not thousands of requests.
    assert!(
        total < 40 << 20,
        "{} requests ({total} bytes) were taken while none could be answered",
        total / one.len()
    );

    locker.batch_execute("rollback").unwrap();
    for status in busy {
        assert_eq!(status.join().unwrap(), 200);
    }
    drop(stream);
    assert_eq!(bob.get("/api/tasks").status, 200);
}

/// During a shutdown's drain, a request that arrives on a kept-alive connection (here, while
/// every slot is busy, so that it waits in the queue) is still answered, saying
/// `Connection: close`, and the shutdown ends once it is (the connection itself ends with the
/// process, which exits then). PostgreSQL only: a lock keeps the drain going until the test
/// lets go.
#[test]
fn a_request_queued_during_the_drain_is_answered_with_connection_close() {
    let Some(mut app) = two_worker_postgres_app() else {
        return;
    };
    let bob = app.user("bob");
    let list = keep_alive(&request_bytes(
        "GET",
        "/api/tasks",
        bob.token.as_deref(),
        None,
        &[],
    ));
    let mut idle = TcpStream::connect(app.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(&list).unwrap();
    let mut idle_reader = BufReader::new(idle.try_clone().unwrap());
    let first = read_response(&mut idle_reader);
    assert_eq!(first.status, 200, "{}", brief(&first));
    assert_eq!(first.header("Connection"), None, "kept alive");

    let (mut locker, busy) = hold_both_slots(&app, &bob);
    let shutdown = app.shut_down_in_background();
    std::thread::sleep(Duration::from_millis(200));
    idle.write_all(&list).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !shutdown.is_finished(),
        "the shutdown waits for the requests under way"
    );
    locker.batch_execute("rollback").unwrap();
    for status in busy {
        assert_eq!(
            status.join().unwrap(),
            200,
            "the requests under way are finished"
        );
    }
    let last = read_response(&mut idle_reader);
    assert_eq!(last.status, 200, "{}", brief(&last));
    assert_eq!(last.header("Connection"), Some("close"));
    let started = Instant::now();
    while !shutdown.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the shutdown ends"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Requests queued behind slots that the database holds (statements waiting on a lock, up
/// to their 5 s deadline each) are answered 503 at once when a worker reaches them after
/// more than 5 s in the queue, instead of each batch of `WORKERS` waiting its own 5 s
/// (40 requests behind a lock were answered after 5, 10, 15, 20 and 25 s). PostgreSQL
/// only: a lock holds the slots.
#[test]
fn a_request_that_waited_too_long_in_the_queue_is_503_at_once() {
    let Some(app) = two_worker_postgres_app() else {
        return;
    };
    let bob = app.user("bob");
    assert_eq!(bob.get("/api/tasks").status, 200);
    let (mut locker, busy) = hold_both_slots(&app, &bob);
    let started = Instant::now();
    // Two are taken by the workers, which wait for a slot, two wait in the queue behind
    // them. Sent together: whether the first two have waited over 5 s when the held slots
    // free (at 5 s and the watchdog's tick) is a matter of milliseconds; the last two have
    // either way by the time a worker reaches them.
    let queued: Vec<_> = (0..4)
        .map(|_| {
            let bob = bob.clone();
            std::thread::spawn(move || (bob.get("/api/tasks"), started.elapsed()))
        })
        .collect();
    // The watchdog cancels the held statements at 5 s (503); the lock goes at 7 s.
    std::thread::sleep(Duration::from_secs(7).saturating_sub(started.elapsed()));
    locker.batch_execute("rollback").unwrap();
    for status in busy {
        assert_eq!(status.join().unwrap(), 503, "cancelled at the deadline");
    }
    let mut too_busy = 0;
    for handle in queued {
        let (r, at) = handle.join().unwrap();
        match r.status {
            200 => {}
            503 => {
                assert_eq!(r.header("Retry-After"), Some("1"));
                assert!(r.detail().contains("too busy"), "{}", r.text());
                too_busy += 1;
            }
            _ => panic!("{}", brief(&r)),
        }
        assert!(at < Duration::from_secs(9), "answered after {at:?}");
    }
    assert!(too_busy >= 2, "{too_busy} of the 4 queued were refused");
    assert_eq!(bob.get("/api/tasks").status, 200);
}

/// A request refused before it is built (here: ambiguous framing, 400) is answered after the
/// answers before it on its connection, not ahead of them: the client read the refusal as
/// the answer to its earlier request, which was still queued. PostgreSQL only: a lock keeps
/// the earlier request queued.
#[test]
fn a_refusal_is_answered_in_its_turn() {
    let Some(app) = two_worker_postgres_app() else {
        return;
    };
    let bob = app.user("bob");
    assert_eq!(bob.get("/api/tasks").status, 200);
    let (mut locker, busy) = hold_both_slots(&app, &bob);

    let mut stream = TcpStream::connect(app.addr).unwrap();
    let list = request_bytes("GET", "/api/tasks", bob.token.as_deref(), None, &[]);
    stream.write_all(&keep_alive(&list)).unwrap();
    stream
        .write_all(
            b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    locker.batch_execute("rollback").unwrap();
    for status in busy {
        assert_eq!(status.join().unwrap(), 200);
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_response(&mut reader);
    assert_eq!(first.status, 200, "{}", brief(&first));
    assert_eq!(first.json(), serde_json::json!([]));
    let second = read_response(&mut reader);
    assert_eq!(second.status, 400, "{}", brief(&second));
}

/// A client pipelines a small request behind a long list it does not read, while every slot
/// is busy: both are queued for the workers. The small answer must wait for the list to be
/// written, which such a client makes last for the 10 s write timeout; a worker must not
/// wait with it, or the requests queued behind it wait too. PostgreSQL only: the slots are
/// kept busy by a lock.
#[test]
fn no_worker_waits_behind_a_long_answer_its_client_does_not_read() {
    let Some(app) = two_worker_postgres_app() else {
        return;
    };
    let alice = app.user("alice");
    let bob = app.user("bob");
    create_long_tasks(&app, &alice, 1000);
    let alices = app.create(&alice, r#"{"title": "short"}"#)["id"].clone();
    let bobs = app.create(&bob, r#"{"title": "bob's"}"#)["id"].clone();

    let (mut locker, busy) = hold_both_slots(&app, &bob);

    // Two clients each pipeline alice's long list and one of her tasks, and read nothing.
    let pipelined = |app: &TestApp| {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&app.addr.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        let token = alice.token.as_deref();
        let list = request_bytes("GET", "/api/tasks", token, None, &[]);
        stream.write_all(&keep_alive(&list)).unwrap();
        let one = request_bytes("GET", &format!("/api/tasks/{alices}"), token, None, &[]);
        stream.write_all(&one).unwrap();
        stream
    };
    let stalled = [pipelined(&app), pipelined(&app)];
    std::thread::sleep(Duration::from_millis(300));

    // Bob's request is queued behind theirs; then the lock goes.
    let probe = {
        let bob = bob.clone();
        let path = format!("/api/tasks/{bobs}");
        std::thread::spawn(move || {
            let r = bob.get(&path);
            (r.status, Instant::now())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    locker.batch_execute("rollback").unwrap();
    let released = Instant::now();
    for status in busy {
        assert_eq!(status.join().unwrap(), 200);
    }
    let (status, answered) = probe.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        answered.duration_since(released) < Duration::from_secs(3),
        "bob's request waited {:?} for workers waiting on clients that do not read",
        answered.duration_since(released)
    );

    // The pipelining clients get both answers, in order, once they read.
    for stream in stalled {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::with_capacity(1 << 20, stream);
        let list = read_response(&mut reader);
        assert_eq!(list.status, 200, "{}", brief(&list));
        assert_eq!(list.json().as_array().unwrap().len(), 1001);
        let one = read_response(&mut reader);
        assert_eq!(one.status, 200, "{}", brief(&one));
        assert_eq!(one.json()["id"], alices);
    }
}
