-- pgbench -M prepared script (bench/run.sh). Variables from -D: ubase, nusers (users are
-- numbered ubase .. ubase+nusers-1), idbase, ntasks (user ubase+k owns the seeded tasks
-- idbase + k*ntasks .. + ntasks-1).
-- Two requests of the mixed load in one pgbench transaction: POST /api/tasks, then
-- DELETE /api/tasks/{id} of that task (as bench/mixed.lua deletes only what it created).
-- Each statement commits on its own, as the server's two requests would.
\set k random(0, :nusers - 1)
\set uid :ubase + :k
\set id :idbase + :k * :ntasks + random(0, :ntasks - 1)
insert into tasks (user_id, title) values (:uid, 'x') returning id as newid \gset
delete from tasks where id = :newid and user_id = :uid;
