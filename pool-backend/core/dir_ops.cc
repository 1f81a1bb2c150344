// mkdir, rmdir and directory rename. Explicit directories are bd.dir tags on
// the thin pool LV (see dirs.h); each change to them is one lvchange.
#include <algorithm>

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

Result<DirAttrs> Export::set_dir_attrs(const std::string& path, const DirAttrChange& change,
                                       const Actor& who) {
    std::string norm;
    if (!path.empty() && path != "/") {
        Result<std::string> n = normalize_path(path);
        if (!n) return tl::unexpected(n.error());
        norm = *n;
    }
    if (change.mode && *change.mode > 07777)
        return fail(EINVAL, fmt::format("invalid mode {:o} for directory \"{}\"", *change.mode, norm));
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_owned();
    if (!cat) return tl::unexpected(cat.error());
    if (cat->find(norm) || !is_directory(*cat, norm))
        return fail(ENOENT, fmt::format("directory \"{}\" not found in export \"{}\"", norm, name_));
    // Merged under the lock with what is kept now, so a concurrent chmod and
    // chown both land.
    std::map<std::string, DirAttrs> now = dir_attrs(*cat);
    auto it = now.find(norm);
    const DirAttrs old = it != now.end() ? it->second : default_dir_;
    DirAttrs attrs = old;
    if (change.uid) attrs.uid = *change.uid;
    if (change.gid) attrs.gid = *change.gid;
    if (change.mode) attrs.mode = *change.mode;
    if (it != now.end() && attrs == old) return attrs;
    if (it == now.end())
        if (Result<void> ok = check_metadata_room(*cat, who); !ok) return tl::unexpected(ok.error());
    Result<std::string> tag = dir_attrs_tag(norm, attrs);
    if (!tag) return tl::unexpected(tag.error());
    TagEdit edit{{*tag}, dir_attrs_tags_of(*cat, norm, false)};
    std::vector<std::string> explicit_ = explicit_dirs(*cat);
    if (!norm.empty() && std::find(explicit_.begin(), explicit_.end(), norm) == explicit_.end()) {
        Result<std::string> dir = make_tag(tags::kDir, norm);
        if (!dir) return tl::unexpected(dir.error());
        edit.add.push_back(*dir);
    }
    if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, thinpool_, edit)); !out)
        return tl::unexpected(classify(out.error()));
    return attrs;
}

Result<void> Export::make_dir(const std::string& path, std::optional<DirAttrs> attrs,
                              const Actor& who) {
    Result<std::string> norm = normalize_path(path);
    if (!norm) return tl::unexpected(norm.error());
    Result<std::string> tag = make_tag(tags::kDir, *norm);
    if (!tag) return tl::unexpected(tag.error());
    TagEdit edit{{*tag}, {}};
    // A path too long for the attrs tag still makes the directory; it then
    // shows the default owner and mode (chmod on it is ENAMETOOLONG).
    if (attrs)
        if (Result<std::string> a = dir_attrs_tag(*norm, *attrs); a) edit.add.push_back(*a);
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_owned();
    if (!cat) return tl::unexpected(cat.error());
    if (cat->find(*norm) || is_directory(*cat, *norm))
        return fail(EEXIST, fmt::format("\"{}\" already exists in export \"{}\"", *norm, name_));
    if (Result<void> ok = check_parent(*cat, *norm, name_); !ok) return ok;
    if (Result<void> ok = check_not_alias(*cat, *norm); !ok) return ok;
    if (Result<void> ok = check_metadata_room(*cat, who); !ok) return ok;
    edit.del = dir_attrs_tags_of(*cat, *norm, false);  // a stale one, if any
    // One lvchange: the directory and its owner appear together.
    if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, thinpool_, edit)); !out)
        return tl::unexpected(classify(out.error()));
    return {};
}

Result<void> Export::remove_dir(const std::string& path) {
    Result<std::string> norm = normalize_path(path);
    if (!norm) return tl::unexpected(norm.error());
    Result<ExportLock> lock = lock_for_change();
    if (!lock) return tl::unexpected(lock.error());
    Result<Catalog> cat = scan_owned();
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
    for (const std::string& t : dir_attrs_tags_of(*cat, *norm, true)) edit.del.push_back(t);
    if (edit.del.empty()) return {};
    if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, thinpool_, edit)); !out)
        return tl::unexpected(classify(out.error()));
    return {};
}

// One commit: a single lvchange on the thin pool LV moves the directory tags
// (explicit directories, owners and modes) and records the move (bd.mvdir),
// from which moment catalog rule 6 shows every volume below `src` below `dst`.
// The volumes are then renamed there one by one, each under a short lock so
// that other changes go on, and the record goes when none is left; a crash
// anywhere leaves the new state, which `bdctl fsck` finishes.
Result<void> Export::rename_dir(const std::string& src, const std::string& dst, const Actor& who) {
    Result<std::string> from = normalize_path(src), to = normalize_path(dst);
    if (!from) return tl::unexpected(from.error());
    if (!to) return tl::unexpected(to.error());
    if (*from == *to) return {};
    if (is_within(*to, *from))
        return fail(EINVAL,
                    fmt::format("cannot move directory \"{}\" into itself (\"{}\")", *from, *to));
    {
        Result<ExportLock> lock = lock_for_change();
        if (!lock) return tl::unexpected(lock.error());
        Result<Catalog> cat = scan_owned();
        if (!cat) return tl::unexpected(cat.error());
        if (Result<void> ok = check_dir_move(*cat, *from, *to, who); !ok) return ok;
        Result<TagEdit> edit = dir_move_edit(*cat, *from, *to);
        if (!edit) return tl::unexpected(edit.error());
        if (!edit->add.empty() || !edit->del.empty())
            if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, thinpool_, *edit)); !out)
                return tl::unexpected(classify(out.error()));
    }
    // Committed: what is left is tidying, which fsck (and any change to a
    // moved volume) also does, so a failure here is a warning.
    if (Result<void> r = finish_moves(); !r && warn_)
        warn_(fmt::format("directory \"{}\" is moved to \"{}\", but renaming its volumes there "
                          "failed ({}); run `bdctl fsck {}`",
                          *from, *to, r.error().message, name_));
    return {};
}

