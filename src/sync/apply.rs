//! Carrying out a [`Plan`](super::plan::Plan) on disk. The order guarantees that the live
//! version is never touched until its replacement is complete:
//!
//! 1. fetch and validate `latest.json` and the torrent (SHA-256 against the feed, file names);
//! 2. download into `DIR/.staging/<v>` with cache-safe storage (resuming what is there);
//! 3. verify every file's SHA-256 (pieces were SHA-1-checked by librqbit), fsync files and
//!    directories, rename the staging directory to `DIR/versions/<v>`;
//! 4. with `--lock`, start a detached `blobpin lock --pidfile DIR/.locks/<v>.pid` holder and
//!    wait until it holds the whole version (a failure here leaves the old version live and
//!    locked); under `--watch` ([`super::watch`]) this process locks the version itself;
//! 5. flip `current`: a new symlink `DIR/.current.tmp -> versions/<v>` renamed over
//!    `DIR/current` (rename is atomic, so a reader resolves either the old or the new version);
//! 6. run `--exec` with `BLOBPIN_VERSION` and `BLOBPIN_PATH`;
//! 7. stop the holders of older versions, evict those versions from the page cache, prune to
//!    `--keep`;
//! 8. with `--seed-for`, keep seeding (from the moment the download completed) until the time is
//!    up or SIGTERM/SIGINT arrives, then exit 0.
//!
//! A download that makes no progress for `--reconnect-after` seconds reconnects to its peers
//! (see `fetch::session::wait_complete`); one with none for `--stall-timeout` fails, keeping
//! its staging directory for the next sync to resume. Only one sync runs on a destination at a
//! time (`DIR/.sync.lock`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

use super::plan::{plan, DestState, Plan};
use crate::feed::torrent::{self, hex};
use crate::feed::FeedEntry;
use crate::fetch::session::{self, Swarm, SwarmConfig, TorrentConfig, Transfer};
use crate::fetch::storage::WriteBehindStats;
use crate::fetch::{runtime, FeedLocation};
use crate::sys::writeback;

/// Everything `sync` needs, validated.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub feed: FeedLocation,
    pub dest: PathBuf,
    pub lock: bool,
    pub keep: usize,
    pub exec: Option<String>,
    pub swarm: SwarmConfig,
    pub peers: Vec<SocketAddr>,
    pub trackers: Vec<String>,
    /// Give up when no data arrived for this long.
    pub stall: Option<Duration>,
    /// Keep seeding this long after the switch.
    pub seed_for: Duration,
    /// Reconnect to all peers after this long without progress (see
    /// [`session::wait_complete`]).
    pub nudge: Option<Duration>,
    /// Period of the waker (see `fetch::waker`), or none.
    pub wake: Option<Duration>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Log each step on stderr (`blobpin: ...` lines).
    pub verbose: bool,
    /// Where to read one piece from before joining the swarm (see [`prime`]): an http(s) base
    /// URL or a local directory holding the blob's files.
    pub prime_from: Option<String>,
    /// `prime_from` was derived from the feed URL, not asked for: failing to prime is only
    /// reported with `verbose`.
    pub prime_default: bool,
    /// The tracker's shared secret (`origin --key`): every announce URL carries `key=` (see
    /// [`keyed`]).
    pub key: Option<String>,
}

/// What a sync did (printed by the command, as text or JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    pub schema: &'static str,
    pub name: String,
    pub version: String,
    /// `up-to-date`, `relocked` or `switched`.
    pub action: &'static str,
    pub path: PathBuf,
    pub total_size: u64,
    pub fetched_bytes: u64,
    pub resumed_bytes: u64,
    pub uploaded_bytes: u64,
    pub bytes_by_peer: std::collections::BTreeMap<String, u64>,
    /// `bytes_by_peer` summed by the tracker's tiers (rack, dc, remote, unknown, origin; see
    /// [`super::tiers`]); every tier is listed.
    pub bytes_by_tier: std::collections::BTreeMap<String, u64>,
    pub written_back_pieces: u64,
    /// Times the download reconnected to its peers after a pause in progress.
    pub reconnects: u32,
    pub lock_pid: Option<i32>,
    pub unlocked: Vec<String>,
    pub pruned: Vec<String>,
    /// Seconds from the start until the new version was live (locked, if asked).
    pub switch_seconds: f64,
    /// Seconds in all (including `--seed-for`).
    pub seconds: f64,
}

/// The JSON schema tag of [`SyncReport`].
pub const REPORT_SCHEMA: &str = "blobpin.sync/1";

/// Largest `latest.json` and .torrent accepted.
const MAX_FEED: usize = 1 << 20;
const MAX_TORRENT: usize = 64 << 20;

