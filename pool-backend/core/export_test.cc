// Export's undo paths and commit points, through the Runner seam: FakeLvm fails
// the k-th LVM change, and each test checks that what is left is the old state
// or the new one, never a half-made one, and that fsck finishes the new one.
#include "export.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fake_lvm.h"
#include "names.h"

namespace bd {

namespace {

class ExportUndo : public ::testing::Test {
protected:
    void SetUp() override {
        char dir[] = "/tmp/bd-unit-run-XXXXXX";
        ASSERT_TRUE(mkdtemp(dir));
        run_dir_ = dir;
        setenv("BD_RUN_DIR", dir, 1);
    }
    void TearDown() override {
        std::string cmd = "rm -rf " + run_dir_;
        (void)system(cmd.c_str());
    }

    // A managed volume at `path` with id `id`, as bd makes it.
    FakeLvm::Lv& add(FakeLvm::Vg& vg, const std::string& path, const std::string& id,
                     std::vector<std::string> extra = {}) {
        FakeLvm::Lv lv;
        lv.name = lv_name_for_path(path);
        lv.uuid = "uuid-" + id;
        lv.pool = "pool";
        lv.size = 64 << 20;
        lv.tags = {"bd.v=1", *make_tag("bd.path", path), "bd.id=" + id};
        lv.tags.insert(lv.tags.end(), extra.begin(), extra.end());
        return vg.lvs[lv.name] = lv;
    }

    Export open(FakeLvm& lvm) {
        Result<Export> ex = Export::open(lvm, "bd");
        EXPECT_TRUE(ex) << ex.error().message;
        // Always a private device directory: the volume tree goes below it.
        ex->set_device_dir(lvm.dev_dir.empty() ? run_dir_ + "/dev" : lvm.dev_dir);
        return std::move(*ex);
    }

