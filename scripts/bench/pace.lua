-- wrk script for bench.sh's paced workloads: requests leave as a Poisson process of
-- PACED_RATE requests per second in all (each of PACED_THREADS wrk threads sends its share on
-- its own schedule), instead of each connection's next request right after its answer. Both
-- backends then get the same offered load, and the percentiles say what a request waits at
-- that load rather than at each backend's saturation.
--
-- wrk asks delay() before each request of a connection; the answer is the time until the
-- thread's next scheduled departure. A thread behind schedule (all its connections busy)
-- sends at once, so an overloaded backend shows as an achieved rate below PACED_RATE;
-- wrk's latency runs from the send, not from the scheduled departure.
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } pace_timespec;
int clock_gettime(int clock, pace_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("pace_timespec")
local function now_ms()
	ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
	return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local rate = tonumber(os.getenv("PACED_RATE") or "")
local threads = tonumber(os.getenv("PACED_THREADS") or "")
assert(rate and rate > 0, "pace.lua: PACED_RATE (requests per second) must be set")
assert(threads and threads > 0, "pace.lua: PACED_THREADS (wrk's -t) must be set")
local mean_gap_ms = 1000 * threads / rate

local started = 0
function setup(thread)
	started = started + 1
	thread:set("pace_id", started)
end

local next_at
function init(_)
	math.randomseed(os.time() * 1000 + (pace_id or 0))
end

function delay()
	local now = now_ms()
	next_at = (next_at or now) - math.log(1 - math.random()) * mean_gap_ms
	local wait = next_at - now
	if wait < 1 then
		return 0
	end
	return math.floor(wait)
end
