//! Tracker configuration as plain data: the topology file (data centres, racks, CIDRs and
//! overlay parameters), longest-prefix location of an address, the allow-list file, the
//! origin matcher and the [`TrackerConfig`] the server runs with.
//!
//! # Topology file (TOML)
//! ```toml
//! # Optional; these are the defaults.
//! [overlay]
//! enabled = true          # false: answers are only ordered by tier, no parent/child shaping
//! gateways_per_dc = 1     # hosts per DC fed from outside the DC (each pulls the blob over the WAN)
//! heads_per_rack = 1      # hosts per rack fed from another rack of the same DC
//! fanout = 1              # children a host feeds: 1 makes chains (see `swarm`), larger values trees
//! origin_slots = 8        # children one origin feeds, shared fairly across DCs
//!
//! [[dc]]
//! name = "ams"
//! [[dc.rack]]
//! name = "ams-r1"
//! cidrs = ["127.0.1.0/24", "10.1.1.0/24", "fd00:1::/64"]
//! ```
//! A peer's address maps to (dc, rack) by the longest matching prefix over all racks (IPv4
//! and IPv6; an IPv4-mapped IPv6 source counts as IPv4). An address no CIDR matches is in the
//! "unknown" location, which the overlay treats as one more DC with one rack. Two racks may
//! not list the same CIDR; rack and DC names must be unique.
//!
//! # Allow-list file
//! One info-hash per line as 40 hex digits; empty lines and `#` comments are ignored.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::protocol::{canonical_ip, parse_hex_hash, InfoHash};

/// Where a peer sits: indices into [`Topology::dcs`] and [`Topology::racks`], or unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loc {
    pub dc: u16,
    pub rack: u32,
}

impl Loc {
    /// The location of addresses no CIDR matches (and of every address without a topology).
    pub const UNKNOWN: Loc = Loc {
        dc: u16::MAX,
        rack: u32::MAX,
    };

    pub fn is_known(self) -> bool {
        self != Loc::UNKNOWN
    }
}

/// Parameters of the overlay (see `swarm`'s documentation for what each one shapes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverlayParams {
    /// Shape the swarm into a tree (true) or only order answers by tier (false).
    pub enabled: bool,
    /// Hosts per DC fed by the origin or another DC (WAN crossings per DC).
    pub gateways_per_dc: usize,
    /// Hosts per rack fed from another rack of the same DC.
    pub heads_per_rack: usize,
    /// Children one host feeds.
    pub fanout: usize,
    /// Children one origin feeds, shared fairly across DCs.
    pub origin_slots: usize,
}

impl Default for OverlayParams {
    fn default() -> Self {
        OverlayParams {
            enabled: true,
            gateways_per_dc: 1,
            heads_per_rack: 1,
            fanout: 1,
            origin_slots: 8,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    overlay: OverlayParams,
    #[serde(default)]
    dc: Vec<RawDc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDc {
    name: String,
    #[serde(default)]
    rack: Vec<RawRack>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRack {
    name: String,
    cidrs: Vec<String>,
}

/// A CIDR block, IPv4 or IPv6 (IPv4 stored in the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub v6: bool,
    pub net: u128,
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a host route).
    pub fn parse(s: &str) -> anyhow::Result<Cidr> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .with_context(|| format!("bad address in CIDR {s:?}"))?;
        let (v6, bits, max) = match ip {
            IpAddr::V4(v4) => (false, u128::from(u32::from(v4)), 32u8),
            IpAddr::V6(v6) => (true, u128::from(v6), 128u8),
        };
        let len = match len {
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .with_context(|| format!("bad prefix length in CIDR {s:?} (0..={max})"))?,
            None => max,
        };
        Ok(Cidr {
            v6,
            net: bits & mask(len, max),
            len,
        })
    }
}

fn mask(len: u8, max: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let all: u128 = if max == 128 {
            u128::MAX
        } else {
            (1u128 << max) - 1
        };
        all & !((1u128 << (max - len)) - 1)
    }
}

