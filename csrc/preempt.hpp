// Reclaim across queues and preemption within a queue: after a cycle's placement, find running pods
// to evict so that pending pods that did not fit can run.
//
// Plain C++17, no Python headers. The binding (bindings/register_preempt.cpp) validates every input;
// the kernel trusts it. The executable specification is tests/naive_preempt.py
// (`plan_preemptions_ref`): same inputs, same outputs, bit for bit.
//
// Semantics (DESIGN.md, "Queues and fairness"). Pending pods are tried in the given order; for each:
//
//  * Candidate victims are running pods with preemptible = 1 and a queue (queue >= 0), not evicted
//    earlier in this call. A victim v of pod p is allowed by
//      - rule kRuleWithinQueue (0): same leaf queue, priority[v] < priority[p] and
//        runtime[v] >= preempt_min_runtime[queue];
//      - reclaim (rule kRuleReclaimConservative 1 / kRuleReclaimAggressive 2, by the PREEMPTOR
//        queue's strategy): another leaf, runtime[v] >= reclaim_min_runtime[victim's queue], and with
//        ent = deserved (conservative) or fair_share (aggressive) and L = the lowest common ancestor
//        of the two leaves (the virtual root if none), with `sub` = the requests of the victims
//        chosen so far for p on this node, v included, summed up their queue paths:
//          (a) every queue a on the preemptor's path strictly below L, in every judged resource r
//              with req_p[r] > 0: allocated[a][r] - sub[a][r] + req_p[r] <= ent[a][r];
//          (b) every queue a on the victim's path strictly below L, in every judged resource r with
//              req_v[r] > 0: allocated[a][r] - sub[a][r] >= ent'[a][r], where ent' = ent for the
//              top of that path (the child of L) and min(ent, fair_share) below it: children whose
//              deserved add up to more than their parent's do not shield the parent's excess over
//              its own deserved from the parent's siblings (parent-level charging; their fair
//              shares add up to the parent's).
//        The judged resources are those being reclaimed: the ones the pod lacks on node n as it is
//        (gpu: its devices do not fit the free ones, by place_batch's device checks alone -- then
//        also the model column of n's GPUs, node_res[n]; cpu / memory: its request exceeds the
//        node's free amount), or all of gpu, cpu, memory and n's model column if none (only a pod
//        slot is missing). On n, req_p's model columns are its GPUs in node_res[n], 0 elsewhere, for
//        a pod of a fixed model (its row has a model column > 0); a pod of no fixed model has no
//        demand in the model columns, so (a) judges none of them for it (its queue's entitlement
//        there is zero for want of demand), while (b) does: a victim's queue keeps its entitlement
//        on the model of the node. Either way the commit charges its GPUs in node_res[n]. A queue far over its GPU entitlement thus gives up GPUs to a queue below
//        its own whatever its CPU use says (issue 11).
//  * Per node n allowed by the class mask, eligible victims on n in (priority, runtime, row) order
//    are added greedily -- each one only if the rules above hold with it added; a victim that fails
//    is skipped -- until the pod fits on n (fit: exactly place_batch's checks on the node's freed
//    state). If it never fits, n does not work. Then, in reverse order of addition, a victim is
//    dropped if the pod still fits without it and the remaining set still satisfies (a) for every
//    remaining reclaim victim ((b) can only get easier when a victim is dropped).
//  * The node with the fewest victims wins, then the lowest sum of victim priorities, then the
//    lowest index. A pod that fits with no victim at all is simply placed (zero victims wins).
//  * Commit: the victims' charges are returned (see below), queue `allocated` drops by each victim's
//    request along its path, the preemptor is placed by place_batch (kBinpack) on a one-node view of
//    the freed node, so its devices are exactly the ones placement picks, and its queue path is
//    charged. It then holds its devices like a running pod (for later pods of the same call).
//
// Gangs. The consecutive rows of one gang are tried as one transaction: each member in turn, exactly
// as a pod alone, against the state the earlier members left (their victims gone -- freed capacity
// and queue allocation alike -- and their own charges made). If at least `gang_need` of the rows
// got a node, all of that stands; otherwise everything the members did is undone (nodes, victims,
// queue allocation, output) and none of them gets a node: no victim is ever evicted for a gang that
// cannot start. The trial stops early once too few members are left to reach `gang_need`.
//
// Returning a set R of victims' charges on a node: cpu, memory and one pod slot each; per device d,
// with `hold[d]` = running pods (all rows, preemptible or not, plus preemptors placed in this call)
// holding it: if no holder remains, the device becomes idle (milli 1000, memory = capacity, all XCDs
// free, state IDLE); otherwise its milli and memory grow by the victims' charges (capped at 1000 and
// at the capacity), the XCDs claimed by leaving victims (`xcd` = 1: XCD-isolated pods, and
// time-sliced pods whose CU mask the snapshot claimed) become free unless a remaining claimer of the
// device holds them too, and a device that an `exclusive` victim left becomes SHARED (inconsistent
// input only: an exclusive holder is alone).
// This is a function of the set (order-independent), which is how tentative states are built.
#pragma once

#include <cstdint>
#include <vector>

#include "fairshare.hpp"  // kNumRes
#include "placement.hpp"

