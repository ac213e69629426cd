// Binding of the rebalancing planner:
//   `_core.plan_rebalance(cluster, running, pending, config) -> dict`  (csrc/rebalance.hpp)
//
// The kernel trusts its input, so everything it indexes with or sums is checked here, once: keys,
// dtypes, shapes, node/device/class/queue/PDB indices in range, CSRs monotone, device charges on the
// pod's own node, gangs consecutive, amounts in [0, 2^53]. Each failure is a ValueError naming the
// dict and key. Nothing is written: the kernel plans on its own copy of the state.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <unordered_set>
#include <vector>

#include "inputs.hpp"
#include "rebalance.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace kaiwo::bindings {
namespace {

constexpr int64_t kMaxQty = int64_t(1) << 53;

std::string at_row(const char* what, int64_t i) { return std::string(" at ") + what + " " + std::to_string(i); }

void check_range(Inputs& in, const std::string& key, const int64_t* a, int64_t n, int64_t lo, int64_t hi,
                 const char* what) {
    for (int64_t i = 0; i < n; ++i)
        if (a[i] < lo || a[i] > hi)
            fail(in.at(key), "value " + std::to_string(a[i]) + " out of range [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + "]" + at_row(what, i));
}

template <typename T>
void check_index(Inputs& in, const std::string& key, const T* a, int64_t n, int64_t lo, int64_t hi, const char* what) {
    for (int64_t i = 0; i < n; ++i)
        if (int64_t(a[i]) < lo || int64_t(a[i]) >= hi)
            fail(in.at(key), "index " + std::to_string(a[i]) + " out of range [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + ")" + at_row(what, i));
}

void check_csr(Inputs& in, const std::string& key, const int64_t* start, int64_t rows, int64_t total) {
    if (start[0] != 0) fail(in.at(key), "must start at 0");
    for (int64_t i = 0; i < rows; ++i)
        if (start[i + 1] < start[i]) fail(in.at(key), "not monotone at index " + std::to_string(i + 1));
    if (start[rows] != total) fail(in.at(key), "must end at " + std::to_string(total));
}

/// The request columns of a batch (running or pending), checked; `class_mask` is [C, N].
Batch read_batch(Inputs& in, py::ssize_t* P, int64_t N) {
    Batch b;
    b.cpu = in.any<int64_t>("cpu", P);
    const std::string ps = "pods = len(cpu)";
    b.mem = in.vec<int64_t>("mem", *P, ps);
    b.kind = in.vec<int8_t>("kind", *P, ps);
    b.count = in.vec<int32_t>("count", *P, ps);
    b.milli = in.vec<int32_t>("milli", *P, ps);
    b.gpu_mem = in.vec<int64_t>("gpu_mem", *P, ps);
    b.exclusive = in.vec<uint8_t>("exclusive", *P, ps);
    b.cls = in.vec<int32_t>("cls", *P, ps);
    py::ssize_t cm[2];
    b.class_mask = in.get<uint8_t>("class_mask", 2, cm);
    if (cm[1] != N) fail(in.at("class_mask"), "expected shape (classes, " + std::to_string(N) + ")");
    b.n_pods = checked_size(*P, in.at("cpu"));
    b.n_classes = checked_size(cm[0], in.at("class_mask"));
    check_range(in, "cpu", b.cpu, *P, 0, kMaxQty, "pod");
    check_range(in, "mem", b.mem, *P, 0, kMaxQty, "pod");
    check_range(in, "gpu_mem", b.gpu_mem, *P, 0, kMaxQty, "pod");
    check_index(in, "cls", b.cls, *P, 0, cm[0], "pod");
    for (py::ssize_t p = 0; p < *P; ++p) {
        if (b.kind[p] < kNoGpu || b.kind[p] > kXcd) fail(in.at("kind"), "unknown kind" + at_row("pod", p));
        if (b.exclusive[p] > 1) fail(in.at("exclusive"), "must be 0 or 1" + at_row("pod", p));
        if (b.kind[p] == kNoGpu) continue;
        if (b.count[p] < 1 || b.count[p] > 1024) fail(in.at("count"), "must be in [1, 1024]" + at_row("pod", p));
        if (b.milli[p] < 0 || b.milli[p] > 1000) fail(in.at("milli"), "must be in [0, 1000]" + at_row("pod", p));
    }
    return b;
}

py::dict plan_rebalance_py(const py::dict& cluster, const py::dict& running, const py::dict& pending,
                           const py::dict& config) {
    // ---- cluster ----
    Inputs c(cluster, "cluster", {"node_cpu_free", "node_mem_free", "node_pods_free", "node_cpu_cap", "node_mem_cap",
                                  "node_dev_start", "dev_gpu", "dev_mem_cap", "dev_xcd_mask", "dev_xcds_per_domain",
                                  "dev_milli_free", "dev_mem_free", "dev_xcd_free", "dev_state"});
    py::ssize_t N = 0, G = 0;
    ClusterView v;
    v.node_cpu_free = const_cast<int64_t*>(c.any<int64_t>("node_cpu_free", &N));
    const std::string ns = "nodes = len(node_cpu_free)";
    v.node_mem_free = const_cast<int64_t*>(c.vec<int64_t>("node_mem_free", N, ns));
    v.node_pods_free = const_cast<int64_t*>(c.vec<int64_t>("node_pods_free", N, ns));
    v.node_cpu_cap = c.vec<int64_t>("node_cpu_cap", N, ns);
    v.node_mem_cap = c.vec<int64_t>("node_mem_cap", N, ns);
    v.node_dev_start = c.vec<int64_t>("node_dev_start", N + 1, "nodes + 1");
    v.dev_gpu = c.any<int32_t>("dev_gpu", &G);
    const std::string gs = "devices = len(dev_gpu)";
    v.dev_mem_cap = c.vec<int64_t>("dev_mem_cap", G, gs);
    v.dev_xcd_mask = c.vec<uint32_t>("dev_xcd_mask", G, gs);
    v.dev_xcds_per_domain = c.vec<int32_t>("dev_xcds_per_domain", G, gs);
    v.dev_milli_free = const_cast<int64_t*>(c.vec<int64_t>("dev_milli_free", G, gs));
    v.dev_mem_free = const_cast<int64_t*>(c.vec<int64_t>("dev_mem_free", G, gs));
    v.dev_xcd_free = const_cast<uint32_t*>(c.vec<uint32_t>("dev_xcd_free", G, gs));
    v.dev_state = const_cast<int8_t*>(c.vec<int8_t>("dev_state", G, gs));
    v.n_nodes = checked_size(N, "cluster['node_cpu_free']");
    v.n_devices = checked_size(G, "cluster['dev_gpu']");
    check_csr(c, "node_dev_start", v.node_dev_start, N, G);
    for (const char* k : {"node_cpu_free", "node_mem_free", "node_pods_free"})
        check_range(c, k, std::string(k) == "node_cpu_free" ? v.node_cpu_free : std::string(k) == "node_mem_free" ? v.node_mem_free : v.node_pods_free,
                    N, -kMaxQty, kMaxQty, "node");
    check_range(c, "node_cpu_cap", v.node_cpu_cap, N, 0, kMaxQty, "node");
    check_range(c, "node_mem_cap", v.node_mem_cap, N, 0, kMaxQty, "node");
    check_range(c, "dev_mem_cap", v.dev_mem_cap, G, 0, int64_t(1) << 40, "device");
    check_range(c, "dev_milli_free", v.dev_milli_free, G, -(int64_t(1) << 31), int64_t(1) << 31, "device");
    check_range(c, "dev_mem_free", v.dev_mem_free, G, -kMaxQty, kMaxQty, "device");
    for (py::ssize_t d = 0; d < G; ++d) {
        if (v.dev_state[d] < kIdle || v.dev_state[d] > kExclusive) fail(c.at("dev_state"), "unknown state" + at_row("device", d));
        if (v.dev_xcd_mask[d] > 0xFFu) fail(c.at("dev_xcd_mask"), "XCD bits beyond 0..7" + at_row("device", d));
        if (v.dev_xcd_free[d] & ~v.dev_xcd_mask[d]) fail(c.at("dev_xcd_free"), "XCDs outside dev_xcd_mask" + at_row("device", d));
        if (v.dev_xcd_mask[d] && v.dev_xcds_per_domain[d] < 1)
            fail(c.at("dev_xcds_per_domain"), "must be >= 1 for a device with XCDs" + at_row("device", d));
    }

    // ---- config ----
    Inputs k(config, "config", {"max_moves", "max_moves_per_queue", "max_units", "parent", "slack", "pdb_allowed",
                                "hot_threshold"},
             {"load", "defrag_min_gain"});
    RebalanceConfig cfg;
    auto scalar = [&k](const char* key) {
        const int64_t x = k.vec<int64_t>(key, 1, "one value")[0];
        if (x < 0 || x > 1000000) fail(k.at(key), "must be in [0, 1000000], got " + std::to_string(x));
        return static_cast<int32_t>(x);
    };
    cfg.max_moves = scalar("max_moves");
    cfg.max_moves_per_queue = scalar("max_moves_per_queue");
    cfg.max_units = scalar("max_units");
    py::ssize_t Q = 0, B = 0;
    cfg.parent = k.any<int32_t>("parent", &Q);
    cfg.n_queues = checked_size(Q, "config['parent']");
    for (py::ssize_t q = 0; q < Q; ++q)
        if (cfg.parent[q] < -1 || cfg.parent[q] >= q)
            fail(k.at("parent"), "must be -1 or a smaller index" + at_row("queue", q));
    cfg.slack = k.mat<int64_t>("slack", Q, "queues");
    check_range(k, "slack", cfg.slack, Q * 3, -kMaxQty, kMaxQty, "queue entry");
    cfg.pdb_allowed = k.any<int64_t>("pdb_allowed", &B);
    cfg.n_pdbs = checked_size(B, "config['pdb_allowed']");
    check_range(k, "pdb_allowed", cfg.pdb_allowed, B, 0, kMaxQty, "PDB");
    cfg.hot_threshold = k.vec<double>("hot_threshold", 1, "one value")[0];
    if (!std::isfinite(cfg.hot_threshold)) fail(k.at("hot_threshold"), "must be finite");
    if (k.has("defrag_min_gain")) {
        cfg.defrag_min_gain = k.vec<double>("defrag_min_gain", 1, "one value")[0];
        if (!std::isfinite(cfg.defrag_min_gain) || cfg.defrag_min_gain < 0)
            fail(k.at("defrag_min_gain"), "must be a finite number >= 0");
    }
    if (k.has("load")) {
        cfg.load = k.vec<double>("load", N, ns);
        for (py::ssize_t n = 0; n < N; ++n)
            if (!std::isfinite(cfg.load[n])) fail(k.at("load"), "must be finite (neutral = 0)" + at_row("node", n));
    }

    // ---- running ----
    Inputs ri(running, "running", {"cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls", "class_mask",
                                   "node", "movable", "xcd", "queue", "req", "asg_start", "asg_dev", "asg_milli",
                                   "asg_mem", "asg_xcds", "pdb_start", "pdb"});
    py::ssize_t R = 0, K = 0, PB = 0;
    RebalanceRunning rr;
    rr.batch = read_batch(ri, &R, N);
    const std::string rs = "running pods = len(cpu)";
    rr.node = ri.vec<int32_t>("node", R, rs);
    rr.movable = ri.vec<uint8_t>("movable", R, rs);
    rr.xcd = ri.vec<uint8_t>("xcd", R, rs);
    rr.queue = ri.vec<int32_t>("queue", R, rs);
    rr.req = ri.mat<int64_t>("req", R, "running pods");
    rr.asg_start = ri.vec<int64_t>("asg_start", R + 1, "running pods + 1");
    rr.asg_dev = ri.any<int32_t>("asg_dev", &K);
    const std::string ks = "device charges = len(asg_dev)";
    rr.asg_milli = ri.vec<int64_t>("asg_milli", K, ks);
    rr.asg_mem = ri.vec<int64_t>("asg_mem", K, ks);
    rr.asg_xcds = ri.vec<uint32_t>("asg_xcds", K, ks);
    rr.pdb_start = ri.vec<int64_t>("pdb_start", R + 1, "running pods + 1");
    rr.pdb = ri.any<int32_t>("pdb", &PB);
    check_index(ri, "node", rr.node, R, 0, N, "running pod");
    check_index(ri, "queue", rr.queue, R, -1, Q, "running pod");
    check_index(ri, "pdb", rr.pdb, PB, 0, B, "entry");
    check_range(ri, "req", rr.req, R * 3, 0, kMaxQty, "running pod entry");
    check_range(ri, "asg_milli", rr.asg_milli, K, 0, 1000, "device charge");
    check_range(ri, "asg_mem", rr.asg_mem, K, 0, kMaxQty, "device charge");
    check_csr(ri, "asg_start", rr.asg_start, R, K);
    check_csr(ri, "pdb_start", rr.pdb_start, R, PB);
    for (py::ssize_t r = 0; r < R; ++r) {
        if (rr.movable[r] > 1) fail(ri.at("movable"), "must be 0 or 1" + at_row("running pod", r));
        if (rr.xcd[r] > 1) fail(ri.at("xcd"), "must be 0 or 1" + at_row("running pod", r));
        const int32_t n = rr.node[r];
        for (int64_t j = rr.asg_start[r]; j < rr.asg_start[r + 1]; ++j) {
            const int32_t d = rr.asg_dev[j];
            if (d < v.node_dev_start[n] || d >= v.node_dev_start[n + 1])
                fail(ri.at("asg_dev"), "device " + std::to_string(d) + " is not on the pod's node" + at_row("running pod", r));
            for (int64_t i = rr.asg_start[r]; i < j; ++i)
                if (rr.asg_dev[i] == d) fail(ri.at("asg_dev"), "device listed twice" + at_row("running pod", r));
            if (rr.asg_xcds[j] & ~v.dev_xcd_mask[d]) fail(ri.at("asg_xcds"), "XCDs outside the device" + at_row("running pod", r));
        }
    }

    // ---- pending ----
    Inputs pi(pending, "pending", {"cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls", "class_mask"},
              {"gang", "gang_need"});
    py::ssize_t P = 0;
    Batch pb = read_batch(pi, &P, N);
    if (pi.has("gang") != pi.has("gang_need")) fail(pi.at("gang"), "gang and gang_need come together");
    if (pi.has("gang")) {
        pb.gang = pi.vec<int32_t>("gang", P, "pending pods");
        pb.gang_need = pi.vec<int32_t>("gang_need", P, "pending pods");
        std::unordered_set<int32_t> seen;
        for (py::ssize_t p = 0; p < P; ++p) {
            const int32_t g = pb.gang[p];
            if (g < -1) fail(pi.at("gang"), "gang id must be >= 0 or -1 (none)" + at_row("pod", p));
            if (g < 0) continue;
            if (pb.gang_need[p] < 0) fail(pi.at("gang_need"), "must be >= 0" + at_row("pod", p));
            const bool first = p == 0 || pb.gang[p - 1] != g;
            if (first && !seen.insert(g).second)
                fail(pi.at("gang"), "members of a gang are not consecutive" + at_row("pod", p));
            if (!first && pb.gang_need[p] != pb.gang_need[p - 1]) fail(pi.at("gang_need"), "members disagree" + at_row("pod", p));
        }
    }

    RebalancePlan plan;
    {
        py::gil_scoped_release release;
        plan = plan_rebalance(v, rr, pb, cfg);
    }
    py::dict out;
    out["pod"] = to_numpy(plan.pod);
    out["from"] = to_numpy(plan.from);
    out["to"] = to_numpy(plan.to);
    out["reason"] = to_numpy(plan.reason);
    out["unit"] = to_numpy(plan.unit);
    out["asg_start"] = to_numpy(plan.asg_start);
    out["asg_dev"] = to_numpy(plan.asg_dev);
    out["asg_milli"] = to_numpy(plan.asg_milli);
    out["asg_mem"] = to_numpy(plan.asg_mem);
    out["asg_xcds"] = to_numpy(plan.asg_xcds);
    out["unlocked"] = to_numpy(plan.unlocked);
    out["fits_now"] = to_numpy(plan.fits_now);
    out["units_tried"] = plan.units_tried;
    out["units_blocked"] = plan.units_blocked;
    out["hot_nodes"] = plan.hot_nodes;
    out["frag_before"] = plan.frag_before;
    out["frag_after"] = plan.frag_after;
    return out;
}

}  // namespace

void register_rebalance(py::module_& m) {
    m.attr("MOVE_CONSOLIDATION") = static_cast<int>(kMoveConsolidation);
    m.attr("MOVE_HOT_SPOT") = static_cast<int>(kMoveHotSpot);
    m.attr("MOVE_DEFRAGMENTATION") = static_cast<int>(kMoveDefragmentation);
    m.def("plan_rebalance", &plan_rebalance_py, py::arg("cluster"), py::arg("running"), py::arg("pending"),
          py::arg("config"),
          R"doc(Plan moves of running pods (see csrc/rebalance.hpp). Read-only: nothing is written.

Returns a dict: pod int64 (running rows moved), from/to int32 nodes, reason int8 (MOVE_*), unit int32
(first pending row of the unit the move made room for, -1 none), the new devices as a CSR
(asg_start, asg_dev, asg_milli, asg_mem, asg_xcds), unlocked int32 (pending rows given room by moves),
fits_now int32 (pending rows that fit without moves), units_tried, units_blocked, hot_nodes, frag_before
and frag_after (cluster fragmentation F around the defragmentation goal, which runs only with the
optional config key defrag_min_gain).
Raises ValueError naming the key on bad input.)doc");
}

}  // namespace kaiwo::bindings
