"""Tests of the metrics, the Prometheus listener, the alert rules and ``status``."""
