//! `blobpin origin`: the build machine's one process. It serves the feed over HTTP
//! ([`http`]), runs the tracker in-process (only published info-hashes allowed, the seeder
//! registered as the origin), seeds every published version, and picks up new publishes
//! without a restart (the feed directory is scanned every second).
//!
//! # Where the published data is
//! `blobpin publish` writes `FEED/NAME/<version>.source` holding the absolute path of the
//! published file or directory; the origin seeds from there. A feed without that file may
//! hold the data itself in `FEED/NAME/<version>/` (the layout of a sync's `versions/<v>`).
//! Before seeding, every file's size is compared with the torrent: librqbit resizes files to
//! the torrent's lengths when it adds one, so a source rebuilt since (a different size) is
//! never touched; a version whose data fails librqbit's hash check is removed from the
//! session again at once, before anyone learns of it, so the origin never downloads into a
//! build's output. Such a version is still allowed on the tracker (hosts that have it can
//! share it) and the problem is printed once.
//!
//! # Ports
//! `--listen` serves the feed; the tracker listens on `--tracker-listen` (default: the same
//! IP, port + 1) and the seeder on `--seed-listen` (default: the same IP, port + 2; with port
//! 0, any free port). The first line printed names all three:
//! `blobpin origin: feed http://A/feed/ tracker http://B/announce seeder C`.
//! The seeder is announced to the tracker by the origin itself (from the seeder's IP, left=0,
//! every few seconds), and the tracker recognises it by that address as the overlay's root.
//! Give `--listen` a specific address in production: with 0.0.0.0 the seeder announces from
//! 127.0.0.1 and the tracker would hand that address to remote hosts.

pub mod http;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use librqbit::ManagedTorrent;

use crate::feed::torrent::{self, hex, TorrentInfo};
use crate::fetch::session::{Swarm, SwarmConfig, TorrentConfig};
use crate::fetch::storage::WriteBehindStats;
use crate::tracker::{OriginMatcher, Topology, Tracker, TrackerConfig};

/// Everything the origin runs with, validated.
#[derive(Debug, Clone)]
pub struct OriginOptions {
    pub feed: PathBuf,
    pub listen: SocketAddr,
    pub tracker_listen: Vec<SocketAddr>,
    pub seed_listen: SocketAddr,
    /// See [`TrackerConfig::loopback_by_destination`].
    pub loopback_racks: bool,
    /// The tracker's announce interval, seconds.
    pub interval: u32,
    pub topology: Option<Topology>,
    /// The topology file's text, served at `/feed/topology` (see [`http`]).
    pub topology_text: Option<String>,
    pub key: Option<String>,
    pub max_upload: Option<std::num::NonZeroU32>,
    pub max_download: Option<std::num::NonZeroU32>,
    pub metrics: Option<SocketAddr>,
    /// Seconds between feed scans.
    pub scan_every: Duration,
}

/// One version the origin knows about.
#[derive(Clone)]
pub struct Version {
    pub name: String,
    pub version: String,
    pub info_hash: String,
    /// Seeding (false: data missing or changed; `problem` says why).
    pub seeding: bool,
    pub problem: Option<String>,
    pub total_size: u64,
    handle: Option<Arc<ManagedTorrent>>,
    paths: Vec<PathBuf>,
}

/// State shared with the HTTP side.
pub struct Shared {
    pub feed: PathBuf,
    pub versions: Mutex<BTreeMap<PathBuf, Version>>,
    pub tracker: Tracker,
    /// Bytes served to primers over HTTP (`/feed/NAME/files/...`).
    pub primer_bytes: std::sync::atomic::AtomicU64,
    pub http_requests: std::sync::atomic::AtomicU64,
    /// The topology (for the upload figures) and its file's text (served to syncs).
    pub topology: Option<Topology>,
    pub topology_text: Option<String>,
    /// Bytes uploaded to peers librqbit lists now, by (info-hash, peer address), and what
    /// peers it no longer lists had received, by DC (see [`Shared::sample_uploads`]).
    pub uploads: Mutex<Uploads>,
    /// `--key`, added to the torrents' announce URLs for the seeder's own session.
    pub key: Option<String>,
}

