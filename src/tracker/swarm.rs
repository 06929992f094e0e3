//! Swarm state and the overlay: who fetches from whom. Pure: the caller passes the time
//! (milliseconds on any monotonic clock) and the randomness ([`Rng`]); no sockets, no tokio.
//!
//! # Three modes
//! - **No topology**: answers are random, like opentracker: a random contiguous run of the
//!   swarm's peer list (wrapping), skipping the asker.
//! - **Topology, `overlay.enabled = false`**: every peer, ordered in strict tiers (see
//!   [`Tier`]) and random inside a tier, cut at `numwant`.
//! - **Topology with the overlay (default)**: the tracker builds a forest rooted at the origins
//!   and hands each downloading host only its *parent* and its *backup parent*, ordered by
//!   tier. Seeds and origins get no peers (their children connect to them).
//!
//! # Why a shaped overlay
//! librqbit 9.1 fetches pieces in file order and never chokes: hosts handed random peers all
//! want the same next piece and end up pulling from the origin; a host that connects holding
//! zero pieces is never sent a HAVE. What works is each host being fed by exactly one parent
//! that is *ahead* of it: an in-order picker then pipelines just behind its parent. Hosts
//! that start together report the same `left`, so the earlier joiner counts as ahead; each
//! host should therefore hold one valid piece before it announces (the primer of
//! reference/librqbit-pipelining.md), or a partial parent never sends it HAVEs.
//!
//! # Terms
//! - *origin*: a peer the [`OriginMatcher`] recognises; the roots of the forest.
//! - *ahead*: P is ahead of X when P is an origin, P is complete (`left=0`), or P has less
//!   left to fetch by more than 1/64 of the blob, or they are level within that and P
//!   joined first.
//!   A parent and a backup are always ahead of the child when chosen.
//! - *placed*: an origin, a complete peer, or a peer with a parent: only placed peers feed
//!   others, so everything placed is connected to an origin (or is itself a source).
//! - *gateway*: a peer whose parent is an origin or in another DC (a WAN crossing when the
//!   origin is elsewhere). *Rack head*: a peer whose parent is outside its rack.
//! - *spare*: a non-origin peer with fewer than `fanout` children; an origin with a free
//!   slot in its DC's fair share (below).
//!
//! # Choosing a parent for host X (first announce, or when its parent is gone)
//! 1. If X's rack has no head yet, X becomes the rack's head:
//!    - while X's DC has fewer than `gateways_per_dc` gateways, from the origin (fair slot);
//!    - otherwise from a spare peer in another rack of the same DC;
//!    - otherwise (still below the gateway count) from a spare peer in another DC.
//! 2. Otherwise from a spare peer in its own rack (while the rack has fewer than
//!    `heads_per_rack` heads, a spare peer elsewhere in the DC first); else from a spare
//!    peer elsewhere in the DC (rack uplink is cheaper than an overloaded parent); then,
//!    below the gateway count, from the origin or a spare remote peer. A complete host
//!    counts as a head of its rack and a gateway of its DC: once a DC holds the blob, it
//!    never pulls it over the WAN again.
//! 3. Never stranded: if every cap is reached, the best peer ahead of X in its rack, then in
//!    its DC, then an origin, then anyone ahead, even beyond `fanout`.
//!
//! Among candidates the best is: complete before downloading, then least `left` (most
//! ahead), then smallest depth in the tree (shallow trees), then earliest joiner. Late joiners
//! therefore attach to complete hosts with spare upload first. With `fanout = 1` (the
//! default) racks form chains, larger values give trees of that degree. Chains won in the
//! emulated benchmark (32 MiB, 16 hosts, 50 Mbit NICs, syncs with the waker of
//! `fetch::waker`): one rack of 16, 12.2-12.8 s with chains against 14.7-16.5 s with
//! `fanout = 2`; 2 DCs, 16.3-24.2 s against 26.7-28.8 s. In a tree every level splits a
//! parent's upload, and an in-order picker cannot make up for it with other sources.
//!
//! # Backup parent
//! A downloading host also gets a backup when one exists: a peer ahead of it and not in its
//! subtree, in its rack, else elsewhere in its DC; peers that share its parent come last
//! (they would fail together), then complete peers; among the rest the *least* ahead (most
//! `left`): the backup is connected and librqbit takes pieces from it too, so one far ahead
//! (a grandparent high in a tree, a complete host) would draw every grandchild's requests
//! while one about level with the host adds little load. In a chain that is the
//! grandparent. Answers list parent and backup, so the client is connected to both and a
//! dead parent costs seconds.
//!
//! Only a *gateway* (a host fed by an origin or from another DC) may have a backup outside
//! its DC: a remote peer ahead of it, else an origin. Its DC takes the blob over the WAN
//! through it anyway, so a second source there costs no extra WAN copy, and it keeps the DC
//! fed if the origin dies. Any other host's backup is in its DC: librqbit downloads from
//! every peer it is connected to, in file order, and takes a piece from whichever is
//! faster, so a backup is in fact a second source. Measured in the emulated 2-DC benchmark
//! (32 MiB, 16 hosts) when any host's backup could be the origin or remote: second hosts of
//! a rack took 28-30 MiB of 32 from their origin backup, the origin sent 3.9 copies and 2.0
//! copies crossed the WAN into the second DC, where the overlay means one.
//!
//! # Repair
//! A peer that sends `stopped`, or is silent for two intervals (checked lazily when a
//! child announces, and by [`Swarms::expire`]), or is silent for 1.5 minimum intervals when
//! one of its children announces `started` again, is removed. The last rule is for killed
//! hosts: a blobpin sync whose download stalls reconnects (librqbit re-announces with
//! `started`), and librqbit announces every minimum interval, so a parent that missed 1.5 of
//! them while its child starves is gone; measured in the 2-DC benchmark with 4 of 16 hosts
//! killed (a DC's gateway among them), the DC behind it waited the whole 30 s expiry.
//! A removed peer's children are each moved to
//! its backup at once (unless that would make a cycle) and gets a new backup at its next
//! announce. A parent pushed above `fanout` by such a move sheds each child that announces
//! while it is over, when a spare parent exists elsewhere. A peer that completes drops its
//! parent, freeing the slot for late joiners.
//!
//! # Fair origin slots
//! An origin has `origin_slots` children. The DCs with downloading hosts share them evenly:
//! `share = max(1, slots x origins / active DCs)`. A DC below its share takes a free slot; if
//! none is free, the DC furthest above its share gives one up: its least established
//! origin-fed host is moved under another host of its own DC. A DC that starts later is
//! therefore never starved by one that started first (Kraken issue #244).
//!
//! Costs: in random and overlay modes a re-announce is O(1) hash lookups plus O(numwant);
//! the tier-ordered mode buckets the whole swarm, O(peers). In the overlay, choosing a parent
//! or backup scans the swarm (O(peers)), which happens on joins and repairs; a search that
//! found nothing better (no backup, no less loaded parent) is retried no sooner than a sixth
//! of the expiry later.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use super::config::{Loc, OriginMatcher, OverlayParams, Topology, TrackerConfig};
use super::protocol::{
    AnnounceRequest, Event, InfoHash, PeerEntry, PeerId, RequestError, SwarmCounts,
};

