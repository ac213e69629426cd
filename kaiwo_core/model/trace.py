"""Workload traces: the openb pod and node lists, and the FGD experiment's sampling, exactly.

The openb trace (Alibaba ``cluster-trace-gpu-v2023``) is what the USENIX ATC'23 paper "Beware of
Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent" (FGD) evaluates
on. Its files are CSV:

* pod lists ``openb_pod_list_*.csv``: ``name, cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec,
  qos, pod_phase, creation_time, deletion_time, scheduled_time``; the ``multigpu*`` variants have
  only the first five columns. ``gpu_milli`` is per GPU; it is below 1000 only for one-GPU pods
  (GPU sharing); ``gpu_spec`` lists the allowed GPU models (``V100M16|V100M32``, empty = any).
* node lists ``openb_node_list_*.csv``: ``sn, cpu_milli, memory_mib, gpu, model``.

:func:`read_pod_csv` and :func:`read_node_csv` read them (plain or gzipped) into columnar arrays and
reject a bad file with the file, line, column and value (:class:`TraceError`).

The FGD experiment (one trace, one seed) is reproduced exactly, down to the simulator's use of Go's
``math/rand``: :class:`GoRand` is that generator (the additive lagged Fibonacci generator of Go's
``math/rand``, with its seeding table recomputed from the generator's definition by polynomial
jump-ahead rather than copied), and :func:`fgd_arrivals` is the simulator's sequence of draws:

1. ``Seed(seed)``, then one ``Int()`` (the simulator logs a random number after seeding);
2. the pods sorted by name and ``Shuffle``-d;
3. inflation: pods drawn with ``Intn`` from the name-sorted list and appended while the running
   GPU request (``num_gpu * gpu_milli``, starting from the whole trace's) plus the draw's
   per-GPU ``gpu_milli`` stays within ``ratio`` x the cluster's GPU milli; the draw that would pass
   it ends the loop and is dropped. A trace that already asks for more (``multigpu30`` and up) is
   tuned down instead: pods at ``Intn(len)`` leave the shuffled list until it fits;
4. ten draws by the simulator's Kubernetes informers (client-go jitters each watch timeout with
   the same global generator) -- found by matching the published curves, which then agree at every
   point for every seed checked;
5. ``Perm(n_nodes)`` over the name-sorted nodes: node i (in name order) gets rank ``perm[i]``, and
   the scheduler sees nodes by rank (score ties go to the lower rank: the simulator's scheduler
   picks the smallest node name among the best, and names carry the rank as a prefix).

:func:`workload_shapes` is FGD's target workload: the most frequent request shapes of the original
trace (not the inflated one) covering a share of its pods, with the normalised frequencies the
simulator computes (same float operations, so fragmentation scores match bit for bit).
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from .cluster import Cluster, cluster_from_arrays
from .errors import show
from .limits import INT32_MAX, MAX_CPU_MILLI, MAX_DEVICES, MAX_MEMORY_MIB
from .requests import NO_CONSTRAINT, Constraint, PodBatch, batch_from_arrays

POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
POD_OPTIONAL = ("gpu_spec", "qos", "pod_phase", "creation_time", "deletion_time", "scheduled_time")
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
MILLI = 1000
#: Maxima per column (kaiwo_core.model.limits): counts go to int32 arrays, CPU and memory to int64 ones
#: that are summed over every node and pod.
LIMITS = {"cpu_milli": MAX_CPU_MILLI, "memory_mib": MAX_MEMORY_MIB, "num_gpu": MAX_DEVICES, "gpu": MAX_DEVICES,
          "num_gpus": 2**16, "node num": 2**20}


class TraceError(ValueError):
    """A trace file Kaiwo cannot read: names the file, the line (1 = header), the column and the
    value, and says why."""

    def __init__(self, path, line: int | None, column: str | None, value, reason: str):
        self.path, self.line, self.column, self.value, self.reason = str(path), line, column, value, reason
        where = self.path if line is None else f"{self.path}:{line}"
        what = "" if column is None else f" column {column!r}"
        shown = "" if value is None else f" = {show(value)}"
        super().__init__(f"{where}:{what}{shown}: {reason}")

    def __reduce__(self):  # rebuilt from its fields, so it crosses process boundaries (process pools)
        return type(self), (self.path, self.line, self.column, self.value, self.reason)


# ------------------------------------------------------------------------------------ reading

def _open_text(path) -> io.TextIOBase:
    p = Path(path)
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
    return open(p, encoding="utf-8", newline="")


def read_rows(path, required: tuple, optional: tuple = ()):
    """(header index map, iterator of (line number, row)) of a CSV file (``.gz`` too), blank lines
    skipped; a missing or unknown column or a row of the wrong length raises :class:`TraceError`."""
    f = _open_text(path)
    reader = csv.reader(f)
    try:
        header = next(reader)
    except StopIteration:
        f.close()
        raise TraceError(path, 1, None, None, "empty file (expected a header line)") from None
    except (UnicodeDecodeError, OSError, EOFError, zlib.error, csv.Error) as e:
        f.close()
        raise TraceError(path, 1, None, None, f"not a readable CSV file ({e})") from None
    header = [h.strip() for h in header]
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    missing = [c for c in required if c not in header]
    if missing:
        f.close()
        raise TraceError(path, 1, missing[0], None,
                         f"missing column (the header has {', '.join(header) or 'nothing'}; "
                         f"required: {', '.join(required)})")
    unknown = [c for c in header if c not in required and c not in optional]
    if unknown:
        f.close()
        raise TraceError(path, 1, unknown[0], None,
                         f"unknown column (known: {', '.join(required + optional)})")
    index = {c: header.index(c) for c in header}

    def gen():
        with f:
            line = 1
            try:
                for row in reader:
                    line = reader.line_num
                    if not row or all(not c.strip() for c in row):
                        continue
                    if len(row) != len(header):
                        raise TraceError(path, line, None, None,
                                         f"{len(row)} fields, the header has {len(header)}")
                    yield line, row
            except (UnicodeDecodeError, csv.Error, OSError, EOFError, zlib.error) as e:  # a corrupt .gz too
                raise TraceError(path, line + 1, None, None, f"not readable ({e})") from None
    return index, gen()


def _int(path, line, column, text, lo=0, hi=None) -> int:
    """A whole number within [lo, hi] (``hi``: the column's maximum from :data:`LIMITS` when not
    given), checked before it reaches an int32/int64 array where it would overflow."""
    s = text.strip()
    hi = LIMITS.get(column, INT32_MAX) if hi is None else hi
    if len(s) > 40:  # no count is this long (and int() refuses 4,300+ digits)
        raise TraceError(path, line, column, text, "too long for a number (more than 40 characters)")
    try:
        v = int(s)
    except ValueError:
        try:  # some exports write whole numbers as floats ("1000.0")
            f = float(s)
        except ValueError:
            raise TraceError(path, line, column, text, "not an integer") from None
        if not math.isfinite(f) or f != int(f):
            raise TraceError(path, line, column, text, "not a whole number") from None
        v = int(f)
    if v < lo:
        raise TraceError(path, line, column, text, f"must be >= {lo}")
    if v > hi:
        raise TraceError(path, line, column, text, f"must be <= {hi}")
    return v


def _time(path, line, column, text) -> float:
    s = text.strip()
    if not s:
        return math.nan
    try:
        v = float(s)
    except ValueError:
        raise TraceError(path, line, column, text, "not a number of seconds") from None
    if not math.isfinite(v):
        raise TraceError(path, line, column, text, "not a finite number")
    return v


@dataclass
class PodTrace:
    """Pod requests of a trace, columnar. Row order is file order."""

    path: str
    names: list
    cpu: np.ndarray        #: int64 milli-cores
    memory: np.ndarray     #: int64 MiB
    num_gpu: np.ndarray    #: int32 GPUs
    gpu_milli: np.ndarray  #: int32 milli-GPU on each GPU (< 1000: a GPU-sharing pod)
    gpu_spec: list         #: str per pod: allowed GPU models joined by "|", "" = any
    creation: np.ndarray   #: float64 seconds, NaN where the file has none
    deletion: np.ndarray   #: float64 seconds, NaN where the file has none

    def __len__(self) -> int:
        return len(self.names)

    @property
    def gpu_request(self) -> np.ndarray:
        """int64 milli-GPU each pod asks for in total (``num_gpu * gpu_milli``)."""
        return self.num_gpu.astype(np.int64) * self.gpu_milli.astype(np.int64)

    def take(self, idx) -> "PodTrace":
        """Rows ``idx`` (an index array, repeats allowed), in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        return PodTrace(self.path, [self.names[i] for i in idx], self.cpu[idx], self.memory[idx],
                        self.num_gpu[idx], self.gpu_milli[idx], [self.gpu_spec[i] for i in idx],
                        self.creation[idx], self.deletion[idx])

    def name_order(self) -> np.ndarray:
        """Row indices sorted by pod name (the order the FGD simulator starts from)."""
        return np.array(sorted(range(len(self.names)), key=self.names.__getitem__), dtype=np.int64)

    def to_batch(self, models: bool = True) -> PodBatch:
        """The rows as a :class:`~kaiwo_core.model.requests.PodBatch`: whole GPUs for ``gpu_milli``
        1000, a time-sliced fraction on each of ``num_gpu`` GPUs below that, CPU-only pods for 0
        GPUs. With ``models``, ``gpu_spec`` becomes a GPU-model constraint; a pod that needs no GPU
        ignores it (as in the FGD simulator)."""
        whole = self.gpu_milli >= MILLI
        gpus = np.where(whole, self.num_gpu, 0)
        fraction = np.where(whole, 0, self.gpu_milli)
        constraints, cls = constraint_classes(self.gpu_spec if models else None, self.num_gpu)
        return batch_from_arrays(cpu=self.cpu, memory=self.memory, gpus=gpus, fraction=fraction,
                                 num_devices=np.maximum(self.num_gpu, 1), cls=cls,
                                 constraints=constraints, names=self.names)


