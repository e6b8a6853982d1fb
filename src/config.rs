//! Configuration, read once at start-up from the environment and a `.env` file, and
//! validated then: nothing reads the environment later. Tests build `Config` directly.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Where the tasks live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded SQLite file at this path.
    Sqlite(String),
    /// A `postgres://` / `postgresql://` URL, passed on as given.
    Postgres(String),
}

/// The server's whole configuration.
#[derive(Clone)]
pub struct Config {
    /// The database to use.
    pub database: Database,
    /// The HS256 secret shared with Better Auth.
    pub secret: Vec<u8>,
    /// True when no secret was configured and `secret` was made up for this run.
    pub secret_is_generated: bool,
    /// Better Auth's base URL (`BETTER_AUTH_URL`).
    pub better_auth_url: String,
    /// Where the JWKS is fetched from.
    pub jwks_url: String,
    /// The required `iss` of HS256 tokens, if any.
    pub issuer: Option<String>,
    /// The required `aud` of HS256 tokens, if any.
    pub audience: Option<String>,
    /// How long a JWKS fetch's answer is taken as it is (`jwks::REFETCH_INTERVAL`): its keys
    /// are used without asking again, and a `kid` it did not have stays refused (401) while
    /// no other fetch may start (fetches are a second apart at least).
    pub jwks_refetch: std::time::Duration,
    /// Origins allowed by CORS, each as `scheme://host[:port]`.
    pub cors_origins: Vec<String>,
    /// The address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Request worker threads.
    pub workers: usize,
    /// Pooled database connections.
    pub pool_size: u32,
    /// Prepare PostgreSQL statements once per pooled connection (`DB_STATEMENT_CACHE`, on by
    /// default). Behind a transaction-mode pooler (Neon's `-pooler` endpoint) the store finds
    /// out on its first missing statement and sends every statement unnamed from then on.
    pub statement_cache: bool,
    /// Bytes that large reply bodies may hold at once (`http::BodyBudget`); not read from
    /// the environment.
    pub body_budget: usize,
}

impl std::fmt::Debug for Config {
    // By hand, so that the secret can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database", &crate::db::redact(&self.database))
            .field("secret", &"<redacted>")
            .field(
                "better_auth_url",
                &crate::jwks::without_userinfo(&self.better_auth_url),
            )
            .field("jwks_url", &crate::jwks::without_userinfo(&self.jwks_url))
            .field("cors_origins", &self.cors_origins)
            .field("listen", &self.listen)
            .field("workers", &self.workers)
            .field("pool_size", &self.pool_size)
            .field("statement_cache", &self.statement_cache)
            .finish()
    }
}

/// The shortest HS256 secret accepted.
pub const MIN_SECRET_BYTES: usize = 12;

/// The default Better Auth location, as in the spec.
pub const DEFAULT_BETTER_AUTH_URL: &str = "http://localhost:3000";

