"""Metrics collector: series interned once, samples in a 2-D ring buffer, windowed statistics.

Design
------
A *series* is a metric name plus a label set (``gpu_gfx_activity{hostname="n1",gpu_id="3",...}``).
Every series is interned once to an integer id (``sid``) and described by integer label columns:

* the generic ``labels[name][sid]`` (id of the value in ``label_values[name]``, -1 = absent), and
* the columns analytics group by, resolved at intern time: ``node`` (``hostname`` or ``node``
  label), ``device`` (node, ``gpu_id``, ``gpu_partition_id``: one logical GPU), ``gpu``,
  ``partition``, ``pod`` (``namespace/pod``), ``namespace``; ``queue`` and ``job`` come through
  the pod (``pod_queue``/``pod_job``), set by :meth:`MetricsStore.set_pod_info` or read from
  kube-state-metrics' ``kube_pod_labels``.

Samples live in ``values[slot, sid]`` (float64), a ring of ``slots`` rows with one timestamp per row
(``slot_ts``): one row per scrape, NaN where a series had no sample. The orientation is chosen for
the two hot operations: ingesting a scrape writes one *contiguous* row (measured at scale M: 0.2 ms
for 64,000 series, against 1.0-1.3 ms for the transposed [series, slots] layout, whose column write
touches one cache line and one TLB page per series), and every windowed statistic streams the
window's rows in time order with per-series or per-group accumulators (see
:mod:`kaiwo_core.monitoring.metrics_kernels`). Grouping is by integer keys taken straight from the columns
(``node``, ``pod``...), so no sort or ``unique`` runs per query.

Ingestion
---------
* :meth:`MetricsStore.ingest` -- from arrays (``sids``, ``values``, timestamp): one compiled row
  write; this is the path for exporters already interned (a controller's own scrape loop, the
  history loader, benchmarks).
* :meth:`MetricsStore.ingest_text` -- Prometheus text: parsed by the compiled, strict parser of
  :mod:`kaiwo_core.monitoring.exposition`, whose hash table maps known series to their ids inside the kernel;
  only new series go through Python (decoded and interned once). Malformed lines are reported with
  their line numbers and skipped.

A scrape older than the latest slot is refused; one at the *same* timestamp merges into that slot
(several exporters scraped at one instant), and a series written twice in one slot is a duplicate
(reported, first sample kept).

Series never expire by themselves (ids must stay stable for alert state); :meth:`prune` drops
series without any sample left in the ring and renumbers the rest.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from . import metrics_kernels as mk
from .exposition import ERR_DUPLICATE_SERIES, ERR_UTF8, ExpositionError, KeyTable, decode_key, parse

NODE_LABELS = ("hostname", "node")
GPU_LABEL = "gpu_id"
PARTITION_LABEL = "gpu_partition_id"
POD_LABEL = "pod"
NAMESPACE_LABEL = "namespace"

#: Group-by names every store understands (any other label name groups by that label's value).
GROUP_BY = ("series", "device", "gpu", "node", "pod", "namespace", "queue", "job", "cluster")


#: Most scrapes a store keeps; the ring (slots x series) is allocated when the store is made.
MAX_SLOTS = 100_000

class StoreError(ValueError):
    """A scrape or query the store cannot accept (out-of-order time, bad ids, unknown names)."""


class SelectorError(ValueError):
    """A label selector that cannot be parsed or whose regular expression is invalid."""


@dataclass
class IngestReport:
    """What one scrape brought."""

    timestamp: float
    samples: int = 0          #: samples written
    new_series: int = 0       #: series seen for the first time
    duplicates: int = 0       #: samples dropped because their series was already in the slot
    errors: list = field(default_factory=list)  #: ExpositionError (malformed lines, duplicates)

    def to_dict(self) -> dict:
        return {"timestamp": self.timestamp, "samples": self.samples, "newSeries": self.new_series,
                "duplicates": self.duplicates, "errors": [e.to_dict() for e in self.errors]}


def _index(text: str) -> int:
    """A GPU or partition index label as an int, or -1 when it is not one: ASCII decimal digits
    below 2**31 only (``str.isdigit`` also accepts digits such as ``"²"`` that ``int`` refuses, and
    an index of 20 digits would overflow the int64 columns). Such a series is simply not tied to
    a device."""
    if 0 < len(text) <= 10 and text.isascii() and text.isdigit():
        value = int(text)
        if value < 2**31:
            return value
    return -1


# ------------------------------------------------------------------------------------ selectors

@dataclass(frozen=True)
class Matcher:
    """One label matcher, PromQL semantics: ``=``, ``!=``, ``=~`` and ``!~`` (regular expressions
    fully anchored); an absent label matches as the empty string."""

    label: str
    op: str
    value: str

    def __post_init__(self):
        if self.op not in ("=", "!=", "=~", "!~"):
            raise SelectorError(f"matcher {self.label}{self.op}{self.value!r}: unknown operator "
                                f"{self.op!r} (expected =, !=, =~ or !~)")
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as e:
                raise SelectorError(f"matcher {self.label}{self.op}\"{self.value}\": invalid regular "
                                    f"expression: {e}") from None
            except RecursionError:  # the regex parser recurses per nesting level ("((((...")
                raise SelectorError(f"matcher {self.label}{self.op}: regular expression nested too "
                                    "deeply") from None

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = re.fullmatch(self.value, value) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


_MATCHER_RE = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*(=~|!~|!=|=)[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*')


def parse_selector(selector) -> tuple[Matcher, ...]:
    """Matchers from ``'a="x", b=~"y.*"'`` (braces optional) or from a mapping ``{a: x}`` (equality).

    In quoted values ``\\"`` and ``\\\\`` are escapes; other backslashes are kept as they are, so
    regular expressions such as ``"gpu-\\d+"`` need no doubling.
    """
    if selector is None or selector == "":
        return ()
    if isinstance(selector, dict):
        out = []
        for k, v in selector.items():
            if not isinstance(k, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k):
                raise SelectorError(f"selector label {k!r}: not a valid label name")
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise SelectorError(f"selector {k}: value {v!r} must be a string")
            out.append(Matcher(k, "=", str(v)))
        return tuple(out)
    if not isinstance(selector, str):
        raise SelectorError(f"selector {selector!r}: expected a string like 'label=\"value\"' or a mapping")
    text = selector.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise SelectorError(f"selector {selector!r}: '{{' without a closing '}}'")
        text = text[1:-1]
    out, pos = [], 0
    while pos < len(text) and text[pos:].strip():
        m = _MATCHER_RE.match(text, pos)
        if not m:
            raise SelectorError(f"selector {selector!r}: cannot parse at character {pos + 1} "
                                f"({text[pos:pos + 20]!r}); expected label=\"value\", !=, =~ or !~")
        value = re.sub(r'\\(["\\])', r"\1", m.group(3))
        out.append(Matcher(m.group(1), m.group(2), value))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise SelectorError(f"selector {selector!r}: expected ',' at character {pos + 1}")
            pos += 1
    return tuple(out)


# ------------------------------------------------------------------------------------- results

@dataclass
class Aggregate:
    """A statistic per group (only groups with data): names, values and sample counts."""

    metric: str
    stat: str
    by: str
    window: float
    end: float
    names: list
    values: np.ndarray
    counts: np.ndarray

    def to_dict(self) -> dict:
        return {"metric": self.metric, "stat": self.stat, "by": self.by, "window": self.window,
                "end": self.end, "groups": [{"name": n, "value": float(v), "samples": int(c)}
                                            for n, v, c in zip(self.names, self.values, self.counts)]}


def _grow(a: np.ndarray, size: int, fill) -> np.ndarray:
    out = np.full((size,) + a.shape[1:], fill, dtype=a.dtype)
    out[:len(a)] = a
    return out


class _Names:
    """Interning table: name <-> dense id."""

    def __init__(self):
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def get(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i

    def __len__(self) -> int:
        return len(self.names)


# --------------------------------------------------------------------------------------- store

class MetricsStore:
    """Ring buffer of scrapes over interned series (see the module docstring).

    Parameters
    ----------
    slots : int
        Scrapes kept (ring length). 256 holds one hour at a 15 s scrape interval, with margin.
    series_capacity : int
        Initial number of series columns; the buffer doubles when more series arrive.
    """

    def __init__(self, slots: int = 256, series_capacity: int = 1024):
        if int(slots) < 2:
            raise StoreError(f"slots = {slots!r}: a ring needs at least 2 slots")
        if int(slots) > MAX_SLOTS:  # the ring is allocated up front: a typo must not take the memory
            raise StoreError(f"slots = {slots!r}: at most {MAX_SLOTS} (17 days of 15 s scrapes)")
        self.n_slots = int(slots)
        cap = max(16, int(series_capacity))
        self.values = np.full((self.n_slots, cap), np.nan)
        self.slot_ts = np.full(self.n_slots, np.nan)
        self.head = 0           # next slot to write
        self.filled = 0         # slots holding a scrape
        self._seq = 0           # scrape sequence number of the newest slot (duplicate stamps)
        self.n_series = 0
        self.version = 0        # bumped whenever series are added or renumbered
        self.stamp = np.full(cap, -1, np.int64)
        self.metric = np.full(cap, -1, np.int64)
        self.node = np.full(cap, -1, np.int64)
        self.device = np.full(cap, -1, np.int64)
        self.gpu = np.full(cap, -1, np.int64)
        self.partition = np.full(cap, -1, np.int64)
        self.pod = np.full(cap, -1, np.int64)
        self.namespace = np.full(cap, -1, np.int64)
        self.labels: dict[str, np.ndarray] = {}
        self._label_values: dict[str, _Names] = {}
        self.metrics = _Names()
        self.nodes = _Names()
        self.pods = _Names()
        self.namespaces = _Names()
        self.queues = _Names()
        self.jobs = _Names()
        self.device_keys: list[tuple[int, int, int]] = []
        self._device_index: dict[tuple[int, int, int], int] = {}
        self.pod_queue = np.full(16, -1, np.int64)
        self.pod_job = np.full(16, -1, np.int64)
        self.keys: list[tuple[str, tuple]] = []           # canonical key per sid
        self._series_index: dict[tuple[str, tuple], int] = {}
        self.table = KeyTable(cap)
        self._hashes = np.zeros(0, np.uint64)             # every (hash, sid) in the table
        self._hash_sids = np.zeros(0, np.int64)
        self._raw_index: dict[bytes, int] = {}            # raw key -> sid for ambiguous hashes
        self._by_metric: dict[int, np.ndarray] | None = None
        self._match_cache: dict = {}

    # ------------------------------------------------------------------------------ interning
    def __len__(self) -> int:
        return self.n_series

    def _ensure_capacity(self, n: int) -> None:
        cap = self.values.shape[1]
        if n <= cap:
            return
        new = max(n, cap * 2)
        values = np.full((self.n_slots, new), np.nan)
        values[:, :cap] = self.values
        self.values = values
        for name in ("stamp", "metric", "node", "device", "gpu", "partition", "pod", "namespace"):
            setattr(self, name, _grow(getattr(self, name), new, -1))
        for k in self.labels:
            self.labels[k] = _grow(self.labels[k], new, -1)

    def _label_col(self, label: str) -> np.ndarray:
        col = self.labels.get(label)
        if col is None:
            col = self.labels[label] = np.full(self.values.shape[1], -1, np.int64)
            self._label_values[label] = _Names()
        return col

    def label_values(self, label: str) -> list[str]:
        """The distinct values of a label, indexed by the ids in ``labels[label]``."""
        t = self._label_values.get(label)
        return t.names if t is not None else []

    def intern(self, name: str, labels: dict) -> int:
        """Id of the series ``name{labels}``, created if new (label order does not matter)."""
        key = (name, tuple(sorted((str(k), str(v)) for k, v in labels.items())))
        sid = self._series_index.get(key)
        if sid is None:
            sid = self._add_series([key])[0]
        return sid

    def intern_keys(self, keys: list) -> np.ndarray:
        """Ids of many series given as ``(name, labels dict)`` pairs, new ones added in bulk."""
        out = np.empty(len(keys), np.int64)
        new, where = [], []
        pending: dict = {}
        for i, (name, labels) in enumerate(keys):
            key = (name, tuple(sorted(labels.items())))
            sid = self._series_index.get(key)
            if sid is None:
                j = pending.get(key)
                if j is None:
                    j = pending[key] = len(new)
                    new.append(key)
                where.append((i, j))
                continue
            out[i] = sid
        if new:
            sids = self._add_series(new)
            for i, j in where:
                out[i] = sids[j]
        return out

    def intern_many(self, name: str, columns: dict) -> np.ndarray:
        """Ids of many series of one metric, labels given as equal-length columns."""
        cols = {k: list(map(str, v)) for k, v in columns.items()}
        n = len(next(iter(cols.values()))) if cols else 1
        if any(len(v) != n for v in cols.values()):
            raise StoreError(f"intern_many({name}): label columns of different lengths "
                             f"{ {k: len(v) for k, v in cols.items()} }")
        names = list(cols)
        return self.intern_keys([(name, dict(zip(names, row))) for row in zip(*cols.values())]
                                if cols else [(name, {})])

    def _add_series(self, keys: list) -> range:
        """Append new series (canonical keys, all unknown) and fill their columns in bulk."""
        n0 = self.n_series
        k = len(keys)
        self._ensure_capacity(n0 + k)
        self.n_series += k
        self.version += 1
        self._by_metric = None
        self._match_cache.clear()
        metric = np.empty(k, np.int64)
        node = np.full(k, -1, np.int64)
        gpu = np.full(k, -1, np.int64)
        part = np.full(k, -1, np.int64)
        device = np.full(k, -1, np.int64)
        pod = np.full(k, -1, np.int64)
        namespace = np.full(k, -1, np.int64)
        per_label: dict[str, tuple[list, list]] = {}
        metrics, nodes, namespaces = self.metrics.get, self.nodes.get, self.namespaces.get
        for i, key in enumerate(keys):
            name, items = key
            self._series_index[key] = n0 + i
            metric[i] = metrics(name)
            labels = dict(items)
            for lk, lv in items:
                idx, ids = per_label.get(lk) or per_label.setdefault(lk, ([], []))
                idx.append(i)
                ids.append(lv)
            host = labels.get("hostname") or labels.get("node")
            if host:
                node[i] = nodes(host)
            g = _index(labels.get(GPU_LABEL, ""))
            if g >= 0:
                gpu[i] = g
                part[i] = max(0, _index(labels.get(PARTITION_LABEL, "0")))
                if host:
                    dkey = (int(node[i]), g, int(part[i]))
                    d = self._device_index.get(dkey)
                    if d is None:
                        d = self._device_index[dkey] = len(self.device_keys)
                        self.device_keys.append(dkey)
                    device[i] = d
            ns = labels.get(NAMESPACE_LABEL, "")
            if ns:
                namespace[i] = namespaces(ns)
            pn = labels.get(POD_LABEL, "")
            if pn:
                pod[i] = self.pod_id(f"{ns}/{pn}" if ns else pn)
        self.keys.extend(keys)
        sl = slice(n0, n0 + k)
        self.metric[sl], self.node[sl], self.gpu[sl], self.partition[sl] = metric, node, gpu, part
        self.device[sl], self.pod[sl], self.namespace[sl] = device, pod, namespace
        for lk, (idx, vals) in per_label.items():
            col = self._label_col(lk)
            table = self._label_values[lk].get
            col[n0 + np.asarray(idx, np.int64)] = [table(v) for v in vals]
        return range(n0, n0 + k)

    def pod_id(self, name: str) -> int:
        """Id of a pod (``"namespace/name"``), added if new."""
        p = self.pods.get(name)
        if p >= len(self.pod_queue):
            self.pod_queue = _grow(self.pod_queue, 2 * (p + 1), -1)
            self.pod_job = _grow(self.pod_job, 2 * (p + 1), -1)
        return p

    def series_labels(self, sid: int) -> dict:
        """Metric name (as ``__name__``) and labels of a series."""
        name, items = self.keys[int(sid)]
        return {"__name__": name, **dict(items)}

    def series_name(self, sid: int) -> str:
        name, items = self.keys[int(sid)]
        return name + ("{" + ",".join(f'{k}="{v}"' for k, v in items) + "}" if items else "")

    def device_name(self, d: int) -> str:
        n, g, p = self.device_keys[int(d)]
        return f"{self.nodes.names[n]}/gpu{g}" + (f".p{p}" if p else "")

    # ---------------------------------------------------------------------------- pod info
    def set_pod_info(self, pods, queues=None, jobs=None) -> None:
        """Queue and job of pods (``"namespace/name"``), for grouping by queue or job."""
        pods = list(pods)
        for arr, names, table in ((queues, "queues", self.queues), (jobs, "jobs", self.jobs)):
            if arr is None:
                continue
            arr = list(arr)
            if len(arr) != len(pods):
                raise StoreError(f"set_pod_info: {len(arr)} {names} for {len(pods)} pods")
            for p, v in zip(pods, arr):
                i = self.pod_id(str(p))
                target = self.pod_queue if names == "queues" else self.pod_job
                target[i] = table.get(str(v)) if v not in (None, "") else -1

    def pod_info_from_kube_labels(self, queue_labels=("label_kaiwo_ai_queue",),
                                  job_labels=("label_kaiwo_ai_job", "label_kaiwo_ai_gang",
                                              "label_job_name")) -> int:
        """Set queues and jobs from kube-state-metrics' ``kube_pod_labels`` series (first label of
        each list that a pod has). Returns the number of pods updated."""
        sids = self.select("kube_pod_labels")
        done = 0
        for sid in sids:
            p = int(self.pod[sid])
            if p < 0:
                continue
            labels = dict(self.keys[sid][1])
            q = next((labels[k] for k in queue_labels if labels.get(k)), None)
            j = next((labels[k] for k in job_labels if labels.get(k)), None)
            if q is not None:
                self.pod_queue[p] = self.queues.get(q)
            if j is not None:
                self.pod_job[p] = self.jobs.get(j)
            done += 1
        return done

    # ------------------------------------------------------------------------------ ingestion
    @property
    def latest(self) -> float | None:
        """Timestamp of the newest scrape, or None when empty."""
        return None if self.filled == 0 else float(self.slot_ts[(self.head - 1) % self.n_slots])

    def _slot_for(self, ts: float) -> tuple[int, bool]:
        if not np.isfinite(ts):
            raise StoreError(f"scrape timestamp {ts!r} is not a finite number of seconds")
        last = self.latest
        if last is not None and ts < last:
            raise StoreError(f"scrape at {ts:.3f} is older than the latest one ({last:.3f}); "
                             "scrapes must be ingested in time order")
        if last is not None and ts == last:
            return (self.head - 1) % self.n_slots, False
        slot = self.head
        self.head = (self.head + 1) % self.n_slots
        self.filled = min(self.filled + 1, self.n_slots)
        self.slot_ts[slot] = ts
        self._seq += 1
        return slot, True

    def ingest(self, sids, values, timestamp: float) -> IngestReport:
        """Write one scrape given as arrays.

        Parameters
        ----------
        sids : int array [n]
            Series ids (from :meth:`intern` / :meth:`intern_many`).
        values : float array [n]
            Their samples (NaN = no sample).
        timestamp : float
            Scrape time, unix seconds; not older than :attr:`latest`.

        Returns
        -------
        IngestReport (``duplicates`` counts ids given twice; the first sample is kept).
        """
        sids = np.asarray(sids)
        if sids.dtype != np.int64 or not sids.flags.c_contiguous:
            if sids.size and not np.issubdtype(sids.dtype, np.integer):
                raise StoreError(f"sids: expected integer series ids, got dtype {sids.dtype}")
            sids = np.ascontiguousarray(sids, dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=np.float64)
        if sids.ndim != 1 or values.shape != sids.shape:
            raise StoreError(f"ingest: {values.shape} values for {sids.shape} series ids")
        if sids.size and (sids.min() < 0 or sids.max() >= self.n_series):
            bad = sids[(sids < 0) | (sids >= self.n_series)][0]
            raise StoreError(f"ingest: series id {int(bad)} is not interned (store has {self.n_series})")
        slot, fresh = self._slot_for(float(timestamp))
        dup = np.empty(len(sids), np.int64)
        nd = mk._write_kernel(self.values[slot], sids, values, self.stamp, self._seq, fresh, dup)
        return IngestReport(float(timestamp), len(sids) - nd, 0, nd)

    def ingest_text(self, text, timestamp: float | None = None, source: str = "",
                    line_offset: int = 0) -> IngestReport:
        """Parse and write one scrape in Prometheus text format.

        Parameters
        ----------
        text : bytes or str
            The exposition text.
        timestamp : float, optional
            Scrape time (unix seconds). Default: the newest sample timestamp in the text, else now.
        source, line_offset : str, int
            File name and line offset for error messages.

        Returns
        -------
        IngestReport with every malformed line (skipped) and duplicate in ``errors``.
        """
        p = parse(text, self.table, line_offset, source)
        errors = list(p.errors)
        sids = p.sid
        unknown = np.flatnonzero(sids < 0)
        new_before = self.n_series
        if unknown.size:
            sids = sids.copy()
            todo, todo_idx = [], []
            for i in unknown:
                raw = p.key(i)
                sid = self._raw_index.get(raw)
                if sid is not None:
                    sids[i] = sid
                    continue
                try:
                    todo.append(decode_key(raw))
                    todo_idx.append(i)
                except UnicodeDecodeError:
                    errors.append(ExpositionError(int(p.line[i]), 1, ERR_UTF8,
                                                  raw.decode("utf-8", "replace"), source))
            if todo:
                idx = np.asarray(todo_idx, np.int64)
                got = self.intern_keys(todo)
                sids[idx] = got
                ambiguous = p.sid[idx] == -2
                for i, sid in zip(idx[ambiguous], got[ambiguous]):
                    self._raw_index[p.key(i)] = int(sid)
                # One table entry per distinct hash (a series may come with two spellings).
                h, first = np.unique(p.hash[idx[~ambiguous]], return_index=True)
                self._add_hashes(h, got[~ambiguous][first])
        ok = sids >= 0
        if not ok.all():
            sids, vals, lines = sids[ok], p.value[ok], p.line[ok]
        else:
            vals, lines = p.value, p.line
        if timestamp is None:
            stamped = p.timestamp[p.timestamp != np.iinfo(np.int64).min]
            timestamp = float(stamped.max()) / 1000.0 if stamped.size else time.time()
        slot, fresh = self._slot_for(float(timestamp))
        dup = np.empty(len(sids), np.int64)
        nd = mk._write_kernel(self.values[slot], sids, vals, self.stamp, self._seq, fresh, dup)
        for k in dup[:nd]:
            errors.append(ExpositionError(int(lines[k]), 1, ERR_DUPLICATE_SERIES,
                                          self.series_name(sids[k]), source))
        errors.sort(key=lambda e: e.line)
        return IngestReport(float(timestamp), len(sids) - nd, self.n_series - new_before, nd, errors)

    def _add_hashes(self, hashes: np.ndarray, sids: np.ndarray) -> None:
        # Two new series with one hash in the same batch leave the entry "ambiguous" (-2): later
        # scrapes send both through the slow path, which decodes them and fills _raw_index.
        self.table.insert(hashes, sids)
        self._hashes = np.concatenate([self._hashes, hashes])
        self._hash_sids = np.concatenate([self._hash_sids, sids])

    # ------------------------------------------------------------------------------- windows
    def ordered_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """(slot indices, timestamps) of every filled slot, oldest first."""
        order = (self.head - self.filled + np.arange(self.filled)) % self.n_slots
        return order.astype(np.int64), self.slot_ts[order]

    def window(self, seconds: float, end: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Slots (time order) and timestamps of the scrapes in ``(end - seconds, end]``.

        ``end`` defaults to the newest scrape.
        """
        order, ts = self.ordered_slots()
        if not len(order):
            return order, ts
        end = ts[-1] if end is None else float(end)
        lo = np.searchsorted(ts, end - float(seconds), side="right")
        hi = np.searchsorted(ts, end, side="right")
        return order[lo:hi], ts[lo:hi]

    # ------------------------------------------------------------------------------ selection
    def _metric_groups(self) -> dict[int, np.ndarray]:
        if self._by_metric is None:
            m = self.metric[:self.n_series]
            order = np.argsort(m, kind="stable")
            bounds = np.flatnonzero(np.diff(m[order])) + 1
            self._by_metric = {int(m[g[0]]): g.astype(np.int64)
                               for g in np.split(order, bounds) if len(g)}
        return self._by_metric

    def _matcher_mask(self, m: Matcher) -> np.ndarray:
        """bool over the label's value ids, plus one last entry for 'label absent'."""
        values = self.label_values(m.label)
        key = (m, len(values))
        hit = self._match_cache.get(key)
        if hit is None:
            hit = np.array([m.matches(v) for v in values] + [m.matches("")], dtype=bool)
            self._match_cache[key] = hit
        return hit

    def select(self, metric: str, selector=None) -> np.ndarray:
        """Ids (ascending) of the series of ``metric`` matching ``selector``.

        ``selector``: a string (``'hostname=~"node-0.*", namespace!="kube-system"'``), a mapping
        (equality) or a tuple of :class:`Matcher`.
        """
        mid = self.metrics.index.get(metric)
        if mid is None:
            return np.zeros(0, np.int64)
        sids = self._metric_groups().get(mid, np.zeros(0, np.int64))
        matchers = selector if isinstance(selector, tuple) else parse_selector(selector)
        for m in matchers:
            ok = self._matcher_mask(m)
            col = self.labels.get(m.label)
            ids = col[sids] if col is not None else np.full(len(sids), -1, np.int64)
            sids = sids[ok[ids]]  # id -1 indexes the last entry: "absent"
        return sids

    def group_keys(self, sids, by: str) -> tuple[np.ndarray, list]:
        """Group of each series for ``by`` and the group names, indexed by group id.

        ``by``: ``series``, ``device``/``gpu`` (one logical GPU), ``node``, ``pod``, ``namespace``,
        ``queue``, ``job``, ``cluster`` or any label name. Series without the key get -1.
        Group ids are the store's own ids (no renumbering), so many may be empty.
        """
        sids = np.asarray(sids, dtype=np.int64)
        if by == "series":
            return np.arange(len(sids), dtype=np.int64), [self.series_name(s) for s in sids]
        if by in ("device", "gpu"):
            return self.device[sids], [self.device_name(d) for d in range(len(self.device_keys))]
        if by == "node":
            return self.node[sids], self.nodes.names
        if by == "pod":
            return self.pod[sids], self.pods.names
        if by == "namespace":
            return self.namespace[sids], self.namespaces.names
        if by in ("queue", "job"):
            p = self.pod[sids]
            table = self.pod_queue if by == "queue" else self.pod_job
            return np.where(p >= 0, table[np.maximum(p, 0)], -1), (self.queues if by == "queue" else self.jobs).names
        if by == "cluster":
            return np.zeros(len(sids), np.int64), ["cluster"]
        col = self.labels.get(by)
        if col is None:
            return np.full(len(sids), -1, np.int64), []
        return col[sids], self.label_values(by)

    # ---------------------------------------------------------------------------- statistics
    def aggregate(self, metric: str, stat: str = "mean", window: float = 3600.0, by: str = "node",
                  end: float | None = None, selector=None, quantile: float | None = None) -> Aggregate:
        """A windowed statistic of ``metric`` per group (see :mod:`kaiwo_core.monitoring.metrics_kernels`).

        Parameters
        ----------
        metric : str
            Metric name.
        stat : str
            ``mean``, ``max``, ``min``, ``p50``/``p90``/``p95``/``p99``, ``quantile``, ``rate``,
            ``last``, ``count``.
        window : float
            Seconds back from ``end`` (default: newest scrape).
        by : str
            See :meth:`group_keys`.

        Returns
        -------
        Aggregate with the groups that had samples.
        """
        slots, ts = self.window(window, end)
        sids = self.select(metric, selector)
        gkey, names = self.group_keys(sids, by)
        n_groups = len(names)
        out, count = mk.group_window(self.values, slots, ts, sids, gkey, n_groups, stat, quantile)
        keep = np.flatnonzero(count > 0)
        shown_end = float(end) if end is not None else float(ts[-1]) if len(ts) else float("nan")
        return Aggregate(metric, stat, by, float(window), shown_end,
                         [names[i] for i in keep], out[keep], count[keep])

    def series_stat(self, sids, stat: str = "mean", window: float = 3600.0,
                    end: float | None = None, quantile: float | None = None) -> np.ndarray:
        """A windowed statistic per series (float64 [len(sids)], NaN without samples)."""
        slots, ts = self.window(window, end)
        return mk.series_window(self.values, slots, ts, sids, stat, quantile)

    # ---------------------------------------------------------------------------- maintenance
    def prune(self) -> np.ndarray:
        """Drop series without a sample left in the ring; renumber the rest in order.

        Returns the old id of every kept series (``new sid -> old sid``). Pods, nodes, devices,
        queues and jobs keep their ids.
        """
        n = self.n_series
        live = ~np.all(np.isnan(self.values[:, :n]), axis=0) if self.filled else np.zeros(n, bool)
        keep = np.flatnonzero(live)
        if len(keep) == n:
            return keep
        new_id = np.full(n, -1, np.int64)
        new_id[keep] = np.arange(len(keep))
        cap = max(16, self.values.shape[1])
        values = np.full((self.n_slots, cap), np.nan)
        values[:, :len(keep)] = self.values[:, keep]
        self.values = values
        for name in ("stamp", "metric", "node", "device", "gpu", "partition", "pod", "namespace"):
            col = getattr(self, name)
            setattr(self, name, _grow(col[keep], cap, -1))
        for k in list(self.labels):
            self.labels[k] = _grow(self.labels[k][keep], cap, -1)
        self.keys = [self.keys[i] for i in keep]
        self._series_index = {k: i for i, k in enumerate(self.keys)}
        self.n_series = len(keep)
        h_keep = new_id[self._hash_sids] >= 0
        self._hashes, self._hash_sids = self._hashes[h_keep], new_id[self._hash_sids[h_keep]]
        self.table = KeyTable(cap)
        self.table.insert(self._hashes, self._hash_sids)
        self._raw_index.clear()
        self._by_metric = None
        self._match_cache.clear()
        self.version += 1
        return keep