impl Shared {
    /// The `/metrics` text: the origin's own figures, then the tracker's.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering;
        let mut s = String::new();
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            s,
            "# HELP blobpin_origin_versions Published versions found in the feed.\n# TYPE blobpin_origin_versions gauge\nblobpin_origin_versions {}",
            versions.len()
        );
        let _ = writeln!(
            s,
            "# HELP blobpin_origin_seeding Versions being seeded.\n# TYPE blobpin_origin_seeding gauge\nblobpin_origin_seeding {}",
            versions.values().filter(|v| v.seeding).count()
        );
        let _ = writeln!(
            s,
            "# HELP blobpin_origin_uploaded_bytes Bytes the seeder uploaded, per version.\n# TYPE blobpin_origin_uploaded_bytes counter"
        );
        for v in versions.values() {
            if let Some(h) = &v.handle {
                let _ = writeln!(
                    s,
                    "blobpin_origin_uploaded_bytes{{name=\"{}\",version=\"{}\"}} {}",
                    v.name,
                    v.version,
                    h.stats().uploaded_bytes
                );
            }
        }
        drop(versions);
        let _ = writeln!(
            s,
            "# HELP blobpin_origin_uploaded_bytes_total Bytes the seeder uploaded, by the data centre of the receiving peer: its address located in --topology (\"unknown\" outside every rack, or without a topology). The address is the source of the peer's connection (sampled every scan from librqbit's per-peer counters).\n# TYPE blobpin_origin_uploaded_bytes_total counter"
        );
        for (dc, bytes) in self.uploaded_by_dc() {
            let _ = writeln!(
                s,
                "blobpin_origin_uploaded_bytes_total{{dc=\"{}\"}} {bytes}",
                dc.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        let _ = writeln!(
            s,
            "# HELP blobpin_origin_primer_bytes Bytes served over HTTP from blob files (primers).\n# TYPE blobpin_origin_primer_bytes counter\nblobpin_origin_primer_bytes {}",
            self.primer_bytes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP blobpin_origin_http_requests HTTP requests served.\n# TYPE blobpin_origin_http_requests counter\nblobpin_origin_http_requests {}",
            self.http_requests.load(Ordering::Relaxed)
        );
        s.push_str(&self.tracker.metrics_text());
        s
    }

    /// The DC label of a peer address: its DC in the topology, else "unknown".
    fn dc_of(&self, addr: &str) -> String {
        match (&self.topology, addr.parse::<SocketAddr>()) {
            (Some(t), Ok(a)) => {
                let loc = t.locate(a.ip());
                if loc.is_known() {
                    return t.dc_name(loc.dc).to_string();
                }
                "unknown".to_string()
            }
            _ => "unknown".to_string(),
        }
    }

    /// Takes in what librqbit's per-peer counters show now (every scan and every scrape).
    /// librqbit forgets a peer it gives up on, with its counters: a peer no longer listed is
    /// folded into its DC's total with the last value seen, so the map stays as small as the
    /// swarm and no byte seen is lost (those of the last second of a peer may be).
    pub fn sample_uploads(&self) {
        let mut now = std::collections::HashMap::new();
        {
            let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            for v in versions.values() {
                let Some(live) = v.handle.as_ref().and_then(|h| h.live()) else {
                    continue;
                };
                // The filter type is not exported; it deserializes from librqbit's HTTP API form.
                let all = serde_json::from_str(r#"{"state":"all"}"#).expect("valid peer filter");
                for (addr, p) in live.per_peer_stats_snapshot(all).peers {
                    if p.counters.uploaded_bytes > 0 {
                        now.insert((v.info_hash.clone(), addr), p.counters.uploaded_bytes);
                    }
                }
            }
        }
        let mut u = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<((String, String), u64)> = u
            .live
            .iter()
            .filter(|(k, _)| !now.contains_key(*k))
            .map(|(k, b)| (k.clone(), *b))
            .collect();
        for ((ih, addr), b) in gone {
            u.live.remove(&(ih, addr.clone()));
            *u.gone_by_dc.entry(self.dc_of(&addr)).or_default() += b;
        }
        for (k, b) in now {
            let e = u.live.entry(k).or_default();
            *e = (*e).max(b);
        }
    }

    /// Bytes uploaded by the data centre of the receiving peer; every DC of the topology and
    /// "unknown" are listed.
    pub fn uploaded_by_dc(&self) -> BTreeMap<String, u64> {
        self.sample_uploads();
        let mut out: BTreeMap<String, u64> = self
            .topology
            .iter()
            .flat_map(|t| t.dcs.iter().cloned())
            .chain(["unknown".to_string()])
            .map(|d| (d, 0))
            .collect();
        let u = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        for (dc, b) in &u.gone_by_dc {
            *out.entry(dc.clone()).or_default() += b;
        }
        for ((_, addr), b) in &u.live {
            *out.entry(self.dc_of(addr)).or_default() += b;
        }
        out
    }

    /// Bytes the seeder uploaded, all versions together.
    pub fn uploaded(&self) -> u64 {
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions
            .values()
            .filter_map(|v| v.handle.as_ref())
            .map(|h| h.stats().uploaded_bytes)
            .sum()
    }
}

/// Upload figures by receiving peer (see [`Shared::sample_uploads`]).
#[derive(Debug, Default)]
pub struct Uploads {
    /// By (info-hash, peer address) as librqbit lists them: the highest count seen.
    pub live: std::collections::HashMap<(String, String), u64>,
    /// Peers librqbit no longer lists, by DC.
    pub gone_by_dc: BTreeMap<String, u64>,
}

/// The default address of a companion listener: the same IP, `port + delta` (0 stays 0).
fn companion(listen: SocketAddr, delta: u16) -> SocketAddr {
    let port = if listen.port() == 0 {
        0
    } else {
        listen.port().saturating_add(delta)
    };
    SocketAddr::new(listen.ip(), port)
}

/// Validates `blobpin origin` arguments.
pub fn options_from_args(a: &crate::cli::OriginArgs) -> Result<OriginOptions> {
    let meta = std::fs::metadata(&a.feed)
        .with_context(|| format!("feed directory {}", a.feed.display()))?;
    ensure!(
        meta.is_dir(),
        "feed directory {} is not a directory",
        a.feed.display()
    );
    std::fs::read_dir(&a.feed)
        .with_context(|| format!("feed directory {} is not readable", a.feed.display()))?;
    let (topology, topology_text) = match a.topology.as_deref() {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read topology {}", p.display()))?;
            let t = Topology::parse(&text).with_context(|| format!("topology {}", p.display()))?;
            (Some(t), Some(text))
        }
        None => (None, None),
    };
    if a.key.as_deref() == Some("") {
        bail!("--key must not be empty");
    }
    Ok(OriginOptions {
        feed: a.feed.clone(),
        listen: a.listen,
        tracker_listen: if a.tracker_listen.is_empty() {
            vec![companion(a.listen, 1)]
        } else {
            a.tracker_listen.clone()
        },
        loopback_racks: a.loopback_racks,
        interval: a.interval,
        seed_listen: a.seed_listen.unwrap_or_else(|| companion(a.listen, 2)),
        topology,
        topology_text,
        key: a.key.clone(),
        max_upload: a
            .max_upload
            .as_deref()
            .map(crate::fetch::parse_rate)
            .transpose()
            .context("--max-upload")?,
        max_download: a
            .max_download
            .as_deref()
            .map(crate::fetch::parse_rate)
            .transpose()
            .context("--max-download")?,
        metrics: a.metrics,
        scan_every: Duration::from_millis(a.scan_ms.max(50)),
    })
}

