// bdctl: the BD verbs (create, delete, clone, snapshot on EXPORT:/path) plus
// what virsh lacks. A table of {verb, help, setup}; each handler is a thin
// adapter from parsed options to one core call and one report.
#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bdxml.h"
#include "export.h"
#include "names.h"
#include "report.h"
#include "size.h"

namespace bd {

namespace {

using nlohmann::json;

// Everything a verb's handler may read; filled by CLI11.
struct Options {
    bool json = false;
    bool long_list = false;
    bool thick = false, full = false, shrink = false, with_snapshots = false;
    bool force = false, destroy = false, dry_run = false, threshold_set = false;
    std::string target, second, size, vg, thinpool, extents, name, dev = "vda";
    bool shared = false;
    int wait = 600;
    std::string metadata_size, owner, mode, format = "raw", when_full, from, to, snapshot;
    bool incremental = false, force_receive = false;
    std::vector<std::string> pvs;
    int threshold = kDefaultThreshold;
};

// An error from any step ends the command: printed once, mapped to the exit code.
struct Failure {
    Error error;
};

template <typename T>
T must(Result<T> r) {
    if (!r) throw Failure{r.error()};
    return std::move(*r);
}

inline void must(Result<void> r) {
    if (!r) throw Failure{r.error()};
}

LvmShellRunner g_runner;

// A verb that did its work but not all of it (a receive that committed while
// its volume could not take the data) prints its result and exits with this.
int g_partial_exit = 0;

// Verbs that change an export open it with Access::kChange: the lock is taken
// before the first read, so that one read serves both the checks and the change.
Export open_export(const std::string& name, Access access = Access::kRead) {
    Export ex = must(Export::open(g_runner, name, access));
    ex.set_warn([](const std::string& msg) { fmt::print(stderr, "bdctl: warning: {}\n", msg); });
    return ex;
}

// NEWPATH may be "/p", "p" or "EXPORT:/p" naming the same export.
std::string same_export_path(const VolumeSpec& src, const std::string& arg) {
    if (arg.find(':') != std::string::npos) {
        VolumeSpec dst = must(parse_volume_spec(arg));
        if (dst.export_name != src.export_name)
            throw Failure{{EINVAL, fmt::format("\"{}\" is in export \"{}\", not \"{}\"; clone and "
                                               "rename stay inside one export",
                                               arg, dst.export_name, src.export_name)}};
        return dst.path;
    }
    return must(normalize_path(arg));
}

// Paths are shown escaped: a name made before bd refused control characters
// must not steer the terminal.
std::string shown(const std::string& path) { return printable(path); }

// The caller of this bdctl: root, normally, with the reserve kept for root.
Actor caller() {
    Actor a;
    a.uid = getuid();
    a.gid = getgid();
    return a;
}

// "UID[:GID]" or "USER[:GROUP]", as chown(1) takes them; a bare user brings its group.
std::pair<uint32_t, std::optional<uint32_t>> parse_owner(const std::string& text) {
    auto number = [](const std::string& s, uint32_t& out) {
        char* end = nullptr;
        unsigned long n = s.empty() ? 0 : strtoul(s.c_str(), &end, 10);
        if (s.empty() || *end || n > 0xfffffffeul) return false;
        out = uint32_t(n);
        return true;
    };
    size_t colon = text.find(':');
    std::string user = text.substr(0, colon);
    uint32_t uid = 0;
    std::optional<uint32_t> gid;
    if (!number(user, uid)) {
        struct passwd* pw = getpwnam(user.c_str());
        if (!pw)
            throw Failure{{EINVAL, fmt::format("unknown user \"{}\" in --owner \"{}\" (give a name "
                                               "or a number, as for chown)",
                                               user, text)}};
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    if (colon == std::string::npos) return {uid, gid};
    std::string group = text.substr(colon + 1);
    uint32_t g = 0;
    if (!number(group, g)) {
        struct group* gr = getgrnam(group.c_str());
        if (!gr)
            throw Failure{{EINVAL, fmt::format("unknown group \"{}\" in --owner \"{}\"", group,
                                               text)}};
        g = gr->gr_gid;
    }
    return {uid, g};
}

uint32_t parse_mode(const std::string& text) {
    char* end = nullptr;
    unsigned long m = strtoul(text.c_str(), &end, 8);
    if (text.empty() || *end || m > 07777)
        throw Failure{{EINVAL, fmt::format("invalid --mode \"{}\": give octal permission bits, "
                                           "e.g. 0600",
                                           text)}};
    return uint32_t(m);
}

std::string alloc_text(const Volume& v) {
    return v.allocated ? format_size(*v.allocated) : "-";
}

void print_volume(const Options& o, const Export& ex, const Volume& v, const char* verb) {
    if (o.json) {
        std::cout << to_json(v, ex).dump(2) << "\n";
        return;
    }
    fmt::print("{} {}:/{}  {} {}{}  ({} allocated)  {}\n", verb, ex.name(), shown(v.path),
               format_size(v.size), type_name(v.type), v.format == "raw" ? "" : " " + v.format,
               alloc_text(v), ex.device(v));
}

void note_rounding(const Options& o, uint64_t asked, const Volume& v) {
    if (!o.json && asked != v.size)
        fmt::print("note: {} rounded up to {} (whole extents)\n", format_size(asked),
                   format_size(v.size));
}

Progress progress_printer(const std::string& what, const char* verb = "copying") {
    bool tty = isatty(2);
    auto started = std::chrono::steady_clock::now();
    return [what, verb, tty, started, last_pct = -1](uint64_t done, uint64_t total) mutable {
        if (!total) {  // no total known: bytes so far, every 64 MiB when not on a terminal
            if (!tty && done / (64 << 20) == uint64_t(last_pct)) return;
            last_pct = int(done / (64 << 20));
            fmt::print(stderr, "{}{} {}: {}{}", tty ? "\r" : "", verb, what, format_size(done),
                       tty ? "" : "\n");
            return;
        }
        int pct = total ? int(done * 100 / total) : 100;
        if (!tty && pct / 10 == last_pct / 10 && pct != 100) return;
        last_pct = pct;
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        fmt::print(stderr, "{}{} {}: {:3d}% ({} of {}, {:.0f} MiB/s){}", tty ? "\r" : "", verb, what,
                   pct, format_size(done), format_size(total),
                   secs > 0 ? double(done) / secs / 1048576 : 0.0, tty && pct < 100 ? "" : "\n");
    };
}

// ---- verbs -----------------------------------------------------------------

void do_export_create(const Options& o) {
    ExportSpec spec;
    spec.name = o.target;
    spec.vg = o.vg;
    spec.thinpool = o.thinpool;
    spec.pvs = o.pvs;
    spec.shared = o.shared;
    spec.extents = o.extents;
    spec.threshold = o.threshold;
    if (!o.size.empty()) spec.size = must(parse_size(o.size));
    if (!o.metadata_size.empty()) spec.metadata_size = must(parse_size(o.metadata_size));
    ExportInfo info = must(Export::create(g_runner, spec));
    if (o.json) {
        std::cout << to_json(info).dump(2) << "\n";
        return;
    }
    fmt::print("exported {} \"{}\" as \"{}\": thin pool {} of {} (chunk {}), threshold {}%{}\n",
               info.shared ? "thin pool of shared VG" : "VG", info.vg, info.name, info.thinpool,
               format_size(info.size), format_size(info.chunk_size), info.threshold,
               info.shared ? fmt::format(", served by this host (host {})", info.owner) : "");
}

// Who serves an export: "-" for a VG of this host alone.
std::string served_by(const ExportInfo& i) {
    if (!i.shared) return "-";
    if (i.owned) return "here";
    return i.owner.empty() ? "nobody" : "host " + i.owner;
}

void print_export(const ExportInfo& i) {
    fmt::print("export {}: VG {}, thin pool {}\n  size {}, allocated {} (data {:.1f}%, metadata "
               "{:.1f}%), threshold {}%, when full: {}\n  chunk {}, extent {}, VG free {}, "
               "LVM metadata area {} ({} free), {} volumes{}\n",
               i.name, i.vg, i.thinpool, format_size(i.size), format_size(i.allocated),
               i.data_percent, i.metadata_percent, i.threshold,
               i.when_full == "error" ? "error (VMs pause)" : i.when_full.empty() ? "?" : i.when_full,
               format_size(i.chunk_size), format_size(i.extent_size), format_size(i.vg_free),
               format_size(i.metadata_area), format_size(i.metadata_area_free), i.volumes,
               i.leftovers ? fmt::format(", {} leftovers (run bdctl fsck {})", i.leftovers, i.name)
                           : "");
    if (i.shared)
        fmt::print("  shared VG ({}): belongs to {}, {}\n", i.lock_type,
                   i.owner.empty() ? "no host" : "host " + i.owner,
                   i.owned ? "served by this host" : "not served by this host");
}

void do_export_list(const Options& o) {
    std::vector<ExportInfo> all = must(Export::list(g_runner));
    if (o.json) {
        json arr = json::array();
        for (const ExportInfo& i : all) arr.push_back(to_json(i));
        std::cout << json{{"exports", arr}}.dump(2) << "\n";
        return;
    }
    fmt::print("{:<16} {:<16} {:<12} {:>10} {:>7} {:>7} {:>8}  {}\n", "EXPORT", "VG", "THINPOOL",
               "SIZE", "DATA%", "META%", "VOLUMES", "SERVED");
    for (const ExportInfo& i : all)
        fmt::print("{:<16} {:<16} {:<12} {:>10} {:>7.1f} {:>7.1f} {:>8}  {}\n", i.name, i.vg,
                   i.thinpool, format_size(i.size), i.data_percent, i.metadata_percent, i.volumes,
                   served_by(i));
}

void do_export_takeover(const Options& o) {
    Export ex = open_export(o.target, Access::kChange);
    bool tty = isatty(STDERR_FILENO);
    Takeover t = must(ex.takeover(o.wait, [&](double waited, const std::string& why) {
        fmt::print(stderr, "{}waiting for lvmlockd to grant thin pool {}/{} (the old owner's lease "
                           "must expire): {:.0f} s of at most {} ({}){}",
                   tty ? "\r" : "", ex.vg(), ex.thinpool(), waited, o.wait,
                   printable(why.substr(0, why.find('\n'))), tty ? "" : "\n");
    }));
    if (tty && t.waited_s > 2) fmt::print(stderr, "\n");
    if (o.json) {
        json repairs = json::array();
        for (const Repair& r : t.repairs) repairs.push_back({{"lv", r.lv}, {"action", r.action}});
        std::cout << json{{"export", ex.name()},
                          {"previous_owner", t.previous_owner},
                          {"owner", must(ex.info()).owner},
                          {"waited_s", t.waited_s},
                          {"total_s", t.total_s},
                          {"repaired", repairs},
                          {"activated", t.activated}}
                         .dump(2)
                  << "\n";
        return;
    }
    for (const Repair& r : t.repairs) fmt::print("{}: {}\n", r.lv, printable(r.action));
    fmt::print("took over export \"{}\"{} in {:.1f} s ({:.1f} s waiting for the lease, {} "
               "repairs, {} volumes activated)\n",
               ex.name(), t.previous_owner.empty() ? "" : " from host " + t.previous_owner,
               t.total_s, t.waited_s, t.repairs.size(), t.activated.size());
}

void do_export_info(const Options& o) {
    Export ex = open_export(o.target);
    ExportInfo info = must(ex.info());
    if (o.json)
        std::cout << to_json(info).dump(2) << "\n";
    else
        print_export(info);
}

void do_export_set(const Options& o) {
    if (!o.threshold_set && o.when_full.empty())
        throw Failure{{EINVAL, "export set: give --threshold PCT, --when-full error|queue, or both"}};
    if (!o.when_full.empty() && o.when_full != "error" && o.when_full != "queue")
        throw Failure{{EINVAL, fmt::format("invalid --when-full \"{}\": give \"error\" (writes to a "
                                           "full pool fail at once, VMs pause) or \"queue\"",
                                           o.when_full)}};
    Export ex = open_export(o.target, Access::kChange);
    if (o.threshold_set) must(ex.set_threshold(o.threshold));
    if (!o.when_full.empty()) must(ex.set_when_full(o.when_full == "error"));
    do_export_info(o);
}

void do_export_delete(const Options& o) {
    Export ex = open_export(o.target, Access::kChange);
    must(ex.remove(o.force, o.destroy));
    if (o.json)
        std::cout << json{{"deleted", o.target}}.dump(2) << "\n";
    else
        fmt::print("{} export \"{}\"\n", o.destroy ? "destroyed" : "unexported", o.target);
}

void do_create(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    NewVolume nv;
    nv.path = spec.path;
    nv.size = must(parse_size(o.size));
    nv.thick = o.thick;
    nv.format = o.format;
    if (!o.owner.empty()) {
        auto [uid, gid] = parse_owner(o.owner);
        nv.attrs.uid = uid;
        nv.attrs.gid = gid;
    }
    if (!o.mode.empty()) nv.attrs.mode = parse_mode(o.mode);
    Export ex = open_export(spec.export_name, Access::kChange);
    Volume v = must(ex.create_volume(nv, caller()));
    print_volume(o, ex, v, "created");
    note_rounding(o, nv.size, v);
}

void do_delete(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    Export ex = open_export(spec.export_name, Access::kChange);
    std::vector<std::string> gone = must(ex.remove_volume(spec.path, o.with_snapshots));
    if (o.json) {
        std::cout << json{{"deleted", gone}}.dump(2) << "\n";
        return;
    }
    for (const std::string& p : gone) fmt::print("deleted {}:/{}\n", ex.name(), shown(p));
}

void do_clone(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    std::string dst = same_export_path(spec, o.second);
    Export ex = open_export(spec.export_name, Access::kChange);
    Progress progress = o.full ? progress_printer(spec.path) : Progress{};
    Volume v = must(ex.clone(spec.path, dst, o.full, progress, caller()));
    print_volume(o, ex, v, o.full ? "copied" : "cloned");
}

void do_snapshot(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    // "/path" is a full path; a bare name becomes PATH@NAME beside its origin.
    bool full_path = !o.second.empty() && o.second[0] == '/';
    std::string name = full_path ? base_name(must(normalize_path(o.second))) : o.second;
    if (!full_path && (name.empty() || name.find('/') != std::string::npos))
        throw Failure{{EINVAL, fmt::format("invalid snapshot name \"{}\": give a name without "
                                           "'/', or a full path starting with '/'",
                                           o.second)}};
    std::string path = must(normalize_path(full_path ? o.second : spec.path + "@" + name));
    Export ex = open_export(spec.export_name, Access::kChange);
    Volume v = must(ex.snapshot(spec.path, path, name, caller()));
    print_volume(o, ex, v, "snapshot");
}

void print_table(const Options& o, const Export& ex, const std::vector<Volume>& vols) {
    if (o.long_list)
        fmt::print("{:<10} {:>5} {:>5} {:>10} {:>10} {:<8} {:<6} {:<6} {:<40} {}\n", "MODE", "UID",
                   "GID", "SIZE", "ALLOC", "TYPE", "FORMAT", "STATE", "PATH", "LV / ORIGIN");
    else
        fmt::print("{:>10} {:>10} {:<8} {}\n", "SIZE", "ALLOC", "TYPE", "PATH");
    for (const Volume& v : vols) {
        std::string origin = v.origin_path.empty() ? "" : " <- " + shown(v.origin_path);
        if (!o.long_list) {
            fmt::print("{:>10} {:>10} {:<8} /{}{}\n", format_size(v.size), alloc_text(v),
                       type_name(v.type), shown(v.path), origin);
            continue;
        }
        std::string state = v.open ? "open" : v.active ? "active" : "inact";
        fmt::print("{:<10o} {:>5} {:>5} {:>10} {:>10} {:<8} {:<6} {:<6} /{:<39} {}{}{}\n", v.mode,
                   v.uid, v.gid, format_size(v.size), alloc_text(v), type_name(v.type), v.format,
                   state, shown(v.path), v.lv, v.managed ? "" : " (not made by bd)", origin);
    }
    (void)ex;
}

void do_list(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target, /*allow_root=*/true));
    Export ex = open_export(spec.export_name);
    Catalog cat = must(ex.scan());
    // Each volume listed has its link: libvirt's refresh lists, and tools
    // open a volume by the link its target path is.
    if (Result<void> r = ex.repair_tree(cat); !r)
        fmt::print(stderr, "bdctl: warning: {}\n", r.error().message);
    std::vector<Volume> vols;
    for (const Volume& v : cat.volumes)
        if (spec.path.empty() || v.path == spec.path || v.path.rfind(spec.path + "/", 0) == 0)
            vols.push_back(v);
    if (o.json) {
        json arr = json::array();
        for (const Volume& v : vols) arr.push_back(to_json(v, ex));
        json jex = to_json(ex.info_from(cat));
        trace("json built");
        std::string text =
            json{{"export", jex}, {"volumes", arr}, {"leftovers", cat.leftovers.size()}}.dump(2);
        trace(fmt::format("json dumped ({} KB)", text.size() / 1024));
        std::cout << text << "\n";
        return;
    }
    print_table(o, ex, vols);
    trace("table printed");
    if (!cat.leftovers.empty())
        fmt::print(stderr, "bdctl: warning: {} leftover LVs from interrupted operations; run `bdctl fsck {}`\n",
                   cat.leftovers.size(), ex.name());
}

void do_info(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    Export ex = open_export(spec.export_name);
    Volume v = must(ex.find(spec.path));
    if (o.json) {
        std::cout << to_json(v, ex).dump(2) << "\n";
        return;
    }
    json j = to_json(v, ex);
    for (auto& [k, val] : j.items())
        fmt::print("{:<10} {}\n", k + ":", printable(val.is_string() ? val.get<std::string>() : val.dump()));
}

void do_snapshots(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    Export ex = open_export(spec.export_name);
    std::vector<Volume> snaps = must(ex.snapshots(spec.path));
    if (o.json) {
        json arr = json::array();
        for (const Volume& v : snaps) arr.push_back(to_json(v, ex));
        std::cout << json{{"origin", spec.path}, {"snapshots", arr}}.dump(2) << "\n";
        return;
    }
    // FREES: what deleting the snapshot would give back to the pool (the
    // blocks no other volume shares).
    fmt::print("{:<20} {:>10} {:>10} {:>10} {:<20} {}\n", "SNAPSHOT", "SIZE", "ALLOC", "FREES",
               "CREATED", "PATH");
    for (const Volume& v : snaps) {
        char when[32];
        time_t t = v.ctime;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime(&t));
        fmt::print("{:<20} {:>10} {:>10} {:>10} {:<20} /{}\n", shown(v.snapshot_name),
                   format_size(v.size), alloc_text(v),
                   v.exclusive ? format_size(*v.exclusive) : "-", when, shown(v.path));
    }
}

