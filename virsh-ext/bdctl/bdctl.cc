// bdctl: the BD verbs (create, delete, clone, snapshot on EXPORT:/path) plus
// what virsh lacks. A table of {verb, help, setup}; each handler is a thin
// adapter from parsed options to one core call and one report.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
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
    bool force = false, destroy = false, dry_run = false;
    std::string target, second, size, vg, thinpool = "pool", extents, name, dev = "vda";
    std::string metadata_size;
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

SystemRunner g_runner;

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

std::string alloc_text(const Volume& v) {
    return v.allocated ? format_size(*v.allocated) : "-";
}

void print_volume(const Options& o, const Export& ex, const Volume& v, const char* verb) {
    if (o.json) {
        std::cout << to_json(v, ex).dump(2) << "\n";
        return;
    }
    fmt::print("{} {}:/{}  {} {}  ({} allocated)  {}\n", verb, ex.name(), v.path,
               format_size(v.size), type_name(v.type), alloc_text(v), ex.device(v));
}

void note_rounding(const Options& o, uint64_t asked, const Volume& v) {
    if (!o.json && asked != v.size)
        fmt::print("note: {} rounded up to {} (whole extents)\n", format_size(asked),
                   format_size(v.size));
}

Progress progress_printer(const std::string& what) {
    bool tty = isatty(2);
    auto started = std::chrono::steady_clock::now();
    return [what, tty, started, last_pct = -1](uint64_t done, uint64_t total) mutable {
        int pct = total ? int(done * 100 / total) : 100;
        if (!tty && pct / 10 == last_pct / 10 && pct != 100) return;
        last_pct = pct;
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        fmt::print(stderr, "{}copying {}: {:3d}% ({} of {}, {:.0f} MiB/s){}", tty ? "\r" : "", what,
                   pct, format_size(done), format_size(total),
                   secs > 0 ? double(done) / secs / 1048576 : 0.0, tty && pct < 100 ? "" : "\n");
    };
}

// ---- verbs -----------------------------------------------------------------

void do_export_create(const Options& o) {
    ExportSpec spec{o.target, o.vg, o.thinpool, o.pvs, 0, o.extents, o.threshold};
    if (!o.size.empty()) spec.size = must(parse_size(o.size));
    if (!o.metadata_size.empty()) spec.metadata_size = must(parse_size(o.metadata_size));
    ExportInfo info = must(Export::create(g_runner, spec));
    if (o.json) {
        std::cout << to_json(info).dump(2) << "\n";
        return;
    }
    fmt::print("exported VG \"{}\" as \"{}\": thin pool {} of {} (chunk {}), threshold {}%\n",
               info.vg, info.name, info.thinpool, format_size(info.size),
               format_size(info.chunk_size), info.threshold);
}

void print_export(const ExportInfo& i) {
    fmt::print("export {}: VG {}, thin pool {}\n  size {}, allocated {} (data {:.1f}%, metadata "
               "{:.1f}%), threshold {}%\n  chunk {}, extent {}, VG free {}, {} volumes{}\n",
               i.name, i.vg, i.thinpool, format_size(i.size), format_size(i.allocated),
               i.data_percent, i.metadata_percent, i.threshold, format_size(i.chunk_size),
               format_size(i.extent_size), format_size(i.vg_free), i.volumes,
               i.leftovers ? fmt::format(", {} leftovers (run bdctl fsck {})", i.leftovers, i.name)
                           : "");
}

void do_export_list(const Options& o) {
    std::vector<ExportInfo> all = must(Export::list(g_runner));
    if (o.json) {
        json arr = json::array();
        for (const ExportInfo& i : all) arr.push_back(to_json(i));
        std::cout << json{{"exports", arr}}.dump(2) << "\n";
        return;
    }
    fmt::print("{:<16} {:<16} {:<12} {:>10} {:>7} {:>7} {:>8}\n", "EXPORT", "VG", "THINPOOL",
               "SIZE", "DATA%", "META%", "VOLUMES");
    for (const ExportInfo& i : all)
        fmt::print("{:<16} {:<16} {:<12} {:>10} {:>7.1f} {:>7.1f} {:>8}\n", i.name, i.vg,
                   i.thinpool, format_size(i.size), i.data_percent, i.metadata_percent, i.volumes);
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
    Export ex = open_export(o.target, Access::kChange);
    must(ex.set_threshold(o.threshold));
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
    uint64_t size = must(parse_size(o.size));
    Export ex = open_export(spec.export_name, Access::kChange);
    Volume v = must(ex.create_volume(spec.path, size, o.thick));
    print_volume(o, ex, v, "created");
    note_rounding(o, size, v);
}

void do_delete(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    Export ex = open_export(spec.export_name, Access::kChange);
    std::vector<std::string> gone = must(ex.remove_volume(spec.path, o.with_snapshots));
    if (o.json) {
        std::cout << json{{"deleted", gone}}.dump(2) << "\n";
        return;
    }
    for (const std::string& p : gone) fmt::print("deleted {}:/{}\n", ex.name(), p);
}

void do_clone(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    std::string dst = same_export_path(spec, o.second);
    Export ex = open_export(spec.export_name, Access::kChange);
    Progress progress = o.full ? progress_printer(spec.path) : Progress{};
    Volume v = must(ex.clone(spec.path, dst, o.full, progress));
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
    Volume v = must(ex.snapshot(spec.path, path, name));
    print_volume(o, ex, v, "snapshot");
}

