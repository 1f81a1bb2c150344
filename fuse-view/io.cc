// The data path: each open file has its own descriptor on the volume's device.
// Reads and writes go straight to it; sizes change through the core.
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "fs.h"
#include "names.h"
#include "thin_status.h"

namespace bdfs {

namespace {

constexpr size_t kMaxIo = 1 << 20;  // max_write, and the copy chunk
// Appending writes grow a sized file by at least this much: each growth is an
// lvresize (seconds in the test guest), and qcow2 appends 64 KiB clusters.
constexpr uint64_t kGrowStep = 32 << 20;
// FUSE replies carry a 32-bit count.
constexpr uint64_t kMaxReply = 0xfffff000ull;

bool is_zero(const char* buf, size_t size) {
    return size > 0 && buf[0] == 0 && memcmp(buf, buf + 1, size - 1) == 0;
}

// Whether the thin pool under an open thin LV zeroes new blocks (not known: no).
bool pool_zeroes(const OpenFile* f) {
    struct stat dev;
    if (fstat(f->fd, &dev) != 0 || !S_ISBLK(dev.st_mode)) return false;
    Result<bool> zeroes = bd::dm_thin_pool_zeroes(dev.st_rdev);
    return zeroes && *zeroes;
}

Result<uint64_t> device_size(int fd) {
    uint64_t bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
        return bd::fail(errno, fmt::format("BLKGETSIZE64: {}", strerror(errno)));
    return bytes;
}

// O_DIRECT needs aligned memory; FUSE's buffers are not. One per thread.
char* aligned_buffer() {
    thread_local std::unique_ptr<char, decltype(&free)> buf(nullptr, &free);
    if (!buf) {
        void* p = nullptr;
        if (posix_memalign(&p, 4096, kMaxIo) != 0) return nullptr;
        buf.reset(static_cast<char*>(p));
    }
    return buf.get();
}

Result<size_t> pread_all(int fd, char* buf, size_t size, off_t off) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, buf + done, size - done, off + off_t(done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return bd::fail(errno, fmt::format("read at {}: {}", off, strerror(errno)));
        if (n == 0) break;
        done += size_t(n);
    }
    return done;
}

Result<void> pwrite_all(int fd, const char* buf, size_t size, off_t off) {
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(fd, buf + done, size - done, off + off_t(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return bd::fail(n < 0 ? errno : EIO,
                            fmt::format("write at {}: {}", off, n < 0 ? strerror(errno) : "short"));
        done += size_t(n);
    }
    return {};
}

}  // namespace

// ---- pool space --------------------------------------------------------------

// Below the threshold is what writers without the reserve may fill; metadata
// counts too (a pool whose metadata fills goes read-only).
Result<void> SpaceGuard::refresh() {
    Result<bd::ThinPoolStatus> st = bd::dm_thin_pool_status_noflush(vg_, pool_);
    if (!st) return tl::unexpected(st.error());
    free_ = int64_t((st->total_data_blocks - st->used_data_blocks) * block_bytes_);
    if (st->out_of_data_space || st->read_only) free_ = 0;
    uint64_t limit = st->total_data_blocks * uint64_t(threshold_) / 100;
    free_below_threshold_ = st->used_data_blocks < limit && st->metadata_percent() < threshold_
                                ? int64_t((limit - st->used_data_blocks) * block_bytes_)
                                : 0;
    free_below_threshold_ = std::min(free_below_threshold_, free_);
    checked_ = std::chrono::steady_clock::now();
    return {};
}

Result<void> SpaceGuard::reserve(uint64_t bytes, bool may_use_reserve) {
    std::lock_guard<std::mutex> lock(mutex_);
    int64_t& room = may_use_reserve ? free_ : free_below_threshold_;
    auto now = std::chrono::steady_clock::now();
    if (now - checked_ > std::chrono::milliseconds(100) || room < int64_t(bytes))
        if (Result<void> ok = refresh(); !ok) return ok;
    // Every write is counted as if it allocated: near the limit, refuse early.
    if (room < int64_t(bytes)) {
        if (may_use_reserve)
            return bd::fail(ENOSPC, fmt::format("thin pool \"{}/{}\" is full: extend it (lvextend "
                                                "-L +SIZE {}/{}) or delete volumes",
                                                vg_, pool_, vg_, pool_));
        return bd::fail(ENOSPC, fmt::format("thin pool \"{}/{}\" is at its {}% threshold; the rest "
                                            "is kept for root and VMs (extend the pool, or raise "
                                            "the threshold: bdctl export set --threshold)",
                                            vg_, pool_, int(threshold_)));
    }
    free_ -= int64_t(bytes);
    free_below_threshold_ -= std::min(free_below_threshold_, int64_t(bytes));
    return {};
}

bool SpaceGuard::full() {
    std::lock_guard<std::mutex> lock(mutex_);
    return refresh() && free_ <= 0;
}

void SpaceGuard::invalidate() {
    std::lock_guard<std::mutex> lock(mutex_);
    checked_ = {};
}

// ---- open and close ----------------------------------------------------------

Result<OpenFile*> Fs::open_volume(fuse_ino_t ino, const bd::Volume& v, int flags) {
    bool writable = (flags & O_ACCMODE) != O_RDONLY;
    if (writable && v.read_only)
        return bd::fail(EROFS, fmt::format("\"{}\" is a read-only snapshot", v.path));
    if (!v.active)
        return bd::fail(ENXIO, fmt::format("volume \"{}\" is not active (lvchange -ay {}/{})",
                                           v.path, ex_.vg(), v.lv));
    int dev_flags = (writable ? O_RDWR : O_RDONLY) | (flags & O_DIRECT) | O_CLOEXEC;
    auto* f = new OpenFile;
    f->ino = ino;
    f->direct = flags & O_DIRECT;
    f->thick = v.type == bd::VolumeType::kThick;
    // Counted before the device is opened, and not while clone_into swaps the
    // volume's data: every descriptor bdfs holds is one clone_into knows of.
    {
        std::unique_lock<std::mutex> lock(volumes_mutex_);
        std::shared_ptr<VolumeState>& st = volumes_[v.id];
        if (!st) {
            st = std::make_shared<VolumeState>();
            st->unsized = v.xattrs.count(kUnsizedXattr) > 0;
        }
        std::shared_ptr<VolumeState> held = st;
        swap_done_.wait(lock, [&] { return !held->swapping; });
        ++held->opens;
        file_ids_[f] = v.id;
    }
    f->fd = ::open(ex_.device(v).c_str(), dev_flags);
    if (f->fd < 0) {
        bd::Error e{errno, fmt::format("open({}): {}", ex_.device(v), strerror(errno))};
        release(f);
        return tl::unexpected(e);
    }
    return f;
}

Result<OpenFile*> Fs::open(fuse_ino_t ino, int flags) {
    Result<Resolved> r = resolve(ino);
    if (!r) return tl::unexpected(r.error());
    if (r->entry.kind == Kind::kDir) return bd::fail(EISDIR, "is a directory");
    if (r->entry.kind != Kind::kFile) return bd::fail(ELOOP, "is a symlink");
    bd::Volume v = *r->entry.volume;
    Result<OpenFile*> f = open_volume(ino, v, flags);
    if (!f) return f;
    if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
        if (Result<void> ok = empty_volume(v); !ok) {
            release(*f);
            return tl::unexpected(ok.error());
        }
    return f;
}

Result<fuse_entry_param> Fs::create(fuse_ino_t parent, const std::string& name, mode_t mode,
                                    const bd::Actor& who, int flags, OpenFile** file) {
    Result<std::string> path = new_path(parent, name);
    if (!path) return tl::unexpected(path.error());
    // The smallest LV (one extent) that reads as empty until sized or written.
    bd::NewVolume nv;
    nv.path = *path;
    nv.size = ex_.extent_size();
    bd::Attrs& a = nv.attrs;
    a.uid = who.uid;
    a.gid = who.gid;
    if (std::optional<bd::DirAttrs> p = setgid_parent(parent)) a.gid = p->gid;
    a.mode = mode & 07777;
    a.mtime = time(nullptr);
    a.xattrs.emplace(kUnsizedXattr, std::string("1"));
    Result<bd::Volume> v = ex_.create_volume(nv, who);
    if (!v) return tl::unexpected(v.error());
    fuse_entry_param p = entry_param(Entry{name, Kind::kFile, *path, &*v});
    Result<OpenFile*> f = open_volume(p.ino, *v, flags & ~O_TRUNC);
    if (!f) {
        forget(p.ino, 1);
        return tl::unexpected(f.error());
    }
    *file = *f;
    return p;
}

std::shared_ptr<Fs::VolumeState> Fs::state_of(OpenFile* f, std::string* id) {
    std::lock_guard<std::mutex> lock(volumes_mutex_);
    auto it = file_ids_.find(f);
    if (it == file_ids_.end()) return nullptr;
    if (id) *id = it->second;
    return volumes_[it->second];
}

std::shared_ptr<Fs::VolumeState> Fs::state_by_id(const std::string& id) {
    std::lock_guard<std::mutex> lock(volumes_mutex_);
    auto it = volumes_.find(id);
    return it == volumes_.end() ? nullptr : it->second;
}

int Fs::opens_of(const std::shared_ptr<VolumeState>& st) {
    if (!st) return 0;
    std::lock_guard<std::mutex> lock(volumes_mutex_);
    return st->opens;
}

// An LV the core hid while bdfs held it open goes at the last close (now, if
// that came meanwhile).
void Fs::note_hidden(const std::shared_ptr<VolumeState>& st, const std::string& lv) {
    bool closed = true;
    if (st) {
        std::lock_guard<std::mutex> lock(volumes_mutex_);
        st->hidden_lv = lv;
        closed = st->opens == 0;
    }
    if (closed)
        if (Result<void> r = ex_.reap(lv); !r) log_error("remove a replaced volume", r.error());
}

void Fs::release(OpenFile* f) noexcept {
    try {
        if (f->fd >= 0) close(f->fd);
        std::string hidden;
        {
            std::lock_guard<std::mutex> lock(volumes_mutex_);
            auto it = file_ids_.find(f);
            if (it != file_ids_.end()) {
                auto st = volumes_.find(it->second);
                if (st != volumes_.end() && --st->second->opens == 0) {
                    hidden = st->second->hidden_lv;
                    volumes_.erase(st);
                }
                file_ids_.erase(it);
            }
        }
        delete f;
        if (!hidden.empty())
            if (Result<void> r = ex_.reap(hidden); !r)
                log_error("remove an unlinked volume at its last close", r.error());
    } catch (const std::exception& e) {
        log_error("release", bd::Error{EIO, std::string("internal error: ") + e.what()});
    } catch (...) {
        log_error("release", bd::Error{EIO, "internal error"});
    }
}

// Emptying or punching a whole file destroys its data as rm does, so it is
// refused as rm is while a program outside bdfs (a VM) holds the volume open.
Result<void> Fs::check_not_held_elsewhere(const bd::Volume& v) {
    Result<bd::DmInfo> info = bd::dm_info(bd::dm_name(ex_.vg(), v.lv));
    if (info && info->exists && info->open_count > opens_of(state_by_id(v.id)))
        return bd::fail(EBUSY, fmt::format("\"{}\" is open outside bdfs (a VM?); emptying it would "
                                           "destroy its data under it",
                                           v.path));
    return {};
}

// A thin LV reads zeros where it is unmapped, so whole pool blocks are
// discarded; a linear LV keeps old data after a discard, so it is zeroed.
Result<void> Fs::zero_device(int fd, bool thick, uint64_t off, uint64_t len,
                             const std::string& what) {
    uint64_t range[2] = {off, len};
    if (ioctl(fd, thick ? BLKZEROOUT : BLKDISCARD, range) < 0)
        return bd::fail(errno, fmt::format("{} of \"{}\": {}", thick ? "BLKZEROOUT" : "BLKDISCARD",
                                           what, strerror(errno)));
    space_.invalidate();
    return {};
}

// ---- sizes -------------------------------------------------------------------

// Two steps, the data first: a crash between them leaves the file at its
// size, reading zeros (the data is gone, as asked); truncating again finishes.
// The other order could leave old data to reappear when the file grows.
Result<void> Fs::empty_volume(const bd::Volume& v) {
    if (v.read_only) return bd::fail(EROFS, fmt::format("\"{}\" is a read-only snapshot", v.path));
    if (v.xattrs.count(kUnsizedXattr)) return {};
    // The core checks, under its lock, that the path still holds this volume
    // and that no one outside bdfs holds it; the descriptor stays on it.
    Result<bd::Fd> fd = ex_.open_to_empty({v.path, v.id}, opens_of(state_by_id(v.id)));
    if (!fd) return tl::unexpected(fd.error());
    bool thick = v.type == bd::VolumeType::kThick;
    if (Result<void> ok = zero_device(fd->get(), thick, 0, v.size, v.path); !ok) return ok;
    return set_unsized(v, true);
}

// Writes past the end grow the LV (by kGrowStep at least); the first write sizes
// an unsized file to the extents it needs.
Result<void> Fs::ensure_size(OpenFile* f, uint64_t end, const bd::Actor& who) {
    std::string id;
    std::shared_ptr<VolumeState> st = state_of(f, &id);
    if (!st) return bd::fail(EBADF, "file is not open");
    std::lock_guard<std::mutex> grow(st->grow_mutex);
    Result<uint64_t> size = device_size(f->fd);
    if (!size) return tl::unexpected(size.error());
    bool unsized;
    {
        std::lock_guard<std::mutex> lock(volumes_mutex_);
        unsized = st->unsized;
    }
    if (!unsized && end <= *size) return {};
    Result<bd::Volume> v = volume_of(id);
    if (!v) return tl::unexpected(v.error());
    uint64_t want = unsized || end <= *size ? end : std::max(end, *size + kGrowStep);
    return set_size(*v, std::max(want, v->size), who);
}

// ---- data --------------------------------------------------------------------

Result<size_t> Fs::read(OpenFile* f, char* buf, size_t size, off_t off) {
    if (f->lost) return bd::fail(EIO, "the volume of this open file was lost");
    std::shared_ptr<VolumeState> st = state_of(f);
    {
        std::lock_guard<std::mutex> lock(volumes_mutex_);
        if (st && st->unsized) return size_t(0);
    }
    if (!f->direct) return pread_all(f->fd, buf, size, off);
    char* bounce = aligned_buffer();
    if (!bounce) return bd::fail(ENOMEM, "out of memory");
    Result<size_t> n = pread_all(f->fd, bounce, std::min(size, kMaxIo), off);
    if (n) memcpy(buf, bounce, *n);
    return n;
}

Result<size_t> Fs::write_at(OpenFile* f, const char* buf, size_t size, off_t off,
                            const bd::Actor& who, bool after_clone) {
    if (f->lost) return bd::fail(EIO, "the volume of this open file was lost");
    if (Result<void> ok = ensure_size(f, uint64_t(off) + size, who); !ok)
        return tl::unexpected(ok.error());
    // Zeros a copier writes into a fresh clone past its data need no write: a
    // thin LV reads zeros where it maps nothing, and `cp --sparse=never`
    // writes the hole past a file's data as zeros, which would allocate all
    // of the clone's tail. Only right after a clone: anyone else writing
    // zeros (glibc's posix_fallocate, dd) means to allocate them. And only in
    // a pool that zeroes new blocks (`after_clone` says so too): one that
    // does not would show old contents there after a later partial write to
    // the same block.
    if (after_clone && !f->thick && is_zero(buf, size))
        if (Result<std::pair<uint64_t, uint64_t>> e = data_extent(f);
            e && uint64_t(off) >= e->second) {
            // A clean cached page may still hold what an earlier failed
            // writeback left; reads must see the zeros.
            posix_fadvise(f->fd, off, off_t(size), POSIX_FADV_DONTNEED);
            return size;
        }
    // Written, so the file no longer holds exactly what was cloned.
    if (after_clone)
        if (std::shared_ptr<VolumeState> st = state_of(f)) {
            std::lock_guard<std::mutex> lock(volumes_mutex_);
            st->clone_of.clear();
        }
    // A linear LV is all allocated, outside the thin pool: nothing to reserve.
    if (!f->thick)
        if (Result<void> ok = space_.reserve(size, who.reserve); !ok)
            return tl::unexpected(ok.error());
    const char* src = buf;
    if (f->direct) {
        char* bounce = aligned_buffer();
        if (!bounce || size > kMaxIo) return bd::fail(EINVAL, "O_DIRECT write larger than 1 MiB");
        memcpy(bounce, buf, size);
        src = bounce;
    }
    Result<void> ok = pwrite_all(f->fd, src, size, off);
    // Write through, so a full pool fails this write rather than a later writeback.
    if (ok && !f->direct &&
        sync_file_range(
            f->fd, off, off_t(size),
            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) < 0)
        ok = bd::fail(errno, fmt::format("writeback at {}: {}", off, strerror(errno)));
    if (!ok) {
        space_.invalidate();
        if (ok.error().code == EIO && space_.full())
            return bd::fail(ENOSPC, fmt::format("thin pool of export \"{}\" is full", ex_.name()));
        return tl::unexpected(ok.error());
    }
    return size;
}

Result<size_t> Fs::write(OpenFile* f, const char* buf, size_t size, off_t off,
                         const bd::Actor& who) {
    bool after_clone = false;
    if (std::shared_ptr<VolumeState> st = state_of(f)) {
        bool zeros = is_zero(buf, size);
        std::lock_guard<std::mutex> lock(volumes_mutex_);
        after_clone = !st->clone_of.empty() && st->clone_zeroes;
        // Until the copier writes data: its zeros may still follow (and
        // write_at forgets the clone if it has to store them).
        if (!after_clone || !zeros) st->clone_of.clear();
    }
    return write_at(f, buf, size, off, who, after_clone);
}

Result<void> Fs::fsync(OpenFile* f, bool datasync) {
    if (f->lost) return bd::fail(EIO, "the volume of this open file was lost");
    if ((datasync ? fdatasync(f->fd) : ::fsync(f->fd)) < 0)
        return bd::fail(errno, fmt::format("fsync: {}", strerror(errno)));
    return {};
}

// Whole pool blocks are discarded (thin unmaps them, so they read as zeros);
// the partial blocks at either end are written with zeros.
Result<void> Fs::zero_range(OpenFile* f, uint64_t off, uint64_t len, const bd::Actor& who) {
    uint64_t chunk = f->thick ? 4096 : chunk_size_;
    uint64_t end = off + len;
    uint64_t first = (off + chunk - 1) / chunk * chunk, last = end / chunk * chunk;
    static const std::vector<char> zeros(kMaxIo, 0);
    auto zero = [&](uint64_t from, uint64_t to) -> Result<void> {
        for (uint64_t p = from; p < to; p += kMaxIo) {
            size_t n = size_t(std::min<uint64_t>(kMaxIo, to - p));
            if (Result<size_t> w = write_at(f, zeros.data(), n, off_t(p), who); !w)
                return tl::unexpected(w.error());
        }
        return {};
    };
    if (first >= last) return zero(off, end);
    if (Result<void> ok = zero(off, first); !ok) return ok;
    if (Result<void> ok = zero_device(f->fd, f->thick, first, last - first, "an open file"); !ok)
        return ok;
    return zero(last, end);
}

Result<void> Fs::fallocate(OpenFile* f, int mode, off_t off, off_t len, const bd::Actor& who) {
    if (f->lost) return bd::fail(EIO, "the volume of this open file was lost");
    const int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
    if (mode & ~known) return bd::fail(EOPNOTSUPP, "unsupported fallocate mode");
    if (std::shared_ptr<VolumeState> st = state_of(f)) {
        std::lock_guard<std::mutex> lock(volumes_mutex_);
        st->clone_of.clear();
    }
    uint64_t end = uint64_t(off) + uint64_t(len);
    bool reserve = !(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE));
    // A thin volume has no way to reserve blocks short of writing them: say
    // so, and posix_fallocate(3) writes them itself. A linear one is all there.
    if (reserve && !f->thick)
        return bd::fail(EOPNOTSUPP, "thin volumes reserve no space: blocks are allocated as "
                                    "they are written");
    if (!(mode & FALLOC_FL_KEEP_SIZE))
        if (Result<void> ok = ensure_size(f, end, who); !ok) return ok;
    if (reserve) return {};
    Result<uint64_t> size = device_size(f->fd);
    if (!size) return tl::unexpected(size.error());
    end = std::min(end, *size);
    if (uint64_t(off) >= end) return {};
    if (off == 0 && end == *size) {
        std::string id;
        state_of(f, &id);
        Result<bd::Volume> v = volume_of(id);
        if (!v) return tl::unexpected(v.error());
        if (Result<void> ok = check_not_held_elsewhere(*v); !ok) return ok;
    }
    return zero_range(f, uint64_t(off), end - uint64_t(off), who);
}

