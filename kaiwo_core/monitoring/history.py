"""History: the collector's buffer on disk, and past usage from a Prometheus server.

On-disk format (``.npz``, written with ``numpy.savez_compressed``)
-----------------------------------------------------------------
=============  ======================  ===========================================================
array          dtype / shape           content
=============  ======================  ===========================================================
``format``     str                     ``"kaiwo-metrics/1"``
``ts``         float64 [T]             scrape timestamps (unix seconds), oldest first
``values``     float64 [T, S]          samples, NaN = none (the filled ring rows, in time order)
``metric``     int32 [S]               index into ``metrics``
``metrics``    str [M]                 metric names
``label_key``  int32 [L]               per (series, label) pair: index into ``label_names``
``label_val``  int32 [L]               ... and into ``label_values``
``label_ptr``  int64 [S+1]             series s owns pairs ``label_ptr[s]:label_ptr[s+1]``
``label_names`` / ``label_values``     str  distinct label names / values
``pods``, ``pod_queue``, ``pod_job``, ``queues``, ``jobs``   pod -> queue / job tables
=============  ======================  ===========================================================

Strings are interned once and the samples compress well (NaN runs, repeated values), so a store is
a fraction of its in-memory size. Files are read without pickle (``allow_pickle=False``).

Prometheus
----------
:func:`load_prometheus` asks a Prometheus server's HTTP API ``/api/v1/query_range`` for each metric
(the raw series, ``query=<metric>{<selector>}``) over ``[start, end]`` at ``step`` seconds, splits the
range so that no request asks for more than 11,000 points per series (the server's limit), and
ingests the samples into a store, one slot per step, so that analytics and right-sizing start with
real history instead of an empty buffer.
"""
from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from .exposition import MAX_UNIX_SECONDS
from .metrics_store import MetricsStore, StoreError

FORMAT = "kaiwo-metrics/1"
MAX_POINTS = 11000  # Prometheus refuses query_range answers of more points per series


class HistoryError(ValueError):
    """An unreadable history file or a failed Prometheus query (names the file or query)."""


# ------------------------------------------------------------------------------- npz files

def save(store: MetricsStore, path) -> Path:
    """Write the store's scrapes and series to ``path`` (``.npz``); returns the path written."""
    path = Path(path)
    order, ts = store.ordered_slots()
    n = store.n_series
    label_names: dict[str, int] = {}
    label_values: dict[str, int] = {}
    keys, vals, ptr = [], [], [0]
    for _, items in store.keys:
        for k, v in items:
            keys.append(label_names.setdefault(k, len(label_names)))
            vals.append(label_values.setdefault(v, len(label_values)))
        ptr.append(len(keys))
    np.savez_compressed(
        path, format=np.array(FORMAT), ts=ts, values=store.values[order, :n],
        metric=store.metric[:n].astype(np.int32), metrics=np.array(store.metrics.names, dtype=str),
        label_key=np.array(keys, np.int32), label_val=np.array(vals, np.int32),
        label_ptr=np.array(ptr, np.int64),
        label_names=np.array(list(label_names), dtype=str), label_values=np.array(list(label_values), dtype=str),
        pods=np.array(store.pods.names, dtype=str),
        pod_queue=store.pod_queue[:len(store.pods)], pod_job=store.pod_job[:len(store.pods)],
        queues=np.array(store.queues.names, dtype=str), jobs=np.array(store.jobs.names, dtype=str))
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _checked(doc: dict) -> tuple:
    """(ts, values, metric, series keys) of a history file's arrays, each checked: a file is
    untrusted input, so indices must be in range and times finite dates before anything is built
    from them (raises KeyError, IndexError, TypeError or ValueError naming what is wrong)."""
    ts = np.asarray(doc["ts"], dtype=np.float64)
    values = np.asarray(doc["values"], dtype=np.float64)
    ptr = np.asarray(doc["label_ptr"], dtype=np.int64)
    metric = np.asarray(doc["metric"], dtype=np.int64)
    lk = np.asarray(doc["label_key"], dtype=np.int64)
    lv = np.asarray(doc["label_val"], dtype=np.int64)
    names, lnames, lvalues = (doc[k].astype(str).tolist() for k in ("metrics", "label_names", "label_values"))
    if ts.ndim != 1 or values.shape != (len(ts), len(metric)) or ptr.shape != (len(metric) + 1,):
        raise ValueError(f"inconsistent shapes (values {values.shape}, {len(ts)} scrapes, "
                         f"{len(metric)} series, {len(ptr)} label offsets)")
    if not np.all((ts >= 0) & (ts < MAX_UNIX_SECONDS)):
        raise ValueError("scrape times must be unix times between 1970 and 9999")
    if len(ptr) and (ptr[0] != 0 or ptr[-1] != len(lk) or np.any(np.diff(ptr) < 0)) or len(lk) != len(lv):
        raise ValueError("label offsets do not index the label arrays")
    for what, idx, n in (("metric", metric, len(names)), ("label_key", lk, len(lnames)),
                         ("label_val", lv, len(lvalues))):
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"{what} indexes outside its {n} names")
    keys = [(names[metric[s]], {lnames[lk[j]]: lvalues[lv[j]] for j in range(ptr[s], ptr[s + 1])})
            for s in range(len(metric))]
    return ts, values, metric, keys


