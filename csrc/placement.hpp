// Placement kernel: puts a batch of pending pods, in the given order, onto nodes and logical GPUs.
//
// The kernel is plain C++17 with no Python headers. All inputs are flat, columnar arrays that the
// Python layer (kaiwo_core.snapshot) has already validated; the kernel trusts them and reports
// outcomes through sentinels (-1 = not placed) and reason codes.
//
// Units: CPU milli-cores, memory MiB, GPU compute milli-units (1000 = one logical GPU), GPU memory MiB.
//
// A logical GPU ("device") is what Kubernetes counts as one `amd.com/gpu`: a whole generic GPU, or one
// compute partition of an AMD Instinct GPU (SPX = 1 per GPU, DPX = 2, QPX = 4, CPX = 8 on MI300X).
// A partition owns a set of XCDs of its physical GPU (`xcd_mask`, bits 0..7). XCD-isolated pods take
// whole XCDs of a partition for themselves; time-sliced pods share what the XCD pods leave.
//
// Invariants the kernel keeps on every device (and the tests check):
//   milli_free >= 0, mem_free >= 0, popcount(xcd_free) * 1000 / n_xcd <= milli_free (roughly: XCD
//   pods are charged their XCDs' share of compute), and a device in state EXCLUSIVE hosts exactly one
//   pod and has milli_free == 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kaiwo {

/// What a pod asks for on each of its devices.
enum RequestKind : int8_t {
    kNoGpu = 0,     ///< CPU/memory only.
    kWhole = 1,     ///< `count` whole, idle logical GPUs, exclusively.
    kShared = 2,    ///< `milli` of compute (time-sliced) and `gpu_mem` MiB on each of `count` devices.
    kXcd = 3,       ///< whole XCDs: ceil(milli * n_xcd / 1000) of the partition's XCDs, exclusively.
};

/// Device occupancy state.
enum DeviceState : int8_t {
    kIdle = 0,       ///< nothing on it.
    kSharedDev = 1,  ///< one or more shared/XCD pods; more sharing pods may join.
    kExclusive = 2,  ///< a whole-GPU pod or a non-sharing fractional pod holds it alone.
};

/// Node scoring strategy.
///
/// kRandom .. kFgd are the policies of the FGD paper (Weng et al., "Beware of Fragmentation", USENIX
/// ATC'23) as its simulator computes them: integer scores 0..100, highest wins, ties to the lower
/// node index; normalisations by a 128-core, 8-GPU node (kMaxSpecCpu, kMaxSpecGpu). Whole-GPU pods
/// take the lowest-index idle devices; a pod sharing one device takes the device the policy picks
/// (kFgd: best score, kRandom: a random fitting one, the others: already shared first, then least
/// free compute, as every other strategy).
enum Strategy : int32_t {
    kBinpack = 0,        ///< fullest node first (GPU utilisation after placement, then CPU).
    kSpread = 1,         ///< emptiest node first.
    kFragAware = 2,      ///< Kaiwo's: FGD's score, ties ordered (csrc/placement.cpp, "Kaiwo's ... policy").
    kRandom = 3,         ///< a uniformly random feasible node (seeded, counter-based splitmix64).
    kBestFit = 4,        ///< least CPU and GPU left after placement (0.5/0.5 weights).
    kDotProduct = 5,     ///< least dot product of free and requested CPU/GPU (Tetris).
    kGpuPacking = 6,     ///< partly used devices, then partly used nodes, then idle nodes.
    kGpuClustering = 7,  ///< nodes holding only pods of the same GPU kind, then fullest.
    kFgd = 8,            ///< least growth of fragmentation F for the target workload (sigmoid score).
    kLoad = 9,           ///< Kaiwo's load-aware: least weighted allocation after placement + measured load.
    kNumStrategies = 10,
};

/// Why a node could not take a pod: the first filter that failed, in this order.
enum Reason : int32_t {
    kRNodeFilter = 0,   ///< class mask: nodeSelector, taints/tolerations, GPU model, plugin filters.
    kRCpu = 1,          ///< not enough free CPU.
    kRMemory = 2,       ///< not enough free memory.
    kRPods = 3,         ///< pod count limit reached.
    kRGpuCount = 4,     ///< node has fewer logical GPUs than the pod asks for (or none at all).
    kRGpuBusy = 5,      ///< not enough idle devices for whole/exclusive requests.
    kRGpuShare = 6,     ///< no (or too few) devices with enough free compute share.
    kRGpuMemory = 7,    ///< enough compute share (or idle devices), but not enough free GPU memory on them.
    kRXcd = 8,          ///< not enough free XCDs (or the device has no XCDs: generic GPU).
    kRReserved = 9,     ///< the kind's first device check passes only with devices (or XCDs) held by
                        ///< reservations the pod may not use (Batch::dev_resv).
    kNumReasons = 10,
};

