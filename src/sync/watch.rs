//! `blobpin sync --watch INTERVAL`: sync as a long-running service.
//!
//! Every INTERVAL (or at once on SIGHUP) the feed is read; a new version goes through the
//! whole cycle of a one-shot sync (download, verify, lock, switch, hook, unlock the old,
//! prune). Unlike a one-shot sync, the watch holds the locks in its own process (no detached
//! `blobpin lock` holders), keeps seeding the live version between polls, and holds
//! `DIR/.sync.lock` for its whole life, so a one-shot sync of the same destination refuses
//! to run while it watches.
//!
//! Taking over from a one-shot sync: detached holders found in `DIR/.locks/` are stopped
//! only after the watch has locked the live version itself, so the version is never unlocked
//! in between. When the watch stops, its locks go with it (like `blobpin lock`): run a one-shot
//! `sync --lock` afterwards to get a detached holder again.
//!
//! Signals and readiness as `blobpin lock`: `READY=1` goes to `$NOTIFY_SOCKET` once the first
//! version is live (and locked, with `--lock`); SIGTERM or SIGINT stop cleanly (a download in
//! progress is abandoned and resumed by the next start) with exit status 0; SIGHUP polls now.
//! A failed poll (feed unreachable, bad entry, failed download or lock) is logged and retried
//! at the next poll; the live version stays as it is, locked and seeded.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::apply::{self, Cycle, Holding, Seeding, SyncOptions};
use super::metrics::Shared;
use crate::cli::residency_cmd::sd_notify;
use crate::fetch::runtime;

/// Parses an interval: seconds (`30`, `1.5`) or with a unit (`500ms`, `30s`, `5m`, `1h`).
pub fn parse_interval(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid interval {s:?}: expected e.g. 30s, 5m, 500ms"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => bail!("invalid interval {s:?}: unit must be ms, s, m or h"),
    };
    let d = Duration::try_from_secs_f64(n * scale)
        .with_context(|| format!("invalid interval {s:?}"))?;
    if d < Duration::from_millis(100) {
        bail!("invalid interval {s:?}: at least 100ms");
    }
    Ok(d)
}

