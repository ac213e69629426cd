"""The controller's Prometheus metrics: Kaiwo's own metrics plus the controller's.

The scheduling metrics (cycle latency, pods scheduled/pending/rejected, queue fair share and
allocation) are :class:`kaiwo_core.self_metrics.KaiwoMetrics`, shared with the library and the
simulator; this module adds, on the same registry, what only a controller has:

=====================================  =========  ===========================================
metric                                 type       labels / meaning
=====================================  =========  ===========================================
``kaiwo_bindings_total``               counter    ``result``: bound, already-bound, conflict,
                                                  gone, failed, not-leader, stopped
``kaiwo_binding_duration_seconds``     histogram  ConfigMap + annotation + binding, retries included
``kaiwo_evictions_total``              counter    ``result``: evicted, gone, blocked, failed...
``kaiwo_api_errors_total``             counter    ``operation``, ``disposition`` (retry, conflict,
                                                  gone, permanent)
``kaiwo_watch_restarts_total``         counter    ``resource``, ``reason`` (closed, gone, error)
``kaiwo_leader``                       gauge      1 while this replica holds the lease
``kaiwo_assumed_pods``                 gauge      bindings decided, not yet seen in the API
``kaiwo_assumptions_expired_total``    counter    assumptions dropped after the TTL check
``kaiwo_cache_objects``                gauge      ``resource``: objects in the watch cache (every
                                                  replica: a standby keeps its cache warm)
``kaiwo_cache_repairs_total``          counter    ``resource``: cached objects a relist (periodic
                                                  resync, takeover check) found wrong or missing
``kaiwo_config_map_checks_total``      counter    ``result``: in-sync, created, replaced, deleted,
                                                  not-ours, failed (bound pods' GPU ConfigMaps)
``kaiwo_invalid_objects``              gauge      ``kind``: Node (every replica, from its cache);
                                                  Pod, KaiwoQueue, KaiwoJob, KaiwoReservation (the
                                                  leader's last cycle; 0 on a standby)
``kaiwo_config_reloads_total``         counter    ``outcome``: applied, rejected (--config file
                                                  changes; a rejected one keeps the previous)
=====================================  =========  ===========================================

and ``kaiwo_config_last_reload_successful`` (gauge): 1 unless the file's latest version was rejected.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from kaiwo_core.self_metrics import KaiwoMetrics

BINDING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ControllerMetrics:
    """Kaiwo's metrics and the controller's, on one registry.

    Parameters
    ----------
    core : KaiwoMetrics, optional
        The scheduling metrics (default: new ones on a dedicated registry).
    """

    def __init__(self, core: KaiwoMetrics | None = None):
        self.core = core or KaiwoMetrics()
        r = self.core.registry
        self.bindings = Counter("kaiwo_bindings", "Bindings by result", ["result"], registry=r)
        self.binding_seconds = Histogram("kaiwo_binding_duration_seconds",
                                         "Time to carry out one binding, retries included",
                                         buckets=BINDING_BUCKETS, registry=r)
        self.evictions = Counter("kaiwo_evictions", "Evictions (preemptions) by result", ["result"], registry=r)
        self.api_errors = Counter("kaiwo_api_errors", "Failed API calls by disposition",
                                  ["operation", "disposition"], registry=r)
        self.watch_restarts = Counter("kaiwo_watch_restarts", "Watch streams restarted",
                                      ["resource", "reason"], registry=r)
        self.leader = Gauge("kaiwo_leader", "1 while this replica holds the leader lease", registry=r)
        self.assumed = Gauge("kaiwo_assumed_pods", "Bindings decided and not yet confirmed by the API",
                             registry=r)
        self.expired = Counter("kaiwo_assumptions_expired", "Assumptions dropped after the TTL check",
                               registry=r)
        self.cache_objects = Gauge("kaiwo_cache_objects", "Objects in the watch cache", ["resource"],
                                   registry=r)
        self.cache_repairs = Counter("kaiwo_cache_repairs", "Cached objects a relist found wrong or "
                                     "missing (the watch was behind or had lost them)", ["resource"], registry=r)
        self.config_maps = Counter("kaiwo_config_map_checks", "Checks of bound pods' GPU ConfigMaps "
                                   "against their assignment, by result", ["result"], registry=r)
        self.config_reloads = Counter("kaiwo_config_reloads", "Changes of the --config file, by outcome "
                                      "(applied, or rejected and the previous configuration kept)",
                                      ["outcome"], registry=r)
        self.config_ok = Gauge("kaiwo_config_last_reload_successful",
                               "1 unless the latest version of the --config file was rejected", registry=r)
        self.config_ok.set(1)
        self.migrations = Counter("kaiwo_migrations", "Moves of the rebalancing planner (kaiwo controller "
                                  "--rebalance) by goal and outcome: planned (plan mode), evicted, blocked "
                                  "(eviction refused), completed (the replacement on its target), elsewhere, "
                                  "timed-out (hold released)", ["reason", "outcome"], registry=r)
        self.invalid = Gauge("kaiwo_invalid_objects", "Objects left out or rejected as invalid", ["kind"],
                             registry=r)

    def render(self) -> str:
        """Prometheus text exposition of every metric."""
        return self.core.render()

    def outcome(self, kind: str, outcome) -> None:
        """Binder callback: count one binding or eviction."""
        if kind == "bind":
            self.bindings.labels(result=outcome.result).inc()
            self.binding_seconds.observe(outcome.seconds)
        elif kind == "configmap":
            self.config_maps.labels(result=outcome.result).inc()
        else:
            self.evictions.labels(result=outcome.result).inc()
