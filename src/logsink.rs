//! What a log line looks like (`format`), and the log's own writer thread. Request threads
//! hand each formatted line to it through a bounded channel instead of writing to stderr
//! themselves: a `write` to a log file can block for tens or hundreds of milliseconds while
//! the disk is busy (the kernel throttles writers of dirty pages), and with one line per
//! request every request thread would wait behind it.
//! The thread writes what has gathered in one go, at most every `BATCH_PAUSE`.
//!
//! Every line is kept: when `CAPACITY` lines wait (the output has been stuck for a while),
//! logging blocks as a direct write would. Lines still waiting when the process is killed
//! outright are lost; `flush` (called before a normal exit) writes them all.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::OnceLock;
use std::time::Duration;

use crate::time::Micros;

/// Lines that may wait for the writer: ~0.4 MB at most with the channel's own slots, ~70 ms
/// of a busy server's log (30,000 lines/s), most of a disk stall at a usual rate.
const CAPACITY: usize = 2048;
/// The writer's pause after each batch, so that a busy server's lines go out in batches
/// (one write and no wake-up per line) and an idle one's at once.
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// The batch buffer kept between batches (a busy server's 5 ms is ~25 KB of lines).
const BATCH_BYTES: usize = 64 * 1024;
/// The longest `flush` waits for the writer.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// The crates whose log lines the server's log can hold (a `RUST_LOG` module name matches
/// the start of a line's target).
const LOGGING_CRATES: &[&str] = &[
    "todo_api",
    "tiny_http",
    "tokio_postgres",
    "postgres",
    "r2d2",
    "rusqlite",
    "native_tls",
    "jwt_simple",
];

/// What is wrong with a `RUST_LOG` value that env_logger would take silently and that
/// would leave the log empty or not as meant: a bare word that is neither a level nor the
/// start of a module path of ours (`RUST_LOG=verbose` is read as "everything from module
/// `verbose`", so nothing at all is logged, not even `listening on`), or `module=level`
/// with a level that is not one.
pub fn misread_log_filter(filter: &str) -> Option<String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |word: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word));
    let directives = filter.split('/').next().unwrap_or_default();
    for directive in directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        match directive.split_once('=') {
            Some((_, level)) if !is_level(level.trim()) => {
                return Some(format!(
                    "RUST_LOG: {level:?} in {directive:?} is not a level (off, error, warn, \
                     info, debug, trace)"
                ));
            }
            None if !is_level(directive)
                && !LOGGING_CRATES.iter().any(|c| directive.starts_with(c)) =>
            {
                return Some(format!(
                    "RUST_LOG: {directive:?} is neither a level (off, error, warn, info, \
                     debug, trace) nor a module of todo-api's, so it logs nothing; \
                     try RUST_LOG=info or RUST_LOG=debug"
                ));
            }
            _ => {}
        }
    }
    None
}

