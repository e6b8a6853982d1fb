//! HTTP/1.1 message syntax (RFC 9112, RFC 9110 §5): what is refused before a worker sees a
//! request (a JSON 400 or 505 saying `Connection: close`, and nothing after it read as a
//! request), and the `Connection` options that decide whether a connection lives on.

use std::io::{self, BufRead, BufReader, Read};

use crate::helpers::*;

/// Sent after each request under test, on the same connection: an answer to it means the
/// server read on past a request it should have refused. It closes the connection, so that
/// a server that does answer it ends the exchange at once.
const NEXT: &str = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Writes `raw` on a new connection and reads answers until the server closes it (an end of
/// stream, or a reset where it left some of what was sent unread): each answer's status
/// line, and the answer.
fn answers(app: &TestApp, raw: &[u8], context: &str) -> Vec<(String, Response)> {
    let stream = sent(app.addr, raw);
    let mut reader = BufReader::new(stream);
    let mut answers = Vec::new();
    loop {
        let mut status_line = String::new();
        match reader.read_line(&mut status_line) {
            Ok(0) => return answers,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && status_line.is_empty() => {
                return answers
            }
            Err(e) => panic!(
                "{context}: after {} answers, neither an answer nor a close: {e}",
                answers.len()
            ),
            Ok(_) => {}
        }
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = read_headers(&mut reader);
        let mut answer = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len = answer
            .header("Content-Length")
            .map_or(0, |v| v.parse().unwrap());
        answer.body = vec![0; len];
        reader.read_exact(&mut answer.body).expect("body");
        answers.push((status_line.trim_end().to_string(), answer));
    }
}

/// Asserts that `raw`, followed by `NEXT`, got one answer, a JSON refusal with this status
/// and detail that says `Connection: close`, and that the connection then ended. Returns
/// the answer's status line.
fn assert_refused(app: &TestApp, raw: &[u8], status: u16, detail: &str, context: &str) -> String {
    let answers = answers(app, &[raw, NEXT.as_bytes()].concat(), context);
    let lines: Vec<&str> = answers.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(answers.len(), 1, "{context}: answered {lines:?}");
    let (line, r) = &answers[0];
    assert_eq!(r.status, status, "{context}: {line} {}", r.text());
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json"),
        "{context}"
    );
    assert_eq!(r.detail(), detail, "{context}");
    assert_eq!(r.header("Connection"), Some("close"), "{context}");
    line.clone()
}

/// Asserts that `raw`, followed by `NEXT`, got one answer, a 200 that says
/// `Connection: close`, and that the connection then ended.
fn assert_served_and_closed(app: &TestApp, raw: &[u8], context: &str) {
    let answers = answers(app, &[raw, NEXT.as_bytes()].concat(), context);
    let lines: Vec<&str> = answers.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(answers.len(), 1, "{context}: answered {lines:?}");
    let r = &answers[0].1;
    assert_eq!(r.status, 200, "{context}: {}", r.text());
    assert_eq!(r.header("Connection"), Some("close"), "{context}");
}

/// Asserts that `raw`, followed by `NEXT`, got two answers: a 200 that says the connection
/// stays (no `Connection` header in HTTP/1.1, `Connection: keep-alive` to an HTTP/1.0
/// request, which would otherwise take it as closing: RFC 9112 §9.3), then `NEXT`'s.
fn assert_served_and_kept(app: &TestApp, raw: &[u8], context: &str) {
    let answers = answers(app, &[raw, NEXT.as_bytes()].concat(), context);
    let lines: Vec<&str> = answers.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(answers.len(), 2, "{context}: answered {lines:?}");
    let r = &answers[0].1;
    assert_eq!(r.status, 200, "{context}: {}", r.text());
    let kept = raw
        .starts_with(b"GET /health HTTP/1.0")
        .then_some("keep-alive");
    assert_eq!(r.header("Connection"), kept, "{context}");
    assert_eq!(answers[1].1.status, 200, "{context}: the next request");
}

/// The detail of tiny_http's 400 for a header line it cannot read.
const MALFORMED_HEADER: &str = "Malformed HTTP header or body framing.";

