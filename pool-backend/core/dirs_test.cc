#include "dirs.h"

#include <gtest/gtest.h>

#include "names.h"

namespace bd {

namespace {

Catalog catalog(const std::vector<std::string>& volumes, const std::vector<std::string>& dirs) {
    Catalog cat;
    LvRecord pool;
    pool.name = "pool";
    for (const std::string& d : dirs) pool.tags.push_back(*make_tag(tags::kDir, d));
    cat.pool = pool;
    for (const std::string& p : volumes) {
        Volume v;
        v.path = p;
        cat.volumes.push_back(v);
    }
    return cat;
}

}  // namespace

TEST(Dirs, ImplicitAndExplicit) {
    Catalog cat = catalog({"vm/a.img", "x/y/z.img"}, {"empty", "deep/er"});
    std::set<std::string> want = {"vm", "x", "x/y", "empty", "deep", "deep/er"};
    EXPECT_EQ(directories(cat), want);
    EXPECT_TRUE(is_directory(cat, ""));
    EXPECT_FALSE(is_directory(cat, "vm/a.img"));
}

TEST(Dirs, OwnerAndModeTags) {
    Catalog cat = catalog({"vm/a.img"}, {"vm"});
    for (const auto& [path, a] : std::map<std::string, DirAttrs>{
             {"", {0, 0, 01777}}, {"vm", {1000, 100, 0750}}, {"sp:a ce/é", {7, 8, 0700}}})
        cat.pool->tags.push_back(*dir_attrs_tag(path, a));
    cat.pool->tags.push_back("bd.dattr=1:2:99999:bad");   // mode out of range
    cat.pool->tags.push_back("bd.dattr=1:x:493:bad2");    // not a number
    std::map<std::string, DirAttrs> got = dir_attrs(cat);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got.at(""), (DirAttrs{0, 0, 01777}));
    EXPECT_EQ(got.at("vm"), (DirAttrs{1000, 100, 0750}));
    EXPECT_EQ(got.at("sp:a ce/é"), (DirAttrs{7, 8, 0700}));
    EXPECT_EQ(*dir_attrs_tag("vm", {1000, 100, 0750}), "bd.dattr=1000:100:488:vm");
    EXPECT_FALSE(dir_attrs_tag(std::string(1100, 'a'), {}));
    // what to delete is the stored tags, duplicates and odd spellings included
    cat.pool->tags.push_back("bd.dattr=00:0:493:vm");
    cat.pool->tags.push_back(*dir_attrs_tag("vm/sub", {}));
    EXPECT_EQ(dir_attrs_tags_of(cat, "vm", false),
              (std::vector<std::string>{"bd.dattr=1000:100:488:vm", "bd.dattr=00:0:493:vm"}));
    EXPECT_EQ(dir_attrs_tags_of(cat, "vm", true).size(), 3u);
    EXPECT_EQ(dir_attrs_tags_of(cat, "", false), std::vector<std::string>{"bd.dattr=0:0:1023:"});
}

TEST(Dirs, EscapedNamesRoundTrip) {
    Catalog cat = catalog({}, {"sp ace/é"});
    EXPECT_EQ(explicit_dirs(cat), std::vector<std::string>{"sp ace/é"});
}

TEST(Dirs, Emptiness) {
    Catalog cat = catalog({"vm/a.img"}, {"e", "f", "f/g"});
    EXPECT_FALSE(directory_empty(cat, "vm"));
    EXPECT_TRUE(directory_empty(cat, "e"));
    EXPECT_FALSE(directory_empty(cat, "f"));
    EXPECT_TRUE(directory_empty(cat, "f/g"));
}

TEST(Dirs, Within) {
    EXPECT_TRUE(is_within("a/b", "a"));
    EXPECT_TRUE(is_within("a", "a"));
    EXPECT_FALSE(is_within("ab", "a"));
    EXPECT_TRUE(is_within("a", ""));
    EXPECT_EQ(reparent("a/b/c", "a", "x"), "x/b/c");
    EXPECT_EQ(reparent("a", "a", "x/y"), "x/y");
    EXPECT_EQ(reparent("ab", "a", "x"), "ab");
}

}  // namespace bd
