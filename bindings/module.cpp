// The private compiled module `kaiwo_core._core`. Each area registers itself; this file only lists them.
#include "register.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "Compiled kernels of kaiwo_core (private; use the kaiwo_core Python API).";
    kaiwo::bindings::register_placement(m);
    kaiwo::bindings::register_queues(m);
    kaiwo::bindings::register_preempt(m);
    kaiwo::bindings::register_rebalance(m);
}
