//! The HTTP side: one tiny_http listener, whose connection threads answer a request
//! themselves while fewer than `WORKERS` requests are being handled and otherwise queue it for
//! a fixed pool of worker threads; and per request: request id, body limit, CORS,
//! `catch_unwind`, access log.

use std::io::{Cursor, Read};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Header, Response, StatusCode};

use crate::error::Error;
use crate::http::{Reply, Request, LARGE_BODY_BYTES};
use crate::router::{self, Ctx};

/// API.md, Errors: bodies up to exactly this many bytes are accepted.
pub const MAX_BODY_BYTES: usize = 65_536;

/// The CORS preflight answer's fixed headers (API.md, CORS).
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Content-Type";
/// The response headers a browser lets the frontend's script read besides the safelisted
/// ones (API.md, CORS): `Location` of a 201, `Retry-After` of a 503, and `X-Request-Id` to
/// quote in a bug report.
const EXPOSE_HEADERS: &str = "Location, Retry-After, X-Request-Id";

/// The longest shutdown waits for requests under way; queued ones are still answered.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// At least this long for a request begun on a connection's thread just as the drain ended.
const DIRECT_GRACE: Duration = Duration::from_secs(3);
/// A request that waited longer than this in the queue for a worker and a slot is answered
/// 503 at once instead of being run: the slots are held by statements that wait on the
/// database (each for up to its 5 s deadline), and a queue behind them would otherwise be
/// served one batch of `WORKERS` per deadline (40 requests behind a lock: answered after
/// 5, 10, 15, 20 and 25 s). Under load without such trouble a request waits milliseconds.
pub const QUEUE_LIMIT: Duration = Duration::from_secs(5);

/// A running server; dropping it without `shutdown` leaves the workers running.
pub struct Server {
    http: Arc<tiny_http::Server>,
    /// The listening socket tiny_http accepts on, kept to stop accepting at shutdown.
    listener: std::net::TcpListener,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    addr: SocketAddr,
}

/// What the per-request code needs besides the handlers' `Ctx`.
struct Shared {
    ctx: Ctx,
    cors_origins: Vec<String>,
    stopping: AtomicBool,
    ids: RequestIds,
    /// Set at shutdown: answers say `Connection: close`.
    draining: AtomicBool,
    /// Requests being handled, by a worker or on their connection's thread.
    in_flight: AtomicUsize,
    /// Requests handled at once, on any thread.
    slots: Slots,
    /// Threads writing large answers for the workers.
    writers: AtomicUsize,
}

