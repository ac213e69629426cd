"""Plain-Python references of the monitoring kernels (metrics, alerts, right-sizing).

They live here rather than in ``tests/naive.py`` so that work on the monitoring modules and on the
scheduling kernels does not edit the same file. Same rules as there: each function is the slow,
obviously-correct version of a compiled kernel (plain loops over Python lists; numpy only to read
inputs), tests compare the kernels with them on random inputs (hypothesis), and the benchmarks time
both in the same run to report ratios.

========================================  ==============================================================
reference                                 kernel
========================================  ==============================================================
:func:`naive_parse`                       ``kaiwo_core.monitoring.exposition._parse_kernel`` (+ ``decode_key``)
:func:`naive_write`                       ``kaiwo_core.monitoring.metrics_kernels._write_kernel``
:func:`naive_series_window`               ``kaiwo_core.monitoring.metrics_kernels._series_window_kernel``
:func:`naive_group_window`                ``kaiwo_core.monitoring.metrics_kernels._group_window_kernel``
:func:`naive_group_slot_sum`              ``kaiwo_core.monitoring.metrics_kernels._group_slot_sum_kernel``
:func:`naive_quantile`                    ``kaiwo_core.monitoring.metrics_kernels._quantile_range`` (selection)
:class:`NaiveAlertManager`                ``kaiwo_core.monitoring.alerts._evaluate_kernel`` + ``_advance_kernel``
:func:`naive_recommend`                   ``kaiwo_core.monitoring.rightsizing._recommend_kernel``
:func:`naive_efficiency`                  ``kaiwo_core.monitoring.efficiency.efficiency_report`` (pod usage, idle GPUs)
:func:`naive_track_cycle`                 ``kaiwo_core.self_metrics.KaiwoMetrics.record_cycle`` numbers
========================================  ==============================================================
"""
from __future__ import annotations

import math
import re

# ----------------------------------------------------------------------------- exposition

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LNAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_LVALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
_WS = r"[ \t]*"
_LABEL = rf"{_WS}({_LNAME}){_WS}={_WS}({_LVALUE}){_WS}"
_SAMPLE = re.compile(
    rf"({_NAME})(\{{{_WS}(?:{_LNAME}{_WS}={_WS}{_LVALUE}{_WS}(?:,{_WS}{_LNAME}{_WS}={_WS}{_LVALUE}{_WS})*,?{_WS})?\}})?"
    rf"[ \t]+([^ \t]+)(?:[ \t]+([^ \t]+))?[ \t]*")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPECIAL = re.compile(r"[+-]?(?:inf|infinity)|nan", re.I)
_TS = re.compile(r"-?[0-9]{1,19}")
_TYPE = re.compile(rf"#[ \t]+TYPE[ \t]+{_NAME}[ \t]+(?:counter|gauge|histogram|summary|untyped)[ \t]*")
_HELP = re.compile(rf"#[ \t]+HELP[ \t]+{_NAME}(?:[ \t].*)?")


def _naive_value(tok: str):
    if _SPECIAL.fullmatch(tok):
        if tok.lower().lstrip("+-") == "nan" and tok[0] in "+-":
            return None
        return float(tok.lstrip("+").lower().replace("infinity", "inf"))
    if _FLOAT.fullmatch(tok):
        return float(tok)
    return None


def _naive_unescape(v: str) -> str:
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\":
            out.append({"\\": "\\", '"': '"', "n": "\n"}[v[i + 1]])
            i += 2
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


