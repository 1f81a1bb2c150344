// bdfs's operations over one export. Every method returns an errno-carrying
// Result and never replies to FUSE itself: lowlevel.cc adapts each to exactly
// one fuse_reply_*() (libfuse's passthrough_hp.cc pattern). Metadata comes from
// a fresh catalog (one `lvs`) per operation, so changes made by bdctl, libvirt
// or plain LVM show at once; data goes straight to each volume's device.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/statvfs.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "export.h"
#include "tree.h"

namespace bdfs {

template <typename T>
using Result = bd::Result<T>;

/// Mount options bdfs itself understands (see docs/bdfs.8).
struct Options {
    bool allow_shrink = false;  ///< -o allow_shrink: truncate may shrink a volume
    bool cache = true;          ///< -o nocache: one `lvs` per operation, no metadata cache
    double attr_timeout = 0, entry_timeout = 0;
    mode_t dir_mode = 0755;  ///< -o dir_mode=OCTAL: mode of directories with none kept
    std::string mountpoint;  ///< absolute, for absolute symlink targets
    /// -o resuid=USER,resgid=GROUP: besides root, who may use the reserve (the
    /// pool above the export's threshold), as ext4's options of the same names.
    std::optional<uid_t> resuid;
    std::optional<gid_t> resgid;
};

/// The last catalog, valid while LVM's metadata backup of the VG is unchanged
/// and no device came or went.
///
/// LVM rewrites BACKUP_DIR/VG (a new file, renamed into place) after every
/// metadata commit, by any tool: its inode, size and mtime change with each
/// commit. Activation commits no metadata, but it makes or removes dm devices,
/// and each of those counts in /sys/kernel/uevent_seqnum (udev or not).
/// Checking both is a stat() and a read, where an `lvs` costs a process and a
/// device scan (about 0.5 s in the TCG test guest). The key is read before the
/// scan it labels, so a change racing the scan only causes an extra scan later.
/// Every scan of the export is filed this way, also those the core makes under
/// its lock: after a change whose core path ends with a read (resize, chmod,
/// chown, times, xattrs, rename, replace, a clone into place), the next lookup
/// finds the view that read left. Where LVM keeps its
/// backups is asked of LVM (`lvmconfig`); with backups off (backup/backup = 0)
/// every call scans.
class CatalogCache {
  public:
    /// `backup_dir`: LVM's backup/backup_dir, or "" when LVM keeps no backups.
    CatalogCache(bd::Export& ex, bool enabled, const std::string& backup_dir);
    ~CatalogCache();  ///< takes its observer off `ex`
    CatalogCache(const CatalogCache&) = delete;
    CatalogCache& operator=(const CatalogCache&) = delete;
    /// The current tree: cached if the VG's metadata is unchanged, else a fresh scan.
    Result<std::shared_ptr<const Tree>> get();

  private:
    struct Key {
        ino_t ino = 0;
        off_t size = 0;
        int64_t mtime_ns = 0;
        uint64_t uevents = 0;
        bool operator==(const Key&) const = default;
    };
    std::optional<Key> key();
    void file(std::optional<Key> key, std::shared_ptr<const Tree> tree);

    bd::Export& ex_;
    std::string backup_;  ///< empty: caching off
    std::mutex mutex_;
    std::optional<Key> key_;            // protected by mutex_
    std::shared_ptr<const Tree> tree_;  // protected by mutex_
};

/// A directory listing kept between opendir and releasedir.
struct DirEntry {
    std::string name;
    struct stat st {};
};

/// One open file: its own descriptor on the volume's device.
struct OpenFile {
    fuse_ino_t ino = 0;
    std::atomic<int> fd{-1};        ///< replaced (dup2) when copy_file_range swaps the volume
    bool direct = false;            ///< opened with O_DIRECT: the device fd is O_DIRECT too
    bool thick = false;             ///< a linear LV: zeroing writes zeros, discards do not
    std::atomic<bool> lost{false};  ///< its volume vanished under it (failed replace)
};

/// Free-space guard: a full pool gives ENOSPC to the writer instead of an I/O
/// error later, and writers without the reserve stop at the export's threshold.
class SpaceGuard {
  public:
    SpaceGuard(std::string vg, std::string pool) : vg_(std::move(vg)), pool_(std::move(pool)) {}
    /// The pool's block (chunk) size in bytes; set once before use.
    void set_block_bytes(uint64_t bytes) { block_bytes_ = bytes; }
    /// The export's threshold in percent (it may change while mounted).
    void set_threshold(int percent) { threshold_ = percent; }
    /// Reserves `bytes` of pool space for a writer (who may use the reserve, or
    /// stops at the threshold), re-reading the kernel's counts at most every 100 ms.
    Result<void> reserve(uint64_t bytes, bool may_use_reserve);
    /// Makes the next reserve() re-read the kernel's counts.
    void invalidate();
    /// True if the pool has no free block left (re-reads the kernel's counts).
    bool full();

