//! The JSON Web Key Set that Better Auth's JWT plugin publishes: fetched on demand with a
//! short timeout, cached by `kid`, and fetched again for an unknown `kid`, or once the set is
//! older than the refetch interval, at most once a second, so that a flood of bad tokens
//! never becomes a flood of fetches nor a queue.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{mpsc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jwt_simple::prelude::*;
use serde_json::Value;

/// API.md, Authentication: how long what a fetch said is taken as it is. A `kid` that it did
/// not have stays refused (401) while no other fetch may start, the JWKS endpoint being
/// down; the keys it had are used without asking again, then the next request that needs
/// one fetches the set again, so a key Better Auth removed stops working after this long
/// (a fetch every 30 s of traffic costs Better Auth nothing).
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest time from the end of one fetch to the start of the next, whatever kids
/// ask for it: made-up kids cost at most one fetch a second, and a hanging endpoint holds
/// one worker for at most two seconds in three. It is the `Retry-After: 1` that
/// `Error::to_reply` puts on every 503, so a client that waits as told may fetch.
const FETCH_GAP: Duration = Duration::from_secs(1);
/// The longest one fetch takes, resolving the host, connecting, sending and reading all
/// included (however slowly the JWKS server trickles its answer); only the request that
/// started it waits on it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// The most kids kept as asked for or as missing: enough for every stale token of a busy
/// rotation, few enough that made-up kids cannot fill the memory.
const MAX_KIDS: usize = 1024;
/// The largest JWKS document we read.
const MAX_JWKS_BYTES: u64 = 256 * 1024;
/// The longest line of a JWKS response's head (status, header) or chunk-size line we read:
/// Node's own limit for a whole head is 16 KiB.
const MAX_LINE_BYTES: usize = 8 * 1024;
/// The most bytes of a JWKS response's status line and headers together.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most characters of the JWKS endpoint's own words put in an error, which is logged.
const SHOWN_ANSWER_CHARS: usize = 60;

/// A public key from the set, of one of the three accepted kinds.
pub enum PublicKey {
    /// `kty: OKP`, `crv: Ed25519`, for `alg: EdDSA`.
    Ed25519(Ed25519PublicKey),
    /// `kty: EC`, `crv: P-256`, for `alg: ES256`.
    Es256(ES256PublicKey),
    /// `kty: RSA`, for `alg: RS256`.
    Rs256(Box<RS256PublicKey>),
}

impl PublicKey {
    /// The token `alg` this key verifies.
    pub fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::Ed25519(_) => "EdDSA",
            PublicKey::Es256(_) => "ES256",
            PublicKey::Rs256(_) => "RS256",
        }
    }

    /// Verifies a token with this key (signature, `exp`, `nbf`, `iss`, `aud`).
    pub fn verify<C: serde::de::DeserializeOwned + Serialize>(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<C>, jwt_simple::Error> {
        match self {
            PublicKey::Ed25519(k) => k.verify_token(token, Some(options)),
            PublicKey::Es256(k) => k.verify_token(token, Some(options)),
            PublicKey::Rs256(k) => k.verify_token(token, Some(options)),
        }
    }
}

/// `url` with any `user:password@` taken out of its authority, which ends at the first `/`
/// here, as for the fetch (a password may hold a raw `#` or `?`).
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{}", &rest[end..]),
        None => url.to_string(),
    }
}

/// The cached key set of one JWKS URL.
pub struct Jwks {
    url: String,
    /// `url` without user info, for the log.
    shown: String,
    refetch: Duration,
    keys: RwLock<Set>,
    /// Whether a fetch may start now, and what the fetches so far said about unknown kids.
    /// Held only to decide and to record, never during a fetch: a request that may not
    /// fetch is answered at once instead of waiting in one of the few worker slots.
    fetches: Mutex<Fetches>,
    /// The lookup of the JWKS host that a fetch stopped waiting for (see `resolve`); only
    /// the one running fetch takes it.
    lookup: Mutex<Option<Lookup>>,
}

/// The keys of the last fetch that worked.
#[derive(Default)]
struct Set {
    keys: HashMap<String, std::sync::Arc<PublicKey>>,
    /// When that fetch ended: past `Jwks::refetch`, the next request that needs a key
    /// fetches the set again if a fetch may start.
    fetched: Option<Instant>,
}

