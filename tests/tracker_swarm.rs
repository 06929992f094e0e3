//! The pure swarm and overlay logic, driven with injected time and a seeded rng (no
//! sockets, no sleeping): tier order, the overlay's shape, repair, fairness of origin slots,
//! plain random mode, memory caps, and a 2 DC x 4 rack x 25 host simulation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use blobpin::tracker::config::{OriginMatcher, Topology};
use blobpin::tracker::protocol::{AnnounceRequest, Event, PeerEntry, RequestError};
use blobpin::tracker::swarm::{Peer, Rng, SplitMix64, Swarm, SwarmSettings, Swarms, Tier};

const IH: [u8; 20] = [7; 20];
const EXPIRY: u64 = 30_000;
const ORIGIN: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// DC `d`, rack `r` is 127.0.(d * racks + r + 1).0/24.
fn topology(dcs: usize, racks: usize, overlay: &str) -> Topology {
    let mut t = format!("[overlay]\n{overlay}\n");
    for d in 0..dcs {
        t += &format!("[[dc]]\nname = \"dc{d}\"\n");
        for r in 0..racks {
            t += &format!(
                "[[dc.rack]]\nname = \"dc{d}-r{r}\"\ncidrs = [\"127.0.{}.0/24\"]\n",
                d * racks + r + 1
            );
        }
    }
    Topology::parse(&t).unwrap()
}

fn settings(t: Option<Topology>) -> SwarmSettings {
    SwarmSettings {
        expiry_ms: EXPIRY,
        suspect_ms: 7_500,
        max_swarms: 100,
        max_peers_per_swarm: 10_000,
        default_numwant: 50,
        max_numwant: 200,
        topology: t.map(std::sync::Arc::new),
        origin: OriginMatcher {
            addrs: vec![(IpAddr::V4(ORIGIN), None)],
            peer_id_prefix: None,
        },
    }
}

fn host(racks: usize, d: usize, r: usize, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        (d * racks + r + 1) as u8,
        (n + 1) as u8,
    ))
}

fn pid(ip: IpAddr) -> [u8; 20] {
    let mut id = *b"-TT0001-000000000000";
    let IpAddr::V4(v4) = ip else { unreachable!() };
    let s = format!("{:012}", u32::from(v4));
    id[8..].copy_from_slice(s.as_bytes());
    id
}

struct Sim {
    swarms: Swarms,
    rng: SplitMix64,
    now: u64,
}

impl Sim {
    fn new(t: Option<Topology>) -> Sim {
        Sim {
            swarms: Swarms::new(settings(t)),
            rng: SplitMix64(42),
            now: 1000,
        }
    }

    fn try_ann(
        &mut self,
        ip: IpAddr,
        left: u64,
        event: Event,
        numwant: Option<u64>,
    ) -> Result<Vec<(PeerEntry, Tier)>, RequestError> {
        let req = AnnounceRequest {
            info_hash: IH,
            peer_id: pid(ip),
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant,
            compact: true,
            no_peer_id: false,
            key_ok: true,
            key_present: false,
        };
        let mut out = Vec::new();
        self.swarms.announce(
            &req,
            SocketAddr::new(ip, 6881),
            self.now,
            &mut self.rng,
            &mut out,
        )?;
        Ok(out)
    }

    fn ann(&mut self, ip: IpAddr, left: u64) -> Vec<(PeerEntry, Tier)> {
        self.try_ann(ip, left, Event::None, None).unwrap()
    }

    fn swarm(&self) -> &Swarm {
        self.swarms.swarm(&IH).unwrap()
    }

    fn peer(&self, ip: IpAddr) -> &Peer {
        self.swarm().peer(&pid(ip)).unwrap()
    }

    fn parent_of(&self, ip: IpAddr) -> Option<&Peer> {
        self.peer(ip).parent.and_then(|p| self.swarm().peer(&p))
    }
}

/// Structural facts about the overlay, and its invariants checked.
struct Shape {
    /// Peers per DC fed from another DC or from the origin (primary edges).
    wan_edges: HashMap<u16, usize>,
    /// Peers per rack fed from outside the rack.
    heads: HashMap<u32, usize>,
    max_children: u32,
    origin_children_by_dc: HashMap<u16, usize>,
}