/// Randomness passed in by the caller.
pub trait Rng {
    fn next_u64(&mut self) -> u64;
    /// Uniform-enough integer below `n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// SplitMix64: small, fast and seedable; good enough to spread peers.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Tier of a peer in an answer, relative to the asker; answers are sorted by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Same rack.
    Rack,
    /// Same DC, another rack.
    Dc,
    /// Another DC.
    Remote,
    /// Either side's address is in no rack of the topology (or there is no topology).
    Unknown,
    /// An origin.
    Origin,
}

impl Tier {
    pub const ALL: [Tier; 5] = [
        Tier::Rack,
        Tier::Dc,
        Tier::Remote,
        Tier::Unknown,
        Tier::Origin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Rack => "rack",
            Tier::Dc => "dc",
            Tier::Remote => "remote",
            Tier::Unknown => "unknown",
            Tier::Origin => "origin",
        }
    }
}

/// The part of the configuration the swarm logic needs (plain data).
#[derive(Debug, Clone)]
pub struct SwarmSettings {
    /// A peer silent for longer than this is gone (two intervals).
    pub expiry_ms: u64,
    /// A parent silent for longer than this is presumed dead when a child of it announces
    /// `started` again (1.5 minimum intervals; see Repair in the module docs).
    pub suspect_ms: u64,
    pub max_swarms: usize,
    pub max_peers_per_swarm: usize,
    pub default_numwant: usize,
    pub max_numwant: usize,
    pub topology: Option<Arc<Topology>>,
    pub origin: OriginMatcher,
}

