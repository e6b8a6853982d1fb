use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;

use crate::common::{is_token, HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;
use crate::{Header, Response, StatusCode};

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // todo-api patch: whether the previous request's body was drained (see DrainGuard)
    body_done: Option<std::sync::mpsc::Receiver<bool>>,

    // todo-api patch: the line being read, a buffer kept for the connection.
    line: Vec<u8>,

    // todo-api patch: the deadline the socket's reads keep to while a request arrives.
    read_deadline: std::sync::Arc<crate::util::ReadDeadline>,

    // todo-api patch: the server's count of requests begun and not yet taken by `recv`,
    // and whether this connection's current request is in it.
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    counted: bool,

    /// todo-api patch: the request being read is a `HEAD`, so a refusal of it has no body
    /// (RFC 9110 §9.3.2); known once its request line is read.
    head: bool,
}

/// todo-api patch: limits on what a client may send before its request reaches a worker.
/// The request line (method, URL, version), in bytes: over it, 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// All header lines together, in bytes: over it, 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The number of header lines: over it, 431.
pub const MAX_HEADERS: usize = 100;
/// From the first byte of a request to the end of its headers: over it, 408. Idle
/// keep-alive time before that first byte is bounded by the socket's read timeout.
pub const HEADER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// todo-api patch: a connection's thread reads no further request while this many of its
/// answers are unwritten (pipelining depth; `SequentialWriterBuilder::wait_below`).
pub const MAX_UNWRITTEN: usize = 4;

/// Why reading one header line stopped.
enum LineError {
    Io(IoError),
    TooLong,
    Deadline,
    /// The socket timed out before the request's first byte: an idle keep-alive connection.
    Idle,
    /// todo-api patch: a request line with a byte outside ASCII.
    NotAscii,
    /// todo-api patch: a line ended by `\n` alone, or with a `\r` not followed by `\n`
    /// (RFC 9112 §2.2 lets a server refuse them).
    BareLf,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    /// todo-api patch: limits and idle connections.
    RequestLineTooLong,
    HeadersTooLarge(HTTPVersion),
    Idle,
    /// todo-api patch: a version above HTTP/1.1, answered 505 before the request is built.
    VersionNotSupported,
    /// todo-api patch: no `Host` where one is needed, several, or one that names no host.
    BadHost(HTTPVersion),
}

impl From<LineError> for ReadError {
    fn from(e: LineError) -> ReadError {
        match e {
            LineError::Io(e) => ReadError::ReadIoError(e),
            LineError::TooLong => ReadError::RequestLineTooLong,
            LineError::Deadline => ReadError::ReadIoError(IoError::new(
                ErrorKind::TimedOut,
                "request headers took too long",
            )),
            LineError::Idle => ReadError::Idle,
            LineError::NotAscii | LineError::BareLf => ReadError::WrongRequestLine,
        }
    }
}

