// Binding of the placement kernel: `_core.place_batch(cluster, batch, strategy) -> dict`.
//
// The kernel trusts its input, so everything it relies on is checked here, once, in O(N + G + P + C*N):
// keys, exact dtypes (native byte order), C-contiguity, shapes, and the few values that would
// otherwise index out of range or divide by zero. Each failure throws std::invalid_argument (Python
// ValueError) naming the dict and key. The mutable cluster arrays are written in place: that is how
// the caller gets the new state, so they are used as given, never converted (a converted copy would
// silently swallow the updates).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "placement.hpp"
#include "device_resv.hpp"
#include "inputs.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace kaiwo::bindings {
namespace {

constexpr int64_t kMaxQty = int64_t(1) << 53;       ///< CPU, memory, pod slots: exact as double
constexpr double kMaxLoad = 1e6;                     ///< measured load and its weights (load is ~0..1)
constexpr int64_t kMaxDevMem = int64_t(1) << 40;    ///< MiB of one device (times milli <= 1000 fits)
constexpr int64_t kMaxDevMilli = int64_t(1) << 31;  ///< summed over a node's devices, fits int64

/// Every a[i] in [lo, hi], else an error naming the key, the element and the bound.
void check_range(const int64_t* a, py::ssize_t n, int64_t lo, int64_t hi, const char* key, const char* elem) {
    for (py::ssize_t i = 0; i < n; ++i) {
        if (a[i] < lo || a[i] > hi) {
            fail(key, (a[i] < 0 && lo == 0 ? std::string("negative") : "value " + std::to_string(a[i]) + " out of range [" +
                                                                          std::to_string(lo) + ", " +
                                                                          std::to_string(hi) + "]") +
                          " at " + elem + " " + std::to_string(i));
        }
    }
}

py::dict place_batch_py(const py::dict& cluster, const py::dict& batch, int strategy) {
    if (strategy < kBinpack || strategy >= kNumStrategies)
        fail("strategy", "unknown strategy " + std::to_string(strategy) +
                             " (expected 0..9: STRATEGY_BINPACK, STRATEGY_SPREAD, STRATEGY_FRAG_AWARE, "
                             "STRATEGY_RANDOM, STRATEGY_BEST_FIT, STRATEGY_DOT_PRODUCT, STRATEGY_GPU_PACKING, "
                             "STRATEGY_GPU_CLUSTERING, STRATEGY_FGD, STRATEGY_LOAD)");

    // ---- cluster ----
    Inputs c(cluster, "cluster", {},
             {"node_cpu_free", "node_mem_free", "node_pods_free", "node_cpu_cap", "node_mem_cap",
              "node_dev_start", "dev_gpu", "dev_mem_cap", "dev_xcd_mask", "dev_xcds_per_domain",
              "dev_milli_free", "dev_mem_free", "dev_xcd_free", "dev_state", "node_gpu_kinds"});
    py::array node_cpu_free = c.array<int64_t>("node_cpu_free", 1, true);
    const py::ssize_t N = node_cpu_free.shape(0);
    const std::string nodes = "nodes = len(node_cpu_free)";
    py::array node_mem_free = c.array1<int64_t>("node_mem_free", N, nodes, true);
    py::array node_pods_free = c.array1<int64_t>("node_pods_free", N, nodes, true);
    py::array node_cpu_cap = c.array1<int64_t>("node_cpu_cap", N, nodes);
    py::array node_mem_cap = c.array1<int64_t>("node_mem_cap", N, nodes);
    py::array node_dev_start = c.array1<int64_t>("node_dev_start", N + 1, "nodes + 1");
    py::array dev_gpu = c.array<int32_t>("dev_gpu", 1, false);
    const py::ssize_t G = dev_gpu.shape(0);
    const std::string devs = "devices = len(dev_gpu)";
    py::array dev_mem_cap = c.array1<int64_t>("dev_mem_cap", G, devs);
    py::array dev_xcd_mask = c.array1<uint32_t>("dev_xcd_mask", G, devs);
    py::array dev_xcds_per_domain = c.array1<int32_t>("dev_xcds_per_domain", G, devs);
    py::array dev_milli_free = c.array1<int64_t>("dev_milli_free", G, devs, true);
    py::array dev_mem_free = c.array1<int64_t>("dev_mem_free", G, devs, true);
    py::array dev_xcd_free = c.array1<uint32_t>("dev_xcd_free", G, devs, true);
    py::array dev_state = c.array1<int8_t>("dev_state", G, devs, true);

    ClusterView view;
    view.n_nodes = checked_size(N, "cluster['node_cpu_free']");
    view.n_devices = checked_size(G, "cluster['dev_gpu']");
    view.node_cpu_free = mut<int64_t>(node_cpu_free);
    view.node_mem_free = mut<int64_t>(node_mem_free);
    view.node_pods_free = mut<int64_t>(node_pods_free);
    view.node_cpu_cap = cst<int64_t>(node_cpu_cap);
    view.node_mem_cap = cst<int64_t>(node_mem_cap);
    view.node_dev_start = cst<int64_t>(node_dev_start);
    view.dev_gpu = cst<int32_t>(dev_gpu);
    view.dev_mem_cap = cst<int64_t>(dev_mem_cap);
    view.dev_xcd_mask = cst<uint32_t>(dev_xcd_mask);
    view.dev_xcds_per_domain = cst<int32_t>(dev_xcds_per_domain);
    view.dev_milli_free = mut<int64_t>(dev_milli_free);
    view.dev_mem_free = mut<int64_t>(dev_mem_free);
    view.dev_xcd_free = mut<uint32_t>(dev_xcd_free);
    view.dev_state = mut<int8_t>(dev_state);
    // kGpuClustering's per-node kinds of GPU pods, carried across calls by the caller (optional).
    py::array node_gpu_kinds = c.has("node_gpu_kinds") ? c.array1<uint64_t>("node_gpu_kinds", N, nodes, true) : py::array();
    view.node_gpu_kinds = c.has("node_gpu_kinds") ? mut<uint64_t>(node_gpu_kinds) : nullptr;

    if (view.node_dev_start[0] != 0)
        fail("cluster['node_dev_start']", "must start at 0, got " + std::to_string(view.node_dev_start[0]));
    for (py::ssize_t n = 0; n < N; ++n)
        if (view.node_dev_start[n + 1] < view.node_dev_start[n])
            fail("cluster['node_dev_start']", "not monotone at index " + std::to_string(n + 1));
    if (view.node_dev_start[N] != G)
        fail("cluster['node_dev_start']", "must end at the number of devices " + std::to_string(G) + ", got " +
                                              std::to_string(view.node_dev_start[N]));
    // Magnitudes: the kernel's integer arithmetic must not overflow where the reference's Python
    // ints would not, and quantities must convert to double exactly.
    check_range(view.node_cpu_free, N, -kMaxQty, kMaxQty, "cluster['node_cpu_free']", "node");
    check_range(view.node_mem_free, N, -kMaxQty, kMaxQty, "cluster['node_mem_free']", "node");
    check_range(view.node_pods_free, N, -kMaxQty, kMaxQty, "cluster['node_pods_free']", "node");
    check_range(view.node_cpu_cap, N, 0, kMaxQty, "cluster['node_cpu_cap']", "node");
    check_range(view.node_mem_cap, N, 0, kMaxQty, "cluster['node_mem_cap']", "node");
    check_range(view.dev_mem_cap, G, 0, kMaxDevMem, "cluster['dev_mem_cap']", "device");
    check_range(view.dev_milli_free, G, -kMaxDevMilli, kMaxDevMilli, "cluster['dev_milli_free']", "device");
    check_range(view.dev_mem_free, G, -kMaxQty, kMaxQty, "cluster['dev_mem_free']", "device");
    for (py::ssize_t d = 0; d < G; ++d) {
        auto at = [d] { return " at device " + std::to_string(d); };
        if (view.dev_state[d] < kIdle || view.dev_state[d] > kExclusive)
            fail("cluster['dev_state']", "unknown state " + std::to_string(view.dev_state[d]) + at());
        const uint32_t mask = view.dev_xcd_mask[d];
        if (mask > 0xFFu) fail("cluster['dev_xcd_mask']", "XCD bits beyond 0..7" + at());
        if (view.dev_xcd_free[d] & ~mask) fail("cluster['dev_xcd_free']", "XCDs outside dev_xcd_mask" + at());
        if (mask != 0 && view.dev_xcds_per_domain[d] < 1)
            fail("cluster['dev_xcds_per_domain']", "must be >= 1 for a device with XCDs" + at());
    }

    // ---- batch ----
    Inputs b(batch, "batch", {},
             {"cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls", "class_mask", "extra_score",
              "gang", "gang_need", "seed", "workload_shapes", "workload_weights", "dev_resv", "dev_resv_xcds",
              "class_resv", "node_load", "load_weights", "node_domain"});
    py::array cpu = b.array<int64_t>("cpu", 1, false);
    const py::ssize_t P = cpu.shape(0);
    const std::string pods = "pods = len(cpu)";
    py::array mem = b.array1<int64_t>("mem", P, pods);
    py::array kind = b.array1<int8_t>("kind", P, pods);
    py::array count = b.array1<int32_t>("count", P, pods);
    py::array milli = b.array1<int32_t>("milli", P, pods);
    py::array gpu_mem = b.array1<int64_t>("gpu_mem", P, pods);
    py::array exclusive = b.array1<uint8_t>("exclusive", P, pods);
    py::array cls = b.array1<int32_t>("cls", P, pods);
    py::array class_mask = b.array<uint8_t>("class_mask", 2, false);
    if (class_mask.shape(1) != N)
        fail("batch['class_mask']", "expected shape (classes, " + std::to_string(N) + "), got (" +
                                        std::to_string(class_mask.shape(0)) + ", " +
                                        std::to_string(class_mask.shape(1)) + ")");
    const py::ssize_t C = class_mask.shape(0);
    const bool has_extra = b.has("extra_score");
    py::array extra_score = has_extra ? b.array<double>("extra_score", 2, false) : py::array();
    if (has_extra && (extra_score.shape(0) != C || extra_score.shape(1) != N))
        fail("batch['extra_score']", "expected shape (" + std::to_string(C) + ", " + std::to_string(N) +
                                         ") like class_mask, got (" + std::to_string(extra_score.shape(0)) +
                                         ", " + std::to_string(extra_score.shape(1)) + ")");

    const bool has_gang = b.has("gang");
    if (has_gang != b.has("gang_need"))
        fail(has_gang ? "batch['gang_need']" : "batch['gang']", "gang and gang_need come together");
    py::array gang = has_gang ? b.array1<int32_t>("gang", P, pods) : py::array();
    py::array gang_need = has_gang ? b.array1<int32_t>("gang_need", P, pods) : py::array();

    Batch bt;
    bt.n_pods = checked_size(P, "batch['cpu']");
    bt.cpu = cst<int64_t>(cpu);
    bt.mem = cst<int64_t>(mem);
    bt.kind = cst<int8_t>(kind);
    bt.count = cst<int32_t>(count);
    bt.milli = cst<int32_t>(milli);
    bt.gpu_mem = cst<int64_t>(gpu_mem);
    bt.exclusive = cst<uint8_t>(exclusive);
    bt.cls = cst<int32_t>(cls);
    bt.n_classes = checked_size(C, "batch['class_mask']");
    bt.class_mask = cst<uint8_t>(class_mask);
    bt.extra_score = has_extra ? cst<double>(extra_score) : nullptr;
    bt.gang = has_gang ? cst<int32_t>(gang) : nullptr;
    bt.gang_need = has_gang ? cst<int32_t>(gang_need) : nullptr;
    if (has_gang) {  // each gang one run of consecutive rows, one minimum
        std::unordered_set<int32_t> done;
        for (py::ssize_t p = 0; p < P; ++p) {
            const int32_t g = bt.gang[p];
            auto at = [p] { return " at pod " + std::to_string(p); };
            if (g < -1) fail("batch['gang']", "gang id must be >= 0 or -1 (none)" + at());
            if (g < 0) continue;
            if (bt.gang_need[p] < 0) fail("batch['gang_need']", "must be >= 0" + at());
            const bool first = p == 0 || bt.gang[p - 1] != g;
            if (first && !done.insert(g).second)
                fail("batch['gang']", "members of gang " + std::to_string(g) + " are not consecutive" + at());
            if (!first && bt.gang_need[p] != bt.gang_need[p - 1])
                fail("batch['gang_need']", "members of gang " + std::to_string(g) + " disagree" + at());
        }
    }

    read_device_resv(b, bt, G, C, view.dev_xcd_mask);

    // kRandom's seed and the target workload of kFgd / kFragAware (all optional).
    if (b.has("seed")) bt.seed = cst<uint64_t>(b.array1<uint64_t>("seed", 1, "one seed"))[0];
    const bool has_wl = b.has("workload_shapes");
    if (has_wl != b.has("workload_weights"))
        fail(has_wl ? "batch['workload_weights']" : "batch['workload_shapes']",
             "workload_shapes and workload_weights come together");
    if (has_wl) {
        py::array shapes = b.array<int64_t>("workload_shapes", 2, false);
        const py::ssize_t T = shapes.shape(0);
        if (shapes.shape(1) != 7)
            fail("batch['workload_shapes']", "expected shape (shapes, 7): cpu, kind, count, milli, gpu_mem, "
                                             "exclusive, cls; got (" + std::to_string(T) + ", " +
                                             std::to_string(shapes.shape(1)) + ")");
        if (T > kMaxWorkload)
            fail("batch['workload_shapes']", "at most " + std::to_string(kMaxWorkload) + " shapes, got " +
                                                 std::to_string(T));
        py::array weights = b.array1<double>("workload_weights", T, "shapes = len(workload_shapes)");
        const int64_t* w = cst<int64_t>(shapes);
        const double* wt = cst<double>(weights);
        for (py::ssize_t t = 0; t < T; ++t) {
            auto at = [t] { return " at shape " + std::to_string(t); };
            const int64_t* r = w + 7 * t;  // cpu, kind, count, milli, gpu_mem, exclusive, cls
            WorkloadShape ws;
            if (r[0] < 0 || r[0] > kMaxQty) fail("batch['workload_shapes']", "cpu out of range" + at());
            if (r[1] < kNoGpu || r[1] > kXcd) fail("batch['workload_shapes']", "unknown kind " + std::to_string(r[1]) + at());
            if (r[1] != kNoGpu && (r[2] < 1 || r[2] > (1 << 20)))
                fail("batch['workload_shapes']", "a GPU shape needs count in [1, 2^20]" + at());
            if (r[1] != kNoGpu && (r[3] < 0 || r[3] > 1000)) fail("batch['workload_shapes']", "milli must be in [0, 1000]" + at());
            if (r[4] < 0 || r[4] > kMaxQty) fail("batch['workload_shapes']", "gpu_mem out of range" + at());
            if (r[5] != 0 && r[5] != 1) fail("batch['workload_shapes']", "exclusive must be 0 or 1" + at());
            if (r[6] < -1 || r[6] >= C)
                fail("batch['workload_shapes']", "cls " + std::to_string(r[6]) + " out of range [-1, " +
                                                     std::to_string(C) + ")" + at());
            if (!(wt[t] >= 0.0) || !std::isfinite(wt[t]))
                fail("batch['workload_weights']", "must be finite and >= 0" + at());
            ws.cpu = r[0];
            ws.kind = static_cast<int8_t>(r[1]);
            ws.count = r[1] == kNoGpu ? 0 : static_cast<int32_t>(r[2]);
            ws.milli = r[1] == kNoGpu ? 0 : static_cast<int32_t>(r[3]);
            ws.gpu_mem = r[4];
            ws.exclusive = static_cast<uint8_t>(r[5]);
            ws.cls = static_cast<int32_t>(r[6]);
            ws.weight = wt[t];
            bt.workload.push_back(ws);
        }
    }

    // kLoad's measured load and weights, the gangs' topology domains (all optional).
    py::array node_load = b.has("node_load") ? b.array1<double>("node_load", N, nodes) : py::array();
    if (b.has("node_load")) {
        bt.node_load = cst<double>(node_load);
        for (py::ssize_t n = 0; n < N; ++n)
            if (!std::isfinite(bt.node_load[n]) || bt.node_load[n] < 0.0 || bt.node_load[n] > kMaxLoad)
                fail("batch['node_load']", "must be finite, in [0, 1e6] at node " +
                                               std::to_string(n));
    }
    if (b.has("load_weights")) {
        const double* w = cst<double>(b.array1<double>("load_weights", 2, "two weights: allocation, load"));
        for (int i = 0; i < 2; ++i)
            if (!std::isfinite(w[i]) || w[i] < 0.0 || w[i] > kMaxLoad)
                fail("batch['load_weights']", "must be finite, in [0, 1e6] at index " +
                                                  std::to_string(i));
        bt.w_alloc = w[0];
        bt.w_load = w[1];
    }
    py::array node_domain = b.has("node_domain") ? b.array1<int32_t>("node_domain", N, nodes) : py::array();
    if (b.has("node_domain")) {
        bt.node_domain = cst<int32_t>(node_domain);
        for (py::ssize_t n = 0; n < N; ++n)
            if (bt.node_domain[n] < -1 || bt.node_domain[n] >= N)
                fail("batch['node_domain']", "domain " + std::to_string(bt.node_domain[n]) + " out of range [-1, " +
                                                 std::to_string(N) + ") at node " + std::to_string(n));
    }

    check_range(bt.cpu, P, 0, kMaxQty, "batch['cpu']", "pod");
    check_range(bt.mem, P, 0, kMaxQty, "batch['mem']", "pod");
    check_range(bt.gpu_mem, P, 0, kMaxQty, "batch['gpu_mem']", "pod");
    for (py::ssize_t p = 0; p < P; ++p) {
        auto at = [p] { return " at pod " + std::to_string(p); };
        if (bt.cls[p] < 0 || bt.cls[p] >= C)
            fail("batch['cls']", "class " + std::to_string(bt.cls[p]) + " out of range [0, " + std::to_string(C) +
                                     ")" + at());
        if (bt.kind[p] < kNoGpu || bt.kind[p] > kXcd)
            fail("batch['kind']", "unknown kind " + std::to_string(bt.kind[p]) + at());
        if (bt.exclusive[p] > 1) fail("batch['exclusive']", "must be 0 or 1" + at());
        if (bt.kind[p] == kNoGpu) continue;
        if (bt.count[p] < 1) fail("batch['count']", "a GPU request needs count >= 1" + at());
        if (bt.milli[p] < 0 || bt.milli[p] > 1000) fail("batch['milli']", "must be in [0, 1000]" + at());
    }

    Result r;
    {
        py::gil_scoped_release release;
        r = place_batch(view, bt, static_cast<Strategy>(strategy));
    }

    py::dict out;
    out["node"] = to_numpy(r.node);
    out["asg_start"] = to_numpy(r.asg_start);
    out["asg_dev"] = to_numpy(r.asg_dev);
    out["asg_milli"] = to_numpy(r.asg_milli);
    out["asg_mem"] = to_numpy(r.asg_mem);
    out["asg_xcds"] = to_numpy(r.asg_xcds);
    out["reason_counts"] = to_numpy(r.reason_counts).reshape({P, static_cast<py::ssize_t>(kNumReasons)});
    out["best_share"] = to_numpy(r.best_share);
    out["gang_failed"] = to_numpy(r.gang_failed);
    return out;
}

}  // namespace

