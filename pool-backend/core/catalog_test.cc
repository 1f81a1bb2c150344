// The catalog decides what an export shows at every step of every
// multi-step operation; these tests walk those steps on synthetic reports.
#include "catalog.h"

#include <gtest/gtest.h>

#include "names.h"

namespace bd {

namespace {

LvRecord pool() {
    LvRecord lv;
    lv.name = "pool";
    lv.segtype = "thin-pool";
    lv.data_percent = 10;
    lv.metadata_percent = 5;
    return lv;
}

LvRecord thin(const std::string& name, std::vector<std::string> tags) {
    LvRecord lv;
    lv.name = name;
    lv.segtype = "thin";
    lv.pool = "pool";
    lv.size = 64 << 20;
    lv.data_percent = 50;
    lv.active = true;
    lv.attr = "Vwi-a-tz--";
    lv.tags = std::move(tags);
    return lv;
}

LvRecord vol(const std::string& path, const std::string& id, std::vector<std::string> extra = {}) {
    std::vector<std::string> t = {"bd.v=1", "bd.path=" + tag_escape(path), "bd.id=" + id};
    t.insert(t.end(), extra.begin(), extra.end());
    return thin(lv_name_for_path(path), t);
}

std::vector<std::string> paths(const Catalog& c) {
    std::vector<std::string> out;
    for (const Volume& v : c.volumes) out.push_back(v.path + (v.canonical ? "" : "*"));
    return out;
}

using Paths = std::vector<std::string>;

}  // namespace

TEST(Catalog, ManagedForeignAndThick) {
    LvRecord thick = vol("big", "t1");
    thick.segtype = "linear";
    thick.pool = "";
    LvRecord other_thick;
    other_thick.name = "swap";
    other_thick.segtype = "linear";
    Catalog c = build_catalog({pool(), vol("vm/a.img", "1"), thin("foreign", {}), thick,
                               other_thick},
                              "pool");
    EXPECT_EQ(paths(c), (Paths{"big", "foreign", "vm/a.img"}));
    EXPECT_EQ(c.find("big")->type, VolumeType::kThick);
    EXPECT_FALSE(c.find("foreign")->managed);
    EXPECT_EQ(*c.find("vm/a.img")->allocated, 32u << 20);
    EXPECT_TRUE(c.leftovers.empty());
    ASSERT_TRUE(c.pool);
}

TEST(Catalog, InactiveForeignHasUnknownAllocation) {
    LvRecord f = thin("off", {});
    f.active = false;
    f.data_percent.reset();
    Catalog c = build_catalog({pool(), f}, "pool");
    ASSERT_TRUE(c.find("off"));
    EXPECT_FALSE(c.find("off")->allocated);
}

TEST(Catalog, SnapshotsLinkToOrigin) {
    Catalog c = build_catalog(
        {pool(), vol("a", "A"), vol("a@s1", "S", {"bd.snapof=A", "bd.snap=s1"})}, "pool");
    ASSERT_EQ(c.snapshots_of("A").size(), 1u);
    EXPECT_EQ(c.find("a@s1")->origin_path, "a");
    EXPECT_EQ(c.find("a@s1")->type, VolumeType::kSnapshot);
    EXPECT_EQ(c.find("a@s1")->snapshot_name, "s1");
}

TEST(Catalog, RenameEveryStepShowsOldOrNew) {
    // Step 1: stage bd.to=b on a's LV: still a.
    LvRecord a = vol("a", "1", {"bd.to=b"});
    EXPECT_EQ(paths(build_catalog({pool(), a}, "pool")), (Paths{"a*"}));
    // Step 2 (commit): rename the LV to b's name: now b.
    a.name = lv_name_for_path("b");
    EXPECT_EQ(paths(build_catalog({pool(), a}, "pool")), (Paths{"b*"}));
    // Step 3: bd.path=b added; step 4: stale tags removed.
    a.tags.push_back("bd.path=b");
    EXPECT_EQ(paths(build_catalog({pool(), a}, "pool")), (Paths{"b*"}));
    a.tags = {"bd.v=1", "bd.path=b", "bd.id=1"};
    EXPECT_EQ(paths(build_catalog({pool(), a}, "pool")), (Paths{"b"}));
}

TEST(Catalog, ForeignAdoptionByRename) {
    LvRecord f = thin("foreign", {"bd.to=mine"});  // staged: ignored while unmanaged
    EXPECT_EQ(paths(build_catalog({pool(), f}, "pool")), (Paths{"foreign"}));
    f.tags.push_back("bd.v=1");  // commit
    EXPECT_EQ(paths(build_catalog({pool(), f}, "pool")), (Paths{"mine*"}));
}

TEST(Catalog, RollbackEveryStepShowsOldOrNew) {
    LvRecord o = vol("a", "A");
    LvRecord s = vol("a@s", "S", {"bd.snapof=A", "bd.snap=s"});
    // Step 1: hidden writable copy of the snapshot, staged for a.
    LvRecord tmp = thin("_bd_tmp.t1", {"bd.v=1", "bd.to=a", "bd.id=A", "bd.txn=t1"});
    Catalog c1 = build_catalog({pool(), o, s, tmp}, "pool");
    EXPECT_EQ(paths(c1), (Paths{"a", "a@s"}));
    EXPECT_EQ(c1.find("a")->lv, o.name);
    EXPECT_EQ(c1.leftovers.size(), 1u);
    // Step 2 (commit): old LV moved aside; the copy is a.
    o.name = "_bd_old.t1";
    Catalog c2 = build_catalog({pool(), o, s, tmp}, "pool");
    EXPECT_EQ(paths(c2), (Paths{"a*", "a@s"}));
    EXPECT_EQ(c2.find("a")->lv, "_bd_tmp.t1");
    EXPECT_EQ(c2.find("a@s")->origin_path, "a");
    // Step 3: copy renamed to the canonical name.
    tmp.name = lv_name_for_path("a");
    Catalog c3 = build_catalog({pool(), o, s, tmp}, "pool");
    EXPECT_EQ(paths(c3), (Paths{"a*", "a@s"}));
    EXPECT_EQ(c3.leftovers.size(), 1u);
}

TEST(Catalog, DeleteWithSnapshotsHidesTheFamily) {
    LvRecord o = vol("a", "A");
    LvRecord s = vol("a@s", "S", {"bd.snapof=A"});
    LvRecord ss = vol("a@s@t", "T", {"bd.snapof=S"});
    EXPECT_EQ(build_catalog({pool(), o, s, ss}, "pool").volumes.size(), 3u);
    o.name = "_bd_del.x";  // commit
    Catalog c = build_catalog({pool(), o, s, ss}, "pool");
    EXPECT_TRUE(c.volumes.empty());
    EXPECT_EQ(c.leftovers.size(), 3u);
}

TEST(Catalog, FullCloneInvisibleUntilRenamed) {
    LvRecord tmp = thin("_bd_tmp.c1", {"bd.v=1", "bd.path=copy", "bd.id=C", "bd.txn=c1"});
    Catalog c = build_catalog({pool(), tmp}, "pool");
    EXPECT_TRUE(c.volumes.empty());
    tmp.name = lv_name_for_path("copy");
    EXPECT_EQ(paths(build_catalog({pool(), tmp}, "pool")), (Paths{"copy*"}));
}

TEST(Catalog, ManagedWinsOverForeignOfSamePath) {
    Catalog c = build_catalog({pool(), thin("x", {}), vol("x", "1")}, "pool");
    ASSERT_EQ(c.volumes.size(), 1u);
    EXPECT_TRUE(c.volumes[0].managed);
}

TEST(Catalog, XattrsAndOwner) {
    Catalog c = build_catalog(
        {pool(), vol("a", "1", {"bd.uid=1000", "bd.mode=384", "bd.x=user.k!3Dx=v!20w"})}, "pool");
    const Volume* v = c.find("a");
    EXPECT_EQ(v->uid, 1000u);
    EXPECT_EQ(v->mode, 0600u);
    EXPECT_EQ(v->xattrs.at("user.k=x"), "v w");
}

TEST(Catalog, ReplaceEveryStepShowsOldOrNew) {
    // mv -f src dst: src stages dst and the transaction; dst's LV giving up
    // its name is the commit (removed, or hidden as _bd_old.T while open).
    LvRecord src = vol("src", "S", {"bd.to=dst", "bd.txn=t1"});
    LvRecord dst = vol("dst", "D");
    EXPECT_EQ(paths(build_catalog({pool(), src, dst}, "pool")), (Paths{"dst", "src*"}));
    dst.name = "_bd_old.t1";  // commit (or: dst removed)
    Catalog c = build_catalog({pool(), src, dst}, "pool");
    EXPECT_EQ(paths(c), (Paths{"dst*"}));
    EXPECT_EQ(c.find("dst")->id, "S");
    EXPECT_EQ(c.leftovers.size(), 1u);
    EXPECT_EQ(paths(build_catalog({pool(), src}, "pool")), (Paths{"dst*"}));
    src.name = lv_name_for_path("dst");  // tidy: canonical name, then tags
    EXPECT_EQ(paths(build_catalog({pool(), src}, "pool")), (Paths{"dst*"}));
    // Without a transaction, a staged claim never beats the LV's own name.
    LvRecord plain = vol("a", "A", {"bd.to=b"});
    EXPECT_EQ(paths(build_catalog({pool(), plain}, "pool")), (Paths{"a*"}));
}

TEST(Catalog, CloneIntoCommitsByFreeingTheName) {
    LvRecord dst = vol("f", "F");
    LvRecord tmp = thin("_bd_tmp.t2", {"bd.v=1", "bd.to=f", "bd.id=F", "bd.txn=t2"});
    Catalog before = build_catalog({pool(), dst, tmp}, "pool");
    EXPECT_EQ(paths(before), (Paths{"f"}));
    EXPECT_EQ(before.find("f")->lv, dst.name);
    Catalog after = build_catalog({pool(), tmp}, "pool");
    EXPECT_EQ(paths(after), (Paths{"f*"}));
    EXPECT_EQ(after.find("f")->lv, "_bd_tmp.t2");
}

TEST(Catalog, ACommittedDirectoryMoveShowsEveryVolumeAtItsNewPath) {
    LvRecord p = pool();
    p.tags = {*dir_move_tag({"a/b", "c"})};
    LvRecord moved_one = vol("c/x", "X");                       // renamed already
    LvRecord staged = vol("a/b/y", "Y", {"bd.to=c/y"});        // being renamed
    LvRecord waiting = vol("a/b/d/z", "Z");                     // not yet
    LvRecord outside = vol("a/bb", "O");                         // not in the move
    Catalog c = build_catalog({p, moved_one, staged, waiting, outside}, "pool");
    EXPECT_EQ(paths(c), (Paths{"a/bb", "c/d/z*", "c/x", "c/y*"}));  // * until renamed
    ASSERT_EQ(c.moves.size(), 1u);
    EXPECT_EQ(c.moves[0].from, "a/b");
    staged.name = lv_name_for_path("c/y");                      // its rename committed
    EXPECT_EQ(paths(build_catalog({p, staged}, "pool")), (Paths{"c/y*"}));
    EXPECT_EQ(dir_move_tag({std::string(600, 'x'), std::string(600, 'y')}).error().code,
              ENAMETOOLONG);
}

TEST(Catalog, TwoClaimsOnOnePathFreezeBoth) {
    // Two staged transactions whose target someone removed by hand: neither wins.
    LvRecord t1 = thin("_bd_tmp.t1", {"bd.v=1", "bd.to=c", "bd.id=C", "bd.txn=t1"});
    LvRecord t2 = thin("_bd_tmp.t2", {"bd.v=1", "bd.to=c", "bd.id=C", "bd.txn=t2"});
    Catalog c = build_catalog({pool(), t1, t2}, "pool");
    EXPECT_EQ(paths(c), (Paths{"c*"}));
    EXPECT_TRUE(c.find("c")->conflict);
    ASSERT_EQ(c.leftovers.size(), 1u);
    EXPECT_TRUE(c.leftovers[0].conflict);
    EXPECT_NE(c.leftovers[0].lv.name, c.find("c")->lv);
}

TEST(Catalog, UnownedVolumesAreRootsAndPrivate) {
    Catalog c = build_catalog({pool(), vol("old", "1"), thin("foreign", {})}, "pool");
    for (const char* p : {"old", "foreign"}) {
        const Volume* v = c.find(p);
        EXPECT_EQ(v->uid, 0u) << p;
        EXPECT_EQ(v->gid, 0u) << p;
        EXPECT_EQ(v->mode, 0600u) << p;
        EXPECT_EQ(v->format, "raw") << p;
    }
}

TEST(Catalog, FormatIsTheRecordedOne) {
    LvRecord q = vol("q", "1", {"bd.fmt=qcow2", "bd.vsize=1073741824"});
    Catalog c = build_catalog({pool(), q, vol("r", "2")}, "pool");
    EXPECT_EQ(c.find("q")->format, "qcow2");
    EXPECT_EQ(c.find("q")->capacity, 1u << 30);
    EXPECT_EQ(c.find("r")->format, "raw");
    EXPECT_EQ(c.find("r")->capacity, 64u << 20);
}

TEST(Catalog, ForeignAdoptedInPlaceKeepsItsName) {
    // chmod of a foreign LV adds bd.v, bd.id and bd.path=<its own name> in one lvchange.
    LvRecord f = thin("myvm", {"bd.v=1", "bd.id=U", "bd.path=myvm", "bd.mode=416"});
    Catalog c = build_catalog({pool(), f}, "pool");
    ASSERT_EQ(paths(c), (Paths{"myvm"}));
    EXPECT_TRUE(c.find("myvm")->managed);
    EXPECT_EQ(c.find("myvm")->mode, 0640u);
    EXPECT_TRUE(c.leftovers.empty());
    // bd's own names never count as adopted volumes.
    LvRecord tmp = thin("_bd_tmp.x", {"bd.v=1", "bd.id=T", "bd.path=_bd_tmp.x"});
    EXPECT_EQ(build_catalog({pool(), tmp}, "pool").leftovers.size(), 1u);
}

TEST(Catalog, SnapshotLinkNamesAreFoundAsAliases) {
    Catalog c = build_catalog({pool(), vol("d/a", "A"), vol("d/s", "S", {"bd.snapof=A", "bd.snap=s"}),
                               vol("d/a@t", "T", {"bd.snapof=A", "bd.snap=t"}),
                               vol("x@y", "X"), vol("x@y/z", "Z", {"bd.snapof=X", "bd.snap=q@r"})},
                              "pool");
    ASSERT_TRUE(c.find_alias("d/a@s"));
    EXPECT_EQ(c.find_alias("d/a@s")->path, "d/s");
    EXPECT_FALSE(c.find_alias("d/a@t"));  // its own path: a file, not an alias
    EXPECT_FALSE(c.find_alias("d/a@u"));
    EXPECT_EQ(c.find_alias("x@y@q@r")->path, "x@y/z");  // '@' in both halves
}

// A pool export of a shared VG is its thin pool's LVs and nothing else: the
// other pools' volumes, their interrupted work (_bd_tmp, _bd_old) and their
// foreign LVs are another host's export, never leftovers fsck would remove.
TEST(Catalog, PoolExportSeesOnlyItsPool) {
    ExportScope mine{"hosta", true};
    LvRecord pa = pool(), pb = pool();
    pa.name = "hosta";
    pb.name = "hostb";
    auto in = [](LvRecord lv, const std::string& p) {
        lv.pool = p;
        return lv;
    };
    auto named = [](LvRecord lv, const std::string& n) {
        lv.name = n;
        return lv;
    };
    std::vector<std::string> tags = {"bd.v=1", "bd.path=disk", "bd.id=A1"};
    std::vector<LvRecord> rows = {
        pa, pb,
        in(named(thin("", tags), mine.lv_name("disk")), "hosta"),
        in(named(thin("", {"bd.v=1", "bd.path=disk", "bd.id=B1"}),
                 ExportScope{"hostb", true}.lv_name("disk")),
           "hostb"),
        in(thin("_bd_tmp.1234", {"bd.v=1", "bd.to=x", "bd.txn=1234"}), "hostb"),
        in(thin("_bd_old.5678", {"bd.v=1", "bd.path=y", "bd.id=B2"}), "hostb"),
        in(thin("foreignb", {}), "hostb"),
    };
    Catalog c = build_catalog(rows, mine);
    ASSERT_EQ(paths(c), (Paths{"disk"}));
    EXPECT_EQ(c.volumes[0].id, "A1");
    EXPECT_TRUE(c.leftovers.empty());
    ASSERT_TRUE(c.pool);
    EXPECT_EQ(c.pool->name, "hosta");
    EXPECT_EQ(c.lv_names, (std::vector<std::string>{"hosta", mine.lv_name("disk")}));
    // The same rows seen as host b's export: its volume, its leftovers.
    Catalog cb = build_catalog(rows, ExportScope{"hostb", true});
    EXPECT_EQ(paths(cb), (Paths{"disk", "foreignb", "x*"}));  // rule 0: x, unfinished
    EXPECT_EQ(cb.volumes[0].id, "B1");
    ASSERT_EQ(cb.leftovers.size(), 1u);
    EXPECT_EQ(cb.leftovers[0].lv.name, "_bd_old.5678");
}

}  // namespace bd
