//! `blobpin sync` on the command line: arguments to [`SyncOptions`], then the report (or the
//! watch, with `--watch`), with the metrics server when `--metrics` is given.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};

use super::apply::{sync, SyncOptions};
use crate::cli::SyncArgs;
use crate::fetch::session::SwarmConfig;
use crate::fetch::{parse_rate, FeedLocation};

/// Runs `blobpin sync`; returns the exit status.
pub fn run(a: &SyncArgs) -> Result<i32> {
    let feed = FeedLocation::parse(&a.feed_url)?;
    if a.key.as_deref() == Some("") {
        anyhow::bail!("--key must not be empty");
    }
    // An origin serves the blob's files next to the feed entry: prime from there by default.
    let (prime_from, prime_default) = match (&a.prime_from, &feed) {
        (Some(p), _) => (Some(p.clone()), false),
        (None, FeedLocation::Http(base)) if !a.no_prime => (Some(format!("{base}/files")), true),
        (None, _) => (None, false),
    };
    let o = SyncOptions {
        feed,
        dest: a.dest.clone(),
        lock: a.lock,
        keep: a.keep as usize,
        exec: a.exec.clone(),
        swarm: SwarmConfig {
            listen: a.listen,
            max_upload: a
                .max_upload
                .as_deref()
                .map(parse_rate)
                .transpose()
                .context("--max-upload")?,
            max_download: a
                .max_download
                .as_deref()
                .map(parse_rate)
                .transpose()
                .context("--max-download")?,
        },
        peers: a.peer.clone(),
        trackers: a.tracker.clone(),
        stall: (a.stall_timeout > 0).then(|| Duration::from_secs(a.stall_timeout)),
        seed_for: Duration::from_secs(a.seed_for),
        nudge: (a.reconnect_after > 0).then(|| Duration::from_secs(a.reconnect_after)),
        wake: (a.wake_ms > 0).then(|| Duration::from_millis(a.wake_ms)),
        prime_from,
        prime_default,
        key: a.key.clone(),
        verbose: a.verbose,
        progress: !a.verbose && !a.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let figures = match a.metrics {
        Some(addr) => {
            let f = super::metrics::Shared::default();
            let bound = super::metrics::serve(addr, f.clone())?;
            if a.verbose {
                eprintln!("blobpin: metrics on http://{bound}/metrics");
            }
            Some(f)
        }
        None => None,
    };
    if let Some(w) = &a.watch {
        let interval =
            super::watch::parse_interval(w).with_context(|| format!("invalid --watch {w:?}"))?;
        return super::watch::watch(&o, interval, a.json, figures);
    }
    let report = sync(&o)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        report.human(&mut out)?;
    }
    out.flush()?;
    Ok(crate::exit::OK)
}
