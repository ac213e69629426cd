"""The scheduling loop: cycles on the watch cache, decisions to the binder, status back.

One replica (the Lease holder) runs a cycle every ``period`` (default 1 s), and sooner -- after at
least ``min_interval`` -- when the cache reports a change that can alter a decision (a new pending
pod, a pod gone or finished, a node's capacity or labels, a queue, a job, a priority class, a failed
binding). A cycle:

0. decides nothing before the cache is confirmed current since this replica became leader: every
   watched scope listed after the takeover, or its watch past the takeover's Lease
   resourceVersion (an event or a bookmark); a new leader whose watches are behind relists first,
   so it never re-decides what the previous leader bound; then checks the GPU ConfigMaps of pods
   the watch showed bound other than we decided;
1. checks expired assumptions against the API (:mod:`kaiwo.controller.cache`);
2. takes the cache's snapshot (incrementally maintained) and creates the pods KaiwoJobs still lack;
3. runs :func:`kaiwo_core.schedule` -- the same cycle as ``kaiwo schedule``;
4. *assumes* every binding in the cache and hands it to the :class:`~kaiwo.controller.binder.Binder`
   (asynchronous, bounded concurrency: the next cycle does not wait for the API), preemptions to
   its evictor;
5. makes unschedulable and rejected pods visible (condition + Event), writes KaiwoQueue and KaiwoJob
   status, and records metrics.

Standby replicas run the informers too (a warm cache makes fail-over take one lease period plus one
relist) but no cycles. Every replica relists everything every ``resync_period`` (default 5 min) and
repairs what its watches missed (``kaiwo_cache_repairs_total``); the leader then also checks every
bound pod's GPU ConfigMap against its ``kaiwo.ai/gpu-assignment``.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from kaiwo_core.scheduling.config import ControllerSettings, SchedulerConfiguration
from kaiwo_core.scheduling.cycle import schedule
from kaiwo_core.scheduling.gangs import LABEL_JOB
from kaiwo_core.scheduling.queues import RESOURCES

from .api import WATCHED_KINDS, KubeApi, quantities_as_strings
from .binder import MANAGED_BY, Binder, BindTask, ConfigMapTask, EvictTask, config_map_name, device_env
from .cache import ClusterCache, Informer, object_key
from .errors import (ControllerError, Disposition, RetryPolicy, StoppedError, call_with_retry, classify,
                     describe)
from .events import NORMAL, WARNING, EventRecorder, custom_ref, pod_ref
from .leader import LeaderElector
from .metrics import ControllerMetrics
from .reload import ConfigWatcher
from .server import ProbeServer
from .status import StatusWriter

log = logging.getLogger("kaiwo.controller")
_FILE = ControllerSettings()  # the file's defaults are the controller's (one place for both)


def default_identity() -> str:
    """The pod name (``POD_NAME`` from the downward API) or ``host-pid``."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def default_namespace() -> str:
    """The namespace the controller runs in (service account mount), else ``kaiwo-system``."""
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path) as f:
            return f.read().strip() or "kaiwo-system"
    except OSError:
        return os.environ.get("POD_NAMESPACE") or "kaiwo-system"