    // Data for the LVs of `lvm` (files under the run directory).
    void with_data(FakeLvm& lvm) {
        lvm.dev_dir = run_dir_ + "/dev";
        for (const auto& [vgname, vg] : lvm.vgs)
            for (const auto& [name, lv] : vg.lvs) {
                std::filesystem::create_directories(lvm.dev_dir + "/" + vgname);
                std::ofstream(lvm.dev_dir + "/" + vgname + "/" + name).close();
                std::filesystem::resize_file(lvm.dev_dir + "/" + vgname + "/" + name, lv.size);
            }
    }
    static std::string data_of(FakeLvm& lvm, const std::string& lv) {
        std::ifstream in(lvm.dev_dir + "/vg0/" + lv, std::ios::binary);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    static void write_data(FakeLvm& lvm, const std::string& lv, const std::string& text) {
        std::fstream out(lvm.dev_dir + "/vg0/" + lv, std::ios::binary | std::ios::in | std::ios::out);
        out << text;
    }
    static std::vector<std::string> internal_lvs(FakeLvm& lvm) {
        std::vector<std::string> out;
        for (const std::string& n : lvm.lv_names("vg0"))
            if (n.rfind("_bd_", 0) == 0) out.push_back(n);
        return out;
    }

    // The export's volumes as "path*" (unfinished) and its leftovers' count.
    static std::string view(Export& ex) {
        Result<Catalog> cat = ex.scan();
        if (!cat) return "error: " + cat.error().message;
        std::string out;
        for (const Volume& v : cat->volumes)
            out += v.path + (v.canonical ? "" : "*") + "=" + v.id + " ";
        return out + "+" + std::to_string(cat->leftovers.size());
    }

    // How many changes a successful `op` on a fresh `make()` makes.
    template <typename Make, typename Op>
    static int changes_of(Make make, Op op) {
        FakeLvm lvm;
        make(lvm);
        op(lvm);
        return int(lvm.changes().size());
    }

    std::string run_dir_;
};

}  // namespace

TEST_F(ExportUndo, ExportCreateLeavesNothingWhenAnyStepFails) {
    ExportSpec spec;
    spec.name = "bd";
    spec.vg = "vg0";
    spec.pvs = {"/dev/vda"};
    spec.size = 512 << 20;
    int steps = changes_of([](FakeLvm&) {}, [&](FakeLvm& lvm) { ASSERT_TRUE(Export::create(lvm, spec)); });
    ASSERT_EQ(steps, 4);  // vgcreate, the pool, the settings, the export tag (the commit)
    for (int k = 1; k <= steps; ++k) {
        FakeLvm lvm;
        lvm.fail_change(k);
        EXPECT_FALSE(Export::create(lvm, spec)) << "step " << k;
        EXPECT_TRUE(lvm.vgs.empty()) << "step " << k << " left VG " << lvm.vgs.begin()->first;
    }
    // On a VG that was there: it is left as it was, pool and tags.
    spec.pvs.clear();
    for (int k = 1; k <= 3; ++k) {
        FakeLvm lvm;
        lvm.vgs["vg0"].name = "vg0";
        lvm.vgs["vg0"].uuid = "u0";
        lvm.fail_change(k);
        EXPECT_FALSE(Export::create(lvm, spec)) << "step " << k;
        EXPECT_TRUE(lvm.vgs["vg0"].lvs.empty()) << "step " << k;
        EXPECT_TRUE(lvm.vgs["vg0"].tags.empty()) << "step " << k;
    }
}

TEST_F(ExportUndo, FullCloneCopiesAFrozenSourceAndCommitsOnce) {
    auto make = [&](FakeLvm& lvm) {
        add(lvm.add_export("vg0", "bd"), "src", "S").size = 4 << 20;
        with_data(lvm);
        write_data(lvm, lv_name_for_path("src"), "the source's data");
    };
    int steps = changes_of(make, [&](FakeLvm& lvm) {
        Export ex = open(lvm);
        ASSERT_TRUE(ex.clone("src", "dst", true));
    });
    ASSERT_EQ(steps, 5);  // freeze, target, rename (the commit), drop the frozen source, untag
    for (int k = 0; k <= steps; ++k) {
        FakeLvm lvm;
        make(lvm);
        Export ex = open(lvm);
        lvm.fail_change(k);
        Result<Volume> v = ex.clone("src", "dst", true);
        if (k >= 1 && k <= 3) {  // up to the commit: nothing left, not even hidden
            EXPECT_FALSE(v) << k;
            EXPECT_EQ(view(ex), "src=S +0") << k;
            EXPECT_TRUE(internal_lvs(lvm).empty()) << k;
            continue;
        }
        ASSERT_TRUE(v) << k << ": " << v.error().message;
        EXPECT_EQ(data_of(lvm, lv_name_for_path("dst")), data_of(lvm, lv_name_for_path("src")))
            << k;
        EXPECT_EQ(data_of(lvm, lv_name_for_path("dst")).substr(0, 17), "the source's data");
        ASSERT_TRUE(ex.fsck(false));
        EXPECT_EQ(view(ex).substr(view(ex).find(' ')), " src=S +0") << k;
        EXPECT_TRUE(internal_lvs(lvm).empty()) << k;
    }
}

TEST_F(ExportUndo, FullCloneRunsWithoutTheLockAndGivesUpIfItsTargetIsTaken) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add(vg, "src", "S");
    add(vg, "other", "O");
    with_data(lvm);
    // As bdctl opens it for a change: locked from the start.
    Result<Export> ex = Export::open(lvm, "bd", Access::kChange);
    ASSERT_TRUE(ex) << ex.error().message;
    ex->set_device_dir(lvm.dev_dir);
    bool ran = false;
    auto progress = [&](uint64_t, uint64_t) {
        if (ran) return;
        ran = true;
        // Other changes go on during the copy (no lock is held)...
        Export other = open(lvm);
        EXPECT_TRUE(other.rename({"other", "O"}, "moved"));
        // ...but not at the copy's target,
        EXPECT_FALSE(other.create_volume({"dst", 4 << 20, false, "raw", {}}));
        // ...unless by hand, behind bd's back.
        add(lvm.vgs["vg0"], "dst", "X").size = 8 << 20;
    };
    Result<Volume> v = ex->clone("src", "dst", true, progress);
    ASSERT_TRUE(ran);
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code, EEXIST);
    EXPECT_TRUE(internal_lvs(lvm).empty());
    EXPECT_EQ(view(*ex), "dst=X moved=O src=S +0");
}

