//! The task handlers, and the parsing of what clients send them into values that are
//! valid by construction (`NewTask`, `TaskPatch`, `ListQuery`, task ids).

use serde_json::{Map, Value};

use crate::auth::User;
use crate::db::Task;
use crate::error::{Error, FieldError, Result};
use crate::http::{Reply, Request, LARGE_BODY_BYTES};
use crate::json;
use crate::router::Ctx;
use crate::time::Micros;

/// API.md, Tasks: title length bounds, in code points after trimming.
const TITLE_MAX: usize = 200;
/// API.md, Tasks: description length bound, in code points.
const DESCRIPTION_MAX: usize = 1000;

/// `GET /api/tasks`
pub fn list(ctx: &Ctx, user: &User, req: &Request) -> Result<Reply> {
    let query = ListQuery::parse(req.query)?;
    // About 230 bytes a task: a list of up to ~70 tasks is written without growing.
    let mut body = Vec::with_capacity(16 * 1024);
    // A share of the budget only once the body is large: nothing for the common list.
    let mut hold = None;
    let mut refused = false;
    body.push(b'[');
    ctx.store.list(&user.id, &query, &mut |task| {
        if refused {
            return;
        }
        if body.len() > 1 {
            body.push(b',');
        }
        json::task(&mut body, task);
        if body.capacity() > LARGE_BODY_BYTES
            && !hold
                .get_or_insert_with(|| ctx.bodies.hold())
                .cover(body.capacity())
        {
            refused = true;
            body = Vec::new();
        }
    })?;
    if refused {
        return Err(Error::Busy);
    }
    body.push(b']');
    let mut reply = Reply::json(200, body);
    reply.hold = hold;
    Ok(reply)
}

/// `POST /api/tasks`
pub fn create(ctx: &Ctx, user: &User, req: &Request) -> Result<Reply> {
    let new = NewTask::parse(req.body)?;
    let task = ctx.store.create(user, &new)?;
    Ok(reply(201, &task).with_header("Location", format!("/api/tasks/{}", task.id)))
}

/// `GET /api/tasks/{id}`
pub fn get(ctx: &Ctx, user: &User, id: &str) -> Result<Reply> {
    let task = ctx
        .store
        .get(&user.id, parse_id(id)?)?
        .ok_or_else(no_task)?;
    Ok(reply(200, &task))
}

/// `PUT` or `PATCH /api/tasks/{id}`: a partial update.
pub fn update(ctx: &Ctx, user: &User, id: &str, req: &Request) -> Result<Reply> {
    let id = parse_id(id)?;
    let patch = TaskPatch::parse(req.body)?;
    // API.md, Tasks: `{}` changes nothing, `updated_at` included.
    let task = if patch.is_empty() {
        ctx.store.get(&user.id, id)?
    } else {
        ctx.store.update(&user.id, id, &patch)?
    };
    Ok(reply(200, &task.ok_or_else(no_task)?))
}

/// `DELETE /api/tasks/{id}`
pub fn delete(ctx: &Ctx, user: &User, id: &str) -> Result<Reply> {
    if ctx.store.delete(&user.id, parse_id(id)?)? {
        Ok(Reply::no_content())
    } else {
        Err(no_task())
    }
}

/// `PATCH /api/tasks/{id}/complete`: flips `completed` atomically.
pub fn toggle_complete(ctx: &Ctx, user: &User, id: &str) -> Result<Reply> {
    let task = ctx
        .store
        .toggle(&user.id, parse_id(id)?)?
        .ok_or_else(no_task)?;
    Ok(reply(200, &task))
}

/// A reply whose body is one task.
fn reply(status: u16, task: &Task) -> Reply {
    let mut body = Vec::with_capacity(
        256 + task.title.len() + task.description.as_ref().map_or(0, String::len),
    );
    json::task(&mut body, task);
    Reply::json(status, body)
}

fn no_task() -> Error {
    Error::NotFound("Task not found.")
}

/// A path id: an integer, else 400. One too large for 64 bits names no task: 404.
pub fn parse_id(raw: &str) -> Result<i64> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid_field(
            "task_id",
            "Task id must be an integer.",
        ));
    }
    raw.parse().map_err(|_| no_task())
}

/// A validated new task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// Trimmed, 1–200 code points.
    pub title: String,
    /// At most 1000 code points.
    pub description: Option<String>,
    /// Defaults to false.
    pub completed: bool,
    /// The due instant, if any.
    pub due_date: Option<Micros>,
}

/// A validated partial update: `None` leaves a field alone; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPatch {
    /// A new title.
    pub title: Option<String>,
    /// A new description, or `Some(None)` to clear it.
    pub description: Option<Option<String>>,
    /// A new completion state.
    pub completed: Option<bool>,
    /// A new due date, or `Some(None)` to clear it.
    pub due_date: Option<Option<Micros>>,
}

