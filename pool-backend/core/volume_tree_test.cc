#include "volume_tree.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace bd {

namespace fs = std::filesystem;

namespace {

class VolumeTreeTest : public ::testing::Test {
protected:
    void SetUp() override {
        char dir[] = "/tmp/bd-unit-tree-XXXXXX";
        ASSERT_TRUE(mkdtemp(dir));
        dev_ = dir;
        root_ = tree_root(dev_, "vg0");
    }
    void TearDown() override { fs::remove_all(dev_); }

    // "path>target" for every entry below the root, sorted; "dir/" for directories.
    std::string view() const {
        std::set<std::string> out;
        if (!fs::exists(root_)) return "(none)";
        for (const auto& e : fs::recursive_directory_iterator(root_)) {
            std::string rel = fs::relative(e.path(), root_).string();
            if (e.is_symlink()) out.insert(rel + ">" + fs::read_symlink(e.path()).string());
            else if (e.is_directory()) out.insert(rel + "/");
            else out.insert(rel + "!");
        }
        std::string s;
        for (const std::string& x : out) s += (s.empty() ? "" : " ") + x;
        return s;
    }

    std::string dev_, root_;
};

TEST_F(VolumeTreeTest, LinksMakeTheirDirectoriesAndUnlinksRemoveThem) {
    VolumeTree t(root_);
    ASSERT_TRUE(t.link("vm/disk0.img", "/dev/vg0/A"));
    ASSERT_TRUE(t.link("top.img", "/dev/vg0/B"));
    EXPECT_EQ(view(), "top.img>/dev/vg0/B vm/ vm/disk0.img>/dev/vg0/A");
    struct stat st;
    ASSERT_EQ(stat(root_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0711u);  // searchable by QEMU's user, listed by root only
    ASSERT_EQ(stat((root_ + "/vm").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0711u);
    ASSERT_TRUE(t.link("vm/disk0.img", "/dev/vg0/C"));  // replaced in place
    EXPECT_EQ(view(), "top.img>/dev/vg0/B vm/ vm/disk0.img>/dev/vg0/C");
    ASSERT_TRUE(t.unlink("vm/disk0.img"));
    EXPECT_EQ(view(), "top.img>/dev/vg0/B");  // vm/ went with its last link
    ASSERT_TRUE(t.unlink("never/there"));     // nothing to do is no error
}

TEST_F(VolumeTreeTest, NeverReplacesWhatItDidNotMake) {
    VolumeTree t(root_);
    ASSERT_TRUE(t.make_root());
    std::ofstream(root_ + "/planted.img") << "data";
    Result<void> r = t.link("planted.img", "/dev/vg0/A");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EEXIST);
    EXPECT_NE(r.error().message.find("planted.img"), std::string::npos);
    ASSERT_TRUE(t.unlink("planted.img"));  // not a link: stays
    ASSERT_TRUE(t.sync({}));
    EXPECT_EQ(view(), "planted.img!");
    // It blocks its own link only: a sync makes the others, then reports it.
    Result<size_t> n = t.sync({{"planted.img", "/dev/vg0/A"}, {"ok.img", "/dev/vg0/B"}});
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error().code, EEXIST);
    EXPECT_EQ(view(), "ok.img>/dev/vg0/B planted.img!");
}

TEST_F(VolumeTreeTest, SyncMakesExactlyTheLinksAsked) {
    VolumeTree t(root_);
    ASSERT_TRUE(t.link("gone.img", "/dev/vg0/G"));
    ASSERT_TRUE(t.link("d/wrong.img", "/dev/vg0/OLD"));
    ASSERT_TRUE(t.link("a", "/dev/vg0/WAS_A_FILE"));
    // A kill -9 between symlink and rename leaves a temporary link.
    ASSERT_EQ(symlink("/dev/vg0/X", (root_ + "/d/.bd-tmp.0123456789ab").c_str()), 0);
    Result<size_t> n = t.sync({{"d/wrong.img", "/dev/vg0/NEW"},
                               {"a/now-a-dir.img", "/dev/vg0/D"},
                               {"new.img", "/dev/vg0/N"}});
    ASSERT_TRUE(n) << n.error().message;
    EXPECT_EQ(*n, 6u);  // gone, tmp, a removed; wrong replaced; two added
    EXPECT_EQ(view(), "a/ a/now-a-dir.img>/dev/vg0/D d/ d/wrong.img>/dev/vg0/NEW new.img>/dev/vg0/N");
    Result<size_t> again = t.sync({{"d/wrong.img", "/dev/vg0/NEW"},
                                   {"a/now-a-dir.img", "/dev/vg0/D"},
                                   {"new.img", "/dev/vg0/N"}});
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, 0u);
    ASSERT_TRUE(t.remove());
    EXPECT_EQ(view(), "(none)");
    EXPECT_TRUE(fs::exists(dev_ + "/disk/by-bd"));
    ASSERT_TRUE(t.remove());  // twice is fine
    EXPECT_TRUE(*t.matches({}));
    EXPECT_FALSE(*t.matches({{"a", "/dev/vg0/A"}}));
}

TEST_F(VolumeTreeTest, APathThatIsAVolumeAndADirectoryKeepsTheDirectory) {
    VolumeTree t(root_);
    // A foreign LV "vm" beside a volume "vm/a.img" (bd refuses to make that).
    std::map<std::string, std::string> links = {{"vm", "/dev/vg0/VM"}, {"vm/a.img", "/dev/vg0/A"}};
    for (int round = 0; round < 2; ++round) {
        Result<size_t> n = t.sync(links);
        ASSERT_FALSE(n);
        EXPECT_EQ(n.error().code, EEXIST);
        EXPECT_NE(n.error().message.find("\"vm\" is a volume and a directory"), std::string::npos);
        EXPECT_EQ(view(), "vm/ vm/a.img>/dev/vg0/A") << round;  // stable, not flapping
    }
    // Nothing more to do: a listing does not take the lock again and again.
    Result<bool> same = t.matches(links);
    ASSERT_TRUE(same);
    EXPECT_TRUE(*same);
    links["vm/b.img"] = "/dev/vg0/B";
    EXPECT_FALSE(*t.matches(links));
}

TEST_F(VolumeTreeTest, NeverFollowsALinkOutOfTheTree) {
    VolumeTree t(root_);
    ASSERT_TRUE(t.make_root());
    fs::create_directories(dev_ + "/elsewhere");
    // A link where a directory is wanted (a stale volume "x", or a planted one).
    ASSERT_EQ(symlink((dev_ + "/elsewhere").c_str(), (root_ + "/x").c_str()), 0);
    ASSERT_TRUE(t.link("x/y.img", "/dev/vg0/Y"));
    EXPECT_EQ(view(), "x/ x/y.img>/dev/vg0/Y");
    EXPECT_TRUE(fs::is_empty(dev_ + "/elsewhere"));
}

}  // namespace

}  // namespace bd