fn ip_bits(ip: IpAddr) -> (bool, u128) {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

/// Data centres and racks with a longest-prefix table.
#[derive(Debug, Clone)]
pub struct Topology {
    pub dcs: Vec<String>,
    /// Rack name and the index of its DC.
    pub racks: Vec<(String, u16)>,
    pub overlay: OverlayParams,
    /// Per family (false = v4, true = v6): prefix lengths, longest first, each with its table.
    tables: [Vec<(u8, HashMap<u128, u32>)>; 2],
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> anyhow::Result<Topology> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading topology {}", path.display()))?;
        Topology::parse(&text).with_context(|| format!("topology {}", path.display()))
    }

    /// Parses topology TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Topology> {
        let raw: RawTopology = toml::from_str(text).context("invalid TOML")?;
        let o = &raw.overlay;
        if o.fanout == 0 || o.origin_slots == 0 || o.gateways_per_dc == 0 || o.heads_per_rack == 0 {
            bail!("overlay: fanout, origin_slots, gateways_per_dc and heads_per_rack must be at least 1");
        }
        if raw.dc.len() >= usize::from(u16::MAX) {
            bail!("too many data centres");
        }
        let mut dcs = Vec::new();
        let mut racks = Vec::new();
        let mut seen_racks = HashSet::new();
        let mut tables: [HashMap<u8, HashMap<u128, u32>>; 2] = [HashMap::new(), HashMap::new()];
        for (di, dc) in raw.dc.iter().enumerate() {
            if dc.name.is_empty() || dcs.contains(&dc.name) {
                bail!("dc {:?}: names must be non-empty and unique", dc.name);
            }
            dcs.push(dc.name.clone());
            for rack in &dc.rack {
                if rack.name.is_empty() || !seen_racks.insert(rack.name.clone()) {
                    bail!("rack {:?}: names must be non-empty and unique", rack.name);
                }
                let ri = racks.len() as u32;
                racks.push((rack.name.clone(), di as u16));
                for c in &rack.cidrs {
                    let cidr = Cidr::parse(c).with_context(|| format!("rack {:?}", rack.name))?;
                    let t = tables[usize::from(cidr.v6)].entry(cidr.len).or_default();
                    if let Some(prev) = t.insert(cidr.net, ri) {
                        bail!(
                            "CIDR {c:?} is listed in both rack {:?} and rack {:?}",
                            racks[prev as usize].0,
                            rack.name
                        );
                    }
                }
            }
        }
        let sorted = |m: HashMap<u8, HashMap<u128, u32>>| {
            let mut v: Vec<_> = m.into_iter().collect();
            v.sort_by_key(|e| std::cmp::Reverse(e.0));
            v
        };
        let [t4, t6] = tables;
        Ok(Topology {
            dcs,
            racks,
            overlay: raw.overlay,
            tables: [sorted(t4), sorted(t6)],
        })
    }

    /// The (dc, rack) of an address by longest prefix, or [`Loc::UNKNOWN`].
    pub fn locate(&self, ip: IpAddr) -> Loc {
        let (v6, bits) = ip_bits(ip);
        let max = if v6 { 128 } else { 32 };
        for (len, table) in &self.tables[usize::from(v6)] {
            if let Some(&rack) = table.get(&(bits & mask(*len, max))) {
                return Loc {
                    dc: self.racks[rack as usize].1,
                    rack,
                };
            }
        }
        Loc::UNKNOWN
    }

    /// Name of a DC index (or "unknown").
    pub fn dc_name(&self, dc: u16) -> &str {
        self.dcs
            .get(usize::from(dc))
            .map(String::as_str)
            .unwrap_or("unknown")
    }
}

/// How the tracker recognises the origin (the publisher's seeder).
///
/// A peer is an origin when its address matches one of `addrs` (the port only when given),
/// or its peer id starts with `peer_id_prefix`. When neither is configured, a peer whose
/// *first* announce in a swarm says `left=0` (it seeded from the start rather than finishing
/// a download) is an origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginMatcher {
    pub addrs: Vec<(IpAddr, Option<u16>)>,
    pub peer_id_prefix: Option<Vec<u8>>,
}

impl OriginMatcher {
    /// Parses `IP` or `IP:PORT` (`[v6]:PORT` for IPv6).
    pub fn parse_addr(s: &str) -> anyhow::Result<(IpAddr, Option<u16>)> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok((canonical_ip(sa.ip()), Some(sa.port())));
        }
        let ip: IpAddr = s
            .parse()
            .with_context(|| format!("--origin {s:?}: expected IP or IP:PORT"))?;
        Ok((canonical_ip(ip), None))
    }

    pub fn is_configured(&self) -> bool {
        !self.addrs.is_empty() || self.peer_id_prefix.is_some()
    }

    /// Whether a peer is an origin; `first_left` is the `left` of its first announce.
    pub fn is_origin(&self, addr: SocketAddr, peer_id: &[u8], first_left: u64) -> bool {
        if !self.is_configured() {
            return first_left == 0;
        }
        let ip = canonical_ip(addr.ip());
        self.addrs
            .iter()
            .any(|&(oip, port)| oip == ip && port.map_or(true, |p| p == addr.port()))
            || self
                .peer_id_prefix
                .as_deref()
                .is_some_and(|p| peer_id.starts_with(p))
    }
}

