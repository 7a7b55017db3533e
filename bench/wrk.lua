-- wrk script for bench/bench.py. POSTs a chat (or Responses) request whose prompt is the JSON-escaped text in
-- $CONTENT; with UNIQUE=1 every request's prompt starts with a fresh number, so no cache (the
-- gateway's token-count cache included) ever sees the same prompt twice. MODEL: the request's
-- model (default gpt-4o-mini; the demo routes other models to other providers). Prints the
-- figures as one JSON line (latency in microseconds) for the driver to read.
local f = assert(io.open(os.getenv("CONTENT"), "rb"))
local content = f:read("*a")
f:close()
local unique = os.getenv("UNIQUE") == "1"
-- Distinct per wrk run, so prompts never repeat across runs either.
local run = os.getenv("RUN_ID") or "0"
local model = os.getenv("MODEL")
if not model or model == "" then
  model = "gpt-4o-mini"
end
local head = '{"model":"' .. model .. '","messages":[{"role":"user","content":"'
local tail = '"}]}'
-- API=responses: the same prompt as a Responses API request (`input`).
if os.getenv("API") == "responses" then
  head = '{"model":"' .. model .. '","input":"'
  tail = '"}'
end
local headers = {
  ["content-type"] = "application/json",
  ["authorization"] = "Bearer sk-gateway-demo",
  ["x-fake-completion-tokens"] = "16",
}
-- HEADER="name: value": one more request header (a route the demo selects by header).
local extra = os.getenv("HEADER")
if extra and extra ~= "" then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  headers[name] = value
end
local fixed

function init(args)
  -- wrk.path and the Host header are known from here on.
  fixed = wrk.format("POST", wrk.path, headers, head .. content .. tail)
end

local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local n = 0
function request()
  if not unique then
    return fixed
  end
  n = n + 1
  return wrk.format("POST", wrk.path, headers, head .. run .. "-" .. id .. "-" .. n .. " " .. content .. tail)
end

function done(summary, latency, requests)
  local s = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,"p50":%.1f,"p99":%.1f,"mean":%.1f}\n',
    summary.requests, summary.duration, s.status, s.connect + s.read + s.write + s.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