impl SwarmSettings {
    pub fn from_config(c: &TrackerConfig) -> SwarmSettings {
        SwarmSettings {
            expiry_ms: 2 * u64::from(c.interval) * 1000,
            suspect_ms: (u64::from(c.min_interval.max(1)) * 1500)
                .min(2 * u64::from(c.interval) * 1000),
            max_swarms: c.max_swarms,
            max_peers_per_swarm: c.max_peers_per_swarm,
            default_numwant: c.default_numwant,
            max_numwant: c.max_numwant,
            topology: c.topology.clone().map(Arc::new),
            origin: c.origin.clone(),
        }
    }

    fn overlay(&self) -> Option<&OverlayParams> {
        self.topology
            .as_ref()
            .map(|t| &t.overlay)
            .filter(|o| o.enabled)
    }
}

/// One peer of a swarm.
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub loc: Loc,
    pub left: u64,
    pub last_seen: u64,
    /// Join order inside the swarm.
    pub seq: u64,
    pub origin: bool,
    pub parent: Option<PeerId>,
    pub backup: Option<PeerId>,
    /// Peers whose parent this is.
    pub children: u32,
    /// Depth when last attached (a tie-breaker, not kept exact after repairs).
    pub depth: u32,
    completed_counted: bool,
    /// Before this time, no new search for a backup or a less loaded parent (one failed).
    retry_at: u64,
}

impl Peer {
    fn entry(&self) -> PeerEntry {
        PeerEntry {
            addr: self.addr,
            peer_id: self.id,
        }
    }

    fn complete(&self) -> bool {
        self.left == 0
    }

    fn placed(&self) -> bool {
        self.origin || self.left == 0 || self.parent.is_some()
    }
}

/// Ranking of a backup candidate, lowest best: tier rank, sibling, complete, most left,
/// latest joiner (on level progress, the last to join of those ahead is the least ahead).
type BackupKey = (u8, bool, bool, Reverse<u64>, Reverse<u64>);

/// `left` values closer than the largest `left` seen in the swarm divided by this count as
/// equal when comparing progress (see [`Swarm::ahead`]).
const AHEAD_SLACK_DIV: u64 = 64;

/// The tier of `p` for an asker at `asker`.
pub fn tier(asker: Loc, p: &Peer) -> Tier {
    if p.origin {
        Tier::Origin
    } else if !asker.is_known() || !p.loc.is_known() {
        Tier::Unknown
    } else if p.loc == asker {
        Tier::Rack
    } else if p.loc.dc == asker.dc {
        Tier::Dc
    } else {
        Tier::Remote
    }
}

/// The peers of one info-hash.
#[derive(Debug, Default)]
pub struct Swarm {
    peers: Vec<Peer>,
    index: HashMap<PeerId, usize>,
    next_seq: u64,
    seeds: u64,
    downloaded: u64,
    /// The largest `left` announced (about the blob's size).
    max_left: u64,
}

