"""BRAIN's business metrics (notify.md, "Metrics")."""

from prometheus_client import Counter, Histogram

SIGNALS = Counter("phoenix95_signals_total", "Accepted signals by decision", ["decision"])
SIGNAL_SCORE = Histogram(
    "phoenix95_signal_score", "Phoenix 95 score of accepted signals",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
WEBHOOK_REQUESTS = Counter(
    "phoenix95_webhook_requests_total", "Webhook requests by response status", ["status"]
)
