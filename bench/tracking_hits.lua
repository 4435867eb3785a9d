-- wrk script for bench/tracking_hits.py: open-pixel GETs paced to a target rate,
-- cycling through valid tokens.
--
--   wrk -tT -c64 -d10s -s bench/tracking_hits.lua http://127.0.0.1:PORT -- RATE TOKENS_FILE T
--
-- (T, wrk's thread count, is given again: a thread's init() cannot see it.)
--
-- Pacing: each wrk thread owns a schedule of RATE/threads requests a second. wrk
-- calls delay() before each request it is about to send (on whichever of the
-- thread's connections is free) and waits that many milliseconds; each call takes
-- the next slot of the schedule, so the thread's connections share one steady
-- stream. A server that falls behind gets the missed slots at once (delay 0), so
-- the rate measured is what it sustained, not what it was offered. The clock is
-- CLOCK_MONOTONIC through LuaJIT's FFI (wrk's Lua has no wall clock finer than 1 s).
-- done() prints one JSON line (prefix "RESULT ") for the bench to read.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("index", thread_count)
end

local tokens = {}
local next_token = 1
local interval_ms = 0
local due = nil
local user_agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"

function init(args)
  local rate = tonumber(args[1]) or error("usage: -- RATE TOKENS_FILE THREADS")
  for line in io.lines(args[2]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  local count = tonumber(args[3]) or 1
  interval_ms = 1000 * count / rate
  -- Threads start at different tokens, so together they cycle through all of them.
  next_token = ((index or 1) - 1) * math.floor(#tokens / count) + 1
end

function delay()
  local now = now_ms()
  if due == nil then due = now end
  local wait = due - now
  due = due + interval_ms
  if wait < 0 then return 0 end
  return wait
end

function request()
  local token = tokens[next_token]
  next_token = next_token % #tokens + 1
  return wrk.format("GET", "/o/" .. token, { ["User-Agent"] = user_agent })
end

function done(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'RESULT {"requests": %d, "failed": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f}\n',
    summary.requests, bad, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
