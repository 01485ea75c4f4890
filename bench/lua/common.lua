-- Shared by every scenario. TOKENS, PHONES and REPLAYS come from the generated setup file;
-- each wrk thread counts responses carrying GraphQL errors, done() prints one JSON line.
dofile(os.getenv("BENCH_SETUP"))
counter = 0
graphql_errors = 0
thread_tag = "0"

function init(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6) + math.random(1, 1e6))
  thread_tag = tostring(math.random(1, 1e9))
end

function next_key()
  counter = counter + 1
  return thread_tag .. "-" .. counter
end

function pick(list)
  return list[math.random(1, #list)]
end

function gql(token, body)
  return wrk.format("POST", "/graphql", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors":[{', 1, true) then
    graphql_errors = graphql_errors + 1
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local errs = 0
  for _, t in ipairs(threads) do errs = errs + (t:get("graphql_errors") or 0) end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "rps": %.1f, "p50_ms": %.2f, "p99_ms": %.2f, ' ..
    '"http_errors": %d, "errors": %d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, errs))
end
