// Hierarchical fair shares: see fairshare.hpp for the contract and the numbered semantics.
//
// Implementation notes (tests/naive_queues.py `fair_share_ref` is the executable specification):
//
// * Nodes are 0..Q-1 plus a virtual root Q whose children are the top-level queues. Because
//   parent[q] < q, "children before parents" is simply decreasing index order.
// * Phase 2 keeps, per node, its aggregate over-quota vector `vec` (U for a leaf, the H-DRF aggregate
//   V for an internal node) and its weighted share `g`. Admitting a pod changes U of one leaf, so only
//   the path to the root is recomputed (an internal node rescans its children: O(siblings)); blocking
//   a leaf changes which children its parent rescales, so the path is recomputed too. When a resource
//   saturates, every share changes, so all nodes are recomputed bottom-up and the heaps rebuilt; that
//   happens at most once per resource.
// * Selection at each level uses a keyed heap over the node's non-blocked children ordered by
//   (priority desc, g asc, index asc), a strict total order, so the choice equals the reference's
//   min-scan. Only the nodes on the changed path change key among their siblings, except after a
//   saturation (full rebuild).
// * Shares are computed with the operations and order of the reference:
//   g(V, q) = max over r (in column order) of V[r] / (double(capacity[r]) * weight[q][r]);
//   V_n accumulates children in index order, each as `V[r] += vec_c[r] * (M / g_c)` (scaled) or
//   `V[r] += vec_c[r]` (raw), starting from 0.0.
#include "fairshare.hpp"

#include <algorithm>
#include <limits>