def make_api_client(kubeconfig: str | None = None, in_cluster: bool | None = None,
                    context: str | None = None, pool_size: int = 32):
    """An ``ApiClient`` from a kubeconfig, or from the pod's service account.

    Parameters
    ----------
    kubeconfig : str, optional
        Path; default ``$KUBECONFIG`` or ``~/.kube/config``.
    in_cluster : bool, optional
        Force the service account (True) or a kubeconfig (False); None picks in-cluster when
        ``KUBERNETES_SERVICE_HOST`` is set and no kubeconfig was given.
    context : str, optional
        Kubeconfig context.
    pool_size : int
        HTTP connections kept open: binder workers, status writers and one per watch.

    Raises
    ------
    kubernetes.config.ConfigException
        The configuration cannot be loaded (message says why).
    """
    from kubernetes import client, config

    cfg = client.Configuration()
    if in_cluster or (in_cluster is None and kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST")):
        config.load_incluster_config(client_configuration=cfg)
    else:
        path = os.path.expanduser(kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                                  or config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
        if not os.path.isfile(path):  # the client would say only "No configuration found"
            raise config.ConfigException(f"kubeconfig {path}: no such file"
                                         + ("" if kubeconfig else " (from $KUBECONFIG or the default "
                                            "location; give one with --kubeconfig, or --in-cluster)"))
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                persist_config=False)
    cfg.connection_pool_maxsize = pool_size
    # No urllib3 retries: every caller retries with its own backoff (errors.RetryPolicy, the
    # informers' watch backoff), and urllib3's immediate ones only log a warning each while the
    # API server is down (three per request, a flood in the log).
    cfg.retries = 0
    return client.ApiClient(cfg)


@dataclass
class ControllerConfig:
    """Settings of one controller replica (the CLI flags of ``kaiwo controller``)."""

    scheduler_name: str = "kaiwo"
    period: float = _FILE.period        #: seconds between cycles at the latest
    min_interval: float = 0.05          #: seconds between change-triggered cycles (batches bursts)
    #: pending pods and KaiwoJobs of these namespaces only (() = all); pods of every namespace are
    #: watched and charged regardless, since they use the same nodes
    namespaces: tuple = ()
    #: strategy, plugins, ordering, preemption, reservation (the KaiwoSchedulerConfiguration)
    scheduling: SchedulerConfiguration = field(default_factory=SchedulerConfiguration)
    #: a KaiwoSchedulerConfiguration file: loaded at start, reloaded when it changes; its
    #: ``controller`` section sets period, resync_period, assume_ttl and pod_event_interval
    config_file: str | None = None
    #: dotted file keys -> values set on every version of the file (the flags given explicitly)
    config_overrides: dict = field(default_factory=dict)
    concurrency: int = 16               #: bindings in flight
    request_timeout: float = 30.0       #: seconds per API request
    #: seconds one watch stream stays open (``timeoutSeconds``); resuming one is cheap
    watch_timeout: int = 30
    #: seconds a watch may stay silent before it is taken for dead (None: watch_timeout + 10)
    watch_read_timeout: float | None = None
    #: seconds between relists of everything, which repair what the watches missed and check
    #: every bound pod's GPU ConfigMap (0: never; a takeover relists regardless)
    resync_period: float = _FILE.resync_period
    max_config_map_checks: int = 200    #: ConfigMap checks started per cycle (watch-event ones)
    assume_ttl: float = _FILE.assume_ttl  #: seconds a binding may stay unconfirmed before a check
    leader_election: bool = True
    lease_name: str = "kaiwo-controller"
    lease_namespace: str = field(default_factory=default_namespace)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = field(default_factory=default_identity)
    metrics_port: int | None = 8080     #: None: no HTTP server; 0: any free port
    metrics_host: str = "0.0.0.0"
    pod_event_interval: float = _FILE.event_interval  #: seconds between FailedScheduling events of a pod
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    now: Callable[[], float] = time.time  #: wall clock for the pods' age in the cycle
    max_expiry_checks: int = 100        #: expired assumptions checked per cycle
    watch_backoff_max: float = 10.0     #: longest wait before an informer retries a failed list/watch

    def __post_init__(self):
        if self.period <= 0 or self.min_interval < 0:
            raise ValueError(f"period ({self.period}) must be > 0 and min_interval ({self.min_interval}) >= 0")
        if not isinstance(self.scheduling, SchedulerConfiguration):
            raise ValueError(f"scheduling: expected a SchedulerConfiguration, got {self.scheduling!r}")


@dataclass
class CycleReport:
    """What one cycle did."""

    seconds: float = 0.0
    bindings: int = 0
    pending: int = 0
    rejected: int = 0
    preemptions: int = 0
    created_pods: int = 0
    expired: int = 0
    skipped: str = ""                    #: why no cycle ran ("not leader", "caches not synced")
    doc: dict = field(default_factory=dict)  #: the Decisions document (``kaiwo schedule`` JSON)


class Controller:
    """One replica of ``kaiwo controller``.

    Parameters
    ----------
    api_client : kubernetes.client.ApiClient
        See :func:`make_api_client`.
    config : ControllerConfig
    metrics : ControllerMetrics, optional
    """

    def __init__(self, api_client, config: ControllerConfig | None = None,
                 metrics: ControllerMetrics | None = None):
        """Raises OSError, DumpError or ConfigError when ``config.config_file`` cannot be used."""
        self.config = config or ControllerConfig()
        self.watcher: ConfigWatcher | None = None
        if self.config.config_file is not None:
            self.watcher = ConfigWatcher(self.config.config_file, self.config.config_overrides)
            self.config = _with_file(self.config, self.watcher.load())
        c = self.config
        self._schedule_kwargs = c.scheduling.schedule_kwargs()
        self.metrics = metrics or ControllerMetrics()
        # The replica's identity in every request (API server audit logs tell the replicas apart).
        api_client.user_agent = f"kaiwo-controller/{c.identity}"
        self.api = KubeApi(api_client, c.request_timeout)
        self.stop_event = threading.Event()
        self.cache = ClusterCache(c.scheduler_name, c.assume_ttl, namespaces=c.namespaces)
        self.events = EventRecorder(self.api, "kaiwo", c.identity, self.stop_event)
        self.status = StatusWriter(self.api, self.events, self.stop_event, c.pod_event_interval)
        self.leader: LeaderElector | None = None
        # The lease outlives the other threads on the way out (stop(): the binder is drained
        # before the lease is released, so no write of ours lands after a standby took over).
        self._lease_stop = threading.Event()
        retry = c.retry
        if c.leader_election:
            self.leader = LeaderElector(self.api, c.lease_namespace, c.lease_name, c.identity,
                                        c.lease_duration, c.renew_deadline, c.retry_period,
                                        self._lease_stop, on_change=self._leadership_changed)
            # A leader that cannot renew steps down after renew_deadline; a standby may take
            # over lease_duration after the last renewal. Retries must end within that gap, so a
            # binding decided as leader is not still being retried when another leader decides.
            cap = 0.9 * (c.lease_duration - c.renew_deadline)
            if retry.deadline > cap:
                retry = dataclasses.replace(retry, deadline=cap)
        self.binder = Binder(self.api, self.cache, self.events, retry, c.concurrency, self.is_leader,
                             self.stop_event, on_outcome=self.metrics.outcome)
        self._creator = cf.ThreadPoolExecutor(2, thread_name_prefix="kaiwo-create")
        self.informers: list[Informer] = []
        for kind, namespaced in WATCHED_KINDS.items():
            # Pods are watched in every namespace whatever --namespace says: a pod of another
            # namespace on our nodes holds GPUs, CPU and memory all the same.
            scopes = list(c.namespaces) if namespaced and kind != "Pod" and c.namespaces else [None]
            for ns in scopes:
                policy = RetryPolicy(attempts=1_000_000, initial=min(0.2, c.watch_backoff_max),
                                     maximum=c.watch_backoff_max)
                self.informers.append(Informer(self.api, self.cache, kind, ns, self.stop_event,
                                               c.watch_timeout, policy, on_restart=self._watch_restarted,
                                               read_timeout=c.watch_read_timeout))
        self.server: ProbeServer | None = None
        self._loop_thread: threading.Thread | None = None
        self._heartbeat = time.monotonic()
        self._started = False
        self._seen_rejected: set = set()
        self._seen_warnings: set = set()
        # The leadership term: (the takeover's Lease resourceVersion, cache clock at takeover).
        # Without leader election the term starts now and the informers' first lists confirm it.
        self._term: tuple[str, float] = ("", self.cache.clock())
        self._stale_reported = ""
        self._last_resync = time.monotonic()
        self._invalid_logged: dict = {}      # node -> message, as logged (every replica)
        self._invalid_announced: dict = {}   # node -> message, as told in an Event (leader)
        self.cycles = 0
        self.iterations = 0                  #: loop turns, cycles or not (leader or not)
        self.last_report: CycleReport | None = None

    # -------------------------------------------------------------------------- lifecycle
    def is_leader(self) -> bool:
        return True if self.leader is None else self.leader.is_leader()

    def start(self) -> None:
        """Start informers, leader election and the HTTP server (not the loop; see :meth:`run`)."""
        if self._started:
            return
        self._started = True
        if self.config.metrics_port is not None:
            self.server = ProbeServer(self.metrics.render, self.healthz, self.readyz,
                                      self.config.metrics_port, self.config.metrics_host).start()
        for inf in self.informers:
            inf.start()
        if self.leader is not None:
            self.leader.start()
        else:
            self.metrics.leader.set(1)

    def synced(self) -> bool:
        return all(inf.synced.is_set() for inf in self.informers)

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every informer has listed its kind."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for inf in self.informers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not inf.synced.wait(left):
                return False
        return True

    def run(self) -> None:
        """Cycle until :meth:`stop` (call :meth:`start` first, or let this do it)."""
        self.start()
        last = 0.0
        while not self.stop_event.is_set():
            c = self.config  # a reloaded file changes it between turns
            self.cache.changed.wait(timeout=c.period)
            if self.stop_event.is_set():
                break
            since = time.monotonic() - last
            if since < c.min_interval:  # let a burst of changes land in one cycle
                self.stop_event.wait(c.min_interval - since)
            self.cache.changed.clear()
            self._heartbeat = time.monotonic()
            self.iterations += 1
            self.reload_config()
            self._observe_cache()
            if c.resync_period > 0 and self.synced() and time.monotonic() - self._last_resync >= c.resync_period:
                try:
                    self.resync("periodic")
                except Exception:  # noqa: BLE001 - a failed resync is retried next period
                    log.exception("resync failed")
                self._heartbeat = time.monotonic()
            if not self.is_leader() or not self.synced():
                continue
            try:
                self.cycle()
            except Exception:  # noqa: BLE001 - one bad cycle must not end the controller
                log.exception("scheduling cycle failed")
            last = time.monotonic()
            self._heartbeat = last

    def start_background(self) -> "Controller":
        """:meth:`run` in a thread (tests, embedding)."""
        self.start()
        self._loop_thread = threading.Thread(target=self.run, name="kaiwo-loop", daemon=True)
        self._loop_thread.start()
        return self

    def run_once(self, timeout: float = 60.0) -> CycleReport:
        """Sync, take the lease (if leader election is on), run one cycle, wait for its writes.

        Raises
        ------
        TimeoutError
            The caches did not sync, or the lease was not acquired, within ``timeout``.
        """
        self.start()
        deadline = time.monotonic() + timeout
        if not self.wait_synced(timeout):
            missing = [f"{i.kind}{'/' + i.namespace if i.namespace else ''}: {i.last_error or 'listing'}"
                       for i in self.informers if not i.synced.is_set()]
            raise TimeoutError(f"caches not synced within {timeout:.0f} s ({'; '.join(missing)})")
        while not self.is_leader():  # the election thread (started above) does the work
            if time.monotonic() > deadline:
                holder = self.leader.last_error or "another replica holds it"
                raise TimeoutError(f"lease {self.config.lease_namespace}/{self.config.lease_name} not "
                                   f"acquired within {timeout:.0f} s ({holder})")
            self.stop_event.wait(0.05)
        report = self.cycle()
        self.binder.drain(max(1.0, deadline - time.monotonic()))
        self._creator.shutdown(wait=True)
        self.events.flush(10.0)
        self.status.flush(10.0)
        return report

    def stop(self, graceful: bool = True) -> None:
        """Stop everything. ``graceful=False`` imitates a crash: no draining, the lease is not
        released (tests of restarts)."""
        if not graceful and self.leader is not None:
            self.leader.release_on_exit = False  # a crashed process releases nothing
        self.stop_event.set()  # no new cycles; the binder's retries stop at their next wait
        self.api.stop_watches()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=10)  # a cycle under way submits its bindings first
        # Finish (or abandon) every write before the lease goes: once it is released a standby
        # schedules at once, and a binding of ours landing after that could double-book devices.
        if graceful:
            self.binder.drain(10.0)
        self.binder.shutdown()
        self._lease_stop.set()
        if self.leader is not None and self.leader.is_alive():
            self.leader.join(timeout=10)
        self._creator.shutdown(wait=graceful, cancel_futures=True)
        self.events.shutdown()
        self.status.shutdown()
        for inf in self.informers:
            if inf.is_alive():
                inf.join(timeout=5)
        if self.server is not None:
            self.server.stop()

    # --------------------------------------------------------------------------- probes
    def healthz(self) -> tuple[bool, str]:
        dead = [i.name for i in self.informers if self._started and not i.is_alive() and not self.stop_event.is_set()]
        if dead:
            return False, f"informer threads died: {', '.join(dead)}"
        if self._loop_thread is not None and not self._loop_thread.is_alive() and not self.stop_event.is_set():
            return False, "scheduling loop died"
        stale = time.monotonic() - self._heartbeat
        limit = max(30.0, 10 * self.config.period)
        if self._loop_thread is not None and stale > limit:
            return False, f"scheduling loop stuck for {stale:.0f} s"
        return True, f"ok (leader: {self.is_leader()}, cycles: {self.cycles})"

    def readyz(self) -> tuple[bool, str]:
        missing = [f"{i.kind}{'/' + i.namespace if i.namespace else ''}" for i in self.informers
                   if not i.synced.is_set()]
        if missing:
            return False, f"caches not synced: {', '.join(missing)}"
        return True, "ok"

    # ---------------------------------------------------------------------------- cycle
    # ------------------------------------------------------------------ cache currency
    def stale_scopes(self) -> list[str]:
        """The watched scopes the cache is not known to reflect as of this leadership's start:
        neither a list requested after the takeover nor a watch event or bookmark at or past the
        takeover's Lease resourceVersion. Empty: the cache knows every write made before this
        replica became leader -- in particular every binding of the previous leader."""
        version, since = self._term
        return self.cache.stale_scopes(version, since)

    def resync(self, reason: str) -> int:
        """Relist every watched scope into the cache; as leader, also check every bound pod's GPU
        ConfigMap against its annotation. Returns how many cached objects the lists corrected
        (counted in ``kaiwo_cache_repairs_total``)."""
        repaired = 0
        for inf in self.informers:
            if self.stop_event.is_set():
                break
            started = self.cache.clock()
            try:
                items, rv = self.api.list(inf.kind, inf.namespace)
            except Exception as exc:  # noqa: BLE001 - classified
                if classify(exc) is not Disposition.GONE:
                    log.warning("%s resync: cannot list %s: %s", reason, inf.kind, describe(exc))
                    continue
                items, rv = [], ""  # the CRD is not installed: no objects (as the informer has it)
            n = self.cache.replace(inf.kind, items, inf.namespace, rv, started)
            if n:
                self.metrics.cache_repairs.labels(resource=inf.kind).inc(n)
                log.warning("%s resync: %d %s object(s) in the cache differed from the API (the watch was "
                            "behind or had lost them); repaired", reason, n, inf.kind)
            repaired += n
        self._last_resync = time.monotonic()
        if self.is_leader() and not self.stop_event.is_set():
            self._reconcile_config_maps()
        return repaired

    def _cache_current(self) -> str:
        """'' if the cache is current for this leadership term (after relisting if it was not),
        else why not."""
        if not self.stale_scopes():
            return ""
        self.resync("takeover")
        stale = self.stale_scopes()
        return f"cache not confirmed current since this replica became leader ({', '.join(stale)})" if stale else ""

    def _reconcile_config_maps(self) -> None:
        """Every bound pod's GPU ConfigMap against its annotation: one list of Kaiwo's ConfigMaps,
        a check for each that differs (or is missing, or should not exist)."""
        scopes = list(self.config.namespaces) or [None]
        self.cache.take_config_map_checks(1 << 30)  # the pods noted so far are all checked below
        try:
            current = {}
            for ns in scopes:
                for cm in self.api.list_config_maps(ns, f"{MANAGED_BY}=kaiwo"):
                    meta = cm.get("metadata") or {}
                    current[(meta.get("namespace"), meta.get("name"))] = cm
        except Exception as exc:  # noqa: BLE001 - retried at the next resync
            log.warning("ConfigMaps not checked: cannot list them: %s", describe(exc))
            return
        for pod, data in self.cache.config_maps_due():
            meta = pod.get("metadata") or {}
            ns = meta.get("namespace") or "default"
            cm = current.get((ns, config_map_name(meta.get("name") or "")))
            if (cm is None and data is None) or (cm is not None and cm.get("data") == data):
                continue
            self.binder.sync_config_map(ConfigMapTask(ns, meta.get("name"), meta.get("uid", ""), data))

    def _check_config_maps(self) -> None:
        """ConfigMaps of pods the watch showed bound other than we decided."""
        for key in self.cache.take_config_map_checks(self.config.max_config_map_checks):
            pod = self.cache.get("Pod", key)
            if pod is None:
                continue
            try:
                data = self.cache.config_map_data(pod)
            except LookupError:
                continue  # its node is unknown here: the resync looks again
            meta = pod.get("metadata") or {}
            self.binder.sync_config_map(ConfigMapTask(meta.get("namespace") or "default", meta.get("name"),
                                                      meta.get("uid", ""), data))

    # ---------------------------------------------------------------------------- cycle
    def cycle(self) -> CycleReport:
        """One scheduling cycle (leader only; :meth:`run` checks). Nothing is decided before the
        cache is confirmed current since this replica became leader (:meth:`stale_scopes`):
        otherwise it would re-decide pods the previous leader bound while our watch was behind."""
        t0 = time.perf_counter()
        report = CycleReport()
        why = self._cache_current()
        if why:
            if why != self._stale_reported:
                log.warning("no scheduling: %s", why)
            self._stale_reported = why
            report.skipped = why
            self.last_report = report
            return report
        self._stale_reported = ""
        self._check_config_maps()
        report.expired = self._check_expired()
        cs = self.cache.snapshot()
        report.created_pods = self._create_job_pods(cs.missing_job_pods, cs.jobs)
        snap = cs.snapshot
        decisions = schedule(snap, now=self.config.now(), **self._schedule_kwargs)
        doc = decisions.to_dict()
        report.doc = doc
        cluster = snap.cluster
        pending_reqs = {r.name: r for r in snap.pending}

        tasks = []
        for b in doc["bindings"]:
            key, pod = b["pod"], cs.pods.get(b["pod"])
            req = pending_reqs.get(key)
            if pod is None or req is None or self.binder.busy(key):
                continue
            meta = pod.get("metadata") or {}
            node = cluster.index(b["node"])
            try:
                env = device_env(cluster, node, req.kind, b["devices"])
            except ValueError as e:  # a kernel/cluster mismatch: report, never bind blindly
                log.error("%s: %s", key, e)
                continue
            tasks.append(BindTask(meta.get("namespace") or "default", meta.get("name"), meta.get("uid", ""),
                                  b["node"], b["devices"], env, _devices_text(b["devices"])))
            self.cache.assume(key, meta.get("uid", ""), b["node"], b["devices"])
        self.binder.submit(tasks)
        report.bindings = len(tasks)

        evictions = []
        for p in doc.get("preemptions") or []:
            pod = cs.pods.get(p.get("pod"))
            if pod is None:
                continue
            meta = pod.get("metadata") or {}
            evictions.append(EvictTask(meta.get("namespace") or "default", meta.get("name"), meta.get("uid", ""),
                                       p.get("reason", ""), p.get("preemptor", ""), p.get("node", ""),
                                       p.get("rule", "")))
        self.binder.evict(evictions)
        report.preemptions = len(evictions)

        plan = decisions.preemption
        self._visibility(cs, doc, {n["pod"]: n["node"] for n in plan.nominations()} if plan is not None else {})
        self._log_warnings(doc["warnings"], cs)
        self.status.queues(cs.queues, doc)
        self.status.jobs(cs.jobs, cs.pods, doc)
        report.pending = len(doc["pending"])
        report.rejected = len(doc["rejected"])
        report.seconds = time.perf_counter() - t0
        self._record(decisions, doc, report)
        self.cycles += 1
        self.last_report = report
        return report

    def _visibility(self, cs, doc: dict, nominated: dict) -> None:
        """Pending and rejected Kaiwo pods get a condition and an Event (throttled); preemptors
        also their nominated node (``nominated``: pod -> node)."""
        sched = self.config.scheduler_name
        ignored = {name for name, _ in cs.snapshot.ignored}
        live = set()
        for p in doc["pending"]:
            if p["pod"] in ignored:
                continue
            pod = cs.pods.get(p["pod"])
            if pod is not None:
                live.add((pod.get("metadata") or {}).get("uid"))
                self.status.unschedulable(pod, p["reason"], nominated=nominated.get(p["pod"], ""))
        scoped = self.config.namespaces
        for r in doc["rejected"]:
            pod = cs.pods.get(r.get("pod"))
            if pod is None or (pod.get("spec") or {}).get("nodeName"):
                continue
            if (pod.get("spec") or {}).get("schedulerName", "default-scheduler") != sched:
                continue
            if scoped and ((pod.get("metadata") or {}).get("namespace") or "default") not in scoped:
                continue
            live.add((pod.get("metadata") or {}).get("uid"))
            self.status.unschedulable(pod, f"rejected: {r['field']}: {r['error']}", rejected=True)
        self.status.forget_pods(live)

    def _log_warnings(self, warnings: list[str], cs=None) -> None:
        """The snapshot's and the cycle's warnings (a running pod Kaiwo could not fully read,
        overcommitted nodes, unknown annotations or fields...) are logged when they first appear,
        not every cycle; one that names a pod, KaiwoQueue or KaiwoJob of the cache also becomes a
        Warning Event on it (``KaiwoWarning``), where ``kubectl describe`` shows it."""
        current = set(warnings)
        for w in sorted(current - self._seen_warnings):
            log.warning("%s", w)
            ref = _warning_ref(cs, w) if cs is not None else None
            if ref is not None:
                self.events.emit(ref, WARNING, "KaiwoWarning", w, throttle=600.0)
        self._seen_warnings = current

    def _create_job_pods(self, pods: list[dict], jobs: dict) -> int:
        """Create the pods KaiwoJobs lack (owned by the job, reading their GPU ConfigMap)."""
        for pod in pods:
            meta = pod["metadata"]
            ns, name = meta["namespace"], meta["name"]
            job = jobs.get(f"{ns}/{meta['labels'][LABEL_JOB]}")
            if job is None:
                continue
            jmeta = job.get("metadata") or {}
            body = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {k: v for k, v in meta.items() if k != "creationTimestamp"},
                    "spec": quantities_as_strings(pod["spec"])}
            if jmeta.get("uid"):
                body["metadata"]["ownerReferences"] = [{
                    "apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob", "name": jmeta.get("name"),
                    "uid": jmeta["uid"], "controller": True, "blockOwnerDeletion": True}]
            for c in body["spec"].get("containers") or []:
                refs = c.setdefault("envFrom", [])
                refs.append({"configMapRef": {"name": config_map_name(name), "optional": True}})
            key = object_key("Pod", pod)
            self.cache.expect_created(key)
            self._creator.submit(self._create_pod, key, ns, body, job)
        return len(pods)

    def _create_pod(self, key: str, ns: str, body: dict, job: dict) -> None:
        try:
            call_with_retry(lambda: self.api.create_pod(ns, body), f"create pod {key}", self.config.retry,
                            self.stop_event)
            self.events.emit(custom_ref("KaiwoJob", job), NORMAL, "SuccessfulCreate", f"Created pod {key}")
        except ControllerError as e:
            if e.disposition is Disposition.CONFLICT:
                return  # it exists already: what we wanted
            self.cache.creation_failed(key)
            log.warning("%s", e)
            self.events.emit(custom_ref("KaiwoJob", job), WARNING, "FailedCreate", f"Pod {key}: {e}",
                             throttle=60.0)
        except StoppedError:
            self.cache.creation_failed(key)

    def _check_expired(self) -> int:
        """Settle assumptions the watch has not confirmed within the TTL by asking the API."""
        returned = 0
        for key in self.cache.expired_assumptions()[: self.config.max_expiry_checks]:
            ns, name = key.split("/", 1)
            try:
                pod = self.api.get_pod(ns, name)
            except Exception as exc:  # noqa: BLE001 - classified
                if classify(exc) is not Disposition.GONE:
                    self.cache.extend_assumption(key)  # cannot tell now: keep the capacity booked
                    continue
                pod = None
            if self.cache.resolve_assumption(key, pod):
                returned += 1
                self.metrics.expired.inc()
        return returned

    # -------------------------------------------------------------------------- metrics
    def _record(self, decisions, doc: dict, report: CycleReport) -> None:
        m = self.metrics
        p = decisions.placement
        placed = p.placed if p is not None else np.zeros(0, dtype=bool)
        new_rejected = {r["pod"] for r in doc["rejected"]} - self._seen_rejected
        self._seen_rejected = {r["pod"] for r in doc["rejected"]}
        m.core.record_cycle(report.seconds, placed, len(new_rejected))
        alloc = decisions.queue_allocated()
        for q, spec in enumerate(decisions.tree.specs):
            for r, res in enumerate(RESOURCES):
                m.core.allocated.labels(queue=spec.name, resource=res).set(float(alloc[q, r]))
                m.core.fair_share.labels(queue=spec.name, resource=res).set(
                    float(decisions.shares.fair_share[q, r]))
        m.assumed.set(self.cache.assumed_count)
        for kind, key in (("Pod", "rejected"), ("KaiwoQueue", "invalidQueues"), ("KaiwoJob", "invalidJobs"),
                          ("KaiwoReservation", "invalidReservations")):
            m.invalid.labels(kind=kind).set(len(doc.get(key) or []))

    def _observe_cache(self) -> None:
        """Every loop turn, leader or standby: the cache's object counts (a standby's cache is
        as warm as the leader's), and nodes left out as invalid -- logged once per change, told
        in a Warning Event on the Node by the leader, counted in ``kaiwo_invalid_objects``."""
        m = self.metrics
        for kind, n in self.cache.counts().items():
            m.cache_objects.labels(resource=kind).set(n)
        invalid = {name: str(e) for name, e in self.cache.invalid_nodes().items()}
        m.invalid.labels(kind="Node").set(len(invalid))
        for name, text in sorted(invalid.items()):
            if self._invalid_logged.get(name) != text:
                log.warning("%s; the node is left out of scheduling", text)
        self._invalid_logged = invalid
        if not self.is_leader():
            # ConfigMaps are the leader's to fix; a takeover's resync checks every one of them.
            self.cache.take_config_map_checks(1 << 30)
            return
        for name, text in sorted(invalid.items()):
            if self._invalid_announced.get(name) != text:
                node = self.cache.get("Node", name) or {}
                ref = {"apiVersion": "v1", "kind": "Node", "name": name,
                       "uid": (node.get("metadata") or {}).get("uid")}
                self.events.emit(ref, WARNING, "InvalidNode", f"{text}; the node is left out of scheduling")
        self._invalid_announced = invalid

    def reload_config(self) -> bool | None:
        """Apply the configuration file if it changed (every replica: a standby may lead next).
        True: a new version applied; False: rejected, the previous one kept; None: no change."""
        found = self.watcher.poll() if self.watcher is not None else None
        if found is None:
            return None
        kwargs = None
        if found.errors is None:
            try:  # the plugins are started here: a third-party start() may fail
                kwargs = found.config.schedule_kwargs()
            except Exception as e:  # noqa: BLE001 - a bad plugin rejects the version, never the loop
                found.errors = [f"plugins: cannot start: {type(e).__name__}: {e}"]
        if found.errors is not None:
            self.metrics.config_reloads.labels(outcome="rejected").inc()
            self.metrics.config_ok.set(0)
            log.error("configuration %s rejected, the previous one is kept (%d errors):\n  %s",
                      self.watcher.path, len(found.errors), "\n  ".join(found.errors[:200]))
            # ... and on this replica's Pod (the Deployment gives its name), for kubectl describe
            if os.environ.get("POD_NAME") and os.environ.get("POD_NAMESPACE"):
                ref = {"apiVersion": "v1", "kind": "Pod", "namespace": os.environ["POD_NAMESPACE"],
                       "name": os.environ["POD_NAME"]}
                self.events.emit(ref, WARNING, "InvalidConfiguration",
                                 f"{self.watcher.path} rejected, the previous configuration is kept "
                                 f"({len(found.errors)} errors): {'; '.join(found.errors[:5])}")
            return False
        old = self._schedule_kwargs["pipeline"]
        self.config = _with_file(self.config, found.config)
        self._schedule_kwargs = kwargs
        old.stop()
        self.cache.assume_ttl = self.config.assume_ttl
        self.status.pod_interval = self.config.pod_event_interval
        self.metrics.config_reloads.labels(outcome="applied").inc()
        self.metrics.config_ok.set(1)
        log.info("configuration %s applied (strategy %s)", self.watcher.path, found.config.strategy)
        self.cache.changed.set()  # decide again with it
        return True

    def _watch_restarted(self, kind: str, reason: str) -> None:
        self.metrics.watch_restarts.labels(resource=kind, reason=reason).inc()

    def _leadership_changed(self, leader: bool) -> None:
        self.metrics.leader.set(1 if leader else 0)
        if leader:
            # A new term: no cycle before the cache is known current as of now (see cycle()).
            self._term = (self.leader.acquired_version if self.leader is not None else "", self.cache.clock())
            self.cache.changed.set()  # schedule right away
        else:
            for kind in ("Pod", "KaiwoQueue", "KaiwoJob", "KaiwoReservation"):
                self.metrics.invalid.labels(kind=kind).set(0)  # the leader's cycles count those


