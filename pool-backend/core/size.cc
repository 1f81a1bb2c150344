#include "size.h"

#include <fmt/format.h>

#include <cctype>
#include <limits>

namespace bd {

namespace {

// LVM caps LV sizes at 8 EiB; we keep all sizes in signed 64-bit range.
constexpr uint64_t kMaxSize = (uint64_t(1) << 63) - 1;

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// virsh's rules (virScaleInteger): "" and "b"/"byte(s)" are bytes, a letter
// alone or with "iB" is a power of 1024, the letter with "B" a power of 1000.
Result<uint64_t> scale_for(std::string_view suffix, std::string_view text) {
    std::string s = lower(suffix);
    if (s.empty() || s == "b" || s == "byte" || s == "bytes") return 1;
    static constexpr std::string_view kLetters = "kmgtpe";
    size_t power = kLetters.find(s[0]);
    std::string rest = s.substr(1);
    bool decimal = suffix.size() == 2 && suffix[1] == 'B';
    if (power == std::string_view::npos || !(rest.empty() || rest == "ib" || decimal))
        return fail(EINVAL, fmt::format("invalid size \"{}\": unknown unit \"{}\" (use a number "
                                        "of bytes or a suffix such as K, M, G, T, P, KB, GiB)",
                                        text, suffix));
    uint64_t base = decimal ? 1000 : 1024, scale = 1;
    for (size_t i = 0; i <= power; ++i) scale *= base;
    return scale;
}

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
    size_t i = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (!text.empty() && text[0] == '-')
        return fail(EINVAL, fmt::format("invalid size \"{}\": sizes cannot be negative", text));
    if (i == 0)
        return fail(EINVAL, fmt::format("invalid size \"{}\": expected a number with an optional "
                                        "unit, such as 20G or 512MiB",
                                        text));
    uint64_t value = 0;
    for (size_t k = 0; k < i; ++k) {
        uint64_t digit = uint64_t(text[k] - '0');
        if (value > (kMaxSize - digit) / 10)
            return fail(EOVERFLOW, fmt::format("invalid size \"{}\": larger than 8 EiB", text));
        value = value * 10 + digit;
    }
    Result<uint64_t> scale = scale_for(text.substr(i), text);
    if (!scale) return tl::unexpected(scale.error());
    if (value == 0)
        return fail(EINVAL, fmt::format("invalid size \"{}\": must be greater than zero", text));
    if (value > kMaxSize / *scale)
        return fail(EOVERFLOW, fmt::format("invalid size \"{}\": larger than 8 EiB", text));
    return value * *scale;
}

Result<uint64_t> round_up(uint64_t bytes, uint64_t unit) {
    if (unit == 0) return bytes;
    uint64_t units = bytes / unit + (bytes % unit ? 1 : 0);
    if (units > kMaxSize / unit)
        return fail(EOVERFLOW, fmt::format("size {} bytes is larger than 8 EiB", bytes));
    return units * unit;
}

std::string format_size(uint64_t bytes) {
    static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double value = double(bytes);
    size_t unit = 0;
    while (value >= 1024 && unit + 1 < std::size(kUnits)) {
        value /= 1024;
        ++unit;
    }
    if (unit == 0) return fmt::format("{} B", bytes);
    return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

}  // namespace bd
