"""The libvirt backend's own failure paths (issue 9, item 11): a pool whose
export went away, an answer bdctl could not give whole, a delete racing a job
on one of its snapshots, a refresh that opens no volume, and bdctl found where
libvirt's build put it."""
import ctypes
import os
import re
import signal
import struct
import subprocess
import time
import uuid

from bdlibvirt import (BDCTL, INSTALLED_BDCTL, LOGFILE, LoopPV, bdctl_json, install_bdctl,
                       pool_xml, sh, vol_path, write_dev)

MiB = 1 << 20


def log_since(offset):
    with open(LOGFILE, errors="replace") as f:
        f.seek(offset)
        return f.read()


def log_size():
    return os.path.getsize(LOGFILE) if os.path.exists(LOGFILE) else 0


def test_a_running_pool_whose_export_went_away_is_inactive_after_a_restart(daemon, patched,
                                                                            tmp_path):
    name = "gone" + uuid.uuid4().hex[:4]
    vg = "vg_" + name
    pv = LoopPV(str(tmp_path), "1G")
    try:
        (tmp_path / "pool.xml").write_text(pool_xml(name, vg, pv.dev))
        patched("pool-define", tmp_path / "pool.xml")
        patched("pool-build", name)
        patched("pool-start", name)
        sh(BDCTL, "export", "delete", name, "--force")   # behind libvirt's back
        before = log_size()
        daemon.restart()
        assert "inactive" in patched("pool-info", name).stdout
        errors = [l for l in log_since(before).splitlines() if " error : " in l and name in l]
        assert not errors, errors                         # not an error: just inactive
        r = patched("pool-start", name, rc=1)
        assert f"no bd export on '{vg}'" in r.stderr, r.stderr
    finally:
        patched("pool-destroy", name, rc=None)
        patched("pool-undefine", name, rc=None)
        pv.remove(vg)


def test_a_volume_whose_answer_cannot_be_read_is_not_left_behind(pool, patched, name, tmp_path):
    pname, vg = pool
    src = name.replace("disk.img", "src.img")
    patched("vol-create-as", pname, src, "8M")
    before = sorted(v["path"] for v in bdctl_json("list", pname)["volumes"])
    # A bdctl that does its work but answers garbage (a crash while printing,
    # say): no JSON at all, or JSON without the volume's fields.
    for answer, message in (("not json", "printed no JSON object"),
                            ('{"answer": "partial"}', "bdctl answer lacks")):
        wrapper, calls = tmp_path / "bdctl-garbling", tmp_path / "calls"
        wrapper.write_text(f"#!/bin/sh\necho \"$@\" >>{calls}\n"
                           f"{BDCTL} \"$@\" >/dev/null\necho '{answer}'\n")
        wrapper.chmod(0o755)
        install_bdctl(str(wrapper))
        try:
            for args, verb in ((["vol-create-as", pname, name, "8M"], "create"),
                               (["vol-clone", src, name, "--pool", pname], "clone")):
                calls.write_text("")
                r = patched(*args, rc=1)
                assert message in r.stderr, (args, r.stderr)
                # bdctl did make the volume, and the backend deleted it again
                words = [line.split() for line in calls.read_text().splitlines()]
                assert any(verb in w for w in words), (verb, words)
                assert any("delete" in w for w in words), (verb, words)
        finally:
            install_bdctl()
        assert sorted(v["path"] for v in bdctl_json("list", pname)["volumes"]) == before, answer
    patched("pool-refresh", pname)
    assert name not in patched("vol-list", pname).stdout


