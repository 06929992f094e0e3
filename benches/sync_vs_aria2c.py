#!/usr/bin/env python3
"""A blob from one origin to 4 peers on loopback: blobpin against HTTP + curl and against
opentracker + aria2c, side by side in one run; then hot-set residency after the same
download done by blobpin sync and by aria2c inside a small memory cgroup.

Part 1, time until all 4 peers hold a verified copy (start of the 4 downloads to the last
peer's SHA-256 check; the origin is already serving when the clock starts):
  - blobpin: `blobpin seed` of the published blob on 127.0.0.1, 4 `blobpin sync` on
    127.0.0.2-5, each told the origin and the 3 other peers (`--peer`), primed with one piece
    (`--prime-from`, see issue 5), verbose; a peer is done at its "is live" line (sync checks
    every piece's SHA-1 and the whole file's SHA-256, fsyncs, then switches).
  - http: `python3 -m http.server` on 127.0.0.1 and 4 concurrent `curl -o`, each followed by
    `sha256sum` (compared with the published digest).
  - aria2c: Debian's opentracker (whitelist mode, the info-hash listed, `-u nobody`) on
    127.0.0.1, an aria2c seeder (hash-checked before the clock starts) and 4 aria2c peers
    bound to 127.0.0.2-5 with DHT, LPD and PEX off; a peer is done when its
    --on-bt-download-complete hook has run `sha256sum` on the file.
  Ratios: each time over blobpin's.

Part 2, hot set: a child memory cgroup (v1) of this process's cgroup, smaller than the blob.
A "service" reads a hot file inside it (inactive list: the worst case); then the blob is
downloaded inside it by `blobpin sync` (from a `blobpin seed` outside), and by aria2c (from
the aria2c seeder via opentracker). Printed: the percentage of the hot file still resident.
/proc/vmstat drop_pagecache is read before and after each measurement; a run where it moved
is repeated (never writes drop_caches; evicts only its own files).

Usage (root; loopback only):
  cargo build --release && benches/sync_vs_aria2c.py [--mib 1024] [--hot-mib 64] [--cg-mib 256]
  apt-get install -y aria2 opentracker curl
Scratch data goes to target/bench-sync (removed at the end). The machine is shared: one run,
noisy figures.
"""
import argparse
import hashlib
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--mib", type=int, default=1024, help="blob size in MiB")
ap.add_argument("--hot-mib", type=int, default=64, help="hot file of the service")
ap.add_argument("--cg-mib", type=int, default=256, help="memory cgroup limit")
ap.add_argument("--bin", default="target/release/blobpin")
ap.add_argument("--skip", default="", help="comma list of parts to skip: blobpin,http,aria2c,hot")
args = ap.parse_args()
B = os.path.abspath(args.bin)
D = os.path.abspath("target/bench-sync")
SIZE = args.mib << 20
SKIP = set(filter(None, args.skip.split(",")))
PEERS = [f"127.0.0.{i}" for i in range(2, 6)]
LIMIT = 1800

for tool in ["aria2c", "opentracker", "curl", "sha256sum"]:
    if shutil.which(tool) is None:
        sys.exit(f"{tool} not found (apt-get install -y aria2 opentracker curl)")
if not os.path.exists(B):
    sys.exit(f"{B} not found: cargo build --release")


def free_port(ip):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log(msg):
    print(msg, file=sys.stderr, flush=True)


procs = []
# SIGTERM/SIGINT end the run through the `finally` below, which stops every child.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    procs.append(p)
    return p


def kill_all():
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    procs.clear()


def evict(path):
    subprocess.run([B, "evict", "-q", path], check=True)


def drop_counter():
    for line in open("/proc/vmstat"):
        if line.startswith("drop_pagecache "):
            return int(line.split()[1])
    return 0


shutil.rmtree(D, ignore_errors=True)
os.makedirs(f"{D}/build")
os.chmod(D, 0o755)
src = f"{D}/build/blob.bin"
log(f"writing a {args.mib} MiB blob")
h = hashlib.sha256()
with open(src, "wb") as f:
    left = SIZE
    while left:
        chunk = os.urandom(min(left, 16 << 20))
        h.update(chunk)
        f.write(chunk)
        left -= len(chunk)
    f.flush()
    os.fsync(f.fileno())
DIGEST = h.hexdigest()

ot_port = free_port("127.0.0.1")
announce = f"http://127.0.0.1:{ot_port}/announce"
pub = subprocess.run([B, "publish", src, "--feed", f"{D}/feed", "--name", "blob",
                      "--tracker", announce, "--json"], check=True, capture_output=True)
entry = json.loads(pub.stdout)
torrent = f"{D}/feed/blob/{entry['torrent']['file']}"
FEED = f"{D}/feed/blob"
results = {}