/// Runs `blobpin origin` until SIGTERM or SIGINT (exit 0).
pub fn run(a: &crate::cli::OriginArgs) -> Result<i32> {
    crate::tracker::init_logging("warn");
    let o = options_from_args(a)?;
    serve(&o)?;
    Ok(crate::exit::OK)
}

/// Serves until a signal.
pub fn serve(o: &OriginOptions) -> Result<()> {
    let rt = crate::fetch::runtime()?;
    rt.block_on(async {
        let feed_listener = tokio::net::TcpListener::bind(o.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", o.listen))?;
        let metrics_listener = match o.metrics {
            Some(m) => Some(
                tokio::net::TcpListener::bind(m)
                    .await
                    .with_context(|| format!("cannot listen on {m} (--metrics)"))?,
            ),
            None => None,
        };
        let swarm = Swarm::start(
            &SwarmConfig {
                listen: o.seed_listen,
                max_upload: o.max_upload,
                max_download: o.max_download,
            },
            &o.feed,
        )
        .await
        .with_context(|| {
            format!(
                "cannot start the seeder on {} (--seed-listen)",
                o.seed_listen
            )
        })?;
        let announce_ip = if swarm.listen.ip().is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            swarm.listen.ip()
        };
        let seeder = SocketAddr::new(announce_ip, swarm.listen.port());
        let tracker = Tracker::bind(TrackerConfig {
            listen: o.tracker_listen.clone(),
            topology: o.topology.clone(),
            key: o.key.as_ref().map(|k| k.as_bytes().to_vec()),
            allow: Some(HashSet::new()),
            origin: OriginMatcher {
                addrs: vec![(seeder.ip(), Some(seeder.port()))],
                peer_id_prefix: None,
            },
            threads: 1,
            loopback_by_destination: o.loopback_racks,
            interval: o.interval,
            min_interval: (o.interval / 3).max(1),
            ..TrackerConfig::default()
        })
        .with_context(|| {
            format!(
                "cannot start the tracker on {:?} (--tracker-listen)",
                o.tracker_listen
            )
        })?;
        let tracker_addr = tracker.local_addr();
        let shared = Arc::new(Shared {
            feed: o.feed.clone(),
            versions: Mutex::new(BTreeMap::new()),
            tracker,
            primer_bytes: Default::default(),
            http_requests: Default::default(),
            topology: o.topology.clone(),
            topology_text: o.topology_text.clone(),
            uploads: Default::default(),
            key: o.key.clone(),
        });
        let feed_addr = feed_listener.local_addr()?;
        tokio::spawn(http::serve(feed_listener, shared.clone()));
        if let Some(l) = metrics_listener {
            tokio::spawn(http::serve(l, shared.clone()));
        }
        println!(
            "blobpin origin: feed http://{feed_addr}/feed/ tracker http://{}/announce seeder {}",
            reachable(tracker_addr),
            swarm.listen
        );
        std::io::stdout().flush()?;
        let announce_url = format!("http://{}/announce", reachable(tracker_addr));
        let announcer = Announcer::new(announce_ip, seeder.port(), announce_url, o.key.clone())?;

        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut tick = 0u64;
        loop {
            scan(&swarm, &shared).await;
            // Announce every few seconds (the tracker expires peers silent for two intervals),
            // and at once when a version was added.
            let every = (5000 / o.scan_every.as_millis().max(1) as u64).max(1);
            announcer.announce(&shared, tick % every == 0).await;
            drop_cache(&shared, tick);
            shared.sample_uploads();
            tick += 1;
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tokio::time::sleep(o.scan_every) => {}
            }
        }
        announcer.stop().await;
        swarm.session.stop().await;
        Ok(())
    })
}

