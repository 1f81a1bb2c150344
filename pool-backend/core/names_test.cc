#include "names.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>

namespace bd {

namespace {

bool valid_lv_name(const std::string& n) {
    static const std::regex kLv("[A-Za-z0-9+.-][A-Za-z0-9+_.-]*");
    if (!std::regex_match(n, kLv) || n.size() > 100) return false;
    for (const char* bad : {"_tdata", "_tmeta", "_cdata", "_cmeta", "_rimage", "_rmeta", "_mlog",
                            "_mimage", "_pmspare", "_vorigin", "_corig"})
        if (n.find(bad) != std::string::npos) return false;
    return n.rfind("snapshot", 0) != 0 && n.rfind("pvmove", 0) != 0 && n.rfind("_bd_", 0) != 0;
}

}  // namespace

TEST(NormalizePath, Accepts) {
    EXPECT_EQ(*normalize_path("/vm/disk0.img"), "vm/disk0.img");
    EXPECT_EQ(*normalize_path("disk"), "disk");
    EXPECT_EQ(*normalize_path("/a/b/"), "a/b");
    EXPECT_EQ(*normalize_path("ünïcødé/日本.img"), "ünïcødé/日本.img");
    EXPECT_EQ(*normalize_path("sp ace/$(rm -rf)/;|&"), "sp ace/$(rm -rf)/;|&");
}

TEST(NormalizePath, RejectsHostileNames) {
    EXPECT_EQ(normalize_path("").error().code, EINVAL);
    EXPECT_EQ(normalize_path("/").error().code, EINVAL);
    EXPECT_EQ(normalize_path("a//b").error().code, EINVAL);
    EXPECT_EQ(normalize_path("a/../b").error().code, EINVAL);
    EXPECT_EQ(normalize_path("./a").error().code, EINVAL);
    EXPECT_EQ(normalize_path("..").error().code, EINVAL);
    EXPECT_EQ(normalize_path(std::string("a\0b", 3)).error().code, EINVAL);
    EXPECT_EQ(normalize_path("bad\xff utf8").error().code, EINVAL);
    EXPECT_EQ(normalize_path("\xc0\xaf").error().code, EINVAL);  // overlong '/'
    EXPECT_EQ(normalize_path(std::string(256, 'a')).error().code, ENAMETOOLONG);
    EXPECT_TRUE(normalize_path(std::string(255, 'a')));
}

TEST(NormalizePath, RefusesControlCharacters) {
    for (const char* bad : {"a\nb", "x\x1b" "[31mred", "tab\there", "del\x7f" "", "c1\xc2\x9b",
                            "bidi\xe2\x80\xae" "evil"}) {
        Result<std::string> r = normalize_path(bad);
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error().code, EINVAL);
        EXPECT_EQ(r.error().message.find('\x1b'), std::string::npos);
        EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    }
}

TEST(Printable, EscapesControlsAndBadBytesOnly) {
    EXPECT_EQ(printable("plain/ünï.img $x"), "plain/ünï.img $x");
    EXPECT_EQ(printable("a\nb\x1b[2J"), "a\\x0ab\\x1b[2J");
    EXPECT_EQ(printable("\xff\xc2\x9b"), "\\xff\\u{009b}");
    EXPECT_EQ(printable("\xe2\x80\xae"), "\\u{202e}");
    EXPECT_EQ(printable(printable("a\nb")), printable("a\nb"));  // idempotent
    EXPECT_EQ(Error(EIO, "x\ry").message, "x\\x0dy");          // every error message
}

TEST(NormalizePath, TagLimit) {
    // 1024-char tags minus "bd.path=" leave 1016 plain characters.
    std::string ok, too_long;
    for (int i = 0; i < 4; ++i) ok += std::string(253, 'a') + "/";
    ok += std::string(1016 - ok.size(), 'b');
    EXPECT_TRUE(normalize_path(ok)) << ok.size();
    EXPECT_EQ(normalize_path(ok + "c").error().code, ENAMETOOLONG);
    // Non-ASCII bytes take three characters each: 2-byte chars cost 6.
    std::string wide;
    while (wide.size() < 340) wide += "é";
    EXPECT_EQ(normalize_path(wide).error().code, ENAMETOOLONG);
}

