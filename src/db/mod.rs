//! The storage interface and its two implementations: PostgreSQL (`postgres.rs`) and the
//! embedded SQLite default (`sqlite.rs`). Every task query is scoped by `user_id`.

pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use crate::auth::User;
use crate::config::Database;
use crate::error::Result;
use crate::tasks::{ListQuery, NewTask, SortKey, StatusFilter, TaskPatch};
use crate::time::Micros;

/// A task as the API returns it (`json::task` writes the response body). `S` is `String`
/// for a task of its own, or `&str` for one borrowed from a database row while a list is
/// written out, which saves two allocations a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task<S = String> {
    /// The task's id, unique across all users.
    pub id: i64,
    /// The trimmed title.
    pub title: S,
    /// The description, if any.
    pub description: Option<S>,
    /// Whether the task is done.
    pub completed: bool,
    /// When it is due; serialized as RFC 3339 UTC.
    pub due_date: Option<Micros>,
    /// When it was created; serialized as RFC 3339 UTC.
    pub created_at: Micros,
    /// When it last changed; serialized as RFC 3339 UTC.
    pub updated_at: Micros,
}

impl Task<&str> {
    /// A task of its own, with copies of the borrowed strings.
    pub fn into_owned(self) -> Task {
        Task {
            id: self.id,
            title: self.title.to_string(),
            description: self.description.map(str::to_string),
            completed: self.completed,
            due_date: self.due_date,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// One method per query the API needs. A `None` or `false` result means the task does
/// not exist *for this user*; the caller turns it into a 404.
pub trait Store: Send + Sync {
    /// `"postgres"` or `"sqlite"`, for logs and `/health`.
    fn kind(&self) -> &'static str;
    /// One round trip, to tell whether the database answers.
    fn ping(&self) -> Result<()>;
    /// Creates the user's row, or brings its email and name up to date.
    fn upsert_user(&self, user: &User) -> Result<()>;
    /// The user's tasks, filtered and sorted, handed to `each` in order as they are read
    /// from the rows, without a `Task` of their own. On an error the tasks already handed
    /// over are not the whole list.
    fn list(
        &self,
        user_id: &str,
        query: &ListQuery,
        each: &mut dyn FnMut(&Task<&str>),
    ) -> Result<()>;
    /// Inserts a task; creates the user's row first if it has gone missing.
    fn create(&self, user: &User, task: &NewTask) -> Result<Task>;
    /// One task of the user's.
    fn get(&self, user_id: &str, id: i64) -> Result<Option<Task>>;
    /// Applies a non-empty patch in one statement.
    fn update(&self, user_id: &str, id: i64, patch: &TaskPatch) -> Result<Option<Task>>;
    /// Deletes one task of the user's.
    fn delete(&self, user_id: &str, id: i64) -> Result<bool>;
    /// Flips `completed` in one atomic statement.
    fn toggle(&self, user_id: &str, id: i64) -> Result<Option<Task>>;
}

/// Opens the configured database and makes sure its tables exist. `statement_cache`
/// prepares PostgreSQL statements once per connection (not behind a transaction pooler).
pub fn open(
    database: &Database,
    pool_size: u32,
    statement_cache: bool,
) -> Result<Box<dyn Store>, String> {
    match database {
        Database::Postgres(url) => Ok(Box::new(postgres::PgStore::open(
            url,
            pool_size,
            statement_cache,
        )?)),
        #[cfg(feature = "sqlite")]
        Database::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path, pool_size)?)),
        #[cfg(not(feature = "sqlite"))]
        Database::Sqlite(_) => {
            Err("this build has no SQLite support (feature `sqlite`): set DATABASE_URL".into())
        }
    }
}

/// The database for humans and logs: kind, host and name, never the password.
pub fn redact(database: &Database) -> String {
    match database {
        Database::Sqlite(path) => format!("sqlite {path}"),
        Database::Postgres(url) if !query_is_plainly_parameters(url) => {
            // A raw `?` in the password ends the URL's base inside it.
            "postgres (a URL that cannot be read; not shown)".into()
        }
        Database::Postgres(url) => {
            let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
            let rest = rest.split('?').next().unwrap_or("");
            let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("postgres {host_and_db}")
        }
    }
}

/// Whether what follows a PostgreSQL URL's first `?` is parameters for sure: no `@` in it,
/// and every name a plain word, as libpq's are (`sslmode`, `application_name`). Else the
/// `?` is most likely a raw one in the password (base64 ones end in `=`), and the rest of
/// the password, the `@` and the host follow it: such a URL must be neither shown nor
/// read (the driver's refusals quote what they refuse). An `@` in a parameter's value is
/// written `%40`.
pub(crate) fn query_is_plainly_parameters(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    !query.contains('@')
        && query.split('&').filter(|p| !p.is_empty()).all(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// The selected columns, in the order `Task` is built from; a macro so that the fixed
/// statements can be `concat!`-ed once at compile time instead of formatted per request.
macro_rules! columns {
    () => {
        "id, title, description, completed, due_date, created_at, updated_at"
    };
}
pub(crate) use columns;

/// The same columns, for statements built at run time (the list).
pub(crate) const COLUMNS: &str = columns!();

/// The `where` suffix for a status filter; `completed` is a boolean in both dialects
/// (SQLite compares the 0/1 it stores with its `true`/`false` keywords).
pub(crate) fn status_clause(status: StatusFilter) -> &'static str {
    match status {
        StatusFilter::All => "",
        StatusFilter::Pending => " and completed = false",
        StatusFilter::Completed => " and completed = true",
    }
}

/// The `order by` clause. API.md, Tasks: undated tasks last in either direction, ties
/// on id in the sort's direction, titles compared with ASCII case folded and otherwise
/// by code point. `title_key` is the dialect's expression for that.
pub(crate) fn order_clause(query: &ListQuery, title_key: &str) -> String {
    let dir = if query.descending { "desc" } else { "asc" };
    match query.sort {
        SortKey::Created => format!("created_at {dir}, id {dir}"),
        SortKey::Title => format!("{title_key} {dir}, id {dir}"),
        SortKey::DueDate => format!("due_date {dir} nulls last, id {dir}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_and_query() {
        let db = Database::Postgres(
            "postgresql://neondb_owner:npg_secret@ep-x-pooler.aws.neon.tech/neondb?sslmode=require"
                .into(),
        );
        let shown = redact(&db);
        assert_eq!(shown, "postgres ep-x-pooler.aws.neon.tech/neondb");
        assert!(!shown.contains("npg_secret"));
    }

    #[test]
    fn redact_shows_nothing_of_a_password_holding_a_raw_question_mark() {
        for url in [
            "postgres://owner:se?krit@db.example/app",
            // As base64 passwords end.
            "postgres://owner:se?krit=@db.example/app",
            "postgres://owner:se?sslmode=krit@db.example/app?sslmode=require",
            "postgres://owner:se?x=1&application_name=krit@db.example/app",
        ] {
            let shown = redact(&Database::Postgres(url.into()));
            assert!(
                !shown.contains("se") && !shown.contains("krit"),
                "{url}: {shown}"
            );
        }
        let db = Database::Postgres("postgres://db.example/app?application_name=a%40b".into());
        assert_eq!(redact(&db), "postgres db.example/app");
    }
}
