//! The hand-written router. `ROUTES` is the one list of what the server serves (the
//! OpenAPI document is tested against it); a path is matched against its patterns, then
//! one `match` on pattern and method picks the handler. Every `/api/*` request is
//! authenticated before its route is even looked at, so an unknown `/api` path or a
//! wrong method without a valid token is 401, not 404 or 405.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::auth::{Authenticator, User};
use crate::db::Store;
use crate::error::{Error, Result};
use crate::http::{Reply, Request};
use crate::tasks;

/// Every route: its path pattern (`{task_id}` matches one segment) and its methods, in
/// the form the `Allow` header takes. Every `GET` route answers `HEAD` too (RFC 9110 §9.3.2:
/// the same status and headers, no body), which the OpenAPI document leaves implied.
pub const ROUTES: &[(&str, &str)] = &[
    ("/health", "GET, HEAD"),
    ("/openapi.json", "GET, HEAD"),
    ("/docs", "GET, HEAD"),
    ("/api/tasks", "GET, HEAD, POST"),
    ("/api/tasks/{task_id}", "GET, HEAD, PUT, PATCH, DELETE"),
    ("/api/tasks/{task_id}/complete", "PATCH"),
];

/// The OpenAPI 3.1 document of the API, written once in `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../docs/openapi.json");

/// What every handler shares: built once at start-up.
pub struct Ctx {
    /// The database.
    pub store: Box<dyn Store>,
    /// The token verifier.
    pub auth: Authenticator,
    /// Users whose row is known to be up to date.
    pub users: UserCache,
    /// `/health`'s database check.
    pub health: HealthCheck,
    /// Memory for large reply bodies.
    pub bodies: std::sync::Arc<crate::http::BodyBudget>,
}

/// Routes one request to its handler.
pub fn route(ctx: &Ctx, req: &Request) -> Result<Reply> {
    let path = decode_unreserved(req.path);
    let path = trimmed(&path);
    let user = if path == "/api" || path.starts_with("/api/") {
        let user = ctx.auth.authenticate(req.authorization)?;
        ctx.users.ensure(ctx.store.as_ref(), &user)?;
        Some(user)
    } else {
        None
    };
    let (pattern, allow, id) = resolve(path).ok_or(Error::NotFound("Not found."))?;
    let id = id.as_deref().unwrap_or_default();
    // tiny_http leaves out the body of an answer to HEAD and keeps its Content-Length.
    let method = match req.method {
        "HEAD" => "GET",
        method => method,
    };
    match (pattern, method, &user) {
        ("/health", "GET", _) => Ok(health(ctx)),
        ("/openapi.json", "GET", _) => Ok(Reply::json(200, OPENAPI_JSON.as_bytes().to_vec())),
        ("/docs", "GET", _) => Ok(docs()),
        ("/api/tasks", "GET", Some(user)) => tasks::list(ctx, user, req),
        ("/api/tasks", "POST", Some(user)) => tasks::create(ctx, user, req),
        ("/api/tasks/{task_id}", "GET", Some(user)) => tasks::get(ctx, user, id),
        ("/api/tasks/{task_id}", "PUT" | "PATCH", Some(user)) => tasks::update(ctx, user, id, req),
        ("/api/tasks/{task_id}", "DELETE", Some(user)) => tasks::delete(ctx, user, id),
        ("/api/tasks/{task_id}/complete", "PATCH", Some(user)) => {
            tasks::toggle_complete(ctx, user, id)
        }
        _ => Err(Error::MethodNotAllowed(allow)),
    }
}

/// Whether a request is one a monitor or a reader of the docs must get an answer to even
/// while the database holds every worker: server.rs serves these without waiting for a slot.
/// None runs more than one statement, and that one bounded (`Store::ping`).
pub fn answers_without_waiting(method: &str, path: &str) -> bool {
    // The path as `route` will see it: `/%68ealth` is `/health` there, so here too.
    matches!(method, "GET" | "HEAD")
        && matches!(
            trimmed(&decode_unreserved(path)),
            "/health" | "/openapi.json" | "/docs"
        )
}

/// A path without its trailing slash, if it has more.
fn trimmed(path: &str) -> &str {
    path.strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path)
}

