"""The trace-driven simulator: the FGD experiment (offline), the online replay with queues,
synthetic workloads, and the reports (tables, plots, HTML).
"""
