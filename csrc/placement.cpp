// Placement kernel: see placement.hpp for the data contract.
//
// Exact semantics (tests/naive.py `place_batch_ref` is the executable specification):
//
// Pods are placed one at a time, in batch order. For each node, in index order, the first failing
// filter is the node's reason: class mask (kRNodeFilter), CPU, memory, pod slots, then for GPU pods
// "fewer devices than `count`" (kRGpuCount) and the kind-specific device checks:
//   * whole, or fractional with `exclusive`: `count` idle devices (kRGpuBusy); the lowest-index idle
//     devices are taken entirely (state EXCLUSIVE).
//   * shared (time-sliced): devices not EXCLUSIVE with milli_free >= milli (kRGpuShare), then also
//     mem_free >= need_mem (kRGpuMemory); picked by (already shared first, least milli_free, index).
//   * XCD-isolated: devices with XCDs, not EXCLUSIVE, with k free XCDs (kRXcd), then the XCDs' compute
//     share (kRGpuShare), then memory (kRGpuMemory); picked by (already shared first, fewest free
//     XCDs, index); on each, the k-XCD subset touching the fewest memory domains, then the lowest mask.
// Among feasible nodes the highest score wins, ties to the lower index (strict `>` in index order).
// best_share is the largest milli_free of a non-EXCLUSIVE device on nodes passing the node filters.
//
// Speed. The naive algorithm scans every device of every node for every pod and, for the
// fragmentation-aware strategy, re-evaluates every tracked request shape on every device of every
// feasible node. What keeps the kernel far below that (1,000 nodes x 8 GPUs, 10,000 pods: tens of ms):
//   1. The device-level outcome of a GPU request (reason, or the utilisation and fragmentation change
//      it would cause) depends only on the request's GPU shape and the node's devices. It is cached
//      per (shape, node); a GPU placement marks the node's entries stale for every shape. After the
//      first pod of a shape, a pod re-evaluates only the nodes that changed since that shape was
//      last placed.
//   2. Per-node summaries (idle devices, largest shareable milli, best XCD ratio, used compute) reject
//      most infeasible nodes without a device scan. They are exact: a summary only ever proves "no
//      device passes the kind's first device check", which is precisely when the full scan reports
//      that check's reason (the checks before it in that kind are the same or weaker).
//   3. Fragmentation F(n) is kept per node as per-shape counters (devices able to host a unit of the
//      shape, milli they cannot use, usable milli) plus a per-device bitmask of the shapes it can
//      host; a tentative placement changes only its `count` devices, so F(after) costs
//      O(shapes x count) instead of O(shapes x devices on the node).
//   4. Per pod, the node filters run as one vectorised pass; a branch-free compaction keeps the nodes
//      that pass them and may host the shape; only those are scored, and a bound on the score
//      (exact, see `scan`) skips most of them without the CPU-utilisation division. Reason counts,
//      needed only for pods that fit nowhere, are computed for those pods only.
//   5. Scratch buffers are sized up front: the per-pod loops never allocate.
// Placements only ever consume resources, so the in-place state after the batch is exactly what the
// reference produces. Float scores use the same operations in the same order as the Python reference
// (setup.py compiles with -ffp-contract=off), so node choices are bit-for-bit identical.

#include "placement.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <map>
#include <tuple>
#include <utility>

namespace kaiwo {
namespace {

constexpr int64_t kFullMilli = 1000;   ///< compute of one logical GPU
constexpr int kMaxFragShapes = 16;      ///< request shapes the fragmentation score tracks (fits uint16)
constexpr int kMaxXcdBits = 8;          ///< XCDs per partition mask (bits 0..7), checked by the binding
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr std::size_t kCacheBudget = std::size_t(1) << 20;  ///< (shape, node) cache entries, ~18 MiB
constexpr std::size_t kMaxSlots = 4096;                    ///< cached shapes at most

/// Bits set in an XCD mask (bits 0..7, checked by the binding). A table, because without
/// -mpopcnt the builtin is a library call and this runs in the innermost device loops.
struct Pop8 {
    std::array<uint8_t, 256> v{};
    constexpr Pop8() {
        for (int i = 1; i < 256; ++i) v[i] = static_cast<uint8_t>(v[i >> 1] + (i & 1));
    }
};
constexpr Pop8 kPop8{};
inline int popcount(uint32_t x) { return kPop8.v[x & 0xFFu]; }

/// Non-negative integer division rounding up, as the reference's `-(-a // b)`.
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// `used / cap` as a utilisation; 0 when there is no capacity (same expression as the reference).
inline double ratio(int64_t used, int64_t cap) {
    return cap == 0 ? 0.0 : static_cast<double>(used) / static_cast<double>(cap);
}

/// How a request uses its devices; `kind` plus `exclusive` collapse into one of these.
enum Mode : int8_t {
    kModeNone = 0,   ///< no GPU
    kModeIdle = 1,   ///< whole idle devices, held exclusively
    kModeShare = 2,  ///< time-sliced share of compute and memory
    kModeXcd = 3,    ///< whole XCDs of a partition
};

/// The GPU part of a request: everything the device checks and charges depend on.
struct Shape {
    Mode mode = kModeNone;
    int32_t count = 0;
    int32_t milli = 0;
    int64_t gpu_mem = 0;
    // XCD mode, by the partition's XCD count nx (1..8): XCDs taken and compute charged. Tabulated
    // because they are needed per device in the hottest device loops and involve divisions.
    std::array<int32_t, kMaxXcdBits + 1> xk{};
    std::array<int64_t, kMaxXcdBits + 1> xcharge{};

