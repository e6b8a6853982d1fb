-- list: GET /api/tasks for one user who has 50 tasks.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
local req
function init(args)
   common_init()
   req = wrk.format("GET", "/api/tasks", auth(D.list.token))
end
function request() return req end
function response(status, headers, body) count(status, body) end
