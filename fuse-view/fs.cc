// Names, attributes and the node table. Data I/O is in io.cc.
#include "fs.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "dirs.h"
#include "fd.h"
#include "dm.h"
#include "names.h"
#include "text.h"
#include "thin_status.h"

namespace bdfs {

namespace {

// The tree the observer built from the scan CatalogCache::get() runs on this
// thread, for get() to return (only get() asks: a change's scans keep none).
thread_local bool t_want_filed = false;
thread_local std::shared_ptr<const Tree> t_filed;

// Stable across mounts: bd ids are 64-bit hex; directories hash their path.
ino_t stable_ino(Kind kind, const std::string& key) {
    uint64_t n = kind == Kind::kDir ? bd::fnv1a64("dir:" + key) : bd::fnv1a64("vol:" + key);
    if (kind == Kind::kSnapLink) n ^= 0x5bd1e995ull << 20;
    return n < 2 ? n + 2 : n;
}

bool has_unsized(const bd::Volume& v) {
    return v.xattrs.count(kUnsizedXattr) > 0;
}

// The namespaces bdfs keeps: user.*, and trusted.*, which the kernel lets only
// CAP_SYS_ADMIN read or write (libvirt's DAC driver remembers a disk's owner
// there). bdfs's own bookkeeping ("bdfs.*") and security.*/system.* are not
// offered: there is no LSM or ACL behind them.
bool is_kept_xattr(const std::string& name) {
    return name.rfind("user.", 0) == 0 || name.rfind("trusted.", 0) == 0;
}

}  // namespace

void log_error(const char* op, const bd::Error& e) {
    if (e.code == ENOENT || e.code == EEXIST || e.code == ENODATA || e.code == ENOTEMPTY ||
        e.code == ENOTDIR || e.code == EISDIR)
        return;
    fuse_log(FUSE_LOG_ERR, "bdfs: %s: %s (%s)\n", op, e.message.c_str(), bd::errno_name(e.code));
}

Result<bd::CommandOutput> ThreadSafeRunner::run(const bd::Argv& argv) {
    bd::SystemRunner runner;
    return runner.run(argv);
}

Fs::Fs(bd::Export ex, Options opts, const std::string& backup_dir)
    : ex_(std::move(ex)),
      opts_(std::move(opts)),
      space_(ex_.vg(), ex_.thinpool()),
      cache_(ex_, opts_.cache, backup_dir) {
    nodes_[FUSE_ROOT_ID] = Node{{Kind::kDir, ""}, 1};
    inos_[{Kind::kDir, ""}] = FUSE_ROOT_ID;
    if (Result<bd::Catalog> cat = ex_.scan(); cat && cat->pool && cat->pool->chunk_size)
        chunk_size_ = cat->pool->chunk_size;
    space_.set_block_bytes(chunk_size_);
    space_.set_threshold(ex_.threshold());
    ex_.set_default_dir(bd::DirAttrs{0, 0, uint32_t(opts_.dir_mode)});
}

bd::Actor Fs::actor(uid_t uid, gid_t gid, std::vector<uint32_t> groups) const {
    bd::Actor a{uid, gid, std::move(groups), false};
    a.reserve = uid == 0 || (opts_.resuid && uid == *opts_.resuid) ||
                (opts_.resgid && a.in_group(*opts_.resgid));
    return a;
}

// ---- node table ------------------------------------------------------------

fuse_ino_t Fs::remember(const NodeKey& key) {
    std::lock_guard<std::mutex> lock(nodes_mutex_);
    auto it = inos_.find(key);
    fuse_ino_t ino = it != inos_.end() ? it->second : next_ino_++;
    if (it == inos_.end()) {
        inos_[key] = ino;
        nodes_[ino] = Node{key, 0};
    }
    ++nodes_[ino].nlookup;
    return ino;
}

std::optional<Fs::NodeKey> Fs::key_of(fuse_ino_t ino) {
    std::lock_guard<std::mutex> lock(nodes_mutex_);
    auto it = nodes_.find(ino);
    if (it == nodes_.end()) return std::nullopt;
    return it->second.key;
}

void Fs::forget(fuse_ino_t ino, uint64_t nlookup) {
    std::lock_guard<std::mutex> lock(nodes_mutex_);
    auto it = nodes_.find(ino);
    if (it == nodes_.end() || ino == FUSE_ROOT_ID) return;
    it->second.nlookup -= std::min(nlookup, it->second.nlookup);
    if (it->second.nlookup > 0) return;
    inos_.erase(it->second.key);
    nodes_.erase(it);
}

// The kernel keeps its inode when we rename a directory or replace a volume.
void Fs::rekey(const NodeKey& from, const NodeKey& to) {
    std::lock_guard<std::mutex> lock(nodes_mutex_);
    auto it = inos_.find(from);
    if (it == inos_.end() || inos_.count(to)) return;
    fuse_ino_t ino = it->second;
    inos_.erase(it);
    inos_[to] = ino;
    nodes_[ino].key = to;
}

// ---- resolving -----------------------------------------------------------

CatalogCache::CatalogCache(bd::Export& ex, bool enabled, const std::string& backup_dir) : ex_(ex) {
    std::string backup = backup_dir + "/" + ex.vg();
    struct stat st {};
    if (enabled && !backup_dir.empty() && ::stat(backup.c_str(), &st) == 0) backup_ = backup;
    else if (enabled)
        fuse_log(FUSE_LOG_WARNING, "bdfs: no LVM metadata backup of VG %s (backup/backup = 0?): "
                                   "every request runs lvs\n",
                 ex.vg().c_str());
    if (backup_.empty()) return;
    ex_.set_scan_observer([this] {
        std::optional<Key> before = key();
        // Called inside the core's scans, also in the middle of a change: it
        // must not throw, and filing nothing only costs a later `lvs`.
        return [this, before](const bd::Catalog& cat) noexcept {
            try {
                auto tree = std::make_shared<const Tree>(cat);
                file(before, tree);
                if (t_want_filed) t_filed = std::move(tree);
            } catch (...) {
            }
        };
    });
}

CatalogCache::~CatalogCache() { ex_.set_scan_observer({}); }

void CatalogCache::file(std::optional<Key> key, std::shared_ptr<const Tree> tree) {
    std::lock_guard<std::mutex> lock(mutex_);
    key_ = key;
    tree_ = std::move(tree);
}

namespace {

uint64_t uevent_seqnum() {
    char buf[32] = {};
    bd::Fd fd(::open("/sys/kernel/uevent_seqnum", O_RDONLY | O_CLOEXEC));
    if (!fd || ::read(fd.get(), buf, sizeof buf - 1) <= 0) return 0;
    return std::strtoull(buf, nullptr, 10);
}

}  // namespace

std::optional<CatalogCache::Key> CatalogCache::key() {
    struct stat st {};
    uint64_t uevents = uevent_seqnum();  // first: an activation racing the stat rescans later
    if (backup_.empty() || uevents == 0 || ::stat(backup_.c_str(), &st) != 0) return std::nullopt;
    return Key{st.st_ino, st.st_size, st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec,
               uevents};
}

Result<std::shared_ptr<const Tree>> CatalogCache::get() {
    std::optional<Key> now = key();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (now && key_ == now && tree_) return tree_;
    }
    struct Asking {  // also when the scan throws
        Asking() {
            t_filed.reset();
            t_want_filed = true;
        }
        ~Asking() { t_want_filed = false; }
    } asking;
    Result<bd::Catalog> cat = ex_.scan();  // the observer files it
    if (!cat) return tl::unexpected(cat.error());
    // This scan's own tree: one another thread filed meanwhile may have been
    // read before this thread's last change.
    if (t_filed) return std::exchange(t_filed, nullptr);
    return std::make_shared<const Tree>(std::move(*cat));
}

