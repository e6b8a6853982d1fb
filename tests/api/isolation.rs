//! Isolation between users: on every route another user's task is indistinguishable from a
//! missing one and is left untouched, and every list holds only the caller's own tasks.

use serde_json::{json, Value};

use crate::dbtest;
use crate::helpers::*;

/// Every route that names one task: method, path after `/api/tasks/{id}`, body.
const TASK_ROUTES: [(&str, &str, Option<&str>); 7] = [
    ("GET", "", None),
    (
        "PUT",
        "",
        Some(r#"{"title": "Taken over", "completed": true, "description": null}"#),
    ),
    ("PUT", "", Some("{}")),
    (
        "PATCH",
        "",
        Some(r#"{"title": "Taken over", "completed": true, "due_date": null}"#),
    ),
    ("PATCH", "", Some("{}")),
    ("DELETE", "", None),
    ("PATCH", "/complete", None),
];

/// A task's path.
fn task_path(id: &Value) -> String {
    format!("/api/tasks/{id}")
}

/// The caller's task list (`query` without the `?`), asserting the 200.
fn list(user: &Client, query: &str) -> Response {
    let r = user.get(&format!("/api/tasks?{query}"));
    assert_eq!(r.status, 200, "list ?{query}: {}", r.text());
    r
}

/// The ids in a list, in the order given.
fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|t| t["id"].as_i64().expect("an integer id"))
        .collect()
}

/// Everything a client can see of a response except what differs per request anyway
/// (`X-Request-Id` and `Date`): status, the other headers, and the body.
fn observable(r: &Response) -> (u16, Vec<(String, String)>, String) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(name, _)| !["x-request-id", "date"].contains(&name.to_ascii_lowercase().as_str()))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect();
    headers.sort();
    (r.status, headers, r.text())
}

