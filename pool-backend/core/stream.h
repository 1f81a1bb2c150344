// The bd stream: one volume's data between two of its snapshots, as `bdctl
// send` writes it and `bdctl receive` reads it. docs/STREAM.md is the format.
//
// Every record's digest covers the header's digest and the record's sequence
// number, so a reader refuses a stream that is truncated, corrupted anywhere,
// reordered, or spliced with records of another stream, before it uses a
// byte of the record.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "error.h"

namespace bd {

inline constexpr char kStreamMagic[8] = {'B', 'D', 'S', 'T', 'R', 'E', 'A', 'M'};
inline constexpr uint32_t kStreamVersion = 1;
inline constexpr uint64_t kStreamMaxData = 1 << 20;       ///< bytes in one data record
inline constexpr uint32_t kStreamMaxHeader = 64 << 10;    ///< bytes of header JSON

/// A snapshot a stream names: its bd id and its name.
struct StreamSnap {
    std::string id, name;
};

struct StreamHeader {
    std::string stream_id;  ///< random, one per stream
    std::string export_name, path, volume_id;  ///< the source volume
    std::optional<StreamSnap> base;  ///< the snapshot the stream starts from (none: full)
    StreamSnap snapshot;             ///< the snapshot whose data the stream carries
    uint64_t size = 0;               ///< that snapshot's size in bytes
    uint64_t chunk_size = 0;         ///< the source pool's block
};

/// One record: data to write at `offset`, or a hole (the range reads zeros).
struct StreamRecord {
    enum class Kind { kData, kHole } kind = Kind::kData;
    uint64_t offset = 0, length = 0;
    const char* data = nullptr;  ///< kData: `length` bytes, valid until the next read
};

/// Where a writer puts bytes, and where a reader gets them (returns the bytes
/// read, 0 at the end).
using StreamSink = std::function<Result<void>(const void* data, size_t len)>;
using StreamSource = std::function<Result<size_t>(void* data, size_t len)>;

class StreamWriter {
public:
    static Result<StreamWriter> start(StreamSink sink, const StreamHeader& header);
    /// Data at `offset`, split into records of at most kStreamMaxData.
    Result<void> data(uint64_t offset, const void* bytes, size_t len);
    /// A range that reads zeros.
    Result<void> hole(uint64_t offset, uint64_t len);
    /// The end record; nothing may follow.
    Result<void> finish();
    uint64_t records() const { return records_; }
    uint64_t data_bytes() const { return data_bytes_; }

private:
    explicit StreamWriter(StreamSink sink) : sink_(std::move(sink)) {}
    Result<void> record(char type, uint64_t offset, uint64_t length, const void* payload);

    StreamSink sink_;
    std::array<unsigned char, 32> header_digest_{};
    uint64_t size_ = 0, next_offset_ = 0, records_ = 0, data_bytes_ = 0;
    uint32_t seq_ = 0;
    bool done_ = false;
};

class StreamReader {
public:
    /// Reads and checks the header.
    static Result<StreamReader> open(StreamSource source);
    const StreamHeader& header() const { return header_; }
    /// The next record, checked; nothing after the end record, itself checked
    /// against the count of records and data bytes. EBADMSG names what is wrong.
    Result<std::optional<StreamRecord>> next();

private:
    explicit StreamReader(StreamSource source) : source_(std::move(source)) {}
    Result<void> read_exact(void* data, size_t len, const char* what);

    StreamSource source_;
    StreamHeader header_;
    std::array<unsigned char, 32> header_digest_{};
    std::vector<char> buffer_;
    uint64_t next_offset_ = 0, records_ = 0, data_bytes_ = 0;
    uint32_t seq_ = 0;
    bool done_ = false;
};

/// The header as the JSON the stream carries, and back (EBADMSG if not a header).
std::string stream_header_json(const StreamHeader& h);
Result<StreamHeader> parse_stream_header(const std::string& json);

}  // namespace bd