Result<std::shared_ptr<const Tree>> Fs::scan() {
    Result<std::shared_ptr<const Tree>> tree = cache_.get();
    // `bdctl export set --threshold` applies to a mounted export at once.
    if (tree && (*tree)->catalog().pool)
        if (std::optional<std::string> t = bd::tag_value((*tree)->catalog().pool->vg_tags, "bd.threshold"))
            space_.set_threshold(std::atoi(t->c_str()));
    return tree;
}

Result<Fs::Resolved> Fs::resolve(fuse_ino_t ino) {
    std::optional<NodeKey> key = key_of(ino);
    if (!key) return bd::fail(ESTALE, fmt::format("unknown inode {}", ino));
    Result<std::shared_ptr<const Tree>> tree = scan();
    if (!tree) return tl::unexpected(tree.error());
    if (key->kind == Kind::kDir) {
        if (!(*tree)->is_dir(key->key))
            return bd::fail(ENOENT, fmt::format("directory \"{}\" is gone", key->key));
        return Resolved{*tree, (*tree)->dir_entry(bd::base_name(key->key), key->key)};
    }
    const bd::Volume* v = (*tree)->find_id(key->key);
    if (!v) return bd::fail(ENOENT, fmt::format("volume {} is gone", key->key));
    Entry e{bd::base_name(v->path), key->kind, v->path, v};
    return Resolved{*tree, e};
}