TEST(LvName, DeterministicValidAndDistinct) {
    std::set<std::string> seen;
    for (const char* p : {"vm/disk0.img", "vm+disk0.img", "vm_disk0.img", "vm-disk0.img",
                          "snapshot", "pvmove1", "_bd_tmp.x", "-x", ".hidden", "a_tdata",
                          "x_tmeta/y", "日本", "sp ace"}) {
        std::string n = lv_name_for_path(p);
        EXPECT_EQ(n, lv_name_for_path(p));
        EXPECT_TRUE(valid_lv_name(n)) << p << " -> " << n;
        EXPECT_TRUE(seen.insert(n).second) << "collision for " << p;
    }
    EXPECT_EQ(lv_name_for_path("vm/disk0.img").rfind("vm+disk0.img.", 0), 0u);
    EXPECT_LE(lv_name_for_path(std::string(1000, 'x')).size(), kMaxSlugLength + 13);
}

// In a shared VG every export's LVs share one namespace: the scope (the
// export's thin pool) changes the hash, and only the hash; no scope is the
// name every existing volume has.
TEST(LvName, ScopeSeparatesExportsOfOneVg) {
    EXPECT_EQ(lv_name_for_path("vm/disk0.img", ""), lv_name_for_path("vm/disk0.img"));
    EXPECT_EQ(lv_name_for_path("vm/disk0.img"), "vm+disk0.img.71661aa28361");
    std::string a = lv_name_for_path("vm/disk0.img", "hosta");
    std::string b = lv_name_for_path("vm/disk0.img", "hostb");
    EXPECT_NE(a, b);
    EXPECT_NE(a, lv_name_for_path("vm/disk0.img"));
    EXPECT_EQ(a.rfind("vm+disk0.img.", 0), 0u);
    EXPECT_TRUE(valid_lv_name(a));
    // The scope and the path are not simply joined: "a" + "b/c" is not "ab" + "/c".
    EXPECT_NE(lv_name_for_path("b/c", "a"), lv_name_for_path("/c", "ab"));
}

TEST(TagEscape, RoundTripsEveryByte) {
    std::string all;
    for (int c = 1; c < 256; ++c) all += char(c);
    std::string esc = tag_escape(all);
    EXPECT_TRUE(std::regex_match(esc, std::regex("[A-Za-z0-9_+.:/=!&#-]*")));
    EXPECT_EQ(*tag_unescape(esc), all);
    EXPECT_EQ(tag_escape("vm/disk 0!"), "vm/disk!200!21");
    EXPECT_EQ(tag_escape_key("a=b"), "a!3Db");
    EXPECT_FALSE(tag_unescape("bad!Z1"));
    EXPECT_FALSE(tag_unescape("bad!1"));
}

TEST(VolumeSpec, Parses) {
    VolumeSpec s = *parse_volume_spec("bd:/vm/a.img");
    EXPECT_EQ(s.export_name, "bd");
    EXPECT_EQ(s.path, "vm/a.img");
    EXPECT_EQ(parse_volume_spec("bd:vm/a.img")->path, "vm/a.img");
    EXPECT_EQ(parse_volume_spec("bd", true)->path, "");
    EXPECT_EQ(parse_volume_spec("bd:/", true)->path, "");
    EXPECT_FALSE(parse_volume_spec("bd"));
    EXPECT_FALSE(parse_volume_spec("bd:/"));
    EXPECT_FALSE(parse_volume_spec(":/x"));
    EXPECT_FALSE(parse_volume_spec("b d:/x"));
    EXPECT_FALSE(parse_volume_spec("-bd:/x"));
    EXPECT_FALSE(parse_volume_spec("bd:/a/../b"));
}

TEST(Paths, ParentAndBase) {
    EXPECT_EQ(parent_dir("a/b/c"), "a/b");
    EXPECT_EQ(parent_dir("c"), "");
    EXPECT_EQ(base_name("a/b/c"), "c");
    EXPECT_EQ(base_name("c"), "c");
}

}  // namespace bd
