//! Bearer tokens: extraction from the `Authorization` header and verification into a
//! `User`. HS256 with the shared `BETTER_AUTH_SECRET` (constant-time, by jwt-simple) —
//! both a `sub` token and Better Auth's session cookie-cache token — and EdDSA, ES256 or
//! RS256 tokens of Better Auth's JWT plugin, by a key of its JWKS picked by `kid`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use jwt_simple::prelude::*;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::jwks::{Jwks, PublicKey};
use crate::time::Micros;

/// Tokens longer than this are refused before any parsing (API.md, Authentication).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 60;
/// The longest user id we store.
const MAX_SUB_CHARS: usize = 255;
/// Verified tokens remembered; past this, expired ones are dropped, then all if need be.
const VERIFIED_CAPACITY: usize = 10_000;

/// The verified caller of an `/api/*` route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// Better Auth's user id (`sub`, or `user.id` in a session cookie-cache token).
    pub id: String,
    /// The email claim, if the token has one.
    pub email: Option<String>,
    /// The name claim, if the token has one.
    pub name: Option<String>,
}

/// The claims we read besides the registered ones. Better Auth's JWT plugin puts `email`
/// and `name` at the top level; its cookie-cache token nests them in `user`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<SessionUser>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SessionUser {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// Verifies bearer tokens; built once at start-up and shared by every worker.
pub struct Authenticator {
    hs256: HS256Key,
    options: VerificationOptions,
    jwks: Jwks,
    jwks_options: VerificationOptions,
    verified: Mutex<HashMap<u64, Verified>>,
    /// SipHash with keys drawn at start-up: where a token's entry is.
    hasher: RandomState,
}

/// For a JWKS token, its `kid` and the key that verified it.
type VerifyingKey = Option<(String, Arc<PublicKey>)>;

/// A token that passed verification: a request with the same token is answered from here
/// without decoding, HMAC or signature check. Found by a keyed hash of the token (keys
/// unknown outside the process, so nobody can aim at an entry), then the token is compared
/// in constant time: a lookup reveals nothing about a stored token through its timing.
struct Verified {
    token: Box<[u8]>,
    user: User,
    /// Unix seconds until which the token is accepted: `exp` plus the leeway, as
    /// verification itself allows. Every other check's outcome cannot change with time.
    until: u64,
    /// For a JWKS token, the key that verified it: the entry holds only while the key set
    /// still maps its `kid` to this very key (a refetched set yields new keys).
    key: VerifyingKey,
}

