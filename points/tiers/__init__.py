"""Coalition tiers: the versioned policy, members' tiers, upgrades from the outbox and the
daily evaluation.

- `policy`: `set_tier_policy` (validated, versioned, audited) and `policy_in_force` (cached by
  `coalition_settings.tiers_revision`);
- `qualifying`: a member's qualifying points in the rolling window (one indexed statement);
- `members`: members' tiers as stored, and the SQL the earn path folds into its preflight;
- `evaluation`: the rule (`decide`), the `transfer.booked` consumer (upgrades) and the daily
  evaluation (downgrades after the grace period), each change with a `member.tier_changed`
  event.
"""
