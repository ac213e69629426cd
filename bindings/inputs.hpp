// Input checking shared by the bindings: the kernels trust their input, so each binding validates
// its dicts of numpy arrays here once -- keys (unknown keys are errors, so a typo never passes
// silently), exact dtypes in native byte order, dimensions, C-contiguity, lengths, writeability --
// and every failure is a std::invalid_argument (Python ValueError) naming the dict and key.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace kaiwo::bindings {

namespace py = pybind11;

/// numpy dtype kind and name of each element type the kernels take.
template <typename T>
struct Dt;
template <> struct Dt<int64_t> { static constexpr char kind = 'i'; static constexpr const char* name = "int64"; };
template <> struct Dt<int32_t> { static constexpr char kind = 'i'; static constexpr const char* name = "int32"; };
template <> struct Dt<int8_t> { static constexpr char kind = 'i'; static constexpr const char* name = "int8"; };
template <> struct Dt<uint8_t> { static constexpr char kind = 'u'; static constexpr const char* name = "uint8"; };
template <> struct Dt<uint32_t> { static constexpr char kind = 'u'; static constexpr const char* name = "uint32"; };
template <> struct Dt<uint64_t> { static constexpr char kind = 'u'; static constexpr const char* name = "uint64"; };
template <> struct Dt<double> { static constexpr char kind = 'f'; static constexpr const char* name = "float64"; };

[[noreturn]] inline void fail(const std::string& where, const std::string& what) {
    throw std::invalid_argument(where + ": " + what);
}

/// The kernels index with int32: a larger input is refused instead of wrapping around.
inline int32_t checked_size(py::ssize_t n, const std::string& what) {
    if (n > std::numeric_limits<int32_t>::max()) fail(what, "too many elements for int32 indexing");
    return static_cast<int32_t>(n);
}

/// A fresh 1-D numpy array holding a copy of `v`.
template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    return a;
}

template <typename T>
T* mut(py::array& a) { return static_cast<T*>(a.mutable_data()); }
template <typename T>
const T* cst(const py::array& a) { return static_cast<const T*>(a.data()); }

/// One validated input dict. Arrays are kept referenced until the kernel returns.
class Inputs {
public:
    /// Every key of `d` must be in `required` or `optional`; every `required` key must be present.
    Inputs(const py::dict& d, const char* name, const std::set<std::string>& required,
           const std::set<std::string>& optional = {})
        : d_(d), name_(name) {
        for (auto item : d_) {
            if (!py::isinstance<py::str>(item.first))
                fail(name_, "keys must be str, got " + std::string(py::str(py::type::of(item.first))));
            const std::string key = item.first.cast<std::string>();
            if (!required.count(key) && !optional.count(key)) fail(at(key), "unknown key");
        }
        for (const auto& key : required)
            if (!has(key)) fail(at(key), "missing");
    }

    /// Whether `key` is present and not None (for optional arrays).
    bool has(const std::string& key) const { return d_.contains(key) && !d_[key.c_str()].is_none(); }
    /// `dict['key']`, for error messages.
    std::string at(const std::string& key) const { return std::string(name_) + "['" + key + "']"; }
    const char* name() const { return name_; }

    /// The array under `key`: exact dtype, `ndim` dimensions, C-contiguous, and writeable when the
    /// kernel updates it in place.
    template <typename T>
    py::array array(const std::string& key, int ndim, bool writable = false) {
        const std::string w = at(key);
        if (!has(key)) fail(w, "missing");
        py::object obj = d_[key.c_str()];
        if (!py::isinstance<py::array>(obj))
            fail(w, std::string("expected a numpy array of ") + Dt<T>::name + ", got " +
                        std::string(py::str(py::type::of(obj))));
        py::array a = py::reinterpret_borrow<py::array>(obj);
        const py::dtype dt = a.dtype();
        const char bo = dt.byteorder();
        if (dt.kind() != Dt<T>::kind || dt.itemsize() != py::ssize_t(sizeof(T)) || dt.has_fields() ||
            (bo != '=' && bo != '|'))
            fail(w, std::string("expected dtype ") + Dt<T>::name + " (native byte order), got " +
                        std::string(py::str(dt)));
        if (a.ndim() != ndim)
            fail(w, "expected " + std::to_string(ndim) + "-D array, got " + std::to_string(a.ndim()) + "-D");
        if (!(a.flags() & py::array::c_style)) fail(w, "not C-contiguous");
        if (writable && !a.writeable()) fail(w, "read-only, but the kernel updates it in place");
        keep_.push_back(a);
        return a;
    }

    /// `array` for a 1-D array that must have `n` elements (`what` explains n).
    template <typename T>
    py::array array1(const std::string& key, py::ssize_t n, const std::string& what, bool writable = false) {
        py::array a = array<T>(key, 1, writable);
        if (a.shape(0) != n)
            fail(at(key), "expected length " + std::to_string(n) + " (" + what + "), got " +
                              std::to_string(a.shape(0)));
        return a;
    }

    /// Read-only data of the array under `key` (see `array`), its shape written to `shape`.
    template <typename T>
    const T* get(const std::string& key, int ndim, py::ssize_t* shape) {
        const py::array a = array<T>(key, ndim);
        for (int i = 0; i < ndim; ++i) shape[i] = a.shape(i);
        return cst<T>(a);
    }

    /// A 1-D array of exactly `n` elements (`what` explains n).
    template <typename T>
    const T* vec(const std::string& key, py::ssize_t n, const std::string& what) {
        return cst<T>(array1<T>(key, n, what));
    }

    /// A 1-D array of any length, returned with it.
    template <typename T>
    const T* any(const std::string& key, py::ssize_t* n) { return get<T>(key, 1, n); }

    /// A 2-D array of shape (n, cols): one row per `what`, columns gpu, cpu, memory (the resource
    /// order of every queue and preemption input), then any further resource columns (the queue
    /// kernels take `cols` >= 3, one more per GPU model with a quota).
    template <typename T>
    const T* mat(const std::string& key, py::ssize_t n, const std::string& what, py::ssize_t cols = 3) {
        py::ssize_t s[2];
        const T* p = get<T>(key, 2, s);
        if (s[0] != n || s[1] != cols)
            fail(at(key), "expected shape (" + std::to_string(n) + ", " + std::to_string(cols) + ") (" + what +
                              (cols == 3 ? " x gpu/cpu/memory" : " x resources") + "), got (" +
                              std::to_string(s[0]) + ", " + std::to_string(s[1]) + ")");
        return p;
    }

private:
    py::dict d_;
    const char* name_;
    std::vector<py::array> keep_;
};

}  // namespace kaiwo::bindings
