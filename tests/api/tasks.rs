//! The task routes of API.md, row by row: statuses, bodies, headers, filters and sorting,
//! and the atomic toggle under concurrency.

use serde_json::{json, Value};

use crate::dbtest;

fn titles(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect()
}

fn assert_timestamp(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    // API.md, Tasks: RFC 3339, UTC, `Z`, six fractional digits.
    assert_eq!(s.len(), 27, "{s}");
    assert!(
        s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.',
        "{s}"
    );
}

dbtest!(create_returns_201_the_task_and_its_location, |app| {
    let alice = app.user("alice");
    let r = alice.post(
        "/api/tasks",
        r#"{"title": "Buy milk", "description": "2 litres"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let task = r.json();
    let id = task["id"].as_i64().expect("integer id");
    assert_eq!(
        r.header("Location"),
        Some(format!("/api/tasks/{id}").as_str())
    );
    assert_eq!(task["title"], "Buy milk");
    assert_eq!(task["description"], "2 litres");
    assert_eq!(task["completed"], false);
    assert_eq!(task["due_date"], Value::Null);
    assert_timestamp(&task["created_at"]);
    assert_eq!(task["created_at"], task["updated_at"]);
    let keys: Vec<&String> = task.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 7, "exactly the contract's fields: {keys:?}");
});

dbtest!(get_returns_the_task, |app| {
    let alice = app.user("alice");
    let created = app.create(&alice, r#"{"title": "Read", "due_date": "2026-03-01"}"#);
    let r = alice.get(&format!("/api/tasks/{}", created["id"]));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), created);
    assert_eq!(created["due_date"], "2026-03-01T00:00:00.000000Z");
});

dbtest!(list_returns_the_users_tasks_newest_first, |app| {
    let alice = app.user("alice");
    assert_eq!(alice.get("/api/tasks").json(), json!([]));
    for title in ["one", "two", "three"] {
        app.create(&alice, &json!({ "title": title }).to_string());
    }
    let r = alice.get("/api/tasks");
    assert_eq!(r.status, 200);
    assert_eq!(titles(&r.json()), ["three", "two", "one"]);
    let r = alice.get("/api/tasks?sort=created&order=asc");
    assert_eq!(titles(&r.json()), ["one", "two", "three"]);
});