impl Authenticator {
    /// Builds the verifier from the configured secret, issuer and audience.
    pub fn new(config: &Config) -> Authenticator {
        let options = VerificationOptions {
            time_tolerance: Some(Duration::from_secs(LEEWAY_SECONDS)),
            max_token_length: Some(MAX_TOKEN_BYTES),
            allowed_issuers: config.issuer.clone().map(|i| HashSet::from([i])),
            allowed_audiences: config.audience.clone().map(|a| HashSet::from([a])),
            ..Default::default()
        };
        // JWKS tokens come from Better Auth, whose `iss` and `aud` are its base URL: check
        // both by default, so a token minted for another audience by the same keys fails.
        let base = &config.better_auth_url;
        let either = |configured: &Option<String>| {
            Some(match configured {
                Some(v) => HashSet::from([v.clone()]),
                None => HashSet::from([base.clone(), format!("{base}/")]),
            })
        };
        let jwks_options = VerificationOptions {
            allowed_issuers: either(&config.issuer),
            allowed_audiences: either(&config.audience),
            ..options.clone()
        };
        Authenticator {
            hs256: HS256Key::from_bytes(&config.secret),
            options,
            jwks: Jwks::new(config.jwks_url.clone(), config.jwks_refetch),
            jwks_options,
            verified: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }

    /// Turns an `Authorization` header into the caller, or a 401.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<User> {
        let token = bearer_token(authorization)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::InvalidToken(format!(
                "token of {} bytes",
                token.len()
            )));
        }
        let now = unix_now();
        if let Some(user) = self.remembered(token, now) {
            return Ok(user);
        }
        let (claims, key) = self.verify(token)?;
        let until = claims
            .expires_at
            .map_or(0, |exp| exp.as_secs().saturating_add(LEEWAY_SECONDS));
        let user = user_from_claims(claims)?;
        self.remember(
            now,
            Verified {
                token: token.as_bytes().into(),
                user: user.clone(),
                until,
                key,
            },
        );
        Ok(user)
    }

    /// Full verification: signature, then the claims; for a JWKS token also the key used.
    fn verify(&self, token: &str) -> Result<(JWTClaims<Profile>, VerifyingKey)> {
        let metadata = Token::decode_metadata(token)
            .map_err(|e| Error::InvalidToken(format!("undecodable token: {}", loggable(&e))))?;
        let failed = |e: jwt_simple::Error| {
            Error::InvalidToken(format!("verification failed: {}", loggable(&e)))
        };
        match metadata.algorithm() {
            // API.md, Authentication: an HS256 token's `kid`, if any, is ignored.
            "HS256" => {
                let claims = self
                    .hs256
                    .verify_token::<Profile>(token, Some(self.options.clone()))
                    .map_err(failed)?;
                Ok((claims, None))
            }
            alg @ ("EdDSA" | "ES256" | "RS256") => {
                let kid = metadata
                    .key_id()
                    .ok_or_else(|| Error::InvalidToken(format!("{alg} token without kid")))?;
                let key = self.jwks.key(kid)?;
                if key.algorithm() != alg {
                    let msg = format!("{alg} token for a {} key", key.algorithm());
                    return Err(Error::InvalidToken(msg));
                }
                let claims = key
                    .verify::<Profile>(token, self.jwks_options.clone())
                    .map_err(failed)?;
                Ok((claims, Some((kid.to_string(), key))))
            }
            other => Err(Error::InvalidToken(format!("unsupported alg {other:?}"))),
        }
    }

    /// The user of a token verified before, if it has not expired since and, for a JWKS
    /// token, its key is still the one the key set has under its `kid`.
    fn remembered(&self, token: &str, now: u64) -> Option<User> {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let entry = verified.get(&self.hasher.hash_one(token.as_bytes()))?;
        if !same_bytes(&entry.token, token.as_bytes()) || now > entry.until {
            return None;
        }
        if let Some((kid, key)) = &entry.key {
            if !self.jwks.current(kid).is_some_and(|k| Arc::ptr_eq(&k, key)) {
                return None;
            }
        }
        Some(entry.user.clone())
    }

    fn remember(&self, now: u64, entry: Verified) {
        let slot = self.hasher.hash_one(&entry.token[..]);
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, v| now <= v.until);
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(slot, entry);
    }
}

/// A verification error for the log. serde's messages quote the value that did not decode
/// (`invalid type: string "alice@example.com", expected ...`): a claim's value, which may be
/// someone's email address, is not for the log, so a JSON error is told by its kind and place.
fn loggable(e: &jwt_simple::Error) -> String {
    match e.downcast_ref::<serde_json::Error>() {
        Some(json) => format!(
            "JSON that does not decode ({:?} error at column {})",
            json.classify(),
            json.column()
        ),
        None => e.to_string(),
    }
}

/// Byte-wise equality in time that depends on the length only.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && std::hint::black_box(diff) == 0
}

/// Seconds since the Unix epoch (0 for a clock before it, which accepts nothing new).
fn unix_now() -> u64 {
    u64::try_from(Micros::now().0 / 1_000_000).unwrap_or(0)
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive.
fn bearer_token(authorization: Option<&str>) -> Result<&str> {
    let header = authorization.ok_or(Error::MissingToken)?;
    let (scheme, token) = header.trim().split_once(' ').ok_or(Error::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::InvalidToken("empty bearer token".into()));
    }
    Ok(token)
}