    Shape() = default;
    Shape(Mode m, int32_t c, int32_t mi, int64_t gm) : mode(m), count(c), milli(mi), gpu_mem(gm) {
        for (int nx = 1; nx <= kMaxXcdBits; ++nx) {
            xk[nx] = static_cast<int32_t>(std::max<int64_t>(1, ceil_div(int64_t(milli) * nx, kFullMilli)));
            xcharge[nx] = int64_t(xk[nx]) * kFullMilli / nx;
        }
    }
};

/// Best k-XCD subset per (XCDs per domain, free mask, k): fewest memory domains, then lowest mask.
/// Built once (thread-safe static): the kernel may run on several threads with the GIL released.
struct XcdTable {
    // [xpd-1][free][k] -> mask (0 = no subset of that size)
    std::array<std::array<std::array<uint8_t, kMaxXcdBits + 1>, 256>, kMaxXcdBits> best{};

    XcdTable() {
        for (int xpd = 1; xpd <= kMaxXcdBits; ++xpd) {
            std::array<int, 256> domains{};
            for (int m = 0; m < 256; ++m) {
                uint32_t dmask = 0;
                for (int b = 0; b < kMaxXcdBits; ++b)
                    if (m & (1 << b)) dmask |= 1u << (b / xpd);
                domains[m] = popcount(dmask);
            }
            for (int free = 0; free < 256; ++free) {
                std::array<int, kMaxXcdBits + 1> best_dom;
                best_dom.fill(1 << 30);
                auto& row = best[xpd - 1][free];
                // Ascending masks, strict improvement only: ties keep the lower mask.
                for (int m = 1; m < 256; ++m) {
                    if (m & ~free) continue;
                    const int k = popcount(m);
                    if (domains[m] < best_dom[k]) {
                        best_dom[k] = domains[m];
                        row[k] = static_cast<uint8_t>(m);
                    }
                }
            }
        }
    }

    uint32_t pick(uint32_t free, int k, int32_t xcds_per_domain) const {
        // Any domain size >= 8 puts all 8 bits in domain 0, exactly like size 8.
        const int xpd = std::min<int32_t>(std::max<int32_t>(xcds_per_domain, 1), kMaxXcdBits);
        return best[xpd - 1][free & 0xFFu][k];
    }
};

const XcdTable& xcd_table() {
    static const XcdTable table;
    return table;
}

/// State of a cached (shape, node) device-level outcome.
enum EntryState : uint8_t {
    kEntryNo = 0,     ///< fresh: the node's devices cannot host the shape (reason in the entry)
    kEntryYes = 1,    ///< fresh: they can (utilisation and fragmentation change in the entry)
    kEntryStale = 2,  ///< the node's devices changed since; evaluate again when needed
};

/// One shape's cache row, [N] entries in separate arrays by who reads them: the state byte (every
/// pod, every node passing the node filters), the utilisation after placement and the
/// fragmentation term (feasible nodes only; the latter for kFragAware only) and the reason
/// (unplaced pods only). Narrow arrays keep the rows of many shapes in cache.
struct CacheRow {
    uint8_t* state = nullptr;
    int8_t* reason = nullptr;
    double* gu = nullptr;     ///< GPU utilisation of the node after the placement
    double* fterm = nullptr;  ///< (F(before) - F(after)) / total weight
};

/// Per-shape fragmentation counters of one node (or a tentative variant of them).
struct FragAcc {
    std::array<int32_t, kMaxFragShapes> ok{};   ///< devices that can host one unit of the shape
    std::array<int64_t, kMaxFragShapes> bad{};  ///< milli_free on non-EXCLUSIVE devices that cannot
    int64_t nonex = 0;                          ///< milli_free on non-EXCLUSIVE devices
};

/// Saved device fields, to undo a tentative placement.
struct DevSave {
    int64_t milli_free, mem_free;
    uint32_t xcd_free;
    int8_t state;
};

/// Undo records of a gang's commits, replayed in reverse if the gang does not reach its minimum.
struct NodeUndo {
    int32_t n;
    int64_t cpu_free, mem_free, pods_free, frag_F;
    FragAcc frag;
};
struct DevUndo {
    int32_t d;
    DevSave save;
    uint16_t okmask;
};

/// Device candidate with its pick key (already shared first, then fullest, then index).
struct Cand {
    int32_t shared_rank;  ///< 0 = already shared, 1 = idle
    int64_t fill;         ///< milli_free (shared) or free XCD count (XCD)
    int32_t d;
    bool operator<(const Cand& o) const {
        if (shared_rank != o.shared_rank) return shared_rank < o.shared_rank;
        if (fill != o.fill) return fill < o.fill;
        return d < o.d;
    }
};

class Placer {
public:
    Placer(ClusterView& v, const Batch& b, Strategy s)
        : v_(v), b_(b), strategy_(s), frag_on_(s == kFragAware), xt_(xcd_table()) {}

    Result run();

private:
    // ---- per-device rules (one place each, shared by checks, fragmentation and commit) ----

    /// GPU memory a time-sliced pod needs on device d.
    int64_t share_mem(const Shape& s, int64_t d) const {
        return s.gpu_mem > 0 ? s.gpu_mem : ceil_div(int64_t(s.milli) * v_.dev_mem_cap[d], kFullMilli);
    }
    /// GPU memory an XCD pod taking k of the nx XCDs needs on device d.
    int64_t xcd_mem(const Shape& s, int64_t d, int k, int nx) const {
        return s.gpu_mem > 0 ? s.gpu_mem : v_.dev_mem_cap[d] * k / nx;
    }

