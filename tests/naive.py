"""Plain-Python references for every compiled kernel.

Each function here is the slow, obviously-correct version of a kernel in ``csrc/`` (C++),
``kaiwo_core/_quantity.pyx`` (Cython) or a Numba module. Tests compare the compiled code with these
on random inputs (hypothesis); benchmarks time both in the same run to report ratios.
"""

# ---------------------------------------------------------------- quantities (kaiwo_core._quantity)
import re as _re
from fractions import Fraction as _Fraction

_Q_NUMBER = _re.compile(r"([+-]?)([0-9]+\.?[0-9]*|\.[0-9]+)")
_Q_EXPONENT = _re.compile(r"[eE]([+-]?[0-9]+)")
_Q_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_Q_BINARY_SI = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_Q_SPACE = " \t\n\r\v\f"
_Q_INT64_MAX = 2**63 - 1


class NaiveQuantityError(ValueError):
    """Reference error: ``reason`` says why (same wording as kaiwo_core.model.quantity.QuantityError)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _naive_text(value):
    """The string to parse for a str/int/float input, or an exact Fraction for an int."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise NaiveQuantityError(f"expected a string or number, got {type(value).__name__}")
    if isinstance(value, int):
        return _Fraction(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise NaiveQuantityError("not a number")
        return repr(value)
    return value


def naive_quantity_value(value):
    """Exact value of a quantity and the kind of its suffix.

    Returns ``(Fraction, kind)`` with kind ``"none"``, ``"si"``, ``"binary"`` or ``"exponent"``
    (``"int"`` for a Python int). Negative values are returned as they are.
    """
    s = _naive_text(value)
    if isinstance(s, _Fraction):
        return s, "int"
    try:
        size = len(s.encode("utf-8"))
    except UnicodeError:
        raise NaiveQuantityError("cannot be encoded as UTF-8") from None
    if size == 0:
        raise NaiveQuantityError("empty string")
    if size > 256:
        raise NaiveQuantityError("longer than 256 bytes")
    if s[0] in _Q_SPACE or s[-1] in _Q_SPACE:
        raise NaiveQuantityError("leading or trailing whitespace")
    m = _Q_NUMBER.match(s)
    if not m:
        raise NaiveQuantityError("not a number")
    sign, number = m.groups()
    suffix = s[m.end():]
    whole, _, frac = number.partition(".")
    value = _Fraction(int(whole + frac or "0"), 10 ** len(frac))
    if sign == "-":
        value = -value
    if suffix == "":
        return value, "none"
    if suffix in _Q_DECIMAL_SI:
        return value * _Fraction(10) ** _Q_DECIMAL_SI[suffix], "si"
    if suffix in _Q_BINARY_SI:
        return value * 2 ** _Q_BINARY_SI[suffix], "binary"
    e = _Q_EXPONENT.fullmatch(suffix)
    if not e:
        raise NaiveQuantityError(f"unknown suffix {suffix!r}")
    # Clamp the exponent so 10**exp stays computable: the mantissa is below 10**256, so beyond +-1000
    # every nonzero value is either above 2**63 units or strictly between 0 and 1 unit either way.
    exp = max(-1000, min(1000, int(e.group(1))))
    return value * _Fraction(10) ** exp, "exponent"


def _naive_ceil(x):
    return -((-x.numerator) // x.denominator)


def naive_quantity(value, unit):
    """Reference for ``parse_quantity``: exact Fraction arithmetic, rounding up (whole for count).

    ``unit``: ``"cpu"`` (milli-cores), ``"memory"`` (MiB of bytes), ``"count"``, or ``"mib"``
    (``parse_mib``: a number without SI/binary suffix is MiB and must be whole; > 0).
    """
    value, kind = naive_quantity_value(value)
    if value < 0:
        raise NaiveQuantityError("must not be negative")
    if unit == "cpu":
        result = _naive_ceil(value * 1000)
    elif unit == "memory":
        result = _naive_ceil(value / 2**20)
    elif unit == "count" or (unit == "mib" and kind not in ("si", "binary")):
        if value.denominator != 1:
            raise NaiveQuantityError("a number without a unit suffix is MiB and must be whole"
                                     if unit == "mib" else "not a whole number")
        result = value.numerator
    elif unit == "mib":
        result = _naive_ceil(value / 2**20)
    else:
        raise ValueError(unit)
    if result > _Q_INT64_MAX:
        raise NaiveQuantityError("too large")
    if unit == "mib" and result == 0:
        raise NaiveQuantityError("must be greater than 0")
    return result


def naive_fraction(value):
    """Reference for ``parse_fraction``: milli-GPU of a plain decimal in [0.1, 1.0], milli precision."""
    s = _naive_text(value)
    if isinstance(s, _Fraction):
        x = s
    else:
        if isinstance(value, float) and "e" in s:
            raise NaiveQuantityError("must be between 0.1 and 1.0")
        if s == "":
            raise NaiveQuantityError("empty string")
        if len(s.encode("utf-8", "surrogatepass")) > 256:
            raise NaiveQuantityError("longer than 256 bytes")
        if s[0] in _Q_SPACE or s[-1] in _Q_SPACE:
            raise NaiveQuantityError("leading or trailing whitespace")
        m = _Q_NUMBER.fullmatch(s)
        if not m:
            raise NaiveQuantityError("not a number")
        sign, number = m.groups()
        whole, _, frac = number.partition(".")
        x = _Fraction(int(whole + frac or "0"), 10 ** len(frac)) * (-1 if sign == "-" else 1)
    if not _Fraction(1, 10) <= x <= 1:
        raise NaiveQuantityError("must be between 0.1 and 1.0")
    if (x * 1000).denominator != 1:
        raise NaiveQuantityError("more than milli precision (at most 3 decimals)")
    return int(x * 1000)


def naive_quantities(values, unit):
    """Reference for ``parse_quantities``: ``(list of int, list of error indices)``; None -> 0."""
    out, bad = [], []
    for i, v in enumerate(values):
        if v is None:
            out.append(0)
            continue
        try:
            out.append(naive_quantity(v, unit))
        except NaiveQuantityError:
            out.append(0)
            bad.append(i)
    return out, bad


# ---------------------------------------------------------------- placement (csrc/placement.cpp)

# Everything below is the executable specification of `kaiwo::place_batch`. It is deliberately
# naive: Python ints and lists, every check re-evaluated from the device arrays, scores computed by
# placing tentatively and undoing. Float expressions are written in the same order as the C++ so that
# scores, and hence node choices, are identical bit for bit.

import math as _math

import numpy as _np

P_KIND_NO_GPU, P_KIND_WHOLE, P_KIND_SHARED, P_KIND_XCD = 0, 1, 2, 3
P_IDLE, P_SHARED, P_EXCLUSIVE = 0, 1, 2
P_BINPACK, P_SPREAD, P_FRAG = 0, 1, 2
P_RANDOM, P_BEST_FIT, P_DOT_PRODUCT, P_GPU_PACKING, P_GPU_CLUSTERING, P_FGD = range(3, 9)
P_LOAD = 9
P_POLICIES = (P_FRAG, P_RANDOM, P_BEST_FIT, P_DOT_PRODUCT, P_GPU_PACKING, P_GPU_CLUSTERING, P_FGD)
MAX_SPEC_CPU, MAX_SPEC_GPU = 128000, 8000
MAX_WORKLOAD = 1024
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1
(R_NODE_FILTER, R_CPU, R_MEMORY, R_PODS, R_GPU_COUNT, R_GPU_BUSY, R_GPU_SHARE, R_GPU_MEMORY,
 R_XCD, R_RESERVED) = range(10)
NUM_REASONS = 10

_CLUSTER_MUTABLE = ("node_cpu_free", "node_mem_free", "node_pods_free", "dev_milli_free",
                    "dev_mem_free", "dev_xcd_free", "dev_state")


def _popcount(x):
    return bin(x).count("1")


def _ceil_div(a, b):
    return -(-a // b)


def _lists(arrays):
    """dict of numpy arrays -> dict of (nested) lists of Python ints/floats."""
    return {k: (None if v is None else _np.asarray(v).tolist()) for k, v in arrays.items()}


def pod_shape_ref(b, p):
    """The GPU shape (kind, count, milli, gpu_mem, exclusive) of pod p (b: dict of lists)."""
    return (b["kind"][p], b["count"][p], b["milli"][p], b["gpu_mem"][p], b["exclusive"][p])


def _devs(c, n):
    return range(c["node_dev_start"][n], c["node_dev_start"][n + 1])


def _share_mem(c, d, milli, gpu_mem):
    return gpu_mem if gpu_mem > 0 else _ceil_div(milli * c["dev_mem_cap"][d], 1000)


def _xcd_need(c, d, milli, gpu_mem):
    """(nx, k, charged milli, memory) of an XCD pod on device d."""
    nx = _popcount(c["dev_xcd_mask"][d])
    if nx == 0:
        return 0, 0, 0, 0
    k = max(1, _ceil_div(milli * nx, 1000))
    charge = k * 1000 // nx
    mem = gpu_mem if gpu_mem > 0 else c["dev_mem_cap"][d] * k // nx
    return nx, k, charge, mem


def best_xcd_subset_ref(free, k, xcds_per_domain):
    """k XCDs of `free` touching the fewest memory domains, then the lowest mask (None if none)."""
    best = None
    for m in range(256):
        if m & ~free or _popcount(m) != k:
            continue
        domains = len({b // xcds_per_domain for b in range(8) if m >> b & 1})
        if best is None or (domains, m) < best:
            best = (domains, m)
    return None if best is None else best[1]


_ALL_XCDS = 0xFFFFFFFF


class Access:
    """What device reservations (batch keys dev_resv, dev_resv_xcds, class_resv) mean for one pod.

    held(d): the XCDs of device d held against the pod by a reservation its class may not use -- 0
    if none, every bit if the whole device is held. A wholly held device is, for the pod, as if
    taken; held XCDs as if taken by an XCD pod, so the device can still host an XCD pod on its other
    XCDs and nothing else. mine(d): d is held by a reservation the pod may use -- such devices are
    taken first, and on them an XCD pod takes the held XCDs (own(d)) when they are enough."""

    def __init__(self, b=None, p=None):
        self.on = b is not None and b.get("dev_resv") is not None
        if self.on:
            self.resv, self.xcds = b["dev_resv"], b["dev_resv_xcds"]
            self.access = b["class_resv"][b["cls"][p]]

    def held(self, d):
        if not self.on or self.resv[d] < 0 or self.access[self.resv[d]]:
            return 0
        return self.xcds[d] if self.xcds[d] else _ALL_XCDS

    def mine(self, d):
        return self.on and self.resv[d] >= 0 and self.access[self.resv[d]] == 1

    def own(self, d):
        """XCDs of d held for the pod (every bit for a whole device, or when d is not its)."""
        return self.xcds[d] if self.mine(d) and self.xcds[d] else _ALL_XCDS


_NO_ACCESS = Access()


def _exclusive_mode(shape):
    kind, _, _, _, exclusive = shape
    return kind == P_KIND_WHOLE or (kind in (P_KIND_SHARED, P_KIND_XCD) and exclusive == 1)


def gpu_check_ref(c, n, shape, acc=_NO_ACCESS):
    """Device-level checks of `shape` on node n for a pod with reservation access ``acc``:
    (reason or None, chosen devices)."""
    kind, count, milli, gpu_mem, exclusive = shape
    devs = list(_devs(c, n))
    if len(devs) < count:
        return R_GPU_COUNT, []
    st, mf, memf, xf = c["dev_state"], c["dev_milli_free"], c["dev_mem_free"], c["dev_xcd_free"]
    held = acc.held
    if _exclusive_mode(shape):
        idle = [d for d in devs if st[d] == P_IDLE]
        if len(idle) < count:
            return R_GPU_BUSY, []
        idle = [d for d in idle if not held(d)]
        if len(idle) < count:  # there would be enough without the reservations' devices
            return R_RESERVED, []
        fit = [d for d in idle if memf[d] >= gpu_mem]  # a non-sharing pod still gets its memory
        if len(fit) < count:
            return R_GPU_MEMORY, []
        fit.sort(key=lambda d: (not acc.mine(d), d))
        return None, fit[:count]
    if kind == P_KIND_SHARED:
        share = [d for d in devs if st[d] != P_EXCLUSIVE and mf[d] >= milli]
        if len(share) < count:
            return R_GPU_SHARE, []
        share = [d for d in share if not held(d)]
        if len(share) < count:
            return R_RESERVED, []
        fit = [d for d in share if memf[d] >= _share_mem(c, d, milli, gpu_mem)]
        if len(fit) < count:
            return R_GPU_MEMORY, []
        fit.sort(key=lambda d: (not acc.mine(d), 0 if st[d] == P_SHARED else 1, mf[d], d))
        return None, fit[:count]
    # XCD-isolated
    xcd = [d for d in devs if _popcount(c["dev_xcd_mask"][d]) > 0 and st[d] != P_EXCLUSIVE
           and _popcount(xf[d]) >= _xcd_need(c, d, milli, gpu_mem)[1]]
    if len(xcd) < count:
        return R_XCD, []
    xcd = [d for d in xcd if _popcount(xf[d] & ~held(d)) >= _xcd_need(c, d, milli, gpu_mem)[1]]
    if len(xcd) < count:
        return R_RESERVED, []
    share = [d for d in xcd if mf[d] >= _xcd_need(c, d, milli, gpu_mem)[2]]
    if len(share) < count:
        return R_GPU_SHARE, []
    fit = [d for d in share if memf[d] >= _xcd_need(c, d, milli, gpu_mem)[3]]
    if len(fit) < count:
        return R_GPU_MEMORY, []
    fit.sort(key=lambda d: (not acc.mine(d), 0 if st[d] == P_SHARED else 1, _popcount(xf[d] & ~held(d)), d))
    return None, fit[:count]


def _charge(c, d, shape, acc=_NO_ACCESS):
    """Charge one device-unit of `shape` on device d for a pod with reservation access ``acc``;
    returns (milli, mem, xcds) of the assignment."""
    kind, _, milli, gpu_mem, _ = shape
    if _exclusive_mode(shape):
        out = (c["dev_milli_free"][d], c["dev_mem_free"][d], c["dev_xcd_mask"][d])
        c["dev_milli_free"][d] = 0
        c["dev_mem_free"][d] = 0
        c["dev_xcd_free"][d] = 0
        c["dev_state"][d] = P_EXCLUSIVE
        return out
    if kind == P_KIND_SHARED:
        mem = _share_mem(c, d, milli, gpu_mem)
        c["dev_milli_free"][d] -= milli
        c["dev_mem_free"][d] -= mem
        c["dev_state"][d] = P_SHARED
        return (milli, mem, c["dev_xcd_free"][d])
    _, k, charge, mem = _xcd_need(c, d, milli, gpu_mem)
    usable = c["dev_xcd_free"][d] & ~acc.held(d)
    own = usable & acc.own(d)
    s = best_xcd_subset_ref(own if _popcount(own) >= k else usable, k, c["dev_xcds_per_domain"][d])
    c["dev_xcd_free"][d] &= ~s
    c["dev_milli_free"][d] -= charge
    c["dev_mem_free"][d] -= mem
    c["dev_state"][d] = P_SHARED
    return (charge, mem, s)


def _unit_ok(c, d, shape):
    """Could device d (not EXCLUSIVE) host one device-unit of `shape`? (fragmentation test)"""
    kind, _, milli, gpu_mem, _ = shape
    if _exclusive_mode(shape):
        return c["dev_state"][d] == P_IDLE and c["dev_mem_free"][d] >= gpu_mem
    if kind == P_KIND_SHARED:
        return c["dev_milli_free"][d] >= milli and c["dev_mem_free"][d] >= _share_mem(c, d, milli, gpu_mem)
    nx, k, charge, mem = _xcd_need(c, d, milli, gpu_mem)
    return (nx > 0 and _popcount(c["dev_xcd_free"][d]) >= k and c["dev_milli_free"][d] >= charge
            and c["dev_mem_free"][d] >= mem)


def _ratio(used, cap):
    return 0.0 if cap == 0 else float(used) / float(cap)


def _base_reason(c, b, p, n):
    if not b["class_mask"][b["cls"][p]][n]:
        return R_NODE_FILTER
    if b["cpu"][p] > c["node_cpu_free"][n]:
        return R_CPU
    if b["mem"][p] > c["node_mem_free"][n]:
        return R_MEMORY
    if c["node_pods_free"][n] < 1:
        return R_PODS
    return None


def _node_reason(c, b, p, n):
    """(first failing reason or None, chosen devices) of pod p on node n."""
    r = _base_reason(c, b, p, n)
    if r is not None or b["kind"][p] == P_KIND_NO_GPU:
        return r, []
    return gpu_check_ref(c, n, pod_shape_ref(b, p), Access(b, p))


def splitmix64_at_ref(seed, k):
    """splitmix64's output number k for `seed` (see Batch::seed in csrc/placement.hpp)."""
    z = (seed + k * GOLDEN_GAMMA) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _draw_below(x, m):
    return (x * m) >> 64


def sigmoid_score_ref(before, after):
    """int(100 * sigmoid((before - after) / 1000)), truncated (an overflowing exp is inf)."""
    x = (before - after) / 1000.0
    try:
        e = _math.exp(-x)
    except OverflowError:
        e = _math.inf
    return int(1.0 / (1.0 + e) * 100.0)


def _pod_mode_shape(b, p):
    """The GPU part of pod p as the 5-tuple (kind, count, milli, gpu_mem, exclusive)."""
    return pod_shape_ref(b, p)


def workload_ref(b):
    """[(cpu, shape 5-tuple or None, cls, weight)]: the caller's target workload, or the batch's own
    shapes (distinct (cpu, GPU shape, class), most frequent first, ties to first appearance, weight =
    share of the batch's pods, at most MAX_WORKLOAD)."""
    if b.get("workload_shapes") is not None:
        out = []
        for row, w in zip(b["workload_shapes"], b["workload_weights"]):
            cpu, kind, count, milli, gmem, excl, cls = row
            shape = None if kind == P_KIND_NO_GPU else (kind, count, milli, gmem, excl)
            out.append((cpu, shape, cls, w))
        return out
    counts, first, keys = {}, {}, []
    for p in range(len(b["cpu"])):
        gpu = b["kind"][p] != P_KIND_NO_GPU
        key = (b["cpu"][p], b["kind"][p], b["count"][p] if gpu else 0, b["milli"][p] if gpu else 0,
               b["gpu_mem"][p] if gpu else 0, b["exclusive"][p] if gpu else 0, b["cls"][p])
        if key not in counts:
            counts[key] = 0
            first[key] = p
            keys.append(key)
        counts[key] += 1
    ranked = sorted(keys, key=lambda k: (-counts[k], first[k]))[:MAX_WORKLOAD]
    n = len(b["cpu"])
    return [(k[0], None if k[1] == P_KIND_NO_GPU else (k[1], k[2], k[3], k[4], k[5]), k[6],
             float(counts[k]) / float(n)) for k in ranked]


def cpu_per_milli_ref(wl):
    """The target workload's CPU per GPU milli over its GPU shapes (0 if none)."""
    c = g = 0.0
    for cpu, shape, _, w in wl:
        if shape is not None:
            c += w * float(cpu)
            g += w * float(shape[1]) * float(shape[2])
    return c / g if g > 0 else 0.0


def frag_F_ref(c, b, n, cpu_left, wl):
    """F of node n (the FGD simulator's fragmentation): per target shape, in order, weight x (free
    milli the shape cannot use) into one of six buckets, summed in that order."""
    devs = list(_devs(c, n))
    total = sum(c["dev_milli_free"][d] for d in devs)
    q1 = q2 = q4 = xl = xr = na = 0.0
    for cpu, shape, cls, w in wl:
        fits = cpu_left >= cpu
        if shape is None:
            if fits:
                xl += w * float(total)
            else:
                xr += w * float(total)
            continue
        if cls >= 0 and not b["class_mask"][cls][n]:
            na += w * float(total)
            continue
        usable = [d for d in devs if c["dev_state"][d] != P_EXCLUSIVE]
        ok = [d for d in usable if _unit_ok(c, d, shape)]
        if len(ok) >= shape[1]:
            if fits:
                q2 += w * float(sum(c["dev_milli_free"][d] for d in usable if d not in ok))
            else:
                q4 += w * float(total)
        elif fits:
            q2 += w * float(total)
        else:
            q1 += w * float(total)
    out = 0.0
    for v in (q1, q2, q4, xl, xr, na):
        out += v
    return out


def _picks_device(shape):
    kind, count, _, _, excl = shape
    return count == 1 and kind in (P_KIND_SHARED, P_KIND_XCD) and not excl


def _candidates(c, n, shape, acc=_NO_ACCESS):
    """Devices of node n that pass every check for a one-device sharing shape, in index order."""
    kind, count, milli, gpu_mem, _ = shape
    st, mf, memf, xf = c["dev_state"], c["dev_milli_free"], c["dev_mem_free"], c["dev_xcd_free"]
    held = acc.held
    out = []
    for d in _devs(c, n):
        if st[d] == P_EXCLUSIVE:
            continue
        if kind == P_KIND_SHARED:
            if not held(d) and mf[d] >= milli and memf[d] >= _share_mem(c, d, milli, gpu_mem):
                out.append(d)
        else:
            nx, k, charge, mem = _xcd_need(c, d, milli, gpu_mem)
            if nx > 0 and _popcount(xf[d] & ~held(d)) >= k and mf[d] >= charge and memf[d] >= mem:
                out.append(d)
    return out


def _total_free(c, n):
    return sum(c["dev_milli_free"][d] for d in _devs(c, n))


def _tentative(c, n, devices, shape, fn, acc=_NO_ACCESS):
    """fn() evaluated with `shape` charged on `devices`, then the devices restored."""
    saved = [(d, c["dev_milli_free"][d], c["dev_mem_free"][d], c["dev_xcd_free"][d], c["dev_state"][d])
             for d in _devs(c, n)]
    for d in devices:
        _charge(c, d, shape, acc)
    try:
        return fn()
    finally:
        for d, mf, memf, xf, st in saved:
            c["dev_milli_free"][d], c["dev_mem_free"][d] = mf, memf
            c["dev_xcd_free"][d], c["dev_state"][d] = xf, st


def best_fit_score_ref(cpu_free, cpu_req, gpu_free, gpu_req):
    score = 0.0
    score += (float(cpu_free) - float(cpu_req)) / float(MAX_SPEC_CPU) * 0.5
    score += (float(gpu_free) - float(gpu_req)) / float(MAX_SPEC_GPU) * 0.5
    score = (1.0 - score) * 100.0
    return int(score)


def dot_product_score_ref(cpu_free, cpu_req, gpu_free, gpu_req):
    nc = float(cpu_free) / float(MAX_SPEC_CPU)
    ng = float(gpu_free) / float(MAX_SPEC_GPU)
    pc = float(cpu_req) / float(MAX_SPEC_CPU)
    pg = float(gpu_req) / float(MAX_SPEC_GPU)
    dot = 0.0
    dot += nc * pc
    dot += ng * pg
    score = dot / 2.0
    score = 1.0 - score
    return int(100.0 * score)


def packing_score_ref(c, n, chosen):
    """The FGD simulator's GPU packing score (see kaiwo::Placer::packing_score)."""
    devs = list(_devs(c, n))
    fully = sum(1 for d in devs if c["dev_milli_free"][d] == 1000)
    if fully == len(devs):
        return max(100 // 3 - fully, fully)
    fresh = sum(1 for d in chosen if c["dev_milli_free"][d] == 1000)
    if fresh > 0:
        return max(100 // 2 - fresh, 100 // 3)
    ratio = sum(c["dev_milli_free"][d] * 100 // 1000 for d in chosen)
    return max(100 - ratio // 10, 100 // 2)


def kind_bit_ref(shape):
    kind, count, milli, _, _ = shape
    if milli < 1000:
        return 1
    return 1 << min(max(count, 1), 63)


def _trunc_div(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def clustering_score_ref(c, n, kinds, bit):
    base = _trunc_div(100 // 4 * (MAX_SPEC_GPU - _total_free(c, n)), MAX_SPEC_GPU)
    k = kinds[n]
    if k & bit:
        return base + (100 * 3 // 4 if k == bit else 100 * 2 // 4)
    return base + (100 // 4 if k == 0 else 0)


def kaiwo_score_ref(c, b, p, n, before, after, gdelta, ratio):
    """Kaiwo's policy (STRATEGY_FRAG_AWARE, see csrc/placement.cpp): FGD's sigmoid score, plus a
    tie-break below one point -- a CPU-only pod: least free GPU milli; a pod of one device or less:
    the least increase of F (un-truncated) plus of the node's CPU/GPU imbalance in GPU milli
    (`imbalance_increase_ref`); a larger pod: a node in use, then the fewest idle devices left."""
    sig = float(sigmoid_score_ref(before, after))
    tf = _total_free(c, n)
    if b["kind"][p] == P_KIND_NO_GPU:
        return sig - 1e-3 * float(tf) / float(MAX_SPEC_GPU)
    shape = pod_shape_ref(b, p)
    devs = list(_devs(c, n))
    if shape[1] >= 2:
        idle = sum(1 for d in devs if c["dev_state"][d] == P_IDLE)
        idle_after = float(idle - (shape[1] if _exclusive_mode(shape) else 0))
        return (sig + 1e-3 * (1.0 if tf < len(devs) * 1000 else 0.0)
                + 1e-6 * (1.0 - idle_after / float(len(devs))))
    return sig - 1e-8 * ((after - before) + imbalance_increase_ref(c, b, p, n, gdelta, ratio))


def imbalance_increase_ref(c, b, p, n, gdelta, ratio):
    """Increase of node n's |free CPU - ratio x free GPU milli| / ratio when pod p takes `gdelta`
    GPU milli there (0 if ratio is not positive)."""
    if not ratio > 0.0:
        return 0.0
    tf = _total_free(c, n)
    cpu_before = float(c["node_cpu_free"][n])
    gpu_before = float(tf)
    cpu_after = float(c["node_cpu_free"][n] - b["cpu"][p])
    gpu_after = float(tf - gdelta)
    return abs(cpu_after - ratio * gpu_after) / ratio - abs(cpu_before - ratio * gpu_before) / ratio


def _frag_pick(c, b, p, n, strategy, wl, ratio):
    """(score, device or None) of GPU pod p on feasible node n for kFgd / Kaiwo's policy."""
    shape = pod_shape_ref(b, p)
    acc = Access(b, p)
    cpu_left = c["node_cpu_free"][n] - b["cpu"][p]
    before = frag_F_ref(c, b, n, c["node_cpu_free"][n], wl)
    tf = _total_free(c, n)

    def score_with(devices):
        after, gdelta = _tentative(c, n, devices, shape,
                                   lambda: (frag_F_ref(c, b, n, cpu_left, wl), tf - _total_free(c, n)), acc)
        if strategy == P_FGD:
            return float(sigmoid_score_ref(before, after))
        return kaiwo_score_ref(c, b, p, n, before, after, gdelta, ratio)

    if not _picks_device(shape):
        return score_with(gpu_check_ref(c, n, shape, acc)[1]), None
    best, best_d = None, None
    for d in _candidates(c, n, shape, acc):
        sc = score_with([d])
        if best is None or sc > best:
            best, best_d = sc, d
    return best, best_d


def _policy_score(c, b, p, n, strategy, wl, kinds):
    """(score, device pick) of pod p on feasible node n under an FGD-paper policy or Kaiwo's."""
    cpu = b["cpu"][p]
    gpu = b["kind"][p] != P_KIND_NO_GPU
    chosen = gpu_check_ref(c, n, pod_shape_ref(b, p), Access(b, p))[1] if gpu else []
    gdelta = 0
    if gpu:
        before = _total_free(c, n)
        gdelta = before - _tentative(c, n, chosen, pod_shape_ref(b, p), lambda: _total_free(c, n))
    if strategy == P_BEST_FIT:
        return float(best_fit_score_ref(c["node_cpu_free"][n], cpu, _total_free(c, n), gdelta)), None
    if strategy == P_DOT_PRODUCT:
        return float(dot_product_score_ref(c["node_cpu_free"][n], cpu, _total_free(c, n), gdelta)), None
    if strategy == P_GPU_PACKING:
        return float(packing_score_ref(c, n, chosen) if gpu else 0), None
    if strategy == P_GPU_CLUSTERING:
        return float(clustering_score_ref(c, n, kinds, kind_bit_ref(pod_shape_ref(b, p))) if gpu else 0), None
    if strategy in (P_FGD, P_FRAG):
        ratio = cpu_per_milli_ref(wl)
        if gpu:
            return _frag_pick(c, b, p, n, strategy, wl, ratio)
        before = frag_F_ref(c, b, n, c["node_cpu_free"][n], wl)
        after = frag_F_ref(c, b, n, c["node_cpu_free"][n] - cpu, wl)
        if strategy == P_FGD:
            return float(sigmoid_score_ref(before, after)), None
        return kaiwo_score_ref(c, b, p, n, before, after, 0, ratio), None
    return 0.0, None


def _score(c, b, p, n, chosen, strategy):
    """Score of binpack / spread / load (the FGD-paper policies and Kaiwo's use `_policy_score`).
    load: spread's utilisations weighted by w_alloc, minus w_load x the node's measured load."""
    cpu_cap = c["node_cpu_cap"][n]
    w_alloc, w_load = b.get("load_weights") or (1.0, 1.0)
    load = b["node_load"][n] if b.get("node_load") is not None else 0.0
    cu = _ratio(cpu_cap - (c["node_cpu_free"][n] - b["cpu"][p]), cpu_cap)
    devs = list(_devs(c, n))
    if b["kind"][p] != P_KIND_NO_GPU:
        shape = pod_shape_ref(b, p)
        gused = _tentative(c, n, chosen, shape, lambda: sum(1000 - c["dev_milli_free"][d] for d in devs))
        gu = float(gused) / float(1000 * len(devs))
        if strategy == P_SPREAD:
            score = -gu - 0.001 * cu
        elif strategy == P_LOAD:
            score = -(w_alloc * (gu + 0.001 * cu)) - w_load * load
        else:
            score = gu + 0.001 * cu
    else:
        mem_cap = c["node_mem_cap"][n]
        mu = _ratio(mem_cap - (c["node_mem_free"][n] - b["mem"][p]), mem_cap)
        penalty = 1.0 if devs else 0.0
        if strategy == P_SPREAD:
            score = -(cu + mu) / 2.0 - penalty
        elif strategy == P_LOAD:
            score = -(w_alloc * ((cu + mu) / 2.0)) - penalty - w_load * load
        else:
            score = (cu + mu) / 2.0 - penalty
    extra = b.get("extra_score")
    if extra is not None:
        score = score + extra[b["cls"][p]][n]
    return score


def gang_count_ref(c, b, p, last, n):
    """How many of the gang's members p..last node n takes, placed there one after another (node
    checks, devices by the default rule), stopping at the first that does not fit. On a copy."""
    c = {k: list(c[k]) if isinstance(c[k], list) else c[k] for k in c}
    k = 0
    for q in range(p, last + 1):
        r, chosen = _node_reason(c, b, q, n)
        if r is not None:
            break
        c["node_cpu_free"][n] -= b["cpu"][q]
        c["node_mem_free"][n] -= b["mem"][q]
        c["node_pods_free"][n] -= 1
        for d in chosen:
            _charge(c, d, pod_shape_ref(b, q), Access(b, q))
        k += 1
    return k


def gang_nodes_ref(c, b, p, first, last, placed, feasible, domain):
    """The nodes gang member p may use (csrc/placement.cpp, "Gangs"), from its feasible nodes and
    the nodes of the members placed so far; ``domain`` is a one-element list holding the gang's
    domain, set at the first member. Returns the allowed node set."""
    feas = set(feasible)
    held = {n for n in placed if n >= 0 and n in feas}
    if held:
        return held
    left = last - p + 1
    count = {n: gang_count_ref(c, b, p, last, n) for n in feasible}
    dom = b.get("node_domain")
    if p == first and dom is not None:
        sums = {}
        for n, k in count.items():
            if dom[n] >= 0:
                sums[dom[n]] = sums.get(dom[n], 0) + k
        ranked = sorted((d for d in sums if sums[d] > 0), key=lambda d: (-min(sums[d], left), sums[d], d))
        domain[0] = ranked[0] if ranked and sums[ranked[0]] >= left else -1
    pool = feas
    if domain[0] >= 0 and any(dom[n] == domain[0] for n in feas):
        pool = {n for n in feas if dom[n] == domain[0]}
    top = max(count[n] for n in pool)
    return {n for n in pool if count[n] == top}


def feasible_nodes_ref(cluster, batch, p):
    """Reasons of pod p on every node of the current state: list of (reason or None) per node."""
    c, b = _lists(cluster), _lists(batch)
    return [_node_reason(c, b, p, n)[0] for n in range(len(c["node_cpu_free"]))]


def node_scores_ref(cluster, batch, p, strategy):
    """{node: score} of pod p on its feasible nodes in the current state (nothing is changed)."""
    c, b = _lists(cluster), _lists(batch)
    wl = workload_ref(b) if strategy in (P_FGD, P_FRAG) else []
    kinds = c.get("node_gpu_kinds") or [0] * len(c["node_cpu_free"])
    out = {}
    for n in range(len(c["node_cpu_free"])):
        r, chosen = _node_reason(c, b, p, n)
        if r is None:
            if strategy in (P_BINPACK, P_SPREAD, P_LOAD):
                out[n] = _score(c, b, p, n, chosen, strategy)
            else:
                out[n] = _policy_score(c, b, p, n, strategy, wl, kinds)[0]
    return out


def place_batch_ref(cluster, batch, strategy):
    """Reference of `_core.place_batch`: same arguments, same in-place updates, same outputs."""
    c, b = _lists(cluster), _lists(batch)
    n_nodes, n_pods = len(c["node_cpu_free"]), len(b["cpu"])
    wl = workload_ref(b) if strategy in (P_FGD, P_FRAG) else []
    seed = int(b["seed"][0]) if b.get("seed") is not None else 0
    has_kinds = c.get("node_gpu_kinds") is not None
    kinds = list(c["node_gpu_kinds"]) if has_kinds else [0] * n_nodes
    node, asg_start = [], [0]
    asg_dev, asg_milli, asg_mem, asg_xcds = [], [], [], []
    reason_counts, best_share = [], []
    gang = b.get("gang") or [-1] * n_pods
    gang_failed = [0] * n_pods
    for p in range(n_pods):
        if gang[p] >= 0 and (p == 0 or gang[p - 1] != gang[p]):  # a gang starts: checkpoint
            saved = {k: list(c[k]) for k in _CLUSTER_MUTABLE}
            saved_kinds = list(kinds)
            first, mark = p, len(asg_dev)
            last = p
            while last + 1 < n_pods and gang[last + 1] == gang[p]:
                last += 1
            domain = [-1]
        reasons = [0] * NUM_REASONS
        share = -1
        feasible = []
        for n in range(n_nodes):
            if _base_reason(c, b, p, n) is None:
                for d in _devs(c, n):
                    if c["dev_state"][d] != P_EXCLUSIVE:
                        share = max(share, c["dev_milli_free"][d])
            r, chosen = _node_reason(c, b, p, n)
            if r is not None:
                reasons[r] += 1
            else:
                feasible.append((n, chosen))
        if gang[p] >= 0 and last > first and feasible:
            allowed = gang_nodes_ref(c, b, p, first, last, node[first:p], [n for n, _ in feasible], domain)
            feasible = [(n, ch) for n, ch in feasible if n in allowed]
        extra = b.get("extra_score")
        best, best_score, best_chosen, best_pick = -1, None, [], None
        pick = None
        if strategy == P_RANDOM and feasible:
            pick = feasible[_draw_below(splitmix64_at_ref(seed, 2 * p + 1), len(feasible))][0]
        for n, chosen in feasible:
            dev_pick = None
            if strategy in (P_BINPACK, P_SPREAD, P_LOAD):
                score = _score(c, b, p, n, chosen, strategy)
            else:
                if strategy == P_RANDOM:
                    score = 100.0 if n == pick else 0.0
                else:
                    score, dev_pick = _policy_score(c, b, p, n, strategy, wl, kinds)
                if extra is not None:
                    score = score + extra[b["cls"][p]][n]
            if best < 0 or score > best_score:
                best, best_score, best_chosen, best_pick = n, score, chosen, dev_pick
        best_share.append(share)
        node.append(best)
        if best < 0:
            reason_counts.append(reasons)
        else:
            reason_counts.append([0] * NUM_REASONS)
            c["node_cpu_free"][best] -= b["cpu"][p]
            c["node_mem_free"][best] -= b["mem"][p]
            c["node_pods_free"][best] -= 1
            if b["kind"][p] != P_KIND_NO_GPU:
                shape = pod_shape_ref(b, p)
                if _picks_device(shape):
                    if strategy in (P_FGD, P_FRAG):
                        best_chosen = [best_pick]
                    elif strategy == P_RANDOM:
                        cands = _candidates(c, best, shape, Access(b, p))
                        best_chosen = [cands[_draw_below(splitmix64_at_ref(seed, 2 * p + 2), len(cands))]]
                if strategy == P_GPU_CLUSTERING:
                    kinds[best] |= kind_bit_ref(shape)
                acc = Access(b, p)
                for d in best_chosen:
                    m, mem, x = _charge(c, d, shape, acc)
                    asg_dev.append(d)
                    asg_milli.append(m)
                    asg_mem.append(mem)
                    asg_xcds.append(x)
        asg_start.append(len(asg_dev))
        if gang[p] >= 0 and (p + 1 == n_pods or gang[p + 1] != gang[p]):  # last member
            if sum(node[q] >= 0 for q in range(first, p + 1)) < b["gang_need"][p]:
                c.update(saved)  # too few fit: the gang holds nothing
                kinds = saved_kinds
                del asg_dev[mark:], asg_milli[mark:], asg_mem[mark:], asg_xcds[mark:]
                for q in range(first, p + 1):
                    node[q] = -1
                    asg_start[q + 1] = mark
                    gang_failed[q] = 1
    for k in _CLUSTER_MUTABLE:
        cluster[k][...] = _np.asarray(c[k], dtype=cluster[k].dtype)
    if has_kinds and strategy == P_GPU_CLUSTERING:
        cluster["node_gpu_kinds"][...] = _np.asarray(kinds, dtype=_np.uint64)
    return {
        "node": _np.array(node, dtype=_np.int32),
        "asg_start": _np.array(asg_start, dtype=_np.int64),
        "asg_dev": _np.array(asg_dev, dtype=_np.int32),
        "asg_milli": _np.array(asg_milli, dtype=_np.int64),
        "asg_mem": _np.array(asg_mem, dtype=_np.int64),
        "asg_xcds": _np.array(asg_xcds, dtype=_np.uint32),
        "reason_counts": _np.array(reason_counts, dtype=_np.int32).reshape(n_pods, NUM_REASONS),
        "best_share": _np.array(best_share, dtype=_np.int64),
        "gang_failed": _np.array(gang_failed, dtype=_np.uint8),
    }