fn user_from_claims(claims: JWTClaims<Profile>) -> Result<User> {
    if claims.expires_at.is_none() {
        return Err(Error::InvalidToken("token has no exp".into()));
    }
    let profile = claims.custom;
    let session_user = profile.user.unwrap_or_default();
    let (id, email, name) = match claims.subject {
        Some(sub) => (sub, profile.email, profile.name),
        // Better Auth's cookie-cache token has no `sub`: the user is `user.id`.
        None => match session_user.id {
            Some(id) => (id, session_user.email, session_user.name),
            None => {
                return Err(Error::InvalidToken(
                    "token has neither sub nor user.id".into(),
                ))
            }
        },
    };
    if id.is_empty() || id.chars().count() > MAX_SUB_CHARS || id.contains('\0') {
        return Err(Error::InvalidToken("user id is empty or too long".into()));
    }
    let clean = |v: Option<String>| v.filter(|s| !s.contains('\0') && s.chars().count() <= 255);
    Ok(User {
        id,
        email: clean(email),
        name: clean(name),
    })
}

/// Signs an HS256 token with `secret`, without `iss` or `aud`, for the tests.
pub fn mint(
    secret: &[u8],
    sub: &str,
    email: Option<&str>,
    name: Option<&str>,
    ttl: std::time::Duration,
) -> String {
    sign(secret, claims(sub, email, name, ttl))
}

/// The latest `exp` a token can be signed with. jwt-simple keeps times as 32.32 fixed-point
/// seconds (coarsetime) and adds the ttl to now without an overflow check, so a later `exp`
/// wraps around to a date in the past (`--ttl 36500d` gave 1990): 2106-02-07T06:28:15Z.
const LATEST_EXP: u64 = u32::MAX as u64;

/// A token that a server with `config` accepts, for `todo-api token` and the demo token of
/// a run without a secret: signed with its secret, and with the `iss` and `aud` it requires
/// when `JWT_ISSUER` / `JWT_AUDIENCE` are set (without them it refuses every token).
/// Refused, with a sentence saying what to do: a `sub` that `authenticate` would refuse
/// for its length, and a ttl that would put `exp` past `LATEST_EXP`.
pub fn mint_for(
    config: &Config,
    sub: &str,
    email: Option<&str>,
    name: Option<&str>,
    ttl: std::time::Duration,
) -> std::result::Result<String, String> {
    // API.md, Authentication: a `sub` of more than 255 characters is refused.
    let chars = sub.chars().count();
    if chars > MAX_SUB_CHARS {
        return Err(format!(
            "sub is {chars} characters long and the server refuses a user id over \
             {MAX_SUB_CHARS}: use a shorter one"
        ));
    }
    let longest = LATEST_EXP.saturating_sub(unix_now());
    if ttl.as_secs() > longest {
        return Err(format!(
            "a ttl of {} s would make the token expire after 2106-02-07, the latest expiry \
             a token can carry; use a ttl of at most {}d",
            ttl.as_secs(),
            longest / 86_400
        ));
    }
    let mut claims = claims(sub, email, name, ttl);
    if let Some(issuer) = &config.issuer {
        claims = claims.with_issuer(issuer);
    }
    if let Some(audience) = &config.audience {
        claims = claims.with_audience(audience);
    }
    Ok(sign(&config.secret, claims))
}

fn claims(
    sub: &str,
    email: Option<&str>,
    name: Option<&str>,
    ttl: std::time::Duration,
) -> JWTClaims<Profile> {
    let profile = Profile {
        email: email.map(Into::into),
        name: name.map(Into::into),
        user: None,
    };
    Claims::with_custom_claims(profile, Duration::from_secs(ttl.as_secs().max(1))).with_subject(sub)
}

fn sign(secret: &[u8], claims: JWTClaims<Profile>) -> String {
    HS256Key::from_bytes(secret)
        .authenticate(claims)
        .expect("HS256 signing cannot fail")
}

