//! Input validation: every malformed body, field, task id or list query is a 400 (an
//! oversized body a 413) with a JSON `detail`, and changes nothing; boundary values pass.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::dbtest;
use crate::helpers::*;

/// API.md, Errors: bodies up to exactly this many bytes are accepted.
const BODY_LIMIT: usize = 65_536;

/// API.md, Tasks: `PATCH /api/tasks/{id}` is the same as `PUT`.
const UPDATE_METHODS: [&str; 2] = ["PUT", "PATCH"];

/// The keys of a task, and no others.
const TASK_KEYS: [&str; 7] = [
    "completed",
    "created_at",
    "description",
    "due_date",
    "id",
    "title",
    "updated_at",
];

/// The caller's task list (`query` without the `?`), asserting the 200.
fn list(user: &Client, query: &str) -> Value {
    let r = user.get(&format!("/api/tasks?{query}"));
    assert_eq!(r.status, 200, "list ?{query}: {}", r.text());
    r.json()
}

/// One task of the caller's, asserting the 200.
fn fetch(user: &Client, id: &Value) -> Response {
    let r = user.get(&format!("/api/tasks/{id}"));
    assert_eq!(r.status, 200, "GET task {id}: {}", r.text());
    r
}

/// Asserts what every error shares (API.md, Transport and Errors): the status, a JSON
/// body with a non-empty `detail`, `Content-Type: application/json` and an
/// `X-Request-Id`. Returns the body.
fn assert_error(r: &Response, status: u16, context: &str) -> Value {
    assert_eq!(r.status, status, "{context}: {}", r.text());
    let content_type = r.header("Content-Type").unwrap_or_default();
    assert_eq!(
        content_type.split(';').next().unwrap_or_default().trim(),
        "application/json",
        "{context}: Content-Type"
    );
    let id = r.header("X-Request-Id").unwrap_or_default();
    assert!(!id.is_empty(), "{context}: no X-Request-Id");
    assert!(!r.detail().trim().is_empty(), "{context}: empty detail");
    r.json()
}

/// Asserts a 400 whose `errors` (if any) are well formed and name every field in `fields`.
fn assert_bad_request(r: &Response, fields: &[&str], context: &str) {
    let body = assert_error(r, 400, context);
    let errors = match &body["errors"] {
        Value::Null => Vec::new(),
        Value::Array(errors) => errors.clone(),
        other => panic!("{context}: errors is not an array: {other}"),
    };
    for error in &errors {
        assert!(
            error["field"].as_str().is_some_and(|f| !f.is_empty()),
            "{context}: an error without a field: {body}"
        );
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{context}: an error without a message: {body}"
        );
    }
    for field in fields {
        assert!(
            errors.iter().any(|e| e["field"] == *field),
            "{context}: no error names {field:?}: {body}"
        );
    }
}

