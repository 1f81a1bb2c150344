// The export lock: one flock per export serializes changes made by bd processes.
#pragma once

#include <string>

#include "error.h"

namespace bd {

/// Holds an exclusive flock on /run/lock/bd/EXPORT.lock until destroyed.
class ExportLock {
public:
    /// Takes the lock, waiting up to `timeout_s` seconds (EBUSY after that).
    static Result<ExportLock> acquire(const std::string& export_name, int timeout_s = 60);
    /// A guard that holds nothing: the caller already holds the lock.
    static ExportLock already_held() { return ExportLock(-1); }
    ExportLock(ExportLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    ExportLock& operator=(ExportLock&&) = delete;
    ~ExportLock();

private:
    explicit ExportLock(int fd) : fd_(fd) {}
    int fd_ = -1;
};

}  // namespace bd