Result<Fs::Resolved> Fs::resolve_dir(fuse_ino_t ino) {
    Result<Resolved> r = resolve(ino);
    if (r && r->entry.kind != Kind::kDir)
        return bd::fail(ENOTDIR, fmt::format("\"{}\" is not a directory", r->entry.path));
    return r;
}

Result<bd::Volume> Fs::volume_of(const std::string& id) {
    Result<std::shared_ptr<const Tree>> tree = scan();
    if (!tree) return tl::unexpected(tree.error());
    const bd::Volume* v = (*tree)->find_id(id);
    if (!v) return bd::fail(ENOENT, fmt::format("volume {} is gone", id));
    return *v;
}

std::optional<bd::DirAttrs> Fs::setgid_parent(fuse_ino_t parent) {
    Result<Resolved> dir = resolve_dir(parent);
    if (dir && dir->entry.dir && (dir->entry.dir->mode & S_ISGID)) return *dir->entry.dir;
    return std::nullopt;
}

Result<std::string> Fs::new_path(fuse_ino_t parent, const std::string& name) {
    std::optional<NodeKey> key = key_of(parent);
    if (!key || key->kind != Kind::kDir) return bd::fail(ENOTDIR, "parent is not a directory");
    if (is_reserved(key->key, name))
        return bd::fail(EPERM, fmt::format("\"{}\" is reserved by bdfs", name));
    std::string path = join(key->key, name);
    Result<std::string> norm = bd::normalize_path(path);
    if (!norm) return tl::unexpected(norm.error());
    return path;
}

struct stat Fs::stat_of(const Entry& e) {
    struct stat st {};
    st.st_blksize = blksize_t(chunk_size_);
    if (e.kind == Kind::kDir) {
        st.st_ino = stable_ino(Kind::kDir, e.path);
        st.st_mode = S_IFDIR | (e.dir ? e.dir->mode : opts_.dir_mode);
        if (e.dir) {
            st.st_uid = e.dir->uid;
            st.st_gid = e.dir->gid;
        }
        st.st_nlink = 2;
        st.st_size = 4096;
        st.st_mtim.tv_sec = st.st_ctim.tv_sec = st.st_atim.tv_sec = started_;  // not kept
        return st;
    }
    const bd::Volume& v = *e.volume;
    st.st_ino = stable_ino(e.kind, v.id);
    st.st_nlink = 1;
    st.st_uid = v.uid;
    st.st_gid = v.gid;
    st.st_mtim.tv_sec = st.st_atim.tv_sec = v.mtime;
    st.st_ctim.tv_sec = std::max(v.ctime, v.mtime);
    if (e.kind == Kind::kSnapLink) {
        st.st_mode = S_IFLNK | 0777;
        st.st_size = off_t(link_target(v).size());
        return st;
    }
    st.st_mode = S_IFREG | (v.mode & 07777);
    if (v.read_only) st.st_mode &= ~mode_t(0222);
    st.st_size = has_unsized(v) ? 0 : off_t(v.size);
    uint64_t mapped = v.allocated.value_or(0);
    if (v.type != bd::VolumeType::kThick && v.active)
        if (Result<uint64_t> m = bd::dm_thin_mapped_bytes(bd::dm_name(ex_.vg(), v.lv)); m)
            mapped = *m;
    st.st_blocks = blkcnt_t(mapped / 512);
    return st;
}

