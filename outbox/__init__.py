"""The outbox, delivery side: events relayed into a PostgreSQL job queue (pgqueuer) after
commit and handed to consumers at least once, each consumer's effects idempotent by event id.

The write side is `ledger.outbox`; the worker that runs all this is `api.worker`.
"""