impl Swarm {
    /// Whether `p` is ahead of `x` (see the module docs). Progress closer than 1/64 of the
    /// blob counts as level, and the earlier joiner is ahead: hosts that start together
    /// differ by their primer piece, or by none when a primer could not be fetched, and such
    /// noise must not turn a rack's head into a host that cannot feed its rack (measured in
    /// the 2-DC benchmark: an unprimed head sent its rack to the origin).
    pub fn ahead(&self, p: &Peer, x: &Peer) -> bool {
        if p.origin || p.left == 0 {
            return true;
        }
        let slack = self.max_left / AHEAD_SLACK_DIV;
        if p.left.saturating_add(slack) < x.left {
            true
        } else if x.left.saturating_add(slack) < p.left {
            false
        } else {
            p.seq < x.seq
        }
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    pub fn peer(&self, id: &PeerId) -> Option<&Peer> {
        self.index.get(id).map(|&i| &self.peers[i])
    }

    pub fn counts(&self) -> SwarmCounts {
        SwarmCounts {
            complete: self.seeds,
            incomplete: self.peers.len() as u64 - self.seeds,
            downloaded: self.downloaded,
        }
    }

    fn alive(&self, i: usize, now: u64, expiry: u64) -> bool {
        now.saturating_sub(self.peers[i].last_seen) <= expiry
    }

    fn link(&mut self, child: usize, parent: usize) {
        tracing::debug!(
            child = %self.peers[child].addr,
            child_left = self.peers[child].left,
            parent = %self.peers[parent].addr,
            parent_left = self.peers[parent].left,
            parent_children = self.peers[parent].children,
            "overlay: link"
        );
        let pid = self.peers[parent].id;
        self.peers[parent].children += 1;
        let depth = self.peers[parent].depth + 1;
        let c = &mut self.peers[child];
        c.parent = Some(pid);
        c.depth = depth;
        if c.backup == Some(pid) {
            c.backup = None;
        }
    }

    fn unlink(&mut self, child: usize) {
        if let Some(pid) = self.peers[child].parent.take() {
            tracing::debug!(child = %self.peers[child].addr, "overlay: unlink");
            if let Some(&pi) = self.index.get(&pid) {
                self.peers[pi].children = self.peers[pi].children.saturating_sub(1);
            }
        }
    }

    /// Whether peer `cand` lies in the subtree of `root` (following parents upwards).
    fn in_subtree(&self, cand: usize, root: &PeerId) -> bool {
        let mut cur = Some(cand);
        let mut steps = 0;
        while let Some(i) = cur {
            if &self.peers[i].id == root {
                return true;
            }
            steps += 1;
            if steps > self.peers.len() {
                return true; // a cycle: treat as unsafe
            }
            cur = self.peers[i]
                .parent
                .and_then(|p| self.index.get(&p).copied());
        }
        false
    }

    /// Removes a peer; its children move to their backups.
    fn remove(&mut self, id: &PeerId, now: u64, expiry: u64) {
        let Some(&i) = self.index.get(id) else { return };
        self.unlink(i);
        let kids: Vec<usize> = (0..self.peers.len())
            .filter(|&k| self.peers[k].parent.as_ref() == Some(id))
            .collect();
        for k in kids {
            self.peers[k].parent = None;
            if let Some(b) = self.peers[k].backup.take() {
                if let Some(&bi) = self.index.get(&b) {
                    let kid_id = self.peers[k].id;
                    if bi != i
                        && self.alive(bi, now, expiry)
                        && !self.in_subtree(bi, &kid_id)
                        && !self.in_subtree(bi, id)
                    {
                        self.link(k, bi);
                    }
                }
            }
        }
        for p in &mut self.peers {
            if p.backup.as_ref() == Some(id) {
                p.backup = None;
            }
        }
        if self.peers[i].complete() {
            self.seeds -= 1;
        }
        self.index.remove(id);
        self.peers.swap_remove(i);
        if i < self.peers.len() {
            let moved = self.peers[i].id;
            self.index.insert(moved, i);
        }
    }

    /// Best non-origin candidate in `tier_ok` able to feed `x`; `spare` requires a free slot.
    fn best(
        &self,
        x: usize,
        fanout: usize,
        now: u64,
        expiry: u64,
        spare: bool,
        tier_ok: impl Fn(&Peer) -> bool,
    ) -> Option<usize> {
        let xp = &self.peers[x];
        let check_subtree = xp.children > 0;
        let mut best: Option<(usize, (bool, u64, u32, u64))> = None;
        for (i, p) in self.peers.iter().enumerate() {
            if i == x || p.origin || !p.placed() || !self.ahead(p, xp) || !tier_ok(p) {
                continue;
            }
            if spare && p.children as usize >= fanout {
                continue;
            }
            if !self.alive(i, now, expiry) {
                continue;
            }
            let key = (!p.complete(), p.left, p.depth, p.seq);
            if best.as_ref().is_some_and(|(_, k)| *k <= key) {
                continue;
            }
            if check_subtree && self.in_subtree(i, &xp.id) {
                continue;
            }
            best = Some((i, key));
        }
        best.map(|(i, _)| i)
    }

    fn origins(&self, now: u64, expiry: u64) -> Vec<usize> {
        (0..self.peers.len())
            .filter(|&i| self.peers[i].origin && self.alive(i, now, expiry))
            .collect()
    }

    /// Index of the origin with fewest children.
    fn least_loaded_origin(&self, origins: &[usize]) -> Option<usize> {
        origins
            .iter()
            .copied()
            .min_by_key(|&i| (self.peers[i].children, self.peers[i].seq))
    }

    /// Whether peer `i` hangs directly under an origin.
    fn origin_fed(&self, i: usize) -> bool {
        self.peers[i]
            .parent
            .and_then(|p| self.index.get(&p))
            .is_some_and(|&pi| self.peers[pi].origin)
    }

    /// An origin slot for a host in `dc`, preempting a DC above its fair share if needed.
    fn origin_slot(
        &mut self,
        x: usize,
        dc: u16,
        o: &OverlayParams,
        now: u64,
        expiry: u64,
    ) -> Option<usize> {
        let origins = self.origins(now, expiry);
        if origins.is_empty() {
            return None;
        }
        let capacity = o.origin_slots * origins.len();
        let used: usize = origins
            .iter()
            .map(|&i| self.peers[i].children as usize)
            .sum();
        let mut per_dc: HashMap<u16, usize> = HashMap::new();
        let mut active: HashSet<u16> = HashSet::new();
        active.insert(dc);
        for (i, p) in self.peers.iter().enumerate() {
            if p.origin || i == x {
                continue;
            }
            if !p.complete() {
                active.insert(p.loc.dc);
            }
            if self.origin_fed(i) {
                *per_dc.entry(p.loc.dc).or_default() += 1;
            }
        }
        let share = (capacity / active.len()).max(1);
        if per_dc.get(&dc).copied().unwrap_or(0) >= share {
            return None;
        }
        if used < capacity {
            return self.least_loaded_origin(&origins);
        }
        // Preempt: the DC furthest above its share gives up its least established origin child.
        let mut over: Vec<(u16, usize)> = per_dc
            .into_iter()
            .filter(|&(d, n)| d != dc && n > share)
            .collect();
        over.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (odc, _) in over {
            let mut fed: Vec<usize> = (0..self.peers.len())
                .filter(|&i| {
                    i != x
                        && !self.peers[i].origin
                        && self.peers[i].loc.dc == odc
                        && self.origin_fed(i)
                })
                .collect();
            fed.sort_by_key(|&i| Reverse(self.peers[i].seq));
            for y in fed {
                let alt = self
                    .best(y, o.fanout, now, expiry, true, |p| p.loc.dc == odc)
                    .or_else(|| self.best(y, o.fanout, now, expiry, false, |p| p.loc.dc == odc));
                if let Some(alt) = alt {
                    if self.in_subtree(alt, &self.peers[y].id.clone()) {
                        continue;
                    }
                    self.unlink(y);
                    self.link(y, alt);
                    return self.least_loaded_origin(&origins);
                }
            }
        }
        None
    }

    /// Picks and links a parent for peer `x` (see the module docs for the rules).
    fn choose_parent(&mut self, x: usize, o: &OverlayParams, now: u64, expiry: u64) {
        let xl = self.peers[x].loc;
        let mut heads = 0;
        let mut gateways = 0;
        for (i, p) in self.peers.iter().enumerate() {
            if i == x || p.origin || p.loc.dc != xl.dc {
                continue;
            }
            // A complete host is a source inside its rack and DC: it counts as a head and a
            // gateway, or a DC whose gateway finished would pull the blob over the WAN again.
            if p.complete() {
                gateways += 1;
                heads += usize::from(p.loc == xl);
            } else if let Some(&pi) = p.parent.as_ref().and_then(|pid| self.index.get(pid)) {
                let par = &self.peers[pi];
                if par.origin || par.loc.dc != p.loc.dc {
                    gateways += 1;
                }
                if p.loc == xl && (par.origin || par.loc != xl) {
                    heads += 1;
                }
            }
        }
        let f = o.fanout;
        let same_rack = |p: &Peer| p.loc == xl;
        let other_rack_same_dc = |p: &Peer| p.loc.dc == xl.dc && p.loc != xl;
        let remote = |p: &Peer| p.loc.dc != xl.dc;
        let mut choice = None;
        if heads == 0 {
            if gateways < o.gateways_per_dc {
                choice = self.origin_slot(x, xl.dc, o, now, expiry);
            }
            if choice.is_none() {
                choice = self.best(x, f, now, expiry, true, other_rack_same_dc);
            }
            if choice.is_none() && gateways < o.gateways_per_dc {
                choice = self.best(x, f, now, expiry, true, remote);
            }
        } else {
            // Below `heads_per_rack`, another head from elsewhere in the DC first. Beyond it
            // still, before overloading a parent: a spare parent in another rack costs rack
            // uplink, which is cheaper than a parent feeding more than `fanout`.
            if heads < o.heads_per_rack {
                choice = self.best(x, f, now, expiry, true, other_rack_same_dc);
            }
            choice = choice
                .or_else(|| self.best(x, f, now, expiry, true, same_rack))
                .or_else(|| self.best(x, f, now, expiry, true, other_rack_same_dc));
            if choice.is_none() && gateways < o.gateways_per_dc {
                choice = self.origin_slot(x, xl.dc, o, now, expiry);
                if choice.is_none() {
                    choice = self.best(x, f, now, expiry, true, remote);
                }
            }
        }
        let choice = choice
            .or_else(|| self.best(x, f, now, expiry, false, same_rack))
            .or_else(|| self.best(x, f, now, expiry, false, |p: &Peer| p.loc.dc == xl.dc))
            .or_else(|| {
                let origins = self.origins(now, expiry);
                self.least_loaded_origin(&origins)
            })
            .or_else(|| self.best(x, f, now, expiry, false, |_| true));
        if let Some(p) = choice {
            self.link(x, p);
        }
    }

    /// Picks a backup parent for peer `x` (see the module docs).
    fn choose_backup(&mut self, x: usize, now: u64, expiry: u64) {
        let xp = &self.peers[x];
        let xl = xp.loc;
        let parent = xp.parent;
        // A gateway (fed by an origin or from another DC) may have a backup outside its DC
        // (see the module docs).
        let gateway = parent
            .and_then(|p| self.index.get(&p))
            .is_some_and(|&pi| self.peers[pi].origin || self.peers[pi].loc.dc != xl.dc);
        let mut best: Option<(usize, BackupKey)> = None;
        for (i, p) in self.peers.iter().enumerate() {
            if i == x
                || Some(p.id) == parent
                || !p.placed()
                || !self.ahead(p, xp)
                || !self.alive(i, now, expiry)
            {
                continue;
            }
            let outside = p.origin || !xl.is_known() || p.loc.dc != xl.dc;
            let rank = if outside && !gateway {
                continue;
            } else if p.origin {
                3
            } else if outside {
                2
            } else if p.loc == xl {
                0
            } else {
                1
            };
            let sibling = p.parent.is_some() && p.parent == parent;
            let key = (rank, sibling, p.complete(), Reverse(p.left), Reverse(p.seq));
            if best.as_ref().is_some_and(|(_, k)| *k <= key) {
                continue;
            }
            if self.in_subtree(i, &xp.id) {
                continue;
            }
            best = Some((i, key));
        }
        self.peers[x].backup = best.map(|(i, _)| self.peers[i].id);
    }

    /// Removes peer `x`'s parent and backup when they have been silent for longer than
    /// `silent` (this also repairs their other children). [`Swarm::maintain`] uses the expiry;
    /// a child that announces `started` again (a stalled sync reconnecting) uses the shorter
    /// suspicion time (see Repair in the module docs).
    fn drop_silent_links(&mut self, x: usize, silent: u64, now: u64, expiry: u64) {
        for link in [self.peers[x].parent, self.peers[x].backup]
            .into_iter()
            .flatten()
        {
            if let Some(&li) = self.index.get(&link) {
                let quiet = now.saturating_sub(self.peers[li].last_seen);
                if quiet > silent {
                    tracing::debug!(peer = %self.peers[li].addr, silent_ms = quiet, "overlay: silent link removed");
                    self.remove(&link, now, expiry);
                }
            }
        }
    }

    /// Keeps peer `id`'s parent and backup valid, choosing new ones where needed.
    fn maintain(&mut self, id: &PeerId, o: &OverlayParams, now: u64, expiry: u64) {
        let Some(&x) = self.index.get(id) else { return };
        if self.peers[x].origin || self.peers[x].complete() {
            self.unlink(x);
            self.peers[x].backup = None;
            return;
        }
        // Drop a parent or backup that stopped announcing.
        self.drop_silent_links(x, expiry, now, expiry);
        let x = self.index[id];
        if let Some(b) = self.peers[x].backup {
            if !self.index.contains_key(&b) || Some(b) == self.peers[x].parent {
                self.peers[x].backup = None;
            }
        }
        // A parent above its fan-out (after a repair moved children onto it) sheds the
        // children that announce while it is over, when a spare parent exists elsewhere.
        // Searches scan the swarm: after a failed one, the next waits RETRY (a sixth of the
        // expiry), so a peer with no better option costs O(1) per announce.
        let retry = (expiry / 6).max(1);
        let may_search = now >= self.peers[x].retry_at;
        if let Some(&pi) = self.peers[x]
            .parent
            .as_ref()
            .and_then(|p| self.index.get(p))
        {
            let par = &self.peers[pi];
            if may_search && !par.origin && par.children as usize > o.fanout {
                let old = par.id;
                self.unlink(x);
                self.choose_parent(x, o, now, expiry);
                if self.peers[x].parent == Some(old) {
                    self.peers[x].retry_at = now + retry;
                }
            }
        }
        if self.peers[x].parent.is_none() {
            self.choose_parent(x, o, now, expiry);
        }
        if self.peers[x].parent.is_some() && self.peers[x].backup.is_none() && may_search {
            self.choose_backup(x, now, expiry);
            if self.peers[x].backup.is_none() {
                self.peers[x].retry_at = now + retry;
            }
        }
    }

    fn answer_overlay(&self, x: usize, numwant: usize, out: &mut Vec<(PeerEntry, Tier)>) {
        let xp = &self.peers[x];
        for id in [xp.parent, xp.backup].into_iter().flatten() {
            if let Some(&i) = self.index.get(&id) {
                out.push((self.peers[i].entry(), tier(xp.loc, &self.peers[i])));
            }
        }
        out.sort_by_key(|e| e.1);
        out.truncate(numwant);
    }

    fn answer_ordered(
        &self,
        x: usize,
        numwant: usize,
        rng: &mut dyn Rng,
        out: &mut Vec<(PeerEntry, Tier)>,
    ) {
        let xl = self.peers[x].loc;
        let mut buckets: [Vec<usize>; 5] = Default::default();
        for (i, p) in self.peers.iter().enumerate() {
            if i != x {
                buckets[tier(xl, p) as usize].push(i);
            }
        }
        for (t, mut b) in Tier::ALL.into_iter().zip(buckets) {
            // Partial Fisher-Yates: random order inside the tier.
            let mut k = 0;
            while k < b.len() && out.len() < numwant {
                let j = k + rng.below(b.len() - k);
                b.swap(k, j);
                out.push((self.peers[b[k]].entry(), t));
                k += 1;
            }
        }
    }

    fn answer_random(
        &self,
        x: usize,
        numwant: usize,
        rng: &mut dyn Rng,
        out: &mut Vec<(PeerEntry, Tier)>,
    ) {
        let n = self.peers.len();
        if n <= 1 || numwant == 0 {
            return;
        }
        let xl = self.peers[x].loc;
        let start = rng.below(n);
        for k in 0..n {
            if out.len() >= numwant {
                break;
            }
            let i = (start + k) % n;
            if i != x {
                out.push((self.peers[i].entry(), tier(xl, &self.peers[i])));
            }
        }
    }
}

/// Aggregates for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub swarms: u64,
    pub peers: u64,
    pub seeds: u64,
    /// Peers per DC index (`u16::MAX` = unknown).
    pub peers_by_dc: HashMap<u16, u64>,
    /// Gateways (peers fed from outside their DC) per DC index.
    pub gateways_by_dc: HashMap<u16, u64>,
}

