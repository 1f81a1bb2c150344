#include "delta.h"

#include <fmt/format.h>
#include <libxml/xmlreader.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>

namespace bd {

namespace {

struct ReaderFree {
    void operator()(xmlTextReader* r) const { xmlFreeTextReader(r); }
};

// A decimal attribute of the reader's current element; false if absent or not
// a plain number.
bool number_attr(xmlTextReader* r, const char* name, uint64_t& out) {
    xmlChar* raw = xmlTextReaderGetAttribute(r, BAD_CAST name);
    if (!raw) return false;
    std::string_view s(reinterpret_cast<const char*>(raw));
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    bool ok = ec == std::errc() && end == s.data() + s.size() && !s.empty();
    xmlFree(raw);
    return ok;
}

}  // namespace

const char* delta_kind_name(DeltaKind kind) {
    switch (kind) {
        case DeltaKind::kSame:
            return "same";
        case DeltaKind::kChanged:
            return "changed";
        case DeltaKind::kAdded:
            return "added";
        case DeltaKind::kRemoved:
            return "removed";
    }
    return "?";
}

namespace {

// Walks a thin-provisioning-tools report as a stream (a report of millions
// of runs builds no tree): checks its root, <superblock data_block_size=...>
// (into out.block_bytes), and hands each element below it, with its depth, to
// `visit`, which returns why to stop ("" to go on).
using Visit = std::function<std::string(xmlTextReader*, std::string_view name, int depth)>;

Result<void> walk_report(std::string_view xml, const char* tool, ThinDelta& out,
                         const Visit& visit) {
    auto bad = [tool](const std::string& why) {
        return fail(EIO, fmt::format("cannot read {}'s report: {}", tool, why));
    };
    if (xml.size() > size_t(std::numeric_limits<int>::max())) return bad("too large");
    std::unique_ptr<xmlTextReader, ReaderFree> r(
        xmlReaderForMemory(xml.data(), int(xml.size()), tool, nullptr,
                           XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
    if (!r) return bad("not XML");
    bool superblock = false;
    int ret;
    while ((ret = xmlTextReaderRead(r.get())) == 1) {
        if (xmlTextReaderNodeType(r.get()) != XML_READER_TYPE_ELEMENT) continue;
        std::string_view name(reinterpret_cast<const char*>(xmlTextReaderConstName(r.get())));
        int depth = xmlTextReaderDepth(r.get());
        if (depth == 0) {
            uint64_t sectors = 0;
            if (name != "superblock" || !number_attr(r.get(), "data_block_size", sectors) ||
                sectors == 0 || sectors > (uint64_t(1) << 32))
                return bad("no <superblock> with a data_block_size");
            out.block_bytes = sectors * 512;
            superblock = true;
        } else if (std::string why = visit(r.get(), name, depth); !why.empty()) {
            return bad(why);
        }
    }
    if (ret < 0) return bad("not well-formed XML");
    if (!superblock) return bad("no <superblock> with a data_block_size");
    return {};
}

// Both the end and the end in bytes of a run must fit in 64 bits.
bool fits(const DeltaBlocks& run, uint64_t block_bytes) {
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    return run.length != 0 && run.length <= kMax / block_bytes &&
           run.begin <= kMax / block_bytes - run.length;
}

}  // namespace

// Sample (thin-provisioning-tools 0.9.0, `thin_delta -m --snap1 2 --snap2 1`):
// <superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="0">
//   <diff left="2" right="1">
//     <left_only begin="0" length="1"/>
//     <same begin="1" length="1"/>
//     <different begin="2" length="2"/>
//     <right_only begin="100" length="3"/>
//   </diff>
// </superblock>
Result<ThinDelta> parse_thin_delta(std::string_view xml) {
    ThinDelta out;
    int diffs = 0;
    bool in_diff = false;
    Result<void> ok = walk_report(
        xml, "thin_delta", out,
        [&](xmlTextReader* r, std::string_view name, int depth) -> std::string {
            if (depth == 1) {
                in_diff = name == "diff";
                if (!in_diff) return "";
                if (++diffs > 1) return "more than one <diff>";
                if (!number_attr(r, "left", out.left) || !number_attr(r, "right", out.right))
                    return "a <diff> without the ids it compares";
            } else if (depth == 2 && in_diff) {
                DeltaBlocks run;
                if (name == "same")
                    run.kind = DeltaKind::kSame;
                else if (name == "different")
                    run.kind = DeltaKind::kChanged;
                else if (name == "right_only")
                    run.kind = DeltaKind::kAdded;
                else if (name == "left_only")
                    run.kind = DeltaKind::kRemoved;
                else
                    return fmt::format("unknown element <{}> (thin_delta --verbose?)", name);
                if (!number_attr(r, "begin", run.begin) || !number_attr(r, "length", run.length) ||
                    !fits(run, out.block_bytes))
                    return "a range without a valid begin and length";
                out.runs.push_back(run);
            }
            return "";
        });
    if (!ok) return tl::unexpected(ok.error());
    if (diffs != 1) return fail(EIO, "cannot read thin_delta's report: no <diff> element");
    return out;
}

// Sample (thin-provisioning-tools 0.9.0, `thin_dump -m --dev-id 1`):
// <superblock uuid="" time="0" transaction="1" flags="0" version="2" data_block_size="128"
// nr_data_blocks="8192">
//   <device dev_id="1" mapped_blocks="3" transaction="0" creation_time="0" snap_time="0">
//     <range_mapping origin_begin="0" data_begin="7" length="2" time="0"/>
//     <single_mapping origin_block="40" data_block="3" time="0"/>
//   </device>
// </superblock>
Result<ThinDelta> parse_thin_dump(std::string_view xml, uint64_t dev_id) {
    ThinDelta out;
    out.right = dev_id;
    int devices = 0;
    Result<void> ok = walk_report(
        xml, "thin_dump", out,
        [&](xmlTextReader* r, std::string_view name, int depth) -> std::string {
            if (depth == 1) {
                uint64_t id = 0;
                if (name != "device" || !number_attr(r, "dev_id", id) || id != dev_id)
                    return fmt::format("<{}> where only device {} was asked for", name, dev_id);
                if (++devices > 1) return "more than one <device>";
            } else if (depth == 2) {
                DeltaBlocks run{DeltaKind::kAdded, 0, 1};
                bool got = name == "range_mapping" ? number_attr(r, "origin_begin", run.begin) &&
                                                         number_attr(r, "length", run.length)
                                                   : name == "single_mapping" &&
                                                         number_attr(r, "origin_block", run.begin);
                if (!got || !fits(run, out.block_bytes))
                    return fmt::format("<{}> without a valid block and length", name);
                out.runs.push_back(run);
            }
            return "";
        });
    if (!ok) return tl::unexpected(ok.error());
    if (devices != 1)
        return fail(EIO, fmt::format("cannot read thin_dump's report: no <device> {}", dev_id));
    return out;
}

std::vector<DeltaRange> delta_ranges(const ThinDelta& delta, uint64_t size) {
    std::vector<DeltaBlocks> runs = delta.runs;
    std::sort(runs.begin(), runs.end(),
              [](const DeltaBlocks& a, const DeltaBlocks& b) { return a.begin < b.begin; });
    std::vector<DeltaRange> out;
    for (const DeltaBlocks& r : runs) {
        if (r.kind == DeltaKind::kSame) continue;
        uint64_t offset = r.begin * delta.block_bytes;
        if (offset >= size) break;
        uint64_t length = std::min(r.length * delta.block_bytes, size - offset);
        if (!out.empty() && out.back().kind == r.kind &&
            out.back().offset + out.back().length == offset)
            out.back().length += length;
        else
            out.push_back({r.kind, offset, length});
    }
    return out;
}

// Sample (thin-provisioning-tools 0.9.0, `thin_ls -m --no-headers -o DEV,EXCLUSIVE_BYTES`):
//   1       327680
//   2       196608
Result<std::map<uint64_t, uint64_t>> parse_thin_ls_exclusive(std::string_view text) {
    std::map<uint64_t, uint64_t> out;
    std::istringstream in{std::string(text)};
    for (std::string line; std::getline(in, line);) {
        std::istringstream words(line);
        std::string id, bytes, extra;
        if (!(words >> id)) continue;  // a blank line
        uint64_t dev = 0, n = 0;
        auto num = [](const std::string& s, uint64_t& v) {
            auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            return ec == std::errc() && end == s.data() + s.size();
        };
        if (!(words >> bytes) || (words >> extra) || !num(id, dev) || !num(bytes, n))
            return fail(EIO,
                        fmt::format("cannot read thin_ls's report: unexpected line \"{}\"", line));
        out[dev] = n;
    }
    return out;
}

}  // namespace bd
