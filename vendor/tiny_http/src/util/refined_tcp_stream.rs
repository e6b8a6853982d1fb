use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::io::{Error as IoError, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        match self {
            Stream::Http(tcp_stream) => Stream::Http(tcp_stream.try_clone().unwrap()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Stream::Https(ssl_stream.clone()),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    /// todo-api patch: the plain socket, for `ReadDeadline` (not kept to over TLS).
    fn plain(&self) -> Option<&Connection> {
        match self {
            Stream::Http(socket) => Some(socket),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => None,
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    // todo-api patch: when what is being read must have arrived; the read half's.
    read_deadline: Arc<ReadDeadline>,
    // todo-api patch: the socket's read timeout before a deadline shortened it.
    idle_timeout: Option<Option<Duration>>,
    // todo-api patch: the client's reading pace (`MIN_READ_RATE`); the write half's.
    pace: Pace,
    // todo-api patch: a write failed, so an answer may have gone out in part: nothing more
    // is written on this connection.
    broken: bool,
}

/// todo-api patch: the instant by which what a connection's thread is reading must have
/// arrived (a request's headers, `HEADER_DEADLINE` from its first byte; then its body,
/// `BODY_DEADLINE`), or none while it waits for the next request. The deadlines were only
/// checked when a read returned, and a read blocks for up to the socket's 10 s timeout: a
/// client sending a byte just before a deadline was answered 408 only ~10 s after it. While
/// a deadline is set, each read from the socket waits at most until it, or the socket's
/// own read timeout if that is shorter (a `setsockopt`
/// before the read; a request that arrives whole needs no read while its deadline is set,
/// so the usual request costs no syscall for this), and the idle timeout is put back at the
/// first read after.
#[derive(Default)]
pub struct ReadDeadline(AtomicU64);

impl ReadDeadline {
    /// Microseconds after this process-wide instant; 0 is "none".
    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    pub fn set(&self, at: Option<Instant>) {
        let micros = at.map_or(0, |at| {
            (at.saturating_duration_since(Self::epoch()).as_micros() as u64).max(1)
        });
        self.0.store(micros, Ordering::Relaxed);
    }

    fn get(&self) -> Option<Instant> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Self::epoch() + Duration::from_micros(micros)),
        }
    }
}

/// todo-api patch: what the write half knows of its client's reading pace.
struct Pace {
    // Bytes the socket has taken, all answers together.
    written: u64,
    // When the client began to owe the answers being written: the first write of the
    // answer under way, or of an earlier one it had not taken all of when this one began
    // (`carried`).
    answer: Option<Instant>,
    // Once that is `READ_RATE_GRACE` ago, when the client's pace began to be measured, and
    // the bytes it had acknowledged then.
    paced: Option<(Instant, u64)>,
    // The last answer took over `STALLED` to write; whether the client has taken all of it
    // is asked (one ioctl) at the next answer's first write, which otherwise starts afresh.
    carried: bool,
    // (when, `written` then) at two flushes at least a second apart, the older first: a
    // carried client that has acknowledged all that was written a second or two ago is
    // keeping up (its pace is bounded by the round trip, not its reading: a client
    // pipelining short answers over a slow link), and starts afresh.
    marks: [(Instant, u64); 2],
}

impl Pace {
    fn new() -> Pace {
        Pace {
            written: 0,
            answer: None,
            paced: None,
            carried: false,
            marks: [(Instant::now(), 0); 2],
        }
    }
}

/// todo-api patch: a client that has owed answers for this long (from the first write of
/// the answer under way, or of an earlier one it had not taken all of) has its pace
/// measured from then on (`MIN_READ_RATE`). Short answers to clients that keep up cost
/// nothing more (no syscall); an answer that took over `STALLED` to write costs one ioctl
/// at the next answer.
pub const READ_RATE_GRACE: Duration = Duration::from_secs(10);

/// todo-api patch: bytes a second that a client must acknowledge, on average over at least
/// `READ_RATE_GRACE` from the end of the grace, while an answer is being written to it, or
/// the connection is reset. The socket write timeout only ends a write that makes no
/// progress at all: a client reading a little now and then kept a long answer, its memory
/// and the thread writing it for as long as it liked. Acknowledged, not taken by the
/// kernel (whose send buffer grows to megabytes), and counted over the socket, not the
/// answer: what is acknowledged meanwhile may be an earlier answer's rest.
pub const MIN_READ_RATE: u64 = 16 * 1024;

/// todo-api patch: an answer whose writing took longer than this may have left its client
/// behind: the next one on the connection goes on with its pace rather than starting
/// afresh, unless the client has taken all of it by then. Without this, a client reading
/// a few hundred bytes a second kept a thread on each of its short answers for as long as
/// it liked, each answer written within the grace.
const STALLED: Duration = Duration::from_millis(250);

/// Whether a client that acknowledged `taken` bytes in the `measured` time since its pace
/// began to be measured is too slow.
fn behind(measured: Duration, taken: u64) -> bool {
    measured >= READ_RATE_GRACE
        && u128::from(taken) * 1000 < measured.as_millis() * u128::from(MIN_READ_RATE)
}

impl RefinedTcpStream {
    pub(crate) fn new<S>(stream: S) -> (RefinedTcpStream, RefinedTcpStream)
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();

        let (read, write) = (stream.clone(), stream);

        let read_deadline = Arc::new(ReadDeadline::default());
        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            read_deadline: read_deadline.clone(),
            idle_timeout: None,
            pace: Pace::new(),
            broken: false,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            read_deadline,
            idle_timeout: None,
            pace: Pace::new(),
            broken: false,
        };

        (read, write)
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// todo-api patch: bytes written to the socket that the client has not acknowledged
    /// yet (Linux's TIOCOUTQ); 0 where that is unknown. What the kernel has taken is not
    /// what the client has: its send buffer grows to megabytes.
    #[allow(unsafe_code)]
    fn unacknowledged(&self) -> u64 {
        #[cfg(target_os = "linux")]
        if let Stream::Http(Connection::Tcp(s)) = &self.stream {
            use std::os::unix::io::AsRawFd;
            let mut n: libc::c_int = 0;
            // SAFETY: TIOCOUTQ writes one int through the pointer, which points at one.
            if unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) } == 0 {
                return std::convert::TryFrom::try_from(n).unwrap_or(0);
            }
        }
        0
    }

    /// todo-api patch: bytes of all answers so far that the client has acknowledged.
    fn acknowledged(&self) -> u64 {
        self.pace.written.saturating_sub(self.unacknowledged())
    }

    /// todo-api patch: ends the connection after a failed write. Shut down both ways, the
    /// connection's thread reads no further request and lets go of the socket; with
    /// SO_LINGER 0 its close (once the answers still under way on it have let go too) is a
    /// reset, which drops what the kernel still holds of the answer (up to its send buffer,
    /// megabytes) rather than trickling it out to a client too slow for it, and tells the
    /// client that the answer was cut off.
    #[allow(unsafe_code)]
    fn abort(&mut self) {
        self.broken = true;
        #[cfg(unix)]
        if let Stream::Http(Connection::Tcp(s)) = &self.stream {
            use std::os::unix::io::AsRawFd;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: SO_LINGER reads one `linger` through the pointer, of the size given.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        self.stream.shutdown(Shutdown::Both).ok();
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl RefinedTcpStream {
    /// todo-api patch: the deadline this (read half's) socket's reads keep to.
    pub(crate) fn read_deadline(&self) -> Arc<ReadDeadline> {
        self.read_deadline.clone()
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        // todo-api patch: `ReadDeadline`.
        if let Some(socket) = self.stream.plain() {
            match self.read_deadline.get() {
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(IoError::new(ErrorKind::TimedOut, "past the read deadline"));
                    }
                    if self.idle_timeout.is_none() {
                        self.idle_timeout = Some(socket.read_timeout()?);
                    }
                    // Never longer than the socket's own timeout: a connection past the cap
                    // is read on the accept thread with 200 ms (`REFUSAL_TIMEOUT`), and one
                    // byte from it held all accepting for the 10 s header deadline.
                    let wait = match self.idle_timeout.flatten() {
                        Some(own) => left.min(own),
                        None => left,
                    };
                    socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
                }
                None => {
                    if let Some(idle) = self.idle_timeout.take() {
                        socket.set_read_timeout(idle)?;
                    }
                }
            }
        }
        self.stream.read(buf)
    }
}

