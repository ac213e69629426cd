// Binding of the reclaim/preemption kernel:
//   `_core.plan_preemptions(cluster, running, pending, queues) -> dict`  (csrc/preempt.hpp)
//
// The kernel trusts its input, so everything it relies on is checked here, once, in
// O(N + G + V + K + P + C*N + Q): keys (unknown keys are errors, so a typo never passes silently),
// exact dtypes (native byte order), C-contiguity, shapes, value ranges, device charges on the pod's
// own node (each device at most once per pod), queue rows that are leaves, the tree shape
// (parent[q] in [-1, q)), internal `allocated` rows (zero, or the sum of their children), and
// magnitudes small enough (<= 2^60, column totals included) that no sum the kernel forms can
// overflow. Each failure throws std::invalid_argument (Python ValueError) naming the dict and key.
//
// Nothing is written in place: the kernel works on copies of the cluster's mutable arrays and returns
// them as the final state.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "preempt.hpp"
#include "device_resv.hpp"
#include "inputs.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace kaiwo::bindings {
namespace {

constexpr int64_t kMaxAmount = int64_t{1} << 60;  ///< bound on amounts and column totals

std::string at_row(const char* what, int64_t i) { return std::string(" at ") + what + " " + std::to_string(i); }

/// A fresh copy of an input array (the kernel's working state, returned as the final state).
template <typename T>
py::array_t<T> copy_of(const T* p, py::ssize_t n) {
    py::array_t<T> a(n);
    if (n) std::memcpy(a.mutable_data(), p, std::size_t(n) * sizeof(T));
    return a;
}

/// |x| <= kMaxAmount for every element.
template <typename T>
void check_magnitude(Inputs& in, const std::string& key, const T* a, int64_t n, const char* what) {
    for (int64_t i = 0; i < n; ++i)
        if (a[i] > kMaxAmount || a[i] < -kMaxAmount)
            fail(in.at(key), "magnitude above 2^60" + at_row(what, i));
}

/// 0 <= x and the column total <= kMaxAmount.
void check_amounts(Inputs& in, const std::string& key, const int64_t* a, int64_t rows, int cols, const char* what) {
    std::vector<int64_t> total(cols, 0);
    for (int64_t i = 0; i < rows; ++i)
        for (int c = 0; c < cols; ++c) {
            const int64_t x = a[i * cols + c];
            if (x < 0) fail(in.at(key), "negative value " + std::to_string(x) + at_row(what, i));
            if (x > kMaxAmount - total[c]) fail(in.at(key), "values (column total) above 2^60");
            total[c] += x;
        }
}

void check_flag(Inputs& in, const std::string& key, const uint8_t* a, int64_t n, const char* what) {
    for (int64_t i = 0; i < n; ++i)
        if (a[i] > 1) fail(in.at(key), "must be 0 or 1" + at_row(what, i));
}

void check_seconds(Inputs& in, const std::string& key, const double* a, int64_t n, const char* what) {
    for (int64_t i = 0; i < n; ++i)
        if (std::isnan(a[i]) || a[i] < 0.0) fail(in.at(key), "must be a number >= 0 (inf allowed)" + at_row(what, i));
}

py::dict plan_preemptions_py(const py::dict& cluster, const py::dict& running, const py::dict& pending,
                             const py::dict& queues) {
    // ---- queues ----
    Inputs qi(queues, "queues",
              {"parent", "deserved", "fair_share", "allocated", "strategy", "preempt_min_runtime",
               "reclaim_min_runtime"},
              {"checked", "node_res"});
    py::ssize_t Q = 0;
    const int32_t* parent = qi.any<int32_t>("parent", &Q);
    const int32_t Qi = checked_size(Q, "queues['parent']");
    const std::string qs = "queues = len(parent)";
    for (py::ssize_t q = 0; q < Q; ++q)
        if (parent[q] < -1 || parent[q] >= q)
            fail(qi.at("parent"), "parent " + std::to_string(parent[q]) + at_row("queue", q) +
                                      " must be -1 (top level) or a smaller index (parents come before children)");
    std::vector<uint8_t> leaf(static_cast<std::size_t>(Q), 1);
    for (py::ssize_t q = 0; q < Q; ++q)
        if (parent[q] >= 0) leaf[parent[q]] = 0;
    // The number of resource columns R is deserved's (gpu, cpu, memory, then one per GPU model);
    // every other [., R] array must have as many.
    int R = kNumRes;
    {
        py::ssize_t ds[2];
        qi.get<int64_t>("deserved", 2, ds);
        if (ds[1] < kNumRes || ds[1] > kMaxRes)
            fail(qi.at("deserved"), "expected " + std::to_string(kNumRes) + " to " + std::to_string(kMaxRes) +
                                        " resource columns (gpu, cpu, memory, then GPU models), got " +
                                        std::to_string(ds[1]));
        R = static_cast<int>(ds[1]);
    }
    const int64_t* deserved = qi.mat<int64_t>("deserved", Q, qs, R);
    const int64_t* fair = qi.mat<int64_t>("fair_share", Q, qs, R);
    const int64_t* allocated = qi.mat<int64_t>("allocated", Q, qs, R);
    for (const char* key : {"deserved", "fair_share", "allocated"}) {
        const int64_t* m = std::string(key) == "deserved" ? deserved : std::string(key) == "fair_share" ? fair : allocated;
        for (py::ssize_t i = 0; i < Q * R; ++i)
            if (m[i] < 0 || m[i] > kMaxAmount)
                fail(qi.at(key), "must be in [0, 2^60], got " + std::to_string(m[i]) + at_row("queue", i / R));
    }
    // Internal rows: zero (computed here) or exactly the sum of the children.
    std::vector<int64_t> alloc_sum(static_cast<std::size_t>(Q) * R, 0);
    {
        std::vector<int64_t> total(R, 0);
        for (py::ssize_t q = Q - 1; q >= 0; --q)
            for (int r = 0; r < R; ++r) {
                const std::size_t i = std::size_t(q) * R + r;
                if (leaf[q]) {
                    alloc_sum[i] = allocated[i];
                    if (allocated[i] > kMaxAmount - total[r]) fail(qi.at("allocated"), "column total of the leaves above 2^60");
                    total[r] += allocated[i];
                }
                if (parent[q] >= 0) alloc_sum[std::size_t(parent[q]) * R + r] += alloc_sum[i];
            }
        for (py::ssize_t q = 0; q < Q; ++q) {
            if (leaf[q]) continue;
            bool zero = true, same = true;
            for (int r = 0; r < R; ++r) {
                const std::size_t i = std::size_t(q) * R + r;
                zero = zero && allocated[i] == 0;
                same = same && allocated[i] == alloc_sum[i];
            }
            if (!zero && !same)
                fail(qi.at("allocated"), "row" + at_row("queue", q) +
                                             " (internal) must be all zero or the sum of its children's rows");
        }
    }
    const int8_t* strategy = qi.vec<int8_t>("strategy", Q, qs);
    for (py::ssize_t q = 0; q < Q; ++q)
        if (strategy[q] != kReclaimAggressive && strategy[q] != kReclaimConservative)
            fail(qi.at("strategy"), "must be 0 (aggressive) or 1 (conservative), got " + std::to_string(strategy[q]) +
                                        at_row("queue", q));
    const double* pmr = qi.vec<double>("preempt_min_runtime", Q, qs);
    check_seconds(qi, "preempt_min_runtime", pmr, Q, "queue");
    const double* rmr = qi.vec<double>("reclaim_min_runtime", Q, qs);
    check_seconds(qi, "reclaim_min_runtime", rmr, Q, "queue");
    const uint8_t* checked = nullptr;
    if (qi.has("checked")) {
        checked = qi.vec<uint8_t>("checked", kNumRes, "the resource columns");
        for (int r = 0; r < kNumRes; ++r)
            if (checked[r] > 1) fail(qi.at("checked"), "must be 0 or 1, got " + std::to_string(checked[r]));
    }

    // ---- cluster ----
    Inputs c(cluster, "cluster",
             {"node_cpu_free", "node_mem_free", "node_pods_free", "node_cpu_cap", "node_mem_cap",
              "node_dev_start", "dev_gpu", "dev_mem_cap", "dev_xcd_mask", "dev_xcds_per_domain",
              "dev_milli_free", "dev_mem_free", "dev_xcd_free", "dev_state"});
    py::ssize_t N = 0, G = 0;
    const int64_t* cpu_free = c.any<int64_t>("node_cpu_free", &N);
    const std::string nodes = "nodes = len(node_cpu_free)";
    const int64_t* mem_free = c.vec<int64_t>("node_mem_free", N, nodes);
    const int64_t* pods_free = c.vec<int64_t>("node_pods_free", N, nodes);
    const int64_t* cpu_cap = c.vec<int64_t>("node_cpu_cap", N, nodes);
    const int64_t* mem_cap = c.vec<int64_t>("node_mem_cap", N, nodes);
    const int64_t* dev_start = c.vec<int64_t>("node_dev_start", N + 1, "nodes + 1");
    const int32_t* node_res = nullptr;  // model column of each node's GPUs (-1: none)
    if (qi.has("node_res")) {
        node_res = qi.vec<int32_t>("node_res", N, "nodes");
        for (py::ssize_t n = 0; n < N; ++n)
            if (node_res[n] != -1 && (node_res[n] < kNumRes || node_res[n] >= R))
                fail(qi.at("node_res"), "must be -1 or a GPU-model column in [" + std::to_string(kNumRes) + ", " +
                                            std::to_string(R) + "), got " + std::to_string(node_res[n]) + at_row("node", n));
    }
    const int32_t* dev_gpu = c.any<int32_t>("dev_gpu", &G);
    const std::string devs = "devices = len(dev_gpu)";
    const int64_t* dev_mem_cap = c.vec<int64_t>("dev_mem_cap", G, devs);
    const uint32_t* dev_mask = c.vec<uint32_t>("dev_xcd_mask", G, devs);
    const int32_t* dev_xpd = c.vec<int32_t>("dev_xcds_per_domain", G, devs);
    const int64_t* milli_free = c.vec<int64_t>("dev_milli_free", G, devs);
    const int64_t* dmem_free = c.vec<int64_t>("dev_mem_free", G, devs);
    const uint32_t* xcd_free = c.vec<uint32_t>("dev_xcd_free", G, devs);
    const int8_t* state = c.vec<int8_t>("dev_state", G, devs);
    checked_size(N, "cluster['node_cpu_free']");
    checked_size(G, "cluster['dev_gpu']");
    check_magnitude(c, "node_cpu_free", cpu_free, N, "node");
    check_magnitude(c, "node_mem_free", mem_free, N, "node");
    check_magnitude(c, "node_pods_free", pods_free, N, "node");
    check_magnitude(c, "dev_milli_free", milli_free, G, "device");
    check_magnitude(c, "dev_mem_free", dmem_free, G, "device");
    if (dev_start[0] != 0) fail(c.at("node_dev_start"), "must start at 0, got " + std::to_string(dev_start[0]));
    for (py::ssize_t n = 0; n < N; ++n)
        if (dev_start[n + 1] < dev_start[n]) fail(c.at("node_dev_start"), "not monotone at index " + std::to_string(n + 1));
    if (dev_start[N] != G)
        fail(c.at("node_dev_start"), "must end at the number of devices " + std::to_string(G) + ", got " +
                                         std::to_string(dev_start[N]));
    for (py::ssize_t d = 0; d < G; ++d) {
        const std::string at = at_row("device", d);
        if (state[d] < kIdle || state[d] > kExclusive)
            fail(c.at("dev_state"), "unknown state " + std::to_string(state[d]) + at);
        if (dev_mem_cap[d] < 0 || dev_mem_cap[d] > kMaxAmount) fail(c.at("dev_mem_cap"), "must be in [0, 2^60]" + at);
        if (dev_mask[d] > 0xFFu) fail(c.at("dev_xcd_mask"), "XCD bits beyond 0..7" + at);
        if (xcd_free[d] & ~dev_mask[d]) fail(c.at("dev_xcd_free"), "XCDs outside dev_xcd_mask" + at);
        if (dev_mask[d] != 0 && dev_xpd[d] < 1)
            fail(c.at("dev_xcds_per_domain"), "must be >= 1 for a device with XCDs" + at);
    }

    // ---- running ----
    Inputs ri(running, "running",
              {"node", "queue", "priority", "preemptible", "runtime", "req", "cpu", "mem", "asg_start", "asg_dev",
               "asg_milli", "asg_mem", "asg_xcds", "exclusive", "xcd"});
    py::ssize_t V = 0, K = 0;
    RunningPods rp;
    rp.node = ri.any<int32_t>("node", &V);
    const std::string vs = "running pods = len(node)";
    rp.queue = ri.vec<int32_t>("queue", V, vs);
    rp.priority = ri.vec<int64_t>("priority", V, vs);
    rp.preemptible = ri.vec<uint8_t>("preemptible", V, vs);
    rp.runtime = ri.vec<double>("runtime", V, vs);
    rp.req = ri.mat<int64_t>("req", V, "running pods", R);
    rp.cpu = ri.vec<int64_t>("cpu", V, vs);
    rp.mem = ri.vec<int64_t>("mem", V, vs);
    rp.asg_start = ri.vec<int64_t>("asg_start", V + 1, "running pods + 1");
    rp.asg_dev = ri.any<int32_t>("asg_dev", &K);
    const std::string ks = "device charges = len(asg_dev)";
    rp.asg_milli = ri.vec<int64_t>("asg_milli", K, ks);
    rp.asg_mem = ri.vec<int64_t>("asg_mem", K, ks);
    rp.asg_xcds = ri.vec<uint32_t>("asg_xcds", K, ks);
    rp.exclusive = ri.vec<uint8_t>("exclusive", V, vs);
    rp.xcd = ri.vec<uint8_t>("xcd", V, vs);
    if (V > std::numeric_limits<int32_t>::max()) fail(ri.at("node"), "too many running pods");
    rp.n = static_cast<int32_t>(V);
    for (py::ssize_t v = 0; v < V; ++v) {
        if (rp.node[v] < 0 || rp.node[v] >= N)
            fail(ri.at("node"), "node " + std::to_string(rp.node[v]) + " out of range [0, " + std::to_string(N) + ")" +
                                    at_row("running pod", v));
        const int32_t q = rp.queue[v];
        if (q < -1 || q >= Q)
            fail(ri.at("queue"), "queue " + std::to_string(q) + " out of range [-1, " + std::to_string(Q) + ")" +
                                     at_row("running pod", v));
        if (q >= 0 && !leaf[q])
            fail(ri.at("queue"), "queue " + std::to_string(q) + " is not a leaf (only leaf queues hold pods)" +
                                     at_row("running pod", v));
    }
    check_flag(ri, "preemptible", rp.preemptible, V, "running pod");
    check_flag(ri, "exclusive", rp.exclusive, V, "running pod");
    check_flag(ri, "xcd", rp.xcd, V, "running pod");
    check_seconds(ri, "runtime", rp.runtime, V, "running pod");
    check_amounts(ri, "req", rp.req, V, R, "running pod");
    check_amounts(ri, "cpu", rp.cpu, V, 1, "running pod");
    check_amounts(ri, "mem", rp.mem, V, 1, "running pod");
    check_amounts(ri, "asg_milli", rp.asg_milli, K, 1, "device charge");
    check_amounts(ri, "asg_mem", rp.asg_mem, K, 1, "device charge");
    if (rp.asg_start[0] != 0) fail(ri.at("asg_start"), "must start at 0, got " + std::to_string(rp.asg_start[0]));
    for (py::ssize_t v = 0; v < V; ++v)
        if (rp.asg_start[v + 1] < rp.asg_start[v]) fail(ri.at("asg_start"), "not monotone at index " + std::to_string(v + 1));
    if (rp.asg_start[V] != K)
        fail(ri.at("asg_start"), "must end at the number of device charges len(asg_dev) = " + std::to_string(K) +
                                     ", got " + std::to_string(rp.asg_start[V]));
    {
        std::vector<int64_t> seen(static_cast<std::size_t>(G), -1);
        for (py::ssize_t v = 0; v < V; ++v)
            for (int64_t k = rp.asg_start[v]; k < rp.asg_start[v + 1]; ++k) {
                const int32_t d = rp.asg_dev[k];
                const int32_t n = rp.node[v];
                if (d < dev_start[n] || d >= dev_start[n + 1])
                    fail(ri.at("asg_dev"), "device " + std::to_string(d) + " is not on the pod's node " +
                                               std::to_string(n) + at_row("running pod", v));
                if (seen[d] == v) fail(ri.at("asg_dev"), "device " + std::to_string(d) + " listed twice" + at_row("running pod", v));
                seen[d] = v;
                if (rp.asg_xcds[k] & ~dev_mask[d])
                    fail(ri.at("asg_xcds"), "XCDs outside the device's dev_xcd_mask" + at_row("running pod", v));
            }
    }

    // ---- pending ----
    Inputs pi(pending, "pending",
              {"cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls", "class_mask", "queue", "priority",
               "req"},
              {"extra_score", "gang", "gang_need", "dev_resv", "dev_resv_xcds", "class_resv"});
    py::ssize_t P = 0;
    Preemptors pre;
    Batch& bt = pre.batch;
    bt.cpu = pi.any<int64_t>("cpu", &P);
    const std::string ps = "pending pods = len(cpu)";
    bt.mem = pi.vec<int64_t>("mem", P, ps);
    bt.kind = pi.vec<int8_t>("kind", P, ps);
    bt.count = pi.vec<int32_t>("count", P, ps);
    bt.milli = pi.vec<int32_t>("milli", P, ps);
    bt.gpu_mem = pi.vec<int64_t>("gpu_mem", P, ps);
    bt.exclusive = pi.vec<uint8_t>("exclusive", P, ps);
    bt.cls = pi.vec<int32_t>("cls", P, ps);
    py::ssize_t cm[2];
    bt.class_mask = pi.get<uint8_t>("class_mask", 2, cm);
    if (cm[1] != N)
        fail(pi.at("class_mask"), "expected shape (classes, " + std::to_string(N) + "), got (" + std::to_string(cm[0]) +
                                      ", " + std::to_string(cm[1]) + ")");
    const py::ssize_t C = cm[0];
    if (pi.has("extra_score")) {  // accepted so a placement batch dict can be passed as is; not used
        py::ssize_t es[2];
        pi.get<double>("extra_score", 2, es);
        if (es[0] != C || es[1] != N)
            fail(pi.at("extra_score"), "expected shape (" + std::to_string(C) + ", " + std::to_string(N) +
                                           ") like class_mask, got (" + std::to_string(es[0]) + ", " +
                                           std::to_string(es[1]) + ")");
    }
    read_device_resv(pi, bt, G, C, dev_mask);
    pre.queue = pi.vec<int32_t>("queue", P, ps);
    pre.priority = pi.vec<int64_t>("priority", P, ps);
    pre.req = pi.mat<int64_t>("req", P, "pending pods", R);
    bt.n_pods = checked_size(P, "pending['cpu']");
    bt.n_classes = checked_size(C, "pending['class_mask']");
    bt.extra_score = nullptr;
    for (py::ssize_t p = 0; p < P; ++p) {
        const std::string at = at_row("pending pod", p);
        if (bt.cls[p] < 0 || bt.cls[p] >= C)
            fail(pi.at("cls"), "class " + std::to_string(bt.cls[p]) + " out of range [0, " + std::to_string(C) + ")" + at);
        if (bt.kind[p] < kNoGpu || bt.kind[p] > kXcd) fail(pi.at("kind"), "unknown kind " + std::to_string(bt.kind[p]) + at);
        if (bt.exclusive[p] > 1) fail(pi.at("exclusive"), "must be 0 or 1" + at);
        const int32_t q = pre.queue[p];
        if (q < 0 || q >= Q)
            fail(pi.at("queue"), "queue " + std::to_string(q) + " out of range [0, " + std::to_string(Q) + ")" + at);
        if (!leaf[q]) fail(pi.at("queue"), "queue " + std::to_string(q) + " is not a leaf (only leaf queues hold pods)" + at);
        if (bt.kind[p] == kNoGpu) continue;
        if (bt.count[p] < 1) fail(pi.at("count"), "a GPU request needs count >= 1" + at);
        if (bt.milli[p] < 0 || bt.milli[p] > 1000) fail(pi.at("milli"), "must be in [0, 1000]" + at);
    }
    check_amounts(pi, "cpu", bt.cpu, P, 1, "pending pod");
    check_amounts(pi, "mem", bt.mem, P, 1, "pending pod");
    check_amounts(pi, "gpu_mem", bt.gpu_mem, P, 1, "pending pod");
    check_amounts(pi, "req", pre.req, P, R, "pending pod");
    if (pi.has("gang") != pi.has("gang_need"))
        fail(pi.at(pi.has("gang") ? "gang_need" : "gang"), "gang and gang_need come together");
    if (pi.has("gang")) {  // each gang one run of consecutive rows in one queue, one minimum
        pre.gang = pi.vec<int32_t>("gang", P, ps);
        pre.gang_need = pi.vec<int32_t>("gang_need", P, ps);
        std::set<int32_t> done;
        for (py::ssize_t p = 0; p < P; ++p) {
            const int32_t g = pre.gang[p];
            const std::string at = at_row("pending pod", p);
            if (g < -1) fail(pi.at("gang"), "gang id " + std::to_string(g) + " must be >= 0 or -1 (none)" + at);
            if (g < 0) continue;
            if (pre.gang_need[p] < 0) fail(pi.at("gang_need"), "must be >= 0, got " + std::to_string(pre.gang_need[p]) + at);
            const bool first = p == 0 || pre.gang[p - 1] != g;
            if (first && !done.insert(g).second)
                fail(pi.at("gang"), "members of gang " + std::to_string(g) + " are not consecutive" + at);
            if (!first && pre.gang_need[p] != pre.gang_need[p - 1])
                fail(pi.at("gang_need"), "members of gang " + std::to_string(g) + " disagree" + at);
            if (!first && pre.queue[p] != pre.queue[p - 1])
                fail(pi.at("queue"), "members of gang " + std::to_string(g) + " are in different queues" + at);
        }
    }

    PreemptQueues pq;
    pq.n = Qi;
    pq.parent = parent;
    pq.deserved = deserved;
    pq.fair_share = fair;
    pq.allocated = alloc_sum.data();
    pq.nres = R;
    pq.node_res = node_res;
    pq.strategy = strategy;
    pq.preempt_min_runtime = pmr;
    pq.reclaim_min_runtime = rmr;
    pq.checked = checked;

    // The working state: copies of the mutable cluster arrays, returned as the final state.
    py::array_t<int64_t> o_cpu = copy_of(cpu_free, N), o_mem = copy_of(mem_free, N), o_pods = copy_of(pods_free, N);
    py::array_t<int64_t> o_milli = copy_of(milli_free, G), o_dmem = copy_of(dmem_free, G);
    py::array_t<uint32_t> o_xcd = copy_of(xcd_free, G);
    py::array_t<int8_t> o_state = copy_of(state, G);
    ClusterView view;
    view.n_nodes = static_cast<int32_t>(N);
    view.n_devices = static_cast<int32_t>(G);
    view.node_cpu_free = o_cpu.mutable_data();
    view.node_mem_free = o_mem.mutable_data();
    view.node_pods_free = o_pods.mutable_data();
    view.node_cpu_cap = cpu_cap;
    view.node_mem_cap = mem_cap;
    view.node_dev_start = dev_start;
    view.dev_gpu = dev_gpu;
    view.dev_mem_cap = dev_mem_cap;
    view.dev_xcd_mask = dev_mask;
    view.dev_xcds_per_domain = dev_xpd;
    view.dev_milli_free = o_milli.mutable_data();
    view.dev_mem_free = o_dmem.mutable_data();
    view.dev_xcd_free = o_xcd.mutable_data();
    view.dev_state = o_state.mutable_data();

    PreemptResult r;
    {
        py::gil_scoped_release release;
        r = plan_preemptions(view, rp, pre, pq);
    }

    py::dict out;
    out["node"] = to_numpy(r.node);
    out["vic_start"] = to_numpy(r.vic_start);
    out["vic"] = to_numpy(r.vic);
    out["vic_rule"] = to_numpy(r.vic_rule);
    out["asg_start"] = to_numpy(r.asg_start);
    out["asg_dev"] = to_numpy(r.asg_dev);
    out["asg_milli"] = to_numpy(r.asg_milli);
    out["asg_mem"] = to_numpy(r.asg_mem);
    out["asg_xcds"] = to_numpy(r.asg_xcds);
    out["node_cpu_free"] = o_cpu;
    out["node_mem_free"] = o_mem;
    out["node_pods_free"] = o_pods;
    out["dev_milli_free"] = o_milli;
    out["dev_mem_free"] = o_dmem;
    out["dev_xcd_free"] = o_xcd;
    out["dev_state"] = o_state;
    out["allocated"] = to_numpy(r.allocated).reshape({Q, static_cast<py::ssize_t>(R)});
    out["fit_mismatch"] = r.fit_mismatch;
    return out;
}

}  // namespace

