// Each builder's argv is compared with a golden file in tests/data/argv/, one
// argument per line. BD_UPDATE_GOLDEN=1 rewrites them (review the diff).
#include "lvm_argv.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace bd {

namespace {

std::string render(const Argv& argv) {
    std::string out;
    for (const std::string& a : argv) out += a + "\n";
    return out;
}

void expect_golden(const std::string& name, const Argv& argv) {
    std::string path = std::string(BD_TEST_DATA) + "/argv/" + name + ".argv";
    if (getenv("BD_UPDATE_GOLDEN")) {
        std::ofstream(path) << render(argv);
        return;
    }
    std::ifstream in(path);
    ASSERT_TRUE(in) << "missing golden file " << path << " (run with BD_UPDATE_GOLDEN=1)";
    std::stringstream want;
    want << in.rdbuf();
    EXPECT_EQ(render(argv), want.str()) << "argv differs from " << path;
}

}  // namespace

TEST(Argv, Reports) {
    expect_golden("vgs_all", vgs_argv());
    expect_golden("vgs_one", vgs_argv("vg0"));
    expect_golden("lvs", lvs_argv("vg0"));
    expect_golden("lvs_all", lvs_all_argv());
}

TEST(Argv, MetadataSnapshot) {
    expect_golden("dmsetup_status", dmsetup_status_argv("vg0-pool-tpool"));
    expect_golden("dmsetup_reserve", dmsetup_message_argv("vg0-pool-tpool", "reserve_metadata_snap"));
    expect_golden("thin_delta", thin_delta_argv("/dev/mapper/vg0-pool_tmeta", 2, 1));
}

TEST(Argv, Export) {
    expect_golden("vgcreate", vgcreate_argv("vg0", {"/dev/vda", "/dev/vdb"}));
    expect_golden("thinpool", thinpool_create_argv("vg0", "pool", 1 << 30, 32 << 20));
    expect_golden("vgchange_tags", vgchange_tags_argv("vg0", {{"bd.export=bd"}, {"bd.pool=old"}}));
    expect_golden("vgremove", vgremove_argv("vg0"));
    expect_golden("lvchange_when_full", lvchange_when_full_argv("vg0", "pool", true));
}

TEST(Argv, Volumes) {
    std::vector<std::string> tags = {"bd.v=1", "bd.path=vm/a!20b.img", "bd.id=0123456789abcdef"};
    expect_golden("thin_create", thin_create_argv("vg0", "pool", "vm+a-b.img.0a1b2c3d4e5f",
                                                  20ull << 30, tags));
    expect_golden("linear_create", linear_create_argv("vg0", "thick.img.000000000001", 4 << 20, tags));
    expect_golden("snapshot_ro", thin_snapshot_argv("vg0", "a", "a@s1", true, tags));
    expect_golden("snapshot_rw", thin_snapshot_argv("vg0", "a", "b", false, tags));
    expect_golden("lvremove", lvremove_argv("vg0", "a"));
    expect_golden("lvrename", lvrename_argv("vg0", "a", "b"));
    expect_golden("lvchange_tags", lvchange_tags_argv("vg0", "a", {{"bd.to=x"}, {"bd.txn=1"}}));
    expect_golden("lvchange_activate", lvchange_activate_argv("vg0", {"a", "b"}, true));
    expect_golden("lvresize_grow", lvresize_argv("vg0", "a", 8 << 20, false));
    expect_golden("lvresize_shrink", lvresize_argv("vg0", "a", 4 << 20, true));
    expect_golden("qemu_img_create", qemu_img_create_argv("/dev/vg0/_bd_tmp.1", "qcow2", 1 << 30));
    expect_golden("cow_snapshot", cow_snapshot_argv("vg0", "thick", "_bd_src.1", {"bd.v=1"}));
    expect_golden("lvmconfig", lvmconfig_argv({"backup/backup", "backup/backup_dir"}));
}

// Names chosen by users come after "--", so none is read as an option, and
// every change keeps LVM's archive of the VG bounded.
TEST(Argv, NamesNeverBecomeOptions) {
    for (const Argv& argv : {thin_create_argv("-vg", "pool", "--lv", 1, {}),
                             lvremove_argv("vg", "--help"), lvrename_argv("vg", "a", "-b"),
                             vgcreate_argv("vg", {"--config=x"}), lvs_argv("-x")}) {
        auto dashdash = std::find(argv.begin(), argv.end(), "--");
        ASSERT_NE(dashdash, argv.end()) << argv[0];
        for (auto it = argv.begin(); it != dashdash; ++it)
            EXPECT_TRUE(*it != "-vg" && *it != "--help" && *it != "-b" && *it != "--config=x" &&
                        *it != "-x")
                << argv[0] << ": " << *it << " before --";
    }
    for (const Argv& argv : {lvremove_argv("vg", "a"), lvchange_tags_argv("vg", "a", {{"t"}, {}}),
                             thin_create_argv("vg", "pool", "a", 1, {})})
        EXPECT_EQ(argv[2], fmt::format("backup/retain_min={} backup/retain_days=0", kArchivesKept));
}

}  // namespace bd
