#include "thin_status.h"

#include <fmt/format.h>
#include <libdevmapper.h>

#include <sys/sysmacros.h>

#include <charconv>
#include <cstdio>
#include <memory>
#include <sstream>

namespace bd {

namespace {

struct TaskDeleter {
    void operator()(dm_task* t) const { dm_task_destroy(t); }
};
using Task = std::unique_ptr<dm_task, TaskDeleter>;

// Status of the first target of `name`, with DM_NOFLUSH_FLAG so a thin pool does
// not commit its metadata to answer.
Result<std::pair<std::string, std::string>> target_status(const std::string& name) {
    dm_prepare();
    Task task(dm_task_create(DM_DEVICE_STATUS));
    if (!task) return fail(ENOMEM, "dm_task_create failed");
    if (!dm_task_set_name(task.get(), name.c_str()) || !dm_task_no_flush(task.get()))
        return fail(EINVAL, fmt::format("dm_task_set_name({}) failed", name));
    if (!dm_task_run(task.get()))
        return fail(ENOENT, fmt::format("device-mapper status of \"{}\" failed (is the volume "
                                        "active?)",
                                        name));
    uint64_t start = 0, length = 0;
    char* type = nullptr;
    char* params = nullptr;
    dm_get_next_target(task.get(), nullptr, &start, &length, &type, &params);
    return std::pair<std::string, std::string>(type ? type : "", params ? params : "");
}

// The first target's status and table of the device numbered `dev`.
struct Target {
    std::string type, status, table;
};

Result<Target> target_of(dev_t dev) {
    Target t;
    for (int kind : {DM_DEVICE_STATUS, DM_DEVICE_TABLE}) {
        dm_prepare();
        Task task(dm_task_create(kind));
        if (!task) return fail(ENOMEM, "dm_task_create failed");
        if (!dm_task_set_major(task.get(), int(major(dev))) ||
            !dm_task_set_minor(task.get(), int(minor(dev))) || !dm_task_no_flush(task.get()))
            return fail(EINVAL, fmt::format("device-mapper device {}:{}", major(dev), minor(dev)));
        if (!dm_task_run(task.get()))
            return fail(ENOENT, fmt::format("device-mapper device {}:{} is gone", major(dev),
                                            minor(dev)));
        uint64_t start = 0, length = 0;
        char* type = nullptr;
        char* params = nullptr;
        dm_get_next_target(task.get(), nullptr, &start, &length, &type, &params);
        t.type = type ? type : "";
        (kind == DM_DEVICE_STATUS ? t.status : t.table) = params ? params : "";
    }
    return t;
}

}  // namespace

// Sample (kernel 6.1, thin target): "2048 4095" (2048 sectors mapped, highest
// mapped sector 4095), "0 -" when nothing is mapped, "Fail" after an error.
// Returns {bytes mapped, bytes up to the end of the highest mapped block}.
static Result<std::pair<uint64_t, uint64_t>> parse_thin(const std::string& params) {
    if (params == "Fail") return fail(EIO, "thin volume is in Fail mode");
    std::istringstream in(params);
    uint64_t sectors = 0, h = 0;
    std::string highest;
    if (!(in >> sectors >> highest) ||
        (highest != "-" &&
         std::from_chars(highest.data(), highest.data() + highest.size(), h).ec != std::errc()))
        return fail(EIO, fmt::format("unexpected thin status \"{}\"", params));
    return std::pair<uint64_t, uint64_t>(sectors * 512, highest == "-" ? 0 : (h + 1) * 512);
}

Result<uint64_t> parse_thin_status(const std::string& params) {
    return parse_thin(params).map([](auto p) { return p.first; });
}

Result<uint64_t> parse_thin_data_end(const std::string& params) {
    return parse_thin(params).map([](auto p) { return p.second; });
}

// Table sample: "253:2 7" (pool device, device id), "253:2 7 253:5" with an
// external origin.
Result<std::optional<uint64_t>> dm_thin_data_end(dev_t dev) {
    Result<Target> t = target_of(dev);
    if (!t) return tl::unexpected(t.error());
    std::istringstream table(t->table);
    std::string pool, id, external;
    if (t->type != "thin" || !(table >> pool >> id) || (table >> external))
        return std::optional<uint64_t>();
    Result<uint64_t> end = parse_thin_data_end(t->status);
    if (!end) return tl::unexpected(end.error());
    return std::optional<uint64_t>(*end);
}

// Pool table sample: "253:0 253:1 128 0 1 skip_block_zeroing" (metadata and
// data devices, block size, low water mark, then the feature arguments).
bool parse_thin_pool_zeroes(const std::string& table) {
    std::istringstream in(table);
    std::string word;
    for (int i = 0; i < 5 && in >> word; ++i) {}  // up to the feature count
    while (in >> word)
        if (word == "skip_block_zeroing") return false;
    return true;
}

Result<bool> dm_thin_pool_zeroes(dev_t thin) {
    Result<Target> t = target_of(thin);
    if (!t) return tl::unexpected(t.error());
    std::istringstream table(t->table);
    std::string pool;
    unsigned maj = 0, min = 0;
    if (t->type != "thin" || !(table >> pool) || sscanf(pool.c_str(), "%u:%u", &maj, &min) != 2)
        return fail(EINVAL, fmt::format("device {}:{} is not a thin volume", major(thin),
                                        minor(thin)));
    Result<Target> p = target_of(makedev(maj, min));
    if (!p) return tl::unexpected(p.error());
    if (p->type != "thin-pool")
        return fail(EINVAL, fmt::format("device {} is not a thin pool", pool));
    return parse_thin_pool_zeroes(p->table);
}

Result<uint64_t> dm_thin_mapped_bytes(const std::string& name) {
    auto st = target_status(name);
    if (!st) return tl::unexpected(st.error());
    if (st->first != "thin")
        return fail(EINVAL, fmt::format("\"{}\" is not a thin device ({})", name, st->first));
    return parse_thin_status(st->second);
}

Result<ThinPoolStatus> dm_thin_pool_status_noflush(const std::string& vg, const std::string& pool) {
    // LVM stacks "-tpool" under the pool once thin LVs exist; before that the pool is bare.
    // The suffix is added after dm_name: its dash is a separator, not part of the LV name.
    auto st = target_status(dm_name(vg, pool) + "-tpool");
    if (!st || st->first != "thin-pool") st = target_status(dm_name(vg, pool));
    if (!st) return tl::unexpected(st.error());
    if (st->first != "thin-pool")
        return fail(EIO, fmt::format("\"{}/{}\" is not a thin-pool device", vg, pool));
    return parse_thin_pool_status(st->second);
}

}  // namespace bd
