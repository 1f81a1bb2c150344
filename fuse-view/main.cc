// bdfs EXPORT MOUNTPOINT [-o OPTIONS] [-f]: mounts an export as a directory of
// volume files (see docs/bdfs.8).
#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <climits>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "export.h"
#include "lowlevel.h"
#include "thin_status.h"

namespace {

struct Config {
    char* export_name = nullptr;
    int allow_shrink = 0;
    int nocache = 0;
    double attr_timeout = 0, entry_timeout = 0;
    char* dir_mode = nullptr;
    char* resuid = nullptr;
    char* resgid = nullptr;
};

#define BDFS_OPT(t, p) \
    { t, offsetof(Config, p), 1 }
const fuse_opt kOptions[] = {
    BDFS_OPT("allow_shrink", allow_shrink),     BDFS_OPT("nocache", nocache),
    BDFS_OPT("attr_timeout=%lf", attr_timeout), BDFS_OPT("entry_timeout=%lf", entry_timeout),
    BDFS_OPT("dir_mode=%s", dir_mode),          BDFS_OPT("resuid=%s", resuid),
    BDFS_OPT("resgid=%s", resgid),              FUSE_OPT_END,
};

// The first non-option argument is the export; the rest go to libfuse.
int take_export(void* data, const char* arg, int key, fuse_args* outargs) {
    (void)outargs;
    auto* conf = static_cast<Config*>(data);
    if (key == FUSE_OPT_KEY_NONOPT && !conf->export_name) {
        conf->export_name = strdup(arg);
        return 0;
    }
    return 1;
}

void usage(const char* prog) {
    fmt::print(
        "usage: {} EXPORT MOUNTPOINT [-f] [-o OPTION[,OPTION...]]\n\n"
        "bdfs options:\n"
        "    -o allow_shrink        truncate may shrink a volume (data past the end is lost)\n"
        "    -o dir_mode=OCTAL      mode of directories without one of their own (0755)\n"
        "    -o resuid=USER         may also fill the pool past its threshold (root always may)\n"
        "    -o resgid=GROUP        members may too (e.g. libvirt-qemu for a dir pool's VMs)\n"
        "    -o nocache             run `lvs` for every operation (no metadata cache)\n"
        "    -o attr_timeout=SECS   kernel attribute cache (default 0: always fresh)\n"
        "    -o entry_timeout=SECS  kernel name cache (default 0: always fresh)\n\n",
        prog);
    fuse_cmdline_help();
    fuse_lowlevel_help();
}

// A user or group by name or number; nullopt (after a message) if unknown.
std::optional<uint32_t> id_of(const char* text, bool group) {
    char* end = nullptr;
    unsigned long n = strtoul(text, &end, 10);
    if (*text && !*end) return uint32_t(n);
    if (group) {
        if (struct group* g = getgrnam(text)) return g->gr_gid;
    } else if (struct passwd* p = getpwnam(text)) {
        return p->pw_uid;
    }
    fmt::print(stderr, "bdfs: error: unknown {} \"{}\" in -o {}\n", group ? "group" : "user", text,
               group ? "resgid" : "resuid");
    return std::nullopt;
}

void log_to_syslog(fuse_log_level level, const char* fmt, va_list ap) {
    vsyslog(int(level), fmt, ap);
}

// After `kill -9` the old mount stays, answering ENOTCONN: detach it so a
// remount works at once.
// mount.fuse3 starts us with a PATH without the sbin directories where LVM's
// tools live; the core's runner finds them through PATH.
void ensure_sbin_in_path() {
    const char* path = getenv("PATH");
    std::string p = path && *path ? path : "/usr/bin:/bin";
    for (const char* dir : {"/usr/local/sbin", "/usr/sbin", "/sbin"})
        if ((":" + p + ":").find(std::string(":") + dir + ":") == std::string::npos)
            p += ":" + std::string(dir);
    setenv("PATH", p.c_str(), 1);
}

void detach_dead_mount(const char* mountpoint) {
    struct stat st {};
    if (stat(mountpoint, &st) == 0 || errno != ENOTCONN) return;
    if (umount2(mountpoint, MNT_DETACH) == 0)
        fuse_log(FUSE_LOG_WARNING, "bdfs: detached the dead mount left on %s\n", mountpoint);
}

int serve(fuse_args* args, const fuse_cmdline_opts& cmd, bdfs::Fs& fs) {
    fuse_lowlevel_ops ops = bdfs::lowlevel_ops();
    fuse_session* se = fuse_session_new(args, &ops, sizeof ops, &fs);
    if (!se) return 1;
    int rc = 1;
    if (fuse_set_signal_handlers(se) == 0) {
        if (fuse_session_mount(se, cmd.mountpoint) == 0) {
            fuse_daemonize(cmd.foreground);
            if (!cmd.foreground) fuse_set_log_func(log_to_syslog);
            if (cmd.singlethread) {
                rc = fuse_session_loop(se);
            } else {
                fuse_loop_config* loop = fuse_loop_cfg_create();
                if (cmd.max_threads > 0 && cmd.max_threads <= 1000)
                    fuse_loop_cfg_set_max_threads(loop, cmd.max_threads);
                if (cmd.max_idle_threads > 0 && cmd.max_idle_threads <= 1000)  // UINT_MAX: unset
                    fuse_loop_cfg_set_idle_threads(loop, cmd.max_idle_threads);
                rc = fuse_session_loop_mt(se, loop);
                fuse_loop_cfg_destroy(loop);
            }
            fuse_session_unmount(se);
        }
        fuse_remove_signal_handlers(se);
    }
    fuse_session_destroy(se);
    return rc ? 1 : 0;
}

}  // namespace