TEST_F(ExportUndo, RollbackIsRefusedWholeWhenTheVolumeIsOpenedBeforeItsCommit) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add(vg, "a", "A", {"bd.mode=416"});
    add(vg, "a@s", "S", {"bd.snapof=A", "bd.snap=s"}).read_only = true;
    Export ex = open(lvm);
    // A VM opens "a" after the check and before the commit: LVM refuses to remove it.
    lvm.fail_change(2, Error(EIO, "`lvremove` failed (exit 5): Logical volume vg0/a in use."));
    Result<Volume> r = ex.rollback("a", "s");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EBUSY);
    EXPECT_EQ(view(ex), "a=A a@s=S +0");
    EXPECT_EQ(lvm.vgs["vg0"].lvs.count(lv_name_for_path("a")), 1u);
}

TEST_F(ExportUndo, RollbackCommittedIsASuccessAndFsckFinishesIt) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add(vg, "a", "A", {"bd.mode=416"});
    add(vg, "a@s", "S", {"bd.snapof=A", "bd.snap=s"}).read_only = true;
    Export ex = open(lvm);
    std::vector<std::string> warnings;
    ex.set_warn([&](const std::string& w) { warnings.push_back(w); });
    lvm.fail_change(3);  // the first tidying step after the commit
    Result<Volume> r = ex.rollback("a", "s");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->id, "A");
    EXPECT_EQ(r->mode, 0640u);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("bdctl fsck"), std::string::npos);
    EXPECT_EQ(view(ex), "a*=A a@s=S +0");
    ASSERT_TRUE(ex.fsck(false));
    EXPECT_EQ(view(ex), "a=A a@s=S +0");
    EXPECT_EQ(lvm.vgs["vg0"].lvs.count(lv_name_for_path("a")), 1u);
}

class ExportDiff : public ExportUndo {
protected:
    // A volume "a" (thin id 1) with snapshots n1 (2) and n2 (3), as bd makes them.
    void add_snapshots(FakeLvm& lvm, FakeLvm::Vg& vg) {
    add(vg, "a", "A", {}).thin_id = 1;
    FakeLvm::Lv& n1 = add(vg, "a@n1", "N1", {"bd.snapof=A", "bd.snap=n1"});
    n1.read_only = true;
    n1.thin_id = 2;
    FakeLvm::Lv& n2 = add(vg, "a@n2", "N2", {"bd.snapof=A", "bd.snap=n2"});
    n2.read_only = true;
    n2.thin_id = 3;
    lvm.thin_delta_out =
        "<superblock data_block_size=\"128\"><diff left=\"2\" right=\"3\">"
        "<same begin=\"0\" length=\"2\"/><different begin=\"2\" length=\"1\"/>"
        "<left_only begin=\"5\" length=\"1\"/></diff></superblock>";
    }
};

TEST_F(ExportDiff, DiffReadsTheMappingsUnderAMetadataSnapshotAndReleasesIt) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add_snapshots(lvm, vg);
    Export ex = open(lvm);
    Result<VolumeDelta> d = ex.diff("a", "n1", "n2");
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(d->from.id, "N1");
    EXPECT_EQ(d->to.id, "N2");
    EXPECT_FALSE(d->to_live);
    EXPECT_EQ(d->chunk_size, 65536u);
    ASSERT_EQ(d->ranges.size(), 2u);
    EXPECT_EQ(d->ranges[0].kind, DeltaKind::kChanged);
    EXPECT_EQ(d->ranges[0].offset, 2u * 65536);
    EXPECT_EQ(d->ranges[1].kind, DeltaKind::kRemoved);
    EXPECT_FALSE(lvm.metadata_snap_held);
    EXPECT_EQ(lvm.changes(), (std::vector<std::string>{"dmsetup reserve_metadata_snap",
                                                       "thin_delta /dev/mapper/vg0-pool_tmeta",
                                                       "dmsetup release_metadata_snap"}));
    // Without --to, the volume as it is now (thin id 1).
    lvm.thin_delta_out = "<superblock data_block_size=\"128\"><diff left=\"3\" right=\"1\"/>"
                         "</superblock>";
    Result<VolumeDelta> live = ex.diff("a", "/a@n2", "");
    ASSERT_TRUE(live) << live.error().message;
    EXPECT_TRUE(live->to_live);
    EXPECT_EQ(live->to.id, "A");
}

