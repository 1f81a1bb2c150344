// ptfs: a minimal raw /dev/fuse server (no libfuse) that serves one file,
// MOUNT/disk, backed by BACKING (a block device or a regular file). Its only
// purpose is to measure FUSE passthrough (Linux >= 6.9, FUSE_PASSTHROUGH)
// against a plain pread-based READ handler. Single-threaded; run as root.
//
//   ptfs [--passthrough] [--drop-cap] [--stats FILE] BACKING MOUNTPOINT
//
// --passthrough  negotiate FUSE_PASSTHROUGH at INIT, register BACKING with
//                FUSE_DEV_IOC_BACKING_OPEN at the first OPEN, and answer every
//                OPEN with FOPEN_PASSTHROUGH + that backing_id. If the ioctl
//                fails the OPEN fails with its errno (and it is logged).
// --drop-cap     drop CAP_SYS_ADMIN (all sets) after mounting, before the ioctl.
// --stats FILE   on exit, write the count of each request opcode seen to FILE.
//
// The server runs in the foreground; it exits when the fs is unmounted.
// Without --passthrough, READ is pread() on BACKING (opened O_DIRECT, with a
// buffered fd for unaligned requests) and WRITE is pwrite().
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/fuse.h> // Debian 12: protocol 7.38, no passthrough bits
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

// Protocol 7.40 additions (include/uapi/linux/fuse.h of 6.9+; checked against
// Debian's linux-libc-dev 6.12.95): not in Debian 12's 6.1 headers.
#ifndef FUSE_PASSTHROUGH
#define FUSE_PASSTHROUGH (1ULL << 37)
#endif
#ifndef FOPEN_PASSTHROUGH
#define FOPEN_PASSTHROUGH (1 << 7)
#endif
struct pt_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define PT_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
struct pt_init_out { // fuse_init_out of 7.40: max_stack_depth after flags2
  uint32_t major, minor, max_readahead, flags;
  uint16_t max_background, congestion_threshold;
  uint32_t max_write, time_gran;
  uint16_t max_pages, map_alignment;
  uint32_t flags2, max_stack_depth, unused[6];
};
struct pt_open_out { // fuse_open_out of 7.40: backing_id replaced padding
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};

#define MAX_WRITE (1u << 20)
#define BUFSZ (MAX_WRITE + 65536)
#define FILE_INO 2
static const char file_name[] = "disk";

static int fuse_fd = -1, back_fd = -1, back_dfd = -1, is_blk;
static int passthrough, drop_cap, backing_id = -1;
static unsigned long long nops[64];
static const char *stats_path;

static void die(const char *what) {
  fprintf(stderr, "ptfs: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t backing_size(void) {
  struct stat st;
  uint64_t sz = 0;
  if (is_blk) {
    if (ioctl(back_fd, BLKGETSIZE64, &sz) < 0) die("BLKGETSIZE64");
    return sz;
  }
  if (fstat(back_fd, &st) < 0) die("fstat");
  return st.st_size;
}

static void fill_attr(struct fuse_attr *a, uint64_t ino) {
  memset(a, 0, sizeof(*a));
  a->ino = ino;
  a->blksize = 4096;
  if (ino == FUSE_ROOT_ID) {
    a->mode = S_IFDIR | 0755;
    a->nlink = 2;
  } else {
    a->mode = S_IFREG | 0644;
    a->nlink = 1;
    a->size = backing_size();
    a->blocks = a->size / 512;
  }
}

static void reply(uint64_t unique, int err, const void *arg, size_t len, const void *data, size_t dlen) {
  struct fuse_out_header oh = {.len = sizeof(oh) + len + dlen, .error = err, .unique = unique};
  struct iovec iov[3] = {{&oh, sizeof(oh)}, {(void *)arg, len}, {(void *)data, dlen}};
  if (writev(fuse_fd, iov, 3) < 0 && errno != ENOENT) // ENOENT: request was interrupted
    fprintf(stderr, "ptfs: reply to %llu: %s\n", (unsigned long long)unique, strerror(errno));
}
static void reply_err(uint64_t unique, int err) { reply(unique, -err, NULL, 0, NULL, 0); }

static void do_drop_cap(void) {
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) < 0) die("capget");
  for (int i = 0; i < 2; i++) {
    if (CAP_SYS_ADMIN / 32 == i) {
      d[i].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
      d[i].permitted &= ~(1u << (CAP_SYS_ADMIN % 32));
      d[i].inheritable &= ~(1u << (CAP_SYS_ADMIN % 32));
    }
  }
  if (syscall(SYS_capset, &h, d) < 0) die("capset");
  fprintf(stderr, "ptfs: dropped CAP_SYS_ADMIN\n");
}

