//! The embedded SQLite store, the default when `DATABASE_URL` is unset: WAL mode so readers
//! never wait for the writer, a busy timeout so writers queue instead of failing, and
//! `synchronous=FULL` so that an acknowledged write survives a power cut. Each pooled
//! connection's page cache is 1 MiB (the default 2 MiB times eight connections made the
//! SQLite server's RSS 24 MB under load; the OS page cache still holds the file).

use std::cell::Cell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, ErrorCode, Row};

use super::{columns, order_clause, status_clause, Store, Task, COLUMNS};
use crate::auth::User;
use crate::error::{Error, Result};
use crate::tasks::{ListQuery, NewTask, TaskPatch};
use crate::time::Micros;

/// The SQLite twin of `/schema.sql`.
pub const SCHEMA: &str = include_str!("schema.sqlite.sql");
/// How long a writer waits for the lock before the request gets a 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Extended result codes (sqlite3.h) for the two constraint failures we recover from.
const CONSTRAINT_UNIQUE: i32 = 2067;
const CONSTRAINT_FOREIGNKEY: i32 = 787;

type Pool = r2d2::Pool<Manager>;

/// r2d2_sqlite's manager, except for what it checks about the connections it pools:
/// - a connection SQLite opened read-only (it does so, silently, when the file is not
///   writable at that moment) is dropped when it comes back to the pool: once the file is
///   writable again, new connections write, without a restart;
/// - each connection remembers which file (device and inode) it opened, and the file at
///   the database's path must stay the one the server started on. Once it is not (deleted,
///   replaced by `mv`, its `-wal` removed), the store is `Stale`: no connection is handed
///   out or opened, and every request is 503 until the server is restarted. Following the
///   new file instead is not safe: a `mv` or `rm` leaves the old file's `-wal` and `-shm`
///   at the path, shared with any other process on the file, and the new file would be read
///   (and written) through the old one's log.
struct Manager {
    inner: SqliteConnectionManager,
    path: String,
    /// The file the server started on.
    original: OnceLock<FileId>,
    stale: Arc<Stale>,
}

/// Why the store no longer uses the database, once it does not: set once, logged once
/// (each request's 503 and each refused connection say `STALE`).
#[derive(Default)]
struct Stale(OnceLock<String>);

/// The cause of every 503 once the store is stale.
const STALE: &str = "sqlite: the database is no longer the file at its path (why: the error \
    logged when that was found); restart the server";

impl Stale {
    fn set(&self, why: String) {
        if self.0.set(why).is_ok() {
            log::error!("{}", self.0.get().map_or("", String::as_str));
        }
    }

    fn is_set(&self) -> bool {
        self.0.get().is_some()
    }
}

impl Manager {
    /// Opens a connection and learns which files it opened.
    fn open(&self) -> rusqlite::Result<Conn> {
        if self.stale.is_set() {
            return Err(failure(rusqlite::ffi::SQLITE_CANTOPEN, STALE.into()));
        }
        let uri = self.path.starts_with("file:");
        let before = if uri {
            None
        } else {
            FileId::of(Path::new(&self.path))
        };
        if let (Some(&original), false) = (self.original.get(), uri) {
            // Checked before opening: SQLite would create a file in place of a deleted one.
            if before != Some(original) {
                return Err(self.went_stale(moved(Path::new(&self.path), original, before)));
            }
        }
        let conn = r2d2::ManageConnection::connect(&self.inner)?;
        let opened = PathBuf::from(conn.path().unwrap_or_default());
        if opened.as_os_str().is_empty() {
            // `:memory:`, `file::memory:`, `file:x?mode=memory`, `file:%3Amemory%3A`, an
            // empty `file:`: SQLite names no file for an in-memory or temporary database,
            // whatever the spelling, and each pooled connection would get its own.
            return Err(failure(
                rusqlite::ffi::SQLITE_CANTOPEN,
                format!(
                    "{} is an in-memory or temporary database, which each pooled \
                     connection would have on its own: give a file path",
                    self.path
                ),
            ));
        }
        let watched = if uri {
            opened.clone()
        } else {
            PathBuf::from(&self.path)
        };
        create_missing_tables(&conn)?;
        let file = FileId::of(&watched).ok_or_else(|| {
            failure(
                rusqlite::ffi::SQLITE_CANTOPEN,
                format!("{} is gone as soon as opened", watched.display()),
            )
        })?;
        if before.is_some_and(|b| b != file) {
            // Replaced between the open and the look: which one is open cannot be told.
            return Err(failure(
                rusqlite::ffi::SQLITE_CANTOPEN,
                format!("{} was replaced while being opened", watched.display()),
            ));
        }
        let original = *self.original.get_or_init(|| file);
        if original != file {
            return Err(self.went_stale(moved(&watched, original, Some(file))));
        }
        let mut wal_path = opened.into_os_string();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        Ok(Conn {
            conn,
            watched,
            file,
            wal: FileId::of(&wal_path),
            wal_path,
            broken: Cell::new(false),
        })
    }