  private:
    Result<void> refresh();  // needs mutex_

    std::string vg_, pool_;
    uint64_t block_bytes_ = 64 << 10;
    std::atomic<int> threshold_{bd::kDefaultThreshold};
    std::mutex mutex_;                                 // protects the fields below
    std::chrono::steady_clock::time_point checked_{};  // protected by mutex_
    int64_t free_ = 0;                                 // protected by mutex_
    int64_t free_below_threshold_ = 0;                 // protected by mutex_
};

class Fs {
  public:
    /// `backup_dir`: where LVM keeps its metadata backups ("" if it keeps none).
    Fs(bd::Export ex, Options opts, const std::string& backup_dir);

    // Names and attributes.
    Result<fuse_entry_param> lookup(fuse_ino_t parent, const std::string& name);
    void forget(fuse_ino_t ino, uint64_t nlookup);
    Result<struct stat> getattr(fuse_ino_t ino);
    Result<struct stat> setattr(fuse_ino_t ino, const struct stat& attr, int to_set,
                                OpenFile* file, const bd::Actor& who);
    Result<std::string> readlink(fuse_ino_t ino);
    Result<fuse_entry_param> mkdir(fuse_ino_t parent, const std::string& name, mode_t mode,
                                   const bd::Actor& who);
    Result<void> rmdir(fuse_ino_t parent, const std::string& name);
    Result<void> unlink(fuse_ino_t parent, const std::string& name);
    Result<fuse_entry_param> symlink(const std::string& text, fuse_ino_t parent,
                                     const std::string& name, const bd::Actor& who);
    Result<fuse_entry_param> link(fuse_ino_t ino, fuse_ino_t parent, const std::string& name,
                                  const bd::Actor& who);
    Result<void> rename(fuse_ino_t parent, const std::string& name, fuse_ino_t newparent,
                        const std::string& newname, unsigned flags, const bd::Actor& who);
    Result<std::vector<DirEntry>> readdir(fuse_ino_t ino);
    Result<struct statvfs> statfs();
    Result<std::string> getxattr(fuse_ino_t ino, const std::string& name);
    // `privileged`: the caller is root, and may see trusted.* names.
    Result<std::string> listxattr(fuse_ino_t ino, bool privileged);
    Result<void> setxattr(fuse_ino_t ino, const std::string& name, const std::string& value,
                          int flags, const bd::Actor& who);
    Result<void> removexattr(fuse_ino_t ino, const std::string& name);

    // Files.
    Result<fuse_entry_param> create(fuse_ino_t parent, const std::string& name, mode_t mode,
                                    const bd::Actor& who, int flags, OpenFile** file);
    Result<OpenFile*> open(fuse_ino_t ino, int flags);
    /// Closes an open file; never throws (it may run after a reply was sent).
    void release(OpenFile* file) noexcept;
    Result<size_t> read(OpenFile* file, char* buf, size_t size, off_t off);
    Result<size_t> write(OpenFile* file, const char* buf, size_t size, off_t off,
                         const bd::Actor& who);
    Result<void> fsync(OpenFile* file, bool datasync);
    Result<void> fallocate(OpenFile* file, int mode, off_t off, off_t len, const bd::Actor& who);
    Result<size_t> copy_file_range(OpenFile* in, off_t off_in, OpenFile* out, off_t off_out,
                                   size_t len, const bd::Actor& who);
    /// lseek's SEEK_DATA and SEEK_HOLE: a thin file's data ends with its highest
    /// mapped pool block, and all past it is a hole (cp, tar, rsync and qemu-img
    /// then read only up to there).
    Result<off_t> seek(OpenFile* file, off_t off, int whence);

    /// The caller of a request as the core sees it: ids, groups, and whether it
    /// may use the reserve (root, -o resuid, -o resgid).
    bd::Actor actor(uid_t uid, gid_t gid, std::vector<uint32_t> groups) const;
    /// True if whether `uid` may use the reserve depends on its supplementary groups.
    bool needs_groups(uid_t uid, gid_t gid) const {
        return uid != 0 && opts_.resgid && gid != *opts_.resgid &&
               !(opts_.resuid && uid == *opts_.resuid);
    }

    /// Deletes volumes an earlier run left unlinked-but-open (those nobody holds now).
    void reap_unlinked();

