#!/bin/sh
# Captures real LVM JSON reports for the parser tests. Run in the test guest:
#   tests/vm/run --disk 1G --out tests/data/lvm -- tests/data/lvm/capture.sh
set -eu
R='--reportformat json --units b --nosuffix --config report/time_format="%s"'
LVS='lv_name,lv_uuid,lv_attr,lv_size,lv_tags,pool_lv,origin,segtype,data_percent,metadata_percent,chunk_size,lv_active,lv_device_open,lv_time,lv_dm_path,lv_when_full,vg_name,vg_uuid,vg_tags,vg_extent_size,vg_free,vg_mda_free,vg_mda_size'
vgcreate -q vg0 /dev/vda >/dev/null
vgchange -q --addtag bd.export=bd --addtag bd.pool=pool --addtag bd.threshold=90 --addtag bd.v=1 vg0 >/dev/null
lvcreate -q --thinpool pool -L 256m --errorwhenfull y vg0 >/dev/null
lvcreate -q --type thin -V 64m --thinpool pool -n 'vm+disk0.img.1' --addtag bd.v=1 --addtag bd.path=vm/disk0.img --addtag bd.id=aaaa vg0 >/dev/null
dd if=/dev/urandom of=/dev/vg0/vm+disk0.img.1 bs=1M count=8 oflag=direct 2>/dev/null
lvcreate -q -s -prw -kn -ay -n clone1 --addtag bd.v=1 --addtag bd.path=clone --addtag bd.id=bbbb vg0/vm+disk0.img.1 >/dev/null
lvcreate -q -s -pr -kn -ay -n snap1 vg0/vm+disk0.img.1 >/dev/null
lvcreate -q --type thin -V 32m --thinpool pool -n foreign vg0 >/dev/null
lvchange -q -an vg0/foreign
lvcreate -q --yes --type linear -L 8m -n thick --addtag bd.v=1 --addtag 'bd.path=t!20hick' vg0 >/dev/null
eval lvs $R -o $LVS vg0 > /bdout/lvs.json
eval vgs $R -o vg_name,vg_uuid,vg_tags,vg_extent_size,vg_size,vg_free,vg_seqno > /bdout/vgs.json
echo "snapshot without --addtag inherits tags? -> [$(lvs --noheadings -o lv_tags vg0/snap1 | tr -d ' ')]"
echo "clone tags -> [$(lvs --noheadings -o lv_tags vg0/clone1 | tr -d ' ')]"
s1=$(vgs --noheadings -o vg_seqno vg0 | tr -d ' ')
lvchange -q --addtag x.a=1 --addtag x.b=2 --deltag bd.id=bbbb vg0/clone1
s2=$(vgs --noheadings -o vg_seqno vg0 | tr -d ' ')
echo "lvchange add+add+del seqno delta: $((s2 - s1))"
dmsetup status vg0-pool-tpool > /bdout/thin-pool.status