    /// Whether device d (not EXCLUSIVE) could take one device-unit of shape s (fragmentation test).
    bool unit_ok(const Shape& s, int64_t d) const {
        switch (s.mode) {
            case kModeIdle: return v_.dev_state[d] == kIdle;
            case kModeShare:
                return v_.dev_milli_free[d] >= s.milli && v_.dev_mem_free[d] >= share_mem(s, d);
            case kModeXcd: {
                const int nx = popcount(v_.dev_xcd_mask[d]);
                if (nx == 0) return false;
                const int k = s.xk[nx];
                return popcount(v_.dev_xcd_free[d]) >= k && v_.dev_milli_free[d] >= s.xcharge[nx] &&
                       v_.dev_mem_free[d] >= xcd_mem(s, d, k, nx);
            }
            default: return false;
        }
    }

    /// Charge one device-unit of shape s on device d; returns the compute charged and writes the
    /// memory and XCDs of the assignment.
    int64_t charge(const Shape& s, int64_t d, int64_t& mem, uint32_t& xcds) {
        switch (s.mode) {
            case kModeIdle: {
                const int64_t m = v_.dev_milli_free[d];
                mem = v_.dev_mem_free[d];
                xcds = v_.dev_xcd_mask[d];
                v_.dev_milli_free[d] = 0;
                v_.dev_mem_free[d] = 0;
                v_.dev_xcd_free[d] = 0;
                v_.dev_state[d] = kExclusive;
                return m;
            }
            case kModeShare: {
                mem = share_mem(s, d);
                v_.dev_milli_free[d] -= s.milli;
                v_.dev_mem_free[d] -= mem;
                v_.dev_state[d] = kSharedDev;
                xcds = v_.dev_xcd_free[d];  // the XCDs a time-sliced pod may run on
                return s.milli;
            }
            case kModeXcd: {
                const int nx = popcount(v_.dev_xcd_mask[d]);
                const int k = s.xk[nx];
                mem = xcd_mem(s, d, k, nx);
                xcds = xt_.pick(v_.dev_xcd_free[d], k, v_.dev_xcds_per_domain[d]);
                v_.dev_xcd_free[d] &= ~xcds;
                v_.dev_milli_free[d] -= s.xcharge[nx];
                v_.dev_mem_free[d] -= mem;
                v_.dev_state[d] = kSharedDev;
                return s.xcharge[nx];
            }
            default: return 0;
        }
    }

    // ---- fragmentation ----

    /// Take device d's current contribution (per `okmask_[d]`) out of `acc`.
    void frag_remove(FragAcc& acc, int64_t d) const {
        if (v_.dev_state[d] == kExclusive) return;
        const int64_t mf = v_.dev_milli_free[d];
        const uint32_t mask = okmask_[d];
        acc.nonex -= mf;
        for (std::size_t t = 0; t < frag_shapes_.size(); ++t) {
            if (mask >> t & 1u) --acc.ok[t];
            else acc.bad[t] -= mf;
        }
    }
    /// Add device d's contribution in its current state to `acc`; returns its shape bitmask.
    uint16_t frag_add(FragAcc& acc, int64_t d) const {
        if (v_.dev_state[d] == kExclusive) return 0;
        const int64_t mf = v_.dev_milli_free[d];
        uint16_t mask = 0;
        acc.nonex += mf;
        for (std::size_t t = 0; t < frag_shapes_.size(); ++t) {
            if (unit_ok(frag_shapes_[t].first, d)) {
                ++acc.ok[t];
                mask = static_cast<uint16_t>(mask | (1u << t));
            } else {
                acc.bad[t] += mf;
            }
        }
        return mask;
    }
    /// F from counters: per shape, all usable milli if the node cannot host one pod of the shape,
    /// else the milli on devices that cannot host one unit of it; weighted by the shape's pod count.
    int64_t frag_total(const FragAcc& acc) const {
        int64_t total = 0;
        for (std::size_t t = 0; t < frag_shapes_.size(); ++t)
            total += frag_shapes_[t].second * (acc.ok[t] >= frag_shapes_[t].first.count ? acc.bad[t] : acc.nonex);
        return total;
    }

    // ---- device checks ----

    /// Index of the smallest `count` candidates into chosen_ (partial order is enough: the caller
    /// charges them in key order, as the reference does after sorting).
    void select(int32_t n_cands, int32_t count) {
        if (count == 1) {
            int32_t best = 0;
            for (int32_t i = 1; i < n_cands; ++i)
                if (cands_[i] < cands_[best]) best = i;
            chosen_[0] = cands_[best].d;
        } else {
            std::partial_sort(cands_.begin(), cands_.begin() + count, cands_.begin() + n_cands);
            for (int32_t i = 0; i < count; ++i) chosen_[i] = cands_[i].d;
        }
    }

