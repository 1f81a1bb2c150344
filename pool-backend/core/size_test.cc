#include "size.h"

#include <gtest/gtest.h>

namespace bd {

TEST(ParseSize, VirshUnits) {
    EXPECT_EQ(*parse_size("4096"), 4096u);
    EXPECT_EQ(*parse_size("1b"), 1u);
    EXPECT_EQ(*parse_size("1K"), 1024u);
    EXPECT_EQ(*parse_size("1k"), 1024u);
    EXPECT_EQ(*parse_size("1KiB"), 1024u);
    EXPECT_EQ(*parse_size("1KB"), 1000u);
    EXPECT_EQ(*parse_size("20G"), 20ull << 30);
    EXPECT_EQ(*parse_size("3GB"), 3000000000ull);
    EXPECT_EQ(*parse_size("2T"), 2ull << 40);
    EXPECT_EQ(*parse_size("1P"), 1ull << 50);
    EXPECT_EQ(*parse_size("512MiB"), 512ull << 20);
}

TEST(ParseSize, RejectsBadInput) {
    for (const char* bad : {"", "0", "0G", "-1G", "-5", "G", "1.5G", "12Q", "1 G", "1GiBs",
                            "abc", "1kb", "0x10"}) {
        Result<uint64_t> r = parse_size(bad);
        EXPECT_FALSE(r) << bad;
        if (!r) {
            EXPECT_NE(r.error().message.find(std::string("\"") + bad + "\""), std::string::npos)
                << "message must quote the input: " << r.error().message;
        }
    }
}

TEST(ParseSize, Overflow) {
    EXPECT_EQ(parse_size("99999999999999999999").error().code, EOVERFLOW);
    EXPECT_EQ(parse_size("9E").error().code, EOVERFLOW);
    EXPECT_EQ(parse_size("16777216T").error().code, EOVERFLOW);
    EXPECT_TRUE(parse_size("8191P"));
}

TEST(RoundUp, Extents) {
    EXPECT_EQ(*round_up(1, 4 << 20), 4u << 20);
    EXPECT_EQ(*round_up(4 << 20, 4 << 20), 4u << 20);
    EXPECT_EQ(*round_up((4 << 20) + 1, 4 << 20), 8u << 20);
    EXPECT_FALSE(round_up(~0ull >> 1, 4 << 20));
}

TEST(FormatSize, Binary) {
    EXPECT_EQ(format_size(512), "512 B");
    EXPECT_EQ(format_size(20ull << 30), "20.0 GiB");
    EXPECT_EQ(format_size(1536 << 10), "1.5 MiB");
}

}  // namespace bd
