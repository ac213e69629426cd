"""The cluster as columnar arrays: nodes, and the logical GPUs (devices) on them.

A :class:`Cluster` is the static part (capacities, labels, taints, device geometry); a
:class:`ClusterState` is the mutable part (what is free) that placement updates. Both are plain numpy
arrays, node-major, so the compiled kernels take them without conversion.

Nodes come from Kubernetes Node objects (:func:`cluster_from_nodes`) or straight from arrays
(:func:`cluster_from_arrays`). A node that cannot be read (bad quantity, invalid partition mode,
GPU count that does not divide into partitions) is left out and reported as a :class:`NodeError`;
the rest of the cluster is unaffected.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import gpu as gpumod
from .arrays import column
from .errors import ObjectError, field_list, field_map, field_str, guarded, metadata, object_name
from .limits import INT32_MAX, MAX_CPU_MILLI, MAX_DEVICES, MAX_MEMORY_MIB, MAX_PODS_PER_NODE
from .quantity import QuantityError, parse_quantity

NODE_DEFAULT_PODS = 110  # the kubelet's default --max-pods

# Device states (kaiwo::DeviceState)
IDLE, SHARED, EXCLUSIVE = 0, 1, 2

LABEL_PRODUCT = "amd.com/gpu.product-name"
LABEL_VRAM = "amd.com/gpu.vram"
LABEL_PARTITION = "amd.com/gpu.compute-memory-partition"
RESOURCE_AMD = "amd.com/gpu"
RESOURCE_NVIDIA = "nvidia.com/gpu"
LABEL_NVIDIA_PRODUCT = "nvidia.com/gpu.product"
LABEL_NVIDIA_MEMORY = "nvidia.com/gpu.memory"


class NodeError(ObjectError):
    """A Node object that could not be read; the node is left out of the cluster."""

    kind = "Node"


@dataclass(frozen=True)
class GpuGroup:
    """``count`` physical GPUs of one model in one partition mode on a node."""

    part: gpumod.Partitioning
    count: int


@dataclass
class NodeSpec:
    """One node, decoded from a Node object (or built by hand)."""

    name: str
    cpu: int                      #: allocatable milli-cores
    memory: int                   #: allocatable MiB
    pods: int = NODE_DEFAULT_PODS
    gpus: tuple[GpuGroup, ...] = ()
    labels: dict = field(default_factory=dict)
    taints: tuple = ()            #: NoSchedule/NoExecute taints as (key, value, effect)
    unschedulable: bool = False
    resources: frozenset = frozenset()  #: GPU resource names the node advertises

    @property
    def model(self) -> str:
        return self.gpus[0].part.model.name if self.gpus else ""


@dataclass
class Cluster:
    """Static, columnar description of the nodes and their devices (logical GPUs)."""

    nodes: list[NodeSpec]
    node_cpu_cap: np.ndarray      #: int64[N]
    node_mem_cap: np.ndarray      #: int64[N]
    node_pods_cap: np.ndarray     #: int64[N]
    node_dev_start: np.ndarray    #: int64[N+1]
    dev_node: np.ndarray          #: int32[G]
    dev_gpu: np.ndarray           #: int32[G] physical GPU index on the node
    dev_partition: np.ndarray     #: int32[G] partition index on its physical GPU
    dev_mem_cap: np.ndarray       #: int64[G] MiB
    dev_xcd_mask: np.ndarray      #: uint32[G]
    dev_xcds_per_domain: np.ndarray  #: int32[G]
    dev_domain: np.ndarray        #: int32[G] memory domain (NPS quadrant) of the partition
    errors: list = field(default_factory=list)  #: NodeError for nodes left out
    _index: dict | None = None

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_devices(self) -> int:
        return int(self.dev_node.shape[0])

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def index(self, name: str) -> int:
        """Node index by name, or -1."""
        if self._index is None:
            self._index = {n.name: i for i, n in enumerate(self.nodes)}
        return self._index.get(name, -1)

    def device_index(self, node: int, gpu: int, partition: int) -> int:
        """Global device index of (physical GPU, partition) on a node, or -1 if there is none."""
        offset = int(self.node_dev_start[node])
        for group in self.nodes[node].gpus:
            per = group.part.logical_per_gpu
            if gpu < group.count:
                return offset + gpu * per + partition if partition < per else -1
            gpu -= group.count
            offset += group.count * per
        return -1

    def dev_cus_per_xcd(self) -> np.ndarray:
        """int64[G] compute units per XCD of each logical GPU's model (0: a generic GPU, whose
        CUs are unknown), laid out as :func:`build_cluster` lays the devices; cached."""
        got = self.__dict__.get("_cus_per_xcd")
        if got is None:
            per = [g.part.model.cus // g.part.model.xcds if g.part.model.xcds else 0
                   for nd in self.nodes for g in nd.gpus]
            counts = [g.count * g.part.logical_per_gpu for nd in self.nodes for g in nd.gpus]
            got = self.__dict__["_cus_per_xcd"] = np.repeat(np.array(per, dtype=np.int64),
                                                             np.array(counts, dtype=np.int64))
        return got

    def empty_state(self) -> "ClusterState":
        """Everything free."""
        return ClusterState(
            node_cpu_free=self.node_cpu_cap.copy(),
            node_mem_free=self.node_mem_cap.copy(),
            node_pods_free=self.node_pods_cap.copy(),
            dev_milli_free=np.full(self.n_devices, 1000, dtype=np.int64),
            dev_mem_free=self.dev_mem_cap.copy(),
            dev_xcd_free=self.dev_xcd_mask.copy(),
            dev_state=np.zeros(self.n_devices, dtype=np.int8),
        )


@dataclass
class ClusterState:
    """What is free on every node and device; placement updates it in place."""

    node_cpu_free: np.ndarray
    node_mem_free: np.ndarray
    node_pods_free: np.ndarray
    dev_milli_free: np.ndarray
    dev_mem_free: np.ndarray
    dev_xcd_free: np.ndarray
    dev_state: np.ndarray

    def copy(self) -> "ClusterState":
        return replace(self, **{k: v.copy() for k, v in vars(self).items()})


def kernel_view(cluster: Cluster, state: ClusterState) -> dict:
    """The dict of arrays ``_core.place_batch`` takes (state arrays are shared, not copied)."""
    return {
        "node_cpu_free": state.node_cpu_free, "node_mem_free": state.node_mem_free,
        "node_pods_free": state.node_pods_free, "node_cpu_cap": cluster.node_cpu_cap,
        "node_mem_cap": cluster.node_mem_cap, "node_dev_start": cluster.node_dev_start,
        "dev_gpu": cluster.dev_gpu, "dev_mem_cap": cluster.dev_mem_cap,
        "dev_xcd_mask": cluster.dev_xcd_mask, "dev_xcds_per_domain": cluster.dev_xcds_per_domain,
        "dev_milli_free": state.dev_milli_free, "dev_mem_free": state.dev_mem_free,
        "dev_xcd_free": state.dev_xcd_free, "dev_state": state.dev_state,
    }


# ------------------------------------------------------------------------------------------ build

def build_cluster(nodes: list[NodeSpec], errors: list | None = None) -> Cluster:
    """Lay out nodes (sorted by name, for determinism) and expand their GPUs into devices.

    Nodes whose name is not unique are all left out, each with a NodeError: pods name their node,
    so which of them a bound pod uses is unknown, and keeping any one could book capacity that is
    not there (keeping both books the same GPUs twice)."""
    errors = list(errors or [])
    nodes = _unique_names(nodes, errors)
    nodes = sorted(nodes, key=lambda n: n.name)
    n = len(nodes)
    dev_counts = np.array([sum(g.count * g.part.logical_per_gpu for g in nd.gpus) for nd in nodes],
                          dtype=np.int64)
    dev_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(dev_counts, out=dev_start[1:])
    g = int(dev_start[-1])
    dev_gpu = np.empty(g, np.int32)
    dev_part = np.empty(g, np.int32)
    dev_mem = np.empty(g, np.int64)
    dev_mask = np.empty(g, np.uint32)
    dev_per_domain = np.empty(g, np.int32)
    dev_domain = np.empty(g, np.int32)
    # One vectorised fill per distinct (partitioning) template: clusters have few distinct modes.
    pos = 0
    for nd in nodes:
        gpu_base = 0
        for grp in nd.gpus:
            p = grp.part
            k = p.logical_per_gpu
            m = grp.count * k
            sl = slice(pos, pos + m)
            dev_gpu[sl] = gpu_base + np.repeat(np.arange(grp.count, dtype=np.int32), k)
            parts = np.tile(np.arange(k, dtype=np.int32), grp.count)
            dev_part[sl] = parts
            dev_mem[sl] = p.memory_per_partition_mib
            dev_mask[sl] = np.array([p.xcd_mask(i) for i in range(k)], np.uint32)[parts]
            dev_per_domain[sl] = p.xcds_per_domain
            dev_domain[sl] = np.array([p.domain_of_partition(i) for i in range(k)], np.int32)[parts]
            pos += m
            gpu_base += grp.count
    return Cluster(
        nodes=nodes,
        node_cpu_cap=np.array([nd.cpu for nd in nodes], np.int64),
        node_mem_cap=np.array([nd.memory for nd in nodes], np.int64),
        node_pods_cap=np.array([nd.pods for nd in nodes], np.int64),
        node_dev_start=dev_start,
        dev_node=np.repeat(np.arange(n, dtype=np.int32), dev_counts),
        dev_gpu=dev_gpu, dev_partition=dev_part, dev_mem_cap=dev_mem, dev_xcd_mask=dev_mask,
        dev_xcds_per_domain=dev_per_domain, dev_domain=dev_domain,
        errors=errors,
    )


def _unique_names(nodes: list[NodeSpec], errors: list) -> list[NodeSpec]:
    count: dict = {}
    for nd in nodes:
        count[nd.name] = count.get(nd.name, 0) + 1
    if len(count) == len(nodes):
        return nodes
    for nd in nodes:
        if count[nd.name] > 1:
            errors.append(NodeError(nd.name, "metadata.name", nd.name,
                                    f"{count[nd.name]} Node objects have this name; all are left out "
                                    "(which one a pod bound to it uses is unknown)"))
    return [nd for nd in nodes if count[nd.name] == 1]


def cluster_from_arrays(names, cpu, memory, gpus, model: str = "MI300X", partition: str = "spx_nps1",
                        pods=None, gpu_memory_mib=None) -> Cluster:
    """Build a homogeneous-per-node cluster straight from arrays (no Kubernetes objects).

    Parameters
    ----------
    names : sequence of str
    cpu, memory : array-like of int
        Allocatable milli-cores and MiB per node.
    gpus : array-like of int
        Physical GPUs per node.
    model : str or sequence of str
        GPU model per node (one name for all): an AMD model (``MI300X``...) or any other name for a
        generic GPU.
    partition : str or sequence of str
        Partition mode per node, e.g. ``cpx_nps4`` (ignored for generic GPUs).
    pods : array-like of int, optional
        Pod slots per node (default 110).
    gpu_memory_mib : array-like of int, optional
        Memory per generic GPU (AMD models use their own).
    """
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
        raise TypeError(f"names: a sequence of node names is needed, got {names!r}")
    n = len(names)
    seen: set = set()
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise TypeError(f"names[{i}] = {name!r}: a node name must be a non-empty str")
        if name in seen:
            raise ValueError(f"names[{i}] = {name!r}: duplicate node name")
        seen.add(name)
    cpu = column("cpu", cpu, n, np.int64, lo=0, what="nodes")
    memory = column("memory", memory, n, np.int64, lo=0, what="nodes")
    gpus = column("gpus", gpus, n, np.int64, lo=0, hi=INT32_MAX, what="nodes")
    pods = column("pods", pods, n, np.int64, default=NODE_DEFAULT_PODS, lo=0, what="nodes")
    models = _per_node("model", model, n)
    modes = _per_node("partition", partition, n)
    gmem = [None] * n if gpu_memory_mib is None else \
        column("gpu_memory_mib", gpu_memory_mib, n, np.int64, lo=0, what="nodes").tolist()
    cache: dict = {}
    specs = []
    for i in range(n):
        key = (models[i], modes[i], gmem[i])
        part = cache.get(key)
        if part is None:
            try:
                part = cache[key] = _partitioning_for(models[i], modes[i], gmem[i])
            except gpumod.PartitionError as e:
                raise ValueError(f"partition[{i}] = {modes[i]!r} (model {models[i]!r}): {e}") from None
        count = int(gpus[i])
        res = RESOURCE_AMD if part.model.is_amd_instinct else RESOURCE_NVIDIA
        specs.append(NodeSpec(str(names[i]), int(cpu[i]), int(memory[i]), int(pods[i]),
                              (GpuGroup(part, count),) if count > 0 else (),
                              resources=frozenset({res}) if count > 0 else frozenset()))
    return build_cluster(specs)


def _per_node(label: str, value, n: int) -> list:
    """One str for all nodes, or a sequence of n of them."""
    values = [value] * n if isinstance(value, str) else list(value)
    if len(values) != n:
        raise ValueError(f"{label}: {len(values)} values for {n} nodes")
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"{label}[{i}] = {v!r}: must be a str")
    return values


def _partitioning_for(model: str, mode: str, vram_mib=None) -> gpumod.Partitioning:
    amd = gpumod.MODELS.get(model.upper())
    if amd is None:
        return gpumod.partitioning(gpumod.generic_model(model, vram_mib))
    return gpumod.partitioning(amd, *gpumod.parse_mode_label(mode))


# ------------------------------------------------------------------------- from Node objects

def cluster_from_nodes(objs: list[dict]) -> Cluster:
    """Build the cluster from Kubernetes Node objects (dicts as ``kubectl get -o yaml`` prints).

    Unreadable nodes are reported in ``Cluster.errors`` and left out.
    """
    specs, errors = [], []
    for obj in objs:
        got = decode_node(obj)
        (errors if isinstance(got, NodeError) else specs).append(got)
    return build_cluster(specs, errors)


def decode_node(obj: dict) -> NodeSpec | NodeError:
    """:func:`node_spec` inside the guard: the NodeSpec, or the node's NodeError (returned), never
    an exception -- what both ``Snapshot.from_objects`` and the controller's cache call."""
    return guarded(NodeError, obj, node_spec)