// ---- copies ------------------------------------------------------------------

Result<size_t> Fs::copy_data(OpenFile* in, off_t off_in, OpenFile* out, off_t off_out, size_t len,
                             const bd::Actor& who) {
    std::vector<char> buf(kMaxIo);
    size_t done = 0;
    while (done < len) {
        size_t want = std::min(kMaxIo, len - done);
        Result<size_t> n = read(in, buf.data(), want, off_in + off_t(done));
        if (!n) return n;
        if (*n == 0) break;
        if (Result<size_t> w = write(out, buf.data(), *n, off_out + off_t(done), who); !w) return w;
        done += *n;
    }
    return done;
}

// The whole source into a fresh, empty destination that only this open file
// holds: the core's clone_into makes the destination a copy-on-write clone of
// the source in one commit, keeping its id, owner and mode; the old LV, hidden
// under this descriptor, is reaped once the descriptor moves to the clone.
Result<size_t> Fs::clone_into(OpenFile* in, OpenFile* out, size_t len, const bd::Actor& who) {
    std::string src_id, dst_id;
    std::shared_ptr<VolumeState> dst_st = state_of(out, &dst_id);
    if (!state_of(in, &src_id) || !dst_st) return bd::fail(EBADF, "file is not open");
    Result<std::shared_ptr<const Tree>> tree = scan();
    if (!tree) return tl::unexpected(tree.error());
    const bd::Volume* src = (*tree)->find_id(src_id);
    const bd::Volume* dst = (*tree)->find_id(dst_id);
    if (!src || !dst) return bd::fail(ENOENT, "volume is gone");
    uint64_t src_size = src->size;
    // `out` is the one descriptor bdfs holds on dst (swapping keeps it so).
    Result<bd::Placed> placed = ex_.clone_into({src->path, src_id}, {dst->path, dst_id}, who, 1);
    if (!placed) return tl::unexpected(placed.error());
    bd::Fd fd(::open(ex_.device(placed->volume).c_str(),
                     O_RDWR | O_CLOEXEC | (out->direct ? O_DIRECT : 0)));
    bool moved = fd && dup3(fd.get(), out->fd, O_CLOEXEC) >= 0;
    int err = errno;
    out->lost = !moved;  // the clone is committed; only this descriptor could not follow it
    // Asked once here, not on each of the copier's zero writes that follow.
    bool zeroes = moved && pool_zeroes(out);
    {
        std::lock_guard<std::mutex> lock(volumes_mutex_);
        dst_st->unsized = false;
        dst_st->clone_of = src_id;
        dst_st->clone_next = std::min<uint64_t>({len, src_size, kMaxReply});
        dst_st->clone_zeroes = zeroes;
    }
    // The old data is unheld once `out` moved; else it goes at out's close.
    if (!placed->hidden_lv.empty()) {
        if (!moved)
            note_hidden(dst_st, placed->hidden_lv);
        else if (Result<void> r = ex_.reap(placed->hidden_lv); !r)
            log_error("remove the data a clone replaced", r.error());
    }
    if (!moved)
        return bd::fail(EIO, fmt::format("cannot follow the clone to {}: {}",
                                         ex_.device(placed->volume), strerror(err)));
    return size_t(std::min<uint64_t>({len, src_size, kMaxReply}));
}

