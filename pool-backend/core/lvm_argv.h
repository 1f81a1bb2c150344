// Pure builders for every command bd runs: LVM, qemu-img for image formats, and
// dmsetup and thin_delta for the pool's metadata snapshot.
// Nothing here executes anything: the argv goes to Runner (runner.h), and tests
// compare it with golden files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bd {

using Argv = std::vector<std::string>;

/// How many metadata archives of an exported VG LVM keeps after bd's changes.
constexpr int kArchivesKept = 50;

/// Tags to add and remove in one LVM command.
struct TagEdit {
    std::vector<std::string> add;
    std::vector<std::string> del;
};

/// `vgs` JSON report of every VG (or one) with the fields the core reads.
Argv vgs_argv(const std::string& vg = "");
/// `lvs` JSON report of every LV in a VG with the fields the core reads.
Argv lvs_argv(const std::string& vg);
/// The same for every VG, with each LV's VG fields: finds an export and reads it in one call.
Argv lvs_all_argv();
/// New VG on the given devices, carrying tags.
Argv vgcreate_argv(const std::string& vg, const std::vector<std::string>& pvs,
                   bool shared = false);
/// Thin pool with `data` bytes of data and `metadata` bytes of metadata (pool_plan.h).
Argv thinpool_create_argv(const std::string& vg, const std::string& pool, uint64_t data,
                          uint64_t metadata);
/// Thin LV of `bytes` virtual size in `pool`.
Argv thin_create_argv(const std::string& vg, const std::string& pool, const std::string& lv,
                      uint64_t bytes, const std::vector<std::string>& tags);
/// Linear (thick) LV of `bytes`.
Argv linear_create_argv(const std::string& vg, const std::string& lv, uint64_t bytes,
                        const std::vector<std::string>& tags);
/// Thin snapshot of `origin`, active, read-only or writable.
Argv thin_snapshot_argv(const std::string& vg, const std::string& origin, const std::string& lv,
                        bool read_only, const std::vector<std::string>& tags);
/// An LVM (copy-on-write) snapshot of a thick LV, read-only, as big as its origin.
Argv cow_snapshot_argv(const std::string& vg, const std::string& origin, const std::string& lv,
                       const std::vector<std::string>& tags);
/// Removes one LV.
Argv lvremove_argv(const std::string& vg, const std::string& lv);
/// Renames one LV inside its VG.
Argv lvrename_argv(const std::string& vg, const std::string& from, const std::string& to);
/// Adds and removes LV tags in one metadata commit.
Argv lvchange_tags_argv(const std::string& vg, const std::string& lv, const TagEdit& edit);
/// Activates (ignoring activation skip) or deactivates LVs of one VG in one
/// command; `exclusive` activates them exclusively (in a shared VG: only
/// while lvmlockd grants their lock to this host).
Argv lvchange_activate_argv(const std::string& vg, const std::vector<std::string>& lvs,
                            bool active, bool exclusive = false);
/// lvmlockd's locks on this host (a query).
Argv lvmlockctl_info_argv();
/// Makes a thin pool fail writes when full (`error`) or queue them.
Argv lvchange_when_full_argv(const std::string& vg, const std::string& pool, bool error);
/// Sets an LV's new size in bytes; shrinking needs `allow_shrink`.
Argv lvresize_argv(const std::string& vg, const std::string& lv, uint64_t bytes,
                   bool allow_shrink);
/// Adds and removes VG tags in one metadata commit.
Argv vgchange_tags_argv(const std::string& vg, const TagEdit& edit);
/// Removes a whole VG.
Argv vgremove_argv(const std::string& vg);
/// The values LVM uses for these settings ("backup/backup_dir"), defaults included.
Argv lvmconfig_argv(const std::vector<std::string>& keys);
/// Writes an empty image of `format` and virtual size `bytes` on a volume's device.
Argv qemu_img_create_argv(const std::string& device, const std::string& format, uint64_t bytes);

/// `dmsetup status` of one dm device (a thin pool's "-tpool" layer).
Argv dmsetup_status_argv(const std::string& dm_name);

/// `dmsetup message` to a thin pool (e.g. "reserve_metadata_snap").
Argv dmsetup_message_argv(const std::string& dm_name, const std::string& message);

/// thin_delta of two thin device ids, read from the pool's reserved metadata
/// snapshot on its metadata device `tmeta` (/dev/mapper/VG-POOL_tmeta).
Argv thin_delta_argv(const std::string& tmeta, uint64_t from_id, uint64_t to_id);
/// The mappings of one thin device, on the pool's metadata snapshot.
Argv thin_dump_argv(const std::string& tmeta, uint64_t dev_id);

/// thin_ls of every thin device's id and exclusive bytes, from the reserved
/// metadata snapshot, without headers.
Argv thin_ls_argv(const std::string& tmeta);

}  // namespace bd