    /// Marks the store stale for `why`; the error for the connection that found it.
    fn went_stale(&self, why: String) -> rusqlite::Error {
        self.stale.set(why);
        failure(rusqlite::ffi::SQLITE_CANTOPEN, STALE.into())
    }
}

/// A file's identity: the same path may name another file later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file at `path` now (symlinks followed, as SQLite does), if any.
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {} inode {}", self.dev, self.ino)
    }
}

/// A pooled connection and the files it opened.
struct Conn {
    conn: Connection,
    /// The database's path as the server watches it: the configured one (so that a
    /// symlink pointed elsewhere counts as a replacement), or SQLite's own name for a
    /// `file:` URI.
    watched: PathBuf,
    /// The database file this connection has open.
    file: FileId,
    /// The `-wal` file it has open, next to the file SQLite resolved the path to.
    wal_path: PathBuf,
    wal: Option<FileId>,
    /// Set when a statement failed in a way that leaves the connection unusable: it is
    /// dropped when it comes back to the pool (`has_broken`).
    broken: Cell<bool>,
}

impl Deref for Conn {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Conn {
    /// The error as the request's outcome; a connection it leaves broken is marked so.
    /// After "file is not a database", an I/O error or corruption, SQLite kept failing on
    /// the same handle even once the file was good again: only a new connection recovers.
    fn fail(&self, e: rusqlite::Error) -> Error {
        use ErrorCode::*;
        if let Some(
            NotADatabase
            | DatabaseCorrupt
            | SystemIoFailure
            | CannotOpen
            | FileLockingProtocolFailed,
        ) = e.sqlite_error_code()
        {
            self.broken.set(true);
        }
        if missing_table(&e) {
            // Not the client's doing, and not a bug of ours: the next request creates
            // the tables again (`read`, `write`).
            return Error::Unavailable(format!("sqlite: {e}"));
        }
        Error::from(e)
    }

    /// Why this connection no longer works on the database at the path, if it does not:
    /// the file was deleted or replaced, or the `-wal` it writes was.
    fn moved(&self) -> Option<String> {
        let now = FileId::of(&self.watched);
        if now != Some(self.file) {
            return Some(moved(&self.watched, self.file, now));
        }
        match (self.wal, FileId::of(&self.wal_path)) {
            (Some(open), now) if now != Some(open) => Some(format!(
                "{} was deleted or replaced while the database was in use: the commits it \
                 held that were not yet copied into {} are lost (SQLite's rules: never \
                 remove the -wal or -shm of a database in use); {RESTART}",
                self.wal_path.display(),
                self.watched.display()
            )),
            _ => None,
        }
    }
}

/// What the store does once the database is `Stale`.
const RESTART: &str = "the server no longer uses the database, so that no write goes into \
    a file that is not the one at the path: every request is 503 until the server is \
    restarted (stop it before deleting, replacing or restoring the file, and its -wal and \
    -shm)";

/// Why the file at `path` is not the database `open` any more (`now`: what the path names).
fn moved(path: &Path, open: FileId, now: Option<FileId>) -> String {
    let path = path.display();
    match now {
        None => format!(
            "the SQLite database {path} was deleted while the server ran ({open} was \
             open); {RESTART}"
        ),
        Some(now) => format!(
            "the SQLite database {path} was replaced while the server ran ({open} was \
             open, the path now names {now}); {RESTART}"
        ),
    }
}

/// Copies what the `-wal` holds into the database file `conn` has open and empties it, for
/// a database that is no longer the one at its path: a `mv` or `rm` of the file alone
/// leaves its `-wal` at the path, where a server started on the new file would read it as
/// the new file's. Says how that went, for the log.
fn empty_wal(conn: &Connection) -> String {
    let checkpoint = conn.query_row("pragma wal_checkpoint(truncate)", [], |r| {
        r.get::<_, i64>(0)
    });
    match checkpoint {
        Ok(0) => "the -wal at the path was emptied into the old file".into(),
        Ok(_) => "the -wal at the path still holds the old file's pages (another \
                  connection was reading): remove the -wal and -shm before restarting"
            .into(),
        Err(e) => format!(
            "the -wal at the path could not be emptied ({e}): remove the -wal and -shm \
             before restarting"
        ),
    }
}

/// A connection failure of our own making (not SQLite's), with its reason.
fn failure(code: std::os::raw::c_int, reason: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(reason))
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = rusqlite::Error;