/// Checks every invariant of the overlay and returns its shape. Sources are origins and
/// complete peers; `via_backup` allows reaching a peer through backup edges too.
fn check(sw: &Swarm, via_backup: bool) -> Shape {
    let by_id: HashMap<[u8; 20], &Peer> = sw.peers().iter().map(|p| (p.id, p)).collect();
    let mut kids: HashMap<[u8; 20], Vec<[u8; 20]>> = HashMap::new();
    let mut shape = Shape {
        wan_edges: HashMap::new(),
        heads: HashMap::new(),
        max_children: 0,
        origin_children_by_dc: HashMap::new(),
    };
    let mut children_count: HashMap<[u8; 20], u32> = HashMap::new();
    for p in sw.peers() {
        if p.origin || p.left == 0 {
            assert!(p.parent.is_none(), "a source has a parent");
            continue;
        }
        let edges = if via_backup {
            vec![p.parent, p.backup]
        } else {
            vec![p.parent]
        };
        for e in edges.into_iter().flatten() {
            assert!(by_id.contains_key(&e), "edge to a peer that is gone");
            kids.entry(e).or_default().push(p.id);
        }
        if let Some(par) = p.parent.map(|id| by_id[&id]) {
            *children_count.entry(par.id).or_default() += 1;
            assert!(sw.ahead(par, p), "parent is not ahead of its child");
            if par.origin || par.loc.dc != p.loc.dc {
                *shape.wan_edges.entry(p.loc.dc).or_default() += 1;
            }
            if par.origin {
                *shape.origin_children_by_dc.entry(p.loc.dc).or_default() += 1;
            }
            if par.origin || par.loc != p.loc {
                *shape.heads.entry(p.loc.rack).or_default() += 1;
            }
        }
        if let Some(b) = p.backup {
            assert_ne!(Some(b), p.parent, "backup equals parent");
        }
    }
    for p in sw.peers() {
        assert_eq!(
            p.children,
            children_count.get(&p.id).copied().unwrap_or(0),
            "children counter drifted"
        );
        if !p.origin {
            shape.max_children = shape.max_children.max(p.children);
        }
    }
    // Reachability from the sources.
    let mut seen: HashSet<[u8; 20]> = HashSet::new();
    let mut queue: VecDeque<[u8; 20]> = sw
        .peers()
        .iter()
        .filter(|p| p.origin || p.left == 0)
        .map(|p| p.id)
        .collect();
    while let Some(id) = queue.pop_front() {
        if seen.insert(id) {
            queue.extend(kids.get(&id).into_iter().flatten().copied());
        }
    }
    let stranded: Vec<_> = sw
        .peers()
        .iter()
        .filter(|p| !seen.contains(&p.id))
        .map(|p| p.addr)
        .collect();
    assert!(
        stranded.is_empty(),
        "stranded (not reachable from a source): {stranded:?}"
    );
    shape
}

#[test]
fn answers_are_in_strict_tier_order_without_overlay() {
    let mut sim = Sim::new(Some(topology(2, 2, "enabled = false")));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    for n in 0..4 {
        sim.ann(host(2, 0, 0, n), 100); // asker's rack
        sim.ann(host(2, 0, 1, n), 100); // same DC
        sim.ann(host(2, 1, 0, n), 100); // remote
    }
    for n in 0..3 {
        sim.ann(IpAddr::V4(Ipv4Addr::new(127, 9, 9, n + 1)), 100); // in no rack
    }
    let asker = host(2, 0, 0, 9);
    for _ in 0..20 {
        let ans = sim.ann(asker, 100);
        let tiers: Vec<Tier> = ans.iter().map(|a| a.1).collect();
        let mut sorted = tiers.clone();
        sorted.sort();
        assert_eq!(tiers, sorted, "answer not in tier order");
        let count = |t| tiers.iter().filter(|&&x| x == t).count();
        assert_eq!(
            (count(Tier::Rack), count(Tier::Dc), count(Tier::Remote)),
            (4, 4, 4)
        );
        assert_eq!((count(Tier::Unknown), count(Tier::Origin)), (3, 1));
        // Each entry's tier is what its address says.
        for (e, t) in &ans {
            let IpAddr::V4(v4) = e.addr.ip() else {
                unreachable!()
            };
            let want = match v4.octets() {
                [127, 0, 0, 1] => Tier::Origin,
                [127, 0, 1, _] => Tier::Rack,
                [127, 0, 2, _] => Tier::Dc,
                [127, 0, 3, _] => Tier::Remote,
                _ => Tier::Unknown,
            };
            assert_eq!(*t, want, "{} in the wrong tier", e.addr);
        }
        assert!(
            ans.iter().all(|e| e.0.addr.ip() != asker),
            "asker in its own answer"
        );
    }
    // A small numwant keeps the nearest tiers only.
    let ans = sim.try_ann(asker, 100, Event::None, Some(6)).unwrap();
    let tiers: Vec<Tier> = ans.iter().map(|a| a.1).collect();
    assert_eq!(
        tiers,
        [
            Tier::Rack,
            Tier::Rack,
            Tier::Rack,
            Tier::Rack,
            Tier::Dc,
            Tier::Dc
        ]
    );
}

