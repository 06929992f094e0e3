//! `blobpin seed` (hidden; the precursor of `origin`): seed the latest version of a feed entry
//! from the published data until SIGTERM or SIGINT. Pieces read to serve peers (and the
//! initial hash check) are dropped from the page cache again, so seeding does not evict the
//! machine's hot pages either.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};

use super::session::{self, Swarm, SwarmConfig, TorrentConfig};
use super::storage::WriteBehindStats;
use super::{runtime, FeedLocation};
use crate::feed::torrent::{self, hex};
use crate::feed::FeedEntry;

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub feed: FeedLocation,
    /// The published file, or the published directory.
    pub data: PathBuf,
    pub swarm: SwarmConfig,
    pub peers: Vec<SocketAddr>,
    /// Test hook: send corrupt data (every upload read has a byte flipped).
    pub corrupt_uploads: bool,
}

/// Seeds until a signal; prints `seeding VERSION on ADDR` once serving, and a JSON line with the
/// bytes uploaded when stopped.
pub fn seed(o: &SeedOptions) -> Result<()> {
    let rt = runtime()?;
    let raw = o
        .feed
        .get(&rt, "latest.json", 1 << 20)
        .context("cannot read the feed")?;
    let entry = FeedEntry::parse(&raw)
        .with_context(|| format!("bad feed entry {}", o.feed.url_of("latest.json")))?;
    let tbytes = o
        .feed
        .get(&rt, &entry.torrent.file, 64 << 20)
        .context("cannot read the torrent")?;
    ensure!(
        hex(&Sha256::digest(&tbytes)) == entry.torrent.sha256,
        "torrent {} does not match feed field torrent.sha256",
        o.feed.url_of(&entry.torrent.file)
    );
    let info = torrent::parse(&tbytes)?;
    entry.matches_torrent(&info)?;
    let dir: PathBuf = if info.multi_file {
        o.data.clone()
    } else {
        ensure!(
            o.data.file_name().and_then(|n| n.to_str()) == Some(info.name.as_str()),
            "--data {} must be the published file, named {:?}",
            o.data.display(),
            info.name
        );
        o.data
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ".".into())
    };
    let armed = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let swarm = Swarm::start(&o.swarm, &dir).await?;
        let stats = Arc::new(WriteBehindStats::default());
        let cfg = TorrentConfig {
            peers: o.peers.clone(),
            trackers: Vec::new(),
            drop_after_read: Arc::new(AtomicBool::new(true)),
        };
        let h = swarm
            .add(
                tbytes,
                &dir,
                &cfg,
                stats,
                o.corrupt_uploads.then(|| armed.clone()),
            )
            .await?;
        let s = h.stats();
        ensure!(
            s.finished,
            "{} does not hold the complete published data ({} of {} bytes valid)",
            o.data.display(),
            s.progress_bytes,
            s.total_bytes
        );
        // The initial hash check read everything through librqbit's descriptors (with
        // readahead, which per-read DONTNEED cannot undo): drop it all now, and again every few
        // seconds while serving.
        let paths = info.file_paths(&dir);
        let drop_all = || {
            for p in &paths {
                if let Ok(file) = std::fs::File::open(p) {
                    let _ =
                        crate::sys::writeback::drop_range(std::os::fd::AsFd::as_fd(&file), 0, 0);
                }
            }
        };
        drop_all();
        armed.store(true, Ordering::Relaxed);
        println!(
            "seeding {} {} on {}",
            entry.name, entry.version, swarm.listen
        );
        std::io::stdout().flush()?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => drop_all(),
            }
        }
        let t = session::transfer(&h, &WriteBehindStats::default(), &Default::default());
        println!(
            "{}",
            serde_json::json!({ "uploaded_bytes": t.uploaded_bytes })
        );
        std::io::stdout().flush()?;
        swarm.session.stop().await;
        Ok(())
    })
}

/// Runs `blobpin seed`.
pub fn run(a: &crate::cli::SeedArgs) -> Result<i32> {
    let o = SeedOptions {
        feed: FeedLocation::parse(&a.feed)?,
        data: a.data.clone(),
        swarm: SwarmConfig {
            listen: a.listen,
            max_upload: a.max_upload.as_deref().map(super::parse_rate).transpose()?,
            max_download: None,
        },
        peers: a.peer.clone(),
        corrupt_uploads: a.corrupt_uploads,
    };
    seed(&o)?;
    Ok(crate::exit::OK)
}