impl Server {
    /// Binds the listener and starts `workers` threads.
    pub fn start(
        listen: SocketAddr,
        workers: usize,
        ctx: Ctx,
        cors_origins: Vec<String>,
    ) -> Result<Server, String> {
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        // Timeouts and TCP_NODELAY are set on each accepted socket by tiny_http (vendored,
        // vendor/tiny_http/PATCHES.md), not here: a receive timeout on a listening socket
        // makes accept() fail after that long without a new connection.
        let accepting = listener
            .try_clone()
            .map_err(|e| format!("cannot listen: {e}"))?;
        let shared = Arc::new(Shared {
            ctx,
            cors_origins,
            stopping: AtomicBool::new(false),
            ids: RequestIds::new(),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            slots: Slots::new(workers),
            writers: AtomicUsize::new(0),
        });
        let direct: tiny_http::DirectHandler = {
            let shared = shared.clone();
            Arc::new(move |rq| handle_direct(&shared, rq))
        };
        tiny_http::set_early_answer_hook(Box::new(early_answer_id));
        let http = tiny_http::Server::from_listener_with(accepting, None, Some(direct))
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or("listener has no IP address")?;
        let http = Arc::new(http);
        let workers = (0..workers)
            .map(|i| {
                let http = http.clone();
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker(&http, &shared))
                    .map_err(|e| format!("cannot start worker thread: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Server {
            http,
            listener,
            workers,
            shared,
            addr,
        })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes the requests under way, then stops the workers.
    ///
    /// The listening socket is shut down first, so new connections are refused. A request
    /// is under way from its first byte (tiny_http reads small bodies before it hands a
    /// request over) until it has been answered; answers given meanwhile carry
    /// `Connection: close`. Once nothing is under way (or `DRAIN_LIMIT` has passed) each
    /// worker is woken once and exits; a request that arrives on an open connection after
    /// that is not handled, and one a connection's thread began just before is finished.
    pub fn shutdown(self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        if let Err(e) = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Read) {
            log::warn!("cannot stop the listener: {e}");
        }
        let deadline = Instant::now() + DRAIN_LIMIT;
        wait_while(deadline, || {
            self.http.pending_requests() > 0 || self.shared.in_flight.load(Ordering::SeqCst) > 0
        });
        self.shared.stopping.store(true, Ordering::SeqCst);
        // One unblock per worker: each wakes exactly one blocked `recv`, after the
        // requests already queued ahead of it.
        for _ in &self.workers {
            self.http.unblock();
        }
        for worker in self.workers {
            let _ = worker.join();
        }
        // Handled on connection threads, which are not joined: begun before `stopping` was set.
        // Requests queued since the workers stopped are refused (503, and the connection
        // closed): left unanswered, their connections' threads would wait for them for good
        // (a connection is not read from while 4 of its answers are unwritten).
        wait_while(deadline.max(Instant::now() + DIRECT_GRACE), || {
            while let Ok(Some(rq)) = self.http.try_recv() {
                let mut reply = Error::ShuttingDown.to_reply();
                reply.header("Connection", "close");
                let _ = rq.respond(to_response(reply));
            }
            self.shared.in_flight.load(Ordering::SeqCst) > 0
        });
    }
}

/// Polls `busy` every 10 ms until it is false or `deadline` has passed.
fn wait_while(deadline: Instant, busy: impl Fn() -> bool) {
    while Instant::now() < deadline && busy() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn worker(http: &tiny_http::Server, shared: &Arc<Shared>) {
    loop {
        match http.recv() {
            Ok(request) => {
                let slot = shared.slots.take();
                let in_flight = InFlight::new(shared);
                handle(shared, request, Some(slot), in_flight, Writer::Worker);
            }
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return,
            // The listener's own shutdown surfaces here once; it is expected.
            Err(_) if shared.draining.load(Ordering::SeqCst) => {}
            Err(e) => log::warn!("accepting a request failed: {e}"),
        }
    }
}

/// A request on its connection's own thread (tiny_http's direct handler): answered there
/// when a slot is free, which saves handing it to a worker (a wake-up and a context switch
/// per request), else given back to be queued for the workers.
///
/// `/health` and the docs take no slot (`router::answers_without_waiting`): when the database
/// hangs and every slot waits on it, a monitor still learns that it does.
fn handle_direct(shared: &Arc<Shared>, rq: tiny_http::Request) -> Option<tiny_http::Request> {
    let target = origin_form(rq.url());
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let slot = if router::answers_without_waiting(rq.method().as_str(), path) {
        None
    } else {
        let Some(slot) = shared.slots.try_take() else {
            shared.slots.queue();
            let mut rq = rq;
            rq.mark_queued();
            return Some(rq);
        };
        Some(slot)
    };
    // Counted before `stopping` is read: a shutdown that has set it waits for this count,
    // so a request is either answered in full or left unanswered (never cut off midway).
    let in_flight = InFlight::new(shared);
    if shared.stopping.load(Ordering::SeqCst) {
        shared.slots.queue();
        return Some(rq);
    }
    handle(shared, rq, slot, in_flight, Writer::Connection);
    None
}

/// One request counted in `Shared::in_flight` until dropped (even by a panic), which is
/// once its answer is written.
struct InFlight<'a>(&'a Shared);

impl InFlight<'_> {
    fn new(shared: &Shared) -> InFlight<'_> {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared)
    }

    /// The same count, for a thread of its own: counted again before this one lets go, so
    /// that it never drops to zero in between.
    fn owned(self, shared: &Arc<Shared>) -> OwnedInFlight {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        OwnedInFlight(shared.clone())
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `InFlight` that a thread of its own can carry.
struct OwnedInFlight(Arc<Shared>);

impl Drop for OwnedInFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `WORKERS` slots: at most that many requests are handled at once, on their connections'
/// threads or on the workers. A worker holding a queued request waits for a slot; a
/// connection's thread takes one only while more are free than there are requests ahead of
/// it (queued, or held by a waiting worker), so that under load requests are served in the
/// order they came: a connection's thread never takes the slot a worker has just given back
/// while requests wait in the queue.
struct Slots {
    state: Mutex<SlotState>,
    freed: Condvar,
}

struct SlotState {
    free: usize,
    /// Workers waiting in `take`.
    waiting: usize,
    /// Requests given to the workers' queue and not yet taken from it.
    queued: usize,
}

/// A slot in use, given back when dropped (even by a panic).
struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            state: Mutex::new(SlotState {
                free: n,
                waiting: 0,
                queued: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// A slot for a connection's thread, if one is free for it after every request ahead
    /// of it.
    fn try_take(&self) -> Option<Slot<'_>> {
        let mut state = self.lock();
        (state.free > state.waiting + state.queued).then(|| {
            state.free -= 1;
            Slot(self)
        })
    }

    /// Counts a request that its connection's thread gives to the workers' queue.
    fn queue(&self) {
        self.lock().queued += 1;
    }

    /// A slot for a worker that has taken a request from the queue: waits until one is free.
    fn take(&self) -> Slot<'_> {
        let mut state = self.lock();
        state.queued = state.queued.saturating_sub(1);
        state.waiting += 1;
        while state.free == 0 {
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.waiting -= 1;
        state.free -= 1;
        Slot(self)
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // The state is two counters changed together under the lock: never half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.0.lock();
            state.free += 1;
            state.waiting
        };
        if waiting > 0 {
            self.0.freed.notify_one();
        }
    }
}