/// The bookkeeping of the fetches for unknown kids, apart from the network.
#[derive(Default)]
struct Fetches {
    /// A fetch is under way: no second one starts.
    running: bool,
    /// When the last fetch ended, and whether it failed.
    last: Option<(Instant, bool)>,
    /// Kids refused while a fetch ran or `FETCH_GAP` held: the next fetch to start judges
    /// them, as it began after they were asked for.
    asked: HashSet<String>,
    /// Kids that the last successful fetch did not contain although it began after they
    /// were asked for (or had been in the set), until `missing_until`: refused with 401
    /// while no fetch may start. Once one may, such a kid is fetched for like any other:
    /// a kid asked for before its key existed (Better Auth's kids can be serial numbers)
    /// is not refused for longer than the gap. A kid that no fetch was asked about is
    /// never among them, so a made-up kid cannot make a new key look unknown.
    missing: HashSet<String>,
    missing_until: Option<Instant>,
}

impl Fetches {
    /// For a `kid` the set does not have: the kids the fetch this request is to run will
    /// judge (this one among them), or why there is no fetch now.
    fn begin(&mut self, kid: &str, now: Instant) -> Result<HashSet<String>, KeyError> {
        if self.missing_until.is_some_and(|until| now >= until) {
            self.missing.clear();
            self.missing_until = None;
        }
        let why = match self.last {
            _ if self.running => "a JWKS fetch is under way",
            Some((at, failed)) if now.saturating_duration_since(at) < FETCH_GAP => {
                if self.missing.contains(kid) {
                    return Err(KeyError::Unknown(format!(
                        "unknown kid {} (not in the JWKS fetched since it was asked for)",
                        shown(kid)
                    )));
                }
                if failed {
                    "the last JWKS fetch failed"
                } else {
                    "the JWKS was fetched less than a second ago"
                }
            }
            _ => {
                self.running = true;
                let mut judged = std::mem::take(&mut self.asked);
                judged.insert(kid.to_string());
                return Ok(judged);
            }
        };
        // Once full, a kid is not recorded: it starts a fetch of its own when asked again,
        // which costs no more than the gap allows.
        if self.asked.len() < MAX_KIDS {
            self.asked.insert(kid.to_string());
        }
        // Whether the kid is good cannot be told before the next fetch: not a 401, which
        // would sign the user out.
        Err(KeyError::Unavailable(format!(
            "unknown kid {}, and {why}",
            shown(kid)
        )))
    }

    /// For a `kid` the set has, but fetched over `refetch` ago: the kids the fetch this
    /// request is to run will judge, or `None` when no fetch may start now, and the key in
    /// the set is used as it is.
    fn refresh(&mut self, now: Instant) -> Option<HashSet<String>> {
        let gap = self
            .last
            .is_some_and(|(at, _)| now.saturating_duration_since(at) < FETCH_GAP);
        if self.running || gap {
            return None;
        }
        self.running = true;
        Some(std::mem::take(&mut self.asked))
    }

    /// Records the end of a fetch `begin` or `refresh` allowed, which found the set `after` in place of
    /// `before`.
    fn succeeded<K>(
        &mut self,
        now: Instant,
        refetch: Duration,
        judged: HashSet<String>,
        before: &HashMap<String, K>,
        after: &HashMap<String, K>,
    ) {
        self.running = false;
        self.last = Some((now, false));
        // Replaced, not added to: a kid missing from an older set may be in this one, and
        // the set is the authority.
        self.missing = judged
            .into_iter()
            .chain(before.keys().cloned())
            .filter(|kid| !after.contains_key(kid))
            .take(MAX_KIDS)
            .collect();
        self.missing_until = Some(now + refetch);
    }

    /// Records the end of a fetch `begin` or `refresh` allowed, which failed. The kids it was to judge
    /// are forgotten: asked again, they are judged by a later fetch.
    fn failed(&mut self, now: Instant) {
        self.running = false;
        self.last = Some((now, true));
    }
}

/// A token's `kid` for the log: whoever sent the token chose it, and it may be kilobytes
/// long (an error-level line per request while the JWKS is down), so at most 40
/// characters of it, quoted and escaped.
fn shown(kid: &str) -> String {
    quoted(kid, 40)
}

/// At most `chars` characters of `text`, quoted and escaped, with `...` if there was more.
fn quoted(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// Why `Jwks::key` has no key for a kid.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    /// A fetch begun after the kid was asked for did not have it: the token is refused.
    Unknown(String),
    /// The set could not be fetched, or may not be fetched yet: whether the kid is good
    /// cannot be told now.
    Unavailable(String),
}

impl From<KeyError> for crate::error::Error {
    fn from(e: KeyError) -> crate::error::Error {
        match e {
            KeyError::Unknown(why) => crate::error::Error::InvalidToken(why),
            KeyError::Unavailable(why) => crate::error::Error::KeysUnavailable(why),
        }
    }
}

