// What changed between two thin devices of one pool, as dm-thin's own
// mappings say: thin_delta's report, read and turned into byte ranges.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "error.h"

namespace bd {

/// How a range of the newer device ("to") stands against the older ("from").
enum class DeltaKind {
    kSame,     ///< both map the same data blocks: identical
    kChanged,  ///< both map it, to different blocks: written since
    kAdded,    ///< only "to" maps it: written where "from" read zeros
    kRemoved,  ///< only "from" maps it: "to" reads zeros there (discarded)
};

/// "same", "changed", "added", "removed".
const char* delta_kind_name(DeltaKind kind);

/// A run of pool blocks (thin_delta's units).
struct DeltaBlocks {
    DeltaKind kind = DeltaKind::kSame;
    uint64_t begin = 0, length = 0;
};

/// thin_delta's report: the pool's block size and the runs it lists.
struct ThinDelta {
    uint64_t block_bytes = 0;  ///< data_block_size (sectors) * 512
    uint64_t left = 0, right = 0;  ///< the device ids compared (--snap1, --snap2)
    std::vector<DeltaBlocks> runs;
};

/// Parses thin_delta's XML (thin-provisioning-tools 0.9 and 1.x; without
/// --verbose) as a stream: a report of millions of runs builds no tree.
Result<ThinDelta> parse_thin_delta(std::string_view xml);

/// thin_dump's mappings of one device (`thin_dump -m --dev-id N`, 0.9 and
/// 1.x), read as a stream: the blocks it maps, as kAdded runs against an
/// empty device (left 0, right N). What a full send reads.
Result<ThinDelta> parse_thin_dump(std::string_view xml, uint64_t dev_id);

/// A byte range of the volume.
struct DeltaRange {
    DeltaKind kind = DeltaKind::kSame;
    uint64_t offset = 0, length = 0;
};

/// The runs as byte ranges, sorted, clipped to `size` (the newer device's),
/// adjacent runs of one kind joined; "same" runs are left out.
std::vector<DeltaRange> delta_ranges(const ThinDelta& delta, uint64_t size);

/// thin_ls's "DEV,EXCLUSIVE_BYTES" rows without headers: each thin device's
/// id and the bytes only it maps (what deleting it would free).
Result<std::map<uint64_t, uint64_t>> parse_thin_ls_exclusive(std::string_view text);

}  // namespace bd
