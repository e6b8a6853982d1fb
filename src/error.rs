//! The one error type of the request path. Each variant is an HTTP outcome; its status and
//! body are decided here, never at the call site. Causes are logged, never sent.

use std::fmt;

use serde::Serialize;

use crate::http::Reply;

/// A field-level complaint inside a 400 body (`"errors": [...]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The JSON field the message is about.
    pub field: &'static str,
    /// One human-readable sentence.
    pub message: String,
}

/// Everything a request can end in other than success.
#[derive(Debug)]
pub enum Error {
    /// 400: the request is malformed; `detail` says how.
    BadRequest {
        /// One human-readable sentence.
        detail: String,
        /// Per-field messages for validation failures.
        errors: Vec<FieldError>,
    },
    /// 401 without a token at all (`WWW-Authenticate: Bearer`).
    MissingToken,
    /// 401 for a token that fails verification; the reason is logged, not sent.
    InvalidToken(String),
    /// 404: no such route, or no such task of the caller's.
    NotFound(&'static str),
    /// 405 with the route's `Allow` list (and `OPTIONS`).
    MethodNotAllowed(&'static str),
    /// 413: the body is over the limit.
    PayloadTooLarge,
    /// 503: the database cannot be reached; the cause is logged.
    Unavailable(String),
    /// 503: a large body would take more memory than the server gives such bodies now.
    Busy,
    /// 503: a token names a key the server does not have and cannot fetch now (the JWKS
    /// endpoint is unreachable or broken): the token may well be good, so not a 401, which
    /// would make the frontend drop it and sign in again; the cause is logged.
    KeysUnavailable(String),
    /// A request queued as the server stopped (503, with `Retry-After`).
    ShuttingDown,
    /// 503: a request that waited in the queue for a worker longer than the server answers
    /// in (`server::QUEUE_LIMIT`): the slots are held by statements the database does not
    /// answer; better a prompt 503 than a wait behind all of them.
    Overloaded,
    /// 500: a bug or an unexpected database answer; the cause is logged.
    Internal(String),
}

/// The crate-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A 400 with just a sentence.
    pub fn bad_request(detail: impl Into<String>) -> Error {
        Error::BadRequest {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// A 400 about one field; the field's message doubles as the detail.
    pub fn invalid_field(field: &'static str, message: impl Into<String>) -> Error {
        let message = message.into();
        Error::BadRequest {
            detail: message.clone(),
            errors: vec![FieldError { field, message }],
        }
    }

    /// The HTTP status of this outcome.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest { .. } => 400,
            Error::MissingToken | Error::InvalidToken(_) => 401,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::PayloadTooLarge => 413,
            Error::Unavailable(_)
            | Error::Busy
            | Error::KeysUnavailable(_)
            | Error::Overloaded
            | Error::ShuttingDown => 503,
            Error::Internal(_) => 500,
        }
    }

    /// The cause worth logging, for the variants whose cause is kept out of the body.
    pub fn cause(&self) -> Option<&str> {
        match self {
            Error::InvalidToken(c)
            | Error::Unavailable(c)
            | Error::KeysUnavailable(c)
            | Error::Internal(c) => Some(c),
            _ => None,
        }
    }

    /// The response: `{"detail": ...}` plus the headers RFC 6750 and RFC 9110 ask for.
    pub fn to_reply(&self) -> Reply {
        #[derive(Serialize)]
        struct Body<'a> {
            detail: &'a str,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            errors: &'a [FieldError],
        }
        let (detail, errors): (&str, &[FieldError]) = match self {
            Error::BadRequest { detail, errors } => (detail, errors),
            Error::MissingToken => (
                "Not authenticated: send Authorization: Bearer <token>.",
                &[],
            ),
            Error::InvalidToken(_) => ("Invalid or expired token.", &[]),
            Error::NotFound(what) => (what, &[]),
            Error::MethodNotAllowed(_) => ("Method not allowed.", &[]),
            Error::PayloadTooLarge => ("Request body is larger than 65536 bytes.", &[]),
            Error::Unavailable(_) => ("The database is unavailable; try again shortly.", &[]),
            Error::Busy => (
                "The server is busy sending other large answers; try again shortly.",
                &[],
            ),
            Error::KeysUnavailable(_) => (
                "The token's signing key cannot be fetched from the auth server's JWKS now; try again shortly.",
                &[],
            ),
            Error::ShuttingDown => ("The server is shutting down; try again shortly.", &[]),
            Error::Overloaded => (
                "The server is too busy to answer in time; try again shortly.",
                &[],
            ),
            Error::Internal(_) => ("internal server error", &[]),
        };
        let body = serde_json::to_vec(&Body { detail, errors }).expect("serializing strings");
        let mut reply = Reply::json(self.status(), body);
        match self {
            Error::MissingToken => reply.header("WWW-Authenticate", "Bearer"),
            Error::InvalidToken(_) => {
                reply.header("WWW-Authenticate", r#"Bearer error="invalid_token""#)
            }
            // Every path answers OPTIONS (API.md, CORS), so its `Allow` says so too.
            Error::MethodNotAllowed(allow) => reply.header("Allow", format!("{allow}, OPTIONS")),
            // Every 503 passes: try again shortly.
            _ if self.status() == 503 => reply.header("Retry-After", "1"),
            _ => {}
        }
        reply
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cause() {
            Some(cause) => write!(f, "{}: {cause}", self.status()),
            None => write!(f, "{}", self.status()),
        }
    }
}

impl std::error::Error for Error {}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Error {
        // The pool only fails when no connection could be had in time.
        Error::Unavailable(format!("connection pool: {e}"))
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Error {
        use postgres::error::SqlState;
        let unavailable = match e.code() {
            // A value that does not convert between our types and the statement's: a bug or a
            // schema that changed under us, not a database that is away.
            None if e.is_conversion() => false,
            // No SQLSTATE otherwise: the socket, TLS or protocol failed, the server is gone.
            None => true,
            Some(code) => {
                // The session ended or the connection failed: a lost connection.
                connection_ended(&e)
                    || [
                        SqlState::TOO_MANY_CONNECTIONS,
                        SqlState::READ_ONLY_SQL_TRANSACTION,
                        SqlState::DISK_FULL,
                        // A statement_timeout or lock_timeout set on the database (or a
                        // cancelled query): the database is busy or blocked, try again.
                        SqlState::QUERY_CANCELED,
                        SqlState::LOCK_NOT_AVAILABLE,
                        // Rolled back for a concurrent statement (a serialization failure
                        // or a deadlock), every time it was run (db/postgres.rs,
                        // CONFLICT_ATTEMPTS): nothing was done, try again.
                        SqlState::T_R_SERIALIZATION_FAILURE,
                        SqlState::T_R_DEADLOCK_DETECTED,
                        // A table is missing (the database re-created): the schema is
                        // applied again, at most every 30 s (db/postgres.rs).
                        SqlState::UNDEFINED_TABLE,
                    ]
                    .contains(code)
            }
        };
        // The driver's own Display of a server error is only "db error".
        let detail = match e.as_db_error() {
            Some(db) => format!("postgres: {} ({})", db.message(), db.code().code()),
            None => format!("postgres: {e}"),
        };
        if unavailable {
            Error::Unavailable(detail)
        } else {
            Error::Internal(detail)
        }
    }
}

/// The server ended the session (SQLSTATE class 57P, "operator intervention": shutting
/// down, terminated, `idle_session_timeout`, the database dropped).
pub fn session_ended(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("57P"))
}