dbtest!(list_filters_by_status, |app| {
    let alice = app.user("alice");
    let a = app.create(&alice, r#"{"title": "a"}"#);
    app.create(&alice, r#"{"title": "b", "completed": true}"#);
    app.create(&alice, r#"{"title": "c"}"#);
    alice.patch(&format!("/api/tasks/{}/complete", a["id"]), "");
    let get = |q: &str| titles(&alice.get(&format!("/api/tasks?{q}")).json()).join(",");
    assert_eq!(get("status=all"), "c,b,a");
    assert_eq!(get("status=pending"), "c");
    assert_eq!(get("status=completed"), "b,a");
    assert_eq!(get("status=completed&sort=title"), "a,b");
});

dbtest!(title_sort_ignores_case_and_breaks_ties_on_id, |app| {
    let alice = app.user("alice");
    for title in ["banana", "Apple", "cherry", "apple"] {
        app.create(&alice, &json!({ "title": title }).to_string());
    }
    let get = |q: &str| titles(&alice.get(&format!("/api/tasks?{q}")).json()).join(",");
    assert_eq!(get("sort=title"), "Apple,apple,banana,cherry");
    assert_eq!(get("sort=title&order=desc"), "cherry,banana,apple,Apple");
});

dbtest!(due_date_sort_puts_undated_tasks_last_both_ways, |app| {
    let alice = app.user("alice");
    for (title, due) in [
        ("none1", Value::Null),
        ("late", json!("2026-05-01T12:00:00Z")),
        ("early", json!("2026-01-01")),
        ("none2", Value::Null),
        ("mid", json!("2026-03-01T00:00:00+01:00")),
    ] {
        app.create(
            &alice,
            &json!({ "title": title, "due_date": due }).to_string(),
        );
    }
    let get = |q: &str| titles(&alice.get(&format!("/api/tasks?{q}")).json()).join(",");
    assert_eq!(get("sort=due_date"), "early,mid,late,none1,none2");
    assert_eq!(get("sort=due_date&order=asc"), "early,mid,late,none1,none2");
    assert_eq!(
        get("sort=due_date&order=desc"),
        "late,mid,early,none2,none1"
    );
});

dbtest!(put_and_patch_update_only_the_fields_named, |app| {
    let alice = app.user("alice");
    let t = app.create(
        &alice,
        r#"{"title": "t", "description": "d", "due_date": "2026-01-01"}"#,
    );
    let path = format!("/api/tasks/{}", t["id"]);

    let r = alice.put(&path, r#"{"title": "  new title "}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json();
    assert_eq!(after["title"], "new title");
    assert_eq!(after["description"], "d");
    assert_eq!(after["due_date"], t["due_date"]);
    assert_eq!(after["created_at"], t["created_at"]);
    assert!(after["updated_at"].as_str() >= t["updated_at"].as_str());

    let r = alice.patch(
        &path,
        r#"{"description": null, "completed": true, "due_date": null}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json();
    assert_eq!(after["title"], "new title");
    assert_eq!(after["description"], Value::Null);
    assert_eq!(after["due_date"], Value::Null);
    assert_eq!(after["completed"], true);
    assert_eq!(alice.get(&path).json(), after, "the update was stored");
});

dbtest!(an_empty_update_changes_nothing, |app| {
    let alice = app.user("alice");
    let t = app.create(&alice, r#"{"title": "t"}"#);
    let r = alice.put(&format!("/api/tasks/{}", t["id"]), "{}");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), t, "updated_at included");
});

dbtest!(delete_returns_204_and_the_task_is_gone, |app| {
    let alice = app.user("alice");
    let t = app.create(&alice, r#"{"title": "t"}"#);
    let path = format!("/api/tasks/{}", t["id"]);
    let r = alice.delete(&path);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(r.header("Content-Type"), None);
    // RFC 9110 §8.6: no Content-Length in a 204.
    assert_eq!(r.header("Content-Length"), None);
    assert_eq!(alice.get(&path).status, 404);
    assert_eq!(alice.delete(&path).status, 404);
});

dbtest!(toggle_flips_completed_and_touches_updated_at, |app| {
    let alice = app.user("alice");
    let t = app.create(&alice, r#"{"title": "t"}"#);
    let path = format!("/api/tasks/{}/complete", t["id"]);
    let once = alice.patch(&path, "");
    assert_eq!(once.status, 200);
    assert_eq!(once.json()["completed"], true);
    assert!(once.json()["updated_at"].as_str() >= t["updated_at"].as_str());
    let twice = alice.patch(&path, "");
    assert_eq!(twice.json()["completed"], false);
});

dbtest!(missing_tasks_are_404_on_every_route, |app| {
    let alice = app.user("alice");
    for (method, path) in [
        ("GET", "/api/tasks/4242"),
        ("PUT", "/api/tasks/4242"),
        ("PATCH", "/api/tasks/4242"),
        ("DELETE", "/api/tasks/4242"),
        ("PATCH", "/api/tasks/4242/complete"),
    ] {
        let r = alice.send(method, path, Some(b"{\"title\": \"x\"}"), &[]);
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.detail(), "Task not found.");
    }
});

dbtest!(fifty_concurrent_toggles_flip_fifty_times, |app| {
    let alice = app.user("alice");
    let t = app.create(&alice, r#"{"title": "contended"}"#);
    let path = format!("/api/tasks/{}/complete", t["id"]);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| s.spawn(|| alice.patch(&path, "").status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    // Fifty flips of `false` is `false`; one more makes it true.
    let task = alice.get(&format!("/api/tasks/{}", t["id"])).json();
    assert_eq!(task["completed"], false);
    assert_eq!(alice.patch(&path, "").json()["completed"], true);
});

// updated_at follows the order in which writes to a task take effect: PostgreSQL's now()
// is the transaction's start, before a write waiting on the row's lock gets it.
dbtest!(
    concurrent_writes_to_a_task_are_timestamped_in_the_order_they_took_effect,
    |app| {
        let alice = app.user("alice");
        let t = app.create(&alice, r#"{"title": "contended"}"#);
        let path = format!("/api/tasks/{}", t["id"]);
        let complete = format!("{path}/complete");
        // 30 toggles and 30 title changes at once.
        let answers: Vec<(Option<String>, Value)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..60)
                .map(|i| {
                    let (alice, path, complete) = (&alice, &path, &complete);
                    s.spawn(move || {
                        let title = (i % 2 == 1).then(|| format!("t{i}"));
                        let r = match &title {
                            None => alice.patch(complete, ""),
                            Some(t) => alice.put(path, &json!({ "title": t }).to_string()),
                        };
                        assert_eq!(r.status, 200, "{}", r.text());
                        (title, r.json())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut answers = answers;
        answers.sort_by(|a, b| a.1["updated_at"].as_str().cmp(&b.1["updated_at"].as_str()));
        // Replayed in updated_at order, every answer shows the state its write left.
        let (mut completed, mut title, mut last) = (false, "contended".to_string(), String::new());
        for (sent, task) in &answers {
            match sent {
                None => completed = !completed,
                Some(t) => title = t.clone(),
            }
            let at = task["updated_at"].as_str().unwrap().to_string();
            assert!(at > last, "two writes stamped {at} and {last}");
            assert_eq!(
                (task["completed"].as_bool(), task["title"].as_str()),
                (Some(completed), Some(title.as_str())),
                "the write stamped {at}, replayed in updated_at order"
            );
            last = at;
        }
        assert_eq!(&alice.get(&path).json(), &answers.last().unwrap().1);
    }
);

dbtest!(concurrent_creates_are_all_kept, |app| {
    let alice = app.user("alice");
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let alice = alice.clone();
                let app = &app;
                s.spawn(move || {
                    app.create(&alice, &json!({ "title": format!("t{i}") }).to_string())["id"]
                        .as_i64()
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 40);
    assert_eq!(alice.get("/api/tasks").json().as_array().unwrap().len(), 40);
});

dbtest!(
    due_dates_at_the_ends_of_the_range_come_back_to_the_microsecond,
    |app| {
        let user = app.user("alice");
        // The first and last instants API.md accepts, both sides of 1970 and of 2000
        // (PostgreSQL counts from 2000-01-01), and a leap day.
        let stamps = [
            "0001-01-01T00:00:00.000000Z",
            "1969-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00.000000Z",
            "1999-12-31T23:59:59.999999Z",
            "2000-01-01T00:00:00.000000Z",
            "2000-02-29T12:34:56.000001Z",
            "9999-12-31T23:59:59.999999Z",
        ];
        for stamp in stamps {
            let task = app.create(
                &user,
                &json!({"title": stamp, "due_date": stamp}).to_string(),
            );
            assert_eq!(task["due_date"], stamp, "as created");
            let id = task["id"].as_i64().unwrap();
            assert_eq!(
                user.get(&format!("/api/tasks/{id}")).json()["due_date"],
                stamp,
                "read back"
            );
        }
        let list = user.get("/api/tasks?sort=due_date&order=asc").json();
        let listed: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["due_date"].as_str().unwrap())
            .collect();
        assert_eq!(listed, stamps, "listed in due-date order");
        for t in list.as_array().unwrap() {
            assert_timestamp(&t["created_at"]);
            assert_timestamp(&t["updated_at"]);
        }
    }
);
