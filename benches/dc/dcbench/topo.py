"""Emulated topologies: network namespaces, veth links shaped with tbf, rack bridges,
DC routers joined by a WAN veth with a userspace TUN delay line, and the physical
cut bound of a topology.

Everything lives in namespaces named ``<prefix>-*``; only 10.0.0.0/8 addresses inside
those namespaces are used. Nothing touches the root namespace's interfaces.
"""

import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
DELAYLINE = os.path.join(os.path.dirname(HERE), "delayline.py")

NIC_MBIT = 50
UPLINK_MBIT = 100
WAN_MBIT = 20
WAN_DELAY_MS = 10


def sh(*args, check=True, capture=False, input=None):
    """Runs a command (list of args); returns stdout when capture is set."""
    r = subprocess.run(list(args), check=False, capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(args)}\n{r.stderr.strip()}")
    return r.stdout if capture else r.returncode


@dataclass
class Host:
    """An emulated machine: one namespace with one NIC (eth0)."""

    name: str  # "a1", "h3", "build"
    ns: str
    ip: str
    dc: str  # "a", "b" or "flat"
    rack: str  # "a1" (rack name), "a-build", "r0"


@dataclass
class Link:
    """One veth pair; each end's egress is shaped to rate_mbit (so both directions are)."""

    name: str
    kind: str  # nic | uplink | wan
    ns_a: str
    if_a: str
    ns_b: str
    if_b: str
    rate_mbit: int
    node_a: str  # graph node names for the bound computation
    node_b: str


@dataclass
class Topology:
    kind: str  # "2dc" or "flat"
    prefix: str
    hosts: list = field(default_factory=list)  # receivers, in display order
    build: Host = None
    links: list = field(default_factory=list)
    namespaces: list = field(default_factory=list)
    racks: dict = field(default_factory=dict)  # rack name -> (dc, cidr, [host names])
    wan_ifs: dict = field(default_factory=dict)  # dc -> (ns, ifname) of that DC's WAN end
    uplink_ifs: dict = field(default_factory=dict)  # rack -> (ns, ifname) rack side of uplink
    cal_flows: list = field(default_factory=list)  # (src ns, dst ns, dst ip) calibration flows
    delay_ns: list = field(default_factory=list)  # router namespaces that carry a delay line
    created: bool = False

    def host(self, name):
        if name == "build":
            return self.build
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def dcs(self):
        return sorted({h.dc for h in self.hosts})

    # ---------------------------------------------------------------- bound
    def bound_seconds(self, size_bytes, hosts=None):
        """Physical cut bound (reference §0.3): max over host sets S without the seeder of
        max(F / C_in(S), |S| F / (C_in(S) + sum of uploads in S)), C_in by max-flow.
        Candidate sets: every single host and every union of racks (restricted to `hosts`,
        the receivers that must finish)."""
        wanted = set(hosts) if hosts else {h.name for h in self.hosts}
        racks = [sorted(set(m) & wanted) for (_, _, m) in self.racks.values()]
        racks = [r for r in racks if r]
        cands = [[h] for h in sorted(wanted)]
        for k in range(1, len(racks) + 1):
            for combo in itertools.combinations(racks, k):
                cands.append(sorted(set().union(*combo)))
        f_bits = size_bytes * 8
        best, best_set = 0.0, None
        for s in cands:
            cin = self._maxflow_into(set(s))
            up = len(s) * NIC_MBIT * 1e6
            t = max(f_bits / cin, len(s) * f_bits / (cin + up))
            if t > best:
                best, best_set = t, s
        return best, best_set

    def _maxflow_into(self, s):
        cap = {}

        def add(u, v, c):
            cap.setdefault(u, {}).setdefault(v, 0)
            cap.setdefault(v, {}).setdefault(u, 0)
            cap[u][v] += c

        for l in self.links:
            add(l.node_a, l.node_b, l.rate_mbit * 1e6)
            add(l.node_b, l.node_a, l.rate_mbit * 1e6)
        inf = 1e15
        all_hosts = [h.name for h in self.hosts] + ["build"]
        for h in all_hosts:
            if h in s:
                add("host:" + h, "SINK", inf)
            else:
                add("SRC", "host:" + h, inf)
        flow = 0.0
        while True:  # Edmonds-Karp
            parent = {"SRC": None}
            queue = ["SRC"]
            while queue and "SINK" not in parent:
                u = queue.pop(0)
                for v, c in cap[u].items():
                    if c > 1e-6 and v not in parent:
                        parent[v] = u
                        queue.append(v)
            if "SINK" not in parent:
                return flow
            v, aug = "SINK", inf
            while parent[v] is not None:
                aug = min(aug, cap[parent[v]][v])
                v = parent[v]
            v = "SINK"
            while parent[v] is not None:
                cap[parent[v]][v] -= aug
                cap[v][parent[v]] += aug
                v = parent[v]
            flow += aug

    # ---------------------------------------------------------------- blobpin topology
    def topology_toml(self):
        """The topology file in the format of `blobpin tracker --topology` (issue 4)."""
        out = []
        if os.environ.get("BPDC_OVERLAY"):
            out += ["[overlay]"] + os.environ["BPDC_OVERLAY"].split(";") + [""]
        by_dc = {}
        for rname, (dc, cidr, _) in self.racks.items():
            by_dc.setdefault(dc, []).append((rname, cidr))
        if self.build.rack not in self.racks:
            by_dc.setdefault(self.build.dc, []).append((self.build.rack, self.build_cidr))
        for dc in sorted(by_dc):
            out.append("[[dc]]")
            out.append(f'name = "{dc}"')
            for rname, cidr in sorted(by_dc[dc]):
                out.append("[[dc.rack]]")
                out.append(f'name = "{rname}"')
                out.append(f'cidrs = ["{cidr}"]')
            out.append("")
        return "\n".join(out)

    def describe(self):
        return {
            "kind": self.kind,
            "hosts": [h.__dict__ for h in self.hosts],
            "build": self.build.__dict__,
            "links": [{"name": l.name, "kind": l.kind, "rate_mbit": l.rate_mbit} for l in self.links],
        }


