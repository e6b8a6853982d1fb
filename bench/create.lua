-- create: POST /api/tasks for a user of its own (so the list user keeps 50 tasks).
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
local n = 0
local hdr
function init(args)
   common_init()
   hdr = { ["Content-Type"] = "application/json" }
end
function request()
   n = n + 1
   local body = string.format('{"title":"Bench created task %d-%d","description":"Made by bench/create.lua"}', tid or 0, n)
   return wrk.format("POST", "/api/tasks", auth(D.create.token, hdr), body)
end
function response(status, headers, body) count(status, body) end
