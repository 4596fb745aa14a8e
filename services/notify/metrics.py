"""NOTIFY's metrics (notify.md, "Metrics")."""

from prometheus_client import Counter, Gauge, Histogram

TELEGRAM_MESSAGES = Counter("phoenix95_telegram_messages_total",
                            "Telegram messages by outcome (sent, retried, logged)", ["status"])
TELEGRAM_ENABLED = Gauge("phoenix95_telegram_enabled", "1 when Telegram is configured")
PIPELINE_LATENCY = Histogram(
    "phoenix95_pipeline_latency_seconds", "Webhook received to entry order filled",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