static void handle(char *buf) {
  struct fuse_in_header *ih = (struct fuse_in_header *)buf;
  void *in = buf + sizeof(*ih);
  uint64_t u = ih->unique;
  if (ih->opcode < 64) nops[ih->opcode]++;
  switch (ih->opcode) {
  case FUSE_INIT: {
    struct fuse_init_in *ii = in;
    uint64_t kflags = ii->flags;
    if (ii->flags & FUSE_INIT_EXT) kflags |= (uint64_t)ii->flags2 << 32;
    struct pt_init_out o = {0};
    o.major = FUSE_KERNEL_VERSION;
    o.minor = ii->minor < 41 ? ii->minor : 41;
    o.max_readahead = ii->max_readahead;
    uint64_t want = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_INIT_EXT;
    if (passthrough) want |= FUSE_PASSTHROUGH;
    uint64_t got = want & kflags;
    o.flags = (uint32_t)got;
    o.flags2 = (uint32_t)(got >> 32);
    o.max_background = 16;
    o.congestion_threshold = 12;
    o.max_write = MAX_WRITE;
    o.time_gran = 1;
    o.max_pages = MAX_WRITE / 4096;
    o.max_stack_depth = passthrough ? 1 : 0;
    fprintf(stderr, "ptfs: kernel protocol 7.%u, flags 0x%llx; passthrough %s\n", ii->minor,
            (unsigned long long)kflags,
            !passthrough ? "not asked" : (kflags & FUSE_PASSTHROUGH) ? "offered and accepted" : "NOT offered by the kernel");
    reply(u, 0, &o, sizeof(o), NULL, 0);
    if (drop_cap) do_drop_cap();
    break;
  }
  case FUSE_LOOKUP: {
    if (ih->nodeid != FUSE_ROOT_ID || strcmp(in, file_name)) return reply_err(u, ENOENT);
    struct fuse_entry_out e = {.nodeid = FILE_INO, .generation = 1, .entry_valid = 1, .attr_valid = 1};
    fill_attr(&e.attr, FILE_INO);
    return reply(u, 0, &e, sizeof(e), NULL, 0);
  }
  case FUSE_GETATTR:
  case FUSE_SETATTR: { // SETATTR: accepted and ignored (the size stays the backing's)
    struct fuse_attr_out a = {.attr_valid = 1};
    fill_attr(&a.attr, ih->nodeid);
    return reply(u, 0, &a, sizeof(a), NULL, 0);
  }
  case FUSE_OPEN: {
    struct pt_open_out o = {.fh = 1};
    if (passthrough) {
      if (backing_id < 0) {
        struct pt_backing_map m = {.fd = back_fd};
        int id = ioctl(fuse_fd, PT_DEV_IOC_BACKING_OPEN, &m);
        if (id < 0) {
          int e = errno;
          fprintf(stderr, "ptfs: FUSE_DEV_IOC_BACKING_OPEN: %s (errno %d)\n", strerror(e), e);
          return reply_err(u, e);
        }
        backing_id = id;
        fprintf(stderr, "ptfs: FUSE_DEV_IOC_BACKING_OPEN: backing_id %d\n", id);
      }
      o.open_flags = FOPEN_PASSTHROUGH;
      o.backing_id = backing_id;
    }
    return reply(u, 0, &o, sizeof(o), NULL, 0);
  }
  case FUSE_READ: {
    struct fuse_read_in *r = in;
    static char *data;
    if (!data && posix_memalign((void **)&data, 4096, MAX_WRITE)) die("posix_memalign");
    size_t n = r->size > MAX_WRITE ? MAX_WRITE : r->size;
    int aligned = !(r->offset % 4096) && !(n % 4096);
    ssize_t got = pread(aligned ? back_dfd : back_fd, data, n, r->offset);
    if (got < 0) return reply_err(u, errno);
    return reply(u, 0, NULL, 0, data, got);
  }
  case FUSE_WRITE: {
    struct fuse_write_in *w = in;
    ssize_t put = pwrite(back_fd, (char *)(w + 1), w->size, w->offset);
    if (put < 0) return reply_err(u, errno);
    struct fuse_write_out o = {.size = put};
    return reply(u, 0, &o, sizeof(o), NULL, 0);
  }
  case FUSE_FSYNC:
    if (fsync(back_fd) < 0) return reply_err(u, errno);
    return reply_err(u, 0);
  case FUSE_OPENDIR: {
    struct fuse_open_out o = {.fh = 2};
    return reply(u, 0, &o, sizeof(o), NULL, 0);
  }
  case FUSE_READDIR: {
    struct fuse_read_in *r = in;
    char out[256];
    size_t len = 0;
    const char *names[] = {".", "..", file_name};
    uint64_t inos[] = {FUSE_ROOT_ID, FUSE_ROOT_ID, FILE_INO};
    for (uint64_t i = r->offset; i < 3; i++) {
      struct fuse_dirent *d = (struct fuse_dirent *)(out + len);
      size_t nl = strlen(names[i]), sz = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + nl);
      if (len + sz > r->size) break;
      memset(d, 0, sz);
      d->ino = inos[i];
      d->off = i + 1;
      d->namelen = nl;
      d->type = i < 2 ? DT_DIR : DT_REG;
      memcpy(d->name, names[i], nl);
      len += sz;
    }
    return reply(u, 0, out, len, NULL, 0);
  }
  case FUSE_STATFS: {
    struct fuse_statfs_out s = {.st = {.bsize = 4096, .frsize = 4096, .namelen = 255}};
    return reply(u, 0, &s, sizeof(s), NULL, 0);
  }
  case FUSE_RELEASE:
  case FUSE_RELEASEDIR:
  case FUSE_FLUSH:
    return reply_err(u, 0);
  case FUSE_FORGET:
  case FUSE_BATCH_FORGET:
  case FUSE_INTERRUPT:
    return; // no reply
  case FUSE_DESTROY:
    reply_err(u, 0);
    return;
  default:
    return reply_err(u, ENOSYS);
  }
}

