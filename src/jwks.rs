//! The JSON Web Key Set that Better Auth's JWT plugin publishes: fetched on demand with a
//! short timeout, cached by `kid`, and fetched again for an unknown `kid` at most once
//! per `REFETCH_INTERVAL`, so that a flood of bad tokens never becomes a flood of fetches.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use jwt_simple::prelude::*;
use serde_json::Value;

/// API.md, Authentication: an unknown `kid` refetches the set at most this often.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// The longest one fetch takes, connecting, sending and reading all included (however
/// slowly the JWKS server trickles its answer); only requests needing a new key wait on it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest JWKS document we read.
const MAX_JWKS_BYTES: u64 = 256 * 1024;

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
    keys: RwLock<HashMap<String, std::sync::Arc<PublicKey>>>,
    /// When the last fetch ended, and whether it failed; held while fetching, so that
    /// concurrent requests for a new key share one fetch.
    last_fetch: Mutex<Option<(Instant, bool)>>,
}

/// A token's `kid` for the log: whoever sent the token chose it, and it may be kilobytes
/// long (an error-level line per request while the JWKS is down), so at most 40
/// characters of it, quoted and escaped.
fn shown(kid: &str) -> String {
    match kid.char_indices().nth(40) {
        Some((end, _)) => format!("{:?}...", &kid[..end]),
        None => format!("{kid:?}"),
    }
}

/// Why `Jwks::key` has no key for a kid.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The set, fetched (or fetched recently), does not have it: the token is refused.
    Unknown(String),
    /// The set could not be fetched: whether the kid is good cannot be told now.
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
    /// A set fetched from `url` when first needed, and again at most every `refetch`.
    pub fn new(url: String, refetch: Duration) -> Jwks {
        Jwks {
            shown: without_userinfo(&url),
            url,
            refetch,
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
        }
    }

    /// The key with this `kid`, fetching the set if it is unknown and the last fetch is
    /// older than the refetch interval. Unknown after a fetch that failed (the endpoint is
    /// down or answers garbage), the kid may well be good: `KeyError::Unavailable`.
    pub fn key(&self, kid: &str) -> Result<std::sync::Arc<PublicKey>, KeyError> {
        if let Some(key) = self.current(kid) {
            return Ok(key);
        }
        let mut last = self.last_fetch.lock().unwrap_or_else(|p| p.into_inner());
        // Another request may have fetched while this one waited for the lock.
        if let Some(key) = self.current(kid) {
            return Ok(key);
        }
        if let Some((at, failed)) = *last {
            if at.elapsed() < self.refetch {
                return Err(if failed {
                    KeyError::Unavailable(format!(
                        "unknown kid {}, and the last JWKS fetch failed",
                        shown(kid)
                    ))
                } else {
                    KeyError::Unknown(format!(
                        "unknown kid {} (JWKS fetched recently)",
                        shown(kid)
                    ))
                });
            }
        }
        let fetched = fetch(&self.url).and_then(|body| parse_set(&body));
        *last = Some((Instant::now(), fetched.is_err()));
        let failed = match fetched {
            Ok(keys) => {
                log::info!(
                    "fetched {} key(s) from the JWKS at {}",
                    keys.len(),
                    self.shown
                );
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
                None
            }
            Err(e) => {
                log::warn!("cannot fetch the JWKS at {}: {e}", self.shown);
                Some(e)
            }
        };
        drop(last);
        self.current(kid).ok_or_else(|| match failed {
            Some(e) => {
                KeyError::Unavailable(format!("unknown kid {}; JWKS fetch: {e}", shown(kid)))
            }
            None => KeyError::Unknown(format!("unknown kid {}", shown(kid))),
        })
    }

    /// The key the set holds under `kid` now, without fetching.
    pub fn current(&self, kid: &str) -> Option<std::sync::Arc<PublicKey>> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kid)
            .cloned()
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
            Err(e) => log::warn!("skipping JWKS key {kid:?}: {e}"),
        }
    }
    Ok(out)
}

/// A minimal HTTP/1.1 GET over TCP or TLS (native-tls, verified), following no redirects.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
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
    let addr = addr_text
        .to_socket_addrs()
        .map_err(|e| format!("resolving {addr_text}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr_text} has no address"))?;
    let deadline = Instant::now() + FETCH_TIMEOUT;
    let tcp = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(|e| e.to_string())?;
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

/// A socket whose reads and writes fail once `deadline` has passed: each waits at most the
/// time left, so a server that sends a byte now and then cannot stretch a fetch.
#[derive(Debug)]
struct Bounded {
    tcp: TcpStream,
    deadline: Instant,
}

impl Bounded {
    fn time_left(&self) -> std::io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the JWKS fetch took too long",
            ));
        }
        Ok(left)
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.time_left()?))?;
        self.tcp.read(buf)
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.time_left()?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

fn read_response(mut reader: impl BufRead) -> Result<Vec<u8>, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("JWKS answered {:?}", line.trim()));
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let header = line.trim_end();
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
            line.clear();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
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
            line.clear();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
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
        let e = fetch("http://user:secret-pw@127.0.0.1:1/jwks").unwrap_err();
        assert!(!e.contains("secret-pw"), "{e}");
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
