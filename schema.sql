-- PostgreSQL schema for todo-api. Applied at every start-up; idempotent, never drops or
-- rewrites data. The SQLite twin lives in src/db/schema.sqlite.sql; a test keeps their
-- columns identical.

create table if not exists users (
    id          text primary key,
    email       text unique,
    name        text,
    created_at  timestamptz not null default now()
);

create table if not exists tasks (
    id           bigserial primary key,
    user_id      text not null references users (id) on delete cascade,
    title        text not null check (char_length(title) between 1 and 200),
    description  text check (char_length(description) <= 1000),
    completed    boolean not null default false,
    due_date     timestamptz,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

-- Every task query is scoped by user_id; these serve the three list orders and the
-- status filter without a sort step (bench/README.md has the EXPLAIN output).
create index if not exists tasks_user_created on tasks (user_id, created_at, id);
create index if not exists tasks_user_due on tasks (user_id, due_date, id);
create index if not exists tasks_user_completed on tasks (user_id, completed);
