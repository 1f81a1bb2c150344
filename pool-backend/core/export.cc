#include "export.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "dm.h"
#include "lock.h"
#include "names.h"
#include "pool_plan.h"
#include "size.h"
#include "volume_tree.h"

namespace bd {

namespace {

constexpr const char* kExportTag = "bd.export";
constexpr const char* kPoolTag = "bd.pool";
constexpr const char* kThresholdTag = "bd.threshold";

const VgRecord* find_exported(const std::vector<VgRecord>& vgs, const std::string& name) {
    for (const VgRecord& vg : vgs)
        if (tag_value(vg.tags, kExportTag) == name) return &vg;
    return nullptr;
}

const VgRecord* find_vg(const std::vector<VgRecord>& vgs, const std::string& name) {
    for (const VgRecord& vg : vgs)
        if (vg.name == name) return &vg;
    return nullptr;
}

// Every VG, or only `vg`.
Result<std::vector<VgRecord>> all_vgs(Runner& runner, const std::string& vg = "") {
    Result<CommandOutput> out = runner.run(vgs_argv(vg));
    if (!out) return tl::unexpected(out.error());
    return parse_vgs(out->out);
}

// Undo steps for Export::create, run newest first; the first error is the one reported.
struct Undo {
    Runner& runner;
    std::vector<Argv> steps;
    void rollback() {
        for (auto it = steps.rbegin(); it != steps.rend(); ++it) (void)runner.run(*it);
    }
};

Result<void> check_new_export(const std::vector<VgRecord>& vgs, const ExportSpec& spec) {
    if (const VgRecord* vg = find_exported(vgs, spec.name))
        return fail(EEXIST, fmt::format("export \"{}\" already exists on VG \"{}\" (pick another "
                                        "name, or `bdctl export delete {}` first)",
                                        spec.name, vg->name, spec.name));
    const VgRecord* vg = find_vg(vgs, spec.vg);
    if (vg && !spec.pvs.empty())
        return fail(EEXIST, fmt::format("VG \"{}\" already exists; omit --pv to export it as it "
                                        "is",
                                        spec.vg));
    if (!vg && spec.pvs.empty())
        return fail(ENOENT, fmt::format("VG \"{}\" not found; give --pv DEVICE to create it", spec.vg));
    if (vg)
        if (std::optional<std::string> other = tag_value(vg->tags, kExportTag))
            return fail(EEXIST, fmt::format("VG \"{}\" is already exported as \"{}\"", spec.vg,
                                            *other));
    return {};
}

// `known`: the VG as read before, if this export did not just create it.
Result<void> make_pool(Runner& runner, const ExportSpec& spec, const VgRecord* known, Undo& undo) {
    Result<CommandOutput> out = runner.run(lvs_argv(spec.vg));
    if (!out) return tl::unexpected(out.error());
    Result<std::vector<LvRecord>> lvs = parse_lvs(out->out);
    if (!lvs) return tl::unexpected(lvs.error());
    for (const LvRecord& lv : *lvs) {
        if (lv.name != spec.thinpool) continue;
        if (lv.segtype != "thin-pool")
            return fail(EINVAL, fmt::format("LV \"{}/{}\" exists but is not a thin pool (segtype "
                                            "{}); name another with --thinpool",
                                            spec.vg, spec.thinpool, lv.segtype));
        return {};
    }
    // bd sizes the metadata itself (pool_plan.h): LVM's default runs out after a
    // few hundred thin LVs in a small pool. A VG made just now is read for its size.
    Result<std::vector<VgRecord>> fresh;
    const VgRecord* vg = known;
    if (!vg) {
        fresh = all_vgs(runner, spec.vg);
        if (!fresh) return tl::unexpected(fresh.error());
        vg = find_vg(*fresh, spec.vg);
    }
    if (!vg) return fail(ENOENT, fmt::format("VG \"{}\" vanished while being exported", spec.vg));
    Result<ThinPoolPlan> plan =
        plan_thin_pool(vg->free, vg->extent_size, spec.size, spec.extents, spec.metadata_size);
    if (!plan) return tl::unexpected(plan.error());
    Result<CommandOutput> made =
        runner.run(thinpool_create_argv(spec.vg, spec.thinpool, plan->data, plan->metadata));
    if (!made) return tl::unexpected(made.error());
    undo.steps.push_back(lvremove_argv(spec.vg, spec.thinpool));
    return {};
}

}  // namespace

Result<std::string> lvm_backup_dir(Runner& runner) {
    Result<CommandOutput> out = runner.run(lvmconfig_argv({"backup/backup", "backup/backup_dir"}));
    if (!out) return tl::unexpected(out.error());
    std::map<std::string, std::string> config = parse_lvmconfig(out->out);
    if (config["backup"] != "1") return std::string();
    return config["backup_dir"];
}

std::string random_id(size_t hex_chars) {
    std::random_device rd;
    std::string out;
    while (out.size() < hex_chars) out += fmt::format("{:08x}", rd());
    return out.substr(0, hex_chars);
}

Export::Export(Runner& runner, const VgRecord& vg)
    : runner_(runner), vg_(vg.name), vg_uuid_(vg.uuid), extent_size_(vg.extent_size) {
    name_ = tag_value(vg.tags, kExportTag).value_or(vg.name);
    thinpool_ = tag_value(vg.tags, kPoolTag).value_or("pool");
    std::optional<std::string> threshold = tag_value(vg.tags, kThresholdTag);
    if (threshold) threshold_ = std::atoi(threshold->c_str());
    vg_free_ = vg.free;
}

namespace {

// The VG that serves export `name`, from one report of every LV (each row
// carries its VG's fields), else from `vgs` (a VG whose pool is gone has no
// rows). Two VGs claiming one name is an error, not a choice.
Result<std::optional<VgRecord>> find_export_vg(Runner& runner, const std::string& name,
                                               const std::vector<LvRecord>& rows) {
    std::optional<VgRecord> found;
    for (const LvRecord& row : rows) {
        if (tag_value(row.vg_tags, kExportTag) != name) continue;
        if (found && found->name != row.vg_name)
            return fail(EEXIST, fmt::format("export \"{}\" is claimed by VGs \"{}\" and \"{}\"; "
                                            "remove the tag from one (vgchange --deltag "
                                            "bd.export={} VG)",
                                            name, found->name, row.vg_name, name));
        found = VgRecord{row.vg_name, row.vg_uuid, row.vg_tags, row.vg_extent_size, 0,
                         row.vg_free, 0};
    }
    if (found) return found;
    Result<std::vector<VgRecord>> vgs = all_vgs(runner);
    if (!vgs) return tl::unexpected(vgs.error());
    if (const VgRecord* vg = find_exported(*vgs, name)) return std::optional<VgRecord>(*vg);
    return std::optional<VgRecord>();
}

}  // namespace

Result<Export> Export::open(Runner& runner, const std::string& name, Access access) {
    Result<std::string> checked = check_export_name(name);
    if (!checked) return tl::unexpected(checked.error());
    // A change reads under its VG's lock, so what it checks is what it changes.
    // The lock is keyed by VG uuid, which only a read tells: the uuid this host
    // last saw is locked first, and a read that finds another is done again
    // under the right lock.
    std::unique_ptr<ExportLock> held;
    std::string locked;
    auto lock = [&](const std::string& uuid) -> Result<void> {
        held.reset();
        Result<ExportLock> l = ExportLock::for_vg(uuid, name);
        if (!l) return tl::unexpected(l.error());
        held = std::make_unique<ExportLock>(std::move(*l));
        locked = uuid;
        return {};
    };
    if (access == Access::kChange)
        if (std::string hint = read_export_hint(name); !hint.empty())
            if (Result<void> ok = lock(hint); !ok) return tl::unexpected(ok.error());
    for (int attempt = 0;; ++attempt) {
        Result<CommandOutput> out = runner.run(lvs_all_argv());
        if (!out) return tl::unexpected(out.error());
        Result<std::vector<LvRecord>> rows = parse_lvs(out->out);
        if (!rows) return tl::unexpected(rows.error());
        trace(fmt::format("parsed {} LVs ({} KB)", rows->size(), out->out.size() / 1024));
        Result<std::optional<VgRecord>> vg = find_export_vg(runner, name, *rows);
        if (!vg) return tl::unexpected(vg.error());
        if (!*vg)
            return fail(ENOENT, fmt::format("export \"{}\" not found (see `bdctl export list`, or "
                                            "create it: bdctl export create {} --vg VG)",
                                            name, name));
        if (access == Access::kChange && (*vg)->uuid != locked) {
            if (attempt >= 3)
                return fail(EBUSY, fmt::format("export \"{}\" keeps moving between VGs; retry",
                                               name));
            if (Result<void> ok = lock((*vg)->uuid); !ok) return tl::unexpected(ok.error());
            write_export_hint(name, locked);
            continue;
        }
        Export ex(runner, **vg);
        ex.cached_.emplace();
        for (const LvRecord& lv : *rows)
            if (lv.vg_name == ex.vg_) ex.cached_->push_back(lv);
        ex.held_ = std::move(held);
        return ex;
    }
}

Result<ExportLock> Export::lock_for_change(int timeout_s) {
    if (held_) return ExportLock::already_held();
    return ExportLock::for_vg(vg_uuid_, name_, timeout_s);
}

std::shared_ptr<void> Export::hold_lock(ExportLock& lock) {
    bool mine = !held_;
    if (mine) held_ = std::make_unique<ExportLock>(std::move(lock));
    return std::shared_ptr<void>(nullptr, [this, mine](void*) {
        if (mine) held_.reset();
    });
}

Result<ExportInfo> Export::create(Runner& runner, const ExportSpec& spec) {
    for (const std::string* n : {&spec.name, &spec.vg, &spec.thinpool})
        if (Result<std::string> ok = check_export_name(*n); !ok) return tl::unexpected(ok.error());
    if (spec.threshold < 1 || spec.threshold > 100)
        return fail(EINVAL, fmt::format("invalid threshold {}: give a percentage from 1 to 100",
                                        spec.threshold));
    // One export creation at a time on this host, checked under the lock: two
    // names never claim one VG, nor two VGs one name.
    Result<ExportLock> lock = ExportLock::for_exports();
    if (!lock) return tl::unexpected(lock.error());
    Result<std::vector<VgRecord>> vgs = all_vgs(runner);
    if (!vgs) return tl::unexpected(vgs.error());
    if (Result<void> ok = check_new_export(*vgs, spec); !ok) return tl::unexpected(ok.error());
    Undo undo{runner, {}};
    // Each step registers its undo; a failure unwinds so nothing half-made remains.
    auto step = [&](Result<void> r) -> Result<void> {
        if (!r) undo.rollback();
        return r;
    };
    if (!spec.pvs.empty()) {
        Result<CommandOutput> made = runner.run(vgcreate_argv(spec.vg, spec.pvs));
        if (!made) return tl::unexpected(made.error());
        undo.steps.push_back(vgremove_argv(spec.vg));
    }
    const VgRecord* known = spec.pvs.empty() ? find_vg(*vgs, spec.vg) : nullptr;
    if (Result<void> ok = step(make_pool(runner, spec, known, undo)); !ok)
        return tl::unexpected(ok.error());
    // The bd.export tag is the commit point: without it there is no export.
    TagEdit edit{{*make_tag(kPoolTag, spec.thinpool),
                  fmt::format("{}={}", kThresholdTag, spec.threshold), "bd.v=1"},
                 {}};
    Result<CommandOutput> tagged = runner.run(vgchange_tags_argv(spec.vg, edit));
    if (tagged) tagged = runner.run(vgchange_tags_argv(spec.vg, {{*make_tag(kExportTag, spec.name)}, {}}));
    if (!tagged) {
        undo.steps.push_back(vgchange_tags_argv(spec.vg, {{}, edit.add}));
        undo.rollback();
        return tl::unexpected(tagged.error());
    }
    Result<Export> ex = open(runner, spec.name);
    if (!ex) return tl::unexpected(ex.error());
    return ex->info();
}

Result<std::vector<ExportInfo>> Export::list(Runner& runner) {
    Result<std::vector<VgRecord>> vgs = all_vgs(runner);
    if (!vgs) return tl::unexpected(vgs.error());
    std::vector<ExportInfo> out;
    for (const VgRecord& vg : *vgs) {
        if (!tag_value(vg.tags, kExportTag)) continue;
        Export ex(runner, vg);
        Result<ExportInfo> info = ex.info();
        if (!info) return tl::unexpected(info.error());
        out.push_back(*info);
    }
    return out;
}

Result<Catalog> Export::scan() {
    std::vector<LvRecord> lvs;
    std::function<void(const Catalog&)> observed;
    if (cached_) {
        lvs = std::move(*cached_);
        cached_.reset();
    } else {
        if (scan_observer_) observed = scan_observer_();  // before the read it is told of
        Result<CommandOutput> out = run(lvs_argv(vg_));
        if (!out) return tl::unexpected(out.error());
        Result<std::vector<LvRecord>> parsed = parse_lvs(out->out);
        if (!parsed) return tl::unexpected(parsed.error());
        lvs = std::move(*parsed);
    }
    // The VG read must still be this export's: a read under the lock proves it.
    if (!lvs.empty() &&
        (lvs.front().vg_uuid != vg_uuid_ || tag_value(lvs.front().vg_tags, kExportTag) != name_))
        return fail(ESTALE, fmt::format("VG \"{}\" no longer holds export \"{}\" (it was "
                                        "deleted or moved); open the export again",
                                        vg_, name_));
    Catalog cat = build_catalog(lvs, thinpool_);
    trace(fmt::format("catalog: {} volumes", cat.volumes.size()));
    if (!cat.pool)
        return fail(ENOENT, fmt::format("thin pool \"{}/{}\" of export \"{}\" is missing (recreate "
                                        "it, or fix the bd.pool tag on VG \"{}\")",
                                        vg_, thinpool_, name_, vg_));
    if (observed) observed(cat);
    return cat;
}

Result<ExportInfo> Export::info() {
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    return info_from(*cat);
}

ExportInfo Export::info_from(const Catalog& cat) {
    ExportInfo info;
    info.name = name_;
    info.vg = vg_;
    info.thinpool = thinpool_;
    info.threshold = threshold_;
    const LvRecord& pool = *cat.pool;
    info.size = pool.size;
    info.chunk_size = pool.chunk_size;
    info.extent_size = extent_size_;
    info.vg_free = vg_free_;
    info.data_percent = pool.data_percent.value_or(0);
    info.metadata_percent = pool.metadata_percent.value_or(0);
    // The kernel's block counts are exact where LVM rounds to two decimals.
    // LVM stacks "-tpool" under the pool once thin LVs exist; before that the pool is bare.
    Result<ThinPoolStatus> st = dm_thin_pool_status(dm_name(vg_, thinpool_) + "-tpool");
    if (!st) st = dm_thin_pool_status(dm_name(vg_, thinpool_));
    if (st && st->total_data_blocks) {
        info.allocated = st->used_data_blocks * pool.chunk_size;
        info.data_percent = st->data_percent();
        info.metadata_percent = st->metadata_percent();
    } else {
        info.allocated = uint64_t(double(pool.size) * info.data_percent / 100.0);
    }
    info.volumes = cat.volumes.size();
    info.leftovers = cat.leftovers.size();
    info.when_full = pool.when_full;
    info.metadata_area = pool.vg_mda_size;
    info.metadata_area_free = pool.vg_mda_free;
    return info;
}

Result<std::vector<std::string>> Export::activate(const std::string& path) {
    // Under the lock: it also rebuilds the volume tree (after a reboot, /dev
    // has none), which only a holder of the lock changes.
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    if (!path.empty() && !cat->find(path))
        return fail(ENOENT, fmt::format("volume \"{}\" not found in export \"{}\"", path, name_));
    // The links first: one LV that fails to activate must not leave every
    // other volume without its link (a link to an inactive LV dangles).
    retree(*cat);
    std::vector<std::string> done, lvs;
    for (const Volume& v : cat->volumes) {
        if (v.active || (!path.empty() && v.path != path)) continue;
        done.push_back(v.path);
        lvs.push_back(v.lv);
    }
    // One command per 256 of them: a pool start after a reboot may find many,
    // and a batch keeps the command line far below ARG_MAX.
    constexpr size_t kBatch = 256;
    for (size_t i = 0; i < lvs.size(); i += kBatch) {
        std::vector<std::string> batch(lvs.begin() + i, lvs.begin() + std::min(lvs.size(), i + kBatch));
        if (Result<CommandOutput> out = run(lvchange_activate_argv(vg_, batch, true)); !out)
            return tl::unexpected(out.error());
    }
    return done;
}

Result<void> Export::set_threshold(int threshold) {
    if (threshold < 1 || threshold > 100)
        return fail(EINVAL, fmt::format("invalid threshold {}: give a percentage from 1 to 100",
                                        threshold));
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    TagEdit edit{{fmt::format("{}={}", kThresholdTag, threshold)},
                 {fmt::format("{}={}", kThresholdTag, threshold_)}};
    Result<CommandOutput> out = run(vgchange_tags_argv(vg_, edit));
    if (!out) return tl::unexpected(out.error());
    threshold_ = threshold;
    return {};
}

Result<void> Export::set_when_full(bool error) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    if (Result<CommandOutput> out = run(lvchange_when_full_argv(vg_, thinpool_, error)); !out)
        return tl::unexpected(out.error());
    return {};
}

