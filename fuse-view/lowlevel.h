// The libfuse low-level operations table for bdfs.
#pragma once

#include "fs.h"

namespace bdfs {

/// Operations whose callbacks adapt each request to one Fs call and exactly one reply.
fuse_lowlevel_ops lowlevel_ops();

}  // namespace bdfs
