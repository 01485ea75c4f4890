"""KPI rollups, maintained by outbox consumers (never by scans of the ledger at read time)."""
