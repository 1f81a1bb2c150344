// mkdir, rmdir and directory rename. Explicit directories are bd.dir tags on
// the thin pool LV (see dirs.h); each change to them is one lvchange.
#include <fmt/format.h>

#include "dirs.h"
#include "export.h"
#include "lock.h"
#include "names.h"

namespace bd {

namespace {

// Where `path` may be made: its parent must be the root or a directory, and no
// ancestor may be a volume.
Result<void> check_parent(const Catalog& cat, const std::string& path, const std::string& ex) {
    for (std::string p = parent_dir(path); !p.empty(); p = parent_dir(p))
        if (cat.find(p))
            return fail(ENOTDIR, fmt::format("cannot make \"{}\" in export \"{}\": \"{}\" is a "
                                             "volume, not a directory",
                                             path, ex, p));
    if (!is_directory(cat, parent_dir(path)))
        return fail(ENOENT, fmt::format("cannot make \"{}\" in export \"{}\": directory \"{}\" "
                                        "does not exist (make it first)",
                                        path, ex, parent_dir(path)));
    return {};
}

}  // namespace

Result<void> Export::make_dir(const std::string& path) {
    Result<std::string> norm = normalize_path(path);
    if (!norm) return tl::unexpected(norm.error());
    Result<std::string> tag = make_tag(tags::kDir, *norm);
    if (!tag) return tl::unexpected(tag.error());
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    if (cat->find(*norm) || is_directory(*cat, *norm))
        return fail(EEXIST, fmt::format("\"{}\" already exists in export \"{}\"", *norm, name_));
    if (Result<void> ok = check_parent(*cat, *norm, name_); !ok) return ok;
    if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, thinpool_, {{*tag}, {}})); !out)
        return tl::unexpected(classify(out.error()));
    return {};
}

Result<void> Export::remove_dir(const std::string& path) {
    Result<std::string> norm = normalize_path(path);
    if (!norm) return tl::unexpected(norm.error());
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    if (cat->find(*norm))
        return fail(ENOTDIR, fmt::format("\"{}\" in export \"{}\" is a volume, not a directory",
                                         *norm, name_));
    if (!is_directory(*cat, *norm))
        return fail(ENOENT,
                    fmt::format("directory \"{}\" not found in export \"{}\"", *norm, name_));
    if (!directory_empty(*cat, *norm))
        return fail(ENOTEMPTY,
                    fmt::format("directory \"{}\" in export \"{}\" is not empty", *norm, name_));
    TagEdit edit;
    for (const std::string& t : cat->pool->tags)
        if (t == *make_tag(tags::kDir, *norm)) edit.del.push_back(t);
    if (edit.del.empty()) return {};
    if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, thinpool_, edit)); !out)
        return tl::unexpected(classify(out.error()));
    return {};
}

// Not atomic as a whole: the new directory tags are added first, then each
// volume is renamed (each rename is crash-safe), then the old tags go. An
// interruption leaves both directories, each holding some volumes; running the
// same rename again finishes it.
Result<void> Export::rename_dir(const std::string& src, const std::string& dst) {
    Result<std::string> from = normalize_path(src), to = normalize_path(dst);
    if (!from) return tl::unexpected(from.error());
    if (!to) return tl::unexpected(to.error());
    if (*from == *to) return {};
    if (is_within(*to, *from))
        return fail(EINVAL,
                    fmt::format("cannot move directory \"{}\" into itself (\"{}\")", *from, *to));
    std::vector<std::string> volumes;
    {
        Result<ExportLock> lock = lock_for_change();
        if (!lock) return tl::unexpected(lock.error());
        Result<Catalog> cat = scan();
        if (!cat) return tl::unexpected(cat.error());
        if (!is_directory(*cat, *from) || cat->find(*from))
            return fail(ENOENT,
                        fmt::format("directory \"{}\" not found in export \"{}\"", *from, name_));
        if (cat->find(*to))
            return fail(ENOTDIR,
                        fmt::format("cannot move directory \"{}\" over volume \"{}\"", *from, *to));
        if (is_directory(*cat, *to) && !directory_empty(*cat, *to))
            return fail(ENOTEMPTY,
                        fmt::format("directory \"{}\" in export \"{}\" is not empty", *to, name_));
        if (!is_directory(*cat, *to))
            if (Result<void> ok = check_parent(*cat, *to, name_); !ok) return ok;
        TagEdit edit;
        for (const std::string& d : explicit_dirs(*cat)) {
            if (!is_within(d, *from)) continue;
            Result<std::string> tag = make_tag(tags::kDir, reparent(d, *from, *to));
            if (!tag) return tl::unexpected(tag.error());
            edit.add.push_back(*tag);
        }
        if (edit.add.empty()) edit.add.push_back(*make_tag(tags::kDir, *to));
        for (const Volume& v : cat->volumes)
            if (is_within(v.path, *from)) volumes.push_back(v.path);
        for (const std::string& t : cat->pool->tags)
            for (auto it = edit.add.begin(); it != edit.add.end();)
                it = *it == t ? edit.add.erase(it) : it + 1;
        if (!edit.add.empty())
            if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, thinpool_, edit)); !out)
                return tl::unexpected(classify(out.error()));
    }
    for (const std::string& v : volumes)
        if (Result<Volume> moved = rename(v, reparent(v, *from, *to)); !moved)
            return tl::unexpected(moved.error());
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan();
    if (!cat) return tl::unexpected(cat.error());
    TagEdit drop;
    for (const std::string& t : cat->pool->tags) {
        std::optional<std::string> d = tag_value({t}, tags::kDir);
        if (d && is_within(*d, *from)) drop.del.push_back(t);
    }
    if (drop.del.empty()) return {};
    if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, thinpool_, drop)); !out)
        return tl::unexpected(classify(out.error()));
    return {};
}

}  // namespace bd