/// The connection is over: the server ended the session (`session_ended`, or any error of
/// severity FATAL or PANIC) or the connection failed (SQLSTATE class 08). The driver hands
/// such an error to the statement that was waiting as it would any other, and says the
/// connection is closed (`Client::is_closed`) only once it has read the socket's end, which
/// PostgreSQL sends a little later (after the backend's exit callbacks have run).
pub fn connection_ended(e: &postgres::Error) -> bool {
    use postgres::error::Severity;
    let fatal = e
        .as_db_error()
        .is_some_and(|db| match db.parsed_severity() {
            Some(severity) => matches!(severity, Severity::Fatal | Severity::Panic),
            // Before PostgreSQL 9.6 only the localized severity is sent.
            None => matches!(db.severity(), "FATAL" | "PANIC"),
        });
    fatal || session_ended(e) || e.code().is_some_and(|c| c.code().starts_with("08"))
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(
                DatabaseBusy
                | DatabaseLocked
                | ReadOnly
                | CannotOpen
                | SystemIoFailure
                | DiskFull
                | NotADatabase
                | DatabaseCorrupt
                | FileLockingProtocolFailed,
            ) => Error::Unavailable(format!("sqlite: {e}")),
            _ => Error::Internal(format!("sqlite: {e}")),
        }
    }
}