/// todo-api patch: a JSON error response for what is refused before a worker sees it.
pub(crate) fn early_response(status: u16, detail: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = match crate::EARLY_ANSWER_HOOK.get() {
        Some(hook) => hook(status, detail),
        None => format!("conn-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
    };
    let response = Response::from_data(format!("{{\"detail\":\"{detail}\"}}").into_bytes())
        .with_status_code(StatusCode(status))
        .with_header(Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap())
        .with_header(Header::from_bytes(&b"X-Request-Id"[..], id.as_bytes()).unwrap())
        .with_header(closing());
    // As on the server's own 503s: when to try again.
    match status {
        503 => response.with_header(Header::from_bytes(&b"Retry-After"[..], &b"1"[..]).unwrap()),
        _ => response,
    }
}

/// todo-api patch: `Connection: close`, on every answer after which this connection ends.
fn closing() -> Header {
    Header::from_bytes(&b"Connection"[..], &b"close"[..]).unwrap()
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let read_deadline = read_socket.read_deadline();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            body_done: None,
            line: Vec::with_capacity(256),
            read_deadline,
            pending,
            counted: false,
            head: false,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source into `self.line`, without its CRLF.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line. todo-api patch: at most `max` bytes, and the
    /// header deadline starts at the request's first byte; the line goes into one buffer
    /// kept for the connection, found a `\n` at a time (a byte at a time, with a fresh
    /// buffer per line, was ~1,000 instructions a line).
    ///
    /// todo-api patch: a request line must be ASCII; in a header line each byte outside it
    /// (obs-text, RFC 9110 §5.5, such as a proxy's UTF-8 city name) is read as `?`: no
    /// header the server reads may hold one, and an unreadable value is refused where it
    /// matters (Content-Length, Transfer-Encoding) rather than dropped.
    fn read_next_line(
        &mut self,
        max: usize,
        deadline: &mut Option<std::time::Instant>,
        header: bool,
    ) -> Result<&str, LineError> {
        use std::io::BufRead;
        self.line.clear();

        loop {
            let available = match self.next_header_source.fill_buf() {
                Ok(bytes) if bytes.is_empty() => {
                    return Err(LineError::Io(IoError::new(
                        ErrorKind::ConnectionAborted,
                        "Unexpected EOF",
                    )))
                }
                Ok(bytes) => bytes,
                Err(e) => {
                    let timeout = matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
                    return Err(if timeout && deadline.is_none() {
                        LineError::Idle
                    } else if timeout {
                        LineError::Deadline
                    } else {
                        LineError::Io(e)
                    });
                }
            };
            if !self.counted {
                self.counted = true;
                self.pending.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let until = match *deadline {
                Some(until) => until,
                None => {
                    let until = std::time::Instant::now() + HEADER_DEADLINE;
                    *deadline = Some(until);
                    self.read_deadline.set(Some(until));
                    until
                }
            };
            if std::time::Instant::now() > until {
                return Err(LineError::Deadline);
            }

            // The line ends at the first `\n`, which must follow a `\r`. todo-api patch: a
            // lone `\n`, or a `\r` followed by anything but `\n`, is refused at once (RFC
            // 9112 §2.2; such a request waited for the 10 s header deadline, then got a 408).
            if self.line.last() == Some(&b'\r') && available[0] != b'\n' {
                return Err(LineError::BareLf);
            }
            let mut end = None;
            if let Some(i) = available.iter().position(|&b| b == b'\n' || b == b'\r') {
                match (available[i], available.get(i + 1)) {
                    (b'\r', Some(b'\n')) => end = Some(i + 2),
                    (b'\r', Some(_)) => return Err(LineError::BareLf),
                    // The `\n` may be in the next read.
                    (b'\r', None) => {}
                    // A `\n` first: the `\r` before it, if any, came in the last read.
                    _ if i == 0 && self.line.last() == Some(&b'\r') => end = Some(1),
                    _ => return Err(LineError::BareLf),
                }
            }
            let taken = end.unwrap_or(available.len());
            self.line.extend_from_slice(&available[..taken]);
            self.next_header_source.consume(taken);

            if end.is_some() {
                self.line.truncate(self.line.len() - 2); // removing the CRLF
                if self.line.len() > max {
                    return Err(LineError::TooLong);
                }
                if !self.line.is_ascii() {
                    if !header {
                        return Err(LineError::NotAscii);
                    }
                    for b in self.line.iter_mut().filter(|b| !b.is_ascii()) {
                        *b = b'?';
                    }
                }
                return Ok(std::str::from_utf8(&self.line).expect("ASCII is UTF-8"));
            }
            // `max` counts the line without its CRLF; a trailing `\r` may be the CR of it.
            if self.line.len() > max + usize::from(self.line.last() == Some(&b'\r')) {
                return Err(LineError::TooLong);
            }
        }
    }

    /// todo-api patch: the current request leaves the pending count without being queued.
    fn uncount(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Reads a request, keeping the pending count right: a request that fails to arrive
    /// leaves it; one that arrives stays in it until `Server::recv` takes it.
    fn read(&mut self) -> Result<Request, ReadError> {
        let result = self.read_request();
        // Between requests the socket waits with its idle timeout.
        self.read_deadline.set(None);
        if result.is_err() {
            self.uncount();
        }
        result
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read_request(&mut self) -> Result<Request, ReadError> {
        self.head = false;
        let mut deadline = None;
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                // todo-api patch: empty lines before a request line are skipped (RFC 9112
                // §2.2: a client may send a CRLF after a POST body); a few, not forever.
                // After one the connection is idle again: out of the pending count, and
                // no header deadline (else a keep-alive connection left quiet after it got
                // a 408 it never asked for, and a shutdown waited for it).
                let mut skipped = 0;
                while self.read_next_line(MAX_REQUEST_LINE, &mut deadline, false)?.is_empty()
                    && skipped < 4
                {
                    skipped += 1;
                    self.uncount();
                    deadline = None;
                    self.read_deadline.set(None);
                }
                let line = std::str::from_utf8(&self.line).expect("a request line is ASCII");

                let parsed = parse_request_line(line)?;
                self.head = parsed.0 == Method::Head;
                parsed
            };
            // todo-api patch: a refusal of the headers is answered in the request's version
            // if this server speaks it, else in 1.1 as the 505 below is (a 400 to `HTTP/0.9`
            // began `HTTP/0.9 400`).
            let answer_version = if (HTTPVersion(1, 0)..=HTTPVersion(1, 1)).contains(&version) {
                version.clone()
            } else {
                HTTPVersion(1, 1)
            };

            // getting all headers
            let headers = {
                let mut headers: Vec<Header> = Vec::new();
                let mut total = 0;
                loop {
                    let line = self
                        .read_next_line(MAX_HEADER_BYTES, &mut deadline, true)
                        .map_err(|e| match e {
                            LineError::TooLong => {
                                ReadError::HeadersTooLarge(answer_version.clone())
                            }
                            // todo-api patch: a CR inside a header value is a malformed
                            // header, not a malformed request line.
                            LineError::BareLf => ReadError::WrongHeader(answer_version.clone()),
                            other => other.into(),
                        })?;

                    if line.is_empty() {
                        break;
                    };
                    total += line.len();
                    if total > MAX_HEADER_BYTES || headers.len() >= MAX_HEADERS {
                        return Err(ReadError::HeadersTooLarge(answer_version));
                    }
                    // todo-api patch: the line is parsed as it came. It was trimmed first,
                    // so a line starting with a space or tab (obs-fold continuing the line
                    // before it, RFC 9112 §5.2, or whitespace before the first header, §2.2)
                    // was read as a header of its own: `X-Foo: a` then ` Content-Length: 5`
                    // gave this server a body that a proxy reading the fold as part of
                    // `X-Foo` never saw. Now its name starts with whitespace: 400 and close.
                    headers.push(match FromStr::from_str(line) {
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(answer_version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // todo-api patch: checked here, before the request takes this answer's writer. It
        // was checked on the built request, whose 505 then waited for that request's own
        // writer to be done with: forever, a connection thread and a pending request lost
        // (an HTTP/2 client heard nothing until the idle timeout; shutdown waited 10 s).
        // todo-api patch: a version below 1.0 too (`HTTP/0.9`, `HTTP/0.0`): it was served,
        // its answer's status line saying that version, and its connection kept.
        if !(HTTPVersion(1, 0)..=HTTPVersion(1, 1)).contains(&version) {
            return Err(ReadError::VersionNotSupported);
        }

        // todo-api patch: RFC 9112 §3.2, a 400 for an HTTP/1.1 request without `Host`, and for
        // any request with more than one, or with one that is not `uri-host [ ":" port ]`.
        // None of it was checked (an HTTP/1.0 request may still leave it out).
        let mut hosts = headers.iter().filter(|h| h.field.equiv("Host"));
        let host_ok = match (hosts.next(), hosts.next()) {
            (None, _) => version == (1, 0),
            (Some(host), None) => is_host(host.value.as_str()),
            (Some(_), Some(_)) => false,
        };
        if !host_ok {
            return Err(ReadError::BadHost(version));
        }

        // building the writer for the request
        let writer = self.sink.next().unwrap();
        let turn = writer.turn();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let (mut request, body_done) = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
            &self.read_deadline,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::BadFraming => ReadError::WrongHeader(version.clone()),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;

        self.body_done = body_done;
        request.turn = turn;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            // todo-api patch: never parse the rest of an undrained body as a request.
            if let Some(done) = self.body_done.take() {
                if done.recv() != Ok(true) {
                    return None;
                }
            }
            // todo-api patch: no further request while too many answers are unwritten.
            self.sink.wait_below(MAX_UNWRITTEN);

            let mut rq = match self.read() {
                Err(ReadError::Idle) => return None,

                Err(ReadError::RequestLineTooLong) => {
                    let writer = self.sink.next().unwrap();
                    early_response(414, "The request line (method and URL) is too long.")
                        .raw_print(writer, HTTPVersion(1, 1), &[], self.head, None)
                        .ok();
                    return None;
                }

                Err(ReadError::HeadersTooLarge(ver)) => {
                    let writer = self.sink.next().unwrap();
                    early_response(431, "The request headers are too large.")
                        .raw_print(writer, ver, &[], self.head, None)
                        .ok();
                    return None;
                }

                Err(ReadError::WrongRequestLine) => {
                    let writer = self.sink.next().unwrap();
                    let response = early_response(400, "Malformed HTTP request line.");
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], self.head, None)
                        .ok();
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::WrongHeader(ver)) => {
                    let writer = self.sink.next().unwrap();
                    let response = early_response(400, "Malformed HTTP header or body framing.");
                    response.raw_print(writer, ver, &[], self.head, None).ok();
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    // request timeout
                    let writer = self.sink.next().unwrap();
                    let response = early_response(408, "The request took too long to arrive.");
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], self.head, None)
                        .ok();
                    return None; // closing the connection
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    let writer = self.sink.next().unwrap();
                    early_response(417, "The only expectation supported is 100-continue.")
                        .raw_print(writer, ver, &[], self.head, None)
                        .ok();
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                Err(ReadError::VersionNotSupported) => {
                    let writer = self.sink.next().unwrap();
                    early_response(505, "This server speaks HTTP/1.0 and HTTP/1.1 only.")
                        .raw_print(writer, HTTPVersion(1, 1), &[], self.head, None)
                        .ok();
                    return None;
                }

                Err(ReadError::BadHost(ver)) => {
                    let writer = self.sink.next().unwrap();
                    early_response(400, "Missing, repeated or malformed Host header.")
                        .raw_print(writer, ver, &[], self.head, None)
                        .ok();
                    return None;
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // updating the status of the connection; todo-api patch: `Connection` is a list
            // of options, and all its lines make one list (RFC 9110 §5.3, §7.6.1). Only the
            // first line was read, for `close` or `keep-alive` anywhere in its text
            // (`foo-close-bar` closed, a `close` on a second line did not), and `upgrade`
            // ended the connection: this server upgrades to nothing, so that option asks
            // nothing of it (RFC 9110 §7.8).
            let (mut close, mut keep_alive) = (false, false);
            for option in rq
                .headers()
                .iter()
                .filter(|h| h.field.equiv("Connection"))
                .flat_map(|h| h.value.as_str().split(','))
            {
                let option = option.trim_matches(|c| c == ' ' || c == '\t');
                close |= option.eq_ignore_ascii_case("close");
                keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
            self.no_more_requests =
                close || (*rq.http_version() == HTTPVersion(1, 0) && !keep_alive);
            rq.last_on_connection = self.no_more_requests;

            // returning the request; `Server::recv` takes it out of the pending count
            self.counted = false;
            return Some(rq);
        }
    }
}

/// Parses a "HTTP/1.1" string.
///
/// todo-api patch: any `HTTP/<digit>.<digit>` is a version (upstream knew 0.9, 1.0, 1.1,
/// 2.0 and 3.0; `HTTP/1.2` was a malformed request line, 400). A minor version above 1 is
/// served as HTTP/1.1 (RFC 9112 §2.3: the highest minor version we implement); a major
/// version above 1 is 505, as before.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version.as_bytes() {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            (major - b'0', minor - b'0')
        }
        _ => return Err(ReadError::WrongRequestLine),
    };
    Ok(match (major, minor) {
        (1, 2..) => HTTPVersion(1, 1),
        (major, minor) => HTTPVersion(major, minor),
    })
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
///
/// todo-api patch: exactly `method SP request-target SP HTTP-version` (RFC 9112 §3), a token
/// for the method and visible characters for the target. The line was trimmed and what
/// followed the version ignored: ` GET /health HTTP/1.1 junk` was served as `GET /health`,
/// where a proxy that reads the line otherwise sees another request.
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None)
            if is_token(method)
                && !target.is_empty()
                && target.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            let method = method.parse().map_err(|_| ReadError::WrongRequestLine)?;
            Ok((method, target.to_owned(), parse_http_version(version)?))
        }
        _ => Err(ReadError::WrongRequestLine),
    }
}

/// todo-api patch: whether a `Host` value is `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986
/// §3.2.2-3): an IP literal in brackets, or a reg-name (an IPv4 address is one too, and so is
/// the empty name), then a port of digits, if any.
fn is_host(value: &str) -> bool {
    let host = match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        // No port, or a colon inside an IP literal.
        _ => value,
    };
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(literal) => is_ip_literal(literal),
        None => is_reg_name(host),
    }
}

