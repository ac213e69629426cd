"""Monitoring: Prometheus exposition parsing, the metrics store and its kernels, alert rules,
efficiency reports, right-sizing, history files and the scheduler's own metrics.
"""