/// The tracker's address as clients reach it (an unspecified IP becomes loopback).
fn reachable(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), a.port())
    } else {
        a
    }
}

/// Every few seconds, drop from the page cache what serving peers read (readahead that
/// per-read DONTNEED cannot undo).
fn drop_cache(shared: &Shared, tick: u64) {
    if tick % 5 != 4 {
        return;
    }
    let versions = shared.versions.lock().unwrap_or_else(|e| e.into_inner());
    for v in versions.values().filter(|v| v.seeding) {
        for p in &v.paths {
            if let Ok(f) = std::fs::File::open(p) {
                let _ = crate::sys::writeback::drop_range(std::os::fd::AsFd::as_fd(&f), 0, 0);
            }
        }
    }
}

/// One scan of the feed directory: every `NAME/*.torrent` not seen before is allowed on the
/// tracker and seeded (when its data is there and intact).
async fn scan(swarm: &Swarm, shared: &Shared) {
    let mut found = Vec::new();
    let Ok(names) = std::fs::read_dir(&shared.feed) else {
        return;
    };
    for n in names.flatten() {
        let Ok(name) = n.file_name().into_string() else {
            continue;
        };
        if crate::feed::check_name("name", &name).is_err() || !n.path().is_dir() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(n.path()) else {
            continue;
        };
        for f in files.flatten() {
            let Ok(file) = f.file_name().into_string() else {
                continue;
            };
            if let Some(version) = file.strip_suffix(".torrent") {
                if !version.starts_with('.') {
                    found.push((name.clone(), version.to_string(), f.path()));
                }
            }
        }
    }
    found.sort();
    for (name, version, tpath) in found {
        if shared
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&tpath)
        {
            continue;
        }
        let v = match add_version(swarm, shared, &name, &version, &tpath).await {
            Ok(v) => v,
            Err(e) => {
                eprintln!("blobpin: origin: {name} {version}: {e:#}");
                Version {
                    name: name.clone(),
                    version: version.clone(),
                    info_hash: String::new(),
                    seeding: false,
                    problem: Some(format!("{e:#}")),
                    total_size: 0,
                    handle: None,
                    paths: Vec::new(),
                }
            }
        };
        if v.seeding {
            println!(
                "seeding {} {} ({} bytes, info-hash {})",
                v.name, v.version, v.total_size, v.info_hash
            );
            let _ = std::io::stdout().flush();
        }
        shared
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tpath, v);
    }
}