def blobpin_run():
    seed_addr = f"127.0.0.1:{free_port('127.0.0.1')}"
    hosts = [f"{ip}:{free_port(ip)}" for ip in PEERS]
    seeder = spawn([B, "seed", "--feed", FEED, "--data", src, "--listen", seed_addr],
                   stdout=subprocess.PIPE, text=True)
    line = seeder.stdout.readline()
    assert line.startswith("seeding"), line
    done = {}
    lock = threading.Lock()
    errs = {}

    def watch(i, p):
        for line in p.stderr:
            errs.setdefault(i, []).append(line)
            if "is live" in line:
                with lock:
                    done[i] = time.monotonic()
        p.wait()

    start = time.monotonic()
    threads = []
    syncs = []
    for i, hst in enumerate(hosts):
        cmd = [B, "sync", FEED, "--dest", f"{D}/bp-{i}", "--listen", hst, "-v",
               "--stall-timeout", "120", "--seed-for", "600", "--prime-from", f"{D}/build",
               "--peer", seed_addr]
        for o in hosts:
            if o != hst:
                cmd += ["--peer", o]
        p = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        syncs.append(p)
        t = threading.Thread(target=watch, args=(i, p), daemon=True)
        t.start()
        threads.append(t)
    while len(done) < len(hosts):
        if time.monotonic() - start > LIMIT:
            raise SystemExit("blobpin: not all peers done in time")
        if any(p.poll() not in (None, 0) for p in syncs):
            raise SystemExit(f"blobpin: a sync failed: {errs}")
        time.sleep(0.05)
    t = max(done.values()) - start
    for p in syncs:
        p.send_signal(signal.SIGTERM)
    for p in syncs:
        p.wait(timeout=60)
    for i in range(len(hosts)):
        got = hashlib.sha256(open(f"{D}/bp-{i}/current/blob.bin", "rb").read()).hexdigest()
        assert got == DIGEST, f"blobpin peer {i} has a different blob"
    kill_all()
    return t, sorted(v - start for v in done.values())


def http_run():
    port = free_port("127.0.0.1")
    srv = spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                 "--directory", f"{D}/build"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    start = time.monotonic()
    cs = []
    for i, ip in enumerate(PEERS):
        out = f"{D}/http-{i}.bin"
        cs.append(spawn(["sh", "-c", f"curl -sf --interface {ip} -o '{out}' "
                         f"http://127.0.0.1:{port}/blob.bin && sha256sum '{out}'"],
                        stdout=subprocess.PIPE, text=True))
    ends = []
    for p in cs:
        out, _ = p.communicate(timeout=LIMIT)
        ends.append(time.monotonic() - start)
        assert p.returncode == 0 and out.split()[0] == DIGEST, "http: bad copy"
    srv.terminate()
    kill_all()
    return max(ends), sorted(ends)


def opentracker():
    wl = f"{D}/whitelist.txt"
    with open(wl, "w") as f:
        f.write(entry["torrent"]["info_hash"] + "\n")
    os.chmod(wl, 0o644)
    # It chroots into -d before reading the whitelist: relative names, run from D.
    spawn(["opentracker", "-i", "127.0.0.1", "-p", str(ot_port), "-P", str(ot_port),
           "-w", "whitelist.txt", "-u", "nobody", "-d", "."], cwd=D,
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)


ARIA = ["aria2c", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
        "--enable-peer-exchange=false", "--file-allocation=falloc", "--console-log-level=warn",
        "--summary-interval=0", "--bt-max-peers=0", "--follow-torrent=false",
        "--check-integrity=true"]


