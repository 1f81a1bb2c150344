// Text taken from users (paths, names) on its way to terminals and logs.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace bd {

/// The code point starting at `text[i]`, advancing `i` past it; nullopt (and `i`
/// past one byte) for malformed UTF-8: overlongs, surrogates, truncation.
std::optional<char32_t> next_code_point(std::string_view text, size_t& i);

/// True if `text` is well-formed UTF-8.
bool valid_utf8(std::string_view text);

/// True for code points a terminal acts on instead of showing: C0 controls,
/// DEL, C1 controls and the bidirectional overrides and isolates.
bool is_control(char32_t c);

/// `text` with every control character and every byte of malformed UTF-8
/// written as \xNN (or \u{NNNN}); all else unchanged. Idempotent, so a message
/// can pass through it more than once.
std::string printable(std::string_view text);

}  // namespace bd
