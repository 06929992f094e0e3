//! The librqbit 9.1 adapter: a session that talks only to the peers and trackers it is given.
//!
//! Sharp edges handled here (reference librqbit-9.1.md): DHT, local service discovery and UPnP
//! are on or half-on by default and are turned off; the listener binds exactly the address
//! given, and the announced port is set explicitly (left unset, a loopback listener announces
//! 4240); `wait_until_completed` never returns when the torrent fails, so completion is raced
//! against the torrent's error state; adding a torrent re-hashes what is on disk, which is how
//! an interrupted download resumes.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use librqbit::limits::LimitsConfig;
use librqbit::storage::StorageFactoryExt;
use librqbit::{
    AddTorrent, AddTorrentOptions, ListenerMode, ListenerOptions, ManagedTorrent,
    PeerConnectionOptions, Session, SessionOptions, TorrentStatsState,
};

use super::storage::{WriteBehindFactory, WriteBehindStats};

/// How a session reaches the swarm.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Address to listen on for peers; port 0 picks a free port (announced correctly).
    pub listen: SocketAddr,
    /// Upload and download caps in bytes per second.
    pub max_upload: Option<NonZeroU32>,
    pub max_download: Option<NonZeroU32>,
}

/// A running librqbit session.
pub struct Swarm {
    pub session: Arc<Session>,
    /// The address peers can reach this session at.
    pub listen: SocketAddr,
}

/// Per-torrent choices.
#[derive(Debug, Clone, Default)]
pub struct TorrentConfig {
    /// Peers to connect to without any tracker.
    pub peers: Vec<SocketAddr>,
    /// Tracker announce URLs added to the torrent's own (a private torrent uses the first).
    pub trackers: Vec<String>,
    /// While set, ranges read to serve peers are dropped from the page cache again (seeders;
    /// a sync sets it once its download is complete, unless the version gets locked).
    pub drop_after_read: Arc<std::sync::atomic::AtomicBool>,
}

/// Where a download's bytes came from, and what it did to the cache.
#[derive(Debug, Clone, Default)]
pub struct Transfer {
    /// Bytes received from peers (including any that failed their hash check).
    pub fetched_bytes: u64,
    /// Bytes uploaded to peers.
    pub uploaded_bytes: u64,
    /// Bytes already on disk and valid when the torrent was added (resume).
    pub resumed_bytes: u64,
    /// Bytes received per peer address (the address this host connected to, or the remote
    /// address of an incoming connection).
    pub by_peer: BTreeMap<String, u64>,
    /// Pieces written back and dropped from the cache, and failures doing so.
    pub written_back: u64,
    pub writeback_errors: u64,
    pub first_writeback_error: Option<String>,
    /// Times the torrent was paused and resumed to reconnect to its peers.
    pub nudges: u32,
}

/// Picks a free TCP port on `ip` (bound and released: the kernel will not hand it out again
/// right away).
fn free_port(ip: std::net::IpAddr) -> Result<u16> {
    let l = TcpListener::bind((ip, 0)).with_context(|| format!("cannot bind a port on {ip}"))?;
    Ok(l.local_addr()?.port())
}

impl Swarm {
    /// Starts a session: no DHT, no LSD, no UPnP, no persistence, TCP only, listening on
    /// `cfg.listen` and announcing that port.
    pub async fn start(cfg: &SwarmConfig, default_dir: &Path) -> Result<Swarm> {
        let mut listen = cfg.listen;
        if listen.port() == 0 {
            listen.set_port(free_port(listen.ip())?);
        }
        let opts = SessionOptions {
            dht: None,
            persistence: None,
            fastresume: false,
            disable_local_service_discovery: true,
            listen: Some(ListenerOptions {
                mode: ListenerMode::TcpOnly,
                listen_addr: listen,
                enable_upnp_port_forwarding: false,
                announce_port: Some(listen.port()),
                ipv4_only: listen.is_ipv4(),
                ..Default::default()
            }),
            ipv4_only: listen.is_ipv4(),
            ratelimits: LimitsConfig {
                upload_bps: cfg.max_upload,
                download_bps: cfg.max_download,
            },
            peer_id: None,
            ..Default::default()
        };
        let session = Session::new_with_opts(default_dir.to_path_buf(), opts)
            .await
            .with_context(|| format!("cannot start the BitTorrent session on {listen}"))?;
        let listen = session.listen_addr().unwrap_or(listen);
        Ok(Swarm { session, listen })
    }