    /// First failing device-level reason of shape s on node n (or -1) and the compute the placement
    /// would charge. With `choose`, the devices it would take are left in chosen_[0 .. count).
    /// Summary checks come first; each proves that no device passes the kind's first check.
    int eval_gpu(const Shape& s, int32_t n, bool choose, int64_t& gdelta) {
        const int64_t d0 = v_.node_dev_start[n], d1 = v_.node_dev_start[n + 1];
        if (d1 - d0 < s.count) return kRGpuCount;
        switch (s.mode) {
            case kModeIdle: {
                if (idle_[n] < s.count) return kRGpuBusy;
                gdelta = 0;
                int32_t c = 0;
                for (int64_t d = d0; c < s.count; ++d) {
                    if (v_.dev_state[d] != kIdle) continue;
                    gdelta += v_.dev_milli_free[d];
                    chosen_[c++] = static_cast<int32_t>(d);
                }
                return -1;
            }
            case kModeShare: {
                if (max_share_[n] < s.milli) return kRGpuShare;
                int32_t n_share = 0, nc = 0;
                for (int64_t d = d0; d < d1; ++d) {
                    if (v_.dev_state[d] == kExclusive || v_.dev_milli_free[d] < s.milli) continue;
                    ++n_share;
                    if (v_.dev_mem_free[d] < share_mem(s, d)) continue;
                    cands_[nc++] = {v_.dev_state[d] == kSharedDev ? 0 : 1, v_.dev_milli_free[d],
                                    static_cast<int32_t>(d)};
                    // Enough devices pass every check: feasible whatever the rest hold, and the
                    // compute charged does not depend on which devices (only a choice needs them all).
                    if (!choose && nc == s.count) break;
                }
                if (n_share < s.count) return kRGpuShare;
                if (nc < s.count) return kRGpuMemory;
                gdelta = int64_t(s.count) * s.milli;
                if (choose) select(nc, s.count);
                return -1;
            }
            case kModeXcd: {
                if (max_xratio_[n] < std::max<int32_t>(s.milli, 1)) return kRXcd;
                int32_t n_xcd = 0, n_share = 0, nc = 0;
                int first_nx = -1;
                bool mixed = false;  // candidates with different XCD counts are charged differently
                for (int64_t d = d0; d < d1; ++d) {
                    const int nx = popcount(v_.dev_xcd_mask[d]);
                    if (nx == 0 || v_.dev_state[d] == kExclusive) continue;
                    const int k = s.xk[nx];
                    const int free_x = popcount(v_.dev_xcd_free[d]);
                    if (free_x < k) continue;
                    ++n_xcd;
                    if (v_.dev_milli_free[d] < s.xcharge[nx]) continue;
                    ++n_share;
                    if (v_.dev_mem_free[d] < xcd_mem(s, d, k, nx)) continue;
                    cands_[nc++] = {v_.dev_state[d] == kSharedDev ? 0 : 1, free_x, static_cast<int32_t>(d)};
                    mixed |= first_nx >= 0 && nx != first_nx;
                    first_nx = nx;
                    // As for shared pods; on a node of mixed partition sizes the charge depends on
                    // the devices chosen, so the scan must see them all.
                    if (!choose && uniform_nx_[n] && nc == s.count) break;
                }
                if (n_xcd < s.count) return kRXcd;
                if (n_share < s.count) return kRGpuShare;
                if (nc < s.count) return kRGpuMemory;
                if (choose || mixed) {
                    select(nc, s.count);
                    gdelta = 0;
                    for (int32_t i = 0; i < s.count; ++i) gdelta += s.xcharge[popcount(v_.dev_xcd_mask[chosen_[i]])];
                } else {
                    gdelta = int64_t(s.count) * s.xcharge[first_nx];
                }
                return -1;
            }
            default: return -1;
        }
    }

    /// Fragmentation counters of node n after charging shape s on chosen_[0 .. count); with
    /// `commit` the charges stay (assignments appended to `r`) and the node's counters are
    /// updated, otherwise the devices are restored.
    FragAcc charge_chosen(const Shape& s, int32_t n, bool commit, Result* r) {
        FragAcc acc;
        if (frag_on_) {
            acc = frag_[n];
            for (int32_t i = 0; i < s.count; ++i) frag_remove(acc, chosen_[i]);
        }
        for (int32_t i = 0; i < s.count; ++i) {
            const int32_t d = chosen_[i];
            if (!commit) saved_[i] = {v_.dev_milli_free[d], v_.dev_mem_free[d], v_.dev_xcd_free[d], v_.dev_state[d]};
            int64_t mem;
            uint32_t xcds;
            const int64_t milli = charge(s, d, mem, xcds);
            if (commit) {
                r->asg_dev.push_back(d);
                r->asg_milli.push_back(milli);
                r->asg_mem.push_back(mem);
                r->asg_xcds.push_back(xcds);
            }
        }
        if (frag_on_) {
            for (int32_t i = 0; i < s.count; ++i) {
                const uint16_t mask = frag_add(acc, chosen_[i]);
                if (commit) okmask_[chosen_[i]] = mask;
            }
        }
        if (!commit) {
            for (int32_t i = 0; i < s.count; ++i) {
                const int32_t d = chosen_[i];
                v_.dev_milli_free[d] = saved_[i].milli_free;
                v_.dev_mem_free[d] = saved_[i].mem_free;
                v_.dev_xcd_free[d] = saved_[i].xcd_free;
                v_.dev_state[d] = saved_[i].state;
            }
        }
        return acc;
    }

    /// Full device-level evaluation of shape s on node n into its cache entry.
    void evaluate(const Shape& s, int32_t n, const CacheRow& row) {
        int64_t gdelta = 0;
        const int reason = eval_gpu(s, n, frag_on_, gdelta);
        row.reason[n] = static_cast<int8_t>(reason);
        row.state[n] = reason >= 0 ? kEntryNo : kEntryYes;
        if (reason >= 0) return;
        row.gu[n] = static_cast<double>(gused_[n] + gdelta) / static_cast<double>(kFullMilli * ndev_[n]);
        if (frag_on_) {
            const int64_t after = frag_total(charge_chosen(s, n, false, nullptr));
            row.fterm[n] = static_cast<double>(frag_F_[n] - after) / static_cast<double>(frag_weight_);
        }
    }

