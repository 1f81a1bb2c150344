#include "catalog.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "names.h"

namespace bd {

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

uint32_t tag_number(const LvRecord& lv, const char* key, uint32_t fallback) {
    std::optional<std::string> v = tag_value(lv.tags, key);
    if (!v || v->empty()) return fallback;
    return uint32_t(std::strtoul(v->c_str(), nullptr, 10));
}

uint64_t tag_number64(const LvRecord& lv, const char* key, uint64_t fallback) {
    std::optional<std::string> v = tag_value(lv.tags, key);
    if (!v || v->empty()) return fallback;
    return std::strtoull(v->c_str(), nullptr, 10);
}

std::map<std::string, std::string> xattrs_of(const LvRecord& lv) {
    std::map<std::string, std::string> out;
    // "bd.x=NAME=VALUE": NAME has '=' escaped too, so the first raw '=' splits.
    const std::string prefix = std::string(tags::kXattr) + "=";
    for (const std::string& tag : lv.tags) {
        if (tag.rfind(prefix, 0) != 0) continue;
        size_t eq = tag.find('=', prefix.size());
        if (eq == std::string::npos) continue;
        Result<std::string> name = tag_unescape(tag.substr(prefix.size(), eq - prefix.size()));
        Result<std::string> value = tag_unescape(tag.substr(eq + 1));
        if (name && value) out[*name] = *value;
    }
    return out;
}

Volume make_volume(const LvRecord& lv, const std::string& path, bool managed) {
    Volume v;
    v.path = path;
    v.lv = lv.name;
    v.size = lv.size;
    v.active = lv.active;
    v.open = lv.open;
    v.managed = managed;
    v.read_only = lv.attr.size() > 1 && lv.attr[1] == 'r';
    v.ctime = lv.time;
    v.dm_path = lv.dm_path;
    v.raw_tags = lv.tags;
    v.type = lv.segtype == "thin" ? VolumeType::kThin : VolumeType::kThick;
    v.capacity = lv.size;
    if (lv.segtype == "thin" && lv.data_percent && lv.active)
        v.allocated = uint64_t(double(lv.size) * *lv.data_percent / 100.0);
    else if (lv.segtype != "thin")
        v.allocated = lv.size;
    if (!managed) {
        v.id = lv.uuid;
        return v;
    }
    v.id = tag_value(lv.tags, tags::kId).value_or(lv.uuid);
    v.origin_id = tag_value(lv.tags, tags::kSnapOf).value_or("");
    v.snapshot_name = tag_value(lv.tags, tags::kSnap).value_or("");
    if (!v.origin_id.empty()) v.type = VolumeType::kSnapshot;
    v.uid = tag_number(lv, tags::kUid, 0);
    v.gid = tag_number(lv, tags::kGid, 0);
    v.mode = tag_number(lv, tags::kMode, kDefaultMode) & 07777;
    v.format = tag_value(lv.tags, tags::kFormat).value_or("raw");
    if (v.format != "raw") v.capacity = tag_number64(lv, tags::kVirtualSize, 0);
    v.mtime = tag_number(lv, tags::kMtime, uint32_t(lv.time));
    v.xattrs = xattrs_of(lv);
    return v;
}

bool name_taken(const std::set<std::string>& names, const std::string& path,
                const ExportScope& scope) {
    return names.count(scope.lv_name(path)) || names.count(path);
}

// Rules 0, 1 and 2 of catalog.h: the path this managed LV stands for, if any.
std::optional<std::string> resolve_path(const LvRecord& lv, const std::set<std::string>& names,
                                        const ExportScope& scope, bool& canonical) {
    std::vector<std::string> paths = tag_values(lv.tags, tags::kPath);
    std::vector<std::string> staged = tag_values(lv.tags, tags::kTo);
    canonical = false;
    if (tag_value(lv.tags, tags::kTxn))
        for (const std::string& c : staged)
            if (!name_taken(names, c, scope)) return c;
    canonical = true;
    for (const std::vector<std::string>* claims : {&paths, &staged})
        for (const std::string& c : *claims)
            if (scope.lv_name(c) == lv.name || (c == lv.name && !starts_with(c, "_bd_")))
                return c;
    canonical = false;
    for (const std::string& c : staged)
        if (!name_taken(names, c, scope)) return c;
    return std::nullopt;
}

// "bd.mvdir=FROM=TO": both halves escaped as keys, so the first raw '=' splits.
std::vector<DirMove> moves_of(const LvRecord& pool) {
    std::vector<DirMove> out;
    const std::string prefix = std::string(tags::kDirMove) + "=";
    for (const std::string& tag : pool.tags) {
        if (tag.rfind(prefix, 0) != 0) continue;
        size_t eq = tag.find('=', prefix.size());
        if (eq == std::string::npos) continue;
        Result<std::string> from = tag_unescape(tag.substr(prefix.size(), eq - prefix.size()));
        Result<std::string> to = tag_unescape(tag.substr(eq + 1));
        if (from && to && !from->empty()) out.push_back({*from, *to});
    }
    return out;
}

// Rule 6: where a committed directory move shows a path.
std::string moved(const std::vector<DirMove>& moves, std::string path) {
    for (const DirMove& m : moves)
        if (is_within(path, m.from)) path = reparent(path, m.from, m.to);
    return path;
}

bool is_pool_internal(const LvRecord& lv, const std::string& thinpool) {
    return lv.name == thinpool || lv.segtype == "thin-pool" || starts_with(lv.name, "[");
}

}  // namespace