/// `{"title":"x","pad":"aaa..."}` padded to exactly `len` bytes; `pad` is ignored.
fn padded_body(len: usize) -> String {
    let frame = r#"{"title":"x","pad":""}"#.len();
    let body = format!(r#"{{"title":"x","pad":"{}"}}"#, "a".repeat(len - frame));
    assert_eq!(body.len(), len);
    body
}

/// Sends only a request's head and waits at most `patience` for the answer, so that a
/// server waiting for a body that never comes fails the test instead of hanging it.
fn send_head_only(app: &TestApp, head: &str, patience: Duration) -> Response {
    let mut stream = TcpStream::connect(app.addr).expect("connect");
    stream.set_read_timeout(Some(patience)).unwrap();
    stream.write_all(head.as_bytes()).expect("write head");
    let mut reader = BufReader::new(stream);
    if let Err(e) = reader.fill_buf() {
        panic!("no answer within {patience:?} to a head whose body never comes: {e}");
    }
    read_response(&mut reader)
}

/// A raw POST of `body` in HTTP/1.1 chunked framing, in one chunk.
fn post_chunked(app: &TestApp, body: &str) -> Response {
    let head = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        app.addr,
        token("alice")
    );
    let mut raw = head.into_bytes();
    raw.extend_from_slice(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    raw_request(app.addr, &raw)
}

dbtest!(create_refuses_bad_bodies_and_changes_nothing, |app| {
    // Arrange
    let alice = app.user("alice");
    app.create(&alice, r#"{"title": "Already here"}"#);
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("malformed JSON", r#"{"title": "x""#.into(), &[]),
        ("trailing garbage", r#"{"title": "x"} x"#.into(), &[]),
        ("empty body", String::new(), &[]),
        ("white space only", "  \n".into(), &[]),
        ("a JSON array", r#"[{"title": "x"}]"#.into(), &[]),
        ("a JSON string", r#""x""#.into(), &[]),
        ("a JSON number", "5".into(), &[]),
        ("JSON null", "null".into(), &[]),
        (
            "missing title",
            json!({"description": "d"}).to_string(),
            &["title"],
        ),
        ("title null", json!({"title": null}).to_string(), &["title"]),
        ("title empty", json!({"title": ""}).to_string(), &["title"]),
        (
            "title only spaces",
            json!({"title": "   "}).to_string(),
            &["title"],
        ),
        (
            "title only white space",
            json!({"title": "\t\n \r"}).to_string(),
            &["title"],
        ),
        (
            "title 201 ASCII code points",
            json!({"title": "x".repeat(201)}).to_string(),
            &["title"],
        ),
        (
            "title 201 two-byte code points",
            json!({"title": "é".repeat(201)}).to_string(),
            &["title"],
        ),
        (
            "title 201 four-byte code points",
            json!({"title": "😀".repeat(201)}).to_string(),
            &["title"],
        ),
        (
            "title a number",
            json!({"title": 5}).to_string(),
            &["title"],
        ),
        (
            "title an object",
            json!({"title": {"text": "x"}}).to_string(),
            &["title"],
        ),
        (
            "title with U+0000",
            json!({"title": "a\u{0}b"}).to_string(),
            &["title"],
        ),
        (
            "description 1001 two-byte code points",
            json!({"title": "x", "description": "é".repeat(1001)}).to_string(),
            &["description"],
        ),
        (
            "description a number",
            json!({"title": "x", "description": 7}).to_string(),
            &["description"],
        ),
        (
            "description with U+0000",
            json!({"title": "x", "description": "a\u{0}b"}).to_string(),
            &["description"],
        ),
        (
            "completed the string \"true\"",
            json!({"title": "x", "completed": "true"}).to_string(),
            &["completed"],
        ),
        (
            "completed 1",
            json!({"title": "x", "completed": 1}).to_string(),
            &["completed"],
        ),
        (
            "completed null",
            json!({"title": "x", "completed": null}).to_string(),
            &["completed"],
        ),
        (
            "due_date a date-time without an offset",
            json!({"title": "x", "due_date": "2026-01-02T10:00:00"}).to_string(),
            &["due_date"],
        ),
        (
            "due_date not in the calendar",
            json!({"title": "x", "due_date": "2026-02-30"}).to_string(),
            &["due_date"],
        ),
        (
            "due_date not a date",
            json!({"title": "x", "due_date": "not a date"}).to_string(),
            &["due_date"],
        ),
        (
            "due_date a number",
            json!({"title": "x", "due_date": 5}).to_string(),
            &["due_date"],
        ),
        (
            "two bad fields are both named",
            json!({"title": null, "completed": "yes"}).to_string(),
            &["title", "completed"],
        ),
    ];

    for (message, body, fields) in &cases {
        let before = list(&alice, "");

        // Act
        let r = alice.post("/api/tasks", body);

        // Assert
        assert_bad_request(&r, fields, message);
        assert_eq!(
            list(&alice, ""),
            before,
            "{message}: a refused create changed the list"
        );
    }
});

dbtest!(create_accepts_boundary_values, |app| {
    // Arrange
    let alice = app.user("alice");
    let title_200_e = "é".repeat(200);
    let title_200_emoji = "😀".repeat(200);
    let description_1000 = "é".repeat(1000);
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "title of exactly 200 two-byte code points",
            json!({"title": title_200_e}),
            json!({"title": title_200_e}),
        ),
        (
            "title of exactly 200 four-byte code points",
            json!({"title": title_200_emoji}),
            json!({"title": title_200_emoji}),
        ),
        (
            "200 code points once the surrounding white space is trimmed",
            json!({"title": format!(" \t{title_200_e}\n ")}),
            json!({"title": title_200_e}),
        ),
        (
            "surrounding white space trimmed, inner kept",
            json!({"title": "  Buy  milk \t\n"}),
            json!({"title": "Buy  milk"}),
        ),
        (
            "description of exactly 1000 two-byte code points",
            json!({"title": "x", "description": description_1000}),
            json!({"description": description_1000}),
        ),
        (
            "description null",
            json!({"title": "x", "description": null}),
            json!({"description": null}),
        ),
        (
            "due_date a plain date is midnight UTC",
            json!({"title": "x", "due_date": "2026-01-02"}),
            json!({"due_date": "2026-01-02T00:00:00.000000Z"}),
        ),
        (
            "due_date with an offset is stored in UTC",
            json!({"title": "x", "due_date": "2026-01-02T10:00:00+02:00"}),
            json!({"due_date": "2026-01-02T08:00:00.000000Z"}),
        ),
        (
            "due_date null",
            json!({"title": "x", "due_date": null}),
            json!({"due_date": null}),
        ),
        (
            "unknown fields are ignored",
            json!({"title": "x", "priority": [1, 2], "id": 999, "user_id": "bob"}),
            json!({"title": "x", "description": null, "completed": false, "due_date": null}),
        ),
        (
            "completed true on create",
            json!({"title": "x", "completed": true}),
            json!({"completed": true}),
        ),
    ];

    for (message, body, want) in &cases {
        // Act
        let r = alice.post("/api/tasks", &body.to_string());

        // Assert
        assert_eq!(r.status, 201, "{message}: {}", r.text());
        let task = r.json();
        for (key, value) in want.as_object().unwrap() {
            assert_eq!(&task[key], value, "{message}: {key}");
        }
        let mut keys: Vec<&str> = task
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, TASK_KEYS, "{message}: the task's keys");
        assert_ne!(
            task["id"],
            json!(999),
            "{message}: a client-sent id was used"
        );
        assert_eq!(
            fetch(&alice, &task["id"]).json(),
            task,
            "{message}: stored != returned"
        );
    }
});

dbtest!(update_refuses_bad_bodies_and_changes_nothing, |app| {
    // Arrange
    let alice = app.user("alice");
    let task = app.create(
        &alice,
        r#"{"title": "Original", "description": "Keep me", "due_date": "2026-03-04"}"#,
    );
    let path = format!("/api/tasks/{}", task["id"]);
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("malformed JSON", r#"{"title": "x""#.into(), &[]),
        ("empty body", String::new(), &[]),
        ("a JSON array", "[]".into(), &[]),
        ("a JSON string", r#""x""#.into(), &[]),
        ("title null", json!({"title": null}).to_string(), &["title"]),
        (
            "completed null",
            json!({"completed": null}).to_string(),
            &["completed"],
        ),
        ("title empty", json!({"title": ""}).to_string(), &["title"]),
        (
            "title only white space",
            json!({"title": "  \t "}).to_string(),
            &["title"],
        ),
        (
            "title 201 code points",
            json!({"title": "é".repeat(201)}).to_string(),
            &["title"],
        ),
        (
            "title a number",
            json!({"title": 5}).to_string(),
            &["title"],
        ),
        (
            "title with U+0000",
            json!({"title": "a\u{0}b"}).to_string(),
            &["title"],
        ),
        (
            "description 1001 code points",
            json!({"description": "é".repeat(1001)}).to_string(),
            &["description"],
        ),
        (
            "description a number",
            json!({"description": 7}).to_string(),
            &["description"],
        ),
        (
            "description with U+0000",
            json!({"description": "\u{0}"}).to_string(),
            &["description"],
        ),
        (
            "completed the string \"true\"",
            json!({"completed": "true"}).to_string(),
            &["completed"],
        ),
        (
            "completed 1",
            json!({"completed": 1}).to_string(),
            &["completed"],
        ),
        (
            "due_date without an offset",
            json!({"due_date": "2026-01-02T10:00:00"}).to_string(),
            &["due_date"],
        ),
        (
            "due_date not in the calendar",
            json!({"due_date": "2026-02-30"}).to_string(),
            &["due_date"],
        ),
        (
            "due_date a number",
            json!({"due_date": 5}).to_string(),
            &["due_date"],
        ),
        (
            "one bad field spoils the good ones",
            json!({"title": "Renamed", "completed": "true"}).to_string(),
            &["completed"],
        ),
    ];

    for method in UPDATE_METHODS {
        for (message, body, fields) in &cases {
            let context = format!("{method} {message}");
            let before = fetch(&alice, &task["id"]).json();

            // Act
            let r = alice.send(method, &path, Some(body.as_bytes()), &[]);

            // Assert
            assert_bad_request(&r, fields, &context);
            assert_eq!(
                fetch(&alice, &task["id"]).json(),
                before,
                "{context}: the task changed"
            );
        }
    }
});

dbtest!(an_update_changes_named_fields_and_updated_at, |app| {
    // Arrange
    let alice = app.user("alice");
    let original = json!({"title": "Original", "description": "Keep me", "due_date": "2026-03-04"});
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "a new title",
            json!({"title": "Renamed"}),
            json!({"title": "Renamed"}),
        ),
        (
            "a title is trimmed",
            json!({"title": "  Renamed \n"}),
            json!({"title": "Renamed"}),
        ),
        (
            "a new description",
            json!({"description": "New"}),
            json!({"description": "New"}),
        ),
        (
            "description null clears it",
            json!({"description": null}),
            json!({"description": null}),
        ),
        (
            "due_date null clears it",
            json!({"due_date": null}),
            json!({"due_date": null}),
        ),
        (
            "a new due_date is stored in UTC",
            json!({"due_date": "2026-05-06T23:30:00-01:00"}),
            json!({"due_date": "2026-05-07T00:30:00.000000Z"}),
        ),
        (
            "completed true",
            json!({"completed": true}),
            json!({"completed": true}),
        ),
        (
            "naming a field with its current value",
            json!({"title": "Original"}),
            json!({}),
        ),
        (
            "several fields at once, unknown ones ignored",
            json!({"title": "Both", "completed": true, "description": null, "priority": 1}),
            json!({"title": "Both", "completed": true, "description": null}),
        ),
    ];

    for method in UPDATE_METHODS {
        for (message, body, changes) in &cases {
            let context = format!("{method} {message}");
            let before = app.create(&alice, &original.to_string());
            let path = format!("/api/tasks/{}", before["id"]);
            // So that "updated_at is now" and "updated_at is unchanged" cannot coincide.
            sleep(Duration::from_millis(5));

            // Act
            let r = alice.send(method, &path, Some(body.to_string().as_bytes()), &[]);

            // Assert
            assert_eq!(r.status, 200, "{context}: {}", r.text());
            let after = r.json();
            for key in TASK_KEYS {
                match (key, changes.get(key)) {
                    (_, Some(want)) => assert_eq!(&after[key], want, "{context}: {key}"),
                    // Fixed-width RFC 3339 in UTC: string order is time order.
                    ("updated_at", None) => assert!(
                        after[key].as_str().unwrap() > before[key].as_str().unwrap(),
                        "{context}: updated_at {} is not later than {}",
                        after[key],
                        before[key]
                    ),
                    (_, None) => {
                        assert_eq!(after[key], before[key], "{context}: {key} changed")
                    }
                }
            }
            assert_eq!(
                fetch(&alice, &before["id"]).json(),
                after,
                "{context}: stored != returned"
            );
        }
    }
});

dbtest!(an_empty_update_changes_nothing, |app| {
    // Arrange
    let alice = app.user("alice");
    let cases = [
        ("an empty object", "{}"),
        (
            "only unknown fields, which are ignored",
            r#"{"priority": "high"}"#,
        ),
    ];

    for method in UPDATE_METHODS {
        for (message, body) in cases {
            let context = format!("{method} {message}");
            let task = app.create(&alice, r#"{"title": "Same", "due_date": "2026-03-04"}"#);
            let before = fetch(&alice, &task["id"]);
            sleep(Duration::from_millis(5));

            // Act
            let r = alice.send(
                method,
                &format!("/api/tasks/{}", task["id"]),
                Some(body.as_bytes()),
                &[],
            );

            // Assert
            assert_eq!(r.status, 200, "{context}: {}", r.text());
            assert_eq!(
                r.text(),
                before.text(),
                "{context}: the reply differs from the task"
            );
            assert_eq!(
                fetch(&alice, &task["id"]).text(),
                before.text(),
                "{context}: the task changed"
            );
        }
    }
});

dbtest!(put_and_patch_behave_the_same, |app| {
    // Arrange
    let alice = app.user("alice");
    let original = r#"{"title": "Twin", "description": "d", "due_date": "2026-03-04"}"#;
    let by_put = app.create(&alice, original);
    let by_patch = app.create(&alice, original);
    let steps = [
        "{}",
        r#"{"title": "  Renamed  "}"#,
        r#"{"description": null}"#,
        r#"{"completed": true, "due_date": "2026-01-02T10:00:00+02:00"}"#,
        r#"{"due_date": null, "description": "back"}"#,
        r#"{"title": null}"#,
        r#"{"completed": null}"#,
        r#"{"title": ""}"#,
        r#"{"due_date": "2026-02-30"}"#,
        "[1]",
        "{",
    ];
    // What may differ between two tasks given the same updates.
    let comparable = |r: &Response| {
        let mut v = r.json();
        if let Some(task) = v.as_object_mut() {
            for key in ["id", "created_at", "updated_at"] {
                task.remove(key);
            }
        }
        v
    };

    for body in steps {
        // Act
        let put = alice.put(&format!("/api/tasks/{}", by_put["id"]), body);
        let patch = alice.patch(&format!("/api/tasks/{}", by_patch["id"]), body);

        // Assert
        assert_eq!(
            put.status,
            patch.status,
            "{body}: PUT {} vs PATCH {}",
            put.text(),
            patch.text()
        );
        assert_eq!(comparable(&put), comparable(&patch), "{body}");
        assert_eq!(
            comparable(&fetch(&alice, &by_put["id"])),
            comparable(&fetch(&alice, &by_patch["id"])),
            "{body}"
        );
    }
});

dbtest!(a_task_id_that_is_not_an_integer_is_400, |app| {
    // Arrange
    let alice = app.user("alice");
    app.create(&alice, r#"{"title": "Already here"}"#);
    let routes = [
        ("GET", "", None),
        ("PUT", "", Some(r#"{"title": "Renamed"}"#)),
        ("PATCH", "", Some(r#"{"title": "Renamed"}"#)),
        ("DELETE", "", None),
        ("PATCH", "/complete", None),
    ];

    for id in ["abc", "1.5", "1e3", "0x1", "1%20"] {
        for (method, suffix, body) in routes {
            let context = format!("{method} /api/tasks/{id}{suffix}");
            let before = list(&alice, "");

            // Act
            let r = alice.send(
                method,
                &format!("/api/tasks/{id}{suffix}"),
                body.map(str::as_bytes),
                &[],
            );

            // Assert
            assert_bad_request(&r, &[], &context);
            assert_eq!(list(&alice, ""), before, "{context}: the list changed");
        }
    }
});

dbtest!(an_integer_task_id_that_names_no_task_is_404, |app| {
    // Arrange
    let alice = app.user("alice");
    app.create(&alice, r#"{"title": "Already here"}"#);
    let routes = [
        ("GET", "", None),
        ("PUT", "", Some(r#"{"title": "Renamed"}"#)),
        ("PATCH", "", Some(r#"{"title": "Renamed"}"#)),
        ("DELETE", "", None),
        ("PATCH", "/complete", None),
    ];
    let ids = [
        ("beyond 64 bits", "99999999999999999999"),
        ("negative", "-1"),
        ("zero", "0"),
        ("the largest i64, unused", "9223372036854775807"),
    ];

    for (message, id) in ids {
        for (method, suffix, body) in routes {
            let context = format!("{message}: {method} /api/tasks/{id}{suffix}");
            let before = list(&alice, "");

            // Act
            let r = alice.send(
                method,
                &format!("/api/tasks/{id}{suffix}"),
                body.map(str::as_bytes),
                &[],
            );

            // Assert
            assert_error(&r, 404, &context);
            assert_eq!(list(&alice, ""), before, "{context}: the list changed");
        }
    }
});

dbtest!(an_unknown_list_query_value_is_400, |app| {
    // Arrange
    let alice = app.user("alice");
    app.create(&alice, r#"{"title": "Already here"}"#);
    let cases = [
        ("unknown status", "status=done"),
        ("unknown sort", "sort=priority"),
        ("unknown order", "order=up"),
        (
            "one bad value among good ones",
            "status=pending&sort=title&order=up",
        ),
    ];

    for (message, query) in cases {
        // Act
        let r = alice.get(&format!("/api/tasks?{query}"));

        // Assert
        assert_bad_request(&r, &[], &format!("{message} ({query})"));
    }
});

dbtest!(unknown_list_query_parameters_are_ignored, |app| {
    // Arrange
    let alice = app.user("alice");
    app.create(&alice, r#"{"title": "One"}"#);
    app.create(&alice, r#"{"title": "Two", "completed": true}"#);
    let plain = list(&alice, "");

    // Act
    let with_unknown = list(&alice, "page=2&limit=1&priority=high&flag");

    // Assert
    assert_eq!(with_unknown, plain);
});

dbtest!(
    a_repeated_list_query_parameter_counts_with_its_last_value,
    |app| {
        // Arrange
        let alice = app.user("alice");
        app.create(&alice, r#"{"title": "One"}"#);
        app.create(&alice, r#"{"title": "Two", "completed": true}"#);

        // Act
        let last_good = list(&alice, "status=bogus&status=completed");
        let last_bad = alice.get("/api/tasks?status=completed&status=bogus");

        // Assert
        assert_eq!(last_good, list(&alice, "status=completed"));
        assert_eq!(last_good.as_array().unwrap().len(), 1);
        assert_bad_request(&last_bad, &[], "status=completed&status=bogus");
    }
);

dbtest!(the_body_limit_is_65536_bytes, |app| {
    // Arrange
    let alice = app.user("alice");
    let before = list(&alice, "");

    // Act
    let too_large = alice.post("/api/tasks", &padded_body(BODY_LIMIT + 1));

    // Assert
    assert_error(&too_large, 413, "65,537 bytes");
    assert_eq!(list(&alice, ""), before, "a refused body created a task");

    // Act
    let at_limit = alice.post("/api/tasks", &padded_body(BODY_LIMIT));

    // Assert
    assert_eq!(at_limit.status, 201, "65,536 bytes: {}", at_limit.text());
    assert_eq!(at_limit.json()["title"], "x");
    assert_eq!(list(&alice, "").as_array().unwrap().len(), 1);
});

dbtest!(a_chunked_body_obeys_the_same_limit, |app| {
    // Arrange
    let alice = app.user("alice");
    let before = list(&alice, "");

    // Act
    let too_large = post_chunked(&app, &padded_body(BODY_LIMIT + 1));

    // Assert
    assert_error(&too_large, 413, "65,537 chunked bytes");
    assert_eq!(list(&alice, ""), before, "a refused body created a task");

    // Act
    let at_limit = post_chunked(&app, &padded_body(BODY_LIMIT));

    // Assert
    assert_eq!(
        at_limit.status,
        201,
        "65,536 chunked bytes: {}",
        at_limit.text()
    );
});

dbtest!(a_huge_declared_body_is_413_without_waiting_for_it, |app| {
    // Arrange
    let alice = app.user("alice");
    let before = list(&alice, "");
    let head = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
        app.addr,
        token("alice")
    );
    let started = Instant::now();

    // Act
    let r = send_head_only(&app, &head, Duration::from_secs(5));

    // Assert
    assert_error(&r, 413, "Content-Length 10,000,000 with no body");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        list(&alice, ""),
        before,
        "the server still answers, and created nothing"
    );
});
