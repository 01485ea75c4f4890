-- Scenario 8: quoteEarn for the same purchases as the earns (nothing booked).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
function request()
  local body = '{"query": "query($i: QuoteEarnInput!) { quoteEarn(input: $i) ' ..
    '{ points explanation { rule points } errors { code } } }", "variables": {"i": {"member": ' ..
    '{"phone": "' .. pick(PHONES) .. '"}, "amount": "' .. math.random(100, 5000) .. '.50"}}}'
  return gql(pick(TOKENS), body)
end
