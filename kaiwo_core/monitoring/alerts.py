"""Alert manager: YAML rules evaluated over every series at once in a compiled kernel.

Rules
-----
A rules file is a YAML mapping with a ``rules`` list (or just the list). Each rule reads like the
PromQL ``<reduce> by (<by>) (<aggregation>_over_time(<metric>{<selector>}[<window>])) <op> <threshold>``::

    rules:
      - name: GPUHot                      # required, [a-zA-Z_][a-zA-Z0-9_]*, unique
        metric: gpu_junction_temperature  # required
        selector: 'hostname=~"node-0.*"'  # PromQL matchers (=, !=, =~, !~) or a mapping (equality)
        aggregation: max                  # over the window, per series: mean max min p50 p90 p95
                                          #   p99 rate last count (default: last)
        window: 5m                        # 30s, 5m, 1h30m... (default 1m)
        by: series                        # series gpu node pod job queue namespace cluster
        reduce: max                       # across the series of a group: mean max min sum count
                                          #   (default: max for max, min for min, sum for rate and
                                          #   count, mean otherwise)
        op: ">"                           # > >= < <= == !=
        threshold: 95
        for: 2m                           # condition must hold this long before firing (default 0)
        severity: critical                # info warning critical (default warning)
        summary: "GPU {gpu} on {node} at {value:.0f} C"
        labels: {team: infra}             # extra labels on the alert
        description: free text

Every field is checked when the file is loaded; a bad rule is reported as a :class:`RuleError`
naming the rule, the field, the value and why, and the other rules still run. Summary templates may
use ``{rule} {metric} {value} {threshold} {op} {severity} {window} {for} {by} {group}`` and the
fields of the grouping (``node gpu partition device pod namespace queue job`` and
``{labels[name]}`` for ``by: series``); a field the grouping cannot fill is an error at load time.

Evaluation
----------
Rules are compiled against the store once per change of its series set: each rule's series
(selector applied with the store's integer label columns), its alert *instances* (one per group:
series, GPU, node...) and the distinct window statistics all rules need ("combos": statistic x
window), each computed once for the union of the series that use it, however many rules share it;
grouped rules that read the same series the same way (they differ only in threshold, op, ``for``,
severity...) share one fold ("value set"). One call of :func:`_evaluate_kernel` then computes every
combo and value set, compares every instance's value with its rule's threshold and moves the state
of those that hold or were holding (tracked per chunk of instances, so that the quiet majority
costs a vectorised compare and nothing else):

* inactive -> pending when the condition holds (firing at once when ``for`` is 0);
* pending -> firing once it has held for ``for`` seconds; pending -> inactive if it stops holding
  before (flapping never fires);
* firing -> resolved (then inactive) when it stops holding or its data disappears (no samples in the
  window), i.e. automatic resolution.

Transitions become :class:`AlertEvent` objects (Python work only for what changed), kept in a bounded
history and sent to the sinks: :class:`LogSink`, :class:`WebhookSink` (Alertmanager-style JSON
POST with retries and exponential backoff) and :class:`CallbackSink` (the controller's hook; see
:func:`kubernetes_event` for the core/v1 Event it can create). A failing sink is logged and never
stops the evaluation or the other sinks.
"""
from __future__ import annotations

import json
import logging
import math
import re
import string
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from . import metrics_kernels as mk
from ..model.errors import show
from .metrics_store import MetricsStore, SelectorError, parse_selector
from ..plugins import Plugin, PluginError, register

log = logging.getLogger("kaiwo.alerts")

SEVERITIES = ("info", "warning", "critical")
AGGREGATIONS = ("mean", "max", "min", "p50", "p90", "p95", "p99", "rate", "last", "count")
BY = ("series", "gpu", "node", "pod", "job", "queue", "namespace", "cluster")
REDUCERS = {"mean": 0, "max": 1, "min": 2, "sum": 3, "count": 4}
OPS = {">": 0, ">=": 1, "<": 2, "<=": 3, "==": 4, "!=": 5}
DEFAULT_REDUCE = {"max": "max", "min": "min", "rate": "sum", "count": "sum"}
FIELDS = ("name", "metric", "selector", "aggregation", "window", "by", "reduce", "op", "threshold",
          "for", "severity", "summary", "labels", "description")
BASE_FIELDS = {"rule", "metric", "value", "threshold", "op", "severity", "window", "for", "by", "group"}
BY_FIELDS = {
    "series": {"node", "gpu", "partition", "device", "pod", "namespace", "queue", "job", "labels"},
    "gpu": {"node", "gpu", "partition", "device"},
    "node": {"node"}, "pod": {"pod", "namespace", "queue", "job"}, "job": {"job"},
    "queue": {"queue"}, "namespace": {"namespace"}, "cluster": set(),
}

INACTIVE, PENDING, FIRING = 0, 1, 2
STATE_NAMES = {INACTIVE: "inactive", PENDING: "pending", FIRING: "firing"}
# Transition codes written by _evaluate_kernel.
T_PENDING, T_FIRING, T_CLEARED, T_RESOLVED = 1, 2, 3, 4
TRANSITION_STATE = {T_PENDING: "pending", T_FIRING: "firing", T_CLEARED: "cleared", T_RESOLVED: "resolved"}

_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")


class RuleError(ValueError):
    """A rule that cannot be used: names the rule, the field, the value and the reason."""

    def __init__(self, rule: str, field: str, value, reason: str):
        self.rule, self.field, self.value, self.reason = rule, field, value, reason
        shown = "" if value is None else f" = {show(value)}"
        super().__init__(f"rule {rule}: {field}{shown}: {reason}")

    def to_dict(self) -> dict:
        return {"rule": self.rule, "field": self.field,
                "error": self.reason if self.value is None else f"{show(self.value)}: {self.reason}"}


def parse_duration(value, what: str = "duration") -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``2d``, ``500ms`` or a non-negative number."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration such as 30s, 5m or 1h30m")
    if isinstance(value, (int, float)):
        seconds = _finite(value)
        if seconds is None or seconds < 0 or seconds > MAX_SECONDS:
            raise ValueError(f"{what}: must be a finite, non-negative number of seconds (at most {MAX_SECONDS:g})")
        return seconds
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: expected a duration such as 30s, 5m or 1h30m")
    m = _DURATION_RE.fullmatch(value.strip())
    if not m or not any(m.groups()):
        raise ValueError(f"{what}: not a duration (expected e.g. 30s, 5m, 1h30m, 2d, 500ms)")
    d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    total_ms = (d * 86400 + h * 3600 + mi * 60 + s) * 1000 + ms  # integers: exact, never overflow
    if total_ms > MAX_SECONDS * 1000:
        raise ValueError(f"{what}: longer than {MAX_SECONDS:g} seconds")
    return total_ms / 1000


