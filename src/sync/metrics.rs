//! `sync --metrics ADDR`: Prometheus text exposition of what a sync (or a watch) has done, on a
//! tiny HTTP/1.0 server (one std thread; `GET /metrics` only, anything else is a 404).
//!
//! Bytes received are given twice: by the tracker's tier of the peer
//! (`blobpin_sync_downloaded_bytes_total{tier=...}`, every tier listed; see [`super::tiers`]
//! for how a sync places its peers) and by peer address
//! (`blobpin_sync_peer_downloaded_bytes_total{peer=...}`); both sum to the same total.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

/// The tiers of the tracker (`tracker::swarm::Tier` names), listed in every tier series.
pub const TIERS: [&str; 5] = ["rack", "dc", "remote", "unknown", "origin"];

/// The figures exposed; updated by the sync, read by the server.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Bytes received, by peer address, over every download of this process.
    pub downloaded_by_peer: BTreeMap<String, u64>,
    /// The same bytes by tier (rack, dc, remote, unknown, origin).
    pub downloaded_by_tier: BTreeMap<String, u64>,
    /// Bytes uploaded: finished seeding sessions plus the live one.
    pub uploaded_done: u64,
    pub uploaded_live: u64,
    /// Pieces verified, written back and dropped from the cache.
    pub pieces: u64,
    /// The live version and its size.
    pub current: Option<String>,
    pub current_bytes: u64,
    /// Bytes this process holds locked, and in how many versions.
    pub locked_bytes: u64,
    pub locked_versions: u64,
    /// Feed polls by outcome, and the outcome of the last one.
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub last_poll_ok: Option<bool>,
    pub last_poll_unix: u64,
    pub switches: u64,
}

/// Shared figures.
pub type Shared = Arc<Mutex<Figures>>;

impl Figures {
    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let esc = |v: &str| {
            v.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        let mut by_tier: BTreeMap<&str, u64> = TIERS.iter().map(|&t| (t, 0)).collect();
        for (t, b) in &self.downloaded_by_tier {
            *by_tier.entry(t.as_str()).or_default() += b;
        }
        let by_tier: Vec<(String, u64)> = by_tier
            .iter()
            .map(|(t, b)| (format!("{{tier=\"{}\"}}", esc(t)), *b))
            .collect();
        metric(
            "blobpin_sync_downloaded_bytes_total",
            "counter",
            "Bytes received from peers, by the tracker's tier of the peer seen from this host: rack, dc, remote, unknown (no topology from the origin, or either side in no rack), origin (the feed's host).",
            &by_tier,
        );
        let by_peer: Vec<(String, u64)> = self
            .downloaded_by_peer
            .iter()
            .map(|(p, b)| (format!("{{peer=\"{}\"}}", esc(p)), *b))
            .collect();
        metric(
            "blobpin_sync_peer_downloaded_bytes_total",
            "counter",
            "Bytes received from each peer, by address (the address connected to, or the source of an incoming connection).",
            &by_peer,
        );
        metric(
            "blobpin_sync_uploaded_bytes_total",
            "counter",
            "Bytes uploaded to peers.",
            &[(String::new(), self.uploaded_done + self.uploaded_live)],
        );
        metric(
            "blobpin_sync_pieces_total",
            "counter",
            "Pieces downloaded, verified and written back.",
            &[(String::new(), self.pieces)],
        );
        let cur: Vec<(String, u64)> = self
            .current
            .iter()
            .map(|v| (format!("{{version=\"{}\"}}", esc(v)), 1))
            .collect();
        metric(
            "blobpin_sync_current_version",
            "gauge",
            "The live version (label), always 1.",
            &cur,
        );
        metric(
            "blobpin_sync_current_bytes",
            "gauge",
            "Size of the live version.",
            &[(String::new(), self.current_bytes)],
        );
        metric(
            "blobpin_sync_locked_bytes",
            "gauge",
            "Bytes this process holds locked in RAM.",
            &[(String::new(), self.locked_bytes)],
        );
        metric(
            "blobpin_sync_locked_versions",
            "gauge",
            "Versions this process holds locked.",
            &[(String::new(), self.locked_versions)],
        );
        metric(
            "blobpin_sync_polls_total",
            "counter",
            "Feed polls by result.",
            &[
                ("{result=\"ok\"}".into(), self.polls_ok),
                ("{result=\"error\"}".into(), self.polls_failed),
            ],
        );
        let last: Vec<(String, u64)> = self
            .last_poll_ok
            .iter()
            .map(|ok| (String::new(), u64::from(*ok)))
            .collect();
        metric(
            "blobpin_sync_last_poll_success",
            "gauge",
            "1 if the last poll succeeded, 0 if it failed.",
            &last,
        );
        metric(
            "blobpin_sync_last_poll_timestamp_seconds",
            "gauge",
            "Unix time of the last poll.",
            &[(String::new(), self.last_poll_unix)],
        );
        metric(
            "blobpin_sync_switches_total",
            "counter",
            "Times current was switched to a new version.",
            &[(String::new(), self.switches)],
        );
        s
    }
}

/// Binds `addr` and serves the figures from a background thread for the life of the process.
/// Returns the bound address (port 0 picks one).
pub fn serve(addr: SocketAddr, figures: Shared) -> Result<SocketAddr> {
    let l =
        TcpListener::bind(addr).with_context(|| format!("cannot listen on --metrics {addr}"))?;
    let bound = l.local_addr()?;
    std::thread::Builder::new()
        .name("blobpin-metrics".into())
        .spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let _ = answer(&mut s, &figures);
            }
        })
        .context("cannot start the metrics thread")?;
    Ok(bound)
}

/// One request, one answer, then close (HTTP/1.0).
fn answer(s: &mut TcpStream, figures: &Shared) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        match s.read(&mut buf)? {
            0 => break,
            n => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, ctype, body) =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            let text = figures.lock().map(|f| f.render()).unwrap_or_default();
            ("200 OK", "text/plain; version=0.0.4", text)
        } else {
            (
                "404 Not Found",
                "text/plain",
                "only GET /metrics\n".to_string(),
            )
        };
    write!(
        s,
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "tracker")]
    #[test]
    fn tier_names_are_the_trackers() {
        let names: Vec<&str> = crate::tracker::swarm::Tier::ALL
            .iter()
            .map(|t| t.name())
            .collect();
        assert_eq!(names, TIERS);
    }

    #[test]
    fn render_lists_peers_version_and_polls() {
        let mut f = Figures::default();
        f.downloaded_by_peer.insert("127.0.0.2:6881".into(), 100);
        f.downloaded_by_tier.insert("rack".into(), 100);
        f.current = Some("v\"2".into());
        f.polls_ok = 3;
        f.last_poll_ok = Some(false);
        let t = f.render();
        assert!(
            t.contains("blobpin_sync_peer_downloaded_bytes_total{peer=\"127.0.0.2:6881\"} 100\n")
        );
        assert!(t.contains("blobpin_sync_downloaded_bytes_total{tier=\"rack\"} 100\n"));
        assert!(t.contains("blobpin_sync_downloaded_bytes_total{tier=\"origin\"} 0\n"));
        assert!(t.contains("blobpin_sync_current_version{version=\"v\\\"2\"} 1\n"));
        assert!(t.contains("blobpin_sync_polls_total{result=\"ok\"} 3\n"));
        assert!(t.contains("blobpin_sync_last_poll_success 0\n"));
        assert!(t.contains("# TYPE blobpin_sync_locked_bytes gauge\n"));
    }
}
