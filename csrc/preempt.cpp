// Reclaim and preemption kernel: see preempt.hpp for the contract and the exact semantics
// (tests/naive_preempt.py `plan_preemptions_ref` is the executable specification).
//
// Fit. Whether a pod fits a node's tentative (freed) state is decided by `fits`, which mirrors
// place_batch's filters for one node (node CPU, memory, pod slots, device count, then the
// kind-specific device checks of csrc/placement.cpp / tests/naive.py `gpu_check_ref`, device
// reservations included: `held_xcds`). The one
// commit per preemptor is done by place_batch itself on a one-node ClusterView of the freed node, so
// the preemptor's devices are exactly those placement picks. Should place_batch ever refuse a node
// that `fits` accepted (placement's checks changed and this mirror did not follow), the pod is left
// unplaced, nothing is evicted for it, and `fit_mismatch` counts it; the tests assert it stays 0, and
// compare the whole kernel with a reference that asks place_batch_ref for every fit decision.
//
// Speed (scale M: 1,000 nodes x 8 GPUs, 23,000 running, 1,000 pending: ~0.1 s on one core; every
// shortcut below only skips work whose outcome is already known, so results stay exact):
//   1. Zero victims first: one pass over the nodes on the current state (an O(1) idle-device count
//      rejects most for whole-GPU pods); the lowest-index node that fits wins outright.
//   2. Per node, the candidate victims (preemptible, with a queue) are listed once, packed and
//      sorted by (priority, runtime, row); a pod filters them by the rules that do not depend on
//      the other victims (priority and min-runtime; "the victim's queue path could give up this
//      victim alone"; "the preemptor's path could take the pod even if every candidate under it
//      left"), O(1) per victim after an O(Q * depth) pass over the queues per pod.
//   3. Per node, O(1) upper bounds over all candidates (free + freeable CPU, memory, pod slots,
//      devices that could become idle) and a lower bound on the victims a whole-GPU pod needs
//      there skip nodes that cannot fit or cannot beat the best node so far; against a best of one
//      victim, a node whose cheapest eligible victim is not of lower priority is skipped.
//   4. The preemptor's side of the queue rules, per node: where its path could not take the pod
//      even with every eligible victim of the node under that queue gone, the reclaim victims
//      whose common ancestor is higher are out (this is what usually blocks reclaim).
//   5. The pod must fit with all remaining eligible victims gone (fit is monotone in freed
//      capacity) before the greedy runs at all.
//   6. Tentative states are per-device accumulators over the victim set (order-independent), so
//      adding a victim touches only its own devices; the fit check reads the node's few devices.

#include "bits.hpp"
#include "preempt.hpp"

#include <algorithm>
#include <array>
#include <limits>

namespace kaiwo {
namespace {

/// A candidate victim, packed for the per-node scans (node-major, sorted like `cand_`).
struct CandRec {
    int64_t priority;
    const int64_t* req;  ///< [R] its row of RunningPods::req
    int32_t queue;
    uint8_t alive;    ///< not evicted yet
    uint8_t pre_ok;   ///< runtime >= preempt_min_runtime[queue]
    uint8_t rec_ok;   ///< runtime >= reclaim_min_runtime[queue]
};

/// A node choice for one pod: (victims, sum of their priorities, node), smaller is better.
struct Choice {
    int32_t node = -1;
    std::vector<int64_t> victims;
    __int128 prio_sum = 0;

    bool better_than(const Choice& o) const {
        if (o.node < 0) return true;
        if (victims.size() != o.victims.size()) return victims.size() < o.victims.size();
        if (prio_sum != o.prio_sum) return prio_sum < o.prio_sum;
        return node < o.node;
    }
};

/// Device fields of one node, as placement reads them (the node's own slice of the arrays).
struct NodeDevs {
    int64_t d0;            ///< global index of the node's first device
    int32_t nd;            ///< devices on the node
    const int64_t* milli;  ///< [nd] free compute
    const int64_t* mem;    ///< [nd] free GPU memory
    const uint32_t* xcd;   ///< [nd] free XCDs
    const int8_t* state;   ///< [nd] DeviceState
};

/// place_batch's checks for pod p on one node with the given free amounts (tests/naive.py
/// `_base_reason` and `gpu_check_ref`; the class mask is checked by the caller).
bool fits_on(const Batch& b, int32_t p, const ClusterView& v, int64_t cpu, int64_t mem, int64_t pods,
             const NodeDevs& dv) {
    if (b.cpu[p] > cpu) return false;
    if (b.mem[p] > mem) return false;
    if (pods < 1) return false;
    const int8_t kind = b.kind[p];
    if (kind == kNoGpu) return true;
    const int32_t count = b.count[p];
    if (dv.nd < count) return false;
    int32_t ok = 0;
    if (kind == kWhole || b.exclusive[p]) {
        for (int32_t i = 0; i < dv.nd && ok < count; ++i)
            ok += dv.state[i] == kIdle && dv.mem[i] >= b.gpu_mem[p] && !held_xcds(b, b.cls[p], dv.d0 + i);
    } else if (kind == kShared) {
        const int64_t milli = b.milli[p], gmem = b.gpu_mem[p];
        for (int32_t i = 0; i < dv.nd && ok < count; ++i) {
            if (dv.state[i] == kExclusive || dv.milli[i] < milli || held_xcds(b, b.cls[p], dv.d0 + i)) continue;
            const int64_t need = gmem > 0 ? gmem : ceil_div(milli * v.dev_mem_cap[dv.d0 + i], kFullMilli);
            ok += dv.mem[i] >= need;
        }
    } else {  // kXcd
        const int64_t milli = b.milli[p], gmem = b.gpu_mem[p];
        for (int32_t i = 0; i < dv.nd && ok < count; ++i) {
            const int64_t d = dv.d0 + i;
            const int nx = popcount(v.dev_xcd_mask[d]);
            if (nx == 0 || dv.state[i] == kExclusive) continue;
            const int64_t k = std::max<int64_t>(1, ceil_div(milli * nx, kFullMilli));
            if (popcount(dv.xcd[i] & ~held_xcds(b, b.cls[p], d)) < k) continue;
            if (dv.milli[i] < k * kFullMilli / nx) continue;
            const int64_t need = gmem > 0 ? gmem : v.dev_mem_cap[d] * k / nx;
            ok += dv.mem[i] >= need;
        }
    }
    return ok >= count;
}

class Planner {
public:
    Planner(ClusterView& v, const RunningPods& r, const Preemptors& p, const PreemptQueues& q)
        : v_(v), r_(r), pp_(p), b_(p.batch), q_(q) {}

