#include "dirs.h"

#include <charconv>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "lvm_report.h"
#include "names.h"

namespace bd {

namespace {

void add_with_ancestors(std::set<std::string>& out, std::string dir) {
    while (!dir.empty() && out.insert(dir).second) dir = parent_dir(dir);
}

}  // namespace

std::vector<std::string> explicit_dirs(const Catalog& cat) {
    if (!cat.pool) return {};
    return tag_values(cat.pool->tags, tags::kDir);
}

namespace {

// "UID:GID:MODE:PATH" -> (PATH, attrs); nullopt when malformed.
std::optional<std::pair<std::string, DirAttrs>> parse_dir_attrs(const std::string& value) {
    uint32_t f[3] = {};
    const char* p = value.data();
    const char* end = value.data() + value.size();
    for (uint32_t& n : f) {
        auto [next, ec] = std::from_chars(p, end, n);
        if (ec != std::errc() || next == end || *next != ':') return std::nullopt;
        p = next + 1;
    }
    if (f[2] > 07777) return std::nullopt;
    return std::make_pair(std::string(p, end), DirAttrs{f[0], f[1], f[2]});
}

}  // namespace

std::map<std::string, DirAttrs> dir_attrs(const Catalog& cat) {
    std::map<std::string, DirAttrs> out;
    if (!cat.pool) return out;
    for (const std::string& value : tag_values(cat.pool->tags, tags::kDirAttrs))
        if (auto parsed = parse_dir_attrs(value)) out[parsed->first] = parsed->second;
    return out;
}

std::vector<std::string> dir_attrs_tags_of(const Catalog& cat, const std::string& dir, bool below) {
    std::vector<std::string> out;
    if (!cat.pool) return out;
    for (const std::string& tag : cat.pool->tags) {
        std::optional<std::string> value = tag_value({tag}, tags::kDirAttrs);
        if (!value) continue;
        auto parsed = parse_dir_attrs(*value);
        if (parsed && (parsed->first == dir || (below && !dir.empty() && is_within(parsed->first, dir))))
            out.push_back(tag);
    }
    return out;
}

Result<std::string> dir_attrs_tag(const std::string& path, const DirAttrs& a) {
    return make_tag(tags::kDirAttrs, fmt::format("{}:{}:{}:{}", a.uid, a.gid, a.mode, path));
}

std::set<std::string> directories(const Catalog& cat) {
    std::set<std::string> out;
    for (const std::string& d : explicit_dirs(cat)) add_with_ancestors(out, d);
    for (const Volume& v : cat.volumes) add_with_ancestors(out, parent_dir(v.path));
    return out;
}

bool is_directory(const Catalog& cat, const std::string& path) {
    return path.empty() || directories(cat).count(path) > 0;
}

bool directory_empty(const Catalog& cat, const std::string& dir) {
    for (const Volume& v : cat.volumes)
        if (is_within(v.path, dir) && v.path != dir) return false;
    for (const std::string& d : explicit_dirs(cat))
        if (is_within(d, dir) && d != dir) return false;
    return true;
}

}  // namespace bd