impl Config {
    /// Reads the process environment, falling back to `./.env` for unset variables.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(env_or_dotenv())
    }

    /// Builds the configuration from any key lookup; empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |key: &str| {
            get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let database = match get("DATABASE_URL") {
            None => Database::Sqlite("todo.db".into()),
            Some(url) => parse_database_url(&url, get("PGSSLROOTCERT"))?,
        };
        let (secret, secret_is_generated) = match get("BETTER_AUTH_SECRET") {
            // jwt-simple refuses HMAC keys under 12 bytes; Better Auth asks for 32.
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(format!(
                    "BETTER_AUTH_SECRET is {} bytes long; it must be at least {MIN_SECRET_BYTES} \
                     (generate one with: openssl rand -base64 32)",
                    s.len()
                ))
            }
            Some(s) => (s.into_bytes(), false),
            None => (crate::auth::random_secret(), true),
        };
        let better_auth_url = get("BETTER_AUTH_URL")
            .unwrap_or_else(|| DEFAULT_BETTER_AUTH_URL.into())
            .trim_end_matches('/')
            .to_string();
        check_url("BETTER_AUTH_URL", &better_auth_url)?;
        let default_origin = origin_of(&better_auth_url)
            .ok_or_else(|| "BETTER_AUTH_URL is not an http(s) URL".to_string())?;
        let jwks_url =
            get("JWKS_URL").unwrap_or_else(|| format!("{better_auth_url}/api/auth/jwks"));
        check_url("JWKS_URL", &jwks_url)?;
        let cors_origins = match get("CORS_ORIGINS") {
            None => vec![default_origin],
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(cors_origin)
                .collect::<Result<_, _>>()?,
        };

        let port: u16 = parse_number("PORT", get("PORT"), 8000, "a whole number from 0 to 65535")?;
        let listen = listen_address(&get("HOST").unwrap_or_else(|| "127.0.0.1".into()), port)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Handlers spend most of their time waiting on the database, so a few threads per
        // core keep the cores busy; bench/README.md has the measurements behind the factor.
        let workers: usize = parse_number(
            "WORKERS",
            get("WORKERS"),
            (cores * 4).clamp(4, 64),
            "a whole number",
        )?;
        // One connection per worker: a worker never holds two, so none ever waits on another.
        let pool_size: u32 = parse_number(
            "DB_POOL_SIZE",
            get("DB_POOL_SIZE"),
            workers as u32,
            "a whole number",
        )?;
        if workers == 0 || pool_size == 0 {
            return Err("WORKERS and DB_POOL_SIZE must be at least 1".into());
        }

        Ok(Config {
            database,
            secret,
            secret_is_generated,
            better_auth_url,
            jwks_url,
            issuer: get("JWT_ISSUER"),
            audience: get("JWT_AUDIENCE"),
            jwks_refetch: crate::jwks::REFETCH_INTERVAL,
            cors_origins,
            listen,
            workers,
            pool_size,
            statement_cache: parse_bool("DB_STATEMENT_CACHE", get("DB_STATEMENT_CACHE"), true)?,
            body_budget: crate::http::BODY_BUDGET_BYTES,
        })
    }
}

fn parse_bool(name: &str, value: Option<String>, default: bool) -> Result<bool, String> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(format!("{name} must be true or false, not {other:?}")),
    }
}

/// `name`'s value as a `T`, or `default` when unset. `expected` says what a `T` is in the
/// error, with its range where the type's bounds are the variable's own (`PORT=99999` is
/// out of range, not misspelt).
fn parse_number<T: std::str::FromStr>(
    name: &str,
    value: Option<String>,
    default: T,
    expected: &str,
) -> Result<T, String> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name} must be {expected}, not {v:?}")),
    }
}

/// `HOST`: an IP address, or a name such as `localhost` (as uvicorn takes), resolved once
/// here to its first address.
fn listen_address(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let bad = || {
        format!("HOST={host} is neither an IP address (such as 127.0.0.1 or 0.0.0.0) nor a name that resolves")
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// `PGSSLROOTCERT`, like libpq's, names a CA file for PostgreSQL when the URL names none; it
/// goes into the URL as `sslrootcert=`, the one place the connection reads it from.
fn parse_database_url(url: &str, root_cert: Option<String>) -> Result<Database, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let names_one = query.split('&').any(|p| p.starts_with("sslrootcert="));
        Ok(Database::Postgres(match root_cert {
            Some(path) if !names_one => {
                let joint = if query.is_empty() { '?' } else { '&' };
                format!("{url}{joint}sslrootcert={}", percent_encode(&path))
            }
            _ => url.to_string(),
        }))
    } else if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        // sqlx's `sqlite://data.db?mode=rwc` asks for what the server does anyway (create
        // the file if missing); any other parameter would be taken for part of the file name.
        let path = match path.split_once('?') {
            Some((path, "mode=rwc")) => path,
            Some(_) => {
                return Err(format!(
                    "DATABASE_URL={url}: SQLite URLs take no parameters (other than \
                     mode=rwc): write sqlite:PATH"
                ))
            }
            None => path,
        };
        if path.is_empty() || path == ":memory:" {
            // Each pooled connection would get its own empty in-memory database.
            return Err("DATABASE_URL=sqlite: needs a file path, such as sqlite:todo.db".into());
        }
        if url.starts_with("sqlite:///") {
            // SQLAlchemy (FastAPI's tutorials: `sqlite:///./todo.db`) reads a relative path
            // there, sqlx an absolute one: a guess either way could put the data where the
            // operator does not keep it (inside a container, outside its volume).
            return Err(format!(
                "DATABASE_URL={url} is ambiguous (SQLAlchemy reads the path after sqlite:/// \
                 as relative, sqlx as absolute): write sqlite:{rel} for a path relative to \
                 the working directory, or sqlite:/{rel} for an absolute one",
                rel = path.trim_start_matches('/')
            ));
        }
        Ok(Database::Sqlite(path.to_string()))
    } else {
        Err("DATABASE_URL must start with postgres://, postgresql:// or sqlite:".into())
    }
}