    /// Recompute node n's device summaries (after a commit, or at start).
    void refresh_summaries(int32_t n) {
        int32_t idle = 0;
        int64_t max_share = -1, max_xratio = -1, used = 0;
        for (int64_t d = v_.node_dev_start[n]; d < v_.node_dev_start[n + 1]; ++d) {
            used += kFullMilli - v_.dev_milli_free[d];
            if (v_.dev_state[d] == kExclusive) continue;
            if (v_.dev_state[d] == kIdle) ++idle;
            max_share = std::max(max_share, v_.dev_milli_free[d]);
            // popcount(free) >= ceil(milli*nx/1000)  <=>  floor(popcount(free)*1000/nx) >= milli
            const int nx = popcount(v_.dev_xcd_mask[d]);
            if (nx > 0) max_xratio = std::max<int64_t>(max_xratio, xratio_[popcount(v_.dev_xcd_free[d])][nx]);
        }
        idle_[n] = idle;
        max_share_[n] = max_share;
        max_xratio_[n] = max_xratio;
        gused_[n] = used;
    }

    void setup();
    void commit(int32_t p, int32_t n, Result& r);
    void rollback(int32_t first, int32_t last, std::size_t asg_mark, Result& r);
    template <Strategy S, bool kGpu, bool kExtra>
    int32_t scan(int32_t p, const CacheRow& cache, int64_t& best_share_out);
    template <Strategy S>
    int32_t scan_pod(int32_t p, const CacheRow& cache, int64_t& best_share);
    void count_reasons(int32_t p, const int8_t* gpu_reason, int32_t* out) const;

    ClusterView& v_;
    const Batch& b_;
    const Strategy strategy_;
    const bool frag_on_;
    const XcdTable& xt_;
    std::array<std::array<int64_t, kMaxXcdBits + 1>, kMaxXcdBits + 1> xratio_{};  ///< [free][nx]

    // per node (structure of arrays: the per-pod filter pass streams through a few of them)
    std::vector<int64_t> max_share_;   ///< largest milli_free of a non-EXCLUSIVE device, -1 if none
    std::vector<int32_t> ndev_;
    std::vector<int32_t> idle_;
    std::vector<int64_t> max_xratio_;  ///< largest floor(free XCDs * 1000 / XCDs), -1 if none
    std::vector<int64_t> gused_;       ///< sum of (1000 - milli_free)
    std::vector<uint8_t> uniform_nx_;  ///< all XCD devices of the node have the same XCD count
    std::vector<FragAcc> frag_;        ///< kFragAware: per-shape counters
    std::vector<int64_t> frag_F_;      ///< kFragAware: F(n)
    // per device
    std::vector<uint16_t> okmask_;     ///< kFragAware: bit t = device can host a unit of shape t

    // per pod
    std::vector<Shape> pod_shape_;
    std::vector<int32_t> pod_slot_;    ///< cache slot of the pod's GPU shape, -1 = not cached

    std::vector<std::pair<Shape, int64_t>> frag_shapes_;  ///< tracked shapes and their weights
    int64_t frag_weight_ = 0;                             ///< sum of the weights
    int32_t n_slots_ = 0;                                 ///< cached shapes
    // Cache rows: entry [(slot + 1) * N + n]; row 0 is scratch for pods of one-off shapes.
    std::vector<uint8_t> cache_state_;                    ///< EntryState
    std::vector<int8_t> cache_reason_;
    std::vector<double> cache_gu_;
    std::vector<double> cache_fterm_;                     ///< kFragAware only
    std::vector<uint8_t> base_;                           ///< [N] node filters passed (0/1)
    std::vector<int32_t> pass_;                           ///< [N] nodes left for scoring

    // gang undo log (recording only while a gang's members are being placed)
    bool logging_ = false;
    std::vector<NodeUndo> node_undo_;
    std::vector<DevUndo> dev_undo_;

    // scratch, sized once to the largest node so the per-pod loops never allocate
    std::vector<int32_t> chosen_;
    std::vector<Cand> cands_;
    std::vector<DevSave> saved_;
};

void Placer::setup() {
    const int32_t N = v_.n_nodes, P = b_.n_pods;
    for (int f = 0; f <= kMaxXcdBits; ++f)
        for (int nx = 1; nx <= kMaxXcdBits; ++nx) xratio_[f][nx] = f * kFullMilli / nx;

    int64_t max_devs = 1;
    for (int32_t n = 0; n < N; ++n) max_devs = std::max(max_devs, v_.node_dev_start[n + 1] - v_.node_dev_start[n]);
    chosen_.resize(max_devs);
    cands_.resize(max_devs);
    saved_.resize(max_devs);

    // Intern GPU shapes, counting pods; ids are in order of first appearance.
    using Key = std::tuple<int8_t, int32_t, int32_t, int64_t, uint8_t>;
    std::map<Key, int32_t> ids;
    std::vector<int64_t> weight;
    std::vector<Shape> shapes;
    std::vector<int32_t> pod_id(P, -1);
    pod_shape_.assign(P, Shape{});
    for (int32_t p = 0; p < P; ++p) {
        const int8_t kind = b_.kind[p];
        if (kind == kNoGpu) continue;
        const Mode mode = kind == kWhole || b_.exclusive[p] ? kModeIdle : kind == kShared ? kModeShare : kModeXcd;
        const Shape s(mode, b_.count[p], b_.milli[p], b_.gpu_mem[p]);
        pod_shape_[p] = s;
        const Key key{kind, b_.count[p], b_.milli[p], b_.gpu_mem[p], b_.exclusive[p]};
        const auto ins = ids.emplace(key, static_cast<int32_t>(shapes.size()));
        if (ins.second) {
            weight.push_back(0);
            shapes.push_back(s);
        }
        ++weight[ins.first->second];
        pod_id[p] = ins.first->second;
    }
    // Shapes by frequency, ties to first appearance.
    std::vector<int32_t> order(shapes.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return weight[a] > weight[b]; });

