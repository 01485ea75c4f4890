"""Campaigns: their versions, lifecycle and the versions in force (the earn engine's rules)."""