/// Which thread writes an answer once it is built, without the request's slot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// The connection's own thread: the request was answered there.
    Connection,
    /// A worker: it writes small answers itself; a large one (`LARGE_BODY_BYTES`, which a
    /// client that does not read could keep unwritten for the 10 s write timeout), and one
    /// that would first wait for such an answer before it on its connection, go to a thread
    /// of their own, so that such clients do not hold the workers the queued requests wait
    /// for (up to `MAX_WRITER_THREADS` at once).
    Worker,
}

/// Threads writing large answers at most; past that a worker writes one itself. Their
/// bodies are bounded by the `BodyBudget`, their number by this: as many as connections may
/// be open (each of which holds a thread already), so that clients holding them all would
/// first have to hold hundreds of connections, reading each at the pace rule's 16 KiB/s.
/// Under 64 (as before), some twenty such clients could take them all, and then the workers.
/// A writer thread costs its stack's touched pages (some 16 KiB).
const MAX_WRITER_THREADS: usize = tiny_http::MAX_CONNECTIONS;

/// Builds the answer holding the request's slot, gives the slot back, then writes it: a
/// client slow to read its answer holds no slot (nor, with `Writer`, a worker).
fn handle(
    shared: &Arc<Shared>,
    mut rq: tiny_http::Request,
    slot: Option<Slot<'_>>,
    in_flight: InFlight<'_>,
    writer: Writer,
) {
    let started = Instant::now();
    let request_id = shared.ids.for_request(header(&rq, "X-Request-Id"));
    let origin = header(&rq, "Origin").map(str::to_string);
    // Case-sensitive (RFC 9110 §9.1): `get` is an unknown method (405), not GET.
    let method = rq.method().as_str().to_string();
    let url = origin_form(rq.url()).to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let overdue = rq.queued_for().is_some_and(|waited| waited > QUEUE_LIMIT);
    let reply = if overdue {
        // The body is read all the same (as for any answer), so that the connection can go on.
        read_body(&mut rq).and(Err(Error::Overloaded))
    } else if method == "OPTIONS" {
        // API.md, CORS: preflights never need a token; an unknown origin gets no headers.
        // A body is not needed either, but the 413 limit holds on every route.
        read_body(&mut rq).map(|_| preflight(&shared.cors_origins, origin.as_deref()))
    } else {
        read_body(&mut rq).and_then(|body| {
            let authorization = authorization(&rq);
            let req = Request {
                method: &method,
                path,
                query,
                authorization: authorization.as_deref(),
                body: &body,
            };
            catch_unwind(AssertUnwindSafe(|| router::route(&shared.ctx, &req))).unwrap_or_else(
                |panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(Error::Internal(format!("handler panicked: {what}")))
                },
            )
        })
    };
    let mut reply = reply.unwrap_or_else(|e| {
        if let Some(cause) = e.cause() {
            let level = if e.status() >= 500 {
                log::Level::Error
            } else {
                log::Level::Debug
            };
            log::log!(level, "request {request_id}: {cause}");
        }
        e.to_reply()
    });
    // Whether an answer carries CORS headers depends on the request's `Origin`, so every
    // answer says so, those without them too: a shared cache must not give an answer made
    // for no origin (or another one) to the frontend, whose browser would then block it.
    reply.header("Vary", "Origin");
    if let Some(origin) = origin.filter(|o| allowed(&shared.cors_origins, o)) {
        reply.header("Access-Control-Allow-Origin", origin);
        // A preflight's answer is read by the browser alone, and its headers are fixed.
        let preflight =
            method == "OPTIONS" && header(&rq, "Access-Control-Request-Method").is_some();
        if !preflight {
            reply.header("Access-Control-Expose-Headers", EXPOSE_HEADERS);
        }
    }
    reply.header("X-Request-Id", request_id.clone());
    // The connection ends after this answer: say so (RFC 9112, 9.6), so that a client that
    // keeps connections for reuse (wrk does, whatever it sent) opens a new one instead of
    // sending its next request down this one. A 413's body was left unread, which closes it.
    if rq.is_last_on_connection() || reply.status == 413 || shared.draining.load(Ordering::SeqCst) {
        reply.header("Connection", "close");
    } else if *rq.http_version() == (1, 0) {
        // An HTTP/1.0 client that asked to keep the connection learns that it is kept only
        // from this (RFC 9112 §9.3, 1.0 clients): without it, it closes and connects again.
        reply.header("Connection", "keep-alive");
    }
    drop(slot);
    let answer = Answer {
        rq,
        reply,
        request_id,
        method,
        url,
        started,
        _in_flight: None,
    };
    let spare_writer = || {
        shared
            .writers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WRITER_THREADS).then_some(n + 1)
            })
            .is_ok()
    };
    // A worker also leaves an answer that would wait for an earlier one on its connection
    // (a pipelining client that does not read a large answer can make that wait last for
    // the write timeout, with queued requests waiting for the worker).
    let would_wait = || answer.reply.body.len() > LARGE_BODY_BYTES || !answer.rq.writer_is_free();
    if writer == Writer::Worker && would_wait() && spare_writer() {
        let answer = Answer {
            _in_flight: Some(in_flight.owned(shared)),
            ..answer
        };
        // Taken back if the thread cannot be started, and written here after all.
        let answer = Arc::new(Mutex::new(Some(answer)));
        let theirs = answer.clone();
        let writers = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let _counted = WriterThread(writers);
                if let Some(answer) = take(&theirs) {
                    answer.send();
                }
            });
        if let Err(e) = spawned {
            shared.writers.fetch_sub(1, Ordering::AcqRel);
            log::warn!("cannot start a thread to write an answer, writing it here: {e}");
            if let Some(answer) = take(&answer) {
                answer.send();
            }
        }
    } else {
        answer.send();
        drop(in_flight);
    }
}

