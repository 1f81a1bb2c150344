// How big a new thin pool and its metadata are: a pure rule, unit-tested.
#pragma once

#include <cstdint>
#include <string>

#include "error.h"

namespace bd {

/// A new thin pool: data and metadata sizes in bytes, whole extents.
struct ThinPoolPlan {
    uint64_t data = 0;
    uint64_t metadata = 0;
};

/// bd's metadata default: 1/32 of the data size, at least 16 MiB, at most 1 GiB.
///
/// LVM's own default (64 bytes per data chunk, at least 2 MiB) is sized for the
/// pool's data mappings alone, but every thin LV costs metadata blocks of its
/// own (at least one 4 KiB block), so a small pool with LVM's default fills its
/// metadata after a few hundred volumes. 16 MiB holds thousands.
uint64_t default_thin_metadata(uint64_t data_bytes);

/// Plans a thin pool in a VG with `vg_free` bytes free and `extent`-byte extents.
/// The data size is `size` bytes (rounded up to extents) or, when `size` is 0,
/// `extents`: "N%FREE" (1..100) of the free space or a plain extent count.
/// `metadata` is the metadata size (0: default_thin_metadata). LVM keeps a spare
/// metadata LV of the same size, so data + 2 x metadata must fit: a %FREE pool
/// shrinks to leave that room, an explicit size that does not fit is ENOSPC.
Result<ThinPoolPlan> plan_thin_pool(uint64_t vg_free, uint64_t extent, uint64_t size,
                                    const std::string& extents, uint64_t metadata);

}  // namespace bd