    PreemptResult run();

private:
    // ---- setup ----
    void setup();
    void node_bounds(int32_t n);

    // ---- queues ----
    /// What rule (b) protects of queue a on a victim's path below the LCA L: its entitlement if it
    /// is the top of that path (a child of L), else the smaller of its entitlement and its fair
    /// share. Children's fair shares add up to their parent's, so children whose deserved add up to
    /// more than the parent's cannot together shield the parent's excess from its siblings
    /// (parent-level charging, issue 11); for aggressive reclaim (ent = fair share) nothing changes.
    int64_t victim_ent(int32_t a, int32_t L, int r) const {
        const std::size_t i = std::size_t(a) * R_ + r;
        return q_.parent[a] == L ? ent_[i] : std::min(ent_[i], q_.fair_share[i]);
    }

    int32_t lca(int32_t a, int32_t b) const {
        while (a != b) {
            if (depth_[a] >= depth_[b]) a = q_.parent[a];
            else b = q_.parent[b];
            if (a < 0 || b < 0) return -1;
        }
        return a;
    }
    void add_path(int32_t q, const int64_t* req, int64_t sign) {
        for (int32_t a = q; a >= 0; a = q_.parent[a])
            for (int r = 0; r < R_; ++r) sub_[std::size_t(a) * R_ + r] += sign * req[r];
    }
    void pod_queues(int32_t p);
    bool static_ok(int32_t p, const CandRec& c) const;
    bool check_b(int64_t v) const;
    bool check_a(int32_t lca_depth) const;
    bool victim_ok(int64_t v);
    bool set_ok(const std::vector<int64_t>& set) const;

    // ---- tentative node state ----
    void reset_node(int32_t n);
    void acc_add(int64_t v, bool now);
    void derive(int32_t i);
    void rebuild(int32_t n, const std::vector<int64_t>& set);
    bool fits(int32_t p, int32_t n) const;
    bool fits_free(int32_t p, int32_t n) const;

    // ---- per pod ----
    int32_t node_req(int32_t p, int32_t n);
    bool try_pod(int32_t p, PreemptResult& out);
    void eval_node(int32_t p, int32_t n, Choice& best);
    bool commit(int32_t p, const Choice& c, PreemptResult& out);

    // ---- gangs: a transaction over the members' commits ----
    void begin_gang();
    void rollback_gang(PreemptResult& out);

    ClusterView& v_;
    const RunningPods& r_;
    const Preemptors& pp_;
    const Batch& b_;
    const PreemptQueues& q_;

    int32_t N_ = 0, Q_ = 0;
    int R_ = kNumRes;                 ///< resource columns: gpu, cpu, memory, then GPU models
    int64_t V_ = 0;
    std::vector<int32_t> hold_;       ///< [G] running pods (+ preemptors placed) on each device
    std::vector<int32_t> phold_;      ///< [G] of those, alive candidate victims
    std::vector<uint8_t> alive_;      ///< [V] candidate not yet evicted
    std::vector<int64_t> cand_start_; ///< [N+1] CSR of candidate victims per node, sorted
    std::vector<int64_t> cand_;       ///< running rows
    std::vector<CandRec> crec_;       ///< the same, packed
    std::vector<int64_t> cpos_;       ///< [V] position in cand_ (-1 = not a candidate)
    std::vector<int32_t> idle_now_;   ///< [N] idle devices now
    std::vector<int32_t> max_devs_;   ///< [N] most devices any candidate on the node holds
    std::vector<int64_t> ub_cpu_, ub_mem_, ub_pods_;  ///< [N] free + all alive candidates
    std::vector<int32_t> ub_idle_;    ///< [N] devices idle, or whose holders are all candidates
    std::vector<int32_t> depth_;      ///< [Q] 0 for top level
    std::vector<int64_t> alloc_;      ///< [Q,3] current allocated (subtree sums)
    std::vector<int64_t> sub_;        ///< [Q,3] requests of the tentative victim set, up the paths
    std::vector<int64_t> recsum_;     ///< [Q,3] requests of alive candidates past reclaimMinRuntime, subtree sums
    std::vector<int64_t> qcand_start_; ///< [Q+1] CSR of candidates per leaf queue
    std::vector<int64_t> qcand_;
    int64_t within_count_ = 0;        ///< candidates the pod may preempt in its own queue

    // per pod
    int32_t qp_ = -1;
    const int64_t* ent_ = nullptr;
    const int64_t* req_p_ = nullptr;
    std::vector<int32_t> lca_;        ///< [Q] LCA of the pod's queue with each leaf (-1 = root)
    std::vector<int32_t> lca_depth_;  ///< [Q] its depth (-1 = root)
    std::vector<int32_t> block_r_;    ///< [R] per resource: reclaim needs an LCA this deep (pod_queues)
    int32_t block_depth_ = -2;        ///< the same over the resources judged on the node being evaluated
    uint64_t judged_ = 7;             ///< resources the queue rules judge on that node (bit r; see eval_node)
    std::vector<int64_t> req_all_;    ///< [R] the pod's request with every model column = its GPUs (pod_queues)
    std::vector<int64_t> charge_;     ///< [R] what the pod charges its queue on that node
    std::vector<int64_t> req_node_;   ///< [R] the pod's request on that node (its model column set; see eval_node)
    std::vector<int64_t> head_;       ///< [Q,3] min over the leaf's path below the LCA of alloc - ent
    std::vector<int64_t> elig_;       ///< eligible victims on the node being evaluated
    std::vector<int64_t> under_;      ///< [(depth + 2) * 3] their requests by LCA depth (see eval_node)
    std::vector<int64_t> set_;        ///< tentative victim set, in order of addition

    // tentative state of the node being evaluated: accumulators and derived device fields
    int64_t d0_ = 0;
    int32_t nd_ = 0;
    int64_t acc_cpu_ = 0, acc_mem_ = 0, acc_pods_ = 0;
    std::vector<int32_t> acc_cnt_;
    std::vector<int64_t> acc_milli_, acc_dmem_;
    std::vector<uint32_t> acc_xcd_;   ///< XCDs the set's claimers give back
    std::vector<int64_t> claim_start_; ///< [G+1] CSR: running rows claiming XCDs of each device
    std::vector<int64_t> claim_row_;
    std::vector<uint32_t> claim_xcds_;
    std::vector<uint8_t> evicted_;    ///< [V] evicted by an earlier commit
    std::vector<uint32_t> stamp_;     ///< [V] == set_id_: in the tentative set
    uint32_t set_id_ = 0;
    std::vector<uint8_t> acc_excl_;
    std::vector<int64_t> dm_, dmem_;
    std::vector<uint32_t> dx_;
    std::vector<int8_t> ds_;

