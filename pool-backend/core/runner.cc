#include "runner.h"

#include "fd.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <set>
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

// BD_TRACE=1: each line says how long after the process started it was
// printed, so a trace is also a profile (bench/README.md uses it).
bool tracing() {
    static const bool on = [] {
        const char* t = getenv("BD_TRACE");
        return t && *t == '1';
    }();
    return on;
}

double ms_since_start() {
    // Field 22 of /proc/self/stat: the start, in clock ticks since boot.
    static const double start_ms = [] {
        double ms = 0;
        if (FILE* f = fopen("/proc/self/stat", "r")) {
            char buf[1024];
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = 0;
            const char* p = strrchr(buf, ')');
            for (int field = 2; p && field < 22; ++field) p = strchr(p + 1, ' ');
            if (p) ms = strtod(p + 1, nullptr) * 1000.0 / double(sysconf(_SC_CLK_TCK));
        }
        return ms;
    }();
    timespec now;
    clock_gettime(CLOCK_BOOTTIME, &now);
    return double(now.tv_sec) * 1000.0 + double(now.tv_nsec) / 1e6 - start_ms;
}

}  // namespace

void trace(std::string_view what) {
    if (tracing()) fmt::print(stderr, "bd: +{:.0f} ms {}\n", ms_since_start(), what);
}

