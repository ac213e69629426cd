"""Type stubs for the pybind11 module kaiwo_core._core (one section per bindings/register_<area>.cpp).

Sections are added by the area that owns them; areas without a section yet are reached through the
module-level ``__getattr__`` below (a partial stub), so type checkers do not reject them.
"""
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

def __getattr__(name: str) -> Any: ...  # areas not stubbed yet (partial stub)

# -------------------------------------------------------------- placement (register_placement.cpp)
# Enum values of csrc/placement.hpp. The _TypedDicts describe the dict-of-arrays contract of
# place_batch; they exist only in this stub. Dtypes are exact (native byte order), arrays C-contiguous.

KIND_NO_GPU: int  # 0: CPU/memory only
KIND_WHOLE: int  # 1: `count` whole idle logical GPUs, exclusively
KIND_SHARED: int  # 2: `milli` compute + `gpu_mem` MiB on each of `count` devices, time-sliced
KIND_XCD: int  # 3: whole XCDs, ceil(milli * n_xcd / 1000) of the partition's XCDs
STATE_IDLE: int  # 0
STATE_SHARED: int  # 1
STATE_EXCLUSIVE: int  # 2
STRATEGY_BINPACK: int  # 0
STRATEGY_SPREAD: int  # 1
STRATEGY_FRAG_AWARE: int  # 2: Kaiwo's fragmentation-aware policy (plugin "frag")
STRATEGY_RANDOM: int  # 3: FGD paper baseline, a random feasible node (seeded splitmix64)
STRATEGY_BEST_FIT: int  # 4: FGD paper baseline, least CPU and GPU left
STRATEGY_DOT_PRODUCT: int  # 5: FGD paper baseline, least free . requested (Tetris)
STRATEGY_GPU_PACKING: int  # 6: FGD paper baseline, partly used GPUs / nodes first
STRATEGY_GPU_CLUSTERING: int  # 7: FGD paper baseline, nodes holding the same GPU kind first
STRATEGY_FGD: int  # 8: Fragmentation Gradient Descent (Weng et al., USENIX ATC'23)
STRATEGY_LOAD: int  # 9: Kaiwo's load-aware policy (plugin "load"): allocation after placement + measured load
NUM_STRATEGIES: int  # 10
MAX_SPEC_CPU: int  # 128000: CPU milli of the FGD paper's reference node (score normalisation)
MAX_SPEC_GPU: int  # 8000: GPU milli of that node
MAX_WORKLOAD: int  # 1024: target workload shapes at most
REASON_NODE_FILTER: int  # 0
REASON_CPU: int  # 1
REASON_MEMORY: int  # 2
REASON_PODS: int  # 3
REASON_GPU_COUNT: int  # 4
REASON_GPU_BUSY: int  # 5
REASON_GPU_SHARE: int  # 6
REASON_GPU_MEMORY: int  # 7
REASON_XCD: int  # 8
REASON_RESERVED: int  # 9
NUM_REASONS: int  # 10
REASON_NAMES: tuple[str, str, str, str, str, str, str, str, str, str]  # "node_filter", "cpu", ..., "xcd", "reserved"

class _PlacementClusterRequired(TypedDict):
    node_cpu_free: npt.NDArray[np.int64]  # [N] milli-cores, updated in place
    node_mem_free: npt.NDArray[np.int64]  # [N] MiB, updated in place
    node_pods_free: npt.NDArray[np.int64]  # [N] pod slots, updated in place
    node_cpu_cap: npt.NDArray[np.int64]  # [N]
    node_mem_cap: npt.NDArray[np.int64]  # [N]
    node_dev_start: npt.NDArray[np.int64]  # [N + 1] CSR into the device arrays: 0, monotone, G
    dev_gpu: npt.NDArray[np.int32]  # [G] physical GPU index on its node
    dev_mem_cap: npt.NDArray[np.int64]  # [G] MiB, >= 0
    dev_xcd_mask: npt.NDArray[np.uint32]  # [G] XCDs of the partition, bits 0..7; 0 = generic GPU
    dev_xcds_per_domain: npt.NDArray[np.int32]  # [G] >= 1 when the mask is not 0
    dev_milli_free: npt.NDArray[np.int64]  # [G] updated in place
    dev_mem_free: npt.NDArray[np.int64]  # [G] updated in place
    dev_xcd_free: npt.NDArray[np.uint32]  # [G] subset of dev_xcd_mask, updated in place
    dev_state: npt.NDArray[np.int8]  # [G] STATE_*, updated in place

