#include "tree.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "dirs.h"
#include "names.h"

namespace bdfs {

namespace {

bd::Volume volume(const std::string& path, const std::string& id) {
    bd::Volume v;
    v.path = path;
    v.id = id;
    return v;
}

bd::Volume snapshot(const std::string& path, const std::string& origin, const std::string& name) {
    bd::Volume v = volume(path, "s-" + path);
    v.type = bd::VolumeType::kSnapshot;
    v.origin_path = origin;
    v.snapshot_name = name;
    v.read_only = true;
    return v;
}

Tree tree() {
    bd::Catalog cat;
    bd::LvRecord pool;
    pool.tags = {*bd::make_tag(bd::tags::kDir, "empty")};
    cat.pool = pool;
    cat.volumes = {volume(".bdfs-unlinked/x", "u"),
                   volume("lv1", "1"),
                   snapshot("lv1-ss", "lv1", "lv1-ss"),
                   snapshot("lv1@daily", "lv1", "daily"),
                   volume("vm/a.img", "2"),
                   snapshot("vm/snaps/a-old", "vm/a.img", "a-old")};
    std::sort(cat.volumes.begin(), cat.volumes.end(),
              [](const bd::Volume& a, const bd::Volume& b) { return a.path < b.path; });
    return Tree(std::move(cat));
}

std::vector<std::string> names(const std::vector<Entry>& entries) {
    std::vector<std::string> out;
    for (const Entry& e : entries) out.push_back(e.name);
    return out;
}

}  // namespace

TEST(Tree, ListsRootWithoutReservedArea) {
    Tree t = tree();
    EXPECT_EQ(names(t.list("")),
              (std::vector<std::string>{"empty", "lv1", "lv1-ss", "lv1@daily", "vm"}));
    EXPECT_FALSE(t.lookup("", ".bdfs-unlinked"));
}

TEST(Tree, SnapshotKinds) {
    Tree t = tree();
    EXPECT_EQ(t.lookup("", "lv1-ss")->kind, Kind::kSnapLink);
    EXPECT_EQ(t.lookup("", "lv1@daily")->kind, Kind::kFile);  // bdctl's own naming
    EXPECT_EQ(link_target(*t.lookup("", "lv1-ss")->volume), "lv1@lv1-ss");
    EXPECT_EQ(link_target(*t.at("vm/snaps/a-old")->volume), "../a.img@a-old");
}

TEST(Tree, VirtualSnapshotNamesResolve) {
    Tree t = tree();
    std::optional<Entry> e = t.lookup("", "lv1@lv1-ss");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kFile);
    EXPECT_EQ(e->path, "lv1-ss");
    EXPECT_EQ(t.at("vm/a.img@a-old")->path, "vm/snaps/a-old");
    EXPECT_FALSE(t.lookup("", "lv1@nope"));
    EXPECT_FALSE(t.lookup("", "@x"));
}

TEST(Tree, ALinkNeverLeadsToAFileOfTheSameName) {
    // A volume named like a snapshot's link target (made by hand or by an older
    // bd): the link still reaches the snapshot, in lookups and listings alike.
    bd::Catalog cat;
    cat.pool = bd::LvRecord{};
    cat.volumes = {volume("a", "A"), volume("a@s", "planted"), snapshot("s", "a", "s")};
    Tree t(std::move(cat));
    EXPECT_EQ(t.lookup("", "a@s")->path, "s");
    for (const Entry& e : t.list(""))
        EXPECT_TRUE(e.name != "a@s" || e.volume->id == "s-s");
}

TEST(Tree, Directories) {
    Tree t = tree();
    EXPECT_TRUE(t.is_dir("empty"));
    EXPECT_TRUE(t.is_dir("vm/snaps"));
    EXPECT_FALSE(t.is_dir("lv1"));
    EXPECT_TRUE(t.list("empty").empty());
    EXPECT_EQ(names(t.list("vm")), (std::vector<std::string>{"a.img", "snaps"}));
    EXPECT_FALSE(t.lookup("lv1", "x"));
}

TEST(Tree, Relative) {
    EXPECT_EQ(relative("", "a"), "a");
    EXPECT_EQ(relative("x", "a"), "../a");
    EXPECT_EQ(relative("a/b", "a/c/d"), "../c/d");
    EXPECT_EQ(relative("a", "a/b"), "b");
}

TEST(Tree, ResolveTarget) {
    EXPECT_EQ(*resolve_target("d", "a", "/mnt"), "d/a");
    EXPECT_EQ(*resolve_target("d", "../a", "/mnt"), "a");
    EXPECT_EQ(*resolve_target("d", "./x/../a", "/mnt"), "d/a");
    EXPECT_EQ(*resolve_target("d", "/mnt/e/a", "/mnt"), "e/a");
    EXPECT_EQ(resolve_target("", "../a", "/mnt").error().code, EINVAL);
    EXPECT_EQ(resolve_target("", "/etc/passwd", "/mnt").error().code, EINVAL);
}

}  // namespace bdfs