#[test]
fn overlay_answers_are_parent_and_backup_in_tier_order() {
    let mut sim = Sim::new(Some(topology(2, 2, "fanout = 1")));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    let g = host(2, 0, 0, 0);
    let a = host(2, 0, 0, 1);
    let b = host(2, 0, 0, 2);
    let ans = sim.ann(g, 100);
    assert_eq!(
        ans.len(),
        1,
        "the first host of a DC gets only the origin: {ans:?}"
    );
    assert_eq!(
        (ans[0].0.addr.ip(), ans[0].1),
        (IpAddr::V4(ORIGIN), Tier::Origin)
    );
    sim.ann(a, 100);
    let ans = sim.ann(b, 100);
    // b hangs under a (fanout 1: g is full), backup g, both in its rack.
    assert_eq!(sim.parent_of(b).unwrap().addr.ip(), a);
    let got: Vec<(IpAddr, Tier)> = ans.iter().map(|e| (e.0.addr.ip(), e.1)).collect();
    assert_eq!(got, [(a, Tier::Rack), (g, Tier::Rack)]);
    // A host in another DC: parent is the origin, listed after the same-DC backup if any.
    let r1 = host(2, 1, 0, 0);
    let r2 = host(2, 1, 1, 0);
    sim.ann(r1, 100);
    let ans = sim.ann(r2, 100);
    let tiers: Vec<Tier> = ans.iter().map(|e| e.1).collect();
    let mut sorted = tiers.clone();
    sorted.sort();
    assert_eq!(tiers, sorted);
    // numwant=1 gives only the nearest one; sources get nothing.
    assert_eq!(sim.try_ann(b, 100, Event::None, Some(1)).unwrap().len(), 1);
    assert!(sim.ann(IpAddr::V4(ORIGIN), 0).is_empty());
}

#[test]
fn overlay_shape_gateways_heads_fanout_and_backups() {
    let mut sim = Sim::new(Some(topology(2, 3, "gateways_per_dc = 2\nfanout = 2")));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    // Hosts join interleaved across DCs and racks.
    for n in 0..8 {
        for d in 0..2 {
            for r in 0..3 {
                sim.ann(host(3, d, r, n), 1000);
            }
        }
    }
    let shape = check(sim.swarm(), false);
    for dc in 0..2u16 {
        assert_eq!(
            shape.wan_edges.get(&dc).copied(),
            Some(2),
            "WAN crossings into dc{dc}"
        );
    }
    for rack in 0..6u32 {
        assert_eq!(
            shape.heads.get(&rack).copied(),
            Some(1),
            "heads of rack {rack}"
        );
    }
    assert!(
        shape.max_children <= 2,
        "fan-out {} above 2",
        shape.max_children
    );
    // Gateways sit in different racks; every host that is not a gateway has a backup in its own DC.
    let sw = sim.swarm();
    for d in 0..2 {
        let gw_racks: HashSet<u32> = sw
            .peers()
            .iter()
            .filter(|p| !p.origin && p.loc.dc == d && sim.parent_of(p.addr.ip()).unwrap().origin)
            .map(|p| p.loc.rack)
            .collect();
        assert_eq!(gw_racks.len(), 2, "gateways of dc{d} share a rack");
    }
    for p in sw.peers().iter().filter(|p| !p.origin) {
        let par = sim.parent_of(p.addr.ip()).unwrap();
        let gateway = par.origin || par.loc.dc != p.loc.dc;
        let backup = p.backup.and_then(|b| sw.peer(&b));
        if !gateway {
            let b = backup.unwrap_or_else(|| panic!("{} has no backup", p.addr));
            assert_eq!(b.loc.dc, p.loc.dc, "backup of {} outside its DC", p.addr);
            assert_ne!(
                b.parent,
                p.parent.filter(|_| b.loc != p.loc),
                "backup shares the parent across racks"
            );
        }
        if par.loc == p.loc {
            // Rack members are fed inside their rack.
            assert!(!par.origin);
        }
    }
    check(sim.swarm(), true);
}