#: Longest duration of a rule (window, for): 100 years.
MAX_SECONDS = 100 * 365.25 * 86400
#: Widths and precisions in summary templates: a rendered summary is a line of text, and a width
#: of 10**9 would build a gigabyte string per alert.
MAX_FORMAT_NUMBER = 1000


def _finite(value) -> float | None:
    """A number as a finite float, or None (NaN, infinities, integers too large for a float)."""
    try:
        v = float(value)
    except (OverflowError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _choice(rule: str, fld: str, value, options) -> str:
    """``value`` if it is one of the strings ``options``; a list or a map is refused like any
    other value (it cannot even be looked up in a dict of options)."""
    if not isinstance(value, str) or value not in options:
        raise RuleError(rule, fld, value, f"expected one of {', '.join(options)}")
    return value


@dataclass(frozen=True)
class Rule:
    """One validated alert rule (see the module docstring for the fields)."""

    name: str
    metric: str
    matchers: tuple = ()
    aggregation: str = "last"
    window: float = 60.0
    by: str = "series"
    reduce: str = "mean"
    op: str = ">"
    threshold: float = 0.0
    for_: float = 0.0
    severity: str = "warning"
    summary: str = ""
    labels: tuple = ()
    description: str = ""

    def compare(self, value: float) -> bool:
        """The rule's comparison in plain Python (what the kernel computes)."""
        return _compare_py(OPS[self.op], value, self.threshold)


def _compare_py(op: int, v: float, thr: float) -> bool:
    return [v > thr, v >= thr, v < thr, v <= thr, v == thr, v != thr][op]


def rule_from_dict(doc, index: int = 0) -> Rule:
    """Validate one rule mapping; raises :class:`RuleError` on the first problem."""
    label = f"#{index + 1}"
    if not isinstance(doc, dict):
        raise RuleError(label, "rule", None, f"expected a mapping, got {type(doc).__name__}")
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise RuleError(label, "name", name, "required; letters, digits and '_' (not starting with a digit)")
    unknown = sorted(str(k) for k in doc if k not in FIELDS)
    if unknown:
        raise RuleError(name, unknown[0], None, f"unknown field (known: {', '.join(FIELDS)})")
    metric = doc.get("metric")
    if not isinstance(metric, str) or not _METRIC_RE.fullmatch(metric):
        raise RuleError(name, "metric", metric, "required; a Prometheus metric name")
    try:
        matchers = parse_selector(doc.get("selector"))
    except SelectorError as e:
        raise RuleError(name, "selector", doc.get("selector"), str(e)) from None
    agg = _choice(name, "aggregation", doc.get("aggregation", "last"), AGGREGATIONS)
    try:
        window = parse_duration(doc.get("window", "1m"), "window")
        for_ = parse_duration(doc.get("for", 0), "for")
    except ValueError as e:
        fld = str(e).split(":")[0]
        raise RuleError(name, fld, doc.get(fld), str(e).split(": ", 1)[1]) from None
    if window <= 0:
        raise RuleError(name, "window", doc.get("window"), "must be longer than 0")
    by = _choice(name, "by", doc.get("by", "series"), BY)
    reduce = _choice(name, "reduce", doc.get("reduce", DEFAULT_REDUCE.get(agg, "mean")), REDUCERS)
    op = _choice(name, "op", doc.get("op", ">"), OPS)
    thr = doc.get("threshold")
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or _finite(thr) is None:
        raise RuleError(name, "threshold", thr, "required; a finite number")
    severity = _choice(name, "severity", doc.get("severity", "warning"), SEVERITIES)
    labels = doc.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and _NAME_RE.fullmatch(k)
                                               and isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                               for k, v in labels.items()):
        raise RuleError(name, "labels", labels, "expected a mapping of label names to strings")
    summary = doc.get("summary", "")
    if not isinstance(summary, str):
        raise RuleError(name, "summary", summary, "expected a string")
    _check_template(name, summary, by)
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise RuleError(name, "description", description, "expected a string")
    return Rule(name, metric, matchers, agg, window, by, reduce, op, _finite(thr), for_, severity,
                summary, tuple(sorted((k, str(v)) for k, v in labels.items())), description)


class _Probe(dict):
    """Template fields for the load-time check: numbers for numeric fields, text elsewhere."""

    def __missing__(self, key):
        return _ProbeLabels() if key == "labels" else "x"


class _ProbeLabels(dict):
    def __missing__(self, key):
        return "x"


def _check_template(name: str, summary: str, by: str) -> None:
    allowed = BASE_FIELDS | BY_FIELDS[by]
    try:
        parsed = list(string.Formatter().parse(summary))
    except ValueError as e:
        raise RuleError(name, "summary", summary, f"not a valid template: {e}") from None
    for _, fld, spec, _ in parsed:
        if fld is None:
            continue
        # A field inside a format spec ({value:>{threshold}}) takes its width from the data, and a
        # large width or precision builds a huge string: both are refused before anything renders.
        if "{" in (spec or ""):
            raise RuleError(name, "summary", summary, "fields inside a format spec are not allowed")
        if any(int(n) > MAX_FORMAT_NUMBER for n in re.findall(r"\d+", spec or "")):
            raise RuleError(name, "summary", summary,
                            f"a width or precision above {MAX_FORMAT_NUMBER} in {{{fld}:{spec}}}")
        base = re.split(r"[.\[]", fld, maxsplit=1)[0]
        if base == "" or base.isdigit():
            raise RuleError(name, "summary", summary, "positional fields ({} or {0}) are not allowed; "
                            "name them, e.g. {value}")
        if base not in allowed:
            raise RuleError(name, "summary", summary,
                            f"field {{{base}}} is not available for by: {by} "
                            f"(available: {', '.join(sorted(allowed))})")
    probe = _Probe(value=1.5, threshold=1.0)
    try:
        summary.format_map(probe)
    except Exception as e:  # noqa: BLE001 - any failure to render is the template's fault
        raise RuleError(name, "summary", summary, f"cannot be rendered: {e}") from None


@dataclass
class RuleSet:
    """Valid rules and the errors of the rejected ones (in file order)."""

    rules: list
    errors: list

    def __len__(self) -> int:
        return len(self.rules)