TEST_F(ExportDiff, DiffReleasesTheMetadataSnapshotWhenThinDeltaFails) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add_snapshots(lvm, vg);
    Export ex = open(lvm);
    lvm.fail_change(2, Error(EIO, "thin_delta: metadata is corrupt"));
    Result<VolumeDelta> d = ex.diff("a", "n1", "n2");
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("corrupt"), std::string::npos);
    EXPECT_FALSE(lvm.metadata_snap_held);
    EXPECT_EQ(lvm.changes().back(), "dmsetup release_metadata_snap");
    // A report thin_delta did not mean is refused, and the snapshot released too.
    lvm.thin_delta_out =
        "<superblock data_block_size=\"256\"><diff left=\"2\" right=\"3\"/></superblock>";
    d = ex.diff("a", "n1", "n2");
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("chunks of 65536"), std::string::npos) << d.error().message;
    EXPECT_FALSE(lvm.metadata_snap_held);
}

TEST_F(ExportDiff, ALeftoverOfAKilledDiffIsReleasedByTheNextDiffAndByFsck) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add_snapshots(lvm, vg);
    Export ex = open(lvm);
    std::vector<std::string> warnings;
    ex.set_warn([&](const std::string& w) { warnings.push_back(w); });
    // Killed right after the reservation, with its guardian: nothing releases.
    lvm.die_after(1);
    EXPECT_FALSE(ex.diff("a", "n1", "n2"));
    lvm.revive();
    EXPECT_TRUE(lvm.metadata_snap_held);
    Result<std::vector<Repair>> dry = ex.fsck(true);
    ASSERT_TRUE(dry) << dry.error().message;
    ASSERT_EQ(dry->size(), 1u);
    EXPECT_EQ((*dry)[0].action, "would release a metadata snapshot a killed bd left held");
    EXPECT_TRUE(lvm.metadata_snap_held);
    Result<std::vector<Repair>> log = ex.fsck(false);
    ASSERT_TRUE(log) << log.error().message;
    ASSERT_EQ(log->size(), 1u);
    EXPECT_EQ((*log)[0].action, "released a metadata snapshot a killed bd left held");
    EXPECT_FALSE(lvm.metadata_snap_held);
    ASSERT_TRUE(ex.fsck(false));
    EXPECT_TRUE(ex.fsck(false)->empty());  // the marker went with it
    // The same, found by the next diff.
    lvm.die_after(1);
    EXPECT_FALSE(ex.diff("a", "n1", "n2"));
    lvm.revive();
    Result<VolumeDelta> d = ex.diff("a", "n1", "n2");
    ASSERT_TRUE(d) << d.error().message;
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("released a metadata snapshot"), std::string::npos);
    EXPECT_FALSE(lvm.metadata_snap_held);
}

TEST_F(ExportDiff, AMetadataSnapshotAnotherToolHoldsIsNeverReleased) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add_snapshots(lvm, vg);
    Export ex = open(lvm);
    lvm.metadata_snap_held = true;  // thin_dump -m, by hand: no marker of bd's
    Result<VolumeDelta> d = ex.diff("a", "n1", "n2");
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code, EBUSY);
    EXPECT_NE(d.error().message.find("dmsetup message vg0-pool-tpool 0 release_metadata_snap"),
              std::string::npos)
        << d.error().message;
    Result<std::vector<Repair>> log = ex.fsck(false);
    ASSERT_TRUE(log) << log.error().message;
    ASSERT_EQ(log->size(), 1u);
    EXPECT_EQ((*log)[0].action.rfind("left alone: a metadata snapshot bd did not take", 0), 0u);
    EXPECT_TRUE(lvm.metadata_snap_held);
    EXPECT_TRUE(lvm.changes().empty());
}

