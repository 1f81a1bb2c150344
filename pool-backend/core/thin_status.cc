#include "thin_status.h"

#include <fmt/format.h>
#include <libdevmapper.h>

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

}  // namespace

// Sample (kernel 6.1, thin target): "2048 4095" (2048 sectors mapped, highest
// mapped sector 4095), "0 -" when nothing is mapped, "Fail" after an error.
Result<uint64_t> parse_thin_status(const std::string& params) {
    if (params == "Fail") return fail(EIO, "thin volume is in Fail mode");
    std::istringstream in(params);
    uint64_t sectors = 0;
    std::string highest;
    if (!(in >> sectors >> highest))
        return fail(EIO, fmt::format("unexpected thin status \"{}\"", params));
    return sectors * 512;
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
