#include "access.h"

#include <gtest/gtest.h>

namespace bd {

TEST(Access, OwnerGroupOthersInThatOrder) {
    Actor alice{1000, 1000, {}, false};
    EXPECT_TRUE(may(alice, 1000, 1000, 0600, kMayRead));
    EXPECT_FALSE(may(alice, 1000, 1000, 0060, kMayRead));  // the owner's bits decide, not the group's
    EXPECT_FALSE(may(alice, 2000, 2000, 0640, kMayRead));
    EXPECT_TRUE(may(alice, 2000, 2000, 0644, kMayRead));
    EXPECT_FALSE(may(alice, 2000, 1000, 0604, kMayRead));  // a member gets the group's bits only
}

TEST(Access, SupplementaryGroupsCount) {
    Actor bob{1001, 1001, {50, 60}, false};
    EXPECT_TRUE(may(bob, 0, 60, 0040, kMayRead));
    EXPECT_FALSE(may(bob, 0, 70, 0040, kMayRead));
    EXPECT_TRUE(may(bob, 0, 50, 0710, kMaySearch));
    EXPECT_FALSE(may(bob, 0, 50, 0760, kMaySearch));
}

TEST(Access, RootReadsAllButSearchesOnlyWhatSomeoneMay) {
    Actor root = Actor::root();
    EXPECT_TRUE(may(root, 5, 5, 0000, kMayRead | kMayWrite));
    EXPECT_FALSE(may(root, 5, 5, 0600, kMaySearch));
    EXPECT_TRUE(may(root, 5, 5, 0001, kMaySearch));
}

}  // namespace bd
