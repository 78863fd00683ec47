// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <memory>

namespace ayaflow::bpf {

/// Destroys a bpftool skeleton through its generated C++ static (`T::destroy`), so a
/// std::unique_ptr can own it. T may be incomplete where a SkeletonPtr<T> is declared
/// (a class member in a public header); it must be complete where the pointer is reset
/// or destroyed, that is in the owner's .cpp, which includes the skeleton header.
template <typename T>
struct SkeletonDeleter {
  void operator()(T* skeleton) const noexcept { T::destroy(skeleton); }
};

/// Owns a skeleton from `T::open()`: destroying it unloads whatever `T::load()` loaded
/// and closes every fd the skeleton holds.
template <typename T>
using SkeletonPtr = std::unique_ptr<T, SkeletonDeleter<T>>;

}  // namespace ayaflow::bpf