    /// What one commit changed on its node, saved before it while a gang's members are tried.
    struct NodeUndo {
        int32_t n;
        int64_t cpu, mem, pods, ub_cpu, ub_mem, ub_pods;
        int32_t ub_idle, idle_now;
        std::vector<int64_t> milli, dmem;
        std::vector<uint32_t> xcd;
        std::vector<int8_t> state;
        std::vector<int32_t> hold, phold;
    };
    bool logging_ = false;            ///< a gang transaction is open: commits save their node first
    std::vector<NodeUndo> node_undo_; ///< in commit order
    std::vector<int64_t> gang_vic_;   ///< victims evicted inside the transaction
    std::vector<int64_t> alloc_save_, recsum_save_;
    std::size_t vic_mark_ = 0, asg_mark_ = 0;  ///< output sizes when the transaction began
};

void Planner::setup() {
    N_ = v_.n_nodes;
    Q_ = q_.n;
    R_ = q_.nres;
    block_r_.assign(std::size_t(R_), -2);
    req_node_.assign(std::size_t(R_), 0);
    charge_.assign(std::size_t(R_), 0);
    req_all_.assign(std::size_t(R_), 0);
    V_ = r_.n;
    const int32_t G = v_.n_devices;
    hold_.assign(G, 0);
    phold_.assign(G, 0);
    alive_.assign(V_, 0);
    std::vector<int64_t> count(std::size_t(N_) + 1, 0);
    for (int64_t v = 0; v < V_; ++v) {
        const bool cand = r_.preemptible[v] && r_.queue[v] >= 0;
        alive_[v] = cand;
        for (int64_t k = r_.asg_start[v]; k < r_.asg_start[v + 1]; ++k) {
            ++hold_[r_.asg_dev[k]];
            if (cand) ++phold_[r_.asg_dev[k]];
        }
        if (cand) ++count[r_.node[v] + 1];
    }
    cand_start_.assign(std::size_t(N_) + 1, 0);
    for (int32_t n = 0; n < N_; ++n) cand_start_[n + 1] = cand_start_[n] + count[n + 1];
    cand_.resize(cand_start_[N_]);
    {
        std::vector<int64_t> pos(cand_start_.begin(), cand_start_.end() - 1);
        for (int64_t v = 0; v < V_; ++v)
            if (alive_[v]) cand_[pos[r_.node[v]]++] = v;
    }
    auto key_less = [this](int64_t a, int64_t b) {
        if (r_.priority[a] != r_.priority[b]) return r_.priority[a] < r_.priority[b];
        if (r_.runtime[a] != r_.runtime[b]) return r_.runtime[a] < r_.runtime[b];
        return a < b;
    };
    int32_t max_dev = 0;
    for (int32_t n = 0; n < N_; ++n) {
        std::sort(cand_.begin() + cand_start_[n], cand_.begin() + cand_start_[n + 1], key_less);
        max_dev = std::max<int32_t>(max_dev, static_cast<int32_t>(v_.node_dev_start[n + 1] - v_.node_dev_start[n]));
    }
    crec_.resize(cand_.size());
    cpos_.assign(V_, -1);
    max_devs_.assign(N_, 0);
    for (int32_t n = 0; n < N_; ++n)
        for (int64_t i = cand_start_[n]; i < cand_start_[n + 1]; ++i) {
            const int64_t v = cand_[i];
            CandRec& c = crec_[i];
            const int32_t q = r_.queue[v];
            c.priority = r_.priority[v];
            c.req = r_.req + v * R_;
            c.queue = q;
            c.alive = 1;
            c.pre_ok = r_.runtime[v] >= q_.preempt_min_runtime[q];
            c.rec_ok = r_.runtime[v] >= q_.reclaim_min_runtime[q];
            cpos_[v] = i;
            max_devs_[n] = std::max<int32_t>(max_devs_[n], static_cast<int32_t>(r_.asg_start[v + 1] - r_.asg_start[v]));
        }
    idle_now_.assign(N_, 0);
    for (int32_t n = 0; n < N_; ++n)
        for (int64_t d = v_.node_dev_start[n]; d < v_.node_dev_start[n + 1]; ++d) idle_now_[n] += v_.dev_state[d] == kIdle;
    ub_cpu_.assign(N_, 0);
    ub_mem_.assign(N_, 0);
    ub_pods_.assign(N_, 0);
    ub_idle_.assign(N_, 0);
    for (int32_t n = 0; n < N_; ++n) node_bounds(n);

    depth_.assign(Q_, 0);
    for (int32_t q = 0; q < Q_; ++q) depth_[q] = q_.parent[q] < 0 ? 0 : depth_[q_.parent[q]] + 1;
    alloc_.assign(q_.allocated, q_.allocated + std::size_t(Q_) * R_);
    sub_.assign(std::size_t(Q_) * R_, 0);
    recsum_.assign(std::size_t(Q_) * R_, 0);
    qcand_start_.assign(std::size_t(Q_) + 1, 0);
    for (int64_t v = 0; v < V_; ++v)
        if (alive_[v]) {
            ++qcand_start_[r_.queue[v] + 1];
            if (r_.runtime[v] >= q_.reclaim_min_runtime[r_.queue[v]])
                for (int r = 0; r < R_; ++r) recsum_[std::size_t(r_.queue[v]) * R_ + r] += r_.req[v * R_ + r];
        }
    for (int32_t q = Q_ - 1; q >= 0; --q)
        if (q_.parent[q] >= 0)
            for (int r = 0; r < R_; ++r)
                recsum_[std::size_t(q_.parent[q]) * R_ + r] += recsum_[std::size_t(q) * R_ + r];
    for (int32_t q = 0; q < Q_; ++q) qcand_start_[q + 1] += qcand_start_[q];
    qcand_.resize(qcand_start_[Q_]);
    {
        std::vector<int64_t> pos(qcand_start_.begin(), qcand_start_.end() - 1);
        for (int64_t v = 0; v < V_; ++v)
            if (alive_[v]) qcand_[pos[r_.queue[v]]++] = v;
    }
    lca_.assign(Q_, -1);
    lca_depth_.assign(Q_, -1);
    {
        int32_t max_depth = 0;
        for (int32_t q = 0; q < Q_; ++q) max_depth = std::max(max_depth, depth_[q]);
        under_.assign(std::size_t(max_depth + 2) * R_, 0);
    }
    head_.assign(std::size_t(Q_) * R_, 0);

    acc_cnt_.assign(max_dev, 0);
    acc_milli_.assign(max_dev, 0);
    acc_dmem_.assign(max_dev, 0);
    acc_xcd_.assign(max_dev, 0);
    evicted_.assign(V_, 0);
    stamp_.assign(V_, 0);
    claim_start_.assign(std::size_t(G) + 1, 0);
    for (int64_t v = 0; v < V_; ++v)
        if (r_.xcd[v])
            for (int64_t k = r_.asg_start[v]; k < r_.asg_start[v + 1]; ++k) ++claim_start_[r_.asg_dev[k] + 1];
    for (int32_t d = 0; d < G; ++d) claim_start_[d + 1] += claim_start_[d];
    claim_row_.resize(claim_start_[G]);
    claim_xcds_.resize(claim_start_[G]);
    {
        std::vector<int64_t> pos(claim_start_.begin(), claim_start_.end() - 1);
        for (int64_t v = 0; v < V_; ++v)
            if (r_.xcd[v])
                for (int64_t k = r_.asg_start[v]; k < r_.asg_start[v + 1]; ++k) {
                    const int64_t j = pos[r_.asg_dev[k]]++;
                    claim_row_[j] = v;
                    claim_xcds_[j] = r_.asg_xcds[k];
                }
    }
    acc_excl_.assign(max_dev, 0);
    dm_.assign(max_dev, 0);
    dmem_.assign(max_dev, 0);
    dx_.assign(max_dev, 0);
    ds_.assign(max_dev, 0);
}

/// Upper bounds of node n over every alive candidate: what removing all of them would free.
void Planner::node_bounds(int32_t n) {
    int64_t cpu = v_.node_cpu_free[n], mem = v_.node_mem_free[n], pods = v_.node_pods_free[n];
    for (int64_t i = cand_start_[n]; i < cand_start_[n + 1]; ++i) {
        const int64_t v = cand_[i];
        if (!alive_[v]) continue;
        cpu += r_.cpu[v];
        mem += r_.mem[v];
        ++pods;
    }
    int32_t idle = 0;
    for (int64_t d = v_.node_dev_start[n]; d < v_.node_dev_start[n + 1]; ++d)
        idle += v_.dev_state[d] == kIdle || (hold_[d] > 0 && phold_[d] == hold_[d]);
    ub_cpu_[n] = cpu;
    ub_mem_[n] = mem;
    ub_pods_[n] = pods;
    ub_idle_[n] = idle;
}

/// Per pod: the LCA of its queue with every leaf and, for reclaim, the least headroom
/// (allocated - ent) on the leaf's path below the LCA, per resource. Also the preemptor's side: at
/// most the candidates of its own queue it may preempt and, elsewhere under a queue a of its path,
/// the candidates past their reclaimMinRuntime can leave a's allocation; where (a) fails even then,
/// every reclaim victim whose LCA is above a is out. `block_depth_` is the deepest such a's depth.
void Planner::pod_queues(int32_t p) {
    qp_ = pp_.queue[p];
    ent_ = q_.strategy[qp_] == kReclaimConservative ? q_.deserved : q_.fair_share;
    // A preemptor of a fixed model has its GPUs in the model column of the node it goes to
    // (PreemptQueues::node_res): per resource, block_r_ is what it would be on a node of that
    // column's model. One of no fixed model is not judged on model columns (see node_req).
    const int64_t* own_req = pp_.req + std::size_t(p) * R_;
    const bool fixed = std::any_of(own_req + kNumRes, own_req + R_, [](int64_t x) { return x > 0; });
    for (int r = 0; r < R_; ++r) req_all_[r] = r < kNumRes ? own_req[r] : fixed ? own_req[0] : 0;
    req_p_ = req_all_.data();
    std::vector<int64_t> within(std::size_t(R_), 0);
    within_count_ = 0;
    for (int64_t j = qcand_start_[qp_]; j < qcand_start_[qp_ + 1]; ++j) {
        const int64_t v = qcand_[j];
        if (!alive_[v] || !(r_.priority[v] < pp_.priority[p]) || !(r_.runtime[v] >= q_.preempt_min_runtime[qp_]))
            continue;
        ++within_count_;
        for (int r = 0; r < R_; ++r) within[r] += r_.req[v * R_ + r];
    }
    const int64_t* own = &recsum_[std::size_t(qp_) * R_];
    for (int r = 0; r < R_; ++r) {
        block_r_[r] = -2;
        for (int32_t a = qp_; a >= 0 && block_r_[r] < 0; a = q_.parent[a]) {
            const std::size_t i = std::size_t(a) * R_ + r;
            const int64_t most = recsum_[i] - own[r] + within[r];
            if (req_p_[r] > 0 && alloc_[i] - most + req_p_[r] > ent_[i]) block_r_[r] = depth_[a];
        }
    }
    constexpr int64_t kBig = std::numeric_limits<int64_t>::max();
    for (int32_t q = 0; q < Q_; ++q) {
        const int32_t L = lca(q, qp_);
        lca_[q] = L;
        lca_depth_[q] = L < 0 ? -1 : depth_[L];
        int64_t* h = &head_[std::size_t(q) * R_];
        for (int r = 0; r < R_; ++r) h[r] = kBig;
        for (int32_t a = q; a != L; a = q_.parent[a])
            for (int r = 0; r < R_; ++r)
                h[r] = std::min(h[r], alloc_[std::size_t(a) * R_ + r] - victim_ent(a, L, r));
    }
}

/// The rules that do not depend on the other victims, plus (b) for the victim alone (a necessary
/// condition of (b) with any set: more victims only lower the victim queue's allocation further)
/// and the preemptor-side block (see pod_queues).
bool Planner::static_ok(int32_t p, const CandRec& c) const {
    const int32_t qv = c.queue;
    if (qv == qp_) return c.pre_ok && c.priority < pp_.priority[p];
    if (!c.rec_ok || lca_depth_[qv] < block_depth_) return false;
    const int64_t* h = &head_[std::size_t(qv) * R_];
    for (int r = 0; r < R_; ++r)
        if ((judged_ >> r & 1u) && c.req[r] > 0 && c.req[r] > h[r]) return false;
    return true;
}

/// (b) for reclaim victim v, with v added to the set `sub_` describes.
bool Planner::check_b(int64_t v) const {
    const int32_t qv = r_.queue[v];
    const int32_t L = lca_[qv];
    const int64_t* rq = r_.req + v * R_;
    for (int32_t a = qv; a != L; a = q_.parent[a])
        for (int r = 0; r < R_; ++r) {
            const std::size_t i = std::size_t(a) * R_ + r;
            if ((judged_ >> r & 1u) && rq[r] > 0 && alloc_[i] - sub_[i] - rq[r] < victim_ent(a, L, r)) return false;
        }
    return true;
}

/// (a) on the preemptor's path strictly below depth `lca_depth` (-1 = the virtual root).
bool Planner::check_a(int32_t lca_depth) const {
    for (int32_t a = qp_; a >= 0 && depth_[a] > lca_depth; a = q_.parent[a])
        for (int r = 0; r < R_; ++r) {
            const std::size_t i = std::size_t(a) * R_ + r;
            if ((judged_ >> r & 1u) && req_p_[r] > 0 && alloc_[i] - sub_[i] + req_p_[r] > ent_[i]) return false;
        }
    return true;
}

/// Adds v to `sub_` if the queue rules hold with it added (else leaves `sub_` unchanged). (a) does
/// not depend on v itself: v's path meets the preemptor's only at and above their LCA.
bool Planner::victim_ok(int64_t v) {
    const int32_t qv = r_.queue[v];
    if (qv != qp_ && !(check_a(lca_depth_[qv]) && check_b(v))) return false;
    add_path(qv, r_.req + v * R_, +1);
    return true;
}

/// (a) for the set `sub_` describes: every reclaim victim's LCA bounds the preemptor's path.
bool Planner::set_ok(const std::vector<int64_t>& set) const {
    int32_t top = Q_ + 1;  // shallowest LCA depth among reclaim victims
    bool any = false;
    for (int64_t v : set) {
        const int32_t qv = r_.queue[v];
        if (qv == qp_) continue;
        const int32_t L = lca_[qv];
        top = std::min(top, L < 0 ? -1 : depth_[L]);
        any = true;
    }
    return !any || check_a(top);
}

void Planner::reset_node(int32_t n) {
    ++set_id_;
    d0_ = v_.node_dev_start[n];
    nd_ = static_cast<int32_t>(v_.node_dev_start[n + 1] - d0_);
    acc_cpu_ = acc_mem_ = acc_pods_ = 0;
    for (int32_t i = 0; i < nd_; ++i) {
        acc_cnt_[i] = 0;
        acc_milli_[i] = acc_dmem_[i] = 0;
        acc_xcd_[i] = 0;
        acc_excl_[i] = 0;
        const int64_t d = d0_ + i;
        dm_[i] = v_.dev_milli_free[d];
        dmem_[i] = v_.dev_mem_free[d];
        dx_[i] = v_.dev_xcd_free[d];
        ds_[i] = v_.dev_state[d];
    }
}

void Planner::derive(int32_t i) {
    const int64_t d = d0_ + i;
    if (acc_cnt_[i] == 0) {
        dm_[i] = v_.dev_milli_free[d];
        dmem_[i] = v_.dev_mem_free[d];
        dx_[i] = v_.dev_xcd_free[d];
        ds_[i] = v_.dev_state[d];
    } else if (hold_[d] - acc_cnt_[i] <= 0) {
        dm_[i] = kFullMilli;
        dmem_[i] = v_.dev_mem_cap[d];
        dx_[i] = v_.dev_xcd_mask[d];
        ds_[i] = kIdle;
    } else {
        dm_[i] = std::min(kFullMilli, v_.dev_milli_free[d] + acc_milli_[i]);
        dmem_[i] = std::min(v_.dev_mem_cap[d], v_.dev_mem_free[d] + acc_dmem_[i]);
        // XCDs the leaving claimers give back, except those a remaining claimer still holds
        // (time-sliced pods' CU masks may overlap).
        uint32_t still = 0;
        if (acc_xcd_[i])
            for (int64_t j = claim_start_[d]; j < claim_start_[d + 1]; ++j) {
                const int64_t h = claim_row_[j];
                if (!evicted_[h] && stamp_[h] != set_id_) still |= claim_xcds_[j];
            }
        dx_[i] = (v_.dev_xcd_free[d] | acc_xcd_[i]) & ~still & v_.dev_xcd_mask[d];
        ds_[i] = acc_excl_[i] ? static_cast<int8_t>(kSharedDev) : v_.dev_state[d];
    }
}

/// Adds victim v (on the node of the last reset_node) to the accumulators and, if `now`, re-derives
/// its devices.
void Planner::acc_add(int64_t v, bool now) {
    stamp_[v] = set_id_;
    acc_cpu_ += r_.cpu[v];
    acc_mem_ += r_.mem[v];
    ++acc_pods_;
    for (int64_t k = r_.asg_start[v]; k < r_.asg_start[v + 1]; ++k) {
        const int32_t i = static_cast<int32_t>(r_.asg_dev[k] - d0_);
        ++acc_cnt_[i];
        acc_milli_[i] += r_.asg_milli[k];
        acc_dmem_[i] += r_.asg_mem[k];
        if (r_.xcd[v]) acc_xcd_[i] |= r_.asg_xcds[k];
        if (r_.exclusive[v]) acc_excl_[i] = 1;
        if (now) derive(i);
    }
}

void Planner::rebuild(int32_t n, const std::vector<int64_t>& set) {
    reset_node(n);
    for (int64_t v : set) acc_add(v, true);
}

/// Pod p on node n in the tentative state (the node of the last reset_node).
bool Planner::fits(int32_t p, int32_t n) const {
    return fits_on(b_, p, v_, v_.node_cpu_free[n] + acc_cpu_, v_.node_mem_free[n] + acc_mem_,
                   v_.node_pods_free[n] + acc_pods_, NodeDevs{d0_, nd_, dm_.data(), dmem_.data(), dx_.data(), ds_.data()});
}

/// Pod p on node n as it is (no victims).
bool Planner::fits_free(int32_t p, int32_t n) const {
    const int64_t d0 = v_.node_dev_start[n];
    return fits_on(b_, p, v_, v_.node_cpu_free[n], v_.node_mem_free[n], v_.node_pods_free[n],
                   NodeDevs{d0, static_cast<int32_t>(v_.node_dev_start[n + 1] - d0), v_.dev_milli_free + d0,
                            v_.dev_mem_free + d0, v_.dev_xcd_free + d0, v_.dev_state + d0});
}

/// Points req_p_ at pod p's request on node n as rule (a) judges it: gpu, cpu, memory, and -- for a
/// pod of a fixed model (any model column > 0 in its row) -- its GPUs in the model column of n's
/// GPUs. A pod of no fixed model has no demand in the model columns (its queue's entitlement there
/// says nothing about it), so (a) does not judge them; (b) still does, for the victims. `charge_`
/// gets what placing it on n charges its queue: its GPUs in n's column either way. Returns n's
/// column, -1 if none.
int32_t Planner::node_req(int32_t p, int32_t n) {
    const int64_t* own = pp_.req + std::size_t(p) * R_;
    bool fixed = false;
    for (int r = 0; r < R_; ++r) {
        req_node_[r] = charge_[r] = r < kNumRes ? own[r] : 0;
        fixed = fixed || (r >= kNumRes && own[r] > 0);
    }
    const int32_t col = q_.node_res && R_ > kNumRes ? q_.node_res[n] : -1;
    if (col >= kNumRes) {
        charge_[col] = own[0];
        if (fixed) req_node_[col] = own[0];
    }
    req_p_ = req_node_.data();
    return col >= kNumRes ? col : -1;
}

/// Greedy + drop on node n for pod p; replaces `best` if this node is better.
void Planner::eval_node(int32_t p, int32_t n, Choice& best) {
    // O(1) bounds over every alive candidate of the node.
    if (b_.cpu[p] > ub_cpu_[n] || b_.mem[p] > ub_mem_[n] || ub_pods_[n] < 1) return;
    const int8_t kind = b_.kind[p];
    if (kind != kNoGpu) {
        const int64_t nd = v_.node_dev_start[n + 1] - v_.node_dev_start[n];
        if (nd < b_.count[p]) return;
        if (kind == kWhole || b_.exclusive[p]) {
            if (ub_idle_[n] < b_.count[p]) return;
            // Fewest victims: each victim idles at most max_devs_ devices, so this node needs at
            // least ceil(missing / max_devs_) of them; more than the best so far cannot win.
            const int64_t missing = b_.count[p] - idle_now_[n];
            if (best.node >= 0 && missing > 0 && max_devs_[n] > 0 &&
                (missing + max_devs_[n] - 1) / max_devs_[n] > static_cast<int64_t>(best.victims.size()))
                return;
        }
    }
    // Entitlement is judged on the resources being reclaimed: those the pod lacks on this node (its
    // devices do not fit the free ones; its CPU or memory exceeds what is free). A queue far over its
    // GPU entitlement gives up GPUs to a queue below its own, whatever their CPU use says: CPU that
    // is free on the node is not taken from anyone. If only a pod slot is missing, every resource.
    {
        const int64_t d0 = v_.node_dev_start[n];
        constexpr int64_t kAll = std::numeric_limits<int64_t>::max();
        uint64_t m = 0;
        const int32_t col = node_req(p, n);
        const uint64_t model = col >= 0 ? uint64_t(1) << col : 0;
        if (kind != kNoGpu &&
            !fits_on(b_, p, v_, kAll, kAll, 1, NodeDevs{d0, static_cast<int32_t>(v_.node_dev_start[n + 1] - d0),
                                                      v_.dev_milli_free + d0, v_.dev_mem_free + d0,
                                                      v_.dev_xcd_free + d0, v_.dev_state + d0}))
            m |= 1u | model;  // lacking GPUs on an MI300X node: lacking gpu and gpu/MI300X
        if (b_.cpu[p] > v_.node_cpu_free[n]) m |= 2u;
        if (b_.mem[p] > v_.node_mem_free[n]) m |= 4u;
        // Of those, the ones the rules may look at (`checked`, of gpu, cpu and memory; GPU-model
        // columns always): e.g. no CPU quota anywhere means no queue deserves CPU, and CPU would block
        // every reclaim. But a pod that requests none of the checked resources it lacks is judged on
        // all it lacks: were the checked ones judged alone, its queue would take GPUs no rule looked
        // at, and the victim's take them back.
        const uint64_t lack = m ? m : (7u | model);
        uint64_t kept = 0;
        bool asks = false;
        for (int r = 0; r < R_; ++r)
            if ((lack >> r & 1u) && (r >= kNumRes || !q_.checked || q_.checked[r])) {
                kept |= uint64_t(1) << r;
                asks = asks || req_p_[r] > 0;
            }
        judged_ = asks ? kept : lack;
        block_depth_ = -2;
        for (int r = 0; r < R_; ++r)
            if (judged_ >> r & 1u) block_depth_ = std::max(block_depth_, block_r_[r]);
    }
    // At least one victim is needed (run() found no node that fits without one). Against a best of
    // one victim, this node needs a single victim of lower priority; candidates are sorted by
    // priority, so the scan stops at the first one that is not.
    const bool need_lower = best.node >= 0 && best.victims.size() == 1;
    elig_.clear();
    const int32_t dp = depth_[qp_];
    std::fill(under_.begin(), under_.begin() + std::size_t(dp + 2) * R_, 0);
    for (int64_t i = cand_start_[n]; i < cand_start_[n + 1]; ++i) {
        const CandRec& c = crec_[i];
        if (need_lower && c.priority >= best.prio_sum) {
            if (elig_.empty()) return;
            break;  // later candidates cannot be the single victim; the ones found may still be
        }
        if (!c.alive || !static_ok(p, c)) continue;
        elig_.push_back(cand_[i]);
        const int32_t ld = c.queue == qp_ ? dp : lca_depth_[c.queue];
        for (int r = 0; r < R_; ++r) under_[std::size_t(ld + 1) * R_ + r] += c.req[r];
    }
    if (elig_.empty()) return;
    // The preemptor's side, on this node: under a queue a of its path, at most the eligible victims
    // of this node whose LCA is a or below can be evicted. Where (a) fails even with all of them
    // gone, every reclaim victim whose LCA is above a is out. The deepest such a decides; the
    // victims it removes do not change the sums at or below it, so one pass is exact.
    for (int32_t d = dp - 1; d >= 0; --d)  // under_[d + 1] = eligible victims with LCA depth >= d
        for (int r = 0; r < R_; ++r)
            under_[std::size_t(d + 1) * R_ + r] += under_[std::size_t(d + 2) * R_ + r];
    int32_t block = -2;
    for (int32_t a = qp_; a >= 0 && block < -1; a = q_.parent[a]) {
        const int32_t d = depth_[a];
        for (int r = 0; r < R_; ++r) {
            const std::size_t i = std::size_t(a) * R_ + r;
            const int64_t most = under_[std::size_t(d + 1) * R_ + r];
            if ((judged_ >> r & 1u) && req_p_[r] > 0 && alloc_[i] - most + req_p_[r] > ent_[i]) block = d;
        }
    }
    if (block >= 0) {
        std::size_t k = 0;
        for (int64_t v : elig_)
            if (r_.queue[v] == qp_ || lca_depth_[r_.queue[v]] >= block) elig_[k++] = v;
        elig_.resize(k);
        if (elig_.empty()) return;
    }
    reset_node(n);
    // Monotone bound: with every eligible victim gone the pod must fit, or no subset helps.
    for (int64_t v : elig_) acc_add(v, false);
    for (int32_t i = 0; i < nd_; ++i)
        if (acc_cnt_[i]) derive(i);
    if (!fits(p, n)) return;
    reset_node(n);
    set_.clear();
    bool ok = false;
    for (int64_t v : elig_) {
        if (!victim_ok(v)) continue;
        set_.push_back(v);
        acc_add(v, true);
        if (fits(p, n)) {
            ok = true;
            break;
        }
    }
    if (ok && set_.size() > 1) {
        // Drop victims that are not needed, last added first.
        for (std::size_t j = set_.size(); j-- > 0;) {
            const int64_t v = set_[j];
            add_path(r_.queue[v], r_.req + v * R_, -1);
            std::vector<int64_t> rest(set_);
            rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(j));
            bool drop = set_ok(rest);
            if (drop) {
                rebuild(n, rest);
                drop = fits(p, n);
            }
            if (drop) {
                set_.swap(rest);
            } else {
                add_path(r_.queue[v], r_.req + v * R_, +1);
            }
        }
    }
    // (A single victim is never dropped: zero victims was checked first and did not fit.)
    for (int64_t v : set_) add_path(r_.queue[v], r_.req + v * R_, -1);  // undo the tentative sums
    if (!ok) return;
    Choice c;
    c.node = n;
    c.victims = set_;
    for (int64_t v : set_) c.prio_sum += r_.priority[v];
    if (c.better_than(best)) best = std::move(c);
}

/// Evicts the chosen victims and places the pod with place_batch on the freed node.
bool Planner::commit(int32_t p, const Choice& c, PreemptResult& out) {
    const int32_t n = c.node;
    node_req(p, n);  // charge_: what the pod is charged on n
    rebuild(n, c.victims);
    // One-node view of the freed state, in scratch.
    int64_t cpu = v_.node_cpu_free[n] + acc_cpu_, mem = v_.node_mem_free[n] + acc_mem_,
            pods = v_.node_pods_free[n] + acc_pods_;
    std::vector<int64_t> milli(dm_.begin(), dm_.begin() + nd_), dmem(dmem_.begin(), dmem_.begin() + nd_);
    std::vector<uint32_t> xcd(dx_.begin(), dx_.begin() + nd_);
    std::vector<int8_t> state(ds_.begin(), ds_.begin() + nd_);
    const int64_t dev_start[2] = {0, nd_};
    ClusterView one = node_view(v_, n, dev_start);  // the node alone, its free state in scratch
    one.node_cpu_free = &cpu;
    one.node_mem_free = &mem;
    one.node_pods_free = &pods;
    one.dev_milli_free = milli.data();
    one.dev_mem_free = dmem.data();
    one.dev_xcd_free = xcd.data();
    one.dev_state = state.data();
    const int32_t zero = 0;
    const uint8_t allowed = 1;
    Batch b1 = batch_row(b_, p, &zero, &allowed);
    b1.extra_score = nullptr;
    if (b_.dev_resv) {  // the node's slice of the device reservations, the pod's row of access
        b1.dev_resv = b_.dev_resv + d0_;
        b1.dev_resv_xcds = b_.dev_resv_xcds + d0_;
        b1.n_resv = b_.n_resv;
        b1.class_resv = b_.class_resv + std::size_t(b_.cls[p]) * std::size_t(b_.n_resv);
    }
    const Result r = place_batch(one, b1, kBinpack);
    if (r.node[0] != 0) {
        ++out.fit_mismatch;
        return false;
    }
    if (logging_) {  // a gang member: keep what this commit overwrites, for rollback_gang
        NodeUndo u{n, v_.node_cpu_free[n], v_.node_mem_free[n], v_.node_pods_free[n], ub_cpu_[n], ub_mem_[n],
                   ub_pods_[n], ub_idle_[n], idle_now_[n], {}, {}, {}, {}, {}, {}};
        u.milli.assign(v_.dev_milli_free + d0_, v_.dev_milli_free + d0_ + nd_);
        u.dmem.assign(v_.dev_mem_free + d0_, v_.dev_mem_free + d0_ + nd_);
        u.xcd.assign(v_.dev_xcd_free + d0_, v_.dev_xcd_free + d0_ + nd_);
        u.state.assign(v_.dev_state + d0_, v_.dev_state + d0_ + nd_);
        u.hold.assign(hold_.begin() + d0_, hold_.begin() + d0_ + nd_);
        u.phold.assign(phold_.begin() + d0_, phold_.begin() + d0_ + nd_);
        node_undo_.push_back(std::move(u));
        gang_vic_.insert(gang_vic_.end(), c.victims.begin(), c.victims.end());
    }
    // Write the freed-and-charged node back; update holders, candidates and queues.
    v_.node_cpu_free[n] = cpu;
    v_.node_mem_free[n] = mem;
    v_.node_pods_free[n] = pods;
    for (int32_t i = 0; i < nd_; ++i) {
        const int64_t d = d0_ + i;
        v_.dev_milli_free[d] = milli[i];
        v_.dev_mem_free[d] = dmem[i];
        v_.dev_xcd_free[d] = xcd[i];
        v_.dev_state[d] = state[i];
        hold_[d] -= acc_cnt_[i];
        phold_[d] -= acc_cnt_[i];
    }
    for (int64_t v : c.victims) {
        alive_[v] = 0;
        evicted_[v] = 1;
        crec_[cpos_[v]].alive = 0;
        const int32_t qv = r_.queue[v];
        for (int32_t a = qv; a >= 0; a = q_.parent[a])
            for (int k = 0; k < R_; ++k) {
                alloc_[std::size_t(a) * R_ + k] -= r_.req[v * R_ + k];
                if (crec_[cpos_[v]].rec_ok) recsum_[std::size_t(a) * R_ + k] -= r_.req[v * R_ + k];
            }
        out.vic.push_back(v);
        out.vic_rule.push_back(qv == qp_ ? kRuleWithinQueue
                               : q_.strategy[qp_] == kReclaimConservative ? kRuleReclaimConservative
                                                                          : kRuleReclaimAggressive);
    }
    for (int32_t a = qp_; a >= 0; a = q_.parent[a])
        for (int k = 0; k < R_; ++k) alloc_[std::size_t(a) * R_ + k] += charge_[k];
    for (std::size_t k = 0; k < r.asg_dev.size(); ++k) {
        const int32_t d = static_cast<int32_t>(r.asg_dev[k] + d0_);
        ++hold_[d];
        out.asg_dev.push_back(d);
        out.asg_milli.push_back(r.asg_milli[k]);
        out.asg_mem.push_back(r.asg_mem[k]);
        out.asg_xcds.push_back(r.asg_xcds[k]);
    }
    node_bounds(n);
    idle_now_[n] = 0;
    for (int32_t i = 0; i < nd_; ++i) idle_now_[n] += v_.dev_state[d0_ + i] == kIdle;
    return true;
}

/// One pod alone: no victims if it fits somewhere as things are, else the best node by eval_node;
/// committed if found. Returns whether it got a node.
bool Planner::try_pod(int32_t p, PreemptResult& out) {
    pod_queues(p);
    const uint8_t* mask = b_.class_mask + std::size_t(b_.cls[p]) * N_;
    Choice best;
    const bool idle_mode = b_.kind[p] == kWhole || (b_.kind[p] != kNoGpu && b_.exclusive[p]);
    for (int32_t n = 0; n < N_ && best.node < 0; ++n)  // zero victims: nothing beats it
        if (mask[n] && (!idle_mode || idle_now_[n] >= b_.count[p]) && fits_free(p, n)) best.node = n;
    // No victim anywhere: nobody in its queue it may preempt, and reclaim blocked at its leaf.
    const bool any = within_count_ > 0 || *std::min_element(block_r_.begin(), block_r_.end()) < depth_[qp_];
    if (best.node < 0 && any)
        for (int32_t n = 0; n < N_; ++n)
            if (mask[n]) eval_node(p, n, best);
    if (best.node >= 0 && commit(p, best, out)) {
        out.node[p] = best.node;
        return true;
    }
    return false;
}

void Planner::begin_gang() {
    logging_ = true;
    node_undo_.clear();
    gang_vic_.clear();
    alloc_save_ = alloc_;
    recsum_save_ = recsum_;
}

/// Undo every commit since begin_gang, newest first: nodes, holders, bounds, victims, queues and
/// the output, exactly as they were.
void Planner::rollback_gang(PreemptResult& out) {
    for (auto it = node_undo_.rbegin(); it != node_undo_.rend(); ++it) {
        const int32_t n = it->n;
        const int64_t d0 = v_.node_dev_start[n];
        v_.node_cpu_free[n] = it->cpu;
        v_.node_mem_free[n] = it->mem;
        v_.node_pods_free[n] = it->pods;
        ub_cpu_[n] = it->ub_cpu;
        ub_mem_[n] = it->ub_mem;
        ub_pods_[n] = it->ub_pods;
        ub_idle_[n] = it->ub_idle;
        idle_now_[n] = it->idle_now;
        for (std::size_t i = 0; i < it->milli.size(); ++i) {
            const int64_t d = d0 + static_cast<int64_t>(i);
            v_.dev_milli_free[d] = it->milli[i];
            v_.dev_mem_free[d] = it->dmem[i];
            v_.dev_xcd_free[d] = it->xcd[i];
            v_.dev_state[d] = it->state[i];
            hold_[d] = it->hold[i];
            phold_[d] = it->phold[i];
        }
    }
    for (int64_t v : gang_vic_) {
        alive_[v] = 1;
        evicted_[v] = 0;
        crec_[cpos_[v]].alive = 1;
    }
    alloc_.swap(alloc_save_);
    recsum_.swap(recsum_save_);
    out.vic.resize(vic_mark_);
    out.vic_rule.resize(vic_mark_);
    out.asg_dev.resize(asg_mark_);
    out.asg_milli.resize(asg_mark_);
    out.asg_mem.resize(asg_mark_);
    out.asg_xcds.resize(asg_mark_);
}

PreemptResult Planner::run() {
    setup();
    const int32_t P = b_.n_pods;
    PreemptResult out;
    out.node.assign(P, -1);
    out.vic_start.assign(std::size_t(P) + 1, 0);
    out.asg_start.assign(std::size_t(P) + 1, 0);
    for (int32_t p = 0; p < P;) {
        const int32_t g = pp_.gang ? pp_.gang[p] : -1;
        int32_t end = p + 1;  // a gang: its consecutive members [p, end)
        if (g >= 0)
            while (end < P && pp_.gang[end] == g) ++end;
        int32_t placed = 0;
        const int32_t need = g >= 0 ? pp_.gang_need[p] : 0;
        if (g >= 0) {
            begin_gang();
            vic_mark_ = out.vic.size();
            asg_mark_ = out.asg_dev.size();
        }
        for (int32_t q = p; q < end; ++q) {
            // Members are tried in order against the state the earlier ones left: a victim of one
            // frees capacity (and queue allocation) for the next. Stop once the minimum is out of reach.
            if (g >= 0 && placed + (end - q) < need) break;
            placed += try_pod(q, out);
            out.vic_start[q + 1] = static_cast<int64_t>(out.vic.size());
            out.asg_start[q + 1] = static_cast<int64_t>(out.asg_dev.size());
        }
        if (g >= 0) {
            logging_ = false;
            if (placed < need) {  // all or nothing: no victim is evicted for a gang short of its minimum
                rollback_gang(out);
                for (int32_t q = p; q < end; ++q) {
                    out.node[q] = -1;
                    out.vic_start[q + 1] = static_cast<int64_t>(vic_mark_);
                    out.asg_start[q + 1] = static_cast<int64_t>(asg_mark_);
                }
            }
        }
        p = end;
    }
    out.allocated = alloc_;
    return out;
}

}  // namespace

PreemptResult plan_preemptions(ClusterView& view, const RunningPods& running, const Preemptors& pending,
                               const PreemptQueues& queues) {
    Planner planner(view, running, pending, queues);
    return planner.run();
}

}  // namespace kaiwo
