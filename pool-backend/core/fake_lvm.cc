#include "fake_lvm.h"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace bd {

namespace {

using nlohmann::json;

// argv split into its options (repeatable ones gathered) and the names after "--".
struct Parsed {
    std::string cmd;
    std::map<std::string, std::vector<std::string>> opts;
    std::set<std::string> flags;
    std::vector<std::string> names;
    std::string opt(const std::string& key) const {
        auto it = opts.find(key);
        return it == opts.end() || it->second.empty() ? "" : it->second.back();
    }
};

const std::set<std::string> kFlags = {"--snapshot", "--yes", "--nosuffix",
                                      "--ignoreactivationskip", "-q",
                                      "--metadata-snap"};

Parsed parse(const Argv& argv) {
    Parsed p;
    p.cmd = argv[0];
    size_t i = 1;
    for (; i < argv.size() && argv[i] != "--"; ++i) {
        if (kFlags.count(argv[i])) {
            p.flags.insert(argv[i]);
        } else if (argv[i].rfind("-", 0) == 0 && i + 1 < argv.size()) {
            p.opts[argv[i]].push_back(argv[i + 1]);
            ++i;
        } else {
            p.names.push_back(argv[i]);  // a positional before any "--" (not bd's style)
        }
    }
    for (++i; i < argv.size(); ++i) p.names.push_back(argv[i]);
    return p;
}

uint64_t bytes(const std::string& arg) { return std::strtoull(arg.c_str(), nullptr, 10); }

std::string joined(const std::vector<std::string>& tags) {
    std::string out;
    for (const std::string& t : tags) out += (out.empty() ? "" : ",") + t;
    return out;
}

Result<CommandOutput> lvm_error(const std::string& what, int status = 5) {
    return fail(EIO, fmt::format("exit {}: {}", status, what));
}

}  // namespace

std::string FakeLvm::new_uuid() { return fmt::format("fake-uuid-{:06d}", ++uuids_); }

FakeLvm::Vg& FakeLvm::add_export(const std::string& vg, const std::string& name, bool exported) {
    Vg& v = vgs[vg];
    v.name = vg;
    v.uuid = new_uuid();
    v.tags = {"bd.pool=pool", "bd.threshold=90", "bd.v=1"};
    if (exported) v.tags.push_back("bd.export=" + name);
    Lv pool;
    pool.name = "pool";
    pool.uuid = new_uuid();
    pool.segtype = "thin-pool";
    pool.size = 1ull << 30;
    v.lvs["pool"] = pool;
    return v;
}

std::vector<std::string> FakeLvm::lv_names(const std::string& vg) const {
    std::vector<std::string> out;
    auto it = vgs.find(vg);
    if (it == vgs.end()) return out;
    for (const auto& [name, lv] : it->second.lvs) out.push_back(name);
    return out;
}

std::string FakeLvm::report_lvs(const std::string& only_vg) const {
    json rows = json::array();
    for (const auto& [vgname, vg] : vgs) {
        if (!only_vg.empty() && vgname != only_vg) continue;
        for (const auto& [name, lv] : vg.lvs) {
            std::string attr = std::string(lv.segtype == "thin-pool" ? "t" : "V") +
                               (lv.read_only ? "r" : "w") + "i-" + (lv.active ? "a" : "-") +
                               (lv.open ? "o" : "-") + "tz--";
            rows.push_back({{"lv_name", name},
                            {"lv_uuid", lv.uuid},
                            {"lv_attr", attr},
                            {"lv_size", std::to_string(lv.size)},
                            {"lv_tags", joined(lv.tags)},
                            {"pool_lv", lv.pool},
                            {"origin", lv.origin},
                            {"segtype", lv.segtype},
                            {"data_percent", lv.segtype == "linear" ? "" : "0.00"},
                            {"metadata_percent", lv.segtype == "thin-pool" ? "1.00" : ""},
                            {"chunk_size", lv.segtype == "thin-pool" ? "65536" : "0"},
                            {"lv_active", lv.active ? "active" : ""},
                            {"lv_device_open", lv.open ? "open" : ""},
                            {"lv_time", "1764115200"},
                            {"lv_dm_path", "/dev/mapper/" + vgname + "-" + name},
                            {"lv_when_full", lv.segtype == "thin-pool" ? "error" : ""},
                            {"thin_id", lv.thin_id ? std::to_string(lv.thin_id) : ""},
                            {"vg_name", vgname},
                            {"vg_uuid", vg.uuid},
                            {"vg_tags", joined(vg.tags)},
                            {"vg_extent_size", "4194304"},
                            {"vg_free", "1073741824"},
                            {"vg_mda_free", "8000000"},
                            {"vg_mda_size", "16777216"}});
        }
    }
    return json{{"report", json::array({json{{"lv", rows}}})}}.dump();
}