fuse_entry_param Fs::entry_param(const Entry& e) {
    fuse_entry_param p{};
    NodeKey key{e.kind, e.kind == Kind::kDir ? e.path : e.volume->id};
    p.ino = remember(key);
    p.attr = stat_of(e);
    p.attr_timeout = opts_.attr_timeout;
    p.entry_timeout = opts_.entry_timeout;
    return p;
}

// ---- names -----------------------------------------------------------------

Result<fuse_entry_param> Fs::lookup(fuse_ino_t parent, const std::string& name) {
    if (name.size() > bd::kMaxComponentLength)
        return bd::fail(ENAMETOOLONG, fmt::format("name of {} bytes", name.size()));
    Result<Resolved> dir = resolve_dir(parent);
    if (!dir) return tl::unexpected(dir.error());
    std::optional<Entry> e = dir->tree->lookup(dir->entry.path, name);
    if (!e) return bd::fail(ENOENT, fmt::format("\"{}\" not found", join(dir->entry.path, name)));
    return entry_param(*e);
}

Result<struct stat> Fs::getattr(fuse_ino_t ino) {
    Result<Resolved> r = resolve(ino);
    if (!r) return tl::unexpected(r.error());
    return stat_of(r->entry);
}

Result<std::string> Fs::readlink(fuse_ino_t ino) {
    Result<Resolved> r = resolve(ino);
    if (!r) return tl::unexpected(r.error());
    if (r->entry.kind != Kind::kSnapLink) return bd::fail(EINVAL, "not a symlink");
    return link_target(*r->entry.volume);
}

Result<fuse_entry_param> Fs::mkdir(fuse_ino_t parent, const std::string& name, mode_t mode,
                                   const bd::Actor& who) {
    Result<std::string> path = new_path(parent, name);
    if (!path) return tl::unexpected(path.error());
    bd::DirAttrs a{who.uid, who.gid, uint32_t(mode & 07777)};
    if (std::optional<bd::DirAttrs> p = setgid_parent(parent)) {  // BSD group semantics
        a.gid = p->gid;
        a.mode |= S_ISGID;
    }
    if (Result<void> ok = ex_.make_dir(*path, a, who); !ok) return tl::unexpected(ok.error());
    // A path too long for the attrs tag was made without them (dir_ops.cc).
    bool kept = bool(bd::dir_attrs_tag(*path, a));
    return entry_param(Entry{name, Kind::kDir, *path, nullptr, kept ? &a : nullptr});
}

Result<void> Fs::rmdir(fuse_ino_t parent, const std::string& name) {
    Result<Resolved> dir = resolve_dir(parent);
    if (!dir) return tl::unexpected(dir.error());
    std::optional<Entry> e = dir->tree->lookup(dir->entry.path, name);
    if (!e) return bd::fail(ENOENT, "no such directory");
    if (e->kind != Kind::kDir) return bd::fail(ENOTDIR, "not a directory");
    return ex_.remove_dir(e->path);
}

// unlink(2) and rename(2) have no ENOTEMPTY for files: snapshots pin a volume.
bd::Error pinned_is_busy(bd::Error e) {
    if (e.code == ENOTEMPTY) e.code = EBUSY;
    return e;
}

