"""A randomized kill -9 campaign: bdctl and bdfs change the same volumes at once.

Each trial runs one change through bdctl and one through a fresh bdfs mount,
concurrently, on one shared directory, each set to die after a random number of
its own LVM changes (BD_FAULT_KILL_AFTER; or not at all). A model of each change
says what it does to the directory (paths, ids, sizes, the first MiB of data,
snapshot origins). After the trial:
  - the directory is one the model allows: each change not applied or applied
    whole, in either order; never a state between;
  - a change that was not killed, and whose paths the other change did not
    touch, has applied;
  - `bdctl fsck` leaves the export clean and changes nothing visible;
  - no LV of bd's is left over;
  - the bystander volumes' data is unchanged.

BD_CAMPAIGN_TRIALS (default 8, as CI runs it; 40 with tests/run --full) and
BD_CAMPAIGN_SEED (default 9) choose the campaign; `tests/run --campaign N`
runs N trials.
"""
import hashlib
import os
import random
import subprocess
import uuid
from typing import NamedTuple, Optional

import pytest

from bdfs_mount import Mount
from conftest import BDCTL, destroy, make_export
from depth import sized

TRIALS = sized("BD_CAMPAIGN_TRIALS", 8, 40)
SEED = int(os.environ.get("BD_CAMPAIGN_SEED", "9"))
MiB = 1 << 20
ZERO = hashlib.sha256(bytes(MiB)).hexdigest()
BASE = "s/f0.img@base"          # a snapshot every trial may roll back to


class V(NamedTuple):
    id: Optional[str]           # None in the model: a volume made by the change
    size: int
    digest: str                 # sha256 of the first MiB
    origin: Optional[str]       # the origin's id, for snapshots


class Op(NamedTuple):
    what: str
    run: object                 # argv for bdctl, a shell command for bdfs
    hold: Optional[str]         # a path the bdfs side holds open during the trial
    steps: int                  # LVM changes it makes at most (kill points)
    touches: frozenset          # paths it reads or changes
    outcomes: object            # state -> the states it may leave ([] if it must fail)


def first_mib(device):
    with open(device, "rb") as f:
        return hashlib.sha256(f.read(MiB)).hexdigest()


def observe(bd):
    """The shared directory as bd shows it: one listing, then each device read
    (the listing names it), so a trial costs the same however many there are."""
    vols = bd.json("list", bd.name)["volumes"]
    ids = {v["path"]: v["id"] for v in vols}
    return {v["path"]: V(v["id"], v["size"], first_mib(v["device"]),
                         ids.get(v["origin"]) if v.get("origin") else None)
            for v in vols if v["path"].startswith("s/")}


def files(st):
    return sorted(p for p, v in st.items() if p.count("/") == 1 and v.origin is None)


def dirs(st):
    return sorted({p.rsplit("/", 1)[0] for p in st if p.count("/") == 2})


def has_snapshots(st, p):
    return any(v.origin == st[p].id for v in st.values())


def put(st, path, v):
    return {**st, path: v}


def moved(st, src, dst):
    out = {p: v for p, v in st.items() if p != src}
    out[dst] = st[src]
    return out


def moved_dir(st, d, e):
    return {(e + p[len(d):] if p.startswith(d + "/") else p): v for p, v in st.items()}


def under(st, d):
    return frozenset([d] + [p for p in st if p.startswith(d + "/")])


# ---- the changes ----------------------------------------------------------

def bdctl_ops(bd, st, n):
    fs, ds = files(st), dirs(st)
    base_origin = next(p for p, v in st.items() if v.id == st[BASE].origin)
    spec = lambda p: bd.spec("/" + p)
    a, b = fs[0], fs[-1]
    ops = [
        Op("create", ["create", spec(f"s/n{n}.img"), "4M"], None, 1,
           frozenset([f"s/n{n}.img"]),
           lambda s: [put(s, f"s/n{n}.img", V(None, 4 * MiB, ZERO, None))]),
        Op("clone", ["clone", spec(a), f"/s/cl{n}.img"], None, 1,
           frozenset([a, f"s/cl{n}.img"]),
           lambda s: [put(s, f"s/cl{n}.img", V(None, s[a].size, s[a].digest, None))]
           if a in s else []),
        Op("clone --full", ["clone", "--full", spec(a), f"/s/cl{n}.img"], None, 5,
           frozenset([a, f"s/cl{n}.img"]),
           lambda s: [put(s, f"s/cl{n}.img", V(None, s[a].size, s[a].digest, None))]
           if a in s else []),
        Op("snapshot", ["snapshot", spec(a), f"c{n}"], None, 1,
           frozenset([a, f"{a}@c{n}"]),
           lambda s: [put(s, f"{a}@c{n}", V(None, s[a].size, s[a].digest, s[a].id))]
           if a in s else []),
        Op("rename", ["rename", spec(b), f"/s/b{n}.img"], None, 3,
           frozenset([b, f"s/b{n}.img"]),
           lambda s: [moved(s, b, f"s/b{n}.img")] if b in s else []),
        Op("rollback", ["rollback", spec(base_origin), "base"], None, 4,
           frozenset([base_origin, BASE]),
           lambda s: [put(s, base_origin, V(s[base_origin].id, s[BASE].size, s[BASE].digest,
                                            None))] if base_origin in s else []),
    ]
    if ds:
        d = ds[0]
        ops.append(Op("rename dir", ["rename", spec(d), f"/s/d{n}"], None, 8,
                      under(st, d) | {f"s/d{n}"},
                      lambda s: [moved_dir(s, d, f"s/d{n}")] if any(
                          p.startswith(d + "/") for p in s) else []))
    if len(fs) > 4:
        victim = fs[1]
        ops.append(Op("delete", ["delete", spec(victim)], None, 1, frozenset([victim]),
                      lambda s: [] if victim not in s or has_snapshots(s, victim) else
                      [{p: v for p, v in s.items() if p != victim}]))
    return ops