json delta_end(const Volume& v, bool live) {
    json j = {{"path", v.path}, {"id", v.id}, {"size", v.size}};
    if (live)
        j["live"] = true;
    else
        j["snapshot"] = v.snapshot_name;
    return j;
}

void do_diff(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    Export ex = open_export(spec.export_name, Access::kChange);
    VolumeDelta d = must(ex.diff(spec.path, o.from, o.to, caller()));
    std::map<DeltaKind, uint64_t> total;
    for (const DeltaRange& r : d.ranges) total[r.kind] += r.length;
    if (o.json) {
        json arr = json::array();
        for (const DeltaRange& r : d.ranges)
            arr.push_back({{"offset", r.offset}, {"length", r.length},
                           {"kind", delta_kind_name(r.kind)}});
        std::cout << json{{"volume", d.volume.path},
                          {"from", delta_end(d.from, false)},
                          {"to", delta_end(d.to, d.to_live)},
                          {"chunk_size", d.chunk_size},
                          {"ranges", arr},
                          {"changed_bytes", total[DeltaKind::kChanged]},
                          {"added_bytes", total[DeltaKind::kAdded]},
                          {"removed_bytes", total[DeltaKind::kRemoved]}}
                         .dump(2)
                  << "\n";
        return;
    }
    fmt::print("{:>16} {:>16}  {}\n", "OFFSET", "LENGTH", "KIND");
    for (const DeltaRange& r : d.ranges)
        fmt::print("{:>16} {:>16}  {}\n", r.offset, r.length, delta_kind_name(r.kind));
    fmt::print("{}:/{} from {} to {}: {} ranges; {} changed, {} added, {} removed (chunks of "
               "{})\n",
               ex.name(), shown(d.volume.path), shown(d.from.snapshot_name),
               d.to_live ? "now" : shown(d.to.snapshot_name), d.ranges.size(),
               format_size(total[DeltaKind::kChanged]), format_size(total[DeltaKind::kAdded]),
               format_size(total[DeltaKind::kRemoved]), format_size(d.chunk_size));
}