/// A line starting with a space or tab continues the one before it (obs-fold, RFC 9112
/// §5.2) and must be refused, not read as a header of its own; so must whitespace before the
/// first header (§2.2). Read as headers, a folded `Content-Length` framed a body that a proxy
/// would not see, and a folded `Authorization` was honoured.
#[test]
fn folded_and_whitespace_prefixed_header_lines_are_refused() {
    let app = TestApp::spawn(Engine::Sqlite);
    let cases = [
        (
            "a folded Content-Length, then a 5-byte 'body' that is not one",
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n Content-Length: 5\r\n\r\nhello"
                .to_string(),
        ),
        (
            "a folded Authorization, after a tab",
            format!(
                "GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n\tAuthorization: Bearer {}\r\n\r\n",
                token("alice")
            ),
        ),
        (
            "a space before the first header",
            "GET /health HTTP/1.1\r\n Host: x\r\n\r\n".to_string(),
        ),
        (
            "a tab before the first header",
            "GET /health HTTP/1.1\r\n\tX-Foo: a\r\nHost: x\r\n\r\n".to_string(),
        ),
        // Refused before too (it has no colon): kept so.
        (
            "a line of whitespace among the headers",
            "GET /health HTTP/1.1\r\nHost: x\r\n \r\n\r\n".to_string(),
        ),
    ];
    for (context, raw) in &cases {
        assert_refused(&app, raw.as_bytes(), 400, MALFORMED_HEADER, context);
    }
    assert_eq!(app.anonymous().get("/health").status, 200);
}

/// A field name is a token (RFC 9110 §5.1): an empty one, one with a delimiter, a control
/// byte or a byte outside ASCII (read as `?`, which is a delimiter) made a header.
#[test]
fn header_names_that_are_not_tokens_are_refused() {
    let app = TestApp::spawn(Engine::Sqlite);
    let cases: [(&str, &[u8]); 7] = [
        ("an empty name", b": empty"),
        ("a name with parentheses", b"X(A): v"),
        ("a name with a slash", b"X/A: v"),
        ("a name with a control byte", b"X\x01A: v"),
        ("a name ending in DEL", b"X-A\x7f: v"),
        ("a name with a byte outside ASCII", b"X-\xc3\xa9: v"),
        // Refused before too, as whitespace: kept so.
        ("a space between the name and the colon", b"X-A : v"),
    ];
    for (context, line) in cases {
        let raw = [b"GET /health HTTP/1.1\r\nHost: x\r\n", line, b"\r\n\r\n"].concat();
        assert_refused(&app, &raw, 400, MALFORMED_HEADER, context);
    }
    // Every character a token may hold.
    let raw =
        b"GET /health HTTP/1.1\r\nHost: x\r\n!#$%&'*+-.^_`|~09azAZ: v\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request(app.addr, raw).status, 200);
}

/// A field value holds no control byte but the tab (RFC 9110 §5.5): a NUL, an escape or DEL
/// was kept in it, and a form feed or vertical tab at an end was trimmed away. A lone CR was
/// refused before, as a malformed request line.
#[test]
fn control_bytes_in_header_values_are_refused() {
    let app = TestApp::spawn(Engine::Sqlite);
    let cases: [(&str, &[u8]); 7] = [
        ("a NUL", b"X-A: a\x00b"),
        ("a lone CR", b"X-A: a\rb"),
        ("an escape", b"X-A: \x1b[31mred"),
        ("a DEL", b"X-A: a\x7fb"),
        ("a vertical tab at the end", b"X-A: a\x0b"),
        ("a form feed at the start", b"X-A: \x0ca"),
        ("a NUL in Authorization", b"Authorization: Bearer a\x00b"),
    ];
    for (context, line) in cases {
        let raw = [b"GET /health HTTP/1.1\r\nHost: x\r\n", line, b"\r\n\r\n"].concat();
        assert_refused(&app, &raw, 400, MALFORMED_HEADER, context);
    }
    // A tab is allowed, and a byte outside ASCII is still read as `?` (PATCHES.md).
    for line in [&b"X-A: a\tb\t"[..], b"X-City: S\xc3\xa3o Paulo"] {
        let raw = [
            b"GET /health HTTP/1.1\r\nHost: x\r\n",
            line,
            b"\r\nConnection: close\r\n\r\n",
        ]
        .concat();
        assert_eq!(raw_request(app.addr, &raw).status, 200);
    }
}

