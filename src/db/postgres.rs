//! The PostgreSQL store: an r2d2 pool of `postgres` clients, TLS through native-tls, and
//! one round trip per statement: prepared once per connection, or unnamed (`query_typed`)
//! when the statement cache is off or a transaction-mode pooler such as Neon's `-pooler`
//! endpoint turned out to be in the way.

use std::collections::HashMap;
use std::fmt::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use postgres::config::SslMode;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{FromSql, ToSql, Type};
use postgres::{CancelToken, Client, NoTls, Row, Statement};
use postgres_native_tls::MakeTlsConnector;
use r2d2_postgres::PostgresConnectionManager;

use super::{columns, order_clause, status_clause, Store, Task, COLUMNS};
use crate::auth::User;
use crate::error::{connection_ended, Error, Result};
use crate::tasks::{ListQuery, NewTask, TaskPatch};
use crate::time::Micros;

/// The schema, applied on the first connection, after any outage that preceded it, and
/// again when a statement finds a table missing (`PgStore::tables_missing`).
const SCHEMA: &str = include_str!("../../schema.sql");
/// Serializes schema creation between instances starting together (any fixed number).
const SCHEMA_LOCK: i64 = 0x746f_646f;
/// How long a request waits for a pooled connection before it is told 503.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest `/health` waits for the database to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// The least time between two applications of the schema for a table found missing.
const SCHEMA_RETRY: Duration = Duration::from_secs(30);
/// How many times in all a statement is run while it loses to concurrent ones
/// (`conflicted`): under a default isolation of REPEATABLE READ or SERIALIZABLE, with a
/// few requests changing the same rows, one retry still left many 503s.
const CONFLICT_ATTEMPTS: u32 = 3;
/// How long after a lost connection every checkout is tested first.
const SUSPECT_WINDOW: Duration = Duration::from_secs(10);
/// A statement still unanswered after this long is cancelled, so that its request gets a
/// 503 and its worker is free again. Ours take milliseconds: one that waits this long waits
/// on a lock someone holds, or on a database in trouble.
const STATEMENT_DEADLINE: Duration = Duration::from_secs(5);
/// How often the watchdog looks for statements past the deadline.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// How long a cancelled statement may stay unanswered, once the cancel request was
/// delivered, before its connection is shut down. PostgreSQL answers a cancel in
/// milliseconds; one that does not (the server frozen, a pooler paused, a network path that
/// went silent while still acknowledging) would hold the request, and the connection's
/// later users, for as long as that lasts.
const CANCEL_GRACE: Duration = Duration::from_secs(1);
/// The longest a cancel request may take to be delivered before the connection is shut
/// down all the same (counted from the cancel's start; a frozen server takes the request's
/// connection but never closes it, which the cancel waits for up to `connect_timeout`).
/// Shut down earlier, a cancel still on its way could be dropped by a pooler that sees the
/// client gone, and the statement run after all.
const CANCEL_LIMIT: Duration = Duration::from_secs(2);

type Pool = r2d2::Pool<Manager>;
type Conn = r2d2::PooledConnection<Manager>;

/// A pooled client, with the statements it has prepared.
pub struct PgConn {
    client: Client,
    /// Prepared statements by SQL text, while the pool's statement cache is on.
    statements: HashMap<String, Statement>,
    /// The pool's statement cache switch, shared by every connection of the pool.
    cache: Arc<AtomicBool>,
    /// This connection's statement under way, as the watchdog sees it.
    watch: Arc<Watch>,
}

impl PgConn {
    /// Runs `query_unwatched` under the watchdog's eye: cancelled past `STATEMENT_DEADLINE`.
    fn query(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let _watching = self.watch.clone().begin();
        self.query_unwatched(sql, params)
    }

    /// Runs `f` on the client under the watchdog's eye, as `query` does.
    fn watched<T>(&mut self, f: impl FnOnce(&mut Client) -> T) -> T {
        let _watching = self.watch.clone().begin();
        f(&mut self.client)
    }

    /// Whether the database answers a trivial statement on this connection within
    /// `PING_TIMEOUT`. A connection that did not answer is shut down: its statement is still
    /// pending, and the driver would wait for that answer before closing it (the thread
    /// that drops it would wait as long as the database stays silent). One that was
    /// answered with the session's end (`lost`) did answer: the database is up, and this
    /// connection is merely gone.
    fn ping(&mut self) -> Result<(), postgres::Error> {
        let answered = self.client.is_valid(PING_TIMEOUT);
        if let Err(e) = &answered {
            if !self.lost(e) {
                self.watch.shut_down("did not answer a ping");
            }
        }
        answered
    }

    /// Whether the connection is gone after failing with `e`: closed, or ended by the server
    /// (a FATAL, such as `pg_terminate_backend`'s 57P01, that reached a statement before the
    /// socket's end did, so that the driver does not know yet: `connection_ended`). Such a
    /// connection is marked for the pool to drop, and its socket shut down, so that dropping
    /// it does not wait for the server's close.
    fn lost(&self, e: &postgres::Error) -> bool {
        if self.client.is_closed() {
            return true;
        }
        if !connection_ended(e) {
            return false;
        }
        self.watch.end();
        true
    }

    /// Whether the statement watchdog shut this connection down (a cancelled statement
    /// that stayed unanswered): its failure took the whole deadline already.
    fn shut_down_by_watchdog(&self) -> bool {
        self.watch.shut.load(Ordering::Acquire)
    }

