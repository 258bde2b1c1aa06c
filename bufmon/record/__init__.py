"""Record snapshots to a compact, crash-safe file and read them back (no UI here)."""