/// `Connection` is a list of options, and its lines make one list (RFC 9110 §5.3, §7.6.1):
/// `close` ends the connection after the answer wherever it is in the list, but only as a
/// whole option; so does HTTP/1.0 without a `keep-alive` option. `upgrade` asks nothing of
/// a server that upgrades to nothing (RFC 9110 §7.8): it ended the connection.
#[test]
fn connection_options_are_whole_tokens_from_every_line() {
    let app = TestApp::spawn(Engine::Sqlite);
    let get = |version: &str, connection: &str| {
        format!("GET /health HTTP/{version}\r\nHost: x\r\n{connection}\r\n")
    };
    for (context, raw) in [
        (
            "close on a second Connection line",
            get("1.1", "Connection: keep-alive\r\nConnection: close\r\n"),
        ),
        // Closed before too (its text holds "close"): kept so.
        (
            "close among other options, in capitals",
            get("1.1", "Connection: foo, CLOSE\t,bar\r\n"),
        ),
        (
            "HTTP/1.0, keep-alive only inside another option",
            get("1.0", "Connection: not-keep-alive\r\n"),
        ),
        (
            "HTTP/1.0, keep-alive and close",
            get("1.0", "Connection: keep-alive\r\nConnection: close\r\n"),
        ),
    ] {
        assert_served_and_closed(&app, raw.as_bytes(), context);
    }
    for (context, raw) in [
        (
            "close only inside another option",
            get("1.1", "Connection: foo-close-bar\r\n"),
        ),
        (
            "upgrade",
            get("1.1", "Connection: upgrade\r\nUpgrade: websocket\r\n"),
        ),
        (
            "Upgrade, keep-alive",
            get("1.1", "Connection: Upgrade, keep-alive\r\nUpgrade: h2c\r\n"),
        ),
        (
            "HTTP/1.0, keep-alive on a second Connection line",
            get("1.0", "Connection: foo\r\nConnection: Keep-Alive\r\n"),
        ),
    ] {
        assert_served_and_kept(&app, raw.as_bytes(), context);
    }
}

/// A request line is exactly `method SP request-target SP HTTP-version` (RFC 9112 §3). It
/// was trimmed, split on spaces, and what followed the version was ignored.
#[test]
fn request_lines_off_the_grammar_are_refused() {
    let app = TestApp::spawn(Engine::Sqlite);
    let cases: [(&str, &[u8]); 8] = [
        ("something after the version", b"GET /health HTTP/1.1 junk"),
        ("a space before the method", b" GET /health HTTP/1.1"),
        ("a space after the version", b"GET /health HTTP/1.1 "),
        ("a method that is not a token", b"GE(T /health HTTP/1.1"),
        ("a control byte in the target", b"GET /hea\x01lth HTTP/1.1"),
        ("a DEL in the target", b"GET /health\x7f HTTP/1.1"),
        // Refused before too (the parts read were misplaced): kept so.
        ("two spaces after the method", b"GET  /health HTTP/1.1"),
        ("a tab for a space", b"GET\t/health HTTP/1.1"),
    ];
    for (context, line) in cases {
        let raw = [line, b"\r\nHost: x\r\n\r\n"].concat();
        assert_refused(&app, &raw, 400, "Malformed HTTP request line.", context);
    }
    // Up to four empty lines before a request line are still skipped (RFC 9112 §2.2); a
    // fifth is taken for the request line.
    let empty = |n: usize| [&b"\r\n".repeat(n)[..], NEXT.as_bytes()].concat();
    assert_eq!(raw_request(app.addr, &empty(4)).status, 200);
    let r = raw_request(app.addr, &empty(5));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.detail(), "Malformed HTTP request line.");
}