def _ns(prefix, name):
    return f"{prefix}-{name}"


def plan_2dc(prefix):
    """2 DCs x 2 racks x 4 hosts; the build host hangs off DC a's router on its own NIC."""
    t = Topology(kind="2dc", prefix=prefix)
    for d, dc in enumerate(["a", "b"], start=1):
        rt = _ns(prefix, f"rt{dc}")
        t.namespaces.append(rt)
        t.delay_ns.append(rt)
        for k in (1, 2):
            rname = f"{dc}{k}"
            rns = _ns(prefix, f"rk{rname}")
            t.namespaces.append(rns)
            cidr = f"10.{d}.{k}.0/24"
            members = []
            for i in range(1, 5):
                hname = f"{dc}{(k - 1) * 4 + i}"
                h = Host(hname, _ns(prefix, hname), f"10.{d}.{k}.{i}", dc, rname)
                t.hosts.append(h)
                t.namespaces.append(h.ns)
                members.append(hname)
                t.links.append(Link(f"nic-{hname}", "nic", h.ns, "eth0", rns, f"h-{hname}", NIC_MBIT,
                                    "host:" + hname, "rack:" + rname))
            t.racks[rname] = (dc, cidr, members)
            t.links.append(Link(f"uplink-{rname}", "uplink", rns, "up0", rt, f"r-{rname}", UPLINK_MBIT,
                                "rack:" + rname, "router:" + dc))
            t.uplink_ifs[rname] = (rns, "up0")
    bns = _ns(prefix, "build")
    t.namespaces.insert(0, bns)
    t.build = Host("build", bns, "10.1.200.1", "a", "a-build")
    t.build_cidr = "10.1.200.0/24"
    t.links.append(Link("nic-build", "nic", bns, "eth0", _ns(prefix, "rta"), "bld", NIC_MBIT,
                        "host:build", "router:a"))
    t.links.append(Link("wan", "wan", _ns(prefix, "rta"), "wan0", _ns(prefix, "rtb"), "wan0", WAN_MBIT,
                        "router:a", "router:b"))
    t.wan_ifs = {"a": (_ns(prefix, "rta"), "wan0"), "b": (_ns(prefix, "rtb"), "wan0")}
    # Calibration: per DC, 2 cross-rack flows each way (fills both uplinks both ways) and
    # 2 intra-rack flows per rack (fills the remaining NIC directions); the build host sends
    # to and receives from router b over the WAN, and tops its NIC up with router a.
    for d, dc in enumerate(["a", "b"], start=1):
        def H(k, i):
            return t.host(f"{dc}{(k - 1) * 4 + i}")
        pairs = [(H(1, 1), H(2, 1)), (H(1, 2), H(2, 2)), (H(2, 3), H(1, 3)), (H(2, 4), H(1, 4)),
                 (H(1, 3), H(1, 1)), (H(1, 4), H(1, 2)), (H(2, 1), H(2, 3)), (H(2, 2), H(2, 4))]
        for src, dst in pairs:
            t.cal_flows.append((src.ns, dst.ns, dst.ip))
    rta, rtb = _ns(prefix, "rta"), _ns(prefix, "rtb")
    t.cal_flows += [(bns, rtb, "10.0.0.2"), (rtb, bns, t.build.ip),
                    (bns, rta, "10.1.200.254"), (rta, bns, t.build.ip)]
    return t


