// Small integer helpers shared by the placement and preemption kernels.
#pragma once

#include <array>
#include <cstdint>

namespace kaiwo {

/// Compute of one logical GPU, in milli-units.
constexpr int64_t kFullMilli = 1000;

/// Bits set in an XCD mask (bits 0..7, checked by the bindings). A table, because without
/// -mpopcnt the builtin is a library call and this runs in the innermost device loops.
struct Pop8 {
    std::array<uint8_t, 256> v{};
    constexpr Pop8() {
        for (int i = 1; i < 256; ++i) v[i] = static_cast<uint8_t>(v[i >> 1] + (i & 1));
    }
};
inline constexpr Pop8 kPop8{};
inline int popcount(uint32_t x) { return kPop8.v[x & 0xFFu]; }

/// Non-negative integer division rounding up, as the references' `-(-a // b)`.
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace kaiwo
