"""Numba kernels of the metrics collector: ring-buffer writes and windowed statistics.

Data layout (see :mod:`kaiwo_core.monitoring.metrics_store`): ``values[slot, series]`` float64, one row per
scrape (slot of a ring buffer), one column per interned series, NaN where a series had no sample.
A window is given as the *time-ordered* slot indices it covers plus their timestamps, so kernels
never deal with the ring's wrap-around. Rows are contiguous, so one scrape is one contiguous row
write, and every statistic below streams the window row by row (slot-major) with per-series or
per-group accumulators: the whole buffer is read sequentially, never column by column.

Statistics (``STAT_*``), per series or pooled per group:

``mean``      arithmetic mean of the samples in the window
``max/min``   extreme sample
``quantile``  linear interpolation between order statistics (numpy's default, "type 7"):
              ``h = (n - 1) q``, ``x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])``,
              computed with an in-place quickselect (O(n), no sort)
``rate``      per series: increase between its first and last sample in the window divided by
              their time distance, counter resets handled as Prometheus does (a drop means the
              counter restarted from 0); no extrapolation to the window edges. Per group: the sum
              of the series' rates (e.g. a node's total CPU seconds per second).
``last``      per series: the latest sample in the window; per group: the mean of those.
``count``     number of samples.

Missing samples (NaN) are skipped everywhere; a series or group without samples gives NaN (count 0).

Conventions: private ``_..._kernel`` functions have explicit signatures and ``cache=True`` (compiled
once at import, then loaded from the on-disk cache); helpers are generic ``njit`` functions compiled
into the kernels that call them; the public functions below validate their inputs and allocate the
outputs. Note that Numba's cache is keyed on the file of the *calling* kernel: after editing a helper
used from another module (``alerts``, ``rightsizing``), clear ``__pycache__`` of that module.
"""
from __future__ import annotations

import numpy as np
from numba import njit

STAT_MEAN, STAT_MAX, STAT_MIN, STAT_QUANTILE, STAT_RATE, STAT_LAST, STAT_COUNT = range(7)

#: Public statistic names -> (code, quantile).
STATS = {
    "mean": (STAT_MEAN, 0.0), "max": (STAT_MAX, 0.0), "min": (STAT_MIN, 0.0),
    "p50": (STAT_QUANTILE, 0.5), "p90": (STAT_QUANTILE, 0.9), "p95": (STAT_QUANTILE, 0.95),
    "p99": (STAT_QUANTILE, 0.99), "rate": (STAT_RATE, 0.0), "last": (STAT_LAST, 0.0),
    "count": (STAT_COUNT, 0.0),
}


def stat_code(stat: str, quantile: float | None = None) -> tuple[int, float]:
    """(code, q) of a statistic name; ``"quantile"`` needs ``quantile`` in [0, 1]."""
    if stat == "quantile":
        if quantile is None or not (0.0 <= float(quantile) <= 1.0):
            raise ValueError(f"stat 'quantile': quantile = {quantile!r}: must be a number in [0, 1]")
        return STAT_QUANTILE, float(quantile)
    if stat not in STATS:
        raise ValueError(f"unknown stat {stat!r} (known: {', '.join([*STATS, 'quantile'])})")
    return STATS[stat]


# ----------------------------------------------------------------------------- helpers (njit)

@njit(cache=True)
def _select(a, s, n, k):
    """k-th smallest of a[s:s+n] (0-based k), partially reordering that range in place.

    Hoare's FIND with a median-of-three pivot: on return a[s:s+k] <= a[s+k] <= a[s+k+1:s+n].
    """
    lo = s
    hi = s + n - 1
    kk = s + k
    while lo < hi:
        mid = (lo + hi) // 2
        x, y, z = a[lo], a[mid], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
        if kk <= j:
            hi = j
        elif kk >= i:
            lo = i
        else:
            break
    return a[kk]