Catalog build_catalog(const std::vector<LvRecord>& all, const ExportScope& scope) {
    const std::string& thinpool = scope.thinpool;
    Catalog cat;
    // LV names are the VG's: a name another pool's LV holds is taken here too.
    std::set<std::string> names;
    for (const LvRecord& lv : all) names.insert(lv.name);
    std::vector<LvRecord> own;
    for (const LvRecord& lv : all)
        if (scope.owns(lv)) own.push_back(lv);
    const std::vector<LvRecord>& lvs = scope.pool_only ? own : all;
    cat.records = lvs;
    std::set<std::string> deleting_ids;
    for (const LvRecord& lv : lvs) {
        cat.lv_names.push_back(lv.name);
        if (lv.name == thinpool) {
            cat.pool = lv;
            cat.moves = moves_of(lv);
        }
        if (starts_with(lv.name, kDelPrefix))
            deleting_ids.insert(tag_value(lv.tags, tags::kId).value_or(lv.uuid));
    }
    // Rule 3 applies to snapshots of snapshots too: close the set over bd.snapof.
    for (bool grew = true; grew;) {
        grew = false;
        for (const LvRecord& lv : lvs) {
            std::optional<std::string> of = tag_value(lv.tags, tags::kSnapOf);
            std::string id = tag_value(lv.tags, tags::kId).value_or(lv.uuid);
            if (of && deleting_ids.count(*of) && deleting_ids.insert(id).second) grew = true;
        }
    }
    std::map<std::string, Volume> by_path;
    for (const LvRecord& lv : lvs) {
        if (is_pool_internal(lv, thinpool)) continue;
        bool managed = tag_value(lv.tags, tags::kManaged).has_value();
        if (!managed) {
            // Rule 4; a managed volume of the same path wins.
            if (lv.segtype == "thin" && lv.pool == thinpool && !by_path.count(lv.name))
                by_path.emplace(lv.name, make_volume(lv, lv.name, false));
            continue;
        }
        bool canonical = true;
        std::optional<std::string> path = resolve_path(lv, names, scope, canonical);
        if (path && moved(cat.moves, *path) != *path) {
            path = moved(cat.moves, *path);
            canonical = false;  // until renamed to where the move shows it
        }
        std::optional<std::string> snapof = tag_value(lv.tags, tags::kSnapOf);
        if (!path || (snapof && deleting_ids.count(*snapof))) {
            cat.leftovers.push_back({lv, path ? "snapshot of a volume being deleted"
                                              : "not a volume: interrupted operation"});
            continue;
        }
        Volume v = make_volume(lv, *path, true);
        v.canonical = canonical && !tag_value(lv.tags, tags::kTxn) &&
                      tag_values(lv.tags, tags::kPath).size() == 1 &&
                      tag_values(lv.tags, tags::kTo).empty();
        auto it = by_path.find(*path);
        if (it == by_path.end() || !it->second.managed) {
            by_path.insert_or_assign(*path, std::move(v));
            continue;
        }
        // Rule 7: keep the name holder (or the first) in view; freeze both.
        Volume& shown = it->second;
        std::string name = scope.lv_name(*path);
        if (v.lv == name && shown.lv != name) std::swap(shown, v);
        shown.conflict = true;
        shown.canonical = false;
        cat.leftovers.push_back(
            {*std::find_if(lvs.begin(), lvs.end(), [&](const LvRecord& r) { return r.name == v.lv; }),
             fmt::format("claims \"{}\" as LV \"{}\" does", *path, shown.lv), true});
    }
    for (auto& [path, v] : by_path) cat.volumes.push_back(std::move(v));
    for (Volume& v : cat.volumes)
        if (const Volume* o = v.origin_id.empty() ? nullptr : cat.find_id(v.origin_id))
            v.origin_path = o->path;
    return cat;
}

const Volume* Catalog::find(const std::string& path) const {
    auto it = std::lower_bound(volumes.begin(), volumes.end(), path,
                               [](const Volume& v, const std::string& p) { return v.path < p; });
    return it != volumes.end() && it->path == path ? &*it : nullptr;
}

Result<std::string> dir_move_tag(const DirMove& move) {
    std::string tag = std::string(tags::kDirMove) + "=" + tag_escape_key(move.from) + "=" +
                      tag_escape_key(move.to);
    if (tag.size() > kMaxTagLength)
        return fail(ENAMETOOLONG, fmt::format("cannot move directory \"{}\" to \"{}\" in one step: "
                                              "the two paths encode to {} characters and an LVM "
                                              "tag holds {}",
                                              move.from, move.to, tag.size(), kMaxTagLength));
    return tag;
}

const Volume* Catalog::find_alias(const std::string& path) const {
    // Both the origin's path and the snapshot's name may hold an '@' themselves.
    for (const Volume& v : volumes)
        if (v.type == VolumeType::kSnapshot && !v.origin_path.empty() && v.path != path &&
            path.size() == v.origin_path.size() + 1 + v.snapshot_name.size() &&
            path.compare(0, v.origin_path.size(), v.origin_path) == 0 &&
            path[v.origin_path.size()] == '@' &&
            path.compare(v.origin_path.size() + 1, std::string::npos, v.snapshot_name) == 0)
            return &v;
    return nullptr;
}

const Volume* Catalog::find_id(const std::string& id) const {
    for (const Volume& v : volumes)
        if (v.id == id) return &v;
    return nullptr;
}

std::vector<const Volume*> Catalog::snapshots_of(const std::string& id) const {
    std::vector<const Volume*> out;
    for (const Volume& v : volumes)
        if (v.origin_id == id) out.push_back(&v);
    return out;
}

const LvRecord* Catalog::record(const std::string& name) const {
    for (const LvRecord& r : records)
        if (r.name == name) return &r;
    return nullptr;
}

bool Catalog::has_lv(const std::string& name) const {
    return std::find(lv_names.begin(), lv_names.end(), name) != lv_names.end();
}

}  // namespace bd