    fn connect(&self) -> rusqlite::Result<Conn> {
        self.open()
    }

    fn is_valid(&self, conn: &mut Conn) -> rusqlite::Result<()> {
        // A stat or two per checkout: a file deleted or replaced is noticed by the next
        // request, before it reads a stale file or writes into a lost one; r2d2 drops the
        // connection.
        if self.stale.is_set() {
            return Err(failure(rusqlite::ffi::SQLITE_CANTOPEN, STALE.into()));
        }
        match conn.moved() {
            Some(why) => Err(self.went_stale(format!("{why}; {}", empty_wal(conn)))),
            None => Ok(()),
        }
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken.get() || conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
    }
}

/// "no such table": dropped by hand while the server runs.
fn missing_table(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("no such table"))
}

/// The columns `SCHEMA` gives its tables that the file's tables (those it has) lack, as
/// `table.column`: a file of another version of todo-api, or another program's.
fn missing_columns(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let wanted = Connection::open_in_memory()?;
    wanted.execute_batch(SCHEMA)?;
    let columns = |c: &Connection, table: &str| -> rusqlite::Result<Vec<String>> {
        c.prepare("select name from pragma_table_info(?1)")?
            .query_map([table], |r| r.get(0))?
            .collect()
    };
    let mut missing = Vec::new();
    for table in ["users", "tasks"] {
        let have = columns(conn, table)?;
        if have.is_empty() {
            continue;
        }
        for column in columns(&wanted, table)? {
            if !have.contains(&column) {
                missing.push(format!("{table}.{column}"));
            }
        }
    }
    Ok(missing)
}

/// Creates the tables if the file has none of them (a new file, or ones dropped while the
/// server runs), in one transaction; a file that has them is only read.
fn create_missing_tables(conn: &Connection) -> rusqlite::Result<()> {
    let present: i64 = conn.query_row(
        "select count(*) from sqlite_schema where type = 'table' and name in ('users', 'tasks')",
        [],
        |r| r.get(0),
    )?;
    if present == 2 {
        return Ok(());
    }
    conn.execute_batch("begin immediate")?;
    let done = conn
        .execute_batch(SCHEMA)
        .and_then(|()| conn.execute_batch("commit"));
    if done.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("rollback");
    }
    done
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    pool: Pool,
    /// Set once the file at the path is no longer the database (`Manager`).
    stale: Arc<Stale>,
    /// One writer at a time inside this process. SQLite allows one anyway; letting every
    /// worker race for its lock made writers back off and retry, with 1–5 s outliers and
    /// occasional "database is locked" under 16 concurrent writers (bench/README.md).
    writing: Mutex<bool>,
    writer_done: Condvar,
}

/// The right to write, held for one statement; released on drop.
struct WriteTurn<'a>(&'a SqliteStore);

