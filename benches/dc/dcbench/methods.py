"""Distribution methods. A method says how to start the seed side, how to start each host's
fetch, how to tell that a host has finished (on the harness clock), where its copy is, and
which processes "the seeder" is (for the seeder-kill scenario).

Interface (all times are time.time() values; `run` is a harness.Run):
  unavailable(ctx)               -> None, or why the method cannot run here (never faked)
  start_seed(run, version)       start the seed side for the first version; return when ready
  publish(run, version)          make one more version available (the update scenario)
  start_fetch(run, host, version) start (or, for a watching daemon, nudge) the host's fetch
  finished(run, host, version)   -> completion time or None
  failed(run, host, version)     -> reason string if the fetch can no longer finish, else None
  copy_path(run, host, version)  -> path of the host's copy (its SHA-256 is checked)
  seed_procs(run)                -> processes killed by the seeder-kill scenario
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from .topo import sh

HTTP_PORT = 8080
TRACKER_PORT = 6969
BT_PORT = {"v1": 6881, "v2": 6882}
BLOBPIN_PORT = 7070
BLOBPIN_PEER_PORT = 6881


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def in_ns_ok(ns, *argv):
    return sh("ip", "netns", "exec", ns, *argv, check=False) == 0


class Method:
    name = "?"

    def unavailable(self, ctx):
        return None

    def publish(self, run, version):
        pass

    def failed(self, run, host, version):
        p = run.fetch.get((host, version))
        if p is not None and not p.alive() and self.finished(run, host, version) is None:
            return f"fetch exited with status {p.status}"
        return None

    def seed_procs(self, run):
        return list(run.seed)


# ------------------------------------------------------------------------------ curl
class Curl(Method):
    """Baseline 1: one HTTP server (python3 http.server) on the build host, curl on every
    host. Finished = curl exited 0."""

    name = "curl"

    def unavailable(self, ctx):
        return None if shutil.which("curl") else "curl not installed"

    def _www(self, run):
        return os.path.join(run.dir, "build-www")

    def start_seed(self, run, version):
        www = self._www(run)
        os.makedirs(www, exist_ok=True)
        self.publish(run, version)
        b = run.topo.build
        p = run.start("http-server", b.ns, [sys.executable, "-m", "http.server", str(HTTP_PORT),
                                            "--bind", b.ip, "--directory", www], seed=True)
        url = f"http://{b.ip}:{HTTP_PORT}/"
        wait_for(lambda: in_ns_ok(b.ns, "curl", "-sf", "-o", "/dev/null", url), 15, "the HTTP server")
        return p

    def publish(self, run, version):
        dst = os.path.join(self._www(run), f"{version}.bin")
        if not os.path.exists(dst):
            os.link(run.blobs[version].path, dst)

    def start_fetch(self, run, host, version):
        h = run.topo.host(host)
        url = f"http://{run.topo.build.ip}:{HTTP_PORT}/{version}.bin"
        return run.start(f"curl-{host}-{version}", h.ns,
                         ["curl", "-sS", "--fail", "-o", self.copy_path(run, host, version), url],
                         fetch=(host, version))

    def finished(self, run, host, version):
        p = run.fetch.get((host, version))
        if p is not None and not p.alive() and p.status == 0:
            return p.exit_time
        return None

    def copy_path(self, run, host, version):
        return os.path.join(run.host_dir(host), f"{version}.bin")


# ------------------------------------------------------------------------------ bencode / torrent
def bencode(x):
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, str):
        return bencode(x.encode())
    if isinstance(x, list):
        return b"l" + b"".join(bencode(i) for i in x) + b"e"
    if isinstance(x, dict):
        return b"d" + b"".join(bencode(k) + bencode(x[k]) for k in sorted(x)) + b"e"
    raise TypeError(type(x))


def piece_size(size):
    """At least ~128 pieces (a small blob in 1 MiB pieces leaves BitTorrent nothing to swap),
    a power of two between 64 KiB and 1 MiB (1 MiB from 128 MiB up, as the reference used)."""
    p = 1 << 20
    while p > (64 << 10) and size // p < 128:
        p //= 2
    return p


def make_torrent(blob_path, name, announce, out, piece=None):
    """Single-file BitTorrent v1 metainfo (mktorrent is not installed here); returns the
    info-hash in hex."""
    piece = piece or piece_size(os.path.getsize(blob_path))
    pieces = []
    with open(blob_path, "rb") as f:
        while True:
            chunk = f.read(piece)
            if not chunk:
                break
            pieces.append(hashlib.sha1(chunk).digest())
    info = {"name": name, "piece length": piece, "length": os.path.getsize(blob_path),
            "pieces": b"".join(pieces)}
    with open(out, "wb") as f:
        f.write(bencode({"announce": announce, "info": info}))
    return hashlib.sha1(bencode(info)).hexdigest()


# ------------------------------------------------------------------------------ aria2c
ARIA2_COMMON = [
    "--no-conf=true", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
    "--enable-peer-exchange=false", "--disable-ipv6=true", "--file-allocation=none",
    "--summary-interval=0", "--console-log-level=warn", "--allow-overwrite=true",
    "--auto-file-renaming=false", "--bt-save-metadata=false", "--seed-ratio=0.0",
    "--seed-time=600",  # minutes: keep seeding until the harness kills it
]


class Aria2(Method):
    """Baseline 2: opentracker (whitelist mode, -u nobody, chrooted in its own directory)
    on the build host, an aria2c seeder there, aria2c on every host (random peers; no DHT,
    LPD or PEX). A host has finished when aria2c's --on-bt-download-complete hook has written
    its timestamp; the hosts keep seeding afterwards."""

    name = "aria2c"

    def unavailable(self, ctx):
        for tool in ("aria2c", "opentracker"):
            if not shutil.which(tool):
                return f"{tool} not installed"
        return None

    def _tdir(self, run):
        return os.path.join(run.dir, "tracker")

    def start_seed(self, run, version):
        b = run.topo.build
        tdir = self._tdir(run)
        os.makedirs(tdir, exist_ok=True)
        os.chmod(tdir, 0o755)
        self.torrents = {}
        self.hashes = {}
        for v in run.blobs:  # every version is whitelisted up front; only `version` is seeded now
            tor = os.path.join(run.dir, f"{v}.torrent")
            ih = make_torrent(run.blobs[v].path, f"blob-{v}.bin",
                              f"http://{b.ip}:{TRACKER_PORT}/announce", tor)
            self.torrents[v], self.hashes[v] = tor, ih
        with open(os.path.join(tdir, "whitelist"), "w") as f:
            f.write("".join(h + "\n" for h in self.hashes.values()))
        # opentracker chroots into -d and reads the whitelist from there as user nobody.
        run.start("opentracker", b.ns, ["opentracker", "-i", b.ip, "-p", str(TRACKER_PORT),
                                        "-P", str(TRACKER_PORT), "-d", tdir, "-u", "nobody",
                                        "-w", "whitelist"], tracker=True, log="opentracker")
        wait_for(lambda: in_ns_ok(b.ns, "curl", "-sf", "-o", "/dev/null",
                                  f"http://{b.ip}:{TRACKER_PORT}/scrape"), 15, "opentracker")
        self.publish(run, version)

    def publish(self, run, version):
        b = run.topo.build
        sdir = os.path.join(run.dir, f"seed-{version}")
        os.makedirs(sdir, exist_ok=True)
        os.link(run.blobs[version].path, os.path.join(sdir, f"blob-{version}.bin"))
        # Do not pass --bt-hash-check-seed=false: the seeder then exits instead of seeding.
        run.start(f"aria2c-seed-{version}", b.ns,
                  ["aria2c"] + ARIA2_COMMON + ["--check-integrity=true", f"--listen-port={BT_PORT[version]}",
                                              "-d", sdir, self.torrents[version]], seed=True,
                  log=f"aria2c-seed-{version}")
        wait_for(lambda: self._seeders(run, version) >= 1, 30, f"the aria2c seeder of {version} to announce")

    def _seeders(self, run, version):
        b = run.topo.build
        ih = bytes.fromhex(self.hashes[version])
        q = "".join("%%%02X" % c for c in ih)
        r = subprocess.run(["ip", "netns", "exec", b.ns, "curl", "-sf",
                            f"http://{b.ip}:{TRACKER_PORT}/scrape?info_hash={q}"],
                           capture_output=True)
        # bencoded: d5:filesd20:<ih>d8:completei<N>e...
        out = r.stdout
        i = out.find(b"8:completei")
        if r.returncode != 0 or i < 0:
            return 0
        j = out.find(b"e", i + 11)
        return int(out[i + 11:j])

    def _done_file(self, run, host, version):
        return os.path.join(run.host_dir(host), f".done-{version}")

    def start_fetch(self, run, host, version):
        h = run.topo.host(host)
        d = os.path.join(run.host_dir(host), version)
        os.makedirs(d, exist_ok=True)
        return run.start(f"aria2c-{host}-{version}", h.ns,
                         ["aria2c"] + ARIA2_COMMON + [f"--listen-port={BT_PORT[version]}",
                                                      f"--on-bt-download-complete={run.hook}",
                                                      "-d", d, self.torrents[version]],
                         env={"BPDC_DONE": self._done_file(run, host, version)}, fetch=(host, version))

    def finished(self, run, host, version):
        try:
            with open(self._done_file(run, host, version)) as f:
                return float(f.read().strip())
        except (OSError, ValueError):
            return None

    def copy_path(self, run, host, version):
        return os.path.join(run.host_dir(host), version, f"blob-{version}.bin")

    def seed_procs(self, run):
        return [p for p in run.seed if p.name.startswith("aria2c-seed")]


# ------------------------------------------------------------------------------ blobpin
# The blobpin swarm commands (issues 4 and 5) are being written on other branches. This
# method is the plug: it refuses to run until the binary has them, and then drives exactly
# these command lines (edit here if the final flags differ):
# `origin --listen IP:PORT` serves the feed on PORT, its tracker on PORT+1, its seeder on PORT+2.
BLOBPIN_PUBLISH = "{bin} publish {blob} --feed {feed} --name blob --tracker http://{ip}:{tracker_port}/announce"
BLOBPIN_ORIGIN = "{bin} origin --feed {feed} --listen {ip}:{port} --topology {topology}"
BLOBPIN_SYNC = ("{bin} sync http://{origin}:{port}/feed/blob --dest {dest} --listen {ip}:{peer_port} --watch 1s"
                " --prime-from http://{origin}:{port}/feed/blob/files --json -v")


class Blobpin(Method):
    """blobpin's own swarm: `blobpin publish` + `blobpin origin` (feed, tracker with the
    topology file, seeder) on the build host; `blobpin sync --watch` on every host. A host has
    finished a version when DEST/current has been flipped to it: the time is the ctime of the
    `current` link (set by the rename, on the same clock). The watching sync keeps seeding;
    for the update scenario the harness publishes v2 and waits for every `current` to flip.
    The seeder-kill scenario kills the origin process."""

    name = "blobpin"

    def __init__(self, binary):
        self.binary = binary

    def unavailable(self, ctx):
        b = self.binary
        if not b or not os.access(b, os.X_OK):
            return (f"blobpin swarm commands not built yet (no blobpin binary at {b!r}; "
                    "build with `cargo build --release` or pass --blobpin PATH)")
        need = {"publish": "--feed", "origin": "--listen", "sync": "--dest"}
        for sub, flag in need.items():
            r = subprocess.run([b, sub, "--help"], capture_output=True, text=True, timeout=20)
            if r.returncode != 0 or flag not in r.stdout:
                return (f"blobpin swarm commands not built yet ({b} {sub} --help does not "
                        f"document {flag}; this harness will not fake results)")
        return None

    def _feed(self, run):
        return os.path.join(run.dir, "feed")

    def _fmt(self, template, **kw):
        return template.format(bin=self.binary, **kw).split()

    def start_seed(self, run, version):
        b = run.topo.build
        feed = self._feed(run)
        os.makedirs(feed, exist_ok=True)
        topo_file = os.path.join(run.dir, "topology.toml")
        with open(topo_file, "w") as f:
            f.write(run.topo.topology_toml())
        self.publish(run, version, start=False)
        run.start("blobpin-origin", b.ns, self._fmt(BLOBPIN_ORIGIN, feed=feed, ip=b.ip, port=BLOBPIN_PORT,
                                                    topology=topo_file), seed=True, log="blobpin-origin")
        url = f"http://{b.ip}:{BLOBPIN_PORT}/feed/blob/latest.json"
        wait_for(lambda: in_ns_ok(b.ns, "curl", "-sf", "-o", "/dev/null", url), 30, "blobpin origin's feed")

    def publish(self, run, version, start=True):
        src = os.path.join(run.dir, f"blob-{version}.bin")
        os.link(run.blobs[version].path, src)
        b = run.topo.build
        argv = self._fmt(BLOBPIN_PUBLISH, blob=src, feed=self._feed(run), ip=b.ip,
                         tracker_port=BLOBPIN_PORT + 1) + os.environ.get("BPDC_PUBLISH_ARGS", "").split()
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr.strip()}")
        if start:  # wait until the origin serves the new version's feed entry
            url = f"http://{b.ip}:{BLOBPIN_PORT}/feed/blob/latest.json"

            def serves():
                out = subprocess.run(["ip", "netns", "exec", b.ns, "curl", "-sf", url],
                                     capture_output=True, text=True).stdout
                return run.blobs[version].sha in out
            wait_for(serves, 30, f"the origin to serve {version}")

    def start_fetch(self, run, host, version):
        key = (host, "sync")
        if key in run.fetch and run.fetch[key].alive():
            run.fetch[(host, version)] = run.fetch[key]  # the watching sync picks it up
            return run.fetch[key]
        h = run.topo.host(host)
        p = run.start(f"blobpin-sync-{host}", h.ns,
                      self._fmt(BLOBPIN_SYNC, origin=run.topo.build.ip, port=BLOBPIN_PORT,
                                dest=run.host_dir(host), ip=h.ip, peer_port=BLOBPIN_PEER_PORT)
                      + os.environ.get("BPDC_SYNC_ARGS", "").split(),
                      fetch=(host, version), log=f"blobpin-sync-{host}")
        run.fetch[key] = p
        return p

    def _current(self, run, host):
        return os.path.join(run.host_dir(host), "current")

    def copy_path(self, run, host, version):
        cur = os.path.realpath(self._current(run, host))
        if os.path.isdir(cur):  # a version directory holding the single blob file
            files = [os.path.join(cur, n) for n in os.listdir(cur)]
            return files[0] if len(files) == 1 else cur
        return cur

    def finished(self, run, host, version):
        cur = self._current(run, host)
        try:
            st = os.lstat(cur)
        except OSError:
            return None
        target = os.path.realpath(cur)
        prev = run.flip_targets.get(host)
        if version != "v1" and target == prev:
            return None  # still the previous version
        run.flip_targets.setdefault((host, version), target)
        if version == "v1":
            run.flip_targets[host] = target
        return st.st_ctime


def all_methods(blobpin_binary):
    return {"curl": Curl(), "aria2c": Aria2(), "blobpin": Blobpin(blobpin_binary)}