TEST_F(ExportDiff, SnapshotsShowWhatDeletingEachWouldFree) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add_snapshots(lvm, vg);
    Export ex = open(lvm);
    Result<std::vector<Volume>> snaps = ex.snapshots("a");
    ASSERT_TRUE(snaps) << snaps.error().message;
    ASSERT_EQ(snaps->size(), 2u);
    EXPECT_EQ((*snaps)[0].id, "N1");
    EXPECT_EQ((*snaps)[0].exclusive, std::optional<uint64_t>(2 * 65536));  // thin id 2
    EXPECT_EQ((*snaps)[1].exclusive, std::optional<uint64_t>(3 * 65536));
    EXPECT_FALSE(lvm.metadata_snap_held);
    // thin_ls failing costs the figure, with a warning, not the list.
    std::vector<std::string> warnings;
    ex.set_warn([&](const std::string& w) { warnings.push_back(w); });
    lvm.fail_change(2, Error(EIO, "thin_ls: bad metadata"));
    snaps = ex.snapshots("a");
    ASSERT_TRUE(snaps) << snaps.error().message;
    EXPECT_EQ(snaps->size(), 2u);
    EXPECT_FALSE((*snaps)[0].exclusive);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("bad metadata"), std::string::npos);
    EXPECT_FALSE(lvm.metadata_snap_held);
}

TEST_F(ExportDiff, DiffNamesWhatItCannotCompare) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add_snapshots(lvm, vg);
    add(vg, "b", "B", {}).thin_id = 4;
    add(vg, "b@n1", "BN1", {"bd.snapof=B", "bd.snap=n1"}).read_only = true;
    Export ex = open(lvm);
    Result<VolumeDelta> d = ex.diff("a", "nope", "");
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code, ENOENT);
    EXPECT_NE(d.error().message.find("bdctl snapshots bd:/a"), std::string::npos);
    d = ex.diff("a", "/b@n1", "");  // another volume's snapshot
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code, ENOENT);
    d = ex.diff("a@n1", "n2", "");
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("is a snapshot"), std::string::npos);
    d = ex.diff("b", "n1", "");  // LVM gave no thin id for b@n1
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("\"b@n1\" is not a thin volume of pool \"vg0/pool\""),
              std::string::npos)
        << d.error().message;
    EXPECT_TRUE(lvm.changes().empty());  // nothing was reserved for any of them
}

TEST_F(ExportUndo, RenameThatFailsToCommitIsUndone) {
    FakeLvm lvm;
    add(lvm.add_export("vg0", "bd"), "a", "A");
    Export ex = open(lvm);
    lvm.fail_change(2);  // the lvrename
    EXPECT_FALSE(ex.rename("a", "b"));
    EXPECT_EQ(view(ex), "a=A +0");  // canonical again: the staged bd.to is gone
}

TEST_F(ExportUndo, ReplaceIsOneCommitAndChecksIdentity) {
    auto make = [&](FakeLvm& lvm) {
        FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
        add(vg, "src", "S");
        add(vg, "dst", "D");
    };
    int steps = changes_of(make, [&](FakeLvm& lvm) {
        Export ex = open(lvm);
        ASSERT_TRUE(ex.replace({"src", "S"}, {"dst", "D"}, Actor::root()));
    });
    for (int k = 1; k <= steps; ++k) {
        FakeLvm lvm;
        make(lvm);
        Export ex = open(lvm);
        lvm.fail_change(k);
        Result<Placed> r = ex.replace({"src", "S"}, {"dst", "D"}, Actor::root());
        std::string after = view(ex);
        if (k <= 2) {  // before or at the commit: nothing happened
            EXPECT_FALSE(r) << k;
            EXPECT_EQ(after, "dst=D src=S +0") << k;
        } else {       // after it: done, fsck tidies
            EXPECT_TRUE(r) << k;
            EXPECT_EQ(after, "dst*=S +0") << k;
            ASSERT_TRUE(ex.fsck(false));
            EXPECT_EQ(view(ex), "dst=S +0") << k;
        }
    }
    // The path now holds another volume than the caller saw: refused.
    FakeLvm lvm;
    make(lvm);
    Export ex = open(lvm);
    Result<Placed> stale = ex.replace({"src", "S"}, {"dst", "X"}, Actor::root());
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error().code, ESTALE);
    EXPECT_EQ(view(ex), "dst=D src=S +0");
}

