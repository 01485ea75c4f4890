"""Coalition tiers: the versioned policy, members' tiers, upgrades from the outbox and the
daily evaluation."""
