"""Small I/O helpers shared by the guest test suites (tests/guest, tests/libvirt)
and the benches: write and read at an offset, of a device or a file."""
import os


def write_at(path, data, offset=0):
    """Writes `data` at `offset` and fsyncs it."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_at(path, n, offset=0):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def fds_on(pid, same):
    """The fds of process `pid` whose stat() satisfies `same(st)` (e.g. QEMU's disk)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if same(st):
            out.append(fd)
    return out