/// Refuses a URL that is not `http(s)://host[:port]...` or that holds a user name or
/// password (which nothing here sends, and which would reach the log): the error does not
/// repeat the URL.
fn check_url(name: &str, url: &str) -> Result<(), String> {
    let refused = || {
        format!(
            "{name} must be http(s)://host[:port][/path], without a user name or password \
             (percent-encode any / ? # @ in it)"
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(refused)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(refused());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let port_ok = split_port(authority)
        .1
        .is_none_or(|port| port.bytes().all(|b| b.is_ascii_digit()));
    // An `@` anywhere before the query, not only in the authority: with a raw `/` in the
    // password (`user:1234/pw@host`), the authority ends inside it and looks like a host.
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    if authority.is_empty() || path.contains('@') || !port_ok {
        return Err(refused());
    }
    Ok(())
}

/// One `CORS_ORIGINS` entry, as browsers send it in `Origin` (`https://App.example.com:443`
/// would never match `https://app.example.com`). An entry that no `Origin` header can ever
/// equal is refused: accepted, it would leave the frontend blocked with nothing in the log
/// to say why (API.md, CORS: origins match exactly). `null` is what a sandboxed page or a
/// `file:` page sends, so it is kept as written.
fn cors_origin(entry: &str) -> Result<String, String> {
    const EXAMPLE: &str = "such as http://localhost:3000 or https://app.example.com";
    if entry.eq_ignore_ascii_case("null") {
        return Ok("null".into());
    }
    // First, and the entry not repeated: what is before an `@` may be a password.
    if entry.contains('@') {
        return Err(format!(
            "CORS_ORIGINS: an entry holds a user name or password (an @); \
             list origins only, {EXAMPLE}"
        ));
    }
    if entry.contains('*') {
        return Err(format!(
            "CORS_ORIGINS: {entry:?} is a wildcard, which is not supported: \
             list each allowed origin, {EXAMPLE}"
        ));
    }
    let refused = |why: &str| {
        format!(
            "CORS_ORIGINS: {entry:?} {why}; each entry must be an origin, \
             scheme://host[:port] with an http or https scheme and nothing after it, {EXAMPLE}"
        )
    };
    origin_shape(entry).map_err(refused)?;
    origin_of(entry).ok_or_else(|| refused("is not an http(s) origin"))
}

/// Whether `entry` has the shape of a serialized origin, and if not, what is wrong.
fn origin_shape(entry: &str) -> Result<(), &'static str> {
    let (scheme, authority) = entry
        .split_once("://")
        .ok_or("has no http:// or https://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err("is not http or https");
    }
    // `http://localhost:3000/` is how an origin often gets copied from the address bar.
    let authority = authority.trim_end_matches('/');
    if authority.contains(['/', '?', '#']) {
        return Err("has a path, query or fragment, which Origin never has");
    }
    let (host, port) = split_port(authority);
    if !valid_host(host) {
        return Err("has no valid host name or IP address");
    }
    // Browsers write the port as a plain number: `:03000` or `:+3000` would never match.
    let canonical = |p: &str| p.parse::<u16>().is_ok_and(|n| n > 0 && n.to_string() == p);
    if port.is_some_and(|p| !canonical(p)) {
        return Err("has a port that is not a number from 1 to 65535 without leading zeros");
    }
    Ok(())
}

/// `host` and `port` of `host[:port]`, the host of an IPv6 literal in its brackets.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    match authority[host_end..].find(':') {
        Some(i) => (
            &authority[..host_end + i],
            Some(&authority[host_end + i + 1..]),
        ),
        None => (authority, None),
    }
}

