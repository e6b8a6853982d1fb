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
) with (fillfactor = 90);

-- Every task query is scoped by user_id; these serve the list orders without a sort step,
-- the status filter reading the same index (bench/README.md has the EXPLAIN output).
create index if not exists tasks_user_created on tasks (user_id, created_at, id);
create index if not exists tasks_user_due on tasks (user_id, due_date, id);

-- A toggle or an edit of title, description or completed writes a new version of the row.
-- No index covers those columns (nor updated_at), and a tenth of every page is kept free,
-- so that version can stay on its page with no index entries of its own (a HOT update):
-- toggles then cost PostgreSQL less and leave nothing behind in the indexes. Databases
-- made before this had an index on (user_id, completed) and full pages.
drop index if exists tasks_user_completed;
do $$
begin
    if not exists (select from pg_class where oid = 'tasks'::regclass
                   and reloptions @> array['fillfactor=90']) then
        alter table tasks set (fillfactor = 90);
    end if;
end
$$;
