#include "error.h"

namespace bd {

namespace {

struct ErrnoInfo {
    int code;
    const char* name;
    int exit_status;
};

// Exit statuses are part of the CLI contract (docs/CLI-CONTRACT.md); keep in sync.
constexpr ErrnoInfo kErrnoTable[] = {
    {EINVAL, "EINVAL", 2},       {ENOENT, "ENOENT", 3},      {EEXIST, "EEXIST", 4},
    {EBUSY, "EBUSY", 5},         {ENOSPC, "ENOSPC", 6},      {ENOTEMPTY, "ENOTEMPTY", 7},
    {ENAMETOOLONG, "ENAMETOOLONG", 8}, {EUCLEAN, "EUCLEAN", 9}, {EROFS, "EROFS", 2},
    {EPERM, "EPERM", 1},       {EISDIR, "EISDIR", 4},    {ENOTDIR, "ENOTDIR", 4},
    {EIO, "EIO", 1},             {EOVERFLOW, "EOVERFLOW", 2}, {ESTALE, "ESTALE", 1},
    {EACCES, "EACCES", 1},       {ERANGE, "ERANGE", 2},      {EBADMSG, "EBADMSG", 10},
    {EREMOTE, "EREMOTE", 11},
};

const ErrnoInfo* find(int code) {
    for (const ErrnoInfo& info : kErrnoTable)
        if (info.code == code) return &info;
    return nullptr;
}

}  // namespace

const char* errno_name(int code) {
    const ErrnoInfo* info = find(code);
    return info ? info->name : "EIO";
}

int exit_code_for(int code) {
    const ErrnoInfo* info = find(code);
    return info ? info->exit_status : 1;
}

}  // namespace bd