impl NewTask {
    /// Parses and validates a `POST /api/tasks` body.
    pub fn parse(body: &[u8]) -> Result<NewTask> {
        let mut fields = Fields::parse(body)?;
        let title = match fields.take("title") {
            None | Some(Value::Null) => {
                fields.fail("title", "title is required.");
                None
            }
            Some(v) => fields.title(v),
        };
        let description = fields.nullable("description", Fields::description);
        let completed = fields
            .non_null("completed", Fields::boolean)
            .unwrap_or(false);
        let due_date = fields.nullable("due_date", Fields::due_date);
        fields.finish()?;
        Ok(NewTask {
            title: title.expect("a missing title is an error above"),
            description: description.flatten(),
            completed,
            due_date: due_date.flatten(),
        })
    }
}

impl TaskPatch {
    /// Parses and validates a `PUT`/`PATCH /api/tasks/{id}` body.
    pub fn parse(body: &[u8]) -> Result<TaskPatch> {
        let mut fields = Fields::parse(body)?;
        let patch = TaskPatch {
            title: fields.non_null("title", Fields::title),
            description: fields.nullable("description", Fields::description),
            completed: fields.non_null("completed", Fields::boolean),
            due_date: fields.nullable("due_date", Fields::due_date),
        };
        fields.finish()?;
        Ok(patch)
    }

    /// True when the body named no field we know.
    pub fn is_empty(&self) -> bool {
        *self == TaskPatch::default()
    }
}

/// A JSON object being validated field by field, collecting every complaint.
struct Fields {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    fn parse(body: &[u8]) -> Result<Fields> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            Error::bad_request(if body.iter().all(u8::is_ascii_whitespace) {
                "Request body is empty; send a JSON object.".to_string()
            } else {
                format!("Malformed JSON: {e}.")
            })
        })?;
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                errors: Vec::new(),
            }),
            _ => Err(Error::bad_request("Request body must be a JSON object.")),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name)
    }

    fn fail(&mut self, field: &'static str, message: &str) {
        self.errors.push(FieldError {
            field,
            message: message.to_string(),
        });
    }

    /// A field that may be omitted but not null.
    fn non_null<T>(
        &mut self,
        name: &'static str,
        check: fn(&mut Fields, Value) -> Option<T>,
    ) -> Option<T> {
        match self.take(name)? {
            Value::Null => {
                self.fail(name, &format!("{name} cannot be null."));
                None
            }
            v => check(self, v),
        }
    }

    /// A field that may be omitted (`None`) or null (`Some(None)`).
    fn nullable<T>(
        &mut self,
        name: &'static str,
        check: fn(&mut Fields, Value) -> Option<T>,
    ) -> Option<Option<T>> {
        match self.take(name)? {
            Value::Null => Some(None),
            v => check(self, v).map(Some),
        }
    }

    fn title(&mut self, v: Value) -> Option<String> {
        let s = self.string("title", v)?;
        let trimmed = s.trim();
        let n = trimmed.chars().count();
        if n == 0 || n > TITLE_MAX {
            self.fail("title", "title must be 1 to 200 characters long.");
            return None;
        }
        Some(trimmed.to_string())
    }

    fn description(&mut self, v: Value) -> Option<String> {
        let s = self.string("description", v)?;
        if s.chars().count() > DESCRIPTION_MAX {
            self.fail(
                "description",
                "description must be at most 1000 characters long.",
            );
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, v: Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(b),
            _ => {
                self.fail("completed", "completed must be true or false.");
                None
            }
        }
    }

    fn due_date(&mut self, v: Value) -> Option<Micros> {
        let s = self.string("due_date", v)?;
        let parsed = Micros::parse(&s);
        if parsed.is_none() {
            self.fail(
                "due_date",
                "due_date must be an RFC 3339 date-time with an offset or a YYYY-MM-DD date.",
            );
        }
        parsed
    }

    fn string(&mut self, field: &'static str, v: Value) -> Option<String> {
        match v {
            Value::String(s) if s.contains('\0') => {
                self.fail(field, &format!("{field} must not contain NUL characters."));
                None
            }
            Value::String(s) => Some(s),
            _ => {
                self.fail(field, &format!("{field} must be a string."));
                None
            }
        }
    }

    fn finish(self) -> Result<()> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let detail = self
            .errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Err(Error::BadRequest {
            detail,
            errors: self.errors,
        })
    }
}

/// `?status=` of the list route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every task.
    All,
    /// Tasks not completed.
    Pending,
    /// Completed tasks.
    Completed,
}

/// `?sort=` of the list route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Creation time (default: newest first).
    Created,
    /// Title, A to Z.
    Title,
    /// Due date, soonest first.
    DueDate,
}

/// The list route's query, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    /// Which tasks.
    pub status: StatusFilter,
    /// Sorted by what.
    pub sort: SortKey,
    /// The direction; each sort key has its natural default.
    pub descending: bool,
}

