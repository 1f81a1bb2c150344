// ll314: FUSE passthrough with Debian 12's libfuse 3.14 (which has no
// passthrough API), to show what it takes. Serves MOUNT/disk backed by BACKING.
//
//   ll314 [--passthrough] BACKING MOUNTPOINT      (as root; foreground)
//
// The hack, in three parts:
//  1. mount(2) ourselves and give libfuse the /dev/fuse fd through
//     fuse_session_custom_io() (3.14 has it), so that we see every message;
//  2. in the custom writev, patch libfuse's INIT reply: set FUSE_PASSTHROUGH
//     (bit 37, i.e. bit 5 of flags2) and max_stack_depth (libfuse 3.14 sends the
//     64-byte fuse_init_out of 7.38, whose unused[0] is 7.40's max_stack_depth);
//  3. in open(), FUSE_DEV_IOC_BACKING_OPEN on fuse_session_fd() and answer with
//     fuse_reply_iov() of a hand-made fuse_open_out {fh, FOPEN_PASSTHROUGH,
//     backing_id} instead of fuse_reply_open() (which zeroes that field).
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

struct pt_in_header { uint32_t len, opcode; uint64_t unique, nodeid; uint32_t uid, gid, pid; uint16_t total_extlen, padding; };
struct pt_out_header { uint32_t len; int32_t error; uint64_t unique; };
struct pt_init_in { uint32_t major, minor, max_readahead, flags, flags2, unused[11]; };
struct pt_init_out {
  uint32_t major, minor, max_readahead, flags;
  uint16_t max_background, congestion_threshold;
  uint32_t max_write, time_gran;
  uint16_t max_pages, map_alignment;
  uint32_t flags2, max_stack_depth, unused[6];
};
struct pt_open_out { uint64_t fh; uint32_t open_flags; int32_t backing_id; };
struct pt_backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
#define PT_FUSE_INIT 26
#define PT_INIT_EXT (1u << 30)
#define PT_PASSTHROUGH_FLAGS2 (1u << 5) // FUSE_PASSTHROUGH = 1ULL << 37
#define PT_WRITEBACK_CACHE (1u << 16)
#define PT_FOPEN_PASSTHROUGH (1u << 7)
#define PT_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)

static int passthrough, back_fd, is_blk, fuse_fd = -1;
static uint64_t init_unique;
static int kernel_offers;

static ssize_t io_read(int fd, void *buf, size_t len, void *ud) {
  (void)ud;
  ssize_t n = read(fd, buf, len);
  if (n >= (ssize_t)(sizeof(struct pt_in_header) + sizeof(struct pt_init_in))) {
    struct pt_in_header *h = buf;
    if (h->opcode == PT_FUSE_INIT) {
      struct pt_init_in *ii = (void *)(h + 1);
      init_unique = h->unique;
      kernel_offers = (ii->flags & PT_INIT_EXT) && (ii->flags2 & PT_PASSTHROUGH_FLAGS2);
    }
  }
  return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *ud) {
  (void)ud;
  struct pt_out_header *oh = iov[0].iov_base;
  if (passthrough && init_unique && oh->unique == init_unique && oh->error == 0 && count > 1 &&
      iov[1].iov_len >= offsetof(struct pt_init_out, unused)) {
    struct pt_init_out *o = iov[1].iov_base;
    if (kernel_offers) {
      o->flags |= PT_INIT_EXT;
      o->flags &= ~PT_WRITEBACK_CACHE; // the kernel refuses passthrough with it
      o->flags2 |= PT_PASSTHROUGH_FLAGS2;
      o->max_stack_depth = 1;
    }
    fprintf(stderr, "ll314: INIT reply (libfuse minor %u, %zu bytes) %s\n", o->minor, iov[1].iov_len,
            kernel_offers ? "patched for FUSE_PASSTHROUGH" : "left alone: the kernel does not offer passthrough");
    init_unique = 0;
  }
  return writev(fd, iov, count);
}

static off_t size_of_backing(void) {
  struct stat st;
  uint64_t sz;
  if (is_blk && ioctl(back_fd, BLKGETSIZE64, &sz) == 0) return sz;
  fstat(back_fd, &st);
  return st.st_size;
}

static void fill(struct stat *st, fuse_ino_t ino) {
  memset(st, 0, sizeof(*st));
  st->st_ino = ino;
  if (ino == 1) { st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; }
  else { st->st_mode = S_IFREG | 0644; st->st_nlink = 1; st->st_size = size_of_backing(); }
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (parent != 1 || strcmp(name, "disk")) return (void)fuse_reply_err(req, ENOENT);
  struct fuse_entry_param e = {.ino = 2, .generation = 1, .attr_timeout = 1, .entry_timeout = 1};
  fill(&e.attr, 2);
  fuse_reply_entry(req, &e);
}
static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  struct stat st;
  fill(&st, ino);
  fuse_reply_attr(req, &st, 1);
}
static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  if (!passthrough) return (void)fuse_reply_open(req, fi);
  struct pt_backing_map m = {.fd = back_fd};
  int id = ioctl(fuse_fd, PT_DEV_IOC_BACKING_OPEN, &m);
  if (id < 0) {
    fprintf(stderr, "ll314: FUSE_DEV_IOC_BACKING_OPEN: %s\n", strerror(errno));
    return (void)fuse_reply_err(req, errno);
  }
  // (a real server would FUSE_DEV_IOC_BACKING_CLOSE the id in release, or keep one per inode)
  struct pt_open_out o = {.fh = 1, .open_flags = PT_FOPEN_PASSTHROUGH, .backing_id = id};
  struct iovec iov = {&o, sizeof(o)};
  fuse_reply_iov(req, &iov, 1);
}
static unsigned long nreads;
static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)ino; (void)fi;
  nreads++;
  struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
  bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
  bv.buf[0].fd = back_fd;
  bv.buf[0].pos = off;
  fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

int main(int argc, char **argv) {
  int i = 1;
  if (i < argc && !strcmp(argv[i], "--passthrough")) passthrough = 1, i++;
  if (argc - i != 2) return fprintf(stderr, "usage: ll314 [--passthrough] BACKING MOUNTPOINT\n"), 2;
  back_fd = open(argv[i], O_RDWR);
  if (back_fd < 0) return perror(argv[i]), 1;
  struct stat st;
  fstat(back_fd, &st);
  is_blk = S_ISBLK(st.st_mode);

  struct fuse_lowlevel_ops ops = {.lookup = ll_lookup, .getattr = ll_getattr, .open = ll_open, .read = ll_read};
  char *fargv[] = {argv[0], NULL};
  struct fuse_args args = FUSE_ARGS_INIT(1, fargv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
  if (!se) return 1;
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return perror("/dev/fuse"), 1;
  char opts[200];
  snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions", fd);
  if (mount("ll314", argv[i + 1], "fuse.ll314", MS_NOSUID | MS_NODEV, opts) < 0) return perror("mount"), 1;
  static const struct fuse_custom_io io = {.read = io_read, .writev = io_writev};
  fuse_fd = fd;
  if (fuse_session_custom_io(se, &io, fd) < 0) return fprintf(stderr, "fuse_session_custom_io failed\n"), 1;
  fprintf(stderr, "ll314: libfuse %s, serving %s, %s\n", fuse_pkgversion(), argv[i], passthrough ? "passthrough" : "plain");
  int r = fuse_session_loop(se);
  fuse_session_destroy(se);
  fprintf(stderr, "ll314: READ requests seen: %lu\n", nreads);
  return r < 0 ? 1 : 0;
}