def naive_parse(text: str):
    """Parse an exposition text line by line with regular expressions.

    Returns (samples, error_lines): samples are (line, name, labels dict, value, timestamp or None)
    and error_lines the 1-based numbers of the malformed lines.
    """
    samples, errors = [], []
    for no, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        s = line.lstrip(" \t")
        if not s.strip(" \t"):
            continue
        if s.startswith("#"):
            after = s[1:]
            stripped = after.lstrip(" \t")
            word = re.match(r"[^ \t]*", stripped).group()
            if after != stripped and word == "TYPE" and not _TYPE.fullmatch(s):
                errors.append(no)
            elif after != stripped and word == "HELP" and not _HELP.fullmatch(s):
                errors.append(no)
            continue
        m = _SAMPLE.fullmatch(s)
        if not m:
            errors.append(no)
            continue
        labels = {}
        dup = False
        if m.group(2):
            for k, v in re.findall(_LABEL, m.group(2)[1:-1]):
                if k in labels:
                    dup = True
                labels[k] = _naive_unescape(v[1:-1])
        value = _naive_value(m.group(3))
        ts = m.group(4)
        if dup or value is None or (ts is not None and (not _TS.fullmatch(ts)
                                                         or not -(2**63 - 1) <= int(ts) <= 2**63 - 1)):
            errors.append(no)
            continue
        samples.append((no, m.group(1), labels, value, int(ts) if ts is not None else None))
    return samples, errors


# ----------------------------------------------------------------------------- ring buffer

def naive_write(row, sids, vals, stamp, seq, fresh):
    """Write a scrape into ``row`` (a list); returns (row, stamp, duplicate indices)."""
    row = [math.nan] * len(row) if fresh else list(row)
    stamp = list(stamp)
    dups = []
    for k, (s, v) in enumerate(zip(sids, vals)):
        if stamp[s] == seq:
            dups.append(k)
            continue
        stamp[s] = seq
        row[s] = v
    return row, stamp, dups


def naive_quantile(samples, q):
    """Linear interpolation between order statistics of a sorted copy (numpy's default)."""
    s = sorted(samples)
    n = len(s)
    h = (n - 1) * q
    lo = math.floor(h)
    frac = h - lo
    if frac == 0.0 or lo + 1 >= n:
        return s[lo]
    return s[lo] + frac * (s[lo + 1] - s[lo])


def _samples(values, slots, sid):
    return [values[k][sid] for k in slots]


def naive_series_window(values, slots, ts, sids, stat, q=0.0):
    """Per-series statistic (see ``kaiwo_core.monitoring.metrics_kernels``) with plain loops.

    ``values`` is a list of rows (lists), ``slots`` time-ordered row indices, ``ts`` their times.
    """
    out = []
    for sid in sids:
        xs = [(t, v) for t, v in zip(ts, _samples(values, slots, sid)) if v == v]
        vs = [v for _, v in xs]
        if stat == "count":
            out.append(float(len(vs)))
        elif not vs:
            out.append(math.nan)
        elif stat == "mean":
            acc = 0.0
            for v in vs:
                acc += v
            out.append(acc / len(vs))
        elif stat == "max":
            out.append(max(vs))
        elif stat == "min":
            out.append(min(vs))
        elif stat == "last":
            out.append(vs[-1])
        elif stat == "quantile":
            out.append(naive_quantile(vs, q))
        elif stat == "rate":
            if len(xs) < 2 or xs[-1][0] <= xs[0][0]:
                out.append(math.nan)
                continue
            inc = 0.0
            for (_, a), (_, b) in zip(xs, xs[1:]):
                inc += b - a if b >= a else b
            out.append(inc / (xs[-1][0] - xs[0][0]))
        else:
            raise ValueError(stat)
    return out


def naive_group_window(values, slots, ts, sids, gkey, n_groups, stat, q=0.0):
    """Per-group statistic, pooled over the group's samples (rate: sum of series rates; last:
    mean of series' last values). Returns (values, counts) lists."""
    if stat in ("rate", "last"):
        per = naive_series_window(values, slots, ts, sids, stat, q)
        out, cnt = [0.0] * n_groups, [0] * n_groups
        for g, v in zip(gkey, per):
            if g >= 0 and v == v:
                out[g] += v
                cnt[g] += 1
        return [(o / c if stat == "last" else o) if c else math.nan for o, c in zip(out, cnt)], cnt
    pooled = [[] for _ in range(n_groups)]
    for k in slots:  # slot-major, as samples arrive: the summation order of the kernel
        for sid, g in zip(sids, gkey):
            v = values[k][sid]
            if g >= 0 and v == v:
                pooled[g].append(v)
    out = []
    for xs in pooled:
        if stat == "count":
            out.append(float(len(xs)))
        elif not xs:
            out.append(math.nan)
        elif stat == "mean":
            acc = 0.0
            for v in xs:
                acc += v
            out.append(acc / len(xs))
        elif stat == "max":
            out.append(max(xs))
        elif stat == "min":
            out.append(min(xs))
        elif stat == "quantile":
            out.append(naive_quantile(xs, q))
        else:
            raise ValueError(stat)
    return out, [len(xs) for xs in pooled]