/// A name or IPv4 address of letters, digits, `-`, `_` and `.` (an international name in
/// its `xn--` form, as browsers send it), or a bracketed IPv6 literal.
fn valid_host(host: &str) -> bool {
    if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return literal.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The origin of an http(s) URL as browsers serialize it in `Origin` (RFC 6454):
/// `scheme://host[:port]`, scheme and host in lower case, without user info and without the
/// scheme's default port. `http://user:pw@App.Example.com:80/x` is `http://app.example.com`.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_ascii_lowercase();
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// The process environment, falling back to `./.env` (read now, once) for unset variables.
pub fn env_or_dotenv() -> impl Fn(&str) -> Option<String> {
    let dotenv = match std::fs::read_to_string(".env") {
        Ok(text) => parse_dotenv(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
        // Not UTF-8 (PowerShell 5 writes UTF-16), unreadable: said, not silently skipped.
        Err(e) => {
            eprintln!("warning: ./.env is not read ({e}): save it as UTF-8");
            HashMap::new()
        }
    };
    move |key| std::env::var(key).ok().or_else(|| dotenv.get(key).cloned())
}

/// Every byte but `A-Z a-z 0-9 - . _ ~ /` as `%XX`, for a value in a URL's query.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Parses `KEY=VALUE` lines as the `dotenv` package (v16) does: Next.js reads the frontend's
/// `.env` with it, and the two must agree on a shared `BETTER_AUTH_SECRET`. `#` comment lines
/// and `export ` prefixes; a value in `"`, `'` or `` ` `` quotes followed by nothing but
/// a `#` comment is what is between them (`\"` does not end a `"` value; in one, `\n` and
/// `\r` are a line feed and a carriage return); any other value ends at its first `#`, is
/// trimmed, and loses one pair of matching outer quotes. Values span one line (`dotenv`
/// lets a quoted one span several).
pub fn parse_dotenv(text: &str) -> HashMap<String, String> {
    // A byte order mark (Windows PowerShell 5 writes one) is not part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            Some((key.trim().to_string(), dotenv_value(value)))
        })
        .collect()
}

const QUOTES: [char; 3] = ['\'', '"', '`'];

fn dotenv_value(raw: &str) -> String {
    let raw = raw.trim_start();
    let quoted = QUOTES.iter().find_map(|&quote| {
        let rest = raw.strip_prefix(quote)?;
        closing_quotes(rest, quote)
            .into_iter()
            .rev()
            .find_map(|end| {
                let after = rest[end + 1..].trim_start();
                (after.is_empty() || after.starts_with('#')).then(|| &rest[..end])
            })
    });
    let value = quoted.unwrap_or_else(|| {
        let unquoted = raw.split('#').next().unwrap_or_default().trim();
        QUOTES
            .iter()
            .find_map(|&q| unquoted.strip_prefix(q)?.strip_suffix(q))
            .unwrap_or(unquoted)
    });
    if raw.starts_with('"') {
        value.replace("\\n", "\n").replace("\\r", "\r")
    } else {
        value.to_string()
    }
}