def constraint_classes(gpu_spec, num_gpu) -> tuple[list, np.ndarray]:
    """Constraint classes for ``gpu_spec`` strings: (list of Constraint, int32 class per pod).

    Class 0 is always "no constraint"; a pod without GPUs is never constrained by its spec."""
    constraints = [NO_CONSTRAINT]
    index = {None: 0}
    n = len(num_gpu)
    cls = np.zeros(n, dtype=np.int32)
    if gpu_spec is None:
        return constraints, cls
    for i in range(n):
        spec = gpu_spec[i]
        if not spec or num_gpu[i] == 0:
            continue
        models = frozenset(m.strip().upper() for m in spec.split("|") if m.strip())
        if not models:
            continue
        c = index.get(models)
        if c is None:
            c = index[models] = len(constraints)
            constraints.append(Constraint(gpu_models=models))
        cls[i] = c
    return constraints, cls


def read_pod_csv(path) -> PodTrace:
    """Read an openb-format pod list (``.csv`` or ``.csv.gz``), five-column files included.

    Raises
    ------
    TraceError
        Missing or unknown column, a row with the wrong number of fields, or a bad value (negative,
        not an integer, ``gpu_milli`` outside 0..1000, GPUs without ``gpu_milli`` or the reverse);
        the message names the file, line, column and value.
    """
    index, rows = read_rows(path, POD_COLUMNS, POD_OPTIONAL)
    names, cpu, mem, ngpu, milli, spec, created, deleted = [], [], [], [], [], [], [], []
    i_spec, i_c, i_d = index.get("gpu_spec"), index.get("creation_time"), index.get("deletion_time")
    seen: dict[str, int] = {}
    for line, row in rows:
        name = row[index["name"]].strip()
        if not name:
            raise TraceError(path, line, "name", row[index["name"]], "empty pod name")
        if name in seen:
            raise TraceError(path, line, "name", name, f"duplicate pod name (first on line {seen[name]})")
        seen[name] = line
        c = _int(path, line, "cpu_milli", row[index["cpu_milli"]])
        m = _int(path, line, "memory_mib", row[index["memory_mib"]])
        g = _int(path, line, "num_gpu", row[index["num_gpu"]])
        gm = _int(path, line, "gpu_milli", row[index["gpu_milli"]], 0, MILLI)
        if g == 0 and gm > 0:
            raise TraceError(path, line, "gpu_milli", row[index["gpu_milli"]],
                             "a pod with num_gpu 0 cannot ask for GPU milli")
        if g > 0 and gm == 0:
            raise TraceError(path, line, "gpu_milli", row[index["gpu_milli"]],
                             f"a pod with num_gpu {g} must ask for 1..1000 milli on each GPU")
        names.append(name)
        cpu.append(c)
        mem.append(m)
        ngpu.append(g)
        milli.append(gm)
        spec.append(row[i_spec].strip() if i_spec is not None else "")
        created.append(_time(path, line, "creation_time", row[i_c]) if i_c is not None else math.nan)
        deleted.append(_time(path, line, "deletion_time", row[i_d]) if i_d is not None else math.nan)
    if not names:
        raise TraceError(path, None, None, None, "no pods in the file")
    return PodTrace(str(path), names, np.array(cpu, np.int64), np.array(mem, np.int64),
                    np.array(ngpu, np.int32), np.array(milli, np.int32), spec,
                    np.array(created, np.float64), np.array(deleted, np.float64))


