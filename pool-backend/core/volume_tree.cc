#include "volume_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include <fmt/core.h>

#include "export.h"
#include "fd.h"
#include "names.h"

namespace bd {

namespace {

constexpr mode_t kDirMode = 0755;
// Links are made under this name, then renamed over the real one. A leftover
// (a kill -9 between the two) is removed by the next sync, as is any link the
// tree does not want.
constexpr const char* kLinkTmpPrefix = ".bd-tmp.";

tl::unexpected<Error> sys_fail(const std::string& what, const std::string& root) {
    int e = errno;
    return fail(e, fmt::format("volume tree {}: {}: {}", root, what, strerror(e)));
}

std::string read_link(int dir, const char* name) {
    char buf[PATH_MAX];
    ssize_t n = readlinkat(dir, name, buf, sizeof buf);
    return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

Fd open_dir(int at, const char* name) {
    return Fd(openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

// Opens the directory holding `parts` (all but the last), never following a
// symlink. With `create`, makes what is missing, and turns a stale link that
// stands where a directory is now needed into that directory.
Result<Fd> open_parent(const std::string& root, const std::vector<std::string>& parts,
                       bool create) {
    Fd dir = open_dir(AT_FDCWD, root.c_str());
    if (!dir) return sys_fail("open", root);
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
        const char* name = parts[i].c_str();
        Fd next = open_dir(dir.get(), name);
        if (!next && create) {
            struct stat st;
            if (fstatat(dir.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                (void)unlinkat(dir.get(), name, 0);
            if (mkdirat(dir.get(), name, kDirMode) != 0 && errno != EEXIST)
                return sys_fail(fmt::format("mkdir {}", parts[i]), root);
            next = open_dir(dir.get(), name);
        }
        if (!next) return sys_fail(fmt::format("open {}", parts[i]), root);
        dir = std::move(next);
    }
    return dir;
}

// Every link below `dir` (path relative to the root -> target), and every
// directory, deepest first.
Result<void> walk(int dir, const std::string& prefix, const std::string& root,
                  std::map<std::string, std::string>& links, std::vector<std::string>& dirs) {
    Fd copy(dup(dir));
    if (!copy) return sys_fail("dup", root);
    DIR* d = fdopendir(copy.get());
    if (!d) return sys_fail("opendir " + prefix, root);
    copy.release();
    std::vector<std::string> subdirs;
    while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        struct stat st;
        if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (S_ISLNK(st.st_mode)) links[prefix + name] = read_link(dir, name.c_str());
        else if (S_ISDIR(st.st_mode)) subdirs.push_back(name);
        // Anything else is not the tree's: it stays, and only blocks a link.
    }
    closedir(d);
    for (const std::string& s : subdirs) {
        Fd sub = open_dir(dir, s.c_str());
        if (!sub) continue;
        if (Result<void> r = walk(sub.get(), prefix + s + "/", root, links, dirs); !r) return r;
        dirs.push_back(prefix + s);
    }
    return {};
}

}  // namespace

std::string tree_root(const std::string& dev_dir, const std::string& vg) {
    return dev_dir + "/disk/by-bd/" + vg;
}

Result<void> VolumeTree::make_root() {
    // root_ = DEV/disk/by-bd/VG: make each level below DEV.
    std::string path;
    for (const std::string& p : path_components(root_)) {
        path += "/" + p;
        if (mkdir(path.c_str(), kDirMode) != 0 && errno != EEXIST) return sys_fail("mkdir", path);
    }
    struct stat st;
    if (lstat(root_.c_str(), &st) != 0) return sys_fail("stat", root_);
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
    if (symlinkat(target.c_str(), dir->get(), tmp.c_str()) != 0) return sys_fail("symlink " + path, root_);
    if (renameat(dir->get(), tmp.c_str(), dir->get(), name) != 0) {
        Result<void> err = sys_fail("rename " + path, root_);
        (void)unlinkat(dir->get(), tmp.c_str(), 0);
        return err;
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
        return sys_fail("unlink " + path, root_);
    // The directories this link was the last entry of.
    for (size_t n = parts.size() - 1; n > 0; --n) {
        std::string d = root_;
        for (size_t i = 0; i < n; ++i) d += "/" + parts[i];
        if (rmdir(d.c_str()) != 0) break;
    }
    return {};
}

Result<size_t> VolumeTree::sync(const std::map<std::string, std::string>& links) {
    if (Result<void> r = make_root(); !r) return tl::unexpected(r.error());
    Fd dir = open_dir(AT_FDCWD, root_.c_str());
    if (!dir) return sys_fail("open", root_);
    std::map<std::string, std::string> have;
    std::vector<std::string> dirs;
    if (Result<void> r = walk(dir.get(), "", root_, have, dirs); !r) return tl::unexpected(r.error());
    // One entry that cannot be put right (a file someone put there) does not
    // stop the others: the first error is reported once all are done.
    size_t changed = 0;
    Result<void> first;
    auto note = [&](Result<void> r) {
        if (r) ++changed;
        else if (first) first = r;
    };
    for (const auto& [path, target] : have)
        if (!links.count(path)) note(unlink(path));
    for (const auto& [path, target] : links) {
        auto it = have.find(path);
        if (it == have.end() || it->second != target) note(link(path, target));
    }
    for (const std::string& d : dirs) (void)unlinkat(dir.get(), d.c_str(), AT_REMOVEDIR);
    if (!first) return tl::unexpected(first.error());
    return changed;
}

Result<void> VolumeTree::remove() {
    struct stat st;
    if (lstat(root_.c_str(), &st) != 0 && errno == ENOENT) return {};
    if (Result<size_t> r = sync({}); !r) return tl::unexpected(r.error());
    if (rmdir(root_.c_str()) != 0 && errno != ENOENT)
        return sys_fail("rmdir", root_);
    return {};
}

}  // namespace bd