class _PlacementCluster(_PlacementClusterRequired, total=False):
    # STRATEGY_GPU_CLUSTERING's kinds of GPU pods per node, updated in place: bit 0 = a pod sharing
    # a device, bit k = a pod of k whole devices (63 = 63 or more)
    node_gpu_kinds: npt.NDArray[np.uint64]  # [N]

class _PlacementBatchRequired(TypedDict):
    cpu: npt.NDArray[np.int64]  # [P] milli-cores, >= 0
    mem: npt.NDArray[np.int64]  # [P] MiB, >= 0
    kind: npt.NDArray[np.int8]  # [P] KIND_*
    count: npt.NDArray[np.int32]  # [P] devices, >= 1 for GPU kinds
    milli: npt.NDArray[np.int32]  # [P] compute per device, 0..1000 for GPU kinds
    gpu_mem: npt.NDArray[np.int64]  # [P] MiB per device, 0 = the fraction's share
    exclusive: npt.NDArray[np.uint8]  # [P] 0/1: a fractional pod that must not share its devices
    cls: npt.NDArray[np.int32]  # [P] row of class_mask / extra_score
    class_mask: npt.NDArray[np.uint8]  # [C, N] 1 = node allowed for the class

class _PlacementBatch(_PlacementBatchRequired, total=False):
    extra_score: npt.NDArray[np.float64] | None  # [C, N] added to the strategy's score
    gang: npt.NDArray[np.int32]  # [P] gang id, -1 = none (with gang_need)
    gang_need: npt.NDArray[np.int32]  # [P] members of the gang that must be placed
    seed: npt.NDArray[np.uint64]  # [1] STRATEGY_RANDOM: row p draws splitmix64 outputs 2p+1, 2p+2
    # STRATEGY_FGD / STRATEGY_FRAG_AWARE target workload (absent: the batch's own shapes):
    workload_shapes: npt.NDArray[np.int64]  # [T, 7] cpu, kind, count, milli, gpu_mem, exclusive, cls (-1 any)
    workload_weights: npt.NDArray[np.float64]  # [T] frequencies, finite, >= 0
    # STRATEGY_LOAD: measured load per node (0 = unmeasured, neutral) and the weights (allocation,
    # load), finite, in [0, 1e6]; default: no load, weights 1 and 1
    node_load: npt.NDArray[np.float64]  # [N]
    load_weights: npt.NDArray[np.float64]  # [2]
    # Topology domain per node (zone or rack), -1 = none, < N: a gang keeps to one domain that
    # takes it whole (csrc/placement.cpp, "Gangs")
    node_domain: npt.NDArray[np.int32]  # [N]

class _PlacementResult(TypedDict):
    node: npt.NDArray[np.int32]  # [P] chosen node, -1 = not placed
    asg_start: npt.NDArray[np.int64]  # [P + 1] pod p's devices: asg_*[asg_start[p]:asg_start[p+1]]
    asg_dev: npt.NDArray[np.int32]  # global device index
    asg_milli: npt.NDArray[np.int64]  # compute charged on the device
    asg_mem: npt.NDArray[np.int64]  # GPU MiB charged on the device
    asg_xcds: npt.NDArray[np.uint32]  # XCDs held (XCD pods), usable (time-sliced) or all (whole)
    reason_counts: npt.NDArray[np.int32]  # [P, NUM_REASONS] nodes per first failing filter (unplaced pods)
    best_share: npt.NDArray[np.int64]  # [P] largest free milli on a node passing the node filters, -1

def place_batch(cluster: _PlacementCluster, batch: _PlacementBatch, strategy: int) -> _PlacementResult:
    """Place the batch in order (GIL released), updating the cluster's free arrays in place.

    Raises ValueError naming the dict and key on any contract break (missing or unknown key, dtype,
    contiguity, shape, out-of-range value, unknown strategy). See csrc/placement.hpp.
    """

