"""GPU models and partition modes: how a physical GPU becomes logical GPUs.

Kubernetes sees one ``amd.com/gpu`` per *compute partition*. An AMD Instinct MI300X has 8 XCDs
(accelerator complex dies); its compute partition mode splits them into 1 (SPX), 2 (DPX), 4 (QPX)
or 8 (CPX) logical GPUs, and its memory partition mode splits HBM into 1, 2 or 4 NUMA domains
(NPS1/NPS2/NPS4; in NPS4 the XCD pair (2k, 2k+1) shares quadrant k). Only some combinations are
valid: memory partitions never outnumber compute partitions, and each model has its own list.

Generic GPUs (NVIDIA, unknown, or the undisclosed models of the openb trace) have no XCDs: only
compute share (milli-GPU) and memory are packed on them.

This module is the single source of these facts; everything else asks it.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Logical GPUs a physical GPU yields in each compute partition mode, per XCD count.
COMPUTE_PARTITIONS = {"SPX": 1, "DPX": 2, "TPX": 3, "QPX": 4, "CPX": None}  # CPX: one per XCD
MEMORY_DOMAINS = {"NPS1": 1, "NPS2": 2, "NPS4": 4}

_MI300X_MODES = frozenset({("SPX", "NPS1"), ("DPX", "NPS1"), ("DPX", "NPS2"), ("QPX", "NPS1"),
                           ("QPX", "NPS4"), ("CPX", "NPS1"), ("CPX", "NPS4")})
# MI350 series additionally allows QPX/CPX with NPS2.
_MI35X_MODES = _MI300X_MODES | {("QPX", "NPS2"), ("CPX", "NPS2")}
# MI300A (APU, 6 XCDs): SPX, TPX (3 x 2 XCDs) and CPX (6 x 1), single memory domain.
_MI300A_MODES = frozenset({("SPX", "NPS1"), ("TPX", "NPS1"), ("CPX", "NPS1")})


@dataclass(frozen=True)
class GpuModel:
    """A GPU product: XCD count, compute units and memory, and its valid partition modes."""

    name: str
    xcds: int          #: 0 for generic GPUs (no XCD-level placement)
    cus: int
    vram_mib: int      #: 0 = unknown (memory requests cannot be honoured on it)
    modes: frozenset   #: valid (compute, memory) pairs; generic GPUs: only ("SPX", "NPS1")

    @property
    def is_amd_instinct(self) -> bool:
        return self.xcds > 0


GIB = 1024
MODELS: dict[str, GpuModel] = {
    m.name: m for m in (
        GpuModel("MI300X", 8, 304, 192 * GIB, _MI300X_MODES),
        GpuModel("MI325X", 8, 304, 256 * GIB, _MI300X_MODES),
        GpuModel("MI350X", 8, 256, 288 * GIB, _MI35X_MODES),
        GpuModel("MI355X", 8, 256, 288 * GIB, _MI35X_MODES),
        GpuModel("MI300A", 6, 228, 128 * GIB, _MI300A_MODES),
    )
}
_GENERIC_MODES = frozenset({("SPX", "NPS1")})
#: Memory of the GPUs named in the openb trace (the G1-G3 models are undisclosed: memory unknown).
GENERIC_VRAM_MIB = {"T4": 16 * GIB, "P100": 16 * GIB, "V100M16": 16 * GIB, "V100M32": 32 * GIB,
                    "A10": 24 * GIB, "A100": 80 * GIB, "H100": 80 * GIB}


def generic_model(name: str, vram_mib: int | None = None) -> GpuModel:
    """A GPU without XCDs; memory from ``vram_mib``, else the known table, else unknown (0)."""
    if vram_mib is None:
        vram_mib = GENERIC_VRAM_MIB.get(name, 0)
    return GpuModel(name, 0, 0, int(vram_mib), _GENERIC_MODES)


def model_from_product_name(product: str) -> GpuModel | None:
    """Map a node-labeller product name (``AMD_Instinct_MI300X``, ``MI300X``, ``AMD Instinct MI325X
    OAM``) to a known AMD model, or None if it names none of them."""
    token = product.upper().replace("-", "_").replace(" ", "_")
    # Longest names first so MI300X is not mistaken for MI300A and vice versa.
    for name in sorted(MODELS, key=len, reverse=True):
        if name in token:
            return MODELS[name]
    return None


class PartitionError(ValueError):
    """An invalid compute/memory partition mode for a GPU model."""


@dataclass(frozen=True)
class Partitioning:
    """The logical GPUs one physical GPU yields in a given mode."""

    model: GpuModel
    compute: str
    memory: str

    @property
    def logical_per_gpu(self) -> int:
        n = COMPUTE_PARTITIONS[self.compute]
        return self.model.xcds if n is None else n

    @property
    def xcds_per_partition(self) -> int:
        return self.model.xcds // self.logical_per_gpu if self.model.xcds else 0

    @property
    def xcds_per_domain(self) -> int:
        """XCDs sharing one memory domain (NPS quadrant/half); 0 for generic GPUs."""
        return self.model.xcds // MEMORY_DOMAINS[self.memory] if self.model.xcds else 0

    @property
    def memory_per_partition_mib(self) -> int:
        return self.model.vram_mib // self.logical_per_gpu

    def xcd_mask(self, partition: int) -> int:
        """Bit mask of the physical XCDs that compute partition ``partition`` owns."""
        k = self.xcds_per_partition
        return ((1 << k) - 1) << (partition * k) if k else 0

    def domain_of_partition(self, partition: int) -> int:
        """Memory domain (NPS quadrant/half) of a partition's first XCD; 0 for generic GPUs."""
        per = self.xcds_per_domain
        return (partition * self.xcds_per_partition) // per if per else 0

    @property
    def label(self) -> str:
        """The mode as the node labeller and mixed resource names spell it (``cpx_nps4``)."""
        return f"{self.compute}_{self.memory}".lower()