    /// Runs a statement in one round trip: a statement prepared once per connection while
    /// the statement cache is on (Bind and Execute only: PostgreSQL neither parses nor,
    /// after a few runs, plans it again), else an unnamed one (`query_typed`: Parse, Bind
    /// and Execute together, parsed and planned every time).
    ///
    /// Behind a transaction-mode pooler (PgBouncer 1.18, which does not track prepared
    /// statements) consecutive transactions may reach different server connections, and a
    /// statement prepared on one is missing on the next. That bind fails before anything
    /// runs (26000), and it cannot find another process's statement of the same name
    /// (vendor/tokio-postgres/PATCHES.md): the statement is then sent unnamed, and the
    /// whole pool stops preparing for good.
    ///
    /// A table changed under a prepared statement so that its result would differ (a column's
    /// type, by a migration while the server runs) makes PostgreSQL refuse that statement
    /// before running it, "cached plan must not change result type" (0A000), and keep
    /// refusing it: it is prepared afresh once.
    fn query_unwatched(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, postgres::Error> {
        if !self.cache.load(Ordering::Relaxed) {
            return self.client.query_typed(sql, params);
        }
        let statement = match self.statements.get(sql) {
            Some(s) => s.clone(),
            None => self.prepare(sql, params)?,
        };
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
        match self.client.query(&statement, &values) {
            Err(e) if is(&e, &SqlState::FEATURE_NOT_SUPPORTED) => {
                let why = e.as_db_error().map_or("?", |db| db.message());
                log::info!("a prepared statement was refused ({why}): preparing it again");
                let statement = self.prepare(sql, params)?;
                self.client.query(&statement, &values)
            }
            Err(e) if is(&e, &SqlState::INVALID_SQL_STATEMENT_NAME) => {
                if self.cache.swap(false, Ordering::Relaxed) {
                    log::warn!(
                        "a prepared statement vanished between transactions (a transaction-mode \
                         pooler?): sending every statement unnamed from now on"
                    );
                }
                self.statements.clear();
                self.client.query_typed(sql, params)
            }
            other => other,
        }
    }

    /// Prepares `sql` for `params`' types and keeps it, in place of any statement before.
    fn prepare(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Statement, postgres::Error> {
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        let statement = self.client.prepare_typed(sql, &types)?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// r2d2's manager for `PgConn`: r2d2_postgres's, plus the statement cache switch and the
/// watchdog.
pub struct Manager {
    inner: Connector,
    cache: Arc<AtomicBool>,
    watchdog: Arc<Watchdog>,
}

/// How connections are made: plain TCP, or TLS through native-tls. The TLS connector is
/// built only when a URL asks for TLS: building it loads and parses the system's CA bundle
/// (start-up to the first 200 took 48 ms instead of 10, and ~5 MB of memory stayed in use,
/// which a plain connection never needs).
enum Connector {
    Plain(PostgresConnectionManager<NoTls>),
    Tls(PostgresConnectionManager<MakeTlsConnector>),
}

/// Why a connection could not be made or kept, said in full: the driver's own `Display` of
/// a server's refusal is only "db error", and of a socket or TLS failure only its kind
/// ("error connecting to server"), so a wrong password, a missing database and a refused
/// port all read the same in the log and in the 503's logged cause.
#[derive(Debug)]
pub struct ConnectError(postgres::Error);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            return write!(f, "{} ({})", db.message(), db.code().code());
        }
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(&self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {}

/// Logs the pool's failures to connect: each new reason at once, the same reason again at
/// most every `REPEAT_EVERY` (with how many were left out), instead of the pool's own
/// handler's line per attempt (three a second, for as long as the database is away).
#[derive(Debug, Default)]
struct ConnectErrorLog {
    last: Mutex<Option<(String, Instant, u64)>>,
}

impl ConnectErrorLog {
    const REPEAT_EVERY: Duration = Duration::from_secs(60);
}

impl r2d2::HandleError<ConnectError> for ConnectErrorLog {
    fn handle_error(&self, error: ConnectError) {
        let text = error.to_string();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *last {
            Some((seen, at, left_out))
                if *seen == text && at.elapsed() < ConnectErrorLog::REPEAT_EVERY =>
            {
                *left_out += 1;
            }
            _ => {
                let again = match &*last {
                    Some((seen, _, n)) if *seen == text => format!(" ({n} more since)"),
                    _ => String::new(),
                };
                log::error!("cannot connect to PostgreSQL: {text}{again}");
                *last = Some((text, Instant::now(), 0));
            }
        }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ConnectError;

    fn connect(&self) -> Result<PgConn, ConnectError> {
        let client = match &self.inner {
            Connector::Plain(manager) => manager.connect(),
            Connector::Tls(manager) => manager.connect(),
        }
        .map_err(ConnectError)?;
        let watch = self.watchdog.watch(client.cancel_token());
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            cache: self.cache.clone(),
            watch,
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), ConnectError> {
        match &self.inner {
            Connector::Plain(manager) => manager.is_valid(&mut conn.client),
            Connector::Tls(manager) => manager.is_valid(&mut conn.client),
        }
        .map_err(ConnectError)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        // A cancelled connection is closed rather than reused: a cancel request that arrives
        // late would stop whatever statement it is running by then. So is one the server
        // ended (`PgConn::lost` marks it) whose close the driver has not read yet.
        conn.client.is_closed() || !conn.watch.idle()
    }
}

/// What the watchdog knows of one connection.
struct Watch {
    marks: Marks,
    epoch: Instant,
    token: CancelToken,
    /// Statements begun on the connection so far, and of those, how many have ended
    /// (one at a time: the ones begun before the last have all ended).
    begun: AtomicU64,
    ended: AtomicU64,
    /// The statement the watchdog cancelled (its number in `begun`; 0 for none), when
    /// (`now`) it did, and when the cancel request was delivered (0 until then).
    cancelled: AtomicU64,
    cancelled_at: AtomicU64,
    cancel_delivered_at: AtomicU64,
    /// Set once the connection's socket was shut down.
    shut: AtomicBool,
}

impl Watch {
    /// Marks a statement under way until the guard returned is dropped (by a panic too).
    fn begin(self: Arc<Watch>) -> Watching {
        let number = self.begun.fetch_add(1, Ordering::AcqRel) + 1;
        let started = self.marks.begin(self.now());
        Watching(self, started, number)
    }

    /// Whether no statement is marked and no cancel was ever sent.
    fn idle(&self) -> bool {
        self.marks.idle()
    }

    /// Milliseconds since `epoch`, at least 1.
    fn now(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64 + 1).min(DOOMED - 1)
    }

    /// Shuts the connection's socket down, so that what waits on it fails at once (503), and
    /// marks the connection for the pool to drop.
    fn shut_down(&self, why: &str) {
        log::warn!("a connection to the database {why}: closing it");
        self.marks.doom();
        self.shut.store(true, Ordering::Release);
        if let Err(e) = self.token.shutdown_socket() {
            log::warn!("cannot shut down a connection to the database: {e}");
        }
    }

    /// Marks the connection for the pool to drop and shuts its socket down, quietly: the
    /// server ended the session (`PgConn::lost`), and closes its side anyway.
    fn end(&self) {
        self.marks.doom();
        let _ = self.token.shutdown_socket();
    }

    /// Records that the watchdog cancelled statement `number` at `now`.
    fn cancelled(&self, number: u64, now: u64) {
        self.cancel_delivered_at.store(0, Ordering::Release);
        self.cancelled_at.store(now, Ordering::Release);
        self.cancelled.store(number, Ordering::Release);
    }

    /// Shuts the connection down if the statement it cancelled is still under way
    /// `CANCEL_GRACE` after the cancel request was delivered (or failed), or
    /// `CANCEL_LIMIT` after it was begun while it is still on its way.
    fn shut_down_if_unanswered(&self, now: u64) {
        let number = self.cancelled.load(Ordering::Acquire);
        if number == 0 {
            return;
        }
        if self.ended.load(Ordering::Acquire) >= number {
            // Answered: the cancel worked, or the statement finished first.
            let _ = self
                .cancelled
                .compare_exchange(number, 0, Ordering::AcqRel, Ordering::Acquire);
            return;
        }
        let overdue = cancel_overdue(
            now,
            self.cancelled_at.load(Ordering::Acquire),
            self.cancel_delivered_at.load(Ordering::Acquire),
        );
        if overdue
            && self
                .cancelled
                .compare_exchange(number, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.shut_down("did not answer a cancelled statement");
        }
    }
}

/// Whether a statement cancelled at `cancelled_at` and still under way at `now` has had
/// its time: `CANCEL_GRACE` after its cancel was delivered (`delivered_at`, 0 while on its
/// way), or `CANCEL_LIMIT` after it was sent while it is still on its way. Milliseconds.
fn cancel_overdue(now: u64, cancelled_at: u64, delivered_at: u64) -> bool {
    let since = |at: u64| now.saturating_sub(at);
    match delivered_at {
        0 => since(cancelled_at) > CANCEL_LIMIT.as_millis() as u64,
        delivered => since(delivered) > CANCEL_GRACE.as_millis() as u64,
    }
}

/// A statement under way on a connection, from `Watch::begin` until dropped: its start
/// (for `Marks`) and its number (for `Watch::ended`).
struct Watching(Arc<Watch>, u64, u64);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.marks.end(self.1);
        self.0.ended.fetch_max(self.2, Ordering::AcqRel);
    }
}

/// One connection's state in one atomic word, so that the watchdog can claim exactly the
/// statement it saw: since when (ms, at least 1) a statement has been under way, 0 while
/// none is; plus `DOOMED` for good once a cancel request was sent for one of its statements.
struct Marks(AtomicU64);

const DOOMED: u64 = 1 << 63;

impl Marks {
    /// Marks a statement begun at `now`; `end` takes what this returns. Only a guard leaked
    /// by `mem::forget` could leave a statement marked: the next one goes unwatched (0).
    fn begin(&self, now: u64) -> u64 {
        let begun = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state & !DOOMED == 0).then_some(state | now)
            });
        if begun.is_ok() {
            now
        } else {
            0
        }
    }

    /// Unmarks the statement begun at `started`, unless the watchdog has claimed it.
    fn end(&self, started: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (started != 0 && state & !DOOMED == started).then_some(state & DOOMED)
            });
    }

    /// Claims the statement under way if it began over `deadline` ms before `now`: true
    /// when the caller is to cancel it. A statement that ended meanwhile (and any begun
    /// since) is not claimed. The claim clears its start, so that a later statement on the
    /// connection is watched in turn.
    fn claim(&self, now: u64, deadline: u64) -> bool {
        let state = self.0.load(Ordering::Acquire);
        let started = state & !DOOMED;
        started != 0
            && now.saturating_sub(started) > deadline
            && self
                .0
                .compare_exchange(state, DOOMED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    /// Marks the connection for the pool to drop, as a cancel does.
    fn doom(&self) {
        self.0.fetch_or(DOOMED, Ordering::AcqRel);
    }
}

/// Cancels statements that run past `STATEMENT_DEADLINE`, which the sync driver cannot
/// time out: a thread that looks every `WATCH_INTERVAL` and sends PostgreSQL (or the pooler
/// in between) a cancel request for each, answered 57014, a 503.
struct Watchdog {
    epoch: Instant,
    watches: Mutex<Vec<Weak<Watch>>>,
    tls: Option<MakeTlsConnector>,
}

impl Watchdog {
    /// Starts the watchdog's thread, which ends once the pool (its last owner) is gone.
    fn start(tls: Option<MakeTlsConnector>) -> Arc<Watchdog> {
        let watchdog = Arc::new(Watchdog {
            epoch: Instant::now(),
            watches: Mutex::new(Vec::new()),
            tls,
        });
        let weak = Arc::downgrade(&watchdog);
        let spawned = std::thread::Builder::new()
            .name("pg-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(WATCH_INTERVAL);
                match weak.upgrade() {
                    Some(watchdog) => watchdog.look(),
                    None => return,
                }
            });
        if let Err(e) = spawned {
            log::warn!(
                "cannot start the statement watchdog: statements will not be timed out: {e}"
            );
        }
        watchdog
    }

    fn watch(&self, token: CancelToken) -> Arc<Watch> {
        let watch = Arc::new(Watch {
            marks: Marks(AtomicU64::new(0)),
            epoch: self.epoch,
            token,
            begun: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            cancelled_at: AtomicU64::new(0),
            cancel_delivered_at: AtomicU64::new(0),
            shut: AtomicBool::new(false),
        });
        self.lock().push(Arc::downgrade(&watch));
        watch
    }

    /// Cancels every statement past the deadline, and shuts down the connections of those
    /// cancelled that are still unanswered `CANCEL_GRACE` later.
    fn look(&self) {
        let deadline = STATEMENT_DEADLINE.as_millis() as u64;
        let mut watches = self.lock();
        watches.retain(|weak| {
            let Some(watch) = weak.upgrade() else {
                return false;
            };
            let now = watch.now();
            // Read before the claim: the statement claimed is this one or, if it ended
            // meanwhile, a later one, which then goes without the shutdown (never the other
            // way round).
            let number = watch.begun.load(Ordering::Acquire);
            if watch.marks.claim(now, deadline) {
                watch.cancelled(number, now);
                self.cancel(&watch);
            } else {
                watch.shut_down_if_unanswered(now);
            }
            true
        });
    }

    /// Sends the cancel request from a thread of its own: it opens a connection, which to a
    /// database in trouble may take up to twice `connect_timeout`.
    /// Once the request is delivered (the server closed its connection) or failed, the
    /// watch is told, and `CANCEL_GRACE` runs from then.
    fn cancel(&self, watch: &Arc<Watch>) {
        log::warn!(
            "a statement has waited {} s for the database: cancelling it",
            STATEMENT_DEADLINE.as_secs()
        );
        let watch = watch.clone();
        let tls = self.tls.clone();
        let cancel = move || {
            let sent = match tls {
                Some(tls) => watch.token.cancel_query(tls),
                None => watch.token.cancel_query(NoTls),
            };
            watch
                .cancel_delivered_at
                .store(watch.now(), Ordering::Release);
            if let Err(e) = sent {
                log::warn!("cancelling a statement failed: {e}");
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("pg-cancel".into())
            .spawn(cancel)
        {
            log::warn!("cannot start a thread to cancel a statement: {e}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Watch>>> {
        // A list of weak references, pushed or filtered whole: never half-updated.
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: Pool,
    schema_ready: AtomicBool,
    /// The schema the tables were found or created in (PostgreSQL's `current_schema()` the
    /// first time): they are created again only there (`create_schema`).
    schema_home: Mutex<Option<String>>,
    /// When (ms since `born`, 0 = never) a missing table last had the schema applied again.
    schema_retried_ms: AtomicU64,
    /// When the store was opened; the clock of `suspect_until_ms`.
    born: Instant,
    /// Until when (ms since `born`) checkouts test their connection first.
    suspect_until_ms: AtomicU64,
}

impl PgStore {
    /// Builds the pool (lazily: an unreachable database is a 503 later, not a crash now)
    /// and tries once to create the tables.
    pub fn open(url: &str, pool_size: u32, statement_cache: bool) -> Result<PgStore, String> {
        let (config, tls) = connect_options(url)?;
        let manager = Manager {
            watchdog: Watchdog::start(tls.clone()),
            inner: match tls {
                Some(tls) => Connector::Tls(PostgresConnectionManager::new(config, tls)),
                None => Connector::Plain(PostgresConnectionManager::new(config, NoTls)),
            },
            cache: Arc::new(AtomicBool::new(statement_cache)),
        };
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(pool_size.min(2)))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // A broken connection shows itself on its first query, which is retried where
            // that is safe (`read`); a round trip per checkout would halve throughput.
            .test_on_check_out(false)
            .error_handler(Box::new(ConnectErrorLog::default()))
            .build_unchecked(manager);
        let store = PgStore {
            pool,
            schema_ready: AtomicBool::new(false),
            schema_home: Mutex::new(None),
            schema_retried_ms: AtomicU64::new(0),
            born: Instant::now(),
            suspect_until_ms: AtomicU64::new(0),
        };
        if let Err(e) = store.conn() {
            log::warn!("database not ready at start-up, will retry on demand: {e}");
        }
        Ok(store)
    }

    /// A pooled connection on which the schema is known to exist.
    fn conn(&self) -> Result<Conn> {
        let mut conn = self.checkout()?;
        if !self.schema_ready.load(Ordering::Acquire) {
            // Not held across the database calls: while the database is away every request
            // comes here, and none should wait for another's attempt (the advisory lock in
            // `create_schema` orders the attempts that reach the database).
            let home = self.home();
            let mut applied = conn.watched(|c| create_schema(c, home.as_deref()));
            // Not after the watchdog shut the connection down: the database does not answer.
            if applied
                .as_ref()
                .is_err_and(|e| conn.lost(e) && !conn.shut_down_by_watchdog())
            {
                // A pooled connection the database ended meanwhile, and likely the others
                // too: once more, on a connection tested first (`checkout`).
                self.mark_suspect();
                drop(conn);
                conn = self.checkout()?;
                applied = conn.watched(|c| create_schema(c, home.as_deref()));
            }
            match applied? {
                Ok(schema) => {
                    let mut home = self
                        .schema_home
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    home.get_or_insert(schema);
                }
                Err(why) => return Err(Error::Internal(format!("not creating the tables: {why}"))),
            }
            self.schema_ready.store(true, Ordering::Release);
        }
        Ok(conn)
    }

    /// The schema the tables were first found or created in, once known.
    fn home(&self) -> Option<String> {
        self.schema_home
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A pooled connection. Right after a connection failed, the other pooled connections
    /// are likely dead too (the database restarted): each one is tested on checkout until
    /// the window closes, so that a write is never sent on a connection that is already
    /// gone. r2d2 drops a connection that failed the test when it comes back (`has_broken`).
    ///
    /// A test answered with the session's end (PostgreSQL ended that backend just then, and
    /// the driver has not read the socket's close yet) counts as a closed connection: the
    /// next one is tried. A test that gets no answer within `PING_TIMEOUT` (the database
    /// hangs rather than refuses) ends the checkout with a 503 instead.
    fn checkout(&self) -> Result<Conn> {
        let mut conn = self.pool.get()?;
        let mut tries = self.pool.max_size();
        while self.suspect() && tries > 0 {
            match conn.ping() {
                Ok(()) => break,
                Err(e) if !conn.lost(&e) || conn.shut_down_by_watchdog() => return Err(e.into()),
                Err(_) => {
                    drop(conn);
                    conn = self.pool.get()?;
                    tries -= 1;
                }
            }
        }
        Ok(conn)
    }

    /// Runs a read-only query, once more on a fresh connection if the pooled one turned out
    /// to be dead (the database restarted since it was opened). Reads are safe to repeat.
    fn read<T>(&self, f: impl Fn(&mut PgConn) -> Result<T, postgres::Error>) -> Result<T> {
        self.retried(|| self.conn(), f)
    }

    /// Runs `f` on a connection from `checkout`, once more on a fresh one if that one turned
    /// out to be dead or the tables were missing (`tables_missing`); up to
    /// `CONFLICT_ATTEMPTS` times in all while it loses to concurrent statements
    /// (`conflicted`).
    fn retried<T>(
        &self,
        checkout: impl Fn() -> Result<Conn>,
        f: impl Fn(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        self.attempts("a read", checkout, f, |conn, e| {
            // Not after the watchdog shut the connection down: the statement has had its
            // deadline, and the database is not answering.
            conn.lost(e) && !conn.shut_down_by_watchdog() || self.tables_missing(e)
        })
    }

    /// Runs a write, once more on a fresh connection only when the first run certainly did
    /// not take effect: the server ended the session for sitting idle in the pool
    /// (`idle_session_timeout`, as hosted databases set it), or a table was missing (the
    /// statement could not be planned). PostgreSQL arms that timeout only while the session
    /// waits for its next command, and disarms it once one is read, so the session ended
    /// before it read the write; and the driver gives a statement the session's end only
    /// when that statement's reply had not come whole (vendor/postgres/PATCHES.md): a
    /// timeout that ended the session after an earlier statement's reply is that
    /// statement's success, not this error. A write that lost to a concurrent one
    /// (`conflicted`) was rolled back, and is run again too, up to `CONFLICT_ATTEMPTS`
    /// times in all. Any other failure may have
    /// come after the commit (a crash or an immediate shutdown ends sessions at any point,
    /// even between the commit and the answer; `pg_terminate_backend`'s FATAL may come
    /// between a statement's CommandComplete and its ReadyForQuery, after the commit), so
    /// the write is not run again: that is a 503. The idle timeout's FATAL is taken for
    /// what it says only with the connection's end read with it (`is_closed`): a 57P05
    /// whose socket is still open, which PostgreSQL does not send, is a 503 as well.
    fn write<T>(&self, f: impl Fn(&mut PgConn) -> Result<T, postgres::Error>) -> Result<T> {
        self.attempts(
            "a write",
            || self.conn(),
            f,
            |conn, e| {
                conn.client.is_closed() && is(e, &SqlState::IDLE_SESSION_TIMEOUT)
                    || self.tables_missing(e)
            },
        )
    }

    /// Runs `f` on a connection from `checkout`, and again on a fresh one for as long as it
    /// loses to concurrent statements (`conflicted`), `CONFLICT_ATTEMPTS` times at most;
    /// once more for any other failure for which `again` says so, after the first run only.
    /// `what` names the statement in the log.
    fn attempts<T>(
        &self,
        what: &str,
        checkout: impl Fn() -> Result<Conn>,
        f: impl Fn(&mut PgConn) -> Result<T, postgres::Error>,
        again: impl Fn(&PgConn, &postgres::Error) -> bool,
    ) -> Result<T> {
        let mut conn = checkout()?;
        let mut runs = 1;
        let mut table_was_missing = false;
        loop {
            let e = match self.run(&mut conn, &f) {
                Ok(done) => {
                    if table_was_missing {
                        self.schema_fixed();
                    }
                    return Ok(done);
                }
                Err(e) => e,
            };
            let run_again = if conflicted(&e) {
                runs < CONFLICT_ATTEMPTS
            } else {
                runs == 1 && again(&conn, &e)
            };
            if !run_again {
                return Err(e.into());
            }
            table_was_missing |= is(&e, &SqlState::UNDEFINED_TABLE);
            log::debug!("running {what} again on a fresh connection after: {e}");
            drop(conn);
            conn = checkout()?;
            runs += 1;
        }
    }

    /// Runs `f` on `conn`; a failure that lost the connection (`PgConn::lost`) opens the
    /// suspect window (`checkout` tests the other pooled connections for a while).
    fn run<T>(
        &self,
        conn: &mut PgConn,
        f: impl FnOnce(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let result = f(conn);
        if result.as_ref().is_err_and(|e| conn.lost(e)) {
            self.mark_suspect();
        }
        result
    }

    /// True for a statement that failed because a table does not exist (42P01): the
    /// database was dropped and created again, or the tables dropped, since the schema was
    /// applied. The statement did nothing; the schema is applied again on the next checkout
    /// (as at start-up: `create table if not exists`), so that the server recovers by itself
    /// instead of answering 500 until it is restarted.
    ///
    /// At most once per `SCHEMA_RETRY`: a relation missing that the schema does not create
    /// (a trigger or policy someone added, naming a table that is gone) would otherwise have
    /// every request apply the schema, whose `create index if not exists` locks `tasks`
    /// against writes, on every instance.
    fn tables_missing(&self, e: &postgres::Error) -> bool {
        if !is(e, &SqlState::UNDEFINED_TABLE) {
            return false;
        }
        let now = self.born.elapsed().as_millis() as u64;
        let last = self.schema_retried_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= SCHEMA_RETRY.as_millis() as u64;
        if due
            && self
                .schema_retried_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "a table is missing (the database was re-created?): applying the schema again"
            );
            self.schema_ready.store(false, Ordering::Release);
            return true;
        }
        false
    }

    /// A statement that found a table missing worked when run again: the schema applied in
    /// between fixed it, and a table going missing later (the database re-created once
    /// more) is not held to `SCHEMA_RETRY`.
    fn schema_fixed(&self) {
        self.schema_retried_ms.store(0, Ordering::Relaxed);
    }

    /// Runs `f` once, never retried: a streamed read (rows already handed on would be
    /// handed on again), or a write's second try.
    fn once<T>(&self, f: impl FnOnce(&mut PgConn) -> Result<T, postgres::Error>) -> Result<T> {
        Ok(self.run(&mut *self.conn()?, f)?)
    }

    /// True while connections should be tested before use.
    fn suspect(&self) -> bool {
        self.suspect_until_ms.load(Ordering::Relaxed) > self.born.elapsed().as_millis() as u64
    }

    fn mark_suspect(&self) {
        let until = self.born.elapsed() + SUSPECT_WINDOW;
        self.suspect_until_ms
            .store(until.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn ping(&self) -> Result<()> {
        // Bounded (2 s for a connection, 2 s for the answer), so that /health answers even
        // when the database hangs without closing its connections: `checkout`, with none of
        // `conn`'s statements (the schema is the requests' business). Not a plain pool
        // checkout: after the database ended the pooled connections (a restart, a
        // failover, `pg_terminate_backend`), each ping and its retry took a dead one, and
        // /health said 503 for a database that answered, until half the pool was used up;
        // `checkout` tests the connections once one was found dead, as for requests.
        self.retried(|| self.checkout(), PgConn::ping)
    }

    fn upsert_user(&self, user: &User) -> Result<()> {
        self.write(|c| upsert_user_on(c, user))
    }

    fn list(
        &self,
        user_id: &str,
        query: &ListQuery,
        each: &mut dyn FnMut(&Task<&str>),
    ) -> Result<()> {
        let short = list_sql(query, Some(WHOLE_LIST_ROWS + 1));
        let rows = self.read(|c| c.query(&short, &[(&user_id, Type::TEXT)]))?;
        if rows.len() <= WHOLE_LIST_ROWS {
            for row in &rows {
                each(&task(row)?);
            }
            return Ok(());
        }
        drop(rows);
        // A long list is fetched again, row by row as the driver receives them (it holds a
        // few at a time), so that a user's thousands of tasks are never all in memory at
        // once: only the body they make, which `http::BodyBudget` bounds. Unnamed (these are
        // rare) and run `once`.
        let full = list_sql(query, None);
        self.once(|conn| {
            conn.watched(|c| {
                let mut rows = c.query_typed_raw(&full, [(user_id, Type::TEXT)])?;
                while let Some(row) = rows.next()? {
                    each(&task(&row)?);
                }
                Ok(())
            })
        })
    }

    fn create(&self, user: &User, new: &NewTask) -> Result<Task> {
        let sql = concat!(
            "insert into tasks (user_id, title, description, completed, due_date) \
             values ($1, $2, $3, $4, $5) returning ",
            columns!()
        );
        let due = new.due_date.map(Micros::to_system_time);
        let insert = |c: &mut PgConn| {
            c.query(
                sql,
                &[
                    (&user.id, Type::TEXT),
                    (&new.title, Type::TEXT),
                    (&new.description, Type::TEXT),
                    (&new.completed, Type::BOOL),
                    (&due, Type::TIMESTAMPTZ),
                ],
            )
        };
        let rows = self.write(|c| match insert(c) {
            // The user's row is gone (deleted by hand, or a cache that outlived it).
            Err(e) if is(&e, &SqlState::FOREIGN_KEY_VIOLATION) => {
                upsert_user_on(c, user)?;
                insert(c)
            }
            other => other,
        })?;
        one(&rows)
    }

    fn get(&self, user_id: &str, id: i64) -> Result<Option<Task>> {
        let sql = concat!(
            "select ",
            columns!(),
            " from tasks where id = $1 and user_id = $2"
        );
        let rows = self.read(|c| c.query(sql, &id_and_user(&id, &user_id)))?;
        Ok(rows.first().map(task).transpose()?)
    }

    fn update(&self, user_id: &str, id: i64, patch: &TaskPatch) -> Result<Option<Task>> {
        let sql = concat!(
            "update tasks set \
             title = coalesce($3, title), \
             description = case when $4 then $5 else description end, \
             completed = coalesce($6, completed), \
             due_date = case when $7 then $8 else due_date end, \
             updated_at = clock_timestamp() \
             where id = $1 and user_id = $2 returning ",
            columns!()
        );
        let set_description = patch.description.is_some();
        let description = patch.description.clone().flatten();
        let set_due = patch.due_date.is_some();
        let due = patch.due_date.flatten().map(Micros::to_system_time);
        let rows = self.write(|c| {
            c.query(
                sql,
                &[
                    (&id, Type::INT8),
                    (&user_id, Type::TEXT),
                    (&patch.title, Type::TEXT),
                    (&set_description, Type::BOOL),
                    (&description, Type::TEXT),
                    (&patch.completed, Type::BOOL),
                    (&set_due, Type::BOOL),
                    (&due, Type::TIMESTAMPTZ),
                ],
            )
        })?;
        Ok(rows.first().map(task).transpose()?)
    }

    fn delete(&self, user_id: &str, id: i64) -> Result<bool> {
        let sql = "delete from tasks where id = $1 and user_id = $2 returning id";
        let rows = self.write(|c| c.query(sql, &id_and_user(&id, &user_id)))?;
        Ok(!rows.is_empty())
    }

    fn toggle(&self, user_id: &str, id: i64) -> Result<Option<Task>> {
        let sql = concat!(
            "update tasks set completed = not completed, updated_at = clock_timestamp() \
             where id = $1 and user_id = $2 returning ",
            columns!()
        );
        let rows = self.write(|c| c.query(sql, &id_and_user(&id, &user_id)))?;
        Ok(rows.first().map(task).transpose()?)
    }
}

/// Applies the schema (under an advisory lock, so that instances starting together take
/// turns) and returns the schema the tables are in: the first of the search path. Once
/// that is known (`home`), tables found missing are created again only there: if the
/// search path now names another schema (changed by hand, or a role's setting), empty
/// twins there would make every user's tasks seem gone, and take the new writes.
/// `Err(why)` then, with nothing created. (A server started after such a change does not
/// know where the tables were, and creates them where the search path says, as at any
/// first start.) Its locks are waited for 2 s at most (`create index if not exists` locks
/// `tasks` even when the index is there): an attempt behind a long transaction gives up
/// with a 503 rather than hold the writes queued behind it.
fn create_schema(
    client: &mut Client,
    home: Option<&str>,
) -> Result<Result<String, String>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute("set local lock_timeout = '2s'")?;
    tx.execute("select pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    // NULL when no schema of the search path exists; creating then fails with its reason.
    let current: Option<String> = tx.query_one("select current_schema()", &[])?.get(0);
    let current = current.unwrap_or_default();
    if let Some(home) = home.filter(|home| *home != current) {
        return Ok(Err(format!(
            "they were in schema {home:?}, and the search path now names {current:?} first; \
             empty ones there would hide them"
        )));
    }
    // "relation already exists, skipping" at every start is noise, not news.
    tx.batch_execute("set local client_min_messages = warning")?;
    tx.batch_execute(SCHEMA)?;
    tx.commit()?;
    Ok(Ok(current))
}

/// Lists of up to this many tasks are fetched whole, in one round trip.
pub const WHOLE_LIST_ROWS: usize = 500;

/// The statement behind `GET /api/tasks` for this query; `$1` is the user id. Public for
/// the test that EXPLAINs every variant against the indexes of schema.sql.
pub fn list_sql(query: &ListQuery, limit: Option<usize>) -> String {
    let mut sql = format!(
        "select {COLUMNS} from tasks where user_id = $1{} order by {}",
        status_clause(query.status),
        order_clause(query, r#"lower(title collate "C")"#)
    );
    if let Some(limit) = limit {
        let _ = write!(sql, " limit {limit}");
    }
    sql
}

/// Creates the user's row or refreshes its email and name. An email already held by
/// another user id must not fail the request (API.md, Authentication): the row is then
/// kept without it.
fn upsert_user_on(c: &mut PgConn, user: &User) -> Result<(), postgres::Error> {
    const UPSERT: &str = "insert into users (id, email, name) values ($1, $2, $3) \
        on conflict (id) do update set \
        email = coalesce(excluded.email, users.email), \
        name = coalesce(excluded.name, users.name) \
        where users.email is distinct from coalesce(excluded.email, users.email) \
        or users.name is distinct from coalesce(excluded.name, users.name)";
    let run = |c: &mut PgConn, email: &Option<String>| {
        c.query(
            UPSERT,
            &[
                (&user.id, Type::TEXT),
                (email, Type::TEXT),
                (&user.name, Type::TEXT),
            ],
        )
    };
    match run(c, &user.email) {
        Err(e) if is(&e, &SqlState::UNIQUE_VIOLATION) => run(c, &None),
        other => other,
    }
    .map(drop)
}

fn id_and_user<'a>(id: &'a i64, user_id: &'a &str) -> [(&'a (dyn ToSql + Sync), Type); 2] {
    [(id, Type::INT8), (user_id, Type::TEXT)]
}

fn is(e: &postgres::Error, state: &SqlState) -> bool {
    e.code() == Some(state)
}

/// True for a statement PostgreSQL rolled back because it conflicted with a concurrent
/// one: a serialization failure (40001; under a default isolation of REPEATABLE READ or
/// SERIALIZABLE, a row another transaction changed after the statement's snapshot) or a
/// deadlock (40P01). Each of our statements is a transaction of its own, so it did
/// nothing, and run again, on a new snapshot, it usually succeeds; should it fail every
/// time (`CONFLICT_ATTEMPTS`), that is a 503 (`crate::error`). Not when the session
/// ended with it (a FATAL 40001 is a standby's recovery conflict): that is a lost
/// connection (`PgConn::lost`).
fn conflicted(e: &postgres::Error) -> bool {
    (is(e, &SqlState::T_R_SERIALIZATION_FAILURE) || is(e, &SqlState::T_R_DEADLOCK_DETECTED))
        && !connection_ended(e)
}

fn one(rows: &[Row]) -> Result<Task> {
    rows.first()
        .ok_or_else(|| Error::Internal("insert returned no row".into()))
        .and_then(|row| Ok(task(row)?))
}

/// A row of `COLUMNS` as a task, its strings owned (`String`) or borrowed from the row
/// (`&str`).
fn task<'a, S: FromSql<'a>>(row: &'a Row) -> Result<Task<S>, postgres::Error> {
    Ok(Task {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        description: row.try_get(2)?,
        completed: row.try_get(3)?,
        due_date: row.try_get(4)?,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
    })
}

/// 2000-01-01T00:00:00Z, where PostgreSQL counts timestamps from, in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` read as it travels, microseconds since 2000-01-01 UTC, with no
/// `SystemTime` in between (which cost a list of 50 tasks ~8,000 instructions).
impl<'a> FromSql<'a> for Micros {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<Micros, Box<dyn std::error::Error + Sync + Send>> {
        let raw: [u8; 8] = raw.try_into().map_err(|_| "timestamptz is not 8 bytes")?;
        // `infinity` is i64::MAX: kept out of range, where formatting takes its slow path.
        Ok(Micros(
            i64::from_be_bytes(raw).saturating_add(PG_EPOCH_MICROS),
        ))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

/// Turns a `postgres://` URL into the driver's config and a TLS connector.
///
/// The driver knows `sslmode` disable/prefer/require only, and no `sslrootcert`. We take
/// libpq's spellings and are stricter than libpq: whenever TLS is asked for, the server's
/// certificate chain and host name are verified, against the system roots plus the CA in
/// `sslrootcert=` (where config.rs puts `PGSSLROOTCERT`). Without any `sslmode`, the
/// connection is plain TCP, as for a local database.
fn connect_options(url: &str) -> Result<(postgres::Config, Option<MakeTlsConnector>), String> {
    if !super::query_is_plainly_parameters(url) {
        // Nothing of the URL is quoted: the "name" may be the rest of a password.
        return Err(
            "DATABASE_URL cannot be read: after its first `?` comes an `@` or a \
             parameter name that is not a word; a `?`, `#`, `@` or `/` in the user name or \
             password, and an `@` in a parameter, must be percent-encoded (`?` as %3F, `@` \
             as %40)"
                .into(),
        );
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut root_cert = None;
    let mut ssl_requested = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslrootcert" => root_cert = Some(crate::router::percent_decode_query(value)),
            "sslmode" => {
                // The driver's own refusal ("invalid connection string") names neither the
                // parameter nor the value; API.md, PostgreSQL connections: anything else stops
                // the server.
                let decoded = crate::router::percent_decode_path(value);
                if !["disable", "prefer", "require", "verify-ca", "verify-full"]
                    .contains(&decoded.as_str())
                {
                    return Err(format!(
                        "DATABASE_URL has sslmode={decoded:?}, which is not supported: use \
                         disable, prefer, require, verify-ca or verify-full"
                    ));
                }
                ssl_requested = decoded != "disable";
                let mode = match decoded.as_str() {
                    "verify-ca" | "verify-full" => "require",
                    other => other,
                };
                kept.push(format!("sslmode={mode}"));
            }
            _ => kept.push(pair.to_string()),
        }
    }
    if !ssl_requested && root_cert.is_none() {
        kept.retain(|p| !p.starts_with("sslmode="));
        kept.push("sslmode=disable".into());
    }
    let rebuilt = format!("{base}?{}", kept.join("&"));
    let mut config = postgres::Config::from_str(&rebuilt)
        .map_err(|e| format!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
    if config.get_connect_timeout().is_none() {
        // An unreachable host must become a 503 quickly, not a hung worker.
        config.connect_timeout(Duration::from_secs(5));
    }
    config.tcp_user_timeout(Duration::from_secs(15));
    config.keepalives_idle(Duration::from_secs(30));
    match config.get_ssl_mode() {
        SslMode::Disable => return Ok((config, None)),
        SslMode::Prefer => {
            config.ssl_mode(SslMode::Require);
        }
        _ => {}
    }
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = root_cert {
        // config.rs writes PGSSLROOTCERT into the URL, so either may have named the file.
        let named = "sslrootcert= in DATABASE_URL, or PGSSLROOTCERT";
        let pem = std::fs::read(&path)
            .map_err(|e| format!("CA file {path} ({named}) cannot be read: {e}"))?;
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| format!("CA file {path} ({named}) is not a PEM certificate: {e}"))?;
        builder.add_root_certificate(cert);
    }
    let connector = builder
        .build()
        .map_err(|e| format!("TLS set-up failed: {e}"))?;
    Ok((config, Some(MakeTlsConnector::new(connector))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_read_from_postgresql_microseconds_since_2000() {
        let read = |us: i64| Micros::from_sql(&Type::TIMESTAMPTZ, &us.to_be_bytes()).unwrap();
        assert_eq!(read(0).to_rfc3339(), "2000-01-01T00:00:00.000000Z");
        assert_eq!(read(-1).to_rfc3339(), "1999-12-31T23:59:59.999999Z");
        assert_eq!(read(-PG_EPOCH_MICROS), Micros(0));
        assert_eq!(read(1).0, PG_EPOCH_MICROS + 1);
        assert_eq!(
            read(i64::MAX),
            Micros(i64::MAX),
            "infinity stays out of range"
        );
        assert!(Micros::from_sql(&Type::TIMESTAMPTZ, &[0; 4]).is_err());
        assert!(Micros::accepts(&Type::TIMESTAMPTZ) && !Micros::accepts(&Type::TIMESTAMP));
    }

    #[test]
    fn a_cancelled_statement_is_cut_off_a_grace_after_its_cancel_arrived_or_a_limit_after_it_was_sent(
    ) {
        // Sent at 10 s, delivered at 10.05 s: cut off after 11.05 s.
        assert!(!cancel_overdue(11_050, 10_000, 10_050));
        assert!(cancel_overdue(11_051, 10_000, 10_050));
        // Delivered late (at 11.9 s): its grace runs from then, past the limit.
        assert!(!cancel_overdue(12_500, 10_000, 11_900));
        assert!(cancel_overdue(12_901, 10_000, 11_900));
        // Never delivered (a frozen server holds the cancel's connection): cut off at 12 s.
        assert!(!cancel_overdue(12_000, 10_000, 0));
        assert!(cancel_overdue(12_001, 10_000, 0));
    }

    #[test]
    fn the_watchdog_claims_only_the_overdue_statement_it_saw() {
        let marks = Marks(AtomicU64::new(0));
        // A statement that ends in time is never claimed, and leaves the connection idle.
        let a = marks.begin(10);
        assert!(!marks.claim(5_000, 5_000), "not yet overdue");
        marks.end(a);
        assert!(marks.idle());
        assert!(!marks.claim(99_000, 5_000), "nothing under way");
        // One overdue is claimed once; its end then leaves the connection doomed.
        let b = marks.begin(20_000);
        assert!(!marks.claim(19_999, 5_000), "a clock read before it began");
        assert!(marks.claim(25_001, 5_000));
        assert!(!marks.claim(25_002, 5_000), "claimed twice");
        marks.end(b);
        assert!(!marks.idle(), "a cancelled connection is not reused");
        // A later statement on the doomed connection is watched in turn.
        let c = marks.begin(26_000);
        assert_eq!(c, 26_000);
        assert!(marks.claim(31_001, 5_000));
        marks.end(c);
        let d = marks.begin(32_000);
        marks.end(d);
        assert!(!marks.idle() && !marks.claim(99_000, 5_000));
        // Each statement is judged by its own start, not by an earlier one's.
        let fresh = Marks(AtomicU64::new(0));
        let e = fresh.begin(1_000);
        fresh.end(e);
        fresh.begin(7_000);
        assert!(!fresh.claim(7_001, 5_000));
    }

    #[test]
    fn plain_unless_tls_is_asked_for() {
        for url in [
            "postgres://u@localhost/db",
            "postgres://u@localhost/db?sslmode=disable",
        ] {
            let (c, tls) = connect_options(url).unwrap();
            assert_eq!(c.get_ssl_mode(), SslMode::Disable, "{url}");
            assert!(
                tls.is_none(),
                "{url}: no TLS connector (no CA bundle loaded)"
            );
        }
    }

    #[test]
    fn neon_urls_require_tls() {
        for url in [
            "postgresql://u:p@ep-x-pooler.aws.neon.tech/neondb?sslmode=require",
            "postgresql://u:p@h/db?sslmode=require&channel_binding=require",
            "postgresql://u:p@h/db?sslmode=verify-full",
            "postgresql://u:p@h/db?sslmode=prefer",
        ] {
            let (c, tls) = connect_options(url).unwrap();
            assert_eq!(c.get_ssl_mode(), SslMode::Require, "{url}");
            assert!(tls.is_some(), "{url}");
        }
    }

    /// API.md, PostgreSQL connections: an `sslmode` other than the five (`allow`, a typo)
    /// stops the server, with a message naming the value and the accepted ones.
    #[test]
    fn an_unknown_sslmode_is_named_with_the_accepted_ones() {
        for (mode, shown) in [
            ("allow", "allow"),
            ("requre", "requre"),
            ("REQUIRE", "REQUIRE"),
            ("", ""),
            ("verify%20full", "verify full"),
        ] {
            let url = format!("postgres://u:secret-pw@h/db?sslmode={mode}&channel_binding=require");
            let err = connect_options(&url).err().unwrap();
            assert_eq!(
                err,
                format!(
                    "DATABASE_URL has sslmode={shown:?}, which is not supported: use disable, \
                     prefer, require, verify-ca or verify-full"
                )
            );
        }
        // Percent-escaped, an accepted value is still accepted, as the driver decodes it.
        let (c, _) = connect_options("postgres://h/db?sslmode=requir%65").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        let (c, tls) = connect_options("postgres://h/db?sslmode=verify%2Dfull").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        assert!(
            tls.is_some(),
            "verify-full, escaped, verifies as verify-full does"
        );
        let (_, tls) = connect_options("postgres://h/db?sslmode=disabl%65").unwrap();
        assert!(tls.is_none());
    }

    #[test]
    fn a_raw_question_mark_in_the_password_is_refused_without_quoting_it() {
        for url in [
            "postgres://owner:se?krit@db.example:5432/app?sslmode=require",
            "postgres://owner:se?krit=@db.example/app",
            "postgres://owner:se?sslmode=krit@db.example/app",
            "postgres://owner:se?x=1&sslmode=krit@db.example/app",
        ] {
            let err = connect_options(url).err().unwrap();
            assert!(err.contains("percent-encoded (`?` as %3F"), "{err}");
            assert!(
                !err.contains("krit") && !err.contains("db.example"),
                "{err}"
            );
        }
        // Encoded, it is a password like any other.
        let (c, _) = connect_options("postgres://owner:se%3Fkrit@db.example/app").unwrap();
        assert_eq!(c.get_password(), Some(&b"se?krit"[..]));
    }

    #[test]
    fn a_missing_root_certificate_is_a_clear_error() {
        let err = connect_options("postgres://h/db?sslmode=require&sslrootcert=/nonexistent.pem")
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent.pem"), "{err}");
        assert!(
            err.contains("sslrootcert= in DATABASE_URL, or PGSSLROOTCERT"),
            "{err}"
        );
        // As config.rs writes PGSSLROOTCERT into the URL.
        let err = connect_options("postgres://h/db?sslrootcert=/no%20such%261.pem")
            .err()
            .unwrap();
        assert!(err.contains("/no such&1.pem"), "{err}");
    }
}