@njit(cache=True)
def _insertion_sort(a, s, n):
    for i in range(s + 1, s + n):
        v = a[i]
        j = i - 1
        while j >= s and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@njit(cache=True)
def _quantile_range(a, s, n, q):
    """Linear-interpolation quantile of a[s:s+n] (n > 0, no NaN), reordering the range.

    Needs the order statistics at positions ``lo = floor((n-1) q)`` and ``lo + 1``. The method
    follows the shape of the problem, since most windows are short and most quantiles extreme:
    when only the k largest or smallest values matter (p95 or max of a window: k = 2 of 20, 7 of
    120) a partial selection sort moves just those into place (k passes of n branch-light
    comparisons, k <= 4 for short ranges and <= 8 otherwise); other short ranges (<= 32) are
    insertion-sorted; the rest goes to a quickselect (O(n)).
    """
    h = (n - 1) * q
    lo = int(np.floor(h))
    frac = h - lo
    need_hi = frac != 0.0 and lo + 1 < n
    top = n - lo                       # positions lo .. n-1 hold the `top` largest
    bottom = lo + 2 if need_hi else lo + 1   # positions 0 .. bottom-1 hold the smallest
    small = 4 if n <= 32 else 8        # partial selection costs n x k comparisons
    if top <= small and top <= bottom:
        for i in range(top):
            end = s + n - 1 - i
            m = s
            for k in range(s + 1, end + 1):
                if a[k] > a[m]:
                    m = k
            t = a[m]
            a[m] = a[end]
            a[end] = t
        x = a[s + lo]
        return x + frac * (a[s + lo + 1] - x) if need_hi else x
    if bottom <= small:
        for i in range(bottom):
            st = s + i
            m = st
            for k in range(st + 1, s + n):
                if a[k] < a[m]:
                    m = k
            t = a[m]
            a[m] = a[st]
            a[st] = t
        x = a[s + lo]
        return x + frac * (a[s + lo + 1] - x) if need_hi else x
    if n <= 32:
        _insertion_sort(a, s, n)
        x = a[s + lo]
        return x + frac * (a[s + lo + 1] - x) if need_hi else x
    x = _select(a, s, n, lo)
    if not need_hi:
        return x
    # After the selection everything right of position lo is >= x: the next order statistic is
    # the minimum of that part.
    y = a[s + lo + 1]
    for k in range(s + lo + 2, s + n):
        if a[k] < y:
            y = a[k]
    return x + frac * (y - x)


#: Series per block of the streaming statistics: a block's accumulators (at most five arrays of
#: 512 float64/int64 = 20 KiB, for ``rate``) stay in L1 while the window's rows stream through.
_BLOCK = 512


@njit(cache=True)
def _is_run(sids, j0, m):
    """True when ``sids[j0:j0+m]`` are consecutive ids (one contiguous slice of every row)."""
    s0 = sids[j0]
    off = 0
    for jj in range(m):
        off += sids[np.uint64(j0 + jj)] != s0 + jj
    return off == 0


# The per-row updates read ``m`` samples ``src[r, c:c+m]`` (a slice of a ring row, or of the
# gathered scratch row) into per-series accumulators. Indices are uint64, so Numba emits no
# negative-index wrap-around, and the updates are branch-free (selects, no early ``continue`` on
# NaN): the compiler vectorises them. Skipping a missing sample by adding 0.0 or keeping the old
# value is exact: the sums start at +0.0 and x + 0.0 == x for every x but -0.0, which a sum
# started at +0.0 never is; so the results are bit for bit those of the sample-by-sample loops
# (and of the references in tests/naive_monitoring.py).

@njit(cache=True)
def _row_sum(src, r, c, acc, cnt, m):
    for jj in range(m):
        v = src[r, np.uint64(c + jj)]
        ok = v == v
        acc[jj] += v if ok else 0.0
        cnt[jj] += ok


