#!/usr/bin/env bash
# Announces per second on loopback: `blobpin tracker` against Debian's opentracker, side by
# side in one run, with the same load generator (benches/tracker_load.rs), the same numwant,
# the same swarms and peers. Prints each rate and the ratio blobpin / opentracker.
#
#   apt-get install -y opentracker      # Debian builds it in whitelist mode
#   benches/tracker_vs_opentracker.sh   # env: SECS=5 CONNS=64 SWARMS=100 PEERS=100 NUMWANT=50
#
# Fairness: opentracker is single-threaded and closes the connection after every answer, so
# the headline row runs blobpin with --threads 1 and one announce per connection too, with
# its topology ordering and overlay on (2 DCs x 2 racks; the load generator's connections
# come from 127.0.1.x .. 127.0.4.x). opentracker runs in whitelist mode with every swarm's
# info-hash listed and `-u nobody` (it refuses to keep root), as the reference's pitfalls
# say; blobpin gets the same list through --allow. Besides the rate, the tracker process's own
# CPU time (utime+stime from /proc) gives announces per CPU-second, which stays meaningful when
# the load generator, not the tracker, is the bottleneck. Extra rows: blobpin without topology,
# with keep-alive, and with one worker per CPU. On a shared machine the figures are noisy.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-5}
CONNS=${CONNS:-64}
SWARMS=${SWARMS:-100}
PEERS=${PEERS:-100}
NUMWANT=${NUMWANT:-50}
OT_PORT=${OT_PORT:-26969}
BP_PORT=${BP_PORT:-26970}
BP_PLAIN_PORT=${BP_PLAIN_PORT:-26971}
BP_MT_PORT=${BP_MT_PORT:-26972}

command -v opentracker >/dev/null || { echo "opentracker not found: apt-get install -y opentracker" >&2; exit 1; }

cargo build --release -q
cargo bench -q --bench tracker_load --no-run 2>/dev/null
load() { cargo bench -q --bench tracker_load -- "$@" 2>/dev/null; }

work=target/tracker-bench
rm -rf "$work"
mkdir -p "$work"
chmod 755 "$work"
load --print-hashes --swarms "$SWARMS" >"$work/whitelist.txt"
chmod 644 "$work/whitelist.txt"
cat >"$work/topology.toml" <<'EOF'
[[dc]]
name = "a"
[[dc.rack]]
name = "a1"
cidrs = ["127.0.1.0/24"]
[[dc.rack]]
name = "a2"
cidrs = ["127.0.2.0/24"]
[[dc]]
name = "b"
[[dc.rack]]
name = "b1"
cidrs = ["127.0.3.0/24"]
[[dc.rack]]
name = "b2"
cidrs = ["127.0.4.0/24"]
EOF

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

(cd "$work" && exec opentracker -i 127.0.0.1 -p "$OT_PORT" -P "$OT_PORT" -w whitelist.txt -u nobody -d . >opentracker.log 2>&1) &
ot_pid=$!
pids+=("$ot_pid")
bp=target/release/blobpin
common=(--allow "$work/whitelist.txt" --interval 1800 --min-interval 900 --max-numwant 200)
RUST_LOG=warn "$bp" tracker --listen "127.0.0.1:$BP_PORT" --topology "$work/topology.toml" --threads 1 "${common[@]}" >/dev/null &
bp_pid=$!
pids+=("$bp_pid")
RUST_LOG=warn "$bp" tracker --listen "127.0.0.1:$BP_PLAIN_PORT" --threads 1 "${common[@]}" >/dev/null &
bpp_pid=$!
pids+=("$bpp_pid")
RUST_LOG=warn "$bp" tracker --listen "127.0.0.1:$BP_MT_PORT" --topology "$work/topology.toml" "${common[@]}" >/dev/null &
bpm_pid=$!
pids+=("$bpm_pid")
for port in "$OT_PORT" "$BP_PORT" "$BP_PLAIN_PORT" "$BP_MT_PORT"; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

args=(--seconds "$SECS" --connections "$CONNS" --swarms "$SWARMS" --peers "$PEERS" --numwant "$NUMWANT" --threads 1)
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# run LABEL PORT PID [load args]: prints "<announces/s> <announces per CPU-second of the tracker>"
run() {
    local label=$1 port=$2 pid=$3
    shift 3
    local before after out ok
    before=$(cpu_ticks "$pid")
    out=$(load --target "127.0.0.1:$port" "${args[@]}" "$@")
    after=$(cpu_ticks "$pid")
    ok=$(echo "$out" | sed -n 's/.*(ok \([0-9]*\),.*/\1/p')
    local per_cpu
    per_cpu=$(awk -v ok="$ok" -v t=$((after - before)) -v hz="$tck" 'BEGIN { if (t > 0) printf "%.0f", ok / (t / hz); else print 0 }')
    printf '%-56s %s; tracker CPU %.2f s, %s announces per CPU-second\n' "$label" "$out" \
        "$(awk -v t=$((after - before)) -v hz="$tck" 'BEGIN { print t / hz }')" "$per_cpu" >&2
    echo "$(echo "$out" | sed -n 's/^announces\/s \([0-9]*\).*/\1/p') $per_cpu"
}

echo "tracker announce rate: $SWARMS swarms x $PEERS peers, numwant $NUMWANT, $CONNS connections, ${SECS}s each (noisy: shared machine)" >&2
read -r ot ot_c < <(run "opentracker (1 thread), one announce per connection" "$OT_PORT" "$ot_pid" --close)
read -r bpt bpt_c < <(run "blobpin topology+overlay, 1 thread, one per connection" "$BP_PORT" "$bp_pid" --close)
read -r bpp bpp_c < <(run "blobpin no topology, 1 thread, one per connection" "$BP_PLAIN_PORT" "$bpp_pid" --close)
read -r bpk bpk_c < <(run "blobpin topology+overlay, 1 thread, keep-alive" "$BP_PORT" "$bp_pid")
read -r bpm bpm_c < <(run "blobpin topology+overlay, all CPUs, one per connection" "$BP_MT_PORT" "$bpm_pid" --close)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "ratio blobpin/opentracker, announces/s (topology, 1 thread, per connection): $(ratio "$bpt" "$ot")"
echo "ratio blobpin/opentracker, announces/s (no topology, 1 thread, per connection): $(ratio "$bpp" "$ot")"
echo "ratio blobpin/opentracker, announces/s (topology, all CPUs, per connection): $(ratio "$bpm" "$ot")"
echo "ratio blobpin/opentracker, announces per tracker CPU-second (topology, 1 thread, per connection): $(ratio "$bpt_c" "$ot_c")"
echo "ratio blobpin/opentracker, announces per tracker CPU-second (no topology, 1 thread, per connection): $(ratio "$bpp_c" "$ot_c")"
echo "blobpin keep-alive: $bpk announces/s, $bpk_c per tracker CPU-second (opentracker closes every connection)"
