-- mixed: 70 % reads / 30 % writes over 8 users, the operation drawn per request:
--   list 35 %, get 35 %, create 8 %, delete 8 %, toggle 7 %, update 7 %.
-- get, toggle and update hit the user's 50 seeded tasks (never deleted); delete removes
-- a task this thread created earlier (its id taken from the 201 body), so every request
-- should be 2xx. Responses are matched to requests by X-Request-Id, which the server
-- echoes (CONTRACT.md, Transport). A delete with no created task to hand becomes a
-- create (counted as delete_fallback). bench/sql/*.sql mirrors this mix for pgbench.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

local MIX = { {"L", 35}, {"G", 35}, {"C", 8}, {"D", 8}, {"T", 7}, {"U", 7} }
local table100 = {}
local users, pool = {}, {}
local seq = 0
local json = { ["Content-Type"] = "application/json" }

function init(args)
   common_init()
   for _, m in ipairs(MIX) do
      for _ = 1, m[2] do table.insert(table100, m[1]) end
   end
   assert(#table100 == 100, "mix weights must add up to 100")
   users = D.mix
   for u = 1, #users do pool[u] = {} end
   for _, k in ipairs({"L", "G", "C", "D", "T", "U", "delete_fallback", "created_untracked", "no_request_id"}) do
      stats[k] = 0
   end
end

local function hdrs(u, op, more)
   seq = seq + 1
   local h = auth(users[u].token, more)
   h["X-Request-Id"] = string.format("%s-%d-%d-%d", op, u, tid or 0, seq)
   return h
end

function request()
   local op = table100[math.random(100)]
   local u = math.random(#users)
   if op == "D" then
      -- a user with a task of ours to delete: this one, else the first that has one
      local du = nil
      if #pool[u] > 0 then du = u else
         for v = 1, #users do if #pool[v] > 0 then du = v; break end end
      end
      if du == nil then
         stats.delete_fallback = stats.delete_fallback + 1
         op = "C"
      else
         u = du
         local id = table.remove(pool[u])
         stats.D = stats.D + 1
         return wrk.format("DELETE", "/api/tasks/" .. id, hdrs(u, "D"))
      end
   end
   stats[op] = stats[op] + 1
   if op == "L" then
      return wrk.format("GET", "/api/tasks", hdrs(u, "L"))
   elseif op == "G" then
      return wrk.format("GET", "/api/tasks/" .. pick(users[u].ids), hdrs(u, "G"))
   elseif op == "T" then
      return wrk.format("PATCH", "/api/tasks/" .. pick(users[u].ids) .. "/complete", hdrs(u, "T"))
   elseif op == "U" then
      local body = string.format('{"title":"Updated by bench %d","description":"mixed load update"}', seq + 1)
      return wrk.format("PUT", "/api/tasks/" .. pick(users[u].ids), hdrs(u, "U", json), body)
   else -- "C"
      local body = string.format('{"title":"Mixed bench task %d-%d","description":"created by bench/mixed.lua"}', tid or 0, seq + 1)
      return wrk.format("POST", "/api/tasks", hdrs(u, "C", json), body)
   end
end

function response(status, headers, body)
   local rid = nil
   for k, v in pairs(headers) do
      if k:lower() == "x-request-id" then rid = v; break end
   end
   local op, u = nil, nil
   if rid then op, u = rid:match("^(%a)-(%d+)-") end
   count(status, body, op)
   if status < 200 or status >= 300 then
      local k = "bad_" .. (op or "unknown")
      stats[k] = (stats[k] or 0) + 1
   elseif op == "C" then
      local id = body:match('"id"%s*:%s*(%d+)')
      if id then table.insert(pool[tonumber(u)], id)
      else stats.created_untracked = stats.created_untracked + 1 end
   elseif op == nil then
      stats.no_request_id = stats.no_request_id + 1   -- X-Request-Id not echoed
   end
end
