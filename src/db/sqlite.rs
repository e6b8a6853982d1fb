//! The embedded SQLite store, the default when `DATABASE_URL` is unset: WAL mode so readers
//! never wait for the writer, a busy timeout so writers queue instead of failing, and
//! `synchronous=FULL` so that an acknowledged write survives a power cut. Each pooled
//! connection's page cache is 1 MiB (the default 2 MiB times eight connections made the
//! SQLite server's RSS 24 MB under load; the OS page cache still holds the file).

use std::sync::{Condvar, Mutex};
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

/// r2d2_sqlite's manager, except that a connection SQLite opened read-only (it does so,
/// silently, when the file is not writable at that moment) is dropped when it comes back
/// to the pool: once the file is writable again, new connections write, without a restart.
struct Manager(SqliteConnectionManager);

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> rusqlite::Result<Connection> {
        self.0.connect()
    }

    fn is_valid(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        self.0.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
    }
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    pool: Pool,
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
        let manager = Manager(manager);
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
            writing: Mutex::new(false),
            writer_done: Condvar::new(),
        })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        Ok(self.pool.get()?)
    }

    /// Waits (at most the busy timeout) for this process's write turn, then a connection.
    fn writer(&self) -> Result<(WriteTurn<'_>, r2d2::PooledConnection<Manager>)> {
        let deadline = Instant::now() + BUSY_TIMEOUT;
        let mut writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        while *writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable(
                    "sqlite: timed out waiting to write".into(),
                ));
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
        let conn = self.conn()?;
        conn.query_row("select exists (select 1 from users)", [], |_| Ok(()))?;
        Ok(())
    }

    fn upsert_user(&self, user: &User) -> Result<()> {
        let (_turn, conn) = self.writer()?;
        upsert_user_on(&conn, user)
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
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([user_id])?;
        while let Some(row) = rows.next()? {
            each(&task_ref(row)?);
        }
        Ok(())
    }

    fn create(&self, user: &User, new: &NewTask) -> Result<Task> {
        let sql = concat!(
            "insert into tasks (user_id, title, description, completed, due_date, created_at, \
             updated_at) values (?1, ?2, ?3, ?4, ?5, ?6, ?6) returning ",
            columns!()
        );
        let (_turn, conn) = self.writer()?;
        let insert = |conn: &Connection| {
            let now = Micros::now().to_rfc3339();
            let due = new.due_date.map(Micros::to_rfc3339);
            write_returning(
                &mut *conn.prepare_cached(sql)?,
                params![user.id, new.title, new.description, new.completed, due, now],
            )
        };
        match insert(&conn) {
            // The user's row is gone (deleted by hand, or a cache that outlived it).
            Err(e) if extended_code(&e) == Some(CONSTRAINT_FOREIGNKEY) => {
                upsert_user_on(&conn, user)?;
                Ok(insert(&conn)?)
            }
            other => Ok(other?),
        }
    }

    fn get(&self, user_id: &str, id: i64) -> Result<Option<Task>> {
        let sql = concat!(
            "select ",
            columns!(),
            " from tasks where id = ?1 and user_id = ?2"
        );
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(sql)?;
        optional(stmt.query_row(params![id, user_id], task))
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
        let (_turn, conn) = self.writer()?;
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
    }

    fn delete(&self, user_id: &str, id: i64) -> Result<bool> {
        let (_turn, conn) = self.writer()?;
        let mut stmt = conn.prepare_cached("delete from tasks where id = ?1 and user_id = ?2")?;
        Ok(stmt.execute(params![id, user_id])? > 0)
    }

    fn toggle(&self, user_id: &str, id: i64) -> Result<Option<Task>> {
        let sql = concat!(
            "update tasks set completed = 1 - completed, updated_at = ?3 \
             where id = ?1 and user_id = ?2 returning ",
            columns!()
        );
        let (_turn, conn) = self.writer()?;
        let mut stmt = conn.prepare_cached(sql)?;
        optional(write_returning(
            &mut stmt,
            params![id, user_id, Micros::now().to_rfc3339()],
        ))
    }
}

/// Creates the user's row or refreshes its email and name; an email held by another user
/// id is dropped rather than failing the request (API.md, Authentication).
fn upsert_user_on(conn: &Connection, user: &User) -> Result<()> {
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

fn optional(r: rusqlite::Result<Task>) -> Result<Option<Task>> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(Error::from(e)),
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
