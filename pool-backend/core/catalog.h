// Turns one `lvs` report into the export's volumes and leftovers.
//
// This is where crash safety is decided: every multi-step operation is built
// so that, at each step, this pure function shows either the old or the new
// state. Rules (docs/ARCHITECTURE.md, "Crash safety"):
//  0. A managed LV of a transaction (tag bd.txn) with bd.to=c is volume c once
//     no LV has c's name: replace, clone-into and rollback commit by freeing
//     the name of the volume they replace.
//  1. A managed LV (tag bd.v=1) whose name is lv_name_for_path(c) for one of
//     its claims c (tags bd.path=c or bd.to=c) is volume c. So is one whose
//     name is c itself: a foreign LV adopted in place keeps its LV name.
//  2. Otherwise, a managed LV with bd.to=c is volume c when no LV has the
//     name lv_name_for_path(c) (a committed, unfinished rollback or rename).
//  3. A snapshot whose origin id belongs to an LV being deleted is hidden.
//  4. A thin LV in the pool without bd.v is a foreign volume named by its LV name.
//  5. Any other managed LV is a leftover, for `bdctl fsck`.
//  6. A committed directory move (tag bd.mvdir=FROM=TO on the thin pool LV)
//     shows every volume whose path lies within FROM within TO, until each is
//     renamed there and the tag goes.
//  7. Two managed LVs that resolve to one path (bd never makes that; a hand
//     lvremove or lvrename between steps can): the one named for the path,
//     else the first `lvs` reports, is shown, and both are marked `conflict`.
//     Changes to the path and fsck leave them alone until a person decides.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lvm_report.h"
#include "names.h"

namespace bd {

/// Tag keys (see docs/ARCHITECTURE.md, "Tag schema").
namespace tags {
inline constexpr const char* kManaged = "bd.v";      ///< "bd.v=1" marks a bd LV
inline constexpr const char* kPath = "bd.path";      ///< the volume's path
inline constexpr const char* kTo = "bd.to";          ///< staged path (rename, rollback)
inline constexpr const char* kId = "bd.id";          ///< stable volume id
inline constexpr const char* kSnapOf = "bd.snapof";  ///< origin's id (snapshots)
inline constexpr const char* kSnap = "bd.snap";      ///< snapshot name
inline constexpr const char* kTxn = "bd.txn";        ///< operation in progress
inline constexpr const char* kUid = "bd.uid";
inline constexpr const char* kGid = "bd.gid";
inline constexpr const char* kMode = "bd.mode";
inline constexpr const char* kMtime = "bd.mtime";
inline constexpr const char* kXattr = "bd.x";        ///< "bd.x=NAME=VALUE", both escaped
inline constexpr const char* kFormat = "bd.fmt";     ///< image format; absent: raw
inline constexpr const char* kVirtualSize = "bd.vsize";  ///< a qcow2 volume's virtual size
inline constexpr const char* kRecv = "bd.recv";          ///< received snapshot: the source snapshot's id
inline constexpr const char* kRecvFrom = "bd.recvfrom";  ///< received snapshot: the source volume's id
inline constexpr const char* kRecvGen = "bd.recvgen";    ///< received snapshot: 1 for a full stream, then +1
inline constexpr const char* kRecvApply = "bd.recvapply";  ///< received snapshot whose volume has not taken its data yet
inline constexpr const char* kSendBase = "bd.sendbase";  ///< id of the snapshot `send --incremental` starts from
inline constexpr const char* kDirMove = "bd.mvdir";  ///< on the pool LV: "FROM=TO", both escaped
}  // namespace tags

/// Owner and mode of a volume that has none recorded: root's, private.
inline constexpr uint32_t kDefaultMode = 0600;

/// Prefixes of bd's internal LV names; never produced by lv_name_for_path.
inline constexpr const char* kTmpPrefix = "_bd_tmp.";
inline constexpr const char* kOldPrefix = "_bd_old.";
inline constexpr const char* kDelPrefix = "_bd_del.";
inline constexpr const char* kSrcPrefix = "_bd_src.";  ///< a full copy's frozen source

/// An LV a committed change hid (a replaced or deleted volume, waiting for its
/// last close or its snapshots to go): it claims no path any more.
inline bool is_hidden(const std::string& lv) {
    return lv.rfind(kOldPrefix, 0) == 0 || lv.rfind(kDelPrefix, 0) == 0;
}

enum class VolumeType { kThin, kThick, kSnapshot };

/// A volume as the export shows it.
struct Volume {
    std::string path;  ///< normalized, no leading '/'
    std::string lv;
    std::string id;           ///< bd.id, or the LV uuid for foreign volumes
    std::string origin_id;    ///< bd.snapof for snapshots
    std::string origin_path;  ///< filled from origin_id when that volume exists
    std::string snapshot_name;
    VolumeType type = VolumeType::kThin;
    uint64_t size = 0;
    std::optional<uint64_t> allocated;
    std::optional<uint64_t> exclusive;  ///< bytes only it maps (Export::snapshots fills it)
    bool read_only = false;
    bool active = false;
    bool open = false;
    bool managed = false;
    bool canonical = true;  ///< false while an interrupted operation is unfinished
    bool conflict = false;  ///< another LV claims this path too (rule 7): hands off
    uint32_t uid = 0, gid = 0, mode = kDefaultMode;
    std::string format = "raw";  ///< recorded at creation; never read from the data
    uint64_t capacity = 0;       ///< what the guest sees: size, or a qcow2's virtual size
    int64_t ctime = 0, mtime = 0;
    std::map<std::string, std::string> xattrs;
    std::string dm_path;
    std::vector<std::string> raw_tags;  ///< the LV's tags as LVM holds them
};

/// A committed, unfinished directory move (rule 6).
struct DirMove {
    std::string from, to;
};

/// The bd.mvdir tag of a move (ENAMETOOLONG if both paths do not fit one tag).
Result<std::string> dir_move_tag(const DirMove& move);

/// A bd LV that is not a volume: the residue of an interrupted operation.
struct Leftover {
    LvRecord lv;
    std::string reason;
    bool conflict = false;  ///< it claims a volume's path (rule 7): never removed
};

/// Everything one `lvs` says about an export.
struct Catalog {
    std::vector<Volume> volumes;  ///< sorted by path
    std::vector<Leftover> leftovers;
    std::optional<LvRecord> pool;  ///< the thin pool's own row
    std::vector<DirMove> moves;    ///< committed directory moves still being finished

