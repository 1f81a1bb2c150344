// The volume tree: /dev/disk/by-bd/VG/PATH, a symlink to /dev/VG/LV for every
// volume of the export on VG, so that "<tree>/<volume path>" opens the volume.
// Tools that model a pool as a directory of files (virtinst: virt-install,
// virt-clone, virt-manager) join the pool's target path with a volume's name;
// the bd pool's target path is this tree (docs/ARCHITECTURE.md, "The volume
// tree").
//
// The tree is derived state, like /dev/VG itself: LVM's tags are the truth.
// The core changes it under the export's lock, after each commit, and
// rebuilds it whole from a fresh report before each change to a volume, when
// a listing finds it out of date, on activate (boot) and on fsck. Only symlinks are ever made, replaced or removed here, and a
// link is replaced by a rename, so a reader sees the old link or the new one.
#pragma once

#include <map>
#include <string>

#include "error.h"

namespace bd {

/// The tree of the export on VG `vg`, where devices live in `dev_dir` ("/dev").
std::string tree_root(const std::string& dev_dir, const std::string& vg);

class VolumeTree {
public:
    explicit VolumeTree(std::string root) : root_(std::move(root)) {}
    const std::string& root() const { return root_; }

    /// Creates the tree's root (and /dev/disk/by-bd), root's; its directories are 0711.
    Result<void> make_root();
    /// Makes `path` a link to `target`, with its parent directories.
    /// EEXIST when something that is not a link (a file someone put there)
    /// holds the name: it is never replaced.
    Result<void> link(const std::string& path, const std::string& target);
    /// Removes the link at `path` (if any) and the directories it leaves empty.
    Result<void> unlink(const std::string& path);
    /// True if sync(links) would change nothing; reads only.
    Result<bool> matches(const std::map<std::string, std::string>& links) const;
    /// Makes the tree hold exactly `links` (path -> target): adds, replaces and
    /// removes links, and removes directories left empty. Returns the number of
    /// links it changed. A path wanted both as a link and as a directory of
    /// links keeps the directory; EEXIST reports it, after the rest is done.
    Result<size_t> sync(const std::map<std::string, std::string>& links);
    /// Removes every link and directory of the tree, and its root.
    Result<void> remove();

private:
    std::string root_;
};

}  // namespace bd
