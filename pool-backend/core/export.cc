#include "export.h"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
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
// On a pool export's thin pool: the lvmlockd host id meant to serve it.
constexpr const char* kOwnerTag = "bd.owner";

// A pool export: a thin pool LV of a shared VG tagged bd.export=NAME.
bool is_pool_export(const LvRecord& row) {
    return row.segtype == "thin-pool" && tag_value(row.tags, kExportTag).has_value();
}

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
    if (vg && !vg->lock_type.empty() && !spec.shared)
        return fail(EINVAL, fmt::format("VG \"{}\" is shared between hosts (lock type {}): each "
                                        "host exports a thin pool of its own in it; add --shared",
                                        spec.vg, vg->lock_type));
    if (vg && vg->lock_type.empty() && spec.shared)
        return fail(EINVAL, fmt::format("VG \"{}\" is not shared between hosts; drop --shared, or "
                                        "make it shared first (vgchange --locktype sanlock {}, "
                                        "with lvmlockd running and the VG inactive everywhere)",
                                        spec.vg, spec.vg));
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

// Whether lvmlockd holds the exclusive lock of LV `lv_uuid` of `vg` for this
// host. One query at a time on the host (ExportLock::for_lock_query), tried
// again a few times.
Result<bool> holds_pool_lock(Runner& runner, const std::string& vg, const std::string& lv_uuid) {
    Result<ExportLock> serial = ExportLock::for_lock_query();
    if (!serial) return tl::unexpected(serial.error());
    Result<CommandOutput> info = fail(EIO, "");
    for (int attempt = 0; attempt < 5; ++attempt) {
        info = runner.run(lvmlockctl_info_argv());
        if (info) return holds_lv_lock(info->out, vg, lv_uuid);
        usleep(200 * 1000);
    }
    return tl::unexpected(info.error());
}

// LVM's words when lvmlockd refuses a lock another live host holds.
bool held_by_other_host(const Error& e) {
    return e.message.find("locked by other host") != std::string::npos;
}