std::string FakeLvm::report_vgs(const std::string& only_vg) const {
    json rows = json::array();
    for (const auto& [vgname, vg] : vgs) {
        if (!only_vg.empty() && vgname != only_vg) continue;
        rows.push_back({{"vg_name", vgname},
                        {"vg_uuid", vg.uuid},
                        {"vg_tags", joined(vg.tags)},
                        {"vg_extent_size", "4194304"},
                        {"vg_size", "4294967296"},
                        {"vg_free", "3221225472"},
                        {"vg_seqno", "1"}});
    }
    return json{{"report", json::array({json{{"vg", rows}}})}}.dump();
}

Result<CommandOutput> FakeLvm::run(const Argv& argv) {
    Parsed p = parse(argv);
    if (p.cmd == "lvs") return CommandOutput{report_lvs(p.names.empty() ? "" : p.names[0]), ""};
    if (p.cmd == "vgs") return CommandOutput{report_vgs(p.names.empty() ? "" : p.names[0]), ""};
    if (p.cmd == "lvmconfig") return CommandOutput{"backup=1\nbackup_dir=\"/etc/lvm/backup\"\n", ""};
    if (p.cmd == "dmsetup" && p.names.at(0) == "status")
        return CommandOutput{fmt::format("0 2097152 thin-pool 3 20/1024 10/4096 {} rw "
                                         "discard_passdown queue_if_no_space - 256\n",
                                         metadata_snap_held ? "45" : "-"),
                             ""};
    if (dead_) return fail(EIO, "killed");
    changes_.push_back(p.cmd + " " + (p.names.empty() ? "" : p.names.back()));
    if (fail_at_ > 0 && --fail_at_ == 0) return tl::unexpected(failure_);
    Result<CommandOutput> out = change(argv);
    if (out && !dev_dir.empty()) mirror(argv);
    if (out && die_after_ > 0 && --die_after_ == 0) dead_ = true;
    return out;
}

void FakeLvm::mirror(const Argv& argv) {
    namespace fs = std::filesystem;
    Parsed p = parse(argv);
    auto file = [&](const std::string& vg, const std::string& lv) {
        fs::create_directories(fs::path(dev_dir) / vg);
        return fs::path(dev_dir) / vg / lv;
    };
    auto size_to = [](const fs::path& f, uint64_t size) {
        if (!fs::exists(f)) std::ofstream(f).close();
        fs::resize_file(f, size);
    };
    if (p.cmd == "lvcreate" && p.flags.count("--snapshot")) {
        size_t slash = p.names[0].find('/');
        std::string vg = p.names[0].substr(0, slash), origin = p.names[0].substr(slash + 1);
        fs::copy_file(file(vg, origin), file(vg, p.opt("--name")), fs::copy_options::overwrite_existing);
    } else if (p.cmd == "lvcreate" && vgs.count(p.names[0])) {
        const Lv* lv = nullptr;
        for (const auto& [n, l] : vgs[p.names[0]].lvs)
            if (n == p.opt("--name")) lv = &l;
        if (lv) size_to(file(p.names[0], lv->name), lv->size);
    } else if (p.cmd == "lvrename") {
        fs::rename(file(p.names[0], p.names[1]), file(p.names[0], p.names[2]));
    } else if (p.cmd == "lvremove") {
        size_t slash = p.names[0].find('/');
        fs::remove(file(p.names[0].substr(0, slash), p.names[0].substr(slash + 1)));
    } else if (p.cmd == "lvresize" || p.cmd == "lvextend") {
        size_t slash = p.names[0].find('/');
        size_to(file(p.names[0].substr(0, slash), p.names[0].substr(slash + 1)), bytes(p.opt("--size")));
    }
}

