"""asv benchmarks of ``kaiwo simulate``'s replay: one FGD-paper run per policy on the bundled trace.

Each timed call replays the bundled openb ``default`` pod list (seed 42: 10,866 offers) on the
openb GPU node list (1,213 nodes, 6,212 GPUs) with one strategy plugin, the metrics included.
Loading the trace and building the seed's arrivals and cluster happen in ``setup`` (they are
cached on the scenario), so the timing is the replay itself: placement in the compiled kernel
plus the allocation curve and fragmentation measure.
"""
from __future__ import annotations

from kaiwo.simulator import offline as S


class Replay:
    params = (list(S.POLICIES),)
    param_names = ["policy"]
    number = 1
    repeat = (3, 10, 30.0)
    timeout = 300

    def setup(self, policy):
        self.scenario = S.load_scenario()
        S._cluster_and_batch(self.scenario, 42)        # arrivals and cluster, cached
        self.scenario.workload()

    def time_replay(self, policy):
        S.replay(self.scenario, policy, 42)

    def peakmem_replay(self, policy):
        S.replay(self.scenario, policy, 42)

    def track_alloc_at_130(self, policy):
        return S.replay(self.scenario, policy, 42).at(130)

    track_alloc_at_130.unit = "%"
