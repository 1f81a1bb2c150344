#include "delta.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "pool_snap.h"

namespace bd {
namespace {

// Captured in a guest (thin-provisioning-tools 0.9.0): block 0 discarded in
// the volume, 1 unchanged, 2-3 rewritten, 100-102 written fresh.
constexpr const char* kSample = R"(<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="0">
  <diff left="2" right="1">
    <left_only begin="0" length="1"/>
    <same begin="1" length="1"/>
    <different begin="2" length="2"/>
    <right_only begin="100" length="3"/>
  </diff>
</superblock>
)";

std::string show(const std::vector<DeltaRange>& ranges) {
    std::string out;
    for (const DeltaRange& r : ranges)
        out += fmt::format("{}{}@{}+{}", out.empty() ? "" : " ", delta_kind_name(r.kind),
                           r.offset / 65536, r.length / 65536);
    return out;
}

TEST(ThinDelta, ReadsEveryKindInBlocksOfThePoolsChunk) {
    Result<ThinDelta> d = parse_thin_delta(kSample);
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(d->block_bytes, 65536u);
    EXPECT_EQ(d->left, 2u);
    EXPECT_EQ(d->right, 1u);
    ASSERT_EQ(d->runs.size(), 4u);
    EXPECT_EQ(d->runs[0].kind, DeltaKind::kRemoved);
    EXPECT_EQ(d->runs[1].kind, DeltaKind::kSame);
    EXPECT_EQ(d->runs[2].kind, DeltaKind::kChanged);
    EXPECT_EQ(d->runs[3].kind, DeltaKind::kAdded);
    EXPECT_EQ(d->runs[3].begin, 100u);
    EXPECT_EQ(d->runs[3].length, 3u);
    EXPECT_EQ(show(delta_ranges(*d, 64 << 20)), "removed@0+1 changed@2+2 added@100+3");
}

TEST(ThinDelta, RangesAreSortedJoinedAndClippedToTheNewerSize) {
    ThinDelta d;
    d.block_bytes = 65536;
    d.runs = {{DeltaKind::kChanged, 10, 2}, {DeltaKind::kChanged, 4, 6}, {DeltaKind::kSame, 12, 1},
              {DeltaKind::kAdded, 13, 10}};
    // 4..12 changed is one range; the added run is cut at 16 blocks, a partial end kept.
    EXPECT_EQ(show(delta_ranges(d, 16 * 65536)), "changed@4+8 added@13+3");
    std::vector<DeltaRange> r = delta_ranges(d, 15 * 65536 + 4096);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[1].offset + r[1].length, 15u * 65536 + 4096);
    EXPECT_EQ(show(delta_ranges(d, 4 * 65536)), "");
}

TEST(ThinDelta, RefusesWhatIsNotItsReport) {
    for (const char* bad : {
             "",
             "not xml",
             "<superblock data_block_size=\"128\"></superblock>",  // no <diff>
             "<superblock data_block_size=\"0\"><diff/></superblock>",
             "<superblock><diff/></superblock>",
             "<superblock data_block_size=\"128\"><diff/><diff/></superblock>",
             "<superblock data_block_size=\"128\"><diff left=\"1\" right=\"2\"><same begin=\"1\"/></diff></superblock>",
             "<superblock data_block_size=\"128\"><diff left=\"1\" right=\"2\"><same begin=\"1\" length=\"0\"/></diff></superblock>",
             "<superblock data_block_size=\"128\"><diff left=\"1\" right=\"2\"><same begin=\"-1\" length=\"2\"/></diff></superblock>",
             "<superblock data_block_size=\"128\"><diff left=\"1\" right=\"2\"><same begin=\"1x\" length=\"2\"/></diff></superblock>",
             "<superblock data_block_size=\"128\"><diff left=\"1\" right=\"2\"><different begin=\"18446744073709551615\" length=\"2\"/></diff></superblock>",
             // 2^48 + 1 blocks of 64 KiB do not fit in 64 bits of bytes.
             "<superblock data_block_size=\"128\"><diff left=\"1\" right=\"2\"><different begin=\"0\" length=\"281474976710657\"/></diff></superblock>",
             "<superblock data_block_size=\"128\"><diff left=\"1\"><same begin=\"1\" length=\"2\"/></diff></superblock>",
             "<superblock data_block_size=\"128\"><diff left=\"1\" right=\"2\"><same begin=\"1\" length=\"2\"/></diff>",
             "<superblock data_block_size=\"128\"><diff left=\"1\" right=\"2\"><range begin=\"1\" length=\"2\"/></diff></superblock>",
         }) {
        Result<ThinDelta> d = parse_thin_delta(bad);
        EXPECT_FALSE(d) << bad;
        if (!d) {
            EXPECT_NE(d.error().message.find("thin_delta"), std::string::npos);
        }
    }
}

