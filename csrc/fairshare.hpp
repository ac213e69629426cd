// Queue tree and hierarchical fair shares (pod-granular, dynamic H-DRF).
//
// Plain C++17, no Python headers. The queue tree is given as flat arrays in parent-before-child
// order (parent[q] < q, -1 = top level), which makes cycles impossible and lets every bottom-up pass
// be a loop over decreasing indices. Only leaf queues hold pods. The binding
// (bindings/register_queues.cpp) validates everything the kernels rely on; the kernels trust it.
//
// Resources are the three columns (gpu milli-units, cpu milli-cores, memory MiB), int64. Shares are
// float64 and are only ever compared, never stored into integer results; they are computed with the
// same operations in the same order as the Python reference (tests/naive_queues.py), and setup.py
// compiles with -ffp-contract=off, so ties resolve identically.
//
// This header also holds `HeapForest`, the keyed (indexed) binary heaps over the children of every
// node of the tree that both the fair-share kernel and the ordering kernel (ordering.hpp) use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace kaiwo {

/// The usual resource columns of every queue array: gpu milli-units, cpu milli-cores, memory MiB.
/// The queue kernels take any number R of columns (`QueueTree::nres`; e.g. one more per GPU model),
/// with a compiled copy for R = kNumRes; the preemption kernel takes R at run time too.
constexpr int kNumRes = 3;
/// Most resource columns the queue kernels take (ordering keeps saturated ones in a 64-bit mask).
constexpr int kMaxRes = 64;

/// A queue tree, struct-of-arrays, rows in parent-before-child order. Pointers are borrowed.
struct QueueTree {
    int32_t n = 0;                      ///< queues Q
    int32_t nres = kNumRes;             ///< resource columns R, 1 .. kMaxRes
    const int32_t* parent = nullptr;    ///< [Q] parent index (< own index) or -1 for a top-level queue
    const int64_t* quota = nullptr;     ///< [Q,R] deserved quota, -1 = unlimited (deserved = demand)
    const int64_t* limit = nullptr;     ///< [Q,R] hard cap, -1 = none
    const double* weight = nullptr;     ///< [Q,R] overQuotaWeight per resource, > 0
    const int32_t* priority = nullptr;  ///< [Q] higher first, among siblings
    const int64_t* capacity = nullptr;  ///< [R] cluster total
};

/// Children of every node as CSR, in index order; node `n` (the virtual root is node Q) has
/// children `child[start[n] .. start[n+1])`.
struct Children {
    std::vector<int32_t> start;  ///< [Q+2]
    std::vector<int32_t> child;  ///< [Q]

    explicit Children(const int32_t* parent, int32_t n);
    int32_t begin(int32_t node) const { return start[node]; }
    int32_t end(int32_t node) const { return start[node + 1]; }
    bool leaf(int32_t node) const { return start[node] == start[node + 1]; }
};

/// Keyed binary min-heaps, one per node of a tree (the virtual root included), each over some of the
/// node's children. Every item belongs to at most one heap at a time (its parent's), so one position
/// array serves them all and `update`/`erase` of an item are O(log k) for k siblings.
///
/// `Less` must be a strict total order (ties broken by the item index), so the top is the unique
/// minimum and the result is the same as a linear min-scan: heaps change the cost, never the choice.
template <class Less>
class HeapForest {
public:
    HeapForest(int32_t n_heaps, int32_t n_items, Less less)
        : heaps_(static_cast<std::size_t>(n_heaps)), pos_(static_cast<std::size_t>(n_items), -1),
          owner_(static_cast<std::size_t>(n_items), -1), less_(std::move(less)) {}

    bool empty(int32_t h) const { return heaps_[h].empty(); }
    /// The minimum of heap `h` (must not be empty).
    int32_t top(int32_t h) const { return heaps_[h][0]; }
    bool contains(int32_t item) const { return pos_[item] >= 0; }

    /// Adds `item` (not in any heap) to heap `h`.
    void push(int32_t h, int32_t item) {
        auto& v = heaps_[h];
        owner_[item] = h;
        pos_[item] = static_cast<int32_t>(v.size());
        v.push_back(item);
        up(v, pos_[item]);
    }

    /// Removes `item` from its heap (no-op if absent).
    void erase(int32_t item) {
        const int32_t i = pos_[item];
        if (i < 0) return;
        auto& v = heaps_[owner_[item]];
        const int32_t last = v.back();
        v.pop_back();
        pos_[item] = -1;
        if (last != item) {
            v[i] = last;
            pos_[last] = i;
            down(v, up(v, i));
        }
    }

    /// Restores the heap after the key of `item` changed either way (no-op if absent).
    void update(int32_t item) {
        const int32_t i = pos_[item];
        if (i < 0) return;
        auto& v = heaps_[owner_[item]];
        down(v, up(v, i));
    }

