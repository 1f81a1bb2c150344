#include "dm.h"

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

void quiet(int, const char*, int, int, const char*, ...) {}

// No udev runs in our test guests; queries need none, so never wait for it.
Result<Task> run_task(int type, const std::string& name) {
    dm_prepare();
    Task task(dm_task_create(type));
    if (!task) return fail(ENOMEM, "dm_task_create failed");
    if (!dm_task_set_name(task.get(), name.c_str()))
        return fail(EINVAL, fmt::format("dm_task_set_name({}) failed", name));
    if (!dm_task_run(task.get()))
        return fail(EIO, fmt::format("device-mapper query of \"{}\" failed (is the dm-mod "
                                     "kernel module loaded?)",
                                     name));
    return task;
}

std::string doubled(const std::string& s) {
    std::string out;
    for (char c : s) out += c == '-' ? "--" : std::string(1, c);
    return out;
}

}  // namespace

void dm_prepare() {
    // libdevmapper prints its own complaints on stderr; bd reports the
    // failure of each query itself, in its own words.
    static const bool silenced = (dm_log_with_errno_init(quiet), true);
    (void)silenced;
    dm_udev_set_sync_support(0);  // queries need no udev, and none runs in the test guest
}

std::string dm_name(const std::string& vg, const std::string& lv) {
    return doubled(vg) + "-" + doubled(lv);
}

Result<DmInfo> dm_info(const std::string& name) {
    Result<Task> task = run_task(DM_DEVICE_INFO, name);
    if (!task) return tl::unexpected(task.error());
    struct ::dm_info raw {};
    if (!dm_task_get_info(task->get(), &raw))
        return fail(EIO, fmt::format("dm_task_get_info({}) failed", name));
    return DmInfo{raw.exists != 0, raw.open_count, raw.read_only != 0};
}

double ThinPoolStatus::data_percent() const {
    return total_data_blocks ? 100.0 * double(used_data_blocks) / double(total_data_blocks) : 0;
}

double ThinPoolStatus::metadata_percent() const {
    return total_metadata_blocks
               ? 100.0 * double(used_metadata_blocks) / double(total_metadata_blocks)
               : 0;
}

// Sample (kernel 6.1, Documentation/admin-guide/device-mapper/thin-provisioning.rst):
// "1 17/2048 12/1024 - rw discard_passdown queue_if_no_space - 1024"
//  <transaction id> <used meta>/<total meta> <used data>/<total data> <held root> <mode> ...
Result<ThinPoolStatus> parse_thin_pool_status(const std::string& params) {
    std::istringstream in(params);
    std::string txn, meta, data, held, mode;
    if (params == "Fail") return fail(EIO, "thin pool is in Fail mode: run thin_check/lvconvert --repair");
    if (!(in >> txn >> meta >> data >> held >> mode))
        return fail(EIO, fmt::format("unexpected thin-pool status \"{}\"", params));
    ThinPoolStatus s;
    if (sscanf(meta.c_str(), "%lu/%lu", &s.used_metadata_blocks, &s.total_metadata_blocks) != 2 ||
        sscanf(data.c_str(), "%lu/%lu", &s.used_data_blocks, &s.total_data_blocks) != 2)
        return fail(EIO, fmt::format("unexpected thin-pool status \"{}\"", params));
    s.out_of_data_space = mode == "out_of_data_space";
    s.read_only = mode == "ro";
    s.metadata_snap_held = held != "-";
    std::string word;
    while (in >> word) s.needs_check = s.needs_check || word == "needs_check";
    return s;
}

Result<ThinPoolStatus> dm_thin_pool_status(const std::string& name) {
    Result<Task> task = run_task(DM_DEVICE_STATUS, name);
    if (!task) return tl::unexpected(task.error());
    uint64_t start = 0, length = 0;
    char* type = nullptr;
    char* params = nullptr;
    dm_get_next_target(task->get(), nullptr, &start, &length, &type, &params);
    if (!type || std::string(type) != "thin-pool")
        return fail(EIO, fmt::format("\"{}\" is not a thin-pool device", name));
    return parse_thin_pool_status(params ? params : "");
}

}  // namespace bd