TEST_F(ExportUndo, CloneIntoKeepsTheTargetsIdentityAndUndoesCleanly) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add(vg, "src", "S");
    add(vg, "dst", "D", {"bd.uid=1000", "bd.mode=420", "bd.x=user.a=1", "bd.x=bdfs.unsized=1"});
    Export ex = open(lvm);
    lvm.fail_change(2);  // the commit
    EXPECT_FALSE(ex.clone_into({"src", "S"}, {"dst", "D"}, Actor::root()));
    EXPECT_EQ(view(ex), "dst=D src=S +0");
    Result<Placed> r = ex.clone_into({"src", "S"}, {"dst", "D"}, Actor::root());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(view(ex), "dst=D src=S +0");
    EXPECT_EQ(r->volume.uid, 1000u);
    EXPECT_EQ(r->volume.xattrs.count("user.a"), 1u);
    EXPECT_EQ(r->volume.xattrs.count("bdfs.unsized"), 0u);  // a front's own bookkeeping goes
    EXPECT_EQ(lvm.vgs["vg0"].lvs[r->volume.lv].origin, lv_name_for_path("src"));
}

TEST_F(ExportUndo, AnInterruptedDirectoryMoveShowsTheNewTreeAndFsckFinishesIt) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add(vg, "d/a", "A");
    add(vg, "d/sub/b", "B");
    add(vg, "e", "E");
    Export ex = open(lvm);
    std::vector<std::string> warnings;
    ex.set_warn([&](const std::string& w) { warnings.push_back(w); });
    lvm.fail_change(2);  // the commit (the pool's lvchange) lands, the first rename does not
    EXPECT_TRUE(ex.rename_dir("d", "x"));  // committed: a success, with a warning
    ASSERT_FALSE(warnings.empty());
    EXPECT_NE(warnings.back().find("bdctl fsck"), std::string::npos);
    EXPECT_EQ(view(ex), "e=E x/a*=A x/sub/b*=B +0");
    ASSERT_TRUE(ex.fsck(false));
    EXPECT_EQ(view(ex), "e=E x/a=A x/sub/b=B +0");
    Result<Catalog> cat = ex.scan();
    ASSERT_TRUE(cat);
    EXPECT_TRUE(cat->moves.empty());
    // While a move is unfinished, nothing is made under its source...
    lvm.fail_change(2);
    EXPECT_TRUE(ex.rename_dir("x", "y"));
    Result<Volume> made = ex.create_volume({"x/new", 4 << 20, false, "raw", {}});
    ASSERT_FALSE(made);
    EXPECT_EQ(made.error().code, EBUSY);
    // ...and a change to a moved volume finishes its part of the move first.
    EXPECT_EQ(view(ex), "e=E y/a*=A y/sub/b*=B +0");
    Result<Volume> moved = ex.rename({"y/a", "A"}, "z");
    ASSERT_TRUE(moved) << moved.error().message;
    EXPECT_EQ(view(ex), "e=E y/sub/b*=B z=A +0");
}

// A change killed after its first step (kill -9: no undo runs) leaves work
// that only fsck may finish or undo: no other change may use its paths, or
// the staged LV would take a path its own commit never freed.
TEST_F(ExportUndo, AStagedChangeBlocksItsPathsUntilFsck) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add(vg, "src", "S");
    add(vg, "dst", "D");
    add(vg, "aaa", "A");
    Export ex = open(lvm);
    lvm.die_after(1);  // replace staged src to dst, then died
    EXPECT_FALSE(ex.replace({"src", "S"}, {"dst", "D"}, Actor::root()));
    lvm.revive();
    Export other = open(lvm);
    EXPECT_EQ(view(other), "aaa=A dst=D src*=S +0");
    Result<std::vector<std::string>> del = other.remove_volume({"dst"}, false);
    ASSERT_FALSE(del);
    EXPECT_EQ(del.error().code, EUCLEAN);
    Result<Volume> ren = other.rename({"dst"}, "other");
    ASSERT_FALSE(ren);
    EXPECT_EQ(ren.error().code, EUCLEAN);
    Result<Placed> over = other.replace({"aaa", "A"}, {"dst", "D"}, Actor::root());
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, EUCLEAN);
    EXPECT_EQ(view(other), "aaa=A dst=D src*=S +0");
    ASSERT_TRUE(other.fsck(false));
    EXPECT_EQ(view(other), "aaa=A dst=D src=S +0");
    EXPECT_TRUE(other.remove_volume({"dst"}, false));
}

