// One `register_<area>` function per area of the compiled module; bindings/module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace kaiwo::bindings {

/// Adds `place_batch` and the placement enums (KIND_*, STATE_*, STRATEGY_*, REASON_*) to the module.
void register_placement(pybind11::module_& m);

/// Adds `fair_share`, `order_pending` and their constants (QUEUE_RESOURCES, PHASE_*, ORDER_*).
void register_queues(pybind11::module_& m);

/// Adds `plan_preemptions` and its constants (RULE_*, RULE_NAMES, RECLAIM_*).
void register_preempt(pybind11::module_& m);

/// Adds `plan_rebalance` and its constants (MOVE_*).
void register_rebalance(pybind11::module_& m);

}  // namespace kaiwo::bindings
