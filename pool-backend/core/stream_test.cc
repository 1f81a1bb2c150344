#include "stream.h"

#include <gtest/gtest.h>

#include <cstring>

namespace bd {
namespace {

StreamHeader header(const std::string& id = "s1") {
    StreamHeader h;
    h.stream_id = id;
    h.export_name = "bd";
    h.path = "vm/disk0.img";
    h.volume_id = "V";
    h.base = StreamSnap{"B", "nightly-1"};
    h.snapshot = StreamSnap{"N", "nightly-2"};
    h.size = 1 << 24;
    h.chunk_size = 65536;
    return h;
}

// A small stream: data at 0, a hole, data past 1 MiB split in two records.
std::string make(const std::string& id = "s1", char fill = 'a') {
    std::string out;
    Result<StreamWriter> w = StreamWriter::start(
        [&](const void* p, size_t n) -> Result<void> {
            out.append(static_cast<const char*>(p), n);
            return {};
        },
        header(id));
    EXPECT_TRUE(w);
    std::string a(100, fill), b(kStreamMaxData + 10, 'b');
    EXPECT_TRUE(w->data(0, a.data(), a.size()));
    EXPECT_TRUE(w->hole(65536, 65536));
    EXPECT_TRUE(w->data(1 << 20, b.data(), b.size()));
    EXPECT_TRUE(w->finish());
    EXPECT_EQ(w->records(), 4u);
    return out;
}

struct Read {
    std::vector<StreamRecord> records;
    std::vector<std::string> data;
    std::optional<Error> error;
    StreamHeader header;
};

Read read_all(const std::string& bytes) {
    size_t pos = 0;
    Read r;
    Result<StreamReader> reader = StreamReader::open([&](void* p, size_t n) -> Result<size_t> {
        size_t k = std::min(n, bytes.size() - pos);
        memcpy(p, bytes.data() + pos, k);
        pos += k;
        return k;
    });
    if (!reader) {
        r.error = reader.error();
        return r;
    }
    r.header = reader->header();
    for (;;) {
        Result<std::optional<StreamRecord>> rec = reader->next();
        if (!rec) {
            r.error = rec.error();
            return r;
        }
        if (!*rec) return r;
        r.records.push_back(**rec);
        r.data.push_back((*rec)->data ? std::string((*rec)->data, (*rec)->length) : "");
    }
}

TEST(Stream, RoundTripsItsHeaderAndRecords) {
    Read r = read_all(make());
    ASSERT_FALSE(r.error) << r.error->message;
    EXPECT_EQ(r.header.stream_id, "s1");
    EXPECT_EQ(r.header.path, "vm/disk0.img");
    ASSERT_TRUE(r.header.base);
    EXPECT_EQ(r.header.base->name, "nightly-1");
    EXPECT_EQ(r.header.snapshot.id, "N");
    EXPECT_EQ(r.header.size, 1u << 24);
    ASSERT_EQ(r.records.size(), 4u);
    EXPECT_EQ(r.data[0], std::string(100, 'a'));
    EXPECT_EQ(r.records[1].kind, StreamRecord::Kind::kHole);
    EXPECT_EQ(r.records[1].offset, 65536u);
    EXPECT_EQ(r.records[2].length, kStreamMaxData);
    EXPECT_EQ(r.records[3].offset, (1u << 20) + kStreamMaxData);
    EXPECT_EQ(r.data[3], std::string(10, 'b'));
}

TEST(Stream, EveryTruncationIsRefused) {
    std::string s = make();
    for (size_t len = 0; len < s.size(); len += (len < 400 || s.size() - len < 400) ? 1 : 4099) {
        Read r = read_all(s.substr(0, len));
        ASSERT_TRUE(r.error) << "accepted the first " << len << " bytes";
        EXPECT_EQ(r.error->code, EBADMSG);
    }
}

TEST(Stream, EveryFlippedByteIsRefused) {
    std::string s = make();
    for (size_t i = 0; i < s.size(); i += (i < 600 || s.size() - i < 600) ? 1 : 997) {
        std::string t = s;
        t[i] ^= 0x01;
        Read r = read_all(t);
        ASSERT_TRUE(r.error) << "accepted a flip at byte " << i;
        EXPECT_EQ(r.error->code, EBADMSG);
    }
}

// The byte ranges of each record in a stream made by make().
std::vector<std::pair<size_t, size_t>> records_of(const std::string& s) {
    uint32_t hlen = 0;
    memcpy(&hlen, s.data() + 12, 4);
    size_t pos = 16 + hlen + 32;
    std::vector<std::pair<size_t, size_t>> out;
    while (pos < s.size()) {
        uint64_t length = 0;
        memcpy(&length, s.data() + pos + 16, 8);
        size_t n = 24 + (s[pos] == 'D' ? length : 0) + 32;
        out.emplace_back(pos, n);
        pos += n;
    }
    return out;
}

TEST(Stream, ReorderedDroppedReplayedOrForeignRecordsAreRefused) {
    std::string s = make();
    auto rec = records_of(s);
    ASSERT_EQ(rec.size(), 5u);  // 4 and the end
    auto part = [&](const std::string& from, size_t i) {
        return from.substr(rec[i].first, rec[i].second);
    };
    std::string head = s.substr(0, rec[0].first);
    // Swapped: the second record first.
    Read r = read_all(head + part(s, 1) + part(s, 0) + part(s, 2) + part(s, 3) + part(s, 4));
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->message.find("reordered"), std::string::npos) << r.error->message;
    // Dropped.
    r = read_all(head + part(s, 0) + part(s, 2) + part(s, 3) + part(s, 4));
    ASSERT_TRUE(r.error);
    // Played twice.
    r = read_all(head + part(s, 0) + part(s, 0) + part(s, 1) + part(s, 2) + part(s, 3) +
                 part(s, 4));
    ASSERT_TRUE(r.error);
    // A record of another stream of the same volume, in the same place.
    std::string other = make("s2", 'z');
    r = read_all(head + part(other, 0) + part(s, 1) + part(s, 2) + part(s, 3) + part(s, 4));
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->message.find("another stream"), std::string::npos) << r.error->message;
    // Bytes after the end.
    r = read_all(s + "x");
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->message.find("follow its end"), std::string::npos);
    // Not a stream at all.
    r = read_all(std::string("QFI\xfb") + std::string(100, '\0'));
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->message.find("BDSTREAM"), std::string::npos);
}