impl Drop for WriteTurn<'_> {
    fn drop(&mut self) {
        *self.0.writing.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.writer_done.notify_one();
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its tables.
    pub fn open(path: &str, pool_size: u32) -> Result<SqliteStore, String> {
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.execute_batch(
                "pragma journal_mode = wal; pragma synchronous = full; pragma foreign_keys = on; \
                 pragma cache_size = -1024;",
            )
        });
        let stale = Arc::new(Stale::default());
        let manager = Manager {
            inner: manager,
            path: path.to_string(),
            original: OnceLock::new(),
            stale: stale.clone(),
        };
        // One try first: a file that cannot be opened (a missing directory, no permission)
        // is said at once, rather than after the pool's 2 s of retries, each logged.
        r2d2::ManageConnection::connect(&manager)
            .map_err(|e| format!("cannot open SQLite database {path}: {e}"))?;
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(2))
            .build(manager)
            .map_err(|e| format!("cannot open SQLite database {path}: {e}"))?;
        let mut conn = pool
            .get()
            .map_err(|e| format!("cannot open SQLite database {path}: {e}"))?;
        // The server never alters a table that is there: one without the columns it
        // needs would make every request fail, so such a file is refused now.
        let missing =
            missing_columns(&conn).map_err(|e| format!("cannot read the tables of {path}: {e}"))?;
        if !missing.is_empty() {
            return Err(format!(
                "SQLite database {path}: its tables lack the column(s) {} (a file of another \
                 version of todo-api, or another program's); the server does not alter tables \
                 that exist: migrate the file, or set DATABASE_URL to another one",
                missing.join(", ")
            ));
        }
        // One transaction: with `synchronous = full` each statement on its own was a commit
        // and an fsync, and start-up waited for every one of them.
        conn.transaction()
            .and_then(|tx| {
                tx.execute_batch(SCHEMA)?;
                tx.commit()
            })
            .map_err(|e| format!("cannot create tables in {path}: {e}"))?;
        Ok(SqliteStore {
            pool,
            stale,
            writing: Mutex::new(false),
            writer_done: Condvar::new(),
        })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        // At once: the pool would try to open connections for its whole timeout first.
        if self.stale.is_set() {
            return Err(Error::Unavailable(STALE.into()));
        }
        Ok(self.pool.get()?)
    }

    /// Waits for this process's write turn, then a connection, within `deadline`.
    fn writer(
        &self,
        deadline: Instant,
    ) -> Result<(WriteTurn<'_>, r2d2::PooledConnection<Manager>)> {
        let mut writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        while *writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            writing = self
                .writer_done
                .wait_timeout(writing, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *writing = true;
        drop(writing);
        let turn = WriteTurn(self);
        Ok((turn, self.writable_conn()?))
    }

    /// Runs one write statement (or two, see `create`) in this process's write turn, as a
    /// transaction that holds SQLite's write lock from its start (`begin immediate`), so
    /// that the time `f` reads for `updated_at` is taken under the lock: with two
    /// processes on one file, the write that commits last has the latest time. All of it
    /// within `BUSY_TIMEOUT`: the turn, then SQLite's lock (the connection's busy timeout
    /// is what is left), else 503.
    ///
    /// The write is answered as done only if the file it went into is still the
    /// database's: one deleted or replaced meanwhile may have taken it, and is lost (503:
    /// the write may or may not be in the file now at the path; the client re-reads).
    fn write<T>(&self, mut f: impl FnMut(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let deadline = Instant::now() + BUSY_TIMEOUT;
        let (turn, conn) = self.writer(deadline)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        let _budget = BusyBudget::set(&conn, left).map_err(|e| conn.fail(e))?;
        let out = match in_transaction(&conn, &mut f) {
            Err(e) if missing_table(&e) => {
                self.recreate_tables(&conn, &e)?;
                in_transaction(&conn, &mut f)
            }
            other => other,
        }
        .map_err(|e| conn.fail(e))?;
        // The write is done: the next one need not wait for this check (`stat` calls).
        drop(turn);
        if let Some(why) = conn.moved() {
            self.stale.set(format!("{why}; {}", empty_wal(&conn)));
            return Err(Error::Unavailable(STALE.into()));
        }
        Ok(out)
    }

    /// Runs reads on a pooled connection. A table gone missing (dropped by hand) is
    /// created again, as start-up does, and the reads run once more.
    fn read<T>(&self, mut f: impl FnMut(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn()?;
        match f(&conn) {
            Err(e) if missing_table(&e) => {
                self.recreate_tables(&conn, &e)?;
                f(&conn).map_err(|e| conn.fail(e))
            }
            other => other.map_err(|e| conn.fail(e)),
        }
    }

    fn recreate_tables(&self, conn: &Conn, why: &rusqlite::Error) -> Result<()> {
        log::error!(
            "SQLite database {}: {why}; creating the missing tables again",
            conn.watched.display()
        );
        create_missing_tables(conn).map_err(|e| conn.fail(e))
    }

    /// A connection that can write, if one can be had: a pooled connection opened while
    /// the file was read-only stays read-only for good (it is dropped when given back,
    /// `has_broken`), and one the pool opened in the background then may still wait idle
    /// once the file is writable again. Such ones are passed over, each dropped, for as
    /// many tries as the pool holds connections; the last one is used whatever it is (its
    /// write then fails with the reason: read-only, 503).
    fn writable_conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        let mut conn = self.conn()?;
        for _ in 0..self.pool.max_size() {
            if !conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
                break;
            }
            drop(conn);
            conn = self.conn()?;
        }
        Ok(conn)
    }
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn ping(&self) -> Result<()> {
        self.read(|conn| conn.query_row("select exists (select 1 from users)", [], |_| Ok(())))
    }

    fn upsert_user(&self, user: &User) -> Result<()> {
        self.write(|conn| upsert_user_on(conn, user))
    }

    fn list(
        &self,
        user_id: &str,
        query: &ListQuery,
        each: &mut dyn FnMut(&Task<&str>),
    ) -> Result<()> {
        let sql = format!(
            "select {COLUMNS} from tasks where user_id = ?1{} order by {}",
            status_clause(query.status),
            order_clause(query, "lower(title)")
        );
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query([user_id])?;
            while let Some(row) = rows.next()? {
                each(&task_ref(row)?);
            }
            Ok(())
        })
    }

    fn create(&self, user: &User, new: &NewTask) -> Result<Task> {
        let sql = concat!(
            "insert into tasks (user_id, title, description, completed, due_date, created_at, \
             updated_at) values (?1, ?2, ?3, ?4, ?5, ?6, ?6) returning ",
            columns!()
        );
        let insert = |conn: &Connection| {
            let now = Micros::now().to_rfc3339();
            let due = new.due_date.map(Micros::to_rfc3339);
            write_returning(
                &mut *conn.prepare_cached(sql)?,
                params![user.id, new.title, new.description, new.completed, due, now],
            )
        };
        self.write(|conn| match insert(conn) {
            // The user's row is gone (deleted by hand, or a cache that outlived it).
            Err(e) if extended_code(&e) == Some(CONSTRAINT_FOREIGNKEY) => {
                upsert_user_on(conn, user)?;
                insert(conn)
            }
            other => other,
        })
    }

    fn get(&self, user_id: &str, id: i64) -> Result<Option<Task>> {
        let sql = concat!(
            "select ",
            columns!(),
            " from tasks where id = ?1 and user_id = ?2"
        );
        self.read(|conn| {
            optional(
                conn.prepare_cached(sql)?
                    .query_row(params![id, user_id], task),
            )
        })
    }

    fn update(&self, user_id: &str, id: i64, patch: &TaskPatch) -> Result<Option<Task>> {
        let sql = concat!(
            "update tasks set \
             title = coalesce(?3, title), \
             description = case when ?4 then ?5 else description end, \
             completed = coalesce(?6, completed), \
             due_date = case when ?7 then ?8 else due_date end, \
             updated_at = ?9 \
             where id = ?1 and user_id = ?2 returning ",
            columns!()
        );
        self.write(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            optional(write_returning(
                &mut stmt,
                params![
                    id,
                    user_id,
                    patch.title,
                    patch.description.is_some(),
                    patch.description.clone().flatten(),
                    patch.completed,
                    patch.due_date.is_some(),
                    patch.due_date.flatten().map(Micros::to_rfc3339),
                    Micros::now().to_rfc3339(),
                ],
            ))
        })
    }

    fn delete(&self, user_id: &str, id: i64) -> Result<bool> {
        self.write(|conn| {
            let mut stmt =
                conn.prepare_cached("delete from tasks where id = ?1 and user_id = ?2")?;
            Ok(stmt.execute(params![id, user_id])? > 0)
        })
    }

    fn toggle(&self, user_id: &str, id: i64) -> Result<Option<Task>> {
        let sql = concat!(
            "update tasks set completed = 1 - completed, updated_at = ?3 \
             where id = ?1 and user_id = ?2 returning ",
            columns!()
        );
        self.write(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            optional(write_returning(
                &mut stmt,
                params![id, user_id, Micros::now().to_rfc3339()],
            ))
        })
    }
}