impl ListQuery {
    /// Parses `status`, `sort` and `order`; other parameters are ignored.
    pub fn parse(query: &str) -> Result<ListQuery> {
        let (mut status, mut sort, mut order) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = crate::router::percent_decode_query(value);
            match crate::router::percent_decode_query(key).as_str() {
                "status" => status = Some(value),
                "sort" => sort = Some(value),
                "order" => order = Some(value),
                _ => {}
            }
        }
        let status = match status.as_deref() {
            None | Some("all") => StatusFilter::All,
            Some("pending") => StatusFilter::Pending,
            Some("completed") => StatusFilter::Completed,
            Some(_) => {
                return Err(Error::invalid_field(
                    "status",
                    "status must be one of all, pending, completed.",
                ))
            }
        };
        let sort = match sort.as_deref() {
            None | Some("created") => SortKey::Created,
            Some("title") => SortKey::Title,
            Some("due_date") => SortKey::DueDate,
            Some(_) => {
                return Err(Error::invalid_field(
                    "sort",
                    "sort must be one of created, title, due_date.",
                ))
            }
        };
        let descending = match order.as_deref() {
            None => sort == SortKey::Created,
            Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(Error::invalid_field("order", "order must be asc or desc.")),
        };
        Ok(ListQuery {
            status,
            sort,
            descending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::BadRequest { detail, .. }) => detail,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn new_task_trims_and_counts_code_points() {
        let t = NewTask::parse(r#"{"title": "  Buy milk  ", "extra": 1}"#.as_bytes()).unwrap();
        assert_eq!(t.title, "Buy milk");
        assert_eq!(
            (t.description, t.completed, t.due_date),
            (None, false, None)
        );
        let two_hundred = "é".repeat(200);
        let body = format!(r#"{{"title": "{two_hundred}"}}"#);
        assert_eq!(NewTask::parse(body.as_bytes()).unwrap().title, two_hundred);
    }

    #[test]
    fn new_task_refusals() {
        let cases = [
            ("", "empty"),
            ("[]", "JSON object"),
            ("{", "Malformed"),
            ("{}", "title is required"),
            (r#"{"title": null}"#, "title is required"),
            (r#"{"title": "   "}"#, "1 to 200"),
            (r#"{"title": 5}"#, "must be a string"),
            (r#"{"title": "a\u0000b"}"#, "NUL"),
            (r#"{"title": "a", "completed": "true"}"#, "true or false"),
            (r#"{"title": "a", "completed": 1}"#, "true or false"),
            (
                r#"{"title": "a", "due_date": "2026-01-02T10:00:00"}"#,
                "RFC 3339",
            ),
            (r#"{"title": "a", "description": 7}"#, "must be a string"),
        ];
        for (body, want) in cases {
            let detail = bad(NewTask::parse(body.as_bytes()));
            assert!(detail.contains(want), "{body}: {detail}");
        }
        let long = format!(r#"{{"title": "{}"}}"#, "x".repeat(201));
        assert!(bad(NewTask::parse(long.as_bytes())).contains("1 to 200"));
        let long = format!(r#"{{"title": "a", "description": "{}"}}"#, "ü".repeat(1001));
        assert!(bad(NewTask::parse(long.as_bytes())).contains("1000"));
    }

    #[test]
    fn patch_distinguishes_omitted_null_and_value() {
        let p = TaskPatch::parse(br#"{"description": null, "completed": true}"#).unwrap();
        assert_eq!(p.title, None);
        assert_eq!(p.description, Some(None));
        assert_eq!(p.completed, Some(true));
        assert!(TaskPatch::parse(b"{}").unwrap().is_empty());
        assert!(bad(TaskPatch::parse(br#"{"title": null}"#)).contains("cannot be null"));
        assert!(bad(TaskPatch::parse(br#"{"completed": null}"#)).contains("cannot be null"));
    }

    #[test]
    fn list_query_defaults_and_refusals() {
        let q = ListQuery::parse("").unwrap();
        assert_eq!(
            (q.status, q.sort, q.descending),
            (StatusFilter::All, SortKey::Created, true)
        );
        let q = ListQuery::parse("sort=title&status=pending&x=1").unwrap();
        assert_eq!(
            (q.status, q.sort, q.descending),
            (StatusFilter::Pending, SortKey::Title, false)
        );
        let q = ListQuery::parse("sort=created&order=asc").unwrap();
        assert!(!q.descending);
        for query in ["status=done", "sort=priority", "order=up", "status="] {
            assert!(ListQuery::parse(query).is_err(), "{query}");
        }
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id("42").unwrap(), 42);
        assert!(matches!(
            parse_id("99999999999999999999"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(parse_id("-3"), Ok(-3)));
        for raw in ["abc", "1.5", "", "+1", "1e3", "-"] {
            assert!(
                matches!(parse_id(raw), Err(Error::BadRequest { .. })),
                "{raw}"
            );
        }
    }
}