/// Where `quote` may close a value in `text`, as dotenv's `(?:\\"|[^"])*"` lets it: each
/// `quote` up to and including the first one not right after a backslash (a `\"` may still
/// close the value when no later quote can).
fn closing_quotes(text: &str, quote: char) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut after_backslash = false;
    for (i, c) in text.char_indices() {
        if c == quote {
            ends.push(i);
            if !after_backslash {
                break;
            }
        }
        after_backslash = c == '\\';
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database, Database::Sqlite("todo.db".into()));
        assert!(c.secret_is_generated);
        assert_eq!(c.secret.len(), 32);
        assert_eq!(c.cors_origins, ["http://localhost:3000"]);
        assert_eq!(c.jwks_url, "http://localhost:3000/api/auth/jwks");
        assert_eq!(c.listen, "127.0.0.1:8000".parse().unwrap());
        assert!(c.workers >= 4);
        assert!(c.statement_cache);
        assert_eq!(c.pool_size as usize, c.workers);
    }

    #[test]
    fn reads_every_variable() {
        let c = config(&[
            (
                "DATABASE_URL",
                "postgresql://u:p@db.example/neondb?sslmode=require",
            ),
            ("BETTER_AUTH_SECRET", "s3cret-s3cret"),
            ("BETTER_AUTH_URL", "https://app.example.com/"),
            ("CORS_ORIGINS", "https://a.example, http://localhost:3000/"),
            ("JWT_ISSUER", "https://app.example.com"),
            ("HOST", "0.0.0.0"),
            ("PORT", "9000"),
            ("WORKERS", "3"),
            ("DB_POOL_SIZE", "2"),
            ("DB_STATEMENT_CACHE", "false"),
        ])
        .unwrap();
        assert!(matches!(c.database, Database::Postgres(_)));
        assert_eq!(c.secret, b"s3cret-s3cret");
        assert!(!c.secret_is_generated);
        assert_eq!(c.jwks_url, "https://app.example.com/api/auth/jwks");
        assert_eq!(
            c.cors_origins,
            ["https://a.example", "http://localhost:3000"]
        );
        assert_eq!(c.issuer.as_deref(), Some("https://app.example.com"));
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!((c.workers, c.pool_size), (3, 2));
        assert!(!c.statement_cache);
    }

    #[test]
    fn host_may_be_a_name() {
        let listen = |host: &str| config(&[("HOST", host), ("PORT", "9000")]).map(|c| c.listen);
        let local = listen("localhost").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 9000, "{local}");
        assert_eq!(listen("::1").unwrap(), "[::1]:9000".parse().unwrap());
        assert_eq!(listen("0.0.0.0").unwrap(), "0.0.0.0:9000".parse().unwrap());
        let err = listen("no-such-host.invalid").unwrap_err();
        assert!(err.contains("HOST=no-such-host.invalid"), "{err}");
    }

    #[test]
    fn pgsslrootcert_names_the_ca_when_the_url_does_not() {
        let database = |url: &str| {
            config(&[("DATABASE_URL", url), ("PGSSLROOTCERT", "/etc/my ca&1.pem")])
                .unwrap()
                .database
        };
        let pg = |url: &str| Database::Postgres(url.into());
        assert_eq!(
            database("postgres://h/db"),
            pg("postgres://h/db?sslrootcert=/etc/my%20ca%261.pem")
        );
        assert_eq!(
            database("postgres://h/db?sslmode=require"),
            pg("postgres://h/db?sslmode=require&sslrootcert=/etc/my%20ca%261.pem")
        );
        let own = "postgres://h/db?sslmode=require&sslrootcert=/own.pem";
        assert_eq!(database(own), pg(own), "the URL's own comes first");
        assert_eq!(database("sqlite:t.db"), Database::Sqlite("t.db".into()));
        assert_eq!(
            database("sqlite:/d/t.db"),
            Database::Sqlite("/d/t.db".into())
        );
        assert_eq!(database("sqlite://t.db"), Database::Sqlite("t.db".into()));
        assert_eq!(
            database("sqlite://t.db?mode=rwc"),
            Database::Sqlite("t.db".into())
        );
    }

    #[test]
    fn sqlite_urls_that_would_be_misread_are_refused() {
        let err = |url: &str| config(&[("DATABASE_URL", url)]).unwrap_err();
        let e = err("sqlite:///./todo.db");
        assert!(
            e.contains("ambiguous") && e.contains("sqlite:./todo.db"),
            "{e}"
        );
        let e = err("sqlite:////data/todo.db");
        assert!(e.contains("sqlite:/data/todo.db"), "{e}");
        let e = err("sqlite:t.db?cache=shared");
        assert!(e.contains("no parameters"), "{e}");
    }

    #[test]
    fn refuses_bad_values_with_a_reason() {
        for (key, value) in [
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_URL", "sqlite::memory:"),
            ("PORT", "eighty"),
            ("HOST", "localhost:80"),
            ("WORKERS", "0"),
            ("BETTER_AUTH_URL", "ftp://x"),
            ("BETTER_AUTH_SECRET", "short"),
            ("DB_STATEMENT_CACHE", "maybe"),
            ("CORS_ORIGINS", "*"),
        ] {
            assert!(
                config(&[(key, value)]).is_err(),
                "{key}={value} was accepted"
            );
        }
    }

    #[test]
    fn port_errors_say_the_range() {
        for value in ["99999", "65536", "-1", "eighty", "80.0"] {
            let err = config(&[("PORT", value)]).unwrap_err();
            assert_eq!(
                err,
                format!("PORT must be a whole number from 0 to 65535, not {value:?}")
            );
        }
        assert_eq!(config(&[("PORT", "65535")]).unwrap().listen.port(), 65535);
        let err = config(&[("WORKERS", "many")]).unwrap_err();
        assert_eq!(err, r#"WORKERS must be a whole number, not "many""#);
    }

    #[test]
    fn dotenv_handles_quotes_comments_and_export() {
        let env = parse_dotenv("# c\nexport A=1\nB=\"two words\"\nC='x=y'\n\nbad line\n");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("two words"));
        assert_eq!(env.get("C").map(String::as_str), Some("x=y"));
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn origins_are_as_browsers_send_them() {
        for (url, origin) in [
            ("http://localhost:3000", "http://localhost:3000"),
            ("http://localhost:80", "http://localhost"),
            (
                "https://App.Example.com:443/api/auth",
                "https://app.example.com",
            ),
            (
                "HTTPS://app.example.com:8443",
                "https://app.example.com:8443",
            ),
            ("http://user:pw@localhost:3000", "http://localhost:3000"),
            ("http://localhost:3000?next=a@b", "http://localhost:3000"),
            ("http://[::1]:80", "http://[::1]"),
            ("http://localhost:8080?x#y", "http://localhost:8080"),
        ] {
            assert_eq!(origin_of(url).as_deref(), Some(origin), "{url}");
        }
        assert_eq!(origin_of("ftp://x"), None);
        assert_eq!(origin_of("http://"), None);
        let c = config(&[("BETTER_AUTH_URL", "https://App.example.com:443")]).unwrap();
        assert_eq!(c.cors_origins, ["https://app.example.com"]);
        // A user name or password is refused, the URL not repeated in the error.
        for (name, url) in [
            ("BETTER_AUTH_URL", "https://user:secret-pw@app.example.com"),
            (
                "BETTER_AUTH_URL",
                "https://user:secret/pw@app.example.com/x",
            ),
            ("JWKS_URL", "https://user:secret-pw@app.example.com/jwks"),
            ("JWKS_URL", "https://app.example.com:secret/jwks"),
            // A raw `/` in the password: the authority ends inside it (the re-probe).
            (
                "JWKS_URL",
                "http://admin:1234/secret@127.0.0.1:3000/api/auth/jwks",
            ),
            ("BETTER_AUTH_URL", "https://auth.example.com/a@b"),
        ] {
            let e = config(&[(name, url)]).unwrap_err();
            assert!(e.starts_with(name) && !e.contains("secret"), "{url}: {e}");
        }
        for url in [
            "http://[::1]:3000",
            "https://auth.example.com/a%40b",
            "http://h:80?x=@",
        ] {
            assert!(config(&[("BETTER_AUTH_URL", url)]).is_ok(), "{url}");
        }
        let c = config(&[("CORS_ORIGINS", "https://A.example:443, null")]).unwrap();
        assert_eq!(c.cors_origins, ["https://a.example", "null"]);
    }

    /// API.md, CORS: origins match exactly, so an entry that no `Origin` header can equal
    /// stops the server instead of blocking the frontend without a word.
    #[test]
    fn cors_origins_that_can_never_match_are_refused() {
        for (entry, says) in [
            (
                "*",
                "is a wildcard, which is not supported: list each allowed origin",
            ),
            ("https://*.example.com", "is a wildcard"),
            ("localhost:3000", "has no http:// or https://"),
            ("ftp://files.example", "is not http or https"),
            ("http://localhost:3000/app", "has a path"),
            ("http://localhost:3000?x=1", "query"),
            ("http://localhost:3000#top", "fragment"),
            ("http://", "has no valid host"),
            ("http://:3000", "has no valid host"),
            ("http://local host:3000", "has no valid host"),
            ("http://[nope]:3000", "has no valid host"),
            ("http://localhost:", "port"),
            ("http://localhost:99999", "port"),
            ("http://localhost:03000", "port"),
            ("http://localhost:0", "port"),
            ("http://localhost:x", "port"),
        ] {
            let list = format!("https://app.example, {entry}");
            let err = config(&[("CORS_ORIGINS", &list)]).unwrap_err();
            assert!(err.starts_with("CORS_ORIGINS: "), "{entry}: {err}");
            assert!(err.contains(&format!("{entry:?}")), "{entry}: {err}");
            assert!(err.contains(says), "{entry}: {err}");
            assert!(
                err.contains("such as http://localhost:3000"),
                "{entry}: {err}"
            );
        }
        // What is before an `@` may be a password: refused without repeating it, a `*` in
        // it or not.
        for entry in ["http://me:hunter2@localhost:3000", "https://me:pa*ss@host"] {
            let err = config(&[("CORS_ORIGINS", entry)]).unwrap_err();
            assert!(
                err.starts_with("CORS_ORIGINS: ")
                    && !err.contains("hunter2")
                    && !err.contains("pa*ss"),
                "{err}"
            );
        }
    }

    #[test]
    fn cors_origins_are_kept_as_browsers_send_them() {
        for (entry, origin) in [
            ("HTTP://LocalHost:3000/", "http://localhost:3000"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            (
                "https://xn--bcher-kva.example",
                "https://xn--bcher-kva.example",
            ),
            ("http://my_host.local:65535", "http://my_host.local:65535"),
            ("NULL", "null"),
        ] {
            let c = config(&[("CORS_ORIGINS", entry)]).unwrap();
            assert_eq!(c.cors_origins, [origin], "{entry}");
        }
    }

    /// As the `dotenv` package reads them (the frontend's side of a shared secret).
    #[test]
    fn dotenv_ignores_comments_after_values() {
        let env = parse_dotenv(
            "S=secret-0123 # shared with Next.js\n\
             Q=\"quoted # kept\" # comment\n\
             T='single'#c\n\
             U=`back`\n\
             H=abc#def\n\
             E=\n\
             O=\"open\n",
        );
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("S"), Some("secret-0123"));
        // What dotenv v16 reads for each (its LINE regex and parse, run in node).
        for (line, value) in [
            ("A='it's'", "it's"),
            ("B=\"a\"b\"", "a\"b"),
            ("C=\"ab\\\"cd\"", "ab\\\"cd"),
            ("D=\"x\" y # c", "\"x\" y"),
            ("L=\"quoted\"trail", "\"quoted\"trail"),
            ("N=\"one\\ntwo\"", "one\ntwo"),
            ("M='one\\ntwo'", "one\\ntwo"),
            ("K=  spaced out  ", "spaced out"),
            ("P=\"pa#ss\\\"", "pa#ss\\"),
            ("W=\"C:\\dir#1\\\"", "C:\\dir#1\\"),
            ("V=\"a\\\\\" #b\"", "a\\\\\" #b"),
        ] {
            let env = parse_dotenv(line);
            let key = &line[..1];
            assert_eq!(env.get(key).map(String::as_str), Some(value), "{line}");
        }
        assert_eq!(get("Q"), Some("quoted # kept"));
        assert_eq!(get("T"), Some("single"));
        assert_eq!(get("U"), Some("back"));
        assert_eq!(get("H"), Some("abc"));
        assert_eq!(get("E"), Some(""));
        // An unclosed quote is part of the value, as in `dotenv`.
        assert_eq!(get("O"), Some("\"open"));
        // A byte order mark before the first key.
        let env = parse_dotenv("\u{feff}DATABASE_URL=sqlite:x.db\n");
        assert_eq!(
            env.get("DATABASE_URL").map(String::as_str),
            Some("sqlite:x.db")
        );
    }
}
