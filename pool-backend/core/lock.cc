#include "lock.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace bd {

namespace {

std::string lock_dir() {
    const char* dir = getenv("BD_LOCK_DIR");
    return dir && *dir ? dir : "/run/lock/bd";
}

}  // namespace

Result<ExportLock> ExportLock::acquire(const std::string& export_name, int timeout_s) {
    std::string dir = lock_dir();
    mkdir(dir.c_str(), 0700);
    std::string path = dir + "/" + export_name + ".lock";
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return fail(errno, fmt::format("open({}): {}", path, strerror(errno)));
    // Poll rather than block so a stuck holder gives a clear error, not a hang.
    for (int waited_ms = 0;; waited_ms += 50) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) return ExportLock(fd);
        if (errno != EWOULDBLOCK || waited_ms >= timeout_s * 1000) {
            close(fd);
            return fail(EBUSY, fmt::format("export \"{}\" is locked by another bd process "
                                           "({}); retry when it finishes",
                                           export_name, path));
        }
        usleep(50 * 1000);
    }
}

ExportLock::~ExportLock() {
    if (fd_ >= 0) close(fd_);
}

}  // namespace bd
