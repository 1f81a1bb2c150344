// Who asks for a change, and what POSIX modes let them do: pure, unit-tested.
//
// bdctl and libvirtd act as root. bdfs acts for the local user behind each
// FUSE request; the kernel checks most of that user's rights against the
// owners and modes bdfs shows, but not what bd alone knows: that a snapshot or
// a clone reads its origin, and how much of the shared VG a user may fill.
#pragma once

#include <cstdint>
#include <vector>

namespace bd {

/// The caller of a core operation.
struct Actor {
    uint32_t uid = 0, gid = 0;
    std::vector<uint32_t> groups;  ///< supplementary groups
    /// May use what is kept back for root and VMs: the pool above the export's
    /// threshold and the VG's last metadata space (root; bdfs -o resuid/resgid).
    bool reserve = true;

    /// bdctl and libvirtd: root, with the reserve.
    static Actor root() { return Actor{}; }
    bool is_root() const { return uid == 0; }
    bool in_group(uint32_t g) const;
};

/// Permission bits, as in a mode's "other" triplet.
enum Perm : uint32_t { kMayRead = 4, kMayWrite = 2, kMaySearch = 1 };

/// True if `who` has every right in `want` on an object of this owner and mode:
/// the owner's bits for the owner, else the group's for a member, else others'.
/// Root may read and write anything, and search what anyone may search.
bool may(const Actor& who, uint32_t uid, uint32_t gid, uint32_t mode, uint32_t want);

}  // namespace bd