/// A version below HTTP/1.0 is one this server does not speak: the JSON 505, in HTTP/1.1,
/// and the connection closed. `HTTP/0.9` was served, its status line saying `HTTP/0.9`, and
/// its connection kept. A refusal of such a request's headers is in HTTP/1.1 too.
#[test]
fn versions_below_http_1_0_are_505() {
    let app = TestApp::spawn(Engine::Sqlite);
    for version in ["HTTP/0.9", "HTTP/0.0"] {
        let raw = format!("GET /health {version}\r\nHost: x\r\n\r\n");
        let line = assert_refused(
            &app,
            raw.as_bytes(),
            505,
            "This server speaks HTTP/1.0 and HTTP/1.1 only.",
            version,
        );
        assert!(line.starts_with("HTTP/1.1 505 "), "{version}: {line}");
    }
    for version in ["HTTP/0.9", "HTTP/2.0"] {
        let raw = format!("GET /health {version}\r\nHost: x\r\n\tX-Folded: a\r\n\r\n");
        let context = format!("{version} with a folded header");
        let line = assert_refused(&app, raw.as_bytes(), 400, MALFORMED_HEADER, &context);
        assert!(line.starts_with("HTTP/1.1 400 "), "{context}: {line}");
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host` is a 400, and so is any request with
/// more than one, or with one that is not `uri-host [ ":" port ]`. None of it was checked.
/// An HTTP/1.0 request may still leave it out.
#[test]
fn host_is_required_once_and_valid() {
    let app = TestApp::spawn(Engine::Sqlite);
    let get = |version: &str, hosts: &str| format!("GET /health HTTP/{version}\r\n{hosts}\r\n");
    for (context, raw) in [
        ("HTTP/1.1 without Host", get("1.1", "")),
        ("two Host lines", get("1.1", "Host: x\r\nHost: x\r\n")),
        (
            "two Host lines in HTTP/1.0",
            get("1.0", "Host: x\r\nHost: y\r\n"),
        ),
        ("two hosts in one line", get("1.1", "Host: x, y\r\n")),
        ("a space in Host", get("1.1", "Host: a b\r\n")),
        ("a slash in Host", get("1.1", "Host: x/y\r\n")),
        ("userinfo in Host", get("1.1", "Host: user@x\r\n")),
        (
            "a port that is not a number",
            get("1.1", "Host: x:http\r\n"),
        ),
        ("two ports", get("1.1", "Host: x:80:80\r\n")),
        (
            "an IPv6 address without brackets",
            get("1.1", "Host: ::1\r\n"),
        ),
        (
            "an unclosed IPv6 literal",
            get("1.1", "Host: [::1:8080\r\n"),
        ),
        ("a bad %-escape", get("1.1", "Host: a%zz\r\n")),
        (
            "a byte outside ASCII (read as ?)",
            "GET /health HTTP/1.1\r\nHost: \u{e9}.example\r\n\r\n".to_string(),
        ),
        ("an invalid Host in HTTP/1.0", get("1.0", "Host: a b\r\n")),
    ] {
        assert_refused(
            &app,
            raw.as_bytes(),
            400,
            "Missing, repeated or malformed Host header.",
            context,
        );
    }
    for (context, raw) in [
        ("a name", get("1.1", "Host: localhost\r\n")),
        ("IPv4 and a port", get("1.1", "Host: 127.0.0.1:8080\r\n")),
        ("IPv6 and a port", get("1.1", "Host: [::1]:8080\r\n")),
        ("a %-escape", get("1.1", "Host: a%2Db.example\r\n")),
        ("an empty port", get("1.1", "Host: example.com:\r\n")),
        // RFC 9112 §3.2: the empty value of a target with no authority.
        ("an empty value", get("1.1", "Host:\r\n")),
        ("HTTP/1.0 without Host", get("1.0", "")),
        ("HTTP/1.0 with Host", get("1.0", "Host: x\r\n")),
    ] {
        let raw = raw.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
        let r = raw_request(app.addr, raw.as_bytes());
        assert_eq!(r.status, 200, "{context}: {}", r.text());
    }
}

/// A `HEAD` request that tiny_http refuses itself (no `Host`, an unknown expectation, a
/// version above 1.1, a malformed `Content-Length`) is answered without content, as every
/// answer to `HEAD` is (RFC 9110 §9.3.2); the JSON detail followed the headers (found by
/// fuzzing).
#[test]
fn refusals_of_head_requests_carry_no_content() {
    let app = TestApp::spawn(Engine::Sqlite);
    for (raw, status) in [
        ("HEAD / HTTP/1.1\r\n\r\n", 400),
        ("HEAD / HTTP/1.1\r\nHost: x\r\nExpect: nope\r\n\r\n", 417),
        ("HEAD / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (
            "HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
            400,
        ),
    ] {
        let mut stream = sent(app.addr, raw.as_bytes());
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let (head, content) = answer.split_once("\r\n\r\n").expect("a header block");
        assert!(head.contains(&format!(" {status} ")), "{raw:?}: {head}");
        assert!(head.contains("Content-Length: "), "{raw:?}: {head}");
        assert_eq!(content, "", "{raw:?}");
    }
    // The same refusal of a GET keeps its detail.
    let mut stream = sent(app.addr, b"GET / HTTP/1.1\r\n\r\n");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with("\"}"), "{answer}");
}