dbtest!(another_users_task_is_a_missing_task, |app| {
    // Arrange
    let alice = app.user("alice");
    let bob = app.user("bob");
    let task = app.create(
        &alice,
        r#"{"title": "Alice's", "description": "private", "due_date": "2026-01-02"}"#,
    );
    app.create(&bob, r#"{"title": "Bob's own"}"#);
    let missing = json!(task["id"].as_i64().unwrap() + 1000);

    for (method, suffix, body) in TASK_ROUTES {
        let context = format!("{method} /api/tasks/{{id}}{suffix} {}", body.unwrap_or(""));
        let alices_before = alice.get(&task_path(&task["id"]));
        assert_eq!(
            alices_before.status,
            200,
            "{context}: {}",
            alices_before.text()
        );
        let list_before = list(&alice, "");

        // Act
        let theirs = bob.send(
            method,
            &format!("{}{suffix}", task_path(&task["id"])),
            body.map(str::as_bytes),
            &[],
        );
        let nobodys = bob.send(
            method,
            &format!("{}{suffix}", task_path(&missing)),
            body.map(str::as_bytes),
            &[],
        );

        // Assert
        assert_eq!(theirs.status, 404, "{context}: {}", theirs.text());
        assert_eq!(
            observable(&theirs),
            observable(&nobodys),
            "{context}: told apart from a missing task"
        );
        assert!(!theirs.detail().is_empty(), "{context}: empty detail");
        assert!(
            theirs.header("X-Request-Id").is_some(),
            "{context}: no X-Request-Id"
        );
        let alices_after = alice.get(&task_path(&task["id"]));
        assert_eq!(
            alices_after.status,
            200,
            "{context}: alice lost her task: {}",
            alices_after.text()
        );
        assert_eq!(
            alices_after.text(),
            alices_before.text(),
            "{context}: alice's task changed"
        );
        assert_eq!(
            list(&alice, "").text(),
            list_before.text(),
            "{context}: alice's list changed"
        );
    }
});

dbtest!(a_new_user_sees_an_empty_list, |app| {
    // Arrange: the spec's scenario, user A creates tasks, then user B logs in.
    let a = app.user("user-a");
    for title in ["Buy milk", "Walk the dog", "Pay rent"] {
        app.create(&a, &json!({"title": title}).to_string());
    }
    app.create(
        &a,
        r#"{"title": "Done already", "completed": true, "due_date": "2026-01-02"}"#,
    );
    let b = app.user("user-b");

    for query in [
        "",
        "status=all",
        "status=pending",
        "status=completed",
        "sort=title",
        "sort=due_date&order=desc",
    ] {
        // Act
        let r = list(&b, query);

        // Assert
        assert_eq!(r.json(), json!([]), "B's list ?{query}");
    }
    assert_eq!(ids(&list(&a, "").json()).len(), 4, "A still has every task");
});

dbtest!(lists_hold_only_the_callers_tasks, |app| {
    // Arrange: interleaved creation, so that ids and times of the two users alternate.
    let users = [
        ("alice", app.user("alice")),
        ("bob", app.user("bob")),
        ("carol", app.user("carol")),
    ];
    let client = |name: &str| &users.iter().find(|(n, _)| *n == name).unwrap().1;
    let bodies = [
        ("alice", json!({"title": "Alpha", "due_date": "2026-03-01"})),
        ("bob", json!({"title": "Able", "due_date": "2026-02-01"})),
        ("alice", json!({"title": "bravo", "completed": true})),
        (
            "bob",
            json!({"title": "baker", "completed": true, "due_date": "2026-01-15"}),
        ),
        (
            "alice",
            json!({"title": "Charlie", "due_date": "2026-01-01", "completed": true}),
        ),
        ("bob", json!({"title": "Alpha"})),
    ];
    let created: Vec<(&str, Value)> = bodies
        .iter()
        .map(|(owner, body)| (*owner, app.create(client(owner), &body.to_string())))
        .collect();
    let own = |name: &str, completed: Option<bool>| -> Vec<Value> {
        created
            .iter()
            .filter(|(owner, task)| {
                *owner == name && completed.is_none_or(|c| task["completed"] == c)
            })
            .map(|(_, task)| task.clone())
            .collect()
    };
    let queries = [
        ("", None),
        ("status=all", None),
        ("status=pending", Some(false)),
        ("status=completed", Some(true)),
        ("sort=title", None),
        ("sort=title&order=desc", None),
        ("sort=due_date", None),
        ("sort=due_date&order=desc", None),
        ("sort=created&order=asc", None),
        ("status=completed&sort=title&order=desc", Some(true)),
        ("status=pending&sort=due_date", Some(false)),
    ];

    for (query, completed) in queries {
        for (name, user) in &users {
            // Act
            let listed = list(user, query).json();

            // Assert
            let mut got = listed.as_array().unwrap().clone();
            let mut want = own(name, completed);
            got.sort_by_key(|t| t["id"].as_i64());
            want.sort_by_key(|t| t["id"].as_i64());
            assert_eq!(got, want, "{name}'s list ?{query}");
        }
    }
});

dbtest!(same_titled_tasks_of_two_users_toggle_independently, |app| {
    // Arrange
    let alice = app.user("alice");
    let bob = app.user("bob");
    let alices = app.create(&alice, r#"{"title": "Buy milk"}"#);
    let bobs = app.create(&bob, r#"{"title": "Buy milk"}"#);
    assert_ne!(alices["id"], bobs["id"]);
    let bobs_before = bob.get(&task_path(&bobs["id"])).text();

    // Act
    let toggled = alice.patch(&format!("{}/complete", task_path(&alices["id"])), "");

    // Assert
    assert_eq!(toggled.status, 200, "{}", toggled.text());
    assert_eq!(toggled.json()["completed"], true);
    assert_eq!(
        bob.get(&task_path(&bobs["id"])).text(),
        bobs_before,
        "bob's task changed"
    );
    let alices_before = alice.get(&task_path(&alices["id"])).text();

    // Act
    for expected in [true, false, true] {
        let r = bob.patch(&format!("{}/complete", task_path(&bobs["id"])), "");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["completed"], expected);
    }

    // Assert
    assert_eq!(
        alice.get(&task_path(&alices["id"])).text(),
        alices_before,
        "alice's task changed"
    );
    assert_eq!(
        ids(&list(&alice, "status=completed").json()),
        [alices["id"].as_i64().unwrap()]
    );
    assert_eq!(
        ids(&list(&bob, "status=completed").json()),
        [bobs["id"].as_i64().unwrap()]
    );
    assert_eq!(list(&alice, "status=pending").json(), json!([]));
    assert_eq!(list(&bob, "status=pending").json(), json!([]));
});

dbtest!(a_sub_differing_only_in_case_is_another_user, |app| {
    // Arrange
    let lower = app.user("alice");
    let upper = app.user("Alice");
    let lowers = app.create(&lower, r#"{"title": "Lower-case alice's"}"#);
    let lowers_before = lower.get(&task_path(&lowers["id"])).text();
    let missing = json!(lowers["id"].as_i64().unwrap() + 1000);

    // Act
    let listed = list(&upper, "");
    let read = upper.get(&task_path(&lowers["id"]));
    let read_missing = upper.get(&task_path(&missing));
    let toggled = upper.patch(&format!("{}/complete", task_path(&lowers["id"])), "");
    let uppers = app.create(&upper, r#"{"title": "Upper-case Alice's"}"#);

    // Assert
    assert_eq!(listed.json(), json!([]), "Alice sees alice's tasks");
    assert_eq!(read.status, 404, "{}", read.text());
    assert_eq!(observable(&read), observable(&read_missing));
    assert_eq!(toggled.status, 404, "{}", toggled.text());
    assert_eq!(
        lower.get(&task_path(&lowers["id"])).text(),
        lowers_before,
        "alice's task changed"
    );
    assert_eq!(
        ids(&list(&lower, "").json()),
        [lowers["id"].as_i64().unwrap()]
    );
    assert_eq!(
        ids(&list(&upper, "").json()),
        [uppers["id"].as_i64().unwrap()]
    );
});