// The file's size, and where its data ends: a thin LV reads zeros past its
// highest mapped block. Holes below it are not known without the pool's
// metadata, so they are reported as data, which lseek allows.
Result<std::pair<uint64_t, uint64_t>> Fs::data_extent(OpenFile* f) {
    if (f->lost) return bd::fail(EIO, "the volume of this open file was lost");
    std::shared_ptr<VolumeState> st = state_of(f);
    {
        std::lock_guard<std::mutex> lock(volumes_mutex_);
        if (st && st->unsized) return std::pair<uint64_t, uint64_t>(0, 0);
    }
    Result<uint64_t> size = device_size(f->fd);
    if (!size) return tl::unexpected(size.error());
    uint64_t end = *size;
    // Data another opener of the LV wrote may still sit in its page cache, not
    // yet mapped in the pool: write it back first, so the mappings include it.
    if (sync_file_range(f->fd, 0, 0,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER) < 0)
        return bd::fail(errno, fmt::format("writeback before asking where the data ends: {}",
                                           strerror(errno)));
    struct stat dev;
    if (!f->thick && fstat(f->fd, &dev) == 0 && S_ISBLK(dev.st_mode))
        if (Result<std::optional<uint64_t>> e = bd::dm_thin_data_end(dev.st_rdev); e && *e)
            end = std::min(end, **e);
    return std::pair<uint64_t, uint64_t>(*size, end);
}

