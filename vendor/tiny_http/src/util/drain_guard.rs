//! todo-api patch: what is left of a request body when the handler is done with it.
//!
//! Upstream drained the rest of a `Content-Length` body on drop with a buffer the size of
//! the rest (a huge declared length aborted the process) and did not drain chunked bodies
//! at all (their rest was then parsed as the next request). Bodies up to 64 KiB are now read
//! before the request is handed over (`request.rs`); a body this guard wraps is one the
//! handler may refuse unread. Draining it would hold the worker for as long as the client
//! cares to stall, so the guard never drains: it tells the connection whether the body was
//! read to its end, and if not, the connection is closed instead of reused.

use std::io::{Read, Result as IoResult};
use std::sync::mpsc::Sender;

pub struct DrainGuard<R: Read> {
    inner: R,
    done: Option<Sender<bool>>,
    ended: bool,
}

impl<R: Read> DrainGuard<R> {
    pub fn new(inner: R, done: Sender<bool>) -> DrainGuard<R> {
        DrainGuard { inner, done: Some(done), ended: false }
    }
}

impl<R: Read> Read for DrainGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ended = true;
        }
        Ok(n)
    }
}

impl<R: Read> Drop for DrainGuard<R> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done.send(self.ended).ok();
        }
    }
}