def aria_seeder():
    """An aria2c seeder of the published file (hash-checked first); returns when seeding."""
    port = free_port("127.0.0.1")
    p = spawn(ARIA + [f"--interface=127.0.0.1", f"--listen-port={port}", "--seed-ratio=0.0",
                      "--seed-time=60", "-d", f"{D}/build", torrent],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # aria2c prints nothing reliable when seeding starts; wait until the tracker's scrape
    # counts a seeder.
    ih = "".join("%" + entry["torrent"]["info_hash"][i:i + 2]
                 for i in range(0, 40, 2))
    for _ in range(600):
        st = subprocess.run(["curl", "-s", f"http://127.0.0.1:{ot_port}/scrape?info_hash={ih}"],
                            capture_output=True).stdout
        m = re.search(rb"8:completei(\d+)e", st)
        if m and int(m.group(1)) > 0:
            break
        if p.poll() is not None:
            raise SystemExit("aria2c seeder exited")
        time.sleep(0.5)
    time.sleep(1)
    return p


def hook_script():
    path = f"{D}/aria-hook.sh"
    with open(path, "w") as f:
        f.write('#!/bin/sh\nsha256sum "$3" > "$3.sha256"\ndate +%s.%N > "$3.done"\n')
    os.chmod(path, 0o755)
    return path


def aria_run():
    opentracker()
    aria_seeder()
    hook = hook_script()
    start_wall = time.time()
    for i, ip in enumerate(PEERS):
        os.makedirs(f"{D}/aria-{i}")
        spawn(ARIA + [f"--interface={ip}", f"--listen-port={free_port(ip)}",
                      "--seed-ratio=0.0", "--seed-time=10", f"--on-bt-download-complete={hook}",
                      "-d", f"{D}/aria-{i}", torrent],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ends = []
    for i in range(len(PEERS)):
        done = f"{D}/aria-{i}/blob.bin.done"
        while not os.path.exists(done) or os.path.getsize(done) == 0:
            if time.time() - start_wall > LIMIT:
                raise SystemExit("aria2c: not all peers done in time")
            time.sleep(0.05)
        ends.append(float(open(done).read()) - start_wall)
        got = open(f"{D}/aria-{i}/blob.bin.sha256").read().split()[0]
        assert got == DIGEST, f"aria2c peer {i} has a different blob"
    kill_all()
    return max(ends), sorted(ends)


def own_memcg():
    for line in open("/proc/self/cgroup"):
        _, ctrls, path = line.rstrip("\n").split(":", 2)
        if "memory" in ctrls.split(","):
            base = "/sys/fs/cgroup/memory" + path
            if os.path.exists(base + "/memory.limit_in_bytes"):
                return base
    return None


def resident(path):
    r = subprocess.run([B, "stat", "--json", path], check=True, capture_output=True)
    return json.loads(r.stdout)["totals"]["resident_percent"]


def hot_set():
    base = own_memcg()
    if base is None:
        log("hot set: no cgroup v1 memory controller here; skipped")
        return None
    cg = f"{base}/blobpin-bench-{os.getpid()}"
    os.mkdir(cg)
    try:
        with open(f"{cg}/memory.limit_in_bytes", "w") as f:
            f.write(str(args.cg_mib << 20))
        hot = f"{D}/service/hot.bin"
        os.makedirs(os.path.dirname(hot))
        with open(hot, "wb") as f:
            f.write(os.urandom(args.hot_mib << 20))
            os.fsync(f.fileno())

        def in_cg(cmd):
            return subprocess.run(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec {cmd}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  timeout=LIMIT)

        def measure(download, out):
            for attempt in range(3):
                shutil.rmtree(out, ignore_errors=True)
                evict(hot)
                evict(src)
                d0 = drop_counter()
                r = in_cg(f"cat {hot}")
                assert r.returncode == 0, r.stderr
                before = resident(hot)
                t0 = time.monotonic()
                r = in_cg(download)
                t = time.monotonic() - t0
                assert r.returncode == 0, r.stderr
                after = resident(hot)
                if drop_counter() == d0 and before >= 99.0:
                    return before, after, t
                log("hot set: page cache dropped from outside (or hot file not warm); again")
            return None

        seed_addr = f"127.0.0.1:{free_port('127.0.0.1')}"
        seeder = spawn([B, "seed", "--feed", FEED, "--data", src, "--listen", seed_addr],
                       stdout=subprocess.PIPE, text=True)
        seeder.stdout.readline()
        bp = measure(f"{B} sync {FEED} --dest {D}/hot-bp --peer {seed_addr} "
                     f"--listen 127.0.0.8:0 --stall-timeout 120", f"{D}/hot-bp")
        kill_all()
        opentracker()
        aria_seeder()
        ar = measure(" ".join(ARIA + ["--interface=127.0.0.9",
                                      f"--listen-port={free_port('127.0.0.9')}",
                                      "--seed-time=0", "-d", f"{D}/hot-aria", torrent]),
                     f"{D}/hot-aria")
        kill_all()
        return bp, ar
    finally:
        kill_all()
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)


try:
    rows = []
    if "blobpin" not in SKIP:
        log("blobpin: seed + 4 sync")
        evict(src)
        results["blobpin"] = blobpin_run()
    if "http" not in SKIP:
        log("http: python3 http.server + 4 curl")
        evict(src)
        results["http"] = http_run()
    if "aria2c" not in SKIP:
        log("aria2c: opentracker + aria2c seeder + 4 aria2c")
        evict(src)
        results["aria2c"] = aria_run()
    hs = None if "hot" in SKIP else hot_set()
finally:
    kill_all()

print(f"blob {args.mib} MiB, 1 origin -> 4 peers on loopback (shared 2-core machine: noisy, one run)")
ref = results.get("blobpin", (None,))[0]
for name, (t, ends) in results.items():
    ratio = f"{t / ref:.2f}x blobpin" if ref else ""
    print(f"{name:8} all verified in {t:7.2f} s  (peers: {', '.join(f'{e:.1f}' for e in ends)})  {ratio}")
if hs:
    bp, ar = hs
    print(f"hot set ({args.hot_mib} MiB, read in a {args.cg_mib} MiB memory cgroup; blob downloaded inside it):")
    for name, m in (("blobpin sync", bp), ("aria2c", ar)):
        if m is None:
            print(f"  {name:12} no clean measurement (page cache dropped from outside 3 times)")
        else:
            print(f"  {name:12} resident before {m[0]:.1f}%, after {m[1]:.1f}% (download {m[2]:.1f} s)")
shutil.rmtree(D, ignore_errors=True)
