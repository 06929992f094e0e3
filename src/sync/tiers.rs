//! Which tier each peer of a sync is in, for the report's `bytes_by_tier` and the
//! `tier` series of `/metrics`: the tiers of the tracker (rack, dc, remote, unknown, origin).
//!
//! With an `http://HOST:PORT/feed/NAME` feed, the sync fetches the origin's topology from
//! `http://HOST:PORT/feed/topology` once per new version (a 404, an unreachable origin or a
//! bad file leaves every peer "unknown": the figures are informative, never an error). The
//! origin's seeder runs on the feed's host, so a peer at that IP is "origin". This host's own
//! location is its `--listen` IP, or (listening on 0.0.0.0) the source address the kernel
//! would use to reach the origin. A peer's address is the one librqbit reports: the address
//! this host connected to, or the source address of an incoming connection.
//!
//! Emulating hosts on loopback: a librqbit client does not bind its outgoing sockets, so an
//! incoming connection always comes from 127.0.0.1, wherever its host sits (and counts as
//! "origin" when the origin is on 127.0.0.1: give it another loopback address).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::fetch::FeedLocation;
use crate::tracker::swarm::Tier;
use crate::tracker::Topology;

/// Largest topology file accepted from an origin.
const MAX_TOPOLOGY: usize = 4 << 20;

/// What is needed to place a peer: the topology (if any), this host's location and the
/// origin's IPs.
#[derive(Debug, Clone)]
pub struct Tiers {
    topology: Option<Topology>,
    me: Option<IpAddr>,
    origin: Vec<IpAddr>,
}

impl Tiers {
    /// No topology and no origin: every peer is "unknown".
    pub fn none() -> Tiers {
        Tiers {
            topology: None,
            me: None,
            origin: Vec::new(),
        }
    }

    /// Places peers with `topology`, this host at `me`, the origin at `origin`.
    pub fn new(topology: Option<Topology>, me: Option<IpAddr>, origin: Vec<IpAddr>) -> Tiers {
        Tiers {
            topology,
            me,
            origin,
        }
    }

    /// Learns the tiers from the feed's origin (see the module doc). `listen` is the sync's
    /// `--listen` address. Problems are reported through `note` (with `-v`), never returned.
    pub fn from_feed(
        rt: &tokio::runtime::Runtime,
        feed: &FeedLocation,
        listen: SocketAddr,
        mut note: impl FnMut(String),
    ) -> Tiers {
        let FeedLocation::Http(base) = feed else {
            return Tiers::none();
        };
        let Ok(url) = reqwest::Url::parse(base) else {
            return Tiers::none();
        };
        let origin: Vec<IpAddr> = match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                match host.parse::<IpAddr>() {
                    Ok(ip) => vec![ip],
                    Err(_) => rt
                        .block_on(tokio::net::lookup_host((host, port)))
                        .map(|a| a.map(|s| s.ip()).collect())
                        .unwrap_or_default(),
                }
            }
            _ => Vec::new(),
        };
        let me = if listen.ip().is_unspecified() {
            origin.first().and_then(|&o| source_towards(o))
        } else {
            Some(listen.ip())
        };
        let topo_url = match base.rsplit_once('/') {
            Some((feed_root, _name)) => format!("{feed_root}/topology"),
            None => return Tiers::new(None, me, origin),
        };
        let topology = match rt.block_on(crate::fetch::get(&topo_url, MAX_TOPOLOGY)) {
            Ok(raw) => match String::from_utf8(raw)
                .map_err(anyhow::Error::from)
                .and_then(|t| Topology::parse(&t))
            {
                Ok(t) => Some(t),
                Err(e) => {
                    note(format!(
                        "bad topology {topo_url}: {e:#}; peers count as tier \"unknown\""
                    ));
                    None
                }
            },
            Err(e) => {
                note(format!(
                    "no topology ({e:#}); peers count as tier \"unknown\""
                ));
                None
            }
        };
        Tiers::new(topology, me, origin)
    }

    /// The tier of a peer given as `IP:PORT` (anything unparsable is "unknown").
    pub fn tier(&self, peer: &str) -> Tier {
        let Ok(addr) = peer.parse::<SocketAddr>() else {
            return Tier::Unknown;
        };
        let ip = crate::tracker::protocol::canonical_ip(addr.ip());
        if self
            .origin
            .iter()
            .any(|&o| crate::tracker::protocol::canonical_ip(o) == ip)
        {
            return Tier::Origin;
        }
        let (Some(t), Some(me)) = (&self.topology, self.me) else {
            return Tier::Unknown;
        };
        let (mine, theirs) = (t.locate(me), t.locate(ip));
        if !mine.is_known() || !theirs.is_known() {
            Tier::Unknown
        } else if mine == theirs {
            Tier::Rack
        } else if mine.dc == theirs.dc {
            Tier::Dc
        } else {
            Tier::Remote
        }
    }

    /// Bytes by peer summed by tier; every tier is listed (0 when none).
    pub fn by_tier(&self, by_peer: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = Tier::ALL
            .iter()
            .map(|t| (t.name().to_string(), 0))
            .collect();
        for (peer, bytes) in by_peer {
            *out.entry(self.tier(peer).name().to_string()).or_default() += bytes;
        }
        out
    }
}