/// How a sync holds the locks of the versions it locks.
pub(crate) enum Holding<'a> {
    /// One-shot: detached `blobpin lock` processes, found through `.locks/<v>.pid`.
    Detached,
    /// `--watch`: this process holds the mappings itself, by version. Detached holders found
    /// in `.locks/` are taken over: the version is locked here first, then they are stopped.
    InProcess(&'a mut std::collections::BTreeMap<String, Vec<crate::sys::Mapping>>),
}

/// What differs between a one-shot sync and one poll of `--watch`.
pub(crate) struct Cycle<'a> {
    pub holding: Holding<'a>,
    /// The caller already holds `DIR/.sync.lock` (a watch holds it for its whole life).
    pub dest_locked: bool,
    /// Keep the session seeding after the download (in `seeding`), and start one seeding the
    /// live version if there is none.
    pub keep_seeding: bool,
    /// The seeding session of the live version, if any; stopped before a new download (its
    /// listen address is reused) and replaced by the new version's.
    pub seeding: &'a mut Option<Seeding>,
    /// Becomes true when the caller is asked to stop: a download in progress is abandoned
    /// (its staging directory is kept for the next start to resume).
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Runs one sync; see the module doc.
pub fn sync(o: &SyncOptions) -> Result<SyncReport> {
    let rt = runtime()?;
    let mut seeding = None;
    let mut c = Cycle {
        holding: Holding::Detached,
        dest_locked: false,
        keep_seeding: !o.seed_for.is_zero(),
        seeding: &mut seeding,
        stop: None,
    };
    let (mut report, hook_err) = run_cycle(o, &rt, &mut c)?;
    let start = Instant::now() - Duration::from_secs_f64(report.seconds);
    if let Some(seed) = seeding {
        let t = seed.finish(&rt, o.seed_for, &report.path, o.lock);
        report.uploaded_bytes = t.uploaded_bytes;
    }
    report.seconds = start.elapsed().as_secs_f64();
    if let Some(e) = hook_err {
        return Err(e.context(format!(
            "version {} is live, but the --exec hook failed",
            report.version
        )));
    }
    Ok(report)
}

/// Creates the destination's directories and resolves it to an absolute path (lock holders
/// are recognised by the path in their command line).
pub(crate) fn prepare_dest(dest: &Path) -> Result<PathBuf> {
    for d in [
        dest.to_path_buf(),
        dest.join("versions"),
        dest.join(".staging"),
        dest.join(".locks"),
    ] {
        fs::create_dir_all(&d)
            .with_context(|| format!("destination {} is not writable", d.display()))?;
    }
    let dest =
        fs::canonicalize(dest).with_context(|| format!("cannot resolve {}", dest.display()))?;
    probe_writable(&dest)?;
    Ok(dest)
}

/// Reads and parses the feed's `latest.json`.
pub(crate) fn read_feed(o: &SyncOptions, rt: &tokio::runtime::Runtime) -> Result<FeedEntry> {
    let feed_url = o.feed.url_of("latest.json");
    let raw = o
        .feed
        .get(rt, "latest.json", MAX_FEED)
        .context("cannot read the feed")?;
    FeedEntry::parse(&raw).with_context(|| format!("bad feed entry {feed_url}"))
}