def node_spec(obj: dict) -> NodeSpec:
    """Decode one Node object. Raises NodeError naming the node, the field and the value."""
    name = object_name(obj)
    meta = metadata(NodeError, name, obj, "Node")
    labels = field_map(NodeError, name, meta.get("labels"), "metadata.labels")
    for key, value in labels.items():
        if not isinstance(value, str):
            raise NodeError(name, f"metadata.labels.{key}", value, "a label value must be a string")
    spec = field_map(NodeError, name, obj.get("spec"), "spec")
    status = field_map(NodeError, name, obj.get("status"), "status")
    src = "status.allocatable" if status.get("allocatable") else "status.capacity"
    alloc = field_map(NodeError, name, status.get("allocatable") or status.get("capacity"), src)

    def qty(key, unit, most, default=None):
        raw = alloc.get(key, default)
        if raw is None:
            raise NodeError(name, f"{src}.{key}", None, "missing")
        try:
            value = parse_quantity(raw, unit)
        except QuantityError as e:
            raise NodeError(name, f"{src}.{key}", raw, e.reason) from None
        if value > most:  # capacities are summed over nodes: keep the sums inside int64
            raise NodeError(name, f"{src}.{key}", raw, f"more than the maximum {most} ({unit})")
        return value

    cpu = qty("cpu", "cpu", MAX_CPU_MILLI)
    memory = qty("memory", "memory", MAX_MEMORY_MIB)
    pods = qty("pods", "count", MAX_PODS_PER_NODE, NODE_DEFAULT_PODS)
    gpus, resources = _gpu_groups(name, labels, alloc, src)
    taints = []
    for i, t in enumerate(field_list(NodeError, name, spec.get("taints"), "spec.taints")):
        t = field_map(NodeError, name, t, f"spec.taints[{i}]")
        if t.get("effect") in ("NoSchedule", "NoExecute"):
            taints.append((field_str(NodeError, name, t.get("key"), f"spec.taints[{i}].key"),
                           field_str(NodeError, name, t.get("value"), f"spec.taints[{i}].value"),
                           t["effect"]))
    return NodeSpec(name, cpu, memory, pods, tuple(gpus), dict(labels), tuple(taints),
                    bool(spec.get("unschedulable", False)), frozenset(resources))