// A volume bdfs holds open is hidden at once (the data lives on until the
// last close, as POSIX wants) and reaped then; one nobody holds is deleted.
// Either is one commit in the core, refused while a program outside bdfs (a
// VM) holds the volume open, or while it has snapshots.
Result<void> Fs::remove_file(const Entry& e) {
    const bd::Volume& v = *e.volume;
    bd::VolumeRef ref{v.path, v.id};
    std::shared_ptr<VolumeState> st = state_by_id(v.id);
    int held = opens_of(st);
    if (held == 0) {
        if (Result<std::vector<std::string>> gone = ex_.remove_volume(ref, false); !gone)
            return tl::unexpected(pinned_is_busy(gone.error()));
        return {};
    }
    Result<std::string> hidden = ex_.hide(ref, held);
    if (!hidden) return tl::unexpected(pinned_is_busy(hidden.error()));
    note_hidden(st, *hidden);
    return {};
}

Result<void> Fs::unlink(fuse_ino_t parent, const std::string& name) {
    Result<Resolved> dir = resolve_dir(parent);
    if (!dir) return tl::unexpected(dir.error());
    std::optional<Entry> e = dir->tree->lookup(dir->entry.path, name);
    if (!e || e->path != join(dir->entry.path, name)) return bd::fail(ENOENT, "no such file");
    if (e->kind == Kind::kDir) return bd::fail(EISDIR, "is a directory");
    return remove_file(*e);
}

// The kernel does not resolve a symlink's text, so bdfs names the origin to the
// core, which checks that the caller may read it and search the way to it.
Result<fuse_entry_param> Fs::symlink(const std::string& text, fuse_ino_t parent,
                                     const std::string& name, const bd::Actor& who) {
    Result<std::string> path = new_path(parent, name);
    if (!path) return tl::unexpected(path.error());
    Result<std::string> target = resolve_target(bd::parent_dir(*path), text, opts_.mountpoint);
    if (!target) return tl::unexpected(target.error());
    Result<std::shared_ptr<const Tree>> tree = scan();
    if (!tree) return tl::unexpected(tree.error());
    std::optional<Entry> origin = (*tree)->at(*target);
    if (!origin)
        return bd::fail(ENOENT, fmt::format("cannot snapshot \"{}\": no such file", *target));
    if (origin->kind != Kind::kFile)
        return bd::fail(EPERM,
                        fmt::format("bdfs symlinks are snapshots: \"{}\" is not a file", *target));
    if (*path == origin->volume->path + "@" + name)
        return bd::fail(EINVAL, fmt::format("\"{}\" would name the snapshot itself; choose "
                                            "another link name",
                                            *path));
    Result<bd::Volume> snap =
        ex_.snapshot({origin->volume->path, origin->volume->id}, *path, name, who);
    if (!snap) return tl::unexpected(snap.error());
    return entry_param(Entry{name, kind_of(*snap), *path, &*snap});
}

Result<fuse_entry_param> Fs::link(fuse_ino_t ino, fuse_ino_t parent, const std::string& name,
                                  const bd::Actor& who) {
    Result<Resolved> src = resolve(ino);
    if (!src) return tl::unexpected(src.error());
    if (src->entry.kind != Kind::kFile)
        return bd::fail(EPERM, "only files can be cloned with ln (ln -s makes snapshots)");
    Result<std::string> path = new_path(parent, name);
    if (!path) return tl::unexpected(path.error());
    const bd::Volume& v = *src->entry.volume;
    // One core call: the clone carries the source's bdfs.unsized note.
    Result<bd::Volume> clone = ex_.clone({v.path, v.id}, *path, false, {}, who);
    if (!clone) return tl::unexpected(clone.error());
    return entry_param(Entry{name, Kind::kFile, *path, &*clone});
}