# ----------------------------------------------------------------- queues (register_queues.cpp)
# The _TypedDicts describe the dict-of-arrays contracts; they exist only in this stub.

QUEUE_RESOURCES: tuple[str, str, str]  # ("gpu", "cpu", "memory"): the first 3 columns of every queue array (R = 3..64 in all)
PHASE_NONE: int  # 0: not admitted by the virtual allocation
PHASE_DESERVED: int  # 1: admitted within deserved quota
PHASE_OVER_QUOTA: int  # 2: admitted over quota (H-DRF)
ORDER_OK: int  # 0: in `order`
ORDER_HELD_LIMIT: int  # 1: held back, would push its queue or an ancestor over `limit`

class _QueueTree(TypedDict, total=False):
    parent: npt.NDArray[np.int32]  # [Q], -1 = top level, else < own index
    quota: npt.NDArray[np.int64]  # [Q, R], -1 = unlimited
    limit: npt.NDArray[np.int64]  # [Q, R], -1 = none
    weight: npt.NDArray[np.float64]  # [Q, R], overQuotaWeight > 0
    priority: npt.NDArray[np.int32]  # [Q], higher first
    capacity: npt.NDArray[np.int64]  # [R], cluster total
    deserved: npt.NDArray[np.int64]  # [Q, R], order_pending only
    fair_share: npt.NDArray[np.int64]  # [Q, R], order_pending only

class _FairSharePods(TypedDict):
    pod_start: npt.NDArray[np.int64]  # [Q + 1], CSR of each leaf's pods, in queue order
    req: npt.NDArray[np.int64]  # [P, R]

class _FairShareResult(TypedDict):
    demand: npt.NDArray[np.int64]  # [Q, R]
    deserved: npt.NDArray[np.int64]  # [Q, R]
    fair_share: npt.NDArray[np.int64]  # [Q, R], the virtual allocation (= allocated)
    allocated: npt.NDArray[np.int64]  # [Q, R], the virtual allocation
    admitted: npt.NDArray[np.uint8]  # [P]
    phase: npt.NDArray[np.int8]  # [P], PHASE_*

class _QueueState(TypedDict):
    allocated: npt.NDArray[np.int64]  # [Q, R] by running pods; internal rows 0 or the children's sum

class _PendingPods(TypedDict):
    pod_start: npt.NDArray[np.int64]  # [Q + 1], CSR of each leaf's pending pods
    req: npt.NDArray[np.int64]  # [P, R]
    key: npt.NDArray[np.float64]  # [P], within-queue order, smaller first, finite
    tiebreak: npt.NDArray[np.int64]  # [P], rank of the uid, smaller first
    gang: npt.NDArray[np.int32]  # [P], -1 = none; one queue per gang

class _OrderResult(TypedDict):
    order: npt.NDArray[np.int64]  # [P'], pod indices in the order placement should try them
    status: npt.NDArray[np.int8]  # [P], ORDER_OK or ORDER_HELD_LIMIT

def fair_share(tree: _QueueTree, pods: _FairSharePods) -> _FairShareResult:
    """Hierarchical fair shares (pod-granular dynamic H-DRF); see csrc/fairshare.hpp."""
def order_pending(tree: _QueueTree, state: _QueueState, pods: _PendingPods) -> _OrderResult:
    """Order pending pods across the queue tree (keyed heaps); see csrc/ordering.hpp."""

# ------------------------------------------------------------- preemption (register_preempt.cpp)

RULE_WITHIN_QUEUE: int  # 0: same queue, strictly lower priority, past preemptMinRuntime
RULE_RECLAIM_CONSERVATIVE: int  # 1: another queue; the preemptor's queue restores its deserved quota
RULE_RECLAIM_AGGRESSIVE: int  # 2: another queue; the preemptor's queue restores its fair share
RULE_NAMES: tuple[str, str, str]  # ("within-queue", "reclaim-conservative", "reclaim-aggressive")
RECLAIM_AGGRESSIVE: int  # 0: reclaimStrategy aggressive (entitlement = fair share)
RECLAIM_CONSERVATIVE: int  # 1: reclaimStrategy conservative (entitlement = deserved)