def load_rules(source) -> RuleSet:
    """Rules from a YAML file path, YAML text, a list of mappings or a ``{rules: [...]}`` mapping.

    Invalid rules (and duplicate names, the later one) are returned as errors; the file itself
    being unreadable or not a list of rules raises :class:`RuleError` (rule ``-``).
    """
    doc = source
    where = "rules"
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and source.endswith((".yaml", ".yml", ".json"))):
        where = str(source)
        try:
            doc = Path(source).read_text()
        except OSError as e:
            raise RuleError("-", "file", where, f"cannot read: {e.strerror or e}") from None
    if isinstance(doc, str):
        try:
            doc = yaml.safe_load(doc)
        except yaml.YAMLError as e:
            raise RuleError("-", "file", where, f"not valid YAML: {e}") from None
    if isinstance(doc, dict):
        if "rules" not in doc:
            raise RuleError("-", "rules", None, f"{where}: expected a 'rules' list")
        doc = doc["rules"]
    if doc is None:
        doc = []
    if not isinstance(doc, list):
        raise RuleError("-", "rules", None, f"{where}: expected a list of rules, got {type(doc).__name__}")
    rules, errors, names = [], [], set()
    for i, d in enumerate(doc):
        try:
            r = rule_from_dict(d, i)
        except RuleError as e:
            errors.append(e)
            continue
        if r.name in names:
            errors.append(RuleError(r.name, "name", r.name, f"duplicate rule name (rule #{i + 1})"))
            continue
        names.add(r.name)
        rules.append(r)
    return RuleSet(rules, errors)


# ------------------------------------------------------------------------------ kernels

_EVAL_SIG = ("int64(float64[:, ::1], int64[::1], float64[::1], int64[::1], float64[::1], int64[::1], "
             "int64[::1], int64[::1], int64[::1], int64[::1], int64[::1], int32[::1], int32[::1], "
             "int64[::1], float64[::1], int64[::1], int64[::1], int64[::1], float64[::1], float64[::1], "
             "int64[::1], int64[::1], int32[::1], int64[::1], uint64[::1], int64[::1], float64[::1], "
             "float64, int8[::1], float64[::1], float64[::1], int64[:, ::1])")

#: Instances per chunk of a rule: one bit each in the chunk's uint64 activity mask.
_CHUNK = 64
_ONE = np.uint64(1)


# Condition tests over m consecutive values a[s:s+m]. One loop per operator (the operator is
# fixed per rule), indices as uint64 so that Numba emits no negative-index wrap-around: the
# loops are then plain vector compares (16 values per ~10 instructions).

@njit(inline="always")
def _count_holds(a, s, m, op, thr):
    """Number of values in ``a[s:s+m]`` for which the condition ``value <op> thr`` holds."""
    n = 0
    if op == 0:
        for k in range(m):
            n += a[np.uint64(s + k)] > thr
    elif op == 1:
        for k in range(m):
            n += a[np.uint64(s + k)] >= thr
    elif op == 2:
        for k in range(m):
            n += a[np.uint64(s + k)] < thr
    elif op == 3:
        for k in range(m):
            n += a[np.uint64(s + k)] <= thr
    elif op == 4:
        for k in range(m):
            n += a[np.uint64(s + k)] == thr
    else:                       # != : NaN (no data) never holds
        for k in range(m):
            v = a[np.uint64(s + k)]
            n += (v > thr) | (v < thr)
    return n


@njit(inline="always")
def _hold_mask(a, s, m, op, thr):
    """Bit k set when the condition holds for ``a[s+k]`` (m <= 64)."""
    b = np.uint64(0)
    if op == 0:
        for k in range(m):
            b |= np.uint64(a[np.uint64(s + k)] > thr) << np.uint64(k)
    elif op == 1:
        for k in range(m):
            b |= np.uint64(a[np.uint64(s + k)] >= thr) << np.uint64(k)
    elif op == 2:
        for k in range(m):
            b |= np.uint64(a[np.uint64(s + k)] < thr) << np.uint64(k)
    elif op == 3:
        for k in range(m):
            b |= np.uint64(a[np.uint64(s + k)] <= thr) << np.uint64(k)
    elif op == 4:
        for k in range(m):
            b |= np.uint64(a[np.uint64(s + k)] == thr) << np.uint64(k)
    else:
        for k in range(m):
            v = a[np.uint64(s + k)]
            b |= np.uint64((v > thr) | (v < thr)) << np.uint64(k)
    return b


