// Thin LV and thin-pool usage from the kernel, without committing the pool's
// metadata. dm_thin_pool_status (dm.h) lets the kernel commit first, which is
// right for `export info` but too slow for per-write or per-stat use.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "dm.h"
#include "error.h"

namespace bd {

/// Bytes a thin LV maps in its pool (dm device `name`, e.g. "vg0-disk0").
Result<uint64_t> dm_thin_mapped_bytes(const std::string& name);

/// Thin-pool status queried with no metadata flush (the "-tpool" layer or the bare pool).
Result<ThinPoolStatus> dm_thin_pool_status_noflush(const std::string& vg, const std::string& pool);

/// Parses a thin target's status ("<mapped sectors> <highest mapped sector>|-"); bytes mapped.
Result<uint64_t> parse_thin_status(const std::string& params);

/// Where a thin device's data ends: every block past the highest mapped one
/// reads zeros (0: nothing is mapped). From the same status line.
Result<uint64_t> parse_thin_data_end(const std::string& params);

/// The same for the open device `dev` (a thin LV's st_rdev); nothing when a
/// read past it may still find data: not a thin device, or a thin device with
/// an external origin (read where unmapped).
Result<std::optional<uint64_t>> dm_thin_data_end(dev_t dev);

/// Whether a thin pool's table (DM_DEVICE_TABLE) zeroes a block before its
/// first partial write (no "skip_block_zeroing" feature).
bool parse_thin_pool_zeroes(const std::string& table);

/// The same for the pool of the open thin device `dev`. A pool that skips
/// zeroing shows a new block's old contents around a partial write, so a
/// write of zeros there must really be written.
Result<bool> dm_thin_pool_zeroes(dev_t dev);

}  // namespace bd
