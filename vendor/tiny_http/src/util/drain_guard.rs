//! todo-api patch: what is left of a request body when the handler is done with it.
//!
//! Upstream drained the rest of a `Content-Length` body on drop with a buffer the size of
//! the rest (a huge declared length aborted the process) and did not drain chunked bodies
//! at all (their rest was then parsed as the next request). This guard reads at most
//! `DRAIN_LIMIT` more bytes with a fixed buffer, and tells the connection whether the body
//! ended cleanly; if not, the connection is closed instead of reused.

use std::io::{Read, Result as IoResult};
use std::sync::mpsc::Sender;

/// The most of an unread body we are willing to read and throw away.
pub const DRAIN_LIMIT: usize = 64 * 1024;

pub struct DrainGuard<R: Read> {
    inner: R,
    done: Option<Sender<bool>>,
}

impl<R: Read> DrainGuard<R> {
    pub fn new(inner: R, done: Sender<bool>) -> DrainGuard<R> {
        DrainGuard { inner, done: Some(done) }
    }
}

impl<R: Read> Read for DrainGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.inner.read(buf)
    }
}

impl<R: Read> Drop for DrainGuard<R> {
    fn drop(&mut self) {
        let mut buf = [0u8; 8192];
        let mut drained = 0;
        let clean = loop {
            match self.inner.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    drained += n;
                    if drained > DRAIN_LIMIT {
                        break false;
                    }
                }
                Err(_) => break false,
            }
        };
        if let Some(done) = self.done.take() {
            done.send(clean).ok();
        }
    }
}
