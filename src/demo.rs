//! `blobpin demo`: a whole deployment on loopback, with no set-up, in a few seconds.
//!
//! 1. A scratch directory on disk (never tmpfs: `./target/` when it exists, else `$TMPDIR`,
//!    else `/var/tmp`; each candidate is checked with statfs).
//! 2. A blob of pseudo-random data (256 MiB by default), published into a feed there.
//! 3. `blobpin origin` on 127.0.0.1 (feed over HTTP, tracker, seeder capped at
//!    [`ORIGIN_RATE`] so that "time against the bound" means something on loopback).
//! 4. Four `blobpin sync --lock` hosts started together: 127.0.1.1 and 127.0.1.2 (rack a),
//!    127.0.2.1 and 127.0.2.2 (rack b), each primed with one piece from the origin over HTTP.
//! 5. The report: total time against the bound (blob / origin rate), throughput, where each
//!    host's bytes came from (the origin, its own rack, the other rack, or peers that
//!    connected to it), the origin's upload, and what each lock holder has locked (VmLck from
//!    /proc).
//! 6. Clean-up: every lock holder and the origin are stopped by pid, the directory removed.
//!
//! # Who feeds whom
//! The tracker's overlay (see `tracker::swarm`), as on real machines: each host announces to
//! the origin's tracker and is handed its parent and a backup. One machine needs one trick:
//! librqbit does not bind its outgoing sockets, so every host would reach the tracker from
//! 127.0.0.1 and could be neither placed in a rack nor reached where it listens. The tracker
//! therefore listens on every host's address too, each host is given the tracker URL on its
//! own address, and the origin runs with the hidden `--loopback-racks`, which locates a
//! loopback client by the address it connected to
//! ([`crate::tracker::TrackerConfig::loopback_by_destination`]).
//!
//! The hidden `--shape` selects other overlays for measurements: `peers` (each host given
//! its parent by `--peer`, the origin as backup), `chain` (the parent only) and `star` (every
//! host gets only the origin and no primer piece: the baseline librqbit 9.1 cannot share in);
//! `tracker-unprimed` is the default without primer pieces.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::DemoArgs;

/// Upload cap of the demo's origin, bytes per second.
pub const ORIGIN_RATE: u64 = 100 << 20;

/// One demo host.
#[derive(Debug, Clone)]
struct Host {
    name: String,
    rack: &'static str,
    listen: SocketAddr,
    /// Index of the host it is fed by (`None`: the origin).
    parent: Option<usize>,
}

/// What a host's sync reported (the fields the demo reads of `blobpin.sync/1`).
#[derive(Debug, Clone, serde::Deserialize)]
struct HostReport {
    fetched_bytes: u64,
    resumed_bytes: u64,
    uploaded_bytes: u64,
    bytes_by_peer: std::collections::BTreeMap<String, u64>,
    lock_pid: Option<i32>,
    seconds: f64,
    path: PathBuf,
}

/// Everything the demo started: process ids (the origin, the syncs) and the scratch
/// directory. Lock holders are found through the hosts' pidfiles (`.locks/*.pid`), so even
/// those of a sync that was interrupted are stopped.
#[derive(Default)]
struct Started {
    dir: Option<PathBuf>,
    keep: bool,
    pids: Vec<i32>,
}

/// Shared with the signal thread, which cleans up on SIGINT/SIGTERM.
type StartedRef = Arc<Mutex<Started>>;

