"""Checks of the harness's pure parts (no root, no namespaces): `run --self-test`."""

import hashlib
import os
import tempfile

from . import methods as M
from . import topo as T


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok  {what}")


def main():
    mib32 = 32 << 20
    t2 = T.plan_2dc("x")
    b, s = t2.bound_seconds(mib32)
    check(abs(b - mib32 * 8 / 20e6) < 1e-9, f"2dc bound is F / WAN rate ({b:.3f} s for 32 MiB)")
    check(sorted(s) == [f"b{i}" for i in range(1, 9)], "2dc bound's cut is DC b")
    b, s = t2.bound_seconds(mib32, hosts=[f"a{i}" for i in range(1, 9)])
    check(abs(b - mib32 * 8 / 50e6) < 1e-9, "DC a alone is bounded by one host NIC")
    tf = T.plan_flat("x")
    b, _ = tf.bound_seconds(mib32)
    check(abs(b - mib32 * 8 / 50e6) < 1e-9, f"flat bound is F / NIC rate ({b:.3f} s)")
    check(len(t2.hosts) == 16 and len(tf.hosts) == 16, "16 receivers in both topologies")
    check(len({h.ip for h in t2.hosts} | {t2.build.ip}) == 17, "2dc addresses are distinct")
    check(all(h.ip.startswith("10.") for h in t2.hosts + tf.hosts), "only 10/8 addresses")
    # every link end is loaded by calibration: each flow's path covers it (checked by counting
    # flows per host NIC direction: one out and one in per receiver)
    for t in (t2, tf):
        outs = [src for src, _, _ in t.cal_flows]
        ins = [dst for _, dst, _ in t.cal_flows]
        check(all(outs.count(h.ns) == 1 and ins.count(h.ns) == 1 for h in t.hosts),
              f"{t.kind} calibration: every host sends one flow and receives one")
    try:
        import tomllib
        topo = tomllib.loads(t2.topology_toml())
        racks = {r["name"]: r["cidrs"] for dc in topo["dc"] for r in dc["rack"]}
        check(racks == {"a-build": ["10.1.200.0/24"], "a1": ["10.1.1.0/24"], "a2": ["10.1.2.0/24"],
                        "b1": ["10.2.1.0/24"], "b2": ["10.2.2.0/24"]}, "topology TOML parses to the racks")
    except ImportError:
        print("skip topology TOML parse (python < 3.11 has no tomllib)")
    check(M.bencode({"b": 1, "a": [b"x", "yz"]}) == b"d1:al1:x2:yze1:bi1ee", "bencode sorts keys")
    check(M.piece_size(32 << 20) == 256 << 10 and M.piece_size(8 << 20) == 64 << 10
          and M.piece_size(1 << 30) == 1 << 20, "piece size keeps >= 128 pieces")
    with tempfile.TemporaryDirectory() as d:
        blob = os.path.join(d, "b")
        with open(blob, "wb") as f:
            f.write(os.urandom(300 << 10))
        ih = M.make_torrent(blob, "b", "http://10.1.200.1:6969/announce", os.path.join(d, "t"), piece=1 << 16)
        raw = open(os.path.join(d, "t"), "rb").read()
        info = raw[raw.index(b"4:info") + 6:-1]
        check(hashlib.sha1(info).hexdigest() == ih, "info-hash is the SHA-1 of the bencoded info")
        check(info.count(b"6:pieces100:") == 1, "5 pieces of 64 KiB for 300 KiB")
    print("self-test passed")
