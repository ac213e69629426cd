"""Leader election on a ``coordination.k8s.io/v1`` Lease: one replica schedules at a time.

The algorithm is client-go's ``leaderelection`` with a Lease lock:

* **acquire/renew**: read the Lease; if it names another holder whose record we have seen change
  less than ``leaseDurationSeconds`` ago, wait; otherwise write ourselves as holder with a PUT that
  carries the ``resourceVersion`` we read -- the API server accepts only one of several
  simultaneous writers (the others get 409), which is what makes the election safe;
* **expiry is judged on our own clock**, from when we last *observed* the record change, never by
  comparing the holder's ``renewTime`` with our clock (the replicas' clocks may disagree);
* **stepping down**: a leader that could not renew within ``renew_deadline`` (shorter than the
  lease duration) stops acting as leader *before* anybody else may take over, so two replicas never
  schedule at the same time as long as clocks run at the same rate;
* **release**: on a clean shutdown the holder empties ``holderIdentity`` so a standby takes over at
  its next retry instead of waiting a lease duration.

The binder checks :meth:`LeaderElector.is_leader` before every write (fencing), and the loop runs
cycles only while it is true -- and only once its cache is known current as of the takeover
(:attr:`LeaderElector.acquired_version`; see :meth:`kaiwo.controller.loop.Controller.cycle`).
"""
from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Callable

from .errors import Disposition, classify, describe

log = logging.getLogger("kaiwo.controller.leader")


def _micro_time(ts: float | None = None) -> str:
    """A Lease ``MicroTime``: RFC 3339 with microseconds, UTC."""
    dt = datetime.datetime.fromtimestamp(time.time() if ts is None else ts, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector(threading.Thread):
    """Keeps trying to hold the Lease ``namespace/name``.

    Parameters
    ----------
    api : kaiwo.controller.api.KubeApi
    namespace, name : str
        The Lease.
    identity : str
        This replica (pod name, or host and pid).
    lease_duration : float
        Seconds a holder's claim lasts without renewal.
    renew_deadline : float
        Seconds a leader keeps trying to renew before it steps down (< lease_duration).
    retry_period : float
        Seconds between attempts.
    stop : threading.Event
        Ends the thread; the Lease is released on the way out.
    on_change : callable, optional
        ``on_change(is_leader)`` whenever leadership starts or ends.
    clock : callable
        Monotonic clock.
    """

    def __init__(self, api, namespace: str, name: str, identity: str, lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0,
                 stop: threading.Event | None = None, on_change: Callable[[bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(name="leader-election", daemon=True)
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(f"leader election needs 0 < retry period ({retry_period}) < renew deadline "
                             f"({renew_deadline}) < lease duration ({lease_duration})")
        self.api = api
        self.namespace = namespace
        self.lease_name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.stop_event = stop or threading.Event()
        self.on_change = on_change or (lambda leader: None)
        self.clock = clock
        self._leader = False
        self._lock = threading.Lock()
        self._observed: tuple | None = None   # (holder, renewTime, resourceVersion) last seen
        self._observed_at = 0.0
        self._last_renew = 0.0
        self.transitions = 0
        #: resourceVersion of the Lease write that made us leader: every write in the cluster
        #: before the takeover has a lower one (etcd's single revision counter), so a cache that
        #: reflects this version knows everything the previous leader did.
        self.acquired_version = ""
        self.last_error: str | None = None
        self.release_on_exit = True

    # ----------------------------------------------------------------------------- state
    def is_leader(self) -> bool:
        """True while we hold the lease and renewed it within the renew deadline."""
        with self._lock:
            if self._leader and self.clock() - self._last_renew > self.renew_deadline:
                self._set(False, "renew deadline passed")
            return self._leader

    def _set(self, leader: bool, why: str) -> None:
        """Change leadership (caller holds ``_lock``)."""
        if leader == self._leader:
            return
        self._leader = leader
        self.transitions += 1
        log.info("%s %s the lease %s/%s (%s)", self.identity, "acquired" if leader else "lost",
                 self.namespace, self.lease_name, why)
        try:
            self.on_change(leader)
        except Exception:  # noqa: BLE001 - a callback must not break the election
            log.exception("leadership callback failed")

    # ------------------------------------------------------------------------------ loop
    def run(self) -> None:
        while not self.stop_event.is_set():
            self.try_acquire_or_renew()
            self.is_leader()  # steps down if the renew deadline passed
            if self.stop_event.wait(self.retry_period):
                break
        if self.release_on_exit:
            self.release()
        else:
            with self._lock:
                self._set(False, "stopped")

    def try_acquire_or_renew(self) -> bool:
        """One attempt; returns True if we hold the lease afterwards."""
        now = self.clock()
        try:
            try:
                lease = self.api.get_lease(self.namespace, self.lease_name)
            except Exception as exc:  # noqa: BLE001 - classified
                if classify(exc) is not Disposition.GONE:
                    raise
                return self._create(now)
            meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            record = (holder, spec.get("renewTime"), meta.get("resourceVersion"))
            if record != self._observed:
                self._observed, self._observed_at = record, now
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if holder and holder != self.identity and now < self._observed_at + duration:
                with self._lock:
                    self._set(False, f"held by {holder}")
                return False
            new_spec = {"holderIdentity": self.identity,
                        "leaseDurationSeconds": int(round(self.lease_duration)),
                        "acquireTime": spec.get("acquireTime") if holder == self.identity else _micro_time(),
                        "renewTime": _micro_time(),
                        "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (holder != self.identity)}
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.lease_name, "namespace": self.namespace,
                                 "resourceVersion": meta.get("resourceVersion")},
                    "spec": new_spec}
            updated = self.api.replace_lease(self.namespace, self.lease_name, body)
            self._renewed(now, updated, "renewed" if holder == self.identity else f"took over from {holder or 'nobody'}")
            return True
        except Exception as exc:  # noqa: BLE001 - classified; a conflict just means we lost the race
            self.last_error = describe(exc)
            if classify(exc) is Disposition.CONFLICT:
                log.debug("lease race lost: %s", self.last_error)
            else:
                log.info("lease %s/%s: %s", self.namespace, self.lease_name, self.last_error)
            return self.is_leader()

    def _create(self, now: float) -> bool:
        now_s = _micro_time()
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.lease_name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(round(self.lease_duration)),
                         "acquireTime": now_s, "renewTime": now_s, "leaseTransitions": 0}}
        created = self.api.create_lease(self.namespace, body)  # 409: someone else was faster
        self._renewed(now, created, "created the lease")
        return True

    def _renewed(self, now: float, lease: dict, why: str) -> None:
        meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
        self._observed = (spec.get("holderIdentity") or "", spec.get("renewTime"), meta.get("resourceVersion"))
        self._observed_at = now
        with self._lock:
            self._last_renew = now
            if not self._leader:
                self.acquired_version = str(meta.get("resourceVersion") or "")
            self._set(True, why)

    def release(self) -> None:
        """Give the lease up (clean shutdown): empty holder, so a standby need not wait."""
        with self._lock:
            was = self._leader
            self._set(False, "released")
        if not was:
            return
        try:
            lease = self.api.get_lease(self.namespace, self.lease_name)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(holderIdentity=None, leaseDurationSeconds=1, renewTime=_micro_time())
            meta = lease.get("metadata") or {}
            self.api.replace_lease(self.namespace, self.lease_name, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.lease_name, "namespace": self.namespace,
                             "resourceVersion": meta.get("resourceVersion")},
                "spec": spec})
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own anyway
            log.info("lease not released (%s); it expires in %.0f s", describe(exc), self.lease_duration)
