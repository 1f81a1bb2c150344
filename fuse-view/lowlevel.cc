// FUSE callbacks: thin adapters in the style of libfuse's passthrough_hp.cc.
// Each calls one Fs method and replies exactly once; no exception reaches libfuse.
#include "lowlevel.h"

#include <cstring>
#include <exception>

namespace bdfs {

namespace {

constexpr size_t kMaxWrite = 1 << 20;

Fs& fs(fuse_req_t req) {
    return *static_cast<Fs*>(fuse_req_userdata(req));
}

OpenFile* file(fuse_file_info* fi) {
    return reinterpret_cast<OpenFile*>(fi->fh);
}

void reply_err(fuse_req_t req, const char* op, const bd::Error& e) {
    log_error(op, e);
    fuse_reply_err(req, e.code > 0 ? e.code : EIO);
}

// Runs `body`, which replies; an escaping exception becomes one EIO reply
// (body replies last, so it cannot have replied already).
template <typename Body>
void guarded(fuse_req_t req, const char* op, Body&& body) {
    try {
        body();
    } catch (const std::exception& e) {
        reply_err(req, op, bd::Error{EIO, std::string("internal error: ") + e.what()});
    } catch (...) {
        reply_err(req, op, bd::Error{EIO, "internal error"});
    }
}

// The caller as the core sees it. Its supplementary groups come from
// /proc/PID/status (fuse_req_getgroups); a caller gone meanwhile has none.
// Writes need them only to match -o resgid, so a write reads them only then.
bd::Actor who(fuse_req_t req, bool writing = false) {
    const fuse_ctx* ctx = fuse_req_ctx(req);
    if (writing && !fs(req).needs_groups(ctx->uid, ctx->gid)) return fs(req).actor(ctx->uid, ctx->gid, {});
    std::vector<gid_t> groups(64);
    int n = fuse_req_getgroups(req, int(groups.size()), groups.data());
    if (n > int(groups.size())) {
        groups.resize(size_t(n));
        n = fuse_req_getgroups(req, int(groups.size()), groups.data());
    }
    groups.resize(n > 0 ? std::min(size_t(n), groups.size()) : 0);
    return fs(req).actor(ctx->uid, ctx->gid, std::vector<uint32_t>(groups.begin(), groups.end()));
}

void reply_void(fuse_req_t req, const char* op, const Result<void>& r) {
    if (!r) return reply_err(req, op, r.error());
    fuse_reply_err(req, 0);
}

void reply_entry(fuse_req_t req, const char* op, const Result<fuse_entry_param>& r) {
    if (!r) return reply_err(req, op, r.error());
    fuse_reply_entry(req, &*r);
}

void sfs_init(void* userdata, fuse_conn_info* conn) {
    (void)userdata;
    conn->max_write = kMaxWrite;
    conn->want &= ~unsigned(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
    conn->want &= ~unsigned(FUSE_CAP_WRITEBACK_CACHE);
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    conn->time_gran = 1000000000;  // times are kept in whole seconds
}

void sfs_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "lookup", [&] { reply_entry(req, "lookup", fs(req).lookup(parent, name)); });
}

void sfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    fs(req).forget(ino, nlookup);
    fuse_reply_none(req);
}

void sfs_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    for (size_t i = 0; i < count; ++i) fs(req).forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

void sfs_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    (void)fi;
    guarded(req, "getattr", [&] {
        Result<struct stat> st = fs(req).getattr(ino);
        if (!st) return reply_err(req, "getattr", st.error());
        fuse_reply_attr(req, &*st, 0);
    });
}

void sfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                 fuse_file_info* fi) {
    guarded(req, "setattr", [&] {
        Result<struct stat> st =
            fs(req).setattr(ino, *attr, to_set, fi ? file(fi) : nullptr, who(req));
        if (!st) return reply_err(req, "setattr", st.error());
        fuse_reply_attr(req, &*st, 0);
    });
}

void sfs_readlink(fuse_req_t req, fuse_ino_t ino) {
    guarded(req, "readlink", [&] {
        Result<std::string> text = fs(req).readlink(ino);
        if (!text) return reply_err(req, "readlink", text.error());
        fuse_reply_readlink(req, text->c_str());
    });
}

void sfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    guarded(req, "mkdir", [&] {
        reply_entry(req, "mkdir", fs(req).mkdir(parent, name, mode, who(req)));
    });
}

void sfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "rmdir", [&] { reply_void(req, "rmdir", fs(req).rmdir(parent, name)); });
}

void sfs_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "unlink", [&] { reply_void(req, "unlink", fs(req).unlink(parent, name)); });
}

void sfs_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
    guarded(req, "symlink",
            [&] { reply_entry(req, "symlink", fs(req).symlink(link, parent, name, who(req))); });
}

void sfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
    guarded(req, "link",
            [&] { reply_entry(req, "link", fs(req).link(ino, parent, name, who(req))); });
}

void sfs_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                const char* newname, unsigned int flags) {
    guarded(req, "rename", [&] {
        reply_void(req, "rename",
                   fs(req).rename(parent, name, newparent, newname, flags, who(req)));
    });
}

void sfs_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "opendir", [&] {
        Result<std::vector<DirEntry>> list = fs(req).readdir(ino);
        if (!list) return reply_err(req, "opendir", list.error());
        fi->fh = reinterpret_cast<uint64_t>(new std::vector<DirEntry>(std::move(*list)));
        if (fuse_reply_open(req, fi) == -ENOENT)
            delete reinterpret_cast<std::vector<DirEntry>*>(fi->fh);
    });
}

void sfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    (void)ino;
    guarded(req, "readdir", [&] {
        const auto& list = *reinterpret_cast<std::vector<DirEntry>*>(fi->fh);
        std::vector<char> buf(size);
        size_t used = 0;
        for (size_t i = size_t(off); i < list.size(); ++i) {
            size_t n = fuse_add_direntry(req, buf.data() + used, size - used, list[i].name.c_str(),
                                         &list[i].st, off_t(i + 1));
            if (n > size - used) break;
            used += n;
        }
        fuse_reply_buf(req, buf.data(), used);
    });
}

void sfs_releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    (void)ino;
    delete reinterpret_cast<std::vector<DirEntry>*>(fi->fh);
    fuse_reply_err(req, 0);
}

// Every file is direct_io: no page cache in the FUSE inode (no stale data, one
// request per read/write up to max_write); the device's own cache still serves.
void sfs_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "open", [&] {
        Result<OpenFile*> f = fs(req).open(ino, fi->flags);
        if (!f) return reply_err(req, "open", f.error());
        fi->fh = reinterpret_cast<uint64_t>(*f);
        fi->direct_io = 1;
        if (fuse_reply_open(req, fi) == -ENOENT) fs(req).release(*f);
    });
}

void sfs_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                fuse_file_info* fi) {
    guarded(req, "create", [&] {
        OpenFile* f = nullptr;
        Result<fuse_entry_param> e =
            fs(req).create(parent, name, mode, who(req), fi->flags, &f);
        if (!e) return reply_err(req, "create", e.error());
        fi->fh = reinterpret_cast<uint64_t>(f);
        fi->direct_io = 1;
        if (fuse_reply_create(req, &*e, fi) == -ENOENT) fs(req).release(f);
    });
}

void sfs_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    (void)ino;
    guarded(req, "release", [&] {
        fs(req).release(file(fi));
        fuse_reply_err(req, 0);
    });
}

void sfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    (void)ino;
    guarded(req, "read", [&] {
        thread_local std::vector<char> buf;
        buf.resize(std::max(size, buf.size()));
        Result<size_t> n = fs(req).read(file(fi), buf.data(), size, off);
        if (!n) return reply_err(req, "read", n.error());
        fuse_reply_buf(req, buf.data(), *n);
    });
}

void sfs_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
               fuse_file_info* fi) {
    (void)ino;
    guarded(req, "write", [&] {
        Result<size_t> n = fs(req).write(file(fi), buf, size, off, who(req, true));
        if (!n) return reply_err(req, "write", n.error());
        fuse_reply_write(req, *n);
    });
}

void sfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
    (void)ino;
    guarded(req, "fsync",
            [&] { reply_void(req, "fsync", fs(req).fsync(file(fi), datasync != 0)); });
}

void sfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                   fuse_file_info* fi) {
    (void)ino;
    guarded(req, "fallocate",
            [&] {
                reply_void(req, "fallocate", fs(req).fallocate(file(fi), mode, off, len, who(req)));
            });
}

void sfs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
    (void)ino;
    guarded(req, "lseek", [&] {
        Result<off_t> to = fs(req).seek(file(fi), off, whence);
        // ENXIO (no data, or no hole, past off) is an answer, not a failure to log.
        if (!to && to.error().code == ENXIO) return (void)fuse_reply_err(req, ENXIO);
        if (!to) return reply_err(req, "lseek", to.error());
        fuse_reply_lseek(req, *to);
    });
}

void sfs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                         fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                         int flags) {
    (void)ino_in;
    (void)ino_out;
    guarded(req, "copy_file_range", [&] {
        if (flags) return reply_err(req, "copy_file_range", bd::Error{EINVAL, "flags must be 0"});
        Result<size_t> n =
            fs(req).copy_file_range(file(fi_in), off_in, file(fi_out), off_out, len, who(req));
        if (!n) return reply_err(req, "copy_file_range", n.error());
        fuse_reply_write(req, *n);
    });
}

void sfs_statfs(fuse_req_t req, fuse_ino_t ino) {
    (void)ino;
    guarded(req, "statfs", [&] {
        Result<struct statvfs> st = fs(req).statfs();
        if (!st) return reply_err(req, "statfs", st.error());
        fuse_reply_statfs(req, &*st);
    });
}

// size 0 asks for the needed size; a short buffer is ERANGE.
void reply_xattr_data(fuse_req_t req, const char* op, const Result<std::string>& r, size_t size) {
    if (!r) return reply_err(req, op, r.error());
    if (size == 0) return (void)fuse_reply_xattr(req, r->size());
    if (r->size() > size) return (void)fuse_reply_err(req, ERANGE);
    fuse_reply_buf(req, r->data(), r->size());
}

void sfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    guarded(req, "getxattr",
            [&] { reply_xattr_data(req, "getxattr", fs(req).getxattr(ino, name), size); });
}

void sfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    guarded(req, "listxattr",
            [&] {
                bool root = fuse_req_ctx(req)->uid == 0;
                reply_xattr_data(req, "listxattr", fs(req).listxattr(ino, root), size);
            });
}

void sfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                  int flags) {
    guarded(req, "setxattr", [&] {
        reply_void(req, "setxattr",
                   fs(req).setxattr(ino, name, std::string(value, size), flags, who(req)));
    });
}

void sfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
    guarded(req, "removexattr",
            [&] { reply_void(req, "removexattr", fs(req).removexattr(ino, name)); });
}

}  // namespace

fuse_lowlevel_ops lowlevel_ops() {
    fuse_lowlevel_ops ops{};
    ops.init = sfs_init;
    ops.lookup = sfs_lookup;
    ops.forget = sfs_forget;
    ops.forget_multi = sfs_forget_multi;
    ops.getattr = sfs_getattr;
    ops.setattr = sfs_setattr;
    ops.readlink = sfs_readlink;
    ops.mkdir = sfs_mkdir;
    ops.rmdir = sfs_rmdir;
    ops.unlink = sfs_unlink;
    ops.symlink = sfs_symlink;
    ops.link = sfs_link;
    ops.rename = sfs_rename;
    ops.opendir = sfs_opendir;
    ops.readdir = sfs_readdir;
    ops.releasedir = sfs_releasedir;
    ops.open = sfs_open;
    ops.create = sfs_create;
    ops.release = sfs_release;
    ops.read = sfs_read;
    ops.write = sfs_write;
    ops.fsync = sfs_fsync;
    ops.fallocate = sfs_fallocate;
    ops.copy_file_range = sfs_copy_file_range;
    ops.lseek = sfs_lseek;
    ops.statfs = sfs_statfs;
    ops.getxattr = sfs_getxattr;
    ops.listxattr = sfs_listxattr;
    ops.setxattr = sfs_setxattr;
    ops.removexattr = sfs_removexattr;
    return ops;
}

}  // namespace bdfs
