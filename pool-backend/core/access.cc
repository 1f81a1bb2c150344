#include "access.h"

#include <algorithm>

namespace bd {

bool Actor::in_group(uint32_t g) const {
    return gid == g || std::find(groups.begin(), groups.end(), g) != groups.end();
}

bool may(const Actor& who, uint32_t uid, uint32_t gid, uint32_t mode, uint32_t want) {
    if (who.is_root()) return !(want & kMaySearch) || (mode & 0111);
    uint32_t bits = who.uid == uid ? mode >> 6 : who.in_group(gid) ? mode >> 3 : mode;
    return (bits & want & 7) == (want & 7);
}

}  // namespace bd