// The stream goes to stdout, so what a person or script reads goes to stderr.
void do_send(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    if (isatty(1))
        throw Failure{{EINVAL, "refusing to write a binary stream to a terminal: redirect it "
                               "(> FILE, or | ssh HOST bdctl receive ...)"}};
    signal(SIGPIPE, SIG_IGN);  // a reader that goes away is an error, reported as one
    Export ex = open_export(spec.export_name);
    StreamSink out = [](const void* p, size_t n) -> Result<void> {
        const char* c = static_cast<const char*>(p);
        while (n > 0) {
            ssize_t w = write(1, c, n);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0)
                return fail(errno, fmt::format("cannot write the stream: {}{}", strerror(errno),
                                               errno == EPIPE ? " (its reader went away)" : ""));
            c += w;
            n -= size_t(w);
        }
        return {};
    };
    SendSpec send{o.snapshot, o.from, o.incremental};
    // With --json, stderr carries the summary alone, for scripts to parse.
    SendResult r = must(ex.send(spec.path, send, out,
                                o.json ? Progress{} : progress_printer(spec.path, "sending"),
                                caller()));
    if (o.json) {
        json j = {{"snapshot", to_json(r.snapshot, ex)},
                  {"made_snapshot", r.made_snapshot},
                  {"base", r.base ? to_json(*r.base, ex) : json(nullptr)},
                  {"records", r.records},
                  {"data_bytes", r.data_bytes},
                  {"stream_bytes", r.stream_bytes}};
        std::cerr << j.dump(2) << "\n";
        return;
    }
    fmt::print(stderr, "sent {}:/{}{}: {} of data in {} records, a stream of {}\n", ex.name(),
               shown(r.snapshot.path),
               r.base ? fmt::format(" since {}", shown(r.base->snapshot_name)) : " (full)",
               format_size(r.data_bytes), r.records, format_size(r.stream_bytes));
}