def _devices_text(devices: list[dict]) -> str:
    parts = []
    for d in devices:
        s = f"gpu {d['gpu']}" + (f" partition {d['partition']}" if d.get("partition") else "")
        if 0 < d.get("fraction", 1) < 1:
            s += f" x{d['fraction']:g}"
        if d.get("xcds") and d.get("fraction", 1) < 1:
            s += f" xcds {','.join(map(str, d['xcds']))}"
        parts.append(s)
    return "; ".join(parts)


def _with_file(config: ControllerConfig, scheduling: SchedulerConfiguration) -> ControllerConfig:
    """``config`` with a loaded file's configuration: its ``controller`` section sets the loop's
    settings (the flags given explicitly are already in it, as overrides)."""
    s = scheduling.controller
    return dataclasses.replace(config, scheduling=scheduling, period=s.period, resync_period=s.resync_period,
                               assume_ttl=s.assume_ttl, pod_event_interval=s.event_interval)


_WARNING_SUBJECT = re.compile(r"^(?:running )?(pod|KaiwoQueue|KaiwoJob) (\S+?)(?: \(and \d+ more\))?: ")


def _warning_ref(cs, warning: str) -> dict | None:
    """The object a warning names (``pod ns/name: ...``, ``KaiwoQueue q: ...``), as an Event's
    involvedObject, if the cache holds it."""
    m = _WARNING_SUBJECT.match(warning)
    if m is None:
        return None
    kind, name = m.groups()
    if kind == "pod":
        obj = cs.pods.get(name)
        return pod_ref(obj) if obj is not None else None
    obj = (cs.queues if kind == "KaiwoQueue" else cs.jobs).get(name)
    return custom_ref(kind, obj) if obj is not None else None
