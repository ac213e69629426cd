// Rebalancing planner: see rebalance.hpp for the semantics.
//
// The planner keeps its own copy of the cluster's free state plus, per device, the holders on it (to
// give charges back exactly), and tries things tentatively: a trial saves what it may change and
// restores it when it fails. Fits are always place_batch's.
#include "rebalance.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <cstring>
#include <limits>
#include <utility>

namespace kaiwo {
namespace {

constexpr int64_t kFullMilli = 1000;
constexpr int32_t kMaxTrials = 4;  ///< nodes tried per member, fewest evictions first (rebalance.hpp)

struct Hold {
    int64_t h;          ///< holder: running row, or R + pending row
    int64_t milli, mem;
    uint32_t xcds;
    uint8_t claims;     ///< its xcds are taken out of the free XCDs
    uint8_t excl;       ///< it held the device alone
};

struct Charge {
    int32_t dev;
    int64_t milli, mem;
    uint32_t xcds;
};

/// Everything a trial may change, to put back if it fails.
struct Saved {
    int32_t node = -1;  ///< -1: the whole cluster was saved; else only this node (and its devices)
    int64_t d0 = 0;
    std::vector<int64_t> cpu, mem, pods, milli, dmem;
    std::vector<uint32_t> xcd;
    std::vector<int8_t> st;
    std::vector<std::pair<int32_t, std::vector<Hold>>> holders;  ///< devices whose holders changed
    std::vector<std::pair<int64_t, std::pair<int32_t, std::vector<Charge>>>> locs;  ///< holders moved
    std::size_t budget_log = 0;
};

class Rebalancer {
public:
    Rebalancer(const ClusterView& v, const RebalanceRunning& r, const Batch& p, const RebalanceConfig& c)
        : in_(v), r_(r), p_(p), c_(c), N_(v.n_nodes), G_(v.n_devices), R_(r.batch.n_pods), P_(p.n_pods) {}

    RebalancePlan run();

private:
    // ---- state ----
    void setup();
    int64_t shape_cpu(int64_t h) const { return h < R_ ? r_.batch.cpu[h] : p_.cpu[h - R_]; }
    int64_t shape_mem(int64_t h) const { return h < R_ ? r_.batch.mem[h] : p_.mem[h - R_]; }
    const Batch& batch_of(int64_t h) const { return h < R_ ? r_.batch : p_; }
    int32_t row_of(int64_t h) const { return static_cast<int32_t>(h < R_ ? h : h - R_); }

    void log_holders(int32_t d) {
        if (logging_.empty()) return;
        for (Saved* s : logging_) s->holders.emplace_back(d, holders_[d]);
    }
    void log_loc(int64_t h) {
        for (Saved* s : logging_) s->locs.push_back({h, {loc_[h], charges_[h]}});
    }
    /// Start a trial that may change anything (node < 0) or only node `node` and its devices.
    void begin(Saved& s, int32_t node = -1) {
        s.node = node;
        if (node < 0) {
            s.cpu = cpu_; s.mem = mem_; s.pods = pods_; s.milli = milli_; s.dmem = dmem_; s.xcd = xcd_; s.st = st_;
        } else {
            const int64_t d0 = in_.node_dev_start[node], d1 = in_.node_dev_start[node + 1];
            s.d0 = d0;
            s.cpu.assign(1, cpu_[node]); s.mem.assign(1, mem_[node]); s.pods.assign(1, pods_[node]);
            s.milli.assign(milli_.begin() + d0, milli_.begin() + d1);
            s.dmem.assign(dmem_.begin() + d0, dmem_.begin() + d1);
            s.xcd.assign(xcd_.begin() + d0, xcd_.begin() + d1);
            s.st.assign(st_.begin() + d0, st_.begin() + d1);
        }
        s.holders.clear();
        s.locs.clear();
        s.budget_log = blog_.size();
        logging_.push_back(&s);
    }
    void end(Saved& s) { logging_.erase(std::find(logging_.begin(), logging_.end(), &s)); }
    void rollback(Saved& s) {
        end(s);
        if (s.node < 0) {
            cpu_ = s.cpu; mem_ = s.mem; pods_ = s.pods; milli_ = s.milli; dmem_ = s.dmem; xcd_ = s.xcd; st_ = s.st;
        } else {
            cpu_[s.node] = s.cpu[0]; mem_[s.node] = s.mem[0]; pods_[s.node] = s.pods[0];
            std::copy(s.milli.begin(), s.milli.end(), milli_.begin() + s.d0);
            std::copy(s.dmem.begin(), s.dmem.end(), dmem_.begin() + s.d0);
            std::copy(s.xcd.begin(), s.xcd.end(), xcd_.begin() + s.d0);
            std::copy(s.st.begin(), s.st.end(), st_.begin() + s.d0);
        }
        for (auto it = s.holders.rbegin(); it != s.holders.rend(); ++it) holders_[it->first] = std::move(it->second);
        for (auto it = s.locs.rbegin(); it != s.locs.rend(); ++it) {
            loc_[it->first] = it->second.first;
            charges_[it->first] = std::move(it->second.second);
        }
        while (blog_.size() > s.budget_log) {
            budget(blog_.back(), -1);
            blog_.pop_back();
        }
        bind_view();
    }
    void bind_view();