void do_receive(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    if (isatty(0))
        throw Failure{{EINVAL, "receive reads a stream on stdin: redirect it (< FILE, or ssh "
                               "HOST bdctl send ... |)"}};
    StreamSource in = [](void* p, size_t n) -> Result<size_t> {
        for (;;) {
            ssize_t r = read(0, p, n);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return fail(errno, fmt::format("cannot read the stream: {}", strerror(errno)));
            return size_t(r);
        }
    };
    StreamReader reader = must(StreamReader::open(in));
    // Not Access::kChange: the lock is the core's to take, for the checks and
    // the commit, and not held while the stream arrives.
    Export ex = open_export(spec.export_name);
    ReceiveResult r = must(ex.receive(spec.path, reader, o.force_receive,
                                      o.json ? Progress{} : progress_printer(spec.path, "receiving"),
                                      caller()));
    if (o.json) {
        std::cout << json{{"volume", to_json(r.volume, ex)},
                          {"snapshot", to_json(r.snapshot, ex)},
                          {"updated", r.updated},
                          {"records", r.records},
                          {"data_bytes", r.data_bytes}}
                         .dump(2)
                  << "\n";
    } else {
        fmt::print("received {}:/{} ({} of data in {} records){}\n", ex.name(),
                   shown(r.snapshot.path), format_size(r.data_bytes), r.records,
                   r.updated ? fmt::format("; /{} holds it", shown(r.volume.path))
                             : fmt::format("; /{} keeps its old data (see the warning)",
                                           shown(r.volume.path)));
    }
    if (!r.updated) g_partial_exit = exit_code_for(EBUSY);
}

