#include "tree.h"

#include <fmt/format.h>

#include <algorithm>

#include "dirs.h"
#include "names.h"

namespace bdfs {

namespace {

}  // namespace

std::string join(const std::string& dir, const std::string& name) {
    return dir.empty() ? name : dir + "/" + name;
}

bool is_reserved(const std::string& dir, const std::string& name) {
    return dir.empty() && name == kUnlinkedDir;
}

std::string relative(const std::string& from_dir, const std::string& to_path) {
    std::vector<std::string> from = bd::path_components(from_dir);
    std::vector<std::string> to = bd::path_components(to_path);
    size_t common = 0;
    while (common < from.size() && common + 1 < to.size() && from[common] == to[common]) ++common;
    std::string out;
    for (size_t i = common; i < from.size(); ++i) out += "../";
    for (size_t i = common; i < to.size(); ++i) out += (i > common ? "/" : "") + to[i];
    return out;
}

bd::Result<std::string> resolve_target(const std::string& dir, const std::string& text,
                                       const std::string& mountpoint) {
    std::string rest = text;
    std::vector<std::string> parts;
    if (!text.empty() && text[0] == '/') {
        std::string root = mountpoint + "/";
        if (text.compare(0, root.size(), root) != 0)
            return bd::fail(EINVAL, fmt::format("symlink target \"{}\" is outside the bdfs mount "
                                                "{}: bdfs links are snapshots of its own files",
                                                text, mountpoint));
        rest = text.substr(root.size());
    } else {
        parts = bd::path_components(dir);
    }
    for (const std::string& c : bd::path_components(rest)) {
        if (c == ".") continue;
        if (c != "..") {
            parts.push_back(c);
        } else if (parts.empty()) {
            return bd::fail(EINVAL, fmt::format("symlink target \"{}\" leaves the export", text));
        } else {
            parts.pop_back();
        }
    }
    std::string out;
    for (const std::string& p : parts) out = join(out, p);
    return out;
}

Tree::Tree(bd::Catalog cat)
    : cat_(std::move(cat)), dirs_(bd::directories(cat_)), dir_attrs_(bd::dir_attrs(cat_)) {}

Entry Tree::dir_entry(const std::string& name, const std::string& path) const {
    auto it = dir_attrs_.find(path);
    return Entry{name, Kind::kDir, path, nullptr, it == dir_attrs_.end() ? nullptr : &it->second};
}

bool Tree::is_dir(const std::string& path) const {
    return path.empty() || (dirs_.count(path) && !cat_.find(path));
}

Kind kind_of(const bd::Volume& v) {
    if (v.type != bd::VolumeType::kSnapshot || v.origin_path.empty()) return Kind::kFile;
    return v.path == v.origin_path + "@" + v.snapshot_name ? Kind::kFile : Kind::kSnapLink;
}

std::string link_target(const bd::Volume& snap) {
    return relative(bd::parent_dir(snap.path), snap.origin_path + "@" + snap.snapshot_name);
}

Entry Tree::entry_for(const bd::Volume& v) const {
    return Entry{bd::base_name(v.path), kind_of(v), v.path, &v};
}

// "ORIGIN@NAME", the name a snapshot link points to, is the snapshot (shown as
// a file) even if a volume of that name exists: the core refuses to make one,
// and a link must never lead to another user's file.
std::optional<Entry> Tree::lookup(const std::string& dir, const std::string& name) const {
    if (is_reserved(dir, name) || !is_dir(dir)) return std::nullopt;
    std::string path = join(dir, name);
    if (const bd::Volume* s = cat_.find_alias(path)) return Entry{name, Kind::kFile, s->path, s};
    if (const bd::Volume* v = cat_.find(path)) return entry_for(*v);
    if (dirs_.count(path)) return dir_entry(name, path);
    return std::nullopt;
}

std::optional<Entry> Tree::at(const std::string& path) const {
    if (path.empty()) return dir_entry("", "");
    return lookup(bd::parent_dir(path), bd::base_name(path));
}

std::vector<Entry> Tree::list(const std::string& dir) const {
    std::vector<Entry> out;
    if (!is_dir(dir)) return out;
    for (const bd::Volume& v : cat_.volumes)
        if (bd::parent_dir(v.path) == dir && !is_reserved(dir, bd::base_name(v.path)))
            out.push_back(*lookup(dir, bd::base_name(v.path)));  // as lookup shows it
    for (const std::string& d : dirs_)
        if (bd::parent_dir(d) == dir && !cat_.find(d) && !is_reserved(dir, bd::base_name(d)))
            out.push_back(dir_entry(bd::base_name(d), d));
    std::sort(out.begin(), out.end(),
              [](const Entry& a, const Entry& b) { return a.name < b.name; });
    return out;
}

}  // namespace bdfs
