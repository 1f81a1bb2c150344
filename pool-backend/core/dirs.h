// Directories of an export. A directory exists when a volume path runs through
// it (implicit) or when it was made on its own (explicit, e.g. bdfs mkdir).
// Explicit directories are "bd.dir=PATH" tags on the export's thin pool LV:
// the pool's row is in every `lvs` report, so one listing still costs one
// `lvs`, and each mkdir/rmdir is one atomic `lvchange`. A directory's owner
// and mode, once set, are a "bd.dattr=UID:GID:MODE:PATH" tag beside it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "catalog.h"
#include "names.h"

namespace bd {

namespace tags {
inline constexpr const char* kDir = "bd.dir";  ///< an explicit directory, on the thin pool LV
inline constexpr const char* kDirAttrs = "bd.dattr";  ///< "UID:GID:MODE:PATH" (mode decimal)
}  // namespace tags

/// A directory's owner and mode (permission bits only).
struct DirAttrs {
    uint32_t uid = 0, gid = 0, mode = 0755;
    bool operator==(const DirAttrs&) const = default;
};

/// A chmod/chown of a directory: the fields to change.
struct DirAttrChange {
    std::optional<uint32_t> uid, gid, mode;
};

/// Owner and mode kept for directories, by path ("" is the export's root).
/// Malformed tags are ignored.
std::map<std::string, DirAttrs> dir_attrs(const Catalog& cat);

/// The bd.dattr tag for `path` (ENAMETOOLONG past the tag limit).
Result<std::string> dir_attrs_tag(const std::string& path, const DirAttrs& a);

/// The thin pool's bd.dattr tags, as stored, of `dir` and (with `below`) of
/// every directory under it: what to delete, duplicates and odd spellings included.
std::vector<std::string> dir_attrs_tags_of(const Catalog& cat, const std::string& dir, bool below);

/// Explicit directories: the bd.dir tags of the thin pool (unescaped).
std::vector<std::string> explicit_dirs(const Catalog& cat);

/// Every directory: explicit ones, their ancestors and every volume's ancestors ("" excluded).
std::set<std::string> directories(const Catalog& cat);

/// True if `path` is a directory of the export ("" is the root and always is).
bool is_directory(const Catalog& cat, const std::string& path);

/// True if `dir` holds no volume and no explicit directory.
bool directory_empty(const Catalog& cat, const std::string& dir);

}  // namespace bd
