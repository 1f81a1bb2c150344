#include "lvm_argv.h"

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

}  // namespace

Argv vgs_argv(const std::string& vg) {
    Argv argv = with_report_flags(
        {"vgs", "-o", "vg_name,vg_uuid,vg_tags,vg_extent_size,vg_size,vg_free,vg_seqno"});
    if (!vg.empty()) argv.push_back(vg);
    return argv;
}

constexpr const char* kLvFields =
    "lv_name,lv_uuid,lv_attr,lv_size,lv_tags,pool_lv,origin,segtype,data_percent,"
    "metadata_percent,chunk_size,lv_active,lv_device_open,lv_time,lv_dm_path";

Argv lvs_argv(const std::string& vg) { return with_report_flags({"lvs", "-o", kLvFields, vg}); }

Argv lvs_all_argv() {
    return with_report_flags(
        {"lvs", "-o", std::string(kLvFields) + ",vg_name,vg_tags,vg_extent_size,vg_free"});
}

Argv vgcreate_argv(const std::string& vg, const std::vector<std::string>& pvs) {
    // A bigger metadata area than LVM's 1 MiB default: bd keeps paths and links in
    // tags, and thousands of volumes must fit.
    Argv argv = {"vgcreate", "--yes", "--metadatasize", "16m", vg};
    argv.insert(argv.end(), pvs.begin(), pvs.end());
    return argv;
}

Argv thinpool_create_argv(const std::string& vg, const std::string& pool, uint64_t data,
                          uint64_t metadata) {
    return {"lvcreate", "--type", "thin-pool", "--name", pool, "--size", bytes_arg(data),
            "--poolmetadatasize", bytes_arg(metadata), vg};
}

Argv thin_create_argv(const std::string& vg, const std::string& pool, const std::string& lv,
                      uint64_t bytes, const std::vector<std::string>& tags) {
    Argv argv = {"lvcreate", "--type", "thin", "--virtualsize", bytes_arg(bytes),
                 "--thinpool", pool, "--name", lv};
    add_tags(argv, tags);
    argv.push_back(vg);
    return argv;
}

Argv linear_create_argv(const std::string& vg, const std::string& lv, uint64_t bytes,
                        const std::vector<std::string>& tags) {
    Argv argv = {"lvcreate", "--yes", "--type", "linear", "--size", bytes_arg(bytes),
                 "--name", lv};
    add_tags(argv, tags);
    argv.push_back(vg);
    return argv;
}

Argv thin_snapshot_argv(const std::string& vg, const std::string& origin, const std::string& lv,
                        bool read_only, const std::vector<std::string>& tags) {
    // Thin snapshots skip activation by default; bd volumes are always usable devices.
    Argv argv = {"lvcreate", "--snapshot", "--setactivationskip", "n", "--activate", "y",
                 "--permission", read_only ? "r" : "rw", "--name", lv};
    add_tags(argv, tags);
    argv.push_back(vg + "/" + origin);
    return argv;
}

Argv lvremove_argv(const std::string& vg, const std::string& lv) {
    return {"lvremove", "--yes", vg + "/" + lv};
}

Argv lvrename_argv(const std::string& vg, const std::string& from, const std::string& to) {
    return {"lvrename", vg, from, to};
}

Argv lvchange_tags_argv(const std::string& vg, const std::string& lv, const TagEdit& edit) {
    Argv argv = {"lvchange"};
    add_tags(argv, edit.add);
    add_tags(argv, edit.del, "--deltag");
    argv.push_back(vg + "/" + lv);
    return argv;
}

Argv lvchange_activate_argv(const std::string& vg, const std::vector<std::string>& lvs,
                            bool active) {
    Argv argv = {"lvchange", "--activate", active ? "y" : "n"};
    // Thin snapshots made outside bd carry LVM's activation-skip flag.
    if (active) argv.push_back("--ignoreactivationskip");
    for (const std::string& lv : lvs) argv.push_back(vg + "/" + lv);
    return argv;
}

Argv lvresize_argv(const std::string& vg, const std::string& lv, uint64_t bytes,
                   bool allow_shrink) {
    Argv argv = {"lvresize", "--size", bytes_arg(bytes)};
    // Without --yes, lvresize asks before reducing; bd only reduces when told to.
    if (allow_shrink) argv.push_back("--yes");
    argv.push_back(vg + "/" + lv);
    return argv;
}

Argv vgchange_tags_argv(const std::string& vg, const TagEdit& edit) {
    Argv argv = {"vgchange"};
    add_tags(argv, edit.add);
    add_tags(argv, edit.del, "--deltag");
    argv.push_back(vg);
    return argv;
}

Argv vgremove_argv(const std::string& vg) { return {"vgremove", "--yes", vg}; }

}  // namespace bd
