// Bindings of the queue kernels:
//   `_core.fair_share(tree, pods) -> dict`            (csrc/fairshare.hpp)
//   `_core.order_pending(tree, state, pods) -> dict`  (csrc/ordering.hpp)
//
// The kernels trust their input, so everything they rely on is checked here, once, in O(Q + P):
// keys (unknown keys are errors, so a typo never passes silently), exact dtypes (native byte order),
// C-contiguity, shapes, value ranges, the tree shape (parent[q] in [-1, q), which also rules out
// cycles), pods only on leaf queues, gang members in one queue, and column totals small enough
// (<= 2^62) that no sum the kernels form can overflow. Each failure throws std::invalid_argument
// (Python ValueError) naming the dict and key. Nothing is written in place; results are fresh arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "fairshare.hpp"
#include "ordering.hpp"
#include "inputs.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace kaiwo::bindings {
namespace {

constexpr int64_t kMaxTotal = int64_t{1} << 62;  ///< bound on capacities and column totals

std::string at_queue(int64_t q) { return "at queue " + std::to_string(q); }
std::string at_pod(int64_t p) { return "at pod " + std::to_string(p); }
std::string at_res(int64_t q, int r) {
    static const char* names[kNumRes] = {"gpu", "cpu", "memory"};
    return "at queue " + std::to_string(q) + ", " + (r < kNumRes ? names[r] : "resource " + std::to_string(r));
}

/// Checks every element of a [n,R] int64 matrix is >= lo.
void check_min(Inputs& in, const std::string& key, const int64_t* m, int64_t n, int R, int64_t lo,
               const std::string& why) {
    for (int64_t q = 0; q < n; ++q)
        for (int r = 0; r < R; ++r)
            if (m[q * R + r] < lo) fail(in.at(key), std::to_string(m[q * R + r]) + " " + why + " " + at_res(q, r));
}

/// The tree dict: `parent` (shape and order), `limit`, `priority`; `quota`, `weight`, `capacity`
/// when `full` (fair_share requires them; order_pending accepts them and does not read them).
struct TreeIn {
    QueueTree tree;
    int64_t n = 0;
    std::vector<uint8_t> leaf;
};

TreeIn parse_tree(Inputs& in, bool full) {
    TreeIn out;
    py::ssize_t s[1];
    const int32_t* parent = in.get<int32_t>("parent", 1, s);
    const py::ssize_t Q = s[0];
    if (Q > std::numeric_limits<int32_t>::max() / 4) fail(in.at("parent"), "too many queues");
    const std::string qs = "queues = len(parent)";
    for (py::ssize_t q = 0; q < Q; ++q)
        if (parent[q] < -1 || parent[q] >= q)
            fail(in.at("parent"), "parent " + std::to_string(parent[q]) + " " + at_queue(q) +
                                      " must be -1 (top level) or a smaller index (parents come before "
                                      "children, which also rules out cycles)");
    out.n = Q;
    out.tree.n = static_cast<int32_t>(Q);
    out.tree.parent = parent;
    out.leaf.assign(static_cast<size_t>(Q), 1);
    for (py::ssize_t q = 0; q < Q; ++q)
        if (parent[q] >= 0) out.leaf[parent[q]] = 0;
    // The number of resource columns R is limit's: every other queue matrix, req and capacity
    // must have as many.
    {
        py::ssize_t ls[2];
        in.get<int64_t>("limit", 2, ls);
        if (ls[1] < kNumRes || ls[1] > kMaxRes)
            fail(in.at("limit"), "expected " + std::to_string(kNumRes) + " to " + std::to_string(kMaxRes) +
                                     " resource columns (gpu, cpu, memory, then any others), got " +
                                     std::to_string(ls[1]));
        out.tree.nres = static_cast<int32_t>(ls[1]);
    }
    const int R = out.tree.nres;
    out.tree.limit = in.mat<int64_t>("limit", Q, qs, R);
    check_min(in, "limit", out.tree.limit, Q, R, -1, "must be >= 0 or -1 (no limit)");
    out.tree.priority = in.vec<int32_t>("priority", Q, qs);
    if (full || in.has("quota")) {
        out.tree.quota = in.mat<int64_t>("quota", Q, qs, R);
        check_min(in, "quota", out.tree.quota, Q, R, -1, "must be >= 0 or -1 (unlimited)");
    }
    if (full || in.has("weight")) {
        out.tree.weight = in.mat<double>("weight", Q, qs, R);
        for (py::ssize_t q = 0; q < Q; ++q)
            for (int r = 0; r < R; ++r) {
                const double w = out.tree.weight[q * R + r];
                if (!(w > 0.0) || !std::isfinite(w))
                    fail(in.at("weight"), "overQuotaWeight " + std::to_string(w) + " must be finite and > 0 " +
                                              at_res(q, r));
            }
    }
    if (full || in.has("capacity")) {
        out.tree.capacity = in.vec<int64_t>("capacity", R, "one per resource column of limit");
        for (int r = 0; r < R; ++r)
            if (out.tree.capacity[r] < 0 || out.tree.capacity[r] > kMaxTotal)
                fail(in.at("capacity"), "must be in [0, 2^62], got " + std::to_string(out.tree.capacity[r]));
    }
    return out;
}

/// `pod_start` (CSR over queues, pods only on leaves) and `req`; returns P and adds the column
/// totals of `req` into `totals` (checked against kMaxTotal).
int64_t parse_pods(Inputs& in, const TreeIn& t, const int64_t** pod_start, const int64_t** req, int64_t* totals) {
    const int64_t Q = t.n;
    const int64_t* ps = in.vec<int64_t>("pod_start", Q + 1, "queues + 1");
    py::ssize_t s[2];
    const int64_t* rq = in.get<int64_t>("req", 2, s);
    const py::ssize_t P = s[0];
    const int R = t.tree.nres;
    if (s[1] != R)
        fail(in.at("req"), "expected shape (pods, " + std::to_string(R) + ") (one column per resource, as tree "
                           "limit), got (" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ")");
    if (ps[0] != 0) fail(in.at("pod_start"), "must start at 0, got " + std::to_string(ps[0]));
    for (int64_t q = 0; q < Q; ++q) {
        if (ps[q + 1] < ps[q]) fail(in.at("pod_start"), "not monotone at index " + std::to_string(q + 1));
        if (!t.leaf[q] && ps[q + 1] != ps[q])
            fail(in.at("pod_start"), std::to_string(ps[q + 1] - ps[q]) + " pods " + at_queue(q) +
                                         ", which is not a leaf (only leaf queues hold pods)");
    }
    if (ps[Q] != P)
        fail(in.at("pod_start"), "must end at the number of pods len(req) = " + std::to_string(P) + ", got " +
                                     std::to_string(ps[Q]));
    for (py::ssize_t p = 0; p < P; ++p)
        for (int r = 0; r < R; ++r) {
            const int64_t x = rq[p * R + r];
            if (x < 0) fail(in.at("req"), "negative request " + std::to_string(x) + " " + at_pod(p));
            if (x > kMaxTotal - totals[r]) fail(in.at("req"), "column total exceeds 2^62");
            totals[r] += x;
        }
    *pod_start = ps;
    *req = rq;
    return P;
}

py::array queue_matrix(const std::vector<int64_t>& v, int64_t Q, int R) {
    return to_numpy(v).reshape({static_cast<py::ssize_t>(Q), static_cast<py::ssize_t>(R)});
}

py::dict fair_share_py(const py::dict& tree, const py::dict& pods) {
    Inputs ti(tree, "tree", {"parent", "quota", "limit", "weight", "priority", "capacity"});
    TreeIn t = parse_tree(ti, true);
    Inputs pi(pods, "pods", {"pod_start", "req"});
    const int64_t* pod_start = nullptr;
    const int64_t* req = nullptr;
    std::vector<int64_t> totals(static_cast<size_t>(t.tree.nres), 0);
    parse_pods(pi, t, &pod_start, &req, totals.data());

    FairShareResult r;
    {
        py::gil_scoped_release release;
        r = fair_share(t.tree, pod_start, req);
    }
    py::dict out;
    out["demand"] = queue_matrix(r.demand, t.n, t.tree.nres);
    out["deserved"] = queue_matrix(r.deserved, t.n, t.tree.nres);
    out["fair_share"] = queue_matrix(r.fair_share, t.n, t.tree.nres);
    out["allocated"] = queue_matrix(r.allocated, t.n, t.tree.nres);
    out["admitted"] = to_numpy(r.admitted);
    out["phase"] = to_numpy(r.phase);
    return out;
}

py::dict order_pending_py(const py::dict& tree, const py::dict& state, const py::dict& pods) {
    Inputs ti(tree, "tree", {"parent", "limit", "priority", "deserved", "fair_share"},
              {"quota", "weight", "capacity"});
    TreeIn t = parse_tree(ti, false);
    const int64_t Q = t.n;
    const std::string qs = "queues = len(parent)";
    const int R = t.tree.nres;
    const int64_t* deserved = ti.mat<int64_t>("deserved", Q, qs, R);
    check_min(ti, "deserved", deserved, Q, R, 0, "must be >= 0");
    const int64_t* fair = ti.mat<int64_t>("fair_share", Q, qs, R);
    check_min(ti, "fair_share", fair, Q, R, 0, "must be >= 0");

    Inputs si(state, "state", {"allocated"});
    const int64_t* allocated = si.mat<int64_t>("allocated", Q, qs, R);
    check_min(si, "allocated", allocated, Q, R, 0, "must be >= 0");
    // Leaf rows are what the kernel reads. Internal rows may be left at zero (the kernel sums the
    // leaves) or filled in, and then must equal the sum of their leaves.
    std::vector<int64_t> totals(static_cast<size_t>(t.tree.nres), 0);
    {
        std::vector<int64_t> sum(static_cast<size_t>(Q) * R, 0);
        for (int64_t q = Q - 1; q >= 0; --q) {
            for (int r = 0; r < R; ++r) {
                const int64_t i = q * R + r;
                if (t.leaf[q]) {
                    sum[i] = allocated[i];
                    if (allocated[i] > kMaxTotal - totals[r]) fail(si.at("allocated"), "column total exceeds 2^62");
                    totals[r] += allocated[i];
                }
                if (t.tree.parent[q] >= 0) sum[t.tree.parent[q] * R + r] += sum[i];
            }
        }
        for (int64_t q = 0; q < Q; ++q) {
            if (t.leaf[q]) continue;
            bool zero = true, same = true;
            for (int r = 0; r < R; ++r) {
                zero = zero && allocated[q * R + r] == 0;
                same = same && allocated[q * R + r] == sum[q * R + r];
            }
            if (!zero && !same)
                fail(si.at("allocated"), "row " + at_queue(q) + " (internal) must be all zero or the sum of its "
                                                                  "children's rows");
        }
    }

    Inputs pi(pods, "pods", {"pod_start", "req", "key", "tiebreak", "gang"});
    PendingPods pp;
    const int64_t P = parse_pods(pi, t, &pp.pod_start, &pp.req, totals.data());
    const std::string ps = "pods = len(req)";
    pp.key = pi.vec<double>("key", P, ps);
    pp.tiebreak = pi.vec<int64_t>("tiebreak", P, ps);
    pp.gang = pi.vec<int32_t>("gang", P, ps);
    for (int64_t p = 0; p < P; ++p)
        if (!std::isfinite(pp.key[p])) fail(pi.at("key"), "must be finite " + at_pod(p));
    {
        std::unordered_map<int32_t, int64_t> gang_queue;
        for (int64_t q = 0; q < Q; ++q)
            for (int64_t p = pp.pod_start[q]; p < pp.pod_start[q + 1]; ++p) {
                const int32_t g = pp.gang[p];
                if (g < -1) fail(pi.at("gang"), "gang id " + std::to_string(g) + " must be >= 0 or -1 (none) " + at_pod(p));
                if (g < 0) continue;
                auto it = gang_queue.emplace(g, q).first;
                if (it->second != q)
                    fail(pi.at("gang"), "gang " + std::to_string(g) + " has members in queues " +
                                            std::to_string(it->second) + " and " + std::to_string(q) +
                                            " (a gang belongs to one queue) " + at_pod(p));
            }
    }

    OrderResult r;
    {
        py::gil_scoped_release release;
        r = order_pending(t.tree, deserved, fair, allocated, pp);
    }
    py::dict out;
    out["order"] = to_numpy(r.order);
    out["status"] = to_numpy(r.status);
    return out;
}

}  // namespace

