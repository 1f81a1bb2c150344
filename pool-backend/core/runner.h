// The one place that runs LVM. Builders (lvm_argv.h) make argv; Runner runs it
// without a shell and turns failures into errors quoting LVM's own message.
#pragma once

#include <string>

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

/// Shell-quoted rendering of argv for messages and traces.
std::string argv_to_string(const Argv& argv);

}  // namespace bd
