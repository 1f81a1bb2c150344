// Export::send: one snapshot's data, whole or since a base, as a bd stream
// (docs/STREAM.md). The snapshot is the point in time: a VM may write on.
#include <fcntl.h>
#include <sys/stat.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>

#include "export.h"
#include "thin_status.h"
#include "lvm_argv.h"
#include "names.h"

namespace bd {

namespace {

constexpr size_t kSendBlock = 1 << 20;

struct FreeDeleter {
    void operator()(void* p) const { free(p); }
};

// Sends `len` bytes at `offset` of the device: chunks of zeros become holes
// where the base had data (`holes`), and are left out of a full stream, which
// starts from zeros.
Result<void> send_range(StreamWriter& w, int fd, const std::string& dev, char* buf,
                        uint64_t offset, uint64_t len, uint64_t chunk, bool holes,
                        uint64_t& done, uint64_t total, const Progress& progress) {
    uint64_t end = offset + len;
    while (offset < end) {
        size_t n = size_t(std::min<uint64_t>(kSendBlock, end - offset));
        if (Result<void> ok = pread_full(fd, buf, n, off_t(offset), dev); !ok) return ok;
        // Runs of data and of zero chunks within the block, in order.
        for (size_t at = 0; at < n;) {
            size_t step = size_t(std::min<uint64_t>(chunk, n - at));
            bool zero = all_zero(buf + at, step);
            size_t run = step;
            while (at + run < n) {
                size_t s = size_t(std::min<uint64_t>(chunk, n - at - run));
                if (all_zero(buf + at + run, s) != zero) break;
                run += s;
            }
            Result<void> ok = !zero   ? w.data(offset + at, buf + at, run)
                              : holes ? w.hole(offset + at, run)
                                      : Result<void>();
            if (!ok) return ok;
            at += run;
        }
        offset += n;
        done += n;
        if (progress) progress(done, total);
    }
    return {};
}

}  // namespace

Result<void> Export::set_send_base(const VolumeRef& ref, const std::string& snapshot_id) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_for_change({ref.path});
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_ref(*cat, ref);
    if (!v) return tl::unexpected(v.error());
    TagEdit edit;
    for (const std::string& t : v->raw_tags)
        if (is_bd_tag(t, tags::kSendBase)) edit.del.push_back(t);
    edit.add.push_back(fmt::format("{}={}", tags::kSendBase, snapshot_id));
    if (edit.del.size() == 1 && edit.del[0] == edit.add[0]) return {};
    if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, v->lv, edit)); !out)
        return tl::unexpected(out.error());
    return {};
}