void do_rollback(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    Export ex = open_export(spec.export_name, Access::kChange);
    Volume v = must(ex.rollback(spec.path, o.second));
    print_volume(o, ex, v, "rolled back");
}

void do_resize(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    uint64_t size = must(parse_size(o.size));
    Export ex = open_export(spec.export_name, Access::kChange);
    Volume v = must(ex.resize(spec.path, size, o.shrink));
    print_volume(o, ex, v, "resized");
    note_rounding(o, size, v);
}

void do_rename(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    std::string dst = same_export_path(spec, o.second);
    Export ex = open_export(spec.export_name, Access::kChange);
    Result<Volume> v = ex.rename(spec.path, dst, caller());
    // No such volume: a directory moves, with everything below it, in one
    // commit (dir_ops.cc).
    if (!v && v.error().code == ENOENT) {
        Catalog cat = must(ex.scan());
        if (is_directory(cat, spec.path)) {
            must(ex.rename_dir(spec.path, dst, caller()));
            if (o.json)
                std::cout << json{{"renamed", spec.path}, {"to", dst}}.dump(2) << "\n";
            else
                fmt::print("renamed directory {}:/{} to /{}\n", ex.name(), shown(spec.path),
                           shown(dst));
            return;
        }
    }
    print_volume(o, ex, must(std::move(v)), "renamed to");
}

