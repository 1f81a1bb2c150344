#include "thin_status.h"

#include <gtest/gtest.h>

namespace bd {

TEST(ThinStatus, Parses) {
    EXPECT_EQ(*parse_thin_status("2048 4095"), 2048u * 512);
    EXPECT_EQ(*parse_thin_status("0 -"), 0u);
    EXPECT_EQ(parse_thin_status("Fail").error().code, EIO);
    EXPECT_EQ(parse_thin_status("").error().code, EIO);
}

}  // namespace bd
