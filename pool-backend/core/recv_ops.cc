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
// target is as it was. Killed after, the snapshot is whole; fsck makes the
// volume of a full stream, and a volume that kept its old data is brought up
// to date with `bdctl rollback PATH NAME`.
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "export.h"
#include "lvm_argv.h"
#include "names.h"
#include "size.h"
#include "text.h"

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

Result<void> write_all(int fd, const char* p, uint64_t n, uint64_t off, const std::string& dev) {
    while (n > 0) {
        ssize_t w = pwrite(fd, p, size_t(n), off_t(off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return fail(errno, fmt::format("write({}) at {}: {}", dev, off, strerror(errno)));
        p += w;
        n -= uint64_t(w);
        off += uint64_t(w);
    }
    return {};
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
            if (Result<void> ok = write_all(fd, kZeros, n, at, dev); !ok) return ok;
            at += n;
        }
        return {};
    };
    if (a >= b) return zero(off, end);
    if (Result<void> ok = zero(off, a); !ok) return ok;
    uint64_t range[2] = {a, b - a};
    if (ioctl(fd, BLKDISCARD, range) < 0)
        return fail(errno, fmt::format("BLKDISCARD of \"{}\": {}", dev, strerror(errno)));
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
            return fail(EINVAL, fmt::format("\"{}\" is not a thin volume", path));
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
            return fail(EINVAL, fmt::format("the stream starts from \"{}\", but the last snapshot "
                                            "\"{}\" received is \"{}\": send with --from {}",
                                            h.base->name, path, last->snapshot_name,
                                            last->snapshot_name));
        if (Result<void> ok = check_readable(cat, *t, who); !ok) return tl::unexpected(ok.error());
        plan.target = *t;
        plan.base = *last;
        plan.target_id = t->id;
        plan.generation = generation(*last) + 1;
    }
    if (Result<void> ok = check_free(cat, plan.snap_path); !ok) return tl::unexpected(ok.error());
    if (plan.target)
        if (Result<void> ok = check_snapshot_name(cat, *plan.target, path, h.snapshot.name,
                                                  plan.snap_path);
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
            run(thin_snapshot_argv(vg_, snap.lv, lv_name_for_path(path), false, *tags));
        !out)
        return tl::unexpected(classify(out.error()));
    return find(path);
}

// What was written to the target since it received `last`: a receive
// replaces it, so it must be asked for (--force).
Result<void> Export::check_unchanged(const VolumeRef& ref, const Volume& last, const Actor& who) {
    Result<VolumeDelta> d = diff(ref, "/" + last.path, "", who);
    if (!d) return tl::unexpected(d.error());
    uint64_t changed = 0;
    for (const DeltaRange& r : d->ranges) changed += r.length;
    if (!changed) return {};
    return fail(EBUSY, fmt::format("\"{}\" in export \"{}\" was written to since it received "
                                   "\"{}\" ({} in {} ranges), and a receive would discard that: "
                                   "snapshot it first to keep it, then pass --force",
                                   ref.path, name_, last.snapshot_name, format_size(changed),
                                   d->ranges.size()));
}

