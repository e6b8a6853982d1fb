use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

enum Control<T> {
    Elem(T),
    Unblock,
}

pub struct MessagesQueue<T>
where
    T: Send,
{
    queue: Mutex<Queue<T>>,
    condvar: Condvar,
}

/// todo-api patch: the queue, and how many threads wait in `pop` for it to fill.
struct Queue<T> {
    items: VecDeque<Control<T>>,
    waiting: usize,
}

impl<T> MessagesQueue<T>
where
    T: Send,
{
    pub fn with_capacity(capacity: usize) -> Arc<MessagesQueue<T>> {
        Arc::new(MessagesQueue {
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(capacity),
                waiting: 0,
            }),
            condvar: Condvar::new(),
        })
    }

    /// Pushes an element to the queue.
    pub fn push(&self, value: T) {
        // todo-api patch: notify after the lock is released. Notifying while holding it woke
        // a worker straight into a blocked lock(): two more futex calls and a context switch
        // per request (strace). And only when a thread waits: a notify is a futex syscall
        // even when nobody waits, and under load every worker is usually busy.
        let waiting = {
            let mut queue = self.queue.lock().unwrap();
            queue.items.push_back(Control::Elem(value));
            queue.waiting
        };
        if waiting > 0 {
            self.condvar.notify_one();
        }
    }

    /// Unblock one thread stuck in pop loop.
    pub fn unblock(&self) {
        self.queue.lock().unwrap().items.push_back(Control::Unblock);
        self.condvar.notify_one();
    }

    /// Pops an element. Blocks until one is available.
    /// Returns None in case unblock() was issued.
    pub fn pop(&self) -> Option<T> {
        let mut queue = self.queue.lock().unwrap();

        loop {
            match queue.items.pop_front() {
                Some(Control::Elem(value)) => return Some(value),
                Some(Control::Unblock) => return None,
                None => (),
            }

            queue.waiting += 1;
            queue = self.condvar.wait(queue).unwrap();
            queue.waiting -= 1;
        }
    }

    /// Tries to pop an element without blocking.
    pub fn try_pop(&self) -> Option<T> {
        let mut queue = self.queue.lock().unwrap();
        match queue.items.pop_front() {
            Some(Control::Elem(value)) => Some(value),
            Some(Control::Unblock) | None => None,
        }
    }

    /// Tries to pop an element without blocking
    /// more than the specified timeout duration
    /// or unblock() was issued
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let mut queue = self.queue.lock().unwrap();
        let mut duration = timeout;
        loop {
            match queue.items.pop_front() {
                Some(Control::Elem(value)) => return Some(value),
                Some(Control::Unblock) => return None,
                None => (),
            }
            let now = Instant::now();
            queue.waiting += 1;
            let (_queue, result) = self.condvar.wait_timeout(queue, timeout).unwrap();
            queue = _queue;
            queue.waiting -= 1;
            let sleep_time = now.elapsed();
            duration = if duration > sleep_time {
                duration - sleep_time
            } else {
                Duration::from_millis(0)
            };
            if result.timed_out()
                || (duration.as_secs() == 0 && duration.subsec_nanos() < 1_000_000)
            {
                return None;
            }
        }
    }
}