#[test]
fn chains_with_fanout_one_and_late_joiners_use_spare_upload() {
    let mut sim = Sim::new(Some(topology(1, 1, "fanout = 1")));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    let hosts: Vec<IpAddr> = (0..5).map(|n| host(1, 0, 0, n)).collect();
    for h in &hosts {
        sim.ann(*h, 1000);
    }
    for w in hosts.windows(2) {
        assert_eq!(sim.parent_of(w[1]).unwrap().addr.ip(), w[0], "not a chain");
    }
    // Backups: the grandparent (same rack) from the third host on; none for the second (the
    // origin is never a backup: it would be a second source).
    assert!(sim.peer(hosts[1]).backup.is_none());
    for w in hosts.windows(3) {
        assert_eq!(
            sim.swarm()
                .peer(&sim.peer(w[2]).backup.unwrap())
                .unwrap()
                .addr
                .ip(),
            w[0]
        );
    }
    // The third host finishes: it drops its parent, whose slot is free again; a late joiner
    // takes that spare upload rather than going to the tail.
    sim.try_ann(hosts[2], 0, Event::Completed, None).unwrap();
    assert!(sim.peer(hosts[2]).parent.is_none());
    assert_eq!(sim.peer(hosts[1]).children, 0);
    assert_eq!(sim.swarm().counts().downloaded, 1);
    let late = host(1, 0, 0, 50);
    sim.ann(late, 1000);
    assert_eq!(sim.parent_of(late).unwrap().addr.ip(), hosts[1]);
    // The last host finishes too: the next late joiner takes the complete host with a free slot.
    sim.try_ann(late, 0, Event::Completed, None).unwrap();
    let late2 = host(1, 0, 0, 51);
    sim.ann(late2, 1000);
    assert_eq!(
        sim.parent_of(late2).unwrap().addr.ip(),
        late,
        "late joiner not under the spare complete host"
    );
    check(sim.swarm(), false);
}

#[test]
fn stopped_parent_hands_its_children_to_their_backups() {
    let mut sim = Sim::new(Some(topology(1, 1, "fanout = 1")));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    let hosts: Vec<IpAddr> = (0..4).map(|n| host(1, 0, 0, n)).collect();
    for h in &hosts {
        sim.ann(*h, 1000);
    }
    // hosts[2] <- hosts[1] <- hosts[0]; hosts[2]'s backup is hosts[0] (the grandparent).
    assert_eq!(
        sim.swarm()
            .peer(&sim.peer(hosts[2]).backup.unwrap())
            .unwrap()
            .addr
            .ip(),
        hosts[0]
    );
    sim.try_ann(hosts[1], 1000, Event::Stopped, None).unwrap();
    assert!(sim.swarm().peer(&pid(hosts[1])).is_none());
    // Immediately, before anyone announces again: nobody stranded.
    assert_eq!(sim.parent_of(hosts[2]).unwrap().addr.ip(), hosts[0]);
    check(sim.swarm(), false);
    // At its next announce it gets a new backup and the answer no longer names hosts[1].
    let ans = sim.ann(hosts[2], 1000);
    assert!(ans.iter().all(|e| e.0.addr.ip() != hosts[1]));
    // Only its parent and the origin are ahead of it now: no backup rather than the origin.
    assert!(sim.peer(hosts[2]).backup.is_none());
    // hosts[3] lost its backup (hosts[1], its grandparent): it gets hosts[0].
    let ans = sim.ann(hosts[3], 1000);
    assert!(ans.iter().all(|e| e.0.addr.ip() != hosts[1]));
    let b = sim
        .peer(hosts[3])
        .backup
        .expect("hosts[3] has a new backup");
    assert_eq!(sim.swarm().peer(&b).unwrap().addr.ip(), hosts[0]);
    check(sim.swarm(), true);
}

#[test]
fn silent_parent_is_replaced_after_two_intervals() {
    let mut sim = Sim::new(Some(topology(1, 1, "fanout = 1")));
    let o = IpAddr::V4(ORIGIN);
    sim.ann(o, 0);
    let hosts: Vec<IpAddr> = (0..4).map(|n| host(1, 0, 0, n)).collect();
    for h in &hosts {
        sim.ann(*h, 1000);
    }
    // Everyone but hosts[1] keeps announcing; after one interval it is still the parent.
    let silent = hosts[1];
    for step in 1..=5u64 {
        sim.now += 7_000;
        for h in std::iter::once(&o).chain(&hosts).filter(|&&h| h != silent) {
            sim.ann(*h, if *h == o { 0 } else { 1000 });
        }
        let parent = sim.parent_of(hosts[2]).unwrap().addr.ip();
        if step * 7_000 <= EXPIRY {
            assert_eq!(parent, silent, "replaced too early at step {step}");
        } else {
            assert_ne!(parent, silent, "not replaced after two intervals");
            assert!(
                sim.swarm().peer(&pid(silent)).is_none(),
                "silent peer still held"
            );
        }
    }
    check(sim.swarm(), true);
    // The sweep removes silent peers too.
    sim.now += EXPIRY + 1;
    sim.ann(hosts[0], 1000);
    // hosts[0]'s announce already dropped its silent parent (the origin); the sweep takes the rest.
    assert!(sim.swarm().peer(&pid(o)).is_none(), "silent parent kept");
    assert_eq!(
        sim.swarms.expire(sim.now),
        2,
        "two silent hosts expire, the announcer stays"
    );
    assert_eq!(sim.swarm().peers().len(), 1);
}

