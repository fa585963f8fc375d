-- Shared by the scenario scripts: distinct ranges for misses, and the summary the harness reads.
--
-- Script arguments (after wrk's "--"): the thread count and the first distinct index of this run.
-- Thread i of T uses the indices offset + i, offset + i + T, offset + i + 2T, ...: a counter per
-- thread, seeded by the thread's index, so no range repeats across threads; the harness moves the
-- offset past every index a run used, so none repeats across runs either (warm-ups included).
-- bench/test_http_summary.py mirrors the families below in Python and checks they never repeat.

local M = {}

-- 2027-01-01T00:00:00 as a UTC epoch: used only to spell dates, since the service reads
-- offset-less times as wall-clock times in the provider's zone, as the feed writes them.
local YEAR_START = 1798761600
local DAY = 86400
local SECONDS = 86399 -- start second 1..86399: never midnight, so no miss equals a date-only range

-- A family of distinct ranges: index n -> (start day, start second, length in days), the range
-- starting at that second of that day and lasting that many days. The moduli (start_days, SECONDS,
-- lengths) are pairwise coprime (SECONDS is prime), so by the Chinese remainder theorem
-- n -> (n mod start_days, n mod SECONDS, n mod lengths) is one-to-one below their product; each
-- component is spread by a step prime to its modulus, so day, time and length all move at once.
function M.range_family(spec)
  local family = { limit = spec.start_days * SECONDS * spec.lengths }
  -- "2027-03-05T" for every day a range of the family starts or ends on, built once: a request
  -- then only formats the time of day.
  local day_prefix = {}
  for day = 0, spec.start_days - 1 + spec.first_length + spec.lengths - 1 do
    day_prefix[day] = os.date("!%Y-%m-%dT", YEAR_START + day * DAY)
  end
  function family.path(n)
    local day = (n * spec.day_step) % spec.start_days
    local second = 1 + (n * spec.second_step) % SECONDS
    local length = spec.first_length + (n * spec.length_step) % spec.lengths
    local clock = string.format(
      "%02d:%02d:%02d", math.floor(second / 3600), math.floor(second / 60) % 60, second % 60
    )
    return "/search?starts_at=" .. day_prefix[day] .. clock
      .. "&ends_at=" .. day_prefix[day + length] .. clock
  end
  return family
end

-- One year (the generated feed's 2027): 3 to 28 days starting on days 0..336, so each ends in 2027.
M.ONE_YEAR = M.range_family({
  start_days = 337, first_length = 3, lengths = 26, day_step = 101, second_step = 7919, length_step = 7,
})

-- The family distinct_request draws from; a script may switch it before wrk runs the threads.
M.family = M.ONE_YEAR

local threads = {}

-- Setup phase (wrk's main Lua state): number the threads.
function M.setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

-- Running phase (each thread's own state): read the arguments.
function M.init(args)
  thread_count = tonumber(args[1]) or error("common.lua: first script argument: the thread count")
  distinct_offset = tonumber(args[2]) or error("common.lua: second script argument: the first index")
  distinct_count = 0
end

-- This thread's next distinct request.
function M.distinct_request()
  local n = distinct_offset + distinct_count * thread_count + thread_index
  if n >= M.family.limit then
    error("common.lua: out of distinct ranges")
  end
  distinct_count = distinct_count + 1
  return wrk.format(nil, M.family.path(n))
end

-- Done phase: one line of JSON for the harness (wrk's own text report is printed before it).
function M.done(summary, latency, requests)
  local most = 0
  for _, thread in ipairs(threads) do
    most = math.max(most, thread:get("distinct_count") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "non_2xx_3xx": %d, '
      .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p99_9": %d}, '
      .. '"distinct_span": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors.status,
    errors.connect, errors.read, errors.write, errors.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    most * #threads
  ))
end

return M
