// The data path of a full copy (clone --full): thin-aware, in that runs of
// zeros are never written, so the copy stays as sparse as its source.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "error.h"
#include "fd.h"

namespace bd {

/// Progress of a long operation: bytes done of total.
using Progress = std::function<void(uint64_t done, uint64_t total)>;

/// Whether `n` bytes at `p` are all zero.
bool all_zero(const char* p, size_t n);

/// Reads exactly `n` bytes at `off` (EIO naming `dev` on a short read).
Result<void> pread_full(int fd, char* buf, size_t n, off_t off, const std::string& dev);

/// Writes exactly `n` bytes at `off` (the error names `dev`).
Result<void> pwrite_full(int fd, const char* buf, size_t n, off_t off, const std::string& dev);

/// Opens a block device for a copy, with O_DIRECT.
Result<Fd> open_device(const std::string& dev, int flags);

/// Copies `size` bytes from `in` to `out` (devices named for messages), skipping
/// zero blocks, then syncs `out`; reports progress about twice a second.
Result<void> copy_data(const Fd& in, const std::string& in_dev, const Fd& out,
                       const std::string& out_dev, uint64_t size, const Progress& progress);

}  // namespace bd