    /// Empties every heap.
    void clear() {
        for (auto& v : heaps_) {
            for (int32_t item : v) pos_[item] = -1;
            v.clear();
        }
    }

private:
    int32_t up(std::vector<int32_t>& v, int32_t i) {
        const int32_t item = v[i];
        while (i > 0) {
            const int32_t p = (i - 1) / 2;
            if (!less_(item, v[p])) break;
            v[i] = v[p];
            pos_[v[i]] = i;
            i = p;
        }
        v[i] = item;
        pos_[item] = i;
        return i;
    }

    void down(std::vector<int32_t>& v, int32_t i) {
        const int32_t n = static_cast<int32_t>(v.size());
        const int32_t item = v[i];
        for (;;) {
            int32_t c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && less_(v[c + 1], v[c])) ++c;
            if (!less_(v[c], item)) break;
            v[i] = v[c];
            pos_[v[i]] = i;
            i = c;
        }
        v[i] = item;
        pos_[item] = i;
    }

    std::vector<std::vector<int32_t>> heaps_;
    std::vector<int32_t> pos_;
    std::vector<int32_t> owner_;
    Less less_;
};

/// Outcome of `fair_share`. Queue arrays are [Q,R] row-major; pod arrays are [P].
struct FairShareResult {
    std::vector<int64_t> demand;      ///< Σ requests of the subtree's pods
    std::vector<int64_t> deserved;    ///< min(quota or demand, demand, limit), capped by the parent's
    std::vector<int64_t> fair_share;  ///< the virtual allocation (= allocated; see 5.)
    std::vector<int64_t> allocated;   ///< the virtual allocation (internal = Σ children)
    std::vector<uint8_t> admitted;    ///< 1 = pod admitted by the virtual allocation
    std::vector<int8_t> phase;        ///< kPhaseDeserved, kPhaseOverQuota or kPhaseNone
};

/// Phase in which `fair_share` admitted a pod.
enum FairSharePhase : int8_t {
    kPhaseNone = 0,       ///< not admitted
    kPhaseDeserved = 1,   ///< within deserved quota (phase 1)
    kPhaseOverQuota = 2,  ///< over quota, by H-DRF (phase 2)
};

/// Hierarchical fair shares by a pod-granular virtual allocation from zero.
///
/// `pod_start` [Q+1] is the CSR of each leaf's pods (already in the queue's own order, none on
/// internal queues) and `req` [P,R] their requests. Exact semantics (tests/naive_queues.py
/// `fair_share_ref` is the executable specification):
///
///  1. demand: Σ req of a leaf's pods; internal = Σ children.
///  2. deserved = min(quota (demand if -1), demand, limit (∞ if -1)), then top-down
///     deserved[q] = min(deserved[q], deserved[parent]).
///  3. Phase 1: leaves in index order take their pods in order while total + req <= capacity and
///     alloc[a] + req <= deserved[a] for the leaf and every ancestor; the first misfit ends the leaf's
///     phase 1.
///  4. Phase 2 (dynamic H-DRF over over-quota usage U = max(0, alloc - deserved)): descend from the
///     root picking, among non-blocked children, the highest priority, then the smallest weighted
///     dominant share g over the non-saturated resources, then the lower index; the leaf's next pod is
///     admitted if it fits the capacity and every limit on its path, else the leaf is blocked and the
///     resources it overflowed become saturated. What queues still deserve is held back: with
///     rsv[q] = max(0, deserved - alloc) for a leaf, min(that, Σ children's rsv) for an internal
///     queue, and held = Σ rsv of the top-level queues, the pod overflows r also when
///     total[r] + req[r] + held'[r] > capacity[r] (held' = held after admitting it), unless
///     req[r] + held'[r] - held[r] <= 0 (it only uses its own path's reservation). So a pod ahead by
///     priority, but blocked in phase 1 by another resource (no memory quota), cannot take the GPUs
///     another queue deserves, and the fair shares of the top-level queues add up to at most the
///     capacity whenever their deserved do. An internal node's share aggregates its children the
///     H-DRF way (non-blocked children with g > 0 rescaled to their minimum g, the others added raw),
///     plus, raw, its hidden over-quota use max(0, Σ children's min(alloc, deserved) - deserved)
///     (children's deserved that add up to more than the parent's);
///     a node is blocked when all its children are; a leaf with no pods left is blocked (at once,
///     when its last pod is admitted). Every resource a misfit overflowed joins the saturated set,
///     whether or not a limit also failed. Stops when every top-level queue is blocked.
///  5. fair_share = allocated: what the virtual allocation gives, so the top-level queues' fair
///     shares never add up to more than the capacity. A queue gets its deserved there unless
///     capacity or a limit stops it (deserved oversubscribed, pods that do not divide it).
///
/// Over-quota use is charged at every level: when children's deserved add up to more than their
/// parent's, children within their own quotas can push the parent over its deserved, and that
/// excess (the hidden over-quota use above) counts in the parent's share against its siblings.
///
/// Cost: O(Q + P) for phase 1, O(depth * (siblings + log siblings)) per phase-2 pod, plus at most
/// three O(Q log Q) rebuilds when a resource saturates.
FairShareResult fair_share(const QueueTree& tree, const int64_t* pod_start, const int64_t* req);

}  // namespace kaiwo
