-- misses: every request a distinct range of a few days to a few weeks inside 2027 (see common.lua).

local bench = dofile(debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "common.lua")

setup = bench.setup
init = bench.init
done = bench.done
request = bench.distinct_request
