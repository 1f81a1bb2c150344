// SystemRunner runs real processes: these tests spawn sh, as LVM would be.
#include "runner.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <csignal>
#include <cstdlib>

namespace bd {

// bdfs runs LVM from libfuse's threads, which block signals: LVM must not
// inherit that (it could not be interrupted), nor ever see a half-written
// environment.
TEST(SystemRunner, ChildrenStartWithNoSignalBlockedAndTheirOwnEnvironment) {
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
    SystemRunner runner;
    Result<CommandOutput> out =
        runner.run({"sh", "-c", "grep SigBlk /proc/self/status; echo env=$LVM_SUPPRESS_FD_WARNINGS"});
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_NE(out->out.find("SigBlk:\t0000000000000000"), std::string::npos) << out->out;
    EXPECT_NE(out->out.find("env=1"), std::string::npos) << out->out;
    EXPECT_EQ(getenv("LVM_SUPPRESS_FD_WARNINGS"), nullptr);  // ours untouched
}

TEST(SystemRunner, AFailureQuotesTheCommandAndItsWords) {
    SystemRunner runner;
    Result<CommandOutput> out = runner.run({"sh", "-c", "echo '  Volume group \"x\" not found' >&2; exit 5"});
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code, EIO);
    EXPECT_NE(out.error().message.find("(exit 5): Volume group \"x\" not found"), std::string::npos)
        << out.error().message;
}

}  // namespace bd

namespace bd {

// The lvm shell splits a line back into words (lvm_split): quotes only at a
// word's start, no escapes, '#' starts a comment.
TEST(LvmShellLine, QuotesWhatTheShellWouldSplitAndRefusesWhatItCannotCarry) {
    EXPECT_EQ(*lvm_shell_line({"lvs", "--config", "report/time_format=\"%s\"", "--", "vg"}),
              "lvs --config 'report/time_format=\"%s\"' -- vg");
    EXPECT_EQ(*lvm_shell_line({"lvchange", "--addtag", "bd.path=a#b", "--", "#x", ""}),
              "lvchange --addtag bd.path=a#b -- '#x' ''");
    EXPECT_EQ(*lvm_shell_line({"lvs", "it's"}), "lvs \"it's\"");
    EXPECT_FALSE(lvm_shell_line({"lvs", "'\""}));          // both quotes
    EXPECT_FALSE(lvm_shell_line({"lvs", "a\nlvremove"}));  // a second line
    EXPECT_FALSE(lvm_shell_line({"lvs", "a\tb"}));
    EXPECT_FALSE(lvm_shell_line({"lvs", "\xc3\xa9"}));
    EXPECT_FALSE(lvm_shell_line(Argv(64, "x")));           // lvm_split's limit
    EXPECT_TRUE(lvm_shell_line(Argv(63, "x")));
    // JSON comes from the shell's profile; LVM 2.03.31 refuses the option there.
    EXPECT_EQ(*lvm_shell_line({"vgs", "--reportformat", "json", "--units", "b", "--", "vg"}),
              "vgs --units b -- vg");
    EXPECT_FALSE(lvm_shell_line({"vgs", "--reportformat", "basic"}));
    EXPECT_FALSE(lvm_shell_line({"vgs", "--reportformat"}));
    EXPECT_EQ(*lvm_shell_line({"lvs", "--", "--reportformat", "json"}),
              "lvs -- --reportformat json");  // names stay names
}

// Documents as lvm 2.03.16 prints them with lvmdbusd's profile (captured in the guest).
TEST(LvmShellStatus, ReadsTheShellsStatusAndLastlogsErrors) {
    const char* ok = R"(  {
      "report": [ { "lv": [ {"lv_name":"pool", "lv_tags":""} ] } ]
      ,
      "log": [
          {"log_seq_num":"3", "log_type":"status", "log_context":"shell", "log_object_type":"cmd", "log_object_name":"lvs", "log_message":"success", "log_errno":"0", "log_ret_code":"1"}
      ]
  }
)";
    ASSERT_TRUE(lvm_shell_status(ok));
    EXPECT_TRUE(lvm_shell_status(ok)->success);
    const char* failed = R"(  {
      "log": [
          {"log_seq_num":"3", "log_type":"status", "log_context":"shell", "log_object_type":"cmd", "log_object_name":"lvcreate", "log_message":"failure", "log_errno":"0", "log_ret_code":"5"}
      ]
  }
)";
    ASSERT_TRUE(lvm_shell_status(failed));
    EXPECT_FALSE(lvm_shell_status(failed)->success);
    EXPECT_EQ(lvm_shell_status(failed)->code, 5);
    EXPECT_FALSE(lvm_shell_status(R"({"report": [{"lv": []}]})"));  // no profile: no status
    EXPECT_FALSE(lvm_shell_status("  {\n      \"log\": [\n"));
    const char* lastlog = R"(  {
      "log": [
          {"log_seq_num":"1", "log_type":"error", "log_context":"processing", "log_object_type":"vg", "log_object_name":"vg", "log_message":"Logical Volume \"a1\" already exists in volume group \"vg\"", "log_errno":"-1", "log_ret_code":"0"},
          {"log_seq_num":"2", "log_type":"status", "log_context":"processing", "log_message":"failure", "log_errno":"-1", "log_ret_code":"5"}
      ]
  }
)";
    EXPECT_EQ(lvm_shell_errors(lastlog), "Logical Volume \"a1\" already exists in volume group \"vg\"");
}