/// The route a path belongs to: its pattern, its methods and the `{task_id}` segment.
fn resolve(path: &str) -> Option<(&'static str, &'static str, Option<String>)> {
    ROUTES.iter().find_map(|&(pattern, allow)| {
        let mut parts = pattern.split('/');
        let mut segments = path.split('/');
        let mut id = None;
        loop {
            match (parts.next(), segments.next()) {
                (None, None) => return Some((pattern, allow, id.map(percent_decode_path))),
                // `/api/tasks//` is no task's path (404), not one with an empty id (400).
                (Some("{task_id}"), Some(segment)) if !segment.is_empty() => id = Some(segment),
                (Some(part), Some(segment)) if part == segment => {}
                _ => return None,
            }
        }
    })
}

/// `GET /docs`: Swagger UI for `/openapi.json`, its assets from a CDN as FastAPI does,
/// so the binary carries only this page.
fn docs() -> Reply {
    const PAGE: &str = include_str!("docs.html");
    Reply {
        status: 200,
        content_type: Some("text/html; charset=utf-8"),
        headers: Vec::new(),
        body: PAGE.as_bytes().to_vec(),
        hold: None,
    }
}

/// `GET /health`: 200 when the database answers, 503 (with `Retry-After`, as every 503 of
/// an unreachable database) when it does not.
fn health(ctx: &Ctx) -> Reply {
    if ctx.health.database_ok(ctx.store.as_ref()) {
        return Reply::json(200, br#"{"status":"ok","database":"ok"}"#.to_vec());
    }
    Reply::json(
        503,
        br#"{"status":"unavailable","database":"unavailable","detail":"The database is unavailable."}"#
            .to_vec(),
    )
    .with_header("Retry-After", "1")
}

/// `/health`'s database check, one at a time: a request that comes while one runs waits for
/// it and takes its outcome, which is news to it (the check ended after the request came).
/// `/health` takes no request slot (server.rs), so without this a flood of it could hold
/// every pooled connection; with it, it holds one.
#[derive(Default)]
pub struct HealthCheck {
    /// When the last check ended, and whether the database answered.
    last: Mutex<Option<(Instant, bool)>>,
}

impl HealthCheck {
    fn database_ok(&self, store: &dyn Store) -> bool {
        let asked = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((ended, ok)) = *last {
            if ended >= asked {
                return ok;
            }
        }
        let ok = store
            .ping()
            .map_err(|e| log::warn!("health check: {e}"))
            .is_ok();
        *last = Some((Instant::now(), ok));
        ok
    }
}

/// Remembers which users' rows match their latest claims, so that the `users` upsert
/// costs one database write per user and change of claims, not one per request.
/// A row deleted behind our back is recreated by `Store::create` when it matters.
pub struct UserCache {
    seen: Mutex<HashMap<String, Claims>>,
}

/// A user's email and name as last written.
type Claims = (Option<String>, Option<String>);

/// Past this many users the cache starts over rather than grow without bound.
const USER_CACHE_CAPACITY: usize = 100_000;

impl UserCache {
    /// An empty cache.
    pub fn new() -> UserCache {
        UserCache {
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Upserts the user's row unless this exact user was already written.
    pub fn ensure(&self, store: &dyn Store, user: &User) -> Result<()> {
        let claims = (user.email.clone(), user.name.clone());
        if self.lock().get(&user.id) == Some(&claims) {
            return Ok(());
        }
        store.upsert_user(user)?;
        let mut seen = self.lock();
        if seen.len() >= USER_CACHE_CAPACITY {
            seen.clear();
        }
        seen.insert(user.id.clone(), claims);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claims>> {
        // A panic elsewhere cannot leave the map inconsistent: every update is one insert.
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for UserCache {
    fn default() -> UserCache {
        UserCache::new()
    }
}

/// A path with its percent-escapes of unreserved characters (letters, digits, `-._~`)
/// decoded: RFC 3986 §6.2.2.2 makes `/api/%74asks` the same path as `/api/tasks`. Other
/// escapes stay, so that `%2F` is never taken for a segment's end. A path with a `%` that
/// starts no escape is left as it is: decoding around it could make a new escape of it
/// (`%%33%31` would become `%31`), which the task id's own decoding would read again.
fn decode_unreserved(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') {
        return path.into();
    }
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match escaped_byte(b, i) {
                None => return path.into(),
                Some(c) if is_unreserved(c) => {
                    out.push(c);
                    i += 3;
                    continue;
                }
                Some(_) => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII bytes were put in place of ASCII escapes: still UTF-8.
    String::from_utf8(out).map_or(path.into(), Into::into)
}

/// The byte that the escape at `b[i]` (a `%`) stands for, if two hex digits follow it.
fn escaped_byte(b: &[u8], i: usize) -> Option<u8> {
    // Two hex digits exactly (RFC 3986 §2.1): `from_str_radix` alone also takes a sign,
    // which made `%+1` the byte 1.
    let digit = |at: usize| char::from(*b.get(at)?).to_digit(16);
    Some((digit(i + 1)? * 16 + digit(i + 2)?) as u8)
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~".contains(&c)
}

/// Percent-decodes a path segment (`%20` → space); `+` stays a plus.
pub fn percent_decode_path(s: &str) -> String {
    decode(s, false)
}

/// Percent-decodes a query-string key or value, where `+` means a space.
pub fn percent_decode_query(s: &str) -> String {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    if !s.contains(['%', '+']) {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], escaped_byte(b, i)) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_patterns_and_captures_the_id() {
        assert_eq!(
            resolve("/api/tasks"),
            Some(("/api/tasks", "GET, HEAD, POST", None))
        );
        let (pattern, _, id) = resolve("/api/tasks/a%20b/complete").unwrap();
        assert_eq!(
            (pattern, id.as_deref()),
            ("/api/tasks/{task_id}/complete", Some("a b"))
        );
        assert_eq!(resolve("/api/tasks/1/2"), None);
        // An empty segment is no id: `/api/tasks//` (one `/` trimmed) and `//complete`.
        assert_eq!(resolve("/api/tasks/"), None);
        assert_eq!(resolve("/api/tasks//complete"), None);
        assert_eq!(resolve("/api"), None);
        assert_eq!(resolve("/nope"), None);
        // Only an origin-form path (from `/`) names a route.
        assert_eq!(resolve("health"), None);
        assert_eq!(resolve("x/health"), None);
        assert_eq!(resolve("http://h/health"), None);
    }

    #[test]
    fn the_embedded_openapi_document_is_json() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    }

    #[test]
    fn unreserved_escapes_are_decoded_before_routing_and_no_others() {
        assert_eq!(decode_unreserved("/api/tasks"), "/api/tasks");
        assert_eq!(decode_unreserved("/api/%74asks/%31"), "/api/tasks/1");
        assert_eq!(decode_unreserved("/%68%65alth"), "/health");
        assert_eq!(decode_unreserved("/a%2Db%2e%5F%7e"), "/a-b._~");
        // Reserved or non-ASCII escapes, and broken ones, stay as they are.
        assert_eq!(decode_unreserved("/api/tasks%2F1"), "/api/tasks%2F1");
        assert_eq!(decode_unreserved("/x%20y%C3%A9"), "/x%20y%C3%A9");
        assert_eq!(decode_unreserved("/é%zz%4"), "/é%zz%4");
        assert_eq!(decode_unreserved("%"), "%");
        // Characters of any length next to escapes.
        assert_eq!(decode_unreserved("/%41é"), "/Aé");
        assert_eq!(decode_unreserved("é%41/ü%2F%7E"), "éA/ü%2F~");
        // A stray `%` leaves the path as it is, so that no new escape is made of it.
        assert_eq!(
            decode_unreserved("/api/tasks/%%33%31"),
            "/api/tasks/%%33%31"
        );
        assert_eq!(decode_unreserved("/%74asks/%"), "/%74asks/%");
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode_query("a+b%3Dc"), "a b=c");
        assert_eq!(percent_decode_path("a+b%2F"), "a+b/");
        assert_eq!(percent_decode_path("%zz%4"), "%zz%4");
        assert_eq!(percent_decode_path("%FF"), "\u{FFFD}");
        // Two hex digits exactly: no sign, no space.
        assert_eq!(percent_decode_path("%+1%-1% 1%1"), "%+1%-1% 1%1");
        assert_eq!(percent_decode_query("a%+1"), "a% 1");
        assert_eq!(decode_unreserved("/%+41"), "/%+41");
    }
}
