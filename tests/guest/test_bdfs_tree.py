"""The volume tree /dev/disk/by-bd/VG (docs/ARCHITECTURE.md, "The volume
tree") follows every change, from bdfs as from bdctl: after each step every
volume's link names its device and nothing else is there. A reboot (an empty
/dev) is repaired by `bdctl activate`, and a file someone put in the tree is
never removed or replaced."""
import os
import shutil

from bdfs_mount import Mount


def test_the_tree_follows_bdfs_and_bdctl(bd, tmp_path):
    tree = f"/dev/disk/by-bd/{bd.vg}"
    bd.create("/base.img", "8M")
    bd.assert_tree_true()
    assert os.path.realpath(f"{tree}/base.img") == os.path.realpath(bd.device("/base.img"))
    m = Mount(bd, tmp_path / "mnt")
    try:
        steps = [
            "truncate -s 4M new.img",           # create
            "ln base.img vm-clone.img",          # clone
            "mkdir vm && mv vm-clone.img vm/disk0.img",   # rename into a directory
            "truncate -s 4M other.img && mv other.img new.img",   # replace
            "cp base.img new.img",               # clone onto an existing file
            "mv vm vms",                         # directory move
            "rm new.img",                        # delete
        ]
        for cmd in steps:
            m.run(cmd)
            bd.assert_tree_true()
        assert sorted(bd.tree()) == ["base.img", "vms/disk0.img"]
        assert not os.path.exists(f"{tree}/vm")
        # bdctl on the same export while bdfs is mounted
        bd.run("snapshot", bd.spec("/base.img"), "s1")
        bd.run("rename", bd.spec("/vms/disk0.img"), "/top.img")
        bd.assert_tree_true()
        assert not os.path.exists(f"{tree}/vms")
    finally:
        m.unmount()
    # A reboot: /dev starts empty; activation (the libvirt pool's start) makes the tree.
    shutil.rmtree(tree)
    bd.run("activate", bd.name)
    bd.assert_tree_true()
    # Someone's file where a volume's link belongs stays, and is reported.
    os.unlink(f"{tree}/top.img")
    with open(f"{tree}/top.img", "w") as f:
        f.write("not bd's")
    r = bd.run("create", bd.spec("/other.img"), "4M")
    assert "top.img is not a link bd made" in r.stderr, r.stderr
    with open(f"{tree}/top.img") as f:
        assert f.read() == "not bd's"
    assert os.path.realpath(f"{tree}/other.img") == os.path.realpath(bd.device("/other.img"))
