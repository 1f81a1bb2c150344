#include "thin_status.h"

#include <gtest/gtest.h>

namespace bd {

TEST(ThinStatus, Parses) {
    EXPECT_EQ(*parse_thin_status("2048 4095"), 2048u * 512);
    EXPECT_EQ(*parse_thin_status("0 -"), 0u);
    EXPECT_EQ(parse_thin_status("Fail").error().code, EIO);
    EXPECT_EQ(parse_thin_status("").error().code, EIO);
}

// 64 KiB blocks: 2 blocks mapped, the highest one is block 99 (sectors 12672..12799).
TEST(ThinStatus, DataEndsWithTheHighestMappedBlock) {
    EXPECT_EQ(*parse_thin_data_end("256 12799"), 12800u * 512);
    EXPECT_EQ(*parse_thin_data_end("0 -"), 0u);
    EXPECT_EQ(parse_thin_data_end("Fail").error().code, EIO);
    EXPECT_EQ(parse_thin_data_end("256 x").error().code, EIO);
}

TEST(ThinStatus, PoolZeroesUnlessItsTableSaysSkipBlockZeroing) {
    EXPECT_TRUE(parse_thin_pool_zeroes("253:0 253:1 128 0 0"));
    EXPECT_TRUE(parse_thin_pool_zeroes("253:0 253:1 128 0 1 error_if_no_space"));
    EXPECT_FALSE(parse_thin_pool_zeroes("253:0 253:1 128 0 1 skip_block_zeroing"));
    EXPECT_FALSE(parse_thin_pool_zeroes("253:0 253:1 1024 0 2 skip_block_zeroing error_if_no_space"));
}

}  // namespace bd
