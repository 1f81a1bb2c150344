// Parsers run against real reports captured in the test guest by
// tests/data/lvm/capture.sh (lvm2 2.03.16, Debian 12).
#include "lvm_report.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "dm.h"

namespace bd {

namespace {

std::string slurp(const std::string& name) {
    std::ifstream in(std::string(BD_TEST_DATA) + "/lvm/" + name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

const LvRecord& by_name(const std::vector<LvRecord>& lvs, const std::string& name) {
    for (const LvRecord& lv : lvs)
        if (lv.name == name) return lv;
    throw std::runtime_error("no LV " + name);
}

}  // namespace

TEST(ParseLvs, RealReport) {
    Result<std::vector<LvRecord>> lvs = parse_lvs(slurp("lvs.json"));
    ASSERT_TRUE(lvs) << lvs.error().message;
    ASSERT_EQ(lvs->size(), 6u);
    const LvRecord& pool = by_name(*lvs, "pool");
    EXPECT_EQ(pool.segtype, "thin-pool");
    EXPECT_EQ(pool.size, 256u << 20);
    EXPECT_EQ(pool.chunk_size, 65536u);
    EXPECT_TRUE(pool.data_percent && pool.metadata_percent);
    const LvRecord& disk = by_name(*lvs, "vm+disk0.img.1");
    EXPECT_EQ(disk.segtype, "thin");
    EXPECT_EQ(disk.pool, "pool");
    EXPECT_EQ(disk.size, 64u << 20);
    EXPECT_NEAR(*disk.data_percent, 12.5, 0.01);
    EXPECT_TRUE(disk.active);
    EXPECT_EQ(*tag_value(disk.tags, "bd.path"), "vm/disk0.img");
    EXPECT_EQ(disk.dm_path, "/dev/mapper/vg0-vm+disk0.img.1");
    EXPECT_GT(disk.time, 1700000000);
    const LvRecord& clone = by_name(*lvs, "clone1");
    EXPECT_EQ(clone.origin, "vm+disk0.img.1");
    EXPECT_EQ(clone.tags.size(), 3u);
    const LvRecord& foreign = by_name(*lvs, "foreign");
    EXPECT_FALSE(foreign.active);
    EXPECT_FALSE(foreign.data_percent);
    EXPECT_EQ(by_name(*lvs, "snap1").attr[1], 'r');
    const LvRecord& thick = by_name(*lvs, "thick");
    EXPECT_EQ(thick.segtype, "linear");
    EXPECT_EQ(*tag_value(thick.tags, "bd.path"), "t hick");
    // Every row carries its VG: the lock key, the export tag, the metadata room.
    EXPECT_EQ(pool.when_full, "error");
    EXPECT_EQ(pool.vg_name, "vg0");
    EXPECT_EQ(pool.vg_uuid.size(), 38u);
    EXPECT_EQ(*tag_value(pool.vg_tags, "bd.export"), "bd");
    EXPECT_EQ(pool.vg_mda_size, 1044480u);
    EXPECT_TRUE(pool.vg_mda_free > 0 && pool.vg_mda_free < pool.vg_mda_size);
    for (const LvRecord& lv : *lvs) EXPECT_EQ(lv.vg_uuid, pool.vg_uuid) << lv.name;
}

TEST(ParseVgs, RealReport) {
    Result<std::vector<VgRecord>> vgs = parse_vgs(slurp("vgs.json"));
    ASSERT_TRUE(vgs);
    ASSERT_EQ(vgs->size(), 1u);
    EXPECT_EQ((*vgs)[0].name, "vg0");
    EXPECT_EQ((*vgs)[0].extent_size, 4u << 20);
    EXPECT_EQ(*tag_value((*vgs)[0].tags, "bd.export"), "bd");
    EXPECT_GT((*vgs)[0].seqno, 1u);
}

TEST(ParseReports, Garbage) {
    EXPECT_EQ(parse_lvs("not json").error().code, EIO);
    EXPECT_EQ(parse_lvs("{}").error().code, EIO);
    EXPECT_TRUE(parse_lvs(R"({"report":[{"lv":[]}]})")->empty());
}

TEST(ParseLvmconfig, RealOutput) {
    // lvm2 2.03.16 in the test guest: lvmconfig --type full backup/backup backup/backup_dir
    auto c = parse_lvmconfig("backup=1\nbackup_dir=\"/etc/lvm/backup\"\n");
    EXPECT_EQ(c["backup"], "1");
    EXPECT_EQ(c["backup_dir"], "/etc/lvm/backup");
    EXPECT_TRUE(parse_lvmconfig("").empty());
}

TEST(ThinPoolStatus, RealLine) {
    std::string line = slurp("thin-pool.status");
    // dmsetup prints "start length target params"; libdevmapper hands us params.
    std::string params = line.substr(line.find("thin-pool ") + 10);
    Result<ThinPoolStatus> s = parse_thin_pool_status(params);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(s->used_metadata_blocks, 113u);
    EXPECT_EQ(s->total_metadata_blocks, 1024u);
    EXPECT_EQ(s->used_data_blocks, 128u);
    EXPECT_EQ(s->total_data_blocks, 4096u);
    EXPECT_NEAR(s->data_percent(), 3.125, 1e-9);
    EXPECT_FALSE(s->out_of_data_space);
    EXPECT_TRUE(parse_thin_pool_status("1 1/2 3/4 - out_of_data_space no_discard")->out_of_data_space);
    EXPECT_FALSE(parse_thin_pool_status("garbage"));
}

TEST(DmName, DoublesDashes) { EXPECT_EQ(dm_name("my-vg", "a-b"), "my--vg-a--b"); }

// A shared VG's report (tests/data/lvm/lvs-shared.json, captured in two test
// guests sharing one disk): the lock type, and which LVs are active here.
TEST(ParseLvs, SharedVgReport) {
    Result<std::vector<LvRecord>> lvs = parse_lvs(slurp("lvs-shared.json"));
    ASSERT_TRUE(lvs) << lvs.error().message;
    const LvRecord& pool = by_name(*lvs, "poolA");
    EXPECT_EQ(pool.vg_lock_type, "sanlock");
    EXPECT_TRUE(pool.active);
    const LvRecord& other = by_name(*lvs, "poolB");  // another host's pool
    EXPECT_FALSE(other.active);
    EXPECT_EQ(other.vg_lock_type, "sanlock");
}

// Which host serves a pool is lvmlockd's answer, not the pool's activation.
TEST(LvmlockctlInfo, HoldsTheExclusiveLockOfOneLvOfOneVg) {
    const std::string info =
        "VG bdvg lock_type=sanlock 2OgY63-DHGx-amXx-nhvc-yDpF-jMoL-3rWTka\n"
        "LS sanlock lvm_bdvg\n"
        "LK VG un ver 7\n"
        "LK LV ex Oet54F-cmU0-sNKh-7wwh-KLH6-3dM3-zVtiew\n"
        "LK LV sh Abcdef-cmU0-sNKh-7wwh-KLH6-3dM3-zVtiew\n"
        "\n"
        "VG other lock_type=sanlock Xyz\n"
        "LK LV ex Zzzzzz-cmU0-sNKh-7wwh-KLH6-3dM3-zVtiew\n";
    EXPECT_TRUE(holds_lv_lock(info, "bdvg", "Oet54F-cmU0-sNKh-7wwh-KLH6-3dM3-zVtiew"));
    EXPECT_TRUE(holds_lv_lock(info, "bdvg", "Oet54FcmU0sNKh7wwhKLH63dM3zVtiew"));
    EXPECT_FALSE(holds_lv_lock(info, "bdvg", "Abcdef-cmU0-sNKh-7wwh-KLH6-3dM3-zVtiew"));  // shared
    EXPECT_FALSE(holds_lv_lock(info, "bdvg", "Zzzzzz-cmU0-sNKh-7wwh-KLH6-3dM3-zVtiew"));  // other VG
    EXPECT_FALSE(holds_lv_lock(info, "other", "Oet54F-cmU0-sNKh-7wwh-KLH6-3dM3-zVtiew"));
    EXPECT_FALSE(holds_lv_lock("", "bdvg", "Oet54F-cmU0-sNKh-7wwh-KLH6-3dM3-zVtiew"));
    EXPECT_FALSE(holds_lv_lock(info, "bdvg", ""));
}

}  // namespace bd