@njit(_EVAL_SIG, cache=True)
def _evaluate_kernel(values, order, order_ts, c_stat, c_q, c_lo, c_hi, cs_ptr, cs_sid,
                     s_reduce, s_mptr, s_pos, s_grp, s_gptr, vals, g_cnt,
                     r_inst, r_op, r_thr, r_for, r_vbase, r_pptr, i_vpos, r_cptr, c_act, r_nact, tmp,
                     now, state, since, fired, trans):
    """Every rule at once; returns the number of state transitions written to ``trans``.

    ``vals`` holds every value the rules compare: first the combo values, then the group values.

    1. For every combo c (statistic ``c_stat[c]``/``c_q[c]`` over ``order[c_lo[c]:c_hi[c]]``), the
       statistic of each series ``cs_sid[cs_ptr[c]:cs_ptr[c+1]]`` into ``vals`` (same positions).
    2. For every *value set* s (the distinct (combo, series, grouping, reducer) of the grouped
       rules; rules that differ only in threshold, op, ``for`` or severity share one), its
       memberships ``m`` in ``s_mptr[s]:s_mptr[s+1]`` fold ``vals[s_pos[m]]`` into group
       ``s_grp[m]`` with the set's reducer; the group values go to
       ``vals[cs_ptr[-1] + s_gptr[s]:...]`` (NaN: no data).
    3. For every rule r, instance ``r_inst[r] + k`` compares ``vals[r_vbase[r] + k]`` (or, when the
       rule's values are not one contiguous range, ``vals[i_vpos[r_pptr[r] + k]]``) with the
       threshold and, when it holds or was holding, moves through the state machine (see the
       module docstring), in instance order. Most instances do neither, so the work follows
       the few that do: ``r_nact[r]`` counts rule r's pending and firing instances and
       ``c_act[r_cptr[r] + k // 64]`` has bit ``k % 64`` set for each (both kept up to date
       here). A rule with none active is skipped after one vectorised count of its holding
       values; otherwise each chunk of 64 instances with an active bit or a holding value
       walks just those bits.
    """
    for c in range(c_stat.shape[0]):
        a, b = cs_ptr[c], cs_ptr[c + 1]
        if b == a:
            continue
        mk._series_window(values, order[c_lo[c]:c_hi[c]], order_ts[c_lo[c]:c_hi[c]], cs_sid[a:b],
                          c_stat[c], c_q[c], vals[a:b])
    n_cv = cs_ptr[cs_ptr.shape[0] - 1]
    for s in range(s_reduce.shape[0]):
        g0 = s_gptr[s]
        ng = s_gptr[s + 1] - g0
        red = s_reduce[s]
        gv = vals[n_cv + g0:n_cv + g0 + ng]
        gc = g_cnt[g0:g0 + ng]
        # Missing values are folded in as no-ops (0.0 into sums, -inf/+inf into max/min), which
        # is exact and keeps each loop free of branches (see metrics_kernels' row updates).
        init = -np.inf if red == 1 else np.inf if red == 2 else 0.0
        for g in range(ng):
            gv[g] = init
            gc[g] = 0
        m0, m1 = s_mptr[s], s_mptr[s + 1]
        if red == 1:                      # max: the first of equal values is kept
            for m in range(m0, m1):
                v = vals[np.uint64(s_pos[m])]
                g = np.uint64(s_grp[m])
                x = gv[g]
                gv[g] = v if v > x else x
                gc[g] += v == v
        elif red == 2:                    # min
            for m in range(m0, m1):
                v = vals[np.uint64(s_pos[m])]
                g = np.uint64(s_grp[m])
                x = gv[g]
                gv[g] = v if v < x else x
                gc[g] += v == v
        else:                             # mean, sum, count
            for m in range(m0, m1):
                v = vals[np.uint64(s_pos[m])]
                g = np.uint64(s_grp[m])
                ok = v == v
                gv[g] += v if ok else 0.0
                gc[g] += ok
        for g in range(ng):
            c = gc[g]
            if c == 0:
                gv[g] = np.nan
            elif red == 0:
                gv[g] = gv[g] / c
            elif red == 4:
                gv[g] = float(c)
    n = 0
    for r in range(r_op.shape[0]):
        i0 = r_inst[r]
        nr = r_inst[r + 1] - i0
        op = r_op[r]
        thr = r_thr[r]
        base = r_vbase[r]
        p0 = r_pptr[r]
        if r_nact[r] == 0:
            if base >= 0:
                held = _count_holds(vals, base, nr, op, thr)
            else:
                held = 0
                for c0 in range(0, nr, _CHUNK):
                    m = min(_CHUNK, nr - c0)
                    for k in range(m):
                        tmp[k] = vals[np.uint64(i_vpos[np.uint64(p0 + c0 + k)])]
                    held += _count_holds(tmp, 0, m, op, thr)
            if held == 0:
                continue
        for_s = r_for[r]
        ch = r_cptr[r]
        for c0 in range(0, nr, _CHUNK):
            m = min(_CHUNK, nr - c0)
            if base >= 0:
                arr = vals
                s0 = base + c0
            else:
                for k in range(m):
                    tmp[k] = vals[np.uint64(i_vpos[np.uint64(p0 + c0 + k)])]
                arr = tmp
                s0 = 0
            bits = c_act[ch]
            holds = np.uint64(0)
            if _count_holds(arr, s0, m, op, thr) != 0:
                holds = _hold_mask(arr, s0, m, op, thr)
                bits |= holds
            while bits != 0:
                k = trailing_zeros(bits)
                bit = _ONE << np.uint64(k)
                bits &= ~bit
                i = i0 + c0 + k
                # The state machine, written out here (a helper function, even inlined by
                # Numba, would pay reference counting for its five arrays on every call).
                hold = (holds & bit) != 0
                st = state[i]
                code = 0
                if st == INACTIVE:
                    if hold:
                        since[i] = now
                        if for_s <= 0.0:
                            state[i] = FIRING
                            fired[i] = now
                            code = T_FIRING
                        else:
                            state[i] = PENDING
                            code = T_PENDING
                        c_act[ch] |= bit
                        r_nact[r] += 1
                elif not hold:
                    state[i] = INACTIVE
                    code = T_CLEARED if st == PENDING else T_RESOLVED
                    c_act[ch] &= ~bit
                    r_nact[r] -= 1
                elif st == PENDING and now - since[i] >= for_s:
                    state[i] = FIRING
                    fired[i] = now
                    code = T_FIRING
                if code != 0:
                    trans[n, 0] = i
                    trans[n, 1] = code
                    n += 1
            ch += 1
    return n


# ------------------------------------------------------------------------------ events, sinks

def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


@dataclass
class AlertEvent:
    """One state change of one alert instance (or the current state, from :meth:`AlertManager.active`)."""

    rule: str
    state: str                 #: pending, firing, cleared (pending that stopped), resolved
    severity: str
    group: str                 #: the instance's group (series, GPU, node... name)
    value: float
    threshold: float
    labels: dict
    summary: str
    timestamp: float           #: evaluation time of the change
    started: float             #: when the condition started holding
    fired: float | None = None
    involved: dict | None = None   #: {"kind", "name", "namespace"} of a Pod or Node, if any

    def to_dict(self) -> dict:
        return {"rule": self.rule, "state": self.state, "severity": self.severity, "group": self.group,
                "value": None if self.value != self.value else self.value, "threshold": self.threshold,
                "labels": self.labels, "summary": self.summary, "timestamp": self.timestamp,
                "startsAt": _iso(self.started), "firedAt": _iso(self.fired) if self.fired else None}


class Sink:
    """Where alert events go. ``send`` receives the events of one evaluation (never empty)."""

    def send(self, events: list[AlertEvent]) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class LogSink(Sink):
    """Logs firing (warning/error by severity) and resolved (info) events; pending ones at debug."""

    LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or log

    def send(self, events):
        for e in events:
            level = self.LEVELS[e.severity] if e.state == "firing" else \
                logging.INFO if e.state == "resolved" else logging.DEBUG
            self.logger.log(level, "alert %s %s [%s] %s: %s (value %.4g)", e.rule, e.state.upper(),
                            e.severity, e.group, e.summary, e.value)


class WebhookError(RuntimeError):
    """A webhook delivery that failed for good (permanent status or retries exhausted)."""


