#include "lock.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "fd.h"

namespace bd {

namespace {

// Opens the runtime directory, making it if missing, and checks that only root
// (this process's euid) can change what is in it.
Result<int> open_run_dir() {
    std::string path = run_dir_path();
    if (mkdir(path.c_str(), 0700) < 0 && errno != EEXIST)
        return fail(errno, fmt::format("cannot make bd's runtime directory {}: {}", path,
                                       strerror(errno)));
    Fd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dir.get() < 0)
        return fail(errno, fmt::format("cannot open bd's runtime directory {}: {} (it must be a "
                                       "directory, not a symlink)",
                                       path, strerror(errno)));
    struct stat st {};
    if (fstat(dir.get(), &st) < 0)
        return fail(errno, fmt::format("fstat({}): {}", path, strerror(errno)));
    if (st.st_uid != geteuid() || (st.st_mode & 077) != 0)
        return fail(EPERM, fmt::format("refusing bd's runtime directory {}: it is owned by uid {} "
                                       "with mode {:04o}, where bd needs uid {} and mode 0700 "
                                       "(another user may have made it: remove it and retry)",
                                       path, st.st_uid, st.st_mode & 07777, geteuid()));
    return dir.release();
}

// Opens RUNDIR/name without following a symlink, and checks it is our regular file.
Result<int> open_in_run_dir(const std::string& name, int flags) {
    Result<int> dir = open_run_dir();
    if (!dir) return tl::unexpected(dir.error());
    Fd d(*dir);
    std::string path = run_dir_path() + "/" + name;
    Fd f(openat(d.get(), name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (f.get() < 0) return fail(errno, fmt::format("open({}): {}", path, strerror(errno)));
    struct stat st {};
    if (fstat(f.get(), &st) < 0) return fail(errno, fmt::format("fstat({}): {}", path, strerror(errno)));
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
        return fail(EPERM, fmt::format("refusing {}: not a regular file of uid {}", path, geteuid()));
    return f.release();
}

// Hints are named after the export; export names are LVM names, so safe as file names.
std::string hint_name(const std::string& export_name) { return "export-" + export_name + ".vg"; }

}  // namespace

std::string run_dir_path() {
    const char* dir = getenv("BD_RUN_DIR");
    return dir && *dir ? dir : "/run/bd";
}

Result<ExportLock> ExportLock::acquire(const std::string& key, const std::string& what,
                                       int timeout_s) {
    Result<int> fd = open_in_run_dir(key + ".lock", O_RDWR | O_CREAT);
    if (!fd) return tl::unexpected(fd.error());
    ExportLock lock(*fd);
    // Poll rather than block so a stuck holder gives a clear error, not a hang.
    for (int waited_ms = 0;; waited_ms += 50) {
        if (flock(lock.fd_, LOCK_EX | LOCK_NB) == 0) return lock;
        if (errno != EWOULDBLOCK || waited_ms >= timeout_s * 1000)
            return fail(EBUSY, fmt::format("{} is locked by another bd process ({}/{}.lock); "
                                           "retry when it finishes",
                                           what, run_dir_path(), key));
        usleep(50 * 1000);
    }
}

Result<ExportLock> ExportLock::for_vg(const std::string& vg_uuid, const std::string& what,
                                      int timeout_s) {
    return for_key("vg-" + vg_uuid, what, timeout_s);
}

Result<ExportLock> ExportLock::for_key(const std::string& key, const std::string& what,
                                       int timeout_s) {
    // LVM uuids are [A-Za-z0-9-]; anything else would not be a safe file name.
    size_t dash = key.find('-');
    std::string kind = key.substr(0, dash);
    if (dash == std::string::npos || (kind != "vg" && kind != "pool") || dash + 1 == key.size() ||
        key.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") !=
            std::string::npos)
        return fail(EIO, fmt::format("unexpected lock key \"{}\" for {}", key, what));
    return acquire(key, fmt::format("export \"{}\"", what), timeout_s);
}

Result<ExportLock> ExportLock::for_exports(int timeout_s) {
    return acquire("exports", "the list of exports", timeout_s);
}

Result<ExportLock> ExportLock::for_lock_query(int timeout_s) {
    return acquire("lvmlockctl", "the query of lvmlockd's locks", timeout_s);
}

ExportLock& ExportLock::operator=(ExportLock&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) close(fd_);
        fd_ = other.fd_;
        other.fd_ = -1;
    }
    return *this;
}

ExportLock::~ExportLock() {
    if (fd_ >= 0) close(fd_);
}

std::string read_export_hint(const std::string& name) {
    Result<int> fd = open_in_run_dir(hint_name(name), O_RDONLY);
    if (!fd) return "";
    char buf[128];
    ssize_t n = read(*fd, buf, sizeof buf - 1);
    close(*fd);
    return n > 0 ? std::string(buf, size_t(n)) : "";
}

void write_export_hint(const std::string& name, const std::string& key) {
    Result<int> dir = open_run_dir();
    if (!dir) return;
    Fd d(*dir);
    // A new file renamed into place: a reader sees the old or the new uuid, whole.
    std::string tmp = hint_name(name) + ".tmp" + std::to_string(getpid());
    Fd f(openat(d.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (f.get() < 0) return;
    bool ok = write(f.get(), key.data(), key.size()) == ssize_t(key.size());
    if (ok && renameat(d.get(), tmp.c_str(), d.get(), hint_name(name).c_str()) == 0) return;
    unlinkat(d.get(), tmp.c_str(), 0);
}

Result<void> set_marker(const std::string& name) {
    Result<int> fd = open_in_run_dir(name, O_WRONLY | O_CREAT);
    if (!fd) return tl::unexpected(fd.error());
    close(*fd);
    return {};
}

bool has_marker(const std::string& name) {
    Result<int> fd = open_in_run_dir(name, O_RDONLY);
    if (!fd) return false;
    close(*fd);
    return true;
}

void clear_marker(const std::string& name) {
    Result<int> dir = open_run_dir();
    if (!dir) return;
    Fd d(*dir);
    unlinkat(d.get(), name.c_str(), 0);
}

}  // namespace bd