/// Reads an allow-list file (see the module docs for the format).
pub fn load_allow_file(path: &Path) -> anyhow::Result<HashSet<InfoHash>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading allow-list {}", path.display()))?;
    let mut set = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let h = parse_hex_hash(line).with_context(|| {
            format!(
                "allow-list {} line {}: expected 40 hex digits, got {line:?}",
                path.display(),
                n + 1
            )
        })?;
        set.insert(h);
    }
    Ok(set)
}

/// Everything the tracker server runs with (built by the CLI or by an embedding origin).
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Addresses to listen on (port 0 picks a free port; see `Tracker::local_addrs`).
    pub listen: Vec<SocketAddr>,
    /// Topology; `None` means plain random answers like opentracker.
    pub topology: Option<Topology>,
    /// Shared secret every announce must carry as `key=`.
    pub key: Option<Vec<u8>>,
    /// Allowed info-hashes; `None` allows every info-hash.
    pub allow: Option<HashSet<InfoHash>>,
    /// File the allow-list was read from, re-read on SIGHUP by the command.
    pub allow_file: Option<PathBuf>,
    /// `interval` sent to clients, seconds; peers silent for two intervals expire.
    pub interval: u32,
    /// `min interval` sent to clients, seconds.
    pub min_interval: u32,
    /// Peers returned when the client sends no `numwant`.
    pub default_numwant: usize,
    /// Upper bound on peers returned.
    pub max_numwant: usize,
    /// Upper bound on swarms held in memory.
    pub max_swarms: usize,
    /// Upper bound on peers per swarm.
    pub max_peers_per_swarm: usize,
    /// Upper bound on open client connections.
    pub max_connections: usize,
    /// How the origin is recognised.
    pub origin: OriginMatcher,
    /// Worker threads of the server's runtime (0: one per CPU).
    pub threads: usize,
    /// Emulating many hosts on one machine (`blobpin demo`): a client connecting from a
    /// loopback address is taken to be at the loopback address it connected *to*. A client
    /// that does not bind its sockets (librqbit does not) always connects from 127.0.0.1, so
    /// this is the only way a tracker on one machine can tell 127.0.1.1 from 127.0.2.1; each
    /// host is given the tracker URL on its own address. Off by default.
    pub loopback_by_destination: bool,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 6969))],
            topology: None,
            key: None,
            allow: None,
            allow_file: None,
            interval: 15,
            min_interval: 5,
            default_numwant: 50,
            max_numwant: 200,
            max_swarms: 100_000,
            max_peers_per_swarm: 20_000,
            max_connections: 4096,
            origin: OriginMatcher::default(),
            threads: 0,
            loopback_by_destination: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let t = Topology::parse(
            r#"
            [[dc]]
            name = "a"
            [[dc.rack]]
            name = "wide"
            cidrs = ["127.0.0.0/8", "fd00::/16"]
            [[dc]]
            name = "b"
            [[dc.rack]]
            name = "narrow"
            cidrs = ["127.0.3.0/24", "fd00:1::/64"]
            "#,
        )
        .unwrap();
        assert_eq!(
            t.locate("127.0.3.9".parse().unwrap()),
            Loc { dc: 1, rack: 1 }
        );
        assert_eq!(
            t.locate("127.0.4.9".parse().unwrap()),
            Loc { dc: 0, rack: 0 }
        );
        assert_eq!(
            t.locate("::ffff:127.0.3.1".parse().unwrap()),
            Loc { dc: 1, rack: 1 }
        );
        assert_eq!(
            t.locate("fd00:1::5".parse().unwrap()),
            Loc { dc: 1, rack: 1 }
        );
        assert_eq!(
            t.locate("fd00:2::5".parse().unwrap()),
            Loc { dc: 0, rack: 0 }
        );
        assert_eq!(t.locate("10.0.0.1".parse().unwrap()), Loc::UNKNOWN);
    }

    #[test]
    fn mask_edges() {
        assert_eq!(mask(0, 32), 0);
        assert_eq!(mask(32, 32), 0xffff_ffff);
        assert_eq!(mask(8, 32), 0xff00_0000);
        assert_eq!(mask(128, 128), u128::MAX);
        assert_eq!(mask(1, 128), 1u128 << 127);
    }
}
