"""``kaiwo controller``: Kaiwo as a Kubernetes scheduler.

Kubernetes objects flow in through watches and decisions flow out as API writes; the scheduling
itself is :func:`kaiwo_core.schedule`, the same cycle ``kaiwo schedule`` runs on a dump::

    informers (cache.py) --list/watch--> ClusterCache --snapshot--> kaiwo_core.schedule
         ^                                   ^   |                         |
         |                           assume  |   | expire (TTL check)      v
    kube-apiserver <--- binder.py (ConfigMap, annotation, binding, Event; evictions)
                   <--- status.py (KaiwoQueue/KaiwoJob status, pod conditions, Events)
                   <--- leader.py (Lease: one replica schedules)
    server.py: /metrics, /healthz, /readyz          errors.py: retry vs report

Modules
-------
api       the official client's calls, raw JSON, explicit patch types, the binding-response fix
cache     informers (list/watch, resourceVersion, 410 -> relist) and the incremental snapshot
loop      :class:`Controller`: the cycle, job pod creation, assumptions, metrics
binder    bindings with device assignment, per-pod GPU ConfigMaps, evictions
status    queue and job status, unschedulable/rejected pods made visible
events    Kubernetes Events, throttled
leader    Lease-based leader election
server    HTTP probes and metrics
errors    temporary vs permanent error policy, retries with backoff
metrics   Prometheus metrics (reuses :class:`kaiwo_core.self_metrics.KaiwoMetrics`)
migrate   migrations: the rebalancing plan as Events, or carried out with holds (--rebalance)
"""
from .binder import Binder, BindTask, EvictTask, cu_mask_bits, device_env
from .cache import ChargeBook, ClusterCache, Informer
from .errors import ControllerError, Disposition, RetryPolicy, classify
from .leader import LeaderElector
from .loop import Controller, ControllerConfig, CycleReport, make_api_client
from .metrics import ControllerMetrics

__all__ = [
    "BindTask", "Binder", "ChargeBook", "ClusterCache", "Controller", "ControllerConfig",
    "ControllerError", "ControllerMetrics", "CycleReport", "Disposition", "EvictTask", "Informer",
    "LeaderElector", "RetryPolicy", "classify", "cu_mask_bits", "device_env", "make_api_client",
]
