#include "pool_plan.h"

#include <gtest/gtest.h>

namespace bd {

constexpr uint64_t MiB = 1ull << 20, GiB = 1ull << 30, X = 4 * MiB;  // X: one extent

TEST(PoolPlan, MetadataDefaultScalesWithinBounds) {
    EXPECT_EQ(default_thin_metadata(512 * MiB), 16 * MiB);   // floor
    EXPECT_EQ(default_thin_metadata(8 * GiB), 256 * MiB);    // 1/32
    EXPECT_EQ(default_thin_metadata(10ull << 40), 1 * GiB);  // cap
}

TEST(PoolPlan, ExplicitSizeRoundsUpAndMustFit) {
    Result<ThinPoolPlan> p = plan_thin_pool(2 * GiB, X, 512 * MiB + 1, "", 0);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->data, 516 * MiB);
    EXPECT_EQ(p->metadata, 20 * MiB);                         // 516/32 MiB, up to an extent
    Result<ThinPoolPlan> big = plan_thin_pool(2 * GiB, X, 2 * GiB, "", 0);
    ASSERT_FALSE(big);
    EXPECT_EQ(big.error().code, ENOSPC);
    EXPECT_NE(big.error().message.find("--size"), std::string::npos) << big.error().message;
}

TEST(PoolPlan, FreeShareLeavesRoomForMetadataAndSpare) {
    Result<ThinPoolPlan> p = plan_thin_pool(1000 * X, X, 0, "100%FREE", 0);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->metadata, 128 * MiB);                        // 4000 MiB / 32, rounded up
    EXPECT_EQ(p->data + 2 * p->metadata, 1000 * X);
    Result<ThinPoolPlan> d = plan_thin_pool(1000 * X, X, 0, "", 0);  // default 90%FREE
    ASSERT_TRUE(d);
    EXPECT_EQ(d->data, 900 * X);
    EXPECT_EQ(d->data % X, 0u);
}

TEST(PoolPlan, ExtentCountAndExplicitMetadata) {
    Result<ThinPoolPlan> p = plan_thin_pool(2 * GiB, X, 0, "100", 64 * MiB + 1);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->data, 400 * MiB);
    EXPECT_EQ(p->metadata, 68 * MiB);
}

TEST(PoolPlan, BadInputNamesTheFix) {
    for (const char* bad : {"0%FREE", "101%FREE", "%FREE", "50%VG", "-1", "0", "x"}) {
        Result<ThinPoolPlan> r = plan_thin_pool(2 * GiB, X, 0, bad, 0);
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error().code, EINVAL) << bad;
        EXPECT_NE(r.error().message.find(bad), std::string::npos) << r.error().message;
    }
    Result<ThinPoolPlan> huge = plan_thin_pool(64 * GiB, X, 8 * GiB, "", 17 * GiB);
    ASSERT_FALSE(huge);
    EXPECT_NE(huge.error().message.find("--metadata-size"), std::string::npos);
    Result<ThinPoolPlan> wraps = plan_thin_pool(2 * GiB, X, 0, "4398046511204", 0);  // *X wraps
    ASSERT_FALSE(wraps);
    EXPECT_EQ(wraps.error().code, ENOSPC);
    Result<ThinPoolPlan> tiny = plan_thin_pool(20 * MiB, X, 0, "90%FREE", 0);
    ASSERT_FALSE(tiny);
    EXPECT_EQ(tiny.error().code, ENOSPC);
}

}  // namespace bd