/// One sync: read the feed, plan, download, lock, switch, hook, unlock, prune. Returns the
/// report (`seconds` up to the end of pruning) and the hook's error, if it failed after the
/// switch.
pub(crate) fn run_cycle(
    o: &SyncOptions,
    rt: &tokio::runtime::Runtime,
    c: &mut Cycle,
) -> Result<(SyncReport, Option<anyhow::Error>)> {
    let start = Instant::now();
    let entry = read_feed(o, rt)?;
    let o = &SyncOptions {
        dest: prepare_dest(&o.dest)?,
        ..o.clone()
    };
    let dest = &o.dest;
    let _exclusive = if c.dest_locked {
        None
    } else {
        Some(lock_dest(dest)?)
    };
    let mut state = scan(dest)?;
    // Detached holders (one-shot syncs before this watch started) are taken over below.
    let detached = std::mem::take(&mut state.locked);
    state.locked = match &c.holding {
        Holding::Detached => detached.clone(),
        Holding::InProcess(held) => held.keys().cloned().collect(),
    };
    let p = plan(&entry.version, &state, o.lock, o.keep);
    let mut report = SyncReport {
        schema: REPORT_SCHEMA,
        name: entry.name.clone(),
        version: entry.version.clone(),
        action: if p.switch {
            "switched"
        } else if p.lock {
            "relocked"
        } else {
            "up-to-date"
        },
        path: dest.join("versions").join(&entry.version),
        total_size: entry.total_size,
        fetched_bytes: 0,
        resumed_bytes: 0,
        uploaded_bytes: 0,
        bytes_by_peer: Default::default(),
        bytes_by_tier: super::metrics::TIERS
            .iter()
            .map(|t| (t.to_string(), 0))
            .collect(),
        written_back_pieces: 0,
        reconnects: 0,
        lock_pid: None,
        unlocked: Vec::new(),
        pruned: Vec::new(),
        switch_seconds: 0.0,
        seconds: 0.0,
    };
    for v in &p.drop_staging {
        let d = dest.join(".staging").join(v);
        fs::remove_dir_all(&d)
            .with_context(|| format!("cannot remove stale download {}", d.display()))?;
    }
    if p.download {
        if let Some(old) = c.seeding.take() {
            old.stop(rt);
        }
        #[cfg(feature = "tracker")]
        let tiers = super::tiers::Tiers::from_feed(rt, &o.feed, o.swarm.listen, |m| {
            if o.verbose {
                eprintln!("blobpin: {m}");
            }
        });
        let (t, s) = download(o, rt, &entry, &p, c)?;
        *c.seeding = s;
        #[cfg(feature = "tracker")]
        {
            report.bytes_by_tier = tiers.by_tier(&t.by_peer);
        }
        #[cfg(not(feature = "tracker"))]
        {
            report
                .bytes_by_tier
                .insert("unknown".into(), t.by_peer.values().sum());
        }
        report.fetched_bytes = t.fetched_bytes;
        report.resumed_bytes = t.resumed_bytes;
        report.uploaded_bytes = t.uploaded_bytes;
        report.bytes_by_peer = t.by_peer;
        report.written_back_pieces = t.written_back;
        report.reconnects = t.nudges;
    }
    let version_dir = dest.join("versions").join(&entry.version);
    match &mut c.holding {
        Holding::Detached => {
            if p.lock {
                report.lock_pid = Some(start_holder(dest, &entry.version)?);
            } else if o.lock {
                report.lock_pid = holder_pid(dest, &entry.version);
            }
        }
        Holding::InProcess(held) => {
            if p.lock {
                let maps = lock_here(&version_dir).with_context(|| {
                    format!(
                        "cannot lock version {}; the live version is untouched",
                        entry.version
                    )
                })?;
                held.insert(entry.version.clone(), maps);
            }
            if o.lock {
                report.lock_pid = Some(std::process::id() as i32);
            }
        }
    }
    if p.switch {
        flip(dest, &entry.version)?;
        if o.verbose {
            eprintln!(
                "blobpin: {} is live: {} -> versions/{}",
                entry.version,
                dest.join("current").display(),
                entry.version
            );
        }
    }
    report.switch_seconds = start.elapsed().as_secs_f64();
    let mut hook_err = None;
    if p.exec {
        if let Some(cmd) = &o.exec {
            hook_err = run_hook(cmd, &entry.version, &version_dir).err();
        }
    }
    let mut unlocked = p.unlock.clone();
    match &mut c.holding {
        Holding::Detached => {
            for v in &p.unlock {
                stop_holder(dest, v)?;
            }
        }
        Holding::InProcess(held) => {
            for v in &p.unlock {
                held.remove(v);
            }
            for v in &detached {
                stop_holder(dest, v)?;
                if !unlocked.contains(v) {
                    unlocked.push(v.clone());
                }
            }
        }
    }
    report.unlocked = unlocked.clone();
    for v in &p.prune {
        let d = dest.join("versions").join(v);
        if holder_pid(dest, v).is_some() {
            continue;
        }
        evict_tree(&d);
        fs::remove_dir_all(&d)
            .with_context(|| format!("cannot prune old version {}", d.display()))?;
        report.pruned.push(v.clone());
    }
    for v in &unlocked {
        if !p.prune.contains(v) && *v != entry.version {
            evict_tree(&dest.join("versions").join(v));
        }
    }
    if c.keep_seeding && c.seeding.is_none() && !p.download {
        match seed_live(o, rt, &entry, &version_dir) {
            Ok(s) => *c.seeding = Some(s),
            Err(e) => eprintln!("blobpin: warning: not seeding {}: {e:#}", entry.version),
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok((report, hook_err))
}

/// Locks every file of `dir` in this process (touching what is missing first); the mappings
/// stay locked until dropped.
pub(crate) fn lock_here(dir: &Path) -> Result<Vec<crate::sys::Mapping>> {
    use crate::residency::{Crawler, Op, Options, Sink, Warning};
    let opts = Options {
        op: Op::Lock,
        ..Default::default()
    };
    let (req, _, _) = crate::doctor::measure(&opts, &[dir.to_path_buf()]);
    let pf = crate::doctor::preflight(&req);
    for n in &pf.notes {
        eprintln!("blobpin: {n}");
    }
    if let Some((head, lines)) = pf.refused {
        bail!("{head}\n  {}", lines.join("\n  "));
    }
    struct Failures(Vec<String>);
    impl Sink for Failures {
        fn warning(&mut self, w: Warning) {
            if w.is_failure() {
                self.0.push(w.to_string());
            }
        }
    }
    let mut sink = Failures(Vec::new());
    let mut crawler = Crawler::new(opts);
    if let Err(f) = crawler
        .crawl(dir, &mut sink)
        .and_then(|()| crawler.finish(&mut sink))
    {
        let hints = crate::cli::residency_cmd::lock_hints(&f);
        bail!(
            "{}{}",
            String::from_utf8_lossy(&f.to_bytes()).trim_end(),
            hints.iter().map(|h| format!("\n  {h}")).collect::<String>()
        );
    }
    if let Some(first) = sink.0.first() {
        bail!("{first}");
    }
    Ok(crawler.into_kept().0)
}

/// Creating a file in the destination is the only reliable test of writability (root ignores
/// modes, but not read-only mounts or immutable directories).
fn probe_writable(dest: &Path) -> Result<()> {
    let probe = dest
        .join(".staging")
        .join(format!(".probe-{}", std::process::id()));
    File::create(&probe)
        .with_context(|| format!("destination {} is not writable", dest.display()))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Holds `DIR/.sync.lock` (flock) for the whole sync, so two syncs of one destination (a deploy
/// script racing a `--watch` service, say) cannot interleave.
pub(crate) fn lock_dest(dest: &Path) -> Result<nix::fcntl::Flock<File>> {
    let path = dest.join(".sync.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        if e == nix::errno::Errno::EWOULDBLOCK {
            anyhow::anyhow!(
                "another sync is running on {} (it holds {})",
                dest.display(),
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot lock {}: {e}", path.display())
        }
    })
}

/// Reads the destination's state (see `plan` for the layout).
pub fn scan(dest: &Path) -> Result<DestState> {
    let list = |d: &Path| -> Result<Vec<(String, std::time::SystemTime)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(d).with_context(|| format!("cannot read {}", d.display()))? {
            let e = e.with_context(|| format!("cannot read {}", d.display()))?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            out.push((name, t));
        }
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    };
    let current = fs::read_link(dest.join("current")).ok().and_then(|t| {
        let t = t.to_str()?.strip_prefix("versions/")?.to_string();
        (!t.contains('/')).then_some(t)
    });
    let versions = list(&dest.join("versions"))?
        .into_iter()
        .map(|v| v.0)
        .collect();
    let staging = list(&dest.join(".staging"))?
        .into_iter()
        .map(|v| v.0)
        .collect();
    let mut locked = Vec::new();
    for e in fs::read_dir(dest.join(".locks"))
        .with_context(|| format!("cannot read {}/.locks", dest.display()))?
    {
        let Ok(e) = e else { continue };
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if let Some(v) = name.strip_suffix(".pid") {
            if holder_pid(dest, v).is_some() {
                locked.push(v.to_string());
            }
        }
    }
    locked.sort();
    Ok(DestState {
        current,
        versions,
        staging,
        locked,
    })
}

/// A session still seeding a version after its download (`--seed-for`, `--watch`).
pub(crate) struct Seeding {
    swarm: Swarm,
    handle: Arc<librqbit::ManagedTorrent>,
    stats: Arc<WriteBehindStats>,
    /// Counters of connections closed by nudges during the download.
    base: Transfer,
    /// The version's files, relative to its directory.
    files: Vec<String>,
    /// SIGTERM and SIGINT, caught from the end of the download on: they end the seeding.
    signals: Vec<tokio::signal::unix::Signal>,
}

impl Seeding {
    /// The transfer figures so far (bytes uploaded while seeding, by peer fetched).
    pub(crate) fn transfer(&self) -> Transfer {
        session::transfer(&self.handle, &self.stats, &self.base)
    }

    /// Stops seeding; returns the final transfer figures.
    pub(crate) fn stop(self, rt: &tokio::runtime::Runtime) -> Transfer {
        let t = self.transfer();
        rt.block_on(self.swarm.session.stop());
        t
    }

    /// Seeds for `d`, or until SIGTERM or SIGINT (dropping the version's pages every few
    /// seconds unless `locked`), then stops; returns the final transfer figures.
    fn finish(
        self,
        rt: &tokio::runtime::Runtime,
        d: Duration,
        dir: &Path,
        locked: bool,
    ) -> Transfer {
        let mut signals = self.signals;
        rt.block_on(async {
            let end = tokio::time::Instant::now() + d;
            let stop = async {
                let waits = signals.iter_mut().map(|s| Box::pin(s.recv()));
                futures_select_any(waits).await
            };
            tokio::pin!(stop);
            loop {
                let tick = tokio::time::sleep_until(
                    end.min(tokio::time::Instant::now() + Duration::from_secs(5)),
                );
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tick => {}
                }
                if !locked {
                    for f in &self.files {
                        if let Ok(file) = File::open(dir.join(f)) {
                            let _ = writeback::drop_range(file.as_fd(), 0, 0);
                        }
                    }
                }
                if tokio::time::Instant::now() >= end {
                    break;
                }
            }
            let t = session::transfer(&self.handle, &self.stats, &self.base);
            self.swarm.session.stop().await;
            t
        })
    }
}

/// Resolves when any of the futures does (never, if there are none).
async fn futures_select_any<F: std::future::Future + Unpin>(futs: impl Iterator<Item = F>) {
    let mut futs: Vec<F> = futs.collect();
    if futs.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Fetches the entry's torrent and checks it against the feed (SHA-256, files, private).
fn fetch_torrent(
    o: &SyncOptions,
    rt: &tokio::runtime::Runtime,
    entry: &FeedEntry,
) -> Result<(Vec<u8>, torrent::TorrentInfo)> {
    let turl = o.feed.url_of(&entry.torrent.file);
    let tbytes = o
        .feed
        .get(rt, &entry.torrent.file, MAX_TORRENT)
        .context("cannot read the torrent")?;
    let sum = hex(&Sha256::digest(&tbytes));
    ensure!(
        sum == entry.torrent.sha256,
        "torrent {turl} has SHA-256 {sum}, but feed field torrent.sha256 says {}",
        entry.torrent.sha256
    );
    let info = torrent::parse(&tbytes).with_context(|| format!("bad torrent {turl}"))?;
    entry
        .matches_torrent(&info)
        .with_context(|| format!("torrent {turl} does not match the feed"))?;
    ensure!(
        info.private,
        "torrent {turl} is not private (BEP 27); blobpin only fetches private torrents"
    );
    Ok((tbytes, info))
}

/// The torrent and extra trackers to hand librqbit. With `--key`, every announce URL (the
/// torrent's own and `--tracker`) gets `key=SECRET` and is written into the torrent's
/// announce list (outside the info dictionary: the info-hash stays), and no extra trackers
/// are passed: librqbit announces a private torrent to one tracker of its set, picked
/// arbitrarily, so each one must carry the key.
fn keyed(o: &SyncOptions, tbytes: Vec<u8>) -> Result<(Vec<u8>, Vec<String>)> {
    match &o.key {
        None => Ok((tbytes, o.trackers.clone())),
        Some(key) => Ok((
            torrent::with_key(&tbytes, &o.trackers, key)
                .context("--key is for a tracker, but no --tracker is given")?,
            Vec::new(),
        )),
    }
}

/// Starts seeding the live version from `versions/<v>` (a watch that found it up to date).
fn seed_live(
    o: &SyncOptions,
    rt: &tokio::runtime::Runtime,
    entry: &FeedEntry,
    dir: &Path,
) -> Result<Seeding> {
    let (tbytes, _) = fetch_torrent(o, rt, entry)?;
    let (tbytes, trackers) = keyed(o, tbytes)?;
    let stats = Arc::new(WriteBehindStats::default());
    let drop_reads = Arc::new(std::sync::atomic::AtomicBool::new(!o.lock));
    rt.block_on(async {
        let swarm = Swarm::start(&o.swarm, dir).await?;
        let cfg = TorrentConfig {
            peers: o.peers.clone(),
            trackers,
            drop_after_read: drop_reads,
        };
        let h = swarm.add(tbytes, dir, &cfg, stats.clone(), None).await?;
        ensure!(
            h.stats().finished,
            "{} is not complete on disk",
            dir.display()
        );
        Ok(Seeding {
            swarm,
            handle: h,
            stats,
            base: Transfer::default(),
            files: entry.files.iter().map(|f| f.path.clone()).collect(),
            signals: Vec::new(),
        })
    })
}

/// Downloads and verifies the plan's version into `versions/<v>`; with `--seed-for`, returns
/// the session still seeding it.
fn download(
    o: &SyncOptions,
    rt: &tokio::runtime::Runtime,
    entry: &FeedEntry,
    p: &Plan,
    c: &Cycle,
) -> Result<(Transfer, Option<Seeding>)> {
    let (tbytes, info) = fetch_torrent(o, rt, entry)?;

    let staging = o.dest.join(".staging").join(&p.version);
    fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    if let Some(src) = &o.prime_from {
        let n = prime_piece(&o.swarm.listen, info.pieces.len());
        // A few tries: an origin that just picked up a version may serve its feed entry a
        // moment before its files (measured: 404s in the first second after a start).
        let mut tries = 1;
        let mut res = prime_from(rt, src, &staging, &info, n);
        while res.is_err() && tries < PRIMER_TRIES {
            std::thread::sleep(Duration::from_millis(300));
            tries += 1;
            res = prime_from(rt, src, &staging, &info, n);
        }
        match res {
            Ok(()) if o.verbose => eprintln!("blobpin: primed with piece {n} from {src}"),
            Ok(()) => {}
            Err(_) if o.prime_default && !o.verbose => {}
            Err(e) => eprintln!("blobpin: warning: joining without a primer piece: {e:#}"),
        }
    }
    let (tbytes, trackers) = keyed(o, tbytes)?;
    let stats = Arc::new(WriteBehindStats::default());
    let drop_reads = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (transfer, seeding) = rt.block_on(async {
        let swarm = Swarm::start(&o.swarm, &staging).await?;
        let cfg = TorrentConfig {
            peers: o.peers.clone(),
            trackers,
            drop_after_read: drop_reads.clone(),
        };
        let h = swarm
            .add(tbytes.clone(), &staging, &cfg, stats.clone(), None)
            .await?;
        if o.verbose {
            eprintln!(
                "blobpin: joined the swarm for {} {} on {} ({} of {} bytes already here)",
                entry.name,
                entry.version,
                swarm.listen,
                h.stats().progress_bytes,
                entry.total_size
            );
        }
        let bar = o.progress.then(|| {
            let bar = indicatif::ProgressBar::new(entry.total_size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
                )
                .expect("valid template"),
            );
            bar
        });
        let waker = o.wake.map(|period| {
            let h = h.clone();
            tokio::spawn(crate::fetch::waker::run(
                swarm.listen,
                info.info_hash,
                info.pieces.len(),
                period,
                move || h.stats().finished,
            ))
        });
        let mut acc = Transfer::default();
        let mut stop = c.stop.clone();
        let started = Instant::now();
        let (mut last_log, mut last_done) = (started, u64::MAX);
        let res = tokio::select! {
            r = session::wait_complete(&swarm.session, &h, o.stall, o.nudge, &mut acc, |done, total| {
                if let Some(b) = &bar {
                    b.set_position(done);
                }
                // -v: one line per second (when it moved), for logs without a terminal.
                if o.verbose && (done == total || last_log.elapsed() >= Duration::from_secs(1)) && done != last_done {
                    eprintln!(
                        "blobpin: {:.1} s: {done} of {total} bytes verified",
                        started.elapsed().as_secs_f64()
                    );
                    last_log = Instant::now();
                    last_done = done;
                }
            }) => r,
            _ = async {
                match &mut stop {
                    Some(s) => { let _ = s.wait_for(|v| *v).await; }
                    None => std::future::pending::<()>().await,
                }
            } => Err(anyhow::anyhow!("stopped by a signal during the download (the next start resumes it)")),
        };
        if let Some(w) = waker {
            w.abort();
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let t = session::transfer(&h, &stats, &acc);
        if res.is_err() || !c.keep_seeding {
            swarm.session.stop().await;
            return res.map(|()| (t, None));
        }
        // Keep seeding through verification and the switch (librqbit's descriptors follow
        // the files through the rename); reads to serve peers are dropped again unless the
        // version is about to be locked.
        drop_reads.store(!o.lock, std::sync::atomic::Ordering::Relaxed);
        // A one-shot sync catches SIGTERM and SIGINT from here on (they end `--seed-for`); a
        // watch has its own handlers.
        use tokio::signal::unix::{signal, SignalKind};
        let signals = if c.stop.is_none() {
            [SignalKind::terminate(), SignalKind::interrupt()]
                .into_iter()
                .filter_map(|k| signal(k).ok())
                .collect()
        } else {
            Vec::new()
        };
        Ok((
            t,
            Some(Seeding {
                swarm,
                handle: h,
                stats: stats.clone(),
                base: acc,
                files: entry.files.iter().map(|f| f.path.clone()).collect(),
                signals,
            }),
        ))
    })?;
    if transfer.writeback_errors > 0 {
        eprintln!(
            "blobpin: warning: {} write-behind calls failed (first: {}); the blob is verified and fsynced anyway",
            transfer.writeback_errors,
            transfer.first_writeback_error.as_deref().unwrap_or("?")
        );
    }
    verify_and_sync(&staging, entry)?;
    let target = o.dest.join("versions").join(&p.version);
    fs::rename(&staging, &target)
        .with_context(|| format!("cannot move {} to {}", staging.display(), target.display()))?;
    fsync_dir(&o.dest.join("versions"))?;
    fsync_dir(&o.dest.join(".staging"))?;
    Ok((transfer, seeding))
}

/// Checks every file's size and SHA-256, fsyncs it, and fsyncs the directories. The file is read
/// through the page cache without readahead and each chunk dropped again, so verifying never
/// evicts hot pages.
fn verify_and_sync(dir: &Path, entry: &FeedEntry) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut dirs = std::collections::BTreeSet::new();
    for f in &entry.files {
        let path = dir.join(&f.path);
        let mut file = File::open(&path)
            .with_context(|| format!("cannot open downloaded {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        ensure!(
            len == f.size,
            "{} has {len} bytes, the feed says {}",
            path.display(),
            f.size
        );
        file.sync_all()
            .with_context(|| format!("cannot fsync {}", path.display()))?;
        let _ = writeback::no_readahead(file.as_fd());
        let mut h = Sha256::new();
        let mut off = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            let _ = writeback::drop_range(file.as_fd(), off, n as u64);
            off += n as u64;
        }
        let sum = hex(&h.finalize());
        ensure!(
            sum == f.sha256,
            "{} has SHA-256 {sum}, the feed says {}: the download is corrupt",
            path.display(),
            f.sha256
        );
        let mut d = path.parent().map(Path::to_path_buf);
        while let Some(p) = d {
            if !p.starts_with(dir) {
                break;
            }
            d = p.parent().map(Path::to_path_buf);
            dirs.insert(p);
        }
    }
    for d in dirs {
        fsync_dir(&d)?;
    }
    Ok(())
}

fn fsync_dir(d: &Path) -> Result<()> {
    File::open(d)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot fsync directory {}", d.display()))
}

/// Points `DIR/current` at `versions/<v>` atomically.
fn flip(dest: &Path, version: &str) -> Result<()> {
    let tmp = dest.join(".current.tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new("versions").join(version), &tmp)
        .with_context(|| format!("cannot create symlink {}", tmp.display()))?;
    let cur = dest.join("current");
    fs::rename(&tmp, &cur).with_context(|| format!("cannot replace {}", cur.display()))?;
    fsync_dir(dest)
}

fn run_hook(cmd: &str, version: &str, path: &Path) -> Result<()> {
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("BLOBPIN_VERSION", version)
        .env("BLOBPIN_PATH", path)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run --exec {cmd:?}"))?;
    ensure!(status.success(), "--exec {cmd:?} exited with {status}");
    Ok(())
}

fn pidfile(dest: &Path, version: &str) -> PathBuf {
    dest.join(".locks").join(format!("{version}.pid"))
}

/// The pid of the live lock holder of `version`, if there is one: the pidfile names a process
/// that is a `blobpin lock` of that version's directory (a recycled pid is not).
pub fn holder_pid(dest: &Path, version: &str) -> Option<i32> {
    let text = fs::read_to_string(pidfile(dest, version)).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let want = dest.join("versions").join(version);
    let is_lock = args.iter().any(|a| *a == b"lock");
    let is_ours = args.iter().any(|a| {
        Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(a)) == want
    });
    (is_lock && is_ours).then_some(pid)
}

/// Starts a detached `blobpin lock` of `versions/<v>` (its own session, so it outlives this
/// command and the deploy script's terminal) and waits until it holds everything.
fn start_holder(dest: &Path, version: &str) -> Result<i32> {
    let dir = dest.join("versions").join(version);
    let pid_path = pidfile(dest, version);
    let log_path = dest.join(".locks").join(format!("{version}.log"));
    let _ = fs::remove_file(&pid_path);
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the blobpin executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("lock")
        .arg("--quiet")
        .arg("--pidfile")
        .arg(&pid_path)
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // The holder outlives this command: it must not report readiness to a service manager
        // that supervises the sync.
        .env_remove("NOTIFY_SOCKET");
    writeback::detach_on_spawn(&mut cmd);
    let mut child = cmd.spawn().context("cannot start the lock holder")?;
    let pid = child.id() as i32;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the lock holder")? {
            let msg = fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "cannot lock version {version} ({status}): {}; the live version is untouched",
                msg.trim()
            );
        }
        if fs::read_to_string(&pid_path)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            == Some(pid)
        {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the lock holder of `version` (SIGTERM) and waits for it to release its locks.
pub(crate) fn stop_holder(dest: &Path, version: &str) -> Result<()> {
    let Some(pid) = holder_pid(dest, version) else {
        return Ok(());
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..500 {
        if nix::sys::signal::kill(pid, None).is_err() || holder_pid(dest, version).is_none() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the lock holder of version {version} (pid {pid}) did not stop within 5 s")
}

/// Drops a version's files from the page cache (best effort: it is about to be deleted or is
/// no longer live).
fn evict_tree(dir: &Path) {
    let opts = crate::residency::Options {
        op: crate::residency::Op::Evict,
        ..Default::default()
    };
    struct Quiet;
    impl crate::residency::Sink for Quiet {
        fn warning(&mut self, _w: crate::residency::Warning) {}
    }
    let mut c = crate::residency::Crawler::new(opts);
    let _ = c.crawl(dir, &mut Quiet);
}

impl SyncReport {
    /// One human line.
    pub fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mib = |b: u64| b as f64 / 1048576.0;
        writeln!(
            out,
            "{} {}: {} ({:.1} MiB fetched, {:.1} MiB resumed, {:.1} MiB uploaded{}) in {:.2} s",
            self.name,
            self.version,
            self.action,
            mib(self.fetched_bytes),
            mib(self.resumed_bytes),
            mib(self.uploaded_bytes),
            match self.lock_pid {
                Some(p) => format!(", locked by pid {p}"),
                None => String::new(),
            },
            self.seconds
        )
    }
}

/// Attempts at fetching the primer piece, 300 ms apart.
const PRIMER_TRIES: u32 = 6;

/// The piece a host primes itself with: derived from its listen address, so hosts differ and
/// have something to offer each other.
pub fn prime_piece(listen: &SocketAddr, pieces: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    listen.hash(&mut h);
    (h.finish() % pieces.max(1) as u64) as usize
}

/// Reads piece `n` from a primer source and writes it into the staging directory.
fn prime_from(
    rt: &tokio::runtime::Runtime,
    src: &str,
    staging: &Path,
    info: &torrent::TorrentInfo,
    n: usize,
) -> Result<()> {
    let start = n as u64 * info.piece_length;
    let len = info.piece_length.min(info.total_len() - start);
    let mut data = Vec::with_capacity(len as usize);
    let mut off = 0u64;
    for f in &info.files {
        let (a, b) = (start.max(off), (start + len).min(off + f.len));
        if a < b {
            data.extend(crate::fetch::read_range(
                rt,
                src,
                &f.path,
                a - off,
                (b - a) as usize,
            )?);
        }
        off += f.len;
    }
    prime(staging, info, n, &data)
}

/// The directory a download of `version` goes to before it is verified.
pub fn staging_dir(dest: &Path, version: &str) -> PathBuf {
    dest.join(".staging").join(version)
}

/// Primes a download: writes one piece, checked against the torrent's SHA-1, into the
/// staging directory (files created sparse at full length), so the host joins the swarm
/// holding a piece. librqbit 9.1 never sends HAVE messages to a peer that connected holding
/// nothing, so an unprimed host fed by a parent that is still downloading stalls
/// (reference librqbit-pipelining.md); the next `sync` finds the piece in its initial check.
pub fn prime(staging: &Path, info: &torrent::TorrentInfo, piece: usize, data: &[u8]) -> Result<()> {
    use sha1::Digest as _;
    let want = info.pieces.get(piece).with_context(|| {
        format!(
            "piece {piece} does not exist ({} pieces)",
            info.pieces.len()
        )
    })?;
    let start = piece as u64 * info.piece_length;
    let len = info.piece_length.min(info.total_len() - start);
    ensure!(
        data.len() as u64 == len,
        "primer piece {piece} has {} bytes, not {len}",
        data.len()
    );
    ensure!(
        sha1::Sha1::digest(data).as_slice() == want,
        "primer piece {piece} does not match the torrent's hash"
    );
    let mut off = 0u64;
    for f in &info.files {
        let (a, b) = (start.max(off), (start + len).min(off + f.len));
        if a < b {
            let path = staging.join(&f.path);
            if let Some(d) = path.parent() {
                fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            }
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            if file.metadata()?.len() < f.len {
                file.set_len(f.len)
                    .with_context(|| format!("cannot size {}", path.display()))?;
            }
            std::os::unix::fs::FileExt::write_all_at(
                &file,
                &data[(a - start) as usize..(b - start) as usize],
                a - off,
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
        }
        off += f.len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::torrent::{TorrentFile, TorrentSpec};

    #[test]
    fn prime_writes_a_verified_piece_across_files_and_refuses_a_bad_one() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/tmp"))
            .join(format!("prime-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let data: Vec<u8> = (0..40000u32).map(|i| (i % 251) as u8).collect();
        let pieces = data
            .chunks(16384)
            .map(|c| sha1::Sha1::digest(c).into())
            .collect();
        let spec = TorrentSpec {
            name: "b".into(),
            piece_length: 16384,
            pieces,
            files: vec![
                TorrentFile {
                    path: "x/a".into(),
                    len: 20000,
                },
                TorrentFile {
                    path: "c".into(),
                    len: 20000,
                },
            ],
            multi_file: true,
            trackers: vec![],
            created: 0,
        };
        let info = torrent::parse(&torrent::build(&spec).unwrap().0).unwrap();
        prime(&dir, &info, 1, &data[16384..32768]).unwrap();
        let a = fs::read(dir.join("x/a")).unwrap();
        let c = fs::read(dir.join("c")).unwrap();
        assert_eq!((a.len(), c.len()), (20000, 20000));
        assert_eq!(&a[16384..], &data[16384..20000]);
        assert_eq!(&c[..12768], &data[20000..32768]);
        assert!(a[..16384].iter().all(|&b| b == 0));
        assert!(prime(&dir, &info, 0, &data[16384..32768]).is_err());
        assert!(prime(&dir, &info, 2, &data[32768..]).is_ok());
        assert!(prime(&dir, &info, 3, &[]).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
