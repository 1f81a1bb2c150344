// Full copies for `clone --full`: thin-aware in that runs of zeros are never
// written, so the copy stays as sparse as its source.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "copy.h"

namespace bd {

namespace {

constexpr size_t kCopyBlock = 1 << 20;

}  // namespace

Result<void> pwrite_full(int fd, const char* buf, size_t n, off_t off, const std::string& dev) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, buf + done, n - done, off + off_t(done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail(errno, fmt::format("write({}) at {}: {}", dev, off, strerror(errno)));
        if (r == 0) return fail(EIO, fmt::format("write({}) at {} wrote nothing", dev, off));
        done += size_t(r);
    }
    return {};
}

bool all_zero(const char* p, size_t n) {
    static const char kZero[4096] = {};
    for (size_t off = 0; off < n; off += sizeof kZero)
        if (memcmp(p + off, kZero, std::min(sizeof kZero, n - off)) != 0) return false;
    return true;
}

Result<void> pread_full(int fd, char* buf, size_t n, off_t off, const std::string& dev) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, buf + done, n - done, off + off_t(done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return fail(r < 0 ? errno : EIO, fmt::format("read({}) at {}: {}", dev, off, r < 0 ? strerror(errno) : "short read"));
        done += size_t(r);
    }
    return {};
}

Result<Fd> open_device(const std::string& dev, int flags) {
    Fd fd(::open(dev.c_str(), flags | O_DIRECT | O_CLOEXEC));
    if (!fd && errno == EINVAL) fd.reset(::open(dev.c_str(), flags | O_CLOEXEC));  // no O_DIRECT here
    if (!fd) return fail(errno, fmt::format("open({}): {}", dev, strerror(errno)));
    return fd;
}

Result<void> copy_data(const Fd& in, const std::string& in_dev, const Fd& out,
                       const std::string& out_dev, uint64_t size, const Progress& progress) {
    void* raw = nullptr;
    if (posix_memalign(&raw, 4096, kCopyBlock) != 0) return fail(ENOMEM, "out of memory");
    std::unique_ptr<char, decltype(&free)> buf(static_cast<char*>(raw), &free);
    auto last = std::chrono::steady_clock::now();
    for (uint64_t off = 0; off < size; off += kCopyBlock) {
        size_t n = size_t(std::min<uint64_t>(kCopyBlock, size - off));
        if (auto r = pread_full(in.get(), buf.get(), n, off_t(off), in_dev); !r) return r;
        if (!all_zero(buf.get(), n))
            if (auto r = pwrite_full(out.get(), buf.get(), n, off_t(off), out_dev); !r) return r;
        auto now = std::chrono::steady_clock::now();
        if (progress && (now - last > std::chrono::milliseconds(500) || off + n == size)) {
            progress(off + n, size);
            last = now;
        }
    }
    if (fsync(out.get()) < 0)
        return fail(errno, fmt::format("fsync({}): {}", out_dev, strerror(errno)));
    return {};
}

}  // namespace bd