class _PreemptRunning(TypedDict):
    node: npt.NDArray[np.int32]  # [V]
    queue: npt.NDArray[np.int32]  # [V] leaf row, -1 = none (never a victim)
    priority: npt.NDArray[np.int64]  # [V]
    preemptible: npt.NDArray[np.uint8]  # [V] 0 = never a victim
    runtime: npt.NDArray[np.float64]  # [V] seconds, >= 0
    req: npt.NDArray[np.int64]  # [V, R] queue charge: gpu milli, cpu milli, memory MiB, GPUs per model column
    cpu: npt.NDArray[np.int64]  # [V] node-level CPU milli-cores
    mem: npt.NDArray[np.int64]  # [V] node-level memory MiB
    asg_start: npt.NDArray[np.int64]  # [V + 1] CSR of the device charges
    asg_dev: npt.NDArray[np.int32]  # device on the pod's node, at most once per pod
    asg_milli: npt.NDArray[np.int64]
    asg_mem: npt.NDArray[np.int64]
    asg_xcds: npt.NDArray[np.uint32]  # XCDs claimed (read when xcd = 1)
    exclusive: npt.NDArray[np.uint8]  # [V] held its devices alone
    xcd: npt.NDArray[np.uint8]  # [V] its asg_xcds are taken out of dev_xcd_free

class _PreemptPendingRequired(_PlacementBatchRequired):
    queue: npt.NDArray[np.int32]  # [P] leaf row
    priority: npt.NDArray[np.int64]  # [P]
    req: npt.NDArray[np.int64]  # [P, R]; a model column > 0: a pod of a fixed GPU model

class _PreemptPending(_PreemptPendingRequired, total=False):
    extra_score: npt.NDArray[np.float64]  # [C, N], accepted and not used
    gang: npt.NDArray[np.int32]  # [P] gang id, -1 = none (with gang_need; a gang's rows consecutive)
    gang_need: npt.NDArray[np.int32]  # [P] rows of the gang that must get a node, else none does

class _PreemptQueuesRequired(TypedDict):
    parent: npt.NDArray[np.int32]  # [Q], -1 = top level, else < own index
    deserved: npt.NDArray[np.int64]  # [Q, R], R = 3..64 (gpu, cpu, memory, GPU models)
    fair_share: npt.NDArray[np.int64]  # [Q, R]
    allocated: npt.NDArray[np.int64]  # [Q, R], internal rows 0 or the sum of their children
    strategy: npt.NDArray[np.int8]  # [Q], RECLAIM_*
    preempt_min_runtime: npt.NDArray[np.float64]  # [Q] seconds
    reclaim_min_runtime: npt.NDArray[np.float64]  # [Q] seconds

class _PreemptQueues(_PreemptQueuesRequired, total=False):
    node_res: npt.NDArray[np.int32]  # [N] GPU-model column of each node (>= 3), -1 none

class _PreemptResult(TypedDict):
    node: npt.NDArray[np.int32]  # [P], -1 = nothing
    vic_start: npt.NDArray[np.int64]  # [P + 1]
    vic: npt.NDArray[np.int64]  # running rows, in order of addition
    vic_rule: npt.NDArray[np.int8]  # RULE_*
    asg_start: npt.NDArray[np.int64]  # [P + 1], the preemptors' devices as place_batch gives them
    asg_dev: npt.NDArray[np.int32]
    asg_milli: npt.NDArray[np.int64]
    asg_mem: npt.NDArray[np.int64]
    asg_xcds: npt.NDArray[np.uint32]
    node_cpu_free: npt.NDArray[np.int64]  # final state (fresh arrays; the input is not modified)
    node_mem_free: npt.NDArray[np.int64]
    node_pods_free: npt.NDArray[np.int64]
    dev_milli_free: npt.NDArray[np.int64]
    dev_mem_free: npt.NDArray[np.int64]
    dev_xcd_free: npt.NDArray[np.uint32]
    dev_state: npt.NDArray[np.int8]
    allocated: npt.NDArray[np.int64]  # [Q, R] after the plan
    fit_mismatch: int  # 0 unless placement's checks changed without csrc/preempt.cpp following

def plan_preemptions(cluster: _PlacementCluster, running: _PreemptRunning, pending: _PreemptPending,
                     queues: _PreemptQueues) -> _PreemptResult:
    """Reclaim across queues and preemption within a queue for pods placement left (see
    csrc/preempt.hpp)."""