/// todo-api patch: a client too slow to read (`MIN_READ_RATE`) is cut off, and so is the
/// connection after any failed write (a timeout, a reset): the next answer would otherwise
/// follow a part of this one, which the client would read as the rest of it.
impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        if self.broken {
            // Not a kind `Request::respond` takes for a client that left: the answer was
            // not sent, and its writer should hear so.
            return Err(IoError::new(
                ErrorKind::NotConnected,
                "an earlier write on this connection failed",
            ));
        }
        if std::mem::take(&mut self.pace.carried) && self.acknowledged() >= self.pace.marks[0].1 {
            // It keeps up: this answer starts afresh.
            self.pace.answer = None;
            self.pace.paced = None;
        }
        let since = *self.pace.answer.get_or_insert_with(Instant::now);
        // Within the grace (every answer of a client that keeps up) without a syscall.
        let mut too_slow = false;
        if since.elapsed() > READ_RATE_GRACE {
            let now = Instant::now();
            let acknowledged = self.acknowledged();
            match self.pace.paced {
                None => self.pace.paced = Some((now, acknowledged)),
                Some((from, then)) => {
                    too_slow = behind(now - from, acknowledged.saturating_sub(then));
                }
            }
        }
        let written = if too_slow {
            Err(IoError::new(
                ErrorKind::TimedOut,
                "the client reads its answer too slowly",
            ))
        } else {
            self.stream.write(buf)
        };
        match written {
            Ok(n) => {
                self.pace.written += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// The end of an answer (`Request::respond` flushes after each).
    fn flush(&mut self) -> IoResult<()> {
        let flushed = self.stream.flush();
        if flushed.is_ok() {
            let now = Instant::now();
            let pace = &mut self.pace;
            if now.duration_since(pace.marks[1].0) >= Duration::from_secs(1) {
                pace.marks = [pace.marks[1], (now, pace.written)];
            }
            if pace.answer.is_some_and(|since| now.duration_since(since) > STALLED) {
                pace.carried = true;
            } else {
                pace.answer = None;
                pace.paced = None;
            }
        }
        flushed
    }
}

