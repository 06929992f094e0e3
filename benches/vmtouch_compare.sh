#!/usr/bin/env bash
# Whole-command comparison of blobpin against vmtouch 1.3.1, fincore and cat, side by side in
# one run (hyperfine), with blobpin setting the cache state itself. Prints a markdown table
# of medians and the blobpin/other ratios. Nothing is written into the repository.
#
#   benches/vmtouch_compare.sh [--quick] [FIXTURE_DIR]
#
# FIXTURE_DIR (default target/bench-fixtures) must be on a disk filesystem, not tmpfs. It gets
# a 20,000-file tree (117 MiB, as in the reference timings), a 1 TiB sparse file and a 2 GiB
# file. Needs: vmtouch, hyperfine, fincore (util-linux), python3.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
fix=${1:-target/bench-fixtures}
runs=10; [ $quick = 1 ] && runs=3

for tool in vmtouch hyperfine fincore python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y vmtouch hyperfine)" >&2; exit 1; }
done
cargo build --release -q
bp=$PWD/target/release/blobpin
mkdir -p "$fix"
fix=$(cd "$fix" && pwd)
case $(stat -f -c %T "$fix") in tmpfs|overlayfs) echo "$fix is on tmpfs/overlay: pages cannot be evicted" >&2; exit 1;; esac

if [ ! -f "$fix/many/.done" ]; then
  echo "creating 20,000 files in $fix/many ..." >&2
  python3 - "$fix/many" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(1)
for d in range(20):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for i in range(1000):
        with open(f"{root}/d{d}/f{i}", "wb") as f:
            f.write(os.urandom(random.randint(1, 8192)))
open(f"{root}/.done", "w").close()
PY
  sync
fi
[ -f "$fix/sparse1t" ] || truncate -s 1T "$fix/sparse1t"
if [ ! -f "$fix/blob2g" ]; then
  echo "creating a 2 GiB file ..." >&2
  head -c 2G /dev/urandom > "$fix/blob2g"; sync
fi

json=$(mktemp -d)
trap 'rm -rf "$json"' EXIT
bench() { # name, hyperfine args...
  local name=$1; shift
  hyperfine -N --style none --export-json "$json/$name.json" "$@" >/dev/null 2>&1 || \
  hyperfine --style none --export-json "$json/$name.json" "$@" >/dev/null
}

"$bp" touch --quiet "$fix/many"
bench stat20k --warmup 2 --runs $runs \
  -n "vmtouch" "vmtouch $fix/many" \
  -n "blobpin (vmtouch mode)" "$bp $fix/many" \
  -n "blobpin stat" "$bp stat --quiet $fix/many"
bench touch20k_warm --warmup 2 --runs $runs \
  -n "vmtouch -t" "vmtouch -t $fix/many" \
  -n "blobpin -t" "$bp -t $fix/many"
bench evict20k --warmup 1 --runs $runs \
  -n "vmtouch -e" "vmtouch -e $fix/many" \
  -n "blobpin -e" "$bp -e $fix/many"
bench sparse1t --runs $([ $quick = 1 ] && echo 1 || echo 3) \
  -n "vmtouch" "vmtouch $fix/sparse1t" \
  -n "fincore" "fincore $fix/sparse1t" \
  -n "blobpin (vmtouch mode)" "$bp $fix/sparse1t"
bench coldtouch2g --runs $([ $quick = 1 ] && echo 2 || echo 5) --prepare "$bp -e -q $fix/blob2g" \
  -n "cat > /dev/null" "cat $fix/blob2g" \
  -n "vmtouch -t" "vmtouch -t $fix/blob2g" \
  -n "blobpin -t" "$bp -t $fix/blob2g"

python3 - "$json" <<'PY'
import json, os, sys
d = sys.argv[1]
titles = {
  "stat20k": "stat, 20,000-file tree (warm)",
  "touch20k_warm": "touch, 20,000-file tree (already resident)",
  "evict20k": "evict, 20,000-file tree",
  "sparse1t": "stat, 1 TiB sparse file",
  "coldtouch2g": "cold read of a 2 GiB file",
}
print("| benchmark | command | median (s) | blobpin / this |")
print("|---|---|---:|---:|")
for name in titles:
    path = os.path.join(d, name + ".json")
    if not os.path.exists(path):
        continue
    res = json.load(open(path))["results"]
    med = {r["command"]: r["median"] for r in res}
    ours = [v for k, v in med.items() if k.startswith("blobpin")]
    best = min(ours)
    for cmd, m in med.items():
        ratio = "" if cmd.startswith("blobpin") else f"{best / m:.3f}"
        print(f"| {titles[name]} | {cmd} | {m:.6f} | {ratio} |")
PY
