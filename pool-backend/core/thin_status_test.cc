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

}  // namespace bd
