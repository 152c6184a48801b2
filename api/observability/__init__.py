"""Operating Lookalike: Prometheus metrics, request ids and JSON logs (issue 17)."""