@njit(cache=True)
def _row_max(src, r, c, acc, cnt, m):
    # acc starts at -inf: v > acc is False for NaN and for v = -inf (which then equals acc), and
    # strict, so the first of equal samples is kept as the reference's max() does.
    for jj in range(m):
        v = src[r, np.uint64(c + jj)]
        a = acc[jj]
        acc[jj] = v if v > a else a
        cnt[jj] += v == v


@njit(cache=True)
def _row_min(src, r, c, acc, cnt, m):
    for jj in range(m):
        v = src[r, np.uint64(c + jj)]
        a = acc[jj]
        acc[jj] = v if v < a else a
        cnt[jj] += v == v


@njit(cache=True)
def _row_last(src, r, c, acc, cnt, m):
    for jj in range(m):
        v = src[r, np.uint64(c + jj)]
        ok = v == v
        acc[jj] = v if ok else acc[jj]
        cnt[jj] += ok


@njit(cache=True)
def _row_top2(src, r, c, t1, t2, cnt, m):
    # The two largest samples (t1 >= t2, both starting at -inf) of each series.
    for jj in range(m):
        v = src[r, np.uint64(c + jj)]
        a = t1[jj]
        b = t2[jj]
        up = v > a
        t2[jj] = a if up else (v if v > b else b)
        t1[jj] = v if up else a
        cnt[jj] += v == v


@njit(cache=True)
def _row_rate(src, r, c, t, prev, inc, t0, t1, cnt, m):
    # Branchy on purpose: with five accumulators the compiler does not vectorise the select
    # form, and a missing sample (the branch) is rare, so it predicts well.
    for jj in range(m):
        v = src[r, np.uint64(c + jj)]
        if v != v:
            continue
        k = cnt[jj]
        if k == 0:
            t0[jj] = t
        else:
            d = v - prev[jj]
            inc[jj] += d if d >= 0.0 else v   # a drop: the counter restarted from 0
        prev[jj] = v
        t1[jj] = t
        cnt[jj] = k + 1


@njit(cache=True)
def _row_update(stat, src, r, c, t, acc, acc2, acc3, acc4, cnt, m):
    if stat == STAT_MEAN:
        _row_sum(src, r, c, acc, cnt, m)
    elif stat == STAT_MAX:
        _row_max(src, r, c, acc, cnt, m)
    elif stat == STAT_MIN:
        _row_min(src, r, c, acc, cnt, m)
    elif stat == STAT_QUANTILE:
        _row_top2(src, r, c, acc, acc2, cnt, m)
    elif stat == STAT_RATE:
        _row_rate(src, r, c, t, acc2, acc, acc3, acc4, cnt, m)
    else:                                   # last, count
        _row_last(src, r, c, acc, cnt, m)


