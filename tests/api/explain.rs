//! The list queries and the indexes of schema.sql: on a table of many users, every variant
//! of `GET /api/tasks` reads only the caller's rows, through an index, and the orders an
//! index provides can be read in index order with no sort step (plans: bench/README.md).

use todo_api::db::postgres::{list_sql, WHOLE_LIST_ROWS};
use todo_api::tasks::ListQuery;

use crate::helpers::*;

/// `EXPLAIN` of the list statements for this query string, as user `u7`: the one most lists
/// are fetched with (`limit`) and the one a long list is streamed with, one after the other.
fn plan(client: &mut postgres::Client, query: &str) -> String {
    let query = ListQuery::parse(query).unwrap();
    [Some(WHOLE_LIST_ROWS + 1), None]
        .into_iter()
        .flat_map(|limit| {
            let sql = list_sql(&query, limit);
            client
                .query(&format!("explain {sql}"), &[&"u7"])
                .unwrap_or_else(|e| panic!("explain {sql}: {e}"))
        })
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_list_query_reads_one_users_rows_through_an_index() {
    let Some(engine) = Engine::postgres() else {
        return;
    };
    let db = TestDb::new(&engine);
    let mut client = db.postgres_client().unwrap();
    // The server creates the schema, indexes included (and drops the database last).
    let _app = TestApp::spawn_with(db, |_| {});
    // 200 users with 100 tasks each: a third dated, a quarter completed.
    client
        .batch_execute(
            "insert into users (id) select 'u' || g from generate_series(0, 199) g;
             insert into tasks (user_id, title, completed, due_date)
               select 'u' || (g % 200), 'task ' || g, g % 4 = 0,
                      case when g % 3 = 0 then now() + g * interval '1 minute' end
               from generate_series(1, 20000) g;
             analyze users; analyze tasks;",
        )
        .unwrap();
    let mut explained = 0;
    for status in ["", "status=pending&", "status=completed&"] {
        for sort in ["", "sort=created&", "sort=title&", "sort=due_date&"] {
            for order in ["", "order=asc", "order=desc"] {
                let query = format!("{status}{sort}{order}");
                let plan = plan(&mut client, &query);
                assert!(!plan.contains("Seq Scan"), "?{query}:\n{plan}");
                let indexed = plan.contains("Index Scan") && plan.contains(" tasks_user_");
                assert!(indexed, "?{query}:\n{plan}");
                explained += 1;
            }
        }
    }
    assert_eq!(explained, 36);
    // With 100 scattered rows per user the planner prefers a bitmap scan and a sort of
    // those rows in memory. The indexes still match the orders: newest first (the
    // default), oldest first, and due date soonest first (undated last) can be read in
    // index order with no sort step at all, which is what larger lists get.
    client
        .batch_execute("set enable_bitmapscan = off; set enable_sort = off")
        .unwrap();
    for (query, index) in [
        ("", "tasks_user_created"),
        ("order=asc", "tasks_user_created"),
        ("sort=due_date", "tasks_user_due"),
        ("sort=due_date&order=asc", "tasks_user_due"),
    ] {
        let plan = plan(&mut client, query);
        assert!(
            plan.contains(&format!("using {index}")) && !plan.contains("Sort"),
            "?{query}:\n{plan}"
        );
    }
}

/// A database as the versions before the HOT-update change made it: full pages, and an
/// index on (user_id, completed) that made every toggle write into every index.
const EARLIER_SCHEMA: &str = "
    create table users (id text primary key, email text unique, name text,
                        created_at timestamptz not null default now());
    create table tasks (
        id bigserial primary key,
        user_id text not null references users (id) on delete cascade,
        title text not null check (char_length(title) between 1 and 200),
        description text check (char_length(description) <= 1000),
        completed boolean not null default false,
        due_date timestamptz,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now());
    create index tasks_user_created on tasks (user_id, created_at, id);
    create index tasks_user_due on tasks (user_id, due_date, id);
    create index tasks_user_completed on tasks (user_id, completed);
    insert into users (id) values ('u1');
    insert into tasks (user_id, title) values ('u1', 'made before the upgrade');";

/// Columns that some index of `tasks` covers, and the table's storage options.
fn indexed_columns_and_options(client: &mut postgres::Client) -> (Vec<String>, Vec<String>) {
    let columns = client
        .query(
            "select distinct a.attname::text from pg_index i \
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) \
             where i.indrelid = 'tasks'::regclass order by 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expressions: i64 = client
        .query_one(
            "select count(*) from pg_index where indrelid = 'tasks'::regclass \
             and (indexprs is not null or indpred is not null)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        expressions, 0,
        "an expression or partial index needs its columns checked"
    );
    let options: Option<Vec<String>> = client
        .query_one(
            "select reloptions from pg_class where oid = 'tasks'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    (columns, options.unwrap_or_default())
}

#[test]
fn toggles_and_edits_can_update_rows_in_place_also_in_an_earlier_database() {
    let Some(engine) = Engine::postgres() else {
        return;
    };
    let db = TestDb::new(&engine);
    let mut client = db.postgres_client().unwrap();
    client.batch_execute(EARLIER_SCHEMA).unwrap();
    let (before, options) = indexed_columns_and_options(&mut client);
    assert!(before.contains(&"completed".to_string()) && options.is_empty());

    let app = TestApp::spawn_with(db, |_| {});
    let user = app.user("u1");
    let tasks = user.get("/api/tasks").json();
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    assert_eq!(tasks[0]["title"], "made before the upgrade");
    let id = tasks[0]["id"].as_i64().unwrap();
    let toggled = user.patch(&format!("/api/tasks/{id}/complete"), "");
    assert_eq!(toggled.status, 200, "{}", toggled.text());
    assert_eq!(toggled.json()["completed"], true);

    // PostgreSQL updates a row in place, with no new index entries (HOT), only when no
    // index covers a column the update changes and the page has room for the new version.
    let (after, options) = indexed_columns_and_options(&mut client);
    // Not completed, title, description nor updated_at; due_date changes only when asked.
    assert_eq!(after, ["created_at", "due_date", "id", "user_id"]);
    assert_eq!(options, ["fillfactor=90"]);
    // A database the server makes from nothing gets the same.
    let fresh = TestDb::new(&engine);
    let mut fresh_client = fresh.postgres_client().unwrap();
    let fresh_app = TestApp::spawn_with(fresh, |_| {});
    assert_eq!(fresh_app.user("u2").get("/api/tasks").status, 200);
    assert_eq!(
        indexed_columns_and_options(&mut fresh_client),
        (after, options)
    );
}