namespace {

// A stand-in for `lvm` that speaks the protocol for reports and dies on the
// first change, as a crashed LVM would: the runner must not run the change again.
const char* kDyingShell = R"(
status() { printf '  {\n      "log": [\n          {"log_type":"status", "log_context":"shell", "log_message":"%s", "log_ret_code":"%s"}\n      ]\n  }\n' "$1" "$2" >&3; }
while read -r cmd rest; do
  case $cmd in
    lvs) echo "$cmd" >> "$1"; status success 1 ;;
    vgs) echo "$cmd" >> "$1"; status failure 5 ;;
    lastlog) printf '  {\n      "log": [\n          {"log_type":"error", "log_message":"Volume group \\"x\\" not found"}\n      ]\n  }\n' >&3 ;;
    *) echo "$cmd" >> "$1"; exit 1 ;;
  esac
done
)";

std::string slurp(const std::string& path) {
    std::string out;
    if (FILE* f = fopen(path.c_str(), "r")) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
        fclose(f);
    }
    return out;
}

}  // namespace

TEST(LvmShellRunner, OneProcessForReadsAndChangesAndAChangeIsNeverRunTwice) {
    char dir[] = "/tmp/bd-shell-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir));
    std::string log = std::string(dir) + "/log";
    {
        LvmShellRunner runner({"sh", "-c", kDyingShell, "sh", log});
        ASSERT_TRUE(runner.run({"lvs", "--", "vg"}));
        ASSERT_TRUE(runner.run({"lvs", "--", "vg"}));
        Result<CommandOutput> failed = runner.run({"vgs", "--", "x"});
        ASSERT_FALSE(failed);
        EXPECT_NE(failed.error().message.find("`vgs -- x` failed (exit 5): Volume group \"x\" not found"),
                  std::string::npos)
            << failed.error().message;
        EXPECT_EQ(runner.processes(), 1);
        Result<CommandOutput> change = runner.run({"lvcreate", "-n", "a", "--", "vg"});
        ASSERT_FALSE(change);
        EXPECT_EQ(change.error().code, EIO);
        EXPECT_NE(change.error().message.find("whether it took effect is unknown"), std::string::npos)
            << change.error().message;
    }
    EXPECT_EQ(slurp(log), "lvs\nlvs\nvgs\nlvcreate\n");  // lvcreate once, in the shell
    unlink(log.c_str());
    rmdir(dir);
}

// A shell that does not answer with a status (no profile) is dropped at the
// first report, which then runs on its own; so does every later command.
TEST(LvmShellRunner, FallsBackToOneProcessPerCommandWhenTheShellDoesNotAnswer) {
    LvmShellRunner runner({"sh", "-c", "read -r line; echo '{\"report\": []}'; cat >/dev/null"});
    Result<CommandOutput> out = runner.run({"sh", "-c", "echo plain"});
    ASSERT_TRUE(out);
    EXPECT_EQ(out->out, "plain\n");
    // "lvs" is not installed here, which is the point: it was run as a process.
    Result<CommandOutput> lvs = runner.run({"lvs", "--version-that-does-not-exist"});
    EXPECT_EQ(runner.processes(), 3);
}

}  // namespace bd