/// Where a version's data is: `<version>.source`, else `FEED/NAME/<version>/`.
fn locate_data(entry_dir: &Path, version: &str, info: &TorrentInfo) -> Result<(PathBuf, PathBuf)> {
    let sidecar = entry_dir.join(format!("{version}.source"));
    let data: PathBuf = match std::fs::read(&sidecar) {
        Ok(bytes) => {
            let s = String::from_utf8(bytes)
                .with_context(|| format!("{} is not UTF-8", sidecar.display()))?;
            PathBuf::from(s.trim_end_matches('\n'))
        }
        Err(_) => {
            let d = entry_dir.join(version);
            ensure!(
                d.is_dir(),
                "no data: neither {} nor {} exists",
                sidecar.display(),
                d.display()
            );
            if info.multi_file {
                d
            } else {
                d.join(&info.name)
            }
        }
    };
    if info.multi_file {
        Ok((data.clone(), data))
    } else {
        ensure!(
            data.file_name().and_then(|n| n.to_str()) == Some(info.name.as_str()),
            "data {} is not named {:?} as in the torrent",
            data.display(),
            info.name
        );
        let dir = data
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ".".into());
        Ok((data, dir))
    }
}

async fn add_version(
    swarm: &Swarm,
    shared: &Shared,
    name: &str,
    version: &str,
    tpath: &Path,
) -> Result<Version> {
    let tbytes =
        std::fs::read(tpath).with_context(|| format!("cannot read {}", tpath.display()))?;
    let info =
        torrent::parse(&tbytes).with_context(|| format!("bad torrent {}", tpath.display()))?;
    // Published: allowed on the tracker even if this origin cannot seed it.
    shared.tracker.allow(info.info_hash);
    let entry_dir = tpath.parent().context("torrent path has no directory")?;
    let (data, dir) = locate_data(entry_dir, version, &info)?;
    let paths = info.file_paths(&dir);
    for (p, f) in paths.iter().zip(&info.files) {
        let len = std::fs::metadata(p)
            .with_context(|| format!("data {}", p.display()))?
            .len();
        ensure!(
            len == f.len,
            "data {} has {len} bytes, the published version has {} (changed since publishing; not seeding it)",
            p.display(),
            f.len
        );
    }
    // librqbit announces the seeder to the torrent's trackers too: with the key, like syncs.
    let tbytes = match &shared.key {
        Some(k) if !torrent::announce_urls(&tbytes).is_empty() => {
            torrent::with_key(&tbytes, &[], k)?
        }
        _ => tbytes,
    };
    let cfg = TorrentConfig {
        peers: Vec::new(),
        trackers: Vec::new(),
        drop_after_read: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
    };
    let h = swarm
        .add(
            tbytes,
            &dir,
            &cfg,
            Arc::new(WriteBehindStats::default()),
            None,
        )
        .await?;
    let s = h.stats();
    if !s.finished {
        let _ = swarm.session.delete(h.id().into(), false).await;
        bail!(
            "data {} no longer matches the published version ({} of {} bytes valid); not seeding it",
            data.display(),
            s.progress_bytes,
            s.total_bytes
        );
    }
    for p in &paths {
        if let Ok(f) = std::fs::File::open(p) {
            let _ = crate::sys::writeback::drop_range(std::os::fd::AsFd::as_fd(&f), 0, 0);
        }
    }
    Ok(Version {
        name: name.to_string(),
        version: version.to_string(),
        info_hash: hex(&info.info_hash),
        seeding: true,
        problem: None,
        total_size: info.total_len(),
        handle: Some(h),
        paths,
    })
}

