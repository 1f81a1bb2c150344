#include "lvm_report.h"

#include <fmt/format.h>

#include <charconv>
#include <simdjson.h>

#include "names.h"

namespace bd {

namespace {

// One report row: LVM prints every field as a string. The views point into
// the parser's buffers and live as long as the callback that gets the row.
class Row {
public:
    void add(std::string_view key, std::string_view value) { fields_.emplace_back(key, value); }
    std::string_view get(std::string_view key) const {
        for (const auto& [k, v] : fields_)
            if (k == key) return v;
        return {};
    }

private:
    std::vector<std::pair<std::string_view, std::string_view>> fields_;
};

std::string field(const Row& row, const char* key) { return std::string(row.get(key)); }

uint64_t number(const Row& row, const char* key) {
    std::string_view s = row.get(key);
    uint64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

std::optional<double> percent(const Row& row, const char* key) {
    std::string_view s = row.get(key);
    if (s.empty()) return std::nullopt;
    double v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

std::vector<std::string> split_tags(const std::string& s) {
    std::vector<std::string> tags;
    size_t start = 0;
    while (start < s.size()) {
        size_t comma = s.find(',', start);
        if (comma == std::string::npos) comma = s.size();
        if (comma > start) tags.push_back(s.substr(start, comma - start));
        start = comma + 1;
    }
    return tags;
}

// Reports look like {"report": [{"lv": [{...}, ...]}]}; a VG filter can yield several
// report objects, so rows from all of them are read. simdjson's on-demand
// parser reads a 1000-LV report (600 KB) in a few milliseconds on hardware;
// building nlohmann's tree of it took most of `bdctl list` (bench/README.md).
template <typename Each>
Result<void> for_each_row(std::string_view text, const char* kind, Each&& each) {
    auto bad = [kind] {
        return fail(EIO, fmt::format("cannot parse LVM {} report: not the expected JSON "
                                     "(is lvm2 >= 2.02.158 installed?)",
                                     kind));
    };
    simdjson::ondemand::parser parser;
    simdjson::padded_string padded(text);
    simdjson::ondemand::document doc;
    simdjson::ondemand::array reports;
    if (parser.iterate(padded).get(doc) || doc["report"].get_array().get(reports)) return bad();
    for (auto report_result : reports) {
        simdjson::ondemand::object report;
        if (report_result.get_object().get(report)) return bad();
        for (auto part : report) {
            std::string_view key;
            simdjson::ondemand::array rows;
            if (part.unescaped_key().get(key)) return bad();
            if (key != kind) continue;
            if (part.value().get_array().get(rows)) return bad();
            for (auto row_result : rows) {
                simdjson::ondemand::object object;
                if (row_result.get_object().get(object)) return bad();
                Row row;
                for (auto f : object) {
                    std::string_view name, value;
                    if (f.unescaped_key().get(name)) return bad();
                    if (f.value().get_string().get(value)) continue;  // not a string: absent
                    row.add(name, value);
                }
                each(row);
            }
        }
    }
    return {};
}

}  // namespace

// Sample (lvm2 2.03.16, --units b --nosuffix, time_format "%s"):
// {"report": [{"lv": [{"lv_name":"pool", "lv_uuid":"Xk1...", "lv_attr":"twi-aotz--",
//   "lv_size":"67108864", "lv_tags":"", "pool_lv":"", "origin":"", "segtype":"thin-pool",
//   "data_percent":"0.00", "metadata_percent":"10.94", "chunk_size":"65536",
//   "lv_active":"active", "lv_device_open":"open", "lv_time":"1764115200",
//   "lv_dm_path":"/dev/mapper/vg-pool", "lv_when_full":"error", "thin_id":"", "vg_name":"vg0",
//   "vg_uuid":"pQ2...", "vg_tags":"bd.export=bd,bd.pool=pool", "vg_extent_size":"4194304",
//   "vg_free":"0", "vg_mda_free":"520192", "vg_mda_size":"1044480"}, ...]}]}
Result<std::vector<LvRecord>> parse_lvs(std::string_view text) {
    std::vector<LvRecord> out;
    Result<void> read = for_each_row(text, "lv", [&out](const Row& row) {
        LvRecord lv;
        lv.name = field(row, "lv_name");
        lv.uuid = field(row, "lv_uuid");
        lv.attr = field(row, "lv_attr");
        lv.size = number(row, "lv_size");
        lv.tags = split_tags(field(row, "lv_tags"));
        lv.pool = field(row, "pool_lv");
        lv.origin = field(row, "origin");
        lv.segtype = field(row, "segtype");
        lv.data_percent = percent(row, "data_percent");
        lv.metadata_percent = percent(row, "metadata_percent");
        lv.chunk_size = number(row, "chunk_size");
        lv.active = field(row, "lv_active") == "active";
        lv.open = field(row, "lv_device_open") == "open";
        lv.time = int64_t(number(row, "lv_time"));
        lv.dm_path = field(row, "lv_dm_path");
        lv.when_full = field(row, "lv_when_full");
        lv.thin_id = number(row, "thin_id");
        lv.vg_name = field(row, "vg_name");
        lv.vg_uuid = field(row, "vg_uuid");
        lv.vg_tags = split_tags(field(row, "vg_tags"));
        lv.vg_extent_size = number(row, "vg_extent_size");
        lv.vg_free = number(row, "vg_free");
        lv.vg_mda_free = number(row, "vg_mda_free");
        lv.vg_mda_size = number(row, "vg_mda_size");
        lv.vg_lock_type = field(row, "vg_lock_type");
        out.push_back(std::move(lv));
    });
    if (!read) return tl::unexpected(read.error());
    return out;
}

// Sample: {"report": [{"vg": [{"vg_name":"vg0", "vg_uuid":"pQ2...", "vg_tags":"bd.export=bd",
//   "vg_extent_size":"4194304", "vg_size":"1069547520", "vg_free":"0", "vg_seqno":"7"}]}]}
Result<std::vector<VgRecord>> parse_vgs(std::string_view text) {
    std::vector<VgRecord> out;
    Result<void> read = for_each_row(text, "vg", [&out](const Row& row) {
        VgRecord vg;
        vg.name = field(row, "vg_name");
        vg.uuid = field(row, "vg_uuid");
        vg.tags = split_tags(field(row, "vg_tags"));
        vg.extent_size = number(row, "vg_extent_size");
        vg.size = number(row, "vg_size");
        vg.free = number(row, "vg_free");
        vg.seqno = number(row, "vg_seqno");
        vg.lock_type = field(row, "vg_lock_type");
        out.push_back(std::move(vg));
    });
    if (!read) return tl::unexpected(read.error());
    return out;
}

// Sample (lvmlockctl --info, lvm2 2.03.16: daemons/lvmlockd/lvmlockctl.c):
//   VG bdvg lock_type=sanlock 2OgY63-DHGx-amXx-nhvc-yDpF-jMoL-3rWTka
//   LS sanlock lvm_bdvg
//   LK VG un ver 7
//   LK LV ex Oet54F-cmU0-sNKh-7wwh-KLH6-3dM3-zVtiew
bool holds_lv_lock(std::string_view info, std::string_view vg, std::string_view lv_uuid) {
    auto bare = [](std::string_view s) {
        std::string out;
        for (char c : s)
            if (c != '-') out += c;
        return out;
    };
    const std::string want = bare(lv_uuid);
    bool in_vg = false;
    size_t start = 0;
    while (start < info.size()) {
        size_t end = info.find('\n', start);
        if (end == std::string_view::npos) end = info.size();
        std::string_view line = info.substr(start, end - start);
        start = end + 1;
        std::vector<std::string_view> words;
        for (size_t i = 0; i < line.size();) {
            size_t j = line.find(' ', i);
            if (j == std::string_view::npos) j = line.size();
            if (j > i) words.push_back(line.substr(i, j - i));
            i = j + 1;
        }
        if (words.size() >= 2 && words[0] == "VG") in_vg = words[1] == vg;
        if (in_vg && words.size() == 4 && words[0] == "LK" && words[1] == "LV" &&
            words[2] == "ex" && !want.empty() && bare(words[3]) == want)
            return true;
    }
    return false;
}

// Sample (lvmconfig --type full backup/backup backup/backup_dir):
//   backup=1
//   backup_dir="/etc/lvm/backup"
std::map<std::string, std::string> parse_lvmconfig(std::string_view text) {
    std::map<std::string, std::string> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t nl = text.find('\n', start);
        std::string_view line = text.substr(start, nl - start);
        start = nl == std::string_view::npos ? text.size() : nl + 1;
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        std::string_view name = line.substr(0, eq), value = line.substr(eq + 1);
        while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
            value = value.substr(1, value.size() - 2);
        out.emplace(std::string(name), std::string(value));
    }
    return out;
}

std::vector<std::string> tag_values(const std::vector<std::string>& tags, std::string_view key) {
    std::vector<std::string> out;
    for (const std::string& tag : tags) {
        if (tag.size() <= key.size() || tag.compare(0, key.size(), key) != 0 ||
            tag[key.size()] != '=')
            continue;
        Result<std::string> value = tag_unescape(std::string_view(tag).substr(key.size() + 1));
        if (value) out.push_back(*value);
    }
    return out;
}

std::optional<std::string> tag_value(const std::vector<std::string>& tags, std::string_view key) {
    std::vector<std::string> values = tag_values(tags, key);
    if (values.empty()) return std::nullopt;
    return values.front();
}

}  // namespace bd
