-- hits: every request is the popular range, the path of the URL given to wrk.
-- No request() function, so wrk sends one pre-built request: the client costs as little as it can.

local bench = dofile(debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "common.lua")

setup = bench.setup
init = bench.init
done = bench.done