/// All swarms of a tracker (or of one shard of it).
#[derive(Debug)]
pub struct Swarms {
    swarms: HashMap<InfoHash, Swarm>,
    settings: SwarmSettings,
}

impl Swarms {
    pub fn new(settings: SwarmSettings) -> Swarms {
        Swarms {
            swarms: HashMap::new(),
            settings,
        }
    }

    pub fn settings(&self) -> &SwarmSettings {
        &self.settings
    }

    pub fn swarm(&self, h: &InfoHash) -> Option<&Swarm> {
        self.swarms.get(h)
    }

    pub fn len(&self) -> usize {
        self.swarms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.swarms.is_empty()
    }

    /// Handles one announce from `addr` (source IP of the connection, port from the
    /// request) at time `now` (ms). Fills `out` with the answer's peers in tier order.
    pub fn announce(
        &mut self,
        req: &AnnounceRequest,
        addr: SocketAddr,
        now: u64,
        rng: &mut dyn Rng,
        out: &mut Vec<(PeerEntry, Tier)>,
    ) -> Result<SwarmCounts, RequestError> {
        out.clear();
        let s = &self.settings;
        let expiry = s.expiry_ms;
        let suspect = s.suspect_ms;
        let numwant = req
            .numwant
            .map_or(s.default_numwant, |n| n.min(s.max_numwant as u64) as usize)
            .min(s.max_numwant);
        if req.event == Event::Stopped {
            let counts = match self.swarms.get_mut(&req.info_hash) {
                Some(sw) => {
                    sw.remove(&req.peer_id, now, expiry);
                    let c = sw.counts();
                    if sw.peers.is_empty() {
                        self.swarms.remove(&req.info_hash);
                    }
                    c
                }
                None => SwarmCounts::default(),
            };
            return Ok(counts);
        }
        if !self.swarms.contains_key(&req.info_hash) && self.swarms.len() >= s.max_swarms {
            return Err(RequestError::TooManySwarms);
        }
        let loc = s
            .topology
            .as_ref()
            .map_or(Loc::UNKNOWN, |t| t.locate(addr.ip()));
        let overlay = s.overlay().cloned();
        let has_topology = s.topology.is_some();
        let max_peers = s.max_peers_per_swarm;
        let is_origin = s.origin.is_origin(addr, &req.peer_id, req.left);
        let sw = self.swarms.entry(req.info_hash).or_default();
        sw.max_left = sw.max_left.max(req.left);
        // A peer that moved to another location rejoins as new.
        if let Some(&i) = sw.index.get(&req.peer_id) {
            if sw.peers[i].loc != loc {
                sw.remove(&req.peer_id, now, expiry);
            }
        }
        let mut restarted = false;
        match sw.index.get(&req.peer_id).copied() {
            Some(i) => {
                restarted = req.event == Event::Started;
                let p = &mut sw.peers[i];
                p.addr = addr;
                p.last_seen = now;
                let was_complete = p.left == 0;
                p.left = req.left;
                if !was_complete && req.left == 0 {
                    sw.seeds += 1;
                    sw.unlink(i);
                    sw.peers[i].backup = None;
                } else if was_complete && req.left > 0 {
                    sw.seeds -= 1;
                }
            }
            None => {
                if sw.peers.len() >= max_peers {
                    return Err(RequestError::SwarmFull);
                }
                let seq = sw.next_seq;
                sw.next_seq += 1;
                sw.peers.push(Peer {
                    id: req.peer_id,
                    addr,
                    loc,
                    left: req.left,
                    last_seen: now,
                    seq,
                    origin: is_origin,
                    parent: None,
                    backup: None,
                    children: 0,
                    depth: 0,
                    completed_counted: false,
                    retry_at: 0,
                });
                sw.index.insert(req.peer_id, sw.peers.len() - 1);
                if req.left == 0 {
                    sw.seeds += 1;
                }
            }
        }
        let x = sw.index[&req.peer_id];
        if req.event == Event::Completed && !sw.peers[x].completed_counted {
            sw.peers[x].completed_counted = true;
            sw.downloaded += 1;
        }
        match overlay {
            Some(o) => {
                if restarted {
                    sw.drop_silent_links(x, suspect, now, expiry);
                }
                sw.maintain(&req.peer_id, &o, now, expiry);
                let x = sw.index[&req.peer_id];
                let p = &sw.peers[x];
                if p.origin || p.complete() {
                    // Sources get no peers: their children connect to them.
                } else if p.parent.is_some() {
                    sw.answer_overlay(x, numwant, out);
                } else {
                    sw.answer_ordered(x, numwant, rng, out);
                }
            }
            None if has_topology => sw.answer_ordered(x, numwant, rng, out),
            None => sw.answer_random(x, numwant, rng, out),
        }
        Ok(sw.counts())
    }