  private:
    struct NodeKey {
        Kind kind;
        std::string key;  ///< volume id (files, links) or directory path
        auto operator<=>(const NodeKey&) const = default;
    };
    struct Node {
        NodeKey key;
        uint64_t nlookup = 0;
    };
    // What an open volume needs beyond its descriptors.
    struct VolumeState {
        int opens = 0;
        bool unsized = false;
        std::string hidden_lv;      ///< unlinked or replaced while open: reaped at last close
        std::string clone_of;       ///< id this volume is an untouched clone of
        uint64_t clone_next = 0;    ///< where the copy that cloned it goes on (capped replies)
        bool clone_zeroes = false;  ///< its pool zeroed new blocks when it was cloned
        bool swapping = false;      ///< clone_into is giving it new data: opens wait
        std::mutex grow_mutex;      ///< serializes growing this volume; never held with others
    };
    struct Resolved {
        std::shared_ptr<const Tree> tree;
        Entry entry;  ///< points into *tree
    };

    Result<std::shared_ptr<const Tree>> scan();
    Result<Resolved> resolve(fuse_ino_t ino);
    Result<Resolved> resolve_dir(fuse_ino_t ino);
    Result<bd::Volume> volume_of(const std::string& id);
    fuse_entry_param entry_param(const Entry& e);
    struct stat stat_of(const Entry& e);
    fuse_ino_t remember(const NodeKey& key);
    std::optional<NodeKey> key_of(fuse_ino_t ino);
    void rekey(const NodeKey& from, const NodeKey& to);
    // The parent directory's kept attributes if it is setgid (new entries take its group).
    std::optional<bd::DirAttrs> setgid_parent(fuse_ino_t parent);
    Result<std::string> new_path(fuse_ino_t parent, const std::string& name);

    Result<void> set_size(const bd::Volume& v, uint64_t size, const bd::Actor& who);
    Result<void> set_unsized(const bd::Volume& v, bool unsized);
    Result<void> empty_volume(const bd::Volume& v);
    Result<void> ensure_size(OpenFile* f, uint64_t end, const bd::Actor& who);
    /// {size, where its data ends} of an open file (see seek).
    Result<std::pair<uint64_t, uint64_t>> data_extent(OpenFile* f);
    Result<void> remove_file(const Entry& e);
    Result<OpenFile*> open_volume(fuse_ino_t ino, const bd::Volume& v, int flags);
    std::shared_ptr<VolumeState> state_of(OpenFile* f, std::string* id = nullptr);
    std::shared_ptr<VolumeState> state_by_id(const std::string& id);
    int opens_of(const std::shared_ptr<VolumeState>& st);
    void note_hidden(const std::shared_ptr<VolumeState>& st, const std::string& lv);
    Result<void> check_not_held_elsewhere(const bd::Volume& v);
    Result<void> zero_device(int fd, bool thick, uint64_t off, uint64_t len, const std::string& what);
    Result<size_t> clone_into(OpenFile* in, OpenFile* out, size_t len, const bd::Actor& who);
    Result<size_t> copy_data(OpenFile* in, off_t off_in, OpenFile* out, off_t off_out, size_t len,
                             const bd::Actor& who);
    Result<size_t> write_at(OpenFile* f, const char* buf, size_t size, off_t off,
                            const bd::Actor& who, bool after_clone = false);
    Result<void> zero_range(OpenFile* f, uint64_t off, uint64_t len, const bd::Actor& who);

    bd::Export ex_;
    const Options opts_;
    SpaceGuard space_;
    CatalogCache cache_;
    uint64_t chunk_size_ = 64 << 10;        // set once at start
    const time_t started_ = time(nullptr);  // shown as every directory's times

    // Lock order: volumes_mutex_ before nodes_mutex_; neither is held across a core call.
    std::mutex nodes_mutex_;
    std::unordered_map<fuse_ino_t, Node> nodes_;  // protected by nodes_mutex_
    std::map<NodeKey, fuse_ino_t> inos_;          // protected by nodes_mutex_
    fuse_ino_t next_ino_ = FUSE_ROOT_ID + 1;      // protected by nodes_mutex_

    std::mutex volumes_mutex_;
    std::condition_variable swap_done_;  // a VolumeState's swapping went false
    std::map<std::string, std::shared_ptr<VolumeState>>
        volumes_;  // by id; protected by volumes_mutex_
    std::map<OpenFile*, std::string>
        file_ids_;  // open file -> volume id; protected by volumes_mutex_
};

/// A process-wide Runner for many threads: each call runs on its own SystemRunner.
class ThreadSafeRunner : public bd::Runner {
  public:
    Result<bd::CommandOutput> run(const bd::Argv& argv) override;
};

/// Logs a failed operation (the core's message says what to do); ENOENT and friends stay quiet.
void log_error(const char* op, const bd::Error& e);

}  // namespace bdfs
