-- mixed: 9 requests in 10 the popular range (the path of the URL given to wrk), 1 in 10 distinct.

local bench = dofile(debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "common.lua")

setup = bench.setup
done = bench.done

local popular
local calls = 0

function init(args)
  bench.init(args)
  popular = wrk.format()
end

function request()
  calls = calls + 1
  if calls % 10 == 0 then
    return bench.distinct_request()
  end
  return popular
end
