//! Authentication as API.md says: what is 401 and with which `WWW-Authenticate`, the two
//! HS256 token shapes Better Auth produces, hostile tokens, and 401 before 404/405.

use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::dbtest;
use crate::helpers::*;

/// Base64url without padding, as JWTs use.
fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token with exactly this header and payload, HMAC-SHA256-signed with `secret`.
fn hs256(header: &Value, payload: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let tag = HS256Key::from_bytes(secret).authentication_tag(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&tag))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed(payload: Value) -> String {
    hs256(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &payload,
        SECRET.as_bytes(),
    )
}

dbtest!(no_token_is_401_with_a_bare_challenge, |app| {
    for headers in [
        vec![],
        vec![("Authorization", "Basic dXNlcjpwYXNz")],
        vec![("Authorization", "Bearer")],
    ] {
        let r = app.anonymous().send("GET", "/api/tasks", None, &headers);
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"), "{headers:?}");
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert!(!r.detail().is_empty());
    }
});

dbtest!(
    a_valid_token_works_and_the_scheme_is_case_insensitive,
    |app| {
        let t = token("alice");
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let auth = format!("{scheme} {t}");
            let r = app
                .anonymous()
                .send("GET", "/api/tasks", None, &[("Authorization", &auth)]);
            assert_eq!(r.status, 200, "{scheme}");
        }
    }
);