#[test]
fn origin_slots_are_shared_fairly_across_dcs() {
    let mut sim = Sim::new(Some(topology(
        2,
        4,
        "gateways_per_dc = 4\norigin_slots = 4\nfanout = 2",
    )));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    // DC 0 starts first and takes every origin slot it may (one gateway per rack).
    for n in 0..3 {
        for r in 0..4 {
            sim.ann(host(4, 0, r, n), 1000);
        }
    }
    let shape = check(sim.swarm(), false);
    assert_eq!(shape.origin_children_by_dc.get(&0).copied(), Some(4));
    // DC 1 starts later; it must still get its fair half of the origin.
    sim.now += 5_000;
    for n in 0..3 {
        for r in 0..4 {
            sim.ann(host(4, 1, r, n), 1000);
        }
    }
    let shape = check(sim.swarm(), false);
    assert_eq!(
        shape.origin_children_by_dc.get(&0).copied(),
        Some(2),
        "DC 0 kept more than its share"
    );
    assert_eq!(
        shape.origin_children_by_dc.get(&1).copied(),
        Some(2),
        "DC 1 starved"
    );
    assert_eq!(
        sim.swarm().peer(&pid(IpAddr::V4(ORIGIN))).unwrap().children,
        4
    );
    // Re-announces keep it stable.
    for n in 0..3 {
        for d in 0..2 {
            for r in 0..4 {
                sim.ann(host(4, d, r, n), 1000);
            }
        }
    }
    let shape = check(sim.swarm(), true);
    assert_eq!(
        shape.origin_children_by_dc.get(&0),
        shape.origin_children_by_dc.get(&1)
    );
}

#[test]
fn without_topology_answers_are_random_and_bounded() {
    let mut sim = Sim::new(None);
    let ips: Vec<IpAddr> = (0..60)
        .map(|n| IpAddr::V4(Ipv4Addr::new(127, 1, 0, n + 1)))
        .collect();
    for ip in &ips {
        sim.ann(*ip, 10);
    }
    let mut firsts = HashSet::new();
    for _ in 0..20 {
        let ans = sim.try_ann(ips[0], 10, Event::None, Some(10)).unwrap();
        assert_eq!(ans.len(), 10);
        assert!(ans
            .iter()
            .all(|e| e.0.addr.ip() != ips[0] && e.1 == Tier::Unknown));
        let distinct: HashSet<_> = ans.iter().map(|e| e.0.addr).collect();
        assert_eq!(distinct.len(), 10, "duplicates in an answer");
        firsts.insert(ans[0].0.addr);
    }
    assert!(
        firsts.len() > 5,
        "answers are not random: {} distinct first peers",
        firsts.len()
    );
    // Huge numwant is bounded by the maximum (200) and the swarm (59 others); default is 50.
    assert_eq!(
        sim.try_ann(ips[0], 10, Event::None, Some(u64::MAX))
            .unwrap()
            .len(),
        59
    );
    assert_eq!(sim.ann(ips[0], 10).len(), 50);
}

#[test]
fn memory_is_bounded_by_swarm_and_peer_caps() {
    let mut s = settings(None);
    s.max_swarms = 3;
    s.max_peers_per_swarm = 5;
    let mut swarms = Swarms::new(s);
    let mut rng = SplitMix64(1);
    let mut out = Vec::new();
    let req = |h: u8, p: u8| AnnounceRequest {
        info_hash: [h; 20],
        peer_id: [p; 20],
        port: 1,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: Event::Started,
        numwant: None,
        compact: true,
        no_peer_id: false,
        key_ok: true,
        key_present: false,
    };
    let a = SocketAddr::from(([127, 0, 0, 2], 1));
    for h in 0..3 {
        swarms
            .announce(&req(h, 0), a, 0, &mut rng, &mut out)
            .unwrap();
    }
    assert_eq!(
        swarms.announce(&req(9, 0), a, 0, &mut rng, &mut out),
        Err(RequestError::TooManySwarms)
    );
    for p in 1..5 {
        swarms
            .announce(&req(0, p), a, 0, &mut rng, &mut out)
            .unwrap();
    }
    assert_eq!(
        swarms.announce(&req(0, 77), a, 0, &mut rng, &mut out),
        Err(RequestError::SwarmFull)
    );
    // Known peers still re-announce; a stopped peer frees its place.
    swarms
        .announce(&req(0, 3), a, 0, &mut rng, &mut out)
        .unwrap();
    let mut stop = req(0, 3);
    stop.event = Event::Stopped;
    swarms.announce(&stop, a, 0, &mut rng, &mut out).unwrap();
    swarms
        .announce(&req(0, 77), a, 0, &mut rng, &mut out)
        .unwrap();
    assert_eq!(swarms.len(), 3);
}

