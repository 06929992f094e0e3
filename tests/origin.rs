//! `blobpin origin` and `blobpin demo` with real processes on loopback: the feed over HTTP
//! (latest.json, torrents, blob ranges for primers, 404s), a publish picked up without a
//! restart and allowed on the in-process tracker (unknown info-hashes refused), a sync served
//! by it, bad inputs, SIGTERM, and the demo end to end (locking needs CAP_IPC_LOCK or a large
//! RLIMIT_MEMLOCK; CI runs as root).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{blobpin, Scratch};
use crate::swarm::*;

const LIMIT: Duration = Duration::from_secs(120);

/// A running `blobpin origin`; killed (SIGTERM) when dropped.
pub(crate) struct Origin {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    pub(crate) feed: SocketAddr,
    pub(crate) tracker: SocketAddr,
    pub(crate) seeder: SocketAddr,
}

impl Origin {
    /// Starts `blobpin origin --listen 127.0.0.1:0 --feed DIR EXTRA...` (without the first
    /// `--listen` when `extra` has one); returns once it printed its addresses.
    pub(crate) fn start(feed_dir: &Path, extra: &[&str]) -> Origin {
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(blobpin())
            .arg("origin")
            .args(listen)
            .args(["--scan-ms", "200", "--feed"])
            .arg(feed_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start blobpin origin");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("origin prints its addresses");
        let w: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(w[..2], ["blobpin", "origin:"], "{first}");
        let addr = |url: &str| -> SocketAddr {
            url.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        Origin {
            feed: addr(w[3]),
            tracker: addr(w[5]),
            seeder: w[7].parse().unwrap(),
            child: Some(child),
            lines,
        }
    }

    /// Waits for the line `seeding NAME VERSION ...`.
    pub(crate) fn wait_seeding(&self, version: &str) {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                if l.starts_with("seeding ") && l.contains(version) {
                    return;
                }
            }
        }
        panic!("origin did not start seeding {version}");
    }