fn timed_out() -> Error {
    Error::Unavailable("sqlite: timed out waiting to write".into())
}

/// A connection's busy timeout cut to what is left of a write's budget, and put back to
/// `BUSY_TIMEOUT` when dropped (the connection goes back to the pool for any request).
struct BusyBudget<'a>(&'a Connection);

impl<'a> BusyBudget<'a> {
    fn set(conn: &'a Connection, left: Duration) -> rusqlite::Result<BusyBudget<'a>> {
        conn.busy_timeout(left)?;
        Ok(BusyBudget(conn))
    }
}

impl Drop for BusyBudget<'_> {
    fn drop(&mut self) {
        let _ = self.0.busy_timeout(BUSY_TIMEOUT);
    }
}

/// Runs `f` between `begin immediate` and `commit`; rolled back when anything fails, so
/// that the connection goes back to the pool outside a transaction. A failed commit fails
/// the write (as `write_returning` makes sure for a statement on its own).
fn in_transaction<T>(
    conn: &Connection,
    f: &mut impl FnMut(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("begin immediate")?.execute([])?;
    let out = f(conn).and_then(|v| {
        conn.prepare_cached("commit")?.execute([])?;
        Ok(v)
    });
    if out.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("rollback");
    }
    out
}

/// Creates the user's row or refreshes its email and name; an email held by another user
/// id is dropped rather than failing the request (API.md, Authentication).
fn upsert_user_on(conn: &Connection, user: &User) -> rusqlite::Result<()> {
    let sql = "insert into users (id, email, name, created_at) values (?1, ?2, ?3, ?4) \
        on conflict (id) do update set \
        email = coalesce(excluded.email, users.email), \
        name = coalesce(excluded.name, users.name) \
        where users.email is not coalesce(excluded.email, users.email) \
        or users.name is not coalesce(excluded.name, users.name)";
    let now = Micros::now().to_rfc3339();
    let mut stmt = conn.prepare_cached(sql)?;
    match stmt.execute(params![user.id, user.email, user.name, now]) {
        Err(e) if extended_code(&e) == Some(CONSTRAINT_UNIQUE) => {
            stmt.execute(params![user.id, None::<String>, user.name, now])?;
        }
        other => {
            other?;
        }
    }
    Ok(())
}

