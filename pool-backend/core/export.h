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
#include "delta.h"
#include "stream.h"
#include "copy.h"
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
    /// A pool export of a VG several hosts share (docs/ARCHITECTURE.md,
    /// "Several hosts"): its lock type, the host id meant to serve it
    /// (bd.owner), and whether this host holds its thin pool now.
    bool shared = false;
    std::string lock_type;
    std::string owner;
    bool owned = true;
    /// The thin pool is active here without its lock from lvmlockd: left by
    /// an LVM command lvmlockd refused (lvcreate in another host's pool).
    bool stale = false;
    int threshold = kDefaultThreshold;
    uint64_t size = 0, allocated = 0, chunk_size = 0, extent_size = 0, vg_free = 0;
    double data_percent = 0, metadata_percent = 0;
    size_t volumes = 0, leftovers = 0;
    std::string when_full;  ///< the thin pool's out-of-space mode: "error" or "queue"
    uint64_t metadata_area = 0, metadata_area_free = 0;  ///< the VG's LVM metadata area
};

/// How to make an export (bdctl export create).
struct ExportSpec {
    std::string name, vg;
    std::string thinpool;          ///< default "pool"; a shared VG's export's pool is its name
    std::vector<std::string> pvs;  ///< create the VG on these devices
    bool shared = false;           ///< a pool export of a shared VG (made `vgcreate --shared`)
    uint64_t size = 0;             ///< thin pool size, or...
    std::string extents;           ///< ...an extent spec ("100%FREE"); default 90%FREE
    int threshold = kDefaultThreshold;
    uint64_t metadata_size = 0;    ///< thin pool metadata; 0: pool_plan.h's default
};

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

/// An existing volume an operation names: its path and, from a front that
/// found it before (bdfs, by inode), the id it saw there. When the path now
/// holds another volume, the operation fails with ESTALE instead of acting on
/// the wrong one (a `bdctl rename a b; bdctl create a` in between).
struct VolumeRef {
    VolumeRef(const char* p) : path(p) {}
    VolumeRef(std::string p, std::string i = "") : path(std::move(p)), id(std::move(i)) {}
    std::string path, id;
};

/// A volume that took another's place (replace, clone_into), and the LV of the
/// data it replaced when the caller still held that open: hidden until reap().
struct Placed {
    Volume volume;
    std::string hidden_lv;  ///< "" when the replaced LV was removed at once
};

/// One fsck action, done or (dry run) proposed.
struct Repair {
    std::string lv, action;
};

/// What changed in a thin volume between two of its states (Export::diff).
struct VolumeDelta {
    Volume volume;            ///< the volume asked about
    Volume from;              ///< the older state: one of its snapshots
    Volume to;                ///< the newer: another snapshot, or the volume itself
    bool to_live = false;     ///< `to` is the volume as it is now
    uint64_t chunk_size = 0;  ///< the pool's block: ranges start and end on it (or at the end)
    std::vector<DeltaRange> ranges;  ///< changed, added and removed; sorted, clipped to to.size
};

/// What `bdctl send` sends: the snapshot `snapshot` (taken now if the volume
/// has none of that name), whole or since `from` (a snapshot), or with
/// `incremental` since the base the last incremental send recorded.
struct SendSpec {
    std::string snapshot, from;
    bool incremental = false;
};

struct SendResult {
    Volume snapshot;
    std::optional<Volume> base;
    bool made_snapshot = false;
    uint64_t records = 0, data_bytes = 0, stream_bytes = 0;
};

struct ReceiveResult {
    Volume volume;    ///< the target, as it is after the receive
    Volume snapshot;  ///< the snapshot received, the base of the next stream
    bool updated = true;  ///< false: the target was open, and keeps its data
    uint64_t records = 0, data_bytes = 0;
};

/// Warnings for the caller to show (unfinished work found, pool nearly full).
using Warn = std::function<void(const std::string&)>;

/// Called before each scan() that reads LVM; what it returns is called with
/// the catalog that read gave (not when the read fails). Whoever keeps a view
/// of the export (bdfs) learns from a change's own reads, and so needs no
/// `lvs` of its own after the change.
using ScanObserver = std::function<std::function<void(const Catalog&)>()>;

/// What `bdctl export takeover` did.
struct Takeover {
    std::string previous_owner;  ///< bd.owner before ("" if none was recorded)
    double waited_s = 0;         ///< until lvmlockd granted the thin pool
    double total_s = 0;          ///< the whole takeover: wait, fsck, activation
    std::vector<Repair> repairs;
    std::vector<std::string> activated;
};