/// A writer thread's count in `Shared::writers`, given back when dropped (even by a panic).
struct WriterThread(Arc<Shared>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.0.writers.fetch_sub(1, Ordering::AcqRel);
    }
}

fn take(answer: &Mutex<Option<Answer>>) -> Option<Answer> {
    answer.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// A built answer on its way to the client, with what its log line needs.
struct Answer {
    rq: tiny_http::Request,
    reply: Reply,
    request_id: String,
    method: String,
    url: String,
    started: Instant,
    /// For an answer written on a thread of its own, its count in `Shared::in_flight`,
    /// released once it is written (a shutdown waits for that).
    _in_flight: Option<OwnedInFlight>,
}

impl Answer {
    fn send(self) {
        let Answer {
            rq,
            mut reply,
            request_id,
            method,
            url,
            started,
            ..
        } = self;
        let path = url.split_once('?').map_or(url.as_str(), |(path, _)| path);
        let status = reply.status;
        // The body's share of the budget is held until it has been written.
        let hold = reply.hold.take();
        let delivered = rq.respond(to_response(reply));
        drop(hold);
        // Tenths of a millisecond, rounded, in integers (float formatting was ~600
        // instructions).
        let tenths = (started.elapsed().as_micros() + 50) / 100;
        log::info!(
            "{} {} {status} {}.{}ms id={request_id}{}",
            loggable(&method),
            loggable_path(path),
            tenths / 10,
            tenths % 10,
            Undelivered(delivered.err())
        );
    }
}

/// For the access log: nothing, or why the answer did not reach the client (cut off for
/// reading too slowly, or written after its connection was cut), so that its status is not
/// taken for what the client got. tiny_http's `respond` reports a client that left (a
/// reset, a broken pipe) on the answer's own write as success.
struct Undelivered(Option<std::io::Error>);

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(e) => write!(f, " not delivered: {e}"),
            None => Ok(()),
        }
    }
}