impl Jwks {
    /// A set fetched from `url` when first needed, and again when a key is needed once it
    /// is older than `refetch`; a kid a fetch did not have is refused while no fetch may
    /// start, for at most `refetch`.
    pub fn new(url: String, refetch: Duration) -> Jwks {
        Jwks {
            shown: without_userinfo(&url),
            url,
            refetch,
            keys: RwLock::new(Set::default()),
            fetches: Mutex::new(Fetches::default()),
            lookup: Mutex::new(None),
        }
    }

    /// The key with this `kid`, fetching the set if it is unknown, no fetch is under way
    /// and the last one ended over `FETCH_GAP` ago. A request that may not fetch now does
    /// not wait: `KeyError::Unavailable`, as after a fetch that failed (the endpoint is
    /// down or answers garbage), for the kid may well be good. `KeyError::Unknown` only
    /// when a fetch begun after the kid was asked for did not have it. A known kid of a
    /// set older than `refetch` fetches it again on the same terms; if none may start, or
    /// the fetch fails, its key is used as it is: the JWKS being down signs nobody out.
    pub fn key(&self, kid: &str) -> Result<std::sync::Arc<PublicKey>, KeyError> {
        if let Some(key) = self.current(kid) {
            return Ok(key);
        }
        let judged = {
            let mut fetches = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
            // A fetch may have ended since `current` looked.
            match self.cached(kid) {
                Some((key, true)) => return Ok(key),
                Some((key, false)) => match fetches.refresh(Instant::now()) {
                    Some(judged) => judged,
                    None => return Ok(key),
                },
                None => fetches.begin(kid, Instant::now())?,
            }
        };
        // Even a panic (a key the parser chokes on) must end the fetch, or none would start
        // again.
        let fetched = std::panic::catch_unwind(|| {
            let mut lookup = self.lookup.lock().unwrap_or_else(|p| p.into_inner());
            fetch(&self.url, &mut lookup).and_then(|body| parse_set(&body))
        })
        .unwrap_or_else(|_| Err("the JWKS fetch panicked".to_string()));
        let failure = match fetched {
            Ok(set) => {
                log::info!(
                    "fetched {} key(s) from the JWKS at {}",
                    set.len(),
                    self.shown
                );
                let now = Instant::now();
                let mut fetches = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
                let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                fetches.succeeded(now, self.refetch, judged, &keys.keys, &set);
                // Replaced, not added to: a key removed from the set stops working.
                *keys = Set {
                    keys: set,
                    fetched: Some(now),
                };
                None
            }
            Err(e) => {
                log::warn!("cannot fetch the JWKS at {}: {e}", self.shown);
                let mut fetches = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
                fetches.failed(Instant::now());
                Some(e)
            }
        };
        // After a failed fetch, a key of the set as it was (used as it is).
        match (self.cached(kid), failure) {
            (Some((key, _)), _) => Ok(key),
            (None, Some(e)) => Err(KeyError::Unavailable(format!(
                "unknown kid {}; JWKS fetch: {e}",
                shown(kid)
            ))),
            (None, None) => Err(KeyError::Unknown(format!(
                "unknown kid {} (not in the JWKS just fetched)",
                shown(kid)
            ))),
        }
    }

    /// The key the set holds under `kid` now, without fetching, while the set is at most
    /// `refetch` old: past that, a key is to be had from `key`, which fetches the set again
    /// (so a token remembered as verified by this key is verified again, and refused once
    /// its key has left the set).
    pub fn current(&self, kid: &str) -> Option<std::sync::Arc<PublicKey>> {
        self.cached(kid)
            .and_then(|(key, fresh)| fresh.then_some(key))
    }

    /// The key the set holds under `kid`, whatever its age, and whether the set is at most
    /// `refetch` old.
    fn cached(&self, kid: &str) -> Option<(std::sync::Arc<PublicKey>, bool)> {
        let set = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let fresh = set.fetched.is_some_and(|at| at.elapsed() < self.refetch);
        set.keys.get(kid).map(|key| (key.clone(), fresh))
    }
}