void do_fsck(const Options& o) {
    Export ex = open_export(o.target, Access::kChange);
    std::vector<Repair> log = must(ex.fsck(o.dry_run));
    Catalog after = must(ex.scan());
    bool clean = after.leftovers.empty();
    for (const Volume& v : after.volumes) clean = clean && v.canonical;
    if (o.json) {
        json arr = json::array();
        for (const Repair& r : log) arr.push_back({{"lv", r.lv}, {"action", r.action}});
        std::cout << json{{"export", ex.name()}, {"repaired", arr}, {"clean", clean}}.dump(2) << "\n";
        return;
    }
    for (const Repair& r : log) fmt::print("{}: {}\n", r.lv, printable(r.action));
    fmt::print("export \"{}\" is {}\n", ex.name(), clean ? "clean" : "NOT clean (see above)");
}

void do_activate(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target, /*allow_root=*/true));
    Export ex = open_export(spec.export_name, Access::kChange);
    std::vector<std::string> done = must(ex.activate(spec.path));
    if (o.json) {
        std::cout << json{{"activated", done}}.dump(2) << "\n";
        return;
    }
    for (const std::string& p : done) fmt::print("activated {}:/{}\n", ex.name(), shown(p));
}

void print_xml(const Options& o, const std::string& doc) {
    if (o.json)
        std::cout << json{{"xml", doc}}.dump(2) << "\n";
    else
        std::cout << doc;
}

void do_pool_xml(const Options& o) {
    Export ex = open_export(o.target);
    print_xml(o, xml::pool_xml(o.name.empty() ? ex.name() : o.name, ex.vg(), ex.thinpool(),
                                 ex.shared()));
}