TEST(Stream, TheWriterKeepsRecordsInOrderAndInside) {
    std::string out;
    Result<StreamWriter> w = StreamWriter::start(
        [&](const void* p, size_t n) -> Result<void> {
            out.append(static_cast<const char*>(p), n);
            return {};
        },
        header());
    ASSERT_TRUE(w);
    char b[10] = {};
    EXPECT_TRUE(w->data(100, b, 10));
    EXPECT_FALSE(w->data(105, b, 10));           // overlaps
    EXPECT_FALSE(w->hole(50, 10));               // before the last
    EXPECT_FALSE(w->data((1 << 24) - 5, b, 10));  // past the end
    EXPECT_FALSE(w->hole(200, 0));
    EXPECT_TRUE(w->finish());
    EXPECT_FALSE(w->finish());
}

TEST(Stream, AHeaderMissingAFieldIsRefused) {
    EXPECT_TRUE(parse_stream_header(stream_header_json(header())));
    EXPECT_FALSE(parse_stream_header("{}"));
    EXPECT_FALSE(parse_stream_header("not json"));
    std::string j = stream_header_json(header());
    std::string no_size = j.substr(0, j.find("\"size\"")) + "\"sizes\"" +
                          j.substr(j.find("\"size\"") + 6);
    EXPECT_FALSE(parse_stream_header(no_size));
    StreamHeader full = header();
    full.base.reset();
    Result<StreamHeader> h = parse_stream_header(stream_header_json(full));
    ASSERT_TRUE(h);
    EXPECT_FALSE(h->base);
}

}  // namespace
}  // namespace bd
