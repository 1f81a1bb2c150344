// Volume paths, their LV names and their tag encoding.
//
// A volume path is any UTF-8 string of '/'-separated components, none empty,
// "." or "..", and no NUL. LVM names allow only [A-Za-z0-9+_.-], so the LV
// name is a readable slug plus a hash of the full path, and the real path
// lives in a tag. See docs/ARCHITECTURE.md, "Tag schema".
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include <string_view>

#include "error.h"

namespace bd {

/// LVM's tag limit (characters per tag).
constexpr size_t kMaxTagLength = 1024;
/// Longest component we accept (NAME_MAX, so bdfs can show every volume).
constexpr size_t kMaxComponentLength = 255;
/// Longest readable slug kept in an LV name before the hash.
constexpr size_t kMaxSlugLength = 48;

/// Checks a volume path and returns it without leading/trailing '/'; EINVAL or
/// ENAMETOOLONG with a message naming the path and the rule it broke.
Result<std::string> normalize_path(std::string_view path);

/// 64-bit FNV-1a of a string: the hash in LV names, and bdfs's directory inodes.
uint64_t fnv1a64(std::string_view s);

/// The deterministic LV name for a (normalized) volume path. `scope` is empty
/// for an export that has its VG to itself; in a shared VG, where LV names are
/// common to every export, it is the export's thin pool, which the hash covers
/// (so the same path in two exports never gives one name).
std::string lv_name_for_path(std::string_view path, std::string_view scope = {});

/// Escapes arbitrary bytes into LVM's tag alphabet; '!' introduces "!XX" hex.
std::string tag_escape(std::string_view raw);

/// Like tag_escape, but '=' is escaped too (for keys inside a tag value).
std::string tag_escape_key(std::string_view raw);

/// Inverse of tag_escape; EINVAL for malformed escapes.
Result<std::string> tag_unescape(std::string_view tag);

/// Builds "key=escaped(value)", ENAMETOOLONG if it exceeds LVM's tag limit.
Result<std::string> make_tag(std::string_view key, std::string_view value);

/// Checks an export name: LVM VG-name rules ([A-Za-z0-9+_.-], not starting with '-').
Result<std::string> check_export_name(std::string_view name);

/// "EXPORT:/path" split into its two halves.
struct VolumeSpec {
    std::string export_name;
    std::string path;  ///< Normalized; empty means the export's root.
};

/// Parses "EXPORT:/path" (path optional when allow_root).
Result<VolumeSpec> parse_volume_spec(std::string_view spec, bool allow_root = false);

/// The non-empty '/'-separated components of `path`.
std::vector<std::string> path_components(std::string_view path);

/// Parent directory of a normalized path ("" for top level).
std::string parent_dir(std::string_view path);

/// Last component of a normalized path.
std::string base_name(std::string_view path);

/// True if `path` is `dir` itself or lies below it ("" holds everything).
bool is_within(const std::string& path, const std::string& dir);

/// `path` with its leading `from` directory replaced by `to` ("a/b/c", "a", "x" -> "x/b/c").
std::string reparent(const std::string& path, const std::string& from, const std::string& to);

}  // namespace bd
