"""Checked columns for the array API (``cluster_from_arrays``, ``batch_from_arrays``).

A bad argument must say which argument and which value, not fail later deep inside numpy or a
kernel (an IndexError, a silent wrap-around when 2**32 + 1 GPUs is cast to int32, a float
truncated to an integer). :func:`column` is the one place that turns a user's sequence into a
kernel column and raises a ValueError or TypeError naming ``label[i] = value``.
"""
from __future__ import annotations

import numpy as np


def column(label: str, value, n: int, dtype, default=0, lo=None, hi=None, what: str = "rows") -> np.ndarray:
    """``value`` (a flat sequence of ``n`` numbers, or None for ``default``) as a contiguous
    ``dtype`` array. Integers must be integral and within ``lo``..``hi`` (and the dtype's range);
    floats must be finite; booleans may be given as 0/1."""
    dtype = np.dtype(dtype)
    if value is None:
        return np.full(n, default, dtype)
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{label}: not a sequence of numbers ({e})") from None
    if raw.ndim != 1:
        raise ValueError(f"{label}: a flat sequence of {n} values is needed, got shape {raw.shape}")
    if len(raw) != n:
        raise ValueError(f"{label}: {len(raw)} values for {n} {what}")
    if raw.dtype.kind not in "biuf":
        bad = next((i for i, v in enumerate(raw.tolist())
                    if isinstance(v, bool) or not isinstance(v, (int, float))), 0)
        raise TypeError(f"{label}[{bad}] = {raw.tolist()[bad]!r}: must be a number")
    if dtype.kind == "f":
        vals = raw.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(vals))
        if bad.size:
            raise ValueError(f"{label}[{bad[0]}] = {vals[bad[0]]}: must be a finite number")
        return np.ascontiguousarray(vals, dtype=dtype)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    lo = lo if lo is not None else (info.min if info else 0)
    hi = min(hi, info.max) if (hi is not None and info) else (hi if hi is not None else (info.max if info else 1))
    if raw.dtype.kind == "f":  # vectorised: the array API feeds simulations, step after step
        bad = np.flatnonzero(~np.isfinite(raw) | (raw != np.floor(raw)))
        if bad.size:
            raise ValueError(f"{label}[{bad[0]}] = {raw[bad[0]].item()!r}: must be an integer")
        out_of = (raw < float(lo)) | (raw > float(hi))
    elif raw.dtype.kind in "ub":  # unsigned (or bool): compare as uint64, bounds clipped at 0
        vals = raw.astype(np.uint64)
        out_of = (vals < np.uint64(max(lo, 0))) | (vals > np.uint64(max(hi, 0))) if hi >= 0 \
            else np.ones(len(raw), bool)
    else:
        out_of = (raw.astype(np.int64) < lo) | (raw.astype(np.int64) > hi)
    bad = np.flatnonzero(out_of)
    if bad.size:
        raise ValueError(f"{label}[{bad[0]}] = {raw[bad[0]].item()!r}: must be between {lo} and {hi}")
    return np.ascontiguousarray(raw.astype(dtype))

__all__ = ["column"]