/// 2 DCs x 4 racks x 25 hosts over simulated time: hosts join in random order, progress
/// only from their parent (in-order, never past it), complete, and one host with children
/// dies mid-way. Checked after every round: every host reachable from a source, WAN edges
/// per DC within the configured count, fan-out within bounds; at the end every host is done.
#[test]
fn simulation_two_dcs_four_racks_twenty_five_hosts() {
    const SIZE: u64 = 100;
    let gateways = 2;
    let mut sim = Sim::new(Some(topology(
        2,
        4,
        "gateways_per_dc = 2\nfanout = 2\norigin_slots = 8",
    )));
    let origin = IpAddr::V4(ORIGIN);
    let mut hosts: Vec<IpAddr> = (0..2)
        .flat_map(|d| (0..4).flat_map(move |r| (0..25).map(move |n| host(4, d, r, n))))
        .collect();
    // Shuffle the join order with the seeded rng.
    let mut order_rng = SplitMix64(7);
    for i in (1..hosts.len()).rev() {
        let j = order_rng.below(i + 1);
        hosts.swap(i, j);
    }
    let mut left: HashMap<IpAddr, u64> = HashMap::new();
    let mut dead: HashSet<IpAddr> = HashSet::new();
    let mut killed = None;
    sim.ann(origin, 0);
    let mut joined = 0;
    for round in 0..400 {
        sim.now += 5_000;
        // Ten new hosts join per round.
        for h in hosts.iter().skip(joined).take(10) {
            left.insert(*h, SIZE);
        }
        joined = (joined + 10).min(hosts.len());
        // Progress: a host moves up to 4 units but never past what its parent has.
        let snapshot = left.clone();
        for (h, l) in left.iter_mut() {
            if dead.contains(h) || *l == 0 {
                continue;
            }
            let Some(sw) = sim.swarms.swarm(&IH) else {
                continue;
            };
            let Some(p) = sw.peer(&pid(*h)) else { continue };
            let have_parent = p.parent.and_then(|id| sw.peer(&id));
            if let Some(par) = have_parent {
                let par_left = if par.origin {
                    0
                } else {
                    snapshot.get(&par.addr.ip()).copied().unwrap_or(SIZE)
                };
                *l = (*l).saturating_sub(4).max(par_left);
            }
        }
        sim.ann(origin, 0);
        for h in hosts.iter().take(joined) {
            if dead.contains(h) {
                continue;
            }
            let l = left[h];
            let was_complete = sim.swarm().peer(&pid(*h)).is_some_and(|p| p.left == 0);
            let ev = if l == 0 && !was_complete {
                Event::Completed
            } else {
                Event::None
            };
            sim.try_ann(*h, l, ev, None).unwrap();
        }
        // Mid-way, the host with the most children dies without a word.
        if round == 12 {
            let sw = sim.swarm();
            let victim = sw
                .peers()
                .iter()
                .filter(|p| !p.origin && p.left > 0)
                .max_by_key(|p| p.children)
                .unwrap();
            assert!(victim.children > 0);
            killed = Some(victim.addr.ip());
            dead.insert(victim.addr.ip());
        }
        let shape = check(sim.swarm(), true);
        for (dc, n) in &shape.wan_edges {
            assert!(*n <= gateways, "round {round}: {n} WAN edges into dc{dc}");
        }
        assert!(
            shape.max_children <= 2,
            "round {round}: fan-out {}",
            shape.max_children
        );
        if let Some(k) = killed {
            if sim.now > 12 * 5_000 + 5_000 + 2 * EXPIRY + 5_000 {
                assert!(
                    sim.swarm().peer(&pid(k)).is_none(),
                    "dead host still in the overlay"
                );
                check(sim.swarm(), false);
            }
        }
        if joined == hosts.len() && left.iter().all(|(h, l)| *l == 0 || dead.contains(h)) {
            assert!(round > 25, "finished implausibly fast");
            let done = left.values().filter(|&&l| l == 0).count();
            assert_eq!(done, 199, "every live host completes");
            return;
        }
    }
    let stuck: Vec<_> = left
        .iter()
        .filter(|(h, l)| **l > 0 && !dead.contains(*h))
        .collect();
    panic!("hosts never completed: {stuck:?}");
}

