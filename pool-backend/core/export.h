// An export: a VG plus a thin pool in it, shown as a tree of file-named volumes.
// This is bd's one implementation of volume logic; bdctl, the libvirt backend
// (through bdctl --json) and bdfs all call it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "access.h"
#include "catalog.h"
#include "dirs.h"
#include "error.h"
#include "lock.h"
#include "runner.h"

namespace bd {

/// Default refusal threshold for create/clone, in percent of data or metadata.
constexpr int kDefaultThreshold = 90;

/// Settings and live state of one export.
struct ExportInfo {
    std::string name, vg, thinpool;
    int threshold = kDefaultThreshold;
    uint64_t size = 0, allocated = 0, chunk_size = 0, extent_size = 0, vg_free = 0;
    double data_percent = 0, metadata_percent = 0;
    size_t volumes = 0, leftovers = 0;
    std::string when_full;  ///< the thin pool's out-of-space mode: "error" or "queue"
    uint64_t metadata_area = 0, metadata_area_free = 0;  ///< the VG's LVM metadata area
};

/// How to make an export (bdctl export create).
struct ExportSpec {
    std::string name, vg, thinpool = "pool";
    std::vector<std::string> pvs;  ///< create the VG on these devices
    uint64_t size = 0;             ///< thin pool size, or...
    std::string extents;           ///< ...an extent spec ("100%FREE"); default 90%FREE
    int threshold = kDefaultThreshold;
    uint64_t metadata_size = 0;    ///< thin pool metadata; 0: pool_plan.h's default
};

/// Progress of a long operation: bytes done of total.
using Progress = std::function<void(uint64_t done, uint64_t total)>;

/// Owner, mode, times and xattrs a front may set (unset fields stay).
struct Attrs {
    std::optional<uint32_t> uid, gid, mode;
    std::optional<int64_t> mtime;
    std::map<std::string, std::optional<std::string>> xattrs;  ///< nullopt removes
};

/// The encoded bd.x tags of one volume's user.* and trusted.* xattrs may take
/// at most this many bytes, as ext4 keeps one file's xattrs in one 4 KiB
/// block: ENOSPC beyond.
constexpr size_t kMaxXattrBytes = 4096;

/// A volume to create.
struct NewVolume {
    std::string path;
    uint64_t size = 0;           ///< what the guest sees (rounds up to extents)
    bool thick = false;          ///< a linear LV outside the thin pool
    std::string format = "raw";  ///< "raw" or "qcow2" (qemu-img writes its header)
    Attrs attrs;                 ///< unset owner: the actor; unset mode: 0600
};

/// One fsck action, done or (dry run) proposed.
struct Repair {
    std::string lv, action;
};

/// Warnings for the caller to show (unfinished work found, pool nearly full).
using Warn = std::function<void(const std::string&)>;

/// What a caller means to do with an export it opens.
enum class Access {
    kRead,    ///< each change takes the export lock for itself
    kChange,  ///< take the lock now, before the first read, and hold it
};

class Export {
public:
    /// Finds the export named `name` (a VG tagged bd.export=NAME) and reads it:
    /// one `lvs`, which the first scan() then reuses.
    static Result<Export> open(Runner& runner, const std::string& name,
                               Access access = Access::kRead);
    /// Creates VG (if pvs given), thin pool (if missing) and export tags; undoes all on failure.
    static Result<ExportInfo> create(Runner& runner, const ExportSpec& spec);
    /// Every export on this host.
    static Result<std::vector<ExportInfo>> list(Runner& runner);

    /// Live settings and pool usage (one scan + one dm query).
    Result<ExportInfo> info();
    /// The same from a catalog already read (no LVM call).
    ExportInfo info_from(const Catalog& cat);
    /// Activates inactive volumes (all, or the one at `path`); returns their paths.
    Result<std::vector<std::string>> activate(const std::string& path);
    /// Changes the fill threshold (percent) kept in the VG's tags.
    Result<void> set_threshold(int threshold);
    /// Removes the export tags; with `destroy`, also every volume, the pool and the VG.
    Result<void> remove(bool force, bool destroy);

    /// All volumes and leftovers (2 LVM calls, whatever the number of volumes).
    Result<Catalog> scan();
    /// The volume at `path` (ENOENT naming the export if absent).
    Result<Volume> find(const std::string& path);

