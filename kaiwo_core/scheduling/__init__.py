"""Scheduling: the snapshot and its pod columns, queues and fair shares, ordering, placement
and its filters, gangs, reservations, reclaim and preemption, and the cycle that runs them.
"""
