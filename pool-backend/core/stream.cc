#include "stream.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

namespace bd {

namespace {

using nlohmann::json;
using Digest = std::array<unsigned char, 32>;

struct MdFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// SHA-256 of the parts, in order.
Digest sha256(std::initializer_list<std::pair<const void*, size_t>> parts) {
    std::unique_ptr<EVP_MD_CTX, MdFree> ctx(EVP_MD_CTX_new());
    Digest d{};
    unsigned int n = 0;
    EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
    for (const auto& [p, len] : parts) EVP_DigestUpdate(ctx.get(), p, len);
    EVP_DigestFinal_ex(ctx.get(), d.data(), &n);
    return d;
}

void put32(unsigned char* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
void put64(unsigned char* p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
uint32_t get32(const unsigned char* p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
    return v;
}
uint64_t get64(const unsigned char* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

// A record's fixed part: type, 3 zero bytes, seq, offset, length.
constexpr size_t kFixed = 24;

void fixed_part(unsigned char* f, char type, uint32_t seq, uint64_t offset, uint64_t length) {
    memset(f, 0, kFixed);
    f[0] = (unsigned char)type;
    put32(f + 4, seq);
    put64(f + 8, offset);
    put64(f + 16, length);
}

Error bad(const std::string& why) {
    return Error(EBADMSG, fmt::format("not a valid bd stream: {}", why));
}

json snap_json(const StreamSnap& s) { return {{"id", s.id}, {"name", s.name}}; }

}  // namespace

std::string stream_header_json(const StreamHeader& h) {
    json j = {{"stream", h.stream_id},
              {"volume", {{"export", h.export_name}, {"path", h.path}, {"id", h.volume_id}}},
              {"base", h.base ? snap_json(*h.base) : json(nullptr)},
              {"snapshot", snap_json(h.snapshot)},
              {"size", h.size},
              {"chunk_size", h.chunk_size}};
    // bd's names are valid UTF-8; a replacement character beats an exception.
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<StreamHeader> parse_stream_header(const std::string& text) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    auto str = [](const json& o, const char* k, std::string& out) {
        if (!o.is_object() || !o.contains(k) || !o[k].is_string()) return false;
        out = o[k].get<std::string>();
        return !out.empty();
    };
    auto num = [](const json& o, const char* k, uint64_t& out) {
        if (!o.contains(k) || !o[k].is_number_unsigned()) return false;
        out = o[k].get<uint64_t>();
        return true;
    };
    StreamHeader h;
    StreamSnap snap;
    if (!j.is_object() || !str(j, "stream", h.stream_id) || !j.contains("volume") ||
        !str(j["volume"], "export", h.export_name) || !str(j["volume"], "path", h.path) ||
        !str(j["volume"], "id", h.volume_id) || !j.contains("snapshot") ||
        !str(j["snapshot"], "id", h.snapshot.id) || !str(j["snapshot"], "name", h.snapshot.name) ||
        !num(j, "size", h.size) || !num(j, "chunk_size", h.chunk_size) || !j.contains("base"))
        return tl::unexpected(bad("its header lacks the fields of version 1"));
    if (!j["base"].is_null()) {
        if (!str(j["base"], "id", snap.id) || !str(j["base"], "name", snap.name))
            return tl::unexpected(bad("its header names a base without an id and a name"));
        h.base = snap;
    }
    return h;
}

// ---- writer ------------------------------------------------------------------

Result<StreamWriter> StreamWriter::start(StreamSink sink, const StreamHeader& header) {
    StreamWriter w(std::move(sink));
    std::string text = stream_header_json(header);
    if (text.size() > kStreamMaxHeader) return fail(E2BIG, "stream header too large");
    unsigned char fixed[16];
    memcpy(fixed, kStreamMagic, 8);
    put32(fixed + 8, kStreamVersion);
    put32(fixed + 12, uint32_t(text.size()));
    w.header_digest_ = sha256({{fixed, sizeof fixed}, {text.data(), text.size()}});
    w.size_ = header.size;
    for (auto [p, n] : {std::pair<const void*, size_t>{fixed, sizeof fixed},
                        {text.data(), text.size()},
                        {w.header_digest_.data(), w.header_digest_.size()}})
        if (Result<void> ok = w.sink_(p, n); !ok) return tl::unexpected(ok.error());
    return w;
}

Result<void> StreamWriter::record(char type, uint64_t offset, uint64_t length,
                                  const void* payload) {
    unsigned char fixed[kFixed];
    fixed_part(fixed, type, ++seq_, offset, length);
    size_t payload_len = type == 'D' ? size_t(length) : 0;
    Digest d = sha256({{header_digest_.data(), header_digest_.size()},
                       {fixed, kFixed},
                       {payload, payload_len}});
    if (Result<void> ok = sink_(fixed, kFixed); !ok) return ok;
    if (payload_len)
        if (Result<void> ok = sink_(payload, payload_len); !ok) return ok;
    return sink_(d.data(), d.size());
}

Result<void> StreamWriter::data(uint64_t offset, const void* bytes, size_t len) {
    if (done_ || offset < next_offset_ || offset > size_ || len > size_ - offset)
        return fail(EINVAL, fmt::format("stream record at {} (+{}) out of order or past the "
                                        "end ({})",
                                        offset, len, size_));
    for (size_t done = 0; done < len;) {
        size_t n = std::min<size_t>(len - done, kStreamMaxData);
        if (Result<void> ok = record('D', offset + done, n, static_cast<const char*>(bytes) + done);
            !ok)
            return ok;
        ++records_;
        data_bytes_ += n;
        done += n;
    }
    next_offset_ = offset + len;
    return {};
}

Result<void> StreamWriter::hole(uint64_t offset, uint64_t len) {
    if (done_ || len == 0 || offset < next_offset_ || offset > size_ || len > size_ - offset)
        return fail(EINVAL, fmt::format("stream hole at {} (+{}) out of order or past the end ({})",
                                        offset, len, size_));
    if (Result<void> ok = record('H', offset, len, nullptr); !ok) return ok;
    ++records_;
    next_offset_ = offset + len;
    return {};
}

Result<void> StreamWriter::finish() {
    if (done_) return fail(EINVAL, "stream already finished");
    done_ = true;
    return record('E', records_, data_bytes_, nullptr);
}

// ---- reader ------------------------------------------------------------------

Result<void> StreamReader::read_exact(void* data, size_t len, const char* what) {
    for (size_t got = 0; got < len;) {
        Result<size_t> n = source_(static_cast<char*>(data) + got, len - got);
        if (!n) return tl::unexpected(n.error());
        if (*n == 0)
            return tl::unexpected(bad(fmt::format("it ends inside {} (truncated)", what)));
        got += *n;
    }
    return {};
}

Result<StreamReader> StreamReader::open(StreamSource source) {
    StreamReader r(std::move(source));
    unsigned char fixed[16];
    if (Result<void> ok = r.read_exact(fixed, sizeof fixed, "its header"); !ok)
        return tl::unexpected(ok.error());
    if (memcmp(fixed, kStreamMagic, 8) != 0)
        return tl::unexpected(bad("it does not start with BDSTREAM (is it a bdctl send's output?)"));
    if (get32(fixed + 8) != kStreamVersion)
        return tl::unexpected(bad(fmt::format("version {}, where this bd reads version {}",
                                              get32(fixed + 8), kStreamVersion)));
    uint32_t len = get32(fixed + 12);
    if (len == 0 || len > kStreamMaxHeader)
        return tl::unexpected(bad(fmt::format("a header of {} bytes", len)));
    std::string text(len, '\0');
    Digest want{};
    if (Result<void> ok = r.read_exact(text.data(), len, "its header"); !ok)
        return tl::unexpected(ok.error());
    if (Result<void> ok = r.read_exact(want.data(), want.size(), "its header"); !ok)
        return tl::unexpected(ok.error());
    r.header_digest_ = sha256({{fixed, sizeof fixed}, {text.data(), text.size()}});
    if (r.header_digest_ != want) return tl::unexpected(bad("its header is damaged (checksum)"));
    Result<StreamHeader> h = parse_stream_header(text);
    if (!h) return tl::unexpected(h.error());
    r.header_ = std::move(*h);
    return r;
}

Result<std::optional<StreamRecord>> StreamReader::next() {
    if (done_) return std::optional<StreamRecord>();
    unsigned char fixed[kFixed];
    if (Result<void> ok = read_exact(fixed, kFixed, fmt::format("record {}", seq_ + 1).c_str());
        !ok)
        return tl::unexpected(ok.error());
    char type = char(fixed[0]);
    uint32_t seq = get32(fixed + 4);
    uint64_t offset = get64(fixed + 8), length = get64(fixed + 16);
    if ((type != 'D' && type != 'H' && type != 'E') || fixed[1] || fixed[2] || fixed[3])
        return tl::unexpected(bad(fmt::format("record {} has an unknown type", seq_ + 1)));
    if (type == 'D' && (length == 0 || length > kStreamMaxData))
        return tl::unexpected(bad(fmt::format("record {} carries {} bytes", seq_ + 1, length)));
    size_t payload = type == 'D' ? size_t(length) : 0;
    buffer_.resize(payload);
    Digest want{};
    if (Result<void> ok = read_exact(buffer_.data(), payload, "a record's data"); !ok)
        return tl::unexpected(ok.error());
    if (Result<void> ok = read_exact(want.data(), want.size(), "a record's checksum"); !ok)
        return tl::unexpected(ok.error());
    Digest got = sha256({{header_digest_.data(), header_digest_.size()},
                         {fixed, kFixed},
                         {buffer_.data(), payload}});
    // The digest binds the record to this stream's header and to its place.
    if (got != want)
        return tl::unexpected(bad(fmt::format("record {} is damaged, or from another stream "
                                              "(checksum)",
                                              seq_ + 1)));
    if (seq != seq_ + 1)
        return tl::unexpected(bad(fmt::format("record {} comes where record {} belongs (reordered "
                                              "or missing records)",
                                              seq, seq_ + 1)));
    seq_ = seq;
    if (type == 'E') {
        if (offset != records_ || length != data_bytes_)
            return tl::unexpected(bad(fmt::format("its end counts {} records and {} bytes, where "
                                                  "{} and {} came",
                                                  offset, length, records_, data_bytes_)));
        char extra;
        Result<size_t> more = source_(&extra, 1);
        if (!more) return tl::unexpected(more.error());
        if (*more != 0) return tl::unexpected(bad("bytes follow its end record"));
        done_ = true;
        return std::optional<StreamRecord>();
    }
    if (offset < next_offset_ || offset > header_.size || length > header_.size - offset)
        return tl::unexpected(bad(fmt::format("record {} ({} bytes at {}) overlaps an earlier one "
                                              "or ends past the volume's {} bytes",
                                              seq, length, offset, header_.size)));
    if (type == 'H' && length == 0)
        return tl::unexpected(bad(fmt::format("record {} is an empty hole", seq)));
    next_offset_ = offset + length;
    ++records_;
    if (type == 'D') data_bytes_ += length;
    StreamRecord rec;
    rec.kind = type == 'D' ? StreamRecord::Kind::kData : StreamRecord::Kind::kHole;
    rec.offset = offset;
    rec.length = length;
    rec.data = type == 'D' ? buffer_.data() : nullptr;
    return std::optional<StreamRecord>(rec);
}

}  // namespace bd