def _gpu_groups(name: str, labels: dict, alloc: dict, src: str):
    """The node's GPUs as groups of one model and mode, and the resource names advertising them."""
    groups, resources = [], []
    for key, raw in alloc.items():
        if not isinstance(key, str) or "/" not in key:
            continue
        vendor, res = key.split("/", 1)
        if vendor == "nvidia.com" and res == "gpu":
            logical = _count(name, f"{src}.{key}", raw)
            if logical:
                model = labels.get(LABEL_NVIDIA_PRODUCT, "generic")
                vram = labels.get(LABEL_NVIDIA_MEMORY)
                vram = _count(name, f"metadata.labels.{LABEL_NVIDIA_MEMORY}", vram, MAX_MEMORY_MIB) \
                    if vram else None
                groups.append(GpuGroup(gpumod.partitioning(gpumod.generic_model(model, vram)), logical))
                resources.append(key)
            continue
        if vendor != "amd.com":
            continue
        if res == "gpu":
            mode_src = f"metadata.labels.{LABEL_PARTITION}"
            mode = labels.get(LABEL_PARTITION, "spx_nps1")
        else:
            try:  # mixed strategy: the resource name is the mode, e.g. amd.com/cpx_nps4
                gpumod.parse_mode_label(res)
            except gpumod.PartitionError:
                continue  # another AMD resource (not a GPU partition)
            mode_src, mode = f"{src}.{key}", res
        logical = _count(name, f"{src}.{key}", raw)
        if not logical:
            continue
        model = _amd_model(name, labels)
        try:
            part = gpumod.partitioning(model, *gpumod.parse_mode_label(mode))
        except gpumod.PartitionError as e:
            raise NodeError(name, mode_src, mode, str(e)) from None
        per = part.logical_per_gpu
        if logical % per:
            raise NodeError(name, f"{src}.{key}", raw,
                            f"{logical} logical GPUs do not divide into {per} {part.compute} "
                            f"partitions per {model.name}")
        groups.append(GpuGroup(part, logical // per))
        resources.append(key)
    total = sum(g.count * g.part.logical_per_gpu for g in groups)
    if total > MAX_DEVICES:  # each resource is within the limit, but not all of them together
        raise NodeError(name, src, f"{total} logical GPUs", f"more than {MAX_DEVICES} GPUs on one node")
    return groups, resources


def _amd_model(name: str, labels: dict) -> gpumod.GpuModel:
    product = labels.get(LABEL_PRODUCT)
    if product:
        model = gpumod.model_from_product_name(product)
        if model is not None:
            return model
    # Unknown AMD GPU (no node labeller, or a model we do not know): place it as a generic GPU
    # (compute share and memory only) with the memory the labeller advertises, if any.
    vram = labels.get(LABEL_VRAM)
    vram_mib = None
    if vram:
        try:
            vram_mib = parse_quantity(vram if vram[-1:] == "i" else vram + "i", "memory")
        except QuantityError as e:
            raise NodeError(name, f"metadata.labels.{LABEL_VRAM}", vram, e.reason) from None
        if vram_mib > MAX_MEMORY_MIB:
            raise NodeError(name, f"metadata.labels.{LABEL_VRAM}", vram, f"more than {MAX_MEMORY_MIB} MiB")
    return gpumod.generic_model(product or "AMD-unknown", vram_mib)


def _count(name: str, fld: str, raw, most: int = MAX_DEVICES) -> int:
    """A count, refused above ``most`` (by default the GPUs one node may have: the cluster's
    device arrays and the placement kernel's buffers are sized by them)."""
    try:
        value = parse_quantity(raw, "count")
    except QuantityError as e:
        raise NodeError(name, fld, raw, e.reason) from None
    if value > most:
        raise NodeError(name, fld, raw, f"more than {most}")
    return value
