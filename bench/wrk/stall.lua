-- stall: every request a distinct 30-day range from a random second over seven years (2027..2033),
-- against the seven-year stack: each one reads and assembles a month the worker has never served.

local bench = dofile(debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "common.lua")

-- 2,557 days from 2027-01-01 to 2033-12-31; starts on days 0..2526, so each range ends by the last.
bench.family = bench.range_family({
  start_days = 2527, first_length = 30, lengths = 1, day_step = 1009, second_step = 7919, length_step = 1,
})

setup = bench.setup
init = bench.init
done = bench.done
request = bench.distinct_request
