// Rebalancing planner: which running pods to move, and where, so that (a) pending pods and gangs that
// fit nowhere now get room (consolidation), (b) the cluster packs better by at least a threshold
// (defragmentation) and (c) nodes whose measured load is above a threshold are relieved (hot-spot
// relief). Read-only: it plans moves and never evicts anything.
//
// Plain C++17, no Python headers. The binding (bindings/register_rebalance.cpp) validates every
// input; the kernel trusts it. The executable specification is tests/naive_rebalance.py
// (`plan_rebalance_ref`): same inputs, same moves.
//
// Every fit decision is place_batch's own (csrc/placement.cpp, kBinpack): a pod is tried on the whole
// cluster with a one-row class mask, or on one node through a one-node ClusterView. There is no
// second fit check here.
//
// Semantics.
//  * Holders. Every running pod holds its device charges; releasing a set of holders gives back cpu,
//    memory, a pod slot and, per device, the charges (capped at 1000 milli and the capacity), the
//    XCDs the leaving claimers held unless a remaining claimer still holds them; a device without
//    holders becomes idle (milli 1000, memory = capacity, every XCD free). Running pods given
//    `xcd` = 1 claim their asg_xcds (the snapshot's rule: every non-exclusive GPU pod); pods placed
//    by the planner claim XCDs only if XCD-isolated (placement's rule).
//  * A running pod may move if `movable` (migratable, preemptible, past its min runtime: decided by
//    the caller), at most once per plan, and only while the budgets allow: at most `max_moves`
//    moves, at most `max_moves_per_queue` per queue (pods without a queue count as one queue), no
//    queue on its path (leaf and ancestors) below its deserved quota (`slack` = allocated - deserved
//    per resource; a move spends the pod's held `req` in every resource it holds), and every
//    PodDisruptionBudget covering it allowing one more disruption (`pdb_allowed`).
//  * Consolidation. Pending units (a row, or the consecutive rows of a gang) in the given order, the
//    first `max_units` of them: a unit whose members all fit now (place_batch with the gang rule) is
//    placed -- it holds its room as the scheduler would give it -- and needs no move. Otherwise each
//    member in turn: placed if it fits now; else, per node its class allows (index order), movable
//    holders of the node in (GPU milli held desc, cpu desc, row) order are released greedily -- each
//    only if the budgets allow it with the ones before -- until the member fits on the node alone;
//    nodes are then tried by (evictions, index), the first 4 of them (a bound on the work per
//    member: each trial places every evicted pod on the whole cluster): the member is placed on the
//    node, and each evicted pod, in order, on any other node its class allows (place_batch,
//    kBinpack). The first node where all of them land wins; else the member gets no room. A unit with at least `gang_need` members
//    placed (1 for a single pod) keeps its moves and is *unlocked*; otherwise everything it did is
//    undone. Unlocked members hold their room for later units.
//  * Defragmentation (only with defrag_min_gain >= 0), after consolidation. The packing measure is
//    placement's fragmentation F (node_fragmentation, the `frag` strategy's): per node, the free GPU
//    milli the typical pod cannot use, summed over nodes. The typical pod is the workload of every
//    distinct (cpu, kind, count, milli, gpu_mem, exclusive) -- GPU fields 0 for CPU-only pods --
//    over the running rows then the pending rows, weight = its share of all R + P rows, most
//    frequent first (ties to first appearance), at most kMaxWorkload shapes, every node allowed.
//    Rounds, while a move is allowed: for every running pod v the budgets allow (row order) and
//    every other node t its class allows and that is not hot (index order), v is released from its
//    node s and placed on t alone (place_batch, kBinpack); gain = (F(s) - F'(s)) + (F(t) - F'(t)).
//    The largest gain wins (ties to the first found); it is made if gain > 0 and gain >=
//    defrag_min_gain, else the goal stops. Pods already moved, and the room held for pending pods,
//    stay where they are.
//  * Hot-spot relief (only with `load`): nodes with load > hot_threshold, by (load desc, index). The
//    node's load is assumed proportional to the GPU milli its holders hold (CPU milli if none); its
//    movable holders, in the order above, move to a node whose load is <= hot_threshold (place_batch,
//    kBinpack, class mask restricted to those nodes) until the estimate is <= hot_threshold.
//  * Deterministic: every choice goes by index or row (the caller sorts rows by name).
#pragma once

#include <cstdint>
#include <vector>

#include "placement.hpp"

namespace kaiwo {

enum MoveReason : int8_t {
    kMoveConsolidation = 0,
    kMoveHotSpot = 1,
    kMoveDefragmentation = 2,
};

/// Running pods. Their request shapes and classes are `batch` rows (class_mask shared with pending).
struct RebalanceRunning {
    Batch batch;                          ///< cpu, mem, kind, count, milli, gpu_mem, exclusive, cls, class_mask
    const int32_t* node = nullptr;        ///< [R]
    const uint8_t* movable = nullptr;     ///< [R]
    const uint8_t* xcd = nullptr;         ///< [R] its asg_xcds are claimed
    const int32_t* queue = nullptr;       ///< [R] queue row, -1 = none
    const int64_t* req = nullptr;         ///< [R,3] held gpu milli, cpu milli, memory MiB
    const int64_t* asg_start = nullptr;   ///< [R+1]
    const int32_t* asg_dev = nullptr;
    const int64_t* asg_milli = nullptr;
    const int64_t* asg_mem = nullptr;
    const uint32_t* asg_xcds = nullptr;
    const int64_t* pdb_start = nullptr;   ///< [R+1] CSR of the PodDisruptionBudgets covering each pod
    const int32_t* pdb = nullptr;
};

struct RebalanceConfig {
    int32_t max_moves = 16;
    int32_t max_moves_per_queue = 8;
    int32_t max_units = 64;
    int32_t n_queues = 0;
    const int32_t* parent = nullptr;      ///< [Q] -1 = top level, else < own index
    const int64_t* slack = nullptr;       ///< [Q,3] allocated - deserved
    int32_t n_pdbs = 0;
    const int64_t* pdb_allowed = nullptr; ///< [B] disruptions allowed
    const double* load = nullptr;         ///< [N] measured load (0..1), nullptr = no metrics
    double hot_threshold = 0.9;
    double defrag_min_gain = -1.0;        ///< F gain (GPU milli) a defragmentation move needs; < 0 = off
};

struct RebalancePlan {
    std::vector<int64_t> pod;        ///< running row moved
    std::vector<int32_t> from, to;   ///< nodes
    std::vector<int8_t> reason;      ///< MoveReason
    std::vector<int32_t> unit;       ///< first pending row of the unit it made room for, -1 none
    std::vector<int64_t> asg_start;  ///< [moves+1] new device charges
    std::vector<int32_t> asg_dev;
    std::vector<int64_t> asg_milli;
    std::vector<int64_t> asg_mem;
    std::vector<uint32_t> asg_xcds;
    std::vector<int32_t> unlocked;   ///< pending rows given room by moves
    std::vector<int32_t> fits_now;   ///< pending rows that fit without a move (held for later units)
    int64_t units_tried = 0;         ///< units examined
    int64_t units_blocked = 0;       ///< of those, fitting nowhere now
    int64_t hot_nodes = 0;
    double frag_before = 0.0;        ///< cluster F before / after defragmentation (0 when off)
    double frag_after = 0.0;
};

/// Plan moves. `view` is the cluster with every running pod charged; it is not modified.
RebalancePlan plan_rebalance(const ClusterView& view, const RebalanceRunning& running, const Batch& pending,
                             const RebalanceConfig& config);

}  // namespace kaiwo