static const char *opname(int op) {
  switch (op) {
  case FUSE_LOOKUP: return "LOOKUP";
  case FUSE_GETATTR: return "GETATTR";
  case FUSE_SETATTR: return "SETATTR";
  case FUSE_OPEN: return "OPEN";
  case FUSE_READ: return "READ";
  case FUSE_WRITE: return "WRITE";
  case FUSE_RELEASE: return "RELEASE";
  case FUSE_FLUSH: return "FLUSH";
  case FUSE_FSYNC: return "FSYNC";
  case FUSE_INIT: return "INIT";
  default: return NULL;
  }
}

static void write_stats(void) {
  FILE *f = stats_path ? fopen(stats_path, "w") : stderr;
  if (!f) return;
  for (int i = 0; i < 64; i++)
    if (nops[i]) {
      const char *n = opname(i);
      if (n) fprintf(f, "%s=%llu\n", n, nops[i]);
      else fprintf(f, "op%d=%llu\n", i, nops[i]);
    }
  if (f != stderr) fclose(f);
}

int main(int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--passthrough")) passthrough = 1;
    else if (!strcmp(argv[i], "--drop-cap")) drop_cap = 1;
    else if (!strcmp(argv[i], "--stats") && i + 1 < argc) stats_path = argv[++i];
    else break;
  }
  if (argc - i != 2) {
    fprintf(stderr, "usage: ptfs [--passthrough] [--drop-cap] [--stats FILE] BACKING MOUNTPOINT\n");
    return 2;
  }
  const char *backing = argv[i], *mnt = argv[i + 1];
  back_fd = open(backing, O_RDWR);
  if (back_fd < 0) die(backing);
  back_dfd = open(backing, O_RDWR | O_DIRECT);
  if (back_dfd < 0) back_dfd = back_fd; // tmpfs & co: no O_DIRECT
  struct stat st;
  if (fstat(back_fd, &st) < 0) die("fstat");
  is_blk = S_ISBLK(st.st_mode);

  fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fuse_fd < 0) die("/dev/fuse");
  char opts[256];
  snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions", fuse_fd);
  if (mount("ptfs", mnt, "fuse.ptfs", MS_NOSUID | MS_NODEV, opts) < 0) die("mount");
  fprintf(stderr, "ptfs: serving %s (%s, %llu bytes) at %s/%s, %s\n", backing, is_blk ? "block device" : "file",
          (unsigned long long)backing_size(), mnt, file_name, passthrough ? "passthrough" : "plain READ handler");
  signal(SIGPIPE, SIG_IGN);

  char *buf = malloc(BUFSZ);
  if (!buf) die("malloc");
  for (;;) {
    ssize_t n = read(fuse_fd, buf, BUFSZ);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
      if (errno == ENODEV) break; // unmounted
      die("read /dev/fuse");
    }
    if ((size_t)n < sizeof(struct fuse_in_header)) continue;
    uint32_t op = ((struct fuse_in_header *)buf)->opcode;
    handle(buf);
    if (op == FUSE_DESTROY) break;
  }
  write_stats();
  return 0;
}
