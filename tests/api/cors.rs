//! CORS as API.md says: preflights without a token, allowed origins echoed on every
//! response (errors included), nothing at all for other origins.

use crate::dbtest;
use crate::helpers::*;

const FRONTEND: &str = "http://localhost:3000";

fn preflight(app: &TestApp, origin: &str) -> Response {
    app.anonymous().send(
        "OPTIONS",
        "/api/tasks",
        None,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
    )
}

dbtest!(
    preflight_from_the_frontend_is_allowed_without_a_token,
    |app| {
        let r = preflight(&app, FRONTEND);
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
        assert_eq!(r.header("Content-Length"), None);
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some(FRONTEND));
        assert_eq!(
            r.header("Access-Control-Allow-Methods"),
            Some("GET, POST, PUT, PATCH, DELETE, OPTIONS")
        );
        assert_eq!(
            r.header("Access-Control-Allow-Headers"),
            Some("Authorization, Content-Type")
        );
        assert_eq!(r.header("Access-Control-Max-Age"), Some("600"));
        assert_eq!(r.header("Vary"), Some("Origin"));
        // The contract fixes a preflight's headers: nothing is exposed on it.
        assert_eq!(r.header("Access-Control-Expose-Headers"), None);
    }
);

dbtest!(preflight_from_another_origin_gets_no_cors_headers, |app| {
    for origin in [
        "http://evil.example",
        "http://localhost:3001",
        "null",
        "http://localhost:3000.evil.example",
    ] {
        let r = preflight(&app, origin);
        assert_eq!(r.status, 204, "{origin}");
        let cors: Vec<_> = r
            .headers
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{origin}: {cors:?}");
    }
});

dbtest!(
    every_response_to_the_frontend_carries_cors_headers_errors_included,
    |app| {
        let origin = [("Origin", FRONTEND)];
        let alice = app.user("alice");
        let cases = [
            ("ok", alice.send("GET", "/api/tasks", None, &origin)),
            (
                "created",
                alice.send("POST", "/api/tasks", Some(br#"{"title":"x"}"#), &origin),
            ),
            (
                "401",
                app.anonymous().send("GET", "/api/tasks", None, &origin),
            ),
            ("400", alice.send("POST", "/api/tasks", Some(b"{"), &origin)),
            ("404", alice.send("GET", "/api/tasks/999", None, &origin)),
            ("405", alice.send("DELETE", "/api/tasks", None, &origin)),
            (
                "health",
                app.anonymous().send("GET", "/health", None, &origin),
            ),
            (
                "OPTIONS without Access-Control-Request-Method",
                app.anonymous().send("OPTIONS", "/api/tasks", None, &origin),
            ),
        ];
        for (what, r) in cases {
            assert_eq!(
                r.header("Access-Control-Allow-Origin"),
                Some(FRONTEND),
                "{what}"
            );
            assert_eq!(r.header("Vary"), Some("Origin"), "{what}");
            // API.md, CORS: else the frontend cannot read a 201's Location, a 503's
            // Retry-After, nor the request id to quote in a bug report.
            assert_eq!(
                r.header("Access-Control-Expose-Headers"),
                Some("Location, Retry-After, X-Request-Id"),
                "{what}"
            );
        }
        let other = alice.send(
            "GET",
            "/api/tasks",
            None,
            &[("Origin", "http://evil.example")],
        );
        assert_eq!(other.status, 200);
        assert_eq!(other.header("Access-Control-Allow-Origin"), None);
        assert_eq!(other.header("Access-Control-Expose-Headers"), None);
        // The answer depends on the origin even when it carries no CORS headers: a shared
        // cache must not give it to the frontend's origin (API.md, CORS).
        assert_eq!(other.header("Vary"), Some("Origin"));
        assert_eq!(alice.get("/api/tasks").header("Vary"), Some("Origin"));
        assert_eq!(
            app.anonymous().get("/health").header("Vary"),
            Some("Origin")
        );
    }
);

dbtest!(cors_origins_can_list_several_origins, |app| {
    let db = TestDb::new(&Engine::Sqlite);
    let custom = TestApp::spawn_with(db, |c| {
        c.cors_origins = vec!["https://app.example".into(), "http://localhost:5173".into()];
    });
    for origin in ["https://app.example", "http://localhost:5173"] {
        assert_eq!(
            preflight(&custom, origin).header("Access-Control-Allow-Origin"),
            Some(origin)
        );
    }
    assert_eq!(
        preflight(&custom, FRONTEND).header("Access-Control-Allow-Origin"),
        None
    );
    assert_eq!(
        preflight(&app, FRONTEND).header("Access-Control-Allow-Origin"),
        Some(FRONTEND)
    );
});