TEST_F(ExportUndo, AKilledRollbackBlocksAMoveOfItsDirectory) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add(vg, "dir/p", "P");
    add(vg, "dir/p@s", "S", {"bd.snapof=P", "bd.snap=s"}).read_only = true;
    Export ex = open(lvm);
    lvm.die_after(1);  // the writable copy of the snapshot is made, then death
    EXPECT_FALSE(ex.rollback("dir/p", "s"));
    lvm.revive();
    Export other = open(lvm);
    Result<void> mv = other.rename_dir("dir", "new");
    ASSERT_FALSE(mv);
    EXPECT_EQ(mv.error().code, EUCLEAN);
    ASSERT_TRUE(other.fsck(false));
    ASSERT_TRUE(other.rename_dir("dir", "new"));
    EXPECT_EQ(view(other), "new/p=P new/p@s=S +0");
}

TEST_F(ExportUndo, TwoLvsClaimingOnePathAreLeftForAPerson) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    // Two staged copies of "c" whose volume someone lvremoved by hand.
    for (const char* name : {"_bd_tmp.1", "_bd_tmp.2"}) {
        FakeLvm::Lv lv;
        lv.name = name;
        lv.uuid = std::string("u") + name;
        lv.pool = "pool";
        lv.size = 4 << 20;
        lv.tags = {"bd.v=1", *make_tag("bd.to", "c"), "bd.id=C", std::string("bd.txn=") + name};
        vg.lvs[name] = lv;
    }
    Export ex = open(lvm);
    Result<Catalog> cat = ex.scan();
    ASSERT_TRUE(cat);
    ASSERT_EQ(cat->volumes.size(), 1u);
    EXPECT_TRUE(cat->volumes[0].conflict);
    ASSERT_EQ(cat->leftovers.size(), 1u);
    EXPECT_TRUE(cat->leftovers[0].conflict);
    Result<std::vector<Repair>> log = ex.fsck(false);
    ASSERT_TRUE(log);
    EXPECT_EQ(internal_lvs(lvm), (std::vector<std::string>{"_bd_tmp.1", "_bd_tmp.2"}));
    Result<Volume> r = ex.rename({"c"}, "d");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EUCLEAN);
}

TEST_F(ExportUndo, AHiddenVolumeBlocksNothingAndForeignOnesAreAdoptedFirst) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add(vg, "f", "F");
    FakeLvm::Lv foreign;
    foreign.name = "ext";
    foreign.uuid = "uext";
    foreign.pool = "pool";
    foreign.size = 4 << 20;
    vg.lvs["ext"] = foreign;
    Export ex = open(lvm);
    Result<std::string> hidden = ex.hide({"f", "F"}, 1);  // rm of a file bdfs holds open
    ASSERT_TRUE(hidden) << hidden.error().message;
    Result<Volume> again = ex.create_volume({"f", 4 << 20, false, "raw", {}});  // touch f
    ASSERT_TRUE(again) << again.error().message;
    Result<std::string> gone = ex.hide({"ext", "uext"}, 1);
    ASSERT_TRUE(gone) << gone.error().message;
    EXPECT_EQ(view(ex).find("_bd_"), std::string::npos) << view(ex);
    EXPECT_EQ(view(ex).find("ext"), std::string::npos) << view(ex);
    ASSERT_TRUE(ex.reap());
    EXPECT_TRUE(internal_lvs(lvm).empty());
}

TEST_F(ExportUndo, EmptyingOpensTheVolumeTheCallerSawOrNone) {
    FakeLvm lvm;
    add(lvm.add_export("vg0", "bd"), "a", "A");
    with_data(lvm);
    Export ex = open(lvm);
    ASSERT_TRUE(ex.rename({"a", "A"}, "b"));
    ASSERT_TRUE(ex.create_volume({"a", 4 << 20, false, "raw", {}}));
    Result<Fd> fd = ex.open_to_empty({"a", "A"}, 0);
    ASSERT_FALSE(fd);
    EXPECT_EQ(fd.error().code, ESTALE);
    Result<Fd> right = ex.open_to_empty({"b", "A"}, 0);
    ASSERT_TRUE(right) << right.error().message;
}

}  // namespace bd

