// A probe for the syscalls coreutils does not expose, used by the bdfs guest
// tests (tests/guest/test_bdfs.py):
//   bdfs-iotool cfr SRC DST [OFF_IN OFF_OUT LEN]   copy_file_range (whole file by default)
//   bdfs-iotool fallocate FILE MODE OFF LEN        MODE: alloc, keep, punch, zero, zero-keep
//   bdfs-iotool dwrite FILE OFF                    stdin -> FILE at OFF with O_DIRECT
//   bdfs-iotool dread FILE OFF LEN                 FILE -> stdout with O_DIRECT
// Prints "copied N" for cfr; on failure prints "error ERRNO_NAME: message" and exits 1.
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int die(const char* what) {
    int e = errno;
    std::printf("error %s: %s: %s\n", strerrorname_np(e), what, std::strerror(e));
    return 1;
}

long long num(const char* s) {
    return std::strtoll(s, nullptr, 0);
}

int cfr(int argc, char** argv) {
    int in = open(argv[2], O_RDONLY);
    if (in < 0) return die("open source");
    int out = open(argv[3], O_WRONLY | O_CREAT, 0644);
    if (out < 0) return die("open destination");
    bool whole = argc < 7;
    loff_t off_in = whole ? 0 : num(argv[4]), off_out = whole ? 0 : num(argv[5]);
    long long left = whole ? (1LL << 62) : num(argv[6]), total = 0;
    while (left > 0) {
        ssize_t n = copy_file_range(in, &off_in, out, &off_out, size_t(left), 0);
        if (n < 0) return die("copy_file_range");
        if (n == 0) break;
        total += n;
        left -= n;
    }
    std::printf("copied %lld\n", total);
    return 0;
}

int falloc(char** argv) {
    std::string m = argv[3];
    int mode = m == "alloc"       ? 0
               : m == "keep"      ? FALLOC_FL_KEEP_SIZE
               : m == "punch"     ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
               : m == "zero"      ? FALLOC_FL_ZERO_RANGE
               : m == "zero-keep" ? FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
                                  : -1;
    if (mode < 0) return std::fprintf(stderr, "unknown mode %s\n", argv[3]), 2;
    int fd = open(argv[2], O_RDWR);
    if (fd < 0) return die("open");
    if (fallocate(fd, mode, num(argv[4]), num(argv[5])) < 0) return die("fallocate");
    return 0;
}

char* aligned(size_t n) {
    void* p = nullptr;
    return posix_memalign(&p, 4096, n) == 0 ? static_cast<char*>(p) : nullptr;
}

int dwrite(char** argv) {
    std::vector<char> data;
    char tmp[65536];
    for (ssize_t n; (n = read(0, tmp, sizeof tmp)) > 0;) data.insert(data.end(), tmp, tmp + n);
    int fd = open(argv[2], O_WRONLY | O_DIRECT);
    if (fd < 0) return die("open O_DIRECT");
    char* buf = aligned(data.size() + 4096);
    std::memcpy(buf, data.data(), data.size());
    if (pwrite(fd, buf, data.size(), num(argv[3])) != ssize_t(data.size())) return die("pwrite");
    if (fsync(fd) < 0) return die("fsync");
    return 0;
}

int dread(char** argv) {
    int fd = open(argv[2], O_RDONLY | O_DIRECT);
    if (fd < 0) return die("open O_DIRECT");
    size_t len = size_t(num(argv[4]));
    char* buf = aligned(len + 4096);
    ssize_t n = pread(fd, buf, len, num(argv[3]));
    if (n < 0) return die("pread");
    return fwrite(buf, 1, size_t(n), stdout) == size_t(n) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "cfr" && (argc == 4 || argc == 7)) return cfr(argc, argv);
    if (cmd == "fallocate" && argc == 6) return falloc(argv);
    if (cmd == "dwrite" && argc == 4) return dwrite(argv);
    if (cmd == "dread" && argc == 5) return dread(argv);
    std::fprintf(stderr, "usage: see the comment at the top of tests/tools/bdfs_iotool.cc\n");
    return 2;
}