void do_domain_disk(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    Export ex = open_export(spec.export_name);
    Volume v = must(ex.find(spec.path));
    // The format is the one recorded at creation: what a guest wrote into the
    // volume is data, and never decides how the host opens it.
    print_xml(o, xml::domain_disk_xml(o.name.empty() ? ex.name() : o.name, v.path, o.dev,
                                      v.format));
}

// ---- the verb table ---------------------------------------------------------

struct Verb {
    const char* name;
    const char* help;
    std::function<void(CLI::App&, Options&)> setup;
    std::function<void(const Options&)> run;
};

// `name` is the positional's name in --help. CLI11 2.4 (Debian 13) refuses a
// positional named like one of the verb's --options, as domain-disk's --target.
void add_target(CLI::App& c, Options& o, const char* what, const char* name = "target") {
    c.add_option(name, o.target, what)->required();
}

std::vector<Verb> verbs() {
    return {
        {"create", "create a thin (or --thick) volume: EXPORT:/path SIZE",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("size", o.size, "size, e.g. 20G, 512MiB")->required();
             c.add_flag("--thick", o.thick, "a linear LV outside the thin pool");
             c.add_option("--owner", o.owner, "USER[:GROUP] or UID[:GID] (default: yours)");
             c.add_option("--mode", o.mode, "permission bits in octal (default 0600)");
             c.add_option("--format", o.format, "raw (default) or qcow2; recorded, never probed")
                 ->check(CLI::IsMember({"raw", "qcow2"}));
         },
         do_create},
        {"delete", "delete a volume (refused while open or with snapshots)",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_flag("--with-snapshots", o.with_snapshots, "also delete its snapshots");
         },
         do_delete},
        {"clone", "instant writable copy-on-write clone (--full: thin-aware byte copy)",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("newpath", o.second, "path of the clone")->required();
             c.add_flag("--full", o.full, "copy the data instead of sharing it");
         },
         do_clone},
        {"snapshot", "read-only thin snapshot linked to its origin",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("snapname", o.second, "NAME (path becomes PATH@NAME) or /full/path")
                 ->required();
         },
         do_snapshot},
        {"snapshots", "list a volume's snapshots",
         [](CLI::App& c, Options& o) { add_target(c, o, "EXPORT:/path"); }, do_snapshots},
        {"rollback", "make a volume hold a snapshot's data again (atomic)",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("snapname", o.second, "snapshot name or path")->required();
         },
         do_rollback},
        {"diff", "the ranges that changed since a snapshot (from the pool's mappings; no data read)",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("--from", o.from, "the older snapshot (name or /path)")->required();
             c.add_option("--to", o.to, "the newer snapshot (default: the volume as it is now)");
         },
         do_diff},
        {"send", "write a snapshot's data, whole or since a base, as a stream on stdout",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("--snapshot", o.snapshot,
                          "the snapshot to send (name or /path; taken now if it does not exist)")
                 ->required();
             auto* from = c.add_option("--from", o.from, "send only what changed since this snapshot");
             c.add_flag("--incremental", o.incremental,
                        "since the snapshot the last --incremental send recorded (none: a full "
                        "stream); the one sent becomes the next base")
                 ->excludes(from);
         },
         do_send},
        {"receive", "apply a stream from bdctl send on stdin: makes the volume, or updates it",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_flag("--force", o.force_receive,
                        "discard what was written to the volume since its last receive");
         },
         do_receive},
        {"resize", "change a volume's size (smaller only with --shrink)",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("size", o.size, "new size")->required();
             c.add_flag("--shrink", o.shrink, "allow making it smaller (data past the end is lost)");
         },
         do_resize},
        {"rename", "move a volume, or a directory and all below it, to a new path",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("newpath", o.second, "new path")->required();
         },
         do_rename},
        {"list", "list volumes: EXPORT[:/dir]",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT[:/dir]");
             c.add_flag("-l,--long", o.long_list, "owner, mode, state and LV names");
         },
         do_list},
        {"info", "show one volume", [](CLI::App& c, Options& o) { add_target(c, o, "EXPORT:/path"); },
         do_info},
        {"fsck", "finish or undo interrupted operations in an export",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT");
             c.add_flag("--dry-run", o.dry_run, "only say what would be done");
         },
         do_fsck},
        {"activate", "activate inactive volumes: EXPORT[:/path] (e.g. at pool start)",
         [](CLI::App& c, Options& o) { add_target(c, o, "EXPORT[:/path]"); }, do_activate},
        {"pool-xml", "print a libvirt pool definition for an export (virsh pool-define)",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT");
             c.add_option("--name", o.name, "libvirt pool name (default: the export's name)");
         },
         do_pool_xml},
        {"domain-disk", "print a <disk type='volume'> element for a volume",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path", "volume");
             c.add_option("--pool", o.name, "libvirt pool name (default: the export's name)");
             c.add_option("--target", o.dev, "guest device name (default vda)");
         },
         do_domain_disk},
    };
}