def reorder_cluster(base: Cluster, order, names=None) -> Cluster:
    """``base`` with its nodes in ``order`` (order[k] = index in ``base`` of the k-th node), its
    devices regrouped to follow, and optionally the nodes renamed (``names[i]`` for base node i).
    Build a cluster once, then reorder it per seed: much cheaper than building it again."""
    order = np.asarray(order, dtype=np.int64)
    start = base.node_dev_start
    counts = (start[1:] - start[:-1])[order]
    new_start = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_start[1:])
    dev_idx = np.concatenate([np.arange(start[i], start[i + 1]) for i in order]) if len(order) else \
        np.zeros(0, np.int64)
    dev_idx = dev_idx.astype(np.int64)
    nodes = [base.nodes[i] if names is None else replace(base.nodes[i], name=names[i]) for i in order]
    return Cluster(nodes=nodes, node_cpu_cap=base.node_cpu_cap[order], node_mem_cap=base.node_mem_cap[order],
                   node_pods_cap=base.node_pods_cap[order], node_dev_start=new_start,
                   dev_node=np.repeat(np.arange(len(order), dtype=np.int32), counts),
                   dev_gpu=base.dev_gpu[dev_idx], dev_partition=base.dev_partition[dev_idx],
                   dev_mem_cap=base.dev_mem_cap[dev_idx], dev_xcd_mask=base.dev_xcd_mask[dev_idx],
                   dev_xcds_per_domain=base.dev_xcds_per_domain[dev_idx],
                   dev_domain=base.dev_domain[dev_idx], errors=list(base.errors))