@njit(cache=True)
def _series_window(values, slots, ts, sids, stat, q, out):
    """Per-series statistic over the window rows ``slots`` (time order) into ``out[len(sids)]``.

    The series go in blocks of :data:`_BLOCK`; for each block the window's rows stream through
    per-series accumulators (each row's part of the block is one contiguous slice when the ids
    are consecutive, else it is gathered first), with vectorised updates. Quantiles that need
    more than the two largest samples keep the slot-major top-k or the gather-and-select paths
    of :func:`_series_quantile`.
    """
    n = sids.shape[0]
    w = slots.shape[0]
    kmax = 0
    if stat == STAT_QUANTILE:
        for c in range(1, w + 1):
            kc = c - int(np.floor((c - 1) * q))
            if kc > kmax:
                kmax = kc
        if kmax > 2:
            _series_quantile(values, slots, sids, q, kmax, out)
            return
    # Per sample count c (usually w for every series), where the quantile sits between the two
    # largest samples: h = (c - 1) q, lo = floor(h); ascending position lo is the (c-1-lo)-th
    # largest (0: the largest, else the second), interpolated towards the largest with h - lo.
    q_top = np.zeros(w + 1, np.bool_)
    q_frac = np.zeros(w + 1, np.float64)
    q_interp = np.zeros(w + 1, np.bool_)
    if stat == STAT_QUANTILE:
        for c in range(1, w + 1):
            h = (c - 1) * q
            lo = int(np.floor(h))
            q_top[c] = c - 1 - lo == 0
            q_frac[c] = h - lo
            q_interp[c] = h - lo != 0.0 and lo + 1 < c
    nb = min(_BLOCK, max(n, 1))
    acc = np.empty(nb, np.float64)
    acc2 = np.empty(nb, np.float64)
    acc3 = np.empty(nb, np.float64)
    acc4 = np.empty(nb, np.float64)
    cnt = np.empty(nb, np.int64)
    tmp = np.empty((1, nb), np.float64)
    init = -np.inf if stat == STAT_MAX or stat == STAT_QUANTILE else np.inf if stat == STAT_MIN else 0.0
    for j0 in range(0, n, nb):
        m = min(nb, n - j0)
        run = _is_run(sids, j0, m)
        s0 = sids[j0]
        for jj in range(m):
            acc[jj] = init
            acc2[jj] = init
            cnt[jj] = 0
        for k in range(w):
            row = np.uint64(slots[k])
            if run:
                _row_update(stat, values, row, s0, ts[k], acc, acc2, acc3, acc4, cnt, m)
            else:
                for jj in range(m):
                    tmp[0, jj] = values[row, np.uint64(sids[j0 + jj])]
                _row_update(stat, tmp, np.uint64(0), 0, ts[k], acc, acc2, acc3, acc4, cnt, m)
        if stat == STAT_MEAN:
            for jj in range(m):
                c = cnt[jj]
                out[np.uint64(j0 + jj)] = acc[jj] / c if c > 0 else np.nan
        elif stat == STAT_COUNT:
            for jj in range(m):
                out[np.uint64(j0 + jj)] = cnt[jj]
        elif stat == STAT_RATE:
            for jj in range(m):
                dt = acc4[jj] - acc3[jj]
                out[np.uint64(j0 + jj)] = acc[jj] / dt if cnt[jj] >= 2 and dt > 0.0 else np.nan
        elif stat == STAT_QUANTILE:
            for jj in range(m):
                c = np.uint64(cnt[jj])
                a = acc[jj]
                x = a if q_top[c] else acc2[jj]
                v = x + q_frac[c] * (a - x) if q_interp[c] else x
                out[np.uint64(j0 + jj)] = v if c > 0 else np.nan
        else:                               # max, min, last
            for jj in range(m):
                out[np.uint64(j0 + jj)] = acc[jj] if cnt[jj] > 0 else np.nan


@njit(cache=True)
def _series_quantile(values, slots, sids, q, kmax, out):
    """Per-series quantile that needs the ``kmax`` > 2 largest samples (or many more)."""
    n = sids.shape[0]
    w = slots.shape[0]
    cnt = np.zeros(n, np.int64)
    if kmax <= 4:
        # When the quantile only needs the k <= 4 largest samples whatever their count (p90 of
        # windows up to ~30 samples), they are kept while streaming the rows, slot-major like the
        # other statistics: each row is read contiguously, and most samples are rejected by one
        # comparison with the series' current k-th largest.
        top = np.empty((n, kmax), np.float64)   # per series, descending
        held = np.zeros(n, np.int64)
        for k in range(w):
            row = values[slots[k]]
            for j in range(n):
                v = row[sids[j]]
                if v != v:
                    continue
                cnt[j] += 1
                m = held[j]
                if m < kmax:
                    held[j] = m + 1
                    pos = m
                elif v <= top[j, kmax - 1]:
                    continue
                else:
                    pos = kmax - 1
                while pos > 0 and top[j, pos - 1] < v:
                    top[j, pos] = top[j, pos - 1]
                    pos -= 1
                top[j, pos] = v
        for j in range(n):
            c = cnt[j]
            if c == 0:
                out[j] = np.nan
                continue
            h = (c - 1) * q
            lo = int(np.floor(h))
            frac = h - lo
            x = top[j, c - 1 - lo]      # ascending position lo = descending index c-1-lo
            out[j] = x + frac * (top[j, c - 2 - lo] - x) if frac != 0.0 and lo + 1 < c else x
        return
    # Otherwise each series' window is gathered into a scratch and selected, series by series
    # (consecutive series of a metric are adjacent columns, so the w rows' cache lines loaded for
    # one series serve the next seven too).
    buf = np.empty(max(w, 1), np.float64)
    for j in range(n):
        sid = sids[j]
        c = 0
        for k in range(w):
            v = values[slots[k], sid]
            if v == v:
                buf[c] = v
                c += 1
        out[j] = _quantile_range(buf, 0, c, q) if c > 0 else np.nan


