#include "volume_tree.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <iterator>
#include <vector>

#include <fmt/core.h>

#include "export.h"
#include "fd.h"
#include "names.h"

namespace bd {

namespace {

// The tree's directories may be searched by anyone (QEMU runs as its own
// user) but listed by root only: a volume's full path is its owner's business.
constexpr mode_t kDirMode = 0711;
// Links are made under this name, then renamed over the real one. A leftover
// (a kill -9 between the two) is removed by the next sync, as is any link the
// tree does not want.
constexpr const char* kLinkTmpPrefix = ".bd-tmp.";

// `e` is the errno of the call that failed, taken before anything else runs.
tl::unexpected<Error> sys_fail(int e, const char* verb, const std::string& what,
                               const std::string& root) {
    return fail(e, fmt::format("volume tree {}: {} {}: {}", root, verb, what, strerror(e)));
}

std::string read_link(int dir, const char* name) {
    char buf[PATH_MAX];
    ssize_t n = readlinkat(dir, name, buf, sizeof buf);
    return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

Fd open_dir(int at, const char* name) {
    return Fd(openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

// mkdir, with the mode whatever the caller's umask.
int make_dir(int at, const char* name) {
    if (mkdirat(at, name, kDirMode) != 0) return -1;
    return fchmodat(at, name, kDirMode, 0);
}

// Opens the directory holding `parts` (all but the last), never following a
// symlink. With `create`, makes what is missing, and turns a stale link that
// stands where a directory is now needed into that directory.
Result<Fd> open_parent(const std::string& root, const std::vector<std::string>& parts,
                       bool create) {
    Fd dir = open_dir(AT_FDCWD, root.c_str());
    if (!dir) return sys_fail(errno, "open", root, root);
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
        const char* name = parts[i].c_str();
        Fd next = open_dir(dir.get(), name);
        if (!next && create) {
            struct stat st;
            if (fstatat(dir.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                (void)unlinkat(dir.get(), name, 0);
            if (make_dir(dir.get(), name) != 0 && errno != EEXIST)
                return sys_fail(errno, "mkdir", parts[i], root);
            next = open_dir(dir.get(), name);
        }
        if (!next) return sys_fail(errno, "open", parts[i], root);
        dir = std::move(next);
    }
    return dir;
}

// What nftw finds below a root: its links (path relative to the root ->
// target) and its directories, deepest first. nftw keeps a bounded number of
// descriptors open however deep the tree is, and with FTW_PHYS it follows no
// link.
struct Walk {
    size_t prefix = 0;
    std::map<std::string, std::string> links;
    std::vector<std::string> dirs;
};
thread_local Walk* walking = nullptr;

int visit(const char* path, const struct stat*, int type, struct FTW*) {
    std::string rel = strlen(path) > walking->prefix ? path + walking->prefix + 1 : "";
    if (type == FTW_SL) {
        char buf[PATH_MAX];
        ssize_t n = readlink(path, buf, sizeof buf);
        walking->links[rel] = n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
    } else if (type == FTW_DP && !rel.empty()) {
        walking->dirs.push_back(rel);
    }
    // Anything else is not the tree's: it stays, and only blocks a link.
    return 0;
}

Result<Walk> walk(const std::string& root) {
    Walk w;
    w.prefix = root.size();
    walking = &w;
    int r = nftw(root.c_str(), visit, 16, FTW_PHYS | FTW_DEPTH);
    int e = errno;
    walking = nullptr;
    if (r != 0) return sys_fail(e, "walk", root, root);
    return w;
}

// Paths that `links` wants both as a link and as a directory of other links
// (a foreign LV "vm" beside a volume "vm/disk.img"): neither can be shown
// right, so the link goes and the directory stays.
std::vector<std::string> conflicts(const std::map<std::string, std::string>& links) {
    std::vector<std::string> out;
    for (auto it = links.begin(); it != links.end(); ++it) {
        auto next = std::next(it);
        if (next != links.end() && next->first.size() > it->first.size() &&
            next->first.compare(0, it->first.size(), it->first) == 0 &&
            next->first[it->first.size()] == '/')
            out.push_back(it->first);
    }
    return out;
}

}  // namespace

std::string tree_root(const std::string& dev_dir, const std::string& vg) {
    return dev_dir + "/disk/by-bd/" + vg;
}

Result<void> VolumeTree::make_root() {
    // root_ = DEV/disk/by-bd/VG: each level below DEV as udev makes /dev/disk,
    // the root itself as its own directories.
    std::string path;
    std::vector<std::string> parts = path_components(root_);
    for (size_t i = 0; i < parts.size(); ++i) {
        path += "/" + parts[i];
        bool last = i + 1 == parts.size();
        int r = last ? make_dir(AT_FDCWD, path.c_str()) : mkdir(path.c_str(), 0755);
        if (r != 0 && errno != EEXIST) return sys_fail(errno, "mkdir", path, root_);
    }
    struct stat st;
    if (lstat(root_.c_str(), &st) != 0) return sys_fail(errno, "stat", root_, root_);
    if (!S_ISDIR(st.st_mode))
        return fail(ENOTDIR, fmt::format("volume tree {} is not a directory; remove it, and bd "
                                         "makes it again",
                                         root_));
    return {};
}

Result<void> VolumeTree::link(const std::string& path, const std::string& target) {
    std::vector<std::string> parts = path_components(path);
    if (parts.empty()) return fail(EINVAL, "volume tree: empty path");
    if (Result<void> r = make_root(); !r) return r;
    Result<Fd> dir = open_parent(root_, parts, true);
    if (!dir) return tl::unexpected(dir.error());
    const char* name = parts.back().c_str();
    struct stat st;
    if (fstatat(dir->get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode) && read_link(dir->get(), name) == target) return {};
        // An empty directory left where a volume now is (its last volume went).
        if (S_ISDIR(st.st_mode)) (void)unlinkat(dir->get(), name, AT_REMOVEDIR);
        else if (!S_ISLNK(st.st_mode))
            return fail(EEXIST, fmt::format("volume tree {}: {} is not a link bd made; remove it "
                                            "and run `bdctl activate`",
                                            root_, path));
    }
    std::string tmp = kLinkTmpPrefix + random_id(12);
    if (symlinkat(target.c_str(), dir->get(), tmp.c_str()) != 0)
        return sys_fail(errno, "symlink", path, root_);
    if (renameat(dir->get(), tmp.c_str(), dir->get(), name) != 0) {
        int e = errno;
        (void)unlinkat(dir->get(), tmp.c_str(), 0);
        return sys_fail(e, "rename", path, root_);
    }
    return {};
}

Result<void> VolumeTree::unlink(const std::string& path) {
    std::vector<std::string> parts = path_components(path);
    if (parts.empty()) return {};
    Result<Fd> dir = open_parent(root_, parts, false);
    if (!dir)
        return dir.error().code == ENOENT || dir.error().code == ENOTDIR
                   ? Result<void>{}
                   : tl::unexpected(dir.error());
    struct stat st;
    const char* name = parts.back().c_str();
    if (fstatat(dir->get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
        unlinkat(dir->get(), name, 0) != 0 && errno != ENOENT)
        return sys_fail(errno, "unlink", path, root_);
    // The directories this link was the last entry of.
    for (size_t n = parts.size() - 1; n > 0; --n) {
        std::string d = root_;
        for (size_t i = 0; i < n; ++i) d += "/" + parts[i];
        if (rmdir(d.c_str()) != 0) break;
    }
    return {};
}

Result<bool> VolumeTree::matches(const std::map<std::string, std::string>& links) const {
    struct stat st;
    if (lstat(root_.c_str(), &st) != 0) return errno == ENOENT && links.empty();
    Result<Walk> w = walk(root_);
    if (!w) return tl::unexpected(w.error());
    // What sync() would make: a conflicting path keeps its directory.
    std::map<std::string, std::string> made = links;
    for (const std::string& c : conflicts(links)) made.erase(c);
    return w->links == made;
}

Result<size_t> VolumeTree::sync(const std::map<std::string, std::string>& wanted) {
    if (Result<void> r = make_root(); !r) return tl::unexpected(r.error());
    Result<Walk> w = walk(root_);
    if (!w) return tl::unexpected(w.error());
    // One entry that cannot be put right (a file someone put there, a path
    // that is a volume and a directory) does not stop the others: the first
    // error is reported once all are done.
    size_t changed = 0;
    Result<void> first;
    auto note = [&](Result<void> r) {
        if (r) ++changed;
        else if (first) first = r;
    };
    std::map<std::string, std::string> links = wanted;
    for (const std::string& c : conflicts(wanted)) {
        links.erase(c);
        if (first)
            first = fail(EEXIST, fmt::format("volume tree {}: \"{}\" is a volume and a directory "
                                             "of volumes; rename one of them",
                                             root_, c));
    }
    for (const auto& [path, target] : w->links)
        if (!links.count(path)) note(unlink(path));
    for (const auto& [path, target] : links) {
        auto it = w->links.find(path);
        if (it == w->links.end() || it->second != target) note(link(path, target));
    }
    for (const std::string& d : w->dirs) (void)rmdir((root_ + "/" + d).c_str());
    if (!first) return tl::unexpected(first.error());
    return changed;
}

Result<void> VolumeTree::remove() {
    struct stat st;
    if (lstat(root_.c_str(), &st) != 0 && errno == ENOENT) return {};
    if (Result<size_t> r = sync({}); !r) return tl::unexpected(r.error());
    if (rmdir(root_.c_str()) != 0 && errno != ENOENT) return sys_fail(errno, "rmdir", root_, root_);
    return {};
}

}  // namespace bd