int main(int argc, char* argv[]) {
    fuse_args args = FUSE_ARGS_INIT(argc, argv);
    Config conf;
    if (fuse_opt_parse(&args, &conf, kOptions, take_export) != 0) return 2;
    fuse_cmdline_opts cmd{};
    if (fuse_parse_cmdline(&args, &cmd) != 0) return 2;
    if (cmd.show_help || (!cmd.show_version && (!conf.export_name || !cmd.mountpoint))) {
        usage(argv[0]);
        return cmd.show_help ? 0 : 2;
    }
    if (cmd.show_version) {
        fmt::print("bdfs 0.1.0, FUSE library {}\n", fuse_pkgversion());
        return 0;
    }
    bdfs::Options opts;
    opts.allow_shrink = conf.allow_shrink;
    opts.cache = !conf.nocache;
    opts.attr_timeout = conf.attr_timeout;
    opts.entry_timeout = conf.entry_timeout;
    if (conf.dir_mode) opts.dir_mode = mode_t(strtoul(conf.dir_mode, nullptr, 8)) & 07777;
    if (conf.resuid && !(opts.resuid = id_of(conf.resuid, false))) return 2;
    if (conf.resgid && !(opts.resgid = id_of(conf.resgid, true))) return 2;
    ensure_sbin_in_path();
    detach_dead_mount(cmd.mountpoint);
    char real[PATH_MAX];
    opts.mountpoint = realpath(cmd.mountpoint, real) ? real : cmd.mountpoint;

    // Open the export before mounting, so a wrong name fails here with its reason.
    static bdfs::ThreadSafeRunner runner;
    bd::Result<bd::Export> ex = bd::Export::open(runner, conf.export_name);
    if (!ex) {
        fmt::print(stderr, "bdfs: error: {}\n", ex.error().message);
        return bd::exit_code_for(ex.error().code);
    }
    // libdevmapper sets up its control channel on first use: do that before threads start.
    (void)bd::dm_thin_pool_status_noflush(ex->vg(), ex->thinpool());
    // The catalog cache keys on LVM's backup of the VG: ask LVM where it is.
    bd::Result<std::string> backup_dir = bd::lvm_backup_dir(runner);
    if (!backup_dir) fmt::print(stderr, "bdfs: warning: {}\n", backup_dir.error().message);
    bdfs::Fs fs(std::move(*ex), opts, backup_dir.value_or(""));
    fs.reap_unlinked();

    // Kernel permission checks always: bdfs keeps owners and modes but does no checks itself.
    std::string mount_opts =
        fmt::format("-odefault_permissions,fsname={},subtype=bdfs", conf.export_name);
    fuse_opt_add_arg(&args, mount_opts.c_str());
    int rc = serve(&args, cmd, fs);
    free(cmd.mountpoint);
    fuse_opt_free_args(&args);
    return rc;
}
