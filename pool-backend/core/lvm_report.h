// Parsers for LVM's JSON reports (lvs/vgs --reportformat json).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "error.h"

namespace bd {

/// One row of `lvs` (see lvs_argv for the fields).
struct LvRecord {
    std::string name;
    std::string uuid;
    std::string attr;  ///< lv_attr, e.g. "Vwi-a-tz--"
    uint64_t size = 0;
    std::vector<std::string> tags;
    std::string pool;     ///< pool_lv: thin pool of a thin LV
    std::string origin;   ///< LVM's origin (thin snapshots)
    std::string segtype;  ///< "thin", "thin-pool", "linear", ...
    std::optional<double> data_percent;
    std::optional<double> metadata_percent;
    uint64_t chunk_size = 0;
    bool active = false;
    bool open = false;
    int64_t time = 0;     ///< creation time, epoch seconds
    std::string dm_path;    ///< /dev/mapper/VG-LV
    std::string when_full;  ///< thin pools: "error" or "queue" (lv_when_full)
    uint64_t thin_id = 0;   ///< thin LVs: the pool's device id (thin_id), 0 for others
    // The LV's VG, on every row.
    std::string vg_name, vg_uuid;
    std::vector<std::string> vg_tags;
    uint64_t vg_extent_size = 0, vg_free = 0;
    uint64_t vg_mda_free = 0, vg_mda_size = 0;  ///< room left for metadata, and the area
    std::string vg_lock_type;  ///< "sanlock", "dlm", "idm": a VG hosts share; "" a local one
};

/// One row of `vgs`.
struct VgRecord {
    std::string name;
    std::string uuid;
    std::vector<std::string> tags;
    uint64_t extent_size = 0;
    uint64_t size = 0;
    uint64_t free = 0;
    uint64_t seqno = 0;
    std::string lock_type;  ///< vg_lock_type: "" for a local VG
};

/// Parses `lvs --reportformat json` output.
Result<std::vector<LvRecord>> parse_lvs(std::string_view json);

/// Parses `vgs --reportformat json` output.
Result<std::vector<VgRecord>> parse_vgs(std::string_view json);

/// Parses `lvmconfig` output ("name=value" lines; quoted strings unquoted) by name.
std::map<std::string, std::string> parse_lvmconfig(std::string_view text);

/// True if `lvmlockctl --info` shows that this host holds the exclusive lock
/// of LV `lv_uuid` of VG `vg` ("LK LV ex UUID" in the VG's section). Dashes
/// in uuids are ignored.
bool holds_lv_lock(std::string_view info, std::string_view vg, std::string_view lv_uuid);

/// Value of the first "key=..." tag (unescaped), if any.
std::optional<std::string> tag_value(const std::vector<std::string>& tags, std::string_view key);

/// Values of every "key=..." tag (unescaped).
std::vector<std::string> tag_values(const std::vector<std::string>& tags, std::string_view key);

}  // namespace bd