// Captured in a guest (thin-provisioning-tools 0.9.0): blocks 0-1 and 40 mapped.
constexpr const char* kDump = R"(<superblock uuid="" time="0" transaction="1" flags="0" version="2" data_block_size="128" nr_data_blocks="8192">
  <device dev_id="1" mapped_blocks="3" transaction="0" creation_time="0" snap_time="0">
    <range_mapping origin_begin="0" data_begin="7" length="2" time="0"/>
    <single_mapping origin_block="40" data_block="3" time="0"/>
  </device>
</superblock>
)";

TEST(ThinDump, ReadsTheBlocksOneDeviceMaps) {
    Result<ThinDelta> d = parse_thin_dump(kDump, 1);
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(d->block_bytes, 65536u);
    EXPECT_EQ(show(delta_ranges(*d, 64 << 20)), "added@0+2 added@40+1");
    EXPECT_FALSE(parse_thin_dump(kDump, 2));  // another device than asked for
    for (const char* bad : {
             "",
             "<superblock data_block_size=\"128\"></superblock>",
             "<superblock data_block_size=\"128\"><device dev_id=\"1\"/><device dev_id=\"1\"/></superblock>",
             "<superblock data_block_size=\"128\"><device dev_id=\"1\"><single_mapping data_block=\"3\"/></device></superblock>",
             "<superblock data_block_size=\"128\"><device dev_id=\"1\"><range_mapping origin_begin=\"0\" length=\"0\"/></device></superblock>",
             "<superblock data_block_size=\"128\"><device dev_id=\"1\"><range_mapping origin_begin=\"18446744073709551615\" length=\"1\"/></device></superblock>",
             "<superblock data_block_size=\"128\"><device dev_id=\"1\"><mapping origin_begin=\"0\" length=\"1\"/></device></superblock>",
         }) {
        Result<ThinDelta> r = parse_thin_dump(bad, 1);
        EXPECT_FALSE(r) << bad;
        if (!r) {
            EXPECT_NE(r.error().message.find("thin_dump"), std::string::npos);
        }
    }
}

TEST(ThinLs, ReadsEachDevicesExclusiveBytes) {
    Result<std::map<uint64_t, uint64_t>> m =
        parse_thin_ls_exclusive("  1       327680 \n  2       196608 \n\n");
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(*m, (std::map<uint64_t, uint64_t>{{1, 327680}, {2, 196608}}));
    EXPECT_FALSE(parse_thin_ls_exclusive("DEV EXCLUSIVE_BYTES\n"));
    EXPECT_FALSE(parse_thin_ls_exclusive("1 2 3\n"));
    EXPECT_FALSE(parse_thin_ls_exclusive("1\n"));
    EXPECT_FALSE(parse_thin_ls_exclusive("1 384KiB\n"));
}

TEST(PoolSnapStatus, ReadsTheHeldMetadataRootFromDmsetupStatus) {
    Result<bool> none = parse_dmsetup_pool_snap_held(
        "0 524288 thin-pool 2 113/1024 9/4096 - rw discard_passdown queue_if_no_space - 256 \n");
    ASSERT_TRUE(none) << none.error().message;
    EXPECT_FALSE(*none);
    Result<bool> held = parse_dmsetup_pool_snap_held(
        "0 524288 thin-pool 4 116/1024 9/4096 45 rw discard_passdown queue_if_no_space - 256 ");
    ASSERT_TRUE(held);
    EXPECT_TRUE(*held);
    EXPECT_FALSE(parse_dmsetup_pool_snap_held("0 131072 thin 384 102399"));
    EXPECT_FALSE(parse_dmsetup_pool_snap_held(""));
}

}  // namespace
}  // namespace bd