def naive_group_slot_sum(values, slots, ts, sids, gkey, n_groups, scale, counter=False):
    """Per group and window slot, the sum of the series' samples (or per-sample rates) x scale."""
    out = [[math.nan] * len(slots) for _ in range(n_groups)]
    for j, (sid, g) in enumerate(zip(sids, gkey)):
        if g < 0:
            continue
        prev = None
        for k, (slot, t) in enumerate(zip(slots, ts)):
            v = values[slot][sid]
            if v != v:
                continue
            x = v
            if counter:
                if prev is None:
                    prev = (v, t)
                    continue
                d = v - prev[0]
                x = (d if d >= 0 else v) / (t - prev[1])
                prev = (v, t)
            x = x * scale[j]
            out[g][k] = x if out[g][k] != out[g][k] else out[g][k] + x
    return out


# ----------------------------------------------------------------------------- store helpers

class _Rows:
    """Row k of a store's ring in time order, read lazily (``rows[k][sid]`` is one sample), so
    that references at scale M do not copy a 200 MB buffer into Python lists."""

    def __init__(self, values, order):
        self.values, self.order = values, [int(k) for k in order]

    def __getitem__(self, k):
        return self.values[self.order[k]]

    def __len__(self):
        return len(self.order)


def store_rows(store):
    """(rows in time order, their timestamps) of a MetricsStore."""
    order, ts = store.ordered_slots()
    return _Rows(store.values, order), ts.tolist()


def _window_idx(ts, seconds, end):
    return [k for k, t in enumerate(ts) if end - seconds < t <= end]


# ----------------------------------------------------------------------------- alerts

_OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
_STATS = {"mean": ("mean", 0.0), "max": ("max", 0.0), "min": ("min", 0.0), "p50": ("quantile", 0.5),
          "p90": ("quantile", 0.9), "p95": ("quantile", 0.95), "p99": ("quantile", 0.99),
          "rate": ("rate", 0.0), "last": ("last", 0.0), "count": ("count", 0.0)}


def _matches(m, value):
    if m.op == "=":
        return value == m.value
    if m.op == "!=":
        return value != m.value
    hit = re.fullmatch(m.value, value) is not None
    return hit if m.op == "=~" else not hit


def naive_group_of(store, sid, by):
    """Group key of a series for ``by``, as a name (None = not in any group)."""
    labels = dict(store.keys[sid][1])
    node = labels.get("hostname") or labels.get("node")
    pod = labels.get("pod")
    ns = labels.get("namespace", "")
    pod_name = (f"{ns}/{pod}" if ns else pod) if pod else None
    if by == "series":
        return store.keys[sid]
    if by == "node":
        return node
    if by == "gpu":
        g = labels.get("gpu_id", "")
        return (node, int(g), int(labels.get("gpu_partition_id", "0") or 0)) if node and g.isdigit() else None
    if by == "pod":
        return pod_name
    if by == "namespace":
        return ns or None
    if by in ("queue", "job"):
        if pod_name is None:
            return None
        p = store.pods.index[pod_name]
        v = (store.pod_queue if by == "queue" else store.pod_job)[p]
        return None if v < 0 else (store.queues if by == "queue" else store.jobs).names[v]
    if by == "cluster":
        return "cluster"
    raise ValueError(by)


def naive_rule_members(store, rule):
    """[(sid, group key)] of the series a rule reads: metric, matchers, and a group to be in."""
    out = []
    for sid in range(store.n_series):
        name, items = store.keys[sid]
        if name != rule.metric:
            continue
        labels = dict(items)
        if not all(_matches(m, labels.get(m.label, "")) for m in rule.matchers):
            continue
        g = naive_group_of(store, sid, rule.by)
        if g is not None:
            out.append((sid, g))
    return out