    /// New thin (or thick) volume; its format and owner are recorded in its tags.
    Result<Volume> create_volume(const NewVolume& spec, const Actor& who = Actor::root());
    /// Writable copy: instant thin snapshot, or thin-aware full copy if `full`.
    /// The actor must be able to read `src`; a clone made by root keeps the
    /// origin's owner, one made by a user is theirs (with the origin's mode).
    Result<Volume> clone(const std::string& src, const std::string& dst, bool full,
                         const Progress& progress = {}, const Actor& who = Actor::root());
    /// Read-only thin snapshot named `snap_name` at `snap_path`, linked to its
    /// origin; names are unique per origin. Owner as for clone().
    Result<Volume> snapshot(const std::string& src, const std::string& snap_path,
                            const std::string& snap_name, const Actor& who = Actor::root());
    /// Snapshots linked to the volume at `path`.
    Result<std::vector<Volume>> snapshots(const std::string& path);
    /// Makes `path` hold the snapshot's data again; atomic, resumable by fsck.
    Result<Volume> rollback(const std::string& path, const std::string& snap);
    /// New size; smaller only with `shrink`.
    Result<Volume> resize(const std::string& path, uint64_t size, bool shrink,
                          const Actor& who = Actor::root());
    /// Moves a volume to a new path in this export.
    Result<Volume> rename(const std::string& src, const std::string& dst,
                          const Actor& who = Actor::root());
    /// Deletes a volume (refused while open, or with snapshots unless asked).
    Result<std::vector<std::string>> remove_volume(const std::string& path, bool with_snapshots);
    /// Updates owner, mode, times, xattrs kept in tags. A volume bd did not make
    /// is adopted in place: it gains bd's tags and keeps its LV name.
    Result<Volume> set_attrs(const std::string& path, const Attrs& attrs,
                             const Actor& who = Actor::root());
    /// Finishes or undoes interrupted operations.
    Result<std::vector<Repair>> fsck(bool dry_run);
    /// Makes an explicit (possibly empty) directory, with an owner and mode if given; see dirs.h.
    Result<void> make_dir(const std::string& path, std::optional<DirAttrs> attrs = std::nullopt,
                          const Actor& who = Actor::root());
    /// Changes a directory's kept owner and mode ("" is the root), starting from
    /// default_dir() when none is kept; returns the result. An implied directory
    /// becomes explicit, so it outlives its last volume.
    Result<DirAttrs> set_dir_attrs(const std::string& path, const DirAttrChange& change,
                                   const Actor& who = Actor::root());
    /// Removes an empty directory (ENOTEMPTY otherwise).
    Result<void> remove_dir(const std::string& path);
    /// Moves a directory and every volume below it; see dir_ops.cc for crash behaviour.
    Result<void> rename_dir(const std::string& src, const std::string& dst,
                            const Actor& who = Actor::root());
    /// Makes the thin pool fail writes when full (`error`) or queue them.
    Result<void> set_when_full(bool error);

    /// The block device of a volume.
    std::string device(const Volume& v) const { return "/dev/" + vg_ + "/" + v.lv; }
    const std::string& name() const { return name_; }
    const std::string& vg() const { return vg_; }
    const std::string& thinpool() const { return thinpool_; }
    int threshold() const { return threshold_; }
    uint64_t extent_size() const { return extent_size_; }
    /// Where warnings go (default: none).
    void set_warn(Warn warn) { warn_ = std::move(warn); }
    /// Owner and mode of directories that keep none (bdfs -o dir_mode): they
    /// decide who may search a path to the origin of a snapshot.
    void set_default_dir(const DirAttrs& attrs) { default_dir_ = attrs; }
    const DirAttrs& default_dir() const { return default_dir_; }

private:
    Export(Runner& runner, const VgRecord& vg);
    Result<CommandOutput> run(const Argv& argv) { return runner_.run(argv); }
    Result<Catalog> scan_for_change(const std::vector<std::string>& paths);
    Result<void> check_space(const Catalog& cat);
    Result<void> check_metadata_room(const Catalog& cat, const Actor& who);
    Result<void> check_readable(const Catalog& cat, const Volume& v, const Actor& who);
    Result<void> check_free(const Catalog& cat, const std::string& path);
    Result<void> check_not_alias(const Catalog& cat, const std::string& path);
    Result<void> check_snapshot_name(const Catalog& cat, const Volume& origin,
                                     const std::string& origin_path, const std::string& name,
                                     const std::string& snap_path);
    Result<std::vector<std::string>> new_volume_tags(const std::string& path, const Attrs& a);
    Result<Volume> make_formatted(const Catalog& cat, const NewVolume& spec, uint64_t lv_bytes,
                                  std::vector<std::string> tags);
    Result<Volume> find_in(const Catalog& cat, const std::string& path) const;
    Result<void> canonicalize(const Volume& v, const Catalog& cat, std::vector<Repair>* log);
    Result<void> copy_data(const Volume& src, const std::string& dst_lv, const Progress& p);
    Result<void> check_closed(const Volume& v);
    Result<ExportLock> lock_for_change();
    Result<Volume> made(const Catalog& before, LvRecord lv, const std::string& path);

    Runner& runner_;
    std::string name_, vg_, vg_uuid_, thinpool_;
    int threshold_ = kDefaultThreshold;
    uint64_t extent_size_ = 4 << 20;
    uint64_t vg_free_ = 0;
    std::optional<std::vector<LvRecord>> cached_;  ///< open()'s report, for the first scan()
    std::unique_ptr<ExportLock> held_;             ///< set by Access::kChange
    Warn warn_;
    DirAttrs default_dir_;
};

/// Maps LVM's failure text to a precise errno (ENOSPC, EBUSY) where unambiguous.
Error classify(Error e);

/// True if `tag` is "key=...".
bool is_bd_tag(const std::string& tag, const char* key);

/// A random hex id (volume ids, transaction ids).
std::string random_id(size_t hex_chars);

}  // namespace bd
