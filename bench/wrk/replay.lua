-- Cycles through a fixed list of requests (WRK_REQUESTS: a Lua file returning
-- {{method=, path=, headers={}, body=}, ...}, written by bench/wrk_runs.py) round-robin over all
-- connections of the thread, and prints one machine-readable summary line at the end.
local requests = {}
local counter = 0

function init(args)
  local spec = dofile(os.getenv("WRK_REQUESTS"))
  for i, r in ipairs(spec) do
    requests[i] = wrk.format(r.method, r.path, r.headers, r.body)
  end
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p99.9": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