class WebhookSink(Sink):
    """POST firing and resolved events as Alertmanager-style webhook JSON, with retries.

    Parameters
    ----------
    url : str
        http(s) endpoint.
    retries : int
        Attempts after the first on connection errors, timeouts, 429 and 5xx answers; other 4xx
        answers are permanent (the payload will not get better).
    backoff, max_backoff : float
        Delay before retry k is ``min(max_backoff, backoff * 2**k)`` seconds, or the server's
        ``Retry-After`` (seconds) when it sends one, capped the same way.
    timeout : float
        Seconds per request.
    sleep : callable
        Injected for tests (``time.sleep`` by default).

    Failures never raise out of :meth:`send`: they are logged and counted (``failures``,
    ``last_error``), so a dead receiver cannot stop the alert manager.
    """

    def __init__(self, url: str, retries: int = 3, backoff: float = 0.5, max_backoff: float = 30.0,
                 timeout: float = 5.0, headers: dict | None = None, sleep=time.sleep,
                 receiver: str = "kaiwo"):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {url!r}: expected an http:// or https:// URL")
        if retries < 0 or backoff < 0 or max_backoff < 0 or timeout <= 0:
            raise ValueError(f"webhook {url}: retries = {retries}, backoff = {backoff}, max_backoff = "
                             f"{max_backoff} must be >= 0 and timeout = {timeout} > 0")
        self.url, self.retries, self.backoff, self.max_backoff = url, int(retries), backoff, max_backoff
        self.timeout, self.headers, self.sleep, self.receiver = timeout, dict(headers or {}), sleep, receiver
        self.sent = 0
        self.failures = 0
        self.attempts = 0
        self.last_error: str | None = None

    def payload(self, events: list[AlertEvent]) -> dict:
        """Alertmanager webhook (version 4) document for the events."""
        alerts = [{
            "status": "firing" if e.state == "firing" else "resolved",
            "labels": {"alertname": e.rule, "severity": e.severity, **e.labels},
            "annotations": {"summary": e.summary},
            "startsAt": _iso(e.fired or e.started),
            "endsAt": _iso(e.timestamp) if e.state == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": f"{e.rule}/{e.group}",
        } for e in events]
        firing = any(a["status"] == "firing" for a in alerts)
        return {"version": "4", "groupKey": "kaiwo", "status": "firing" if firing else "resolved",
                "receiver": self.receiver, "groupLabels": {}, "commonLabels": {},
                "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0, "alerts": alerts}

    def send(self, events):
        events = [e for e in events if e.state in ("firing", "resolved")]
        if not events:
            return
        try:
            self.post(self.payload(events))
            self.sent += len(events)
        except WebhookError as e:
            self.failures += 1
            self.last_error = str(e)
            log.error("%s", e)

    def post(self, doc: dict) -> int:
        """POST ``doc``; returns the HTTP status. Raises :class:`WebhookError` when delivery fails."""
        body = json.dumps(doc).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        last = ""
        for attempt in range(self.retries + 1):
            self.attempts += 1
            retry_after = None
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return resp.status
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} {e.reason}"
                if e.code != 429 and e.code < 500:
                    raise WebhookError(f"webhook {self.url}: {last} (not retried)") from None
                ra = e.headers.get("Retry-After") if e.headers else None
                if ra and ra.strip().isdigit():
                    retry_after = float(ra)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = str(getattr(e, "reason", e))
            if attempt < self.retries:
                delay = retry_after if retry_after is not None else self.backoff * 2 ** attempt
                self.sleep(min(self.max_backoff, delay))
        raise WebhookError(f"webhook {self.url}: giving up after {self.retries + 1} attempts: {last}")


class CallbackSink(Sink):
    """Calls ``fn(event)`` for every event (states in ``states``); the controller's hook for
    Kubernetes Events (see :func:`kubernetes_event`)."""

    def __init__(self, fn, states=("firing", "resolved")):
        self.fn, self.states = fn, tuple(states)

    def send(self, events):
        for e in events:
            if e.state in self.states:
                self.fn(e)


def kubernetes_event(event: AlertEvent, component: str = "kaiwo", namespace: str = "default") -> dict:
    """A core/v1 Event body for an alert event, attached to its Pod or Node when it has one."""
    obj = event.involved or {}
    ts = _iso(event.timestamp)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"kaiwo-alert-{event.rule.lower()}-",
                     "namespace": obj.get("namespace") or namespace},
        "involvedObject": {k: v for k, v in obj.items() if v} or {"kind": "Namespace", "name": namespace},
        "reason": event.rule, "message": f"[{event.state}] {event.summary}"[:1024],
        "type": "Warning" if event.state == "firing" and event.severity != "info" else "Normal",
        "source": {"component": component}, "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
    }


# ------------------------------------------------------------------------------ manager

@dataclass
class _Program:
    """Rules compiled against one version of the store's series (see :func:`_evaluate_kernel`)."""

    version: int
    combos: list                  #: (stat code, q, window) per combo
    c_stat: np.ndarray
    c_q: np.ndarray
    c_window: np.ndarray
    cs_ptr: np.ndarray            #: combo c's values are vals[cs_ptr[c]:cs_ptr[c+1]]
    cs_sid: np.ndarray            #: ... the statistic of these series (ascending per combo)
    s_reduce: np.ndarray          #: per value set: reducer code
    s_mptr: np.ndarray            #: set s's memberships: s_mptr[s]:s_mptr[s+1]
    s_pos: np.ndarray             #: int32 position of a membership's series in vals
    s_grp: np.ndarray             #: int32 group of a membership, local to its set
    s_gptr: np.ndarray            #: set s's group values: vals[n_cv + s_gptr[s]:...]
    r_inst: np.ndarray            #: rule r's instances: r_inst[r]:r_inst[r+1]
    r_op: np.ndarray
    r_thr: np.ndarray
    r_for: np.ndarray
    r_vbase: np.ndarray           #: instance r_inst[r] + k compares vals[r_vbase[r] + k] ...
    r_pptr: np.ndarray            #: ... or, when r_vbase[r] < 0, vals[i_vpos[r_pptr[r] + k]]
    i_vpos: np.ndarray            #: int32
    r_cptr: np.ndarray            #: rule r's chunks of _CHUNK instances: r_cptr[r]:r_cptr[r+1]
    inst_rule: np.ndarray
    inst_group: np.ndarray        #: group id (sid for by: series) per instance
    inst_keys: list               #: stable identity per instance (survives recompiles)
    n_memberships: int            #: (rule, series) pairs
    _inst_pos: np.ndarray | None = None

    @property
    def n_instances(self) -> int:
        return len(self.inst_rule)

    @property
    def n_values(self) -> int:
        """Length of the kernel's ``vals``: combo values, then group values."""
        return int(self.cs_ptr[-1] + self.s_gptr[-1])

    def inst_pos(self) -> np.ndarray:
        """Position in ``vals`` of every instance's value (built on first use)."""
        if self._inst_pos is None:
            n_r = np.diff(self.r_inst)
            start = np.repeat(self.r_inst[:-1], n_r)
            pos = np.repeat(self.r_vbase, n_r) + (np.arange(self.n_instances) - start)
            gather = np.repeat(self.r_vbase < 0, n_r)
            pos[gather] = self.i_vpos   # the gather rules' positions, in instance order
            self._inst_pos = pos
        return self._inst_pos

    def value_pos(self, i: int) -> int:
        """Position in ``vals`` of instance i's value."""
        r = int(self.inst_rule[i])
        k = i - int(self.r_inst[r])
        base = int(self.r_vbase[r])
        return base + k if base >= 0 else int(self.i_vpos[self.r_pptr[r] + k])