/// Parses a JWKS document into its usable keys by `kid`; keys of other kinds are skipped.
pub fn parse_set(body: &[u8]) -> Result<HashMap<String, std::sync::Arc<PublicKey>>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc["keys"].as_array().ok_or("JWKS has no \"keys\" array")?;
    let mut out = HashMap::new();
    for jwk in keys {
        let Some(kid) = jwk["kid"].as_str() else {
            continue;
        };
        // `use: enc` keys are for encryption, never for signatures.
        if jwk.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let text = jwk.to_string();
        let key = match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
            (Some("OKP"), Some("Ed25519")) => {
                Ed25519PublicKey::from_jwk(&text).map(PublicKey::Ed25519)
            }
            (Some("EC"), Some("P-256")) => ES256PublicKey::from_jwk(&text).map(PublicKey::Es256),
            (Some("RSA"), _) => {
                RS256PublicKey::from_jwk(&text).map(|k| PublicKey::Rs256(Box::new(k)))
            }
            _ => continue,
        };
        match key {
            Ok(key) => {
                out.insert(kid.to_string(), std::sync::Arc::new(key));
            }
            Err(e) => log::warn!("skipping JWKS key {}: {e}", shown(kid)),
        }
    }
    Ok(out)
}

/// A minimal HTTP/1.1 GET over TCP or TLS (native-tls, verified), following no redirects;
/// `lookup` is the host's lookup an earlier fetch of the same URL stopped waiting for.
fn fetch(url: &str, lookup: &mut Option<Lookup>) -> Result<Vec<u8>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("JWKS URL must be http:// or https://".into());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // User info is not sent (nor put in an error, which is logged).
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = if path.is_empty() { "/" } else { path };
    let host = authority.rsplit_once(':').map_or(authority, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            authority
        }
    });
    let port_given = authority.len() > host.len();
    let addr_text = if port_given {
        authority.to_string()
    } else {
        format!("{host}:{}", if tls { 443 } else { 80 })
    };
    let deadline = Instant::now() + FETCH_TIMEOUT;
    let addr = resolve(&addr_text, deadline, lookup, |name| {
        name.to_socket_addrs().map(Iterator::collect)
    })?;
    let left = time_left(deadline).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect_timeout(&addr, left).map_err(|e| e.to_string())?;
    let bounded = Bounded { tcp, deadline };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n\
         User-Agent: todo-api\r\nConnection: close\r\n\r\n"
    );
    let body = if tls {
        let connector = native_tls::TlsConnector::new().map_err(|e| e.to_string())?;
        let mut stream = connector
            .connect(host, bounded)
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        read_response(BufReader::new(stream))?
    } else {
        let mut stream = bounded;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        read_response(BufReader::new(stream))?
    };
    Ok(body)
}

/// A lookup of the JWKS host on a thread of its own: its addresses, once it has them.
type Lookup = mpsc::Receiver<std::io::Result<Vec<SocketAddr>>>;

/// The first address of `addr_text` (`host:port`), by `lookup`. The system resolver may
/// take 5 to 20 s to give up, so the lookup runs on a thread of its own and is waited for
/// only until `deadline`. One not answered by then is left in `pending`, and the next fetch
/// waits for it rather than start another: a resolver that hangs holds one thread, not one
/// per fetch.
fn resolve(
    addr_text: &str,
    deadline: Instant,
    pending: &mut Option<Lookup>,
    lookup: impl FnOnce(&str) -> std::io::Result<Vec<SocketAddr>> + Send + 'static,
) -> Result<SocketAddr, String> {
    let answer = match pending.take() {
        Some(answer) => answer,
        None => {
            let (tx, rx) = mpsc::channel();
            let name = addr_text.to_string();
            std::thread::Builder::new()
                .name("jwks-lookup".into())
                // Nobody may want the answer any more: then it is dropped.
                .spawn(move || drop(tx.send(lookup(&name))))
                .map_err(|e| format!("cannot look up {addr_text}: {e}"))?;
            rx
        }
    };
    match answer.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(addrs)) => addrs
            .into_iter()
            .next()
            .ok_or_else(|| format!("{addr_text} has no address")),
        Ok(Err(e)) => Err(format!("resolving {addr_text}: {e}")),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            *pending = Some(answer);
            Err(format!(
                "{addr_text} did not resolve in time (a fetch has {FETCH_TIMEOUT:?} in all)"
            ))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(format!("the lookup of {addr_text} ended without an answer"))
        }
    }
}

/// What is left until `deadline`, or a timeout error once it has passed.
fn time_left(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the JWKS fetch took too long",
        ));
    }
    Ok(left)
}

