"""Dynamic allocator: request changes from usage history (percentile + margin, bounds, hysteresis).

For every pod and resource (``cpu`` milli-cores, ``memory`` MiB, ``gpu`` milli-GPU *per device* --
the ``kaiwo.ai/gpu-fraction`` value x 1000 -- and ``gpu_memory`` MiB per device), the
recommendation is computed from the pod's usage samples over a window:

1. ``p`` = the policy's quantile of the samples (linear interpolation; memory defaults to the
   maximum, because a memory request below a peak means an OOM kill);
2. ``target = p * (1 + margin)``, rounded *up* to the policy's ``step`` and clamped to
   ``[minimum, maximum]``;
3. hysteresis: an increase is recommended only when ``target > current * (1 + up)``, a decrease
   only when ``target < current * (1 - down)`` (asymmetric: growing is cheap and safe, shrinking
   churns pods), never within ``cooldown`` seconds of the last change of that pod's resource, and
   never from fewer than ``min_samples`` samples.

The decision per (pod, resource) is a code (``KEEP``, ``INCREASE``, ``DECREASE``, ``NO_DATA``,
``COOLDOWN``, ``NEW`` for a pod without a request) computed for all pods at once by the Numba kernel
:func:`_recommend_kernel` (an in-place quickselect per pod: O(samples), no sort); reasons are text
only for what is shown. :class:`Rightsizer` keeps the adjustment history: every applied change with
its old and new value, time and reason, which also feeds the cooldown.

Usage time lines come from a :class:`~kaiwo_core.monitoring.metrics_store.MetricsStore` (per window slot,
the sum over the pod's devices or containers, see :func:`usage_from_store`) or from any
``[pods, samples]`` arrays (e.g. a day of history from Prometheus' ``query_range``).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
from numba import njit

from . import metrics_kernels as mk
from .efficiency import CONTAINER_FILTER, CPU_COUNTER, GFX, MEM_WORKING_SET, MIB, USED_VRAM, Allocations
from .metrics_store import MetricsStore

RESOURCES = ("cpu", "memory", "gpu", "gpu_memory")
UNITS = {"cpu": "m", "memory": "Mi", "gpu": "m-GPU/device", "gpu_memory": "Mi/device"}
KEEP, INCREASE, DECREASE, NO_DATA, COOLDOWN, NEW = range(6)
DECISIONS = {KEEP: "keep", INCREASE: "increase", DECREASE: "decrease", NO_DATA: "no-data",
             COOLDOWN: "cooldown", NEW: "new"}
CLAMP_MIN, CLAMP_MAX = 1, 2


@dataclass(frozen=True)
class ResourcePolicy:
    """How one resource is sized (units: see :data:`UNITS`)."""

    quantile: float = 0.95
    margin: float = 0.15
    minimum: float = 0.0
    maximum: float = math.inf
    step: float = 1.0
    up: float = 0.05
    down: float = 0.15
    min_samples: int = 10

    def __post_init__(self):
        bad = []
        if not 0.0 <= self.quantile <= 1.0:
            bad.append(("quantile", self.quantile, "must be in [0, 1]"))
        for name in ("margin", "up", "down", "minimum"):
            v = getattr(self, name)
            if not (v >= 0.0 and math.isfinite(v)):
                bad.append((name, v, "must be a finite number >= 0"))
        if not self.step > 0 or not math.isfinite(self.step):
            bad.append(("step", self.step, "must be a finite number > 0"))
        if not self.maximum >= self.minimum:
            bad.append(("maximum", self.maximum, f"must be >= minimum ({self.minimum})"))
        if self.down >= 1.0:
            bad.append(("down", self.down, "must be < 1 (a fraction of the current request)"))
        if int(self.min_samples) < 1:
            bad.append(("min_samples", self.min_samples, "must be >= 1"))
        if bad:
            name, v, why = bad[0]
            raise ValueError(f"ResourcePolicy: {name} = {v!r}: {why}")


#: Defaults: CPU and GPU compute at p95 + 15%; memory and GPU memory at the peak + 15-20%.
#: GPU fractions move in steps of 0.05 between 0.1 and 1.0 (the annotation's range).
DEFAULT_POLICIES = {
    "cpu": ResourcePolicy(quantile=0.95, margin=0.15, minimum=10, step=10),
    "memory": ResourcePolicy(quantile=1.0, margin=0.20, minimum=64, step=64),
    "gpu": ResourcePolicy(quantile=0.95, margin=0.15, minimum=100, maximum=1000, step=50),
    "gpu_memory": ResourcePolicy(quantile=1.0, margin=0.15, minimum=256, step=256),
}


# ------------------------------------------------------------------------------------ kernel

_SIG = ("void(float64[:, ::1], float64[::1], float64[::1], float64, float64, float64, float64, "
        "float64, float64, float64, float64, int64, float64, float64[::1], float64[::1], "
        "int8[::1], int8[::1], int64[::1])")


@njit(_SIG, cache=True)
def _recommend_kernel(usage, current, last_change, now, quantile, margin, lo, hi, step, up, down,
                      min_samples, cooldown, out_target, out_pctl, out_code, out_clamp, out_n):
    """One resource for all pods: ``usage[p, :]`` samples (NaN = none), ``current[p]`` request
    (NaN/<=0 = none), ``last_change[p]`` time of the last change (-inf = never)."""
    n_pods, w = usage.shape
    buf = np.empty(max(w, 1), np.float64)
    for p in range(n_pods):
        n = 0
        for k in range(w):
            v = usage[p, k]
            if v == v:
                buf[n] = v
                n += 1
        out_n[p] = n
        out_clamp[p] = 0
        if n < min_samples:
            out_code[p] = NO_DATA
            out_pctl[p] = np.nan
            out_target[p] = np.nan
            continue
        x = mk._quantile_range(buf, 0, n, quantile)
        out_pctl[p] = x
        t = np.ceil(x * (1.0 + margin) / step) * step
        if t < lo:
            t = lo
            out_clamp[p] = CLAMP_MIN
        if t > hi:
            t = hi
            out_clamp[p] = CLAMP_MAX
        out_target[p] = t
        cur = current[p]
        if not (cur > 0.0):
            out_code[p] = NEW
        elif now - last_change[p] < cooldown:
            out_code[p] = COOLDOWN
        elif t > cur * (1.0 + up):
            out_code[p] = INCREASE
        elif t < cur * (1.0 - down):
            out_code[p] = DECREASE
        else:
            out_code[p] = KEEP


# ------------------------------------------------------------------------------------ results

@dataclass
class Recommendation:
    """Decisions for one resource, one row per pod."""

    resource: str
    policy: ResourcePolicy
    current: np.ndarray     #: float64 request now (NaN = none)
    target: np.ndarray      #: float64 recommended request (NaN = no data)
    percentile: np.ndarray  #: float64 the policy's quantile of the usage
    samples: np.ndarray     #: int64 samples behind it
    code: np.ndarray        #: int8 KEEP, INCREASE, ...
    clamp: np.ndarray       #: int8 0, CLAMP_MIN, CLAMP_MAX

    def reason(self, i: int) -> str:
        """Why row i got its decision, in words."""
        pol, u = self.policy, UNITS[self.resource]
        code, cur, tgt = int(self.code[i]), self.current[i], self.target[i]
        if code == NO_DATA:
            return f"{int(self.samples[i])} usage samples, {pol.min_samples} needed"
        q = "peak" if pol.quantile == 1.0 else f"p{pol.quantile * 100:g}"
        text = (f"{q} of {int(self.samples[i])} samples {self.percentile[i]:.4g}{u} "
                f"+{pol.margin * 100:g}% margin, rounded up to {pol.step:g}{u}")
        if self.clamp[i] == CLAMP_MIN:
            text += f", raised to the minimum {pol.minimum:g}{u}"
        elif self.clamp[i] == CLAMP_MAX:
            text += f", capped at the maximum {pol.maximum:g}{u}"
        text += f" = {tgt:g}{u}"
        if code == NEW:
            return text + "; no request set"
        change = (tgt - cur) / cur * 100.0
        if code == COOLDOWN:
            return text + f"; was {cur:g}{u} ({change:+.0f}%) but changed recently (cooldown)"
        if code == KEEP:
            return text + (f"; within the hysteresis band of {cur:g}{u} "
                           f"(-{pol.down * 100:g}%/+{pol.up * 100:g}%)")
        return text + f"; was {cur:g}{u} ({change:+.0f}%)"


@dataclass
class Adjustment:
    """One applied change, kept in the adjustment history."""

    pod: str
    resource: str
    old: float
    new: float
    timestamp: float
    reason: str

    def to_dict(self) -> dict:
        return {"pod": self.pod, "resource": self.resource, "old": self.old, "new": self.new,
                "timestamp": self.timestamp, "reason": self.reason}


@dataclass
class Recommendations:
    """Decisions for every resource over the same pods."""

    pods: list
    timestamp: float
    by_resource: dict = field(default_factory=dict)   #: resource -> Recommendation

    def changes(self) -> list[tuple[int, str]]:
        """(row, resource) of every increase, decrease and new request, pod order."""
        out = []
        for res, rec in self.by_resource.items():
            for i in np.flatnonzero(np.isin(rec.code, (INCREASE, DECREASE, NEW))):
                out.append((int(i), res))
        out.sort()
        return out

    def to_dict(self, all_pods: bool = False) -> dict:
        """JSON document: per pod, per resource, current, target, decision and reason."""
        rows = []
        wanted = range(len(self.pods)) if all_pods else sorted({i for i, _ in self.changes()})
        for i in wanted:
            entry = {"pod": self.pods[i]}
            for res, rec in self.by_resource.items():
                c = int(rec.code[i])
                entry[res] = {"current": None if rec.current[i] != rec.current[i] else float(rec.current[i]),
                              "recommended": None if rec.target[i] != rec.target[i] else float(rec.target[i]),
                              "decision": DECISIONS[c], "reason": rec.reason(i)}
            rows.append(entry)
        counts = {res: {DECISIONS[c]: int(np.count_nonzero(rec.code == c)) for c in DECISIONS}
                  for res, rec in self.by_resource.items()}
        return {"timestamp": self.timestamp, "units": {r: UNITS[r] for r in self.by_resource},
                "pods": rows, "summary": counts}


# ------------------------------------------------------------------------------------ allocator

class Rightsizer:
    """Recommends request changes and keeps the history of the applied ones.

    Parameters
    ----------
    policies : dict, optional
        resource -> :class:`ResourcePolicy` (defaults: :data:`DEFAULT_POLICIES`); resources left
        out use their default.
    cooldown : float
        Seconds after a change during which that pod's resource is not changed again.
    history : int
        Adjustments kept.
    """

    def __init__(self, policies: dict | None = None, cooldown: float = 3600.0, history: int = 10000):
        policies = dict(policies or {})
        unknown = sorted(set(policies) - set(RESOURCES))
        if unknown:
            raise ValueError(f"Rightsizer: unknown resource {unknown[0]!r} (known: {', '.join(RESOURCES)})")
        self.policies = {r: policies.get(r, DEFAULT_POLICIES[r]) for r in RESOURCES}
        if not cooldown >= 0:
            raise ValueError(f"Rightsizer: cooldown = {cooldown!r}: must be >= 0 seconds")
        self.cooldown = float(cooldown)
        self.history: deque = deque(maxlen=int(history))
        self._last: dict[tuple[str, str], float] = {}

    def recommend_arrays(self, pods: list, usage: dict, current: dict, now: float) -> Recommendations:
        """Recommendations from arrays.

        Parameters
        ----------
        pods : list of str
            Row names.
        usage : dict
            resource -> float64 [len(pods), samples] (NaN = no sample), in the units of :data:`UNITS`.
        current : dict
            resource -> float64 [len(pods)] current requests (NaN or 0 = none).
        now : float
            Time of the recommendation (for the cooldown).
        """
        out = Recommendations(list(pods), float(now))
        n = len(pods)
        for res, u in usage.items():
            if res not in self.policies:
                raise ValueError(f"recommend: unknown resource {res!r} (known: {', '.join(RESOURCES)})")
            u = np.ascontiguousarray(u, dtype=np.float64)
            if u.ndim != 2 or u.shape[0] != n:
                raise ValueError(f"recommend: usage[{res!r}] has shape {u.shape}, expected ({n}, samples)")
            cur = np.ascontiguousarray(current.get(res, np.full(n, np.nan)), dtype=np.float64)
            if cur.shape != (n,):
                raise ValueError(f"recommend: current[{res!r}] has shape {cur.shape}, expected ({n},)")
            last = np.full(n, -np.inf)
            if self._last:
                for i, p in enumerate(pods):
                    t = self._last.get((p, res))
                    if t is not None:
                        last[i] = t
            pol = self.policies[res]
            target, pctl = np.empty(n), np.empty(n)
            code, clamp, cnt = np.empty(n, np.int8), np.empty(n, np.int8), np.empty(n, np.int64)
            _recommend_kernel(u, cur, last, float(now), pol.quantile, pol.margin, pol.minimum,
                              pol.maximum, pol.step, pol.up, pol.down, int(pol.min_samples),
                              self.cooldown, target, pctl, code, clamp, cnt)
            out.by_resource[res] = Recommendation(res, pol, cur, target, pctl, cnt, code, clamp)
        return out

    def recommend(self, store: MetricsStore, allocations: Allocations, window: float = 3600.0,
                  end: float | None = None, resources=RESOURCES) -> Recommendations:
        """Recommendations for the pods of ``allocations`` from the usage in ``store``."""
        usage, current = usage_from_store(store, allocations, window, end, resources)
        now = store.latest if end is None else float(end)
        return self.recommend_arrays(allocations.pods, usage, current, now if now is not None else 0.0)

    def apply(self, recs: Recommendations) -> list[Adjustment]:
        """Record every increase, decrease and new request as applied (history and cooldown);
        returns the adjustments. The caller patches the pods."""
        done = []
        for i, res in recs.changes():
            rec = recs.by_resource[res]
            adj = Adjustment(recs.pods[i], res, float(rec.current[i]), float(rec.target[i]),
                             recs.timestamp, rec.reason(i))
            self.history.append(adj)
            self._last[(adj.pod, res)] = recs.timestamp
            done.append(adj)
        return done

    def with_policy(self, resource: str, **changes) -> "Rightsizer":
        """A copy with one policy changed (e.g. ``with_policy("cpu", margin=0.3)``)."""
        policies = dict(self.policies)
        policies[resource] = replace(policies[resource], **changes)
        out = Rightsizer(policies, self.cooldown, self.history.maxlen or 10000)
        out.history.extend(self.history)
        out._last = dict(self._last)
        return out


def usage_from_store(store: MetricsStore, allocations: Allocations, window: float = 3600.0,
                     end: float | None = None, resources=RESOURCES) -> tuple[dict, dict]:
    """Usage time lines ``[pods, slots]`` and current requests per resource, in the units of
    :data:`UNITS`, for the pods of ``allocations`` (rows in the same order).

    GPU usage per device is the pod's total over its devices divided by its device count; a device
    shared by several pods' series is split equally between them (as in the efficiency report).
    """
    slots, ts = store.window(window, end)
    pid = allocations.pod_ids(store)
    n = len(pid)
    row_of = np.full(len(store.pods), -1, np.int64)
    row_of[pid] = np.arange(n)
    ndev = np.maximum(allocations.gpu_devices, 1).astype(np.float64)
    usage, current = {}, {}

    def rows(sids):
        p = store.pod[sids]
        return np.where(p >= 0, row_of[np.maximum(p, 0)], -1)

    def device_share(sids):
        # 1 / (pods' series on the same device), over the window
        dev = store.device[sids]
        seen = mk.series_window(store.values, slots, ts, sids, "count") > 0
        key = np.where(dev >= 0, dev, -1)
        cnt = np.bincount(key[(key >= 0) & seen], minlength=len(store.device_keys)).astype(float)
        return np.where(key >= 0, 1.0 / np.maximum(cnt[np.maximum(key, 0)], 1.0), 1.0)

    if "gpu" in resources:
        s = store.select(GFX)
        u = mk.group_slot_sum(store.values, slots, ts, s, rows(s), n, device_share(s) * 10.0)  # % -> milli
        usage["gpu"] = u / ndev[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            current["gpu"] = np.where(allocations.gpu_devices > 0,
                                      allocations.gpu * 1000.0 / ndev, np.nan)
    if "gpu_memory" in resources:
        s = store.select(USED_VRAM)
        usage["gpu_memory"] = mk.group_slot_sum(store.values, slots, ts, s, rows(s), n,
                                                device_share(s)) / ndev[:, None]
        current["gpu_memory"] = np.where(allocations.gpu_devices > 0, allocations.gpu_memory / ndev, np.nan)
    if "cpu" in resources:
        s = store.select(CPU_COUNTER, CONTAINER_FILTER)
        usage["cpu"] = mk.group_slot_sum(store.values, slots, ts, s, rows(s), n, 1000.0, counter=True)
        current["cpu"] = allocations.cpu.copy()
    if "memory" in resources:
        s = store.select(MEM_WORKING_SET, CONTAINER_FILTER)
        usage["memory"] = mk.group_slot_sum(store.values, slots, ts, s, rows(s), n, 1.0 / MIB)
        current["memory"] = allocations.memory.copy()
    return usage, current
