// Order of pending pods across the queue tree: a compiled keyed priority heap per tree node.
//
// Plain C++17, no Python headers; the binding (bindings/register_queues.cpp) validates the input.
// The result is the order in which placement should try the pending pods: at every node of the tree
// the child most entitled to the next unit, down to a leaf, whose best unit (a pod, or a whole gang)
// is popped and charged along its path before the next choice.
#pragma once

#include <cstdint>
#include <vector>

#include "fairshare.hpp"

namespace kaiwo {

/// Per-pod outcome of `order_pending`.
enum OrderStatus : int8_t {
    kOrdered = 0,    ///< in `order`
    kHeldLimit = 1,  ///< held back: admitting it would push its queue or an ancestor over `limit`
};

/// Pending pods, CSR by leaf queue. Pointers are borrowed.
struct PendingPods {
    const int64_t* pod_start = nullptr;  ///< [Q+1] pods of leaf q: rows pod_start[q] .. pod_start[q+1]
    const int64_t* req = nullptr;        ///< [P,R] requests (R = tree.nres)
    const double* key = nullptr;         ///< [P] within-queue order key, smaller first (finite)
    const int64_t* tiebreak = nullptr;   ///< [P] rank of the uid, smaller first
    const int32_t* gang = nullptr;       ///< [P] gang id, -1 = none; a gang's members share one leaf
};

/// Outcome of `order_pending`.
struct OrderResult {
    std::vector<int64_t> order;   ///< indices of the kOrdered pods, in the order to try them
    std::vector<int8_t> status;   ///< [P] OrderStatus
};

/// Orders the pending pods of every leaf queue across the tree.
///
/// Uses `tree.parent`, `tree.limit`, `tree.priority` and, when given, `tree.capacity` (quota and
/// weight are not read),
/// `deserved` and `fair_share` [Q,R] (from `fair_share`), and `allocated` [Q,R], what running pods
/// use: only the leaf rows are read, internal rows are recomputed as the sum of their children.
///
/// Within a leaf, pods sort by (key, tiebreak, index); a gang is one unit at the position of its best
/// member, its members consecutive in that order. Across queues, descending from the root, each node
/// picks among its children that still have pending units the smallest
///   (entitlement class, -priority, share, index)
/// where class = 0 if allocated < deserved in every resource with deserved > 0 that the node's pending
/// units ask for (and there is at least one such resource), else 1 -- a queue over its GPU quota is
/// not "below deserved" because its CPU is under its CPU quota -- and
/// share = max over r that are unsaturated and still asked for (the node's remaining pending units
/// request some of r) with fair_share[r] > 0 of allocated[r] / fair_share[r] (+inf if allocated[r] > 0
/// for such an r with fair_share[r] == 0; 0 if there is nothing to compare). A resource is saturated once the sum of the top-level queues' allocated reaches
/// `tree.capacity` (never, without a capacity): as in H-DRF, shares then ignore it, so a subtree that
/// holds all of a resource does not look full to siblings competing for another. The leaf's next unit is
/// popped: if, for the leaf or an ancestor a and a resource r with limit[a][r] >= 0, the unit asks
/// for r and allocated[a][r] + request[r] > limit[a][r], all its pods are kHeldLimit and nothing is
/// charged; otherwise its pods are appended to `order` and its request is added to `allocated` along
/// the path. Held-back is judged against the allocations of the pods ordered before it, which is
/// conservative: placement may later fail some of those, and the held pod would then have fitted.
///
/// Cost: O(P log P) for the within-queue sorts plus O(depth * log siblings) per unit.
OrderResult order_pending(const QueueTree& tree, const int64_t* deserved, const int64_t* fair_share,
                          const int64_t* allocated, const PendingPods& pods);

}  // namespace kaiwo