def bdfs_ops(rng, st, n):
    fs, ds = files(st), dirs(st)
    src, dst = rng.sample(fs, 2)
    ops = [
        Op("ln", f"ln {src} s/l{n}.img", None, 1, frozenset([src, f"s/l{n}.img"]),
           lambda s: [put(s, f"s/l{n}.img", V(None, s[src].size, s[src].digest, None))]
           if src in s else []),
        Op("ln -s", f"cd s && ln -s {src[2:]} s{n}", None, 1, frozenset([src, f"s/s{n}"]),
           lambda s: [put(s, f"s/s{n}", V(None, s[src].size, s[src].digest, s[src].id))]
           if src in s else []),
        Op("truncate", f"truncate -s 16M {src}", None, 2, frozenset([src]),
           lambda s: [put(s, src, s[src]._replace(size=16 * MiB))] if src in s else []),
        Op("mv -f", f"mv -f {src} {dst}", None, 4, frozenset([src, dst]),
           lambda s: [] if src not in s or dst not in s or has_snapshots(s, dst) else
           [moved(s, src, dst)]),
        Op("mv -f over an open file", f"mv -f {src} {dst}", dst, 5, frozenset([src, dst]),
           lambda s: [] if src not in s or dst not in s or has_snapshots(s, dst) else
           [moved(s, src, dst)]),
        # cp is not atomic anywhere: it empties the target, then fills it.
        Op("cp", f"cp --sparse=never {src} {dst}", None, 6, frozenset([src, dst]),
           lambda s: [] if src not in s or dst not in s else
           [put(s, dst, V(s[dst].id, size, digest, s[dst].origin)) for size, digest in (
               (s[src].size, s[src].digest),                      # cloned (thin)
               (max(s[src].size, s[dst].size), s[src].digest),    # copied byte by byte
               (s[dst].size, ZERO))]),                            # emptied, not yet filled
    ]
    if ds:
        d = ds[-1]
        ops.append(Op("mv dir", f"mv {d} s/e{n}", None, 12, under(st, d) | {f"s/e{n}"},
                      lambda s: [moved_dir(s, d, f"s/e{n}")] if any(
                          p.startswith(d + "/") for p in s) else []))
    if len(fs) > 4:
        victim = fs[-2]
        for hold in (None, victim):
            ops.append(Op("rm" + (" of an open file" if hold else ""), f"rm -f {victim}", hold,
                          2, frozenset([victim]),
                          lambda s, victim=victim: [] if victim not in s or
                          has_snapshots(s, victim) else
                          [{p: v for p, v in s.items() if p != victim}]))
    return ops


# ---- what may be seen after a trial ---------------------------------------

def overlap(a, b):
    return any(x == y or x.startswith(y + "/") or y.startswith(x + "/") for x in a for y in b)


def allowed(s0, c, f, c_must, f_must):
    """Every state the two changes may leave: each off or on, in either order."""
    out = []
    for c_on in ([True] if c_must else [False, True]):
        for f_on in ([True] if f_must else [False, True]):
            for order in ((c, f), (f, c)):
                states = [s0]
                for op in order:
                    if not (c_on if op is c else f_on):
                        continue
                    states = [t for s in states for t in (op.outcomes(s) or [s])]
                out += states
    return out


def matches(model, seen, old_ids):
    if model.keys() != seen.keys():
        return False
    for p, m in model.items():
        v = seen[p]
        if m.id is None and v.id in old_ids or m.id is not None and v.id != m.id:
            return False
        if (m.size, m.digest, m.origin) != (v.size, v.digest, v.origin):
            return False
    return True


def diff(model, seen):
    keys = sorted(model.keys() | seen.keys())
    return [(p, model.get(p), seen.get(p)) for p in keys if model.get(p) != seen.get(p)]