void print_table(const Options& o, const Export& ex, const std::vector<Volume>& vols) {
    if (o.long_list)
        fmt::print("{:<10} {:>5} {:>5} {:>10} {:>10} {:<8} {:<6} {:<40} {}\n", "MODE", "UID",
                   "GID", "SIZE", "ALLOC", "TYPE", "STATE", "PATH", "LV / ORIGIN");
    else
        fmt::print("{:>10} {:>10} {:<8} {}\n", "SIZE", "ALLOC", "TYPE", "PATH");
    for (const Volume& v : vols) {
        std::string origin = v.origin_path.empty() ? "" : " <- " + v.origin_path;
        if (!o.long_list) {
            fmt::print("{:>10} {:>10} {:<8} /{}{}\n", format_size(v.size), alloc_text(v),
                       type_name(v.type), v.path, origin);
            continue;
        }
        std::string state = v.open ? "open" : v.active ? "active" : "inact";
        fmt::print("{:<10o} {:>5} {:>5} {:>10} {:>10} {:<8} {:<6} /{:<39} {}{}{}\n", v.mode, v.uid,
                   v.gid, format_size(v.size), alloc_text(v), type_name(v.type), state, v.path,
                   v.lv, v.managed ? "" : " (not made by bd)", origin);
    }
    (void)ex;
}

void do_list(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target, /*allow_root=*/true));
    Export ex = open_export(spec.export_name);
    Catalog cat = must(ex.scan());
    std::vector<Volume> vols;
    for (const Volume& v : cat.volumes)
        if (spec.path.empty() || v.path == spec.path || v.path.rfind(spec.path + "/", 0) == 0)
            vols.push_back(v);
    if (o.json) {
        json arr = json::array();
        for (const Volume& v : vols) arr.push_back(to_json(v, ex));
        json jex = to_json(ex.info_from(cat));
        std::cout << json{{"export", jex}, {"volumes", arr}, {"leftovers", cat.leftovers.size()}}.dump(2) << "\n";
        return;
    }
    print_table(o, ex, vols);
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
    for (auto& [k, val] : j.items()) fmt::print("{:<10} {}\n", k + ":", val.is_string() ? val.get<std::string>() : val.dump());
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
    fmt::print("{:<20} {:>10} {:>10} {:<20} {}\n", "SNAPSHOT", "SIZE", "ALLOC", "CREATED", "PATH");
    for (const Volume& v : snaps) {
        char when[32];
        time_t t = v.ctime;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime(&t));
        fmt::print("{:<20} {:>10} {:>10} {:<20} /{}\n", v.snapshot_name, format_size(v.size),
                   alloc_text(v), when, v.path);
    }
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
    Volume v = must(ex.rename(spec.path, dst));
    print_volume(o, ex, v, "renamed to");
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
    for (const Repair& r : log) fmt::print("{}: {}\n", r.lv, r.action);
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
    for (const std::string& p : done) fmt::print("activated {}:/{}\n", ex.name(), p);
}

// Reads the image header: QEMU must be told qcow2 explicitly, never by probing.
std::string image_format(const std::string& device) {
    char magic[4] = {};
    FILE* f = fopen(device.c_str(), "rb");
    if (!f) return "raw";
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    return n == 4 && memcmp(magic, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
}

void print_xml(const Options& o, const std::string& doc) {
    if (o.json)
        std::cout << json{{"xml", doc}}.dump(2) << "\n";
    else
        std::cout << doc;
}

void do_pool_xml(const Options& o) {
    Export ex = open_export(o.target);
    print_xml(o, xml::pool_xml(o.name.empty() ? ex.name() : o.name, ex.vg(), ex.thinpool()));
}

void do_domain_disk(const Options& o) {
    VolumeSpec spec = must(parse_volume_spec(o.target));
    Export ex = open_export(spec.export_name);
    Volume v = must(ex.find(spec.path));
    print_xml(o, xml::domain_disk_xml(o.name.empty() ? ex.name() : o.name, v.path, o.dev,
                                      image_format(ex.device(v))));
}

// ---- the verb table ---------------------------------------------------------

struct Verb {
    const char* name;
    const char* help;
    std::function<void(CLI::App&, Options&)> setup;
    std::function<void(const Options&)> run;
};

void add_target(CLI::App& c, Options& o, const char* what) {
    c.add_option("target", o.target, what)->required();
}

std::vector<Verb> verbs() {
    return {
        {"create", "create a thin (or --thick) volume: EXPORT:/path SIZE",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("size", o.size, "size, e.g. 20G, 512MiB")->required();
             c.add_flag("--thick", o.thick, "a linear LV outside the thin pool");
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
        {"resize", "change a volume's size (smaller only with --shrink)",
         [](CLI::App& c, Options& o) {
             add_target(c, o, "EXPORT:/path");
             c.add_option("size", o.size, "new size")->required();
             c.add_flag("--shrink", o.shrink, "allow making it smaller (data past the end is lost)");
         },
         do_resize},
        {"rename", "move a volume to a new path in the same export",
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
             add_target(c, o, "EXPORT:/path");
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
    c->add_option("--thinpool", o.thinpool, "thin pool LV (created if missing)");
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
    s->add_option("--threshold", o.threshold, "fill threshold in percent")->required();
    s->final_callback([&o] { do_export_set(o); });
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
    Options o;
    // --json is accepted anywhere on the line, as scripts put it where they like.
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) {
        if (std::string(argv[i]) == "--json")
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
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    } catch (const Failure& f) {
        return report_failure(o, f.error);
    }
    return 0;
}

}  // namespace bd

int main(int argc, char** argv) { return bd::main_bdctl(argc, argv); }
