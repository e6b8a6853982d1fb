use std::io::Result as IoResult;
use std::io::{Read, Write};

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use std::mem;

/// todo-api patch: hands one value from one request's reader or writer to the next, in
/// place of a `std::sync::mpsc` channel per request and direction. Creating such a channel
/// is an aligned allocation and its first message allocates a block of slots (~2 KB for a
/// reader): ~3,600 instructions a request (callgrind). Here: one `Arc`, a mutex, and a
/// condvar notified only for a receiver that is waiting.
fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Handover {
        state: Mutex::new(HandoverState {
            value: None,
            sender_gone: false,
            waiting: false,
        }),
        ready: Condvar::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

struct Handover<T> {
    state: Mutex<HandoverState<T>>,
    ready: Condvar,
}

struct HandoverState<T> {
    value: Option<T>,
    sender_gone: bool,
    waiting: bool,
}

impl<T> Handover<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HandoverState<T>> {
        // The state is changed in single steps under the lock: never half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The giving end: `send` once; dropped without sending, the receiver gets an error.
struct Sender<T>(Arc<Handover<T>>);

/// The taking end.
struct Receiver<T>(Arc<Handover<T>>);

/// The sender went away without sending.
#[derive(Debug)]
struct RecvError;

impl<T> Sender<T> {
    fn send(&self, value: T) {
        let mut state = self.0.lock();
        state.value = Some(value);
        if state.waiting {
            self.0.ready.notify_one();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.sender_gone = true;
        if state.waiting {
            self.0.ready.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// Blocks until the value is sent, or the sender is gone without sending.
    fn recv(&self) -> Result<T, RecvError> {
        let mut state = self.0.lock();
        loop {
            if let Some(value) = state.value.take() {
                return Ok(value);
            }
            if state.sender_gone {
                return Err(RecvError);
            }
            state.waiting = true;
            state = self.0.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
            state.waiting = false;
        }
    }
}

/// todo-api patch: whether a writer's turn has come: the answers before it on its
/// connection are written (or given up). A worker thread can then tell that writing an answer
/// would wait for an earlier one, which a client that does not read can make last for the
/// whole write timeout.
pub struct Turn(Option<Arc<Handover<()>>>);

impl Turn {
    /// A writer with nothing before it.
    pub fn now() -> Turn {
        Turn(None)
    }

    /// True once writing will not wait for an earlier answer.
    pub fn has_come(&self) -> bool {
        self.0.as_ref().is_none_or(|handover| {
            let state = handover.lock();
            state.value.is_some() || state.sender_gone
        })
    }
}

pub struct SequentialReaderBuilder<R>
where
    R: Read + Send,
{
    inner: SequentialReaderBuilderInner<R>,
}

enum SequentialReaderBuilderInner<R>
where
    R: Read + Send,
{
    First(R),
    NotFirst(Receiver<R>),
}

pub struct SequentialReader<R>
where
    R: Read + Send,
{
    inner: SequentialReaderInner<R>,
    next: Sender<R>,
}

enum SequentialReaderInner<R>
where
    R: Read + Send,
{
    MyTurn(R),
    Waiting(Receiver<R>),
    Empty,
}

pub struct SequentialWriterBuilder<W>
where
    W: Write + Send,
{
    writer: Arc<Mutex<W>>,
    next_trigger: Option<Receiver<()>>,
    unwritten: Arc<Unwritten>,
}

pub struct SequentialWriter<W>
where
    W: Write + Send,
{
    trigger: Option<Receiver<()>>,
    writer: Arc<Mutex<W>>,
    on_finish: Sender<()>,
    unwritten: Arc<Unwritten>,
}

/// todo-api patch: a connection's answers not yet written (writers given out and not
/// dropped), so that its thread can stop reading requests while too many are (see
/// `SequentialWriterBuilder::wait_below`).
struct Unwritten {
    state: Mutex<UnwrittenState>,
    fewer: Condvar,
}

struct UnwrittenState {
    count: usize,
    // The connection's thread waits in `wait_below`: only then is a drop worth a wake-up.
    waiting: bool,
}

impl Unwritten {
    fn lock(&self) -> std::sync::MutexGuard<'_, UnwrittenState> {
        // A counter and a flag, each changed in one step under the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: Read + Send> SequentialReaderBuilder<R> {
    pub fn new(reader: R) -> SequentialReaderBuilder<R> {
        SequentialReaderBuilder {
            inner: SequentialReaderBuilderInner::First(reader),
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    pub fn new(writer: W) -> SequentialWriterBuilder<W> {
        SequentialWriterBuilder {
            writer: Arc::new(Mutex::new(writer)),
            next_trigger: None,
            unwritten: Arc::new(Unwritten {
                state: Mutex::new(UnwrittenState {
                    count: 0,
                    waiting: false,
                }),
                fewer: Condvar::new(),
            }),
        }
    }

    /// todo-api patch: waits while `limit` or more of the writers given out are not yet
    /// dropped. A client pipelining requests faster than they are answered is then no
    /// longer read from: each request read was queued for the workers with its body (up to
    /// 64 KiB), without bound, and each answer waiting for an earlier one could take a
    /// writer thread.
    pub fn wait_below(&self, limit: usize) {
        let mut state = self.unwritten.lock();
        while state.count >= limit {
            state.waiting = true;
            state = self
                .unwritten
                .fewer
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.waiting = false;
    }
}

impl<R: Read + Send> Iterator for SequentialReaderBuilder<R> {
    type Item = SequentialReader<R>;

    fn next(&mut self) -> Option<SequentialReader<R>> {
        let (tx, rx) = channel();

        let inner = mem::replace(&mut self.inner, SequentialReaderBuilderInner::NotFirst(rx));

        match inner {
            SequentialReaderBuilderInner::First(reader) => Some(SequentialReader {
                inner: SequentialReaderInner::MyTurn(reader),
                next: tx,
            }),

            SequentialReaderBuilderInner::NotFirst(previous) => Some(SequentialReader {
                inner: SequentialReaderInner::Waiting(previous),
                next: tx,
            }),
        }
    }
}

impl<W: Write + Send> Iterator for SequentialWriterBuilder<W> {
    type Item = SequentialWriter<W>;
    fn next(&mut self) -> Option<SequentialWriter<W>> {
        let (tx, rx) = channel();
        let mut next_next_trigger = Some(rx);
        ::std::mem::swap(&mut next_next_trigger, &mut self.next_trigger);

        self.unwritten.lock().count += 1;
        Some(SequentialWriter {
            trigger: next_next_trigger,
            writer: self.writer.clone(),
            on_finish: tx,
            unwritten: self.unwritten.clone(),
        })
    }
}

impl<R: Read + Send> Read for SequentialReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let mut reader = match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => return reader.read(buf),
            SequentialReaderInner::Waiting(ref mut recv) => recv.recv().unwrap(),
            SequentialReaderInner::Empty => unreachable!(),
        };

        let result = reader.read(buf);
        self.inner = SequentialReaderInner::MyTurn(reader);
        result
    }
}

/// todo-api patch: buffered access, so that headers are scanned a buffer at a time rather
/// than read byte by byte through `Read::bytes`.
impl<R: std::io::BufRead + Send> std::io::BufRead for SequentialReader<R> {
    fn fill_buf(&mut self) -> IoResult<&[u8]> {
        if let SequentialReaderInner::Waiting(ref mut recv) = self.inner {
            let reader = recv.recv().unwrap();
            self.inner = SequentialReaderInner::MyTurn(reader);
        }
        match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => reader.fill_buf(),
            _ => unreachable!(),
        }
    }

    fn consume(&mut self, amt: usize) {
        if let SequentialReaderInner::MyTurn(ref mut reader) = self.inner {
            reader.consume(amt);
        }
    }
}

impl<W: Write + Send> SequentialWriter<W> {
    /// todo-api patch: see `Turn`.
    pub fn turn(&self) -> Turn {
        Turn(self.trigger.as_ref().map(|receiver| receiver.0.clone()))
    }
}

impl<W: Write + Send> Write for SequentialWriter<W> {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().flush()
    }
}

impl<R> Drop for SequentialReader<R>
where
    R: Read + Send,
{
    fn drop(&mut self) {
        let inner = mem::replace(&mut self.inner, SequentialReaderInner::Empty);

        match inner {
            SequentialReaderInner::MyTurn(reader) => {
                self.next.send(reader);
            }
            SequentialReaderInner::Waiting(recv) => {
                let reader = recv.recv().unwrap();
                self.next.send(reader);
            }
            SequentialReaderInner::Empty => (),
        }
    }
}

impl<W> Drop for SequentialWriter<W>
where
    W: Write + Send,
{
    fn drop(&mut self) {
        // todo-api patch: a writer dropped unused (a request refused before it was built)
        // first waits for its turn: else the next answer (the refusal) went out at once,
        // ahead of an earlier answer still to be written, which the client then read as the
        // refusal. Only the connection's own thread drops a writer unused.
        if let Some(turn) = self.trigger.take() {
            let _ = turn.recv();
        }
        self.on_finish.send(());
        let waiting = {
            let mut state = self.unwritten.lock();
            state.count -= 1;
            state.waiting
        };
        if waiting {
            self.unwritten.fewer.notify_one();
        }
    }
}
