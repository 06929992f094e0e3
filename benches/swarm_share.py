#!/usr/bin/env python3
"""How much of a blob hosts take from each other rather than from the seeder.

One `blobpin seed` (upload capped) and three `blobpin sync` hosts on distinct loopback
addresses, started together, in two shapes: a mesh (every host knows the seeder and both other
hosts) and a chain (seeder -> A -> B -> C, each host knows only its parent), each without and
with a primer piece (`sync --prime-from`). Prints, per run: when each host was live, how often
it reconnected, the seeder's upload, and the share of bytes hosts got from each other, against
the bound (blob size / seeder rate for the first host).

Usage: benches/swarm_share.py [--mib 48] [--rate-mib 16] [--bin target/release/blobpin]
Scratch data goes to target/bench-swarm (removed at the end). Loopback only.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--mib", type=int, default=48)
ap.add_argument("--rate-mib", type=int, default=16)
ap.add_argument("--bin", default="target/release/blobpin")
args = ap.parse_args()
B = os.path.abspath(args.bin)
D = os.path.abspath("target/bench-swarm")
SIZE = args.mib << 20


def free_port(ip):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


shutil.rmtree(D, ignore_errors=True)
os.makedirs(f"{D}/build")
src = f"{D}/build/idx.bin"
with open(src, "wb") as f:
    f.write(os.urandom(SIZE))
subprocess.run([B, "publish", src, "--feed", f"{D}/feed"], check=True, capture_output=True)


def run(shape, prime):
    seed_addr = f"127.0.0.1:{free_port('127.0.0.1')}"
    hosts = [f"127.0.0.{i + 2}:{free_port(f'127.0.0.{i + 2}')}" for i in range(3)]
    procs = []
    seeder = subprocess.Popen(
        [B, "seed", "--feed", f"{D}/feed/idx", "--data", src, "--listen", seed_addr,
         "--max-upload", f"{args.rate_mib}M"],
        stdout=subprocess.PIPE, text=True)
    try:
        seeder.stdout.readline()
        for i, h in enumerate(hosts):
            dest = f"{D}/{shape}-{prime}-{i}"
            peers = [seed_addr if i == 0 else hosts[i - 1]] if shape == "chain" else \
                [seed_addr] + [x for x in hosts if x != h]
            cmd = [B, "sync", f"{D}/feed/idx", "--dest", dest, "--json", "--listen", h,
                   "--stall-timeout", "90", "--seed-for", "30" if shape == "chain" else "0"]
            if prime:
                cmd += ["--prime-from", f"{D}/build"]
            for p in peers:
                cmd += ["--peer", p]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        reports = []
        for p in reversed(procs):
            # A chain's parents seed until their child is done; SIGTERM ends that.
            if reports:
                time.sleep(1)
                p.terminate()
            out, _ = p.communicate()
            reports.append(json.loads(out))
        reports.reverse()
    finally:
        for p in procs:
            p.kill()
        seeder.terminate()
    uploaded = json.loads(seeder.stdout.readlines()[-1])["uploaded_bytes"]
    from_hosts = sum(b for r in reports for a, b in r["bytes_by_peer"].items() if a != seed_addr)
    fetched = sum(r["fetched_bytes"] for r in reports)
    live = [round(r["switch_seconds"], 1) for r in reports]
    print(f"{shape:5} primed={str(prime):5}: live at {live} s (bound {SIZE / (args.rate_mib << 20):.1f} s), "
          f"reconnects {[r['reconnects'] for r in reports]}, seeder uploaded {uploaded / SIZE:.2f} x blob, "
          f"hosts got {100 * from_hosts / max(fetched, 1):.0f}% of their bytes from each other")
    sys.stdout.flush()


try:
    for shape in ["mesh", "chain"]:
        for prime in [False, True]:
            run(shape, prime)
finally:
    shutil.rmtree(D, ignore_errors=True)