/// Announces the seeder to the in-process tracker over HTTP, from the seeder's IP (so the
/// tracker records the address peers must connect to).
struct Announcer {
    client: reqwest::Client,
    url: String,
    port: u16,
    key: Option<String>,
    peer_id: [u8; 20],
    announced: Mutex<HashSet<String>>,
}

impl Announcer {
    fn new(ip: IpAddr, port: u16, url: String, key: Option<String>) -> Result<Announcer> {
        let client = reqwest::Client::builder()
            .local_address(ip)
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        let mut peer_id = *b"-BP0100-origin000000";
        let pid = std::process::id().to_be_bytes();
        for (i, b) in pid.iter().enumerate() {
            peer_id[16 + i] = b'a' + (b % 26);
        }
        Ok(Announcer {
            client,
            url,
            port,
            key,
            peer_id,
            announced: Mutex::new(HashSet::new()),
        })
    }

    async fn announce(&self, shared: &Shared, all: bool) {
        let todo: Vec<(String, u64)> = {
            let versions = shared.versions.lock().unwrap_or_else(|e| e.into_inner());
            let done = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            versions
                .values()
                .filter(|v| v.seeding && (all || !done.contains(&v.info_hash)))
                .map(|v| {
                    (
                        v.info_hash.clone(),
                        v.handle.as_ref().map_or(0, |h| h.stats().uploaded_bytes),
                    )
                })
                .collect()
        };
        for (ih, up) in todo {
            let first = !self
                .announced
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&ih);
            let event = if first { "&event=started" } else { "" };
            if self.send(&ih, up, event).await.is_ok() {
                self.announced
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(ih);
            }
        }
    }

    async fn stop(&self) {
        let list: Vec<String> = self
            .announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        for ih in list {
            let _ = self.send(&ih, 0, "&event=stopped").await;
        }
    }

    async fn send(&self, info_hash_hex: &str, uploaded: u64, event: &str) -> Result<()> {
        let mut ih = [0u8; 20];
        for (i, b) in ih.iter_mut().enumerate() {
            *b = u8::from_str_radix(&info_hash_hex[2 * i..2 * i + 2], 16)?;
        }
        let mut url = format!(
            "{}?info_hash={}&peer_id={}&port={}&uploaded={uploaded}&downloaded=0&left=0&compact=1&numwant=0{event}",
            self.url,
            crate::tracker::protocol::percent_encode(&ih),
            crate::tracker::protocol::percent_encode(&self.peer_id),
            self.port
        );
        if let Some(k) = &self.key {
            url.push_str("&key=");
            url.push_str(&crate::tracker::protocol::percent_encode(k.as_bytes()));
        }
        let body = self.client.get(&url).send().await?.bytes().await?;
        if body.windows(14).any(|w| w == b"failure reason") {
            bail!(
                "tracker refused the origin's announce: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }
}
