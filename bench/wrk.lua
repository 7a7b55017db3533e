-- wrk script for bench/bench.py: POST the body in $BODY with the bench headers, and print the
-- figures as one JSON line (latency in microseconds) for the driver to read.
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer sk-gateway-demo"
wrk.headers["x-fake-completion-tokens"] = "16"

function done(summary, latency, requests)
  local s = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,"p50":%.1f,"p99":%.1f,"mean":%.1f}\n',
    summary.requests, summary.duration, s.status, s.connect + s.read + s.write + s.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
