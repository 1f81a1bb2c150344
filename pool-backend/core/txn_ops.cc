// The multi-step operations and the fsck that finishes or undoes them. Each
// has one commit point, one LVM command; build_catalog (catalog.h) shows the
// old state before it and the new state after it, and canonicalize() tidies
// up what remains. docs/ARCHITECTURE.md ("Crash safety") lists them all.
#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>

#include "copy.h"
#include "dm.h"
#include "export.h"
#include "lock.h"
#include "names.h"
#include "pool_snap.h"

namespace bd {

namespace {

Result<void> ok_or(Result<CommandOutput> r) {
    if (!r) return tl::unexpected(classify(r.error()));
    return {};
}

// Every descendant snapshot of `id`, deepest first, so removal order is safe.
void descendants(const Catalog& cat, const std::string& id, std::vector<const Volume*>& out) {
    for (const Volume* s : cat.snapshots_of(id)) {
        descendants(cat, s->id, out);
        out.push_back(s);
    }
}

}  // namespace

std::string txn_tag(const std::string& txn) { return fmt::format("{}={}", tags::kTxn, txn); }

namespace {

Error has_snapshots(const std::string& path, const std::vector<const Volume*>& snaps,
                    const char* what) {
    std::string names;
    for (const Volume* s : snaps) names += (names.empty() ? "" : ", ") + s->path;
    return Error(ENOTEMPTY, fmt::format("volume \"{}\" has {} snapshot(s) ({}); {}", path,
                                        snaps.size(), names, what));
}

// The attributes a volume's identity carries across a change of its data.
bool keeps_identity(const std::string& tag) {
    return is_bd_tag(tag, tags::kUid) || is_bd_tag(tag, tags::kGid) ||
           is_bd_tag(tag, tags::kMode) || is_bd_tag(tag, tags::kMtime) ||
           tag.rfind("bd.x=user.", 0) == 0 || tag.rfind("bd.x=trusted.", 0) == 0;
}

// The physical paths a volume claims (its tags), which a directory move maps.
bool claims_within(const Volume& v, const std::string& dir) {
    for (const char* key : {tags::kPath, tags::kTo})
        for (const std::string& c : tag_values(v.raw_tags, key))
            if (is_within(c, dir)) return true;
    return false;
}

}  // namespace

bool Export::is_open(const std::string& lv, int more_than) {
    Result<DmInfo> info = dm_info(dm_name(vg_, lv));
    return info && info->exists && info->open_count > more_than;
}

Result<void> Export::check_closed(const Volume& v) {
    Result<DmInfo> info = dm_info(dm_name(vg_, v.lv));
    bool open = info ? info->exists && info->open_count > 0 : v.open;
    if (!open) return {};
    return fail(EBUSY, fmt::format("volume \"{}\" in export \"{}\" is open (in use by a running VM, "
                                   "a mount or another program); stop its user first",
                                   v.path, name_));
}

// Brings a visible but non-canonical volume to its final form: canonical LV
// name, exactly one bd.path tag, no bd.to/bd.txn, and no _bd_old.TXN twin.
// Every step keeps the volume where it is: its path is claimed (staged
// first, if a directory move is what shows it there) before the LV is renamed.
Result<void> Export::canonicalize(const Volume& v, const Catalog& cat, std::vector<Repair>* log) {
    std::string lv = v.lv, want = lv_name(v.path);
    std::string txn;
    for (const std::string& t : v.raw_tags)
        if (is_bd_tag(t, tags::kTxn)) txn = t.substr(std::string(tags::kTxn).size() + 1);
    Result<std::string> path_tag = make_tag(tags::kPath, v.path);
    Result<std::string> to_tag = make_tag(tags::kTo, v.path);
    if (!path_tag || !to_tag) return tl::unexpected((path_tag ? to_tag : path_tag).error());
    auto has = [&](const std::string& t) {
        return std::find(v.raw_tags.begin(), v.raw_tags.end(), t) != v.raw_tags.end();
    };
    bool claimed = has(*path_tag) || has(*to_tag), staged = false;
    if (lv != want && lv != v.path) {
        if (!claimed) {
            if (Result<void> r = ok_or(run(lvchange_tags_argv(vg_, lv, {{*to_tag}, {}}))); !r)
                return r;
            staged = true;
        }
        if (Result<void> r = ok_or(run(lvrename_argv(vg_, lv, want))); !r) return r;
        if (log) log->push_back({lv, "renamed to " + want});
        lv = want;
        claimed = true;
    }
    // The path tag in, every stale claim out: one metadata commit.
    TagEdit edit;
    if (!has(*path_tag)) edit.add.push_back(*path_tag);
    for (const std::string& t : v.raw_tags)
        if ((is_bd_tag(t, tags::kPath) && t != *path_tag) || is_bd_tag(t, tags::kTo) ||
            is_bd_tag(t, tags::kTxn))
            edit.del.push_back(t);
    if (staged) edit.del.push_back(*to_tag);
    if (!edit.add.empty() || !edit.del.empty()) {
        if (Result<void> r = ok_or(run(lvchange_tags_argv(vg_, lv, edit))); !r) return r;
        if (log && !edit.del.empty())
            log->push_back({lv, "cleared stale tags of an interrupted operation"});
    }
    std::string old = kOldPrefix + txn;
    if (!txn.empty() && cat.has_lv(old) && !is_open(old)) {
        if (Result<void> r = ok_or(run(lvremove_argv(vg_, old))); !r) return r;
        if (log) log->push_back({old, "removed replaced volume"});
    }
    return {};
}

// Stage 1 of replace, clone-into and rollback's sibling rename: `v` claims
// `to` under transaction `txn`; its own name still makes it what it was.
Result<void> Export::stage(const Volume& v, const std::string& to, const std::string& txn) {
    Result<std::string> to_tag = make_tag(tags::kTo, to);
    if (!to_tag) return tl::unexpected(to_tag.error());
    return ok_or(run(lvchange_tags_argv(vg_, v.lv, {{*to_tag, txn_tag(txn)}, {}})));
}

// The commit of replace, clone-into and rollback: `old` gives up its name,
// and catalog rule 0 makes the transaction's LV the volume. `old` is removed,
// which LVM refuses while anyone holds it open (EBUSY: nothing has changed);
// or, when the caller holds it open itself (`held` opens, nobody else), it is
// hidden as _bd_old.TXN and reap() removes it once closed. LVM renames open
// LVs, so an opener that came between the check and the rename is caught
// after it, and the rename undone: such an opener (a VM starting) must never
// be left writing into a hidden LV.
Result<std::string> Export::retire(const Volume& old, const std::string& txn, int held) {
    if (held <= 0) {
        if (Result<void> r = ok_or(run(lvremove_argv(vg_, old.lv))); !r) {
            if (r.error().code == EBUSY)
                return fail(EBUSY, fmt::format("volume \"{}\" in export \"{}\" is open (in use "
                                               "by a running VM, a mount or another program); "
                                               "stop its user first",
                                               old.path, name_));
            return tl::unexpected(r.error());
        }
        return std::string();
    }
    if (is_open(old.lv, held))
        return fail(EBUSY, fmt::format("volume \"{}\" in export \"{}\" is open outside this "
                                       "program (a VM?); stop its user first",
                                       old.path, name_));
    if (!old.managed) {
        // Adopted in place first (same path, same name), so the hidden LV is
        // bd's, never a foreign volume named _bd_old.* in the listing.
        std::vector<std::string> adopt = {"bd.v=1", fmt::format("{}={}", tags::kId, old.id)};
        Result<std::string> path = make_tag(tags::kPath, old.path);
        if (!path) return tl::unexpected(path.error());
        adopt.push_back(*path);
        if (Result<void> r = ok_or(run(lvchange_tags_argv(vg_, old.lv, {adopt, {}}))); !r)
            return tl::unexpected(r.error());
    }
    std::string hidden = kOldPrefix + txn;
    if (Result<void> r = ok_or(run(lvrename_argv(vg_, old.lv, hidden))); !r)
        return tl::unexpected(r.error());
    if (is_open(hidden, held)) {
        if (Result<void> r = ok_or(run(lvrename_argv(vg_, hidden, old.lv))); !r)
            return tl::unexpected(r.error());
        return fail(EBUSY, fmt::format("volume \"{}\" in export \"{}\" was opened outside this "
                                       "program (a VM?) while it was being replaced; stop its "
                                       "user first",
                                       old.path, name_));
    }
    return hidden;
}

// After a commit, the rest is tidying: fsck would finish it, so a failure is a
// warning and the operation has succeeded.
Result<Volume> Export::settle(const std::string& path, const char* op) {
    Result<Catalog> after = scan_owned();
    if (!after) return tl::unexpected(after.error());
    Result<Volume> v = find_in(*after, path);
    if (!v) return v;
    if (Result<void> r = canonicalize(*v, *after, nullptr); !r) {
        if (warn_)
            warn_(fmt::format("{} of \"{}\" is done, but tidying up failed ({}); run `bdctl fsck "
                              "{}`",
                              op, path, r.error().message, name_));
        return shown(v);
    }
    Result<Volume> done = find(path);
    return shown(done ? done : v);
}

// "/PATH" names a snapshot by its path; a bare word by name or path. Names
// are unique per origin, but a hand-made or older set may repeat one: then
// nothing is picked, and the caller is told the paths to choose from.
Result<Volume> Export::pick_snapshot(const Catalog& cat, const Volume& origin,
                                     const std::string& snap) const {
    std::string snap_path = snap.rfind('/', 0) == 0 ? snap.substr(1) : "";
    std::vector<const Volume*> found;
    for (const Volume* c : cat.snapshots_of(origin.id))
        if (snap_path.empty() ? c->snapshot_name == snap || c->path == snap : c->path == snap_path)
            found.push_back(c);
    if (found.empty())
        return fail(ENOENT, fmt::format("snapshot \"{}\" of \"{}\" not found in export \"{}\" "
                                        "(list them: bdctl snapshots {}:/{})",
                                        snap, origin.path, name_, name_, origin.path));
    if (found.size() > 1) {
        std::string paths;
        for (const Volume* c : found) paths += fmt::format("{}\"/{}\"", paths.empty() ? "" : ", ", c->path);
        return fail(EINVAL, fmt::format("snapshot name \"{}\" of \"{}\" is ambiguous: it names {}; "
                                        "give the snapshot's path instead",
                                        snap, origin.path, paths));
    }
    return *found.front();
}

Result<Volume> Export::rollback(const VolumeRef& path, const std::string& snap) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({path.path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> o = find_ref(*cat, path);
    if (!o) return o;
    if (o->type == VolumeType::kSnapshot)
        return fail(EROFS, fmt::format("\"{}\" is itself a read-only snapshot; roll back its "
                                       "origin \"{}\" instead",
                                       o->path, o->origin_path));
    Result<Volume> picked = pick_snapshot(*cat, *o, snap);
    if (!picked) return picked;
    const Volume* s = &*picked;
    if (Result<void> r = check_closed(*o); !r) return tl::unexpected(r.error());
    // 1. A writable copy of the snapshot with o's identity, hidden: o holds the name.
    std::string txn = random_id(8), tmp = kTmpPrefix + txn;
    Result<std::string> to = make_tag(tags::kTo, o->path);
    if (!to) return tl::unexpected(to.error());
    std::vector<std::string> t = {"bd.v=1", *to, fmt::format("{}={}", tags::kId, o->id),
                                  txn_tag(txn)};
    for (const std::string& raw : o->raw_tags)
        if (keeps_identity(raw) || is_bd_tag(raw, tags::kFormat) ||
            is_bd_tag(raw, tags::kVirtualSize))
            t.push_back(raw);
    if (Result<void> r = ok_or(run(thin_snapshot_argv(vg_, s->lv, tmp, false, t))); !r)
        return tl::unexpected(r.error());
    // 2. Commit: o's LV goes. LVM refuses while o is open, so a VM that opened
    // it since the check above keeps its disk and the rollback fails cleanly.
    if (Result<std::string> r = retire(*o, txn, 0); !r) {
        (void)run(lvremove_argv(vg_, tmp));
        return tl::unexpected(r.error());
    }
    // 3. Tidy up: canonical name and tags.
    return settle(o->path, "rollback");
}

Result<Volume> Export::rename(const VolumeRef& src, const std::string& dst, const Actor& who) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({src.path, dst});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_ref(*cat, src);
    if (!v) return v;
    if (v->path == dst) return v;
    if (Result<void> ok = check_free(*cat, dst); !ok) return tl::unexpected(ok.error());
    // The links of its snapshots will point at DST@NAME: those names must be free.
    for (const Volume* s : cat->snapshots_of(v->id))
        if (Result<void> ok = check_snapshot_name(*cat, *v, dst, s->snapshot_name, s->path); !ok)
            return tl::unexpected(ok.error());
    if (Result<void> ok = check_metadata_room(*cat, who); !ok) return tl::unexpected(ok.error());
    Result<std::string> to = make_tag(tags::kTo, dst);
    if (!to) return tl::unexpected(to.error());
    // 1. Stage the new path; the LV's name still makes it `src`.
    if (Result<void> r = ok_or(run(lvchange_tags_argv(vg_, v->lv, {{*to}, {}}))); !r)
        return tl::unexpected(r.error());
    // 2. Commit: a managed LV changes name; a foreign one becomes managed.
    Argv commit = v->managed ? lvrename_argv(vg_, v->lv, lv_name(dst))
                             : lvchange_tags_argv(vg_, v->lv,
                                                  {{"bd.v=1", fmt::format("{}={}", tags::kId, v->id)}, {}});
    if (Result<void> r = ok_or(run(commit)); !r) {
        (void)run(lvchange_tags_argv(vg_, v->lv, {{}, {*to}}));
        return tl::unexpected(r.error());
    }
    // 3. Tidy up to the canonical form.
    unshow(v->path);
    return settle(dst, "rename");
}

// replace and clone_into: the lock, then both volumes as the caller saw them.
Result<Export::Pair> Export::lock_pair(const VolumeRef& src, const VolumeRef& dst) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({src.path, dst.path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> s = find_ref(*cat, src);
    if (!s) return tl::unexpected(s.error());
    Result<Volume> d = find_ref(*cat, dst);
    if (!d) return tl::unexpected(d.error());
    return Pair{std::move(*lock), std::move(*cat), std::move(*s), std::move(*d)};
}

Result<Placed> Export::replace(const VolumeRef& src, const VolumeRef& dst, const Actor& who,
                               int held) {
    Result<Pair> pair = lock_pair(src, dst);
    if (!pair) return tl::unexpected(pair.error());
    const Catalog* cat = &pair->cat;
    const Volume* s = &pair->src;
    const Volume* d = &pair->dst;
    if (s->id == d->id) return Placed{*s, ""};
    if (!s->managed)
        return fail(EPERM, fmt::format("volume \"{}\" was not made by bd; adopt it first (bdctl "
                                       "rename, or chmod)",
                                       s->path));
    std::vector<const Volume*> snaps;
    descendants(*cat, d->id, snaps);
    if (!snaps.empty())
        return tl::unexpected(has_snapshots(d->path, snaps, "delete them before replacing it"));
    for (const Volume* c : cat->snapshots_of(s->id))
        if (Result<void> ok = check_snapshot_name(*cat, *s, d->path, c->snapshot_name, c->path); !ok)
            return tl::unexpected(ok.error());
    if (Result<void> ok = check_metadata_room(*cat, who); !ok) return tl::unexpected(ok.error());
    if (held <= 0)
        if (Result<void> ok = check_closed(*d); !ok) return tl::unexpected(ok.error());
    // 1. src stages dst under a transaction; its name still makes it src.
    std::string txn = random_id(8);
    if (Result<void> r = stage(*s, d->path, txn); !r) return tl::unexpected(r.error());
    // 2. Commit: dst's LV gives up its name (removed, or hidden while held).
    Result<std::string> hidden = retire(*d, txn, held);
    if (!hidden) {
        Result<std::string> to = make_tag(tags::kTo, d->path);
        (void)run(lvchange_tags_argv(vg_, s->lv, {{}, {*to, txn_tag(txn)}}));
        return tl::unexpected(hidden.error());
    }
    // 3. Tidy up: src's LV takes dst's name and tags.
    unshow(s->path);
    Result<Volume> v = settle(d->path, "replace");
    if (!v) return tl::unexpected(v.error());
    return Placed{*v, *hidden};
}

Result<Placed> Export::clone_into(const VolumeRef& src, const VolumeRef& dst, const Actor& who,
                                  int held) {
    Result<Pair> pair = lock_pair(src, dst);
    if (!pair) return tl::unexpected(pair.error());
    const Catalog* cat = &pair->cat;
    const Volume* s = &pair->src;
    const Volume* d = &pair->dst;
    if (s->type == VolumeType::kThick)
        return fail(EOPNOTSUPP, fmt::format("volume \"{}\" is thick: no copy-on-write clone of it "
                                            "(copy its data instead)",
                                            s->path));
    if (d->read_only)
        return fail(EROFS, fmt::format("\"{}\" is a read-only snapshot", d->path));
    if (s->id == d->id)
        return fail(EINVAL, fmt::format("\"{}\" cannot be cloned into itself", s->path));
    if (Result<void> ok = check_readable(*cat, *s, who); !ok) return tl::unexpected(ok.error());
    if (Result<void> ok = check_space(*cat); !ok) return tl::unexpected(ok.error());
    if (Result<void> ok = check_metadata_room(*cat, who); !ok) return tl::unexpected(ok.error());
    if (held <= 0)
        if (Result<void> ok = check_closed(*d); !ok) return tl::unexpected(ok.error());
    // 1. A writable snapshot of src with dst's identity, hidden: dst holds the name.
    std::string txn = random_id(8), tmp = kTmpPrefix + txn;
    Result<std::string> to = make_tag(tags::kTo, d->path);
    if (!to) return tl::unexpected(to.error());
    std::vector<std::string> t = {"bd.v=1", *to, fmt::format("{}={}", tags::kId, d->id),
                                  txn_tag(txn)};
    for (const std::string& raw : d->raw_tags)
        if (keeps_identity(raw)) t.push_back(raw);
    for (const std::string& raw : s->raw_tags)
        if (is_bd_tag(raw, tags::kFormat) || is_bd_tag(raw, tags::kVirtualSize)) t.push_back(raw);
    if (Result<void> r = ok_or(run(thin_snapshot_argv(vg_, s->lv, tmp, false, t))); !r)
        return tl::unexpected(r.error());
    // 2. Commit: dst's LV gives up its name.
    Result<std::string> hidden = retire(*d, txn, held);
    if (!hidden) {
        (void)run(lvremove_argv(vg_, tmp));
        return tl::unexpected(hidden.error());
    }
    // 3. Tidy up.
    Result<Volume> v = settle(d->path, "clone into");
    if (!v) return tl::unexpected(v.error());
    return Placed{*v, *hidden};
}

Result<std::string> Export::hide(const VolumeRef& path, int held) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({path.path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_ref(*cat, path);
    if (!v) return tl::unexpected(v.error());
    std::vector<const Volume*> snaps;
    descendants(*cat, v->id, snaps);
    if (!snaps.empty())
        return tl::unexpected(has_snapshots(v->path, snaps, "delete them first"));
    // Commit: the LV gives up its name; nothing claims _bd_old.*.
    Result<std::string> hidden = retire(*v, random_id(8), std::max(held, 1));
    if (hidden) unshow(v->path);
    return hidden;
}

Result<Fd> Export::open_to_empty(const VolumeRef& ref, int held) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_owned();
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_ref(*cat, ref);
    if (!v) return tl::unexpected(v.error());
    if (v->read_only) return fail(EROFS, fmt::format("\"{}\" is a read-only snapshot", v->path));
    Result<Fd> fd = open_device(device(*v), O_RDWR);
    if (!fd) return fd;
    if (is_open(v->lv, held + 1))
        return fail(EBUSY, fmt::format("\"{}\" in export \"{}\" is open elsewhere (a VM?); "
                                       "emptying it would destroy its data under it",
                                       v->path, name_));
    return fd;
}

Result<void> Export::reap(const std::string& lv) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_owned();
    if (!cat) return tl::unexpected(cat.error());
    for (const std::string& name : cat->lv_names) {
        if (name.rfind(kOldPrefix, 0) != 0 || (!lv.empty() && name != lv) || is_open(name))
            continue;
        if (Result<void> r = ok_or(run(lvremove_argv(vg_, name))); !r) return r;
    }
    return {};
}

Result<std::vector<std::string>> Export::remove_volume(const VolumeRef& path,
                                                       bool with_snapshots) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({path.path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_ref(*cat, path);
    if (!v) return tl::unexpected(v.error());
    std::vector<const Volume*> snaps;
    descendants(*cat, v->id, snaps);
    if (!snaps.empty() && !with_snapshots)
        return tl::unexpected(
            has_snapshots(v->path, snaps, "delete them first or pass --with-snapshots"));
    if (Result<void> r = check_closed(*v); !r) return tl::unexpected(r.error());
    for (const Volume* s : snaps)
        if (Result<void> r = check_closed(*s); !r) return tl::unexpected(r.error());
    std::vector<std::string> deleted;
    std::string victim = v->lv;
    if (!snaps.empty()) {
        // Commit: renaming the origin aside hides it and all its snapshots at once.
        victim = kDelPrefix + random_id(8);
        if (Result<void> r = ok_or(run(lvrename_argv(vg_, v->lv, victim))); !r)
            return tl::unexpected(r.error());
    }
    for (const Volume* s : snaps) {
        if (Result<void> r = ok_or(run(lvremove_argv(vg_, s->lv))); !r)
            return tl::unexpected(r.error());
        deleted.push_back(s->path);
    }
    if (Result<void> r = ok_or(run(lvremove_argv(vg_, victim))); !r)
        return tl::unexpected(r.error());
    deleted.push_back(v->path);
    for (const std::string& p : deleted) unshow(p);
    return deleted;
}

Result<std::vector<Repair>> Export::fsck(bool dry_run) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    auto held = hold_lock(*lock);  // for the repairs that are whole operations (rollback)
    Result<Catalog> cat = scan_owned();
    if (!cat) return tl::unexpected(cat.error());
    std::vector<Repair> log;
    // Committed operations are finished first (directory moves included), so
    // their _bd_old twins are known garbage.
    for (const Volume& v : cat->volumes) {
        if (v.canonical || !v.managed) continue;
        if (v.conflict) {
            log.push_back({v.lv, "left alone: another LV claims \"" + v.path + "\" too (see "
                                 "below); keep one by renaming the other (lvrename), then fsck"});
            continue;
        }
        if (dry_run) {
            log.push_back({v.lv, "would finish interrupted operation on \"" + v.path + "\""});
        } else if (Result<void> r = canonicalize(v, *cat, &log); !r) {
            return tl::unexpected(r.error());
        }
    }
    if (!dry_run) {
        cat = scan_owned();
        if (!cat) return tl::unexpected(cat.error());
        TagEdit done;
        for (const DirMove& m : cat->moves) {
            bool moving = false;
            for (const Volume& v : cat->volumes) moving = moving || claims_within(v, m.from);
            if (!moving) done.del.push_back(*dir_move_tag(m));
        }
        if (!done.del.empty()) {
            if (Result<void> r = ok_or(run(lvchange_tags_argv(vg_, thinpool_, done))); !r)
                return tl::unexpected(r.error());
            log.push_back({thinpool_, "finished an interrupted directory move"});
        }
    }
    // What remains never became a volume, or was committed away: safe to
    // remove once nothing holds it open (a copy in progress, a file open in bdfs).
    std::vector<const Leftover*> order;
    for (const Leftover& l : cat->leftovers)
        if (l.lv.name.rfind(kDelPrefix, 0) != 0) order.push_back(&l);
    for (const Leftover& l : cat->leftovers)
        if (l.lv.name.rfind(kDelPrefix, 0) == 0) order.push_back(&l);
    for (const Leftover* l : order) {
        if (l->conflict) {
            log.push_back({l->lv.name, "left alone: " + l->reason});
            continue;
        }
        bool internal = l->lv.name.rfind("_bd_", 0) == 0 || l->reason.rfind("snapshot", 0) == 0;
        if (!internal) {
            log.push_back({l->lv.name, "left alone: bd tags but no claim matches its name "
                                       "(renamed outside bd?); rename it back or remove its tags"});
            continue;
        }
        if (is_open(l->lv.name)) {
            log.push_back({l->lv.name, "left alone for now: open (an operation in progress, or "
                                       "a file still open in bdfs); it goes when closed"});
            continue;
        }
        if (!dry_run)
            if (Result<void> r = ok_or(run(lvremove_argv(vg_, l->lv.name))); !r)
                return tl::unexpected(r.error());
        log.push_back({l->lv.name, std::string(dry_run ? "would remove" : "removed") + " (" +
                                       l->reason + ")"});
    }
    if (!dry_run) retree(*cat);
    // A receive commits its snapshot before its volume takes the data (or, for
    // a full stream, is made from it): killed between, that is finished here
    // (recv_ops.cc). One at a time, each on a fresh read.
    std::vector<std::string> received;
    for (const Volume& v : cat->volumes)
        if (v.type == VolumeType::kSnapshot && tag_value(v.raw_tags, tags::kRecvApply))
            received.push_back(v.id);
    if (!received.empty()) {
        for (const std::string& id : received) {
            if (!dry_run) cat = scan_owned();
            if (!cat) return tl::unexpected(cat.error());
            const Volume* s = cat->find_id(id);
            if (!s) continue;
            Result<Repair> r = finish_receive(*cat, *s, dry_run);
            if (!r) return tl::unexpected(r.error());
            log.push_back(*r);
        }
        if (!dry_run) cat = scan_owned();
        if (!cat) return tl::unexpected(cat.error());
    }
    // A metadata snapshot a killed bd left held would tax every write to the
    // pool; one another tool holds is theirs (pool_snap.h).
    if (cat->pool->active) {
        std::string tpool = tpool_device();
        Result<SnapHolder> holder = PoolSnap::holder(runner_, tpool, pool_snap_marker());
        if (!holder) {
            if (warn_)
                warn_(fmt::format("could not check thin pool \"{}/{}\" for a held metadata "
                                  "snapshot: {}",
                                  vg_, thinpool_, holder.error().message));
        } else if (*holder == SnapHolder::kOther) {
            log.push_back({thinpool_, fmt::format("left alone: a metadata snapshot bd did not take "
                                                  "is held (another tool reading the pool's "
                                                  "metadata?); when nothing is, release it: "
                                                  "dmsetup message {} 0 release_metadata_snap",
                                                  tpool)});
        } else if (*holder == SnapHolder::kBd) {
            if (!dry_run)
                if (Result<void> ok = PoolSnap::release_leftover(runner_, tpool, pool_snap_marker());
                    !ok)
                    return tl::unexpected(ok.error());
            log.push_back({thinpool_, std::string(dry_run ? "would release" : "released") +
                                          " a metadata snapshot a killed bd left held"});
        }
    }
    return log;
}

}  // namespace bd
