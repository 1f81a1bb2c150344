// A Runner for unit tests: a small in-memory LVM that answers the argv bd's
// builders make (lvm_argv.h), and can fail the k-th change. It is what makes
// the undo paths of Export testable without a guest (ninja's DiskInterface
// seam). It models names, tags, sizes, origins and activation; with
// `dev_dir` set, also data: each LV is a file DEV_DIR/VG/LV, which a snapshot
// copies (Export::set_device_dir points the export there).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runner.h"

namespace bd {

class FakeLvm : public Runner {
public:
    struct Lv {
        std::string name, uuid, segtype = "thin", pool, origin;
        uint64_t size = 0;
        uint64_t thin_id = 0;  ///< thin LVs: the pool's device id
        bool active = true, read_only = false, open = false;
        std::vector<std::string> tags;
    };
    struct Vg {
        std::string name, uuid;
        std::vector<std::string> tags;
        std::map<std::string, Lv> lvs;  // by name
    };

    Result<CommandOutput> run(const Argv& argv) override;
    bool real() const override { return false; }

    /// Fails the `k`-th change from now (1 = the next one) with `error`; 0: none.
    void fail_change(int k, Error error = Error(EIO, "injected failure")) {
        fail_at_ = k;
        failure_ = std::move(error);
    }
    /// Dies after the `k`-th change from now succeeds, as kill -9 there would:
    /// no later change (no undo) runs until revive().
    void die_after(int k) { die_after_ = k; }
    void revive() { dead_ = false; }
    /// Every change run so far, as argv[0] and its last word (e.g. "lvrename vg/a").
    const std::vector<std::string>& changes() const { return changes_; }
    /// A VG with a thin pool "pool", exported as `name` when `exported`.
    Vg& add_export(const std::string& vg, const std::string& name, bool exported = true);
    std::map<std::string, Vg> vgs;
    std::string dev_dir;  ///< "" for no data
    /// The pools' metadata snapshot (dmsetup message reserve/release_metadata_snap).
    bool metadata_snap_held = false;
    /// What thin_delta prints (it fails unless the metadata snapshot is held).
    /// thin_ls prints each thin LV's id with id * 64 KiB exclusive bytes.
    std::string thin_delta_out;

    /// Names of the LVs of a VG, sorted (the pool included).
    std::vector<std::string> lv_names(const std::string& vg) const;

private:
    Result<CommandOutput> change(const Argv& argv);
    void mirror(const Argv& argv);  // the data side of a change that succeeded
    std::string report_lvs(const std::string& only_vg) const;
    std::string report_vgs(const std::string& only_vg) const;
    std::string new_uuid();

    int fail_at_ = 0, die_after_ = 0;
    bool dead_ = false;
    Error failure_;
    int uuids_ = 0;
    uint64_t thin_ids_ = 0;
    std::vector<std::string> changes_;
};

}  // namespace bd
