"""Runs scenarios: calibration of the links, then for every (scenario, method, run) a fresh
seed side and fresh host directories on the same topology, events on one clock, interface
counters before and after, SHA-256 of every copy."""

import hashlib
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass

from . import topo as T

SCENARIOS = ["flat", "2dc", "seeder-kill", "kill25", "late-dc", "update"]
SCENARIO_TOPO = {"flat": "flat", "2dc": "2dc", "seeder-kill": "2dc", "kill25": "2dc",
                 "late-dc": "2dc", "update": "2dc"}
LATE_DC = "b"
LATE_S = 10.0
CAL_PORT = 5201


@dataclass
class Blob:
    path: str
    sha: str
    size: int


def make_blob(path, size, seed):
    """Deterministic pseudo-random content (so reruns use the same blob)."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        pass
    else:
        rng = random.Random(seed)
        with open(path + ".tmp", "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 20)
                f.write(rng.randbytes(n))
                left -= n
        os.rename(path + ".tmp", path)
    return Blob(path, sha256_file(path), size)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v), idle


def busy_fraction(a, b):
    tot, idle = b[0] - a[0], b[1] - a[1]
    return 1.0 - idle / tot if tot else 0.0


class Run:
    """One (scenario, method, run index): its directory, its processes, its state."""

    def __init__(self, ctx, topo, blobs, label):
        self.ctx, self.topo, self.blobs = ctx, topo, blobs
        self.dir = os.path.join(ctx.data_dir, "run")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.log_dir = os.path.join(ctx.out_dir, "logs", label)
        os.makedirs(self.log_dir, exist_ok=True)
        self.procs = []
        self.seed = []
        self.fetch = {}
        self.flip_targets = {}
        self.hook = ctx.hook

    def host_dir(self, host):
        d = os.path.join(self.dir, "hosts", host)
        os.makedirs(d, exist_ok=True)
        return d

    def start(self, name, ns, argv, env=None, seed=False, tracker=False, fetch=None, log=None):
        out = open(os.path.join(self.log_dir, log + ".log"), "ab") if log else None
        p = self.ctx.procs.start(name, ns, argv, env=env, stdout=out, stderr=out, cwd=self.dir)
        if out:
            out.close()
        self.procs.append(p)
        if seed or tracker:
            self.seed.append(p)
        if fetch:
            self.fetch[fetch] = p
        return p

    def stop(self):
        self.ctx.procs.stop([p for p in self.procs if p.alive()])

    def cpu_seconds(self):
        return sum(p.cpu for p in self.procs)


class Ctx:
    def __init__(self, args, procs, log):
        self.args, self.procs, self.log = args, procs, log
        self.data_dir = args.data_dir
        self.out_dir = args.out
        self.hook = os.path.join(self.data_dir, "done-hook.sh")
        with open(self.hook, "w") as f:
            f.write('#!/bin/sh\n# aria2c completion hook: the harness clock is the realtime clock\n'
                    'date +%s.%N > "$BPDC_DONE.tmp" && mv "$BPDC_DONE.tmp" "$BPDC_DONE"\n')
        os.chmod(self.hook, 0o755)


# ---------------------------------------------------------------------------- calibration
def calibrate(ctx, topo, attempts=3):
    """Calibration, retried up to `attempts` times (the machine is shared): valid as soon as
    one attempt passes. Returns the passing attempt, or the best failing one."""
    best = None
    for i in range(attempts):
        r = calibrate_once(ctx, topo)
        r["attempt"] = i + 1
        if r["valid"]:
            return r
        if best is None or r["worst"]["util"] > best["worst"]["util"]:
            best = r
    return best


def calibrate_once(ctx, topo, seconds=12.0, window=(3.0, 11.0)):
    """All calibration flows at once (4 TCP streams each); every link end's transmit rate
    (interface counters, L2 bytes, the same bytes tbf counts) over the window must reach
    >= 95% of its shaped rate."""
    procs = []
    receivers = {}
    tcpcal = os.path.join(os.path.dirname(T.HERE), "tcpcal.py")
    try:
        for _, dns, dip in topo.cal_flows:
            if (dns, dip) not in receivers:
                p = ctx.procs.start(f"cal-recv-{dns}", dns, [sys.executable, tcpcal, "recv", dip, str(CAL_PORT)],
                                    stdout=__import__("subprocess").PIPE)
                if p.popen.stdout.readline().decode().strip() != "ready":
                    raise RuntimeError(f"calibration receiver in {dns} did not start")
                receivers[(dns, dip)] = p
                procs.append(p)
        t0 = time.time()
        for sns, dns, dip in topo.cal_flows:
            procs.append(ctx.procs.start(f"cal-send-{sns}", sns,
                                         [sys.executable, tcpcal, "send", dip, str(CAL_PORT), str(seconds)]))
        time.sleep(max(0.0, t0 + window[0] - time.time()))
        c0, ct0, cpu0 = T.counters(topo), time.time(), cpu_times()
        time.sleep(max(0.0, t0 + window[1] - time.time()))
        c1, ct1, cpu1 = T.counters(topo), time.time(), cpu_times()
    finally:
        ctx.procs.stop(procs)
    dt = ct1 - ct0
    rows = []
    for l in topo.links:
        for ns, dev in ((l.ns_a, l.if_a), (l.ns_b, l.if_b)):
            tx = c1[(ns, dev)][1] - c0[(ns, dev)][1]
            mbit = tx * 8 / dt / 1e6
            rows.append({"link": l.name, "end": f"{ns.split('-', 1)[1]}:{dev}", "rate_mbit": l.rate_mbit,
                         "measured_mbit": round(mbit, 2), "util": round(mbit / l.rate_mbit, 4)})
    ok = all(r["util"] >= 0.95 for r in rows)
    worst = min(rows, key=lambda r: r["util"])
    res = {"topology": topo.kind, "valid": ok, "rows": rows, "cpu_busy": round(busy_fraction(cpu0, cpu1), 3),
           "own_cpu_s": round(sum(p.cpu for p in procs), 2), "worst": worst, "window_s": round(dt, 2)}
    ctx.log(f"calibration {topo.kind}: {'VALID' if ok else 'INVALID'}; worst link end {worst['end']} "
            f"{worst['measured_mbit']}/{worst['rate_mbit']} Mbit ({worst['util'] * 100:.1f}%), "
            f"machine CPU busy {res['cpu_busy'] * 100:.0f}% (load processes: {res['own_cpu_s']} CPU s)")
    return res


# ---------------------------------------------------------------------------- one run
def stall_bytes(topo):
    c = T.counters(topo)
    return sum(c[(h.ns, "eth0")][0] for h in topo.hosts)


def run_once(ctx, topo, method, scenario, blobs, run_idx):
    """Returns the metrics of one run."""
    a = ctx.args
    size = blobs["v1"].size
    bound, bound_set = topo.bound_seconds(size)
    label = f"{scenario}-{method.name}-{run_idx}"
    run = Run(ctx, topo, blobs, label)
    rng = random.Random(1000 + run_idx)
    hosts = [h.name for h in topo.hosts]
    version = "v1"
    res = {"scenario": scenario, "method": method.name, "run": run_idx, "size": size,
           "bound_s": bound, "bound_set": bound_set, "events": []}
    try:
        method.start_seed(run, "v1")
        if scenario == "update":
            # v1 everywhere first (not measured), then v2 is published and distributed.
            w = _distribute(ctx, run, method, "v1", {h: 0.0 for h in hosts}, [], bound)
            if any(v is None for v in w["t_rel"].values()):
                raise RuntimeError(f"update: v1 did not reach every host: {w['failed']}")
            version = "v2"
            method.publish(run, "v2")
        starts = {h: 0.0 for h in hosts}
        events = []
        if scenario == "late-dc":
            for h in topo.hosts:
                if h.dc == LATE_DC:
                    starts[h.name] = LATE_S
        elif scenario == "seeder-kill":
            events.append((0.5 * bound, "kill-seeder", None))
        elif scenario == "kill25":
            victims = sorted(rng.sample(hosts, len(hosts) // 4))
            events.append((0.3 * bound, "kill-hosts", victims))
        w = _distribute(ctx, run, method, version, starts, events, bound)
        res.update(w)
    except (RuntimeError, OSError) as e:
        res["error"] = str(e)
        ctx.log(f"  {label}: ERROR {e}")
    finally:
        run.stop()
    res["cpu_s"] = round(run.cpu_seconds(), 2)
    # SHA-256 of every copy that finished
    want = blobs[version].sha
    shas = {}
    for h, t in res.get("t_rel", {}).items():
        if t is not None:
            p = method.copy_path(run, h, version)
            shas[h] = sha256_file(p) == want if os.path.isfile(p) else False
    res["sha_ok"] = sum(1 for v in shas.values() if v)
    res["sha_bad"] = sorted(h for h, v in shas.items() if not v)
    survivors = [h for h in hosts if h not in res.get("killed", [])]
    times = [res.get("t_rel", {}).get(h) for h in survivors]
    res["complete"] = all(t is not None for t in times) and not res["sha_bad"]
    res["slowest_s"] = max(times) if res["complete"] else None
    res["efficiency"] = bound / res["slowest_s"] if res["complete"] and res["slowest_s"] > 0 else 0.0
    shutil.rmtree(run.dir, ignore_errors=True)
    return res


def _distribute(ctx, run, method, version, starts, events, bound):
    """Starts every host's fetch at t0 + its start offset, fires events, waits for all hosts
    (or a stall, or the timeout) and measures. Times are on the realtime clock shared by all
    namespaces."""
    topo = run.topo
    a = ctx.args
    pending = dict(starts)
    events = sorted(events, key=lambda e: e[0])
    done, failed, killed, log = {}, {}, [], []
    timeout = a.timeout_factor * bound + 30
    c0, cpu0 = T.counters(topo), cpu_times()
    t0 = time.time()
    last_bytes, last_change = None, t0
    next_stall_check = t0
    while True:
        now = time.time()
        for h, off in list(pending.items()):
            if now >= t0 + off:
                method.start_fetch(run, h, version)
                del pending[h]
        while events and now >= t0 + events[0][0]:
            at, kind, arg = events.pop(0)
            if kind == "kill-seeder":
                victims = method.seed_procs(run)
                ctx.procs.stop(victims)
                log.append({"t": round(now - t0, 2), "event": kind, "procs": [p.name for p in victims]})
            elif kind == "kill-hosts":
                for h in arg:
                    procs = [p for (hh, _), p in run.fetch.items() if hh == h]
                    ctx.procs.stop(procs)
                    killed.append(h)
                log.append({"t": round(now - t0, 2), "event": kind, "hosts": arg})
        for h in starts:
            if h in done or h in failed or h in killed or h in pending:
                continue
            t = method.finished(run, h, version)
            if t is not None:
                done[h] = t
                continue
            why = method.failed(run, h, version)
            if why:
                failed[h] = why
        live = [h for h in starts if h not in done and h not in failed and h not in killed]
        if not live:
            break
        if now > t0 + timeout:
            for h in live:
                failed[h] = f"timeout after {timeout:.0f}s"
            break
        if now >= next_stall_check and not pending:
            b = stall_bytes(topo)
            if last_bytes is None or b - last_bytes > 256 * 1024:
                last_bytes, last_change = b, now
            elif now - last_change > a.stall_s:
                for h in live:
                    failed[h] = f"stalled: no host received data for {a.stall_s:.0f}s"
                break
            next_stall_check = now + 2.0
        time.sleep(0.05)
    t_end = time.time()
    c1, cpu1 = T.counters(topo), cpu_times()
    size = run.blobs[version].size

    def tx(ns_if):
        return c1[ns_if][1] - c0[ns_if][1]

    def rx(ns_if):
        return c1[ns_if][0] - c0[ns_if][0]

    out = {
        "version": version,
        "t_abs": {h: (round(done[h] - t0, 3) if h in done else None) for h in starts},
        "t_rel": {h: (round(done[h] - t0 - starts[h], 3) if h in done else None) for h in starts},
        "failed": failed,
        "killed": killed,
        "events": log,
        "wall_s": round(t_end - t0, 2),
        "machine_cpu_busy": round(busy_fraction(cpu0, cpu1), 3),
        "seeder_bytes_over_F": round(tx((topo.build.ns, "eth0")) / size, 3),
    }
    if topo.wan_ifs:
        # bytes into DC x across the WAN = what the other DC's WAN end transmitted
        dcs = list(topo.wan_ifs)
        out["wan_in_over_F"] = {dc: round(tx(topo.wan_ifs[o]) / size, 3)
                                for dc in dcs for o in dcs if o != dc}
        out["rack_in_over_F"] = {r: round(rx(topo.uplink_ifs[r]) / size, 3) for r in topo.uplink_ifs}
    return out


# ---------------------------------------------------------------------------- aggregation
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def aggregate(results):
    """Medians per (scenario, method) over runs."""
    groups = {}
    for r in results:
        groups.setdefault((r["scenario"], r["method"]), []).append(r)
    rows = []
    for (sc, m), rs in groups.items():
        ok = [r for r in rs if r.get("complete")]
        row = {"scenario": sc, "method": m, "runs": len(rs), "complete_runs": len(ok),
               "bound_s": rs[0]["bound_s"],
               "slowest_s": med([r["slowest_s"] for r in ok]),
               "median_host_s": med([med(list(r["t_rel"].values())) for r in rs]),
               "efficiency": med([r["efficiency"] for r in rs]),
               "seeder_over_F": med([r.get("seeder_bytes_over_F") for r in rs]),
               "cpu_s": med([r.get("cpu_s") for r in rs]),
               "machine_cpu_busy": med([r.get("machine_cpu_busy") for r in rs]),
               "sha_ok": sum(r["sha_ok"] for r in rs),
               "sha_checked": sum(r["sha_ok"] + len(r["sha_bad"]) for r in rs),
               "failed_hosts": med([len(r.get("failed", {})) for r in rs]),
               "errors": [r["error"] for r in rs if r.get("error")]}
        if rs[0].get("wan_in_over_F"):
            row["wan_in_over_F"] = {dc: med([r["wan_in_over_F"][dc] for r in rs if r.get("wan_in_over_F")])
                                    for dc in rs[0]["wan_in_over_F"]}
            row["rack_in_max_over_F"] = med([max(r["rack_in_over_F"].values()) for r in rs if r.get("rack_in_over_F")])
        dcs = sorted({h[0] for h in rs[0].get("t_rel", {})}) if rs[0].get("wan_in_over_F") else []
        row["slowest_per_dc_s"] = {
            dc: med([max((t for h, t in r["t_rel"].items() if h[0] == dc and t is not None), default=None)
                     for r in ok]) for dc in dcs}
        hosts = list(rs[0].get("t_rel", {}).keys())
        row["per_host_s"] = {h: med([r["t_abs"][h] for r in rs if r.get("t_abs")]) for h in hosts}
        rows.append(row)
    order = {s: i for i, s in enumerate(SCENARIOS)}
    rows.sort(key=lambda r: (order.get(r["scenario"], 99), r["method"]))
    return rows
