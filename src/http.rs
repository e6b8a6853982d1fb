//! Our own view of a request and our own reply value, so that handlers never touch
//! tiny_http types and can be read (and tested) as plain functions; and the budget that
//! bounds the memory large replies take.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// `Content-Type`, or `None` for an empty body.
    pub content_type: Option<&'static str>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// The share of the `BodyBudget` a large body holds until it is written.
    pub hold: Option<Held>,
}

impl Reply {
    /// A JSON reply from bytes that are already JSON.
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: Some("application/json"),
            headers: Vec::new(),
            body,
            hold: None,
        }
    }

    /// `204 No Content`.
    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
            hold: None,
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

/// Memory for large reply bodies (a long task list), shared by every request: built and
/// written, such bodies hold at most `limit` bytes at once, whatever the number of tasks a
/// user has or of clients slow to read their answers; except that the oldest body being
/// built or written may always grow, so that one at least is served however large.
#[derive(Debug)]
pub struct BodyBudget {
    state: Mutex<BudgetState>,
    limit: usize,
}

#[derive(Debug, Default)]
struct BudgetState {
    used: usize,
    /// The tickets of the bodies holding a share, oldest first.
    holders: BTreeSet<u64>,
    next_ticket: u64,
}

/// The default `BodyBudget`: 64 MiB, a list of some 47,000 tasks of ordinary length.
pub const BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// A body larger than this (a list of some 140 tasks) is large: it holds a share of the
/// `BodyBudget` (the common small ones cost nothing), and a worker has it written by a
/// thread of its own (server.rs). A connection's send buffer takes this much at once even
/// from a client that reads nothing (Linux sizes it from the first congestion window: tens
/// of KiB at least; on loopback it grows to 4 MiB), so a worker never waits on a smaller
/// one. Starting a thread costs ~15 µs: at 16 KiB the mixed benchmark's lists of 50–70
/// tasks went to threads, +5 µs of server CPU a request.
pub const LARGE_BODY_BYTES: usize = 32 * 1024;

impl BodyBudget {
    pub fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            state: Mutex::default(),
            limit,
        })
    }

    /// An empty hold on the budget, to be grown with `Held::cover`.
    pub fn hold(self: &Arc<BodyBudget>) -> Held {
        Held {
            budget: self.clone(),
            ticket: None,
            bytes: 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BudgetState> {
        // Counters and a set changed together under the lock: never half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A share of a `BodyBudget`, given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<BodyBudget>,
    ticket: Option<u64>,
    bytes: usize,
}

impl Held {
    /// Grows the share to `bytes`; false, leaving it as it was, when the budget cannot
    /// cover that and an older body holds a share.
    pub fn cover(&mut self, bytes: usize) -> bool {
        if bytes <= self.bytes {
            return true;
        }
        let more = bytes - self.bytes;
        let mut state = self.budget.lock();
        let ticket = *self.ticket.get_or_insert_with(|| {
            state.next_ticket += 1;
            state.next_ticket
        });
        state.holders.insert(ticket);
        let oldest = state.holders.first() == Some(&ticket);
        if state.used + more > self.budget.limit && !oldest {
            return false;
        }
        state.used += more;
        self.bytes = bytes;
        true
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            let mut state = self.budget.lock();
            state.used -= self.bytes;
            state.holders.remove(&ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_budget_bounds_what_large_bodies_hold_together() {
        let budget = BodyBudget::new(100);
        let mut a = budget.hold();
        assert!(a.cover(60));
        let mut b = budget.hold();
        assert!(b.cover(40), "exactly the limit");
        assert!(
            !b.cover(41),
            "past the limit, with an older body holding a share"
        );
        assert_eq!(budget.lock().used, 100);
        assert!(a.cover(500), "the oldest body may always grow");
        assert!(!b.cover(41));
        drop(a);
        assert_eq!(budget.lock().used, 40);
        assert!(b.cover(100));
        assert!(b.cover(300), "oldest now");
        let mut c = budget.hold();
        assert!(!c.cover(1), "nothing left while it holds so much");
        assert!(c.cover(0));
        drop(b);
        assert!(c.cover(100));
        drop(c);
        assert_eq!(budget.lock().used, 0, "all given back");
        // Bodies that never grew past the uncounted size hold no ticket.
        let d = budget.hold();
        drop(d);
        assert!(budget.lock().holders.is_empty());
    }
}