Result<CommandOutput> FakeLvm::change(const Argv& argv) {
    Parsed p = parse(argv);
    auto split = [](const std::string& vg_lv) {
        size_t slash = vg_lv.find('/');
        return std::make_pair(vg_lv.substr(0, slash),
                              slash == std::string::npos ? "" : vg_lv.substr(slash + 1));
    };
    auto edit_tags = [&](std::vector<std::string>& tags) -> Result<CommandOutput> {
        for (const std::string& t : p.opts["--deltag"])
            tags.erase(std::remove(tags.begin(), tags.end(), t), tags.end());
        for (const std::string& t : p.opts["--addtag"])
            if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
        return CommandOutput{};
    };
    if (p.cmd == "qemu-img") return CommandOutput{};
    if (p.cmd == "dmsetup" && p.names.size() == 4 && p.names[0] == "message") {
        bool reserve = p.names[3] == "reserve_metadata_snap";
        if (!reserve && p.names[3] != "release_metadata_snap") return lvm_error("bad message", 1);
        if (reserve == metadata_snap_held)
            return lvm_error("device-mapper: message ioctl on " + p.names[1] +
                                 " failed: Invalid argument",
                             1);
        metadata_snap_held = reserve;
        return CommandOutput{};
    }
    if (p.cmd == "thin_ls") {
        if (!metadata_snap_held)
            return lvm_error("syscall 'open' failed: Device or resource busy", 1);
        std::string out;
        for (const auto& [vgname, vg] : vgs)
            for (const auto& [name, lv] : vg.lvs)
                if (lv.thin_id) out += fmt::format("{:>5} {:>12}\n", lv.thin_id, lv.thin_id * 65536);
        return CommandOutput{out, ""};
    }
    if (p.cmd == "thin_delta") {
        if (!metadata_snap_held)
            return lvm_error("syscall 'open' failed: Device or resource busy", 1);
        for (const char* opt : {"--snap1", "--snap2"}) {
            bool known = false;
            for (const auto& [vgname, vg] : vgs)
                for (const auto& [name, lv] : vg.lvs)
                    known = known || (lv.thin_id && std::to_string(lv.thin_id) == p.opt(opt));
            if (!known) return lvm_error("unknown device " + p.opt(opt), 1);
        }
        return CommandOutput{thin_delta_out, ""};
    }
    if (p.cmd == "vgcreate") {
        if (vgs.count(p.names[0])) return lvm_error("A volume group called " + p.names[0] + " already exists.");
        Vg& vg = vgs[p.names[0]];
        vg.name = p.names[0];
        vg.uuid = new_uuid();
        return CommandOutput{};
    }
    if (p.cmd == "vgremove") return vgs.erase(p.names[0]) ? Result<CommandOutput>(CommandOutput{})
                                                          : lvm_error("no VG " + p.names[0]);
    if (p.cmd == "vgchange") {
        if (!vgs.count(p.names[0])) return lvm_error("no VG " + p.names[0]);
        return edit_tags(vgs[p.names[0]].tags);
    }
    if (p.cmd == "lvcreate") {
        bool snapshot = p.flags.count("--snapshot");
        auto [vgname, origin] = snapshot ? split(p.names[0]) : std::make_pair(p.names[0], std::string());
        if (!vgs.count(vgname)) return lvm_error("no VG " + vgname);
        Vg& vg = vgs[vgname];
        Lv lv;
        lv.uuid = new_uuid();
        lv.tags = p.opts["--addtag"];
        if (snapshot) {
            if (!vg.lvs.count(origin)) return lvm_error("no LV " + origin);
            const Lv& o = vg.lvs[origin];
            lv.name = p.opt("--name");
            lv.segtype = o.segtype == "thin" ? "thin" : "linear";
            if (lv.segtype == "thin") lv.thin_id = ++thin_ids_;
            lv.pool = o.pool;
            lv.origin = origin;
            lv.size = o.size;
            lv.read_only = p.opt("--permission") == "r";
        } else if (p.opts.count("--thinpool") && !p.opts.count("--virtualsize")) {
            lv.name = p.opt("--thinpool");
            lv.segtype = "thin-pool";
            lv.size = bytes(p.opt("--size"));
        } else if (p.opt("--type") == "thin") {
            lv.name = p.opt("--name");
            lv.thin_id = ++thin_ids_;
            lv.pool = p.opt("--thinpool");
            lv.size = bytes(p.opt("--virtualsize"));
        } else {
            lv.name = p.opt("--name");
            lv.segtype = "linear";
            lv.size = bytes(p.opt("--size"));
        }
        if (vg.lvs.count(lv.name))
            return lvm_error("Logical Volume \"" + lv.name + "\" already exists in volume group \"" +
                             vgname + "\"");
        vg.lvs[lv.name] = lv;
        return CommandOutput{};
    }
    if (p.cmd == "lvrename") {
        if (!vgs.count(p.names[0])) return lvm_error("no VG " + p.names[0]);
        Vg& vg = vgs[p.names[0]];
        if (!vg.lvs.count(p.names[1])) return lvm_error("Existing logical volume \"" + p.names[1] + "\" not found");
        if (vg.lvs.count(p.names[2])) return lvm_error("Logical Volume \"" + p.names[2] + "\" already exists");
        Lv lv = vg.lvs[p.names[1]];
        vg.lvs.erase(p.names[1]);
        for (auto& [n, other] : vg.lvs)
            if (other.origin == lv.name) other.origin = p.names[2];
        lv.name = p.names[2];
        vg.lvs[lv.name] = lv;
        return CommandOutput{};
    }
    std::vector<std::pair<std::string, std::string>> targets;
    for (const std::string& n : p.names) targets.push_back(split(n));
    for (auto& [vgname, lvname] : targets)
        if (!vgs.count(vgname) || !vgs[vgname].lvs.count(lvname))
            return lvm_error("Failed to find logical volume \"" + vgname + "/" + lvname + "\"");
    if (p.cmd == "lvremove") {
        auto [vgname, lvname] = targets.at(0);
        if (vgs[vgname].lvs[lvname].open)
            return lvm_error("Logical volume " + vgname + "/" + lvname + " in use.");
        vgs[vgname].lvs.erase(lvname);
        return CommandOutput{};
    }
    if (p.cmd == "lvresize" || p.cmd == "lvextend") {
        auto [vgname, lvname] = targets.at(0);
        if (p.cmd == "lvextend" && bytes(p.opt("--size")) <= vgs[vgname].lvs[lvname].size)
            return lvm_error("New size given not larger than existing size.");
        vgs[vgname].lvs[lvname].size = bytes(p.opt("--size"));
        return CommandOutput{};
    }
    if (p.cmd == "lvchange") {
        for (auto& [vgname, lvname] : targets) {
            Lv& lv = vgs[vgname].lvs[lvname];
            if (p.opts.count("--activate")) {
                if (lv.open && p.opt("--activate") == "n")
                    return lvm_error("Logical volume " + vgname + "/" + lvname + " in use.");
                lv.active = p.opt("--activate") == "y";
            }
            edit_tags(lv.tags);
        }
        return CommandOutput{};
    }
    return lvm_error("the fake LVM does not know " + p.cmd, 3);
}

}  // namespace bd