/// Reports a takeover's wait: seconds so far, and what LVM last said.
using TakeoverProgress = std::function<void(double waited_s, const std::string& why)>;

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
    /// Changes the fill threshold (percent) kept in the VG's tags (a pool
    /// export's: the thin pool's).
    Result<void> set_threshold(int threshold);
    /// A shared VG's export whose host died: waits (up to `wait_s`) until
    /// lvmlockd grants its thin pool here, which sanlock allows only once the
    /// old owner's lease has expired; then records this host as its owner,
    /// finishes or undoes interrupted changes (fsck) and activates every
    /// volume. EINVAL for an export of a local VG.
    Result<Takeover> takeover(int wait_s, const TakeoverProgress& progress = {});
    /// Removes the export tags; with `destroy`, also every volume, the pool and the VG.
    Result<void> remove(bool force, bool destroy);

    /// All volumes and leftovers (2 LVM calls, whatever the number of volumes).
    Result<Catalog> scan();
    /// Puts the volume tree right if it does not show `seen` (a report read
    /// without the lock): a process killed between a commit and its link, an
    /// LV made with lvcreate. Reads only when the tree is right; else takes
    /// the lock if it is free, reads again and rebuilds the tree. A listing
    /// (and so libvirt's pool refresh) calls it.
    Result<void> repair_tree(const Catalog& seen);
    /// The volume at `path` (ENOENT naming the export if absent).
    Result<Volume> find(const std::string& path);

    /// New thin (or thick) volume; its format and owner are recorded in its tags.
    Result<Volume> create_volume(const NewVolume& spec, const Actor& who = Actor::root());
    /// Writable copy: instant thin snapshot, or thin-aware full copy if `full`.
    /// The actor must be able to read `src`; a clone made by root keeps the
    /// origin's owner, one made by a user is theirs (with the origin's mode).
    Result<Volume> clone(const VolumeRef& src, const std::string& dst, bool full,
                         const Progress& progress = {}, const Actor& who = Actor::root());
    /// Read-only thin snapshot named `snap_name` at `snap_path`, linked to its
    /// origin; names are unique per origin. Owner as for clone().
    Result<Volume> snapshot(const VolumeRef& src, const std::string& snap_path,
                            const std::string& snap_name, const Actor& who = Actor::root());
    /// Snapshots linked to the volume at `path`, each with the bytes only it
    /// maps (`exclusive`: what deleting it would free, from thin_ls on a
    /// metadata snapshot, as for diff). Without that figure (an inactive pool,
    /// a pool that refuses the metadata snapshot) the list comes with a warning.
    Result<std::vector<Volume>> snapshots(const std::string& path);
    /// What changed in the thin volume at `path` from its snapshot `from` to its
    /// snapshot `to` ("" for the volume as it is now), from dm-thin's mappings
    /// (thin_delta on a metadata snapshot, held under the lock and always
    /// released). Snapshots are named as for rollback. No data is read.
    Result<VolumeDelta> diff(const VolumeRef& path, const std::string& from,
                             const std::string& to, const Actor& who = Actor::root());
    /// Writes the stream of docs/STREAM.md to `sink`. With `incremental`, the
    /// snapshot sent becomes the next base, once the whole stream is written.
    Result<SendResult> send(const VolumeRef& path, const SendSpec& spec, const StreamSink& sink,
                            const Progress& progress = {}, const Actor& who = Actor::root());
    /// Applies a stream (docs/STREAM.md) to the volume at `path`: a full stream
    /// makes it, an incremental one must start from the snapshot it last
    /// received. The data goes into a temporary thin LV, and one lvcreate (the
    /// received snapshot, read-only) commits once the whole stream checked out;
    /// the volume then takes that snapshot's data (refused with `force` unset
    /// when it changed since the last receive).
    Result<ReceiveResult> receive(const VolumeRef& path, StreamReader& stream, bool force,
                                  const Progress& progress = {}, const Actor& who = Actor::root());
    /// Makes `path` hold the snapshot's data again; atomic, resumable by fsck.
    /// Refused while anyone holds the volume open (LVM refuses the commit).
    Result<Volume> rollback(const VolumeRef& path, const std::string& snap);
    /// New size; smaller only with `shrink`.
    Result<Volume> resize(const VolumeRef& path, uint64_t size, bool shrink,
                          const Actor& who = Actor::root());
    /// Moves a volume to a new path in this export.
    Result<Volume> rename(const VolumeRef& src, const std::string& dst,
                          const Actor& who = Actor::root());
    /// Deletes a volume (refused while open, or with snapshots unless asked).
    Result<std::vector<std::string>> remove_volume(const VolumeRef& path, bool with_snapshots);
    /// Moves `src` over the existing volume `dst`, which goes (POSIX rename):
    /// one commit. `held`: opens of dst's device the caller itself holds (bdfs);
    /// then dst's data is hidden until reap(), else it is removed at once and
    /// the move is refused while anyone holds dst open.
    Result<Placed> replace(const VolumeRef& src, const VolumeRef& dst, const Actor& who,
                           int held = 0);
    /// Makes `dst` a copy-on-write clone of `src`'s data (cp onto an existing
    /// file): dst keeps its id, owner, mode and xattrs. One commit; `held` as
    /// for replace. EOPNOTSUPP for a thick source (copy the data instead).
    Result<Placed> clone_into(const VolumeRef& src, const VolumeRef& dst, const Actor& who,
                              int held = 0);
    /// Deletes a volume the caller holds open (`held` opens, nobody else): it
    /// vanishes at once and its LV is hidden until reap(). Returns that LV.
    Result<std::string> hide(const VolumeRef& path, int held);
    /// Removes a hidden LV (`lv`, or every one with "") that nobody holds open.
    Result<void> reap(const std::string& lv = "");
    /// Opens a volume's device to destroy its data (truncate to zero, whole
    /// punch): the path must still hold `ref`'s volume, and nobody but the
    /// caller (`held` opens) may hold it, as for a delete. The descriptor
    /// stays on that volume whatever is renamed or made after.
    Result<Fd> open_to_empty(const VolumeRef& ref, int held);
    /// Updates owner, mode, times, xattrs kept in tags. A volume bd did not make
    /// is adopted in place: it gains bd's tags and keeps its LV name.
    Result<Volume> set_attrs(const VolumeRef& path, const Attrs& attrs,
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
    std::string device(const Volume& v) const { return device_of(v.lv); }
    std::string device_of(const std::string& lv) const { return dev_dir_ + "/" + vg_ + "/" + lv; }
    /// Where device nodes are found ("/dev"); unit tests point it at files.
    void set_device_dir(std::string dir) { dev_dir_ = std::move(dir); }
    /// The volume tree: DEV/disk/by-bd/VG, where PATH links to the volume's
    /// device (volume_tree.h). It is the libvirt pool's target path.
    std::string tree() const;
    const std::string& name() const { return name_; }
    const std::string& vg() const { return vg_; }
    const std::string& thinpool() const { return thinpool_; }
    int threshold() const { return threshold_; }
    uint64_t extent_size() const { return extent_size_; }
    bool shared() const { return per_pool_; }
    /// Where warnings go (default: none).
    void set_warn(Warn warn) { warn_ = std::move(warn); }
    /// Who is told of each scan (default: no one). The observer must outlive
    /// this Export, or be taken off (an empty one) first.
    void set_scan_observer(ScanObserver observer) { scan_observer_ = std::move(observer); }
    /// Owner and mode of directories that keep none (bdfs -o dir_mode): they
    /// decide who may search a path to the origin of a snapshot.
    void set_default_dir(const DirAttrs& attrs) { default_dir_ = attrs; }
    const DirAttrs& default_dir() const { return default_dir_; }

private:
    Export(Runner& runner, const VgRecord& vg, const LvRecord* pool = nullptr);
    static Result<ExportInfo> create_shared(Runner& runner, const ExportSpec& spec,
                                            const std::vector<VgRecord>& vgs);
    ExportScope scope() const { return {thinpool_, per_pool_}; }
    /// The LV name of a volume path here (see ExportScope).
    std::string lv_name(std::string_view path) const { return scope().lv_name(path); }
    /// The key of the export's lock: "vg-UUID", or "pool-UUID" for a pool export.
    std::string lock_key() const;
    /// scan(), for a change: a pool export must be served by this host
    /// (EREMOTE naming the host that serves it otherwise).
    Result<Catalog> scan_owned();
    /// EREMOTE unless this host serves the export, as the last scan() saw.
    Result<void> check_owned();
    Result<CommandOutput> run(const Argv& argv) { return runner_.run(argv); }
    Result<Catalog> scan_for_change(const std::vector<std::string>& paths);
    Result<void> check_space(const Catalog& cat);
    Result<void> check_metadata_room(const Catalog& cat, const Actor& who);
    Result<void> check_readable(const Catalog& cat, const Volume& v, const Actor& who);
    Result<void> check_free(const Catalog& cat, const std::string& path);
    Result<void> check_unclaimed(const Catalog& cat, const std::string& path,
                                 const std::string& holder, bool within = false);
    Result<void> check_not_alias(const Catalog& cat, const std::string& path);
    Result<void> check_snapshot_name(const Catalog& cat, const Volume& origin,
                                     const std::string& origin_path, const std::string& name,
                                     const std::string& snap_path);
    Result<std::vector<std::string>> new_volume_tags(const std::string& path, const Attrs& a);
    Result<Volume> make_formatted(const Catalog& cat, const NewVolume& spec, uint64_t lv_bytes,
                                  std::vector<std::string> tags);
    Result<Volume> find_in(const Catalog& cat, const std::string& path) const;
    Result<Volume> pick_snapshot(const Catalog& cat, const Volume& origin,
                                 const std::string& snap) const;
    std::string tpool_device() const;
    std::string tmeta() const;
    std::string pool_snap_marker() const;
    Result<void> set_send_base(const VolumeRef& ref, const std::string& snapshot_id);
    struct ReceivePlan;
    Result<ReceivePlan> plan_receive(const Catalog& cat, const std::string& path,
                                     const StreamHeader& h, const Actor& who);
    Result<bool> reads_as(const Volume& v, const Volume& snap);
    Result<std::vector<DeltaRange>> mapped_ranges(const Volume& snap);
    Result<void> check_unchanged(const Volume& v, const Volume& last);
    Result<Repair> finish_receive(const Catalog& cat, const Volume& snap, bool dry_run,
                                  bool force = false);
    Result<Volume> make_received_volume(const Volume& snap, const std::string& path);
    Result<std::string> read_pool_snap(const Catalog& cat, const ExportLock& lock, const Argv& query);
    int lock_fd(const ExportLock& lock) const;
    Result<Volume> find_ref(const Catalog& cat, const VolumeRef& ref) const;
    struct Pair {
        ExportLock lock;
        Catalog cat;
        Volume src, dst;
    };
    Result<Pair> lock_pair(const VolumeRef& src, const VolumeRef& dst);
    Result<std::string> retire(const Volume& old, const std::string& txn, int held);
    Result<void> stage(const Volume& v, const std::string& to, const std::string& txn);
    Result<Volume> settle(const std::string& path, const char* op);
    Result<void> finish_moves();
    Result<void> check_dir_move(const Catalog& cat, const std::string& from, const std::string& to,
                                const Actor& who);
    Result<TagEdit> dir_move_edit(const Catalog& cat, const std::string& from, const std::string& to);
    bool is_open(const std::string& lv, int more_than = 0);
    Result<void> canonicalize(const Volume& v, const Catalog& cat, std::vector<Repair>* log);
    // A full copy between start_copy and finish_copy: hidden LVs of one
    // transaction, held open from the start so that no fsck takes them.
    struct FullCopy {
        std::string txn, frozen, tmp;  ///< the frozen source and the target being filled
        uint64_t size = 0;
        Fd in, out;
    };
    Result<FullCopy> start_copy(const Catalog& cat, const Volume& s, std::vector<std::string> tags);
    Result<Volume> finish_copy(FullCopy& copy, const std::string& dst, Result<void> copied);
    Result<void> check_closed(const Volume& v);
    Result<ExportLock> lock_for_change(int timeout_s = 60);
    /// Keeps `lock` as the export's own until the result is destroyed: the
    /// core's calls made meanwhile (diff, rollback) run under it rather than
    /// wait for it. Nothing if the export already holds its lock. Not while
    /// other threads use this Export: bdfs calls fsck before its threads start.
    std::shared_ptr<void> hold_lock(ExportLock& lock);
    Result<Volume> made(const Catalog& before, LvRecord lv, const std::string& path);
    // The volume tree follows each commit (volume_tree.h). It is derived state: a
    // failure is a warning, and the next change, activate or fsck rebuilds it.
    Result<Volume> shown(Result<Volume> v);
    void unshow(const std::string& path);
    void retree(const Catalog& cat);

    Runner& runner_;
    std::string name_, vg_, vg_uuid_, thinpool_;
    bool per_pool_ = false;    ///< bd.export is on the thin pool LV (a shared VG)
    std::string pool_uuid_, owner_, lock_type_;
    // A pool export, as the last scan() saw it: this host holds its pool's
    // lock (serves it), or has the pool active without the lock (stale).
    bool serving_ = true, stale_ = false;
    Result<void> drop_stale(const Catalog& cat);
    int threshold_ = kDefaultThreshold;
    uint64_t extent_size_ = 4 << 20;
    uint64_t vg_free_ = 0;
    std::optional<std::vector<LvRecord>> cached_;  ///< open()'s report, for the first scan()
    std::unique_ptr<ExportLock> held_;             ///< set by Access::kChange
    Warn warn_;
    ScanObserver scan_observer_;
    DirAttrs default_dir_;
    std::string dev_dir_ = "/dev";
};

/// Where LVM keeps its metadata backups (backup/backup_dir), "" when it keeps none.
Result<std::string> lvm_backup_dir(Runner& runner);

/// Maps LVM's failure text to a precise errno (ENOSPC, EBUSY) where unambiguous.
Error classify(Error e);

/// True if `tag` is "key=...".
bool is_bd_tag(const std::string& tag, const char* key);

/// The tag that marks an LV as part of transaction `txn`.
std::string txn_tag(const std::string& txn);

/// A random hex id (volume ids, transaction ids).
std::string random_id(size_t hex_chars);

}  // namespace bd