    pub(crate) fn stop(mut self) -> Option<i32> {
        let mut c = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        wait_bounded_status(&mut c)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_bounded_status(c: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code();
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("process did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain HTTP/1.1 GET; returns (status, headers, body).
pub(crate) fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, buf[split + 4..].to_vec())
}

pub(crate) fn percent(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Announces `info_hash` to the tracker as a downloading peer; returns the body.
fn announce(tracker: SocketAddr, info_hash: &[u8]) -> String {
    let q = format!(
        "/announce?info_hash={}&peer_id={}&port=6881&uploaded=0&downloaded=0&left=100&compact=1",
        percent(info_hash),
        percent(b"-TT0001-testpeer0001")
    );
    let (status, _, body) = get(tracker, &q, "");
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body).into_owned()
}

pub(crate) fn publish(blob: &Path, feed: &Path, version: &str) -> blobpin::feed::FeedEntry {
    publish_with(blob, feed, &["--version-name", version])
}

#[test]
fn origin_serves_feed_torrents_blob_ranges_and_404s() {
    let s = Scratch::new("origin-serve");
    let data = write_blob(&s.path("build/blob.bin"), 3 << 20, 71);
    let entry = publish(&s.path("build/blob.bin"), &s.path("feed"), "v1");
    let o = Origin::start(&s.path("feed"), &[]);
    o.wait_seeding("v1");

    let (st, head, body) = get(o.feed, "/feed/blob/latest.json", "");
    assert_eq!(st, 200, "{head}");
    assert_eq!(
        body,
        std::fs::read(s.path("feed/blob/latest.json")).unwrap()
    );
    let (st, _, body) = get(o.feed, &format!("/feed/blob/{}", entry.torrent.file), "");
    assert_eq!(st, 200);
    assert_eq!(
        body,
        std::fs::read(s.path(&format!("feed/blob/{}", entry.torrent.file))).unwrap()
    );
    // The blob's bytes, by range (what --prime-from reads) and whole.
    let (st, head, body) = get(
        o.feed,
        "/feed/blob/files/blob.bin",
        "Range: bytes=1000-1999\r\n",
    );
    assert_eq!(st, 206, "{head}");
    assert!(
        head.contains(&format!("bytes 1000-1999/{}", data.len())),
        "{head}"
    );
    assert_eq!(body, data[1000..2000]);
    let (st, _, body) = get(o.feed, "/feed/blob/files/blob.bin", "");
    assert_eq!(st, 200);
    assert!(body == data);
    let (st, _, _) = get(
        o.feed,
        "/feed/blob/files/blob.bin",
        "Range: bytes=99999999-\r\n",
    );
    assert_eq!(st, 416);
    for path in [
        "/feed/topology",
        "/feed/nope/latest.json",
        "/feed/blob/v9.torrent",
        "/feed/blob/v1.source",
        "/feed/blob/../blob/latest.json",
        "/feed/blob/files/../v1.source",
        "/feed/blob/files/other.bin",
        "/etc/passwd",
    ] {
        assert_eq!(get(o.feed, path, "").0, 404, "{path}");
    }
    let (st, _, body) = get(o.feed, "/metrics", "");
    assert_eq!(st, 200);
    let m = String::from_utf8_lossy(&body);
    assert!(m.contains("blobpin_origin_seeding 1"), "{m}");
    assert!(m.contains("blobpin_tracker_announces_total"), "{m}");
    assert_eq!(o.stop(), Some(0), "SIGTERM exits 0");
}

#[test]
fn origin_picks_up_a_new_publish_allows_it_on_its_tracker_and_seeds_it() {
    let s = Scratch::new("origin-pickup");
    std::fs::create_dir_all(s.path("feed")).unwrap();
    let o = Origin::start(&s.path("feed"), &[]);
    let unknown = [0x42u8; 20];
    assert!(announce(o.tracker, &unknown).contains("failure reason"));

    let data = write_blob(&s.path("build/blob.bin"), 2 << 20, 72);
    let entry = publish(&s.path("build/blob.bin"), &s.path("feed"), "v1");
    o.wait_seeding("v1");
    let body = announce(o.tracker, &unhex(&entry.torrent.info_hash));
    assert!(!body.contains("failure reason"), "{body}");
    assert!(body.contains("peers"), "{body}");
    assert!(announce(o.tracker, &unknown).contains("failure reason"));

    // A host fetches it through the tracker alone, primed over HTTP from the origin.
    let feed = format!("http://{}/feed/blob", o.feed);
    let tracker = format!("http://{}/announce", o.tracker);
    let primer = format!("{feed}/files");
    let dest = s.path("host");
    let r = run_bounded(
        &[
            "sync",
            &feed,
            "--dest",
            dest.to_str().unwrap(),
            "--json",
            "--stall-timeout",
            "30",
            "--listen",
            &free_addr("127.0.0.1").to_string(),
            "--tracker",
            &tracker,
            "--prime-from",
            &primer,
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(0), "{}", r.err());
    let rep = report(&r);
    assert!(rep["resumed_bytes"].as_u64().unwrap() > 0, "primed");
    assert!(
        rep["bytes_by_peer"][o.seeder.to_string()]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{rep}"
    );
    assert!(std::fs::read(dest.join("current/blob.bin")).unwrap() == data);

    // A second version, published while the origin runs (another build directory).
    write_blob(&s.path("build2/blob.bin"), 1 << 20, 73);
    let v2 = publish(&s.path("build2/blob.bin"), &s.path("feed"), "v2");
    o.wait_seeding("v2");
    assert!(!announce(o.tracker, &unhex(&v2.torrent.info_hash)).contains("failure reason"));
    assert!(!announce(o.tracker, &unhex(&entry.torrent.info_hash)).contains("failure reason"));
    let (_, _, body) = get(o.feed, "/metrics", "");
    let m = String::from_utf8_lossy(&body);
    assert!(m.contains("blobpin_origin_versions 2"), "{m}");
    assert!(m.contains("blobpin_origin_seeding 2"), "{m}");
    assert_eq!(o.stop(), Some(0));
}

/// Polls the origin's metrics until `needle` shows up.
fn wait_metric(o: &Origin, needle: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, _, body) = get(o.feed, "/metrics", "");
        let m = String::from_utf8_lossy(&body).into_owned();
        if m.contains(needle) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn origin_never_seeds_or_touches_data_changed_since_publishing() {
    let s = Scratch::new("origin-changed");
    write_blob(&s.path("build/blob.bin"), 2 << 20, 74);
    let v1 = publish(&s.path("build/blob.bin"), &s.path("feed"), "v1");
    // Rebuilt in place: same size, other bytes; and a second entry whose data shrank.
    let rebuilt = write_blob(&s.path("build/blob.bin"), 2 << 20, 75);
    write_blob(&s.path("other/x.bin"), 1 << 20, 76);
    publish(&s.path("other/x.bin"), &s.path("feed"), "w1");
    let shrunk = write_blob(&s.path("other/x.bin"), 1000, 77);
    let o = Origin::start(&s.path("feed"), &[]);
    let m = wait_metric(&o, "blobpin_origin_versions 2");
    assert!(m.contains("blobpin_origin_versions 2"), "{m}");
    assert!(m.contains("blobpin_origin_seeding 0"), "{m}");
    // Still published, so still allowed on the tracker.
    assert!(!announce(o.tracker, &unhex(&v1.torrent.info_hash)).contains("failure reason"));
    assert_eq!(get(o.feed, "/feed/blob/files/blob.bin", "").0, 404);
    assert_eq!(o.stop(), Some(0));
    assert!(std::fs::read(s.path("build/blob.bin")).unwrap() == rebuilt);
    assert!(std::fs::read(s.path("other/x.bin")).unwrap() == shrunk);
}

#[test]
fn origin_refuses_bad_inputs_clearly() {
    let s = Scratch::new("origin-bad");
    std::fs::write(s.path("file"), b"x").unwrap();
    std::fs::write(s.path("topo.toml"), b"[[dc]]\nname = 3\n").unwrap();
    std::fs::create_dir_all(s.path("feed")).unwrap();
    let missing = s.path("missing");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--feed".into(), missing.display().to_string()],
            missing.display().to_string(),
        ),
        (
            vec!["--feed".into(), s.path("file").display().to_string()],
            "not a directory".into(),
        ),
        (
            vec![
                "--feed".into(),
                s.path("feed").display().to_string(),
                "--topology".into(),
                s.path("topo.toml").display().to_string(),
            ],
            s.path("topo.toml").display().to_string(),
        ),
        (
            vec![
                "--feed".into(),
                s.path("feed").display().to_string(),
                "--topology".into(),
                missing.display().to_string(),
            ],
            missing.display().to_string(),
        ),
        (
            vec![
                "--feed".into(),
                s.path("feed").display().to_string(),
                "--max-upload".into(),
                "fast".into(),
            ],
            "fast".into(),
        ),
        (
            vec![
                "--feed".into(),
                s.path("feed").display().to_string(),
                "--max-download".into(),
                "1k".into(),
            ],
            "--max-download: invalid rate \"1k\"".into(),
        ),
    ];
    for (args, needle) in cases {
        let mut a = vec!["origin", "--listen", "127.0.0.1:0"];
        a.extend(args.iter().map(String::as_str));
        let r = run_bounded(&a, LIMIT);
        assert_eq!(r.code, Some(1), "{a:?}: {}", r.err());
        assert!(r.err().starts_with("blobpin: "), "{}", r.err());
        assert!(r.err().contains(&needle), "{a:?}: {}", r.err());
        assert!(!r.err().contains("panicked"), "{}", r.err());
    }
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let r = run_bounded(
        &[
            "origin",
            "--listen",
            &addr,
            "--feed",
            s.path("feed").to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(1), "{}", r.err());
    assert!(r.err().contains(&addr), "{}", r.err());
}

#[test]
fn demo_runs_end_to_end_and_cleans_up() {
    let s = Scratch::new("demo");
    std::fs::create_dir_all(s.path("target")).unwrap();
    let child = Command::new(blobpin())
        .args(["demo", "--size", "8M"])
        .current_dir(&s.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let r = wait_bounded(child, LIMIT, "demo");
    assert_eq!(r.code, Some(0), "{}\n{}", r.out(), r.err());
    let out = r.out();
    assert!(out.contains("all 4 hosts verified and locked"), "{out}");
    for h in ["a1 ", "a2 ", "b1 ", "b2 "] {
        let line = out
            .lines()
            .find(|l| l.starts_with(h) && l.contains("MiB"))
            .unwrap_or_else(|| panic!("no line for host {h}: {out}"));
        // Every host holds its whole copy locked (8 MiB, as VmLck reports it).
        assert!(line.trim_end().ends_with("8 MiB"), "{line}");
    }
    assert!(out.contains("cleaned up"), "{out}");
    // Nothing left behind: no scratch directory, no lock holder of its files.
    let left: Vec<_> = std::fs::read_dir(s.path("target")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines().any(|l| l.contains(s.dir.to_str().unwrap())),
        "a process of the demo survived: {ps}"
    );
}

/// Announces from the default source address (127.0.0.1) to the tracker at `to`, as a peer
/// listening on `port`; returns the compact peers of the answer.
fn announce_to(to: SocketAddr, info_hash: &[u8], peer_id: &[u8; 20], port: u16) -> Vec<SocketAddr> {
    let q = format!(
        "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left=100&compact=1",
        percent(info_hash),
        percent(peer_id)
    );
    let (status, _, body) = get(to, &q, "");
    assert_eq!(status, 200);
    let i = body
        .windows(7)
        .position(|w| w == b"5:peers")
        .unwrap_or_else(|| panic!("no peers in {}", String::from_utf8_lossy(&body)));
    let rest = &body[i + 7..];
    let colon = rest.iter().position(|&b| b == b':').unwrap();
    let n: usize = std::str::from_utf8(&rest[..colon])
        .unwrap()
        .parse()
        .unwrap();
    rest[colon + 1..colon + 1 + n]
        .chunks(6)
        .map(|c| SocketAddr::from(([c[0], c[1], c[2], c[3]], u16::from_be_bytes([c[4], c[5]]))))
        .collect()
}

#[test]
fn loopback_racks_locate_hosts_by_the_tracker_address_they_connect_to() {
    let s = Scratch::new("origin-loopback");
    write_blob(&s.path("build/blob.bin"), 1 << 20, 78);
    let entry = publish(&s.path("build/blob.bin"), &s.path("feed"), "v1");
    let port = free_addr("127.0.0.1").port();
    let a: SocketAddr = format!("127.0.1.1:{port}").parse().unwrap();
    let b: SocketAddr = format!("127.0.2.1:{port}").parse().unwrap();
    let lo: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let args = [
        "--loopback-racks",
        "--tracker-listen",
        &lo.to_string(),
        "--tracker-listen",
        &a.to_string(),
        "--tracker-listen",
        &b.to_string(),
    ];
    let o = Origin::start(&s.path("feed"), &args);
    o.wait_seeding("v1");
    let ih = unhex(&entry.torrent.info_hash);
    // Both clients connect from 127.0.0.1; the tracker places each at the address it reached.
    // (The origin announces its seeder right after printing that it seeds it.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let got = announce_to(a, &ih, b"-TT0001-hostA0000001", 7001);
        if got.contains(&o.seeder) || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(first.contains(&o.seeder), "{first:?}");
    let second = announce_to(b, &ih, b"-TT0001-hostB0000001", 7002);
    let host_a: SocketAddr = "127.0.1.1:7001".parse().unwrap();
    assert!(second.contains(&host_a), "{second:?}");
    assert!(
        !second
            .iter()
            .any(|p| p.ip().to_string() == "127.0.0.1" && p.port() == 7001),
        "{second:?}"
    );
    assert_eq!(o.stop(), Some(0));
}
