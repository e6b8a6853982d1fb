-- SQLite schema for todo-api, the twin of /schema.sql. Timestamps are stored as the
-- API's own text form (RFC 3339, UTC, six fractional digits), which sorts as time does.

create table if not exists users (
    id          text primary key,
    email       text unique,
    name        text,
    created_at  text not null
);

create table if not exists tasks (
    id           integer primary key autoincrement,
    user_id      text not null references users (id) on delete cascade,
    title        text not null check (length(title) between 1 and 200),
    description  text check (length(description) <= 1000),
    completed    integer not null default 0 check (completed in (0, 1)),
    due_date     text,
    created_at   text not null,
    updated_at   text not null
);

create index if not exists tasks_user_created on tasks (user_id, created_at, id);
create index if not exists tasks_user_due on tasks (user_id, due_date, id);
-- No index on completed: a toggle then updates no index (schema.sql says why).
drop index if exists tasks_user_completed;
