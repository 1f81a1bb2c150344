// Volume operations. Each mutating one takes the export lock, rescans, checks,
// and then changes LVM in steps whose every intermediate state build_catalog
// shows as either the old or the new state (see catalog.h).
#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <ctime>

#include "dirs.h"
#include "dm.h"
#include "thin_status.h"
#include "volume_tree.h"
#include "export.h"
#include "lock.h"
#include "names.h"
#include "size.h"

namespace bd {

// LVM's own words decide the errno where they are unambiguous.
Error classify(Error e) {
    const std::string& m = e.message;
    if (m.find("nsufficient free space") != std::string::npos ||
        m.find("out of data space") != std::string::npos)
        e.code = ENOSPC;
    else if (m.find(" in use") != std::string::npos)
        e.code = EBUSY;
    return e;
}

namespace {

// Clones and snapshots keep their origin's mode. Made by root (bdctl, libvirt)
// they keep its owner too; made by a user they are theirs, without set-id bits.
Attrs owner_of(const Volume& v, const Actor& who) {
    Attrs a;
    a.uid = who.is_root() ? v.uid : who.uid;
    a.gid = who.is_root() ? v.gid : who.gid;
    a.mode = who.is_root() ? v.mode : v.mode & ~uint32_t(06000);
    return a;
}

// The tags a copy of `v` carries over: what its data is, never who made it.
// What describes the data rather than the file, so clones and snapshots
// carry it in their one lvcreate: the format, and a front's own notes on the
// content (bdfs.unsized: "reads as empty").
std::vector<std::string> content_tags(const Volume& v) {
    std::vector<std::string> out;
    for (const std::string& t : v.raw_tags)
        if (is_bd_tag(t, tags::kFormat) || is_bd_tag(t, tags::kVirtualSize) ||
            t.rfind("bd.x=bdfs.", 0) == 0)
            out.push_back(t);
    return out;
}

// The tag bytes of the xattrs users see (user.*, trusted.*); a front's own
// bookkeeping (bdfs.unsized) is not theirs to count.
size_t xattr_bytes(const std::vector<std::string>& tags) {
    size_t n = 0;
    for (const std::string& t : tags)
        if (t.rfind("bd.x=user.", 0) == 0 || t.rfind("bd.x=trusted.", 0) == 0) n += t.size();
    return n;
}

// Room a qcow2 image needs beside its virtual size on an LV: its L1/L2 tables
// and refcounts (about 1/8000 of the disk with 64 KiB clusters), and headroom.
uint64_t qcow2_slack(uint64_t capacity) { return capacity / 1024 + (4 << 20); }

std::string id_tag(const std::string& key, const std::string& value) {
    return fmt::format("{}={}", key, value);
}

}  // namespace

bool is_bd_tag(const std::string& tag, const char* key) {
    return tag.rfind(std::string(key) + "=", 0) == 0;
}

Result<Volume> Export::find_in(const Catalog& cat, const std::string& path) const {
    if (const Volume* v = cat.find(path)) return *v;
    return fail(ENOENT, fmt::format("volume \"{}\" not found in export \"{}\" (see `bdctl list "
                                    "{}`)",
                                    path, name_, name_));
}

Result<Volume> Export::find_ref(const Catalog& cat, const VolumeRef& ref) const {
    Result<Volume> v = find_in(cat, ref.path);
    if (v && !ref.id.empty() && v->id != ref.id)
        return fail(ESTALE, fmt::format("\"{}\" in export \"{}\" is now another volume (id {}, "
                                        "where {} was expected); look it up again",
                                        ref.path, name_, v->id, ref.id));
    return v;
}

Result<Volume> Export::find(const std::string& path) {
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    return find_in(*cat, path);
}

// A pool export's tree is VG@POOL: '@' is in no LVM name, so it never meets a VG's.
std::string Export::tree() const {
    return tree_root(dev_dir_, per_pool_ ? vg_ + "@" + thinpool_ : vg_);
}

Result<Volume> Export::shown(Result<Volume> v) {
    if (!v) return v;
    if (Result<void> r = VolumeTree(tree()).link(v->path, device(*v)); !r && warn_)
        warn_(fmt::format("volume \"{}\" is done, but its link in {} is not ({}); `bdctl "
                          "activate {}` makes it",
                          v->path, tree(), r.error().message, name_));
    return v;
}

void Export::unshow(const std::string& path) {
    if (Result<void> r = VolumeTree(tree()).unlink(path); !r && warn_)
        warn_(fmt::format("\"{}\" is gone, but its link in {} stays ({}); `bdctl activate {}` "
                          "removes it",
                          path, tree(), r.error().message, name_));
}

namespace {

std::map<std::string, std::string> links_of(const Catalog& cat, const Export& ex) {
    std::map<std::string, std::string> links;
    for (const Volume& v : cat.volumes) links[v.path] = ex.device(v);
    return links;
}

}  // namespace

void Export::retree(const Catalog& cat) {
    // Another host's pool export: its LVs are not active here, and a link
    // would dangle. Its owner keeps its tree, in its own /dev.
    if (per_pool_ && !serving_) return;
    if (Result<size_t> r = VolumeTree(tree()).sync(links_of(cat, *this)); !r && warn_)
        warn_(fmt::format("the volume tree {} of export \"{}\" is out of date ({})", tree(),
                          name_, r.error().message));
}

Result<void> Export::repair_tree(const Catalog& seen) {
    if (per_pool_ && !serving_) return {};
    // The common case reads only: the tree already shows what was seen.
    Result<bool> same = VolumeTree(tree()).matches(links_of(seen, *this));
    trace("volume tree checked");
    if (same && *same) return {};
    // Else the lock, without waiting: a change holding it rebuilds the tree
    // itself. Under the lock the report is read again, as a change may have
    // committed since `seen`.
    Result<ExportLock> lock = held_ ? ExportLock::already_held()
                                    : ExportLock::for_key(lock_key(), name_, 0);
    if (!lock) return {};
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    retree(*cat);
    return {};
}

// Reports unfinished work; refuses only when it involves the paths being
// changed: a volume there not in its final form, or another LV that claims
// one of them (a staged replace or rollback, a full copy on its way there).
// LVs a commit hid (_bd_old, _bd_del) claim nothing any more. A volume that a
// committed directory move shows at one of the paths is finished here and
// now, as fsck would: the move has committed, and may have no one left to
// finish it.
Result<Catalog> Export::scan_for_change(const std::vector<std::string>& paths) {
    Result<Catalog> cat = scan_owned();
    if (!cat) return cat;
    bool finished = false;
    for (const std::string& p : paths) {
        const Volume* v = cat->find(p);
        if (!v || v->canonical || v->conflict || tag_value(v->raw_tags, tags::kTxn)) continue;
        bool moving = false;
        for (const DirMove& m : cat->moves)
            for (const std::string& c : tag_values(v->raw_tags, tags::kPath))
                moving = moving || is_within(c, m.from);
        if (!moving) continue;
        if (Result<void> r = canonicalize(*v, *cat, nullptr); !r) return tl::unexpected(r.error());
        finished = true;
    }
    if (finished) cat = scan_owned();
    if (!cat) return cat;
    // The tree as this report shows the export: whatever a process killed
    // between a commit and its link left behind is put right here.
    retree(*cat);
    size_t unfinished = 0;
    for (const Leftover& l : cat->leftovers) unfinished += is_open(l.lv.name) ? 0 : 1;
    for (const Volume& v : cat->volumes) unfinished += v.canonical ? 0 : 1;
    if (unfinished > 0 && warn_)
        warn_(fmt::format("export \"{}\" has unfinished work from an interrupted operation ({} "
                          "LVs); run `bdctl fsck {}`",
                          name_, unfinished, name_));
    for (const std::string& p : paths) {
        const Volume* v = cat->find(p);
        if (Result<void> ok = check_unclaimed(*cat, p, v ? v->lv : ""); !ok)
            return tl::unexpected(ok.error());
        if (v && !v->canonical)
            return fail(EUCLEAN, fmt::format("volume \"{}\" in export \"{}\" has unfinished work "
                                             "from an interrupted operation; run `bdctl fsck {}` "
                                             "first",
                                             p, name_, name_));
    }
    return cat;
}

// No LV but `holder` claims `path` (or, with `within`, a path below it):
// EBUSY while the claimant is open (a copy in progress), else EUCLEAN.
Result<void> Export::check_unclaimed(const Catalog& cat, const std::string& path,
                                     const std::string& holder, bool within) {
    for (const LvRecord& r : cat.records) {
        if (r.name == holder || is_hidden(r.name) || !tag_value(r.tags, tags::kManaged)) continue;
        for (const char* key : {tags::kPath, tags::kTo})
            for (const std::string& c : tag_values(r.tags, key)) {
                if (!(c == path || (within && is_within(c, path)))) continue;
                if (within && cat.find(c) && cat.find(c)->lv == r.name && cat.find(c)->canonical)
                    continue;
                if (is_open(r.name))
                    return fail(EBUSY, fmt::format("\"{}\" in export \"{}\" is the target of an "
                                                   "operation in progress (LV {}); retry when it "
                                                   "finishes",
                                                   c, name_, r.name));
                return fail(EUCLEAN, fmt::format("\"{}\" in export \"{}\" has unfinished work "
                                                 "from an interrupted operation (LV {}); run "
                                                 "`bdctl fsck {}` first",
                                                 c, name_, r.name, name_));
            }
    }
    return {};
}

Result<void> Export::check_free(const Catalog& cat, const std::string& path) {
    for (const DirMove& m : cat.moves)
        if (is_within(path, m.from) || is_within(m.from, path))
            return fail(EBUSY, fmt::format("directory \"{}\" of export \"{}\" is being moved to "
                                           "\"{}\"; retry when that finishes (bdctl fsck {} "
                                           "finishes it if it was interrupted)",
                                           m.from, name_, m.to, name_));
    if (cat.find(path))
        return fail(EEXIST, fmt::format("volume \"{}\" already exists in export \"{}\" (choose "
                                        "another path, or delete it first: bdctl delete {}:/{})",
                                        path, name_, name_, path));
    for (const Volume& v : cat.volumes) {
        if (v.path.rfind(path + "/", 0) == 0)
            return fail(EISDIR, fmt::format("\"{}\" is a directory in export \"{}\" (it holds "
                                            "\"{}\"); choose another path",
                                            path, name_, v.path));
        if (path.rfind(v.path + "/", 0) == 0)
            return fail(ENOTDIR, fmt::format("cannot create \"{}\" in export \"{}\": \"{}\" is a "
                                             "volume, not a directory",
                                             path, name_, v.path));
    }
    if (is_directory(cat, path))
        return fail(EISDIR, fmt::format("\"{}\" is a directory in export \"{}\"; choose another "
                                        "path",
                                        path, name_));
    if (cat.has_lv(lv_name(path)))
        return fail(EEXIST, fmt::format("LV \"{}/{}\" for path \"{}\" already exists but is not a "
                                        "volume; run `bdctl fsck {}`",
                                        vg_, lv_name(path), path, name_));
    return check_not_alias(cat, path);
}

// "ORIGIN@NAME" is where a snapshot link points: no file or directory may take it.
Result<void> Export::check_not_alias(const Catalog& cat, const std::string& path) {
    if (const Volume* s = cat.find_alias(path))
        return fail(EEXIST, fmt::format("\"{}\" in export \"{}\" names snapshot \"{}\" of \"{}\" "
                                        "(kept at \"{}\"); choose another path",
                                        path, name_, s->snapshot_name, s->origin_path, s->path));
    return {};
}

// A snapshot's name is unique among its origin's, and the name its link
// points to, ORIGIN@NAME, must not be taken by a file (origin_path is where
// the origin will be: rename moves it).
Result<void> Export::check_snapshot_name(const Catalog& cat, const Volume& origin,
                                         const std::string& origin_path, const std::string& name,
                                         const std::string& snap_path) {
    for (const Volume* s : cat.snapshots_of(origin.id))
        if (s->snapshot_name == name && s->path != snap_path)
            return fail(EEXIST, fmt::format("\"{}\" already has a snapshot named \"{}\" (at \"{}\"); "
                                            "choose another name",
                                            origin.path, name, s->path));
    std::string alias = origin_path + "@" + name;
    if (alias != snap_path && cat.find(alias))
        return fail(EEXIST, fmt::format("\"{}\" exists in export \"{}\", so a snapshot of \"{}\" "
                                        "named \"{}\" could not be reached by its link; choose "
                                        "another name",
                                        alias, name_, origin_path, name));
    return {};
}

// Changes by users stop while the VG's metadata area is nearly full, so root,
// libvirt and LVM's own autoextend can still commit: LVM refuses every change
// to a VG whose metadata no longer fits.
Result<void> Export::check_metadata_room(const Catalog& cat, const Actor& who) {
    const LvRecord& pool = *cat.pool;
    if (who.reserve || pool.vg_mda_size == 0) return {};
    uint64_t reserve = std::max<uint64_t>(256 << 10, pool.vg_mda_size / 16);
    if (pool.vg_mda_free >= reserve) return {};
    return fail(ENOSPC, fmt::format("the LVM metadata area of VG \"{}\" (export \"{}\") has {} "
                                    "left, less than the {} kept for root; delete volumes, "
                                    "directories or xattrs, or ask root to make room",
                                    vg_, name_, format_size(pool.vg_mda_free),
                                    format_size(reserve)));
}

// Snapshots and clones read their origin: the actor must be able to read it,
// and to search every directory on the way to it (bd keeps the modes the
// kernel checks; a snapshot's origin reaches bd as a name only).
Result<void> Export::check_readable(const Catalog& cat, const Volume& v, const Actor& who) {
    if (who.is_root()) return {};
    std::map<std::string, DirAttrs> kept = dir_attrs(cat);
    std::string dir = parent_dir(v.path);
    for (bool done = false; !done; dir = parent_dir(dir)) {
        done = dir.empty();
        auto it = kept.find(dir);
        const DirAttrs& d = it != kept.end() ? it->second : default_dir_;
        if (!may(who, d.uid, d.gid, d.mode, kMaySearch))
            return fail(EACCES, fmt::format("cannot read \"{}\" in export \"{}\": no search "
                                            "permission on directory \"/{}\"",
                                            v.path, name_, dir));
    }
    if (!may(who, v.uid, v.gid, v.mode, kMayRead))
        return fail(EACCES, fmt::format("cannot read \"{}\" in export \"{}\": permission denied "
                                        "(mode {:04o}, owner {}:{})",
                                        v.path, name_, v.mode, v.uid, v.gid));
    return {};
}

Result<void> Export::check_space(const Catalog& cat) {
    const LvRecord& pool = *cat.pool;
    double data = pool.data_percent.value_or(0), meta = pool.metadata_percent.value_or(0);
    if (data < threshold_ && meta < threshold_) return {};
    return fail(ENOSPC,
                fmt::format("thin pool \"{}/{}\" of export \"{}\" is {:.1f}% full (data) and "
                            "{:.1f}% (metadata), at or above the export's {}% threshold; extend "
                            "it (lvextend -L +SIZE {}/{}, or --poolmetadatasize), delete volumes, "
                            "or raise the threshold (bdctl export set {} --threshold N)",
                            vg_, thinpool_, name_, data, meta, threshold_, vg_, thinpool_, name_));
}

Result<std::vector<std::string>> Export::new_volume_tags(const std::string& path,
                                                         const Attrs& a) {
    Result<std::string> path_tag = make_tag(tags::kPath, path);
    if (!path_tag) return tl::unexpected(path_tag.error());
    std::vector<std::string> out = {"bd.v=1", *path_tag, id_tag(tags::kId, random_id(16))};
    if (a.uid) out.push_back(id_tag(tags::kUid, std::to_string(*a.uid)));
    if (a.gid) out.push_back(id_tag(tags::kGid, std::to_string(*a.gid)));
    if (a.mode) out.push_back(id_tag(tags::kMode, std::to_string(*a.mode)));
    if (a.mtime) out.push_back(id_tag(tags::kMtime, std::to_string(*a.mtime)));
    for (const auto& [name, value] : a.xattrs) {
        if (!value) continue;
        std::string tag = fmt::format("{}={}={}", tags::kXattr, tag_escape_key(name),
                                      tag_escape(*value));
        if (tag.size() > kMaxTagLength)
            return fail(ERANGE, fmt::format("xattr \"{}\" on \"{}\" is too large: it encodes to {} "
                                           "characters and an LVM tag holds {}",
                                           name, path, tag.size(), kMaxTagLength));
        out.push_back(tag);
    }
    if (xattr_bytes(out) > kMaxXattrBytes)
        return fail(ENOSPC, fmt::format("the xattrs of \"{}\" would take {} bytes of LVM tags, and "
                                        "a volume keeps at most {}",
                                        path, xattr_bytes(out), kMaxXattrBytes));
    return out;
}

// What one lvcreate just made, shown through the same catalog rules a fresh
// report would go through: a one-command change needs no second read.
Result<Volume> Export::made(const Catalog& before, LvRecord lv, const std::string& path) {
    lv.active = true;
    lv.time = time(nullptr);
    lv.dm_path = "/dev/mapper/" + dm_name(vg_, lv.name);
    std::vector<LvRecord> rows = before.records;
    rows.push_back(std::move(lv));
    return find_in(build_catalog(rows, scope()), path);
}

namespace {

// The row `lvs` would show for a new thin LV, or a thin snapshot of `origin`.
LvRecord new_thin(const std::string& name, const std::string& pool, uint64_t size,
                  std::vector<std::string> tags, const LvRecord* origin, bool read_only) {
    LvRecord lv;
    lv.name = name;
    lv.attr = read_only ? "Vri-a-tz--" : "Vwi-a-tz--";
    lv.size = origin ? origin->size : size;
    lv.tags = std::move(tags);
    lv.pool = pool;
    lv.segtype = "thin";
    lv.data_percent = origin && origin->data_percent ? *origin->data_percent : 0.0;
    if (origin) lv.origin = origin->name;
    return lv;
}

}  // namespace

Result<Volume> Export::create_volume(const NewVolume& spec, const Actor& who) {
    if (spec.format != "raw" && spec.format != "qcow2")
        return fail(EINVAL, fmt::format("unknown format \"{}\" for \"{}\": bd makes raw or qcow2 "
                                        "volumes",
                                        spec.format, spec.path));
    if (spec.attrs.mode && *spec.attrs.mode > 07777)
        return fail(EINVAL, fmt::format("invalid mode {:o} for \"{}\"", *spec.attrs.mode, spec.path));
    // A thick LV would lie outside the thin pool that is this export.
    if (spec.thick && per_pool_)
        return fail(EINVAL, fmt::format("export \"{}\" is a thin pool of shared VG \"{}\": its "
                                        "volumes are thin; drop --thick for \"{}\"",
                                        name_, vg_, spec.path));
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({spec.path});
    if (!cat) return tl::unexpected(cat.error());
    if (Result<void> ok = check_free(*cat, spec.path); !ok) return tl::unexpected(ok.error());
    if (!spec.thick)
        if (Result<void> ok = check_space(*cat); !ok) return tl::unexpected(ok.error());
    if (Result<void> ok = check_metadata_room(*cat, who); !ok) return tl::unexpected(ok.error());
    bool image = spec.format != "raw";
    Result<uint64_t> capacity = round_up(spec.size, image ? 512 : extent_size_);
    if (!capacity) return tl::unexpected(capacity.error());
    Result<uint64_t> bytes = round_up(*capacity + (image ? qcow2_slack(*capacity) : 0), extent_size_);
    if (!bytes) return tl::unexpected(bytes.error());
    // Private by default: the actor's, mode 0600 (docs/ARCHITECTURE.md, "Security").
    Attrs a = spec.attrs;
    a.uid = a.uid.value_or(who.uid);
    a.gid = a.gid.value_or(who.gid);
    a.mode = a.mode.value_or(kDefaultMode);
    Result<std::vector<std::string>> tags = new_volume_tags(spec.path, a);
    if (!tags) return tl::unexpected(tags.error());
    if (image) {
        tags->push_back(id_tag(tags::kFormat, spec.format));
        tags->push_back(id_tag(tags::kVirtualSize, std::to_string(*capacity)));
        return shown(make_formatted(*cat, spec, *bytes, std::move(*tags)));
    }
    std::string lv = lv_name(spec.path);
    // One lvcreate carries every tag: the volume appears whole or not at all.
    Argv argv = spec.thick ? linear_create_argv(vg_, lv, *bytes, *tags)
                           : thin_create_argv(vg_, thinpool_, lv, *bytes, *tags);
    if (Result<CommandOutput> out = run(argv); !out) return tl::unexpected(classify(out.error()));
    if (spec.thick) return shown(find(spec.path));
    return shown(made(*cat, new_thin(lv, thinpool_, *bytes, *tags, nullptr, false), spec.path));
}

// An image volume is written before it is shown: it is made as a hidden LV,
// formatted, and renamed into place (the commit point). A crash leaves a
// _bd_tmp LV, which fsck removes.
Result<Volume> Export::make_formatted(const Catalog& cat, const NewVolume& spec, uint64_t lv_bytes,
                                      std::vector<std::string> tags) {
    (void)cat;
    std::string tmp = kTmpPrefix + random_id(8);
    Argv create = spec.thick ? linear_create_argv(vg_, tmp, lv_bytes, tags)
                             : thin_create_argv(vg_, thinpool_, tmp, lv_bytes, tags);
    if (Result<CommandOutput> out = run(create); !out) return tl::unexpected(classify(out.error()));
    Result<CommandOutput> done =
        run(qemu_img_create_argv(device_of(tmp), spec.format,
                                 *round_up(spec.size, 512)));
    if (done) done = run(lvrename_argv(vg_, tmp, lv_name(spec.path)));
    if (!done) {
        (void)run(lvremove_argv(vg_, tmp));  // the first error is the one reported
        return tl::unexpected(classify(done.error()));
    }
    return find(spec.path);
}

Result<Volume> Export::clone(const VolumeRef& src, const std::string& dst, bool full,
                             const Progress& progress, const Actor& who) {
    FullCopy copy;
    {
        Result<ExportLock> lock = lock_for_change();
        if (!lock) return tl::unexpected(lock.error());
        Result<Catalog> cat = scan_for_change({src.path, dst});
        if (!cat) return tl::unexpected(cat.error());
        Result<Volume> s = find_ref(*cat, src);
        if (!s) return s;
        if (Result<void> ok = check_readable(*cat, *s, who); !ok) return tl::unexpected(ok.error());
        if (Result<void> ok = check_free(*cat, dst); !ok) return tl::unexpected(ok.error());
        if (Result<void> ok = check_space(*cat); !ok) return tl::unexpected(ok.error());
        if (Result<void> ok = check_metadata_room(*cat, who); !ok) return tl::unexpected(ok.error());
        Result<std::vector<std::string>> tags = new_volume_tags(dst, owner_of(*s, who));
        if (!tags) return tl::unexpected(tags.error());
        for (const std::string& t : content_tags(*s)) tags->push_back(t);
        if (!full && s->type != VolumeType::kThick) {
            // A thin snapshot with its own tags is the whole clone, in one command.
            Argv argv = thin_snapshot_argv(vg_, s->lv, lv_name(dst), false, *tags);
            if (Result<CommandOutput> out = run(argv); !out)
                return tl::unexpected(classify(out.error()));
            const LvRecord* origin = cat->record(s->lv);
            if (!origin) return shown(find(dst));
            return shown(made(*cat,
                              new_thin(lv_name(dst), thinpool_, 0, *tags, origin, false),
                              dst));
        }
        Result<FullCopy> planned = start_copy(*cat, *s, std::move(*tags));
        if (!planned) return tl::unexpected(planned.error());
        copy = std::move(*planned);
    }
    // The copy runs without the lock, even one held since open(): other
    // changes go on meanwhile. It reads a snapshot of the source taken under
    // the lock, so it is of one point in time, and it writes a hidden LV, so
    // nobody sees it half made.
    held_.reset();
    Result<void> copied = copy_data(copy.in, device_of(copy.frozen), copy.out,
                                    device_of(copy.tmp), copy.size, progress);
    return finish_copy(copy, dst, copied);
}

// Full copy, under the lock: the source frozen at this point in time (a thin
// snapshot, or an LVM snapshot of a thick one) and the target, both hidden
// LVs of transaction TXN that fsck removes if the copy never commits. Refused
// up front when the pool cannot hold the source's data.
Result<Export::FullCopy> Export::start_copy(const Catalog& cat, const Volume& s,
                                            std::vector<std::string> tags) {
    uint64_t need = s.type == VolumeType::kThick ? s.size : s.allocated.value_or(s.size);
    if (s.type != VolumeType::kThick)
        if (Result<uint64_t> mapped = dm_thin_mapped_bytes(dm_name(vg_, s.lv)); mapped)
            need = *mapped;
    Result<ThinPoolStatus> st = dm_thin_pool_status_noflush(vg_, thinpool_);
    uint64_t chunk = cat.pool->chunk_size ? cat.pool->chunk_size : 65536;
    if (st && st->total_data_blocks) {
        uint64_t room = (st->total_data_blocks - st->used_data_blocks) * chunk;
        if (need > room)
            return fail(ENOSPC, fmt::format("copying \"{}\" needs {} of thin pool \"{}/{}\", which "
                                            "has {} free; extend it (lvextend -L +SIZE {}/{}) or "
                                            "delete volumes",
                                            s.path, format_size(need), vg_, thinpool_,
                                            format_size(room), vg_, thinpool_));
    }
    FullCopy copy;
    std::string txn = random_id(8);
    copy.txn = txn;
    copy.frozen = kSrcPrefix + txn;
    copy.tmp = kTmpPrefix + txn;
    copy.size = s.size;
    std::vector<std::string> hidden = {"bd.v=1", id_tag(tags::kTxn, txn)};
    Argv freeze = s.type == VolumeType::kThick
                      ? cow_snapshot_argv(vg_, s.lv, copy.frozen, hidden)
                      : thin_snapshot_argv(vg_, s.lv, copy.frozen, true, hidden);
    if (Result<CommandOutput> out = run(freeze); !out) {
        Error e = classify(out.error());
        if (e.code == ENOSPC && s.type == VolumeType::kThick)
            e.message = fmt::format("a point-in-time copy of thick volume \"{}\" needs a snapshot "
                                    "of it, with {} free in VG \"{}\" ({})",
                                    s.path, format_size(s.size), vg_, e.message);
        return tl::unexpected(e);
    }
    tags.push_back(id_tag(tags::kTxn, txn));
    Result<CommandOutput> made = run(thin_create_argv(vg_, thinpool_, copy.tmp, s.size, tags));
    Result<Fd> in = made ? open_device(device_of(copy.frozen), O_RDONLY)
                         : Result<Fd>(tl::unexpected(classify(made.error())));
    Result<Fd> out = in ? open_device(device_of(copy.tmp), O_WRONLY)
                        : Result<Fd>(tl::unexpected(in.error()));
    if (!out) {
        if (made) (void)run(lvremove_argv(vg_, copy.tmp));
        (void)run(lvremove_argv(vg_, copy.frozen));
        return tl::unexpected(out.error());
    }
    copy.in = std::move(*in);
    copy.out = std::move(*out);
    return copy;
}

// Full copy, under the lock again: the commit is the rename of the filled LV
// to dst's name; then the frozen source goes. If dst was taken meanwhile, or
// the copy failed, both hidden LVs go and nothing changed.
Result<Volume> Export::finish_copy(FullCopy& copy, const std::string& dst, Result<void> copied) {
    // A copy may have taken hours: wait longer than a change does for the lock.
    Result<ExportLock> lock = held_ ? ExportLock::already_held()
                                    : ExportLock::for_key(lock_key(), name_, 600);
    copy.in.reset();  // closed under the lock: until then no fsck took them
    copy.out.reset();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_owned();
    Result<void> ok = copied;
    if (ok && !cat) ok = tl::unexpected(cat.error());
    if (ok) ok = check_free(*cat, dst);
    if (ok)
        if (Result<CommandOutput> r = run(lvrename_argv(vg_, copy.tmp, lv_name(dst))); !r)
            ok = tl::unexpected(classify(r.error()));
    if (!ok) {
        (void)run(lvremove_argv(vg_, copy.tmp));  // the first error is the one reported
        (void)run(lvremove_argv(vg_, copy.frozen));
        return tl::unexpected(ok.error());
    }
    (void)run(lvremove_argv(vg_, copy.frozen));  // fsck removes it if this fails
    Argv untag = lvchange_tags_argv(vg_, lv_name(dst), {{}, {id_tag(tags::kTxn, copy.txn)}});
    if (Result<CommandOutput> out = run(untag); !out && warn_)
        warn_(fmt::format("the copy \"{}\" is made, but tidying it failed ({}); run `bdctl fsck "
                          "{}`",
                          dst, out.error().message, name_));
    return shown(find(dst));  // still under the lock
}

Result<Volume> Export::snapshot(const VolumeRef& src, const std::string& snap_path,
                                const std::string& snap_name, const Actor& who) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({src.path, snap_path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> s = find_ref(*cat, src);
    if (!s) return s;
    if (s->type == VolumeType::kThick)
        return fail(EINVAL, fmt::format("volume \"{}\" is thick; thin snapshots need a thin "
                                        "origin (make a thin copy first: bdctl clone --full)",
                                        s->path));
    if (Result<void> ok = check_readable(*cat, *s, who); !ok) return tl::unexpected(ok.error());
    if (Result<void> ok = check_free(*cat, snap_path); !ok) return tl::unexpected(ok.error());
    if (Result<void> ok = check_snapshot_name(*cat, *s, s->path, snap_name, snap_path); !ok)
        return tl::unexpected(ok.error());
    if (Result<void> ok = check_space(*cat); !ok) return tl::unexpected(ok.error());
    if (Result<void> ok = check_metadata_room(*cat, who); !ok) return tl::unexpected(ok.error());
    Result<std::vector<std::string>> tags = new_volume_tags(snap_path, owner_of(*s, who));
    if (!tags) return tl::unexpected(tags.error());
    Result<std::string> name_tag = make_tag(tags::kSnap, snap_name);
    if (!name_tag) return tl::unexpected(name_tag.error());
    for (const std::string& t : content_tags(*s)) tags->push_back(t);
    tags->push_back(id_tag(tags::kSnapOf, s->id));
    tags->push_back(*name_tag);
    Argv argv = thin_snapshot_argv(vg_, s->lv, lv_name(snap_path), true, *tags);
    if (Result<CommandOutput> out = run(argv); !out) return tl::unexpected(classify(out.error()));
    const LvRecord* origin = cat->record(s->lv);
    if (!origin) return shown(find(snap_path));
    return shown(made(*cat,
                      new_thin(lv_name(snap_path), thinpool_, 0, *tags, origin, true),
                      snap_path));
}

Result<Volume> Export::resize(const VolumeRef& ref, uint64_t size, bool shrink,
                             const Actor& who) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({ref.path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_ref(*cat, ref);
    const std::string& path = ref.path;
    if (!v) return v;
    Result<uint64_t> bytes = round_up(size, extent_size_);
    if (!bytes) return tl::unexpected(bytes.error());
    if (*bytes == v->size) return v;
    if (*bytes < v->size && !shrink)
        return fail(EINVAL, fmt::format("refusing to shrink \"{}\" from {} to {}: data past the "
                                        "new end would be lost (pass --shrink if you mean it)",
                                        path, format_size(v->size), format_size(*bytes)));
    // A user's growth stops at the threshold, as a user's writes do (the rest is
    // kept for root and VMs).
    if (*bytes > v->size && !who.reserve)
        if (Result<void> ok = check_space(*cat); !ok) return tl::unexpected(ok.error());
    if (Result<void> ok = check_metadata_room(*cat, who); !ok) return tl::unexpected(ok.error());
    if (Result<CommandOutput> out = run(lvresize_argv(vg_, v->lv, *bytes, shrink)); !out)
        return tl::unexpected(classify(out.error()));
    return find(path);
}

namespace {

// Adds `value` for `key` (numbers), replacing what the volume has.
void replace_tag(TagEdit& edit, const Volume& v, const char* key, std::optional<int64_t> value) {
    if (!value) return;
    for (const std::string& t : v.raw_tags)
        if (is_bd_tag(t, key)) edit.del.push_back(t);
    edit.add.push_back(fmt::format("{}={}", key, *value));
}

// LVM refuses to add a tag that is also being deleted; drop no-op pairs.
void drop_no_ops(TagEdit& edit) {
    for (auto it = edit.add.begin(); it != edit.add.end();) {
        auto d = std::find(edit.del.begin(), edit.del.end(), *it);
        if (d == edit.del.end()) {
            ++it;
            continue;
        }
        edit.del.erase(d);
        it = edit.add.erase(it);
    }
}

size_t total_size(const std::vector<std::string>& tags) {
    size_t n = 0;
    for (const std::string& t : tags) n += t.size();
    return n;
}

}  // namespace

Result<Volume> Export::set_attrs(const VolumeRef& ref, const Attrs& attrs, const Actor& who) {
    const std::string& path = ref.path;
    if (attrs.mode && *attrs.mode > 07777)
        return fail(EINVAL, fmt::format("invalid mode {:o} for \"{}\"", *attrs.mode, path));
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_ref(*cat, ref);
    if (!v) return v;
    TagEdit edit;
    if (!v->managed) {
        // Adopted in place: the LV keeps its name (a VM may use /dev/VG/LV), and
        // its LVM uuid becomes its id; catalog rule 1 knows it by its name.
        if (!who.is_root() || v->lv.rfind("_bd_", 0) == 0)
            return fail(EPERM, fmt::format("volume \"{}\" was not made by bd; root adopts it by "
                                           "setting its owner or mode (or with bdctl rename)",
                                           path));
        Result<std::string> path_tag = make_tag(tags::kPath, path);
        if (!path_tag) return tl::unexpected(path_tag.error());
        edit.add = {"bd.v=1", id_tag(tags::kId, v->id), *path_tag};
    }
    replace_tag(edit, *v, tags::kUid, attrs.uid);
    replace_tag(edit, *v, tags::kGid, attrs.gid);
    replace_tag(edit, *v, tags::kMode, attrs.mode);
    replace_tag(edit, *v, tags::kMtime, attrs.mtime);
    for (const auto& [name, value] : attrs.xattrs) {
        std::string prefix = fmt::format("{}={}=", tags::kXattr, tag_escape_key(name));
        for (const std::string& t : v->raw_tags)
            if (t.rfind(prefix, 0) == 0) edit.del.push_back(t);
        if (!value) continue;
        std::string tag = prefix + tag_escape(*value);
        if (tag.size() > kMaxTagLength)
            return fail(ERANGE, fmt::format("xattr \"{}\" on \"{}\" is too large: it encodes to {} "
                                            "characters and an LVM tag holds {}",
                                            name, path, tag.size(), kMaxTagLength));
        edit.add.push_back(tag);
    }
    drop_no_ops(edit);
    if (edit.add.empty() && edit.del.empty()) return v;
    // What one file may keep in xattrs is capped, as on ext4; and a change that
    // grows the VG's metadata needs room in it.
    std::vector<std::string> after;
    for (const std::string& t : v->raw_tags)
        if (std::find(edit.del.begin(), edit.del.end(), t) == edit.del.end()) after.push_back(t);
    after.insert(after.end(), edit.add.begin(), edit.add.end());
    if (xattr_bytes(after) > kMaxXattrBytes && xattr_bytes(after) > xattr_bytes(v->raw_tags))
        return fail(ENOSPC, fmt::format("the xattrs of \"{}\" would take {} bytes of LVM tags, and "
                                        "a volume keeps at most {}; remove some first",
                                        path, xattr_bytes(after), kMaxXattrBytes));
    if (total_size(edit.add) > total_size(edit.del))
        if (Result<void> ok = check_metadata_room(*cat, who); !ok) return tl::unexpected(ok.error());
    if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, v->lv, edit)); !out)
        return tl::unexpected(out.error());
    return find(path);
}

}  // namespace bd