Result<void> Export::remove(bool force, bool destroy) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    if (!cat->volumes.empty() && !force && !destroy)
        return fail(ENOTEMPTY, fmt::format("export \"{}\" still has {} volumes; delete them, pass "
                                           "--force to unexport and keep them, or --destroy to "
                                           "delete everything",
                                           name_, cat->volumes.size()));
    if (destroy) {
        for (const Volume& v : cat->volumes)
            if (v.open)
                return fail(EBUSY, fmt::format("volume \"{}\" of export \"{}\" is open; stop its "
                                               "user before destroying the export",
                                               v.path, name_));
        for (const Volume& v : cat->volumes)
            if (auto r = run(lvremove_argv(vg_, v.lv)); !r) return tl::unexpected(r.error());
        for (const Leftover& l : cat->leftovers)
            if (auto r = run(lvremove_argv(vg_, l.lv.name)); !r) return tl::unexpected(r.error());
        if (auto r = run(lvremove_argv(vg_, thinpool_)); !r) return tl::unexpected(r.error());
    }
    TagEdit edit{{},
                 {*make_tag(kExportTag, name_), *make_tag(kPoolTag, thinpool_),
                  fmt::format("{}={}", kThresholdTag, threshold_), "bd.v=1"}};
    // No export, no tree: it goes before the commit, because after it nothing
    // would ever rebuild or remove it. If the commit fails, the next change
    // (or activate) makes the tree again.
    if (Result<void> r = VolumeTree(tree()).remove(); !r && warn_) warn_(r.error().message);
    if (auto r = run(vgchange_tags_argv(vg_, edit)); !r) return tl::unexpected(r.error());
    if (destroy && cat->lv_names.size() == cat->volumes.size() + cat->leftovers.size() + 1)
        if (auto r = run(vgremove_argv(vg_)); !r) return tl::unexpected(r.error());
    return {};
}

}  // namespace bd
