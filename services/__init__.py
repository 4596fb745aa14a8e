"""The four Phoenix 95 services; `python -m services` runs every one that exists (`make run`)."""
