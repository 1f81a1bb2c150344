// The export lock: one flock per VG serializes changes made by bd processes.
#pragma once

#include <string>

#include "error.h"

namespace bd {

/// Holds an exclusive flock on /run/lock/bd/VG.lock until destroyed.
class ExportLock {
public:
    /// Takes the lock, waiting up to `timeout_s` seconds (EBUSY after that).
    static Result<ExportLock> acquire(const std::string& vg, int timeout_s = 60);
    ExportLock(ExportLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    ExportLock& operator=(ExportLock&&) = delete;
    ~ExportLock();

private:
    explicit ExportLock(int fd) : fd_(fd) {}
    int fd_ = -1;
};

}  // namespace bd