/// 32 random bytes, the secret of a run that was given none.
pub fn random_secret() -> Vec<u8> {
    HS256Key::generate().to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(secret: &[u8]) -> Authenticator {
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.secret = secret.to_vec();
        Authenticator::new(&config)
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    /// A token for `sub` signed with `secret`, valid for a minute.
    fn signed(secret: &[u8], sub: &str) -> String {
        mint(secret, sub, None, None, std::time::Duration::from_secs(60))
    }

    #[test]
    fn accepts_a_minted_token() {
        let auth = authenticator(b"test-secret-123");
        let token = mint(
            b"test-secret-123",
            "u1",
            Some("a@b.c"),
            Some("A"),
            std::time::Duration::from_secs(60),
        );
        let user = auth.authenticate(Some(&bearer(&token))).unwrap();
        assert_eq!(
            user,
            User {
                id: "u1".into(),
                email: Some("a@b.c".into()),
                name: Some("A".into())
            }
        );
    }

    /// API.md, Authentication: with `JWT_ISSUER` / `JWT_AUDIENCE` set, `iss` / `aud` must
    /// match, so the token the command line prints must carry them.
    #[test]
    fn a_token_minted_for_a_config_carries_its_issuer_and_audience() {
        let mut config = Config::from_lookup(|key| match key {
            "JWT_ISSUER" => Some("https://issuer.example".into()),
            "JWT_AUDIENCE" => Some("todo-api".into()),
            _ => None,
        })
        .unwrap();
        config.secret = b"test-secret-123".to_vec();
        let auth = Authenticator::new(&config);
        let ttl = std::time::Duration::from_secs(60);
        let token = mint_for(&config, "u1", None, None, ttl).unwrap();
        assert_eq!(auth.authenticate(Some(&bearer(&token))).unwrap().id, "u1");
        let bare = mint(&config.secret, "u1", None, None, ttl);
        assert!(
            auth.authenticate(Some(&bearer(&bare))).is_err(),
            "no iss/aud"
        );
    }

    /// Counted in characters, as `authenticate` counts them: 255 `é` (510 bytes) is fine.
    #[test]
    fn a_token_is_minted_only_for_a_sub_the_server_accepts() {
        let config = Config::from_lookup(|_| None).unwrap();
        let auth = Authenticator::new(&config);
        let ttl = std::time::Duration::from_secs(60);
        let longest = "é".repeat(MAX_SUB_CHARS);
        let token = mint_for(&config, &longest, None, None, ttl).unwrap();
        assert_eq!(
            auth.authenticate(Some(&bearer(&token))).unwrap().id,
            longest
        );
        let err = mint_for(&config, &format!("{longest}x"), None, None, ttl).unwrap_err();
        assert!(
            err.contains("256 characters") && err.contains("255"),
            "{err}"
        );
    }

    #[test]
    fn a_ttl_past_what_exp_can_hold_is_refused_not_wrapped() {
        let config = Config::from_lookup(|_| None).unwrap();
        let days = |n: u64| std::time::Duration::from_secs(n * 86_400);
        let err = mint_for(&config, "u1", None, None, days(36_500)).unwrap_err();
        assert!(
            err.contains("2106-02-07") && err.contains("at most"),
            "{err}"
        );
        // The longest ttl allowed gives an exp close to the limit, not one in the past.
        let longest = (LATEST_EXP - unix_now()) / 86_400;
        let token = mint_for(&config, "u1", None, None, days(longest)).unwrap();
        let claims = HS256Key::from_bytes(&config.secret)
            .verify_token::<Profile>(&token, None)
            .unwrap();
        let exp = claims.expires_at.unwrap().as_secs();
        assert!(exp > LATEST_EXP - 2 * 86_400 && exp <= LATEST_EXP, "{exp}");
    }

    #[test]
    fn missing_or_foreign_schemes_are_missing_tokens() {
        let auth = authenticator(b"test-secret-123");
        for header in [None, Some(""), Some("Basic abc"), Some("Bearer")] {
            assert!(
                matches!(auth.authenticate(header), Err(Error::MissingToken)),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_remembered_token_expires_as_verification_would_let_it() {
        let auth = authenticator(b"test-secret-123");
        let ttl = std::time::Duration::from_secs(120);
        let token = mint(b"test-secret-123", "u1", None, None, ttl);
        let user = auth.authenticate(Some(&bearer(&token))).unwrap();
        let now = unix_now();
        assert_eq!(auth.remembered(&token, now), Some(user.clone()));
        // Minted at `now` (or a second before): exp is now + 120 at most.
        let last_second = now + ttl.as_secs() + LEEWAY_SECONDS;
        assert!(auth.remembered(&token, last_second - 1).is_some());
        assert_eq!(auth.remembered(&token, last_second + 1), None);
        // The same token, verified afresh at that time, fails too.
        let later = VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(last_second + 1)),
            ..auth.options.clone()
        };
        assert!(auth
            .hs256
            .verify_token::<Profile>(&token, Some(later))
            .is_err());
    }

    #[test]
    fn a_remembered_token_changed_in_any_byte_is_verified_afresh() {
        let auth = authenticator(b"test-secret-123");
        let token = signed(b"test-secret-123", "u1");
        assert!(auth.authenticate(Some(&bearer(&token))).is_ok());
        // Header, payload, signature (not its last character, whose low bits are padding).
        for i in [0, token.len() / 2, token.len() - 2] {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(
                matches!(
                    auth.authenticate(Some(&bearer(&tampered))),
                    Err(Error::InvalidToken(_))
                ),
                "byte {i}"
            );
        }
        assert!(auth.authenticate(Some(&bearer(&token))).is_ok());
    }

    #[test]
    fn an_entry_is_only_ever_the_answer_for_its_own_token() {
        let auth = authenticator(b"test-secret-123");
        let alice = signed(b"test-secret-123", "alice");
        let mallory = signed(b"test-secret-123", "mallory");
        auth.authenticate(Some(&bearer(&alice))).unwrap();
        // As if mallory's token hashed to alice's slot.
        let slot = auth.hasher.hash_one(mallory.as_bytes());
        let alices = auth
            .verified
            .lock()
            .unwrap()
            .remove(&auth.hasher.hash_one(alice.as_bytes()))
            .unwrap();
        auth.verified.lock().unwrap().insert(slot, alices);
        assert_eq!(auth.remembered(&mallory, unix_now()), None);
        let user = auth.authenticate(Some(&bearer(&mallory))).unwrap();
        assert_eq!(user.id, "mallory");
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd") && !same_bytes(b"abc", b"ab"));
    }

    #[test]
    fn the_remembered_set_is_bounded() {
        let auth = authenticator(b"test-secret-123");
        for i in 0..VERIFIED_CAPACITY + 10 {
            let user = User {
                id: format!("u{i}"),
                email: None,
                name: None,
            };
            let entry = Verified {
                token: user.id.as_bytes().into(),
                user,
                until: u64::MAX,
                key: None,
            };
            auth.remember(0, entry);
        }
        assert!(auth.verified.lock().unwrap().len() <= VERIFIED_CAPACITY);
    }

    #[test]
    fn claim_values_that_do_not_decode_stay_out_of_the_cause() {
        let auth = authenticator(b"test-secret-123");
        let key = HS256Key::from_bytes(b"test-secret-123");
        let odd = [
            serde_json::json!({ "user": "alice@example.com" }),
            serde_json::json!({ "email": 5_551_234 }),
            serde_json::json!({ "sub": ["alice@example.com"] }),
        ];
        for custom in odd {
            let claims = Claims::with_custom_claims(custom.clone(), Duration::from_secs(60));
            let token = key.authenticate(claims).unwrap();
            let Err(Error::InvalidToken(cause)) = auth.authenticate(Some(&bearer(&token))) else {
                panic!("{custom} was accepted");
            };
            assert!(cause.contains("does not decode"), "{cause}");
            assert!(
                !cause.contains("alice") && !cause.contains("5551234"),
                "{cause}"
            );
        }
    }

    #[test]
    fn wrong_secret_is_invalid() {
        let auth = authenticator(b"test-secret-123");
        let token = signed(b"other-secret-123", "u1");
        assert!(matches!(
            auth.authenticate(Some(&bearer(&token))),
            Err(Error::InvalidToken(_))
        ));
    }
}