// POSIX rename replaces an existing target: the core's replace, one commit.
Result<void> Fs::rename(fuse_ino_t parent, const std::string& name, fuse_ino_t newparent,
                        const std::string& newname, unsigned flags, const bd::Actor& who) {
    if (flags & ~unsigned(RENAME_NOREPLACE))
        return bd::fail(EINVAL, "only plain and RENAME_NOREPLACE renames are supported");
    Result<Resolved> dir = resolve_dir(parent);
    if (!dir) return tl::unexpected(dir.error());
    std::optional<Entry> src = dir->tree->lookup(dir->entry.path, name);
    if (!src || src->path != join(dir->entry.path, name)) return bd::fail(ENOENT, "no such file");
    Result<std::string> dst = new_path(newparent, newname);
    if (!dst) return tl::unexpected(dst.error());
    if (std::optional<Entry> old = dir->tree->at(*dst); old && old->path == *dst) {
        if (flags & RENAME_NOREPLACE) return bd::fail(EEXIST, "target exists");
        if (old->path == src->path) return {};
        if (src->kind == Kind::kDir && old->kind != Kind::kDir)
            return bd::fail(ENOTDIR, "cannot replace a file with a directory");
        if (src->kind != Kind::kDir && old->kind == Kind::kDir)
            return bd::fail(EISDIR, "cannot replace a directory with a file");
        if (old->kind != Kind::kDir) {
            std::shared_ptr<VolumeState> st = state_by_id(old->volume->id);
            Result<bd::Placed> placed =
                ex_.replace({src->path, src->volume->id}, {old->path, old->volume->id}, who,
                            opens_of(st));
            if (!placed) return tl::unexpected(pinned_is_busy(placed.error()));
            if (!placed->hidden_lv.empty()) note_hidden(st, placed->hidden_lv);
            return {};
        }
    }
    if (src->kind != Kind::kDir) {
        Result<bd::Volume> moved = ex_.rename({src->path, src->volume->id}, *dst, who);
        if (!moved) return tl::unexpected(moved.error());
        return {};
    }
    if (Result<void> ok = ex_.rename_dir(src->path, *dst, who); !ok) return ok;
    // Directory nodes are keyed by path: keep the kernel's inodes valid.
    std::vector<NodeKey> moved;
    {
        std::lock_guard<std::mutex> lock(nodes_mutex_);
        for (const auto& [key, ino] : inos_)
            if (key.kind == Kind::kDir && bd::is_within(key.key, src->path)) moved.push_back(key);
    }
    for (const NodeKey& k : moved) rekey(k, {Kind::kDir, bd::reparent(k.key, src->path, *dst)});
    return {};
}

Result<std::vector<DirEntry>> Fs::readdir(fuse_ino_t ino) {
    Result<Resolved> dir = resolve_dir(ino);
    if (!dir) return tl::unexpected(dir.error());
    std::vector<DirEntry> out;
    DirEntry self{".", stat_of(dir->entry)};
    out.push_back(self);
    self.name = "..";
    out.push_back(self);
    for (const Entry& e : dir->tree->list(dir->entry.path))
        out.push_back(DirEntry{e.name, stat_of(e)});
    return out;
}

Result<struct statvfs> Fs::statfs() {
    Result<bd::ThinPoolStatus> st = bd::dm_thin_pool_status_noflush(ex_.vg(), ex_.thinpool());
    if (!st) return tl::unexpected(st.error());
    struct statvfs s {};
    s.f_bsize = s.f_frsize = chunk_size_;
    s.f_blocks = st->total_data_blocks;
    s.f_bfree = s.f_bavail = st->total_data_blocks - st->used_data_blocks;
    s.f_files = st->total_metadata_blocks;
    s.f_ffree = s.f_favail = st->total_metadata_blocks - st->used_metadata_blocks;
    s.f_namemax = bd::kMaxComponentLength;
    return s;
}

// ---- attributes ------------------------------------------------------------

Result<void> Fs::set_unsized(const bd::Volume& v, bool unsized) {
    if (has_unsized(v) == unsized) return {};
    bd::Attrs a;
    a.xattrs[kUnsizedXattr] = unsized ? std::optional<std::string>("1") : std::nullopt;
    if (Result<bd::Volume> ok = ex_.set_attrs({v.path, v.id}, a); !ok)
        return tl::unexpected(ok.error());
    std::lock_guard<std::mutex> lock(volumes_mutex_);
    if (auto it = volumes_.find(v.id); it != volumes_.end()) it->second->unsized = unsized;
    return {};
}

