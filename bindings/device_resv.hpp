// The optional device-reservation keys shared by the placement batch and the preemption pending
// dict (csrc/placement.hpp, Batch::dev_resv): validated here once, so both kernels may trust them.
#pragma once

#include <string>

#include "inputs.hpp"
#include "placement.hpp"

namespace kaiwo::bindings {

/// dev_resv int32[G] (-1 = none), dev_resv_xcds uint32[G] (within dev_xcd_mask; 0 = the whole
/// device; 0 where not held) and class_resv uint8[C, R] (0/1), all three or none; into `bt`.
inline void read_device_resv(Inputs& in, Batch& bt, py::ssize_t G, py::ssize_t C, const uint32_t* dev_xcd_mask) {
    const bool any = in.has("dev_resv") || in.has("dev_resv_xcds") || in.has("class_resv");
    if (!any) return;
    for (const char* k : {"dev_resv", "dev_resv_xcds", "class_resv"})
        if (!in.has(k)) fail(in.at(k), "dev_resv, dev_resv_xcds and class_resv come together");
    const std::string devs = "devices = len(dev_gpu)";
    const int32_t* resv = cst<int32_t>(in.array1<int32_t>("dev_resv", G, devs));
    const uint32_t* xcds = cst<uint32_t>(in.array1<uint32_t>("dev_resv_xcds", G, devs));
    py::array cr = in.array<uint8_t>("class_resv", 2);
    if (cr.shape(0) != C)
        fail(in.at("class_resv"), "expected " + std::to_string(C) + " rows (one per class of class_mask), got " +
                                      std::to_string(cr.shape(0)));
    const py::ssize_t R = cr.shape(1);
    const uint8_t* access = cst<uint8_t>(cr);
    for (py::ssize_t i = 0; i < C * R; ++i)
        if (access[i] > 1) fail(in.at("class_resv"), "must be 0 or 1, got " + std::to_string(access[i]));
    for (py::ssize_t d = 0; d < G; ++d) {
        const std::string at = " at device " + std::to_string(d);
        if (resv[d] < -1 || resv[d] >= R)
            fail(in.at("dev_resv"), "reservation " + std::to_string(resv[d]) + " out of range [-1, " +
                                        std::to_string(R) + ")" + at);
        if (xcds[d] & ~dev_xcd_mask[d]) fail(in.at("dev_resv_xcds"), "XCDs outside dev_xcd_mask" + at);
        if (resv[d] < 0 && xcds[d]) fail(in.at("dev_resv_xcds"), "XCDs held on a device no reservation holds" + at);
    }
    bt.dev_resv = resv;
    bt.dev_resv_xcds = xcds;
    bt.n_resv = checked_size(R, in.at("class_resv"));
    bt.class_resv = access;
}

}  // namespace kaiwo::bindings
