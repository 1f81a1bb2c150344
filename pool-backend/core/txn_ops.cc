// The multi-step operations (rollback, rename, delete with snapshots) and the
// fsck that finishes or undoes them. The commit point of each is one LVM
// command; build_catalog (catalog.h) shows the old state before it and the
// new state after it, and canonicalize() tidies up what remains.
#include <fmt/format.h>

#include <algorithm>

#include "dm.h"
#include "export.h"
#include "lock.h"
#include "names.h"

namespace bd {

namespace {

std::string txn_of(const std::string& lv_name) {
    size_t dot = lv_name.find('.');
    return dot == std::string::npos ? "" : lv_name.substr(dot + 1);
}

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
Result<void> Export::canonicalize(const Volume& v, const Catalog& cat, std::vector<Repair>* log) {
    std::string lv = v.lv, want = lv_name_for_path(v.path);
    std::string txn;
    for (const std::string& t : v.raw_tags)
        if (is_bd_tag(t, tags::kTxn)) txn = t.substr(std::string(tags::kTxn).size() + 1);
    if (lv != want) {
        if (txn.empty()) txn = txn_of(lv);
        if (Result<void> r = ok_or(run(lvrename_argv(vg_, lv, want))); !r) return r;
        if (log) log->push_back({lv, "renamed to " + want});
        lv = want;
    }
    Result<std::string> path_tag = make_tag(tags::kPath, v.path);
    if (!path_tag) return tl::unexpected(path_tag.error());
    TagEdit edit;
    if (std::find(v.raw_tags.begin(), v.raw_tags.end(), *path_tag) == v.raw_tags.end())
        edit.add.push_back(*path_tag);
    if (!edit.add.empty())
        if (Result<void> r = ok_or(run(lvchange_tags_argv(vg_, lv, edit))); !r) return r;
    // Stale claims go only after the new one is in place (two commands, in this order).
    TagEdit clean;
    for (const std::string& t : v.raw_tags)
        if ((is_bd_tag(t, tags::kPath) && t != *path_tag) || is_bd_tag(t, tags::kTo) ||
            is_bd_tag(t, tags::kTxn))
            clean.del.push_back(t);
    if (!clean.del.empty()) {
        if (Result<void> r = ok_or(run(lvchange_tags_argv(vg_, lv, clean))); !r) return r;
        if (log) log->push_back({lv, "cleared stale tags of an interrupted operation"});
    }
    std::string old = kOldPrefix + txn;
    if (!txn.empty() && cat.has_lv(old)) {
        if (Result<void> r = ok_or(run(lvremove_argv(vg_, old))); !r) return r;
        if (log) log->push_back({old, "removed replaced volume"});
    }
    return {};
}

Result<Volume> Export::rollback(const std::string& path, const std::string& snap) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> o = find_in(*cat, path);
    if (!o) return o;
    if (o->type == VolumeType::kSnapshot)
        return fail(EROFS, fmt::format("\"{}\" is itself a read-only snapshot; roll back its "
                                       "origin \"{}\" instead",
                                       path, o->origin_path));
    // "/PATH" names a snapshot by its path; a bare word by name or path. Names
    // are unique per origin, but a hand-made or older set may repeat one: then
    // nothing is picked, and the caller is told the paths to choose from.
    std::string snap_path = snap.rfind('/', 0) == 0 ? snap.substr(1) : "";
    std::vector<const Volume*> found;
    for (const Volume* c : cat->snapshots_of(o->id))
        if (snap_path.empty() ? c->snapshot_name == snap || c->path == snap : c->path == snap_path)
            found.push_back(c);
    if (found.empty())
        return fail(ENOENT, fmt::format("snapshot \"{}\" of \"{}\" not found in export \"{}\" "
                                        "(list them: bdctl snapshots {}:/{})",
                                        snap, path, name_, name_, path));
    if (found.size() > 1) {
        std::string paths;
        for (const Volume* c : found) paths += fmt::format("{}\"/{}\"", paths.empty() ? "" : ", ", c->path);
        return fail(EINVAL, fmt::format("snapshot name \"{}\" of \"{}\" is ambiguous: it names {}; "
                                        "give the snapshot's path instead",
                                        snap, path, paths));
    }
    const Volume* s = found.front();
    if (Result<void> r = check_closed(*o); !r) return tl::unexpected(r.error());
    // 1. A writable copy of the snapshot, hidden: its staged claim is shadowed by o.
    std::string txn = random_id(8), tmp = kTmpPrefix + txn;
    Result<std::string> to = make_tag(tags::kTo, path);
    if (!to) return tl::unexpected(to.error());
    std::vector<std::string> t = {"bd.v=1", *to, fmt::format("{}={}", tags::kId, o->id),
                                  fmt::format("{}={}", tags::kTxn, txn)};
    for (const std::string& raw : o->raw_tags)
        if (is_bd_tag(raw, tags::kUid) || is_bd_tag(raw, tags::kGid) ||
            is_bd_tag(raw, tags::kMode) || is_bd_tag(raw, tags::kXattr) ||
            is_bd_tag(raw, tags::kFormat) || is_bd_tag(raw, tags::kVirtualSize))
            t.push_back(raw);
    if (Result<void> r = ok_or(run(thin_snapshot_argv(vg_, s->lv, tmp, false, t))); !r)
        return tl::unexpected(r.error());
    // 2. Commit: moving the old LV aside makes the staged claim the volume.
    if (Result<void> r = ok_or(run(lvrename_argv(vg_, o->lv, kOldPrefix + txn))); !r) {
        (void)run(lvremove_argv(vg_, tmp));
        return tl::unexpected(r.error());
    }
    // 3. Tidy up: canonical name and tags, old data removed.
    Result<Catalog> after = scan();
    if (!after) return tl::unexpected(after.error());
    Result<Volume> v = find_in(*after, path);
    if (!v) return v;
    if (Result<void> r = canonicalize(*v, *after, nullptr); !r) return tl::unexpected(r.error());
    return find(path);
}

Result<Volume> Export::rename(const std::string& src, const std::string& dst, const Actor& who) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({src, dst});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_in(*cat, src);
    if (!v) return v;
    if (src == dst) return v;
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
    Argv commit = v->managed ? lvrename_argv(vg_, v->lv, lv_name_for_path(dst))
                             : lvchange_tags_argv(vg_, v->lv,
                                                  {{"bd.v=1", fmt::format("{}={}", tags::kId, v->id)}, {}});
    if (Result<void> r = ok_or(run(commit)); !r) {
        (void)run(lvchange_tags_argv(vg_, v->lv, {{}, {*to}}));
        return tl::unexpected(r.error());
    }
    // 3. Tidy up to the canonical form.
    Result<Catalog> after = scan();
    if (!after) return tl::unexpected(after.error());
    Result<Volume> moved = find_in(*after, dst);
    if (!moved) return moved;
    if (Result<void> r = canonicalize(*moved, *after, nullptr); !r)
        return tl::unexpected(r.error());
    return find(dst);
}

