-- toggle: PATCH /api/tasks/{id}/complete, a random one of the list user's 50 tasks.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
local reqs = {}
function init(args)
   common_init()
   for i, id in ipairs(D.list.ids) do
      reqs[i] = wrk.format("PATCH", "/api/tasks/" .. id .. "/complete", auth(D.list.token))
   end
end
function request() return pick(reqs) end
function response(status, headers, body) count(status, body) end