/// The source address the kernel picks to reach `to` (a UDP socket connected, nothing sent).
fn source_towards(to: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect((to, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::parse(
            r#"
            [[dc]]
            name = "a"
            [[dc.rack]]
            name = "a1"
            cidrs = ["10.1.1.0/24"]
            [[dc.rack]]
            name = "a2"
            cidrs = ["10.1.2.0/24"]
            [[dc]]
            name = "b"
            [[dc.rack]]
            name = "b1"
            cidrs = ["10.2.1.0/24"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn peers_are_placed_relative_to_this_host() {
        let t = Tiers::new(
            Some(topo()),
            Some("10.1.1.5".parse().unwrap()),
            vec!["10.9.0.1".parse().unwrap()],
        );
        assert_eq!(t.tier("10.1.1.6:6881"), Tier::Rack);
        assert_eq!(t.tier("10.1.2.6:6881"), Tier::Dc);
        assert_eq!(t.tier("10.2.1.6:6881"), Tier::Remote);
        assert_eq!(t.tier("192.168.0.1:6881"), Tier::Unknown);
        assert_eq!(t.tier("10.9.0.1:7072"), Tier::Origin);
        assert_eq!(t.tier("[::ffff:10.1.1.7]:6881"), Tier::Rack);
        assert_eq!(t.tier("garbage"), Tier::Unknown);
        let by_peer: BTreeMap<String, u64> = [
            ("10.1.1.6:1".to_string(), 5),
            ("10.1.1.7:1".to_string(), 7),
            ("10.9.0.1:1".to_string(), 11),
            ("10.2.1.6:1".to_string(), 13),
        ]
        .into();
        let b = t.by_tier(&by_peer);
        assert_eq!(b["rack"], 12);
        assert_eq!(b["origin"], 11);
        assert_eq!(b["remote"], 13);
        assert_eq!(b["dc"], 0);
        assert_eq!(b["unknown"], 0);
        assert_eq!(b.values().sum::<u64>(), by_peer.values().sum::<u64>());
    }

    #[test]
    fn without_a_topology_or_outside_it_everything_is_unknown_but_the_origin() {
        let t = Tiers::new(None, Some("10.1.1.5".parse().unwrap()), vec![]);
        assert_eq!(t.tier("10.1.1.6:6881"), Tier::Unknown);
        let t = Tiers::new(
            Some(topo()),
            Some("192.168.1.1".parse().unwrap()),
            vec!["10.9.0.1".parse().unwrap()],
        );
        assert_eq!(t.tier("10.1.1.6:6881"), Tier::Unknown);
        assert_eq!(t.tier("10.9.0.1:1"), Tier::Origin);
        assert_eq!(Tiers::none().tier("10.9.0.1:1"), Tier::Unknown);
    }
}