def test_delete_with_snapshots_waits_for_jobs_on_them(pool, patched, name, tmp_path):
    pname, _ = pool
    snap = name.replace("disk.img", "snap")
    copy = name.replace("disk.img", "copy.qcow2")
    patched("vol-create-as", pname, name, "1G")
    write_dev(vol_path(patched, pname, name), os.urandom(64 * MiB))
    patched("vol-create-as", pname, snap, "1G", "--backing-vol", name,
            "--backing-vol-format", "raw")
    # A copy of the snapshot into another format: qemu-img runs with the pool
    # unlocked and the snapshot marked in use by the driver. It is stopped
    # mid-way (SIGSTOP), so the race is certain. The driver's own accounting
    # must refuse the delete: bdctl's open check is a last line, and an
    # error from it would mean libvirt went ahead with a job in flight.
    (tmp_path / "copy.xml").write_text(
        f"<volume><name>{copy}</name><capacity unit='bytes'>{1 << 30}</capacity>"
        "<target><format type='qcow2'/></target></volume>")
    job = subprocess.Popen([patched.binary, "-c", patched.uri, "vol-create-from", pname,
                            str(tmp_path / "copy.xml"), snap, "--inputpool", pname],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    source = vol_path(patched, pname, snap)
    stopped = []
    try:
        deadline = time.monotonic() + 120
        while not stopped and job.poll() is None and time.monotonic() < deadline:
            r = subprocess.run(["pgrep", "-f", f"qemu-img convert .*{re.escape(source)}"],
                               stdout=subprocess.PIPE, text=True)
            for pid in map(int, r.stdout.split()):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            time.sleep(0.02)
        assert stopped, "the copy ended before the test could race it"
        r = patched("vol-delete", name, "--pool", pname, "--delete-snapshots", rc=1)
        assert f"snapshot '{snap}' of bd volume '{name}' is still in use" in r.stderr, r.stderr
        assert snap in patched("vol-list", pname).stdout
        resume(stopped)
        _, err = job.communicate(timeout=900)
        assert job.returncode == 0, err
    finally:
        resume(stopped)
        if job.poll() is None:
            job.kill()
            job.wait()
        patched("vol-delete", copy, "--pool", pname, rc=None)
    patched("vol-delete", name, "--pool", pname, "--delete-snapshots")
    assert snap not in patched("vol-list", pname).stdout


def resume(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

IN_OPEN = 0x20


def opens_seen(fd):
    """IN_OPEN events queued on an inotify descriptor."""
    n = 0
    while True:
        try:
            buf = os.read(fd, 4096)
        except BlockingIOError:
            return n
        at = 0
        while at < len(buf):
            _, mask, _, size = struct.unpack_from("iIII", buf, at)
            n += bool(mask & IN_OPEN)
            at += 16 + size


def test_refresh_opens_no_volume(pool, patched, name):
    """A refresh that opens every LV makes a delete racing it fail with EBUSY
    (LVM refuses to remove an open LV): it reads what bd recorded instead."""
    pname, _ = pool
    patched("vol-create-as", pname, name, "8M")
    # Both nodes of the LV: /dev/mapper/VG-LV (libdevmapper's, where
    # /dev/VG/LV leads without udev) and the kernel's /dev/dm-N.
    dev = os.path.realpath(vol_path(patched, pname, name))
    rdev = os.stat(dev).st_rdev
    sysfs = os.readlink(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")
    nodes = {dev, "/dev/" + os.path.basename(sysfs)}
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        for node in nodes:
            assert libc.inotify_add_watch(fd, node.encode(), IN_OPEN) >= 0, \
                (node, os.strerror(ctypes.get_errno()))
        for node in nodes:
            os.close(os.open(node, os.O_RDONLY))
        assert opens_seen(fd) == len(nodes), nodes       # the watches see opens
        patched("pool-refresh", pname)
        assert name in patched("vol-list", pname).stdout
        assert opens_seen(fd) == 0
    finally:
        os.close(fd)
    patched("vol-delete", name, "--pool", pname)


def test_the_daemon_finds_bdctl_where_its_build_put_it(daemon, pool, patched):
    pname, _ = pool
    with open(f"/proc/{daemon.pid}/environ", "rb") as f:
        env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    assert b"virsh-ext" not in env[b"PATH"]                 # no bdctl in the daemon's PATH
    assert os.path.realpath(INSTALLED_BDCTL) == os.path.realpath(BDCTL)
    patched("pool-refresh", pname)