    if (frag_on_) {
        for (std::size_t i = 0; i < order.size() && i < std::size_t(kMaxFragShapes); ++i) {
            frag_shapes_.emplace_back(shapes[order[i]], weight[order[i]]);
            frag_weight_ += weight[order[i]];
        }
    }

    // Cache slots for the most frequent shapes that recur; a one-off shape gains nothing from caching.
    // Capped: a commit marks its node stale in every slot.
    const std::size_t max_slots =
        N > 0 ? std::min<std::size_t>(kMaxSlots, std::max<std::size_t>(1, kCacheBudget / std::size_t(N))) : 0;
    std::vector<int32_t> slot_of(shapes.size(), -1);
    int32_t n_slots = 0;
    for (int32_t id : order) {
        if (weight[id] < 2 || std::size_t(n_slots) >= max_slots) break;
        slot_of[id] = n_slots++;
    }
    pod_slot_.assign(P, -1);
    for (int32_t p = 0; p < P; ++p)
        if (pod_id[p] >= 0) pod_slot_[p] = slot_of[pod_id[p]];
    n_slots_ = n_slots;
    const std::size_t entries = (std::size_t(n_slots) + 1) * std::size_t(N);
    cache_state_.assign(entries, kEntryStale);
    cache_reason_.assign(entries, -1);
    cache_gu_.assign(entries, 0.0);
    if (frag_on_) cache_fterm_.assign(entries, 0.0);
    base_.assign(N, 0);

