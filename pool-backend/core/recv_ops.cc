// Export::receive: a stream (docs/STREAM.md) into a volume, all or nothing.
//
// 1. Under the lock: the checks (the stream starts from the target's last
//    received snapshot; the target is closed and unchanged since), and a
//    temporary thin LV with no claim (a writable snapshot of that base, or a
//    new LV for a full stream), held open from then on.
// 2. Without the lock: each record, checked by the reader, is written there.
// 3. Under the lock, once the end record checked out: the checks again, and
//    the commit, one lvcreate: the received snapshot, read-only, at
//    PATH@NAME, with the source's ids in its tags.
// 4. Tidying, under the same lock: the volume takes that snapshot's data (a
//    full stream: the volume is made from it), and the temporary LV goes.
// Killed before 3, the temporary LV is a leftover fsck removes, and the
// target is as it was. The snapshot carries bd.recvapply from its commit
// until the volume holds its data: killed after 3, fsck or the next receive
// finishes that (finish_receive), unless the volume was written to since.
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "access.h"
#include "dm.h"
#include "export.h"
#include "lvm_argv.h"
#include "names.h"
#include "size.h"
#include "text.h"
#include "thin_status.h"

namespace bd {

namespace {

// The received snapshot of a volume that carries the highest generation.
const Volume* latest_received(const Catalog& cat, const std::string& id) {
    const Volume* best = nullptr;
    uint64_t best_gen = 0;
    for (const Volume* s : cat.snapshots_of(id)) {
        std::optional<std::string> gen = tag_value(s->raw_tags, tags::kRecvGen);
        uint64_t g = gen ? strtoull(gen->c_str(), nullptr, 10) : 0;
        if (g > best_gen) best = s, best_gen = g;
    }
    return best;
}

uint64_t generation(const Volume& s) {
    std::optional<std::string> gen = tag_value(s.raw_tags, tags::kRecvGen);
    return gen ? strtoull(gen->c_str(), nullptr, 10) : 0;
}

// A received snapshot whose volume has not taken its data yet: the commit
// tags it so, and the tag goes once the volume holds the data.
bool pending(const Volume& s) {
    return bool(tag_value(s.raw_tags, tags::kRecvApply));
}

std::string apply_tag() {
    return fmt::format("{}=1", tags::kRecvApply);
}

// The volume path a received snapshot PATH@NAME was received for.
std::string received_for(const Volume& s) {
    std::string suffix = "@" + s.snapshot_name;
    if (s.path.size() <= suffix.size() ||
        s.path.compare(s.path.size() - suffix.size(), suffix.size(), suffix) != 0)
        return "";
    return s.path.substr(0, s.path.size() - suffix.size());
}

// A hole: whole pool blocks are discarded (a thin LV then reads zeros and
// maps nothing); the parts of blocks at its edges are written with zeros.
Result<void> punch(int fd, uint64_t off, uint64_t len, uint64_t chunk, const std::string& dev) {
    static const char kZeros[65536] = {};
    uint64_t end = off + len;
    uint64_t a = (off + chunk - 1) / chunk * chunk, b = end / chunk * chunk;
    auto zero = [&](uint64_t from, uint64_t to) -> Result<void> {
        for (uint64_t at = from; at < to;) {
            uint64_t n = std::min<uint64_t>(sizeof kZeros, to - at);
            if (Result<void> ok = pwrite_full(fd, kZeros, n, at, dev); !ok) return ok;
            at += n;
        }
        return {};
    };
    if (a >= b) return zero(off, end);
    if (Result<void> ok = zero(off, a); !ok) return ok;
    uint64_t range[2] = {a, b - a};
    if (ioctl(fd, BLKDISCARD, range) < 0) {
        // A pool made with discards=ignore: zeros, as a full copy writes them.
        if (errno != EOPNOTSUPP)
            return fail(errno, fmt::format("BLKDISCARD of \"{}\": {}", dev, strerror(errno)));
        if (Result<void> ok = zero(a, b); !ok) return ok;
    }
    return zero(b, end);
}

}  // namespace

struct Export::ReceivePlan {
    std::optional<Volume> target;  ///< absent: a full stream makes it
    std::optional<Volume> base;    ///< the local snapshot the stream starts from
    std::string target_id, snap_path;
    uint64_t generation = 1;
};

// What a receive may do now, checked at its start and again at its commit.
Result<Export::ReceivePlan> Export::plan_receive(const Catalog& cat, const std::string& path,
                                                 const StreamHeader& h, const Actor& who) {
    ReceivePlan plan;
    plan.snap_path = path + "@" + h.snapshot.name;
    const Volume* t = cat.find(path);
    if (!h.base) {
        for (const Volume* s : t ? cat.snapshots_of(t->id) : std::vector<const Volume*>{})
            if (tag_value(s->raw_tags, tags::kRecv) == h.snapshot.id)
                return fail(EEXIST, fmt::format("snapshot \"{}\" of the stream was received "
                                                "already, as \"{}\"",
                                                h.snapshot.name, s->path));
        if (t)
            return fail(EEXIST, fmt::format("\"{}\" exists in export \"{}\", and a full stream "
                                            "makes a new volume: receive it at a new path, or "
                                            "send from a snapshot this one received (--from)",
                                            path, name_));
        if (Result<void> ok = check_free(cat, path); !ok) return tl::unexpected(ok.error());
        plan.target_id = random_id(16);
    } else {
        if (!t)
            return fail(ENOENT, fmt::format("\"{}\" not found in export \"{}\": an incremental "
                                            "stream applies to the volume that received its base "
                                            "(\"{}\")",
                                            path, name_, h.base->name));
        if (t->type != VolumeType::kThin)
            return fail(EINVAL,
                        fmt::format("\"{}\" in export \"{}\" is {}: a stream updates the "
                                    "thin volume that received its base",
                                    path, name_,
                                    t->type == VolumeType::kSnapshot ? "a snapshot" : "thick"));
        const Volume* last = latest_received(cat, t->id);
        if (!last)
            return fail(EINVAL, fmt::format("\"{}\" has received no stream: send a full stream "
                                            "first (without --from)",
                                            path));
        if (tag_value(last->raw_tags, tags::kRecvFrom) != h.volume_id)
            return fail(EINVAL, fmt::format("the stream is of another volume (\"{}\" of export "
                                            "\"{}\", id {}) than the one \"{}\" receives",
                                            h.path, h.export_name, h.volume_id, path));
        for (const Volume* s : cat.snapshots_of(t->id))
            if (tag_value(s->raw_tags, tags::kRecv) == h.snapshot.id)
                return fail(EEXIST, fmt::format("snapshot \"{}\" of the stream was received "
                                                "already, as \"{}\"",
                                                h.snapshot.name, s->path));
        if (tag_value(last->raw_tags, tags::kRecv) != h.base->id)
            return fail(EINVAL,
                        fmt::format("the stream starts from \"{}\", but the last snapshot "
                                    "\"{}\" received is \"{}\": send with --from {}",
                                    h.base->name, path, last->snapshot_name, last->snapshot_name));
        if (Result<void> ok = check_readable(cat, *t, who); !ok) return tl::unexpected(ok.error());
        if (!may(who, t->uid, t->gid, t->mode, kMayWrite))
            return fail(EACCES, fmt::format("cannot receive into \"{}\" in export \"{}\": no write "
                                            "permission (mode {:04o}, owner {}:{})",
                                            path, name_, t->mode, t->uid, t->gid));
        plan.target = *t;
        plan.base = *last;
        plan.target_id = t->id;
        plan.generation = generation(*last) + 1;
    }
    if (Result<void> ok = check_metadata_room(cat, who); !ok) return tl::unexpected(ok.error());
    if (Result<void> ok = check_free(cat, plan.snap_path); !ok) return tl::unexpected(ok.error());
    if (plan.target)
        if (Result<void> ok =
                check_snapshot_name(cat, *plan.target, path, h.snapshot.name, plan.snap_path);
            !ok)
            return tl::unexpected(ok.error());
    return plan;
}

// The volume a full stream makes: a writable thin snapshot of what it received.
Result<Volume> Export::make_received_volume(const Volume& snap, const std::string& path) {
    Result<std::vector<std::string>> tags =
        new_volume_tags(path, Attrs{snap.uid, snap.gid, snap.mode, std::nullopt, {}});
    if (!tags) return tl::unexpected(tags.error());
    for (std::string& t : *tags)
        if (is_bd_tag(t, tags::kId)) t = fmt::format("{}={}", tags::kId, snap.origin_id);
    if (Result<CommandOutput> out =
            run(thin_snapshot_argv(vg_, snap.lv, lv_name(path), false, *tags));
        !out)
        return tl::unexpected(classify(out.error()));
    return find(path);
}

// Whether the volume still reads as `snap` does: no block mapped apart, and
// the same size.
Result<bool> Export::reads_as(const Volume& v, const Volume& snap) {
    Result<VolumeDelta> d = diff({v.path, v.id}, "/" + snap.path, "", Actor::root());
    if (!d) return tl::unexpected(d.error());
    return d->ranges.empty() && v.size == snap.size;
}

// What was written to the target since it received `last`: a receive
// replaces it, so it must be asked for (--force).
Result<void> Export::check_unchanged(const Volume& v, const Volume& last) {
    Result<VolumeDelta> d = diff({v.path, v.id}, "/" + last.path, "", Actor::root());
    if (!d) return tl::unexpected(d.error());
    uint64_t changed = 0;
    for (const DeltaRange& r : d->ranges) changed += r.length;
    if (!changed && v.size == last.size) return {};
    std::string what = changed ? fmt::format("written to ({} in {} range{})", format_size(changed),
                                             d->ranges.size(), d->ranges.size() == 1 ? "" : "s")
                               : fmt::format("resized (to {})", format_size(v.size));
    return fail(EBUSY, fmt::format("\"{}\" in export \"{}\" was {} since it received \"{}\", and a "
                                   "receive would discard that: snapshot it first to keep it, "
                                   "then pass --force",
                                   v.path, name_, what, last.snapshot_name));
}

// Gives a pending received snapshot's data to its volume (made from it, for
// a full stream), and drops the pending tag; or says why it is left alone.
// Under the lock. The receive that committed it does this itself; this is
// for one that was killed or found the volume open (fsck, the next receive).
Result<Repair> Export::finish_receive(const Catalog& cat, const Volume& snap, bool dry_run,
                                      bool force) {
    const char* would = dry_run ? "would " : "";
    auto done = [&](std::string action) -> Result<Repair> {
        if (!dry_run)
            if (Result<CommandOutput> out =
                    run(lvchange_tags_argv(vg_, snap.lv, {{}, {apply_tag()}}));
                !out)
                return tl::unexpected(classify(out.error()));
        return Repair{snap.lv, std::move(action)};
    };
    auto left = [&](const std::string& why) { return Repair{snap.lv, "left alone: " + why}; };
    const Volume* v = cat.find_id(snap.origin_id);
    if (!v) {
        std::string path = received_for(snap);
        if (generation(snap) != 1 || path.empty())
            return done(fmt::format("{}forget what \"{}\" was received for: its volume is gone",
                                    would, snap.path));
        if (Result<void> ok = check_free(cat, path); !ok)
            return left(
                fmt::format("the volume a killed receive was making from it cannot be "
                            "made: {}",
                            ok.error().message));
        if (!dry_run)
            if (Result<Volume> made = make_received_volume(snap, path); !made)
                return left(fmt::format("making \"{}\" from it failed: {}", path,
                                        made.error().message));
        return done(
            fmt::format("{}make \"{}\" from it, as the killed receive that committed it "
                        "would have",
                        would, path));
    }
    std::string fix = fmt::format(
        "`bdctl rollback {}:/{} {}` gives it the received data (and "
        "discards what differs), `bdctl delete {}:/{}` drops it",
        name_, v->path, snap.snapshot_name, name_, snap.path);
    if (v->type != VolumeType::kThin)
        return left(fmt::format("\"{}\" is not a thin volume now; {}", v->path, fix));
    // The volume's LV was made from this snapshot (by the receive's rollback,
    // or for a full stream): it took the data then, whatever was written since.
    const LvRecord* lv = cat.record(v->lv);
    if ((lv && lv->origin == snap.lv) || generation(snap) == 1)
        return done(fmt::format("{}mark it applied: \"{}\" was made from it", would, v->path));
    Result<bool> holds = reads_as(*v, snap);
    if (!holds) return left(fmt::format("{} ({})", holds.error().message, fix));
    if (*holds)
        return done(fmt::format("{}mark it applied: \"{}\" holds its data", would, v->path));
    const Volume* base = nullptr;
    for (const Volume* s : cat.snapshots_of(v->id))
        if (tag_value(s->raw_tags, tags::kRecvFrom) && generation(*s) + 1 == generation(snap))
            base = s;
    Result<bool> untouched = force ? Result<bool>(true)
                             : base ? reads_as(*v, *base)
                                    : Result<bool>(false);
    if (!untouched) return left(fmt::format("{} ({})", untouched.error().message, fix));
    if (!*untouched)
        return left(fmt::format("\"{}\" was written to since it received \"{}\"; {}", v->path,
                                base ? base->snapshot_name : "its base", fix));
    if (is_open(v->lv))
        return left(
            fmt::format("\"{}\" is open; it takes the received data at the next fsck or "
                        "receive once closed",
                        v->path));
    if (!dry_run)
        if (Result<Volume> rolled = rollback({v->path, v->id}, "/" + snap.path); !rolled)
            return left(fmt::format("giving \"{}\" its data failed: {}", v->path,
                                    rolled.error().message));
    return done(fmt::format("{}give \"{}\" its data, as the receive that committed it would have",
                            would, v->path));
}

Result<ReceiveResult> Export::receive(const VolumeRef& ref, StreamReader& stream, bool force,
                                      const Progress& progress, const Actor& who) {
    const StreamHeader& h = stream.header();
    const std::string& path = ref.path;
    // The stream's names and sizes are data from elsewhere: checked as a
    // user's would be.
    std::string snap_path = path + "@" + h.snapshot.name;
    if (Result<std::string> ok = normalize_path(snap_path);
        !ok || h.snapshot.name.find('/') != std::string::npos || *ok != snap_path)
        return fail(
            ok ? EINVAL : ok.error().code,
            fmt::format("the stream's snapshot name \"{}\" is not a valid name "
                        "in export \"{}\"{}",
                        printable(h.snapshot.name), name_, ok ? "" : ": " + ok.error().message));
    Result<uint64_t> bytes = round_up(h.size, extent_size_);
    if (h.size == 0 || !bytes)
        return fail(EINVAL, fmt::format("the stream gives its volume a size of {} bytes, which no "
                                        "volume of export \"{}\" can have",
                                        h.size, name_));
    // The report open() read came before any lock: the checks read again.
    cached_.reset();
    std::string txn = random_id(8), tmp = kTmpPrefix + txn;
    auto drop_tmp = [&] { (void)run(lvremove_argv(vg_, tmp)); };
    ReceivePlan plan;
    uint64_t chunk = 0;
    // The received snapshot's tags, built (and so checked) before any data moves.
    auto snap_tags = [&](const ReceivePlan& pl) -> Result<std::vector<std::string>> {
        Attrs owner = pl.target
                          ? Attrs{pl.target->uid, pl.target->gid, pl.target->mode, std::nullopt, {}}
                          : Attrs{who.uid, who.gid, std::nullopt, std::nullopt, {}};
        Result<std::vector<std::string>> t = new_volume_tags(pl.snap_path, owner);
        if (!t) return t;
        t->push_back(fmt::format("{}={}", tags::kSnapOf, pl.target_id));
        for (auto [key, value] :
             {std::pair<const char*, const std::string*>{tags::kSnap, &h.snapshot.name},
              {tags::kRecv, &h.snapshot.id},
              {tags::kRecvFrom, &h.volume_id}}) {
            Result<std::string> one = make_tag(key, *value);
            if (!one) return tl::unexpected(one.error());
            t->push_back(*one);
        }
        t->push_back(fmt::format("{}={}", tags::kRecvGen, pl.generation));
        t->push_back(apply_tag());
        return t;
    };
    // 1. Under the lock: the checks, the temporary LV, opened there so that
    // no fsck takes it for a leftover (an open one is left alone).
    Fd fd;
    std::string dev = device_of(tmp);
    {
        Result<ExportLock> lock = lock_for_change();
        if (!lock) return tl::unexpected(lock.error());
        auto held = hold_lock(*lock);
        Result<Catalog> cat = scan_for_change({path, snap_path});
        if (!cat) return tl::unexpected(cat.error());
        // A receive before this one that did not finish: finished now if it
        // can be (a full one's volume may not exist yet).
        const Volume* t = cat->find(path);
        if (t && !may(who, t->uid, t->gid, t->mode, kMayWrite))
            return fail(EACCES, fmt::format("cannot receive into \"{}\" in export \"{}\": no "
                                            "write permission (mode {:04o}, owner {}:{})",
                                            path, name_, t->mode, t->uid, t->gid));
        const Volume* last = t ? latest_received(*cat, t->id) : nullptr;
        if (!t)
            for (const Volume& s : cat->volumes)
                if (s.type == VolumeType::kSnapshot && pending(s) && generation(s) == 1 &&
                    received_for(s) == path && !cat->find_id(s.origin_id))
                    last = &s;
        if (last && pending(*last)) {
            Result<Repair> r = finish_receive(*cat, *last, false, force);
            if (!r) return tl::unexpected(r.error());
            if (r->action.rfind("left alone: ", 0) == 0)
                return fail(EUCLEAN,
                            fmt::format("the last receive into \"{}\" (\"{}\") committed, "
                                        "but \"{}\" has not taken its data, and is {}",
                                        path, last->snapshot_name, path, r->action.substr(12)));
            cat = scan_for_change({path, snap_path});
            if (!cat) return tl::unexpected(cat.error());
        }
        Result<ReceivePlan> p = plan_receive(*cat, path, h, who);
        if (!p) return tl::unexpected(p.error());
        plan = std::move(*p);
        if (Result<std::vector<std::string>> ok = snap_tags(plan); !ok)
            return tl::unexpected(ok.error());
        if (plan.target) {
            if (Result<void> ok = check_closed(*plan.target); !ok)
                return fail(EBUSY, fmt::format("{}: a receive brings it up to date, and cannot "
                                               "while it is in use",
                                               ok.error().message));
            if (!force)
                if (Result<void> ok = check_unchanged(*plan.target, *plan.base); !ok)
                    return tl::unexpected(ok.error());
        }
        chunk = cat->pool->chunk_size ? cat->pool->chunk_size : 65536;
        if (Result<void> ok = check_space(*cat); !ok) return tl::unexpected(ok.error());
        std::vector<std::string> t_tags = {"bd.v=1", txn_tag(txn)};
        Result<CommandOutput> made =
            plan.base ? run(thin_snapshot_argv(vg_, plan.base->lv, tmp, false, t_tags))
                      : run(thin_create_argv(vg_, thinpool_, tmp, *bytes, t_tags));
        if (!made) return tl::unexpected(classify(made.error()));
        if (plan.base && *bytes != plan.base->size)
            if (Result<CommandOutput> r =
                    run(lvresize_argv(vg_, tmp, *bytes, *bytes < plan.base->size));
                !r) {
                drop_tmp();
                return tl::unexpected(classify(r.error()));
            }
        fd.reset(::open(dev.c_str(), O_RDWR | O_CLOEXEC));
        if (!fd) {
            Error e(errno, fmt::format("open({}): {}", dev, strerror(errno)));
            drop_tmp();
            return tl::unexpected(e);
        }
    }
    // Every failure from here to the commit leaves the target as it was.
    auto abandon = [&](const Error& e) -> Result<ReceiveResult> {
        fd.reset();
        drop_tmp();
        return fail(e.code, fmt::format("receive into \"{}\" of export \"{}\" stopped, and it is "
                                        "as it was: {}",
                                        path, name_, e.message));
    };
    // 2. Without the lock: the records, each checked by the reader before it
    // is used. The pool's fill is watched as the data lands: a stream must
    // not take the space kept for the VMs on it.
    ReceiveResult res;
    uint64_t done = 0, seen = 0, next_check = 0;
    constexpr uint64_t kSpaceCheckEvery = 64 << 20;
    for (;;) {
        Result<std::optional<StreamRecord>> rec = stream.next();
        if (!rec) return abandon(rec.error());
        if (!*rec) break;
        Result<void> ok =
            (*rec)->kind == StreamRecord::Kind::kData
                ? pwrite_full(fd.get(), (*rec)->data, (*rec)->length, (*rec)->offset, dev)
                : punch(fd.get(), (*rec)->offset, (*rec)->length, chunk, dev);
        if (!ok) return abandon(ok.error());
        if ((*rec)->kind == StreamRecord::Kind::kData) {
            res.data_bytes += (*rec)->length;
            done += (*rec)->length;
        }
        ++res.records;
        if (progress) progress(done, 0);
        // Holes count too: where the pool ignores discards they are zeros written.
        seen += (*rec)->length;
        if (seen >= next_check) {
            next_check = seen + kSpaceCheckEvery;
            Result<ThinPoolStatus> st = dm_thin_pool_status_noflush(vg_, thinpool_);
            if (st && (st->data_percent() >= threshold_ || st->metadata_percent() >= threshold_))
                return abandon(Error(
                    ENOSPC,
                    fmt::format(
                        "thin pool \"{}/{}\" reached {:.1f}% (data) and {:.1f}% (metadata), the "
                        "export's {}% threshold; extend it (lvextend -L +SIZE {}/{}) or raise the "
                        "threshold (bdctl export set {} --threshold N), then send again",
                        vg_, thinpool_, st->data_percent(), st->metadata_percent(), threshold_, vg_,
                        thinpool_, name_)));
        }
    }
    if (fsync(fd.get()) < 0)
        return abandon(Error(errno, fmt::format("fsync({}): {}", dev, strerror(errno))));
    // 3. The commit, under the lock, after the same checks. The stream may
    // have taken hours: the lock is worth a longer wait than a short change's.
    Result<ExportLock> lock = lock_for_change(600);
    if (!lock) return abandon(lock.error());
    auto held = hold_lock(*lock);
    Result<Catalog> cat = scan_for_change({path, snap_path});
    if (!cat) return abandon(cat.error());
    Result<ReceivePlan> again = plan_receive(*cat, path, h, who);
    if (!again) return abandon(again.error());
    if (plan.target ? !again->target || again->target->id != plan.target->id ||
                          again->base->id != plan.base->id
                    : bool(again->target))
        return abandon(Error(EBUSY, fmt::format("another command changed \"{}\" meanwhile "
                                                "(renamed, deleted, rolled back or received "
                                                "into it); send again",
                                                path)));
    if (plan.target) {
        if (Result<void> ok = check_closed(*again->target); !ok) return abandon(ok.error());
        if (!force)
            if (Result<void> ok = check_unchanged(*again->target, *again->base); !ok)
                return abandon(ok.error());
    }
    if (Result<void> ok = check_space(*cat); !ok) return abandon(ok.error());
    Result<std::vector<std::string>> tags = snap_tags(*again);
    if (!tags) return abandon(tags.error());
    if (Result<CommandOutput> out =
            run(thin_snapshot_argv(vg_, tmp, lv_name(plan.snap_path), true, *tags));
        !out)
        return abandon(classify(out.error()));
    // 4. Tidying, still under the lock. The receive has committed: what
    // fails from here is finished by finish_receive (fsck, the next receive).
    fd.reset();
    drop_tmp();
    auto committed = [&](const Error& e) -> Result<ReceiveResult> {
        return fail(e.code, fmt::format("\"{}\" was received, but \"{}\" has not taken its data "
                                        "({}); `bdctl fsck {}` finishes it",
                                        plan.snap_path, path, e.message, name_));
    };
    Result<Volume> snap = find(plan.snap_path);
    if (!snap) return committed(snap.error());
    res.snapshot = *snap;
    Result<Volume> v =
        plan.target ? rollback(ref, "/" + plan.snap_path) : make_received_volume(*snap, path);
    if (!v && plan.target && v.error().code == EBUSY) {
        // The volume was opened since the check: it keeps its data for now.
        res.updated = false;
        res.volume = *again->target;
        if (warn_)
            warn_(
                fmt::format("\"{}\" is received, but \"{}\" keeps its old data ({}); it takes "
                            "the new data at the next `bdctl fsck {}` or receive once closed",
                            plan.snap_path, path, v.error().message, name_));
        return res;
    }
    if (!v) return committed(v.error());
    if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, snap->lv, {{}, {apply_tag()}}));
        !out && warn_)
        warn_(
            fmt::format("\"{}\" holds the received data, but its snapshot \"{}\" is still "
                        "marked pending ({}); `bdctl fsck {}` clears that",
                        path, plan.snap_path, out.error().message, name_));
    res.volume = *v;
    return res;
}

}  // namespace bd