@dataclass
class NodeList:
    """GPU nodes of a trace, columnar, in file order."""

    path: str
    names: list
    cpu: np.ndarray      #: int64 milli-cores
    memory: np.ndarray   #: int64 MiB
    gpus: np.ndarray     #: int32 GPUs
    models: list         #: str GPU model per node ("" for none)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def n_gpus(self) -> int:
        return int(self.gpus.sum())

    def name_order(self) -> np.ndarray:
        return np.array(sorted(range(len(self.names)), key=self.names.__getitem__), dtype=np.int64)

    def to_cluster(self, rank=None, pods: int = 1 << 30) -> Cluster:
        """A cluster of these nodes as generic GPUs (compute packing only: GPU memory is left
        unknown, since the trace asks for none), ordered by ``rank`` (rank[i] = position of row i;
        default: file order). Node names get a zero-padded rank prefix, as the FGD simulator
        renames them, so the cluster's name order is the rank order. Pod slots are unlimited
        (``pods``): the FGD experiment filters on CPU, memory and GPUs only.

        The cluster is built once per node list and reordered for each rank (a few array takes)."""
        n = len(self.names)
        rank = np.arange(n) if rank is None else np.asarray(rank, dtype=np.int64)
        key = ("cluster", pods)
        base = self._cache.get(key)
        if base is None:
            width = max(4, len(str(max(n - 1, 0))))
            names = [f"{i:0{width}d}-{self.names[i]}" for i in range(n)]  # file order
            models = [m or "generic" for m in self.models]
            base = self._cache[key] = cluster_from_arrays(names, self.cpu, self.memory, self.gpus,
                                                          model=models, pods=np.full(n, pods),
                                                          gpu_memory_mib=[0] * n)
        order = np.empty(n, dtype=np.int64)
        order[rank] = np.arange(n)  # order[position] = file row
        return reorder_cluster(base, order, [f"{int(rank[i]):0{max(4, len(str(max(n - 1, 0))))}d}-"
                                             f"{self.names[i]}" for i in range(n)])


