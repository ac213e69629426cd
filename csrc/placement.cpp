// Placement kernel: see placement.hpp for the data contract.
//
// Exact semantics (tests/naive.py `place_batch_ref` is the executable specification):
//
// Pods are placed one at a time, in batch order. For each node, in index order, the first failing
// filter is the node's reason: class mask (kRNodeFilter), CPU, memory, pod slots, then for GPU pods
// "fewer devices than `count`" (kRGpuCount) and the kind-specific device checks:
//   * whole, or fractional with `exclusive`: `count` idle devices (kRGpuBusy), and as many of them with
//     mem_free >= gpu_mem (kRGpuMemory; gpu_mem is 0 unless a non-sharing pod names its memory); the
//     lowest-index such devices are taken entirely (state EXCLUSIVE).
//   * shared (time-sliced): devices not EXCLUSIVE with milli_free >= milli (kRGpuShare), then also
//     mem_free >= need_mem (kRGpuMemory); picked by (already shared first, least milli_free, index).
//   * XCD-isolated: devices with XCDs, not EXCLUSIVE, with k free XCDs (kRXcd), then the XCDs' compute
//     share (kRGpuShare), then memory (kRGpuMemory); picked by (already shared first, fewest free
//     XCDs, index); on each, the k-XCD subset touching the fewest memory domains, then the lowest mask.
// Device reservations (Batch::dev_resv): for a pod whose class may not use a device's reservation,
// a wholly held device counts as neither idle nor shareable nor having XCDs (the kind's first check
// fails on it), and a device with held XCDs offers only its other free XCDs (so it fails the first
// check of whole and time-sliced pods). If that first check would pass with the held devices, the
// reason is kRReserved instead of the check's own. A pod that may use a reservation takes devices
// held by one first (whole: those by index, then the rest; sharing: before the pick key above), and
// on such a device an XCD pod takes the held XCDs when they are enough. Fragmentation F and best_share look at devices as they are,
// holds aside: they measure the cluster, not one pod's access to it.
// Among feasible nodes the highest score wins, ties to the lower index (strict `>` in index order).
// best_share is the largest milli_free of a non-EXCLUSIVE device on nodes passing the node filters.
//
// The FGD paper's policies (kRandom .. kFgd) score as its simulator does (integer scores; see
// `policy_score` and the helpers it calls). Their fragmentation F is the simulator's: for a node,
// over the target workload's shapes in order, weight x the free milli that shape cannot use (all of
// it if the shape cannot run on the node at all -- no GPU needed, class mask excludes the node, too
// few devices that fit one unit, too little CPU -- else the free milli of devices too small for it),
// accumulated in six buckets summed in a fixed order so that floats match the simulator's.
//
// Kaiwo's fragmentation-aware policy (kFragAware, plugin "frag"). FGD's node score,
// int(100 sigmoid((F before - F after) / 1000)), saturates and is truncated to 100 levels, so most
// pods face many nodes with the same best score, which FGD leaves to node order -- at random. Kaiwo
// keeps FGD's score and orders those ties (a term below one score point, so FGD's ranking stands):
//   * a CPU-only pod prefers the node with the least free GPU compute: CPU is taken where GPU pods
//     can no longer use it, instead of leaving idle GPUs on nodes whose CPU runs out;
//   * a pod of one device or less (and a sharing pod's device) takes the placement that makes the
//     least GPU milli unusable: the increase of F itself, un-truncated, plus the increase of the
//     node's imbalance |free CPU - r free GPU milli| / r, r the workload's CPU per GPU milli (GPU
//     milli that will lack CPU, or CPU that will lack GPUs, in GPU milli). Both are GPU milli, so
//     they add without a weight; the term is far below one point (1e-8 per milli);
//   * a multi-device pod prefers a node already in use, then the one left with the fewest idle
//     devices, keeping idle nodes whole for the next large pod.
// On the openb traces (asv_bench/eval_openb.py) this lifts the allocation ratio at 130% arrival above
// FGD's (default trace, seeds 42-51: mean 95.87%, median 95.87%, against FGD's published mean 95.39%;
// above FGD's published mean on all 17 trace variants, by 0.06 (multigpu40) to 1.09 (gpuspec33) points).
//
// Load-aware placement (kLoad, plugin "load"). Spread's allocation after placement, weighted, plus the
// node's measured load (Batch::node_load, 0..1, 0 where nothing is measured): a GPU pod scores
// -(w_alloc (gu + 0.001 cu)) - w_load load, a CPU-only pod -(w_alloc (cu + mu) / 2) - [node has
// GPUs] - w_load load (gu, cu, mu: GPU, CPU, memory utilisation after placement). With w_load = 0
// and w_alloc = 1 it is spread exactly; the load is a per-node constant within a batch (what was
// measured before the cycle), so spread's exact pruning bound holds with the weights applied.
//
// Gangs. A gang of two or more members (consecutive rows) is steered onto few nodes: member p may use
//   1. the nodes already holding a member of its gang, if one of them fits p; else
//   2. the nodes taking the most of the members left (p..last) -- placed there one after another
//      by the default device rule, stopping at the first that does not fit ("count"), capped at the
//      members left -- within the gang's domain if one of its nodes fits p.
// The domain (Batch::node_domain: a zone or rack label value per node) is chosen at the first
// member: per domain the sum of its nodes' counts; most members taken (the sum capped at the members
// left), then the smallest sum (best fit), then the lowest id; kept only if the sum reaches the
// members left. Among the allowed nodes the strategy's score decides as for any pod; best_share is
// still measured over every node. So a 4 x 2-GPU gang goes whole onto one node that takes all four
// (the fullest such node under binpack) instead of filling the holes of four nodes.
//
// Speed. The naive algorithm scans every device of every node for every pod and, for the
// fragmentation-aware strategies, re-evaluates every target shape on every device of every feasible
// node. What keeps the kernel far below that (1,000 nodes x 8 GPUs, 10,000 pods: tens of ms):
//   1. The device-level outcome of a GPU request (reason, and the utilisation or score it would
//      give) depends only on the request's GPU shape (and CPU, for F) and the node's state. It is
//      cached per (shape, node); a placement marks the node's entries stale for every shape. After
//      the first pod of a shape, a pod re-evaluates only the nodes that changed since that shape was
//      last placed.
//   2. Per-node summaries (idle devices, largest shareable milli, best XCD ratio, used compute) reject
//      most infeasible nodes without a device scan. They are exact: a summary only ever proves "no
//      device passes the kind's first device check", which is precisely when the full scan reports
//      that check's reason (the checks before it in that kind are the same or weaker).
//   3. F(n) is kept per node as per-shape counters (devices able to host a unit of the shape, milli
//      of those that cannot) plus a per-device bitset of the shapes it can host; a tentative
//      placement changes only its own devices, so F(after) costs O(shapes x count) instead of
//      O(shapes x devices on the node); devices in identical states are scored once.
//   4. Per pod, the node filters run as one vectorised pass; a branch-free compaction keeps the nodes
//      that pass them and may host the shape; only those are scored, and for binpack and spread a
//      bound on the score (exact, see `scan`) skips most of them without the CPU-utilisation
//      division. Reason counts, needed only for pods that fit nowhere, are computed for those only.
//   5. Scratch buffers are sized up front: the per-pod loops never allocate.
// Placements only ever consume resources, so the in-place state after the batch is exactly what the
// reference produces. Float scores use the same operations in the same order as the Python reference
// (setup.py compiles with -ffp-contract=off), so node choices are bit-for-bit identical.

#include "bits.hpp"
#include "placement.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
#include <tuple>
#include <utility>