def _activity(prog: _Program, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chunk activity bits, active instances per rule) of ``state`` (see :func:`_evaluate_kernel`)."""
    n_r = np.diff(prog.r_inst)
    c_act = np.zeros(int(prog.r_cptr[-1]), np.uint64)
    active = np.flatnonzero(state != INACTIVE)
    rule = prog.inst_rule[active]
    local = active - prog.r_inst[rule]
    np.bitwise_or.at(c_act, prog.r_cptr[rule] + local // _CHUNK,
                     np.left_shift(np.uint64(1), (local % _CHUNK).astype(np.uint64)))
    r_nact = np.bincount(rule, minlength=len(n_r)).astype(np.int64)
    return c_act, r_nact


class AlertManager:
    """Evaluates a rule set over a :class:`MetricsStore` and keeps the alert states.

    Parameters
    ----------
    rules : RuleSet, list of Rule, or anything :func:`load_rules` takes
    store : MetricsStore
    sinks : list of Sink
        Default: one :class:`LogSink`.
    history : int
        Events kept in :attr:`history` (oldest dropped first).
    """

    def __init__(self, rules, store: MetricsStore, sinks=None, history: int = 1000):
        if not isinstance(rules, RuleSet):
            rules = RuleSet(list(rules), []) if isinstance(rules, list) and all(
                isinstance(r, Rule) for r in rules) else load_rules(rules)
        if history < 1:
            raise ValueError(f"history = {history!r}: must keep at least one event")
        self.rules: list[Rule] = list(rules.rules)
        self.errors: list[RuleError] = list(rules.errors)
        #: rule name -> RuleError of a summary that failed to render at evaluation (first failure)
        self.template_errors: dict[str, RuleError] = {}
        self.store = store
        self.sinks = [LogSink()] if sinks is None else list(sinks)
        self.history: deque = deque(maxlen=int(history))
        self.sink_errors = 0
        self._prog: _Program | None = None
        self.state = np.zeros(0, np.int8)
        self.since = np.zeros(0)
        self.fired = np.zeros(0)
        self.last_eval: float | None = None
        # Which instances are pending or firing, per chunk of _CHUNK instances (bits) and per
        # rule (counts): derived from state when the program changes, then kept up to date by
        # the kernel, which owns state, since and fired.
        self._c_act = np.zeros(0, np.uint64)
        self._r_nact = np.zeros(0, np.int64)
        # Kernel scratch, allocated once per program (the program only changes with the series
        # set); _vals also keeps the last evaluation's values for the events and values().
        self._scratch_prog: _Program | None = None
        self._vals = self._g_cnt = self._tmp = self._trans = None
        self._vals_prog: _Program | None = None   # the program whose evaluation _vals holds

    # ---------------------------------------------------------------------------- compile
    def _compile(self) -> _Program:
        st = self.store
        combos: dict = {}
        combo_sids: list[list] = []
        per_rule = []
        inst_rule, inst_group, inst_keys = [], [], []
        r_inst = [0]
        for ri, rule in enumerate(self.rules):
            sids = st.select(rule.metric, rule.matchers)
            if rule.by == "series":
                gkey = sids.copy()
            else:
                gkey, _ = st.group_keys(sids, rule.by)
            ok = gkey >= 0
            sids, gkey = sids[ok], gkey[ok]
            groups, inst_local = np.unique(gkey, return_inverse=True)
            code, q = mk.STATS[rule.aggregation]
            ckey = (code, q, rule.window)
            c = combos.get(ckey)
            if c is None:
                c = combos[ckey] = len(combo_sids)
                combo_sids.append([])
            combo_sids[c].append(sids)
            # One instance per membership, in membership order (by: series; by: gpu when every
            # GPU has one series): the instances compare the combo values themselves, no fold.
            # (count is the only reducer that changes a single value.)
            identity = rule.reduce != "count" and bool(np.array_equal(inst_local, np.arange(len(sids))))
            per_rule.append((c, sids, inst_local.astype(np.int64), len(groups), identity))
            inst_rule.append(np.full(len(groups), ri, np.int64))
            inst_group.append(groups.astype(np.int64))
            if rule.by == "series":
                inst_keys.extend((rule.name, st.keys[g]) for g in groups)
            else:
                inst_keys.extend((rule.name, rule.by, int(g)) for g in groups)
            r_inst.append(r_inst[-1] + len(groups))
        # Each combo computes its statistic once, for the union of its rules' series.
        cs_list = [np.unique(np.concatenate(s)) if s else np.zeros(0, np.int64) for s in combo_sids]
        cs_ptr = np.zeros(len(cs_list) + 1, np.int64)
        cs_ptr[1:] = np.cumsum([len(s) for s in cs_list])
        n_cv = int(cs_ptr[-1])
        # Grouped rules that read the same series the same way (same combo, series, grouping
        # and reducer: they differ in threshold, op, for, severity...) share one value set, so
        # the fold runs once for all of them.
        sets: dict = {}
        s_reduce, s_mptr, s_pos, s_grp, s_gptr = [], [0], [], [], [0]
        r_vbase, r_pptr, i_vpos = [], [0], []
        for (c, sids, inst_local, n_groups, identity), rule in zip(per_rule, self.rules):
            pos = cs_ptr[c] + np.searchsorted(cs_list[c], sids)     # ascending, as sids are
            if identity:
                if len(pos) == 0 or pos[-1] - pos[0] == len(pos) - 1:
                    r_vbase.append(int(pos[0]) if len(pos) else 0)   # one contiguous range
                else:
                    r_vbase.append(-1)
                    i_vpos.append(pos)
                r_pptr.append(r_pptr[-1] + (len(pos) if r_vbase[-1] < 0 else 0))
                continue
            red = REDUCERS[rule.reduce]
            key = (c, red, sids.tobytes(), inst_local.tobytes())
            s = sets.get(key)
            if s is None:
                s = sets[key] = len(s_reduce)
                s_reduce.append(red)
                s_pos.append(pos)
                s_grp.append(inst_local)
                s_mptr.append(s_mptr[-1] + len(pos))
                s_gptr.append(s_gptr[-1] + n_groups)
            r_vbase.append(n_cv + s_gptr[s])
            r_pptr.append(r_pptr[-1])
        keys = list(combos)
        r_cptr = np.zeros(len(self.rules) + 1, np.int64)
        r_cptr[1:] = np.cumsum(-(-np.diff(np.array(r_inst, np.int64)) // _CHUNK))

        def cat(parts, dtype):
            return np.ascontiguousarray(np.concatenate(parts), dtype=dtype) if parts else np.zeros(0, dtype)

        return _Program(
            version=st.version, combos=keys,
            c_stat=np.array([k[0] for k in keys], np.int64), c_q=np.array([k[1] for k in keys], np.float64),
            c_window=np.array([k[2] for k in keys], np.float64), cs_ptr=cs_ptr,
            cs_sid=cat(cs_list, np.int64),
            s_reduce=np.array(s_reduce, np.int64), s_mptr=np.array(s_mptr, np.int64),
            s_pos=cat(s_pos, np.int32), s_grp=cat(s_grp, np.int32), s_gptr=np.array(s_gptr, np.int64),
            r_inst=np.array(r_inst, np.int64),
            r_op=np.array([OPS[r.op] for r in self.rules], np.int64),
            r_thr=np.array([r.threshold for r in self.rules], np.float64),
            r_for=np.array([r.for_ for r in self.rules], np.float64),
            r_vbase=np.array(r_vbase, np.int64), r_pptr=np.array(r_pptr, np.int64),
            i_vpos=cat(i_vpos, np.int32), r_cptr=r_cptr,
            inst_rule=cat(inst_rule, np.int64), inst_group=cat(inst_group, np.int64), inst_keys=inst_keys,
            n_memberships=sum(len(p[1]) for p in per_rule))

    def program(self) -> _Program:
        """The compiled rules, rebuilt when the store's series changed; alert states carry over
        by instance identity (rule and group)."""
        if self._prog is not None and self._prog.version == self.store.version:
            return self._prog
        new = self._compile()
        n = new.n_instances
        state, since, fired = np.zeros(n, np.int8), np.zeros(n), np.zeros(n)
        if self._prog is not None and len(self.state):
            old = {k: i for i, k in enumerate(self._prog.inst_keys)}
            pairs = [(j, old[k]) for j, k in enumerate(new.inst_keys) if k in old]
            if pairs:
                nj, oj = np.array(pairs, np.int64).T
                state[nj], since[nj], fired[nj] = self.state[oj], self.since[oj], self.fired[oj]
            # Instances that vanished with their series resolve now if they were firing.
            gone = np.setdiff1d(np.arange(len(self.state)), oj if pairs else np.zeros(0, np.int64))
            self._vanished = [(self._prog, int(i), self._value(self._prog, int(i)), float(self.since[i]),
                               float(self.fired[i])) for i in gone if self.state[i] == FIRING]
        self._prog = new
        self.state, self.since, self.fired = state, since, fired
        self._c_act, self._r_nact = _activity(new, state)
        return new

    # --------------------------------------------------------------------------- evaluate
    def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """Evaluate every rule at ``now`` (default: the newest scrape); returns the transitions
        (pending, firing, cleared, resolved), after sending them to the sinks."""
        self._vanished = []
        prog = self.program()
        order, ts = self.store.ordered_slots()
        if now is None:
            if not len(ts):
                return []
            now = float(ts[-1])
        now = float(now)
        hi = np.full(len(prog.combos), np.searchsorted(ts, now, side="right"), np.int64)
        lo = np.searchsorted(ts, now - prog.c_window, side="right").astype(np.int64)
        if self._scratch_prog is not prog:
            self._vals = np.empty(prog.n_values, np.float64)
            self._g_cnt = np.empty(int(prog.s_gptr[-1]), np.int64)
            self._tmp = np.empty(_CHUNK, np.float64)
            self._trans = np.empty((prog.n_instances, 2), np.int64)
            self._scratch_prog = prog
        n = _evaluate_kernel(self.store.values, order, np.ascontiguousarray(ts), prog.c_stat, prog.c_q,
                             lo, hi, prog.cs_ptr, prog.cs_sid, prog.s_reduce, prog.s_mptr, prog.s_pos,
                             prog.s_grp, prog.s_gptr, self._vals, self._g_cnt, prog.r_inst, prog.r_op,
                             prog.r_thr, prog.r_for, prog.r_vbase, prog.r_pptr, prog.i_vpos, prog.r_cptr,
                             self._c_act, self._r_nact, self._tmp, now, self.state, self.since, self.fired,
                             self._trans)
        self._vals_prog = prog
        trans = self._trans
        self.last_eval = now
        events = [self._event(prog, int(i), TRANSITION_STATE[int(code)], now) for i, code in trans[:n]]
        for old_prog, i, value, since, fired in self._vanished:
            ev = self._event(old_prog, i, "resolved", now, value=value, since=since, fired=fired)
            events.append(ev)
        self._dispatch(events)
        return events

    def _value(self, prog: _Program, i: int) -> float:
        """Value of instance i at the last evaluation (NaN: no data, or not evaluated since the
        series changed)."""
        if self._vals_prog is not prog:
            return float("nan")
        return float(self._vals[prog.value_pos(i)])

    def values(self) -> np.ndarray:
        """Value of every instance at the last evaluation (NaN = no data), in program order."""
        prog = self.program()
        if self._vals_prog is not prog:
            return np.full(prog.n_instances, np.nan)
        return self._vals[prog.inst_pos()]

    def _group_fields(self, prog: _Program, i: int) -> tuple[str, dict, dict, dict | None]:
        """(group name, template fields, alert labels, involved object) of an instance."""
        st = self.store
        rule = self.rules[int(prog.inst_rule[i])]
        g = int(prog.inst_group[i])
        f: dict = {}
        labels: dict = {}
        involved = None
        if rule.by == "series":
            # From the key saved at compile time, not the sid: a series pruned since then (an
            # alert that resolves because its series vanished) is still described correctly.
            name, items = prog.inst_keys[i][1]
            f["labels"] = dict(items)
            labels.update(f["labels"])
            node_name = next((f["labels"][k] for k in ("hostname", "node") if f["labels"].get(k)), "")
            gpu = f["labels"].get("gpu_id", "")
            part = f["labels"].get("gpu_partition_id", "0" if gpu else "")
            f.update(node=node_name, gpu=gpu, partition=part,
                     device=(f"{node_name}/gpu{gpu}" + (f".p{part}" if part not in ("", "0") else ""))
                     if gpu and node_name else "")
            ns, pod_name = f["labels"].get("namespace", ""), f["labels"].get("pod", "")
            pod = st.pods.index.get(f"{ns}/{pod_name}" if ns else pod_name, -1) if pod_name else -1
            f.update(self._pod_fields(pod))
            group = name + ("{" + ",".join(f'{k}="{v}"' for k, v in items) + "}" if items else "")
            involved = self._involved(pod, st.nodes.index.get(node_name, -1))
        elif rule.by == "gpu":
            n, gpu, part = st.device_keys[g]
            f.update(node=st.nodes.names[n], gpu=str(gpu), partition=str(part), device=st.device_name(g))
            labels.update(node=f["node"], gpu=f["gpu"], partition=f["partition"])
            group = f["device"]
            involved = self._involved(-1, n)
        elif rule.by == "node":
            group = f["node"] = labels["node"] = st.nodes.names[g]
            involved = self._involved(-1, g)
        elif rule.by == "pod":
            f.update(self._pod_fields(g))
            labels.update(pod=f["pod"], namespace=f["namespace"])
            group = st.pods.names[g]
            involved = self._involved(g, -1)
        elif rule.by == "namespace":
            group = f["namespace"] = labels["namespace"] = st.namespaces.names[g]
        elif rule.by == "queue":
            group = f["queue"] = labels["queue"] = st.queues.names[g]
        elif rule.by == "job":
            group = f["job"] = labels["job"] = st.jobs.names[g]
        else:
            group = "cluster"
        labels.update(dict(rule.labels))
        return group, f, labels, involved

    def _pod_fields(self, pod: int) -> dict:
        st = self.store
        if pod < 0:
            return {"pod": "", "namespace": "", "queue": "", "job": ""}
        full = st.pods.names[pod]
        ns, _, name = full.rpartition("/")
        q, j = st.pod_queue[pod], st.pod_job[pod]
        return {"pod": name, "namespace": ns, "queue": st.queues.names[q] if q >= 0 else "",
                "job": st.jobs.names[j] if j >= 0 else ""}

    def _involved(self, pod: int, node: int) -> dict | None:
        st = self.store
        if pod >= 0:
            ns, _, name = st.pods.names[pod].rpartition("/")
            return {"kind": "Pod", "name": name, "namespace": ns}
        if node >= 0:
            return {"kind": "Node", "name": st.nodes.names[node]}
        return None

    def _event(self, prog: _Program, i: int, state: str, now: float, value=None, since=None,
               fired=None) -> AlertEvent:
        rule = self.rules[int(prog.inst_rule[i])]
        group, f, labels, involved = self._group_fields(prog, i)
        value = self._value(prog, i) if value is None else value
        fields = {"rule": rule.name, "metric": rule.metric, "value": value, "threshold": rule.threshold,
                  "op": rule.op, "severity": rule.severity, "window": f"{rule.window:g}s",
                  "for": f"{rule.for_:g}s", "by": rule.by, "group": group, **f}
        try:
            summary = rule.summary.format_map(fields) if rule.summary else \
                f"{rule.name}: {rule.aggregation}({rule.metric}) {rule.op} {rule.threshold:g} on {group}"
        except Exception as e:  # noqa: BLE001 - data the load-time check could not foresee
            # (a label the series lacks): the alert still goes out, and the rule is reported once.
            summary = f"{rule.name} on {group} (summary template failed: {e})"
            if rule.name not in self.template_errors:
                self.template_errors[rule.name] = RuleError(
                    rule.name, "summary", rule.summary, f"cannot be rendered for {group}: {e}")
        started = float(self.since[i]) if since is None else since
        fired_at = (float(self.fired[i]) if fired is None else fired) if state in ("firing", "resolved") else None
        return AlertEvent(rule.name, state, rule.severity, group, value, rule.threshold, labels, summary,
                          now, started, fired_at, involved)

    def _dispatch(self, events: list[AlertEvent]) -> None:
        if not events:
            return
        self.history.extend(events)
        for sink in self.sinks:
            try:
                sink.send(events)
            except Exception:  # noqa: BLE001 - a broken sink must not stop alerting
                self.sink_errors += 1
                log.exception("alert sink %s failed", type(sink).__name__)

    # ------------------------------------------------------------------------------ queries
    def active(self) -> list[AlertEvent]:
        """Pending and firing alerts now, firing first, then by severity and rule."""
        prog = self.program()
        idx = np.flatnonzero(self.state > INACTIVE)
        now = self.last_eval if self.last_eval is not None else 0.0
        out = [self._event(prog, int(i), STATE_NAMES[int(self.state[i])], now) for i in idx]
        rank = {s: k for k, s in enumerate(reversed(SEVERITIES))}
        out.sort(key=lambda e: (e.state != "firing", rank[e.severity], e.rule, e.group))
        return out

    def counts(self) -> dict:
        """{(state, severity): number of instances} for pending and firing alerts."""
        if self._prog is None or not len(self.state):
            return {}
        sev = np.array([SEVERITIES.index(r.severity) for r in self.rules], np.int64)
        inst_sev = sev[self._prog.inst_rule] if len(self._prog.inst_rule) else np.zeros(0, np.int64)
        out = {}
        for s in (PENDING, FIRING):
            for k, name in enumerate(SEVERITIES):
                out[(STATE_NAMES[s], name)] = int(np.count_nonzero((self.state == s) & (inst_sev == k)))
        return out


# ------------------------------------------------------------------------------ plugin

@register
class AlertsPlugin(Plugin):
    """Evaluates alert rules at the end of every scheduling cycle."""

    name = "alerts"
    config_schema = {
        "rules": (str, None, "path of the rules YAML file"),
        "webhook": (str, None, "URL to POST firing/resolved alerts to (Alertmanager JSON)"),
        "history": (int, 1000, "alert events kept in memory"),
    }

    def __init__(self, store: MetricsStore | None = None, **config):
        self.store = store
        self.manager: AlertManager | None = None
        self.rule_errors: list = []
        self.last_events: list = []
        super().__init__(**config)

    def attach(self, store: MetricsStore) -> None:
        """Evaluate over ``store`` (otherwise over ``ctx.extra["metrics_store"]`` of each cycle)."""
        self.store = store
        if self.manager is not None:
            self.manager.store = store
            self.manager._prog = None

    def start(self) -> None:
        path = self.config["rules"]
        if not path:
            raise PluginError("plugin 'alerts': config 'rules' (path of a rules file) is required")
        try:
            rs = load_rules(Path(path))
        except RuleError as e:
            raise PluginError(f"plugin 'alerts': {e}") from None
        self.rule_errors = rs.errors
        for e in rs.errors:
            log.error("alerts plugin: %s (rule skipped)", e)
        sinks: list = [LogSink()]
        if self.config["webhook"]:
            sinks.append(WebhookSink(self.config["webhook"]))
        self.manager = AlertManager(rs, self.store or MetricsStore(), sinks, self.config["history"])
        super().start()

    def on_cycle_end(self, ctx, result) -> None:
        store = self.store or ctx.extra.get("metrics_store")
        if store is None or self.manager is None:
            return
        if self.manager.store is not store:
            self.manager.store = store
            self.manager._prog = None
        self.last_events = self.manager.evaluate()
        ctx.extra["alerts"] = self.manager