Result<void> Export::check_dir_move(const Catalog& cat, const std::string& from,
                                    const std::string& to, const Actor& who) {
    if (!is_directory(cat, from) || cat.find(from))
        return fail(ENOENT, fmt::format("directory \"{}\" not found in export \"{}\"", from, name_));
    if (cat.find(to))
        return fail(ENOTDIR, fmt::format("cannot move directory \"{}\" over volume \"{}\"", from, to));
    if (is_directory(cat, to) && !directory_empty(cat, to))
        return fail(ENOTEMPTY, fmt::format("directory \"{}\" in export \"{}\" is not empty", to, name_));
    if (!is_directory(cat, to)) {
        if (Result<void> ok = check_parent(cat, to, name_); !ok) return ok;
        if (Result<void> ok = check_not_alias(cat, to); !ok) return ok;
    }
    for (const DirMove& m : cat.moves)
        if (is_within(from, m.from) || is_within(m.from, from) || is_within(to, m.from) ||
            is_within(m.to, from))
            return fail(EBUSY, fmt::format("directory \"{}\" of export \"{}\" is being moved to "
                                           "\"{}\"; retry when that finishes (bdctl fsck {} "
                                           "finishes it if it was interrupted)",
                                           m.from, name_, m.to, name_));
    for (const Volume& v : cat.volumes)
        if (is_within(v.path, from) && !v.canonical)
            return fail(EUCLEAN, fmt::format("volume \"{}\" in export \"{}\" has unfinished work "
                                             "from an interrupted operation; run `bdctl fsck {}` "
                                             "first",
                                             v.path, name_, name_));
    // Nothing else may be on its way into the directory (a staged change, a copy).
    if (Result<void> ok = check_unclaimed(cat, from, "", true); !ok) return ok;
    return check_metadata_room(cat, who);
}

// The one lvchange of a directory move: explicit directories, owners and
// modes below `from` go below `to` (an empty target's own are replaced, as
// POSIX replaces the target directory), and the record of the move.
Result<TagEdit> Export::dir_move_edit(const Catalog& cat, const std::string& from,
                                      const std::string& to) {
    TagEdit edit;
    for (const std::string& t : cat.pool->tags) {
        std::optional<std::string> d = tag_value({t}, tags::kDir);
        if (!d || !is_within(*d, from)) continue;
        edit.del.push_back(t);
        Result<std::string> tag = make_tag(tags::kDir, reparent(*d, from, to));
        if (!tag) return tl::unexpected(tag.error());
        edit.add.push_back(*tag);
    }
    if (edit.add.empty()) edit.add.push_back(*make_tag(tags::kDir, to));
    for (const std::string& t : dir_attrs_tags_of(cat, to, true)) edit.del.push_back(t);
    for (const std::string& t : dir_attrs_tags_of(cat, from, true)) edit.del.push_back(t);
    for (const auto& [path, a] : dir_attrs(cat)) {
        if (!is_within(path, from)) continue;
        Result<std::string> tag = dir_attrs_tag(reparent(path, from, to), a);
        if (!tag) return tl::unexpected(tag.error());
        edit.add.push_back(*tag);
    }
    bool volumes = false;
    for (const Volume& v : cat.volumes) volumes = volumes || is_within(v.path, from);
    if (volumes) {
        Result<std::string> record = dir_move_tag({from, to});
        if (!record) return tl::unexpected(record.error());
        edit.add.push_back(*record);
    }
    // LVM refuses to add a tag it also deletes, or one already there.
    for (const std::string& t : edit.add)
        edit.del.erase(std::remove(edit.del.begin(), edit.del.end(), t), edit.del.end());
    for (const std::string& t : cat.pool->tags)
        edit.add.erase(std::remove(edit.add.begin(), edit.add.end(), t), edit.add.end());
    return edit;
}

// Renames, one per short lock, every volume a committed move shows elsewhere
// than its LV claims, then drops the records of the finished moves.
Result<void> Export::finish_moves() {
    for (bool first = true;; first = false) {
        Result<ExportLock> lock = lock_for_change();
        if (!lock) return tl::unexpected(lock.error());
        Result<Catalog> cat = scan_owned();
        if (!cat) return tl::unexpected(cat.error());
        // The moved paths at once; then each volume's link follows its rename.
        if (first || cat->moves.empty()) retree(*cat);
        if (cat->moves.empty()) return {};
        const Volume* next = nullptr;
        for (const Volume& v : cat->volumes)
            for (const DirMove& m : cat->moves)
                for (const std::string& c : tag_values(v.raw_tags, tags::kPath))
                    if (!next && is_within(c, m.from)) next = &v;
        if (next) {
            if (Result<void> ok = canonicalize(*next, *cat, nullptr); !ok) return ok;
            (void)shown(find_in(*cat, next->path).map([&](Volume v) {
                v.lv = lv_name(v.path);  // the name canonicalize gave it
                return v;
            }));
            continue;
        }
        TagEdit done;
        for (const DirMove& m : cat->moves) done.del.push_back(*dir_move_tag(m));
        if (Result<CommandOutput> out = run(lvchange_tags_argv(vg_, thinpool_, done)); !out)
            return tl::unexpected(classify(out.error()));
        return {};
    }
}

}  // namespace bd
