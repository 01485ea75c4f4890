"""The earn engine, without a database: conditions, funding splits and pricing."""