def load(path, slots: int | None = None, store: MetricsStore | None = None) -> MetricsStore:
    """Read a file written by :func:`save` into a new store (or append to ``store``).

    ``slots``: ring length of the new store (default: the file's scrapes, at least 256). With more
    scrapes in the file than slots, the newest are kept.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            doc = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - not a zip, a bad member, a header that lies...
        raise HistoryError(f"{path}: not a readable .npz file: {type(e).__name__}: {e}") from None
    fmt = str(doc.get("format", ""))
    if fmt != FORMAT:
        raise HistoryError(f"{path}: format {fmt!r} is not {FORMAT!r}")
    try:
        ts, values, metric, keys = _checked(doc)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise HistoryError(f"{path}: malformed history ({type(e).__name__}: {e})") from None
    if store is None:
        store = MetricsStore(slots or max(256, len(ts)), max(16, len(metric)))
    try:
        pods = doc["pods"].astype(str).tolist()
        qn, jn = doc["queues"].astype(str).tolist(), doc["jobs"].astype(str).tolist()
        queue_of = [qn[q] if q >= 0 else None for q in doc["pod_queue"].tolist()]
        job_of = [jn[j] if j >= 0 else None for j in doc["pod_job"].tolist()]
        if not len(pods) == len(queue_of) == len(job_of):
            raise ValueError(f"{len(pods)} pods, {len(queue_of)} queues, {len(job_of)} jobs")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise HistoryError(f"{path}: malformed pod table ({type(e).__name__}: {e})") from None
    sids = store.intern_keys(keys)
    if pods:
        store.set_pod_info(pods, queue_of, job_of)
    latest = store.latest
    try:
        for k in range(len(ts)):
            if latest is not None and ts[k] < latest:
                continue  # older than what the store holds: it cannot go back in time
            store.ingest(sids, values[k], float(ts[k]))
    except StoreError as e:  # e.g. scrape times out of order
        raise HistoryError(f"{path}: {e}") from None
    return store


# ------------------------------------------------------------------------------- Prometheus

def _get_json(url: str, timeout: float, what: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        # Prometheus explains a bad query in the body of its 400/422 answers.
        detail = ""
        try:
            detail = json.loads(e.read()).get("error", "")
        except (ValueError, OSError, AttributeError):
            pass
        raise HistoryError(f"{what}: HTTP {e.code} {e.reason}" + (f": {detail}" if detail else "")) from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise HistoryError(f"{what}: cannot reach the server: {getattr(e, 'reason', e)}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise HistoryError(f"{what}: the answer is not JSON") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        err = doc.get("error", "no error message") if isinstance(doc, dict) else "unexpected answer"
        raise HistoryError(f"{what}: Prometheus says {err!r}")
    return doc


def query_range(base_url: str, query: str, start: float, end: float, step: float,
                timeout: float = 30.0) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """Raw ``query_range`` results: (labels incl. ``__name__``, timestamps, values) per series,
    over ``[start, end]`` split into requests of at most :data:`MAX_POINTS` points."""
    if not (step > 0 and end >= start):
        raise HistoryError(f"query_range {query!r}: need step > 0 and end >= start "
                           f"(got start={start}, end={end}, step={step})")
    base = base_url.rstrip("/")
    out: dict[tuple, tuple[dict, list, list]] = {}
    chunk = step * (MAX_POINTS - 1)
    t0 = float(start)
    while t0 <= end:
        t1 = min(float(end), t0 + chunk)
        params = urllib.parse.urlencode({"query": query, "start": repr(t0), "end": repr(t1), "step": repr(float(step))})
        what = f"{base}/api/v1/query_range?query={query}"
        doc = _get_json(f"{base}/api/v1/query_range?{params}", timeout, what)
        data = doc.get("data") or {}
        if data.get("resultType") != "matrix":
            raise HistoryError(f"{what}: expected a matrix result, got {data.get('resultType')!r}")
        for series in data.get("result") or []:
            labels = series.get("metric") or {}
            key = tuple(sorted(labels.items()))
            entry = out.setdefault(key, (labels, [], []))
            for t, v in series.get("values") or []:
                entry[1].append(float(t))
                entry[2].append(float(v))  # Prometheus sends values as strings ("NaN", "+Inf" too)
        t0 = t1 + step
    return [(labels, np.array(t), np.array(v)) for labels, t, v in out.values()]


def load_prometheus(base_url: str, metrics, start: float, end: float, step: float = 60.0,
                    selector: str = "", store: MetricsStore | None = None,
                    timeout: float = 30.0) -> MetricsStore:
    """Load past samples of ``metrics`` from a Prometheus server into a store.

    Parameters
    ----------
    base_url : str
        e.g. ``http://prometheus.monitoring:9090``.
    metrics : list of str
        Metric names (each becomes ``query=<name>{<selector>}``).
    start, end, step : float
        Unix seconds; one store slot per step.
    selector : str
        PromQL matchers added to every query, e.g. ``namespace="research"``.
    store : MetricsStore, optional
        Store to fill (must not hold scrapes newer than ``start``); default: a new store with one
        slot per step (at least 256).
    """
    n_steps = int(math.floor((end - start) / step)) + 1 if end >= start and step > 0 else 0
    results = []
    for m in metrics:
        q = f"{m}{{{selector}}}" if selector else m
        results.extend(query_range(base_url, q, start, end, step, timeout))
    if store is None:
        store = MetricsStore(max(256, n_steps), max(16, len(results)))
    if not results:
        return store
    keys = []
    for labels, _, _ in results:
        labels = dict(labels)
        name = labels.pop("__name__", "")
        if not name:
            raise HistoryError(f"{base_url}: a result has no __name__ label; query raw series, "
                               "not expressions")
        keys.append((name, labels))
    sids = store.intern_keys(keys)
    # Align every sample to the step grid: one matrix [steps, series], then one ingest per step.
    grid = np.full((n_steps, len(results)), np.nan)
    for j, (_, t, v) in enumerate(results):
        k = np.rint((t - start) / step).astype(np.int64)
        ok = (k >= 0) & (k < n_steps)
        grid[k[ok], j] = v[ok]
    times = start + step * np.arange(n_steps)
    present = ~np.all(np.isnan(grid), axis=1)
    for k in np.flatnonzero(present):
        store.ingest(sids, grid[k], float(times[k]))
    return store
