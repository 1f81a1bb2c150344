// The directory tree bdfs shows for one catalog: pure, no FUSE, no I/O.
//
// Names map to three kinds of object:
//  - directories: explicit or implied by volume paths (core/dirs.h);
//  - files: every volume, except the ones below;
//  - snapshot links: a snapshot whose path is not ORIGIN@NAME (one made by
//    `ln -s ORIGIN LINK`) shows as a symlink to the name "ORIGIN@NAME" in the
//    origin's directory. That name is virtual: looking it up gives the
//    snapshot as a read-only file, so opening the link opens the snapshot while
//    readlink shows its origin. (A symlink cannot itself carry data: the kernel
//    follows it, so a link whose text were just "ORIGIN" would open the origin.)
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "catalog.h"
#include "dirs.h"
#include "error.h"

namespace bdfs {

enum class Kind { kDir, kFile, kSnapLink };

/// Where volumes unlinked while open wait for their last close (hidden).
inline constexpr const char* kUnlinkedDir = ".bdfs-unlinked";
/// Xattr (core tag bd.x=bdfs.unsized=1) of a file created without a size: it reads as
/// empty although its LV has one extent. Not a user.* name, so never listed.
inline constexpr const char* kUnsizedXattr = "bdfs.unsized";

/// One name as bdfs shows it.
struct Entry {
    std::string name;
    Kind kind = Kind::kDir;
    std::string path;                    ///< core path of the directory or volume
    const bd::Volume* volume = nullptr;  ///< files and links; points into the Tree
    const bd::DirAttrs* dir = nullptr;   ///< a directory's kept owner and mode, if any
};

class Tree {
  public:
    explicit Tree(bd::Catalog cat);
    Tree(Tree&&) = default;

    /// The entry `name` in directory `dir` (virtual ORIGIN@NAME names included).
    std::optional<Entry> lookup(const std::string& dir, const std::string& name) const;
    /// The entry at a full path ("" is the root directory).
    std::optional<Entry> at(const std::string& path) const;
    /// Every visible entry of `dir`, sorted by name.
    std::vector<Entry> list(const std::string& dir) const;
    /// True if `path` is a directory.
    bool is_dir(const std::string& path) const;
    /// The entry of directory `path` (which must be one), named `name`.
    Entry dir_entry(const std::string& name, const std::string& path) const;
    /// The volume with this stable id.
    const bd::Volume* find_id(const std::string& id) const { return cat_.find_id(id); }
    const bd::Catalog& catalog() const { return cat_; }

  private:
    Entry entry_for(const bd::Volume& v) const;

    bd::Catalog cat_;
    std::set<std::string> dirs_;
    std::map<std::string, bd::DirAttrs> dir_attrs_;
};

/// How volume `v` shows: a file or a snapshot link.
Kind kind_of(const bd::Volume& v);

/// The text of a snapshot link: its origin, relative to the link's directory, "@" its name.
std::string link_target(const bd::Volume& snap);

/// dir + "/" + name, or name at the root.
std::string join(const std::string& dir, const std::string& name);

/// The path of `to_path` relative to directory `from_dir` ("a/b", "a/c/d" -> "../c/d").
std::string relative(const std::string& from_dir, const std::string& to_path);

/// Resolves a symlink's text written in `dir` to a path in the export. Absolute
/// texts must lie under `mountpoint`. EINVAL if it leaves the export.
bd::Result<std::string> resolve_target(const std::string& dir, const std::string& text,
                                       const std::string& mountpoint);

/// True for names bdfs keeps for itself (the unlinked area at the root).
bool is_reserved(const std::string& dir, const std::string& name);

}  // namespace bdfs
