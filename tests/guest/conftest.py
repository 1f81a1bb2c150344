"""Fixtures for the guest tests: real LVM on loop devices inside the test VM.

These tests refuse to run outside the guest that tests/vm/run boots: without
device-mapper they would fail anyway, and a skip would hide that.
"""
import hashlib
import json
import os
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
BUILD = os.environ.get("BD_BUILD_DIR", os.path.join(ROOT, "build"))
BDCTL = os.path.join(BUILD, "virsh-ext", "bdctl")


def pytest_sessionstart(session):
    if not os.path.exists("/dev/mapper/control"):
        raise pytest.UsageError(
            "no device-mapper here: run the guest tests through tests/run "
            "(or tests/vm/run -- /usr/bin/python3 -m pytest tests/guest)")
    if not os.access(BDCTL, os.X_OK):
        raise pytest.UsageError(f"{BDCTL} is not built: run `meson setup build && ninja -C build`")


def pytest_collection_modifyitems(items):
    """Tests marked `long` go first (the sort is stable, the same on every
    worker), so that none of them starts late and keeps one xdist worker busy
    after the other has run out. xdist 3.1 first hands each worker a run of
    consecutive tests: the long ones start together on the first worker, and
    the second takes the short ones meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def sh(*argv, check=True, env=None, input=None):
    """Runs a command, returns CompletedProcess with text output."""
    full_env = dict(os.environ, **(env or {}))
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=full_env,
                       input=input)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def lv_name(path):
    """bd's LV name for a volume path (pool-backend/core/names.cc, lv_name_for_path)."""
    h = 0xcbf29ce484222325
    for c in path.encode():
        h = ((h ^ c) * 0x100000001b3) & 0xffffffffffffffff
    slug = ""
    for c in path.encode()[:48]:
        ch = chr(c)
        slug += "+" if ch == "/" else ch if (ch.isascii() and (ch.isalnum() or ch in "+.-")) else "-"
    if not slug or not slug[0].isalnum() or slug.startswith(("snapshot", "pvmove")):
        slug = "v" + slug
    return f"{slug}.{h & 0xffffffffffff:012x}"


class Bd:
    """One export on its own loop-device VG."""

    def __init__(self, name, vg, loop, img=None):
        self.name, self.vg, self.loop, self.img = name, vg, loop, img

    def run(self, *args, rc=0, env=None):
        r = sh(BDCTL, *args, check=False, env=env)
        if rc is not None and r.returncode != rc:
            raise AssertionError(f"bdctl {' '.join(map(str, args))}: exit {r.returncode}, "
                                 f"wanted {rc}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def json(self, *args, rc=0, env=None):
        return json.loads(self.run("--json", *args, rc=rc, env=env).stdout)

    def spec(self, path):
        return f"{self.name}:{path}"

    def create(self, path, size="16M", *extra):
        return self.json("create", self.spec(path), size, *extra)

    def info(self, path):
        return self.json("info", self.spec(path))

    def paths(self):
        return sorted(v["path"] for v in self.json("list", self.name)["volumes"])

    def ids(self):
        """Each volume's id by path, from one listing."""
        return {v["path"]: v["id"] for v in self.json("list", self.name)["volumes"]}

    def device(self, path):
        return self.info(path)["device"]

    def write(self, path, data, offset=0):
        with open(self.device(path), "r+b") as f:
            f.seek(offset)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def fill(self, path, mib, seed):
        """Writes `mib` MiB of deterministic pseudo-random data, returns its sha256."""
        block = hashlib.sha256(seed.encode()).digest() * (1 << 15)  # 1 MiB
        with open(self.device(path), "r+b") as f:
            for i in range(mib):
                f.write(block[i % 32:] + block[:i % 32])
            os.fsync(f.fileno())
        return self.checksum(path, mib)

    def checksum(self, path, mib):
        h = hashlib.sha256()
        with open(self.device(path), "rb") as f:
            h.update(f.read(mib << 20))
        return h.hexdigest()

    def checksum_at(self, path, offset, size):
        with open(self.device(path), "rb") as f:
            f.seek(offset)
            return hashlib.sha256(f.read(size)).hexdigest()

    def tree(self):
        """The volume tree /dev/disk/by-bd/VG as {path: link target}; anything
        in it that is not a link shows as {path: None}, an empty directory as
        {path/: None}."""
        root, found = f"/dev/disk/by-bd/{self.vg}", {}
        for d, dirs, files in os.walk(root):
            for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
                p = os.path.join(d, n)
                found[os.path.relpath(p, root)] = os.readlink(p) if os.path.islink(p) else None
            if d != root and not dirs and not files:
                found[os.path.relpath(d, root) + "/"] = None
        return found

    def assert_tree_true(self):
        """Every volume's link names its device, and nothing else is there."""
        want = {v["path"]: v["device"] for v in self.json("list", self.name)["volumes"]}
        assert self.tree() == want
        for v in self.json("list", self.name)["volumes"]:
            assert v["link"] == f"/dev/disk/by-bd/{self.vg}/{v['path']}", v

    def lvs(self):
        out = sh("lvs", "--noheadings", "-o", "lv_name", self.vg).stdout
        return sorted(line.strip() for line in out.splitlines() if line.strip())


def make_export(tmp_root, name, pool_size="512M", disk_size="2G", extra=()):
    vg = f"vg_{name}_{uuid.uuid4().hex[:6]}"
    img = os.path.join(tmp_root, f"{vg}.img")
    sh("truncate", "-s", disk_size, img)
    loop = sh("losetup", "--find", "--show", img).stdout.strip()
    bd = Bd(name, vg, loop, img)
    bd.run("export", "create", name, "--vg", vg, "--pv", loop, "--size", pool_size, *extra)
    return bd


def destroy(bd):
    sh("vgremove", "-f", "-y", bd.vg, check=False)
    sh("losetup", "-d", bd.loop, check=False)
    # The guest's /tmp is a tmpfs of half its memory: give the backing file's
    # pages back, or later exports fail with write errors on their loop device.
    if bd.img and os.path.exists(bd.img):
        os.unlink(bd.img)


@pytest.fixture
def bd(tmp_path_factory, request):
    """A fresh export for one test."""
    name = "t" + uuid.uuid4().hex[:6]
    b = make_export(tmp_path_factory.mktemp("pv"), name)
    yield b
    destroy(b)


@pytest.fixture(scope="module")
def shared_bd(tmp_path_factory):
    """One export shared by a module's tests (each uses its own paths)."""
    name = "m" + uuid.uuid4().hex[:6]
    b = make_export(tmp_path_factory.mktemp("pv"), name)
    yield b
    destroy(b)