dbtest!(hostile_and_broken_tokens_are_401, |app| {
    let exp = now() + 3600;
    let good = signed(json!({"sub": "alice", "exp": exp}));
    let parts: Vec<&str> = good.split('.').collect();
    let cases: Vec<(String, &str)> = vec![
        ("garbage".into(), "not a JWT"),
        ("a.b.c".into(), "non-base64 parts"),
        (
            format!("{}.{}", parts[0], parts[1]),
            "truncated: no signature",
        ),
        (
            format!("{}.{}.{}", parts[0], parts[1], &parts[2][..10]),
            "truncated signature",
        ),
        (format!("{}.{}.", parts[0], parts[1]), "empty signature"),
        (
            hs256(
                &json!({"alg": "HS256"}),
                &json!({"sub": "alice", "exp": exp}),
                b"another-secret-entirely",
            ),
            "wrong secret",
        ),
        (
            format!("{}.{}.", b64(br#"{"alg":"none"}"#), parts[1]),
            "alg none",
        ),
        (
            hs256(
                &json!({"alg": "none"}),
                &json!({"sub": "alice", "exp": exp}),
                SECRET.as_bytes(),
            ),
            "alg none, signed",
        ),
        (
            hs256(
                &json!({"alg": "RS256"}),
                &json!({"sub": "alice", "exp": exp}),
                SECRET.as_bytes(),
            ),
            "RS256 header, HMAC signature",
        ),
        (
            hs256(
                &json!({"alg": "HS512"}),
                &json!({"sub": "alice", "exp": exp}),
                SECRET.as_bytes(),
            ),
            "HS512",
        ),
        (
            signed(json!({"sub": "alice", "exp": now() - 120})),
            "expired beyond the leeway",
        ),
        (signed(json!({"sub": "alice"})), "no exp"),
        (
            signed(json!({"sub": "alice", "exp": exp, "nbf": now() + 300})),
            "not yet valid",
        ),
        (signed(json!({"exp": exp})), "neither sub nor user.id"),
        (signed(json!({"sub": "", "exp": exp})), "empty sub"),
        (
            signed(json!({"sub": "x".repeat(256), "exp": exp})),
            "sub over 255 characters",
        ),
        (signed(json!({"sub": 42, "exp": exp})), "sub not a string"),
        (
            signed(json!({"sub": "alice", "exp": "tomorrow"})),
            "exp not a number",
        ),
        (
            signed(json!({"sub": "alice", "exp": exp, "pad": "x".repeat(9000)})),
            "over 8 KiB",
        ),
        (
            format!(
                "{}.{}.{}",
                parts[0],
                b64(format!(r#"{{"sub":"alice","exp":{exp},"sub":"mallory"}}"#).as_bytes()),
                parts[2]
            ),
            "payload swapped, duplicated keys",
        ),
        (
            hs256(
                &json!({"alg": "HS256"}),
                &Value::String(format!(r#"{{"sub":"alice","exp":{exp},"sub":"mallory"}}"#)),
                SECRET.as_bytes(),
            ),
            "payload is a JSON string",
        ),
    ];
    for (token, why) in &cases {
        assert_invalid_token(&app, token, why);
    }
    // The leeway: expired 30 s ago is still accepted (API.md: 60 s).
    let r = app
        .with_token(&signed(json!({"sub": "alice", "exp": now() - 30})))
        .get("/api/tasks");
    assert_eq!(r.status, 200, "{}", r.text());
});

dbtest!(
    duplicated_claim_keys_never_authenticate_as_someone_else,
    |app| {
        let exp = now() + 3600;
        let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = b64(format!(r#"{{"sub":"alice","exp":{exp},"sub":"mallory"}}"#).as_bytes());
        let input = format!("{header}.{payload}");
        let tag = HS256Key::from_bytes(SECRET.as_bytes()).authentication_tag(input.as_bytes());
        let token = format!("{input}.{}", b64(&tag));
        let mallory = app.user("mallory");
        app.create(&mallory, r#"{"title": "mallory's"}"#);
        let r = app.with_token(&token).get("/api/tasks");
        // Either refused, or it is not mallory: never an ambiguous identity.
        assert_eq!(
            r.status,
            401,
            "a token with two subs must be refused: {}",
            r.text()
        );
    }
);

dbtest!(better_auth_session_cache_tokens_are_accepted, |app| {
    // The shape of Better Auth's `session_data` cookie with the "jwt" strategy: no `sub`.
    let token = signed(json!({
        "session": {"id": "s1", "userId": "ba-user-1", "token": "raw-session-token", "expiresAt": "2030-01-01T00:00:00.000Z"},
        "user": {"id": "ba-user-1", "email": "ba@example.com", "name": "BA", "emailVerified": false},
        "iat": now(),
        "exp": now() + 300,
    }));
    let cookie_user = app.with_token(&token);
    let task = app.create(&cookie_user, r#"{"title": "from the cookie"}"#);
    // The same user id through the `sub` path sees the same task.
    let r = app
        .user("ba-user-1")
        .get(&format!("/api/tasks/{}", task["id"]));
    assert_eq!(r.status, 200);
});

dbtest!(issuer_and_audience_are_enforced_when_configured, |app| {
    let db = TestDb::new(&Engine::Sqlite);
    let strict = TestApp::spawn_with(db, |c| {
        c.issuer = Some("https://auth.example".into());
        c.audience = Some("todo-api".into());
    });
    let exp = now() + 600;
    let ok =
        signed(json!({"sub": "a", "exp": exp, "iss": "https://auth.example", "aud": "todo-api"}));
    assert_eq!(strict.with_token(&ok).get("/api/tasks").status, 200);
    for (payload, why) in [
        (json!({"sub": "a", "exp": exp, "aud": "todo-api"}), "no iss"),
        (
            json!({"sub": "a", "exp": exp, "iss": "https://evil.example", "aud": "todo-api"}),
            "wrong iss",
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": "https://auth.example", "aud": "other"}),
            "wrong aud",
        ),
    ] {
        assert_invalid_token(&strict, &signed(payload), why);
    }
    // The default server (no issuer configured) does not care.
    assert_eq!(
        app.with_token(&signed(json!({"sub": "a", "exp": exp, "iss": "x"})))
            .get("/api/tasks")
            .status,
        200
    );
});

dbtest!(
    two_authorization_headers_are_401_and_change_nothing,
    |app| {
        // RFC 9110 §11.6.2: not a list. A proxy in front may have read the other one, so
        // neither user is served (the first one used to be).
        let (alice, bob) = (app.user("alice"), app.user("bob"));
        app.create(&bob, r#"{"title": "bob's"}"#);
        let alice_header = format!("Bearer {}", alice.token.as_deref().unwrap());
        let twice = [("Authorization", alice_header.as_str())];
        let r = bob.send("GET", "/api/tasks", None, &twice);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some(r#"Bearer error="invalid_token""#)
        );
        assert!(!r.text().contains("bob's"));
        let r = bob.send("POST", "/api/tasks", Some(br#"{"title": "x"}"#), &twice);
        assert_eq!(r.status, 401);
        assert_eq!(bob.get("/api/tasks").json().as_array().unwrap().len(), 1);
        assert_eq!(alice.get("/api/tasks").json(), json!([]));
        // The same token twice is as ambiguous.
        let bob_header = format!("Bearer {}", bob.token.as_deref().unwrap());
        let r = bob.send(
            "GET",
            "/api/tasks",
            None,
            &[("Authorization", bob_header.as_str())],
        );
        assert_eq!(r.status, 401);
    }
);

dbtest!(authentication_comes_before_routing, |app| {
    for (method, path) in [
        ("GET", "/api/nope"),
        ("DELETE", "/api/tasks"),
        ("POST", "/api/tasks/1"),
        ("GET", "/api/tasks/abc"),
        ("BREW", "/api/tasks"),
    ] {
        let r = app.anonymous().send(method, path, None, &[]);
        assert_eq!(r.status, 401, "{method} {path}");
    }
    let alice = app.user("alice");
    assert_eq!(alice.get("/api/nope").status, 404);
    let r = alice.send("DELETE", "/api/tasks", None, &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD, POST, OPTIONS"));
    let r = alice.send("BREW", "/api/tasks/1", None, &[]);
    assert_eq!(r.status, 405, "unknown methods are 405, never 501");
    assert_eq!(
        r.header("Allow"),
        Some("GET, HEAD, PUT, PATCH, DELETE, OPTIONS")
    );
    let r = alice.send("GET", "/api/tasks/1/complete", None, &[]);
    assert_eq!((r.status, r.header("Allow")), (405, Some("PATCH, OPTIONS")));
    // Methods are case-sensitive (RFC 9110 §9.1): `delete` is not DELETE, and changes nothing.
    let id = app.create(&alice, r#"{"title": "kept"}"#)["id"].clone();
    let path = format!("/api/tasks/{id}");
    for method in ["delete", "Delete", "patch"] {
        let r = alice.send(method, &path, None, &[]);
        assert_eq!(r.status, 405, "{method}: {}", r.text());
        assert_eq!(
            r.header("Allow"),
            Some("GET, HEAD, PUT, PATCH, DELETE, OPTIONS")
        );
    }
    assert_eq!(alice.get(&path).status, 200);
    let r = app.anonymous().send("get", "/health", None, &[]);
    assert_eq!(
        (r.status, r.header("Allow")),
        (405, Some("GET, HEAD, OPTIONS"))
    );
    // Nor is `head` HEAD: its 405 has a body, which the client can read.
    let r = app.anonymous().send("head", "/health", None, &[]);
    assert_eq!(r.status, 405);
    assert!(r.detail().contains("not allowed"), "{}", r.text());
});

dbtest!(the_users_row_follows_the_claims, |app| {
    let Some(mut db) = app.db.postgres_client() else {
        return;
    };
    let exp = now() + 600;
    let first = signed(json!({"sub": "u1", "exp": exp, "email": "one@example.com", "name": "One"}));
    assert_eq!(app.with_token(&first).get("/api/tasks").status, 200);
    let renamed =
        signed(json!({"sub": "u1", "exp": exp, "email": "one@example.com", "name": "Uno"}));
    assert_eq!(app.with_token(&renamed).get("/api/tasks").status, 200);
    let row = db
        .query_one("select email, name from users where id = 'u1'", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("one@example.com".into(), "Uno".into())
    );
    // Someone else claiming the same email is not a 5xx.
    let clash = signed(json!({"sub": "u2", "exp": exp, "email": "one@example.com"}));
    let r = app
        .with_token(&clash)
        .post("/api/tasks", r#"{"title": "x"}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    // A users row deleted behind the server's back comes back on the next create.
    db.batch_execute("delete from users where id = 'u1'")
        .unwrap();
    let r = app
        .with_token(&renamed)
        .post("/api/tasks", r#"{"title": "y"}"#);
    assert_eq!(r.status, 201, "{}", r.text());
});
