// A thin pool's metadata snapshot: dm-thin's reserve_metadata_snap, which
// lets thin_delta and thin_ls read a still view of the pool's mappings while
// the pool runs.
//
// A pool holds at most one, and while it is held every change to the pool's
// metadata is copied on write; a reservation that outlives its reader also
// survives deactivation and reboots. So bd takes one only under the export's
// lock, for one query, and releases it on every path:
//   - by release() or the destructor (errors included);
//   - if this process dies first (kill -9, OOM), by a guardian process forked
//     before the reservation. It shares the export's lock (the same open file
//     description), sees its socket from this process close without the
//     "released" byte, and releases the snapshot with dmsetup before the lock
//     goes with it;
//   - if both die (a whole cgroup killed), or a killed bd's dmsetup child
//     reserves after the guardian released, the next holder of the lock
//     releases it (release_leftover), and so does `bdctl fsck`.
// A marker file in bd's runtime directory, set before the reservation and
// cleared after the release, tells a snapshot bd took from one another tool
// holds (`thin_dump -m` by hand, a backup tool): bd never releases those.
#pragma once

#include <sys/types.h>

#include <string>

#include "error.h"
#include "runner.h"

namespace bd {

/// Whether `dmsetup status` of a thin-pool device shows a held metadata snapshot.
Result<bool> parse_dmsetup_pool_snap_held(const std::string& status_line);

/// Who holds a pool's metadata snapshot.
enum class SnapHolder {
    kNone,
    kBd,     ///< bd's marker is set: a bd that was killed took it
    kOther,  ///< held with no marker: a tool outside bd is reading it
};

class PoolSnap {
public:
    /// Reserves the metadata snapshot of thin-pool device `tpool` (e.g.
    /// "vg-pool-tpool"), with `marker` (a run-dir file name, one per pool) set
    /// first. `lock_fd`: the export lock this process holds, which the guardian
    /// keeps until it has released (-1: no guardian, for the unit tests' fake).
    static Result<PoolSnap> reserve(Runner& runner, const std::string& tpool,
                                    const std::string& marker, int lock_fd);
    /// Who holds it now (a marker left with nothing held is cleared).
    static Result<SnapHolder> holder(Runner& runner, const std::string& tpool,
                                     const std::string& marker);
    /// Releases a snapshot a killed bd left held (kBd) and clears the marker.
    static Result<void> release_leftover(Runner& runner, const std::string& tpool,
                                         const std::string& marker);

    PoolSnap(PoolSnap&& other) noexcept;
    PoolSnap& operator=(PoolSnap&&) = delete;
    PoolSnap(const PoolSnap&) = delete;
    ~PoolSnap();

    /// Releases it now; the error says if the pool refused (the marker then
    /// stays, for the next holder of the lock).
    Result<void> release();

private:
    PoolSnap(Runner& runner, std::string tpool, std::string marker)
        : runner_(&runner), tpool_(std::move(tpool)), marker_(std::move(marker)) {}
    Result<void> start_guardian(int lock_fd);
    void stop_guardian(bool released);

    Runner* runner_;
    std::string tpool_, marker_;
    bool held_ = false;
    pid_t guardian_ = -1;
    int to_guardian_ = -1;  ///< our end of the guardian's socket
};

}  // namespace bd