/// A socket whose reads and writes fail once `deadline` has passed: each waits at most the
/// time left, so a server that sends a byte now and then cannot stretch a fetch.
#[derive(Debug)]
struct Bounded {
    tcp: TcpStream,
    deadline: Instant,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.set_read_timeout(Some(time_left(self.deadline)?))?;
        self.tcp.read(buf)
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp
            .set_write_timeout(Some(time_left(self.deadline)?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// Reads one line of `reader`, up to and including its `\n`, into `line` (cleared first),
/// taking at most `max` bytes of it: a longer line is an error once `max` bytes are held,
/// however long the server keeps it going (the deadline bounds the time, not the bytes),
/// and so is the end of the answer before the line's.
fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> Result<(), String> {
    line.clear();
    loop {
        let buf = reader.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Err("the JWKS response ended in the middle of its head".into());
        }
        let room = max - line.len();
        let (taken, ended) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) if i < room => (i + 1, true),
            _ => (buf.len().min(room), false),
        };
        line.extend_from_slice(&buf[..taken]);
        reader.consume(taken);
        if ended {
            return Ok(());
        }
        if line.len() == max {
            return Err(format!(
                "the JWKS response has a line over {max} bytes: {}",
                quoted(&String::from_utf8_lossy(line), SHOWN_ANSWER_CHARS)
            ));
        }
    }
}

