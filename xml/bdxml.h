// libvirt XML for bd objects, written with libxml2 so every value is escaped.
#pragma once

#include <string>

namespace bd::xml {

/// A ready bdpool.xml: <pool type='bd'> on VG/THINPOOL, target /dev/disk/by-bd/VG, or,
/// for a pool export of a shared VG, on VG@THINPOOL, target /dev/disk/by-bd/VG@THINPOOL
/// (the target libvirt computes; it is written for the reader).
std::string pool_xml(const std::string& pool_name, const std::string& vg,
                     const std::string& thinpool, bool shared = false);

/// A <disk type='volume'> element for a domain, opened by QEMU as a block device.
std::string domain_disk_xml(const std::string& pool_name, const std::string& volume,
                            const std::string& target_dev, const std::string& format);

}  // namespace bd::xml
