"""Kaiwo's own metrics, exposed with ``prometheus_client`` on a dedicated registry.

=========================================  =========  ===================================================
metric                                     type       labels / meaning
=========================================  =========  ===================================================
``kaiwo_cycle_duration_seconds``           histogram  scheduling cycle latency
``kaiwo_pods_scheduled_total``             counter    pods bound by Kaiwo
``kaiwo_pods_pending``                     gauge      pods left pending by the last cycle
``kaiwo_pods_rejected_total``              counter    pods rejected for a malformed or impossible request
``kaiwo_queue_fair_share``                 gauge      ``queue``, ``resource`` (gpu, cpu, memory)
``kaiwo_queue_allocated``                  gauge      ``queue``, ``resource``
``kaiwo_alerts``                           gauge      ``state`` (pending, firing), ``severity``
=========================================  =========  ===================================================

A dedicated :class:`prometheus_client.CollectorRegistry` (not the global default) keeps two Kaiwo
instances in one process (tests, the simulator next to the controller) from colliding, and keeps
Python's process metrics out unless asked for. :meth:`KaiwoMetrics.render` gives the text exposition
the controller serves on ``/metrics``.

Recording one cycle is vectorised: counts come from the placement's ``node`` array and the
per-queue allocation from one ``np.bincount`` over the pods' queue codes; only the ~100 queue gauges
are set from Python. The ``metrics`` plugin (:class:`MetricsPlugin`) does this in ``on_cycle_end``
and can also append the same numbers, as series, to a :class:`~kaiwo_core.monitoring.metrics_store.MetricsStore`,
so alert rules can watch the scheduler itself (e.g. ``kaiwo_pods_pending > 100 for 10m``).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .scheduling.accounting import held_vectors
from .plugins import Plugin, PluginError, register

if TYPE_CHECKING:  # the store's Numba kernels compile on import: only users of a store pay that
    from .monitoring.metrics_store import MetricsStore

#: Cycle latency buckets: 1 ms to 30 s (a cycle at scale M takes tens to hundreds of ms).
CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RESOURCES = ("gpu", "cpu", "memory")


class KaiwoMetrics:
    """Kaiwo's own metrics on one registry.

    Parameters
    ----------
    registry : CollectorRegistry, optional
        Default: a new, dedicated registry.
    """

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cycle_seconds = Histogram("kaiwo_cycle_duration_seconds", "Scheduling cycle latency",
                                       buckets=CYCLE_BUCKETS, registry=r)
        self.scheduled = Counter("kaiwo_pods_scheduled", "Pods bound by Kaiwo", registry=r)
        self.rejected = Counter("kaiwo_pods_rejected", "Pods rejected for a malformed or impossible request",
                                registry=r)
        self.pending = Gauge("kaiwo_pods_pending", "Pods left pending by the last cycle", registry=r)
        self.fair_share = Gauge("kaiwo_queue_fair_share", "Fair share of a queue (GPU milli-units, "
                                "CPU milli-cores, memory MiB)", ["queue", "resource"], registry=r)
        self.allocated = Gauge("kaiwo_queue_allocated", "Allocation of a queue (GPU milli-units, "
                               "CPU milli-cores, memory MiB)", ["queue", "resource"], registry=r)
        self.alerts = Gauge("kaiwo_alerts", "Alert instances by state and severity", ["state", "severity"],
                            registry=r)
        self._queue_children: dict = {}
        self.last: dict = {}

    def render(self) -> str:
        """Prometheus text exposition of every metric of the registry."""
        return generate_latest(self.registry).decode()

    def _child(self, gauge: Gauge, queue: str, resource: str):
        # labels() costs a lock and a dict lookup per call; keep the children of ~100 queues.
        key = (id(gauge), queue, resource)
        c = self._queue_children.get(key)
        if c is None:
            c = self._queue_children[key] = gauge.labels(queue=queue, resource=resource)
        return c

    def record_cycle(self, seconds: float, placed: np.ndarray, rejected: int = 0,
                     queue_of_pod: np.ndarray | None = None, queue_names=None,
                     usage: dict | None = None, fair_share: dict | None = None) -> dict:
        """Record one cycle.

        Parameters
        ----------
        seconds : float
            Cycle latency.
        placed : bool array [P]
            Which pods of the batch were placed (``Placement.placed``).
        rejected : int
            Pods rejected before placement.
        queue_of_pod : int array [P], optional
            Queue index of every pod (into ``queue_names``), to update the per-queue gauges.
        usage : dict, optional
            resource -> array [P] of what each pod was given (e.g. GPU milli-units); summed per
            queue over the *placed* pods into ``kaiwo_queue_allocated``.
        fair_share : dict, optional
            resource -> array [Q] of fair shares per queue.

        Returns
        -------
        dict with the numbers recorded (``scheduled``, ``pending``, ``allocated`` per resource).
        """
        placed = np.asarray(placed, dtype=bool)
        n_placed = int(np.count_nonzero(placed))
        self.cycle_seconds.observe(float(seconds))
        self.scheduled.inc(n_placed)
        if rejected:
            self.rejected.inc(int(rejected))
        self.pending.set(len(placed) - n_placed)
        out = {"seconds": float(seconds), "scheduled": n_placed, "pending": len(placed) - n_placed,
               "allocated": {}}
        if queue_of_pod is not None and queue_names is not None:
            q = np.asarray(queue_of_pod, dtype=np.int64)
            if q.shape != placed.shape:
                raise ValueError(f"record_cycle: queue_of_pod has shape {q.shape}, placed {placed.shape}")
            names = list(queue_names)
            ok = placed & (q >= 0)
            for res, per_pod in (usage or {}).items():
                per_pod = np.asarray(per_pod, dtype=np.float64)
                if per_pod.shape != placed.shape:
                    raise ValueError(f"record_cycle: usage[{res!r}] has shape {per_pod.shape}, "
                                     f"placed {placed.shape}")
                tot = np.bincount(q[ok], weights=per_pod[ok], minlength=len(names))
                out["allocated"][res] = tot
                for name, v in zip(names, tot.tolist()):
                    self._child(self.allocated, name, res).set(v)
            for res, share in (fair_share or {}).items():
                share = np.asarray(share, dtype=np.float64)
                if share.shape != (len(names),):
                    raise ValueError(f"record_cycle: fair_share[{res!r}] has shape {share.shape}, "
                                     f"expected ({len(names)},)")
                for name, v in zip(names, share.tolist()):
                    self._child(self.fair_share, name, res).set(v)
        self.last = out
        return out

    def record_alerts(self, counts: dict) -> None:
        """Set ``kaiwo_alerts`` from :meth:`kaiwo_core.monitoring.alerts.AlertManager.counts`."""
        for (state, severity), n in counts.items():
            self.alerts.labels(state=state, severity=severity).set(n)


@register
class MetricsPlugin(Plugin):
    """Records cycle latency, pods scheduled/pending and queue allocation (Prometheus metrics)."""

    name = "metrics"
    config_schema = {
        "queue_key": (str, "queue_of_pod", "ctx.extra key of the per-pod queue index array"),
        "store_slots": (int, 0, "also keep the numbers as series in a MetricsStore of this many "
                                "slots (0 = no store)"),
    }

    def __init__(self, metrics: KaiwoMetrics | None = None, store: MetricsStore | None = None, **config):
        self.metrics = metrics or KaiwoMetrics()
        self.store = store
        self._t0 = 0.0
        self._sids = None
        super().__init__(**config)
        if self.store is None and self.config["store_slots"]:
            from .monitoring.metrics_store import MetricsStore, StoreError

            try:
                self.store = MetricsStore(self.config["store_slots"], 256)
            except StoreError as e:  # a configuration error, named as the plugin's
                raise PluginError(f"plugin {self.name!r}: config 'store_slots' = "
                                  f"{self.config['store_slots']!r}: {e}") from None

    def on_cycle_start(self, ctx) -> None:
        self._t0 = time.perf_counter()
        if self.store is not None:
            ctx.extra.setdefault("metrics_store", self.store)

    def on_cycle_end(self, ctx, result) -> None:
        """Record the placement ``result`` of the cycle. Queue gauges need ``ctx.extra`` to hold
        ``queue_of_pod`` (int [P]) and ``queue_names``; ``fair_share`` (resource -> [Q]) is optional."""
        seconds = time.perf_counter() - self._t0
        extra = ctx.extra
        batch = result.batch
        usage = None
        q = extra.get(self.config["queue_key"])
        if q is not None:
            # GPU milli-units each pod holds (what its queue is charged: kaiwo_core.scheduling.accounting),
            # CPU and memory asked.
            held = held_vectors(result, ctx.cluster)
            usage = {"gpu": np.where(result.placed, held[:, 0], 0), "cpu": batch.cpu, "memory": batch.mem}
        out = self.metrics.record_cycle(seconds, result.placed, 0, q, extra.get("queue_names"), usage,
                                        extra.get("fair_share"))
        alerts = extra.get("alerts")
        if alerts is not None:
            self.metrics.record_alerts(alerts.counts())
        if self.store is not None:
            self._to_store(out, extra.get("queue_names"))

    def _to_store(self, out: dict, queue_names) -> None:
        now = time.time()
        if self.store.latest is not None and now <= self.store.latest:
            now = self.store.latest + 1e-3
        names = ["kaiwo_pods_pending", "kaiwo_pods_scheduled", "kaiwo_cycle_duration_seconds"]
        vals = [out["pending"], out["scheduled"], out["seconds"]]
        sids = [self.store.intern(n, {}) for n in names]
        for res, tot in out["allocated"].items():
            for qn, v in zip(queue_names or [], tot.tolist()):
                sids.append(self.store.intern("kaiwo_queue_allocated", {"queue": qn, "resource": res}))
                vals.append(v)
        self.store.ingest(np.array(sids, np.int64), np.array(vals, np.float64), now)