def plan_flat(prefix):
    """16 hosts and the build host on one switch (one bridge)."""
    t = Topology(kind="flat", prefix=prefix)
    rns = _ns(prefix, "rk0")
    t.namespaces.append(rns)
    members = []
    for i in range(1, 17):
        hname = f"h{i}"
        h = Host(hname, _ns(prefix, hname), f"10.9.0.{i}", "flat", "r0")
        t.hosts.append(h)
        t.namespaces.append(h.ns)
        members.append(hname)
        t.links.append(Link(f"nic-{hname}", "nic", h.ns, "eth0", rns, f"h-{hname}", NIC_MBIT,
                            "host:" + hname, "rack:r0"))
    t.racks["r0"] = ("flat", "10.9.0.0/24", members)
    bns = _ns(prefix, "build")
    t.namespaces.insert(0, bns)
    t.build = Host("build", bns, "10.9.0.100", "flat", "r0")
    t.build_cidr = "10.9.0.0/24"
    t.links.append(Link("nic-build", "nic", bns, "eth0", rns, "h-build", NIC_MBIT, "host:build", "rack:r0"))
    for i in range(16):
        src, dst = t.hosts[i], t.hosts[(i + 1) % 16]
        t.cal_flows.append((src.ns, dst.ns, dst.ip))
    t.cal_flows += [(bns, rns, "10.9.0.254"), (rns, bns, t.build.ip)]
    return t


