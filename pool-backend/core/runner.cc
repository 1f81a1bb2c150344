#include "runner.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <vector>

extern char** environ;

namespace bd {

namespace {

struct Pipe {
    int fd[2] = {-1, -1};
    ~Pipe() {
        for (int f : fd)
            if (f >= 0) close(f);
    }
};

// Drains both pipes until the child closes them, so neither can fill and block it.
void drain(int out_fd, int err_fd, CommandOutput& output) {
    std::array<pollfd, 2> fds = {{{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}}};
    std::array<std::string*, 2> sinks = {&output.out, &output.err};
    int open_fds = 2;
    char buf[65536];
    while (open_fds > 0) {
        if (poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        for (size_t i = 0; i < fds.size(); ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, size_t(n));
            } else if (n == 0 || errno != EINTR) {
                fds[i].fd = -1;
                --open_fds;
            }
        }
    }
}

std::string trim(std::string s) {
    size_t b = s.find_first_not_of(" \t\n");
    size_t e = s.find_last_not_of(" \t\n");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// LVM indents each message line; keep them joined on one line for error text.
std::string one_line(const std::string& text) {
    std::string out;
    size_t start = 0;
    while (start < text.size()) {
        size_t nl = text.find('\n', start);
        std::string line = trim(text.substr(start, nl - start));
        if (!line.empty()) out += (out.empty() ? "" : " ") + line;
        if (nl == std::string::npos) break;
        start = nl + 1;
    }
    return out;
}

// Fault injection for the crash tests: BD_FAULT_KILL_AFTER=N sends SIGKILL to
// this process right after its Nth successful change (reports and lvmconfig don't count),
// which is exactly what `kill -9` at that point would do.
void maybe_crash(const Argv& argv) {
    static std::atomic<int> remaining = [] {
        const char* n = getenv("BD_FAULT_KILL_AFTER");
        return n ? atoi(n) : 0;
    }();
    if (remaining <= 0 || argv[0] == "lvs" || argv[0] == "vgs" || argv[0] == "lvmconfig") return;
    if (--remaining == 0) raise(SIGKILL);
}

// The children's environment: ours as it was at the first command, plus
// LVM_SUPPRESS_FD_WARNINGS (LVM complains about every inherited descriptor
// unless told this is expected). Built once: setenv() in a process whose
// other threads read the environment (bdfs) is a data race.
char* const* child_environment() {
    static const std::vector<std::string> strings = [] {
        std::vector<std::string> out;
        for (char** e = environ; *e; ++e)
            if (std::string(*e).rfind("LVM_SUPPRESS_FD_WARNINGS=", 0) != 0) out.push_back(*e);
        out.push_back("LVM_SUPPRESS_FD_WARNINGS=1");
        return out;
    }();
    static const std::vector<char*> pointers = [] {
        std::vector<char*> out;
        for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
        out.push_back(nullptr);
        return out;
    }();
    return pointers.data();
}

// Children start with no signal blocked and default dispositions: libfuse's
// threads block some, and LVM must not inherit that.
struct SpawnAttr {
    posix_spawnattr_t attr;
    SpawnAttr() {
        posix_spawnattr_init(&attr);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    }
    ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
};

}  // namespace

std::string argv_to_string(const Argv& argv) {
    std::string out;
    for (const std::string& arg : argv) {
        bool plain = !arg.empty() && arg.find_first_of(" \t\n'\"\\$`*?!&;|<>()[]{}") ==
                                         std::string::npos;
        out += (out.empty() ? "" : " ") + (plain ? arg : "'" + arg + "'");
    }
    return out;
}

Result<CommandOutput> SystemRunner::run(const Argv& argv) {
    ++calls_;
    const char* trace = getenv("BD_TRACE");
    if (trace && *trace == '1') fmt::print(stderr, "bd: run: {}\n", argv_to_string(argv));
    Pipe out, err;
    if (pipe2(out.fd, O_CLOEXEC) < 0 || pipe2(err.fd, O_CLOEXEC) < 0)
        return fail(errno, fmt::format("pipe() for {}: {}", argv[0], strerror(errno)));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out.fd[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err.fd[1], 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    SpawnAttr attr;
    pid_t pid;
    int rc = posix_spawnp(&pid, args[0], &actions, &attr.attr, args.data(),
                          child_environment());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        return fail(rc, fmt::format("cannot run {}: {} (is lvm2 installed?)", argv[0],
                                    strerror(rc)));
    close(out.fd[1]);
    close(err.fd[1]);
    out.fd[1] = err.fd[1] = -1;
    CommandOutput output;
    drain(out.fd[0], err.fd[0], output);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        maybe_crash(argv);
        return output;
    }
    std::string why = WIFEXITED(status) ? fmt::format("exit {}", WEXITSTATUS(status))
                                        : fmt::format("signal {}", WTERMSIG(status));
    return fail(EIO, fmt::format("`{}` failed ({}): {}", argv_to_string(argv), why,
                                 one_line(output.err)));
}

}  // namespace bd
