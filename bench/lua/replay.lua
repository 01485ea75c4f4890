-- Scenario 6: replays of earns booked during setup (same key, same request).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
function request()
  local i = math.random(1, #REPLAYS)
  local r = REPLAYS[i]
  local body = '{"query": "mutation($i: EarnPointsInput!) { earnPoints(input: $i) ' ..
    '{ points transfer { id } errors { code } } }", "variables": {"i": {"member": ' ..
    '{"phone": "' .. r.phone .. '"}, "amount": "' .. r.amount .. '", ' ..
    '"reference": "' .. r.reference .. '", "idempotencyKey": "' .. r.key .. '"}}}'
  return gql(r.token, body)
end