# ------------------------------------------------------------------------------------ kernels

@njit("int64(float64[::1], int64[::1], float64[::1], int64[::1], int64, boolean, int64[::1])",
      cache=True)
def _write_kernel(row, sids, vals, stamp, seq, fresh, dup_out):
    """Write one scrape into the ring row ``row``.

    ``fresh``: the slot is new (clear it to NaN first); otherwise the samples merge into the slot
    (several exporters scraped at the same instant). ``stamp[sid] == seq`` means the series was
    already written in this slot: the sample is a duplicate, its index goes to ``dup_out``.
    Returns the number of duplicates.
    """
    if fresh:
        row[:] = np.nan
    nd = 0
    for k in range(sids.shape[0]):
        s = sids[k]
        if stamp[s] == seq:
            dup_out[nd] = k
            nd += 1
            continue
        stamp[s] = seq
        row[s] = vals[k]
    return nd


@njit("void(float64[:, ::1], int64[::1], float64[::1], int64[::1], int64, float64, float64[::1])",
      cache=True)
def _series_window_kernel(values, slots, ts, sids, stat, q, out):
    _series_window(values, slots, ts, sids, stat, q, out)


@njit("void(float64[:, ::1], int64[::1], float64[::1], int64[::1], int64[::1], int64, float64, "
      "float64[::1], int64[::1])", cache=True)
def _group_window_kernel(values, slots, ts, sids, gkey, stat, q, out, count):
    """Statistic per group of series over the window, pooled over the group's samples.

    ``gkey[j]`` is the group of series ``sids[j]`` (``< 0``: left out); ``out``/``count`` have one
    entry per group. ``rate`` and ``last`` are per-series statistics folded per group: the public
    :func:`group_window` computes them with :func:`_series_window_kernel` and ``np.bincount``,
    so this kernel (and its compile time) only carries the pooled statistics.
    """
    n = sids.shape[0]
    g_n = out.shape[0]
    w = slots.shape[0]
    for g in range(g_n):
        out[g] = 0.0
        count[g] = 0
    if stat == STAT_QUANTILE:
        # Bucket the window's samples by group, then one selection per group. Each group's bucket
        # is sized by its series count x window length (an upper bound known without reading the
        # samples), so the samples are read once.
        size = np.zeros(g_n, np.int64)
        for j in range(n):
            if gkey[j] >= 0:
                size[gkey[j]] += w
        start = np.zeros(g_n + 1, np.int64)
        for g in range(g_n):
            start[g + 1] = start[g] + size[g]
        buf = np.empty(start[g_n], np.float64)
        for k in range(w):
            row = values[slots[k]]
            for j in range(n):
                g = gkey[j]
                if g >= 0:
                    v = row[sids[j]]
                    if v == v:
                        buf[start[g] + count[g]] = v
                        count[g] += 1
        for g in range(g_n):
            out[g] = _quantile_range(buf, start[g], count[g], q) if count[g] > 0 else np.nan
        return
    for k in range(w):
        row = values[slots[k]]
        for j in range(n):
            g = gkey[j]
            if g < 0:
                continue
            v = row[sids[j]]
            if v != v:
                continue
            c = count[g]
            if stat == STAT_MEAN:
                out[g] += v
            elif stat == STAT_MAX:
                if c == 0 or v > out[g]:
                    out[g] = v
            elif stat == STAT_MIN:
                if c == 0 or v < out[g]:
                    out[g] = v
            count[g] = c + 1
    for g in range(g_n):
        if stat == STAT_COUNT:
            out[g] = count[g]
        elif count[g] == 0:
            out[g] = np.nan
        elif stat == STAT_MEAN:
            out[g] = out[g] / count[g]