Result<std::vector<std::string>> Export::remove_volume(const std::string& path,
                                                       bool with_snapshots) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_in(*cat, path);
    if (!v) return tl::unexpected(v.error());
    std::vector<const Volume*> snaps;
    descendants(*cat, v->id, snaps);
    if (!snaps.empty() && !with_snapshots) {
        std::string names;
        for (const Volume* s : snaps) names += (names.empty() ? "" : ", ") + s->path;
        return fail(ENOTEMPTY, fmt::format("volume \"{}\" has {} snapshot(s) ({}); delete them "
                                           "first or pass --with-snapshots",
                                           path, snaps.size(), names));
    }
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
    deleted.push_back(path);
    return deleted;
}

Result<std::vector<Repair>> Export::fsck(bool dry_run) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    std::vector<Repair> log;
    // Committed operations are finished first, so their _bd_old twins are known garbage.
    for (const Volume& v : cat->volumes) {
        if (v.canonical || !v.managed) continue;
        if (dry_run) {
            log.push_back({v.lv, "would finish interrupted operation on \"" + v.path + "\""});
        } else if (Result<void> r = canonicalize(v, *cat, &log); !r) {
            return tl::unexpected(r.error());
        }
    }
    if (!dry_run) {
        cat = scan();
        if (!cat) return tl::unexpected(cat.error());
    }
    // What remains never became a volume, or was committed away: safe to remove.
    std::vector<const Leftover*> order;
    for (const Leftover& l : cat->leftovers)
        if (l.lv.name.rfind(kDelPrefix, 0) != 0) order.push_back(&l);
    for (const Leftover& l : cat->leftovers)
        if (l.lv.name.rfind(kDelPrefix, 0) == 0) order.push_back(&l);
    for (const Leftover* l : order) {
        bool internal = l->lv.name.rfind("_bd_", 0) == 0 || l->reason.rfind("snapshot", 0) == 0;
        if (!internal) {
            log.push_back({l->lv.name, "left alone: bd tags but no claim matches its name "
                                       "(renamed outside bd?); rename it back or remove its tags"});
            continue;
        }
        if (!dry_run)
            if (Result<void> r = ok_or(run(lvremove_argv(vg_, l->lv.name))); !r)
                return tl::unexpected(r.error());
        log.push_back({l->lv.name, std::string(dry_run ? "would remove" : "removed") + " (" +
                                       l->reason + ")"});
    }
    return log;
}

}  // namespace bd