#[test]
fn origin_is_recognised_by_address_prefix_or_initial_seed() {
    let a: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let pid = *b"-BPO001-000000000000";
    // Unconfigured: a peer whose first announce has left=0 seeds from the start.
    let none = OriginMatcher::default();
    assert!(none.is_origin(a, &pid, 0));
    assert!(!none.is_origin(a, &pid, 5));
    // By address (with and without port) or by peer id prefix; then left does not matter.
    let by_addr = OriginMatcher {
        addrs: vec![OriginMatcher::parse_addr("127.0.0.1:7000").unwrap()],
        peer_id_prefix: None,
    };
    assert!(by_addr.is_origin(a, &pid, 5));
    assert!(!by_addr.is_origin("127.0.0.1:7001".parse().unwrap(), &pid, 0));
    let by_ip = OriginMatcher {
        addrs: vec![OriginMatcher::parse_addr("127.0.0.1").unwrap()],
        peer_id_prefix: None,
    };
    assert!(by_ip.is_origin("[::ffff:127.0.0.1]:9".parse().unwrap(), &pid, 5));
    let by_prefix = OriginMatcher {
        addrs: vec![],
        peer_id_prefix: Some(b"-BPO".to_vec()),
    };
    assert!(by_prefix.is_origin(a, &pid, 5));
    assert!(!by_prefix.is_origin(a, b"-rQ9100-000000000000", 0));
    assert!(OriginMatcher::parse_addr("origin.example").is_err());
    // In a swarm: a host that completes later is a seed, not an origin, and keeps no parent.
    let mut s = settings(Some(topology(1, 1, "")));
    s.origin = OriginMatcher::default();
    let mut sim = Sim {
        swarms: Swarms::new(s),
        rng: SplitMix64(3),
        now: 0,
    };
    let seed = host(1, 0, 0, 0);
    let h = host(1, 0, 0, 1);
    sim.ann(seed, 0);
    sim.ann(h, 10);
    assert!(sim.peer(seed).origin && !sim.peer(h).origin);
    assert_eq!(sim.parent_of(h).unwrap().addr.ip(), seed);
    sim.try_ann(h, 0, Event::Completed, None).unwrap();
    assert!(!sim.peer(h).origin && sim.peer(h).parent.is_none());
    assert_eq!(sim.swarm().counts().complete, 2);
}

#[test]
fn start_together_noise_in_left_does_not_send_a_rack_to_the_origin() {
    // Measured in the 2-DC benchmark: the first host of a rack joined before its primer piece
    // was on disk (left = the whole blob), the others one piece less; with a strict `left`
    // comparison the head was "behind" them and they were sent to the origin.
    let mut sim = Sim::new(Some(topology(1, 1, "fanout = 2")));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    let blob = 64 << 20;
    let piece = 256 << 10;
    let hosts: Vec<IpAddr> = (0..3).map(|n| host(1, 0, 0, n)).collect();
    sim.ann(hosts[0], blob);
    sim.ann(hosts[1], blob - piece);
    sim.ann(hosts[2], blob - piece);
    assert!(sim.parent_of(hosts[0]).unwrap().origin);
    assert_eq!(sim.parent_of(hosts[1]).unwrap().addr.ip(), hosts[0]);
    let p2 = sim.parent_of(hosts[2]).unwrap();
    assert!(!p2.origin && hosts.contains(&p2.addr.ip()), "{}", p2.addr);
    assert_eq!(
        check(sim.swarm(), false)
            .origin_children_by_dc
            .values()
            .sum::<usize>(),
        1
    );
    // A real lead (more than 1/64 of the blob) still counts: a newcomer that already holds
    // half the blob is not put under a host that holds nothing.
    let ahead_host = host(1, 0, 0, 9);
    sim.ann(ahead_host, blob / 2);
    let p = sim.parent_of(ahead_host).unwrap();
    assert!(p.origin, "parent {} is behind", p.addr);
    check(sim.swarm(), false);
}

#[test]
fn a_dc_holding_a_complete_copy_never_pulls_it_over_the_wan_again() {
    let mut sim = Sim::new(Some(topology(2, 2, "fanout = 1")));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    let gw = host(2, 1, 0, 0);
    let b = host(2, 1, 0, 1);
    sim.ann(gw, 1000);
    sim.ann(b, 1000);
    assert!(sim.parent_of(gw).unwrap().origin);
    assert_eq!(sim.parent_of(b).unwrap().addr.ip(), gw);
    // The gateway completes (it drops its origin parent); a host joining the DC afterwards,
    // in either rack, is fed inside the DC, never by the origin or the other DC.
    sim.ann(gw, 0);
    for late in [host(2, 1, 0, 5), host(2, 1, 1, 5)] {
        sim.ann(late, 1000);
        let p = sim.parent_of(late).unwrap();
        assert!(
            !p.origin && p.loc.dc == sim.peer(late).loc.dc,
            "{late} fed by {}",
            p.addr
        );
    }
    let shape = check(sim.swarm(), false);
    assert_eq!(shape.origin_children_by_dc.get(&1).copied().unwrap_or(0), 0);
}