/// unreserved / sub-delims (RFC 3986 §2.2-3): what a reg-name holds besides `%`-escapes.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// `*( unreserved / pct-encoded / sub-delims )` (RFC 3986 §3.2.2).
fn is_reg_name(name: &str) -> bool {
    let mut pieces = name.split('%');
    let first = pieces.next().unwrap_or_default();
    first.bytes().all(is_name_byte)
        && pieces.all(|piece| {
            piece.len() >= 2
                && piece.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit)
                && piece.bytes().skip(2).all(is_name_byte)
        })
}

/// `IPv6address / IPvFuture` (RFC 3986 §3.2.2), what is between the brackets.
fn is_ip_literal(literal: &str) -> bool {
    match literal.strip_prefix(['v', 'V']) {
        // IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        Some(future) => future.split_once('.').is_some_and(|(version, address)| {
            !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_hexdigit())
                && !address.is_empty()
                && address.bytes().all(|b| b == b':' || is_name_byte(b))
        }),
        None => literal.parse::<std::net::Ipv6Addr>().is_ok(),
    }
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
        // todo-api patch: three parts, one space between each, nothing around them.
        assert!(super::parse_request_line("GET /hello HTTP/1.1 junk").is_err());
        assert!(super::parse_request_line(" GET /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line("GET  /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line("GET /hello HTTP/1.1 ").is_err());
        assert!(super::parse_request_line("G(T /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line("GET /he\u{1}llo HTTP/1.1").is_err());
    }

    #[test]
    fn test_is_host() {
        for host in [
            "x", "127.0.0.1:8080", "localhost", "example.com:", "", ":80", "a%2Db.example",
            "[::1]", "[::1]:8080", "[2001:db8::7]:443", "[::ffff:192.0.2.1]", "[v7.a:b]:1",
        ] {
            assert!(super::is_host(host), "{:?}", host);
        }
        for host in [
            "a b", "x/y", "x:80:80", "x:port", "user@x", "[::1", "::1", "[::1]x", "[::g]",
            "[v.a]", "[v7.]", "a%2", "a%zz", "x?", "x#", "\"x\"",
        ] {
            assert!(!super::is_host(host), "{:?}", host);
        }
    }
}