// This host's lvmlockd host id (local/host_id in lvmlocal.conf); EINVAL if unset.
Result<std::string> host_id(Runner& runner) {
    Result<CommandOutput> out = runner.run(lvmconfig_argv({"local/host_id"}));
    std::string id = out ? parse_lvmconfig(out->out)["host_id"] : "";
    if (id.empty() || id == "0")
        return fail(EINVAL, "this host has no lvmlockd host id: set local/host_id (1-2000, "
                            "unique among the hosts) in /etc/lvm/lvmlocal.conf "
                            "(docs/ARCHITECTURE.md, \"Several hosts\")");
    return id;
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

Export::Export(Runner& runner, const VgRecord& vg, const LvRecord* pool)
    : runner_(runner), vg_(vg.name), vg_uuid_(vg.uuid), extent_size_(vg.extent_size) {
    const std::vector<std::string>& tags = pool ? pool->tags : vg.tags;
    name_ = tag_value(tags, kExportTag).value_or(vg.name);
    thinpool_ = pool ? pool->name : tag_value(tags, kPoolTag).value_or("pool");
    std::optional<std::string> threshold = tag_value(tags, kThresholdTag);
    if (threshold) threshold_ = std::atoi(threshold->c_str());
    vg_free_ = vg.free;
    lock_type_ = vg.lock_type;
    if (!vg.lock_type.empty()) runner_.one_process_per_command();
    if (pool) {
        per_pool_ = true;
        pool_uuid_ = pool->uuid;
        owner_ = tag_value(tags, kOwnerTag).value_or("");
    }
}

std::string Export::lock_key() const {
    return per_pool_ ? "pool-" + pool_uuid_ : "vg-" + vg_uuid_;
}

namespace {

VgRecord vg_of(const LvRecord& row) {
    return VgRecord{row.vg_name, row.vg_uuid, row.vg_tags, row.vg_extent_size, 0,
                    row.vg_free, 0, row.vg_lock_type};
}

// Where export `name` lives: a VG (tagged bd.export=NAME), or a thin pool of a
// shared VG (the pool LV tagged so).
struct Found {
    VgRecord vg;
    std::optional<LvRecord> pool;
};

// Export `name`, from one report of every LV (each row carries its VG's
// fields), else from `vgs` (a VG whose pool is gone has no rows). Two claims
// of one name are an error, not a choice.
Result<std::optional<Found>> find_export(Runner& runner, const std::string& name,
                                         const std::vector<LvRecord>& rows) {
    std::optional<Found> found;
    auto claim = [&](Found f) -> Result<void> {
        if (found && (found->vg.name != f.vg.name || found->pool.has_value() != f.pool.has_value() ||
                      (f.pool && found->pool->name != f.pool->name)))
            return fail(EEXIST,
                        fmt::format("export \"{}\" is claimed twice, by {} and {}; remove the "
                                    "bd.export tag from one (vgchange or lvchange --deltag "
                                    "bd.export={})",
                                    name,
                                    found->pool ? found->vg.name + "/" + found->pool->name
                                                : "VG " + found->vg.name,
                                    f.pool ? f.vg.name + "/" + f.pool->name : "VG " + f.vg.name,
                                    name));
        found = std::move(f);
        return {};
    };
    for (const LvRecord& row : rows) {
        if (tag_value(row.vg_tags, kExportTag) == name)
            if (Result<void> ok = claim({vg_of(row), std::nullopt}); !ok)
                return tl::unexpected(ok.error());
        if (is_pool_export(row) && tag_value(row.tags, kExportTag) == name)
            if (Result<void> ok = claim({vg_of(row), row}); !ok) return tl::unexpected(ok.error());
    }
    if (found) return found;
    Result<std::vector<VgRecord>> vgs = all_vgs(runner);
    if (!vgs) return tl::unexpected(vgs.error());
    if (const VgRecord* vg = find_exported(*vgs, name))
        return std::optional<Found>(Found{*vg, std::nullopt});
    return std::optional<Found>();
}

}  // namespace

Result<Export> Export::open(Runner& runner, const std::string& name, Access access) {
    Result<std::string> checked = check_export_name(name);
    if (!checked) return tl::unexpected(checked.error());
    // A change reads under its export's lock, so what it checks is what it
    // changes. The lock is keyed by the VG's uuid (a pool export: its thin
    // pool's), which only a read tells: the key this host last saw is locked
    // first, and a read that finds another is done again under the right lock.
    std::unique_ptr<ExportLock> held;
    std::string locked;
    auto lock = [&](const std::string& key) -> Result<void> {
        held.reset();
        Result<ExportLock> l = ExportLock::for_key(key, name);
        if (!l) return tl::unexpected(l.error());
        held = std::make_unique<ExportLock>(std::move(*l));
        locked = key;
        return {};
    };
    if (access == Access::kChange)
        if (std::string hint = read_export_hint(name);
            hint.rfind("vg-", 0) == 0 || hint.rfind("pool-", 0) == 0)
            if (Result<void> ok = lock(hint); !ok) return tl::unexpected(ok.error());
    for (int attempt = 0;; ++attempt) {
        Result<CommandOutput> out = runner.run(lvs_all_argv());
        if (!out) return tl::unexpected(out.error());
        Result<std::vector<LvRecord>> rows = parse_lvs(out->out);
        if (!rows) return tl::unexpected(rows.error());
        trace(fmt::format("parsed {} LVs ({} KB)", rows->size(), out->out.size() / 1024));
        Result<std::optional<Found>> found = find_export(runner, name, *rows);
        if (!found) return tl::unexpected(found.error());
        if (!*found)
            return fail(ENOENT, fmt::format("export \"{}\" not found (see `bdctl export list`, or "
                                            "create it: bdctl export create {} --vg VG)",
                                            name, name));
        Export ex(runner, (*found)->vg, (*found)->pool ? &*(*found)->pool : nullptr);
        // A shared VG is read again, by a process of its own, for the first
        // scan (see LvmShellRunner::one_process_per_command).
        bool reread = ex.per_pool_;
        if (access == Access::kChange && ex.lock_key() != locked) {
            if (attempt >= 3)
                return fail(EBUSY, fmt::format("export \"{}\" keeps moving between VGs; retry",
                                               name));
            if (Result<void> ok = lock(ex.lock_key()); !ok) return tl::unexpected(ok.error());
            write_export_hint(name, locked);
            continue;
        }
        if (!reread) {
            ex.cached_.emplace();
            for (const LvRecord& lv : *rows)
                if (lv.vg_name == ex.vg_) ex.cached_->push_back(lv);
        }
        ex.held_ = std::move(held);
        return ex;
    }
}

Result<ExportLock> Export::lock_for_change(int timeout_s) {
    if (held_) return ExportLock::already_held();
    return ExportLock::for_key(lock_key(), name_, timeout_s);
}

std::shared_ptr<void> Export::hold_lock(ExportLock& lock) {
    bool mine = !held_;
    if (mine) held_ = std::make_unique<ExportLock>(std::move(lock));
    return std::shared_ptr<void>(nullptr, [this, mine](void*) {
        if (mine) held_.reset();
    });
}

Result<ExportInfo> Export::create(Runner& runner, const ExportSpec& given) {
    ExportSpec spec = given;
    // A shared VG's export is its own thin pool, named after it: LV names are
    // the VG's, so LVM itself keeps two hosts from making one export twice.
    if (spec.shared && !spec.thinpool.empty() && spec.thinpool != spec.name)
        return fail(EINVAL, fmt::format("the thin pool of export \"{}\" in a shared VG is named "
                                        "after it: drop --thinpool (or give --thinpool {})",
                                        spec.name, spec.name));
    if (spec.thinpool.empty()) spec.thinpool = spec.shared ? spec.name : "pool";
    if (spec.shared && spec.size == 0 && spec.extents.empty())
        return fail(EINVAL, fmt::format("give export \"{}\" a size (--size, or --extents such as "
                                        "20%VG): a shared VG's free space is every host's",
                                        spec.name));
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
    if (spec.shared) return create_shared(runner, spec, *vgs);
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

Result<ExportInfo> Export::create_shared(Runner& runner, const ExportSpec& spec,
                                         const std::vector<VgRecord>& vgs) {
    runner.one_process_per_command();
    Result<std::string> me = host_id(runner);
    if (!me) return tl::unexpected(me.error());
    // The name must be free among every export this host sees, shared or not.
    Result<CommandOutput> all = runner.run(lvs_all_argv());
    if (!all) return tl::unexpected(all.error());
    Result<std::vector<LvRecord>> rows = parse_lvs(all->out);
    if (!rows) return tl::unexpected(rows.error());
    for (const LvRecord& row : *rows) {
        if (is_pool_export(row) && tag_value(row.tags, kExportTag) == spec.name)
            return fail(EEXIST, fmt::format("export \"{}\" already exists, as thin pool \"{}/{}\" "
                                            "(pick another name)",
                                            spec.name, row.vg_name, row.name));
        if (row.vg_name == spec.vg && row.name == spec.thinpool && row.segtype != "thin-pool")
            return fail(EEXIST, fmt::format("VG \"{}\" already has an LV \"{}\" that is not a thin "
                                            "pool; pick another export name",
                                            spec.vg, spec.thinpool));
        if (row.vg_name == spec.vg && row.name == spec.thinpool && row.active) {
            // Active here without its lock, its kernel copy may be stale:
            // taking the lock would not read the metadata again.
            Result<bool> held = holds_pool_lock(runner, spec.vg, row.uuid);
            if (!held) return tl::unexpected(held.error());
            if (!*held)
                return fail(EREMOTE, fmt::format("thin pool \"{}/{}\" is active here without its "
                                                 "lock from lvmlockd; deactivate it first "
                                                 "(lvchange -an {}/{}, after its thin LVs)",
                                                 spec.vg, spec.thinpool, spec.vg, spec.thinpool));
        }
    }
    Undo undo{runner, {}};
    if (!spec.pvs.empty()) {
        // lvmlockd makes the lock space (its lvmlock LV) and starts it here.
        Result<CommandOutput> made = runner.run(vgcreate_argv(spec.vg, spec.pvs, true));
        if (!made) return tl::unexpected(made.error());
        undo.steps.push_back(vgremove_argv(spec.vg));
    }
    const VgRecord* known = spec.pvs.empty() ? find_vg(vgs, spec.vg) : nullptr;
    if (Result<void> ok = make_pool(runner, spec, known, undo); !ok) {
        undo.rollback();
        return tl::unexpected(ok.error());
    }
    // The pool is this host's while lvmlockd grants it here: a pool made now
    // is active exclusively; an existing one must become so.
    if (Result<CommandOutput> on =
            runner.run(lvchange_activate_argv(spec.vg, {spec.thinpool}, true, true));
        !on) {
        undo.rollback();
        return fail(EREMOTE, fmt::format("thin pool \"{}/{}\" is not available to this host: {}",
                                         spec.vg, spec.thinpool, on.error().message));
    }
    // The settings, then the bd.export tag, the commit point, on the pool.
    TagEdit edit{{fmt::format("{}={}", kThresholdTag, spec.threshold), "bd.v=1",
                  *make_tag(kOwnerTag, *me)},
                 {}};
    Result<CommandOutput> tagged = runner.run(lvchange_tags_argv(spec.vg, spec.thinpool, edit));
    if (tagged)
        tagged = runner.run(
            lvchange_tags_argv(spec.vg, spec.thinpool, {{*make_tag(kExportTag, spec.name)}, {}}));
    if (!tagged) {
        undo.steps.push_back(lvchange_tags_argv(spec.vg, spec.thinpool, {{}, edit.add}));
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
        std::vector<Export> found;
        if (tag_value(vg.tags, kExportTag)) found.push_back(Export(runner, vg));
        if (!vg.lock_type.empty()) {
            // A shared VG: one export per thin pool, each host's own.
            runner.one_process_per_command();
            Result<CommandOutput> lvs = runner.run(lvs_argv(vg.name));
            if (!lvs) return tl::unexpected(lvs.error());
            Result<std::vector<LvRecord>> rows = parse_lvs(lvs->out);
            if (!rows) return tl::unexpected(rows.error());
            // Each export's info reads this same report, not the VG again.
            for (const LvRecord& row : *rows)
                if (is_pool_export(row)) {
                    found.push_back(Export(runner, vg, &row));
                    found.back().cached_ = *rows;
                }
        }
        for (Export& ex : found) {
            Result<ExportInfo> info = ex.info();
            if (!info) return tl::unexpected(info.error());
            out.push_back(*info);
        }
    }
    return out;
}

Result<Catalog> Export::scan_owned() {
    Result<Catalog> cat = scan();
    if (!cat) return cat;
    if (Result<void> ok = check_owned(); !ok) return tl::unexpected(ok.error());
    return cat;
}

Result<void> Export::check_owned() {
    if (!per_pool_ || serving_) return {};
    if (stale_)
        return fail(EREMOTE,
                    fmt::format("export \"{}\" is not served by this host: its thin pool \"{}/{}\" is "
                                "active here without its lock from lvmlockd (an LVM command that "
                                "lvmlockd refused left it so), and its view of the pool is stale{}. "
                                "Change it on the host that serves it; if that host is dead, `bdctl "
                                "export takeover {}` here (it drops the stale view first)",
                                name_, vg_, thinpool_,
                                owner_.empty() ? "" : fmt::format(" (it belongs to host {})", owner_),
                                name_));
    return fail(EREMOTE,
                fmt::format("export \"{}\" is not served by this host: its thin pool \"{}/{}\" is "
                            "not active here{}. Change it on the host that serves it; if that "
                            "host is dead, `bdctl export takeover {}` here",
                            name_, vg_, thinpool_,
                            owner_.empty() ? "" : fmt::format(" (it belongs to host {})", owner_),
                            name_));
}

// Deactivates a pool active here without its lock, and its thin LVs: the
// kernel's copy of its metadata is older than what its owner wrote since, and
// activating it again under the lock reads it afresh. Nothing here wrote to
// the pool (no volume of it was active), so nothing is lost.
Result<void> Export::drop_stale(const Catalog& cat) {
    std::vector<std::string> thin;
    for (const LvRecord& r : cat.records)
        if (r.active && r.name != thinpool_) thin.push_back(r.name);
    for (const LvRecord& r : cat.records)
        if (r.active && r.open && r.name != thinpool_)
            return fail(EBUSY, fmt::format("export \"{}\": LV \"{}/{}\" is active here without the "
                                           "pool's lock and open; close it before taking over",
                                           name_, vg_, r.name));
    if (!thin.empty())
        if (Result<CommandOutput> r = run(lvchange_activate_argv(vg_, thin, false)); !r)
            return tl::unexpected(r.error());
    if (Result<CommandOutput> r = run(lvchange_activate_argv(vg_, {thinpool_}, false)); !r)
        return tl::unexpected(r.error());
    if (warn_)
        warn_(fmt::format("thin pool \"{}/{}\" was active here without its lock (stale); "
                          "deactivated it",
                          vg_, thinpool_));
    stale_ = false;
    return {};
}

Result<Takeover> Export::takeover(int wait_s, const TakeoverProgress& progress) {
    if (!per_pool_)
        return fail(EINVAL, fmt::format("export \"{}\" is VG \"{}\" of this host, not a pool of a "
                                        "shared VG: there is nothing to take over",
                                        name_, vg_));
    auto start = std::chrono::steady_clock::now();
    auto since = [&start] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    Result<std::string> me = host_id(runner_);
    if (!me) return tl::unexpected(me.error());
    Takeover t;
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    t.previous_owner = owner_;
    if (stale_)
        if (Result<void> ok = drop_stale(*cat); !ok) return tl::unexpected(ok.error());
    // lvmlockd grants the pool's exclusive lock only when no live host holds
    // it: sanlock refuses while the old owner's lease is alive, and grants it
    // once the lease has expired (the host is dead, or fenced by its watchdog).
    if (!serving_) {
        for (;;) {
            Result<CommandOutput> on =
                run(lvchange_activate_argv(vg_, {thinpool_}, true, true));
            if (on) break;
            // Anything else (no lock space here, a pool that fails
            // thin_check, a missing PV) is not a lease to wait for.
            if (!held_by_other_host(on.error())) return tl::unexpected(on.error());
            if (since() >= wait_s)
                return fail(EBUSY,
                            fmt::format("export \"{}\": lvmlockd still refuses thin pool \"{}/{}\" "
                                        "after {:.0f} s ({}). Its host{} may still be alive; a dead "
                                        "host's lease expires after its sanlock timeout "
                                        "(docs/ARCHITECTURE.md, \"Several hosts\"): retry, or "
                                        "give --wait more seconds",
                                        name_, vg_, thinpool_, since(), on.error().message,
                                        owner_.empty() ? "" : " " + owner_));
            if (progress) progress(since(), on.error().message);
            usleep(2 * 1000 * 1000);
        }
    }
    t.waited_s = since();
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    std::shared_ptr<void> keep = hold_lock(*lock);
    cat = scan_owned();
    if (!cat) return tl::unexpected(cat.error());
    // The record of who serves the export: its old owner, back, reads it and
    // keeps its hands off (activate refuses).
    if (owner_ != *me) {
        TagEdit edit{{*make_tag(kOwnerTag, *me)}, {}};
        if (!owner_.empty()) edit.del.push_back(*make_tag(kOwnerTag, owner_));
        if (Result<CommandOutput> r = run(lvchange_tags_argv(vg_, thinpool_, edit)); !r)
            return tl::unexpected(r.error());
        owner_ = *me;
    }
    Result<std::vector<Repair>> repairs = fsck(false);
    if (!repairs) return tl::unexpected(repairs.error());
    t.repairs = std::move(*repairs);
    Result<std::vector<std::string>> on = activate("");
    if (!on) return tl::unexpected(on.error());
    t.activated = std::move(*on);
    t.total_s = since();
    return t;
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
    bool same = lvs.empty() || lvs.front().vg_uuid == vg_uuid_;
    if (same && per_pool_) {
        auto pool = std::find_if(lvs.begin(), lvs.end(),
                                 [&](const LvRecord& r) { return r.name == thinpool_; });
        same = pool != lvs.end() && pool->uuid == pool_uuid_ &&
               tag_value(pool->tags, kExportTag) == name_;
        if (same) {
            owner_ = tag_value(pool->tags, kOwnerTag).value_or("");
            // Serving means holding the pool's lock, not only having it
            // active: an lvcreate lvmlockd refused in another host's pool
            // (LVM 2.03.16) leaves the pool active here, with this host's
            // stale copy of its metadata.
            serving_ = stale_ = false;
            if (lock_type_.empty()) {
                // A pool export of a VG no longer shared (vgchange --locktype
                // none): this host's alone, as any local VG.
                serving_ = true;
            } else if (pool->active) {
                Result<bool> held = holds_pool_lock(runner_, vg_, pool_uuid_);
                if (!held) return tl::unexpected(held.error());
                serving_ = *held;
                stale_ = !serving_;
            }
        }
    } else if (same && !lvs.empty()) {
        same = tag_value(lvs.front().vg_tags, kExportTag) == name_;
    }
    if (!same)
        return fail(ESTALE, fmt::format("{} no longer holds export \"{}\" (it was deleted or "
                                        "moved); open the export again",
                                        per_pool_ ? fmt::format("thin pool \"{}/{}\"", vg_, thinpool_)
                                                  : fmt::format("VG \"{}\"", vg_),
                                        name_));
    Catalog cat = build_catalog(lvs, scope());
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
    info.shared = per_pool_;
    info.lock_type = lock_type_;
    info.owner = owner_;
    info.owned = !per_pool_ || serving_;
    info.stale = per_pool_ && stale_;
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
    if (per_pool_ && !serving_) {
        // A pool export starts on the host it belongs to, and only there: a
        // host back from a crash finds its export taken over and leaves it.
        Result<std::string> me = host_id(runner_);
        if (!me) return tl::unexpected(me.error());
        if (!owner_.empty() && owner_ != *me)
            return fail(EREMOTE, fmt::format("export \"{}\" belongs to host {}, not to this host "
                                             "({}): it was taken over, or is served there. If host "
                                             "{} is dead, `bdctl export takeover {}` here",
                                             name_, owner_, *me, owner_, name_));
        if (stale_)
            if (Result<void> ok = drop_stale(*cat); !ok) return tl::unexpected(ok.error());
        if (Result<CommandOutput> on = run(lvchange_activate_argv(vg_, {thinpool_}, true, true));
            !on) {
            if (!held_by_other_host(on.error())) return tl::unexpected(on.error());
            return fail(EREMOTE, fmt::format("export \"{}\": thin pool \"{}/{}\" is held by another "
                                             "host ({})",
                                             name_, vg_, thinpool_, on.error().message));
        }
        cat = scan_owned();
        if (!cat) return tl::unexpected(cat.error());
    }
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
        if (Result<CommandOutput> out = run(lvchange_activate_argv(vg_, batch, true, per_pool_)); !out)
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
    if (per_pool_)
        if (Result<Catalog> cat = scan_owned(); !cat) return tl::unexpected(cat.error());
    TagEdit edit{{fmt::format("{}={}", kThresholdTag, threshold)},
                 {fmt::format("{}={}", kThresholdTag, threshold_)}};
    Result<CommandOutput> out = run(per_pool_ ? lvchange_tags_argv(vg_, thinpool_, edit)
                                              : vgchange_tags_argv(vg_, edit));
    if (!out) return tl::unexpected(out.error());
    threshold_ = threshold;
    return {};
}

Result<void> Export::set_when_full(bool error) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    if (per_pool_)
        if (Result<Catalog> cat = scan_owned(); !cat) return tl::unexpected(cat.error());
    if (Result<CommandOutput> out = run(lvchange_when_full_argv(vg_, thinpool_, error)); !out)
        return tl::unexpected(out.error());
    return {};
}

Result<void> Export::remove(bool force, bool destroy) {
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_owned();
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
    TagEdit edit{{}, {*make_tag(kExportTag, name_)}};
    if (!per_pool_) edit.del.push_back(*make_tag(kPoolTag, thinpool_));
    edit.del.push_back(fmt::format("{}={}", kThresholdTag, threshold_));
    edit.del.push_back("bd.v=1");
    if (per_pool_ && !owner_.empty()) edit.del.push_back(*make_tag(kOwnerTag, owner_));
    // No export, no tree: it goes before the commit, because after it nothing
    // would ever rebuild or remove it. If the commit fails, the next change
    // (or activate) makes the tree again.
    if (Result<void> r = VolumeTree(tree()).remove(); !r && warn_) warn_(r.error().message);
    if (per_pool_) {
        // A shared VG outlives its exports: it is every host's.
        if (!destroy)
            if (auto r = run(lvchange_tags_argv(vg_, thinpool_, edit)); !r)
                return tl::unexpected(r.error());
        return {};
    }
    if (auto r = run(vgchange_tags_argv(vg_, edit)); !r) return tl::unexpected(r.error());
    if (destroy && cat->lv_names.size() == cat->volumes.size() + cat->leftovers.size() + 1)
        if (auto r = run(vgremove_argv(vg_)); !r) return tl::unexpected(r.error());
    return {};
}

}  // namespace bd
