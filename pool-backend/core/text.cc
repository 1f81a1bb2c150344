#include "text.h"

#include <fmt/format.h>

namespace bd {

std::optional<char32_t> next_code_point(std::string_view s, size_t& i) {
    unsigned char c = s[i];
    size_t extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
    if (extra == 9 || s.size() - i <= extra) {
        ++i;
        return std::nullopt;
    }
    char32_t cp = extra == 0 ? c : c & (0x3f >> extra);
    for (size_t k = 1; k <= extra; ++k) {
        unsigned char cc = s[i + k];
        if ((cc >> 6) != 2) {
            ++i;
            return std::nullopt;
        }
        cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        ++i;
        return std::nullopt;
    }
    i += extra + 1;
    return cp;
}

bool valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();)
        if (!next_code_point(s, i)) return false;
    return true;
}

bool is_control(char32_t c) {
    return c < 0x20 || (c >= 0x7f && c <= 0x9f) || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2066 && c <= 0x2069);
}

std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        size_t start = i;
        std::optional<char32_t> cp = next_code_point(s, i);
        if (!cp)
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(s[start]));
        else if (*cp < 0x80 && is_control(*cp))
            out += fmt::format("\\x{:02x}", uint32_t(*cp));
        else if (is_control(*cp))
            out += fmt::format("\\u{{{:04x}}}", uint32_t(*cp));
        else
            out.append(s.substr(start, i - start));
    }
    return out;
}

}  // namespace bd