Result<SendResult> Export::send(const VolumeRef& ref, const SendSpec& spec, const StreamSink& sink,
                                const Progress& progress, const Actor& who) {
    if (spec.incremental && !spec.from.empty())
        return fail(EINVAL, "give --from or --incremental, not both");
    Result<Catalog> cat = scan_owned();
    if (!cat) return tl::unexpected(cat.error());
    Result<Volume> v = find_ref(*cat, ref);
    if (!v) return tl::unexpected(v.error());
    if (v->type != VolumeType::kThin)
        return fail(EINVAL, fmt::format("\"{}\" is {}; send takes a thin volume and names one of "
                                        "its snapshots",
                                        v->path,
                                        v->type == VolumeType::kSnapshot ? "a snapshot" : "thick"));
    if (Result<void> ok = check_readable(*cat, *v, who); !ok) return tl::unexpected(ok.error());
    // From here on the volume is named by path and id: a rename or replace by
    // another front meanwhile makes each later step refuse (ESTALE), so the
    // base tag never lands on another volume at this path.
    const VolumeRef self{v->path, v->id};
    SendResult res;
    // The base first: a snapshot named by --from, or the one the last
    // incremental send recorded (none: this send is the full one).
    if (!spec.from.empty()) {
        Result<Volume> b = pick_snapshot(*cat, *v, spec.from);
        if (!b) return tl::unexpected(b.error());
        res.base = *b;
    } else if (spec.incremental) {
        if (std::optional<std::string> id = tag_value(v->raw_tags, tags::kSendBase)) {
            const Volume* b = cat->find_id(*id);
            if (!b || b->origin_id != v->id)
                return fail(ENOENT, fmt::format("the base that the last incremental send of \"{}\" "
                                                "recorded (snapshot id {}) is gone; send with "
                                                "--from SNAP, or a full stream (neither option)",
                                                v->path, *id));
            res.base = *b;
        }
    }
    // The snapshot: the volume's own of that name, or a new one now.
    Result<Volume> snap = pick_snapshot(*cat, *v, spec.snapshot);
    if (!snap && snap.error().code == ENOENT) {
        std::string path = spec.snapshot.rfind('/', 0) == 0 ? spec.snapshot.substr(1)
                                                            : v->path + "@" + spec.snapshot;
        std::string name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
        if (spec.snapshot.rfind('/', 0) != 0) name = spec.snapshot;
        snap = snapshot(self, path, name, who);
        res.made_snapshot = bool(snap);
    }
    if (!snap) return tl::unexpected(snap.error());
    res.snapshot = *snap;
    if (res.base && res.base->id == snap->id)
        return fail(EINVAL, fmt::format("snapshot \"{}\" is the base itself: nothing to send",
                                        snap->path));
    uint64_t chunk = cat->pool->chunk_size ? cat->pool->chunk_size : 65536;
    // A thin LV with an external origin (lvconvert --type thin of a thick LV)
    // reads that origin where it maps nothing: there, the mappings do not
    // tell what it reads, and the device is read instead.
    struct stat st;
    Result<std::optional<uint64_t>> data_end =
        ::stat(device(*snap).c_str(), &st) == 0
            ? dm_thin_data_end(st.st_rdev)
            : Result<std::optional<uint64_t>>(tl::unexpected(Error(errno, "stat")));
    bool unmapped_reads_zeros = data_end && data_end->has_value();
    std::vector<DeltaRange> ranges;
    if (res.base) {
        Result<VolumeDelta> d = diff(self, "/" + res.base->path, "/" + snap->path, who);
        if (!d) return tl::unexpected(d.error());
        ranges = std::move(d->ranges);
        chunk = d->chunk_size;
    } else if (unmapped_reads_zeros) {
        Result<std::vector<DeltaRange>> m = mapped_ranges(*snap);
        if (!m) return tl::unexpected(m.error());
        ranges = std::move(*m);
    } else {
        ranges.push_back({DeltaKind::kChanged, 0, snap->size});
    }
    // Sizes are whole extents, and extents whole chunks: every range is.
    Result<Fd> fd = open_device(device(*snap), O_RDONLY);
    if (!fd) return tl::unexpected(fd.error());
    void* raw = nullptr;
    if (posix_memalign(&raw, 4096, kSendBlock) != 0) return fail(ENOMEM, "out of memory");
    std::unique_ptr<char, FreeDeleter> buf(static_cast<char*>(raw));
    StreamHeader h;
    h.stream_id = random_id(32);
    h.export_name = name_;
    h.path = v->path;
    h.volume_id = v->id;
    if (res.base) h.base = StreamSnap{res.base->id, res.base->snapshot_name};
    h.snapshot = StreamSnap{snap->id, snap->snapshot_name};
    h.size = snap->size;
    h.chunk_size = chunk;
    StreamSink counted = [&](const void* p, size_t n) -> Result<void> {
        res.stream_bytes += n;
        return sink(p, n);
    };
    Result<StreamWriter> w = StreamWriter::start(counted, h);
    if (!w) return tl::unexpected(w.error());
    uint64_t total = 0, done = 0;
    for (const DeltaRange& r : ranges)
        if (r.kind != DeltaKind::kRemoved) total += r.length;
    for (const DeltaRange& r : ranges) {
        Result<void> ok = r.kind == DeltaKind::kRemoved && unmapped_reads_zeros
                              ? w->hole(r.offset, r.length)
                              : send_range(*w, fd->get(), device(*snap), buf.get(), r.offset,
                                           r.length, chunk, bool(res.base), done, total, progress);
        if (!ok) return tl::unexpected(ok.error());
    }
    if (Result<void> ok = w->finish(); !ok) return tl::unexpected(ok.error());
    res.records = w->records();
    res.data_bytes = w->data_bytes();
    // Only a stream written whole moves the base on: a send killed before
    // this sends from the old base again.
    if (spec.incremental)
        if (Result<void> ok = set_send_base(self, snap->id); !ok) return tl::unexpected(ok.error());
    return res;
}

}  // namespace bd
