#include "lvm_argv.h"

#include <fmt/format.h>

namespace bd {

namespace {

// Every report is JSON, in bytes, without unit suffixes, with times as epoch seconds.
const Argv kReportFlags = {"--reportformat", "json", "--units", "b", "--nosuffix",
                           "--config", "report/time_format=\"%s\""};

std::string bytes_arg(uint64_t bytes) { return std::to_string(bytes) + "b"; }

void add_tags(Argv& argv, const std::vector<std::string>& tags, const char* flag = "--addtag") {
    for (const std::string& tag : tags) {
        argv.push_back(flag);
        argv.push_back(tag);
    }
}

Argv with_report_flags(Argv argv) {
    argv.insert(argv.begin() + 1, kReportFlags.begin(), kReportFlags.end());
    return argv;
}

// Every command that changes metadata makes LVM archive the old copy in
// /etc/lvm/archive, and LVM's default keeps every archive younger than 30 days:
// thousands of changes a day would fill /etc. bd's changes keep the newest
// kArchivesKept archives of the VG instead (docs/ARCHITECTURE.md, "Security").
Argv change(std::initializer_list<std::string> head) {
    Argv argv = head;
    argv.insert(argv.begin() + 1,
                {"--config", fmt::format("backup/retain_min={} backup/retain_days=0", kArchivesKept)});
    return argv;
}

// Names go after "--", so no name, however spelled, is read as an option.
void add_names(Argv& argv, std::initializer_list<std::string> names) {
    argv.push_back("--");
    argv.insert(argv.end(), names);
}

}  // namespace

Argv vgs_argv(const std::string& vg) {
    Argv argv = with_report_flags(
        {"vgs", "-o",
         "vg_name,vg_uuid,vg_tags,vg_extent_size,vg_size,vg_free,vg_seqno,vg_lock_type"});
    if (!vg.empty()) add_names(argv, {vg});
    return argv;
}

// Each LV's row also carries its VG's fields: finding an export, its lock key
// (vg_uuid) and its metadata room (vg_mda_*) all come with the one report.
constexpr const char* kLvFields =
    "lv_name,lv_uuid,lv_attr,lv_size,lv_tags,pool_lv,origin,segtype,data_percent,"
    "metadata_percent,chunk_size,lv_active,lv_device_open,lv_time,lv_dm_path,lv_when_full,"
    "thin_id,vg_name,vg_uuid,vg_tags,vg_extent_size,vg_free,vg_mda_free,vg_mda_size,"
    "vg_lock_type";

Argv lvs_argv(const std::string& vg) {
    Argv argv = with_report_flags({"lvs", "-o", kLvFields});
    add_names(argv, {vg});
    return argv;
}

Argv lvs_all_argv() { return with_report_flags({"lvs", "-o", kLvFields}); }

Argv vgcreate_argv(const std::string& vg, const std::vector<std::string>& pvs, bool shared) {
    // A bigger metadata area than LVM's 1 MiB default: bd keeps paths and links in
    // tags, and thousands of volumes must fit.
    Argv argv = change({"vgcreate", "--yes", "--metadatasize", "16m"});
    if (shared) argv.push_back("--shared");
    add_names(argv, {vg});
    argv.insert(argv.end(), pvs.begin(), pvs.end());
    return argv;
}

Argv thinpool_create_argv(const std::string& vg, const std::string& pool, uint64_t data,
                          uint64_t metadata) {
    // A full pool fails writes at once instead of queueing them (see
    // docs/ARCHITECTURE.md, "Space"): VMs pause, and LVM keeps answering.
    // --yes: wiping an old signature where the new pool lands asks first, and
    // no one answers a question inside the lvm shell.
    Argv argv = change({"lvcreate", "--yes", "--thinpool", pool, "--size", bytes_arg(data),
                        "--poolmetadatasize", bytes_arg(metadata), "--errorwhenfull", "y"});
    add_names(argv, {vg});
    return argv;
}

Argv thin_create_argv(const std::string& vg, const std::string& pool, const std::string& lv,
                      uint64_t bytes, const std::vector<std::string>& tags) {
    Argv argv = change({"lvcreate", "--type", "thin", "--virtualsize", bytes_arg(bytes),
                        "--thinpool", pool, "--name", lv});
    add_tags(argv, tags);
    add_names(argv, {vg});
    return argv;
}

Argv linear_create_argv(const std::string& vg, const std::string& lv, uint64_t bytes,
                        const std::vector<std::string>& tags) {
    Argv argv = change({"lvcreate", "--yes", "--type", "linear", "--size", bytes_arg(bytes),
                        "--name", lv});
    add_tags(argv, tags);
    add_names(argv, {vg});
    return argv;
}

Argv thin_snapshot_argv(const std::string& vg, const std::string& origin, const std::string& lv,
                        bool read_only, const std::vector<std::string>& tags) {
    // Thin snapshots skip activation by default; bd volumes are always usable devices.
    Argv argv = change({"lvcreate", "--snapshot", "--setactivationskip", "n", "--activate", "y",
                        "--permission", read_only ? "r" : "rw", "--name", lv});
    add_tags(argv, tags);
    add_names(argv, {vg + "/" + origin});
    return argv;
}

Argv cow_snapshot_argv(const std::string& vg, const std::string& origin, const std::string& lv,
                       const std::vector<std::string>& tags) {
    Argv argv = change({"lvcreate", "--snapshot", "--extents", "100%ORIGIN", "--permission", "r",
                        "--name", lv});
    add_tags(argv, tags);
    add_names(argv, {vg + "/" + origin});
    return argv;
}

Argv lvremove_argv(const std::string& vg, const std::string& lv) {
    Argv argv = change({"lvremove", "--yes"});
    add_names(argv, {vg + "/" + lv});
    return argv;
}

Argv lvrename_argv(const std::string& vg, const std::string& from, const std::string& to) {
    Argv argv = change({"lvrename"});
    add_names(argv, {vg, from, to});
    return argv;
}

Argv lvchange_tags_argv(const std::string& vg, const std::string& lv, const TagEdit& edit) {
    Argv argv = change({"lvchange"});
    add_tags(argv, edit.add);
    add_tags(argv, edit.del, "--deltag");
    add_names(argv, {vg + "/" + lv});
    return argv;
}

Argv lvchange_activate_argv(const std::string& vg, const std::vector<std::string>& lvs,
                            bool active, bool exclusive) {
    Argv argv = {"lvchange", "--activate", active ? (exclusive ? "ey" : "y") : "n"};
    // Thin snapshots made outside bd carry LVM's activation-skip flag.
    if (active) argv.push_back("--ignoreactivationskip");
    argv.push_back("--");
    for (const std::string& lv : lvs) argv.push_back(vg + "/" + lv);
    return argv;
}

Argv lvmlockctl_info_argv() { return {"lvmlockctl", "--info"}; }

Argv lvchange_when_full_argv(const std::string& vg, const std::string& pool, bool error) {
    Argv argv = change({"lvchange", "--errorwhenfull", error ? "y" : "n"});
    add_names(argv, {vg + "/" + pool});
    return argv;
}

Argv lvresize_argv(const std::string& vg, const std::string& lv, uint64_t bytes,
                   bool allow_shrink) {
    // A growth is an lvextend, which refuses a smaller size: lvresize would
    // ask before reducing (the LV may have grown since bd read it), and no
    // one answers a question inside the lvm shell. bd reduces only when told.
    Argv argv = change({allow_shrink ? "lvresize" : "lvextend", "--size", bytes_arg(bytes)});
    if (allow_shrink) argv.push_back("--yes");
    add_names(argv, {vg + "/" + lv});
    return argv;
}

Argv vgchange_tags_argv(const std::string& vg, const TagEdit& edit) {
    Argv argv = change({"vgchange"});
    add_tags(argv, edit.add);
    add_tags(argv, edit.del, "--deltag");
    add_names(argv, {vg});
    return argv;
}

Argv vgremove_argv(const std::string& vg) {
    Argv argv = change({"vgremove", "--yes"});
    add_names(argv, {vg});
    return argv;
}

Argv lvmconfig_argv(const std::vector<std::string>& keys) {
    Argv argv = {"lvmconfig", "--type", "full", "--"};
    argv.insert(argv.end(), keys.begin(), keys.end());
    return argv;
}

Argv qemu_img_create_argv(const std::string& device, const std::string& format, uint64_t bytes) {
    return {"qemu-img", "create", "-q", "-f", format, "-o", "compat=1.1", "--", device,
            std::to_string(bytes)};
}

Argv dmsetup_status_argv(const std::string& dm_name) {
    return {"dmsetup", "status", "--", dm_name};
}

Argv dmsetup_message_argv(const std::string& dm_name, const std::string& message) {
    return {"dmsetup", "message", "--", dm_name, "0", message};
}

Argv thin_delta_argv(const std::string& tmeta, uint64_t from_id, uint64_t to_id) {
    return {"thin_delta", "--metadata-snap", "--snap1", std::to_string(from_id), "--snap2",
            std::to_string(to_id), "--", tmeta};
}

Argv thin_dump_argv(const std::string& tmeta, uint64_t dev_id) {
    return {"thin_dump", "--metadata-snap", "--dev-id", std::to_string(dev_id), "--", tmeta};
}

Argv thin_ls_argv(const std::string& tmeta) {
    return {"thin_ls", "--metadata-snap", "--no-headers", "-o", "DEV,EXCLUSIVE_BYTES", "--", tmeta};
}

}  // namespace bd
