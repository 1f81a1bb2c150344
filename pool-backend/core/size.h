// Size strings, parsed the way virsh parses scaled integers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "error.h"

namespace bd {

/// Parses "20G", "512MiB", "1000KB", "4096" (bytes) into bytes; rejects zero,
/// negatives, overflow and unknown suffixes with a message naming the input.
Result<uint64_t> parse_size(std::string_view text);

/// Rounds bytes up to a whole number of units (e.g. VG extents); EOVERFLOW past 2^63.
Result<uint64_t> round_up(uint64_t bytes, uint64_t unit);

/// Human form with binary units: "20.0 GiB", "512 B".
std::string format_size(uint64_t bytes);

}  // namespace bd
