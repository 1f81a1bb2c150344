#include "pool_snap.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

#include "dm.h"
#include "lock.h"
#include "lvm_argv.h"

namespace bd {

namespace {

// A program's path, looked up before fork: the guardian may only exec.
std::string find_program(const char* name) {
    const char* env = getenv("PATH");
    std::string dirs = std::string(env && *env ? env : "") + ":/usr/sbin:/sbin:/usr/bin:/bin";
    std::istringstream in(dirs);
    for (std::string dir; std::getline(in, dir, ':');) {
        if (dir.empty() || dir[0] != '/') continue;
        std::string path = dir + "/" + name;
        if (access(path.c_str(), X_OK) == 0) return path;
    }
    return "";
}

// The guardian, between fork and exec. A fork of a threaded process (bdfs) may
// only make async-signal-safe calls: everything it uses was made before.
[[noreturn]] void guard(int ours, int theirs, int lock_fd, char* const argv[]) {
    setsid();  // out of the parent's process group: Ctrl-C or a kill of the group spares it
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) sigaction(sig, &ignore, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    close(theirs);  // else our own copy would keep the socket from ever ending
    // stdin: the socket; fd 3: the export lock, kept across exec; stdout and
    // stderr: /dev/null; nothing else. Each is first moved above 9, so that
    // no dup2 below overwrites another.
    int sock = fcntl(ours, F_DUPFD, 10), lk = fcntl(lock_fd, F_DUPFD, 10);
    int null = open("/dev/null", O_RDWR);
    int null_high = null < 0 ? -1 : fcntl(null, F_DUPFD, 10);
    if (sock < 0 || lk < 0 || null_high < 0 || dup2(sock, 0) < 0 || dup2(lk, 3) < 0 ||
        dup2(null_high, 1) < 0 || dup2(null_high, 2) < 0)
        _exit(127);
    if (close_range(4, ~0U, 0) < 0)
        for (int fd = 4; fd < 65536; ++fd) close(fd);
    char c = 0;
    ssize_t n;
    do n = read(0, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1) _exit(0);  // bd released the snapshot itself
    execv(argv[0], argv);  // the lock (fd 3) is held until dmsetup exits
    _exit(127);
}

}  // namespace

Result<bool> parse_dmsetup_pool_snap_held(const std::string& status_line) {
    std::istringstream in(status_line);
    std::string start, length, type;
    if (!(in >> start >> length >> type) || type != "thin-pool")
        return fail(EIO, fmt::format("not a thin pool's status: \"{}\"", status_line));
    std::string params;
    std::getline(in >> std::ws, params);
    Result<ThinPoolStatus> st = parse_thin_pool_status(params);
    if (!st) return tl::unexpected(st.error());
    return st->metadata_snap_held;
}

Result<void> PoolSnap::start_guardian(int lock_fd) {
    std::string dmsetup = find_program("dmsetup");
    if (dmsetup.empty())
        return fail(ENOENT, "dmsetup not found in PATH: bd needs it to release the thin pool's "
                            "metadata snapshot if it is killed (install Debian's dmsetup package)");
    std::vector<std::string> args = {dmsetup, "message", "--", tpool_, "0", "release_metadata_snap"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return fail(errno, fmt::format("socketpair: {}", strerror(errno)));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return fail(e, fmt::format("cannot start the metadata snapshot's guardian: fork: {}",
                                   strerror(e)));
    }
    if (pid == 0) guard(sv[1], sv[0], lock_fd, argv.data());
    close(sv[1]);
    guardian_ = pid;
    to_guardian_ = sv[0];
    return {};
}

// `released`: the guardian has nothing to do. Otherwise it tries the release
// itself (once more, with dmsetup) before it lets the lock go.
void PoolSnap::stop_guardian(bool released) {
    if (guardian_ < 0) return;
    if (released) (void)!send(to_guardian_, "d", 1, MSG_NOSIGNAL);  // a dead guardian: no SIGPIPE
    close(to_guardian_);
    to_guardian_ = -1;
    while (waitpid(guardian_, nullptr, 0) < 0 && errno == EINTR) {
    }
    guardian_ = -1;
}

Result<PoolSnap> PoolSnap::reserve(Runner& runner, const std::string& tpool,
                                   const std::string& marker, int lock_fd) {
    PoolSnap snap(runner, tpool, marker);
    if (Result<void> ok = set_marker(marker); !ok) return tl::unexpected(ok.error());
    if (lock_fd >= 0)
        if (Result<void> ok = snap.start_guardian(lock_fd); !ok) {
            clear_marker(marker);
            return tl::unexpected(ok.error());
        }
    Result<CommandOutput> out = runner.run(dmsetup_message_argv(tpool, "reserve_metadata_snap"));
    if (!out) {
        // Whether it was reserved is not known (dmsetup may have been killed
        // after its ioctl): the guardian releases, and the marker stays.
        snap.stop_guardian(false);
        return fail(out.error().code,
                    fmt::format("cannot reserve the metadata snapshot of thin pool \"{}\" (is "
                                "the pool in read-only or fail mode? see `dmsetup status {}`): {}",
                                tpool, tpool, out.error().message));
    }
    snap.held_ = true;
    return snap;
}

Result<SnapHolder> PoolSnap::holder(Runner& runner, const std::string& tpool,
                                    const std::string& marker) {
    Result<CommandOutput> out = runner.run(dmsetup_status_argv(tpool));
    if (!out) return tl::unexpected(out.error());
    Result<bool> held = parse_dmsetup_pool_snap_held(out->out);
    if (!held) return tl::unexpected(held.error());
    bool ours = has_marker(marker);
    if (!*held) {
        if (ours) clear_marker(marker);
        return SnapHolder::kNone;
    }
    return ours ? SnapHolder::kBd : SnapHolder::kOther;
}

Result<void> PoolSnap::release_leftover(Runner& runner, const std::string& tpool,
                                        const std::string& marker) {
    if (Result<CommandOutput> r = runner.run(dmsetup_message_argv(tpool, "release_metadata_snap"));
        !r)
        return fail(r.error().code,
                    fmt::format("thin pool \"{}\" holds a metadata snapshot a killed bd left, "
                                "and releasing it failed: {}",
                                tpool, r.error().message));
    clear_marker(marker);
    return {};
}

PoolSnap::PoolSnap(PoolSnap&& other) noexcept
    : runner_(other.runner_),
      tpool_(std::move(other.tpool_)),
      marker_(std::move(other.marker_)),
      held_(other.held_),
      guardian_(other.guardian_),
      to_guardian_(other.to_guardian_) {
    other.held_ = false;
    other.guardian_ = -1;
    other.to_guardian_ = -1;
}

Result<void> PoolSnap::release() {
    if (!held_) {
        stop_guardian(true);
        return {};
    }
    held_ = false;
    Result<CommandOutput> out = runner_->run(dmsetup_message_argv(tpool_, "release_metadata_snap"));
    stop_guardian(bool(out));
    if (!out)
        return fail(out.error().code,
                    fmt::format("cannot release the metadata snapshot of thin pool \"{}\" ({}); "
                                "the next diff or fsck of this export releases it",
                                tpool_, out.error().message));
    clear_marker(marker_);
    return {};
}

PoolSnap::~PoolSnap() { (void)release(); }

}  // namespace bd
