"""Full copies (clone --full) from a point in time, outside the export lock,
refused up front when the pool cannot hold them (issue 9, item 6); a rollback
that a VM races (item 5)."""
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import BDCTL, destroy, make_export

MiB = 1 << 20
SRC_MIB = 192


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    # The guest keeps its PV files in RAM (tmpfs), so the sizes stay small.
    b = make_export(tmp_path_factory.mktemp("pv"), "c" + uuid.uuid4().hex[:6],
                    pool_size="768M", disk_size="2G")
    b.create("/src.img", f"{SRC_MIB}M")
    b.fill("/src.img", SRC_MIB, "source")
    yield b
    destroy(b)


def test_a_full_copy_is_of_one_point_in_time_and_holds_no_lock(big):
    before_tail = big.checksum_at("/src.img", (SRC_MIB - 1) * MiB, MiB)
    p = subprocess.Popen([BDCTL, "clone", "--full", big.spec("/src.img"), "/copy.img"],
                         stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    deadline = time.time() + 120
    while "copying" not in line and time.time() < deadline:
        line = p.stderr.readline()
    assert "copying" in line, line
    # The copy is stopped in the middle (SIGSTOP), so the race is certain.
    os.kill(p.pid, signal.SIGSTOP)
    try:
        assert p.poll() is None, "the copy ended before the test could race it"
        # The source changes at its end, which the copy has not reached...
        big.write("/src.img", b"written during the copy" * 1000, (SRC_MIB - 1) * MiB)
        # ...and another change goes through: the copy holds no lock.
        t0 = time.monotonic()
        big.create("/meanwhile.img", "4M")
        took = time.monotonic() - t0
        assert took < 20, f"create waited {took:.0f} s for the copy's lock"
        # Its target is taken, though: nobody else may make it meanwhile.
        r = big.run("create", big.spec("/copy.img"), "4M", rc=5)
        assert "operation in progress" in r.stderr, r.stderr
    finally:
        os.kill(p.pid, signal.SIGCONT)
    try:
        assert p.wait(timeout=900) == 0, p.stderr.read()
        assert big.checksum_at("/copy.img", (SRC_MIB - 1) * MiB, MiB) == before_tail
        assert big.checksum_at("/src.img", (SRC_MIB - 1) * MiB, MiB) != before_tail
        assert not [n for n in big.lvs() if n.startswith("_bd_")]
    finally:
        big.run("delete", big.spec("/copy.img"), rc=None)
        big.run("delete", big.spec("/meanwhile.img"), rc=None)


@pytest.mark.long
def test_a_full_copy_that_cannot_fit_is_refused_before_it_starts(big):
    big.create("/fat.img", "700M")
    big.fill("/fat.img", 480, "fat")            # 192 + 480 of 768 used: 480 will not fit
    used = big.json("export", "info", big.name)["allocated"]
    r = big.run("clone", "--full", big.spec("/fat.img"), "/fatcopy.img", rc=6)
    assert "needs" in r.stderr and "free" in r.stderr, r.stderr
    assert big.json("export", "info", big.name)["allocated"] == used
    assert not [n for n in big.lvs() if n.startswith("_bd_")]
    assert "fatcopy.img" not in big.paths()
    big.run("delete", big.spec("/fat.img"))


def test_a_volume_a_vm_opens_during_rollback_keeps_its_disk(bd, tmp_path):
    """Rollback checks that the volume is closed, then commits. A VM that opens
    it in between (made certain: LVM's command that would commit waits in a
    wrapper until the VM has opened the disk) must keep writing to the volume
    its path names; rollback then fails whole, and nothing is left over."""
    bd.create("/rb.img", "8M")
    bd.write("/rb.img", b"before")
    bd.json("snapshot", bd.spec("/rb.img"), "s1")
    bd.write("/rb.img", b"after!")
    lv = os.path.basename(bd.device("/rb.img"))
    wrap = tmp_path / "bin"
    wrap.mkdir()
    paused, go = tmp_path / "paused", tmp_path / "go"
    wait = (f'if [ ! -e {shlex.quote(str(paused))} ]; then touch {shlex.quote(str(paused))}\n'
            f'  while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done; fi\n')
    for tool in ("lvremove", "lvrename"):      # whichever commits, it waits once
        real = shutil.which(tool)
        assert real, f"no {tool} on PATH"
        (wrap / tool).write_text(
            "#!/bin/sh\n"
            f'case " $* " in *"/{lv} "*|*" {lv} "*)\n{wait};;\nesac\n'
            f'exec {shlex.quote(real)} "$@"\n')
        (wrap / tool).chmod(0o755)
    # bdctl sends its commands to one `lvm` shell, a line each: that shell
    # runs behind a proxy that holds back the committing line the same way.
    real = shutil.which("lvm")
    assert real, "no lvm on PATH"
    (wrap / "lvm").write_text(
        "#!/usr/bin/python3 -S\nimport os, subprocess, sys\n"
        f"real = {real!r}\n"
        "if sys.argv[1:]:\n    os.execv(real, [real] + sys.argv[1:])\n"
        "shell = subprocess.Popen([real], stdin=subprocess.PIPE, pass_fds=(3,))\n"
        "for line in iter(sys.stdin.buffer.readline, b''):\n"
        "    words = [w.strip(b\"'\\\"\") for w in line.split()]\n"
        "    if words[:1] in ([b'lvremove'], [b'lvrename']) and any(\n"
        f"            w == {lv.encode()!r} or w.endswith(b'/' + {lv.encode()!r}) for w in words):\n"
        f"        subprocess.run(['/bin/sh', '-c', {wait!r}])\n"
        "    shell.stdin.write(line)\n    shell.stdin.flush()\n"
        "shell.stdin.close()\nsys.exit(shell.wait())\n")
    (wrap / "lvm").chmod(0o755)
    env = dict(os.environ, PATH=f"{wrap}:{os.environ['PATH']}")
    p = subprocess.Popen([BDCTL, "rollback", bd.spec("/rb.img"), "s1"], env=env,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not paused.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert paused.exists(), "rollback never reached its commit"
        vm = os.open(f"/dev/{bd.vg}/{lv}", os.O_RDWR)    # the VM opens its disk
        try:
            go.touch()
            _, err = p.communicate(timeout=120)
            assert p.returncode != 0, err
            assert "is open" in err, err
            os.pwrite(vm, b"vm-write", 0)
            os.fsync(vm)
        finally:
            os.close(vm)
    finally:
        go.touch()
        if p.poll() is None:
            p.kill()
            p.wait()
    # The path still names the LV the VM wrote to; the snapshot stays.
    assert bd.checksum_at("/rb.img", 0, 8) == hashlib.sha256(b"vm-write").hexdigest()
    assert "rb.img@s1" in bd.paths()
    assert not [n for n in bd.lvs() if n.startswith("_bd_")]
    assert bd.json("fsck", bd.name)["clean"]
