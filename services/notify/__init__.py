"""NOTIFY (port 8103): Telegram alerts and commands, metrics; the operator's view."""