/// Mutable cluster state. The kernel updates it in place as it commits placements.
struct ClusterView {
    int32_t n_nodes = 0;
    int32_t n_devices = 0;
    // per node
    int64_t* node_cpu_free = nullptr;      ///< [N] milli-cores
    int64_t* node_mem_free = nullptr;      ///< [N] MiB
    int64_t* node_pods_free = nullptr;     ///< [N] pod slots
    const int64_t* node_cpu_cap = nullptr;  ///< [N] for scoring
    const int64_t* node_mem_cap = nullptr;  ///< [N] for scoring
    const int64_t* node_dev_start = nullptr;  ///< [N+1] CSR offsets into the device arrays
    // per device (logical GPU), grouped by node in node order
    const int32_t* dev_gpu = nullptr;        ///< [G] physical GPU index on its node
    const int64_t* dev_mem_cap = nullptr;    ///< [G] MiB
    const uint32_t* dev_xcd_mask = nullptr;  ///< [G] XCDs of the partition (0 for generic GPUs)
    const int32_t* dev_xcds_per_domain = nullptr;  ///< [G] XCDs per memory domain (NPS quadrant), 0 generic
    int64_t* dev_milli_free = nullptr;       ///< [G]
    int64_t* dev_mem_free = nullptr;         ///< [G]
    uint32_t* dev_xcd_free = nullptr;        ///< [G] XCDs not held by an XCD-isolated pod
    int8_t* dev_state = nullptr;             ///< [G] DeviceState
    /// [N] optional, kGpuClustering's bookkeeping, updated in place: bit 0 = the node holds a pod
    /// sharing a device (fraction < 1), bit k (1..63) = a pod of k whole devices (63 = 63 or more).
    /// nullptr = start from no GPU pods of a known kind on any node.
    uint64_t* node_gpu_kinds = nullptr;
};

/// A request shape of a target workload (kFgd, kFragAware): what fragmentation is measured against.
struct WorkloadShape {
    int64_t cpu = 0;       ///< milli-cores
    int8_t kind = kNoGpu;  ///< RequestKind
    int32_t count = 0;
    int32_t milli = 0;
    int64_t gpu_mem = 0;
    uint8_t exclusive = 0;
    int32_t cls = -1;      ///< row of the class mask giving the nodes it may use; -1 = every node
    double weight = 0.0;   ///< frequency
};

/// A batch of pending requests, in the order they are to be tried.
struct Batch {
    int32_t n_pods = 0;
    const int64_t* cpu = nullptr;       ///< [P] milli-cores
    const int64_t* mem = nullptr;       ///< [P] MiB
    const int8_t* kind = nullptr;       ///< [P] RequestKind
    const int32_t* count = nullptr;     ///< [P] devices wanted (0 for kNoGpu)
    const int32_t* milli = nullptr;     ///< [P] compute per device (1000 for kWhole)
    const int64_t* gpu_mem = nullptr;   ///< [P] MiB per device; 0 = the fraction's share of the device
    const uint8_t* exclusive = nullptr; ///< [P] 1 = fractional pod that must not share its device(s)
    const int32_t* cls = nullptr;       ///< [P] row of the class mask / extra score
    // feasibility and extra score per (class, node), from filters and score plugins
    int32_t n_classes = 0;
    const uint8_t* class_mask = nullptr;     ///< [C, N] 1 = node allowed for the class
    const double* extra_score = nullptr;     ///< [C, N] added to the strategy's score, or nullptr
    // Gangs (optional, both or neither): members of a gang are consecutive rows. After its last
    // member the gang is committed only if at least `gang_need` of its members were placed;
    // otherwise every member's placement is rolled back, so a gang that does not fit holds nothing.
    const int32_t* gang = nullptr;           ///< [P] gang id, -1 = none
    const int32_t* gang_need = nullptr;      ///< [P] members that must be placed (same in a gang)
    /// kRandom: row p draws outputs 2p+1 (node) and 2p+2 (device) of splitmix64 seeded with `seed`,
    /// i.e. mix(seed + k * 0x9E3779B97F4A7C15), and maps x to [0, m) as (x * m) >> 64. Counter-based,
    /// so a batch split at row r continues exactly with seed + 2r * 0x9E3779B97F4A7C15.
    uint64_t seed = 0;
    /// Target workload of kFgd and kFragAware; empty = the batch's own request shapes (every
    /// distinct (cpu, GPU shape, class), weighted by its share of the batch's pods).
    std::vector<WorkloadShape> workload;
    // Device reservations (optional, all three or none): a device held by reservation r, wholly
    // (dev_resv_xcds 0) or only some of its XCDs, may be used only by pods whose class may use r.
    // For everyone else a wholly held device does not exist; a device with held XCDs takes only
    // XCD-isolated pods, on its other XCDs (a whole-GPU or time-sliced pod would use the held ones).
    const int32_t* dev_resv = nullptr;       ///< [G] reservation holding the device, -1 = none
    const uint32_t* dev_resv_xcds = nullptr; ///< [G] XCDs held (within dev_xcd_mask), 0 = all of it
    int32_t n_resv = 0;
    const uint8_t* class_resv = nullptr;     ///< [C, R] 1 = pods of class c may use reservation r
    /// kLoad (optional): measured load per node (0..1, 0 = unmeasured: neutral) and the weights of
    /// the score -(w_alloc * allocation after placement) - w_load * load (see csrc/placement.cpp).
    const double* node_load = nullptr;       ///< [N], nullptr = nothing measured
    double w_alloc = 1.0;
    double w_load = 1.0;
    /// Gang topology (optional): the domain of each node (a zone or rack label value), -1 = none.
    /// A gang keeps to one domain when the domain can take it whole (see "Gangs" in placement.cpp).
    const int32_t* node_domain = nullptr;    ///< [N]
};

