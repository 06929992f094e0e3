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
# say; blobpin gets the same list through --allow. Extra rows: blobpin without topology,
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
pids+=($!)
bp=target/release/blobpin
common=(--allow "$work/whitelist.txt" --interval 1800 --min-interval 900 --max-numwant 200)
RUST_LOG=warn "$bp" tracker --listen "127.0.0.1:$BP_PORT" --topology "$work/topology.toml" --threads 1 "${common[@]}" >/dev/null &
pids+=($!)
RUST_LOG=warn "$bp" tracker --listen "127.0.0.1:$BP_PLAIN_PORT" --threads 1 "${common[@]}" >/dev/null &
pids+=($!)
RUST_LOG=warn "$bp" tracker --listen "127.0.0.1:$BP_MT_PORT" --topology "$work/topology.toml" "${common[@]}" >/dev/null &
pids+=($!)
for port in "$OT_PORT" "$BP_PORT" "$BP_PLAIN_PORT" "$BP_MT_PORT"; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

args=(--seconds "$SECS" --connections "$CONNS" --swarms "$SWARMS" --peers "$PEERS" --numwant "$NUMWANT" --threads 1)
rate() { sed -n 's/^announces\/s \([0-9]*\).*/\1/p'; }
run() { # label port extra-args...
    local label=$1 port=$2
    shift 2
    local out
    out=$(load --target "127.0.0.1:$port" "${args[@]}" "$@")
    printf '%-52s %s\n' "$label" "$out" >&2
    echo "$out" | rate
}

echo "tracker announce rate: $SWARMS swarms x $PEERS peers, numwant $NUMWANT, $CONNS connections, ${SECS}s each (noisy: shared machine)" >&2
ot=$(run "opentracker (1 thread), one announce per connection" "$OT_PORT" --close)
bpt=$(run "blobpin topology+overlay, 1 thread, one per connection" "$BP_PORT" --close)
bpp=$(run "blobpin no topology, 1 thread, one per connection" "$BP_PLAIN_PORT" --close)
bpk=$(run "blobpin topology+overlay, 1 thread, keep-alive" "$BP_PORT")
bpm=$(run "blobpin topology+overlay, all CPUs, one per connection" "$BP_MT_PORT" --close)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "ratio blobpin/opentracker (topology, 1 thread, per connection): $(ratio "$bpt" "$ot")"
echo "ratio blobpin/opentracker (no topology, 1 thread, per connection): $(ratio "$bpp" "$ot")"
echo "ratio blobpin/opentracker (topology, all CPUs, per connection): $(ratio "$bpm" "$ot")"
echo "ratio blobpin keep-alive / opentracker per connection: $(ratio "$bpk" "$ot")"
