"""Host side of the several-hosts tests: test guests (tests/vm/run) that share
one raw disk image, each running tests/cluster/agent, which carries out the
shell commands this module sends it through the guest's /bdout.

A Guest is one boot of one host: `Guest(...).boot()`, then `sh()` (wait for
the result) or `spawn()` (a Pending to `wait()` for later), then `power_off()`
(SIGKILL of its QEMU: a host that loses power) or `shutdown()`.
"""
import json
import os
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class GuestDied(AssertionError):
    pass


class Result:
    def __init__(self, cmd, res):
        self.cmd = cmd
        self.rc = res["rc"]
        self.out = res["out"]
        self.err = res["err"]
        self.secs = res["secs"]

    def __repr__(self):
        return (f"$ {self.cmd}\n(exit {self.rc}, {self.secs} s)\n"
                f"--- stdout\n{self.out}--- stderr\n{self.err}")


class Pending:
    def __init__(self, guest, n, cmd):
        self.guest, self.n, self.cmd = guest, n, cmd

    def wait(self, check=True, timeout=900):
        path = self.guest._path(f"res.{self.n}")
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            self.guest._alive_or_raise(f"waiting for: {self.cmd}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.guest.name}: no answer in {timeout} s to: {self.cmd}")
            time.sleep(0.1)
        with open(path) as f:
            r = Result(self.cmd, json.load(f))
        if check and r.rc != 0:
            raise AssertionError(f"{self.guest.name}: command failed:\n{r!r}")
        return r


class Guest:
    """One boot of one host of the cluster. `workdir` holds its --out; the log
    of its console goes to workdir/NAME.log."""

    def __init__(self, name, workdir, shared_disk, mem=1536, smp=1, timeout=3600, env=None):
        self.name = name
        self.out = os.path.join(workdir, name)
        os.makedirs(self.out)
        self.agent_dir = os.path.join(self.out, "agent")
        self.pidfile = os.path.join(workdir, f"{name}.qemu.pid")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.shared_disk = shared_disk
        self.mem, self.smp, self.timeout = mem, smp, timeout
        self.env = env
        self.proc = None
        self.n = 0

    def _path(self, leaf):
        return os.path.join(self.agent_dir, leaf)

    def boot(self, wait=600):
        args = [os.path.join(ROOT, "tests", "vm", "run"), "--shared-disk", self.shared_disk,
                "--pidfile", self.pidfile, "--out", self.out, "--mem", str(self.mem),
                "--smp", str(self.smp), "--timeout", str(self.timeout)]
        root = os.environ.get("BD_CLUSTER_ROOT")
        if root:
            args += ["--root", root]
        args += ["--", "/usr/bin/python3", os.path.join(ROOT, "tests", "cluster", "agent"),
                 "/bdout/agent"]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + wait
        while not os.path.exists(self._path("ready")):
            self._alive_or_raise("booting")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: the agent did not start in {wait} s")
            time.sleep(0.2)
        return self

    def _alive_or_raise(self, doing):
        if self.proc is not None and self.proc.poll() is not None:
            self.log.flush()
            with open(self.log_path, errors="replace") as f:
                tail = f.read()[-4000:]
            raise GuestDied(f"{self.name}: the guest ended (status {self.proc.returncode}) "
                            f"while {doing}; its output:\n{tail}")

    def spawn(self, cmd, timeout=600):
        n = self.n
        self.n += 1
        path = self._path(f"cmd.{n}")
        with open(path + ".tmp", "w") as f:
            json.dump({"sh": cmd, "timeout": timeout}, f)
        os.rename(path + ".tmp", path)
        return Pending(self, n, cmd)

    def sh(self, cmd, check=True, timeout=600):
        return self.spawn(cmd, timeout).wait(check=check, timeout=timeout + 60)

    def power_off(self):
        """SIGKILL of the guest's QEMU: whatever the guest had not handed to
        QEMU is lost, as when a host loses power."""
        with open(self.pidfile) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.log.close()

    def shutdown(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            path = self._path(f"cmd.{self.n}")
            with open(path + ".tmp", "w") as f:
                json.dump({"exit": 0}, f)
            os.rename(path + ".tmp", path)
            self.proc.wait(timeout=120)
        except Exception:
            # The agent waits for its commands: stop QEMU itself (tests/vm/run,
            # killed, would leave it running in its own process group).
            try:
                with open(self.pidfile) as f:
                    os.kill(int(f.read().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
            self.proc.kill()
            self.proc.wait()
        self.log.close()
