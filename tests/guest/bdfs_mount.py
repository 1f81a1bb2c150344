"""A bdfs mount for the guest tests: `bdfs EXPORT DIR -f` as a child process.

Shared by test_bdfs.py and test_bdfs_libvirt.py.
"""
import os
import subprocess
import time

from conftest import BUILD, sh

BDFS = os.path.join(BUILD, "fuse-view", "bdfs")


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def alive(path):
    """A live mount at `path` (a killed daemon's mount fails stat with ENOTCONN)."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


class Mount:
    """A running `bdfs EXPORT DIR -f` and its mountpoint."""

    def __init__(self, bd, path, *opts, env=None):
        self.bd, self.path = bd, str(path)
        try:
            os.mkdir(self.path)
        except FileExistsError:  # also a dead mount, which stat() cannot see
            pass
        argv = [BDFS, bd.name, self.path, "-f"] + (["-o", ",".join(opts)] if opts else [])
        self.log = open(self.path + ".log", "w+")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {})))
        for _ in range(300):
            if alive(self.path):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"bdfs did not mount {self.path}:\n{self.logtext()}")

    def logtext(self):
        self.log.seek(0)
        return self.log.read()

    def p(self, *names):
        return os.path.join(self.path, *names)

    def run(self, cmd, rc=0, **kw):
        """Runs a shell command in the mount directory."""
        r = subprocess.run(cmd, shell=True, cwd=self.path, capture_output=True, text=True, **kw)
        if rc is not None and r.returncode != rc:
            raise AssertionError(f"{cmd!r}: exit {r.returncode}, wanted {rc}\n{r.stdout}\n"
                                 f"{r.stderr}\nbdfs log:\n{self.logtext()}")
        return r

    def unmount(self):
        if mounted(self.path):
            sh("fusermount3", "-u", self.path, check=False)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