namespace kaiwo {
namespace {

constexpr int kMaxXcdBits = 8;          ///< XCDs per partition mask (bits 0..7), checked by the binding
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr std::size_t kCacheBudget = std::size_t(1) << 20;  ///< (shape, node) cache entries, ~18 MiB
constexpr std::size_t kMaxSlots = 4096;                    ///< cached shapes at most

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
/// pod, every node passing the node filters), the utilisation after placement (binpack, spread) or
/// the policy's device-dependent value and device pick (the other strategies; feasible nodes only)
/// and the reason (unplaced pods only). Narrow arrays keep the rows of many shapes in cache.
struct CacheRow {
    uint8_t* state = nullptr;
    int8_t* reason = nullptr;
    double* gu = nullptr;     ///< GPU utilisation of the node after the placement
    double* val = nullptr;    ///< FGD-paper policies: their device-dependent part (see evaluate_policy)
    int32_t* dev = nullptr;   ///< kFgd: the device a one-device sharing pod would take
};

/// splitmix64's output number k (k >= 1) for `seed`: mix(seed + k * golden gamma). Counter-based, so
/// any output can be drawn directly (a batch split into parts continues the same stream).
inline uint64_t splitmix64_at(uint64_t seed, uint64_t k) {
    uint64_t z = seed + k * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/// x mapped to [0, m) by multiply-shift (Lemire), without rejection: bias below m / 2^64.
inline int32_t draw_below(uint64_t x, int32_t m) {
    return static_cast<int32_t>((static_cast<unsigned __int128>(x) * static_cast<uint64_t>(m)) >> 64);
}

/// The FGD simulator's node score from fragmentation before and after a placement:
/// int(100 * sigmoid((before - after) / 1000)), truncated as Go's int64() does.
inline int64_t sigmoid_score(double before, double after) {
    const double x = (before - after) / 1000.0;
    return static_cast<int64_t>(1.0 / (1.0 + std::exp(-x)) * 100.0);
}

/// Saved device fields, to undo a tentative placement.
struct DevSave {
    int64_t milli_free, mem_free;
    uint32_t xcd_free;
    int8_t state;
};

/// Undo records of a gang's commits, replayed in reverse if the gang does not reach its minimum.
struct NodeUndo {
    int32_t n;
    int64_t cpu_free, mem_free, pods_free;
    uint64_t kinds;
};
struct DevUndo {
    int32_t d;
    DevSave save;
};

/// Device candidate with its pick key (already shared first, then fullest, then index).
struct Cand {
    int32_t shared_rank;  ///< 0 = already shared, 1 = idle; + 2 if not held for the pod (`mine`)
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
        : v_(v), b_(b), strategy_(s),
          policy_((s >= kRandom && s <= kFgd) || s == kFragAware),
          fgd_on_(s == kFgd || s == kFragAware), xt_(xcd_table()) {}

    Result run();

private:
    // ---- per-device rules (one place each, shared by checks, fragmentation and commit) ----

    /// XCDs of device d held by a reservation the current pod may not use (0 none, ~0u all).
    uint32_t held(int64_t d) const { return holds_ ? held_xcds(b_, cur_cls_, d) : 0u; }
    /// Whether device d is held by a reservation the current pod may use: such devices (and
    /// their held XCDs) are taken first, so an owner uses its reservation before other capacity.
    bool mine(int64_t d) const {
        return prefer_ && b_.dev_resv[d] >= 0 &&
               b_.class_resv[std::size_t(cur_cls_) * std::size_t(b_.n_resv) + std::size_t(b_.dev_resv[d])];
    }
    /// Pick rank of device d for sharing pods: held for the pod first, then already shared.
    int32_t rank(int64_t d) const { return (mine(d) ? 0 : 2) + (v_.dev_state[d] == kSharedDev ? 0 : 1); }

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
            case kModeIdle: return v_.dev_state[d] == kIdle && v_.dev_mem_free[d] >= s.gpu_mem;
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
                const uint32_t usable = v_.dev_xcd_free[d] & ~held(d);
                // The reservation's own XCDs first, when they are enough.
                const uint32_t own = mine(d) && b_.dev_resv_xcds[d] ? usable & b_.dev_resv_xcds[d] : usable;
                xcds = xt_.pick(popcount(own) >= k ? own : usable, k, v_.dev_xcds_per_domain[d]);
                v_.dev_xcd_free[d] &= ~xcds;
                v_.dev_milli_free[d] -= s.xcharge[nx];
                v_.dev_mem_free[d] -= mem;
                v_.dev_state[d] = kSharedDev;
                return s.xcharge[nx];
            }
            default: return 0;
        }
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
                int32_t c = 0, usable = 0;  // idle_[n] >= count: the rest are held
                // A non-sharing pod that names its GPU memory gets devices with that much (an idle
                // device's free memory is all of it): holding a device alone is no excuse for less.
                // A device held against the pod is not idle for it (idle_ counts it: a bound).
                // Devices held for the pod first (pass 0), then the others, each by index.
                for (int pass = prefer_ ? 0 : 1; pass < 2; ++pass)
                    for (int64_t d = d0; d < d1 && c < s.count; ++d) {
                        if (v_.dev_state[d] != kIdle || held(d) || (prefer_ && mine(d) != (pass == 0))) continue;
                        ++usable;
                        if (v_.dev_mem_free[d] < s.gpu_mem) continue;
                        gdelta += v_.dev_milli_free[d];
                        chosen_[c++] = static_cast<int32_t>(d);
                    }
                if (c < s.count) return usable < s.count ? kRReserved : kRGpuMemory;
                return -1;
            }
            case kModeShare: {
                if (max_share_[n] < s.milli) return kRGpuShare;
                int32_t n_share = 0, n_held = 0, nc = 0;
                for (int64_t d = d0; d < d1; ++d) {
                    if (v_.dev_state[d] == kExclusive || v_.dev_milli_free[d] < s.milli) continue;
                    if (held(d)) {
                        ++n_held;
                        continue;
                    }
                    ++n_share;
                    if (v_.dev_mem_free[d] < share_mem(s, d)) continue;
                    cands_[nc++] = {rank(d), v_.dev_milli_free[d], static_cast<int32_t>(d)};
                    // Enough devices pass every check: feasible whatever the rest hold, and the
                    // compute charged does not depend on which devices (only a choice needs them all).
                    if (!choose && nc == s.count) break;
                }
                if (n_share < s.count) return n_share + n_held >= s.count ? kRReserved : kRGpuShare;
                if (nc < s.count) return kRGpuMemory;
                gdelta = int64_t(s.count) * s.milli;
                n_cands_ = nc;
                if (choose) select(nc, s.count);
                return -1;
            }
            case kModeXcd: {
                if (max_xratio_[n] < std::max<int32_t>(s.milli, 1)) return kRXcd;
                int32_t n_xcd = 0, n_held = 0, n_share = 0, nc = 0;
                int first_nx = -1;
                bool mixed = false;  // candidates with different XCD counts are charged differently
                for (int64_t d = d0; d < d1; ++d) {
                    const int nx = popcount(v_.dev_xcd_mask[d]);
                    if (nx == 0 || v_.dev_state[d] == kExclusive) continue;
                    const int k = s.xk[nx];
                    if (popcount(v_.dev_xcd_free[d]) < k) continue;
                    const int free_x = popcount(v_.dev_xcd_free[d] & ~held(d));
                    if (free_x < k) {
                        ++n_held;
                        continue;
                    }
                    ++n_xcd;
                    if (v_.dev_milli_free[d] < s.xcharge[nx]) continue;
                    ++n_share;
                    if (v_.dev_mem_free[d] < xcd_mem(s, d, k, nx)) continue;
                    cands_[nc++] = {rank(d), free_x, static_cast<int32_t>(d)};
                    mixed |= first_nx >= 0 && nx != first_nx;
                    first_nx = nx;
                    // As for shared pods; on a node of mixed partition sizes the charge depends on
                    // the devices chosen, so the scan must see them all.
                    if (!choose && uniform_nx_[n] && nc == s.count) break;
                }
                if (n_xcd < s.count) return n_xcd + n_held >= s.count ? kRReserved : kRXcd;
                if (n_share < s.count) return kRGpuShare;
                if (nc < s.count) return kRGpuMemory;
                n_cands_ = nc;
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

    /// Charge shape s on devices chosen_[0 .. count) of node n, appending the assignments to r.
    void charge_chosen(const Shape& s, Result& r) {
        for (int32_t i = 0; i < s.count; ++i) {
            const int32_t d = chosen_[i];
            int64_t mem;
            uint32_t xcds;
            const int64_t milli = charge(s, d, mem, xcds);
            r.asg_dev.push_back(d);
            r.asg_milli.push_back(milli);
            r.asg_mem.push_back(mem);
            r.asg_xcds.push_back(xcds);
        }
    }

    /// Full device-level evaluation of shape s on node n into its cache entry.
    void evaluate(const Shape& s, int32_t n, const CacheRow& row) {
        int64_t gdelta = 0;
        const int reason = eval_gpu(s, n, false, gdelta);
        row.reason[n] = static_cast<int8_t>(reason);
        row.state[n] = reason >= 0 ? kEntryNo : kEntryYes;
        if (reason >= 0) return;
        row.gu[n] = static_cast<double>(gused_[n] + gdelta) / static_cast<double>(kFullMilli * ndev_[n]);
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

    // ---- target-workload fragmentation (kFgd), the FGD simulator's F, bit for bit ----
    //
    // Per node and target shape t: ok = devices (not EXCLUSIVE) that can host one unit of t, bad =
    // milli_free of those (not EXCLUSIVE) that cannot; per device a bitset of the shapes it can host.
    // F(n) is computed from these and the node's free CPU in O(T); a tentative placement changes
    // only its own devices' contributions.

    int64_t total_free(int32_t n) const { return int64_t(ndev_[n]) * kFullMilli - gused_[n]; }

    /// Take device d's contribution out of node counters `ok`/`bad` (per its stored bitset).
    void fgd_remove(int32_t* ok, int64_t* bad, int64_t d) const {
        if (v_.dev_state[d] == kExclusive) return;
        const int64_t mf = v_.dev_milli_free[d];
        const uint64_t* mask = fgd_mask_.data() + std::size_t(d) * W_;
        for (int32_t t = 0; t < T_; ++t) {
            if (mask[t >> 6] >> (t & 63) & 1u) --ok[t];
            else bad[t] -= mf;
        }
    }
    /// Add device d's contribution in its current state; its bitset goes to `mask` (W_ words).
    void fgd_add(int32_t* ok, int64_t* bad, int64_t d, uint64_t* mask) const {
        std::fill(mask, mask + W_, uint64_t(0));
        if (v_.dev_state[d] == kExclusive) return;
        const int64_t mf = v_.dev_milli_free[d];
        for (int32_t t = 0; t < T_; ++t) {
            if (wl_shape_[t].mode != kModeNone && unit_ok(wl_shape_[t], d)) {
                ++ok[t];
                mask[t >> 6] |= uint64_t(1) << (t & 63);
            } else {
                bad[t] += mf;
            }
        }
    }
    /// F of node n from counters, with `cpu_left` free CPU and `total` free milli: per target shape,
    /// in workload order, its weight times the milli it cannot use goes to one of the simulator's
    /// buckets (lack both, lack GPU, lack CPU, CPU-only satisfied, CPU-only lacking CPU, no access);
    /// the buckets are summed in that order (the "satisfied" part is not fragmentation).
    double fgd_F_from(int32_t n, int64_t cpu_left, const int32_t* ok, const int64_t* bad, int64_t total) const {
        double q1 = 0.0, q2 = 0.0, q4 = 0.0, xl = 0.0, xr = 0.0, na = 0.0;
        const double tot = static_cast<double>(total);
        const std::size_t N = std::size_t(v_.n_nodes);
        for (int32_t t = 0; t < T_; ++t) {
            const double w = wl_w_[t];
            const bool cpu_ok = cpu_left >= wl_cpu_[t];
            const Shape& s = wl_shape_[t];
            if (s.mode == kModeNone) {
                if (cpu_ok) xl += w * tot;
                else xr += w * tot;
                continue;
            }
            const int32_t c = wl_cls_[t];
            if (c >= 0 && !b_.class_mask[std::size_t(c) * N + std::size_t(n)]) {
                na += w * tot;
            } else if (ok[t] >= s.count) {
                if (cpu_ok) q2 += w * static_cast<double>(bad[t]);
                else q4 += w * tot;
            } else if (cpu_ok) {
                q2 += w * tot;
            } else {
                q1 += w * tot;
            }
        }
        double out = 0.0;
        out += q1;
        out += q2;
        out += q4;
        out += xl;
        out += xr;
        out += na;
        return out;
    }
    double fgd_node_F(int32_t n, int64_t cpu_left) const {
        const std::size_t off = std::size_t(n) * std::size_t(T_);
        return fgd_F_from(n, cpu_left, fgd_ok_.data() + off, fgd_bad_.data() + off, total_free(n));
    }
    /// F of node n after charging shape s on devices devs[0 .. k) and leaving `cpu_left` CPU; the
    /// devices are restored.
    double fgd_after(const Shape& s, int32_t n, const int32_t* devs, int32_t k, int64_t cpu_left) {
        const std::size_t off = std::size_t(n) * std::size_t(T_);
        std::copy(fgd_ok_.begin() + off, fgd_ok_.begin() + off + T_, fgd_sok_.begin());
        std::copy(fgd_bad_.begin() + off, fgd_bad_.begin() + off + T_, fgd_sbad_.begin());
        int64_t total = total_free(n);
        for (int32_t i = 0; i < k; ++i) {
            const int32_t d = devs[i];
            fgd_remove(fgd_sok_.data(), fgd_sbad_.data(), d);
            saved_[i] = {v_.dev_milli_free[d], v_.dev_mem_free[d], v_.dev_xcd_free[d], v_.dev_state[d]};
            int64_t mem;
            uint32_t xcds;
            total -= charge(s, d, mem, xcds);
        }
        for (int32_t i = 0; i < k; ++i) fgd_add(fgd_sok_.data(), fgd_sbad_.data(), devs[i], fgd_smask_.data());
        for (int32_t i = 0; i < k; ++i) {
            const int32_t d = devs[i];
            v_.dev_milli_free[d] = saved_[i].milli_free;
            v_.dev_mem_free[d] = saved_[i].mem_free;
            v_.dev_xcd_free[d] = saved_[i].xcd_free;
            v_.dev_state[d] = saved_[i].state;
        }
        return fgd_F_from(n, cpu_left, fgd_sok_.data(), fgd_sbad_.data(), total);
    }
    /// Recount node n's counters and bitsets from its devices (setup, gang rollback).
    void fgd_rebuild(int32_t n) {
        const std::size_t off = std::size_t(n) * std::size_t(T_);
        std::fill(fgd_ok_.begin() + off, fgd_ok_.begin() + off + T_, 0);
        std::fill(fgd_bad_.begin() + off, fgd_bad_.begin() + off + T_, 0);
        for (int64_t d = v_.node_dev_start[n]; d < v_.node_dev_start[n + 1]; ++d)
            fgd_add(fgd_ok_.data() + off, fgd_bad_.data() + off, d, fgd_mask_.data() + std::size_t(d) * W_);
        fgd_F_[n] = fgd_node_F(n, v_.node_cpu_free[n]);
    }
    /// Whether devices a and b would host anything identically (same state and geometry).
    bool same_device(int32_t a, int32_t b) const {
        return v_.dev_milli_free[a] == v_.dev_milli_free[b] && v_.dev_mem_free[a] == v_.dev_mem_free[b] &&
               v_.dev_xcd_free[a] == v_.dev_xcd_free[b] && v_.dev_state[a] == v_.dev_state[b] &&
               v_.dev_mem_cap[a] == v_.dev_mem_cap[b] && v_.dev_xcd_mask[a] == v_.dev_xcd_mask[b] &&
               v_.dev_xcds_per_domain[a] == v_.dev_xcds_per_domain[b] && held(a) == held(b);
    }
    /// Whether a pod of shape s shares one device that a policy picks (as opposed to whole devices,
    /// or several devices taken by the default rule).
    static bool picks_device(const Shape& s) {
        return s.count == 1 && (s.mode == kModeShare || s.mode == kModeXcd);
    }

    // ---- the FGD paper's policies ----

    /// kGpuClustering's kind of a GPU shape: bit 0 = shares a device, bit k = k whole devices.
    static uint64_t kind_bit(const Shape& s) {
        if (s.milli < kFullMilli) return 1;
        return uint64_t(1) << std::min<int32_t>(std::max<int32_t>(s.count, 1), 63);
    }

    /// kGpuPacking's score of shape s on node n with the devices in chosen_ (FGD simulator rules):
    /// an idle node scores max(33 - idle devices, idle devices); a placement using idle devices on a
    /// used node max(50 - idle devices used, 33); one on partly used devices only
    /// max(100 - (sum of their free milli * 100 / 1000) / 10, 50).
    int64_t packing_score(const Shape& s, int32_t n) const {
        int32_t fully = 0;
        for (int64_t d = v_.node_dev_start[n]; d < v_.node_dev_start[n + 1]; ++d)
            fully += v_.dev_milli_free[d] == kFullMilli;
        if (fully == ndev_[n]) return std::max<int64_t>(100 / 3 - fully, fully);
        int32_t fresh = 0;
        int64_t ratio = 0;
        for (int32_t i = 0; i < s.count; ++i) {
            const int64_t mf = v_.dev_milli_free[chosen_[i]];
            fresh += mf == kFullMilli;
            ratio += mf * 100 / kFullMilli;
        }
        if (fresh > 0) return std::max<int64_t>(100 / 2 - fresh, 100 / 3);
        return std::max<int64_t>(100 - ratio / 10, 100 / 2);
    }

    /// kGpuClustering's score on node n for a pod of kind `bit`, from the node's free milli and the
    /// kinds of GPU pods it holds: 25 * used share of an 8-GPU node, plus 75 (only this kind), 50
    /// (this kind among others), 25 (no GPU pods) or 0 (only other kinds).
    int64_t clustering_score(int32_t n, uint64_t bit) const {
        const int64_t base = 100 / 4 * (kMaxSpecGpu - total_free(n)) / kMaxSpecGpu;
        const uint64_t kinds = kinds_[n];
        if (kinds & bit) return base + (kinds == bit ? 100 * 3 / 4 : 100 * 2 / 4);
        return base + (kinds == 0 ? 100 / 4 : 0);
    }

    /// kBestFit: int((1 - (0.5 (cpu free - req) / 128 cores + 0.5 (GPU free - req) / 8 GPUs)) * 100).
    static int64_t best_fit_score(int64_t cpu_free, int64_t cpu_req, int64_t gpu_free, int64_t gpu_req) {
        double score = 0.0;
        score += (static_cast<double>(cpu_free) - static_cast<double>(cpu_req)) / static_cast<double>(kMaxSpecCpu) * 0.5;
        score += (static_cast<double>(gpu_free) - static_cast<double>(gpu_req)) / static_cast<double>(kMaxSpecGpu) * 0.5;
        score = (1.0 - score) * 100.0;
        return static_cast<int64_t>(score);
    }

    /// kDotProduct: int(100 * (1 - (free . request) / 2)), both vectors normalised by 128 cores, 8 GPUs.
    static int64_t dot_product_score(int64_t cpu_free, int64_t cpu_req, int64_t gpu_free, int64_t gpu_req) {
        const double nc = static_cast<double>(cpu_free) / static_cast<double>(kMaxSpecCpu);
        const double ng = static_cast<double>(gpu_free) / static_cast<double>(kMaxSpecGpu);
        const double pc = static_cast<double>(cpu_req) / static_cast<double>(kMaxSpecCpu);
        const double pg = static_cast<double>(gpu_req) / static_cast<double>(kMaxSpecGpu);
        double dot = 0.0;
        dot += nc * pc;
        dot += ng * pg;
        double score = dot / 2.0;
        score = 1.0 - score;
        return static_cast<int64_t>(100.0 * score);
    }

    /// Device-level evaluation of GPU shape s (pod p) on node n for the FGD paper's policies and
    /// Kaiwo's: the reason, and in `val` what the score needs from the devices (kBestFit,
    /// kDotProduct: compute charged; kGpuPacking: its score; kFgd, kFragAware: the score, and in
    /// `dev` the device a one-device sharing pod takes).
    void evaluate_policy(int32_t p, const Shape& s, int32_t n, const CacheRow& row) {
        int64_t gdelta = 0;
        const bool choose = strategy_ == kGpuPacking || fgd_on_;
        const int reason = eval_gpu(s, n, choose, gdelta);
        row.reason[n] = static_cast<int8_t>(reason);
        row.state[n] = reason >= 0 ? kEntryNo : kEntryYes;
        if (reason >= 0) return;
        row.dev[n] = -1;
        switch (strategy_) {
            case kBestFit:
            case kDotProduct: row.val[n] = static_cast<double>(gdelta); break;
            case kGpuPacking: row.val[n] = static_cast<double>(packing_score(s, n)); break;
            case kFgd:
            case kFragAware: {
                const int64_t cpu_left = v_.node_cpu_free[n] - b_.cpu[p];
                const double before = fgd_F_[n];
                if (!picks_device(s)) {
                    row.val[n] = frag_score(p, n, before, fgd_after(s, n, chosen_.data(), s.count, cpu_left), gdelta);
                    break;
                }
                // Every fitting device, in index order; the first best score wins. Devices in the
                // same state score the same, so only the first of each is evaluated.
                double best = 0.0;
                int32_t best_d = -1, n_seen = 0;
                for (int32_t i = 0; i < n_cands_; ++i) {
                    const int32_t d = cands_[i].d;
                    bool dup = false;
                    for (int32_t j = 0; j < n_seen && !dup; ++j) dup = same_device(seen_[j], d);
                    if (dup) continue;
                    seen_[n_seen++] = d;
                    const double sc = frag_score(p, n, before, fgd_after(s, n, &d, 1, cpu_left), gdelta);
                    if (best_d < 0 || sc > best) {
                        best = sc;
                        best_d = d;
                    }
                }
                row.val[n] = best;
                row.dev[n] = best_d;
                break;
            }
            default: break;
        }
    }

    /// Score of a placement from F before and after it: kFgd's sigmoid score, or Kaiwo's (FGD's
    /// score plus a tie-break worth less than one of its points; see the file header).
    double frag_score(int32_t p, int32_t n, double before, double after, int64_t gdelta) const {
        const double sig = static_cast<double>(sigmoid_score(before, after));
        if (strategy_ == kFgd) return sig;
        const Shape& s = pod_shape_[p];
        if (s.mode == kModeNone)  // CPU where GPU pods can no longer use it
            return sig - 1e-3 * static_cast<double>(total_free(n)) / static_cast<double>(kMaxSpecGpu);
        if (s.count >= 2) {       // large pods onto used nodes, leaving the fewest idle devices
            const double idle_after = static_cast<double>(idle_[n] - (s.mode == kModeIdle ? s.count : 0));
            return sig + 1e-3 * (total_free(n) < int64_t(ndev_[n]) * kFullMilli ? 1.0 : 0.0) +
                   1e-6 * (1.0 - idle_after / static_cast<double>(ndev_[n]));
        }
        // one device or less: the least GPU milli made unusable -- F's increase, un-truncated, plus the
        // increase of the node's GPU milli out of proportion with its free CPU
        return sig - 1e-8 * ((after - before) + imbalance_increase(p, n, gdelta));
    }
    /// How much a placement of pod p on node n (taking `gdelta` GPU milli) increases the node's
    /// imbalance |free CPU - r free GPU milli| / r, r the workload's CPU per GPU milli: free CPU and
    /// GPU out of that proportion, in GPU milli (0 for a workload without CPU or GPU demand).
    double imbalance_increase(int32_t p, int32_t n, int64_t gdelta) const {
        const double r = cpu_per_milli_;
        if (!(r > 0.0)) return 0.0;
        const double cpu_before = static_cast<double>(v_.node_cpu_free[n]);
        const double gpu_before = static_cast<double>(total_free(n));
        const double cpu_after = static_cast<double>(v_.node_cpu_free[n] - b_.cpu[p]);
        const double gpu_after = static_cast<double>(total_free(n) - gdelta);
        return std::fabs(cpu_after - r * gpu_after) / r - std::fabs(cpu_before - r * gpu_before) / r;
    }

    /// The score of pod p on feasible node n (entry of `cache` fresh for GPU pods).
    template <Strategy S, bool kGpu>
    double policy_score(int32_t p, int32_t n, const CacheRow& cache) const {
        const int64_t cpu = b_.cpu[p];
        if constexpr (S == kBestFit || S == kDotProduct) {
            const int64_t greq = kGpu ? static_cast<int64_t>(cache.val[n]) : 0;
            return S == kBestFit ? best_fit_score(v_.node_cpu_free[n], cpu, total_free(n), greq)
                                 : dot_product_score(v_.node_cpu_free[n], cpu, total_free(n), greq);
        } else if constexpr (S == kGpuPacking) {
            return kGpu ? static_cast<int64_t>(cache.val[n]) : 0;
        } else if constexpr (S == kGpuClustering) {
            return kGpu ? clustering_score(n, kind_bit(pod_shape_[p])) : 0;
        } else if constexpr (S == kFgd || S == kFragAware) {
            if constexpr (kGpu) return cache.val[n];
            else return frag_score(p, n, fgd_F_[n], fgd_node_F(n, v_.node_cpu_free[n] - cpu), 0);
        } else {
            return 0;
        }
    }

    void setup();
    void setup_workload();
    void commit(int32_t p, int32_t n, const CacheRow& cache, Result& r);
    void rollback(int32_t first, int32_t last, std::size_t asg_mark, Result& r);
    template <bool kGpu>
    int32_t candidates(int32_t p, const CacheRow& cache, int64_t& best_share_out);
    template <Strategy S, bool kGpu, bool kExtra>
    int32_t scan(int32_t p, const CacheRow& cache, int64_t& best_share_out);
    template <Strategy S>
    int32_t scan_pod(int32_t p, const CacheRow& cache, int64_t& best_share);
    template <Strategy S, bool kGpu, bool kExtra>
    int32_t scan_policy(int32_t p, const CacheRow& cache, int64_t& best_share_out);
    template <Strategy S>
    int32_t scan_pod_policy(int32_t p, const CacheRow& cache, int64_t& best_share);
    void count_reasons(int32_t p, const int8_t* gpu_reason, int32_t* out) const;
    bool gang_nodes(int32_t p, int32_t first, int32_t last, const Result& r, int64_t& share);
    int32_t gang_cap(int32_t p, int32_t last, int32_t n);

    ClusterView& v_;
    const Batch& b_;
    const Strategy strategy_;
    const bool policy_;  ///< one of the FGD paper's policies (kRandom .. kFgd) or Kaiwo's (kFragAware)
    const bool fgd_on_;  ///< fragmentation against a target workload (kFgd, kFragAware)
    const XcdTable& xt_;
    std::array<std::array<int64_t, kMaxXcdBits + 1>, kMaxXcdBits + 1> xratio_{};  ///< [free][nx]

    // per node (structure of arrays: the per-pod filter pass streams through a few of them)
    std::vector<int64_t> max_share_;   ///< largest milli_free of a non-EXCLUSIVE device, -1 if none
    std::vector<int32_t> ndev_;
    std::vector<int32_t> idle_;
    std::vector<int64_t> max_xratio_;  ///< largest floor(free XCDs * 1000 / XCDs), -1 if none
    std::vector<int64_t> gused_;       ///< sum of (1000 - milli_free)
    std::vector<uint8_t> uniform_nx_;  ///< all XCD devices of the node have the same XCD count

    // target workload (fgd_on_): shapes, weights, classes; per node counters and F, per device bitsets
    int32_t T_ = 0, W_ = 0;            ///< shapes, 64-bit words of a device bitset
    std::vector<Shape> wl_shape_;
    std::vector<int64_t> wl_cpu_;
    std::vector<int32_t> wl_cls_;
    std::vector<double> wl_w_;
    std::vector<int32_t> fgd_ok_;      ///< [N * T]
    std::vector<int64_t> fgd_bad_;     ///< [N * T]
    std::vector<double> fgd_F_;        ///< [N]
    std::vector<uint64_t> fgd_mask_;   ///< [G * W]
    std::vector<int32_t> fgd_sok_;     ///< scratch [T]
    std::vector<int64_t> fgd_sbad_;    ///< scratch [T]
    std::vector<uint64_t> fgd_smask_;  ///< scratch [W]
    // kGpuClustering: kinds of GPU pods per node (the caller's array, or our own)
    uint64_t* kinds_ = nullptr;
    std::vector<uint64_t> own_kinds_;
    bool key_cpu_ = false;             ///< the pod's CPU is part of its cache key (kFgd, kFragAware)
    bool holds_ = false;               ///< some device is held by a reservation (Batch::dev_resv)
    int32_t cur_cls_ = 0;              ///< class of the pod being placed (whose holds apply)
    bool prefer_ = false;              ///< holds_, and the pod's class may use some reservation
    int32_t n_cands_ = 0;              ///< candidates eval_gpu left in cands_ (share, XCD)
    double cpu_per_milli_ = 0.0;       ///< target workload's CPU per GPU milli (GPU shapes)

    // per pod
    std::vector<Shape> pod_shape_;
    std::vector<int32_t> pod_slot_;    ///< cache slot of the pod's GPU shape, -1 = not cached
    std::vector<uint8_t> may_use_;     ///< [C] the class may use some reservation (holds_ only)

    int32_t n_slots_ = 0;                                 ///< cached shapes
    // Cache rows: entry [(slot + 1) * N + n]; row 0 is scratch for pods of one-off shapes.
    std::vector<uint8_t> cache_state_;                    ///< EntryState
    std::vector<int8_t> cache_reason_;
    std::vector<double> cache_gu_;
    std::vector<double> cache_val_;                       ///< FGD-paper policies
    std::vector<int32_t> cache_dev_;                      ///< kFgd
    std::vector<uint8_t> base_;                           ///< [N] node filters passed (0/1)
    std::vector<int32_t> pass_;                           ///< [N] nodes left for scoring

    // kLoad: measured load per node (the batch's, or zeros)
    const double* load_ = nullptr;
    std::vector<double> own_load_;

    // gangs by topology (gang_nodes): the nodes a member may use, the gang's domain, scratch
    const uint8_t* gang_allow_ = nullptr;  ///< [N] override of the class mask row, or nullptr
    int32_t gang_domain_ = -1;             ///< domain the gang keeps to, -1 = none
    std::vector<uint8_t> gmask_, feas_;    ///< [N]
    std::vector<int32_t> gcap_;            ///< [N] members left that a node takes
    std::vector<int64_t> dsum_;            ///< [N] per domain id: the sum of its nodes' gcap_
    std::vector<DevSave> gsave_;           ///< [largest node] devices saved around gang_cap

    // gang undo log (recording only while a gang's members are being placed)
    bool logging_ = false;
    std::vector<NodeUndo> node_undo_;
    std::vector<DevUndo> dev_undo_;

    // scratch, sized once to the largest node so the per-pod loops never allocate
    std::vector<int32_t> chosen_;
    std::vector<Cand> cands_;
    std::vector<DevSave> saved_;
    std::vector<int32_t> seen_;
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
    seen_.resize(max_devs);
    gsave_.resize(max_devs);
    if (b_.gang) {
        gmask_.assign(N, 0);
        feas_.assign(N, 0);
        gcap_.assign(N, 0);
        dsum_.assign(N, 0);
    }
    if (strategy_ == kLoad) {
        if (b_.node_load) {
            load_ = b_.node_load;
        } else {
            own_load_.assign(N, 0.0);
            load_ = own_load_.data();
        }
    }

    // Intern GPU shapes, counting pods; ids are in order of first appearance. Where the cached
    // outcome depends on the pod's CPU too (kFgd), the CPU request is part of the key.
    key_cpu_ = fgd_on_;
    // With device reservations a node's outcome also depends on which reservations the pod may
    // use: classes with the same row of class_resv form one access group, part of the key.
    holds_ = false;
    for (int32_t d = 0; b_.dev_resv && d < v_.n_devices && !holds_; ++d) holds_ = b_.dev_resv[d] >= 0;
    std::vector<int32_t> group(std::size_t(std::max<int32_t>(b_.n_classes, 0)), 0);
    may_use_.assign(group.size(), 0);
    if (holds_) {
        std::map<std::vector<uint8_t>, int32_t> rows;
        for (int32_t c = 0; c < b_.n_classes; ++c) {
            const uint8_t* row = b_.class_resv + std::size_t(c) * std::size_t(b_.n_resv);
            group[c] = rows.emplace(std::vector<uint8_t>(row, row + b_.n_resv), int32_t(rows.size())).first->second;
            may_use_[c] = std::find(row, row + b_.n_resv, uint8_t(1)) != row + b_.n_resv;
        }
    }
    using Key = std::tuple<int8_t, int32_t, int32_t, int64_t, uint8_t, int64_t, int32_t>;
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
        const Key key{kind, b_.count[p], b_.milli[p], b_.gpu_mem[p], b_.exclusive[p], key_cpu_ ? b_.cpu[p] : 0,
                      group[b_.cls[p]]};
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
    if (policy_) {
        cache_val_.assign(entries, 0.0);
        cache_dev_.assign(entries, -1);
    }
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
    if (strategy_ == kGpuClustering) {
        if (v_.node_gpu_kinds) {
            kinds_ = v_.node_gpu_kinds;
        } else {
            own_kinds_.assign(N, 0);
            kinds_ = own_kinds_.data();
        }
    }
    if (fgd_on_) setup_workload();
}

/// The target workload: the caller's, or the batch's own shapes (each distinct (CPU, GPU shape,
/// class) weighted by its share of the pods, most frequent first, ties to first appearance).
void Placer::setup_workload() {
    const int32_t N = v_.n_nodes, P = b_.n_pods;
    auto mode_of = [](int8_t kind, uint8_t exclusive) {
        if (kind == kNoGpu) return kModeNone;
        if (kind == kWhole || exclusive) return kModeIdle;
        return kind == kShared ? kModeShare : kModeXcd;
    };
    auto add = [&](int64_t cpu, int8_t kind, int32_t count, int32_t milli, int64_t gpu_mem, uint8_t excl,
                   int32_t cls, double w) {
        const Mode m = mode_of(kind, excl);
        wl_shape_.push_back(m == kModeNone ? Shape() : Shape(m, count, milli, gpu_mem));
        wl_cpu_.push_back(cpu);
        wl_cls_.push_back(cls);
        wl_w_.push_back(w);
    };
    if (!b_.workload.empty()) {
        for (const WorkloadShape& w : b_.workload)
            add(w.cpu, w.kind, w.count, w.milli, w.gpu_mem, w.exclusive, w.cls, w.weight);
    } else if (P > 0) {
        using Key = std::tuple<int64_t, int8_t, int32_t, int32_t, int64_t, uint8_t, int32_t>;
        std::map<Key, int32_t> ids;
        std::vector<Key> keys;
        std::vector<int64_t> cnt;
        for (int32_t p = 0; p < P; ++p) {
            const bool gpu = b_.kind[p] != kNoGpu;
            const Key k{b_.cpu[p], b_.kind[p], gpu ? b_.count[p] : 0, gpu ? b_.milli[p] : 0,
                        gpu ? b_.gpu_mem[p] : 0, gpu ? b_.exclusive[p] : uint8_t(0), b_.cls[p]};
            const auto ins = ids.emplace(k, static_cast<int32_t>(keys.size()));
            if (ins.second) {
                keys.push_back(k);
                cnt.push_back(0);
            }
            ++cnt[ins.first->second];
        }
        std::vector<int32_t> order(keys.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return cnt[a] > cnt[b]; });
        if (order.size() > std::size_t(kMaxWorkload)) order.resize(kMaxWorkload);
        for (int32_t i : order) {
            const Key& k = keys[i];
            add(std::get<0>(k), std::get<1>(k), std::get<2>(k), std::get<3>(k), std::get<4>(k), std::get<5>(k),
                std::get<6>(k), static_cast<double>(cnt[i]) / static_cast<double>(P));
        }
    }
    T_ = static_cast<int32_t>(wl_shape_.size());
    {
        // The workload's CPU per GPU milli, over its GPU shapes (Kaiwo's policy keeps nodes' free CPU
        // and GPU in this proportion).
        double c = 0.0, g = 0.0;
        for (int32_t t = 0; t < T_; ++t)
            if (wl_shape_[t].mode != kModeNone) {
                c += wl_w_[t] * static_cast<double>(wl_cpu_[t]);
                g += wl_w_[t] * static_cast<double>(wl_shape_[t].count) * static_cast<double>(wl_shape_[t].milli);
            }
        cpu_per_milli_ = g > 0 ? c / g : 0.0;
    }
    W_ = std::max<int32_t>(1, (T_ + 63) / 64);
    fgd_ok_.assign(std::size_t(N) * T_, 0);
    fgd_bad_.assign(std::size_t(N) * T_, 0);
    fgd_F_.assign(N, 0.0);
    fgd_mask_.assign(std::size_t(v_.n_devices) * W_, 0);
    fgd_sok_.assign(T_, 0);
    fgd_sbad_.assign(T_, 0);
    fgd_smask_.assign(W_, 0);
    for (int32_t n = 0; n < N; ++n) fgd_rebuild(n);
}

void Placer::commit(int32_t p, int32_t n, const CacheRow& cache, Result& r) {
    r.node[p] = n;
    if (logging_)
        node_undo_.push_back({n, v_.node_cpu_free[n], v_.node_mem_free[n], v_.node_pods_free[n],
                              kinds_ ? kinds_[n] : 0});
    v_.node_cpu_free[n] -= b_.cpu[p];
    v_.node_mem_free[n] -= b_.mem[p];
    v_.node_pods_free[n] -= 1;
    const Shape& s = pod_shape_[p];
    if (s.mode == kModeNone && fgd_on_) {
        // F depends on the node's free CPU: a CPU-only pod changes it, and every cached score.
        fgd_F_[n] = fgd_node_F(n, v_.node_cpu_free[n]);
        uint8_t* state = cache_state_.data() + n;
        for (int32_t slot = 0; slot <= n_slots_; ++slot) state[std::size_t(slot) * std::size_t(v_.n_nodes)] = kEntryStale;
    }
    if (s.mode != kModeNone) {
        // The cache keeps only totals, so the device choice is made again for the winner.
        int64_t gdelta = 0;
        eval_gpu(s, n, true, gdelta);
        if (picks_device(s)) {
            // The policy's own pick of one device: kFgd's best-scoring one (its cache entry for this
            // node is fresh: scored for this pod, nothing committed since), kRandom's a random one.
            if (fgd_on_) chosen_[0] = cache.dev[n];
            else if (strategy_ == kRandom)
                chosen_[0] = cands_[draw_below(splitmix64_at(b_.seed, 2 * uint64_t(p) + 2), n_cands_)].d;
        }
        if (kinds_) kinds_[n] |= kind_bit(s);
        if (fgd_on_) {
            const std::size_t off = std::size_t(n) * std::size_t(T_);
            for (int32_t i = 0; i < s.count; ++i) fgd_remove(fgd_ok_.data() + off, fgd_bad_.data() + off, chosen_[i]);
        }
        if (logging_)
            for (int32_t i = 0; i < s.count; ++i) {
                const int32_t d = chosen_[i];
                dev_undo_.push_back({d, {v_.dev_milli_free[d], v_.dev_mem_free[d], v_.dev_xcd_free[d], v_.dev_state[d]}});
            }
        charge_chosen(s, r);
        refresh_summaries(n);
        if (fgd_on_) {
            const std::size_t off = std::size_t(n) * std::size_t(T_);
            for (int32_t i = 0; i < s.count; ++i)
                fgd_add(fgd_ok_.data() + off, fgd_bad_.data() + off, chosen_[i],
                        fgd_mask_.data() + std::size_t(chosen_[i]) * W_);
            fgd_F_[n] = fgd_node_F(n, v_.node_cpu_free[n]);
        }
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

/// The nodes pod p may be scored on, into `pass_` (returns their count): the node filters run
/// vectorised (`filter_nodes`), then a branch-free compaction (store always, advance by the
/// outcome) keeps those that pass and, for a GPU pod, are feasible or stale in the shape's cache row.
template <bool kGpu>
int32_t Placer::candidates(int32_t p, const CacheRow& cache, int64_t& best_share_out) {
    const int32_t N = v_.n_nodes;
    // A gang member may be steered to some of its nodes (gang_nodes): a subset of the class's.
    const uint8_t* allowed = gang_allow_ ? gang_allow_ : b_.class_mask + std::size_t(b_.cls[p]) * std::size_t(N);
    const uint8_t* base = base_.data();
    int32_t* pass = pass_.data();
    best_share_out = filter_nodes(N, allowed, v_.node_cpu_free, v_.node_mem_free, v_.node_pods_free,
                                  max_share_.data(), b_.cpu[p], b_.mem[p], base_.data());
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
    return k;
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
    const double* extra = kExtra ? b_.extra_score + std::size_t(b_.cls[p]) * std::size_t(N) : nullptr;
    const int64_t* cpu_free = v_.node_cpu_free;
    const int64_t* mem_free = v_.node_mem_free;
    const int32_t* pass = pass_.data();
    const int32_t k = candidates<kGpu>(p, cache, best_share_out);
    const double* load = load_;
    const double wa = b_.w_alloc, wl = b_.w_load;

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
                } else if constexpr (S == kLoad) {  // wa >= 0: the same bound, weighted
                    const bool cu_nonneg = (cpu_cap == 0) | (cpu_free[n] - cpu <= cpu_cap);
                    bound = cu_nonneg ? -(wa * gu) - wl * load[n] : kInf;
                } else {
                    bound = gu + 0.001;
                }
                if constexpr (kExtra) bound = bound + extra[n];
                if (bound <= best_score) continue;
            }
            const double cu = ratio(cpu_cap - (cpu_free[n] - cpu), cpu_cap);
            if constexpr (S == kSpread) {
                score = -gu - 0.001 * cu;
            } else if constexpr (S == kLoad) {
                score = -(wa * (gu + 0.001 * cu)) - wl * load[n];
            } else {
                score = gu + 0.001 * cu;
            }
        } else {
            const int64_t mem_cap = v_.node_mem_cap[n];
            const double cu = ratio(cpu_cap - (cpu_free[n] - cpu), cpu_cap);
            const double mu = ratio(mem_cap - (mem_free[n] - mem), mem_cap);
            const double dev_penalty = ndev_[n] > 0 ? 1.0 : 0.0;  // keep CPU pods off GPU nodes
            if constexpr (S == kSpread) score = -(cu + mu) / 2.0 - dev_penalty;
            else if constexpr (S == kLoad) score = -(wa * ((cu + mu) / 2.0)) - dev_penalty - wl * load[n];
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
/// (reason kNumReasons = none, never hit here). The GPU reason comes from the cache row, fresh on every node
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

/// Pass 1 for pod p under one of the FGD paper's policies: the best feasible node (or -1).
///
/// Same node filters and compaction as `scan`; stale cache entries of the nodes that pass are
/// evaluated and infeasible nodes dropped, leaving every node that can take the pod. kRandom
/// draws one of them (score 100, the others 0); the others score each; the highest score wins,
/// ties to the lower node index. An extra score is added to the policy's score. (The simulator
/// min-max rescales BestFit's scores over the feasible nodes; that keeps their order, so raw
/// scores are compared.)
template <Strategy S, bool kGpu, bool kExtra>
int32_t Placer::scan_policy(int32_t p, const CacheRow& cache, int64_t& best_share_out) {
    const int32_t N = v_.n_nodes;
    const Shape& s = pod_shape_[p];
    const double* extra = kExtra ? b_.extra_score + std::size_t(b_.cls[p]) * std::size_t(N) : nullptr;
    int32_t* pass = pass_.data();
    int32_t k = candidates<kGpu>(p, cache, best_share_out);
    if constexpr (kGpu) {
        int32_t kept = 0;
        for (int32_t i = 0; i < k; ++i) {
            const int32_t n = pass[i];
            if (cache.state[n] == kEntryStale) evaluate_policy(p, s, n, cache);
            pass[kept] = n;
            kept += cache.state[n] == kEntryYes;
        }
        k = kept;
    }
    if (k == 0) return -1;
    if constexpr (S == kRandom) {
        const int32_t pick = pass[draw_below(splitmix64_at(b_.seed, 2 * uint64_t(p) + 1), k)];
        if constexpr (!kExtra) {
            return pick;
        } else {
            int32_t best = -1;
            double best_score = 0.0;
            for (int32_t i = 0; i < k; ++i) {
                const int32_t n = pass[i];
                const double score = (n == pick ? 100.0 : 0.0) + extra[n];
                if ((best < 0) | (score > best_score)) {
                    best = n;
                    best_score = score;
                }
            }
            return best;
        }
    } else {
        int32_t best = -1;
        double best_score = 0.0;
        for (int32_t i = 0; i < k; ++i) {
            const int32_t n = pass[i];
            double score = policy_score<S, kGpu>(p, n, cache);
            if constexpr (kExtra) score = score + extra[n];
            if ((best < 0) | (score > best_score)) {
                best = n;
                best_score = score;
            }
        }
        return best;
    }
}

template <Strategy S>
int32_t Placer::scan_pod_policy(int32_t p, const CacheRow& cache, int64_t& best_share) {
    const bool gpu = pod_shape_[p].mode != kModeNone;
    if (b_.extra_score)
        return gpu ? scan_policy<S, true, true>(p, cache, best_share) : scan_policy<S, false, true>(p, cache, best_share);
    return gpu ? scan_policy<S, true, false>(p, cache, best_share) : scan_policy<S, false, false>(p, cache, best_share);
}

/// Gang member p (rows first..last): the nodes it may use into gmask_, or false (no steering:
/// nothing fits it). In `share`, best_share over every node passing the node filters.
bool Placer::gang_nodes(int32_t p, int32_t first, int32_t last, const Result& r, int64_t& share) {
    const int32_t N = v_.n_nodes;
    const uint8_t* allowed = b_.class_mask + std::size_t(b_.cls[p]) * std::size_t(N);
    share = filter_nodes(N, allowed, v_.node_cpu_free, v_.node_mem_free, v_.node_pods_free, max_share_.data(),
                         b_.cpu[p], b_.mem[p], base_.data());
    const Shape& s = pod_shape_[p];
    auto fits = [&](int32_t n) {
        int64_t gd = 0;
        return base_[n] && (s.mode == kModeNone || eval_gpu(s, n, false, gd) < 0);
    };
    std::fill(gmask_.begin(), gmask_.end(), uint8_t(0));
    // 1. Nodes that already hold a member of the gang, when one of them fits this member too
    // (checked first: most members follow the one before, and need no scan of every node).
    bool held = false;
    for (int32_t q = first; q < p; ++q) {
        const int32_t n = r.node[q];
        if (n >= 0 && !gmask_[n] && fits(n)) held = gmask_[n] = 1;
    }
    if (held) return true;
    int32_t n_feas = 0;
    for (int32_t n = 0; n < N; ++n) n_feas += feas_[n] = fits(n);
    if (n_feas == 0) return false;
    // 2. How many of the members left each node takes.
    const int32_t left = last - p + 1;
    for (int32_t n = 0; n < N; ++n) gcap_[n] = feas_[n] ? gang_cap(p, last, n) : 0;
    const int32_t* dom = b_.node_domain;
    // 3. At the first member, the domain: the one that takes the most members (the sum of its
    // nodes' counts, at most the members left), then the smallest such sum (best fit), then the
    // lowest id; kept only if it takes them all.
    if (p == first && dom) {
        std::fill(dsum_.begin(), dsum_.end(), int64_t(0));
        for (int32_t n = 0; n < N; ++n)
            if (dom[n] >= 0) dsum_[dom[n]] += gcap_[n];
        int32_t best = -1;
        for (int32_t d = 0; d < N; ++d) {
            if (dsum_[d] == 0) continue;
            if (best < 0) {
                best = d;
                continue;
            }
            const int64_t take = std::min<int64_t>(dsum_[d], left), take_b = std::min<int64_t>(dsum_[best], left);
            if (take > take_b || (take == take_b && dsum_[d] < dsum_[best])) best = d;
        }
        gang_domain_ = best >= 0 && dsum_[best] >= left ? best : -1;
    }
    // 4. Within the gang's domain if any node there fits, the nodes taking the most members.
    bool in_domain = false;
    for (int32_t n = 0; n < N && gang_domain_ >= 0 && !in_domain; ++n) in_domain = feas_[n] && dom[n] == gang_domain_;
    int32_t top = 0;
    for (int32_t n = 0; n < N; ++n)
        if (feas_[n] && (!in_domain || dom[n] == gang_domain_)) top = std::max(top, gcap_[n]);
    for (int32_t n = 0; n < N; ++n)
        gmask_[n] = feas_[n] && (!in_domain || dom[n] == gang_domain_) && gcap_[n] == top;
    return true;
}

/// How many of members p..last node n takes placed there one after another, stopping at the first
/// that does not fit (node filters and device checks, devices by the default rule). The node's
/// state is restored; nothing cached depends on it in between.
int32_t Placer::gang_cap(int32_t p, int32_t last, int32_t n) {
    const int64_t d0 = v_.node_dev_start[n], d1 = v_.node_dev_start[n + 1];
    for (int64_t d = d0; d < d1; ++d)
        gsave_[d - d0] = {v_.dev_milli_free[d], v_.dev_mem_free[d], v_.dev_xcd_free[d], v_.dev_state[d]};
    const int64_t cpu0 = v_.node_cpu_free[n], mem0 = v_.node_mem_free[n], pods0 = v_.node_pods_free[n];
    const int32_t cls0 = cur_cls_;
    const bool prefer0 = prefer_;
    const std::size_t N = std::size_t(v_.n_nodes);
    int32_t k = 0;
    bool charged = false;
    for (int32_t q = p; q <= last; ++q) {
        const int32_t c = b_.cls[q];
        if (!b_.class_mask[std::size_t(c) * N + std::size_t(n)] || b_.cpu[q] > v_.node_cpu_free[n] ||
            b_.mem[q] > v_.node_mem_free[n] || v_.node_pods_free[n] < 1)
            break;
        const Shape& sq = pod_shape_[q];
        if (sq.mode != kModeNone) {
            cur_cls_ = c;
            prefer_ = holds_ && may_use_[c];
            int64_t gd = 0;
            if (eval_gpu(sq, n, true, gd) >= 0) break;
            for (int32_t i = 0; i < sq.count; ++i) {
                int64_t mem;
                uint32_t xcds;
                charge(sq, chosen_[i], mem, xcds);
            }
            refresh_summaries(n);
            charged = true;
        }
        v_.node_cpu_free[n] -= b_.cpu[q];
        v_.node_mem_free[n] -= b_.mem[q];
        v_.node_pods_free[n] -= 1;
        ++k;
    }
    for (int64_t d = d0; d < d1; ++d) {
        v_.dev_milli_free[d] = gsave_[d - d0].milli_free;
        v_.dev_mem_free[d] = gsave_[d - d0].mem_free;
        v_.dev_xcd_free[d] = gsave_[d - d0].xcd_free;
        v_.dev_state[d] = gsave_[d - d0].state;
    }
    v_.node_cpu_free[n] = cpu0;
    v_.node_mem_free[n] = mem0;
    v_.node_pods_free[n] = pods0;
    if (charged) refresh_summaries(n);
    cur_cls_ = cls0;
    prefer_ = prefer0;
    return k;
}

/// Undo the commits of pods first..last (a gang short of its minimum), newest first, and mark them.
void Placer::rollback(int32_t first, int32_t last, std::size_t asg_mark, Result& r) {
    for (auto it = dev_undo_.rbegin(); it != dev_undo_.rend(); ++it) {
        v_.dev_milli_free[it->d] = it->save.milli_free;
        v_.dev_mem_free[it->d] = it->save.mem_free;
        v_.dev_xcd_free[it->d] = it->save.xcd_free;
        v_.dev_state[it->d] = it->save.state;
    }
    for (auto it = node_undo_.rbegin(); it != node_undo_.rend(); ++it) {
        v_.node_cpu_free[it->n] = it->cpu_free;
        v_.node_mem_free[it->n] = it->mem_free;
        v_.node_pods_free[it->n] = it->pods_free;
        if (kinds_) kinds_[it->n] = it->kinds;
    }
    for (const NodeUndo& u : node_undo_) {
        refresh_summaries(u.n);
        if (fgd_on_) fgd_rebuild(u.n);
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
    int32_t gang_last = -1;       // its last row
    std::size_t gang_mark = 0;    // assignments before it
    int32_t gang_placed = 0;
    for (int32_t p = 0; p < P; ++p) {
        const int32_t g = b_.gang ? b_.gang[p] : -1;
        if (g >= 0 && (p == 0 || b_.gang[p - 1] != g)) {
            gang_first = p;
            for (gang_last = p; gang_last + 1 < P && b_.gang[gang_last + 1] == g;) ++gang_last;
            gang_domain_ = -1;
            gang_mark = r.asg_dev.size();
            gang_placed = 0;
            logging_ = true;
            node_undo_.clear();
            dev_undo_.clear();
        }
        cur_cls_ = b_.cls[p];
        prefer_ = holds_ && may_use_[cur_cls_];
        CacheRow cache;
        if (pod_shape_[p].mode != kModeNone) {
            // Row 0 is scratch for one-off shapes, made stale for each such pod.
            const std::size_t off = std::size_t(pod_slot_[p] + 1) * std::size_t(N);
            cache = {cache_state_.data() + off, cache_reason_.data() + off, cache_gu_.data() + off,
                     policy_ ? cache_val_.data() + off : nullptr,
                     policy_ ? cache_dev_.data() + off : nullptr};
            if (pod_slot_[p] < 0) std::fill(cache.state, cache.state + N, uint8_t(kEntryStale));
        }
        int64_t best_share = -1, gang_share = -1;
        // A member of a gang of two or more may be steered to some nodes (see "Gangs" above).
        gang_allow_ = g >= 0 && gang_last > gang_first && gang_nodes(p, gang_first, gang_last, r, gang_share)
                          ? gmask_.data() : nullptr;
        int32_t best;
        switch (strategy_) {
            case kSpread: best = scan_pod<kSpread>(p, cache, best_share); break;
            case kLoad: best = scan_pod<kLoad>(p, cache, best_share); break;
            case kFragAware: best = scan_pod_policy<kFragAware>(p, cache, best_share); break;
            case kRandom: best = scan_pod_policy<kRandom>(p, cache, best_share); break;
            case kBestFit: best = scan_pod_policy<kBestFit>(p, cache, best_share); break;
            case kDotProduct: best = scan_pod_policy<kDotProduct>(p, cache, best_share); break;
            case kGpuPacking: best = scan_pod_policy<kGpuPacking>(p, cache, best_share); break;
            case kGpuClustering: best = scan_pod_policy<kGpuClustering>(p, cache, best_share); break;
            case kFgd: best = scan_pod_policy<kFgd>(p, cache, best_share); break;
            default: best = scan_pod<kBinpack>(p, cache, best_share); break;
        }
        r.best_share[p] = gang_allow_ ? gang_share : best_share;  // measured over every node
        gang_allow_ = nullptr;
        if (best < 0) count_reasons(p, cache.reason, r.reason_counts.data() + std::size_t(p) * kNumReasons);
        else commit(p, best, cache, r);
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