void register_queues(py::module_& m) {
    m.attr("QUEUE_RESOURCES") = py::make_tuple("gpu", "cpu", "memory");
    m.attr("PHASE_NONE") = static_cast<int>(kPhaseNone);
    m.attr("PHASE_DESERVED") = static_cast<int>(kPhaseDeserved);
    m.attr("PHASE_OVER_QUOTA") = static_cast<int>(kPhaseOverQuota);
    m.attr("ORDER_OK") = static_cast<int>(kOrdered);
    m.attr("ORDER_HELD_LIMIT") = static_cast<int>(kHeldLimit);

    m.def("fair_share", &fair_share_py, py::arg("tree"), py::arg("pods"),
          R"doc(Hierarchical fair shares by a pod-granular virtual allocation (see csrc/fairshare.hpp).

tree: parent int32[Q] (-1 = top level, else < own index), quota int64[Q,R] (-1 = unlimited),
limit int64[Q,R] (-1 = none), weight float64[Q,R] (> 0), priority int32[Q], capacity int64[R].
pods: pod_start int64[Q+1] (CSR of each leaf's pods, in queue order), req int64[P,R].
Columns are gpu milli-units, cpu milli-cores, memory MiB, then any further resources
(R = limit.shape[1], 3 to 64; e.g. one column per GPU model).
Returns a dict: demand, deserved, fair_share, allocated int64[Q,R], admitted uint8[P],
phase int8[P] (PHASE_*). Raises ValueError naming the key on bad input.)doc");

    m.def("order_pending", &order_pending_py, py::arg("tree"), py::arg("state"), py::arg("pods"),
          R"doc(Order pending pods across the queue tree (see csrc/ordering.hpp).

tree: parent, limit, priority as for fair_share (quota, weight accepted, not read; capacity, when given, makes shares ignore saturated resources),
deserved int64[Q,R], fair_share int64[Q,R]. state: allocated int64[Q,R] by running pods (leaf
rows are read; internal rows must be zero or the sum of their children).
pods: pod_start int64[Q+1] (pending pods per leaf), req int64[P,R], key float64[P] (smaller
first), tiebreak int64[P] (smaller first), gang int32[P] (-1 = none; one queue per gang).
Returns a dict: order int64[P'] (pod indices to try, in order), status int8[P] (ORDER_OK, or
ORDER_HELD_LIMIT for pods that would push a queue over its limit). Raises ValueError naming the
key on bad input.)doc");
}

}  // namespace kaiwo::bindings
