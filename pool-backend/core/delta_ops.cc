// What the pool's own mappings tell: Export::diff (the blocks that changed in a
// thin volume) and each snapshot's exclusive space, both read from the pool's
// metadata snapshot (pool_snap.h).
#include <fmt/format.h>

#include "dm.h"
#include "export.h"
#include "lvm_argv.h"
#include "pool_snap.h"

namespace bd {

namespace {

uint64_t thin_id_of(const Catalog& cat, const std::string& lv) {
    const LvRecord* r = cat.record(lv);
    return r ? r->thin_id : 0;
}

}  // namespace

// LVM stacks "-tpool" under the pool once it has thin LVs; before that (or
// after the last is deleted) the pool's own device is the thin-pool target.
std::string Export::tpool_device() const {
    std::string bare = dm_name(vg_, thinpool_);
    Result<DmInfo> stacked = dm_info(bare + "-tpool");
    if (!stacked || stacked->exists) return bare + "-tpool";
    Result<DmInfo> alone = dm_info(bare);
    return alone && alone->exists ? bare : bare + "-tpool";
}

std::string Export::tmeta() const { return "/dev/mapper/" + dm_name(vg_, thinpool_ + "_tmeta"); }

// One per pool, in bd's runtime directory (pool_snap.h).
std::string Export::pool_snap_marker() const {
    return fmt::format("metasnap-{}.{}", vg_uuid_, thinpool_);
}

int Export::lock_fd(const ExportLock& lock) const { return held_ ? held_->fd() : lock.fd(); }

// Runs `query` (thin_delta, thin_ls) on the pool's metadata snapshot, which is
// held for it alone, under the lock the caller holds (pool_snap.h).
Result<std::string> Export::read_pool_snap(const Catalog& cat, const ExportLock& lock,
                                           const Argv& query) {
    // Never on a pool this host does not serve: a stale activation's
    // reservation would commit its old view of the metadata over the owner's.
    if (Result<void> ok = check_owned(); !ok) return tl::unexpected(ok.error());
    if (!cat.pool->active)
        return fail(ENXIO, fmt::format("thin pool \"{}/{}\" is not active: activate the export "
                                       "first (bdctl activate {})",
                                       vg_, thinpool_, name_));
    std::string tpool = tpool_device();
    Result<SnapHolder> holder = PoolSnap::holder(runner_, tpool, pool_snap_marker());
    if (!holder) return tl::unexpected(holder.error());
    if (*holder == SnapHolder::kOther)
        return fail(EBUSY, fmt::format("thin pool \"{}/{}\" of export \"{}\" holds a metadata "
                                       "snapshot that bd did not take: another tool (thin_dump "
                                       "-m, a backup tool) is reading the pool's metadata. Retry "
                                       "when it is done; if nothing is, release it: dmsetup "
                                       "message {} 0 release_metadata_snap",
                                       vg_, thinpool_, name_, tpool));
    if (*holder == SnapHolder::kBd) {
        if (Result<void> ok = PoolSnap::release_leftover(runner_, tpool, pool_snap_marker()); !ok)
            return tl::unexpected(ok.error());
        if (warn_)
            warn_(fmt::format("released a metadata snapshot of thin pool \"{}/{}\" that a killed "
                              "bd left held",
                              vg_, thinpool_));
    }
    // A guardian only where the commands reach real devices: the unit tests'
    // fake must not leave a process that acts on the host's.
    Result<PoolSnap> snap = PoolSnap::reserve(runner_, tpool, pool_snap_marker(),
                                              runner_.real() ? lock_fd(lock) : -1);
    if (!snap) return tl::unexpected(snap.error());
    Result<CommandOutput> out = run(query);
    Result<void> released = snap->release();
    if (!out) return tl::unexpected(out.error());
    if (!released && warn_) warn_(released.error().message);
    return std::move(out->out);
}

Result<std::vector<Volume>> Export::snapshots(const std::string& path) {
    // The figures need the lock, as every use of the metadata snapshot does;
    // a listing waits for it a few seconds, then goes without them.
    Result<ExportLock> lock =
        held_ ? ExportLock::already_held() : ExportLock::for_key(lock_key(), name_, 5);
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_in(*cat, path);
    if (!v) return tl::unexpected(v.error());
    std::vector<Volume> out;
    for (const Volume* s : cat->snapshots_of(v->id)) out.push_back(*s);
    if (out.empty()) return out;
    Result<std::string> listed = lock ? read_pool_snap(*cat, *lock, thin_ls_argv(tmeta()))
                                      : Result<std::string>(tl::unexpected(lock.error()));
    Result<std::map<uint64_t, uint64_t>> space =
        listed ? parse_thin_ls_exclusive(*listed)
               : Result<std::map<uint64_t, uint64_t>>(tl::unexpected(listed.error()));
    if (!space) {
        if (warn_)
            warn_(fmt::format("the space only each snapshot holds is not shown: {}",
                              space.error().message));
        return out;
    }
    for (Volume& s : out)
        if (auto it = space->find(thin_id_of(*cat, s.lv)); it != space->end() && it->first != 0)
            s.exclusive = it->second;
    return out;
}

Result<VolumeDelta> Export::diff(const VolumeRef& ref, const std::string& from,
                                 const std::string& to, const Actor& who) {
    // Under the lock: the metadata snapshot is one per pool, and a held one
    // found under the lock is then never another bd's work in progress.
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_owned();
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_ref(*cat, ref);
    if (!v) return tl::unexpected(v.error());
    if (v->type == VolumeType::kSnapshot)
        return fail(EINVAL, fmt::format("\"{}\" is a snapshot; compare its origin \"{}\" with "
                                        "--from and --to instead",
                                        v->path, v->origin_path));
    if (v->type == VolumeType::kThick)
        return fail(EINVAL, fmt::format("volume \"{}\" is thick: only thin volumes keep the "
                                        "mappings a diff reads",
                                        v->path));
    if (Result<void> ok = check_readable(*cat, *v, who); !ok) return tl::unexpected(ok.error());
    VolumeDelta d;
    d.volume = *v;
    Result<Volume> f = pick_snapshot(*cat, *v, from);
    if (!f) return tl::unexpected(f.error());
    d.from = *f;
    d.to_live = to.empty();
    if (d.to_live) {
        d.to = *v;
    } else {
        Result<Volume> t = pick_snapshot(*cat, *v, to);
        if (!t) return tl::unexpected(t.error());
        d.to = *t;
    }
    // Both must be thin devices of this export's pool: ids number one pool's devices.
    for (const Volume* end : {&d.from, &d.to}) {
        const LvRecord* r = cat->record(end->lv);
        if (!r || r->segtype != "thin" || r->pool != thinpool_ || r->thin_id == 0)
            return fail(EINVAL, fmt::format("\"{}\" is not a thin volume of pool \"{}/{}\" (a "
                                            "snapshot made outside bd with lvcreate -s -L?): "
                                            "diff compares thin snapshots of one pool",
                                            end->path, vg_, thinpool_));
    }
    uint64_t from_id = thin_id_of(*cat, d.from.lv), to_id = thin_id_of(*cat, d.to.lv);
    Result<std::string> out = read_pool_snap(*cat, *lock, thin_delta_argv(tmeta(), from_id, to_id));
    if (!out)
        return fail(out.error().code, fmt::format("diff of \"{}\" in export \"{}\": {}", v->path,
                                                  name_, out.error().message));
    Result<ThinDelta> delta = parse_thin_delta(*out);
    if (!delta) return tl::unexpected(delta.error());
    if (delta->left != from_id || delta->right != to_id)
        return fail(EIO, fmt::format("thin_delta compared devices {} and {} where bd asked for {} "
                                     "and {}",
                                     delta->left, delta->right, from_id, to_id));
    if (cat->pool->chunk_size && delta->block_bytes != cat->pool->chunk_size)
        return fail(EIO, fmt::format("thin_delta reports blocks of {} bytes where pool \"{}/{}\" "
                                     "has chunks of {}",
                                     delta->block_bytes, vg_, thinpool_, cat->pool->chunk_size));
    d.chunk_size = delta->block_bytes;
    d.ranges = delta_ranges(*delta, d.to.size);
    return d;
}

// What a full send reads: only the blocks the snapshot maps (every other
// block reads zeros), from the pool's metadata snapshot.
Result<std::vector<DeltaRange>> Export::mapped_ranges(const Volume& snap) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_owned();
    if (!cat) return tl::unexpected(cat.error());
    const LvRecord* r = cat->record(snap.lv);
    if (!r || r->segtype != "thin" || r->pool != thinpool_ || r->thin_id == 0)
        return fail(EINVAL, fmt::format("\"{}\" is not a thin volume of pool \"{}/{}\"", snap.path,
                                        vg_, thinpool_));
    Result<std::string> out = read_pool_snap(*cat, *lock, thin_dump_argv(tmeta(), r->thin_id));
    if (!out)
        return fail(out.error().code, fmt::format("the blocks \"{}\" maps in export \"{}\": {}",
                                                  snap.path, name_, out.error().message));
    Result<ThinDelta> mapped = parse_thin_dump(*out, r->thin_id);
    if (!mapped) return tl::unexpected(mapped.error());
    if (cat->pool->chunk_size && mapped->block_bytes != cat->pool->chunk_size)
        return fail(EIO, fmt::format("thin_dump reports blocks of {} bytes where pool \"{}/{}\" "
                                     "has chunks of {}",
                                     mapped->block_bytes, vg_, thinpool_, cat->pool->chunk_size));
    return delta_ranges(*mapped, snap.size);
}

}  // namespace bd
