// Ordering of pending pods: see ordering.hpp for the contract.
//
// Implementation notes (tests/naive_queues.py `order_pending_ref` is the executable specification;
// it rescans the children with min() where this file keeps heaps):
//
// * Units. Each leaf's pods are sorted by (key, tiebreak, index); walking that order, a pod without a
//   gang is a unit of its own and the first member of a gang opens the gang's unit. Members are then
//   laid out unit by unit (a counting pass), each unit's members in sorted order, and the unit's
//   request is the sum of its members'.
// * Keys. Every node keeps its allocated vector (internal = Σ children), its entitlement class and
//   its share; the share is `double(allocated[r]) / double(fair_share[r])`, max over r in column
//   order, exactly as the reference computes it.
// * Heaps. One keyed heap per node (the virtual root is node Q) over its children that still have
//   pending units, ordered by (class, -priority, share, index). Popping a unit changes only the nodes
//   on its path, so each of them is re-keyed in its parent's heap (or removed once it has no pending
//   units): O(depth * log siblings) per unit.
#include "ordering.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <unordered_map>

namespace kaiwo {

namespace {

/// The kernel for NR resource columns (NR = 0: t.nres, known at run time only).
template <int NR>
OrderResult order_pending_impl(const QueueTree& t, const int64_t* deserved, const int64_t* fair_share,
                          const int64_t* allocated, const PendingPods& pods) {
    constexpr int kFixed = NR;
    const int R = kFixed > 0 ? kFixed : t.nres;
    const int32_t Q = t.n;
    const int32_t root = Q;
    const int64_t P = pods.pod_start[Q];
    const Children ch(t.parent, Q);
    auto up = [&](int32_t q) { return t.parent[q] < 0 ? root : t.parent[q]; };

    OrderResult res;
    res.status.assign(static_cast<size_t>(P), kOrdered);
    res.order.reserve(static_cast<size_t>(P));

    // ---- units, per leaf ----
    std::vector<int64_t> sorted(static_cast<size_t>(P));
    std::iota(sorted.begin(), sorted.end(), int64_t{0});
    auto by_key = [&](int64_t a, int64_t b) {
        if (pods.key[a] != pods.key[b]) return pods.key[a] < pods.key[b];
        if (pods.tiebreak[a] != pods.tiebreak[b]) return pods.tiebreak[a] < pods.tiebreak[b];
        return a < b;
    };
    std::vector<int64_t> unit_of(static_cast<size_t>(P));
    std::vector<int64_t> leaf_unit(static_cast<size_t>(Q) + 1, 0);  // units of leaf q: [leaf_unit[q], leaf_unit[q+1])
    std::vector<int64_t> unit_size;
    unit_size.reserve(static_cast<size_t>(P));
    std::unordered_map<int32_t, int64_t> gang_unit;
    for (int32_t q = 0; q < Q; ++q) {
        const int64_t b = pods.pod_start[q], e = pods.pod_start[q + 1];
        std::sort(sorted.begin() + b, sorted.begin() + e, by_key);
        leaf_unit[q] = static_cast<int64_t>(unit_size.size());
        for (int64_t i = b; i < e; ++i) {
            const int64_t p = sorted[i];
            const int32_t gid = pods.gang[p];
            int64_t u;
            if (gid < 0) {
                u = static_cast<int64_t>(unit_size.size());
                unit_size.push_back(0);
            } else {
                auto it = gang_unit.find(gid);
                if (it == gang_unit.end()) {
                    u = static_cast<int64_t>(unit_size.size());
                    unit_size.push_back(0);
                    gang_unit.emplace(gid, u);
                } else {
                    u = it->second;
                }
            }
            unit_of[p] = u;
            ++unit_size[u];
        }
    }
    leaf_unit[Q] = static_cast<int64_t>(unit_size.size());
    const int64_t U = leaf_unit[Q];
    std::vector<int64_t> unit_start(static_cast<size_t>(U) + 1, 0);
    for (int64_t u = 0; u < U; ++u) unit_start[u + 1] = unit_start[u] + unit_size[u];
    std::vector<int64_t> member(static_cast<size_t>(P));
    std::vector<int64_t> unit_req(static_cast<size_t>(U) * R, 0);
    {
        std::vector<int64_t> cur(unit_start.begin(), unit_start.end() - 1);
        for (int64_t i = 0; i < P; ++i) {  // leaf segments in order, each sorted: members stay sorted
            const int64_t p = sorted[i], u = unit_of[p];
            member[cur[u]++] = p;
            for (int r = 0; r < R; ++r) unit_req[u * R + r] += pods.req[p * R + r];
        }
    }

    // ---- per-node state: allocated, pending units, class, share ----
    std::vector<int64_t> alloc(static_cast<size_t>(Q) * R, 0);
    std::vector<int64_t> asked(static_cast<size_t>(Q) * R, 0);  // requests of pending units
    std::vector<int64_t> pending(static_cast<size_t>(Q), 0);
    for (int32_t q = Q - 1; q >= 0; --q) {
        if (ch.leaf(q)) {
            for (int r = 0; r < R; ++r) alloc[q * R + r] += allocated[q * R + r];
            pending[q] += leaf_unit[q + 1] - leaf_unit[q];
            for (int64_t u = leaf_unit[q]; u < leaf_unit[q + 1]; ++u)
                for (int r = 0; r < R; ++r) asked[q * R + r] += unit_req[u * R + r];
        }
        if (t.parent[q] >= 0) {
            for (int r = 0; r < R; ++r) {
                alloc[t.parent[q] * R + r] += alloc[q * R + r];
                asked[t.parent[q] * R + r] += asked[q * R + r];
            }
            pending[t.parent[q]] += pending[q];
        }
    }
    // Saturated resources (H-DRF): once nothing of a resource is left, shares ignore it, so a queue
    // whose subtree holds all of it (a CPU-bound sibling) does not look "full" to the others.
    std::vector<int64_t> total(static_cast<size_t>(R), 0);
    for (int32_t q = 0; q < Q; ++q)
        if (t.parent[q] < 0)
            for (int r = 0; r < R; ++r) total[r] += alloc[q * R + r];
    uint64_t saturated = 0;
    auto saturation = [&]() {
        uint64_t s = 0;
        if (t.capacity != nullptr)
            for (int r = 0; r < R; ++r)
                if (total[r] >= t.capacity[r]) s |= uint64_t{1} << r;
        return s;
    };
    saturated = saturation();
    std::vector<int8_t> cls(static_cast<size_t>(Q), 1);
    std::vector<double> share(static_cast<size_t>(Q), 0.0);
    auto rekey = [&](int32_t q) {
        // Below deserved: below it in every resource still asked for that the queue has a deserved
        // amount of. One resource alone does not do: a queue far over its GPU quota is not "below"
        // because its pods' CPUs are under its CPU quota.
        bool below = false, at = false;
        double s = 0.0;
        for (int r = 0; r < R; ++r) {
            const int64_t i = q * R + r;
            if (deserved[i] > 0 && asked[i] > 0) (alloc[i] < deserved[i] ? below : at) = true;
            // Only resources still asked for count: a queue whose pending pods want GPUs is not "at
            // its share" because its running pods already got all the memory they wanted.
            if ((saturated >> r & 1U) || asked[i] == 0) continue;
            if (fair_share[i] > 0) {
                const double x = static_cast<double>(alloc[i]) / static_cast<double>(fair_share[i]);
                if (x > s) s = x;
            } else if (alloc[i] > 0) {
                s = std::numeric_limits<double>::infinity();
            }
        }
        cls[q] = below && !at ? 0 : 1;
        share[q] = s;
    };
    for (int32_t q = 0; q < Q; ++q) rekey(q);

    auto less = [&](int32_t a, int32_t b) {
        if (cls[a] != cls[b]) return cls[a] < cls[b];
        if (t.priority[a] != t.priority[b]) return t.priority[a] > t.priority[b];
        if (share[a] != share[b]) return share[a] < share[b];
        return a < b;
    };
    HeapForest<decltype(less)> heaps(Q + 1, Q, less);
    for (int32_t q = 0; q < Q; ++q)
        if (pending[q] > 0) heaps.push(up(q), q);

    // ---- pop units ----
    std::vector<int64_t> next_unit(leaf_unit.begin(), leaf_unit.end() - 1);
    while (!heaps.empty(root)) {
        int32_t n = heaps.top(root);
        while (!ch.leaf(n)) n = heaps.top(n);  // an internal node with pending units has such a child
        const int64_t u = next_unit[n]++;
        const int64_t* x = &unit_req[u * R];
        bool held = false;
        for (int32_t a = n; !held && a >= 0; a = t.parent[a])
            for (int r = 0; r < R; ++r) {
                const int64_t i = a * R + r;
                if (t.limit[i] >= 0 && x[r] > 0 && alloc[i] + x[r] > t.limit[i]) held = true;
            }
        if (held) {
            for (int64_t i = unit_start[u]; i < unit_start[u + 1]; ++i) res.status[member[i]] = kHeldLimit;
        } else {
            res.order.insert(res.order.end(), member.begin() + unit_start[u], member.begin() + unit_start[u + 1]);
        }
        for (int32_t a = n; a >= 0; a = t.parent[a]) {
            for (int r = 0; r < R; ++r) {
                asked[a * R + r] -= x[r];
                if (!held) alloc[a * R + r] += x[r];
            }
            rekey(a);
            if (--pending[a] == 0) heaps.erase(a);
            else heaps.update(a);
        }
        if (held) continue;
        for (int r = 0; r < R; ++r) total[r] += x[r];
        const uint64_t now = saturation();
        if (now != saturated) {  // at most once per resource: re-key everything, rebuild the heaps
            saturated = now;
            heaps.clear();
            for (int32_t q = 0; q < Q; ++q) {
                rekey(q);
                if (pending[q] > 0) heaps.push(up(q), q);
            }
        }
    }
    return res;
}

}  // namespace

OrderResult order_pending(const QueueTree& t, const int64_t* deserved, const int64_t* fair_share,
                          const int64_t* allocated, const PendingPods& pods) {
    return t.nres == kNumRes ? order_pending_impl<kNumRes>(t, deserved, fair_share, allocated, pods)
                             : order_pending_impl<0>(t, deserved, fair_share, allocated, pods);
}

}  // namespace kaiwo
