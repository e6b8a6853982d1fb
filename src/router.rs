//! The hand-written router: one `match` on path segments, then on the method. Every
//! `/api/*` request is authenticated before its route is even looked at, so an unknown
//! `/api` path or a wrong method without a valid token is 401, not 404 or 405.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::{Authenticator, User};
use crate::db::Store;
use crate::error::{Error, Result};
use crate::http::{Reply, Request};
use crate::tasks;

/// What every handler shares: built once at start-up.
pub struct Ctx {
    /// The database.
    pub store: Box<dyn Store>,
    /// The token verifier.
    pub auth: Authenticator,
    /// Users whose row is known to be up to date.
    pub users: UserCache,
}

/// Routes one request to its handler.
pub fn route(ctx: &Ctx, req: &Request) -> Result<Reply> {
    let path = req
        .path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(req.path);
    let segments: Vec<String> = path.split('/').skip(1).map(percent_decode_path).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method;
    match segments.as_slice() {
        ["health"] => match method {
            "GET" => Ok(health(ctx)),
            _ => Err(Error::MethodNotAllowed("GET")),
        },
        ["api", rest @ ..] => {
            let user = ctx.auth.authenticate(req.authorization)?;
            ctx.users.ensure(ctx.store.as_ref(), &user)?;
            route_api(ctx, &user, rest, req)
        }
        _ => Err(Error::NotFound("Not found.")),
    }
}

fn route_api(ctx: &Ctx, user: &User, rest: &[&str], req: &Request) -> Result<Reply> {
    match (rest, req.method) {
        (["tasks"], "GET") => tasks::list(ctx, user, req),
        (["tasks"], "POST") => tasks::create(ctx, user, req),
        (["tasks"], _) => Err(Error::MethodNotAllowed("GET, POST")),
        (["tasks", id], "GET") => tasks::get(ctx, user, id),
        (["tasks", id], "PUT" | "PATCH") => tasks::update(ctx, user, id, req),
        (["tasks", id], "DELETE") => tasks::delete(ctx, user, id),
        (["tasks", _], _) => Err(Error::MethodNotAllowed("GET, PUT, PATCH, DELETE")),
        (["tasks", id, "complete"], "PATCH") => tasks::toggle_complete(ctx, user, id),
        (["tasks", _, "complete"], _) => Err(Error::MethodNotAllowed("PATCH")),
        _ => Err(Error::NotFound("Not found.")),
    }
}

/// `GET /health`: 200 when the database answers, 503 when it does not.
fn health(ctx: &Ctx) -> Reply {
    match ctx.store.ping() {
        Ok(()) => Reply::json(200, br#"{"status":"ok","database":"ok"}"#.to_vec()),
        Err(e) => {
            log::warn!("health check: {e}");
            Reply::json(
                503,
                br#"{"status":"unavailable","database":"unavailable","detail":"The database is unavailable."}"#
                    .to_vec(),
            )
        }
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
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
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
    fn decoding() {
        assert_eq!(percent_decode_query("a+b%3Dc"), "a b=c");
        assert_eq!(percent_decode_path("a+b%2F"), "a+b/");
        assert_eq!(percent_decode_path("%zz%4"), "%zz%4");
        assert_eq!(percent_decode_path("%FF"), "\u{FFFD}");
    }
}