    void release(int64_t h);
    bool place(int64_t h, const uint8_t* mask_row, int32_t only_node);
    void adopt(int64_t h, const Result& res, int32_t i, int32_t n, int64_t d0, bool log_devs);
    bool fits_alone(int64_t h, int32_t n);

    // ---- budgets ----
    bool allowed(int64_t v) const;
    void budget(int64_t v, int sign);
    void spend(int64_t v) { budget(v, +1); blog_.push_back(v); }

    bool make_room(int32_t first, int32_t last, int32_t need);
    bool room_for_member(int32_t m, int32_t unit);
    bool evictions(int64_t h, int32_t n, std::size_t limit, std::vector<int64_t>& out);
    void relieve(int32_t n);
    void defragment();
    double node_frag(int32_t n);
    void record(int64_t v, int32_t from, int8_t reason, int32_t unit);
    void refresh_candidates();

    const ClusterView& in_;
    const RebalanceRunning& r_;
    const Batch& p_;
    const RebalanceConfig& c_;
    const int32_t N_, G_;
    const int64_t R_, P_;

    std::vector<int64_t> cpu_, mem_, pods_, milli_, dmem_;
    std::vector<uint32_t> xcd_;
    std::vector<int8_t> st_;
    ClusterView view_;
    std::vector<std::vector<Hold>> holders_;   ///< [G]
    std::vector<int32_t> loc_;                 ///< [R+P] node, -1 = not placed
    std::vector<std::vector<Charge>> charges_; ///< [R+P]
    std::vector<uint8_t> moved_;               ///< [R]
    std::vector<Saved*> logging_;
    std::vector<std::vector<int64_t>> by_node_;  ///< [N] movable running pods, in eviction order
    std::vector<int64_t> sorted_;              ///< scratch: a node's candidates by row

    int64_t moves_used_ = 0;
    std::vector<int64_t> qmoves_;              ///< [Q+1] (Q = pods without a queue)
    std::vector<int64_t> qused_;               ///< [Q,3]
    std::vector<int64_t> pdb_used_;            ///< [B]
    std::vector<int64_t> blog_;                ///< pods whose budget was spent, in order