Result<off_t> Fs::seek(OpenFile* f, off_t off, int whence) {
    if (whence != SEEK_DATA && whence != SEEK_HOLE)
        return bd::fail(EINVAL, fmt::format("lseek whence {}", whence));
    Result<std::pair<uint64_t, uint64_t>> extent = data_extent(f);
    if (!extent) return tl::unexpected(extent.error());
    auto [size, end] = *extent;
    if (off < 0 || uint64_t(off) >= size) return bd::fail(ENXIO, "past the end of the file");
    if (whence == SEEK_DATA) {
        if (uint64_t(off) >= end) return bd::fail(ENXIO, "no data past this offset");
        return off;
    }
    return uint64_t(off) < end ? off_t(end) : off;
}

Result<size_t> Fs::copy_file_range(OpenFile* in, off_t off_in, OpenFile* out, off_t off_out,
                                   size_t len, const bd::Actor& who) {
    std::string src_id, dst_id;
    std::shared_ptr<VolumeState> src_st = state_of(in, &src_id), dst_st = state_of(out, &dst_id);
    if (!src_st || !dst_st) return bd::fail(EBADF, "file is not open");
    bool whole, done_by_clone;
    {
        std::lock_guard<std::mutex> lock(volumes_mutex_);
        whole = off_in == 0 && off_out == 0 && dst_st->unsized && dst_st->opens == 1 &&
                !dst_st->swapping && !src_st->unsized && src_id != dst_id;
        dst_st->swapping = whole;
        // The rest of a copy whose start we already cloned (replies are capped at 4 GiB).
        // Only where that copy goes on: a copy from anywhere else (again
        // from 0, after the source changed or the target was emptied) copies.
        done_by_clone = off_in == off_out && dst_st->clone_of == src_id && !src_id.empty() &&
                        uint64_t(off_in) == dst_st->clone_next;
    }
    if (whole) {
        Result<size_t> cloned = bd::fail(EOPNOTSUPP, "not the whole source");
        // All of the source, or all of its data: with SEEK_HOLE, `cp
        // --sparse=never` hands over the data up to its end and then writes
        // the zeros past it. The clone has the source's size at once (which a
        // range that stops past the data but short of the end does not ask
        // for: such a copy comes out as long as its source, zeros past the
        // range). Copying instead would grow the file write by write, and
        // bdfs grows appending writers in steps, past the source's size.
        Result<std::pair<uint64_t, uint64_t>> src = data_extent(in);
        if (src && (len >= src->first || (src->second > 0 && len >= src->second)))
            cloned = clone_into(in, out, len, who);
        {
            std::lock_guard<std::mutex> lock(volumes_mutex_);
            dst_st->swapping = false;
        }
        swap_done_.notify_all();
        if (cloned || cloned.error().code != EOPNOTSUPP) return cloned;  // thick: copy below
    }
    if (done_by_clone) {
        Result<uint64_t> size = device_size(in->fd);
        if (!size) return tl::unexpected(size.error());
        uint64_t left = uint64_t(off_in) < *size ? *size - uint64_t(off_in) : 0;
        uint64_t n = std::min<uint64_t>({len, left, kMaxReply});
        std::lock_guard<std::mutex> lock(volumes_mutex_);
        dst_st->clone_next += n;
        return size_t(n);
    }
    return copy_data(in, off_in, out, off_out, std::min<uint64_t>(len, kMaxReply), who);
}

}  // namespace bdfs