@njit("void(float64[:, ::1], int64[::1], float64[::1], int64[::1], int64[::1], float64[::1], "
      "boolean, float64[:, ::1])", cache=True)
def _group_slot_sum_kernel(values, slots, ts, sids, gkey, scale, counter, out):
    """Per group and per window slot, the sum of its series' samples times ``scale[j]``.

    ``out[g, k]`` stays NaN when no series of group g had a sample in slot k. With ``counter``,
    each sample is replaced by the series' per-second rate since its previous sample in the window
    (reset-aware; a series' first sample gives nothing). Used for usage time lines per pod
    (right-sizing) where the statistic is taken over the *sum* across a pod's devices or containers.
    """
    n = sids.shape[0]
    w = slots.shape[0]
    prev = np.empty(n, np.float64)
    prev_t = np.empty(n, np.float64)
    seen = np.zeros(n, np.bool_)
    for k in range(w):
        row = values[slots[k]]
        t = ts[k]
        for j in range(n):
            g = gkey[j]
            if g < 0:
                continue
            v = row[sids[j]]
            if v != v:
                continue
            x = v
            if counter:
                if not seen[j]:
                    seen[j] = True
                    prev[j] = v
                    prev_t[j] = t
                    continue
                d = v - prev[j]
                x = (d if d >= 0.0 else v) / (t - prev_t[j])
                prev[j] = v
                prev_t[j] = t
            x = x * scale[j]
            if out[g, k] != out[g, k]:
                out[g, k] = x
            else:
                out[g, k] += x


# ------------------------------------------------------------------------------ public wrappers