    std::vector<uint8_t> mask_;                ///< [N] scratch class-mask row
    std::vector<uint8_t> hot_;                 ///< [N]
    Batch workload_;                           ///< defragmentation's target workload (workload only)
    RebalancePlan plan_;
};

void Rebalancer::bind_view() {
    view_ = in_;
    view_.node_cpu_free = cpu_.data();
    view_.node_mem_free = mem_.data();
    view_.node_pods_free = pods_.data();
    view_.dev_milli_free = milli_.data();
    view_.dev_mem_free = dmem_.data();
    view_.dev_xcd_free = xcd_.data();
    view_.dev_state = st_.data();
    view_.node_gpu_kinds = nullptr;
}

void Rebalancer::setup() {
    cpu_.assign(in_.node_cpu_free, in_.node_cpu_free + N_);
    mem_.assign(in_.node_mem_free, in_.node_mem_free + N_);
    pods_.assign(in_.node_pods_free, in_.node_pods_free + N_);
    milli_.assign(in_.dev_milli_free, in_.dev_milli_free + G_);
    dmem_.assign(in_.dev_mem_free, in_.dev_mem_free + G_);
    xcd_.assign(in_.dev_xcd_free, in_.dev_xcd_free + G_);
    st_.assign(in_.dev_state, in_.dev_state + G_);
    bind_view();
    holders_.assign(G_, {});
    loc_.assign(R_ + P_, -1);
    charges_.assign(R_ + P_, {});
    moved_.assign(R_, 0);
    for (int64_t v = 0; v < R_; ++v) {
        loc_[v] = r_.node[v];
        const uint8_t excl = r_.batch.kind[v] == kWhole || (r_.batch.kind[v] != kNoGpu && r_.batch.exclusive[v]);
        for (int64_t k = r_.asg_start[v]; k < r_.asg_start[v + 1]; ++k) {
            const int32_t d = r_.asg_dev[k];
            holders_[d].push_back({v, r_.asg_milli[k], r_.asg_mem[k], r_.asg_xcds[k], r_.xcd[v], excl});
            charges_[v].push_back({d, r_.asg_milli[k], r_.asg_mem[k], r_.asg_xcds[k]});
        }
    }
    qmoves_.assign(std::size_t(c_.n_queues) + 1, 0);
    qused_.assign(std::size_t(c_.n_queues) * 3, 0);
    pdb_used_.assign(c_.n_pdbs, 0);
    mask_.assign(N_, 0);
    hot_.assign(N_, 0);
    plan_.asg_start.assign(1, 0);
}

/// Give holder h's charges back (see rebalance.hpp, "Holders").
void Rebalancer::release(int64_t h) {
    const int32_t n = loc_[h];
    log_loc(h);
    cpu_[n] += shape_cpu(h);
    mem_[n] += shape_mem(h);
    pods_[n] += 1;
    for (const Charge& c : charges_[h]) {
        const int32_t d = c.dev;
        log_holders(d);
        auto& hs = holders_[d];
        uint8_t excl = 0, claims = 0;
        for (std::size_t i = 0; i < hs.size(); ++i)
            if (hs[i].h == h) {
                excl = hs[i].excl;
                claims = hs[i].claims;
                hs.erase(hs.begin() + static_cast<std::ptrdiff_t>(i));
                break;
            }
        if (hs.empty()) {
            milli_[d] = kFullMilli;
            dmem_[d] = in_.dev_mem_cap[d];
            xcd_[d] = in_.dev_xcd_mask[d];
            st_[d] = kIdle;
            continue;
        }
        milli_[d] = std::min(kFullMilli, milli_[d] + c.milli);
        dmem_[d] = std::min(in_.dev_mem_cap[d], dmem_[d] + c.mem);
        uint32_t still = 0;
        for (const Hold& o : hs)
            if (o.claims) still |= o.xcds;
        if (claims) xcd_[d] = (xcd_[d] | c.xcds) & ~still & in_.dev_xcd_mask[d];
        if (excl) st_[d] = kSharedDev;  // inconsistent input only: an exclusive holder is alone
    }
    loc_[h] = -1;
    charges_[h].clear();
}

/// Place holder h with place_batch (kBinpack): on node `only_node` alone (a one-node view), or on
/// the nodes of `mask_row`. Records its charges and holds on success.
bool Rebalancer::place(int64_t h, const uint8_t* mask_row, int32_t only_node) {
    const int32_t zero = 0;
    const uint8_t one = 1;
    if (only_node >= 0) {
        const int32_t n = only_node;
        const int64_t d0 = in_.node_dev_start[n];
        const int64_t starts[2] = {0, in_.node_dev_start[n + 1] - d0};
        // Devices on the node may change: log them before place_batch writes them.
        if (!logging_.empty())
            for (int64_t d = d0; d < d0 + starts[1]; ++d) log_holders(static_cast<int32_t>(d));
        ClusterView node = node_view(view_, n, starts);
        const Result res = place_batch(node, batch_row(batch_of(h), row_of(h), &zero, &one), kBinpack);
        if (res.node[0] < 0) return false;
        adopt(h, res, 0, n, d0, false);
        return true;
    }
    const Result res = place_batch(view_, batch_row(batch_of(h), row_of(h), &zero, mask_row), kBinpack);
    if (res.node[0] < 0) return false;
    adopt(h, res, 0, res.node[0], 0, true);
    return true;
}

/// Holder h now holds what row i of `res` was given on node n (device indices offset by d0).
void Rebalancer::adopt(int64_t h, const Result& res, int32_t i, int32_t n, int64_t d0, bool log_devs) {
    const Batch& src = batch_of(h);
    const int32_t p = row_of(h);
    log_loc(h);
    loc_[h] = n;
    charges_[h].clear();
    const int8_t kind = src.kind[p];
    const uint8_t excl = kind == kWhole || (kind != kNoGpu && src.exclusive[p]);
    const uint8_t claims = kind == kXcd && !src.exclusive[p];
    for (int64_t k = res.asg_start[i]; k < res.asg_start[i + 1]; ++k) {
        const int32_t d = static_cast<int32_t>(res.asg_dev[k] + d0);
        if (log_devs) log_holders(d);
        holders_[d].push_back({h, res.asg_milli[k], res.asg_mem[k], res.asg_xcds[k], claims, excl});
        charges_[h].push_back({d, res.asg_milli[k], res.asg_mem[k], res.asg_xcds[k]});
    }
}

/// Whether h would fit on node n as it is now (nothing is changed).
bool Rebalancer::fits_alone(int64_t h, int32_t n) {
    Saved s;
    begin(s, n);
    const bool ok = place(h, nullptr, n);
    rollback(s);
    return ok;
}

bool Rebalancer::allowed(int64_t v) const {
    if (!r_.movable[v] || moved_[v] || loc_[v] < 0) return false;
    if (moves_used_ + 1 > c_.max_moves) return false;
    const int32_t q = r_.queue[v];
    if (qmoves_[q < 0 ? c_.n_queues : q] + 1 > c_.max_moves_per_queue) return false;
    for (int32_t a = q; a >= 0; a = c_.parent[a])
        for (int k = 0; k < 3; ++k) {
            const int64_t need = r_.req[v * 3 + k];
            if (need > 0 && c_.slack[std::size_t(a) * 3 + k] - qused_[std::size_t(a) * 3 + k] - need < 0) return false;
        }
    for (int64_t i = r_.pdb_start[v]; i < r_.pdb_start[v + 1]; ++i)
        if (pdb_used_[r_.pdb[i]] + 1 > c_.pdb_allowed[r_.pdb[i]]) return false;
    return true;
}

void Rebalancer::budget(int64_t v, int sign) {
    moves_used_ += sign;
    moved_[v] = sign > 0;
    const int32_t q = r_.queue[v];
    qmoves_[q < 0 ? c_.n_queues : q] += sign;
    for (int32_t a = q; a >= 0; a = c_.parent[a])
        for (int k = 0; k < 3; ++k) qused_[std::size_t(a) * 3 + k] += sign * r_.req[v * 3 + k];
    for (int64_t i = r_.pdb_start[v]; i < r_.pdb_start[v + 1]; ++i) pdb_used_[r_.pdb[i]] += sign;
}

/// Per node, the running pods that may still move, in (GPU milli held desc, cpu desc, row) order.
void Rebalancer::refresh_candidates() {
    by_node_.assign(N_, {});
    std::vector<int64_t> gpu(R_, 0);
    for (int64_t v = 0; v < R_; ++v)
        if (loc_[v] >= 0 && r_.movable[v] && !moved_[v]) {
            for (const Charge& c : charges_[v]) gpu[v] += c.milli;
            by_node_[loc_[v]].push_back(v);
        }
    for (auto& list : by_node_)
        std::sort(list.begin(), list.end(), [&](int64_t a, int64_t b) {
            if (gpu[a] != gpu[b]) return gpu[a] > gpu[b];
            if (r_.batch.cpu[a] != r_.batch.cpu[b]) return r_.batch.cpu[a] > r_.batch.cpu[b];
            return a < b;
        });
}

/// Greedy evictions on node n until h fits there alone; false if it never does or needs more
/// than `limit`. Nothing is changed.
bool Rebalancer::evictions(int64_t h, int32_t n, std::size_t limit, std::vector<int64_t>& out) {
    out.clear();
    const std::vector<int64_t>& cand = by_node_[n];
    if (cand.empty()) return false;
    sorted_.assign(cand.begin(), cand.end());
    std::sort(sorted_.begin(), sorted_.end());
    // A bound first: with every candidate gone, CPU, memory and a pod slot must suffice (exact
    // fits are place_batch's, below).
    {
        int64_t cpu = cpu_[n], mem = mem_[n], pods = pods_[n];
        for (int64_t v : cand) {
            cpu += r_.batch.cpu[v];
            mem += r_.batch.mem[v];
            pods += 1;
        }
        if (cpu < shape_cpu(h) || mem < shape_mem(h) || pods < 1) return false;
        // Devices: `count` of them must be able to host the request once every candidate is gone:
        // idle by then (every holder a candidate), or -- for a sharing request -- not held alone
        // by a pod that stays, with enough compute share left.
        const Batch& b = batch_of(h);
        const int32_t p = row_of(h);
        if (b.kind[p] != kNoGpu) {
            const bool whole = b.kind[p] == kWhole || b.exclusive[p];
            int32_t able = 0;
            for (int64_t d = in_.node_dev_start[n]; d < in_.node_dev_start[n + 1]; ++d) {
                bool all = true, pinned = false;
                int64_t back = 0;
                for (const Hold& o : holders_[d]) {
                    if (o.h < R_ && std::binary_search(sorted_.begin(), sorted_.end(), o.h)) {
                        back += o.milli;
                    } else {
                        all = false;
                        pinned = pinned || o.excl;
                    }
                }
                able += all || (!whole && !pinned && milli_[d] + back >= b.milli[p]);
            }
            if (able < b.count[p]) return false;
        }
    }
    Saved s;
    begin(s, n);
    bool ok = false;
    for (int64_t v : cand) {
        if (out.size() >= limit) break;
        if (!allowed(v)) continue;
        spend(v);
        release(v);
        out.push_back(v);
        if (fits_alone(h, n)) {
            ok = true;
            break;
        }
    }
    rollback(s);
    return ok;
}

void Rebalancer::record(int64_t v, int32_t from, int8_t reason, int32_t unit) {
    plan_.pod.push_back(v);
    plan_.from.push_back(from);
    plan_.to.push_back(loc_[v]);
    plan_.reason.push_back(reason);
    plan_.unit.push_back(unit);
    for (const Charge& c : charges_[v]) {
        plan_.asg_dev.push_back(c.dev);
        plan_.asg_milli.push_back(c.milli);
        plan_.asg_mem.push_back(c.mem);
        plan_.asg_xcds.push_back(c.xcds);
    }
    plan_.asg_start.push_back(static_cast<int64_t>(plan_.asg_dev.size()));
}

/// Room for pending row m (holder R + m) by moving pods off one node; commits on success.
bool Rebalancer::room_for_member(int32_t m, int32_t unit) {
    const int64_t h = R_ + m;
    const uint8_t* row = p_.class_mask + std::size_t(p_.cls[m]) * std::size_t(N_);
    if (place(h, row, -1)) return true;
    std::vector<std::pair<std::size_t, int32_t>> order;  // (evictions, node)
    std::vector<std::vector<int64_t>> sets(N_);
    // Nodes needing more evictions than the best so far are not searched to the end.
    std::size_t best = static_cast<std::size_t>(c_.max_moves - moves_used_);
    // Every node needs at least one eviction (the member fits nowhere as things are), so once
    // kMaxTrials nodes need exactly one, no later node can be among the first kMaxTrials.
    int32_t ones = 0;
    for (int32_t n = 0; n < N_ && ones < kMaxTrials; ++n) {
        if (!row[n]) continue;
        if (evictions(h, n, best, sets[n])) {
            order.push_back({sets[n].size(), n});
            best = std::min(best, sets[n].size());
            ones += sets[n].size() == 1;
        }
    }
    std::sort(order.begin(), order.end());
    if (order.size() > std::size_t(kMaxTrials)) order.resize(kMaxTrials);
    for (const auto& [k, n] : order) {
        Saved s;
        begin(s);
        const std::vector<int64_t>& ev = sets[n];
        std::vector<int32_t> from;
        for (int64_t v : ev) {
            spend(v);
            release(v);
        }
        bool ok = place(h, nullptr, n);
        for (std::size_t i = 0; ok && i < ev.size(); ++i) {
            const uint8_t* vrow = r_.batch.class_mask + std::size_t(r_.batch.cls[ev[i]]) * std::size_t(N_);
            std::memcpy(mask_.data(), vrow, std::size_t(N_));
            mask_[n] = 0;
            ok = place(ev[i], mask_.data(), -1);
        }
        if (!ok) {
            rollback(s);
            continue;
        }
        end(s);
        for (int64_t v : ev) record(v, n, kMoveConsolidation, unit);
        return true;
    }
    return false;
}

/// The unit of pending rows [first, last]: fits now, or gets room by moves, or nothing changes.
bool Rebalancer::make_room(int32_t first, int32_t last, int32_t need) {
    Saved s;
    begin(s);
    const std::size_t moves_before = plan_.pod.size();
    int32_t placed = 0;
    for (int32_t m = first; m <= last; ++m) placed += room_for_member(m, first);
    if (placed < need) {
        rollback(s);
        plan_.pod.resize(moves_before);
        plan_.from.resize(moves_before);
        plan_.to.resize(moves_before);
        plan_.reason.resize(moves_before);
        plan_.unit.resize(moves_before);
        plan_.asg_start.resize(moves_before + 1);
        plan_.asg_dev.resize(plan_.asg_start.back());
        plan_.asg_milli.resize(plan_.asg_start.back());
        plan_.asg_mem.resize(plan_.asg_start.back());
        plan_.asg_xcds.resize(plan_.asg_start.back());
        return false;
    }
    end(s);
    // Members that fit without a move are held too; only a unit that needed moves is "unlocked".
    const bool moved = plan_.pod.size() > moves_before;
    for (int32_t m = first; m <= last; ++m)
        if (loc_[R_ + m] >= 0) (moved ? plan_.unlocked : plan_.fits_now).push_back(m);
    return true;
}

void Rebalancer::relieve(int32_t n) {
    int64_t gpu = 0;
    for (int64_t d = in_.node_dev_start[n]; d < in_.node_dev_start[n + 1]; ++d)
        for (const Hold& o : holders_[d]) gpu += o.milli;
    const int64_t cpu = in_.node_cpu_cap[n] - cpu_[n];
    const bool by_gpu = gpu > 0;
    const double base = static_cast<double>(by_gpu ? gpu : cpu);
    if (base <= 0.0) return;
    double est = c_.load[n];
    const std::vector<int64_t> cand = by_node_[n];
    for (int64_t v : cand) {
        if (est <= c_.hot_threshold) break;
        if (!allowed(v)) continue;
        int64_t share = 0;
        if (by_gpu)
            for (const Charge& c : charges_[v]) share += c.milli;
        else
            share = r_.batch.cpu[v];
        if (share == 0) continue;  // moving it would not lower the estimate
        Saved s;
        begin(s);
        spend(v);
        release(v);
        const uint8_t* vrow = r_.batch.class_mask + std::size_t(r_.batch.cls[v]) * std::size_t(N_);
        for (int32_t k = 0; k < N_; ++k) mask_[k] = vrow[k] && !hot_[k];
        if (!place(v, mask_.data(), -1)) {
            rollback(s);
            continue;
        }
        end(s);
        record(v, n, kMoveHotSpot, -1);
        est -= c_.load[n] * static_cast<double>(share) / base;
    }
}

/// F of node n as the state is now.
double Rebalancer::node_frag(int32_t n) {
    const int64_t starts[2] = {0, in_.node_dev_start[n + 1] - in_.node_dev_start[n]};
    return node_fragmentation(node_view(view_, n, starts), workload_)[0];
}

/// Goal (b), see rebalance.hpp "Defragmentation".
void Rebalancer::defragment() {
    {
        // The typical pod: the running then pending rows as one batch, every node allowed.
        const int64_t H = R_ + P_;
        std::vector<int64_t> cpu(H), gmem(H);
        std::vector<int8_t> kind(H);
        std::vector<int32_t> count(H), milli(H), cls(H, 0);
        std::vector<uint8_t> excl(H);
        for (int64_t h = 0; h < H; ++h) {
            const Batch& b = batch_of(h);
            const int32_t p = row_of(h);
            cpu[h] = b.cpu[p]; kind[h] = b.kind[p]; count[h] = b.count[p]; milli[h] = b.milli[p];
            gmem[h] = b.gpu_mem[p]; excl[h] = b.exclusive[p];
        }
        Batch all;
        all.n_pods = static_cast<int32_t>(H);
        all.cpu = cpu.data(); all.kind = kind.data(); all.count = count.data(); all.milli = milli.data();
        all.gpu_mem = gmem.data(); all.exclusive = excl.data(); all.cls = cls.data();
        workload_.workload = batch_workload(all);
        for (WorkloadShape& w : workload_.workload) w.cls = -1;
    }
    std::vector<double> F = node_fragmentation(view_, workload_);
    for (double f : F) plan_.frag_before += f;
    // gain(v -> t) = src(v) + dst(shape of v, t): the target's part depends only on the shape and
    // t's state, so it is kept per (shape, node) until t changes. F' >= 0 bounds both parts
    // (src <= F[s], dst <= F[t]; float addition is monotone), so a pod or node whose bound cannot
    // beat the best so far, or reach the threshold, is not tried: the outcome is the same.
    constexpr double kUnknown = -std::numeric_limits<double>::infinity();
    constexpr double kNoFit = std::numeric_limits<double>::lowest();
    std::map<std::array<int64_t, 7>, int32_t> shape_ids;
    std::vector<std::vector<double>> dst;  // [shape][N], kUnknown = not computed, kNoFit = does not fit
    while (moves_used_ < c_.max_moves) {
        double best = 0.0, max_f = 0.0;
        for (int32_t t = 0; t < N_; ++t)
            if (!hot_[t]) max_f = std::max(max_f, F[t]);
        int64_t bv = -1;
        int32_t bt = -1;
        for (int64_t v = 0; v < R_; ++v) {
            const int32_t s = loc_[v];
            if (s < 0 || !(F[s] + max_f > best && F[s] + max_f >= c_.defrag_min_gain) || !allowed(v)) continue;
            const std::array<int64_t, 7> key = {r_.batch.cpu[v], r_.batch.mem[v], r_.batch.kind[v], r_.batch.count[v],
                                                r_.batch.milli[v], r_.batch.gpu_mem[v], r_.batch.exclusive[v]};
            const auto ins = shape_ids.emplace(key, static_cast<int32_t>(dst.size()));
            if (ins.second) dst.emplace_back(N_, kUnknown);
            std::vector<double>& to = dst[ins.first->second];
            const uint8_t* vrow = r_.batch.class_mask + std::size_t(r_.batch.cls[v]) * std::size_t(N_);
            Saved out;
            begin(out, s);
            spend(v);
            release(v);
            const double src = F[s] - node_frag(s);
            for (int32_t t = 0; t < N_; ++t) {
                if (t == s || !vrow[t] || hot_[t]) continue;
                if (!(src + F[t] > best && src + F[t] >= c_.defrag_min_gain)) continue;
                if (to[t] == kUnknown) {
                    Saved in;
                    begin(in, t);
                    to[t] = place(v, nullptr, t) ? F[t] - node_frag(t) : kNoFit;
                    rollback(in);
                }
                if (to[t] == kNoFit) continue;
                const double gain = src + to[t];
                if (gain > best) {
                    best = gain;
                    bv = v;
                    bt = t;
                }
            }
            rollback(out);
        }
        if (bv < 0 || best < c_.defrag_min_gain) break;
        const int32_t s = loc_[bv];
        Saved keep;
        begin(keep);
        spend(bv);
        release(bv);
        place(bv, nullptr, bt);
        end(keep);
        record(bv, s, kMoveDefragmentation, -1);
        F[s] = node_frag(s);
        F[bt] = node_frag(bt);
        for (auto& row : dst) row[s] = row[bt] = kUnknown;
    }
    for (double f : F) plan_.frag_after += f;
}

RebalancePlan Rebalancer::run() {
    setup();
    refresh_candidates();
    // Single pods of a shape that found no room: the same shape finds none until the state changes.
    std::set<std::array<int64_t, 8>> no_room;
    // (a) consolidation, unit by unit in the given order.
    int32_t p = 0;
    while (p < P_ && plan_.units_tried < c_.max_units) {
        int32_t last = p;
        const int32_t g = p_.gang ? p_.gang[p] : -1;
        if (g >= 0)
            while (last + 1 < P_ && p_.gang[last + 1] == g) ++last;
        const int32_t need = std::max(g >= 0 ? p_.gang_need[p] : 1, 1);
        ++plan_.units_tried;
        const std::array<int64_t, 8> key = {p_.cpu[p], p_.mem[p], p_.kind[p], p_.count[p], p_.milli[p],
                                            p_.gpu_mem[p], p_.exclusive[p], p_.cls[p]};
        const bool single = last == p;
        if (single && no_room.count(key)) {  // fits nowhere, and moves found no room: still so
            ++plan_.units_blocked;
            p = last + 1;
            continue;
        }
        // Fits now (a gang: at least its minimum)? Then it holds that room, as the scheduler would
        // give it, and needs no move. place_batch rolls a gang that does not fit back itself.
        Batch b = p_;
        b.n_pods = last - p + 1;
        b.cpu += p; b.mem += p; b.kind += p; b.count += p; b.milli += p; b.gpu_mem += p;
        b.exclusive += p; b.cls += p;
        if (b.gang) { b.gang += p; b.gang_need += p; }
        const Result res = place_batch(view_, b, kBinpack);
        int32_t got = 0;
        for (int32_t i = 0; i < b.n_pods; ++i) got += res.node[i] >= 0;
        if (got > 0) {
            for (int32_t i = 0; i < b.n_pods; ++i)
                if (res.node[i] >= 0) {
                    adopt(R_ + p + i, res, i, res.node[i], 0, false);
                    plan_.fits_now.push_back(p + i);
                }
            p = last + 1;
            continue;
        }
        ++plan_.units_blocked;
        if (moves_used_ < c_.max_moves) {
            if (make_room(p, last, need)) {
                refresh_candidates();
                no_room.clear();
            } else if (single) {
                no_room.insert(key);
            }
        }
        p = last + 1;
    }
    std::vector<int32_t> hot;
    if (c_.load)
        for (int32_t n = 0; n < N_; ++n)
            if (c_.load[n] > c_.hot_threshold) {
                hot_[n] = 1;
                hot.push_back(n);
            }
    // (b) defragmentation.
    if (c_.defrag_min_gain >= 0.0) {
        defragment();
        refresh_candidates();
    }
    // (c) hot-spot relief.
    if (c_.load) {
        std::sort(hot.begin(), hot.end(), [this](int32_t a, int32_t b) {
            return c_.load[a] != c_.load[b] ? c_.load[a] > c_.load[b] : a < b;
        });
        plan_.hot_nodes = static_cast<int64_t>(hot.size());
        for (int32_t n : hot) relieve(n);
    }
    return plan_;
}

}  // namespace

RebalancePlan plan_rebalance(const ClusterView& view, const RebalanceRunning& running, const Batch& pending,
                             const RebalanceConfig& config) {
    Rebalancer r(view, running, pending, config);
    return r.run();
}

}  // namespace kaiwo