    /// The volume at `path`, if any.
    const Volume* find(const std::string& path) const;
    /// The volume with stable id `id`, if any.
    const Volume* find_id(const std::string& id) const;
    /// The snapshot whose link name "ORIGIN@NAME" is `path`, when that is not its own path.
    const Volume* find_alias(const std::string& path) const;
    /// Snapshots whose origin is `id`.
    std::vector<const Volume*> snapshots_of(const std::string& id) const;
    /// True if an LV with this exact name exists (volume or leftover).
    bool has_lv(const std::string& name) const;
    /// The report's row of LV `name`, if any.
    const LvRecord* record(const std::string& name) const;

    std::vector<std::string> lv_names;  ///< every LV name of the export (of its VG, or pool)
    std::vector<LvRecord> records;      ///< the rows of the report this catalog was built from
};

/// Which LVs of a VG make an export. A VG's own export (bd.export on the VG)
/// is every LV of its VG; a pool export (bd.export on a thin pool LV, in a VG
/// several hosts share) is its thin pool's LVs only, and its LV names are
/// lv_name_for_path(path, thinpool): the VG's other pools are other exports,
/// often another host's.
struct ExportScope {
    std::string thinpool;
    bool pool_only = false;
    /// The LV name of a volume path in this export.
    std::string lv_name(std::string_view path) const {
        return lv_name_for_path(path, pool_only ? std::string_view(thinpool) : std::string_view());
    }
    /// True if the LV is this export's (its pool's, for a pool export).
    bool owns(const LvRecord& lv) const { return !pool_only || lv.name == thinpool || lv.pool == thinpool; }
};

/// Applies the rules above to one VG's LVs, as `scope` sees them.
Catalog build_catalog(const std::vector<LvRecord>& lvs, const ExportScope& scope);

/// The same for a VG's own export, whose thin pool is `thinpool`.
inline Catalog build_catalog(const std::vector<LvRecord>& lvs, const std::string& thinpool) {
    return build_catalog(lvs, ExportScope{thinpool});
}

}  // namespace bd
