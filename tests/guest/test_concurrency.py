"""Two bdctl processes racing on the same names: the export lock serializes them."""
import subprocess

from conftest import BDCTL


def race(*argvs):
    procs = [subprocess.Popen([BDCTL, *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for a in argvs]
    return [(p.wait(), p.stderr.read()) for p in procs]


def test_racing_creates_of_one_name(bd):
    for round_ in range(3):
        results = race(*[["create", bd.spec(f"/r{round_}.img"), "8M"]] * 2)
        codes = sorted(rc for rc, _ in results)
        assert codes == [0, 4], results
        assert any("already exists" in err for _, err in results)
    assert bd.paths() == ["r0.img", "r1.img", "r2.img"]


def test_racing_clones_to_one_name(bd):
    bd.create("/src.img", "8M")
    digest = bd.fill("/src.img", 4, "race")
    results = race(["clone", bd.spec("/src.img"), "/dst.img"],
                   ["clone", bd.spec("/src.img"), "/dst.img"],
                   ["clone", "--full", bd.spec("/src.img"), "/dst.img"])
    assert sorted(rc for rc, _ in results) == [0, 4, 4], results
    assert bd.checksum("/dst.img", 4) == digest
    assert not any(n.startswith("_bd_") for n in bd.lvs())


def test_racing_create_and_rename_onto_it(bd):
    bd.create("/a.img", "8M")
    results = race(["create", bd.spec("/b.img"), "8M"], ["rename", bd.spec("/a.img"), "/b.img"])
    assert sorted(rc for rc, _ in results) == [0, 4], results
    assert "b.img" in bd.paths()