    max_share_.assign(N, -1);
    ndev_.assign(N, 0);
    pass_.assign(N, 0);
    idle_.assign(N, 0);
    max_xratio_.assign(N, -1);
    gused_.assign(N, 0);
    uniform_nx_.assign(N, 1);
    for (int32_t n = 0; n < N; ++n) {
        int first = -1;
        for (int64_t d = v_.node_dev_start[n]; d < v_.node_dev_start[n + 1]; ++d) {
            const int nx = popcount(v_.dev_xcd_mask[d]);
            if (nx == 0) continue;
            if (first >= 0 && nx != first) uniform_nx_[n] = 0;
            first = nx;
        }
        ndev_[n] = static_cast<int32_t>(v_.node_dev_start[n + 1] - v_.node_dev_start[n]);
        refresh_summaries(n);
    }
    if (frag_on_) {
        frag_.assign(N, FragAcc{});
        frag_F_.assign(N, 0);
        okmask_.assign(v_.n_devices, 0);
        for (int32_t n = 0; n < N; ++n) {
            for (int64_t d = v_.node_dev_start[n]; d < v_.node_dev_start[n + 1]; ++d)
                okmask_[d] = frag_add(frag_[n], d);
            frag_F_[n] = frag_total(frag_[n]);
        }
    }
}

void Placer::commit(int32_t p, int32_t n, Result& r) {
    r.node[p] = n;
    if (logging_)
        node_undo_.push_back({n, v_.node_cpu_free[n], v_.node_mem_free[n], v_.node_pods_free[n],
                              frag_on_ ? frag_F_[n] : 0, frag_on_ ? frag_[n] : FragAcc{}});
    v_.node_cpu_free[n] -= b_.cpu[p];
    v_.node_mem_free[n] -= b_.mem[p];
    v_.node_pods_free[n] -= 1;
    const Shape& s = pod_shape_[p];
    if (s.mode != kModeNone) {
        // The cache keeps only totals, so the device choice is made again for the winner.
        int64_t gdelta = 0;
        eval_gpu(s, n, true, gdelta);
        if (logging_)
            for (int32_t i = 0; i < s.count; ++i) {
                const int32_t d = chosen_[i];
                dev_undo_.push_back({d, {v_.dev_milli_free[d], v_.dev_mem_free[d], v_.dev_xcd_free[d], v_.dev_state[d]},
                                     frag_on_ ? okmask_[d] : uint16_t(0)});
            }
        const FragAcc acc = charge_chosen(s, n, true, &r);
        if (frag_on_) {
            frag_[n] = acc;
            frag_F_[n] = frag_total(acc);
        }
        refresh_summaries(n);
        // Every cached outcome on this node is now out of date.
        uint8_t* state = cache_state_.data() + n;
        for (int32_t slot = 0; slot <= n_slots_; ++slot) state[std::size_t(slot) * std::size_t(v_.n_nodes)] = kEntryStale;
    }
}

/// The node filters for one pod over all nodes: base[n] = 1 if node n passes the class mask, CPU,
/// memory and pod-slot checks; returns the largest max_share among those nodes (-1 if none).
/// Kept free of branches and calls so the compiler vectorises it; on x86-64 with GCC an AVX2 clone
/// is picked at load time when the CPU has it (the baseline has no 64-bit vector compare).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("avx2", "default")))
#endif
int64_t filter_nodes(int32_t N, const uint8_t* __restrict allowed, const int64_t* __restrict cpu_free,
                     const int64_t* __restrict mem_free, const int64_t* __restrict pods_free,
                     const int64_t* __restrict max_share, int64_t cpu, int64_t mem, uint8_t* __restrict base) {
    int64_t best_share = -1;
    for (int32_t n = 0; n < N; ++n) {
        const bool ok = (allowed[n] != 0) & (cpu <= cpu_free[n]) & (mem <= mem_free[n]) & (pods_free[n] >= 1);
        base[n] = ok;
        const int64_t share = ok ? max_share[n] : int64_t(-1);
        best_share = share > best_share ? share : best_share;
    }
    return best_share;
}

/// Pass 1 for pod p: the best feasible node (or -1) and best_share.
///
/// Which nodes pass which filter looks random to the branch predictor, and mispredictions, not
/// arithmetic, dominated a straightforward loop; so did streaming wide per-node cache entries. So:
/// the node filters run vectorised (`filter_nodes`); a branch-free compaction (store always,
/// advance by the outcome) keeps the nodes that pass them and are feasible per the shape's cache
/// row or stale there (one state byte per node); only those are visited by the scoring loop, which
/// re-evaluates stale entries and whose branches (infeasible, pruned, new best) are mostly
/// predictable. Reason counts are not kept here: they are only needed when the pod stays unplaced
/// (see `count_reasons`), and this pass leaves a fresh cache entry on every node passing the filters.
template <Strategy S, bool kGpu, bool kExtra>
int32_t Placer::scan(int32_t p, const CacheRow& cache, int64_t& best_share_out) {
    const int32_t N = v_.n_nodes;
    const int64_t cpu = b_.cpu[p], mem = b_.mem[p];
    const Shape& s = pod_shape_[p];
    const uint8_t* allowed = b_.class_mask + std::size_t(b_.cls[p]) * std::size_t(N);
    const double* extra = kExtra ? b_.extra_score + std::size_t(b_.cls[p]) * std::size_t(N) : nullptr;
    const int64_t* cpu_free = v_.node_cpu_free;
    const int64_t* mem_free = v_.node_mem_free;
    const uint8_t* base = base_.data();
    int32_t* pass = pass_.data();

    best_share_out = filter_nodes(N, allowed, cpu_free, mem_free, v_.node_pods_free, max_share_.data(), cpu, mem,
                                  base_.data());
    int32_t k = 0;
    if constexpr (kGpu) {
        const uint8_t* state = cache.state;
        for (int32_t n = 0; n < N; ++n) {
            pass[k] = n;
            k += base[n] & (state[n] != kEntryNo);
        }
    } else {
        for (int32_t n = 0; n < N; ++n) {
            pass[k] = n;
            k += base[n];
        }
    }

    int32_t best = -1;
    double best_score = 0.0;
    for (int32_t i = 0; i < k; ++i) {
        const int32_t n = pass[i];
        const int64_t cpu_cap = v_.node_cpu_cap[n];
        double score;
        if constexpr (kGpu) {
            if (cache.state[n] == kEntryStale) evaluate(s, n, cache);
            if (cache.state[n] == kEntryNo) continue;
            const double gu = cache.gu[n];
            // Exact pruning: the score is monotone in the CPU utilisation cu (every rounding step
            // is), and cu lies in [0, 1] (cu <= 1 because the CPU filter passed; cu >= 0 checked
            // for spread), so the score at the favourable end of that range bounds it from above.
            // A node whose bound does not beat the best so far cannot win (wins need a strict
            // `>`), and its CPU division is skipped; ties in GPU state still compute the score.
            if (best >= 0) {
                double bound;
                if constexpr (S == kSpread) {
                    const bool cu_nonneg = (cpu_cap == 0) | (cpu_free[n] - cpu <= cpu_cap);
                    bound = cu_nonneg ? -gu : kInf;
                } else if constexpr (S == kBinpack) {
                    bound = gu + 0.001;
                } else {
                    bound = cache.fterm[n] + 1e-6 * (gu + 0.001);
                }
                if constexpr (kExtra) bound = bound + extra[n];
                if (bound <= best_score) continue;
            }
            const double cu = ratio(cpu_cap - (cpu_free[n] - cpu), cpu_cap);
            if constexpr (S == kSpread) {
                score = -gu - 0.001 * cu;
            } else if constexpr (S == kBinpack) {
                score = gu + 0.001 * cu;
            } else {
                score = gu + 0.001 * cu;
                score = cache.fterm[n] + 1e-6 * score;
            }
        } else {
            const int64_t mem_cap = v_.node_mem_cap[n];
            const double cu = ratio(cpu_cap - (cpu_free[n] - cpu), cpu_cap);
            const double mu = ratio(mem_cap - (mem_free[n] - mem), mem_cap);
            const double dev_penalty = ndev_[n] > 0 ? 1.0 : 0.0;  // keep CPU pods off GPU nodes
            if constexpr (S == kSpread) score = -(cu + mu) / 2.0 - dev_penalty;
            else score = (cu + mu) / 2.0 - dev_penalty;
        }
        if constexpr (kExtra) score = score + extra[n];
        if ((best < 0) | (score > best_score)) {
            best = n;
            best_score = score;
        }
    }
    return best;
}

/// Pass 2, only for a pod that fits nowhere: every node's first failing reason, branch-free
/// (reason 9 = none, never hit here). The GPU reason comes from the cache row, fresh on every node
/// that passed the node filters; four interleaved tallies keep consecutive nodes with the same
/// reason from waiting on each other's increment.
void Placer::count_reasons(int32_t p, const int8_t* gpu_reason, int32_t* out) const {
    const int32_t N = v_.n_nodes;
    const int64_t cpu = b_.cpu[p], mem = b_.mem[p];
    const uint8_t* allowed = b_.class_mask + std::size_t(b_.cls[p]) * std::size_t(N);
    std::array<std::array<int32_t, kNumReasons + 1>, 4> tally{};
    for (int32_t n = 0; n < N; ++n) {
        int r = kNumReasons;
        if (gpu_reason) r = gpu_reason[n] >= 0 ? gpu_reason[n] : r;
        r = v_.node_pods_free[n] < 1 ? int(kRPods) : r;
        r = mem > v_.node_mem_free[n] ? int(kRMemory) : r;
        r = cpu > v_.node_cpu_free[n] ? int(kRCpu) : r;
        r = allowed[n] ? r : int(kRNodeFilter);
        ++tally[n & 3][r];
    }
    for (int r = 0; r < kNumReasons; ++r) out[r] = tally[0][r] + tally[1][r] + tally[2][r] + tally[3][r];
}

template <Strategy S>
int32_t Placer::scan_pod(int32_t p, const CacheRow& cache, int64_t& best_share) {
    const bool gpu = pod_shape_[p].mode != kModeNone;
    if (b_.extra_score) return gpu ? scan<S, true, true>(p, cache, best_share) : scan<S, false, true>(p, cache, best_share);
    return gpu ? scan<S, true, false>(p, cache, best_share) : scan<S, false, false>(p, cache, best_share);
}

/// Undo the commits of pods first..last (a gang short of its minimum), newest first, and mark them.
void Placer::rollback(int32_t first, int32_t last, std::size_t asg_mark, Result& r) {
    for (auto it = dev_undo_.rbegin(); it != dev_undo_.rend(); ++it) {
        v_.dev_milli_free[it->d] = it->save.milli_free;
        v_.dev_mem_free[it->d] = it->save.mem_free;
        v_.dev_xcd_free[it->d] = it->save.xcd_free;
        v_.dev_state[it->d] = it->save.state;
        if (frag_on_) okmask_[it->d] = it->okmask;
    }
    for (auto it = node_undo_.rbegin(); it != node_undo_.rend(); ++it) {
        v_.node_cpu_free[it->n] = it->cpu_free;
        v_.node_mem_free[it->n] = it->mem_free;
        v_.node_pods_free[it->n] = it->pods_free;
        if (frag_on_) {
            frag_[it->n] = it->frag;
            frag_F_[it->n] = it->frag_F;
        }
    }
    for (const NodeUndo& u : node_undo_) {
        refresh_summaries(u.n);
        uint8_t* state = cache_state_.data() + u.n;
        for (int32_t slot = 0; slot <= n_slots_; ++slot) state[std::size_t(slot) * std::size_t(v_.n_nodes)] = kEntryStale;
    }
    r.asg_dev.resize(asg_mark);
    r.asg_milli.resize(asg_mark);
    r.asg_mem.resize(asg_mark);
    r.asg_xcds.resize(asg_mark);
    for (int32_t q = first; q <= last; ++q) {
        r.node[q] = -1;
        r.asg_start[q + 1] = static_cast<int64_t>(asg_mark);
        r.gang_failed[q] = 1;
    }
}

Result Placer::run() {
    setup();
    const int32_t N = v_.n_nodes, P = b_.n_pods;
    Result r;
    r.node.assign(P, -1);
    r.asg_start.assign(std::size_t(P) + 1, 0);
    r.reason_counts.assign(std::size_t(P) * kNumReasons, 0);
    r.best_share.assign(P, -1);
    r.gang_failed.assign(P, 0);
    std::size_t max_asg = 0;
    for (int32_t p = 0; p < P; ++p)
        if (b_.kind[p] != kNoGpu) max_asg += std::size_t(std::max(b_.count[p], 0));
    r.asg_dev.reserve(max_asg);
    r.asg_milli.reserve(max_asg);
    r.asg_mem.reserve(max_asg);
    r.asg_xcds.reserve(max_asg);

    int32_t gang_first = -1;      // first row of the gang being placed
    std::size_t gang_mark = 0;    // assignments before it
    int32_t gang_placed = 0;
    for (int32_t p = 0; p < P; ++p) {
        const int32_t g = b_.gang ? b_.gang[p] : -1;
        if (g >= 0 && (p == 0 || b_.gang[p - 1] != g)) {
            gang_first = p;
            gang_mark = r.asg_dev.size();
            gang_placed = 0;
            logging_ = true;
            node_undo_.clear();
            dev_undo_.clear();
        }
        CacheRow cache;
        if (pod_shape_[p].mode != kModeNone) {
            // Row 0 is scratch for one-off shapes, made stale for each such pod.
            const std::size_t off = std::size_t(pod_slot_[p] + 1) * std::size_t(N);
            cache = {cache_state_.data() + off, cache_reason_.data() + off, cache_gu_.data() + off,
                     frag_on_ ? cache_fterm_.data() + off : nullptr};
            if (pod_slot_[p] < 0) std::fill(cache.state, cache.state + N, uint8_t(kEntryStale));
        }
        int64_t best_share = -1;
        int32_t best;
        switch (strategy_) {
            case kSpread: best = scan_pod<kSpread>(p, cache, best_share); break;
            case kFragAware: best = scan_pod<kFragAware>(p, cache, best_share); break;
            default: best = scan_pod<kBinpack>(p, cache, best_share); break;
        }
        r.best_share[p] = best_share;
        if (best < 0) count_reasons(p, cache.reason, r.reason_counts.data() + std::size_t(p) * kNumReasons);
        else commit(p, best, r);
        r.asg_start[p + 1] = static_cast<int64_t>(r.asg_dev.size());
        if (g >= 0) {
            gang_placed += best >= 0;
            if (p + 1 == P || b_.gang[p + 1] != g) {  // last member: commit or roll back
                if (gang_placed < b_.gang_need[p]) rollback(gang_first, p, gang_mark, r);
                logging_ = false;
            }
        }
    }
    return r;
}

}  // namespace

Result place_batch(ClusterView& view, const Batch& batch, Strategy strategy) {
    Placer placer(view, batch, strategy);
    return placer.run();
}

}  // namespace kaiwo
