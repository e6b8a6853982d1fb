//! Our own view of a request and our own reply value, so that handlers never touch
//! tiny_http types and can be read (and tested) as plain functions.

/// What a handler may know about the request it serves.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method, upper case as sent (`GET`, `POST`, ...).
    pub method: &'a str,
    /// The path without the query string, still percent-encoded.
    pub path: &'a str,
    /// The raw query string, without the `?`; empty when there is none.
    pub query: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The whole body, already bounded by the server's size limit.
    pub body: &'a [u8],
}

/// A response as handlers build it; the server adds the request id, CORS and framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// `Content-Type`, or `None` for an empty body.
    pub content_type: Option<&'static str>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON reply from bytes that are already JSON.
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: Some("application/json"),
            headers: Vec::new(),
            body,
        }
    }

    /// `204 No Content`.
    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(&mut self, name: &'static str, value: impl Into<String>) {
        self.headers.push((name, value.into()));
    }

    /// Adds a header, builder style.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.header(name, value);
        self
    }
}