class NaiveAlertManager:
    """Alert rules evaluated with plain loops and a dict of states (the kernels' reference).

    ``evaluate(now)`` returns the transitions as (rule name, group key, state, value) tuples.
    ``members``: the rules' series, precomputed with :func:`naive_rule_members` (the compiled
    manager also selects series once per change of the series set, not per evaluation);
    recomputed at every evaluation when None.
    """

    def __init__(self, rules, store, members=None):
        self.rules = rules
        self.store = store
        self.members = members
        self.states = {}  # (rule name, group) -> [state, since]

    def values(self, now):
        """{(rule, group): value or None (no data)} for every instance at ``now``."""
        st = self.store
        rows, ts = store_rows(st)
        members = self.members or [naive_rule_members(st, r) for r in self.rules]
        out = {}
        for rule, mem in zip(self.rules, members):
            stat, q = _STATS[rule.aggregation]
            idx = _window_idx(ts, rule.window, now)
            wts = [ts[k] for k in idx]
            groups = {}
            for sid, g in mem:
                v = naive_series_window(rows, idx, wts, [sid], stat, q)[0]
                groups.setdefault(g, [])
                if v == v:
                    groups[g].append(v)
            for g, vs in groups.items():
                if not vs:
                    out[(rule.name, g)] = None
                elif rule.reduce == "mean":
                    acc = 0.0
                    for v in vs:
                        acc += v
                    out[(rule.name, g)] = acc / len(vs)
                elif rule.reduce == "sum":
                    acc = 0.0
                    for v in vs:
                        acc += v
                    out[(rule.name, g)] = acc
                elif rule.reduce == "max":
                    out[(rule.name, g)] = max(vs)
                elif rule.reduce == "min":
                    out[(rule.name, g)] = min(vs)
                else:
                    out[(rule.name, g)] = float(len(vs))
        return out

    def evaluate(self, now):
        by_name = {r.name: r for r in self.rules}
        events = []
        vals = self.values(now)
        for key in sorted(set(vals) | set(self.states), key=repr):
            rule = by_name[key[0]]
            v = vals.get(key)
            hold = v is not None and _OPS[rule.op](v, rule.threshold)
            state, since = self.states.get(key, ["inactive", None])
            if state == "inactive" and hold:
                if rule.for_ <= 0:
                    self.states[key] = ["firing", now]
                    events.append((key[0], key[1], "firing", v))
                else:
                    self.states[key] = ["pending", now]
                    events.append((key[0], key[1], "pending", v))
            elif state == "pending" and not hold:
                self.states[key] = ["inactive", None]
                events.append((key[0], key[1], "cleared", v))
            elif state == "pending" and now - since >= rule.for_:
                self.states[key] = ["firing", since]
                events.append((key[0], key[1], "firing", v))
            elif state == "firing" and not hold:
                self.states[key] = ["inactive", None]
                events.append((key[0], key[1], "resolved", v))
        return events


# ----------------------------------------------------------------------------- right-sizing

def naive_recommend(usage_rows, current, last_change, now, policy, cooldown):
    """Per pod: (code, target, percentile, samples) with the rules of ``kaiwo_core.monitoring.rightsizing``."""
    out = []
    for row, cur, last in zip(usage_rows, current, last_change):
        xs = [v for v in row if v == v]
        if len(xs) < policy.min_samples:
            out.append((3, math.nan, math.nan, len(xs)))  # NO_DATA
            continue
        p = naive_quantile(xs, policy.quantile)
        t = math.ceil(p * (1.0 + policy.margin) / policy.step) * policy.step
        t = min(max(t, policy.minimum), policy.maximum)
        if not cur > 0:
            code = 5      # NEW
        elif now - last < cooldown:
            code = 4      # COOLDOWN
        elif t > cur * (1.0 + policy.up):
            code = 1      # INCREASE
        elif t < cur * (1.0 - policy.down):
            code = 2      # DECREASE
        else:
            code = 0      # KEEP
        out.append((code, t, p, len(xs)))
    return out


# ----------------------------------------------------------------------------- efficiency