def read_node_csv(path) -> NodeList:
    """Read an openb-format node list (``sn, cpu_milli, memory_mib, gpu, model``).

    Raises
    ------
    TraceError
        As :func:`read_pod_csv`; also a node with GPUs but no model.
    """
    index, rows = read_rows(path, NODE_COLUMNS)
    names, cpu, mem, gpus, models = [], [], [], [], []
    seen: dict[str, int] = {}
    for line, row in rows:
        name = row[index["sn"]].strip()
        if not name:
            raise TraceError(path, line, "sn", row[index["sn"]], "empty node name")
        if name in seen:
            raise TraceError(path, line, "sn", name, f"duplicate node name (first on line {seen[name]})")
        seen[name] = line
        g = _int(path, line, "gpu", row[index["gpu"]])
        model = row[index["model"]].strip()
        if g > 0 and not model:
            raise TraceError(path, line, "model", row[index["model"]], f"a node with {g} GPUs needs a model")
        names.append(name)
        cpu.append(_int(path, line, "cpu_milli", row[index["cpu_milli"]]))
        mem.append(_int(path, line, "memory_mib", row[index["memory_mib"]]))
        gpus.append(g)
        models.append(model)
    if not names:
        raise TraceError(path, None, None, None, "no nodes in the file")
    return NodeList(str(path), names, np.array(cpu, np.int64), np.array(mem, np.int64),
                    np.array(gpus, np.int32), models)


# --------------------------------------------------------------------------- Go's math/rand

_LEN, _TAP, _M31 = 607, 273, (1 << 31) - 1
_MASK64, _MASK63 = (1 << 64) - 1, (1 << 63) - 1
_COOKED_STEPS = 7_800_000_000_000
_INFORMER_DRAWS = 10


def _seedrand(x: int) -> int:
    """x -> 48271 x mod (2^31 - 1), Schrage's method with Go's truncating int32 division."""
    hi = x // 44488 if x >= 0 else -((-x) // 44488)
    lo = x - 44488 * hi
    x = 48271 * lo - 3399 * hi
    return x + _M31 if x < 0 else x


