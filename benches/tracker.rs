//! criterion benches of the tracker's pure hot paths: parsing an announce query (as librqbit
//! sends it), and `Swarms::announce` for a re-announce in a 1,000-peer swarm in each mode
//! (random without topology, tier-ordered, overlay) and for a join into the overlay.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use blobpin::tracker::config::{OriginMatcher, Topology};
use blobpin::tracker::protocol::{
    encode_announce, parse_announce, percent_encode, AnnounceRequest, Event, PeerEntry,
};
use blobpin::tracker::swarm::{SplitMix64, SwarmSettings, Swarms, Tier};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn query() -> String {
    format!(
        "info_hash={}&peer_id={}&event=started&port=51000&uploaded=0&downloaded=1073741824&left=0&compact=1\
         &no_peer_id=0&key=3635711595&numwant=50",
        percent_encode(&[0xA7; 20]),
        percent_encode(b"-rQ9100-XXXXXXXXXXXX")
    )
}

fn topology(overlay: bool) -> Topology {
    let mut t = format!("[overlay]\nenabled = {overlay}\n");
    for d in 0..2 {
        t += &format!("[[dc]]\nname = \"dc{d}\"\n");
        for r in 0..4 {
            t += &format!("[[dc.rack]]\nname = \"dc{d}-r{r}\"\ncidrs = [\"10.{d}.{r}.0/24\"]\n");
        }
    }
    Topology::parse(&t).unwrap()
}

fn swarm_with(topology: Option<Topology>, peers: u32) -> Swarms {
    let mut s = Swarms::new(SwarmSettings {
        expiry_ms: 60_000,
        suspect_ms: 7_500,
        max_swarms: 10,
        max_peers_per_swarm: 100_000,
        default_numwant: 50,
        max_numwant: 200,
        topology: topology.map(Arc::new),
        origin: OriginMatcher {
            addrs: vec![(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), None)],
            peer_id_prefix: None,
        },
    });
    let mut rng = SplitMix64(1);
    let mut out = Vec::new();
    s.announce(
        &req(u32::MAX, 0),
        SocketAddr::from(([10, 9, 9, 9], 1)),
        0,
        &mut rng,
        &mut out,
    )
    .unwrap();
    for n in 0..peers {
        s.announce(&req(n, 1000), addr(n), 0, &mut rng, &mut out)
            .unwrap();
    }
    s
}

fn req(n: u32, left: u64) -> AnnounceRequest {
    let mut peer_id = [b'x'; 20];
    peer_id[..4].copy_from_slice(&n.to_be_bytes());
    AnnounceRequest {
        info_hash: [1; 20],
        peer_id,
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::None,
        numwant: Some(50),
        compact: true,
        no_peer_id: false,
        key_ok: true,
        key_present: false,
    }
}

fn addr(n: u32) -> SocketAddr {
    SocketAddr::from((
        [
            10,
            ((n / 4) % 2) as u8,
            (n % 4) as u8,
            (n / 8 % 250) as u8 + 1,
        ],
        6881,
    ))
}

fn benches(c: &mut Criterion) {
    let q = query();
    c.bench_function("parse_announce", |b| {
        b.iter(|| parse_announce(black_box(q.as_bytes()), None).unwrap())
    });
    let peers: Vec<PeerEntry> = (0..50)
        .map(|n| PeerEntry {
            addr: addr(n),
            peer_id: req(n, 0).peer_id,
        })
        .collect();
    let mut out = Vec::with_capacity(512);
    c.bench_function("encode_announce_50_peers", |b| {
        b.iter(|| {
            out.clear();
            encode_announce(
                &mut out,
                15,
                5,
                Default::default(),
                black_box(&peers),
                true,
                false,
            );
        })
    });
    for (name, topo) in [
        ("random", None),
        ("ordered", Some(topology(false))),
        ("overlay", Some(topology(true))),
    ] {
        let mut s = swarm_with(topo, 1000);
        let mut rng = SplitMix64(2);
        let mut out: Vec<(PeerEntry, Tier)> = Vec::new();
        let mut n = 0u32;
        c.bench_function(&format!("reannounce_1000_peers_{name}"), |b| {
            b.iter(|| {
                n = (n + 1) % 1000;
                s.announce(&req(n, 1000), addr(n), 1, &mut rng, &mut out)
                    .unwrap();
                black_box(out.len())
            })
        });
    }
    c.bench_function("join_and_leave_overlay_1000_peers", |b| {
        let mut s = swarm_with(Some(topology(true)), 1000);
        let mut rng = SplitMix64(3);
        let mut out = Vec::new();
        b.iter(|| {
            let mut r = req(5000, 1000);
            s.announce(&r, addr(5000), 1, &mut rng, &mut out).unwrap();
            r.event = Event::Stopped;
            s.announce(&r, addr(5000), 1, &mut rng, &mut out).unwrap();
        })
    });
}

criterion_group!(tracker, benches);
criterion_main!(tracker);
