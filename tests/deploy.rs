//! The origin and sync pieces of deploying a blob that the origin and sync tests do not cover,
//! with real processes on loopback: bytes by peer tier in the reports and `/metrics` (racks
//! emulated by distinct 127.x.y.z addresses), `origin --max-download`, a sync priming itself
//! from an http feed by default, and a keyed origin (`--key`) with real librqbit syncs.
//!
//! On loopback a librqbit client does not bind its outgoing sockets, so every connection
//! arrives from 127.0.0.1: the topology here puts 127.0.0.1/32 in a rack of its own (DC "b")
//! and the origin, which only receives connections, sees all its downloaders there.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{blobpin, Scratch};
use crate::origin::{get, publish, Origin};
use crate::swarm::*;

const LIMIT: Duration = Duration::from_secs(120);
const MIB: usize = 1 << 20;

const TOPOLOGY: &str = r#"
[[dc]]
name = "a"
[[dc.rack]]
name = "a1"
cidrs = ["127.0.1.0/24"]
[[dc.rack]]
name = "a2"
cidrs = ["127.0.2.0/24"]
[[dc]]
name = "b"
[[dc.rack]]
name = "b1"
cidrs = ["127.0.0.1/32"]
"#;

/// The samples of `metric` in a Prometheus text, by their label set (`{...}` or "").
fn samples(text: &str, metric: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            let (labels, v) = rest.rsplit_once(' ')?;
            Some((labels.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to --metrics");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A one-shot `sync --json` of `feed` into `dest` listening on `listen`; returns the report.
fn sync_json(feed: &str, dest: &Path, listen: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "sync",
        feed,
        "--dest",
        dest.to_str().unwrap(),
        "--json",
        "--stall-timeout",
        "30",
        "--listen",
        listen,
    ];
    args.extend_from_slice(extra);
    let r = run_bounded(&args, LIMIT);
    assert_eq!(r.code, Some(0), "{args:?}: {}", r.err());
    report(&r)
}

fn map(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

/// Checks a report's tiers: every tier listed, all bytes from peers in `tier`, and at least
/// what was not on disk before fetched.
fn assert_all_in(rep: &serde_json::Value, tier: &str) {
    let tiers = map(&rep["bytes_by_tier"]);
    let peers = map(&rep["bytes_by_peer"]);
    assert_eq!(
        tiers.keys().collect::<Vec<_>>(),
        ["dc", "origin", "rack", "remote", "unknown"],
        "{rep}"
    );
    let total: u64 = tiers.values().sum();
    assert_eq!(total, peers.values().sum::<u64>(), "{rep}");
    assert_eq!(tiers[tier], total, "all bytes in tier {tier}: {rep}");
    let needed = rep["total_size"].as_u64().unwrap() - rep["resumed_bytes"].as_u64().unwrap();
    assert!(total >= needed, "{rep}");
}

#[test]
fn bytes_are_counted_by_peer_tier_in_reports_and_metrics_of_sync_and_origin() {
    let s = Scratch::new("deploy-tiers");
    std::fs::write(s.path("topo.toml"), TOPOLOGY).unwrap();
    let size = 4 * MIB;
    let data = write_blob(&s.path("build/blob.bin"), size, 91);
    publish(&s.path("build/blob.bin"), &s.path("feed"), "v1");
    let o = Origin::start(
        &s.path("feed"),
        &[
            "--listen",
            "127.0.3.1:0",
            "--topology",
            s.path("topo.toml").to_str().unwrap(),
            "--max-download",
            "100MB/s",
        ],
    );
    o.wait_seeding("v1");
    // The origin serves its topology file as given.
    let (st, _, body) = get(o.feed, "/feed/topology", "");
    assert_eq!(st, 200);
    assert_eq!(body, TOPOLOGY.as_bytes());
    let feed = format!("http://{}/feed/blob", o.feed);

    // A peer in rack a1.
    let rack_peer = Seeder::start(
        &feed,
        &s.path("build/blob.bin"),
        free_addr("127.0.1.2"),
        &[],
    );
    let rp = rack_peer.addr.to_string();

    // A watch in rack a1 fed by that peer only: its bytes are tier "rack" in /metrics.
    let metrics = free_addr("127.0.0.1");
    let dest = s.path("watch");
    let mut cmd = Command::new(blobpin());
    cmd.args(["sync", &feed, "--dest", dest.to_str().unwrap()])
        .args(["--watch", "300ms", "--json", "--stall-timeout", "30"])
        .args(["--listen", "127.0.1.1:0", "--peer", &rp])
        .args(["--metrics", &metrics.to_string()]);
    let mut w = Streaming::spawn(cmd);
    w.wait_line("is live", LIMIT);
    assert!(std::fs::read(dest.join("current/blob.bin")).unwrap() == data);
    let m = scrape(metrics);
    let tiers = samples(&m, "blobpin_sync_downloaded_bytes_total");
    let peers = samples(&m, "blobpin_sync_peer_downloaded_bytes_total");
    assert_eq!(tiers.len(), 5, "every tier listed: {m}");
    let rack = tiers["{tier=\"rack\"}"];
    assert_eq!(rack, peers[&format!("{{peer=\"{rp}\"}}")], "{m}");
    assert_eq!(tiers.values().sum::<u64>(), rack, "{m}");
    assert_eq!(peers.values().sum::<u64>(), rack, "{m}");
    w.terminate();
    let run = w.finish(LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.err());
    let line: serde_json::Value = serde_json::from_str(run.out().lines().next().unwrap()).unwrap();
    assert_all_in(&line, "rack");
    assert_eq!(line["bytes_by_tier"]["rack"].as_u64().unwrap(), rack);

    // The same peer seen from rack a2 (same DC), and from outside every rack.
    let rep = sync_json(&feed, &s.path("a2"), "127.0.2.1:0", &["--peer", &rp]);
    assert_all_in(&rep, "dc");
    let rep = sync_json(&feed, &s.path("out"), "127.0.4.1:0", &["--peer", &rp]);
    assert_all_in(&rep, "unknown");
    // The origin's own seeder is tier "origin".
    let seeder = o.seeder.to_string();
    let rep = sync_json(&feed, &s.path("o"), "127.0.1.3:0", &["--peer", &seeder]);
    assert_all_in(&rep, "origin");
    let from_origin = rep["bytes_by_tier"]["origin"].as_u64().unwrap();

    // The origin counts what it uploaded by the DC of the receiving peer: the connection came
    // from 127.0.0.1, in DC "b".
    let deadline = Instant::now() + LIMIT;
    let m = loop {
        let (_, _, body) = get(o.feed, "/metrics", "");
        let m = String::from_utf8_lossy(&body).into_owned();
        let by_dc = samples(&m, "blobpin_origin_uploaded_bytes_total");
        if by_dc.get("{dc=\"b\"}").copied().unwrap_or(0) >= from_origin || Instant::now() > deadline
        {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let by_dc = samples(&m, "blobpin_origin_uploaded_bytes_total");
    assert_eq!(
        by_dc.keys().collect::<Vec<_>>(),
        ["{dc=\"a\"}", "{dc=\"b\"}", "{dc=\"unknown\"}"],
        "{m}"
    );
    assert!(by_dc["{dc=\"b\"}"] >= from_origin, "{m}");
    assert_eq!(by_dc["{dc=\"a\"}"] + by_dc["{dc=\"unknown\"}"], 0, "{m}");
    let per_version: u64 = samples(&m, "blobpin_origin_uploaded_bytes").values().sum();
    assert!(by_dc.values().sum::<u64>() <= per_version, "{m}");
    drop(rack_peer);
    assert_eq!(o.stop(), Some(0));
}

#[test]
fn a_sync_of_an_http_feed_primes_from_the_origin_by_default() {
    let s = Scratch::new("deploy-prime");
    let data = write_blob(&s.path("build/blob.bin"), 2 * MIB, 92);
    publish(&s.path("build/blob.bin"), &s.path("feed"), "v1");
    let o = Origin::start(&s.path("feed"), &[]);
    o.wait_seeding("v1");
    let feed = format!("http://{}/feed/blob", o.feed);
    let seeder = o.seeder.to_string();
    let primer_bytes = || {
        let (_, _, body) = get(o.feed, "/metrics", "");
        samples(
            &String::from_utf8_lossy(&body),
            "blobpin_origin_primer_bytes",
        )[""]
    };
    assert_eq!(primer_bytes(), 0);

    // Only FEED_URL: one piece comes from FEED_URL/files before joining, and is found on disk
    // when the torrent is added (resumed), not downloaded from the peer.
    let args = |dest: &str| -> Vec<String> {
        [
            "sync",
            &feed,
            "--dest",
            dest,
            "--json",
            "-v",
            "--stall-timeout",
            "30",
            "--listen",
            "127.0.0.1:0",
            "--peer",
            &seeder,
        ]
        .map(String::from)
        .to_vec()
    };
    let dest = s.path("primed");
    let a = args(dest.to_str().unwrap());
    let r = run_bounded(&a.iter().map(String::as_str).collect::<Vec<_>>(), LIMIT);
    assert_eq!(r.code, Some(0), "{}", r.err());
    let rep = report(&r);
    let resumed = rep["resumed_bytes"].as_u64().unwrap();
    assert!(resumed > 0, "not primed: {rep}");
    assert!(
        r.err().contains(&format!("from {feed}/files")),
        "{}",
        r.err()
    );
    assert_eq!(
        primer_bytes(),
        resumed,
        "the primer piece came from the origin"
    );
    assert!(std::fs::read(dest.join("current/blob.bin")).unwrap() == data);

    // --no-prime joins empty-handed; it cannot be combined with --prime-from.
    let dest = s.path("bare");
    let mut a = args(dest.to_str().unwrap());
    a.push("--no-prime".into());
    let r = run_bounded(&a.iter().map(String::as_str).collect::<Vec<_>>(), LIMIT);
    assert_eq!(r.code, Some(0), "{}", r.err());
    assert_eq!(report(&r)["resumed_bytes"].as_u64(), Some(0));
    assert!(!r.err().contains("primed"), "{}", r.err());
    assert_eq!(primer_bytes(), resumed);
    a.extend(["--prime-from".into(), format!("{feed}/files")]);
    let r = run_bounded(&a.iter().map(String::as_str).collect::<Vec<_>>(), LIMIT);
    assert_eq!(r.code, Some(2), "{}", r.err());
    assert!(r.err().contains("--no-prime"), "{}", r.err());
    assert_eq!(o.stop(), Some(0));
}

/// Announces `info_hash` to `tracker` with the query `extra` added; returns the body.
fn announce(tracker: SocketAddr, info_hash: &[u8], extra: &str) -> Vec<u8> {
    let q = format!(
        "/announce?info_hash={}&peer_id={}&port=6881&uploaded=0&downloaded=0&left=100&compact=1{extra}",
        crate::origin::percent(info_hash),
        crate::origin::percent(b"-TT0001-keytest00001")
    );
    let (status, _, body) = get(tracker, &q, "");
    assert_eq!(status, 200);
    body
}

#[test]
fn a_keyed_origin_serves_syncs_given_the_key_and_refuses_announces_without_it() {
    let s = Scratch::new("deploy-key");
    let data = write_blob(&s.path("build/blob.bin"), 2 * MIB, 93);
    // The torrent names the origin's tracker (without the key: the feed is not secret).
    let tracker = free_addr("127.0.0.1");
    let entry = publish_with(
        &s.path("build/blob.bin"),
        &s.path("feed"),
        &[
            "--version-name",
            "v1",
            "--tracker",
            &format!("http://{tracker}/announce"),
        ],
    );
    let ih = crate::origin::unhex(&entry.torrent.info_hash);
    let o = Origin::start(
        &s.path("feed"),
        &[
            "--key",
            "s3 cr/t",
            "--tracker-listen",
            &tracker.to_string(),
            "--seed-listen",
            "127.0.0.1:0",
        ],
    );
    o.wait_seeding("v1");
    assert_eq!(o.tracker, tracker);

    // Announces without the key, or with a wrong one, are refused with the documented reason;
    // with it (percent-encoded) the origin's seeder is in the answer.
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let body = text(&announce(tracker, &ih, ""));
    assert!(body.contains("14:failure reason11:missing key"), "{body}");
    let body = text(&announce(tracker, &ih, "&key=s3cret"));
    assert!(body.contains("14:failure reason11:invalid key"), "{body}");
    let deadline = Instant::now() + LIMIT;
    loop {
        let body = announce(tracker, &ih, "&key=s3%20cr%2Ft");
        assert!(!text(&body).contains("failure reason"), "{}", text(&body));
        let port = o.seeder.port().to_be_bytes();
        let compact = [127u8, 0, 0, 1, port[0], port[1]];
        if body.windows(6).any(|w| w == compact) {
            break;
        }
        assert!(Instant::now() < deadline, "the seeder never announced");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A sync given the key finds the seeder through the tracker alone (no --peer).
    let feed = format!("http://{}/feed/blob", o.feed);
    let dest = s.path("keyed");
    let rep = sync_json(
        &feed,
        &dest,
        "127.0.0.1:0",
        &["--key", "s3 cr/t", "--no-prime"],
    );
    let from_seeder = rep["bytes_by_peer"][o.seeder.to_string()]
        .as_u64()
        .unwrap_or(0);
    assert!(from_seeder > 0, "{rep}");
    assert!(std::fs::read(dest.join("current/blob.bin")).unwrap() == data);

    // Without the key its announces are refused ("invalid key": librqbit sends a random key of
    // its own) and it finds no one: it gives up.
    let errors = |reason: &str| {
        let (_, _, body) = get(o.feed, "/metrics", "");
        samples(
            &String::from_utf8_lossy(&body),
            "blobpin_tracker_errors_total",
        )
        .get(&format!("{{reason=\"{reason}\"}}"))
        .copied()
        .unwrap_or(0)
    };
    // Only the test's own wrong key so far: the origin's seeder announces with the key too.
    assert_eq!(errors("wrong_key"), 1);
    assert_eq!(errors("missing_key"), 1);
    let dest = s.path("keyless");
    let r = run_bounded(
        &[
            "sync",
            &feed,
            "--dest",
            dest.to_str().unwrap(),
            "--no-prime",
            "--stall-timeout",
            "3",
            "--listen",
            "127.0.0.1:0",
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(1), "{}", r.err());
    assert!(r.err().contains("no reachable peer"), "{}", r.err());
    assert!(errors("wrong_key") > 1, "no refused announce counted");
    assert!(!dest.join("current").exists());
    assert_eq!(o.stop(), Some(0));
}
