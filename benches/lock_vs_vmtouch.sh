#!/usr/bin/env bash
# Lock of a cold file: `blobpin lock --daemon` vs `vmtouch -dlw`, side by side, same file,
# same cache state (evicted before every run), alternating order. Both commands return
# once every page is locked, so wall time = time until locked. Prints each run, the
# medians and the ratio blobpin / vmtouch (goal < 0.7).
#
# Usage: benches/lock_vs_vmtouch.sh [SIZE_GIB=4] [ROUNDS=3]
# Needs: root (or CAP_IPC_LOCK: the file is far above RLIMIT_MEMLOCK), vmtouch, ~SIZE GiB of
# free disk under target/ and of free RAM. Builds blobpin --release. Never writes
# drop_caches: it evicts only its own file (and says so when someone else dropped caches).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_GIB=${1:-4}
ROUNDS=${2:-3}
command -v vmtouch >/dev/null || { echo "vmtouch not installed" >&2; exit 2; }
cargo build --release -q
BP=$PWD/target/release/blobpin
DIR=$PWD/target/bench-lock
mkdir -p "$DIR"
F=$DIR/blob-${SIZE_GIB}g
# Stops the daemon whose pidfile is $1 and waits until it is gone (so its locks are released
# before the next eviction).
stop() {
  local pf=$1 pid i
  for i in $(seq 500); do [ -s "$pf" ] && break; sleep 0.01; done
  [ -s "$pf" ] || return 0
  pid=$(cat "$pf")
  kill "$pid" 2>/dev/null || true
  while [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do sleep 0.01; done
  rm -f "$pf"
}
cleanup() { stop "$DIR/b.pid"; stop "$DIR/v.pid"; }
if [ ! -f "$F" ] || [ "$(stat -c %s "$F")" -ne $((SIZE_GIB << 30)) ]; then
  echo "writing $F ($SIZE_GIB GiB)" >&2
  head -c $((SIZE_GIB << 30)) /dev/urandom > "$F.tmp" && sync "$F.tmp" && mv "$F.tmp" "$F"
fi
drops() { awk '/^drop_pagecache/{print $2}' /proc/vmstat; }
now() { date +%s.%N; }

resident_pages() { "$BP" stat --json "$F" | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["resident_pages"])'; }

run_one() { # $1 = blobpin|vmtouch; prints seconds
  "$BP" evict -q "$F"
  local r; r=$(resident_pages)
  [ "$r" -lt 1024 ] || { echo "not cold: $r pages still resident after evict" >&2; exit 1; }
  local t0 t1
  case $1 in
    blobpin) t0=$(now); "$BP" lock -q --daemon --pidfile "$DIR/b.pid" "$F" </dev/null >/dev/null 2>&1; t1=$(now); stop "$DIR/b.pid" ;;
    vmtouch) t0=$(now); vmtouch -q -dlw -P "$DIR/v.pid" "$F" </dev/null >/dev/null 2>&1; t1=$(now); stop "$DIR/v.pid" ;;
  esac
  echo "$t1 - $t0" | bc -l
}

# Warm-up (not measured): the first touch of guest RAM is slow on this VM.
run_one blobpin >/dev/null
B=(); V=()
for r in $(seq "$ROUNDS"); do
  for tool in $( ((r % 2)) && echo "blobpin vmtouch" || echo "vmtouch blobpin"); do
    d0=$(drops); t=$(run_one "$tool"); d1=$(drops)
    note=""; [ "$d0" != "$d1" ] && note="  (page cache dropped by someone else during the run)"
    printf 'round %d %-8s %6.3f s%s\n' "$r" "$tool" "$t" "$note"
    if [ "$tool" = blobpin ]; then B+=("$t"); else V+=("$t"); fi
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
mb=$(median "${B[@]}"); mv=$(median "${V[@]}")
printf 'cold lock of %d GiB: blobpin %.3f s, vmtouch -l %.3f s, ratio blobpin/vmtouch %.2f (goal < 0.7)\n' \
  "$SIZE_GIB" "$mb" "$mv" "$(echo "$mb / $mv" | bc -l)"
