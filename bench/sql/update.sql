-- pgbench -M prepared script (bench/run.sh). Variables from -D: ubase, nusers (users are
-- numbered ubase .. ubase+nusers-1), idbase, ntasks (user ubase+k owns the seeded tasks
-- idbase + k*ntasks .. + ntasks-1).
-- PUT /api/tasks/{id} with {"title": ..., "description": ...}
\set k random(0, :nusers - 1)
\set uid :ubase + :k
\set id :idbase + :k * :ntasks + random(0, :ntasks - 1)
update tasks set title = 'Updated by bench', description = 'mixed load update', updated_at = clock_timestamp() where id = :id and user_id = :uid returning id, title, description, completed, due_date, created_at, updated_at;
