//! The list queries and the indexes of schema.sql: on a table of many users, every variant
//! of `GET /api/tasks` reads only the caller's rows, through an index, and the orders an
//! index provides can be read in index order with no sort step (plans: bench/README.md).

use todo_api::db::postgres::list_sql;
use todo_api::tasks::ListQuery;

use crate::helpers::*;

/// `EXPLAIN` of the list statement for this query string, as user `u7`.
fn plan(client: &mut postgres::Client, query: &str) -> String {
    let sql = list_sql(&ListQuery::parse(query).unwrap());
    let rows = client
        .query(&format!("explain {sql}"), &[&"u7"])
        .unwrap_or_else(|e| panic!("explain {sql}: {e}"));
    rows.iter()
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
    let url = db.postgres_url().unwrap();
    // The server creates the schema, indexes included (and drops the database last).
    let _app = TestApp::spawn_with(db, |_| {});
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
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
