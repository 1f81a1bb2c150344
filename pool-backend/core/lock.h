// bd's runtime directory and its locks.
//
// Locks and hints live in one root-owned 0700 directory (/run/bd, or $BD_RUN_DIR),
// whose owner and mode are checked before each use, and every file in it is
// opened relative to it without following symlinks: no other user can plant a
// lock, hold one, or make root create or truncate a file elsewhere.
#pragma once

#include <string>

#include "error.h"

namespace bd {

/// Holds an exclusive flock on RUNDIR/KEY.lock until destroyed.
class ExportLock {
public:
    /// The lock of one VG, by uuid: every change to an export holds it. `what`
    /// names the export in messages. Waits up to `timeout_s` seconds (EBUSY after).
    static Result<ExportLock> for_vg(const std::string& vg_uuid, const std::string& what,
                                     int timeout_s = 60);
    /// The lock of one export by its key: "vg-UUID" (an export of a whole VG),
    /// "pool-UUID" (a pool export of a shared VG, by its thin pool's uuid).
    static Result<ExportLock> for_key(const std::string& key, const std::string& what,
                                      int timeout_s = 60);
    /// The host's lock on the set of exports: creating one holds it.
    static Result<ExportLock> for_exports(int timeout_s = 60);
    /// Held around `lvmlockctl --info`: lvmlockctl binds one fixed socket
    /// name to read lvmlockd's answer, so two at once on a host fail.
    static Result<ExportLock> for_lock_query(int timeout_s = 30);
    /// A guard that holds nothing: the caller already holds the lock.
    static ExportLock already_held() { return ExportLock(-1); }
    ExportLock(ExportLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    ExportLock& operator=(ExportLock&& other) noexcept;
    ~ExportLock();
    /// The locked file's descriptor (-1 for already_held): a process that
    /// shares it holds the lock too, as the metadata snapshot's guardian does.
    int fd() const { return fd_; }

private:
    explicit ExportLock(int fd) : fd_(fd) {}
    static Result<ExportLock> acquire(const std::string& key, const std::string& what,
                                      int timeout_s);
    int fd_ = -1;
};

/// The runtime directory's path: $BD_RUN_DIR, or /run/bd.
std::string run_dir_path();

/// The lock key (ExportLock::for_key) last seen serving export `name` ("" if
/// none is known). A hint only: a caller locks it, reads, and checks the
/// export is still there.
std::string read_export_hint(const std::string& name);

/// Records the lock key serving export `name` for read_export_hint.
void write_export_hint(const std::string& name, const std::string& key);

/// A marker file RUNDIR/NAME (NAME: letters, digits, '-', '.'): what a killed
/// process was doing, for the next holder of the lock to finish.
Result<void> set_marker(const std::string& name);
bool has_marker(const std::string& name);
void clear_marker(const std::string& name);

}  // namespace bd