/// Runs the watch until SIGTERM or SIGINT; returns the exit status (0). `json`: print each
/// cycle that changed something as one JSON line on stdout (else one human line).
pub fn watch(
    o: &SyncOptions,
    interval: Duration,
    json: bool,
    metrics: Option<Shared>,
) -> Result<i32> {
    let rt = runtime()?;
    let dest = apply::prepare_dest(&o.dest)?;
    let o = &SyncOptions {
        dest: dest.clone(),
        ..o.clone()
    };
    let _exclusive = apply::lock_dest(&dest)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let poll_now = Arc::new(tokio::sync::Notify::new());
    {
        use tokio::signal::unix::{signal, SignalKind};
        let _g = rt.enter();
        let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
        let poll = poll_now.clone();
        rt.spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => { poll.notify_one(); continue; }
                }
            }
            let _ = stop_tx.send(true);
        });
    }
    let mut held: BTreeMap<String, Vec<crate::sys::Mapping>> = BTreeMap::new();
    let mut seeding: Option<Seeding> = None;
    let mut ready = false;
    let mut uploaded_done = 0u64;
    let mut live: Option<(String, u64)> = None;
    loop {
        if *stop_rx.borrow() {
            break;
        }
        let before_seeding = seeding.as_ref().map(|s| s.transfer().uploaded_bytes);
        let result = {
            let mut c = Cycle {
                holding: Holding::InProcess(&mut held),
                dest_locked: true,
                keep_seeding: true,
                seeding: &mut seeding,
                stop: Some(stop_rx.clone()),
            };
            apply::run_cycle(o, &rt, &mut c)
        };
        // A download replaced the seeding session: count what the old one uploaded.
        if seeding.as_ref().map(|s| s.transfer().uploaded_bytes) != before_seeding {
            uploaded_done += before_seeding.unwrap_or(0);
        }
        let ok = result.is_ok();
        match result {
            Ok((report, hook_err)) => {
                if report.action != "up-to-date" {
                    let mut out = std::io::stdout().lock();
                    if json {
                        serde_json::to_writer(&mut out, &report)?;
                        writeln!(out)?;
                    } else {
                        report.human(&mut out)?;
                    }
                    out.flush()?;
                }
                if let Some(e) = hook_err {
                    eprintln!(
                        "blobpin: version {} is live, but the --exec hook failed: {e:#}",
                        report.version
                    );
                }
                if let Some(m) = &metrics {
                    if let Ok(mut f) = m.lock() {
                        for (p, b) in &report.bytes_by_peer {
                            *f.downloaded_by_peer.entry(p.clone()).or_default() += b;
                        }
                        for (t, b) in &report.bytes_by_tier {
                            *f.downloaded_by_tier.entry(t.clone()).or_default() += b;
                        }
                        f.pieces += report.written_back_pieces;
                        if report.action == "switched" {
                            f.switches += 1;
                        }
                    }
                }
                live = Some((report.version.clone(), report.total_size));
                if !ready {
                    ready = true;
                    let _ = sd_notify(&format!(
                        "READY=1\nSTATUS=live {}{}\nMAINPID={}",
                        report.version,
                        if o.lock { ", locked" } else { "" },
                        std::process::id()
                    ));
                    eprintln!(
                        "blobpin: watching the feed every {:?}; {} is live{}",
                        interval,
                        report.version,
                        if o.lock { " and locked" } else { "" }
                    );
                } else if report.action == "switched" {
                    let _ = sd_notify(&format!("STATUS=live {}", report.version));
                }
            }
            Err(e) => {
                if *stop_rx.borrow() {
                    eprintln!("blobpin: {e:#}");
                    break;
                }
                eprintln!(
                    "blobpin: poll failed: {e:#}; {} stays live, next poll in {interval:?}",
                    live.as_ref()
                        .map_or("the current version", |l| l.0.as_str())
                );
                // Started while the feed is down: hold what is live already.
                if !ready {
                    if let Some(v) = hold_current(o, &mut held) {
                        ready = true;
                        let _ = sd_notify(&format!(
                            "READY=1\nSTATUS=live {v} (feed unreachable){}\nMAINPID={}",
                            if o.lock { ", locked" } else { "" },
                            std::process::id()
                        ));
                        eprintln!(
                            "blobpin: watching the feed every {interval:?}; {v} is live{} (the feed is not reachable yet)",
                            if o.lock { " and locked" } else { "" }
                        );
                        live = Some((v, 0));
                    }
                }
            }
        }
        update(&metrics, ok, &held, &live, uploaded_done, seeding.as_ref());
        // Wait for the next poll, refreshing the figures every second.
        let mut stop = stop_rx.clone();
        rt.block_on(async {
            let end = tokio::time::Instant::now() + interval;
            loop {
                let tick = tokio::time::sleep_until(
                    end.min(tokio::time::Instant::now() + Duration::from_secs(1)),
                );
                tokio::select! {
                    _ = stop.wait_for(|v| *v) => return,
                    _ = poll_now.notified() => return,
                    _ = tick => {}
                }
                if let Some(m) = &metrics {
                    if let (Ok(mut f), Some(s)) = (m.lock(), seeding.as_ref()) {
                        f.uploaded_live = s.transfer().uploaded_bytes;
                    }
                }
                if tokio::time::Instant::now() >= end {
                    return;
                }
            }
        });
    }
    let _ = sd_notify("STOPPING=1");
    if let Some(s) = seeding.take() {
        s.stop(&rt);
    }
    drop(held);
    Ok(crate::exit::OK)
}

/// When the first poll fails: takes over the version `current` points to (locked here with
/// `--lock`, then its detached holder stopped). Returns it, or None when nothing is live (or
/// it cannot be locked: the next poll tries again).
fn hold_current(
    o: &SyncOptions,
    held: &mut BTreeMap<String, Vec<crate::sys::Mapping>>,
) -> Option<String> {
    let state = apply::scan(&o.dest).ok()?;
    let v = state.current.filter(|v| state.versions.contains(v))?;
    if o.lock {
        match apply::lock_here(&o.dest.join("versions").join(&v)) {
            Ok(maps) => {
                held.insert(v.clone(), maps);
            }
            Err(e) => {
                eprintln!("blobpin: cannot lock the live version {v}: {e:#}");
                return None;
            }
        }
        for d in &state.locked {
            if let Err(e) = apply::stop_holder(&o.dest, d) {
                eprintln!("blobpin: warning: {e:#}");
            }
        }
    }
    Some(v)
}

/// Refreshes the figures after a poll.
fn update(
    metrics: &Option<Shared>,
    ok: bool,
    held: &BTreeMap<String, Vec<crate::sys::Mapping>>,
    live: &Option<(String, u64)>,
    uploaded_done: u64,
    seeding: Option<&Seeding>,
) {
    let Some(m) = metrics else { return };
    let Ok(mut f) = m.lock() else { return };
    if ok {
        f.polls_ok += 1;
    } else {
        f.polls_failed += 1;
    }
    f.last_poll_ok = Some(ok);
    f.last_poll_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    f.locked_versions = held.len() as u64;
    f.locked_bytes = held
        .values()
        .flat_map(|v| v.iter())
        .map(|m| m.len() as u64)
        .sum();
    if let Some((v, size)) = live {
        f.current = Some(v.clone());
        f.current_bytes = *size;
    }
    f.uploaded_done = uploaded_done;
    f.uploaded_live = seeding.map_or(0, |s| s.transfer().uploaded_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_interval("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("fast").is_err());
        assert!(parse_interval("3d").is_err());
    }
}