# ---- the campaign ------------------------------------------------------------

@pytest.fixture(scope="module")
def camp(tmp_path_factory):
    b = make_export(tmp_path_factory.mktemp("pv"), "r" + uuid.uuid4().hex[:6],
                    pool_size="1536M", disk_size="3G")
    b.keep = {}
    for i in range(3):
        b.create(f"/keep/k{i}.img", "8M")
        b.keep[f"keep/k{i}.img"] = b.fill(f"/keep/k{i}.img", 2, f"keep{i}")
    for i in range(6):
        b.create(f"/s/f{i}.img", "8M")
        b.fill(f"/s/f{i}.img", 1, f"f{i}")
    for p in ("s/d/x.img", "s/d/y.img"):
        b.create("/" + p, "8M")
        b.fill("/" + p, 1, p)
    b.run("snapshot", b.spec("/s/f0.img"), "base")
    yield b
    destroy(b)


def tidy(bd, st, rng):
    """Between trials, outside them: keep the directory small (at most 18
    volumes, 10 of them plain files), and with files."""
    extra = [p for p, v in st.items() if v.origin and p != BASE]
    for p in extra[:max(0, len(st) - 18)]:
        bd.run("delete", bd.spec("/" + p))
    st = observe(bd)
    spare = [p for p in files(st) if st[p].id != st[BASE].origin and not has_snapshots(st, p)]
    for p in spare[:max(0, len(files(st)) - 10)]:
        bd.run("delete", bd.spec("/" + p))
    st = observe(bd)
    while len(files(st)) < 5:
        p = f"s/t{uuid.uuid4().hex[:6]}.img"
        bd.create("/" + p, "8M")
        bd.fill("/" + p, 1, p)
        st = observe(bd)
    return st


@pytest.mark.long
@pytest.mark.timeout(600 + TRIALS * 150)
def test_kill9_campaign(camp, tmp_path):
    rng = random.Random(SEED)
    bd = camp
    applied = {"bdctl": 0, "bdfs": 0}
    for n in range(TRIALS):
        s0 = tidy(bd, observe(bd), rng)
        c = rng.choice(bdctl_ops(bd, s0, n))
        f = rng.choice(bdfs_ops(rng, s0, n))
        c_kill = rng.choice([None] + list(range(1, c.steps + 1)))
        f_kill = rng.choice([None] + list(range(1, min(f.steps, 8) + 1)))
        what = (f"trial {n} (seed {SEED}): bdctl {' '.join(c.run)} [kill {c_kill}] | "
                f"bdfs {f.run} [hold {f.hold}, kill {f_kill}]")
        m = Mount(bd, tmp_path / f"m{n}",
                  env={"BD_FAULT_KILL_AFTER": str(f_kill)} if f_kill else None)
        fd = os.open(m.p(f.hold), os.O_RDWR) if f.hold else None
        env = dict(os.environ, **({"BD_FAULT_KILL_AFTER": str(c_kill)} if c_kill else {}))
        ctl = subprocess.Popen([BDCTL, *c.run], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        fs = subprocess.run(f.run, shell=True, cwd=m.path, capture_output=True, text=True)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        ctl.wait(timeout=900)
        ctl_err = ctl.stderr.read()
        m.unmount()
        seen = observe(bd)
        fsck = bd.json("fsck", bd.name)
        assert fsck["clean"], (what, fsck)
        assert observe(bd) == seen, (what, "fsck changed what was visible", diff(seen, observe(bd)))
        independent = not overlap(c.touches, f.touches)
        options = allowed(s0, c, f, c_kill is None and independent,
                          f_kill is None and independent)
        old_ids = {v.id for v in s0.values()}
        if not any(matches(o, seen, old_ids) for o in options):
            closest = min(options, key=lambda o: len(diff(o, seen)))
            raise AssertionError(f"{what}\nno allowed state; closest differs at "
                                 f"{diff(closest, seen)}\nbdctl: {ctl_err}\nbdfs: {fs.stderr}"
                                 f"\nbdfs log: {m.logtext()[-2000:]}")
        for side, op, other in (("bdctl", c, f), ("bdfs", f, c)):
            landed = op.outcomes(s0) + [t for s in other.outcomes(s0) for t in op.outcomes(s)]
            if any(matches(o, seen, old_ids) for o in landed):
                applied[side] += 1
        assert not [l for l in bd.lvs() if l.startswith("_bd_")], (what, bd.lvs())
        for p, digest in bd.keep.items():
            assert bd.checksum("/" + p, 2) == digest, (what, p)
        print(f"ok {what}")
    # A campaign where the changes never land tests nothing.
    assert applied["bdctl"] > 0 and applied["bdfs"] > 0, applied
    print(f"applied: {applied} of {TRIALS} trials")
