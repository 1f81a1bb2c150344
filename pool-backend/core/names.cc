#include "names.h"

#include <fmt/format.h>

#include <cstdint>

#include "text.h"

namespace bd {

namespace {

bool is_lvm_name_char(unsigned char c) {
    return std::isalnum(c) || c == '+' || c == '_' || c == '.' || c == '-';
}

// LVM's tag alphabet is [A-Za-z0-9_+.:/=!&#-]; we reserve '!' as the escape.
bool is_plain_tag_char(unsigned char c) {
    if (std::isalnum(c)) return true;
    static constexpr std::string_view kPunct = "_+.:/=&#-";
    return kPunct.find(char(c)) != std::string_view::npos;
}

Result<void> check_component(std::string_view path, std::string_view comp) {
    if (comp.empty())
        return fail(EINVAL, fmt::format("invalid path \"{}\": empty component (remove the "
                                        "doubled '/')",
                                        path));
    if (comp == "." || comp == "..")
        return fail(EINVAL, fmt::format("invalid path \"{}\": \"{}\" components are not allowed "
                                        "(give the path without them)",
                                        path, comp));
    if (comp.size() > kMaxComponentLength)
        return fail(ENAMETOOLONG, fmt::format("invalid path \"{}\": component of {} bytes is "
                                              "longer than {} (shorten it)",
                                              path, comp.size(), kMaxComponentLength));
    return {};
}

}  // namespace

Result<std::string> normalize_path(std::string_view path) {
    while (!path.empty() && path.front() == '/') path.remove_prefix(1);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    if (path.empty())
        return fail(EINVAL, "invalid path: empty (give a volume path such as /vm/disk0.img)");
    if (path.find('\0') != std::string_view::npos)
        return fail(EINVAL, "invalid path: contains a NUL byte");
    if (!valid_utf8(path))
        return fail(EINVAL, fmt::format("invalid path \"{}\": not valid UTF-8", path));
    // Paths reach terminals, logs and XML: none may steer them.
    for (size_t i = 0; i < path.size();)
        if (std::optional<char32_t> c = next_code_point(path, i); c && is_control(*c))
            return fail(EINVAL, fmt::format("invalid path \"{}\": control character U+{:04X} "
                                            "(rename it without control characters)",
                                            path, uint32_t(*c)));
    size_t start = 0;
    while (true) {
        size_t slash = path.find('/', start);
        std::string_view comp = path.substr(start, slash - start);
        if (Result<void> ok = check_component(path, comp); !ok) return tl::unexpected(ok.error());
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    // The path must fit in one "bd.path=" tag; make_tag states the limit.
    if (Result<std::string> tag = make_tag("bd.path", path); !tag)
        return tl::unexpected(tag.error());
    return std::string(path);
}

uint64_t fnv1a64(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

std::string lv_name_for_path(std::string_view path, std::string_view scope) {
    std::string slug;
    for (unsigned char c : path) {
        if (slug.size() >= kMaxSlugLength) break;
        slug += c == '/' ? '+' : is_lvm_name_char(c) && c != '_' ? char(c) : '-';
    }
    // Never start with '-', '_' or '.', nor with LVM's reserved "snapshot"/"pvmove".
    if (slug.empty() || !std::isalnum(static_cast<unsigned char>(slug[0])) ||
        slug.rfind("snapshot", 0) == 0 || slug.rfind("pvmove", 0) == 0)
        slug = "v" + slug;
    // A scope and its path are hashed as "SCOPE\0PATH": no path holds a NUL.
    uint64_t hash = scope.empty() ? fnv1a64(path)
                                  : fnv1a64(std::string(scope) + '\0' + std::string(path));
    return fmt::format("{}.{:012x}", slug, hash & 0xffffffffffffull);
}

std::string tag_escape(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    for (unsigned char c : raw) {
        if (is_plain_tag_char(c))
            out += char(c);
        else
            out += fmt::format("!{:02X}", c);
    }
    return out;
}

std::string tag_escape_key(std::string_view raw) {
    std::string out;
    for (char c : tag_escape(raw)) out += c == '=' ? std::string("!3D") : std::string(1, c);
    return out;
}

Result<std::string> tag_unescape(std::string_view tag) {
    std::string out;
    for (size_t i = 0; i < tag.size(); ++i) {
        if (tag[i] != '!') {
            out += tag[i];
            continue;
        }
        if (i + 2 >= tag.size() || !std::isxdigit(static_cast<unsigned char>(tag[i + 1])) ||
            !std::isxdigit(static_cast<unsigned char>(tag[i + 2])))
            return fail(EINVAL, fmt::format("malformed escape in tag \"{}\"", tag));
        out += char(std::stoi(std::string(tag.substr(i + 1, 2)), nullptr, 16));
        i += 2;
    }
    return out;
}

Result<std::string> make_tag(std::string_view key, std::string_view value) {
    std::string tag = fmt::format("{}={}", key, tag_escape(value));
    if (tag.size() > kMaxTagLength)
        return fail(ENAMETOOLONG,
                    fmt::format("\"{}\" is too long: it encodes to {} characters and an LVM tag "
                                "holds {} (plain ASCII paths up to {} bytes fit; each byte "
                                "outside [A-Za-z0-9_+.:/=&#-] takes 3)",
                                value.size() > 64 ? std::string(value.substr(0, 64)) + "..."
                                                  : std::string(value),
                                tag.size(), kMaxTagLength, kMaxTagLength - key.size() - 1));
    return tag;
}

Result<std::string> check_export_name(std::string_view name) {
    bool ok = !name.empty() && name.size() <= 64 && name[0] != '-';
    for (unsigned char c : name) ok = ok && is_lvm_name_char(c);
    if (!ok || name == "." || name == "..")
        return fail(EINVAL, fmt::format("invalid export name \"{}\": use 1-64 characters from "
                                        "[A-Za-z0-9+_.-], not starting with '-'",
                                        name));
    return std::string(name);
}

Result<VolumeSpec> parse_volume_spec(std::string_view spec, bool allow_root) {
    size_t colon = spec.find(':');
    std::string_view export_part = spec.substr(0, colon);
    Result<std::string> name = check_export_name(export_part);
    if (!name)
        return fail(EINVAL, fmt::format("invalid volume \"{}\": expected EXPORT:/path ({})", spec,
                                        name.error().message));
    std::string_view path = colon == std::string_view::npos ? "" : spec.substr(colon + 1);
    std::string_view trimmed = path;
    while (!trimmed.empty() && trimmed.front() == '/') trimmed.remove_prefix(1);
    if (trimmed.empty()) {
        if (allow_root) return VolumeSpec{*name, ""};
        return fail(EINVAL, fmt::format("invalid volume \"{}\": expected EXPORT:/path, for "
                                        "example {}:/vm/disk0.img",
                                        spec, *name));
    }
    Result<std::string> norm = normalize_path(path);
    if (!norm) return tl::unexpected(norm.error());
    return VolumeSpec{*name, *norm};
}

std::vector<std::string> path_components(std::string_view path) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= path.size()) {
        size_t slash = path.find('/', start);
        if (slash == std::string_view::npos) slash = path.size();
        if (slash > start) out.emplace_back(path.substr(start, slash - start));
        start = slash + 1;
    }
    return out;
}

std::string parent_dir(std::string_view path) {
    size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? "" : std::string(path.substr(0, slash));
}

std::string base_name(std::string_view path) {
    size_t slash = path.rfind('/');
    return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

bool is_within(const std::string& path, const std::string& dir) {
    if (dir.empty()) return true;
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                           path[dir.size()] == '/');
}

std::string reparent(const std::string& path, const std::string& from, const std::string& to) {
    if (!is_within(path, from)) return path;
    std::string rest = path.substr(from.size());
    if (to.empty() && !rest.empty() && rest[0] == '/') rest.erase(0, 1);
    return to + rest;
}

}  // namespace bd