// Size 0 empties the file (discards its data, keeps one extent); larger sizes
// grow the LV; smaller ones are refused unless mounted with allow_shrink.
Result<void> Fs::set_size(const bd::Volume& v, uint64_t size, const bd::Actor& who) {
    if (v.read_only) return bd::fail(EROFS, fmt::format("\"{}\" is a read-only snapshot", v.path));
    if (size == 0) return empty_volume(v);
    uint64_t ext = ex_.extent_size();
    uint64_t want = (size + ext - 1) / ext * ext;
    bool unsized = has_unsized(v);
    if (want < v.size && !unsized && !opts_.allow_shrink)
        return bd::fail(EINVAL, fmt::format("refusing to shrink \"{}\" from {} to {} bytes: data "
                                            "past the new end would be lost (mount with -o "
                                            "allow_shrink to allow it)",
                                            v.path, v.size, want));
    if (want > v.size || (want < v.size && !unsized)) {
        Result<bd::Volume> r = ex_.resize({v.path, v.id}, want, want < v.size, who);
        if (!r) return tl::unexpected(r.error());
    }
    space_.invalidate();
    return set_unsized(v, false);
}

Result<struct stat> Fs::setattr(fuse_ino_t ino, const struct stat& attr, int to_set,
                                OpenFile* file, const bd::Actor& who) {
    (void)file;
    Result<Resolved> r = resolve(ino);
    if (!r) return tl::unexpected(r.error());
    const int owner = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID;
    if (r->entry.kind == Kind::kDir) {
        if (to_set & FUSE_SET_ATTR_SIZE) return bd::fail(EISDIR, "is a directory");
        if (!(to_set & owner)) return stat_of(r->entry);  // times of directories are not kept
        bd::DirAttrChange c;  // only what was asked: the core merges it under its lock
        if (to_set & FUSE_SET_ATTR_MODE) c.mode = attr.st_mode & 07777;
        if (to_set & FUSE_SET_ATTR_UID) c.uid = attr.st_uid;
        if (to_set & FUSE_SET_ATTR_GID) c.gid = attr.st_gid;
        Result<bd::DirAttrs> ok = ex_.set_dir_attrs(r->entry.path, c, who);
        if (!ok) return tl::unexpected(ok.error());
        return getattr(ino);
    }
    if (r->entry.kind != Kind::kFile) {
        if (to_set & (owner | FUSE_SET_ATTR_SIZE))
            return bd::fail(EPERM, fmt::format("\"{}\": bdfs keeps no owner or mode for "
                                               "snapshot links",
                                               r->entry.path));
        return stat_of(r->entry);  // times of links are not kept
    }
    bd::Volume v = *r->entry.volume;
    if (to_set & FUSE_SET_ATTR_SIZE)
        if (Result<void> ok = set_size(v, uint64_t(attr.st_size), who); !ok)
            return tl::unexpected(ok.error());
    bd::Attrs a;
    if (to_set & FUSE_SET_ATTR_MODE) a.mode = attr.st_mode & 07777;
    if (to_set & FUSE_SET_ATTR_UID) a.uid = attr.st_uid;
    if (to_set & FUSE_SET_ATTR_GID) a.gid = attr.st_gid;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
        a.mtime = time(nullptr);
    else if (to_set & FUSE_SET_ATTR_MTIME)
        a.mtime = attr.st_mtim.tv_sec;
    // On a volume bd did not make, root's chmod or chown adopts it (the core).
    if (a.mode || a.uid || a.gid || a.mtime)
        if (Result<bd::Volume> ok = ex_.set_attrs({v.path, v.id}, a, who); !ok)
            return tl::unexpected(ok.error());
    return getattr(ino);
}