/// Stops everything (SIGTERM, then SIGKILL after 5 s) and removes the directory.
fn stop_all(s: &Started) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut pids = s.pids.clone();
    if let Some(d) = &s.dir {
        pids.extend(holder_pids(d));
    }
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| running(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids.iter().filter(|p| running(**p)) {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    if let Some(d) = &s.dir {
        if !s.keep {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Pids in `DIR/hosts/*/.locks/*.pid`.
fn holder_pids(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(hosts) = std::fs::read_dir(dir.join("hosts")) else {
        return out;
    };
    for h in hosts.flatten() {
        let Ok(locks) = std::fs::read_dir(h.path().join(".locks")) else {
            continue;
        };
        for l in locks.flatten() {
            if l.path().extension().is_some_and(|e| e == "pid") {
                if let Some(pid) = std::fs::read_to_string(l.path())
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// Whether a process exists and is not a zombie.
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Cleans up when the demo is interrupted: a thread waits for SIGINT/SIGTERM (through a
/// handler, not a blocked mask, which the children would inherit), stops everything and
/// exits 130.
fn clean_up_on_signal(started: StartedRef) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal thread")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                let _ = tx.send(false);
                return;
            };
            let _ = tx.send(true);
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("blobpin: demo interrupted; stopping everything it started");
        stop_all(&started.lock().unwrap_or_else(|e| e.into_inner()));
        std::process::exit(crate::exit::INTERRUPTED);
    });
    if rx.recv() != Ok(true) {
        bail!("cannot install the demo's signal handlers");
    }
    Ok(())
}

/// Picks a scratch directory on a disk filesystem.
fn scratch_dir() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if Path::new("target").is_dir() {
        candidates.push(PathBuf::from("target"));
    }
    if let Some(t) = std::env::var_os("TMPDIR") {
        candidates.push(PathBuf::from(t));
    }
    candidates.push(PathBuf::from("/var/tmp"));
    for c in candidates {
        let on_tmpfs = nix::sys::statfs::statfs(c.as_path())
            .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
            .unwrap_or(true);
        if on_tmpfs {
            continue;
        }
        let d = c.join(format!("blobpin-demo-{}", std::process::id()));
        if std::fs::create_dir_all(&d).is_ok() {
            return std::fs::canonicalize(&d)
                .with_context(|| format!("cannot resolve {}", d.display()));
        }
    }
    bail!("no scratch directory on disk: ./target, $TMPDIR and /var/tmp are tmpfs or not writable")
}

/// Writes `size` bytes of pseudo-random data (SplitMix64; fast, incompressible enough).
fn generate(path: &Path, size: u64, seed: u64) -> Result<()> {
    use crate::tracker::swarm::{Rng, SplitMix64};
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut rng = SplitMix64(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            w.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let n = buf.len().min(left as usize);
        f.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    let f = f.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()
        .with_context(|| format!("cannot fsync {}", path.display()))?;
    // The origin must read it from disk like a real build output.
    let _ = crate::sys::writeback::drop_range(std::os::fd::AsFd::as_fd(&f), 0, 0);
    Ok(())
}

/// A free TCP port on `ip`.
fn free_port(ip: IpAddr) -> Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0))
        .with_context(|| format!("cannot bind a port on {ip}"))?;
    Ok(l.local_addr()?.port())
}

/// The four hosts and the overlay the tracker would build for them (fanout 2, one gateway,
/// one head per rack): origin -> a1 -> {a2, b1}, b1 -> b2.
fn hosts() -> Result<Vec<Host>> {
    let spec: [(&str, &'static str, [u8; 4], Option<usize>); 4] = [
        ("a1", "a", [127, 0, 1, 1], None),
        ("a2", "a", [127, 0, 1, 2], Some(0)),
        ("b1", "b", [127, 0, 2, 1], Some(0)),
        ("b2", "b", [127, 0, 2, 2], Some(2)),
    ];
    spec.iter()
        .map(|(name, rack, ip, parent)| {
            let ip = IpAddr::V4(Ipv4Addr::from(*ip));
            Ok(Host {
                name: name.to_string(),
                rack,
                listen: SocketAddr::new(ip, free_port(ip)?),
                parent: *parent,
            })
        })
        .collect()
}

const TOPOLOGY: &str = "\
# Written by blobpin demo.
[[dc]]
name = \"demo\"
[[dc.rack]]
name = \"a\"
cidrs = [\"127.0.1.0/24\"]
[[dc.rack]]
name = \"b\"
cidrs = [\"127.0.2.0/24\"]
";

/// Reads lines of the origin's stdout until its first line (the addresses) and the line
/// saying it seeds; returns (feed URL, tracker URL, seeder address).
fn origin_ready(child: &mut Child) -> Result<(String, String, SocketAddr)> {
    let out = child.stdout.take().context("origin has no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut addrs = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("blobpin origin: ") {
                    let w: Vec<&str> = rest.split_whitespace().collect();
                    if let [_, feed, _, tracker, _, seeder] = w[..] {
                        addrs = Some((feed.to_string(), tracker.to_string(), seeder.parse()?));
                    }
                } else if line.starts_with("seeding ") {
                    return addrs.context("origin printed no addresses");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(s) = child.try_wait()? {
                    bail!("the origin exited ({s}) before seeding");
                }
            }
            Err(_) => bail!("the origin exited before seeding"),
        }
    }
    bail!("the origin did not start seeding within 60 s")
}

/// Runs `blobpin demo`.
pub fn run(a: &DemoArgs) -> Result<i32> {
    let size = crate::residency::range::parse_size(&a.size)
        .map_err(|e| anyhow::anyhow!("invalid --size {:?}: {e}", a.size))?;
    if size < 1 << 20 {
        bail!("invalid --size {:?}: at least 1M", a.size);
    }
    let exe = std::env::current_exe().context("cannot find the blobpin executable")?;
    let started: StartedRef = Arc::new(Mutex::new(Started {
        keep: a.keep,
        ..Default::default()
    }));
    clean_up_on_signal(started.clone())?;
    let dir = scratch_dir()?;
    started.lock().unwrap_or_else(|e| e.into_inner()).dir = Some(dir.clone());
    let result = demo(a, &exe, size, &dir, &started);
    stop_all(&started.lock().unwrap_or_else(|e| e.into_inner()));
    let mut out = std::io::stdout().lock();
    if result.is_ok() {
        writeln!(
            out,
            "cleaned up: lock holders and origin stopped, {} {}",
            dir.display(),
            if a.keep { "kept" } else { "removed" }
        )?;
    }
    out.flush()?;
    result.map(|()| crate::exit::OK)
}

/// The demo proper; everything it starts is recorded in `started`.
fn demo(a: &DemoArgs, exe: &Path, size: u64, dir: &Path, started: &StartedRef) -> Result<()> {
    let record = |pid: u32| {
        started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pids
            .push(pid as i32)
    };
    let mib = |b: u64| b as f64 / 1048576.0;
    let mut out = std::io::stdout().lock();
    writeln!(out, "blobpin demo in {}", dir.display())?;

    let t = Instant::now();
    let blob = dir.join("demo.bin");
    generate(&blob, size, 0x5eed ^ std::process::id() as u64)?;
    let feed = dir.join("feed");
    std::fs::create_dir_all(&feed)?;
    let published = crate::feed::publish::publish(&crate::feed::publish::PublishRequest {
        blob: blob.clone(),
        feed: feed.clone(),
        name: Some("demo".into()),
        version: None,
        trackers: Vec::new(),
        piece_length: Some(
            crate::residency::range::parse_size(&a.piece_size)
                .map_err(|e| anyhow::anyhow!("invalid --piece-size {:?}: {e}", a.piece_size))?,
        ),
    })?;
    let entry = &published.entry;
    writeln!(
        out,
        "generated and published {:.0} MiB ({} pieces of {} KiB) in {:.2} s: version {}",
        mib(size),
        size.div_ceil(entry.piece_length),
        entry.piece_length >> 10,
        t.elapsed().as_secs_f64(),
        entry.version
    )?;
    let topology = dir.join("topology.toml");
    std::fs::write(&topology, TOPOLOGY)
        .with_context(|| format!("cannot write {}", topology.display()))?;

    let hosts = hosts()?;
    // The tracker listens on 127.0.0.1 and on every host's address, one port: each host
    // announces to its own address, where the tracker (--loopback-racks) locates it.
    let tport = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let mut tracker_listen = vec![SocketAddr::from(([127, 0, 0, 1], tport))];
    tracker_listen.extend(hosts.iter().map(|h| SocketAddr::new(h.listen.ip(), tport)));
    let mut origin = Command::new(exe);
    origin.arg("origin");
    for t in &tracker_listen {
        origin.arg("--tracker-listen").arg(t.to_string());
    }
    let mut origin = origin
        .args([
            "--loopback-racks",
            "--interval",
            "4",
            "--listen",
            "127.0.0.1:0",
            "--max-upload",
        ])
        .arg(ORIGIN_RATE.to_string())
        .arg("--feed")
        .arg(&feed)
        .arg("--topology")
        .arg(&topology)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start blobpin origin")?;
    record(origin.id());
    let ready = origin_ready(&mut origin);
    let (feed_url, tracker_url, seeder) = ready?;
    writeln!(
        out,
        "origin: feed {feed_url}, tracker {tracker_url}, seeder {seeder} (upload capped at {:.0} MiB/s)",
        mib(ORIGIN_RATE)
    )?;

    let start = Instant::now();
    let mut syncs = Vec::new();
    for h in &hosts {
        // librqbit retries a refused connection only after 10 s or more: start a host once
        // its parent accepts connections (parents come first in `hosts`).
        if let (Some(p), false) = (
            h.parent,
            a.shape.starts_with("tracker") || a.shape == "star",
        ) {
            wait_listening(hosts[p].listen, &mut syncs[p])?;
        }
        let dest = dir.join("hosts").join(&h.name);
        let mut cmd = Command::new(exe);
        cmd.arg("sync")
            .arg(format!("{feed_url}demo"))
            .arg("--dest")
            .arg(&dest)
            .arg("--listen")
            .arg(h.listen.to_string())
            .args(["--json", "--stall-timeout", "60", "--seed-for"])
            .arg(a.seed_for.to_string());
        if !a.no_lock {
            cmd.arg("--lock");
        }
        match a.shape.as_str() {
            "star" => {
                cmd.arg("--no-prime").arg("--peer").arg(seeder.to_string());
            }
            shape => {
                if shape == "tracker-unprimed" {
                    cmd.arg("--no-prime");
                } else {
                    cmd.arg("--prime-from").arg(format!("{feed_url}demo/files"));
                }
                if shape.starts_with("tracker") {
                    cmd.arg("--tracker")
                        .arg(format!("http://{}:{tport}/announce", h.listen.ip()));
                } else {
                    // The parent, and (peers) the origin as the backup the tracker's answer
                    // also holds: a host whose parent stops never stalls.
                    if let Some(p) = h.parent {
                        cmd.arg("--peer").arg(hosts[p].listen.to_string());
                    }
                    if shape == "peers" || h.parent.is_none() {
                        cmd.arg("--peer").arg(seeder.to_string());
                    }
                }
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start blobpin sync")?;
        record(child.id());
        syncs.push(child);
    }
    writeln!(
        out,
        "started 4 hosts: {}",
        hosts
            .iter()
            .map(|h| format!("{} {} (rack {})", h.name, h.listen, h.rack))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    out.flush()?;
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for (h, child) in hosts.iter().zip(syncs) {
        let o = child
            .wait_with_output()
            .context("waiting for blobpin sync")?;
        if !o.status.success() {
            failed.push(format!(
                "{}: {} {}",
                h.name,
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            reports.push(None);
            continue;
        }
        let r: HostReport = serde_json::from_slice(&o.stdout)
            .with_context(|| format!("host {}: unreadable sync report", h.name))?;
        reports.push(Some(r));
    }
    let total = start.elapsed().as_secs_f64();
    if !failed.is_empty() {
        bail!("sync failed on {}", failed.join("; "));
    }
    let (uploaded, primed) = origin_metrics(&feed_url);

    let bound = size as f64 / ORIGIN_RATE as f64;
    // Every host seeds for --seed-for seconds once it has the blob (so that the hosts it feeds
    // can finish), then verifies, locks and exits: the last host had the blob that much earlier.
    let fetched = (total - a.seed_for as f64).max(0.001);
    writeln!(
        out,
        "all 4 hosts verified{} in {total:.2} s, {} s of it seeding for each other after the download",
        if a.no_lock { "" } else { " and locked" },
        a.seed_for
    )?;
    writeln!(
        out,
        "download: {fetched:.2} s for 4 x {:.0} MiB ({:.0} MiB/s delivered); bound {bound:.2} s (blob / origin upload cap), {:.2}x the bound",
        mib(size),
        mib(size * 4) / fetched,
        fetched / bound
    )?;
    writeln!(
        out,
        "{:<4} {:<5} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7} {:>11}",
        "host",
        "rack",
        "origin",
        "own rack",
        "other rack",
        "incoming",
        "primed",
        "uploaded",
        "secs",
        "VmLck"
    )?;
    let mut from_origin = 0;
    let mut from_hosts = 0;
    for (h, r) in hosts.iter().zip(&reports) {
        let r = r.as_ref().expect("failures returned above");
        let (mut o, mut own, mut other, mut inc) = (0u64, 0u64, 0u64, 0u64);
        for (addr, bytes) in &r.bytes_by_peer {
            let Ok(sa) = addr.parse::<SocketAddr>() else {
                inc += bytes;
                continue;
            };
            if sa == seeder {
                o += bytes;
            } else if let Some(peer) = hosts.iter().find(|p| p.listen == sa) {
                if peer.rack == h.rack {
                    own += bytes;
                } else {
                    other += bytes;
                }
            } else {
                // An incoming connection: its source port is ephemeral and, on loopback,
                // its address 127.0.0.1, so only "another host" is known.
                inc += bytes;
            }
        }
        from_origin += o;
        from_hosts += own + other + inc;
        let vmlck = r
            .lock_pid
            .and_then(|pid| crate::doctor::facts::vm_locked(Some(pid)))
            .map_or("-".to_string(), |b| format!("{:.0} MiB", mib(b)));
        writeln!(
            out,
            "{:<4} {:<5} {:>5.0} MiB {:>6.0} MiB {:>6.0} MiB {:>6.0} MiB {:>6.2} MiB {:>5.0} MiB {:>7.2} {:>11}",
            h.name,
            h.rack,
            mib(o),
            mib(own),
            mib(other),
            mib(inc),
            mib(r.resumed_bytes),
            mib(r.uploaded_bytes),
            r.seconds,
            vmlck
        )?;
        let _ = r.fetched_bytes;
    }
    let got = from_origin + from_hosts;
    writeln!(
        out,
        "hosts took {:.0}% of their bytes from each other; the origin uploaded {} ({:.2}x the blob) and served {} of primer pieces over HTTP{}",
        if got > 0 {
            100.0 * from_hosts as f64 / got as f64
        } else {
            0.0
        },
        uploaded.map_or("?".to_string(), |u| format!("{:.0} MiB", mib(u))),
        uploaded.map_or(0.0, |u| u as f64 / size as f64),
        primed.map_or("?".to_string(), |p| format!("{:.0} MiB", mib(p))),
        if a.no_lock {
            String::new()
        } else {
            format!(
                "; each host's copy locked in RAM under {}",
                reports[0]
                    .as_ref()
                    .map(|r| r.path.display().to_string())
                    .unwrap_or_default()
                    .replace("/hosts/a1/", "/hosts/*/")
            )
        }
    )?;
    out.flush()?;
    drop(origin);
    Ok(())
}

/// Waits until `addr` accepts TCP connections (a host's peer listener is up), or `child` exits.
fn wait_listening(addr: SocketAddr, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(s) = child.try_wait()? {
            bail!("the host listening on {addr} exited ({s}) before accepting peers");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("no host listens on {addr} after 30 s")
}

/// The origin's seeder upload and the primer bytes it served over HTTP, from its /metrics.
fn origin_metrics(feed_url: &str) -> (Option<u64>, Option<u64>) {
    let text = (|| {
        let base = feed_url.trim_end_matches('/').strip_suffix("/feed")?;
        let rt = crate::fetch::runtime().ok()?;
        let body = rt
            .block_on(crate::fetch::get(&format!("{base}/metrics"), 16 << 20))
            .ok()?;
        String::from_utf8(body).ok()
    })();
    let Some(text) = text else {
        return (None, None);
    };
    let sum = |prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    (
        Some(sum("blobpin_origin_uploaded_bytes{")),
        Some(sum("blobpin_origin_primer_bytes ")),
    )
}