# ---- rebalancing planner (bindings/register_rebalance.cpp, csrc/rebalance.hpp) ----
MOVE_CONSOLIDATION: int  # 0: room for a pending pod or gang that fits nowhere
MOVE_HOT_SPOT: int  # 1: off a node whose measured load is above the threshold
MOVE_DEFRAGMENTATION: int  # 2: lowers the cluster's fragmentation F by at least defrag_min_gain

class _RebalanceRunning(_PlacementBatchRequired):
    node: npt.NDArray[np.int32]  # [R]
    movable: npt.NDArray[np.uint8]  # [R] 1 = may move (migratable, preemptible, past min runtime)
    xcd: npt.NDArray[np.uint8]  # [R] its asg_xcds are taken out of dev_xcd_free
    queue: npt.NDArray[np.int32]  # [R] queue row, -1 = none
    req: npt.NDArray[np.int64]  # [R, 3] held gpu milli, cpu milli, memory MiB
    asg_start: npt.NDArray[np.int64]  # [R + 1] CSR of the device charges
    asg_dev: npt.NDArray[np.int32]  # device on the pod's node, at most once per pod
    asg_milli: npt.NDArray[np.int64]
    asg_mem: npt.NDArray[np.int64]
    asg_xcds: npt.NDArray[np.uint32]
    pdb_start: npt.NDArray[np.int64]  # [R + 1] CSR of the PodDisruptionBudgets covering each pod
    pdb: npt.NDArray[np.int32]

class _RebalancePending(_PlacementBatchRequired, total=False):
    gang: npt.NDArray[np.int32]  # [P] consecutive members, -1 = none
    gang_need: npt.NDArray[np.int32]  # [P]

class _RebalanceConfigRequired(TypedDict):
    max_moves: npt.NDArray[np.int64]  # [1]
    max_moves_per_queue: npt.NDArray[np.int64]  # [1]
    max_units: npt.NDArray[np.int64]  # [1] blocked pending units examined
    parent: npt.NDArray[np.int32]  # [Q], -1 = top level, else < own index
    slack: npt.NDArray[np.int64]  # [Q, 3] allocated - deserved
    pdb_allowed: npt.NDArray[np.int64]  # [B] disruptions allowed
    hot_threshold: npt.NDArray[np.float64]  # [1]

class _RebalanceConfig(_RebalanceConfigRequired, total=False):
    load: npt.NDArray[np.float64]  # [N] measured load (finite; unmeasured = 0)
    defrag_min_gain: npt.NDArray[np.float64]  # [1] F gain (GPU milli) per defragmentation move; absent = goal off

class _RebalancePods(TypedDict):
    pod: npt.NDArray[np.int64]  # running rows moved

# "from" is a keyword: the nodes the pods leave, spelled the functional way.
_RebalanceMoves = TypedDict("_RebalanceMoves", {"from": npt.NDArray[np.int32]})

class _RebalanceResult(_RebalancePods, _RebalanceMoves):
    to: npt.NDArray[np.int32]
    reason: npt.NDArray[np.int8]  # MOVE_*
    unit: npt.NDArray[np.int32]  # first pending row of the unit made room for, -1 none
    asg_start: npt.NDArray[np.int64]  # [moves + 1] the new devices
    asg_dev: npt.NDArray[np.int32]
    asg_milli: npt.NDArray[np.int64]
    asg_mem: npt.NDArray[np.int64]
    asg_xcds: npt.NDArray[np.uint32]
    unlocked: npt.NDArray[np.int32]  # pending rows given room by moves
    fits_now: npt.NDArray[np.int32]  # pending rows that fit without a move
    units_tried: int
    units_blocked: int
    hot_nodes: int
    frag_before: float  # cluster F before / after defragmentation (0.0 when the goal is off)
    frag_after: float

def plan_rebalance(cluster: _PlacementCluster, running: _RebalanceRunning, pending: _RebalancePending,
                   config: _RebalanceConfig) -> _RebalanceResult:
    """Plan moves of running pods (see csrc/rebalance.hpp). Read-only: nothing is written."""
