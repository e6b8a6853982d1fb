-- Shared by every wrk scenario script (bench/*.lua). Loaded with dofile() by each
-- scenario, once in wrk's setup/done state and once in every thread's state.
--
-- Environment (set by run.sh):
--   BENCH_DATA  Lua file returning the seeded data: tokens and task ids
--   BENCH_NAME  label printed in the BENCH_RESULT line
--
-- Every thread counts its non-2xx responses; done() sums them and prints one line:
--   BENCH_RESULT name=... requests=N secs=S rps=R p50_ms=.. p90_ms=.. p99_ms=.. max_ms=..
--                non2xx=N sock_err=N timeouts=N
-- The latency object wrk hands to done() is already corrected for coordinated omission
-- (wrk's stats_correct): a stall of S seconds on a connection that normally turns a request
-- around every I seconds adds S/I synthetic samples, so stalls show in p99 even when few.
-- plus, when something failed, BENCH_ERRORS with the first few statuses and bodies.

D = dofile(os.getenv("BENCH_DATA"))

local threads = {}
local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
   table.insert(threads, thread)
end

-- per-thread state (globals, so that done() can read them with thread:get)
ok, bad, firsterr = 0, 0, ""
stats = {}   -- optional per-thread counters (name -> number), summed into BENCH_EXTRA

function common_init()
   math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
   for _ = 1, 10 do math.random() end
end

function auth(token, more)
   local h = { ["Authorization"] = "Bearer " .. token }
   if more then for k, v in pairs(more) do h[k] = v end end
   return h
end

function count(status, body, what)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      bad = bad + 1
      if #firsterr < 600 then
         local b = (body or ""):gsub("%s+", " "):sub(1, 120)
         firsterr = firsterr .. (what and (what .. ":") or "") .. status .. " " .. b .. " | "
      end
   end
end

function pick(t) return t[math.random(#t)] end

function done(summary, latency, requests)
   local nbad, errs, sums, keys = 0, "", {}, {}
   for _, t in ipairs(threads) do
      nbad = nbad + (t:get("bad") or 0)
      errs = errs .. (t:get("firsterr") or "")
      for k, v in pairs(t:get("stats") or {}) do
         if sums[k] == nil then sums[k] = 0; table.insert(keys, k) end
         sums[k] = sums[k] + v
      end
   end
   table.sort(keys)
   local extras = ""
   for _, k in ipairs(keys) do extras = extras .. k .. "=" .. sums[k] .. " " end
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "BENCH_RESULT name=%s requests=%d secs=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d sock_err=%d timeouts=%d\n",
      os.getenv("BENCH_NAME") or "?", summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000,
      nbad, e.connect + e.read + e.write, e.timeout))
   if extras ~= "" then io.write("BENCH_EXTRA name=" .. (os.getenv("BENCH_NAME") or "?") .. " " .. extras .. "\n") end
   if errs ~= "" then io.write("BENCH_ERRORS " .. errs .. "\n") end
end
