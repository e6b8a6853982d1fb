-- pgbench -M prepared script (bench/run.sh). Variables from -D: ubase, nusers (users are
-- numbered ubase .. ubase+nusers-1), idbase, ntasks (user ubase+k owns the seeded tasks
-- idbase + k*ntasks .. + ntasks-1).
-- GET /api/tasks: one user's tasks, newest first (50 rows; the server asks for at most 501
-- and fetches a longer list again, streamed).
\set k random(0, :nusers - 1)
\set uid :ubase + :k
\set id :idbase + :k * :ntasks + random(0, :ntasks - 1)
select id, title, description, completed, due_date, created_at, updated_at from tasks where user_id = :uid order by created_at desc, id desc limit 501;
