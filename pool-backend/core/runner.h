// The one place that runs LVM. Builders (lvm_argv.h) make argv; Runner runs it
// without a shell and turns failures into errors quoting LVM's own message.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "error.h"
#include "lvm_argv.h"

namespace bd {

/// What a finished command printed.
struct CommandOutput {
    std::string out;  ///< stdout
    std::string err;  ///< stderr (warnings survive even on success)
};

/// Runs argv. The seam tests replace; production uses SystemRunner.
class Runner {
public:
    virtual ~Runner() = default;
    /// Runs argv to completion; a non-zero exit becomes EIO naming the command.
    virtual Result<CommandOutput> run(const Argv& argv) = 0;
    /// Whether the commands reach the host's real LVM and device-mapper (false
    /// for the unit tests' fake: no process may then act on the host's devices).
    virtual bool real() const { return true; }
    /// From now on, every LVM command runs in a process of its own (a VG
    /// several hosts share: see LvmShellRunner). Nothing for other runners.
    virtual void one_process_per_command() {}
};

/// fork/exec via posix_spawnp with captured output. BD_TRACE=1 prints each argv.
class SystemRunner : public Runner {
public:
    Result<CommandOutput> run(const Argv& argv) override;
    /// Number of commands run so far (benchmarks and tests count LVM calls).
    int calls() const { return calls_; }

private:
    int calls_ = 0;
};

/// Runs LVM's commands in one `lvm` shell process, as lvmdbusd does, and
/// everything else as SystemRunner does. Under TCG, starting an LVM process
/// costs about as much as a small VG's read and write together (bench/README.md):
/// a change's read and its commit then take one process, not two. The shell
/// starts with the first report (lvs, vgs), which checks that it answers;
/// until then, and if it ever fails to, every command runs in its own process.
/// It uses the command profile Debian's lvm2 ships for lvmdbusd (JSON, and each
/// command's status in a log report on LVM_REPORT_FD).
class LvmShellRunner : public Runner {
public:
    /// `shell`: the program and arguments that start the shell (tests give a stand-in).
    explicit LvmShellRunner(Argv shell = {"lvm"}) : shell_argv_(std::move(shell)) {}
    ~LvmShellRunner() override;
    LvmShellRunner(const LvmShellRunner&) = delete;
    LvmShellRunner& operator=(const LvmShellRunner&) = delete;
    Result<CommandOutput> run(const Argv& argv) override;
    /// Processes started so far (the shell counts once).
    int processes() const { return processes_ + spawn_.calls(); }

private:
    enum class Outcome { kDone, kShellLost };
    Result<CommandOutput> in_shell(const Argv& argv, const std::string& line, Outcome& how);
    Result<std::string> read_document(std::string& errors, Outcome& how);
    bool start();
    void stop();

public:
    /// Ends the shell; later commands run one process each. In a VG several
    /// hosts share (lvmlockd), two hosts' bdctl runs interleaving their
    /// commands lost an LV another host had just made when each ran in one
    /// lvm shell (LVM 2.03.16, tests/cluster); LVM's own commands, one process
    /// each, take the VG's lock and read it afresh.
    void one_process_per_command() override {
        stop();
        unusable_ = true;
    }

private:

    Argv shell_argv_;
    SystemRunner spawn_;
    pid_t pid_ = -1;
    int in_ = -1, out_ = -1, err_ = -1, report_ = -1;
    bool unusable_ = false;
    bool answered_ = false;  ///< the shell has answered with a status once
    int processes_ = 0;
};

/// The line the lvm shell splits back into argv, or nothing when argv cannot
/// be written as one (a quote of each kind, a non-printable byte, too many words).
/// `--reportformat json` is left out: the shell's lvmdbusd profile already
/// reports in JSON, and LVM 2.03.31 refuses the option in the shell (2.03.16
/// took it). Any other --reportformat keeps the command out of the shell.
std::optional<std::string> lvm_shell_line(const Argv& argv);

/// A command's status in the shell's log report: {success, LVM's return code}.
struct ShellStatus {
    bool success = false;
    int code = 0;
};
/// The status entry of one command's JSON document, if it has one.
std::optional<ShellStatus> lvm_shell_status(std::string_view document);
/// The error messages of `lastlog`'s document, joined on one line.
std::string lvm_shell_errors(std::string_view document);

/// With BD_TRACE=1, prints "bd: +N ms WHAT" to stderr (N: since the process started).
void trace(std::string_view what);

/// Shell-quoted rendering of argv for messages and traces.
std::string argv_to_string(const Argv& argv);

}  // namespace bd