def naive_efficiency(store, pods, window, idle_threshold=5.0, idle_for=600.0):
    """Pod GPU, VRAM, CPU and memory usage over the window and the idle devices.

    Returns ({pod: {resource: used or None}}, sorted list of idle device keys (node, gpu, part)).
    """
    rows, ts = store_rows(store)
    end = ts[-1]
    idx = _window_idx(ts, window, end)
    wts = [ts[k] for k in idx]

    def series(metric, containers=False):
        out = []
        for sid in range(store.n_series):
            name, items = store.keys[sid]
            labels = dict(items)
            if name != metric:
                continue
            if containers and labels.get("container", "") in ("", "POD"):
                continue
            out.append((sid, labels))
        return out

    def device_metric(metric, scale):
        means = []
        for sid, labels in series(metric):
            m = naive_series_window(rows, idx, wts, [sid], "mean")[0]
            node = labels.get("hostname") or labels.get("node")
            g = labels.get("gpu_id", "")
            dev = (node, int(g), int(labels.get("gpu_partition_id", "0") or 0)) if node and g.isdigit() else ("sid", sid)
            pod = labels.get("pod")
            ns = labels.get("namespace", "")
            means.append((dev, (f"{ns}/{pod}" if ns else pod) if pod else None, m))
        share = {}
        for dev, _, m in means:
            if m == m:
                share[dev] = share.get(dev, 0) + 1
        per_pod = {}
        for dev, pod, m in means:
            if m == m and pod is not None:
                per_pod[pod] = per_pod.get(pod, 0.0) + m * scale / share[dev]
        return per_pod

    def pod_metric(metric, stat, scale):
        per_pod = {}
        for sid, labels in series(metric, containers=True):
            v = naive_series_window(rows, idx, wts, [sid], stat)[0]
            if v == v and labels.get("pod"):
                ns = labels.get("namespace", "")
                pod = f"{ns}/{labels['pod']}" if ns else labels["pod"]
                per_pod[pod] = per_pod.get(pod, 0.0) + v * scale
        return per_pod

    gpu = device_metric("gpu_gfx_activity", 0.01)
    vram = device_metric("gpu_used_vram", 1.0)
    cpu = pod_metric("container_cpu_usage_seconds_total", "rate", 1000.0)
    mem = pod_metric("container_memory_working_set_bytes", "mean", 1.0 / (1 << 20))
    used = {p: {"gpu": gpu.get(p), "gpu_memory": vram.get(p), "cpu": cpu.get(p), "memory": mem.get(p)}
            for p in pods}
    # Idle devices: enough history, >= 80% of the period's scrapes, every sample below threshold.
    idle = []
    if ts[0] <= end - idle_for:
        period = [k for k, t in enumerate(ts) if end - idle_for - 1e-6 < t <= end]
        need = max(1, math.ceil(0.8 * len(period)))
        per_dev = {}
        for sid, labels in series("gpu_gfx_activity"):
            node, g = labels.get("hostname") or labels.get("node"), labels.get("gpu_id", "")
            if not (node and g.isdigit()):
                continue
            dev = (node, int(g), int(labels.get("gpu_partition_id", "0") or 0))
            d = per_dev.setdefault(dev, {"max": -math.inf, "slots": set()})
            for k in period:
                v = rows[k][sid]
                if v == v:
                    d["max"] = max(d["max"], v)
                    d["slots"].add(k)
        idle = sorted(dev for dev, d in per_dev.items() if len(d["slots"]) >= need and d["max"] < idle_threshold)
    return used, idle


# ----------------------------------------------------------------------------- tracking

def naive_track_cycle(placed, queue_of_pod, n_queues, usage):
    """Numbers one cycle records: scheduled, pending, allocated per queue and resource."""
    scheduled = 0
    alloc = {r: [0.0] * n_queues for r in usage}
    for i, ok in enumerate(placed):
        if not ok:
            continue
        scheduled += 1
        q = int(queue_of_pod[i])
        if q < 0:
            continue
        for r, col in usage.items():
            alloc[r][q] += float(col[i])
    return {"scheduled": scheduled, "pending": len(placed) - scheduled, "allocated": alloc}
