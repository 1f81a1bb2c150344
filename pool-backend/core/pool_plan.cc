#include "pool_plan.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "size.h"

namespace bd {

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kMinMetadata = 16 * kMiB;
constexpr uint64_t kMaxDefaultMetadata = 1024 * kMiB;
// dm-thin addresses at most 16 GiB of metadata; LVM caps it at 15.81 GiB.
constexpr uint64_t kMaxMetadata = 16192 * kMiB;

std::optional<uint64_t> parse_count(std::string_view s) {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
    return n;
}

}  // namespace

uint64_t default_thin_metadata(uint64_t data_bytes) {
    return std::clamp(data_bytes / 32, kMinMetadata, kMaxDefaultMetadata);
}

Result<ThinPoolPlan> plan_thin_pool(uint64_t vg_free, uint64_t extent, uint64_t size,
                                    const std::string& extents, uint64_t metadata) {
    if (extent == 0) return fail(EINVAL, "VG extent size is 0");
    if (metadata > kMaxMetadata)
        return fail(EINVAL, fmt::format("thin-pool metadata of {} is over LVM's limit of {}; give "
                                        "--metadata-size {} or less",
                                        format_size(metadata), format_size(kMaxMetadata),
                                        format_size(kMaxMetadata)));
    auto whole = [&](uint64_t bytes) { return bytes / extent * extent; };
    ThinPoolPlan plan;
    bool fill = false;  // a share of the free space: shrink to make room for metadata
    if (size) {
        Result<uint64_t> r = round_up(size, extent);
        if (!r) return tl::unexpected(r.error());
        plan.data = *r;
    } else {
        std::string_view spec = extents.empty() ? std::string_view("90%FREE") : extents;
        std::optional<uint64_t> n;
        if (spec.size() > 5 && spec.substr(spec.size() - 5) == "%FREE") {
            n = parse_count(spec.substr(0, spec.size() - 5));
            if (!n || *n < 1 || *n > 100)
                return fail(EINVAL, fmt::format("invalid --extents \"{}\": give N%FREE with N "
                                                "from 1 to 100, or a number of extents",
                                                spec));
            plan.data = whole(uint64_t(static_cast<unsigned __int128>(vg_free) * *n / 100));
            fill = true;
        } else if ((n = parse_count(spec)) && *n > 0) {
            if (*n > vg_free / extent)
                return fail(ENOSPC, fmt::format("--extents {} is more than the {} free extents "
                                                "of the VG",
                                                spec, vg_free / extent));
            plan.data = *n * extent;
        } else {
            return fail(EINVAL, fmt::format("invalid --extents \"{}\": give N%FREE with N from 1 "
                                            "to 100, or a number of extents",
                                            spec));
        }
    }
    Result<uint64_t> meta = round_up(metadata ? metadata : default_thin_metadata(plan.data), extent);
    if (!meta) return tl::unexpected(meta.error());
    plan.metadata = *meta;
    if (fill && plan.data + 2 * plan.metadata > vg_free) {
        uint64_t room = vg_free > 2 * plan.metadata ? whole(vg_free - 2 * plan.metadata) : 0;
        plan.data = room;
    }
    if (plan.data == 0 || plan.data + 2 * plan.metadata > vg_free)
        return fail(ENOSPC,
                    fmt::format("a thin pool of {} with {} of metadata (and LVM's spare copy of "
                                "it) needs {}, but the VG has {} free; give a smaller --size or "
                                "--metadata-size, or add a PV",
                                format_size(plan.data), format_size(plan.metadata),
                                format_size(plan.data + 2 * plan.metadata), format_size(vg_free)));
    return plan;
}

}  // namespace bd
