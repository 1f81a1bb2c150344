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
