//! The tracker: a rack- and datacentre-aware HTTP BitTorrent tracker (BEP 3 announce, BEP 23
//! compact peers, BEP 7 `peers6`, BEP 48 scrape) that shapes the swarm into an overlay.
//!
//! - [`config`]: topology file, longest-prefix location, allow-list, [`TrackerConfig`];
//! - [`protocol`]: pure request parsing and bencoding;
//! - [`swarm`]: pure swarm state and the overlay algorithm (documented there);
//! - [`server`]: sockets; [`server::Tracker`] is the embeddable handle the origin uses.
//!
//! This file turns `blobpin tracker` arguments into a [`TrackerConfig`] and runs it until
//! SIGTERM or SIGINT; SIGHUP re-reads the `--allow` file.

pub mod config;
pub mod protocol;
pub mod server;
pub mod swarm;

use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, Signal};

pub use config::{OriginMatcher, Topology, TrackerConfig};
pub use server::Tracker;

use crate::cli::TrackerArgs;
use crate::exit;

/// Validates the command's arguments into a [`TrackerConfig`].
pub fn config_from_args(a: &TrackerArgs) -> anyhow::Result<TrackerConfig> {
    if a.interval == 0 {
        bail!("--interval must be at least 1 second");
    }
    if a.min_interval > a.interval {
        bail!(
            "--min-interval ({}) must not exceed --interval ({})",
            a.min_interval,
            a.interval
        );
    }
    if a.max_numwant == 0 || a.max_swarms == 0 || a.max_peers == 0 || a.max_connections == 0 {
        bail!("--max-numwant, --max-swarms, --max-peers and --max-connections must be at least 1");
    }
    let topology = a.topology.as_deref().map(Topology::load).transpose()?;
    let allow = a
        .allow
        .as_deref()
        .map(config::load_allow_file)
        .transpose()?;
    let mut origin = OriginMatcher::default();
    for o in &a.origin {
        origin.addrs.push(OriginMatcher::parse_addr(o)?);
    }
    origin.peer_id_prefix = a.origin_peer_id.as_ref().map(|p| p.as_bytes().to_vec());
    if a.key.as_deref() == Some("") {
        bail!("--key must not be empty");
    }
    Ok(TrackerConfig {
        listen: a.listen.clone(),
        topology,
        key: a.key.as_ref().map(|k| k.as_bytes().to_vec()),
        allow,
        allow_file: a.allow.clone(),
        interval: a.interval,
        min_interval: a.min_interval,
        default_numwant: a.numwant.min(a.max_numwant),
        max_numwant: a.max_numwant,
        max_swarms: a.max_swarms,
        max_peers_per_swarm: a.max_peers,
        max_connections: a.max_connections,
        origin,
        threads: a.threads,
        loopback_by_destination: false,
    })
}

/// Sends `tracing` events to stderr, filtered by `RUST_LOG` (else `default`, e.g. "info").
/// `RUST_LOG=blobpin::tracker::swarm=debug` shows every overlay decision.
pub fn init_logging(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// `blobpin tracker`: serve until SIGTERM/SIGINT (exit 0).
pub fn run(a: &TrackerArgs) -> anyhow::Result<i32> {
    init_logging("info");
    let config = config_from_args(a)?;
    // Block the signals before any thread starts, so only sigwait below sees them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    signals.thread_block().context("blocking signals")?;
    let allow_file = config.allow_file.clone();
    let overlay = config
        .topology
        .as_ref()
        .map(|t| (t.dcs.len(), t.racks.len(), t.overlay.clone()));
    let tracker = Tracker::bind(config)?;
    for addr in tracker.local_addrs() {
        println!("blobpin tracker: listening on http://{addr}/announce");
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    match overlay {
        Some((dcs, racks, o)) => tracing::info!(dcs, racks, ?o, "topology loaded"),
        None => tracing::info!("no topology: random answers"),
    }
    loop {
        match signals.wait().context("waiting for signals")? {
            Signal::SIGHUP => {
                if let Some(path) = &allow_file {
                    match config::load_allow_file(path) {
                        Ok(set) => {
                            tracing::info!(hashes = set.len(), file = %path.display(), "allow-list reloaded");
                            tracker.set_allowed(Some(set));
                        }
                        Err(e) => tracing::error!("{e:#}; keeping the previous allow-list"),
                    }
                }
            }
            sig => {
                tracing::info!(?sig, "stopping");
                tracker.shutdown();
                return Ok(exit::OK);
            }
        }
    }
}
