// Device-mapper queries through libdevmapper: the kernel's own view, fresher
// than any LVM report (open counts, thin-pool block usage).
#pragma once

#include <cstdint>
#include <string>

#include "error.h"

namespace bd {

/// What the kernel says about one dm device.
struct DmInfo {
    bool exists = false;
    int open_count = 0;
    bool read_only = false;
};

/// Thin-pool target status, in blocks of the pool's chunk size.
struct ThinPoolStatus {
    uint64_t used_data_blocks = 0, total_data_blocks = 0;
    uint64_t used_metadata_blocks = 0, total_metadata_blocks = 0;
    bool out_of_data_space = false;  ///< "out_of_data_space" mode
    bool read_only = false;          ///< metadata went read-only ("ro")
    bool needs_check = false;
    bool metadata_snap_held = false;  ///< a reserved metadata snapshot ("held metadata root")
    double data_percent() const;
    double metadata_percent() const;
};

/// Info for dm device `name` (e.g. "vg0-disk0"); exists=false if absent.
Result<DmInfo> dm_info(const std::string& name);

/// Status of a thin-pool dm device (e.g. "vg0-pool-tpool").
Result<ThinPoolStatus> dm_thin_pool_status(const std::string& name);

/// Parses a thin-pool status line; public for unit tests.
Result<ThinPoolStatus> parse_thin_pool_status(const std::string& params);

/// Sets libdevmapper up for bd's queries (no udev waits, no stderr chatter).
void dm_prepare();

/// The dm name LVM gives VG/LV: dashes doubled, joined by '-'.
std::string dm_name(const std::string& vg, const std::string& lv);

}  // namespace bd