Result<std::string> Fs::getxattr(fuse_ino_t ino, const std::string& name) {
    Result<Resolved> r = resolve(ino);
    if (!r) return tl::unexpected(r.error());
    if (r->entry.kind == Kind::kDir || !is_kept_xattr(name))
        return bd::fail(ENODATA, "no such attribute");
    auto it = r->entry.volume->xattrs.find(name);
    if (it == r->entry.volume->xattrs.end()) return bd::fail(ENODATA, "no such attribute");
    return it->second;
}

Result<std::string> Fs::listxattr(fuse_ino_t ino, bool privileged) {
    Result<Resolved> r = resolve(ino);
    if (!r) return tl::unexpected(r.error());
    std::string out;
    if (r->entry.kind == Kind::kDir) return out;
    for (const auto& [name, value] : r->entry.volume->xattrs)
        if (name.rfind("user.", 0) == 0 || (privileged && name.rfind("trusted.", 0) == 0))
            out += name + '\0';  // like ext4: trusted.* names only for CAP_SYS_ADMIN
    return out;
}

Result<void> Fs::setxattr(fuse_ino_t ino, const std::string& name, const std::string& value,
                          int flags, const bd::Actor& who) {
    if (!is_kept_xattr(name))
        return bd::fail(ENOTSUP,
                        fmt::format("xattr \"{}\": bdfs keeps user.* and trusted.* attributes only",
                                    name));
    Result<Resolved> r = resolve(ino);
    if (!r) return tl::unexpected(r.error());
    if (r->entry.kind == Kind::kDir)
        return bd::fail(ENOTSUP, "bdfs keeps xattrs on files only, not on directories");
    bool exists = r->entry.volume->xattrs.count(name) > 0;
    if ((flags & XATTR_CREATE) && exists) return bd::fail(EEXIST, "attribute exists");
    if ((flags & XATTR_REPLACE) && !exists) return bd::fail(ENODATA, "no such attribute");
    bd::Attrs a;
    a.xattrs[name] = value;
    // ERANGE past one tag, ENOSPC past a volume's xattr space (the core).
    const bd::Volume& v = *r->entry.volume;
    if (Result<bd::Volume> ok = ex_.set_attrs({v.path, v.id}, a, who); !ok)
        return tl::unexpected(ok.error());
    return {};
}

Result<void> Fs::removexattr(fuse_ino_t ino, const std::string& name) {
    Result<Resolved> r = resolve(ino);
    if (!r) return tl::unexpected(r.error());
    if (r->entry.kind == Kind::kDir || !is_kept_xattr(name) || !r->entry.volume->xattrs.count(name))
        return bd::fail(ENODATA, "no such attribute");
    bd::Attrs a;
    a.xattrs[name] = std::nullopt;
    const bd::Volume& v = *r->entry.volume;
    if (Result<bd::Volume> ok = ex_.set_attrs({v.path, v.id}, a); !ok)
        return tl::unexpected(ok.error());
    return {};
}

// ---- the unlinked area -------------------------------------------------------

void Fs::reap_unlinked() {
    // What a killed bdfs or bdctl left: finished or undone, as a journal is
    // replayed at mount, with hidden volumes whose last opener died...
    if (Result<std::vector<bd::Repair>> r = ex_.fsck(false); !r)
        log_error("finish interrupted operations (fsck)", r.error());
    else
        for (const bd::Repair& done : *r)
            fuse_log(FUSE_LOG_NOTICE, "bdfs: fsck: %s: %s\n", bd::printable(done.lv).c_str(),
                     bd::printable(done.action).c_str());
    // ...and those an older bdfs kept in its unlinked area.
    Result<std::shared_ptr<const Tree>> tree = scan();
    if (!tree) return;
    for (const bd::Volume& v : (*tree)->catalog().volumes)
        if (bd::is_within(v.path, kUnlinkedDir))
            if (Result<std::vector<std::string>> r = ex_.remove_volume(v.path, false); !r)
                log_error("reap unlinked volume", r.error());
}

}  // namespace bdfs