def _tbf(ns, dev, rate_mbit):
    """Shapes the egress of `dev` to `rate_mbit`.

    Default (`BPDC_SHAPER=htb`): an htb class at the rate with two children: small TCP
    packets (pure ACKs, IP total length < 128) in a priority class, everything else in a
    bfifo of ~50 ms. With a single FIFO (`BPDC_SHAPER=tbf`), a link saturated in both
    directions queues the ACKs of one direction behind ~50-90 ms of the other's data, and
    TCP reached only 49-79% of the shaped rate in the calibration on a quiet machine (ACK
    starvation); this kernel has no fq_codel/sfq/prio to cure it, but has htb and u32.
    """
    burst = os.environ.get("BPDC_BURST", "256kb")
    tc = ("ip", "netns", "exec", ns, "tc")
    if os.environ.get("BPDC_SHAPER", "htb") == "tbf":
        # The burst must exceed a 64 KiB GSO packet plus headers: smaller, and tbf segments
        # every GSO packet into MTU-sized ones (measured: calibration CPU 100% with 64kb, ~20%
        # with 256kb on this 2-core machine). Queue: ~50 ms at the rate on top of the burst.
        sh(*tc, "qdisc", "replace", "dev", dev, "root", "tbf",
           "rate", f"{rate_mbit}mbit", "burst", burst, "latency", "50ms")
        return
    sh(*tc, "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "20")
    sh(*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
       "rate", f"{rate_mbit}mbit", "ceil", f"{rate_mbit}mbit", "burst", burst, "cburst", burst,
       "quantum", "100000")
    ack = max(1, rate_mbit // 10)
    sh(*tc, "class", "add", "dev", dev, "parent", "1:1", "classid", "1:10", "htb",
       "rate", f"{ack}mbit", "ceil", f"{rate_mbit}mbit", "prio", "0", "quantum", "100000")
    sh(*tc, "class", "add", "dev", dev, "parent", "1:1", "classid", "1:20", "htb",
       "rate", f"{rate_mbit - ack}mbit", "ceil", f"{rate_mbit}mbit", "prio", "1", "quantum", "100000")
    limit = rate_mbit * 1_000_000 // 8 * 50 // 1000 + 256 * 1024
    sh(*tc, "qdisc", "add", "dev", dev, "parent", "1:20", "handle", "20:", "bfifo", "limit", str(limit))
    sh(*tc, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
       "match", "ip", "protocol", "6", "0xff", "match", "u16", "0x0000", "0xff80", "at", "2",
       "flowid", "1:10")


def _sysctl(ns, key, val):
    sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={val}")


def create(t, procs, log=print):
    """Creates namespaces, links, addresses, routes, shaping and the WAN delay lines."""
    for ns in t.namespaces:
        sh("ip", "netns", "add", ns)
        t.created = True
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    for l in t.links:
        sh("ip", "link", "add", l.if_a, "netns", l.ns_a, "type", "veth", "peer", "name", l.if_b, "netns", l.ns_b)
        for ns, dev in ((l.ns_a, l.if_a), (l.ns_b, l.if_b)):
            sh("ip", "-n", ns, "link", "set", dev, "txqueuelen", "1000")
            _tbf(ns, dev, l.rate_mbit)
    # racks: a bridge with the rack gateway address
    for rname, (dc, cidr, members) in t.racks.items():
        rns = _ns(t.prefix, f"rk{rname}") if t.kind == "2dc" else _ns(t.prefix, "rk0")
        sh("ip", "-n", rns, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
        gw = cidr.rsplit(".", 1)[0] + ".254"
        sh("ip", "-n", rns, "addr", "add", gw + "/24", "dev", "br0")
        sh("ip", "-n", rns, "link", "set", "br0", "up")
        ports = [f"h-{m}" for m in members] + (["h-build"] if t.kind == "flat" else [])
        for p in ports:
            sh("ip", "-n", rns, "link", "set", p, "master", "br0")
            sh("ip", "-n", rns, "link", "set", p, "up")
        _sysctl(rns, "net.ipv4.ip_forward", 1)
        for m in members:
            h = t.host(m)
            sh("ip", "-n", h.ns, "addr", "add", h.ip + "/24", "dev", "eth0")
            sh("ip", "-n", h.ns, "link", "set", "eth0", "up")
            sh("ip", "-n", h.ns, "route", "add", "default", "via", gw)
    if t.kind == "flat":
        b = t.build
        sh("ip", "-n", b.ns, "addr", "add", b.ip + "/24", "dev", "eth0")
        sh("ip", "-n", b.ns, "link", "set", "eth0", "up")
        return
    # 2dc: uplinks, routers, build host, WAN
    rta, rtb = _ns(t.prefix, "rta"), _ns(t.prefix, "rtb")
    for d, dc in enumerate(["a", "b"], start=1):
        rt = _ns(t.prefix, f"rt{dc}")
        _sysctl(rt, "net.ipv4.ip_forward", 1)
        for k in (1, 2):
            rname = f"{dc}{k}"
            rns = _ns(t.prefix, f"rk{rname}")
            sh("ip", "-n", rns, "addr", "add", f"10.{d}.{100 + k}.1/30", "dev", "up0")
            sh("ip", "-n", rns, "link", "set", "up0", "up")
            sh("ip", "-n", rns, "route", "add", "default", "via", f"10.{d}.{100 + k}.2")
            sh("ip", "-n", rt, "addr", "add", f"10.{d}.{100 + k}.2/30", "dev", f"r-{rname}")
            sh("ip", "-n", rt, "link", "set", f"r-{rname}", "up")
            sh("ip", "-n", rt, "route", "add", f"10.{d}.{k}.0/24", "via", f"10.{d}.{100 + k}.1")
    b = t.build
    sh("ip", "-n", b.ns, "addr", "add", b.ip + "/24", "dev", "eth0")
    sh("ip", "-n", b.ns, "link", "set", "eth0", "up")
    sh("ip", "-n", b.ns, "route", "add", "default", "via", "10.1.200.254")
    sh("ip", "-n", rta, "addr", "add", "10.1.200.254/24", "dev", "bld")
    sh("ip", "-n", rta, "link", "set", "bld", "up")
    sh("ip", "-n", rta, "addr", "add", "10.0.0.1/30", "dev", "wan0")
    sh("ip", "-n", rtb, "addr", "add", "10.0.0.2/30", "dev", "wan0")
    for rt in (rta, rtb):
        sh("ip", "-n", rt, "link", "set", "wan0", "up")
    sh("ip", "-n", rta, "route", "add", "10.2.0.0/16", "via", "10.0.0.2", "dev", "wan0")
    sh("ip", "-n", rtb, "route", "add", "10.1.0.0/16", "via", "10.0.0.1", "dev", "wan0")
    # WAN latency: traffic that arrives on a LAN side of a router and leaves for the other DC
    # goes through tun0, where a userspace delay line holds each packet WAN_DELAY_MS, then
    # re-enters the router from tun0 and takes the main table out of wan0.
    for rt, remote, lan_ifs in ((rta, "10.2.0.0/16", ["r-a1", "r-a2", "bld"]), (rtb, "10.1.0.0/16", ["r-b1", "r-b2"])):
        sh("ip", "-n", rt, "tuntap", "add", "dev", "tun0", "mode", "tun")
        sh("ip", "-n", rt, "link", "set", "tun0", "txqueuelen", "1000")
        sh("ip", "-n", rt, "link", "set", "tun0", "up")
        sh("ip", "-n", rt, "route", "add", remote, "dev", "tun0", "table", "100")
        for i, lan in enumerate(lan_ifs):
            sh("ip", "-n", rt, "rule", "add", "iif", lan, "lookup", "100", "pref", str(1000 + i))
        for key in ("all", "default", "tun0", "wan0"):
            _sysctl(rt, f"net.ipv4.conf.{key}.rp_filter", 0)
        p = procs.start(f"delayline-{rt}", rt, [sys.executable, DELAYLINE, "tun0", str(WAN_DELAY_MS)],
                        stdout=subprocess.PIPE)
        line = p.popen.stdout.readline().decode().strip()
        if line != "ready":
            raise RuntimeError(f"delay line in {rt} did not start: {line!r}")
    log(f"topology {t.kind}: {len(t.namespaces)} namespaces, {len(t.links)} shaped links, WAN delay {WAN_DELAY_MS} ms each way")


def destroy(t, procs):
    """Kills every process inside our namespaces (they are all ours) and deletes them."""
    for ns in t.namespaces:
        out = sh("ip", "netns", "pids", ns, check=False, capture=True) or ""
        for pid in out.split():
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
    for ns in t.namespaces:
        sh("ip", "netns", "del", ns, check=False)


def counters(t):
    """Interface byte counters of every link end: {(ns, ifname): (rx, tx)}."""
    out = {}
    for ns in t.namespaces:
        js = json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", capture=True))
        for it in js:
            s = it.get("stats64", {})
            out[(ns, it["ifname"])] = (s.get("rx", {}).get("bytes", 0), s.get("tx", {}).get("bytes", 0))
    return out


def leftover_namespaces(prefix):
    out = sh("ip", "netns", "list", capture=True, check=False) or ""
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]
