//! Fuzz target: the tracker's request path on arbitrary bytes. The input is an HTTP request
//! head; it goes through the head parser, the announce and scrape query parsers (with and
//! without a shared key), and every announce that parses is applied to a swarm with a
//! topology and the overlay, and its answer bencoded. Nothing may panic, and the answer
//! never holds more peers than allowed.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use blobpin::tracker::config::{OriginMatcher, Topology};
use blobpin::tracker::protocol::{
    encode_announce, parse_announce, parse_scrape, split_target, PeerEntry,
};
use blobpin::tracker::server::parse_request_head;
use blobpin::tracker::swarm::{SplitMix64, SwarmSettings, Swarms};
use libfuzzer_sys::fuzz_target;

const TOPOLOGY: &str = r#"
[overlay]
fanout = 1
[[dc]]
name = "a"
[[dc.rack]]
name = "a1"
cidrs = ["127.0.1.0/24", "::1/128"]
[[dc]]
name = "b"
[[dc.rack]]
name = "b1"
cidrs = ["127.0.2.0/24"]
"#;

fuzz_target!(|data: &[u8]| {
    let target = match parse_request_head(data) {
        Some((_method, target, _keep_alive)) => target,
        None => data,
    };
    let (_path, query) = split_target(target);
    let _ = parse_scrape(query);
    let _ = parse_announce(query, Some(b"secret"));
    let Ok(req) = parse_announce(query, None) else {
        return;
    };
    let mut swarms = Swarms::new(SwarmSettings {
        expiry_ms: 30_000,
        max_swarms: 4,
        max_peers_per_swarm: 16,
        default_numwant: 50,
        max_numwant: 8,
        topology: Some(Arc::new(Topology::parse(TOPOLOGY).unwrap())),
        origin: OriginMatcher::default(),
    });
    let mut rng = SplitMix64(data.len() as u64);
    let mut out = Vec::new();
    // The same request from a few places and times, so joins, repairs and expiry all run.
    for (i, from) in ["127.0.1.1", "127.0.2.1", "127.0.1.2", "10.0.0.1", "[::1]"]
        .iter()
        .enumerate()
    {
        let ip = from.trim_matches(|c| c == '[' || c == ']').parse().unwrap();
        let mut r = req.clone();
        r.peer_id[0] ^= i as u8;
        let now = i as u64 * 20_000;
        if let Ok(counts) =
            swarms.announce(&r, SocketAddr::new(ip, r.port), now, &mut rng, &mut out)
        {
            assert!(out.len() <= 8, "answer above max_numwant");
            let peers: Vec<PeerEntry> = out.iter().map(|p| p.0).collect();
            let mut body = Vec::new();
            encode_announce(&mut body, 15, 5, counts, &peers, r.compact, r.no_peer_id);
        }
    }
    swarms.expire(1_000_000);
});