def _int64(name, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: expected integers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _check_window(values, slots, ts, sids):
    values = np.asarray(values)
    if values.ndim != 2 or values.dtype != np.float64 or not values.flags.c_contiguous:
        raise ValueError(f"values: expected a C-contiguous float64 [slots, series] array, got "
                         f"{values.dtype} with shape {values.shape}")
    slots, sids = _int64("slots", slots), _int64("sids", sids)
    ts = np.ascontiguousarray(ts, dtype=np.float64)
    if ts.shape != slots.shape:
        raise ValueError(f"ts: {ts.shape[0]} timestamps for {slots.shape[0]} slots")
    if slots.size and (slots.min() < 0 or slots.max() >= values.shape[0]):
        raise ValueError(f"slots: index out of range [0, {values.shape[0]})")
    if sids.size and (sids.min() < 0 or sids.max() >= values.shape[1]):
        raise ValueError(f"sids: series index out of range [0, {values.shape[1]})")
    if ts.size > 1 and np.any(np.diff(ts) < 0):
        raise ValueError("ts: window slots must be in time order")
    return values, slots, ts, sids


def series_window(values, slots, ts, sids, stat: str = "mean", quantile: float | None = None) -> np.ndarray:
    """One statistic per series over a window.

    Parameters
    ----------
    values : float64 array [slots, series]
        The ring buffer (NaN = no sample).
    slots : int array [w]
        Rows of the window in time order; ``ts`` their timestamps (seconds).
    sids : int array [n]
        Series (columns) to compute.
    stat : str
        ``mean``, ``max``, ``min``, ``p50``, ``p90``, ``p95``, ``p99``, ``quantile`` (with
        ``quantile``), ``rate``, ``last`` or ``count``.

    Returns
    -------
    float64 array [n]; NaN for a series without samples (0 for ``count``).
    """
    values, slots, ts, sids = _check_window(values, slots, ts, sids)
    code, q = stat_code(stat, quantile)
    out = np.empty(len(sids), np.float64)
    _series_window_kernel(values, slots, ts, sids, code, q, out)
    return out


def group_window(values, slots, ts, sids, gkey, n_groups: int, stat: str = "mean",
                 quantile: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One statistic per group of series over a window.

    Parameters
    ----------
    gkey : int array [n]
        Group of each series in ``sids`` (0 .. n_groups-1; negative = left out).
    n_groups : int
        Number of groups.

    Returns
    -------
    (values float64 [n_groups], count int64 [n_groups]): the statistic (NaN for an empty group)
    and the number of samples (``rate``/``last``: of series) behind it.
    """
    values, slots, ts, sids = _check_window(values, slots, ts, sids)
    gkey = _int64("gkey", gkey)
    if gkey.shape != sids.shape:
        raise ValueError(f"gkey: {gkey.shape[0]} keys for {sids.shape[0]} series")
    if gkey.size and gkey.max() >= n_groups:
        raise ValueError(f"gkey: group {int(gkey.max())} >= n_groups = {n_groups}")
    code, q = stat_code(stat, quantile)
    n_groups = int(n_groups)
    if code in (STAT_RATE, STAT_LAST):
        per = np.empty(len(sids), np.float64)
        _series_window_kernel(values, slots, ts, sids, code, q, per)
        ok = (gkey >= 0) & (per == per)
        count = np.bincount(gkey[ok], minlength=n_groups).astype(np.int64)
        total = np.bincount(gkey[ok], weights=per[ok], minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(count > 0, total / count if code == STAT_LAST else total, np.nan)
        return out, count
    out = np.empty(n_groups, np.float64)
    count = np.empty(n_groups, np.int64)
    _group_window_kernel(values, slots, ts, sids, gkey, code, q, out, count)
    return out, count


def group_slot_sum(values, slots, ts, sids, gkey, n_groups: int, scale=None,
                   counter: bool = False) -> np.ndarray:
    """Per group and window slot, the sum of its series' samples (or per-second rates).

    Returns
    -------
    float64 array [n_groups, w]; NaN where a group had no sample in a slot.
    """
    values, slots, ts, sids = _check_window(values, slots, ts, sids)
    gkey = _int64("gkey", gkey)
    if gkey.shape != sids.shape:
        raise ValueError(f"gkey: {gkey.shape[0]} keys for {sids.shape[0]} series")
    if gkey.size and gkey.max() >= n_groups:
        raise ValueError(f"gkey: group {int(gkey.max())} >= n_groups = {n_groups}")
    # a writable copy: broadcast views are read-only, which the kernel's signature does not take
    scale = np.ones(len(sids)) if scale is None else np.array(
        np.broadcast_to(np.asarray(scale, np.float64), sids.shape), dtype=np.float64)
    out = np.full((int(n_groups), len(slots)), np.nan)
    _group_slot_sum_kernel(values, slots, ts, sids, gkey, scale, bool(counter), out)
    return out


def quantile(a, q: float) -> float:
    """Linear-interpolation quantile of the non-NaN entries of ``a`` (NaN if none), by selection."""
    a = np.asarray(a, dtype=np.float64)
    a = np.ascontiguousarray(a[a == a])
    if not (0.0 <= q <= 1.0):
        raise ValueError(f"quantile: q = {q!r}: must be in [0, 1]")
    if a.size == 0:
        return float("nan")
    out = np.empty(1)
    # One series, one slot per sample: the series-window kernel's selection does the work.
    _series_window_kernel(a.reshape(-1, 1), np.arange(a.size, dtype=np.int64),
                          np.zeros(a.size), np.zeros(1, np.int64), STAT_QUANTILE, float(q), out)
    return float(out[0])