void register_placement(py::module_& m) {
    m.attr("KIND_NO_GPU") = static_cast<int>(kNoGpu);
    m.attr("KIND_WHOLE") = static_cast<int>(kWhole);
    m.attr("KIND_SHARED") = static_cast<int>(kShared);
    m.attr("KIND_XCD") = static_cast<int>(kXcd);
    m.attr("STATE_IDLE") = static_cast<int>(kIdle);
    m.attr("STATE_SHARED") = static_cast<int>(kSharedDev);
    m.attr("STATE_EXCLUSIVE") = static_cast<int>(kExclusive);
    m.attr("STRATEGY_BINPACK") = static_cast<int>(kBinpack);
    m.attr("STRATEGY_SPREAD") = static_cast<int>(kSpread);
    m.attr("STRATEGY_FRAG_AWARE") = static_cast<int>(kFragAware);
    m.attr("STRATEGY_RANDOM") = static_cast<int>(kRandom);
    m.attr("STRATEGY_BEST_FIT") = static_cast<int>(kBestFit);
    m.attr("STRATEGY_DOT_PRODUCT") = static_cast<int>(kDotProduct);
    m.attr("STRATEGY_GPU_PACKING") = static_cast<int>(kGpuPacking);
    m.attr("STRATEGY_GPU_CLUSTERING") = static_cast<int>(kGpuClustering);
    m.attr("STRATEGY_FGD") = static_cast<int>(kFgd);
    m.attr("STRATEGY_LOAD") = static_cast<int>(kLoad);
    m.attr("NUM_STRATEGIES") = static_cast<int>(kNumStrategies);
    m.attr("MAX_SPEC_CPU") = kMaxSpecCpu;
    m.attr("MAX_SPEC_GPU") = kMaxSpecGpu;
    m.attr("MAX_WORKLOAD") = kMaxWorkload;
    m.attr("REASON_NODE_FILTER") = static_cast<int>(kRNodeFilter);
    m.attr("REASON_CPU") = static_cast<int>(kRCpu);
    m.attr("REASON_MEMORY") = static_cast<int>(kRMemory);
    m.attr("REASON_PODS") = static_cast<int>(kRPods);
    m.attr("REASON_GPU_COUNT") = static_cast<int>(kRGpuCount);
    m.attr("REASON_GPU_BUSY") = static_cast<int>(kRGpuBusy);
    m.attr("REASON_GPU_SHARE") = static_cast<int>(kRGpuShare);
    m.attr("REASON_GPU_MEMORY") = static_cast<int>(kRGpuMemory);
    m.attr("REASON_XCD") = static_cast<int>(kRXcd);
    m.attr("REASON_RESERVED") = static_cast<int>(kRReserved);
    m.attr("NUM_REASONS") = static_cast<int>(kNumReasons);
    m.attr("REASON_NAMES") = py::make_tuple("node_filter", "cpu", "memory", "pods", "gpu_count", "gpu_busy",
                                            "gpu_share", "gpu_memory", "xcd", "reserved");

    m.def("place_batch", &place_batch_py, py::arg("cluster"), py::arg("batch"), py::arg("strategy"),
          R"doc(Place a batch of pods in order onto nodes and logical GPUs (see csrc/placement.hpp).

The mutable cluster arrays (node_*_free, dev_*_free, dev_state) are updated in place.
Returns a dict: node int32[P] (-1 = not placed), asg_start int64[P+1], asg_dev int32,
asg_milli int64, asg_mem int64, asg_xcds uint32, reason_counts int32[P, NUM_REASONS]
(unplaced pods only), best_share int64[P], gang_failed uint8[P]. Optional batch keys gang and
gang_need (int32[P], together): consecutive members of a gang are kept only if at least gang_need
of them were placed, else all are rolled back (gang_failed = 1). Optional batch keys for the FGD
paper's policies: seed uint64[1] (STRATEGY_RANDOM), workload_shapes int64[T, 7] (cpu, kind,
count, milli, gpu_mem, exclusive, cls; cls -1 = any node) with workload_weights float64[T]
(STRATEGY_FGD, STRATEGY_FRAG_AWARE target workload). Optional cluster key node_gpu_kinds
uint64[N], updated in place (STRATEGY_GPU_CLUSTERING's kinds of GPU pods per node). Optional
batch keys dev_resv int32[G] (reservation holding the device, -1 = none), dev_resv_xcds uint32[G]
(XCDs held, 0 = the whole device) and class_resv uint8[C, R] (1 = class may use reservation r),
all three together: a held device or held XCDs serve only classes that may use the reservation.
Optional batch keys for STRATEGY_LOAD: node_load float64[N] (measured load, 0 = unmeasured) and
load_weights float64[2] (allocation, load; default 1, 1). Optional batch key node_domain int32[N]
(topology domain per node, -1 = none): a gang keeps to one domain when one takes it whole.
Raises ValueError naming the key on bad input.)doc");
}

}  // namespace kaiwo::bindings