/// The path and query of a request target: itself, or those of an absolute-form target
/// (`GET http://host/api/tasks HTTP/1.1`, which RFC 9112 §3.2.2 says a server must accept;
/// it was 404). The authority in it is not used: nothing here depends on the host.
fn origin_form(target: &str) -> &str {
    let Some((scheme, rest)) = target.split_once("://") else {
        return target;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return target;
    }
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        // `http://host` or `http://host?q`: the path is `/`, and a query cannot be kept
        // without one; served as `/`.
        _ => "/",
    }
}

/// A path for the access log, as `loggable`, with every segment that holds a JWT (`eyJ`,
/// the start of any JSON object in base64url, then a `.`) replaced: a client that put its
/// token into the URL (`/api/tasks/eyJhbGciOi...`, a 400) must not get it into the log.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    let holds_token = |segment: &str| {
        segment
            .find("eyJ")
            .is_some_and(|start| segment[start..].contains('.'))
    };
    if !path.split('/').any(holds_token) {
        return loggable(path);
    }
    let redacted: Vec<&str> = path
        .split('/')
        .map(|segment| {
            if holds_token(segment) {
                "[token?]"
            } else {
                segment
            }
        })
        .collect();
    loggable(&redacted.join("/")).into_owned().into()
}

/// `text` for a log line: control characters (an escape sequence a client put in its request
/// line would otherwise reach the operator's terminal) are written as `\u{1b}`.
fn loggable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_unicode());
        } else {
            escaped.push(c);
        }
    }
    escaped.into()
}

/// Reads the body, refusing more than `MAX_BODY_BYTES` without reading the rest.
fn read_body(rq: &mut tiny_http::Request) -> Result<Vec<u8>, Error> {
    if rq.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(Error::PayloadTooLarge);
    }
    let mut body = Vec::with_capacity(rq.body_length().unwrap_or(0));
    rq.as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::bad_request(format!("Could not read the request body: {e}.")))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    Ok(body)
}

fn preflight(cors_origins: &[String], origin: Option<&str>) -> Reply {
    let mut reply = Reply::no_content();
    if origin.is_some_and(|o| allowed(cors_origins, o)) {
        reply.header("Access-Control-Allow-Methods", ALLOW_METHODS);
        reply.header("Access-Control-Allow-Headers", ALLOW_HEADERS);
        reply.header("Access-Control-Max-Age", "600");
    }
    reply
}

fn allowed(cors_origins: &[String], origin: &str) -> bool {
    cors_origins.iter().any(|o| o == origin)
}

/// The `Authorization` header. It is not a list (RFC 9110 §11.6.2), so two of them are
/// ambiguous (a proxy may have read the other one): their values are combined as a
/// recipient may combine any repeated field (§5.3, "a, b"), which is no token at all (401),
/// instead of the first one being taken.
fn authorization(rq: &tiny_http::Request) -> Option<String> {
    let mut values = rq
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str());
    let first = values.next()?.to_string();
    Some(values.fold(first, |all, value| all + ", " + value))
}

fn header<'a>(rq: &'a tiny_http::Request, name: &'static str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

fn to_response(reply: Reply) -> Response<Cursor<Vec<u8>>> {
    let mut headers = Vec::with_capacity(reply.headers.len() + 1);
    if let Some(content_type) = reply.content_type {
        headers.push(make_header("Content-Type", content_type));
    }
    headers.extend(
        reply
            .headers
            .iter()
            .map(|(name, value)| make_header(name, value)),
    );
    let len = reply.body.len();
    Response::new(
        StatusCode(reply.status),
        headers,
        Cursor::new(reply.body),
        Some(len),
        None,
    )
    // Always a Content-Length, never chunked: simpler for every client.
    .with_chunked_threshold(usize::MAX)
}

