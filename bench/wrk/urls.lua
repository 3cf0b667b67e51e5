-- Requests the paths of a list file (one per line) over wrk's connections.
--
--   wrk -t1 -c16 -d120s --timeout 30s -s urls.lua http://127.0.0.1:PORT -- LIST MODE CONNECTIONS
--
-- MODE "once": every path exactly once, in list order. A connection whose
--   next request would run past the list waits (delay()) instead of sending
--   anything, and the last response stops the thread and interrupts wrk, so
--   wrk's -d is only an upper bound. The rate is the list length over the
--   time from the first request sent to the last response received (a
--   monotonic clock through LuaJIT's ffi), so connection set-up and wrk's
--   start and exit are not counted. One thread only: threads cannot tell
--   each other that the list is done.
-- MODE "cycle": the list over and over until -d ends; wrk's own duration and
--   request count give the rate.
--
-- Latency percentiles are of the measured latencies: wrk "corrects" its
-- histogram for coordinated omission (stats_correct, which assumes an
-- open-loop client) before done() sees it; done() undoes that exactly.
-- done() prints one line "PERF-JSON {...}" that bench/perf.py parses.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } perf_timespec;
int clock_gettime(int clock_id, perf_timespec *tp);
int getpid(void);
int kill(int pid, int sig);
]]

local CLOCK_MONOTONIC = 1
local SIGINT = 2
local FOREVER_MS = 100000000 -- wrk's -d ends the run long before this
local timespec = ffi.new("perf_timespec")

local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local list, mode = args[1], args[2]
  if list == nil or (mode ~= "once" and mode ~= "cycle") then
    error("usage: -s urls.lua URL -- LIST once|cycle CONNECTIONS")
  end
  once = mode == "once"
  connections = tonumber(args[3] or "0")
  if connections == nil or connections < 1 then
    error("CONNECTIONS (wrk's -c) is needed to undo wrk's latency correction")
  end
  requests = {}
  for line in io.lines(list) do
    if line ~= "" then
      requests[#requests + 1] = wrk.format("GET", line)
    end
  end
  if #requests == 0 then
    error("no paths in " .. list)
  end
  listed = #requests
  promised = 0 -- requests delay() let through
  sent = 0
  received = 0
  statuses = {}
  first_sent = -1
  last_received = -1
  if not once then
    delay = nil -- wrk looks for delay() after init(): no timer per request
  end
end

-- With delay() defined, wrk asks it before every request of a connection,
-- including the first. wrk also calls request() once before the run to
-- check the request it builds; that call comes before any delay().
function delay()
  if promised >= listed then
    return FOREVER_MS
  end
  promised = promised + 1
  return 0
end

function request()
  if once and promised == 0 then
    return requests[1] -- wrk's check, never sent
  end
  if first_sent < 0 then
    first_sent = now()
  end
  local index = sent % listed + 1
  sent = sent + 1
  return requests[index]
end

function response(status, headers, body)
  received = received + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if once and received == listed then
    last_received = now()
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), SIGINT)
  end
end

local function json_object(fields)
  local parts = {}
  for key, value in pairs(fields) do
    parts[#parts + 1] = string.format("%q:%s", key, value)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- The histogram as recorded: wrk's stats_correct(expected) added, for every
-- latency n >= 2 * expected, its count at n - expected, n - 2 * expected,
-- ... while above expected. Walking down from the top, the counts added to
-- a bucket are the recorded counts of the buckets above it with the same
-- remainder modulo expected, which are known by then.
local function recorded(latency, summary, connections)
  local buckets = {}
  for i = 1, #latency do
    local value, count = latency(i)
    buckets[i] = { value, count }
  end
  local per_connection = math.floor(summary.requests / connections)
  if per_connection == 0 then
    return buckets
  end
  local expected = math.floor(summary.duration / per_connection)
  local added = {}
  for i = #buckets, 1, -1 do
    local value, count = buckets[i][1], buckets[i][2]
    local rest = value % expected
    if value > expected then
      count = count - (added[rest] or 0)
      buckets[i][2] = count
    end
    if value >= 2 * expected then
      added[rest] = (added[rest] or 0) + count
    end
  end
  return buckets
end

local function percentiles(buckets, wanted)
  local total, sum, max = 0, 0, 0
  for _, bucket in ipairs(buckets) do
    total = total + bucket[2]
    sum = sum + bucket[1] * bucket[2]
    if bucket[2] > 0 then max = bucket[1] end
  end
  local result = { samples = tostring(total), max = tostring(max) }
  result.mean = total > 0 and string.format("%.1f", sum / total) or "null"
  for _, p in ipairs(wanted) do
    local rank, seen, value = math.max(1, math.ceil(p / 100 * total)), 0, "null"
    for _, bucket in ipairs(buckets) do
      seen = seen + bucket[2]
      if seen >= rank then
        value = tostring(bucket[1])
        break
      end
    end
    result["p" .. p] = value
  end
  return result
end

function done(summary, latency, _)
  local statuses_all, listed_all, received_all = {}, 0, 0
  local first, last, connections, mode = nil, nil, 0, "cycle"
  for _, thread in ipairs(threads) do
    listed_all = listed_all + thread:get("listed")
    received_all = received_all + thread:get("received")
    connections = thread:get("connections")
    if thread:get("once") then mode = "once" end
    for status, count in pairs(thread:get("statuses")) do
      statuses_all[status] = (statuses_all[status] or 0) + count
    end
    local f, l = thread:get("first_sent"), thread:get("last_received")
    if f >= 0 and (first == nil or f < first) then first = f end
    if l >= 0 and (last == nil or l > last) then last = l end
  end
  local statuses_json = {}
  for status, count in pairs(statuses_all) do
    statuses_json[status] = tostring(count)
  end
  local elapsed = "null"
  if first ~= nil and last ~= nil then
    elapsed = string.format("%.6f", last - first)
  end
  local errors = summary.errors
  local measured = percentiles(recorded(latency, summary, connections), { 50, 90, 99 })
  io.write("PERF-JSON ", json_object({
    mode = string.format("%q", mode),
    listed = tostring(listed_all),
    received = tostring(received_all),
    list_elapsed_s = elapsed,
    wrk_duration_us = tostring(summary.duration),
    wrk_requests = tostring(summary.requests),
    bytes = tostring(summary.bytes),
    errors = json_object({
      connect = tostring(errors.connect),
      read = tostring(errors.read),
      write = tostring(errors.write),
      status = tostring(errors.status),
      timeout = tostring(errors.timeout),
    }),
    latency_us = json_object(measured),
    wrk_corrected_p99_us = tostring(latency:percentile(99)),
    statuses = json_object(statuses_json),
  }), "\n")
end