def _polymulmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b mod (x^607 - x^334 - 1), coefficients mod 2^64."""
    c = [int(v) for v in np.convolve(a, b)]  # uint64 arithmetic wraps mod 2^64, as wanted
    for d in range(len(c) - 1, _LEN - 1, -1):  # x^d = x^(d-273) + x^(d-607)
        v = c[d]
        if v:
            c[d - _TAP] = (c[d - _TAP] + v) & _MASK64
            c[d - _LEN] = (c[d - _LEN] + v) & _MASK64
    c += [0] * (_LEN - len(c))
    return np.array(c[:_LEN], dtype=np.uint64)


@lru_cache(maxsize=1)
def _cooked() -> tuple:
    """Go's seeding table ``rngCooked``: the generator's register after 7.8e12 steps from its
    seeding with 1 (how Go's gen_cooked.go defines it), computed by jump-ahead.

    The register evolves as a_k = a_(k-607) + a_(k-273) (mod 2^64), a linear recurrence with
    characteristic polynomial x^607 - x^334 - 1, so a_(N+s) is a fixed linear combination of the
    first 607 terms given by x^(N+s) mod that polynomial: 43 squarings instead of 7.8e12 steps.
    """
    init = [0] * _LEN
    x = 1
    for i in range(-20, _LEN):
        x = _seedrand(x)
        if i >= 0:
            u = x << 20
            x = _seedrand(x)
            u ^= x << 10
            x = _seedrand(x)
            init[i] = u ^ x
    # Term j (j = -606..0) of the sequence is the register slot the feed pointer reaches at step j.
    b = np.array([init[(334 - (i - 606)) % _LEN] for i in range(_LEN)], dtype=np.uint64)
    power = np.zeros(_LEN, np.uint64)
    power[0] = 1
    base = np.zeros(_LEN, np.uint64)
    base[1] = 1
    e = _COOKED_STEPS
    while e:
        if e & 1:
            power = _polymulmod(power, base)
        base = _polymulmod(base, base)
        e >>= 1
    table = [0] * _LEN
    c = power
    for s in range(_LEN):
        k = _COOKED_STEPS - 606 + s            # term a_k, k = N-606..N: the last 607 written
        table[(334 - k) % _LEN] = int(np.dot(c, b)) & _MASK64
        top = int(c[-1])                        # c <- c * x  (mod the polynomial)
        c = np.concatenate([np.zeros(1, np.uint64), c[:-1]])
        if top:
            c[0] = np.uint64((int(c[0]) + top) & _MASK64)
            c[334] = np.uint64((int(c[334]) + top) & _MASK64)
    return tuple(table)


class GoRand:
    """Go's ``math/rand`` (the seeded ``rngSource`` and the ``Rand`` methods the FGD simulator
    calls), bit for bit, so FGD's seeded experiments can be replayed exactly.

    >>> r = GoRand(1)
    >>> r.int63(), [GoRand(1).intn(100) for _ in range(1)]
    (5577006791947779410, [81])
    """

    def __init__(self, seed: int):
        cooked = _cooked()
        seed = int(seed)
        seed = abs(seed) % _M31 * (-1 if seed < 0 else 1)  # Go's % truncates toward zero
        if seed < 0:
            seed += _M31
        x = seed or 89482311
        vec = [0] * _LEN
        for i in range(-20, _LEN):
            x = _seedrand(x)
            if i >= 0:
                u = x << 40
                x = _seedrand(x)
                u ^= x << 20
                x = _seedrand(x)
                u ^= x
                vec[i] = (u ^ cooked[i]) & _MASK64
        self._vec = vec
        self._tap = 0
        self._feed = _LEN - _TAP

    def uint64(self) -> int:
        self._tap = self._tap - 1 if self._tap else _LEN - 1
        self._feed = self._feed - 1 if self._feed else _LEN - 1
        x = (self._vec[self._feed] + self._vec[self._tap]) & _MASK64
        self._vec[self._feed] = x
        return x

    def int63(self) -> int:
        return self.uint64() & _MASK63

    def int31(self) -> int:
        return self.int63() >> 32

    def uint32(self) -> int:
        return (self.int63() >> 31) & 0xFFFFFFFF

    def int31n(self, n: int) -> int:
        """``Rand.Int31n``: uniform in [0, n) by rejection."""
        if n <= 0:
            raise ValueError("n must be > 0")
        if n & (n - 1) == 0:
            return self.int31() & (n - 1)
        top = _M31 - (1 << 31) % n
        v = self.int31()
        while v > top:
            v = self.int31()
        return v % n

    def intn(self, n: int) -> int:
        """``Rand.Intn`` for n < 2^31."""
        if n >= 1 << 31:
            raise ValueError("n must be < 2^31")
        return self.int31n(n)

    def _int31n_lemire(self, n: int) -> int:
        """The unexported ``int31n`` that ``Shuffle`` uses (multiply-shift with rejection)."""
        v = self.uint32()
        prod = v * n
        low = prod & 0xFFFFFFFF
        if low < n:
            thresh = ((1 << 32) - n) % n
            while low < thresh:
                v = self.uint32()
                prod = v * n
                low = prod & 0xFFFFFFFF
        return prod >> 32

    def shuffle(self, items: list) -> None:
        """``Rand.Shuffle`` (Fisher-Yates from the end) of a list, in place."""
        if len(items) >= 1 << 31:
            raise ValueError("too many items")
        for i in range(len(items) - 1, 0, -1):
            j = self._int31n_lemire(i + 1)
            items[i], items[j] = items[j], items[i]

    def perm(self, n: int) -> list:
        """``Rand.Perm``: a random permutation of range(n) (inside-out, one Intn per element)."""
        m = [0] * n
        for i in range(n):
            j = self.intn(i + 1)
            m[i] = m[j]
            m[j] = i
        return m


# ------------------------------------------------------------------------ the FGD experiment

@dataclass
class Arrivals:
    """One FGD run's input: the pods in the order they are offered, and the node ranks."""

    pods: np.ndarray       #: int64 row of the trace for each offered pod, in offer order
    node_rank: np.ndarray  #: int64 position of node i (file row) in the scheduler's node order
    n_original: int        #: how many offers are the shuffled trace itself (the rest inflate it)