Result<ReceiveResult> Export::receive(const VolumeRef& ref, StreamReader& stream, bool force,
                                      const Progress& progress, const Actor& who) {
    const StreamHeader& h = stream.header();
    const std::string& path = ref.path;
    // The stream's names are data from elsewhere: checked as a user's would be.
    if (Result<std::string> ok = normalize_path(path + "@" + h.snapshot.name);
        !ok || h.snapshot.name.find('/') != std::string::npos || *ok != path + "@" + h.snapshot.name)
        return fail(EINVAL, fmt::format("the stream's snapshot name \"{}\" is not a valid name "
                                        "here{}",
                                        printable(h.snapshot.name),
                                        ok ? "" : ": " + ok.error().message));
    // While a section below holds the lock, the core's own calls in it (diff,
    // rollback) run under it rather than wait for it.
    auto hold = [this](ExportLock& lock) {
        bool mine = !held_;
        if (mine) held_ = std::make_unique<ExportLock>(std::move(lock));
        return std::shared_ptr<void>(nullptr, [this, mine](void*) {
            if (mine) held_.reset();
        });
    };
    std::string txn = random_id(8), tmp = kTmpPrefix + txn;
    auto drop_tmp = [&] { (void)run(lvremove_argv(vg_, tmp)); };
    ReceivePlan plan;
    uint64_t chunk = 0;
    // 1. Under the lock: the checks, the temporary LV, opened there so that
    // no fsck takes it for a leftover (an open one is left alone).
    Fd fd;
    std::string dev = device_of(tmp);
    {
        Result<ExportLock> lock = lock_for_change();
        if (!lock) return tl::unexpected(lock.error());
        auto held = hold(*lock);
        Result<Catalog> cat = scan_for_change({path});
        if (!cat) return tl::unexpected(cat.error());
        Result<ReceivePlan> p = plan_receive(*cat, path, h, who);
        if (!p) return tl::unexpected(p.error());
        plan = std::move(*p);
        if (plan.target) {
            if (Result<void> ok = check_closed(*plan.target); !ok)
                return fail(EBUSY, fmt::format("{}: a receive brings it up to date, and cannot "
                                               "while it is in use",
                                               ok.error().message));
            if (!force)
                if (Result<void> ok = check_unchanged(ref, *plan.base, who); !ok)
                    return tl::unexpected(ok.error());
        }
        chunk = cat->pool->chunk_size ? cat->pool->chunk_size : 65536;
        if (Result<void> ok = check_space(*cat); !ok) return tl::unexpected(ok.error());
        uint64_t bytes = (h.size + extent_size_ - 1) / extent_size_ * extent_size_;
        std::vector<std::string> t = {"bd.v=1", txn_tag(txn)};
        Result<CommandOutput> made =
            plan.base ? run(thin_snapshot_argv(vg_, plan.base->lv, tmp, false, t))
                      : run(thin_create_argv(vg_, thinpool_, tmp, bytes, t));
        if (!made) return tl::unexpected(classify(made.error()));
        if (plan.base && bytes != plan.base->size)
            if (Result<CommandOutput> r = run(lvresize_argv(vg_, tmp, bytes, bytes < plan.base->size));
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
    // Every failure from here on leaves the target as it was.
    auto abandon = [&](const Error& e) -> Result<ReceiveResult> {
        fd.reset();
        drop_tmp();
        return fail(e.code, fmt::format("receive into \"{}\" of export \"{}\" stopped, and it is "
                                        "as it was: {}",
                                        path, name_, e.message));
    };
    // 2. Without the lock: the records, each checked by the reader before it
    // is used.
    ReceiveResult res;
    uint64_t done = 0;
    for (;;) {
        Result<std::optional<StreamRecord>> rec = stream.next();
        if (!rec) return abandon(rec.error());
        if (!*rec) break;
        Result<void> ok = (*rec)->kind == StreamRecord::Kind::kData
                              ? write_all(fd.get(), (*rec)->data, (*rec)->length, (*rec)->offset, dev)
                              : punch(fd.get(), (*rec)->offset, (*rec)->length, chunk, dev);
        if (!ok) return abandon(ok.error());
        if ((*rec)->kind == StreamRecord::Kind::kData) {
            res.data_bytes += (*rec)->length;
            done += (*rec)->length;
        }
        ++res.records;
        if (progress) progress(done, 0);
    }
    if (fsync(fd.get()) < 0) return abandon(Error(errno, fmt::format("fsync({}): {}", dev, strerror(errno))));
    // 3. The commit, under the lock, after the same checks.
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return abandon(lock.error());
    auto held = hold(*lock);
    Result<Catalog> cat = scan_for_change({path});
    if (!cat) return abandon(cat.error());
    Result<ReceivePlan> again = plan_receive(*cat, path, h, who);
    if (!again) return abandon(again.error());
    if (plan.target ? !again->target || again->target->id != plan.target->id ||
                          again->base->id != plan.base->id
                    : bool(again->target))
        return abandon(Error(EBUSY, fmt::format("\"{}\" changed during the receive", path)));
    if (plan.target) {
        if (Result<void> ok = check_closed(*again->target); !ok) return abandon(ok.error());
        if (!force)
            if (Result<void> ok = check_unchanged(ref, *again->base, who); !ok)
                return abandon(ok.error());
    }
    Attrs owner = plan.target ? Attrs{plan.target->uid, plan.target->gid, plan.target->mode,
                                      std::nullopt, {}}
                              : Attrs{who.uid, who.gid, std::nullopt, std::nullopt, {}};
    Result<std::vector<std::string>> tags = new_volume_tags(plan.snap_path, owner);
    if (!tags) return abandon(tags.error());
    tags->push_back(fmt::format("{}={}", tags::kSnapOf, plan.target_id));
    for (auto [key, value] : {std::pair<const char*, const std::string*>{tags::kSnap, &h.snapshot.name},
                              {tags::kRecv, &h.snapshot.id},
                              {tags::kRecvFrom, &h.volume_id}}) {
        Result<std::string> t = make_tag(key, *value);
        if (!t) return abandon(t.error());
        tags->push_back(*t);
    }
    tags->push_back(fmt::format("{}={}", tags::kRecvGen, plan.generation));
    if (Result<CommandOutput> out = run(thin_snapshot_argv(vg_, tmp, lv_name_for_path(plan.snap_path),
                                                           true, *tags));
        !out)
        return abandon(classify(out.error()));
    // 4. Tidying, still under the lock: the receive has committed, and what
    // fails here is finished by fsck (a full stream's volume) or by a rollback.
    fd.reset();
    drop_tmp();
    Result<Volume> snap = find(plan.snap_path);
    if (!snap) return tl::unexpected(snap.error());
    res.snapshot = *snap;
    if (!plan.target) {
        Result<Volume> v = make_received_volume(*snap, path);
        if (!v) {
            if (warn_)
                warn_(fmt::format("\"{}\" is received, but making \"{}\" from it failed; `bdctl "
                                  "fsck {}` makes it",
                                  plan.snap_path, path, name_));
            return tl::unexpected(v.error());
        }
        res.volume = *v;
        return res;
    }
    Result<Volume> rolled = rollback(ref, "/" + plan.snap_path);
    if (!rolled) {
        res.updated = false;
        res.volume = *again->target;
        if (warn_)
            warn_(fmt::format("\"{}\" is received, but \"{}\" keeps its old data ({}); bring it up "
                              "to date with `bdctl rollback {}:/{} {}` when it is closed",
                              plan.snap_path, path, rolled.error().message, name_, path,
                              h.snapshot.name));
        return res;
    }
    res.volume = *rolled;
    return res;
}

}  // namespace bd