namespace kaiwo {

/// Which rule allowed a victim (the code in `PreemptResult::vic_rule`).
enum PreemptRule : int8_t {
    kRuleWithinQueue = 0,          ///< same queue, strictly lower priority
    kRuleReclaimConservative = 1,  ///< another queue; the preemptor's queue restores its deserved quota
    kRuleReclaimAggressive = 2,    ///< another queue; the preemptor's queue restores its fair share
};

/// A queue's reclaimStrategy (`PreemptQueues::strategy`).
enum ReclaimStrategy : int8_t {
    kReclaimAggressive = 0,
    kReclaimConservative = 1,
};

/// Running pods: the victim candidates and, through their device charges, the holders of every
/// device. Pointers are borrowed.
struct RunningPods {
    int32_t n = 0;
    const int32_t* node = nullptr;         ///< [V] node index
    const int32_t* queue = nullptr;        ///< [V] leaf queue row, -1 = none (never a victim)
    const int64_t* priority = nullptr;     ///< [V]
    const uint8_t* preemptible = nullptr;  ///< [V] 0 = never a victim
    const double* runtime = nullptr;       ///< [V] seconds it has run
    const int64_t* req = nullptr;          ///< [V,R] gpu milli, cpu milli, memory MiB (queue units), GPU models
    const int64_t* cpu = nullptr;          ///< [V] node-level CPU request, milli-cores
    const int64_t* mem = nullptr;          ///< [V] node-level memory request, MiB
    const int64_t* asg_start = nullptr;    ///< [V+1] CSR into the asg_* arrays
    const int32_t* asg_dev = nullptr;      ///< global device index (on the pod's node)
    const int64_t* asg_milli = nullptr;    ///< compute charged on it
    const int64_t* asg_mem = nullptr;      ///< GPU memory charged on it
    const uint32_t* asg_xcds = nullptr;    ///< XCDs claimed (read for `xcd` pods only)
    const uint8_t* exclusive = nullptr;    ///< [V] held its devices alone
    const uint8_t* xcd = nullptr;          ///< [V] its asg_xcds are claimed (taken out of dev_xcd_free)
};

/// The pending pods to try, in order: a placement batch plus queue, priority and queue request.
struct Preemptors {
    Batch batch;                         ///< cpu, mem, kind, ..., cls, class_mask (extra_score unused)
    const int32_t* queue = nullptr;      ///< [P] leaf queue row
    const int64_t* priority = nullptr;   ///< [P]
    /// [P,R]. Model columns: any > 0 = a pod of a fixed GPU model (only nodes of that model are in
    /// its class); its GPUs then count in the column of the node it is tried on. See node_res.
    const int64_t* req = nullptr;
    /// Gangs (optional, both or neither; batch.gang / batch.gang_need are not read): a gang's
    /// members are consecutive rows with one `gang_need` (see the header comment, "Gangs").
    const int32_t* gang = nullptr;       ///< [P] gang id, -1 = none
    const int32_t* gang_need = nullptr;  ///< [P] members of these rows that must get a node
};

/// The queue tree and its entitlements. Rows parent-before-child.
struct PreemptQueues {
    int32_t n = 0;
    /// Resource columns R of every [.,R] array: gpu, cpu, memory, then one per GPU model with a
    /// quota (3..64). A running pod's request has its GPUs in its node's model column too; a
    /// preemptor's GPUs count in the column of the node it is tried on, `node_res[n]`.
    int32_t nres = kNumRes;
    const int32_t* node_res = nullptr;             ///< [N] model column of each node (>= 3), -1 none; null: none
    const int32_t* parent = nullptr;               ///< [Q] -1 = top level, else < own index
    const int64_t* deserved = nullptr;             ///< [Q,R]
    const int64_t* fair_share = nullptr;           ///< [Q,R]
    const int64_t* allocated = nullptr;            ///< [Q,R] current use, internal rows = subtree sums
    const int8_t* strategy = nullptr;              ///< [Q] ReclaimStrategy
    const double* preempt_min_runtime = nullptr;   ///< [Q] seconds
    const double* reclaim_min_runtime = nullptr;   ///< [Q] seconds
    /// [3] resources the queue rules may judge (0 = left out), nullptr = all. A reclaim is judged on
    /// those of them the pod lacks on the node; if the pod requests none of those, on every
    /// resource it lacks, so no reclaim goes unjudged (see Planner::eval_node).
    const uint8_t* checked = nullptr;
};

/// Outcome. Victims are pod-major CSR in order of addition; the preemptor's devices as place_batch.
struct PreemptResult {
    std::vector<int32_t> node;        ///< [P] node the pod goes to, -1 = nothing
    std::vector<int64_t> vic_start;   ///< [P+1]
    std::vector<int64_t> vic;         ///< running row
    std::vector<int8_t> vic_rule;     ///< PreemptRule
    std::vector<int64_t> asg_start;   ///< [P+1]
    std::vector<int32_t> asg_dev;     ///< global device index
    std::vector<int64_t> asg_milli;
    std::vector<int64_t> asg_mem;
    std::vector<uint32_t> asg_xcds;
    std::vector<int64_t> allocated;   ///< [Q,R] after the evictions and placements
    /// Pods left unplaced because place_batch refused a node the kernel's fit check accepted.
    /// Always 0 unless csrc/placement.cpp changed its checks without this kernel following.
    int64_t fit_mismatch = 0;
};

/// Plan evictions for the pending pods, in order, committing each into `view` (its mutable arrays
/// are updated in place, as place_batch does). Deterministic.
PreemptResult plan_preemptions(ClusterView& view, const RunningPods& running, const Preemptors& pending,
                               const PreemptQueues& queues);

}  // namespace kaiwo