namespace {

// The Debian package that ships a program bd runs.
const char* package_of(const std::string& program) {
    if (program == "thin_delta" || program == "thin_ls" || program == "thin_dump")
        return "thin-provisioning-tools";
    if (program == "dmsetup") return "dmsetup";
    if (program == "qemu-img") return "qemu-utils";
    if (program == "lvmlockctl") return "lvm2-lockd";
    return "lvm2";
}

// Commands that only read: reports, settings, the pool's status and what is
// read from its metadata snapshot.
bool is_query(const Argv& argv) {
    const std::string& c = argv[0];
    return c == "lvs" || c == "vgs" || c == "lvmconfig" || c == "thin_delta" || c == "thin_ls" ||
           c == "thin_dump" ||
           (c == "dmsetup" && argv.size() > 1 && argv[1] == "status") ||
           (c == "lvmlockctl" && argv.size() > 1 && argv[1] == "--info");
}

// Fault injection for the crash tests: BD_FAULT_KILL_AFTER=N sends SIGKILL to
// this process right after its Nth successful change (queries don't count),
// which is exactly what `kill -9` at that point would do.
void maybe_crash(const Argv& argv) {
    static std::atomic<int> remaining = [] {
        const char* n = getenv("BD_FAULT_KILL_AFTER");
        return n ? atoi(n) : 0;
    }();
    if (remaining <= 0 || is_query(argv)) return;
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

// posix_spawnp with SpawnAttr; consumes `actions`. Returns 0 or an errno.
int spawn(pid_t& pid, const Argv& argv, posix_spawn_file_actions_t& actions,
          char* const* env) {
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    SpawnAttr attr;
    int rc = posix_spawnp(&pid, args[0], &actions, &attr.attr, args.data(), env);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

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
    trace(fmt::format("run: {}", argv_to_string(argv)));
    Pipe out, err;
    if (pipe2(out.fd, O_CLOEXEC) < 0 || pipe2(err.fd, O_CLOEXEC) < 0)
        return fail(errno, fmt::format("pipe() for {}: {}", argv[0], strerror(errno)));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out.fd[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err.fd[1], 2);
    pid_t pid;
    int rc = spawn(pid, argv, actions, child_environment());
    if (rc != 0)
        return fail(rc, fmt::format("cannot run {}: {} (is Debian's {} package installed?)",
                                    argv[0], strerror(rc), package_of(argv[0])));
    close(out.fd[1]);
    close(err.fd[1]);
    out.fd[1] = err.fd[1] = -1;
    CommandOutput output;
    drain(out.fd[0], err.fd[0], output);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    trace(fmt::format("{} done", argv[0]));
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

namespace bd {

namespace {

using nlohmann::json;

// lvm_split (tools/lvmcmdline.c) stops at MAX_ARGS (64) words, and the shell
// then refuses the line.
constexpr size_t kShellMaxWords = 63;

constexpr const char* kShellProfile = "/etc/lvm/profile/lvmdbusd.profile";

bool is_report(const std::string& cmd) { return cmd == "lvs" || cmd == "vgs" || cmd == "pvs"; }

bool is_change(const std::string& cmd) {
    static const std::set<std::string> kChanges = {"lvcreate", "lvchange", "lvremove",
                                                   "lvrename", "lvresize", "lvextend",
                                                   "vgchange"};
    return kChanges.count(cmd) > 0;
}

std::string text_of(const json& entry, const char* key) {
    auto it = entry.find(key);
    return it != entry.end() && it->is_string() ? it->get<std::string>() : "";
}

// A document is whole at its closing brace, which LVM prints alone at the
// top level's indent (every inner line is deeper); or once it parses.
// `lastlog --select` can print a trailing comma, so parsing alone is not enough.
bool whole(const std::string& text) {
    constexpr std::string_view kEnd = "\n  }\n";
    if (text.size() >= kEnd.size() && text.compare(text.size() - kEnd.size(), kEnd.size(), kEnd) == 0)
        return true;
    size_t last = text.find_last_not_of(" \t\n");
    return last != std::string::npos && text[last] == '}' && json::accept(text);
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Appends what `fd` holds now; false at its end or on an error.
bool read_available(int fd, std::string& sink) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            sink.append(buf, size_t(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
}

}  // namespace

std::optional<std::string> lvm_shell_line(const Argv& argv) {
    if (argv.empty() || argv.size() > kShellMaxWords) return std::nullopt;
    std::string line;
    bool options = true;  // before "--"
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& arg = argv[i];
        if (arg == "--") options = false;
        if (options && arg == "--reportformat") {
            if (i + 1 == argv.size() || argv[i + 1] != "json") return std::nullopt;
            ++i;
            continue;
        }
        for (unsigned char c : arg)
            if (c < 0x20 || c > 0x7e) return std::nullopt;
        std::string word;
        if (!arg.empty() && arg.find_first_of(" '\"") == std::string::npos && arg[0] != '#')
            word = arg;
        else if (arg.find('\'') == std::string::npos)
            word = "'" + arg + "'";
        else if (arg.find('"') == std::string::npos)
            word = "\"" + arg + "\"";
        else
            return std::nullopt;
        line += (line.empty() ? "" : " ") + word;
    }
    return line;
}

std::optional<ShellStatus> lvm_shell_status(std::string_view document) {
    json doc = json::parse(document, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("log") || !doc["log"].is_array())
        return std::nullopt;
    for (const json& entry : doc["log"]) {
        if (!entry.is_object() || text_of(entry, "log_type") != "status" ||
            text_of(entry, "log_context") != "shell")
            continue;
        ShellStatus st;
        st.success = text_of(entry, "log_message") == "success";
        st.code = atoi(text_of(entry, "log_ret_code").c_str());
        return st;
    }
    return std::nullopt;
}

std::string lvm_shell_errors(std::string_view document) {
    json doc = json::parse(document, nullptr, /*allow_exceptions=*/false);
    std::string out;
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("log") || !doc["log"].is_array())
        return out;
    for (const json& entry : doc["log"])
        if (entry.is_object() && text_of(entry, "log_type") == "error")
            out += (out.empty() ? "" : " ") + text_of(entry, "log_message");
    return out;
}

LvmShellRunner::~LvmShellRunner() { stop(); }

// The shell's environment: the children's (above), with its report on
// descriptor 3, lvmdbusd's command profile (JSON, a status per command), and
// a HOME where it cannot write its history.
bool LvmShellRunner::start() {
    if (unusable_) return false;
    // Without the profile in LVM's default profile_dir the shell would answer
    // without statuses: one wasted process. (Another profile_dir costs that.)
    if (shell_argv_ == Argv{"lvm"} && access(kShellProfile, R_OK) != 0) {
        unusable_ = true;
        return false;
    }
    int in[2];
    Pipe out, err, report;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0) return false;
    Fd ours(in[0]), theirs(in[1]);
    if (pipe2(out.fd, O_CLOEXEC) < 0 || pipe2(err.fd, O_CLOEXEC) < 0 ||
        pipe2(report.fd, O_CLOEXEC) < 0)
        return false;
    std::vector<char*> env;
    for (char* const* e = child_environment(); *e; ++e) {
        std::string_view v(*e);
        if (v.rfind("HOME=", 0) == 0 || v.rfind("LVM_REPORT_FD=", 0) == 0 ||
            v.rfind("LVM_COMMAND_PROFILE=", 0) == 0)
            continue;
        env.push_back(*e);
    }
    static char kReportFd[] = "LVM_REPORT_FD=3", kProfile[] = "LVM_COMMAND_PROFILE=lvmdbusd",
                kHome[] = "HOME=/nonexistent";
    env.insert(env.end(), {kReportFd, kProfile, kHome, nullptr});
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, theirs.get(), 0);
    posix_spawn_file_actions_adddup2(&actions, out.fd[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err.fd[1], 2);
    posix_spawn_file_actions_adddup2(&actions, report.fd[1], 3);
    pid_t pid;
    int rc = spawn(pid, shell_argv_, actions, env.data());
    if (rc != 0) {
        unusable_ = true;
        return false;
    }
    ++processes_;
    pid_ = pid;
    in_ = ours.release();
    out_ = out.fd[0];
    err_ = err.fd[0];
    report_ = report.fd[0];
    out.fd[0] = err.fd[0] = report.fd[0] = -1;
    for (int fd : {out_, err_, report_}) set_nonblocking(fd);
    trace(fmt::format("lvm shell started (pid {})", pid_));
    return true;
}

void LvmShellRunner::stop() {
    if (pid_ < 0) return;
    for (int* fd : {&in_, &out_, &err_, &report_}) {
        if (*fd >= 0) close(*fd);
        *fd = -1;
    }
    // With its input closed, the shell finishes what it runs and leaves.
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    trace("lvm shell ended");
    pid_ = -1;
}

// One command's document from the report descriptor. Anything on stdout, or
// the shell's end, means it does not speak the protocol (any more).
Result<std::string> LvmShellRunner::read_document(std::string& errors, Outcome& how) {
    std::string doc, stray;
    for (;;) {
        std::array<pollfd, 3> fds = {{{report_, POLLIN, 0}, {err_, POLLIN, 0}, {out_, POLLIN, 0}}};
        if (poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        bool open = read_available(report_, doc);
        if (!read_available(err_, errors)) open = false;
        // Until the shell has answered once, output there means the report
        // went to stdout (no LVM_REPORT_FD): no document will come.
        if (!read_available(out_, stray) || (!answered_ && !stray.empty())) open = false;
        if (whole(doc)) return doc;
        if (!open) break;
    }
    how = Outcome::kShellLost;
    return fail(EIO, fmt::format("the LVM shell (pid {}) stopped answering{}", pid_,
                                 stray.empty() ? "" : ": it wrote to its output"));
}

Result<CommandOutput> LvmShellRunner::in_shell(const Argv& argv, const std::string& line,
                                               Outcome& how) {
    std::string sent = line + "\n";
    for (size_t done = 0; done < sent.size();) {
        ssize_t n = send(in_, sent.data() + done, sent.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            how = Outcome::kShellLost;
            return fail(EIO, fmt::format("the LVM shell (pid {}) is gone", pid_));
        }
        done += size_t(n);
    }
    CommandOutput output;
    Result<std::string> doc = read_document(output.err, how);
    if (!doc) return tl::unexpected(doc.error());
    std::optional<ShellStatus> st = lvm_shell_status(*doc);
    if (!st) {
        how = Outcome::kShellLost;
        return fail(EIO, "the LVM shell's answer has no status (is lvmdbusd.profile missing?)");
    }
    answered_ = true;
    if (st->success) {
        output.out = std::move(*doc);
        return output;
    }
    // What went wrong, in LVM's words, as the command alone would print them.
    std::string words;
    Outcome after = Outcome::kDone;
    if (send(in_, "lastlog\n", 8, MSG_NOSIGNAL) == 8)
        if (Result<std::string> log = read_document(output.err, after); log)
            words = lvm_shell_errors(*log);
    // The command's outcome is known (it failed); a shell lost while asking
    // why is simply not used again.
    if (after == Outcome::kShellLost) {
        stop();
        unusable_ = true;
    }
    if (words.empty()) words = one_line(output.err);
    return fail(EIO, fmt::format("`{}` failed (exit {}): {}", argv_to_string(argv), st->code,
                                 words));
}

Result<CommandOutput> LvmShellRunner::run(const Argv& argv) {
    std::optional<std::string> line;
    if (!unusable_ && !argv.empty() && (is_report(argv[0]) || is_change(argv[0])))
        line = lvm_shell_line(argv);
    // Reports may start the shell; changes use it only once it has answered.
    bool report = line && is_report(argv[0]);
    if (!line || (pid_ < 0 && !(report && start()))) return spawn_.run(argv);
    trace(fmt::format("run: {} (lvm shell)", argv_to_string(argv)));
    Outcome how = Outcome::kDone;
    Result<CommandOutput> out = in_shell(argv, *line, how);
    if (how == Outcome::kShellLost) {
        std::string why = out ? "" : out.error().message;
        stop();
        unusable_ = true;
        // A report changed nothing: run it on its own. A change may or may not
        // have been committed, which only a new read can tell.
        if (report) return spawn_.run(argv);
        return fail(EIO, fmt::format("`{}`: {}; whether it took effect is unknown until the "
                                     "next read (bdctl fsck shows it)",
                                     argv_to_string(argv), why));
    }
    trace(fmt::format("{} {}", argv[0], out ? "done" : "failed"));
    if (out) maybe_crash(argv);
    return out;
}

}  // namespace bd
