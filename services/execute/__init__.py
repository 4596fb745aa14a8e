"""EXECUTE (port 8102): orders exactly once, protected positions, monitoring, reconciliation."""
