"""Metric implementations (one module per metric) and the one-pass engine."""