enum Msg {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// The sending end, given to env_logger as its target: `write` queues what it is given whole.
/// env_logger writes each record with one `write_all` under its own lock, so a record is one
/// message and records never interleave.
pub struct Sink(SyncSender<Msg>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(Msg::Line(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the log writer has stopped"))?;
        Ok(buf.len())
    }

    /// env_logger flushes after every record: the writer thread does that for a batch.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes one record as env_logger's default format does without colours,
/// `[2026-01-02T10:00:00Z INFO  todo_api::server] message`, with the time of day formatted
/// once a second per thread instead of once a line (with the level's padding, ~1,700
/// instructions of each access-log line; callgrind).
pub fn format(out: &mut impl Write, record: &log::Record<'_>) -> io::Result<()> {
    thread_local! {
        static STAMP: RefCell<(i64, [u8; 20])> = const { RefCell::new((i64::MIN, [0; 20])) };
    }
    let now = Micros::now();
    let secs = now.0.div_euclid(1_000_000);
    let stamp = STAMP.with(|s| {
        let mut s = s.borrow_mut();
        if s.0 != secs {
            let full = now
                .rfc3339_bytes()
                .unwrap_or(*b"1970-01-01T00:00:00.000000Z");
            s.1[..19].copy_from_slice(&full[..19]);
            s.1[19] = b'Z';
            s.0 = secs;
        }
        s.1
    });
    let level: &[u8] = match record.level() {
        log::Level::Error => b" ERROR ",
        log::Level::Warn => b" WARN  ",
        log::Level::Info => b" INFO  ",
        log::Level::Debug => b" DEBUG ",
        log::Level::Trace => b" TRACE ",
    };
    out.write_all(b"[")?;
    out.write_all(&stamp)?;
    out.write_all(level)?;
    out.write_all(record.target().as_bytes())?;
    out.write_all(b"] ")?;
    out.write_fmt(*record.args())?;
    out.write_all(b"\n")
}

/// The process-wide sink's channel, for `flush`.
static PROCESS_SINK: OnceLock<SyncSender<Msg>> = OnceLock::new();

/// Starts the process's log writer thread on `out` and returns the sink to log into.
pub fn start(out: impl Write + Send + 'static) -> io::Result<Sink> {
    let sink = spawn(out)?;
    let _ = PROCESS_SINK.set(sink.0.clone());
    Ok(sink)
}

/// Writes every line logged so far (waits at most `FLUSH_LIMIT`).
pub fn flush() {
    if let Some(tx) = PROCESS_SINK.get() {
        flush_sink(tx);
    }
}

fn flush_sink(tx: &SyncSender<Msg>) {
    let (ack, done) = mpsc::channel();
    if tx.send(Msg::Flush(ack)).is_ok() {
        let _ = done.recv_timeout(FLUSH_LIMIT);
    }
}

fn spawn(out: impl Write + Send + 'static) -> io::Result<Sink> {
    let (tx, rx) = mpsc::sync_channel(CAPACITY);
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(&rx, out))?;
    Ok(Sink(tx))
}

fn write_lines(rx: &Receiver<Msg>, mut out: impl Write) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    // Blocks until there is something to write; ends when every sender is gone.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut acks = Vec::new();
        loop {
            while let Some(msg) = next.take().or_else(|| rx.try_recv().ok()) {
                match msg {
                    Msg::Line(line) => batch.extend_from_slice(&line),
                    Msg::Flush(ack) => acks.push(ack),
                }
            }
            // A failed write (stderr closed) cannot be reported anywhere: the lines go.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            // A stall's large batch leaves a large buffer: give it back.
            batch.shrink_to(BATCH_BYTES);
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            // Let the next batch gather without being woken for each line (a sleep, not a
            // wait on the channel); with nothing logged meanwhile, wait in `recv` again.
            std::thread::sleep(BATCH_PAUSE);
            match rx.try_recv() {
                Ok(msg) => next = Some(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An output the test can read back, and stop (as a disk that stalls) until released.
    #[derive(Clone, Default)]
    struct Output {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Output {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rust_log_values_that_would_log_nothing_are_said() {
        for fine in [
            "info",
            "DEBUG",
            "warn,todo_api=debug",
            "todo_api::server=debug",
            "tiny_http",
            "info,tokio_postgres=off",
            "info/GET",
        ] {
            assert_eq!(misread_log_filter(fine), None, "{fine}");
        }
        for (bad, says) in [
            ("verbose", "\"verbose\" is neither a level"),
            ("info,loud", "\"loud\" is neither"),
            (
                "todo_api=chatty",
                "\"chatty\" in \"todo_api=chatty\" is not a level",
            ),
        ] {
            let said = misread_log_filter(bad).unwrap_or_default();
            assert!(said.contains(says), "{bad}: {said}");
        }
    }

    #[test]
    fn records_look_as_env_logger_writes_them() {
        let mut out = Vec::new();
        format(
            &mut out,
            &log::Record::builder()
                .args(format_args!("GET /api/tasks 200 {}.{}ms", 1, 5))
                .level(log::Level::Warn)
                .target("todo_api::server")
                .build(),
        )
        .unwrap();
        let line = String::from_utf8(out).unwrap();
        let (stamp, rest) = line[1..].split_once(' ').unwrap();
        assert_eq!(rest, "WARN  todo_api::server] GET /api/tasks 200 1.5ms\n");
        assert!(line.starts_with('['));
        // The time of day to the second, in UTC: as close to now as the clock allows.
        let parsed = Micros::parse(stamp).expect(stamp);
        assert_eq!(stamp.len(), "2026-01-02T10:00:00Z".len());
        assert!((Micros::now().0 - parsed.0).abs() < 2_000_000, "{stamp}");
    }

    #[test]
    fn every_line_is_written_in_order_by_flush() {
        let output = Output::default();
        let (tx, mut sink) = {
            let sink = spawn(output.clone()).unwrap();
            (sink.0.clone(), sink)
        };
        for i in 0..5000 {
            // One write per record, as env_logger does.
            sink.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        flush_sink(&tx);
        let written = String::from_utf8(output.written.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 5000);
        assert!(lines
            .iter()
            .enumerate()
            .all(|(i, l)| *l == format!("line {i}")));
    }

    #[test]
    fn a_stuck_output_does_not_hold_up_the_loggers() {
        let output = Output::default();
        let stuck = output.gate.lock().unwrap();
        let (tx, mut sink) = {
            let sink = spawn(output.clone()).unwrap();
            (sink.0.clone(), sink)
        };
        // The writer takes the first line and blocks on the output; the rest wait in the
        // channel while the logging thread goes on.
        let (done_tx, done) = mpsc::channel();
        let logger = std::thread::spawn(move || {
            for i in 0..CAPACITY / 2 {
                sink.write_all(format!("line {i}\n").as_bytes()).unwrap();
            }
            done_tx.send(()).unwrap();
        });
        done.recv_timeout(Duration::from_secs(10))
            .expect("logging blocked behind a stuck output");
        assert!(output.written.lock().unwrap().is_empty());
        drop(stuck);
        logger.join().unwrap();
        flush_sink(&tx);
        let written = String::from_utf8(output.written.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), CAPACITY / 2, "nothing lost");
    }
}
