// Errors are values: every fallible core call returns Result<T>.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>

#include "text.h"
#include <tl/expected.hpp>
#include <utility>

namespace bd {

/// An error with an errno-like code and a message a user can act on.
struct Error {
    Error() = default;
    /// The message is made printable: it often quotes a user's path.
    Error(int code_, std::string_view message_) : code(code_), message(printable(message_)) {}
    int code = EIO;       ///< errno value (ENOENT, EEXIST, EBUSY, ...).
    std::string message;  ///< Names the object and what to do about it; no control characters.
};

template <typename T>
using Result = tl::expected<T, Error>;

/// Shorthand for returning an error from a function that returns Result<T>.
inline tl::unexpected<Error> fail(int code, std::string message) {
    return tl::unexpected<Error>(Error{code, std::move(message)});
}

/// Symbolic name of an errno value ("EEXIST"); "EIO" for unknown ones.
const char* errno_name(int code);

/// The documented bdctl exit status for an error code (see docs/CLI-CONTRACT.md).
int exit_code_for(int code);

}  // namespace bd