def fgd_arrivals(trace: PodTrace, nodes: NodeList, seed: int, ratio: float = 1.3) -> Arrivals:
    """The FGD simulator's arrivals for ``seed``: shuffled trace, inflation to ``ratio`` x the GPU
    capacity, node order (see the module docstring). seed 42 on the openb ``default`` trace and
    GPU node list gives 10,866 pods."""
    rng = GoRand(seed)
    rng.int63()  # the simulator logs rand.Int() right after seeding
    by_name = trace.name_order().tolist()
    order = list(by_name)
    rng.shuffle(order)
    target = ratio * float(nodes.n_gpus * MILLI)
    request = trace.gpu_request
    total = int(request.sum())
    extra = []
    n = len(by_name)
    if float(total) > target:
        # Tune down: random pods leave the shuffled list until the request fits in the target.
        while float(total) > target:
            row = order.pop(rng.intn(len(order)))
            total -= int(request[row])
    elif float(total) < target:
        while True:
            row = by_name[rng.intn(n)]
            # The check adds the per-GPU milli of the draw, the sum its total (as the simulator).
            if float(total + int(trace.gpu_milli[row])) > target:
                break
            total += int(request[row])
            extra.append(row)
    # The simulator's informers draw ten numbers (watch-timeout jitter) before it orders the nodes:
    # found by matching the published per-seed curves, which then agree at every point.
    for _ in range(_INFORMER_DRAWS):
        rng.int63()
    node_by_name = nodes.name_order()
    perm = rng.perm(len(nodes))
    rank = np.empty(len(nodes), dtype=np.int64)
    rank[node_by_name] = perm
    return Arrivals(np.array(order + extra, dtype=np.int64), rank, len(order))


@dataclass
class Workload:
    """A target workload: request shapes and their frequencies."""

    cpu: np.ndarray        #: int64 milli-cores
    num_gpu: np.ndarray    #: int32
    gpu_milli: np.ndarray  #: int32 per GPU
    gpu_spec: list         #: str, "" = any model
    weight: np.ndarray     #: float64 frequency
    count: np.ndarray      #: int64 pods of each shape in the trace
    #: int8 request kind per shape when the shapes are already mapped onto other devices (AMD
    #: mode); None = derived from ``gpu_milli`` (1000: whole GPUs, less: a time-sliced share)
    kind: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.weight)


def workload_shapes(trace: PodTrace, coverage: float = 95, models: bool = True) -> Workload:
    """FGD's target workload: distinct (cpu, gpu_milli, num_gpu, gpu_spec) shapes of ``trace``,
    most frequent first (ties: larger cpu, gpu_milli, num_gpu, then spec, first), taking shapes
    one by one until they cover ``coverage`` percent of the pods; frequencies are renormalised
    over the kept shapes with the simulator's float operations. CPU-only pods are included.
    Without ``models`` the GPU-model restrictions are dropped (AMD mode)."""
    counts: dict = {}
    specs = trace.gpu_spec if models else [""] * len(trace)
    for i in range(len(trace)):
        key = (int(trace.cpu[i]), int(trace.gpu_milli[i]), int(trace.num_gpu[i]), specs[i])
        counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    total = float(len(trace))
    expected = float(coverage) * total / 100.0
    kept, cum = [], 0.0
    for key, cnt in ranked:
        if cum >= expected:
            break
        cum += float(cnt)
        kept.append((key, cnt, float(cnt) / total))
    scale = cum / total
    weight = np.array([w / scale for _, _, w in kept], dtype=np.float64) if len(kept) < len(ranked) \
        else np.array([w for _, _, w in kept], dtype=np.float64)
    keys = [k for k, _, _ in kept]
    return Workload(cpu=np.array([k[0] for k in keys], np.int64),
                    num_gpu=np.array([k[2] for k in keys], np.int32),
                    gpu_milli=np.array([k[1] for k in keys], np.int32),
                    gpu_spec=[k[3] for k in keys], weight=weight,
                    count=np.array([c for _, c, _ in kept], np.int64))
