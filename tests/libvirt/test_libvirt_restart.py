"""libvirtd restarted between operations still shows the same pool and volumes."""
import os

from bdlibvirt import STOCK_VIRSH, Virsh, lv_field, read_dev, sh, vol_path, vol_xml, write_dev


def test_restart_keeps_pool_and_volumes(daemon, pool, patched):
    pname, _ = pool
    stock = Virsh(STOCK_VIRSH)
    names = ["rs/a.img", "rs/b.img", "rs/a-snap"]
    patched("vol-create-as", pname, names[0], "16M")
    data = os.urandom(1 << 20)
    write_dev(vol_path(patched, pname, names[0]), data)
    patched("vol-clone", names[0], names[1], "--pool", pname)
    patched("vol-create-as", pname, names[2], "16M", "--backing-vol", names[0])
    patched("pool-refresh", pname)
    before = patched("vol-list", pname, "--details").stdout
    pool_before = patched("pool-dumpxml", pname).stdout
    old_pid = daemon.pid

    daemon.restart()
    assert daemon.pid != old_pid
    assert "running" in patched("pool-info", pname).stdout
    assert patched("vol-list", pname, "--details").stdout == before
    assert patched("pool-dumpxml", pname).stdout == pool_before
    assert vol_xml(patched, pname, names[2]).find("backingStore/path").text == \
        vol_path(patched, pname, names[0])
    assert read_dev(vol_path(stock, pname, names[1]), len(data)) == data

    # and the restarted daemon still drives the pool (its export is looked up again)
    patched("vol-create-as", pname, "rs/c.img", "8M")
    daemon.restart()
    assert "rs/c.img" in stock("vol-list", pname).stdout
    for n in ("rs/c.img", names[1]):
        stock("vol-delete", n, "--pool", pname)
    stock("vol-delete", names[0], "--pool", pname, "--delete-snapshots")
    assert "rs/" not in stock("vol-list", pname).stdout


def test_pool_start_activates_inactive_volumes(pool, patched):
    """After a host reboot some LVs may be inactive (e.g. an LVM snapshot made
    outside bd, which carries the activation-skip flag); pool-start activates
    the export's volumes, as a logical pool's start runs vgchange -aay."""
    pname, vg = pool
    patched("vol-create-as", pname, "act/a.img", "8M")
    dev = vol_path(patched, pname, "act/a.img")
    lv = os.path.basename(os.readlink(dev))         # dev is the volume's link to its LV
    sh("lvcreate", "-q", "-s", "-ky", "-n", "act-skip", f"{vg}/{lv}")   # made outside bd
    sh("lvchange", "-an", f"{vg}/{lv}")
    assert not os.path.exists(dev) and not os.path.exists(f"/dev/{vg}/act-skip")
    patched("pool-destroy", pname)
    patched("pool-start", pname)
    assert lv_field(dev, "lv_active") == "active" and os.path.exists(dev)
    assert os.path.exists(f"/dev/{vg}/act-skip")
    write_dev(dev, b"x" * 512)                     # usable, as a domain needs it
    patched("vol-delete", "act-skip", "--pool", pname)
    patched("vol-delete", "act/a.img", "--pool", pname)