def partitioning(model: GpuModel, compute: str = "SPX", memory: str = "NPS1") -> Partitioning:
    """Validate a mode for a model.

    Raises
    ------
    PartitionError
        Unknown mode names, or a combination the model does not support (e.g. SPX+NPS4 on MI300X:
        memory domains may not outnumber compute partitions).
    """
    compute, memory = compute.upper(), memory.upper()
    if compute not in COMPUTE_PARTITIONS:
        raise PartitionError(f"unknown compute partition mode {compute!r} "
                             f"(expected one of {', '.join(COMPUTE_PARTITIONS)})")
    if memory not in MEMORY_DOMAINS:
        raise PartitionError(f"unknown memory partition mode {memory!r} "
                             f"(expected one of {', '.join(MEMORY_DOMAINS)})")
    if (compute, memory) not in model.modes:
        valid = ", ".join(f"{c}+{m}" for c, m in sorted(model.modes))
        raise PartitionError(f"{compute}+{memory} is not a valid partition mode on {model.name} "
                             f"(valid: {valid})")
    return Partitioning(model, compute, memory)


def parse_mode_label(text: str) -> tuple[str, str]:
    """Split ``cpx_nps4`` / ``CPX-NPS4`` / ``cpx`` into ("CPX", "NPS4"); a bare compute mode means
    NPS1. Raises PartitionError on anything else."""
    parts = text.replace("-", "_").upper().split("_")
    if len(parts) == 1 and parts[0] in COMPUTE_PARTITIONS:
        return parts[0], "NPS1"
    if len(parts) == 2 and parts[0] in COMPUTE_PARTITIONS and parts[1] in MEMORY_DOMAINS:
        return parts[0], parts[1]
    raise PartitionError(f"cannot read partition mode {text!r} (expected e.g. 'cpx_nps4')")
