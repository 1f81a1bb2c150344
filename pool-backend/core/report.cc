#include "report.h"

#include "names.h"
#include "volume_tree.h"

namespace bd {

using nlohmann::json;

const char* type_name(VolumeType type) {
    switch (type) {
        case VolumeType::kThin: return "thin";
        case VolumeType::kThick: return "thick";
        case VolumeType::kSnapshot: return "snapshot";
    }
    return "thin";
}

json to_json(const Volume& v, const Export& ex) {
    json j = {{"path", v.path},
              {"name", base_name(v.path)},
              {"export", ex.name()},
              {"vg", ex.vg()},
              {"lv", v.lv},
              {"device", ex.device(v)},
              {"link", ex.tree() + "/" + v.path},
              {"type", type_name(v.type)},
              {"size", v.size},
              {"format", v.format},
              {"capacity", v.capacity},
              {"allocated", nullptr},
              {"read_only", v.read_only},
              {"active", v.active},
              {"open", v.open},
              {"managed", v.managed},
              {"origin", nullptr},
              {"snapshot", nullptr},
              {"id", v.id},
              {"uid", v.uid},
              {"gid", v.gid},
              {"mode", v.mode},
              {"ctime", v.ctime},
              {"mtime", v.mtime}};
    if (v.allocated) j["allocated"] = *v.allocated;
    if (v.exclusive) j["exclusive"] = *v.exclusive;
    if (!v.origin_path.empty()) j["origin"] = v.origin_path;
    if (!v.snapshot_name.empty()) j["snapshot"] = v.snapshot_name;
    if (!v.xattrs.empty()) j["xattrs"] = v.xattrs;
    return j;
}

json to_json(const ExportInfo& info) {
    json j = {{"name", info.name},
            {"vg", info.vg},
            {"thinpool", info.thinpool},
            {"tree", tree_root("/dev", info.shared ? info.vg + "@" + info.thinpool : info.vg)},
            {"shared", info.shared},
            {"threshold", info.threshold},
            {"size", info.size},
            {"allocated", info.allocated},
            {"free", info.size > info.allocated ? info.size - info.allocated : 0},
            {"data_percent", info.data_percent},
            {"metadata_percent", info.metadata_percent},
            {"chunk_size", info.chunk_size},
            {"extent_size", info.extent_size},
            {"volumes", info.volumes},
            {"leftovers", info.leftovers},
            {"vg_free", info.vg_free},
            {"when_full", info.when_full},
            {"metadata_area", info.metadata_area},
            {"metadata_area_free", info.metadata_area_free}};
    if (info.shared) {
        j["lock_type"] = info.lock_type;
        j["owner"] = info.owner;
        j["owned"] = info.owned;
        j["stale"] = info.stale;
    }
    return j;
}

json to_json(const Error& e) {
    return {{"error", {{"code", errno_name(e.code)}, {"errno", e.code}, {"message", e.message}}}};
}

}  // namespace bd