void register_preempt(py::module_& m) {
    m.attr("RULE_WITHIN_QUEUE") = static_cast<int>(kRuleWithinQueue);
    m.attr("RULE_RECLAIM_CONSERVATIVE") = static_cast<int>(kRuleReclaimConservative);
    m.attr("RULE_RECLAIM_AGGRESSIVE") = static_cast<int>(kRuleReclaimAggressive);
    m.attr("RULE_NAMES") = py::make_tuple("within-queue", "reclaim-conservative", "reclaim-aggressive");
    m.attr("RECLAIM_AGGRESSIVE") = static_cast<int>(kReclaimAggressive);
    m.attr("RECLAIM_CONSERVATIVE") = static_cast<int>(kReclaimConservative);

    m.def("plan_preemptions", &plan_preemptions_py, py::arg("cluster"), py::arg("running"), py::arg("pending"),
          py::arg("queues"),
          R"doc(Plan reclaim and preemption for pending pods that did not fit (see csrc/preempt.hpp).

cluster: the place_batch cluster dict (state after the cycle's placements); not modified.
running: node int32[V], queue int32[V] (leaf, -1 = none: never a victim), priority int64[V],
preemptible uint8[V], runtime float64[V] (seconds), req int64[V,3], cpu int64[V], mem int64[V],
asg_start int64[V+1], asg_dev int32, asg_milli int64, asg_mem int64, asg_xcds uint32 (device charges),
exclusive uint8[V], xcd uint8[V].
pending: the place_batch batch keys (extra_score accepted, unused) in the order to try, plus
queue int32[P] (leaf), priority int64[P], req int64[P,3]; optional gang and gang_need int32[P]
(together): a gang's consecutive rows are tried as one transaction, kept only if at least
gang_need of them get a node, otherwise undone (no victim evicted for it, no node).
queues: parent int32[Q], deserved, fair_share, allocated int64[Q,R] (R = 3..64: gpu, cpu, memory, then
GPU models; running/pending req have R columns too), optional node_res int32[N] (model column of each
node's GPUs, -1 none: a preemptor's GPUs count in its node's column), (internal rows zero or subtree
sums), strategy int8[Q] (RECLAIM_AGGRESSIVE / RECLAIM_CONSERVATIVE), preempt_min_runtime,
reclaim_min_runtime float64[Q] (seconds); optional checked uint8[3]: the resources the queue rules
may judge (default all; a pod that requests none of those it lacks on a node is judged on all it
lacks there).
Returns a dict: node int32[P] (-1 = nothing), vic_start int64[P+1], vic int64 (running rows),
vic_rule int8 (RULE_*), asg_start int64[P+1], asg_dev int32, asg_milli int64, asg_mem int64,
asg_xcds uint32 (the preemptor's devices), the final node_*_free / dev_*_free / dev_state arrays,
allocated int64[Q,R] (after the plan) and fit_mismatch (int, always 0 unless placement's checks
changed). Raises ValueError naming the key on bad input.)doc");
}

}  // namespace kaiwo::bindings