    /// Adds a torrent whose files live under `dir`, resuming (or seeding) whatever valid pieces
    /// are already there. Returns once librqbit has checked the existing data.
    pub async fn add(
        &self,
        torrent: Vec<u8>,
        dir: &Path,
        cfg: &TorrentConfig,
        stats: Arc<WriteBehindStats>,
        corrupt_uploads: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<Arc<ManagedTorrent>> {
        let mut factory = WriteBehindFactory::new(dir, cfg.drop_after_read.clone(), stats);
        if let Some(armed) = corrupt_uploads {
            factory = factory.corrupt_uploads(armed);
        }
        let opts = AddTorrentOptions {
            overwrite: true,
            output_folder: Some(
                dir.to_str()
                    .context("the destination path is not UTF-8")?
                    .to_string(),
            ),
            initial_peers: Some(cfg.peers.clone()),
            trackers: (!cfg.trackers.is_empty()).then(|| cfg.trackers.clone()),
            storage_factory: Some(factory.boxed()),
            peer_opts: Some(PeerConnectionOptions {
                connect_timeout: Some(Duration::from_secs(5)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let handle = self
            .session
            .add_torrent(AddTorrent::from_bytes(torrent), Some(opts))
            .await
            .context("cannot add the torrent")?
            .into_handle()
            .context("librqbit listed the torrent instead of adding it")?;
        loop {
            let s = handle.stats();
            match s.state {
                TorrentStatsState::Error => {
                    bail!("torrent failed: {}", s.error.unwrap_or_default())
                }
                TorrentStatsState::Initializing { .. } => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => break,
            }
        }
        Ok(handle)
    }
}

/// Waits until every piece is downloaded and verified, or the torrent fails (librqbit's own
/// wait would hang then), or nothing arrived for `stall` (no reachable peer has the data).
/// `progress` is called about every 250 ms with (verified bytes, total bytes).
///
/// After `nudge` without progress the torrent is paused and resumed, which reconnects to every
/// peer with fresh bitfields. Measured with librqbit 9.1: in a chain (each host fed by one
/// still downloading), a host could end up missing the last pieces its parent completed around
/// the time they connected, and wait for them forever on a live connection; a reconnect
/// fetches them at once. Counters of the connections before a nudge are kept in `acc`.
pub async fn wait_complete(
    session: &Arc<Session>,
    h: &Arc<ManagedTorrent>,
    stall: Option<Duration>,
    nudge: Option<Duration>,
    acc: &mut Transfer,
    mut progress: impl FnMut(u64, u64),
) -> Result<()> {
    let mut last = (u64::MAX, tokio::time::Instant::now());
    let mut last_nudge = tokio::time::Instant::now();
    let mut first = true;
    loop {
        let s = h.stats();
        if let TorrentStatsState::Error = s.state {
            bail!("torrent failed: {}", s.error.unwrap_or_default());
        }
        progress(s.progress_bytes, s.total_bytes);
        if first {
            if let Some(live) = h.live() {
                let snap = live.stats_snapshot();
                // Valid data that was not downloaded by this session was on disk already.
                acc.resumed_bytes = live
                    .get_approx_have_bytes()
                    .saturating_sub(snap.downloaded_and_checked_bytes);
                first = false;
            }
        }
        if s.finished {
            return Ok(());
        }
        let fetched = acc.fetched_bytes
            + s.live
                .as_ref()
                .map(|l| l.snapshot.fetched_bytes)
                .unwrap_or(0);
        if fetched != last.0 {
            last = (fetched, tokio::time::Instant::now());
            last_nudge = last.1;
        } else {
            if let Some(stall) = stall {
                if last.1.elapsed() >= stall {
                    bail!(
                        "no data arrived for {} s ({} of {} bytes verified): no reachable peer has the blob",
                        stall.as_secs(),
                        s.progress_bytes,
                        s.total_bytes
                    );
                }
            }
            if let Some(n) = nudge {
                if last_nudge.elapsed() >= n && h.live().is_some() {
                    let before = transfer(h, &WriteBehindStats::default(), &Transfer::default());
                    session
                        .pause(h)
                        .await
                        .context("cannot pause the torrent to reconnect")?;
                    acc.fetched_bytes += before.fetched_bytes;
                    acc.uploaded_bytes += before.uploaded_bytes;
                    for (peer, b) in before.by_peer {
                        *acc.by_peer.entry(peer).or_default() += b;
                    }
                    acc.nudges += 1;
                    session
                        .unpause(h)
                        .await
                        .context("cannot resume the torrent")?;
                    last_nudge = tokio::time::Instant::now();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where the torrent's bytes came from so far: the live connections' counters added to
/// `base` (what earlier connections did, see [`wait_complete`]).
pub fn transfer(h: &ManagedTorrent, stats: &WriteBehindStats, base: &Transfer) -> Transfer {
    use std::sync::atomic::Ordering;
    let s = h.stats();
    let mut t = Transfer {
        uploaded_bytes: base.uploaded_bytes + s.uploaded_bytes,
        resumed_bytes: base.resumed_bytes,
        by_peer: base.by_peer.clone(),
        nudges: base.nudges,
        written_back: stats.pieces.load(Ordering::Relaxed),
        writeback_errors: stats.errors.load(Ordering::Relaxed),
        first_writeback_error: stats.first_error.lock().ok().and_then(|g| g.clone()),
        ..Default::default()
    };
    if let Some(live) = h.live() {
        t.fetched_bytes = base.fetched_bytes + live.stats_snapshot().fetched_bytes;
        // The filter type is not exported; it deserializes from librqbit's HTTP API form.
        let all = serde_json::from_str(r#"{"state":"all"}"#).expect("valid peer filter");
        for (addr, p) in live.per_peer_stats_snapshot(all).peers {
            if p.counters.fetched_bytes > 0 {
                *t.by_peer.entry(addr).or_default() += p.counters.fetched_bytes;
            }
        }
    }
    t
}