fn make_header(name: &str, value: &str) -> Header {
    // Our header values are ASCII we built ourselves; a request id was checked to be.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

/// Request ids: the client's own when it is 1–64 characters of `[A-Za-z0-9._-]`, else a
/// fresh one from a per-process random prefix and a counter.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> RequestIds {
        let seed = crate::auth::random_secret();
        RequestIds {
            prefix: u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]),
            next: AtomicU64::new(1),
        }
    }

    fn for_request(&self, sent: Option<&str>) -> String {
        match sent {
            Some(id) if valid_request_id(id) => id.to_string(),
            _ => format!(
                "{:08x}-{:x}",
                self.prefix,
                self.next.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }
}

/// The request id, and the access-log line, of an answer tiny_http gives by itself before a
/// request is read whole (its method and path may be unknown, its `X-Request-Id` unread):
/// a fresh id as the server's own are made (it was `conn-N`, counted from 1 in every
/// process, and logged nowhere).
fn early_answer_id(status: u16, detail: &str) -> String {
    static IDS: std::sync::OnceLock<RequestIds> = std::sync::OnceLock::new();
    let id = IDS.get_or_init(RequestIds::new).for_request(None);
    log::info!("- - {status} id={id} (refused before it was read whole: {detail})");
    id
}

fn valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_get_no_control_characters_from_the_request() {
        assert_eq!(loggable("/api/tasks?sort=title"), "/api/tasks?sort=title");
        assert_eq!(loggable("/ünï/ok"), "/ünï/ok");
        assert_eq!(
            loggable("/x\u{1b}[31mred\u{7}\u{9b}"),
            "/x\\u{1b}[31mred\\u{7}\\u{9b}"
        );
    }

    #[test]
    fn tokens_in_a_path_are_kept_out_of_the_log() {
        assert_eq!(loggable_path("/api/tasks/12"), "/api/tasks/12");
        assert_eq!(
            loggable_path("/api/tasks/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln/complete"),
            "/api/tasks/[token?]/complete"
        );
        assert_eq!(
            loggable_path("/api/Bearer%20eyJhbGciOiJIUzI1NiJ9.e30.x"),
            "/api/[token?]"
        );
        // Not a token: no `.` after it.
        assert_eq!(loggable_path("/api/eyJ"), "/api/eyJ");
        assert_eq!(loggable_path("/x/eyJ.\u{1b}"), "/x/[token?]");
    }

    #[test]
    fn slots_bound_the_requests_handled_at_once() {
        let slots = Slots::new(2);
        let a = slots.try_take().expect("first slot");
        let b = slots.take();
        assert!(slots.try_take().is_none(), "a third request at once");
        drop(a);
        let c = slots.try_take().expect("a slot given back is free again");
        drop((b, c));
        assert_eq!(slots.lock().free, 2);
    }

    #[test]
    fn a_waiting_worker_gets_the_next_free_slot_before_connection_threads() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.try_take().expect("the only slot");
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let _slot = slots.take();
                tx.send(()).unwrap();
                // Hold it until the main thread has looked.
                std::thread::sleep(Duration::from_millis(100));
            })
        };
        while slots.lock().waiting == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(rx.try_recv().is_err(), "the worker took a slot in use");
        drop(held);
        // Freed while the worker waits: a connection's thread must not take it first.
        assert!(slots.try_take().is_none(), "passed over the waiting worker");
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the worker gets the freed slot");
        worker.join().unwrap();
        assert!(
            slots.try_take().is_some(),
            "free again once the worker is done"
        );
    }

    #[test]
    fn a_queued_request_is_served_before_a_later_one() {
        let slots = Slots::new(1);
        let held = slots.try_take().expect("the only slot");
        // A second request finds no slot: it is queued for the workers.
        assert!(slots.try_take().is_none());
        slots.queue();
        drop(held);
        // The slot is free, but the queued request came first.
        assert!(slots.try_take().is_none(), "passed over the queued request");
        let worker = slots.take();
        assert_eq!(slots.lock().queued, 0, "the queued request was taken");
        drop(worker);
        assert!(
            slots.try_take().is_some(),
            "with nothing queued, a connection's thread takes the free slot"
        );
    }

    #[test]
    fn absolute_form_targets_are_served_as_their_path_and_query() {
        for (target, served) in [
            ("/api/tasks?sort=title", "/api/tasks?sort=title"),
            ("http://127.0.0.1:8000/health", "/health"),
            (
                "HTTPS://api.example.com/api/tasks/3?x=1",
                "/api/tasks/3?x=1",
            ),
            ("http://host", "/"),
            ("http://host?q=1", "/"),
            ("ftp://host/health", "ftp://host/health"),
            ("/a://b", "/a://b"),
        ] {
            assert_eq!(origin_form(target), served, "{target}");
        }
    }

    #[test]
    fn request_ids_keep_valid_client_ids_only() {
        let ids = RequestIds::new();
        assert_eq!(ids.for_request(Some("abc-1.2_3")), "abc-1.2_3");
        for bad in ["", "has space", "ünï", &"x".repeat(65)] {
            let fresh = ids.for_request(Some(bad));
            assert_ne!(fresh, bad);
            assert!(valid_request_id(&fresh));
        }
        assert_ne!(ids.for_request(None), ids.for_request(None));
    }
}