fn extended_code(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation => {
            Some(f.extended_code)
        }
        _ => None,
    }
}

/// The `RETURNING` row of a write, as `query_row` gives it, but with the statement run to its
/// end: an autocommit write commits there, and a commit that fails (a full disk, an I/O
/// error) fails only there. `query_row` stops at the first row and rusqlite drops the error of
/// the reset that then commits, so the write was answered as done and not kept.
fn write_returning(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Task> {
    let mut rows = stmt.query(params)?;
    let first = rows.next()?.map(task).transpose()?;
    while rows.next()?.is_some() {}
    first.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

fn optional(r: rusqlite::Result<Task>) -> rusqlite::Result<Option<Task>> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e),
    }
}

fn task(row: &Row<'_>) -> rusqlite::Result<Task> {
    task_ref(row).map(Task::into_owned)
}

/// A row of `COLUMNS` as a task whose strings are borrowed from the row.
fn task_ref<'a>(row: &'a Row<'_>) -> rusqlite::Result<Task<&'a str>> {
    let text = |i: usize| Ok::<_, rusqlite::Error>(row.get_ref(i)?.as_str_or_null()?);
    let required = |i: usize| Ok::<_, rusqlite::Error>(row.get_ref(i)?.as_str()?);
    Ok(Task {
        id: row.get(0)?,
        title: required(1)?,
        description: text(2)?,
        completed: row.get(3)?,
        due_date: text(4)?.map(|s| stamp(4, s)).transpose()?,
        created_at: stamp(5, required(5)?)?,
        updated_at: stamp(6, required(6)?)?,
    })
}

/// A stored timestamp: always the API's own form, so parsing it back cannot fail unless
/// the file was edited by hand.
fn stamp(column: usize, text: &str) -> rusqlite::Result<Micros> {
    Micros::parse(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("not a timestamp: {text:?}").into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_databases_are_refused_in_every_spelling() {
        for path in [
            ":memory:",
            "file::memory:",
            "file:%3Amemory%3A",
            "file:x?mode=memory",
            "file:",
        ] {
            let Err(e) = SqliteStore::open(path, 2) else {
                panic!("{path} was opened");
            };
            assert!(e.contains("in-memory or temporary"), "{path}: {e}");
        }
    }
}