void add_export_verbs(CLI::App& app, Options& o) {
    CLI::App* ex = app.add_subcommand("export", "create, list, inspect and delete exports");
    ex->require_subcommand(1);
    CLI::App* c = ex->add_subcommand("create", "export a VG and its thin pool");
    add_target(*c, o, "EXPORT");
    c->add_option("--vg", o.vg, "volume group")->required();
    c->add_option("--pv", o.pvs, "create the VG on these devices");
    c->add_option("--thinpool", o.thinpool,
                  "thin pool LV (created if missing; default \"pool\", or with --shared the "
                  "export's name)");
    c->add_flag("--shared", o.shared,
                "a thin pool of this host in a VG that several hosts share through lvmlockd "
                "(with --pv: vgcreate --shared)");
    auto* size = c->add_option("--size", o.size, "thin pool size when creating it");
    c->add_option("--extents", o.extents,
                  "thin pool size: N%FREE or a number of extents (default 90%FREE, less the "
                  "metadata)")
        ->excludes(size);
    c->add_option("--metadata-size", o.metadata_size,
                  "thin pool metadata (default 1/32 of the pool, 16 MiB to 1 GiB)");
    c->add_option("--threshold", o.threshold, "refuse create/clone above this data/metadata %");
    c->final_callback([&o] { do_export_create(o); });
    ex->add_subcommand("list", "list exports")->final_callback([&o] { do_export_list(o); });
    CLI::App* i = ex->add_subcommand("info", "show an export");
    add_target(*i, o, "EXPORT");
    i->final_callback([&o] { do_export_info(o); });
    CLI::App* s = ex->add_subcommand("set", "change an export's settings");
    add_target(*s, o, "EXPORT");
    s->add_option("--threshold", o.threshold, "fill threshold in percent")
        ->each([&o](const std::string&) { o.threshold_set = true; });
    s->add_option("--when-full", o.when_full,
                  "a full pool: \"error\" fails writes at once (VMs pause), \"queue\" holds them");
    s->final_callback([&o] { do_export_set(o); });
    CLI::App* t = ex->add_subcommand(
        "takeover", "serve here a shared VG's export whose host died (after its lease expires)");
    add_target(*t, o, "EXPORT");
    t->add_option("--wait", o.wait, "seconds to wait for the old owner's lease (default 600)");
    t->final_callback([&o] { do_export_takeover(o); });
    CLI::App* d = ex->add_subcommand("delete", "unexport (keeps data unless --destroy)");
    add_target(*d, o, "EXPORT");
    d->add_flag("--force", o.force, "unexport even though volumes exist (they are kept)");
    d->add_flag("--destroy", o.destroy, "delete every volume, the thin pool and the VG");
    d->final_callback([&o] { do_export_delete(o); });
}

int report_failure(const Options& o, const Error& e) {
    fmt::print(stderr, "bdctl: error: {}\n", e.message);
    if (o.json) std::cout << to_json(e).dump(2) << "\n";
    return exit_code_for(e.code);
}

}  // namespace

int main_bdctl(int argc, char** argv) {
    trace("main");  // what the dynamic loader and static constructors took
    Options o;
    // --json is accepted anywhere before "--", as scripts put it where they like;
    // after "--" every word is a name (the libvirt backend puts names there).
    std::vector<std::string> args;
    bool names = false;
    for (int i = 1; i < argc; ++i) {
        names = names || std::string(argv[i]) == "--";
        if (!names && std::string(argv[i]) == "--json")
            o.json = true;
        else
            args.push_back(argv[i]);
    }
    std::reverse(args.begin(), args.end());
    CLI::App app{"bdctl: thin-LVM volumes as files (exit codes: docs/CLI-CONTRACT.md)"};
    app.name("bdctl");
    app.require_subcommand(1);
    app.add_flag("--json", o.json, "print one JSON document on stdout");
    add_export_verbs(app, o);
    std::vector<Verb> table = verbs();
    for (Verb& v : table) {
        CLI::App* c = app.add_subcommand(v.name, v.help);
        v.setup(*c, o);
        c->final_callback([&v, &o] { v.run(o); });
    }
    try {
        app.parse(args);
        trace("done");
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    } catch (const Failure& f) {
        return report_failure(o, f.error);
    }
    return g_partial_exit;
}

}  // namespace bd

int main(int argc, char** argv) { return bd::main_bdctl(argc, argv); }
