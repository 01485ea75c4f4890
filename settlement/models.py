"""Tables of settlement (filled in by the settlement module)."""