#[test]
fn a_full_rack_takes_a_spare_parent_in_the_dc_before_overloading_one() {
    let mut sim = Sim::new(Some(topology(1, 2, "fanout = 1")));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    // Rack 0's head, then rack 1's head under it: the rack-0 head is full.
    let h0 = host(2, 0, 0, 0);
    let h1 = host(2, 0, 1, 0);
    sim.ann(h0, 1000);
    sim.ann(h1, 1000);
    assert_eq!(sim.parent_of(h1).unwrap().addr.ip(), h0);
    // The second host of rack 0: nothing spare in its rack; it goes under rack 1's head
    // rather than making h0 feed two.
    let x = host(2, 0, 0, 1);
    sim.ann(x, 1000);
    assert_eq!(sim.parent_of(x).unwrap().addr.ip(), h1);
    assert_eq!(check(sim.swarm(), false).max_children, 1);
}

#[test]
fn only_gateways_have_backups_outside_their_dc() {
    let mut sim = Sim::new(Some(topology(2, 2, "fanout = 2")));
    sim.ann(IpAddr::V4(ORIGIN), 0);
    let mut all = Vec::new();
    for n in 0..4 {
        for d in 0..2 {
            for r in 0..2 {
                all.push(host(2, d, r, n));
            }
        }
    }
    for round in 0..3u64 {
        for (k, h) in all.iter().enumerate() {
            sim.ann(*h, 1000 - round * 100 - k as u64);
        }
        sim.now += 1000;
    }
    let sw = sim.swarm();
    let mut with_backup = 0;
    for p in sw.peers().iter().filter(|p| !p.origin) {
        let par = p.parent.and_then(|b| sw.peer(&b)).expect("placed");
        let gateway = par.origin || par.loc.dc != p.loc.dc;
        if let Some(b) = p.backup.and_then(|b| sw.peer(&b)) {
            with_backup += 1;
            if !gateway {
                assert!(!b.origin, "{} has the origin as backup", p.addr);
                assert_eq!(
                    b.loc.dc, p.loc.dc,
                    "{} has a remote backup {}",
                    p.addr, b.addr
                );
            }
        }
    }
    assert!(with_backup >= 8, "only {with_backup} backups");
    // The second DC's gateway is backed by the first DC (it survives the origin's death).
    let gw = sw
        .peers()
        .iter()
        .find(|p| p.loc.dc == 1 && p.parent.and_then(|b| sw.peer(&b)).is_some_and(|b| b.origin))
        .expect("a gateway in dc1");
    let b = sw.peer(&gw.backup.expect("gateway backup")).unwrap();
    assert!(!b.origin && b.loc.dc == 0, "backup {}", b.addr);
}

#[test]
fn a_restarting_child_gets_its_silent_parent_replaced_before_the_expiry() {
    let mut sim = Sim::new(Some(topology(1, 1, "fanout = 1")));
    let o = IpAddr::V4(ORIGIN);
    sim.ann(o, 0);
    let hosts: Vec<IpAddr> = (0..3).map(|n| host(1, 0, 0, n)).collect();
    for h in &hosts {
        sim.ann(*h, 1000);
    }
    assert_eq!(sim.parent_of(hosts[2]).unwrap().addr.ip(), hosts[1]);
    // hosts[1] is killed (no `stopped`). 5 s later a restart of its child keeps it: it may
    // just be between announces.
    sim.now += 5_000;
    sim.ann(o, 0);
    sim.ann(hosts[0], 900);
    sim.try_ann(hosts[2], 1000, Event::Started, None).unwrap();
    assert_eq!(sim.parent_of(hosts[2]).unwrap().addr.ip(), hosts[1]);
    // 8 s after its last announce, well within the expiry: a plain announce keeps it, a
    // restart (the stalled child reconnecting) has it removed and the child re-parented.
    sim.now += 3_000;
    const { assert!(8_000 < EXPIRY) };
    sim.ann(o, 0);
    sim.ann(hosts[0], 800);
    sim.ann(hosts[2], 1000);
    assert_eq!(sim.parent_of(hosts[2]).unwrap().addr.ip(), hosts[1]);
    let ans = sim.try_ann(hosts[2], 1000, Event::Started, None).unwrap();
    assert!(sim.swarm().peer(&pid(hosts[1])).is_none());
    assert_eq!(sim.parent_of(hosts[2]).unwrap().addr.ip(), hosts[0]);
    assert!(ans.iter().all(|e| e.0.addr.ip() != hosts[1]), "{ans:?}");
    check(sim.swarm(), false);
}