    /// Counts for a scrape (zeros for an unknown info-hash).
    pub fn scrape(&self, h: &InfoHash) -> SwarmCounts {
        self.swarms.get(h).map(Swarm::counts).unwrap_or_default()
    }

    /// Removes every peer silent for more than two intervals, and empty swarms. Returns the
    /// number of peers removed.
    pub fn expire(&mut self, now: u64) -> usize {
        let expiry = self.settings.expiry_ms;
        let mut removed = 0;
        for sw in self.swarms.values_mut() {
            let dead: Vec<PeerId> = (0..sw.peers.len())
                .filter(|&i| !sw.alive(i, now, expiry))
                .map(|i| sw.peers[i].id)
                .collect();
            for id in dead {
                sw.remove(&id, now, expiry);
                removed += 1;
            }
        }
        self.swarms.retain(|_, sw| !sw.peers.is_empty());
        removed
    }

    /// Forgets every swarm whose info-hash `keep` rejects (after the allow-list changed).
    pub fn retain(&mut self, keep: impl Fn(&InfoHash) -> bool) {
        self.swarms.retain(|h, _| keep(h));
    }

    /// Aggregates for metrics.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            swarms: self.swarms.len() as u64,
            ..Summary::default()
        };
        for sw in self.swarms.values() {
            s.peers += sw.peers.len() as u64;
            s.seeds += sw.seeds;
            for p in &sw.peers {
                *s.peers_by_dc.entry(p.loc.dc).or_default() += 1;
                if let Some(&pi) = p.parent.as_ref().and_then(|id| sw.index.get(id)) {
                    let par = &sw.peers[pi];
                    if par.origin || par.loc.dc != p.loc.dc {
                        *s.gateways_by_dc.entry(p.loc.dc).or_default() += 1;
                    }
                }
            }
        }
        s
    }
}