/// XCDs of device d (global index) held against pods of class `cls`: 0 = none, ~0u = the whole
/// device. One rule for placement's device checks and the preemption kernel's fit check.
inline uint32_t held_xcds(const Batch& b, int32_t cls, int64_t d) {
    if (!b.dev_resv) return 0;
    const int32_t r = b.dev_resv[d];
    if (r < 0 || b.class_resv[std::size_t(cls) * std::size_t(b.n_resv) + std::size_t(r)]) return 0;
    return b.dev_resv_xcds[d] ? b.dev_resv_xcds[d] : ~0u;
}

/// Outcome of a batch. Device assignments are flat, pod-major: pod p's devices are
/// asg_dev[asg_start[p] .. asg_start[p+1]).
struct Result {
    std::vector<int32_t> node;          ///< [P] chosen node or -1
    std::vector<int64_t> asg_start;     ///< [P+1]
    std::vector<int32_t> asg_dev;       ///< device index (global)
    std::vector<int64_t> asg_milli;     ///< compute charged on that device
    std::vector<int64_t> asg_mem;       ///< GPU memory charged on that device
    std::vector<uint32_t> asg_xcds;     ///< XCDs held exclusively (kXcd) or usable (kWhole: all)
    std::vector<int32_t> reason_counts; ///< [P, kNumReasons] nodes rejected per reason (unplaced pods)
    std::vector<int64_t> best_share;    ///< [P] largest free milli seen on an otherwise fitting node
    std::vector<uint8_t> gang_failed;   ///< [P] 1 = member of a gang rolled back (too few fit)
};

constexpr int64_t kMaxSpecCpu = 128000;  ///< CPU milli-cores of the FGD paper's reference node
constexpr int64_t kMaxSpecGpu = 8000;    ///< GPU milli of the FGD paper's reference node
constexpr int32_t kMaxWorkload = 1024;   ///< target workload shapes at most

/// Row p of `src` as a one-pod batch (request columns only) whose one class is the one-row
/// `mask`; `cls0` must point at a 0 that outlives the batch.
inline Batch batch_row(const Batch& src, int32_t p, const int32_t* cls0, const uint8_t* mask) {
    Batch b;
    b.n_pods = 1;
    b.cpu = src.cpu + p;
    b.mem = src.mem + p;
    b.kind = src.kind + p;
    b.count = src.count + p;
    b.milli = src.milli + p;
    b.gpu_mem = src.gpu_mem + p;
    b.exclusive = src.exclusive + p;
    b.cls = cls0;
    b.n_classes = 1;
    b.class_mask = mask;
    return b;
}

/// Node n of `v` alone, its arrays in place (devices renumbered from 0); `starts` = {0, devices of
/// n} must outlive the view. Placing on it is placing on node n (a caller may point the mutable
/// arrays at scratch copies instead).
inline ClusterView node_view(const ClusterView& v, int32_t n, const int64_t* starts) {
    const int64_t d0 = v.node_dev_start[n];
    ClusterView one;
    one.n_nodes = 1;
    one.n_devices = static_cast<int32_t>(starts[1]);
    one.node_cpu_free = v.node_cpu_free + n;
    one.node_mem_free = v.node_mem_free + n;
    one.node_pods_free = v.node_pods_free + n;
    one.node_cpu_cap = v.node_cpu_cap + n;
    one.node_mem_cap = v.node_mem_cap + n;
    one.node_dev_start = starts;
    one.dev_gpu = v.dev_gpu + d0;
    one.dev_mem_cap = v.dev_mem_cap + d0;
    one.dev_xcd_mask = v.dev_xcd_mask + d0;
    one.dev_xcds_per_domain = v.dev_xcds_per_domain + d0;
    one.dev_milli_free = v.dev_milli_free + d0;
    one.dev_mem_free = v.dev_mem_free + d0;
    one.dev_xcd_free = v.dev_xcd_free + d0;
    one.dev_state = v.dev_state + d0;
    return one;
}

/// Place the batch in order, committing each placement into `view` before the next pod.
/// Deterministic: ties go to the lower node index, then the lower device index.
Result place_batch(ClusterView& view, const Batch& batch, Strategy strategy);

}  // namespace kaiwo