namespace kaiwo {

Children::Children(const int32_t* parent, int32_t n)
    : start(static_cast<size_t>(n) + 2, 0), child(static_cast<size_t>(n)) {
    for (int32_t q = 0; q < n; ++q) ++start[(parent[q] < 0 ? n : parent[q]) + 1];
    for (int32_t i = 0; i <= n; ++i) start[i + 1] += start[i];
    std::vector<int32_t> cur(start.begin(), start.end() - 1);
    for (int32_t q = 0; q < n; ++q) child[cur[parent[q] < 0 ? n : parent[q]]++] = q;
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// Phase-2 state and the operations on it.
template <int NR>
class OverQuota {
public:
    OverQuota(const QueueTree& t, const Children& ch, const int64_t* deserved, const int64_t* alloc)
        : saturated(static_cast<size_t>(t.nres), 0), t_(t), ch_(ch), des_(deserved), alloc_(alloc),
          vec_(static_cast<size_t>(t.n) * t.nres, 0.0), g_(static_cast<size_t>(t.n), 0.0),
          oversub_(static_cast<size_t>(t.n), 0), within_(static_cast<size_t>(t.nres), 0) {
        // Queues whose children's deserved add up to more than their own in some resource: only
        // they can have hidden over-quota use (Σ min(alloc, deserved) <= Σ deserved otherwise).
        std::vector<int64_t> sum(static_cast<size_t>(t.n) * t.nres, 0);
        for (int32_t q = t.n - 1; q >= 0; --q) {
            if (!ch.leaf(q))
                for (int r = 0; r < t.nres; ++r)
                    if (sum[size_t(q) * t.nres + r] > deserved[size_t(q) * t.nres + r]) oversub_[q] = 1;
            if (t.parent[q] >= 0)
                for (int r = 0; r < t.nres; ++r) sum[size_t(t.parent[q]) * t.nres + r] += deserved[size_t(q) * t.nres + r];
        }
    }

    double g(int32_t q) const { return g_[q]; }

    /// Weighted dominant share of `v` for queue `q` over the non-saturated resources.
    double share(const double* v, int32_t q) const {
        constexpr int kFixed = NR;
        const int R = kFixed > 0 ? kFixed : t_.nres;
        double s = 0.0;
        for (int r = 0; r < R; ++r) {
            if (saturated[r] || t_.capacity[r] <= 0) continue;
            const double x = v[r] / (static_cast<double>(t_.capacity[r]) * t_.weight[q * R + r]);
            if (x > s) s = x;
        }
        return s;
    }

    /// Recomputes vec and g of `q` from its own state (leaf) or its children's (internal).
    void recompute(int32_t q, const std::vector<uint8_t>& blocked) {
        constexpr int kFixed = NR;
        const int R = kFixed > 0 ? kFixed : t_.nres;
        double* v = &vec_[static_cast<size_t>(q) * R];
        if (ch_.leaf(q)) {
            for (int r = 0; r < R; ++r) {
                const int64_t over = alloc_[q * R + r] - des_[q * R + r];
                v[r] = static_cast<double>(over > 0 ? over : 0);
            }
        } else {
            double m = kInf;
            for (int32_t i = ch_.begin(q); i < ch_.end(q); ++i) {
                const int32_t c = ch_.child[i];
                if (!blocked[c] && g_[c] > 0.0 && g_[c] < m) m = g_[c];
            }
            for (int r = 0; r < R; ++r) v[r] = 0.0;
            for (int32_t i = ch_.begin(q); i < ch_.end(q); ++i) {
                const int32_t c = ch_.child[i];
                const double* vc = &vec_[static_cast<size_t>(c) * R];
                if (!blocked[c] && g_[c] > 0.0) {
                    const double f = m / g_[c];
                    for (int r = 0; r < R; ++r) v[r] += vc[r] * f;
                } else {
                    for (int r = 0; r < R; ++r) v[r] += vc[r];
                }
            }
            // Parent-level charging: what the children use within their own deserved beyond the
            // parent's deserved (their quotas add up to more) is over-quota use of the parent, which
            // no child's vector shows; it is added raw. With children's deserved summing to at most
            // the parent's it is zero, and the H-DRF aggregate above is unchanged.
            if (oversub_[q]) {
                int64_t* within = within_.data();
                for (int r = 0; r < R; ++r) within[r] = 0;
                for (int32_t i = ch_.begin(q); i < ch_.end(q); ++i) {
                    const int32_t c = ch_.child[i];
                    for (int r = 0; r < R; ++r) within[r] += std::min(alloc_[c * R + r], des_[c * R + r]);
                }
                for (int r = 0; r < R; ++r) {
                    const int64_t hidden = within[r] - des_[q * R + r];
                    if (hidden > 0) v[r] += static_cast<double>(hidden);
                }
            }
        }
        g_[q] = share(v, q);
    }

    std::vector<uint8_t> saturated;  ///< [R] resources that ran out (shares ignore them)

private:
    const QueueTree& t_;
    const Children& ch_;
    const int64_t* des_;
    const int64_t* alloc_;
    std::vector<double> vec_;
    std::vector<double> g_;
    std::vector<uint8_t> oversub_;  ///< [Q] children's deserved add up to more than its own
    std::vector<int64_t> within_;   ///< [R] scratch
};

}  // namespace

namespace {

/// The kernel for NR resource columns (NR = 0: t.nres, known at run time only).
template <int NR>
FairShareResult fair_share_impl(const QueueTree& t, const int64_t* pod_start, const int64_t* req) {
    constexpr int kFixed = NR;
    const int R = kFixed > 0 ? kFixed : t.nres;
    const int32_t Q = t.n;
    const int32_t root = Q;
    const int64_t P = pod_start[Q];
    const Children ch(t.parent, Q);
    auto up = [&](int32_t q) { return t.parent[q] < 0 ? root : t.parent[q]; };

    FairShareResult res;
    const size_t QR = static_cast<size_t>(Q) * R;
    res.demand.assign(QR, 0);
    res.deserved.assign(QR, 0);
    res.fair_share.assign(QR, 0);
    res.allocated.assign(QR, 0);
    res.admitted.assign(static_cast<size_t>(P), 0);
    res.phase.assign(static_cast<size_t>(P), kPhaseNone);
    int64_t* dem = res.demand.data();
    int64_t* des = res.deserved.data();
    int64_t* alloc = res.allocated.data();

    // 1. Demand: leaves sum their pods, then children into parents (decreasing index).
    for (int32_t q = 0; q < Q; ++q)
        for (int64_t p = pod_start[q]; p < pod_start[q + 1]; ++p)
            for (int r = 0; r < R; ++r) dem[q * R + r] += req[p * R + r];
    for (int32_t q = Q - 1; q >= 0; --q)
        if (t.parent[q] >= 0)
            for (int r = 0; r < R; ++r) dem[t.parent[q] * R + r] += dem[q * R + r];

    // 2. Deserved, capped top-down (increasing index) by the parent's.
    for (int32_t q = 0; q < Q; ++q) {
        for (int r = 0; r < R; ++r) {
            const int64_t i = q * R + r;
            int64_t d = t.quota[i] < 0 ? dem[i] : std::min(t.quota[i], dem[i]);
            if (t.limit[i] >= 0) d = std::min(d, t.limit[i]);
            if (t.parent[q] >= 0) d = std::min(d, des[t.parent[q] * R + r]);
            des[i] = d;
        }
    }

    std::vector<int64_t> total(static_cast<size_t>(R), 0);
    std::vector<int64_t> next(pod_start, pod_start + Q);  // next pod of each leaf
    auto fits_capacity = [&](const int64_t* x) {
        for (int r = 0; r < R; ++r)
            if (total[r] + x[r] > t.capacity[r]) return false;
        return true;
    };
    auto admit = [&](int32_t leaf, int64_t p, int8_t phase) {
        const int64_t* x = req + p * R;
        for (int r = 0; r < R; ++r) total[r] += x[r];
        for (int32_t a = leaf; a >= 0; a = t.parent[a])
            for (int r = 0; r < R; ++r) alloc[a * R + r] += x[r];
        res.admitted[p] = 1;
        res.phase[p] = phase;
        ++next[leaf];
    };

    // 3. Phase 1: within deserved, leaves in index order, each up to its first misfit.
    for (int32_t q = 0; q < Q; ++q) {
        if (!ch.leaf(q)) continue;
        while (next[q] < pod_start[q + 1]) {
            const int64_t p = next[q];
            const int64_t* x = req + p * R;
            bool ok = fits_capacity(x);
            for (int32_t a = q; ok && a >= 0; a = t.parent[a])
                for (int r = 0; r < R; ++r)
                    if (alloc[a * R + r] + x[r] > des[a * R + r]) ok = false;
            if (!ok) break;
            admit(q, p, kPhaseDeserved);
        }
    }

    // 4. Phase 2: dynamic H-DRF over the over-quota usage.
    std::vector<uint8_t> blocked(static_cast<size_t>(Q), 0);
    std::vector<uint8_t> deferred(static_cast<size_t>(Q), 0);  // blocked by a reservation only
    std::vector<int32_t> open(static_cast<size_t>(Q) + 1, 0);  // non-blocked children per node
    auto init_blocked = [&]() {  // leaves: no pods left, or blocked (not deferred) in the first pass
        std::fill(open.begin(), open.end(), 0);
        for (int32_t q = Q - 1; q >= 0; --q) {
            blocked[q] = ch.leaf(q) ? next[q] == pod_start[q + 1] || (blocked[q] && !deferred[q]) : open[q] == 0;
            if (!blocked[q]) ++open[up(q)];
        }
    };
    init_blocked();
    // Unmet deserved quota is held back from phase 2 (see fairshare.hpp, 4.). Per queue, `in` is
    // its allocation within deserved (a leaf: min(alloc, deserved); internal: min(deserved, Σ
    // children's)) and `rsv` what it still deserves and may take (a leaf: deserved - in; internal:
    // min(deserved - Σ children's in, Σ children's rsv)); `held` sums rsv over the top level. Only
    // allocation within a child's deserved counts against its parent's: a sibling far over its own
    // quota does not use up what the parent holds for the others.
    std::vector<int64_t> in(QR, 0), rsv(QR, 0), kin(QR, 0), krsv(QR, 0);
    std::vector<int64_t> held(static_cast<size_t>(R), 0);
    auto reserve = [&](int32_t q, int r, int64_t a_q, int64_t k_in, int64_t k_rsv, int64_t* o_in, int64_t* o_rsv) {
        const int64_t d = des[size_t(q) * R + r];
        if (ch.leaf(q)) {
            *o_in = std::min(a_q, d);
            *o_rsv = d - *o_in;
        } else {
            *o_in = std::min(d, k_in);
            *o_rsv = std::min(std::max<int64_t>(0, d - k_in), k_rsv);
        }
    };
    for (int32_t q = Q - 1; q >= 0; --q)
        for (int r = 0; r < R; ++r) {
            const size_t i = size_t(q) * R + r;
            reserve(q, r, alloc[i], kin[i], krsv[i], &in[i], &rsv[i]);
            if (t.parent[q] >= 0) {
                kin[size_t(t.parent[q]) * R + r] += in[i];
                krsv[size_t(t.parent[q]) * R + r] += rsv[i];
            } else {
                held[r] += rsv[i];
            }
        }
    // Change of `held` if leaf n took x (path_in / path_rsv: the path's new values).
    std::vector<int64_t> path_in(QR, 0), path_rsv(QR, 0);
    auto held_change = [&](int32_t n, const int64_t* x, int64_t* change) {
        for (int r = 0; r < R; ++r) {
            int64_t d_in = 0, d_rsv = 0;  // change of the child on the path
            for (int32_t a = n; a >= 0; a = t.parent[a]) {
                const size_t i = size_t(a) * R + r;
                reserve(a, r, alloc[i] + x[r], kin[i] + d_in, krsv[i] + d_rsv, &path_in[i], &path_rsv[i]);
                d_in = path_in[i] - in[i];
                d_rsv = path_rsv[i] - rsv[i];
            }
            change[r] = d_rsv;
        }
    };
    auto take_res = [&](int32_t n, const int64_t* change) {
        for (int32_t a = n; a >= 0; a = t.parent[a])
            for (int r = 0; r < R; ++r) {
                const size_t i = size_t(a) * R + r;
                if (t.parent[a] >= 0) {
                    kin[size_t(t.parent[a]) * R + r] += path_in[i] - in[i];
                    krsv[size_t(t.parent[a]) * R + r] += path_rsv[i] - rsv[i];
                }
                in[i] = path_in[i];
                rsv[i] = path_rsv[i];
            }
        for (int r = 0; r < R; ++r) held[r] += change[r];
    };

    OverQuota<NR> oq(t, ch, des, alloc);
    auto less = [&](int32_t a, int32_t b) {
        if (t.priority[a] != t.priority[b]) return t.priority[a] > t.priority[b];
        const double ga = oq.g(a), gb = oq.g(b);
        if (ga != gb) return ga < gb;
        return a < b;
    };
    HeapForest<decltype(less)> heaps(Q + 1, Q, less);
    auto rebuild = [&]() {
        for (int32_t q = Q - 1; q >= 0; --q) oq.recompute(q, blocked);
        heaps.clear();
        for (int32_t q = 0; q < Q; ++q)
            if (!blocked[q]) heaps.push(up(q), q);
    };
    rebuild();

    // Two passes: the first holds back what queues still deserve; once every leaf is blocked, what
    // is still held cannot be taken by its queues (they are out of pods, or their next pod does not
    // fit), so the second pass lets the leaves that only a reservation blocked take the rest.
    std::vector<int64_t> change_v(static_cast<size_t>(R), 0);
    for (bool reserving : {true, false}) {
    if (!reserving) {
        bool any = false;
        for (int32_t q = 0; q < Q; ++q) any = any || deferred[q];
        if (!any) break;
        init_blocked();
        rebuild();
    }
    while (!heaps.empty(root)) {
        int32_t n = heaps.top(root);
        while (!ch.leaf(n)) n = heaps.top(n);  // a non-blocked internal node has a non-blocked child
        const int64_t p = next[n];
        const int64_t* x = req + p * R;
        bool grew = false;
        bool ok = true;
        int64_t* change = change_v.data();
        held_change(n, x, change);
        bool reserved = false;
        for (int r = 0; r < R; ++r) {
            if (total[r] + x[r] > t.capacity[r]) {
                ok = false;
                if (!oq.saturated[r]) {
                    oq.saturated[r] = 1;
                    grew = true;
                }
            } else if (reserving && x[r] + change[r] > 0 && total[r] + x[r] + held[r] + change[r] > t.capacity[r]) {
                // Into what other queues still deserve (a pod that only uses its own path's
                // reservation leaves total + held as it was).
                reserved = true;
            }
        }
        for (int32_t a = n; ok && a >= 0; a = t.parent[a])
            for (int r = 0; r < R; ++r)
                if (t.limit[a * R + r] >= 0 && alloc[a * R + r] + x[r] > t.limit[a * R + r])
                    ok = false;
        const bool only_reserved = ok && reserved;
        ok = ok && !reserved;
        if (ok) {
            take_res(n, change);
            admit(n, p, kPhaseOverQuota);
        }
        bool newly = !ok || next[n] == pod_start[n + 1];  // misfit, or no pods left
        if (newly) blocked[n] = 1;
        deferred[n] = only_reserved;
        // Up the path: shares change (allocation or the blocked set did), blocking may propagate.
        for (int32_t a = n;;) {
            oq.recompute(a, blocked);
            const int32_t pa = up(a);
            if (newly) {
                heaps.erase(a);
                newly = --open[pa] == 0 && pa != root;
                if (newly) blocked[pa] = 1;
            } else {
                heaps.update(a);
            }
            if (pa == root) break;
            a = pa;
        }
        if (grew) rebuild();
    }
    }

    // The virtual allocation itself: max(deserved, allocated) would count deserved quota that
    // capacity could not give on top of what others got (more than the capacity in all).
    res.fair_share = res.allocated;
    return res;
}

}  // namespace

FairShareResult fair_share(const QueueTree& t, const int64_t* pod_start, const int64_t* req) {
    // The usual three columns get a copy with the count known at compile time (unrolled loops).
    return t.nres == kNumRes ? fair_share_impl<kNumRes>(t, pod_start, req) : fair_share_impl<0>(t, pod_start, req);
}

}  // namespace kaiwo