fn read_response(mut reader: impl BufRead) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    // Every line of the head counts against `MAX_HEAD_BYTES`, and none may exceed
    // `MAX_LINE_BYTES`: what is held is bounded before any newline arrives.
    let mut head_left = MAX_HEAD_BYTES;
    let mut head_line = |reader: &mut _, line: &mut Vec<u8>| {
        let max = MAX_LINE_BYTES.min(head_left);
        read_line_bounded(reader, line, max).map_err(|e| {
            if max < MAX_LINE_BYTES && line.len() == max {
                format!("the JWKS response's head is over {MAX_HEAD_BYTES} bytes")
            } else {
                e
            }
        })?;
        head_left -= line.len();
        Ok::<_, String>(String::from_utf8_lossy(line).into_owned())
    };
    let status_line = head_line(&mut reader, &mut line)?;
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        // The endpoint's words, cut short: they go to the log twice (the warning, then the
        // request's error), and a server may send kilobytes of them.
        return Err(format!(
            "JWKS answered {}",
            quoted(status_line.trim(), SHOWN_ANSWER_CHARS)
        ));
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        let header = head_line(&mut reader, &mut line)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<u64>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            read_line_bounded(&mut reader, &mut line, MAX_LINE_BYTES)?;
            let size = String::from_utf8_lossy(&line);
            let size = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| "bad chunk size in the JWKS response".to_string())?;
            if size == 0 {
                break;
            }
            if size > MAX_JWKS_BYTES - body.len() as u64 {
                return Err("JWKS response too large".into());
            }
            (&mut reader)
                .take(size)
                .read_to_end(&mut body)
                .map_err(|e| e.to_string())?;
            read_line_bounded(&mut reader, &mut line, MAX_LINE_BYTES)?;
        }
    } else {
        let limit = length.unwrap_or(MAX_JWKS_BYTES + 1).min(MAX_JWKS_BYTES + 1);
        reader
            .take(limit)
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
        if body.len() as u64 > MAX_JWKS_BYTES {
            return Err("JWKS response too large".into());
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kid_is_shown_short_in_the_log() {
        assert_eq!(shown("k1"), "\"k1\"");
        let long = "é".repeat(5000);
        let s = shown(&long);
        assert!(s.chars().count() < 50 && s.ends_with("..."), "{s}");
    }

    #[test]
    fn user_info_stays_out_of_the_log() {
        assert_eq!(
            without_userinfo("http://user:pw@localhost:3000/api/auth/jwks"),
            "http://localhost:3000/api/auth/jwks"
        );
        assert_eq!(
            without_userinfo("https://auth.example.com/a@b"),
            "https://auth.example.com/a@b"
        );
        assert_eq!(without_userinfo("not a url"), "not a url");
        assert_eq!(
            without_userinfo("http://user:p#s?s@auth.example.com/jwks"),
            "http://auth.example.com/jwks"
        );
        // Fetching such a URL neither sends nor reports the password.
        let e = fetch("http://user:secret-pw@127.0.0.1:1/jwks", &mut None).unwrap_err();
        assert!(!e.contains("secret-pw"), "{e}");
    }

    #[test]
    fn a_lookup_that_hangs_is_waited_for_until_the_deadline_and_only_once() {
        let (go, wait) = mpsc::channel::<()>();
        let lookups = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = lookups.clone();
        let slow = move |_: &str| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = wait.recv();
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], 80))])
        };
        let mut pending = None;
        let e = resolve(
            "auth.example:80",
            Instant::now() + ms(50),
            &mut pending,
            slow,
        )
        .unwrap_err();
        assert!(e.contains("did not resolve in time"), "{e}");
        // The next fetch waits for the same lookup, and gets its answer once there is one.
        let never = |_: &str| -> std::io::Result<Vec<SocketAddr>> { panic!("a second lookup") };
        assert!(resolve(
            "auth.example:80",
            Instant::now() + ms(50),
            &mut pending,
            never
        )
        .is_err());
        go.send(()).unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let addr = resolve("auth.example:80", far, &mut pending, never).unwrap();
        assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], 80)));
        assert!(pending.is_none());
        assert_eq!(lookups.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A JWKS server's answer: `head`, then `endless` for ever, counting the bytes taken
    /// (and failing after 16 MiB, so that a reader without a bound fails too, not the test
    /// run).
    struct Endless {
        head: std::io::Cursor<&'static [u8]>,
        endless: &'static [u8],
        at: usize,
        taken: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = match self.head.read(buf)? {
                0 => {
                    for b in buf.iter_mut() {
                        *b = self.endless[self.at % self.endless.len()];
                        self.at += 1;
                    }
                    buf.len()
                }
                n => n,
            };
            let taken = self.taken.fetch_add(n, std::sync::atomic::Ordering::SeqCst) + n;
            if taken > 16 << 20 {
                return Err(std::io::Error::other("read 16 MiB of one answer"));
            }
            Ok(n)
        }
    }

    /// `read_response` of `head` and then `endless` for ever: its error, and the bytes it
    /// took.
    fn read_endless(head: &'static str, endless: &'static [u8]) -> (String, usize) {
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let answer = Endless {
            head: std::io::Cursor::new(head.as_bytes()),
            endless,
            at: 0,
            taken: taken.clone(),
        };
        let e = read_response(BufReader::new(answer)).unwrap_err();
        (e, taken.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[test]
    fn a_line_without_end_is_refused_once_it_is_too_long() {
        for (context, head, endless) in [
            ("status line", "HTTP/1.1 200 ", &b"a"[..]),
            ("header", "HTTP/1.1 200 OK\r\nX-Big: ", b"a"),
            (
                "chunk size",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10;",
                b"a",
            ),
            (
                "end of a chunk",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{",
                b"a",
            ),
            ("headers without end", "HTTP/1.1 200 OK\r\n", b"X-A: b\r\n"),
        ] {
            let (e, taken) = read_endless(head, endless);
            assert!(
                e.contains("a line over 8192 bytes") || e.contains("head is over 65536 bytes"),
                "{context}: {e}"
            );
            // What was read beyond the bound is at most one buffer of the reader.
            assert!(
                taken <= MAX_HEAD_BYTES + 8 * 1024,
                "{context}: read {taken} bytes"
            );
            assert!(e.len() < 160, "{context}: {e}");
        }
    }

    #[test]
    fn the_endpoints_words_are_cut_short_in_the_error() {
        let long = format!("HTTP/1.1 500 {}\r\n\r\n", "x".repeat(4000));
        let e = read_response(BufReader::new(long.as_bytes())).unwrap_err();
        assert!(
            e.starts_with("JWKS answered \"HTTP/1.1 500 xxx") && e.ends_with("\"..."),
            "{e}"
        );
        assert!(e.len() < 100, "{} bytes: {e}", e.len());
        let e = read_response(BufReader::new(&b"HTTP/1.1 404 Not Found\r\n\r\n"[..]));
        assert_eq!(e.unwrap_err(), r#"JWKS answered "HTTP/1.1 404 Not Found""#);
        // Escaped: no line break or terminal control of the endpoint's reaches the log.
        let e = read_response(BufReader::new(&b"HTTP/1.1 500 a\x1b[2Jb\r\n\r\n"[..]));
        assert_eq!(
            e.unwrap_err(),
            r#"JWKS answered "HTTP/1.1 500 a\u{1b}[2Jb""#
        );
    }

    #[test]
    fn the_bounded_line_reader_holds_no_more_than_its_bound() {
        let mut line = Vec::new();
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let answer = Endless {
            head: std::io::Cursor::new(b""),
            endless: b"a",
            at: 0,
            taken: taken.clone(),
        };
        let mut reader = BufReader::with_capacity(4096, answer);
        let e = read_line_bounded(&mut reader, &mut line, 10_000).unwrap_err();
        assert!(e.contains("over 10000 bytes"), "{e}");
        assert_eq!(line.len(), 10_000);
        assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 3 * 4096);
        // A line of exactly the bound, its newline included, is read whole, and the next
        // line is left for the next call.
        let mut reader = BufReader::new(&b"abc\nde\n"[..]);
        read_line_bounded(&mut reader, &mut line, 4).unwrap();
        assert_eq!(line, b"abc\n");
        assert!(read_line_bounded(&mut reader, &mut line, 2).is_err());
        let mut reader = BufReader::new(&b"abc"[..]);
        assert!(read_line_bounded(&mut reader, &mut line, 100).is_err());
    }

    /// A key set as `Fetches` sees one: its kids.
    fn set(kids: &[&str]) -> HashMap<String, ()> {
        kids.iter().map(|kid| (kid.to_string(), ())).collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_made_up_kid_never_makes_a_new_key_unknown() {
        let (mut f, t0) = (Fetches::default(), Instant::now());
        let judged = f.begin("garbage", t0).unwrap();
        f.succeeded(t0, REFETCH_INTERVAL, judged, &set(&[]), &set(&["k1"]));
        // The made-up kid is refused from the record, without a fetch...
        assert!(matches!(
            f.begin("garbage", t0 + ms(10)),
            Err(KeyError::Unknown(_))
        ));
        // ...but a kid no fetch was asked about is not: try again shortly, then a fetch.
        assert!(matches!(
            f.begin("k2", t0 + ms(10)),
            Err(KeyError::Unavailable(_))
        ));
        assert!(f.begin("k2", t0 + FETCH_GAP).unwrap().contains("k2"));
    }

    #[test]
    fn a_kid_asked_for_before_its_key_existed_is_fetched_for_again() {
        let (mut f, t0) = (Fetches::default(), Instant::now());
        let judged = f.begin("k2", t0).unwrap();
        f.succeeded(t0, REFETCH_INTERVAL, judged, &set(&[]), &set(&["k1"]));
        assert!(matches!(
            f.begin("k2", t0 + ms(10)),
            Err(KeyError::Unknown(_))
        ));
        // Better Auth has made k2 since: once a fetch may start, k2 is fetched for.
        assert!(f.begin("k2", t0 + FETCH_GAP).is_ok());
    }

    #[test]
    fn one_fetch_at_a_time_and_one_a_second() {
        let (mut f, t0) = (Fetches::default(), Instant::now());
        assert!(f.begin("a", t0).is_ok());
        let under_way = f.begin("b", t0 + ms(500)).unwrap_err();
        assert!(
            matches!(&under_way, KeyError::Unavailable(why) if why.contains("under way")),
            "{under_way:?}"
        );
        // However long the fetch takes, the gap counts from its end.
        f.failed(t0 + FETCH_TIMEOUT);
        let failed = f.begin("b", t0 + FETCH_TIMEOUT + ms(999)).unwrap_err();
        assert!(
            matches!(&failed, KeyError::Unavailable(why) if why.contains("failed")),
            "{failed:?}"
        );
        assert!(f.begin("b", t0 + FETCH_TIMEOUT + FETCH_GAP).is_ok());
        assert!(f.begin("c", t0 + ms(9000)).is_err(), "still under way");
    }

    #[test]
    fn a_set_too_old_is_fetched_again_on_the_same_terms() {
        let (mut f, t0) = (Fetches::default(), Instant::now());
        let judged = f.begin("k1", t0).unwrap();
        f.succeeded(t0, REFETCH_INTERVAL, judged, &set(&[]), &set(&["k1"]));
        // Within the gap, or while a fetch runs, the key in the set is used as it is.
        assert!(f.refresh(t0 + ms(999)).is_none());
        assert!(f.begin("new", t0 + ms(999)).is_err());
        // Once one may start, the refresh judges the kids asked for meanwhile.
        let judged = f.refresh(t0 + FETCH_GAP).unwrap();
        assert_eq!(judged, HashSet::from(["new".to_string()]));
        assert!(f.refresh(t0 + FETCH_GAP).is_none(), "under way");
        assert!(f.begin("other", t0 + FETCH_GAP).is_err(), "under way");
        // The key removed from the set is missing from now on, as a rotated-out one.
        let t1 = t0 + FETCH_GAP + ms(10);
        f.succeeded(t1, REFETCH_INTERVAL, judged, &set(&["k1"]), &set(&["k2"]));
        assert!(matches!(f.begin("k1", t1), Err(KeyError::Unknown(_))));
        assert!(f.refresh(t1).is_none());
        // A refresh that fails leaves the gap before the next, too.
        let t2 = t1 + FETCH_GAP;
        assert!(f.refresh(t2).is_some());
        f.failed(t2);
        assert!(f.refresh(t2 + ms(999)).is_none());
        assert!(f.refresh(t2 + FETCH_GAP).is_some());
    }

    #[test]
    fn a_fetch_judges_only_the_kids_asked_for_before_it_began() {
        let (mut f, t0) = (Fetches::default(), Instant::now());
        let judged = f.begin("a", t0).unwrap();
        // Asked for while the fetch runs: it may have been added after the fetch read the set.
        assert!(f.begin("b", t0 + ms(1)).is_err());
        f.succeeded(
            t0 + ms(2),
            REFETCH_INTERVAL,
            judged,
            &set(&[]),
            &set(&["k1"]),
        );
        assert!(matches!(
            f.begin("a", t0 + ms(3)),
            Err(KeyError::Unknown(_))
        ));
        assert!(matches!(
            f.begin("b", t0 + ms(3)),
            Err(KeyError::Unavailable(_))
        ));
        // The next fetch judges "b", which it has, and "c", which it has not; "a" is for it
        // to judge again when asked, and a kid rotated out of the set is missing.
        let judged = f.begin("c", t0 + ms(2000)).unwrap();
        assert_eq!(judged, HashSet::from(["b".to_string(), "c".to_string()]));
        let t1 = t0 + ms(2001);
        f.succeeded(t1, REFETCH_INTERVAL, judged, &set(&["k1"]), &set(&["b"]));
        assert_eq!(
            f.missing,
            HashSet::from(["c".to_string(), "k1".to_string()])
        );
        assert!(matches!(f.begin("a", t1), Err(KeyError::Unavailable(_))));
    }

    #[test]
    fn while_fetches_fail_a_missing_kid_is_refused_for_the_refetch_interval() {
        let (mut f, t0) = (Fetches::default(), Instant::now());
        let judged = f.begin("gone", t0).unwrap();
        f.succeeded(t0, REFETCH_INTERVAL, judged, &set(&[]), &set(&["k1"]));
        // The endpoint goes down: "gone" starts a fetch, which fails...
        let mut t = t0 + FETCH_GAP;
        while t + FETCH_TIMEOUT < t0 + REFETCH_INTERVAL {
            assert!(f.begin("gone", t).is_ok());
            f.failed(t + FETCH_TIMEOUT);
            t += FETCH_TIMEOUT;
            // ...and until the next may start, a fetch that worked has said enough.
            assert!(matches!(f.begin("gone", t), Err(KeyError::Unknown(_))));
            t += FETCH_GAP;
        }
        let later = t0 + REFETCH_INTERVAL;
        assert!(f.begin("gone", later).is_ok());
        f.failed(later + FETCH_TIMEOUT);
        assert!(matches!(
            f.begin("gone", later + FETCH_TIMEOUT),
            Err(KeyError::Unavailable(_))
        ));
    }

    #[test]
    fn the_records_of_kids_are_bounded() {
        let (mut f, t0) = (Fetches::default(), Instant::now());
        let judged = f.begin("first", t0).unwrap();
        for i in 0..2 * MAX_KIDS {
            assert!(f.begin(&format!("rogue-{i}"), t0).is_err());
        }
        assert_eq!(f.asked.len(), MAX_KIDS);
        f.succeeded(t0, REFETCH_INTERVAL, judged, &set(&[]), &set(&[]));
        let judged = f.begin("another", t0 + FETCH_GAP).unwrap();
        assert_eq!(judged.len(), MAX_KIDS + 1);
        f.succeeded(
            t0 + FETCH_GAP,
            REFETCH_INTERVAL,
            judged,
            &set(&[]),
            &set(&[]),
        );
        assert_eq!(f.missing.len(), MAX_KIDS);
    }

    #[test]
    fn parses_the_three_key_kinds_and_skips_others() {
        let ed = Ed25519KeyPair::generate().public_key().to_jwk();
        let es = ES256KeyPair::generate().public_key().to_jwk();
        let mut ed: Value = serde_json::from_str(&ed).unwrap();
        let mut es: Value = serde_json::from_str(&es).unwrap();
        ed["kid"] = "ed".into();
        es["kid"] = "es".into();
        let doc = serde_json::json!({"keys": [
            ed, es,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "OKP", "crv": "Ed25519", "x": "not base64!", "kid": "broken"},
        ]});
        let keys = parse_set(doc.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["ed", "es"]);
        assert_eq!(keys["ed"].algorithm(), "EdDSA");
        assert_eq!(keys["es"].algorithm(), "ES256");
        assert!(parse_set(b"[]").is_err());
    }
}