namespace bd {

namespace {

// The links under the export's volume tree, "path" each, after checking that
// each points at the device of the volume the catalog shows there.
std::string tree_view(Export& ex) {
    Result<Catalog> cat = ex.scan();
    if (!cat) return "error: " + cat.error().message;
    std::string out;
    if (!std::filesystem::exists(ex.tree())) return "(no tree)";
    std::vector<std::string> paths;
    for (const auto& e : std::filesystem::recursive_directory_iterator(ex.tree())) {
        if (!e.is_symlink()) continue;
        std::string rel = std::filesystem::relative(e.path(), ex.tree()).string();
        const Volume* v = cat->find(rel);
        std::string target = std::filesystem::read_symlink(e.path()).string();
        if (!v) rel += "(stale)";
        else if (target != ex.device(*v)) rel += "(wrong:" + target + ")";
        paths.push_back(rel);
    }
    std::sort(paths.begin(), paths.end());
    for (const std::string& p : paths) out += (out.empty() ? "" : " ") + p;
    return out;
}

}  // namespace

TEST_F(ExportUndo, TheVolumeTreeFollowsEveryChange) {
    FakeLvm lvm;
    FakeLvm::Vg& vg = lvm.add_export("vg0", "bd");
    add(vg, "a", "A");
    Export ex = open(lvm);
    EXPECT_EQ(ex.tree(), run_dir_ + "/dev/disk/by-bd/vg0");
    ASSERT_TRUE(ex.create_volume({"vm/disk0.img", 4 << 20, false, "raw", {}}));
    EXPECT_EQ(tree_view(ex), "a vm/disk0.img");  // "a" came with the first change's rebuild
    ASSERT_TRUE(ex.clone("vm/disk0.img", "vm/clone.img", false));
    ASSERT_TRUE(ex.snapshot("a", "a-s1", "s1"));
    EXPECT_EQ(tree_view(ex), "a a-s1 vm/clone.img vm/disk0.img");
    ASSERT_TRUE(ex.rename("vm/clone.img", "other/c.img"));
    EXPECT_EQ(tree_view(ex), "a a-s1 other/c.img vm/disk0.img");
    ASSERT_TRUE(ex.rename_dir("vm", "vms"));
    EXPECT_EQ(tree_view(ex), "a a-s1 other/c.img vms/disk0.img");
    EXPECT_FALSE(std::filesystem::exists(ex.tree() + "/vm"));  // no empty directory stays
    ASSERT_TRUE(ex.remove_volume("a", true));
    EXPECT_EQ(tree_view(ex), "other/c.img vms/disk0.img");
    // A rename killed after its commit, before its link moved, leaves the
    // old link and no new one: the next change (any path) rebuilds the tree.
    lvm.die_after(2);  // LVM changes stop after the commit (fsck would tidy)
    ASSERT_TRUE(ex.rename("other/c.img", "c.img"));
    lvm.revive();
    std::filesystem::remove(ex.tree() + "/c.img");
    std::filesystem::create_directories(ex.tree() + "/other");
    std::filesystem::create_symlink(run_dir_ + "/dev/vg0/" + lv_name_for_path("other/c.img"),
                                    ex.tree() + "/other/c.img");
    EXPECT_EQ(tree_view(ex), "other/c.img(stale) vms/disk0.img");
    ASSERT_TRUE(ex.create_volume({"z", 4 << 20, false, "raw", {}}));
    EXPECT_EQ(tree_view(ex), "c.img vms/disk0.img z");
    // So does a listing (libvirt's refresh), which reads only when all is right.
    std::filesystem::remove(ex.tree() + "/z");
    size_t before = lvm.changes().size();
    ASSERT_TRUE(ex.repair_tree(*ex.scan()));
    EXPECT_EQ(tree_view(ex), "c.img vms/disk0.img z");
    EXPECT_EQ(lvm.changes().size(), before);
    // A reboot: /dev starts empty, activate makes the tree again.
    std::filesystem::remove_all(run_dir_ + "/dev/disk");
    ASSERT_TRUE(ex.activate(""));
    EXPECT_EQ(tree_view(ex), "c.img vms/disk0.img z");
    // No export, no tree.
    ASSERT_TRUE(ex.remove(true, false));
    EXPECT_FALSE(std::filesystem::exists(ex.tree()));
}

}  // namespace bd
