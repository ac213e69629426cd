"""asv benchmarks of Kaiwo (see ``asv_bench/asv.conf.json``); scales and targets in DESIGN.md."""
