//! `blobpin sync --watch` as a service, with real processes on loopback: readiness on a
//! NOTIFY_SOCKET the test binds, a v2 published while it watches goes live and v1 is unlocked
//! and evicted, `/metrics` is scraped, SIGTERM exits 0; taking over a detached holder, a
//! broken feed that leaves v1 live and locked (also when the watch starts while it is broken),
//! and SIGHUP polling at once. Locking needs CAP_IPC_LOCK or a large enough
//! RLIMIT_MEMLOCK (CI runs as root).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{blobpin, Scratch};
use crate::swarm::*;

const LIMIT: Duration = Duration::from_secs(120);
const MIB: usize = 1 << 20;

fn publish(blob: &Path, feed: &Path, version: &str) {
    publish_with(blob, feed, &["--name", "blob", "--version-name", version]);
}

fn current(dest: &Path) -> String {
    fs::read_link(dest.join("current"))
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Waits (bounded, not a timing assertion) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + LIMIT;
    while !f() {
        assert!(Instant::now() < end, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn resident_percent(path: &Path) -> f64 {
    let r = run_bounded(&["stat", "--json", path.to_str().unwrap()], LIMIT);
    assert_eq!(r.code, Some(0), "{}", r.err());
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    v["totals"]["resident_percent"].as_f64().unwrap()
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to --metrics");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn watch_cmd(feed: &Path, dest: &Path, extra: &[String]) -> Command {
    watch_every("300ms", feed, dest, extra)
}

fn watch_every(interval: &str, feed: &Path, dest: &Path, extra: &[String]) -> Command {
    let mut c = Command::new(blobpin());
    c.args([
        "sync",
        feed.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
    ])
    .args(["--lock", "--watch", interval, "--json", "-v", "--keep", "2"])
    .args(["--stall-timeout", "30"])
    .args(extra);
    c
}

#[test]
fn watch_picks_up_a_new_version_unlocks_and_evicts_the_old_and_stops_on_sigterm() {
    let s = Scratch::new("sync-watch");
    let v1 = write_blob(&s.path("b1/blob.bin"), 4 * MIB, 11);
    publish(&s.path("b1/blob.bin"), &s.path("feed"), "v1");
    let feed = s.path("feed/blob");
    let seed1 = Seeder::start(
        feed.to_str().unwrap(),
        &s.path("b1/blob.bin"),
        free_addr("127.0.0.1"),
        &[],
    );
    let seed2_addr = free_addr("127.0.0.1");
    let metrics = free_addr("127.0.0.1");
    // A fixed listen port: the seeding session of v1 must give it up for v2's download.
    let listen = free_addr("127.0.0.9");
    let notify = s.path("n.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let dest = s.path("dest");
    let mut cmd = watch_cmd(
        &feed,
        &dest,
        &[
            "--peer".into(),
            seed1.addr.to_string(),
            "--peer".into(),
            seed2_addr.to_string(),
            "--listen".into(),
            listen.to_string(),
            "--metrics".into(),
            metrics.to_string(),
        ],
    );
    cmd.env("NOTIFY_SOCKET", &notify);
    let w = Streaming::spawn(cmd);
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("READY=1 from the watch");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1"), "{msg:?}");
    // Ready means live and locked.
    assert_eq!(current(&dest), "versions/v1");
    assert!(fs::read(dest.join("current/blob.bin")).unwrap() == v1);
    let pid = w.pid();
    assert!(
        vm_locked(pid) >= (4 * MIB) as u64,
        "v1 not locked by the watch"
    );
    assert!(
        holder_pid(&dest, "v1").is_none(),
        "a watch starts no detached holder"
    );

    // v2 (a different size, to tell the locks apart) published while it watches.
    let v2 = write_blob(&s.path("b2/blob.bin"), 6 * MIB, 12);
    publish(&s.path("b2/blob.bin"), &s.path("feed"), "v2");
    let seed2 = Seeder::start(
        feed.to_str().unwrap(),
        &s.path("b2/blob.bin"),
        seed2_addr,
        &[],
    );
    wait_until("current -> versions/v2", || current(&dest) == "versions/v2");
    assert!(fs::read(dest.join("current/blob.bin")).unwrap() == v2);
    // The old version is unlocked (VmLck covers v2 only) and evicted, but kept (--keep 2).
    wait_until("v1 unlocked", || {
        let l = vm_locked(pid);
        l >= (6 * MIB) as u64 && l < (10 * MIB) as u64
    });
    let old = dest.join("versions/v1/blob.bin");
    assert!(old.exists(), "--keep 2 keeps v1");
    assert_eq!(resident_percent(&old), 0.0, "v1 still in the page cache");

    // Metrics: the live version, lock state, the peer the bytes came from, polls.
    let m = scrape(metrics);
    assert!(m.starts_with("HTTP/1.0 200"), "{m}");
    assert!(
        m.contains("blobpin_sync_current_version{version=\"v2\"} 1\n"),
        "{m}"
    );
    assert!(m.contains("blobpin_sync_locked_versions 1\n"), "{m}");
    assert!(m.contains("blobpin_sync_last_poll_success 1\n"), "{m}");
    assert!(m.contains("blobpin_sync_switches_total 2\n"), "{m}");
    assert!(
        m.contains(&format!(
            "blobpin_sync_peer_downloaded_bytes_total{{peer=\"{seed2_addr}\"}}"
        )),
        "{m}"
    );
    let mut s404 = TcpStream::connect(metrics).unwrap();
    s404.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut r = String::new();
    s404.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.0 404"), "{r}");

    w.terminate();
    let run = w.finish(LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.err());
    // Two lines on stdout, one per switch.
    let lines: Vec<serde_json::Value> = run
        .out()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", run.out());
    assert_eq!(lines[1]["version"], "v2");
    assert_eq!(lines[1]["unlocked"][0], "v1");
    // The locks went with the process; current stays.
    assert_eq!(current(&dest), "versions/v2");
    drop((seed1, seed2));
}

#[test]
fn watch_takes_over_a_holder_keeps_v1_through_a_broken_feed_and_polls_on_sighup() {
    let s = Scratch::new("sync-watch-bad");
    let v1 = write_blob(&s.path("b1/blob.bin"), 4 * MIB, 21);
    publish(&s.path("b1/blob.bin"), &s.path("feed"), "v1");
    let feed = s.path("feed/blob");
    let seed1 = Seeder::start(
        feed.to_str().unwrap(),
        &s.path("b1/blob.bin"),
        free_addr("127.0.0.1"),
        &[],
    );
    let dest = s.path("dest");
    let _guard = HolderGuard(dest.clone());
    let r = run_bounded(
        &[
            "sync",
            feed.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
            "--lock",
            "--json",
            "--peer",
            &seed1.addr.to_string(),
        ],
        LIMIT,
    );
    report(&r);
    let holder = holder_pid(&dest, "v1").expect("the one-shot sync's holder");
    assert!(alive(holder));

    let mut w = Streaming::spawn(watch_cmd(
        &feed,
        &dest,
        &["--listen".into(), "127.0.0.10:0".into()],
    ));
    w.wait_line("watching the feed", LIMIT);
    let pid = w.pid();
    // Taken over: the watch locks v1, the detached holder is gone.
    assert!(vm_locked(pid) >= (4 * MIB) as u64);
    wait_until("the detached holder stopped", || !alive(holder));
    // A one-shot sync refuses while the watch holds the destination.
    let r = run_bounded(
        &[
            "sync",
            feed.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_ne!(r.code, Some(0));
    assert!(r.err().contains("another sync is running"), "{}", r.err());

    // The feed breaks: the watch logs it and keeps v1 live and locked.
    fs::write(feed.join("latest.json"), b"{\"name\": \"blob\", trunc").unwrap();
    w.wait_line("poll failed", LIMIT);
    w.wait_line("poll failed", LIMIT);
    assert!(alive(pid), "the watch died of a bad feed");
    assert_eq!(current(&dest), "versions/v1");
    assert!(fs::read(dest.join("current/blob.bin")).unwrap() == v1);
    assert!(
        vm_locked(pid) >= (4 * MIB) as u64,
        "v1 unlocked by a bad feed"
    );

    w.terminate();
    let run = w.finish(LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.err());
    assert!(run.err().contains("bad feed entry"), "{}", run.err());

    // Started while the feed is still broken, a watch holds the live version anyway (READY
    // comes once it is locked); with an hour between polls, only SIGHUP brings v2 in.
    let seed2_addr = free_addr("127.0.0.1");
    let mut w = Streaming::spawn(watch_every(
        "1h",
        &feed,
        &dest,
        &[
            "--listen".into(),
            "127.0.0.10:0".into(),
            "--peer".into(),
            seed2_addr.to_string(),
        ],
    ));
    w.wait_line("not reachable yet", LIMIT);
    let pid = w.pid();
    assert!(
        vm_locked(pid) >= (4 * MIB) as u64,
        "v1 not locked after a restart"
    );
    assert_eq!(current(&dest), "versions/v1");
    let v2 = write_blob(&s.path("b2/blob.bin"), 6 * MIB, 22);
    publish(&s.path("b2/blob.bin"), &s.path("feed"), "v2");
    let seed2 = Seeder::start(
        feed.to_str().unwrap(),
        &s.path("b2/blob.bin"),
        seed2_addr,
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(current(&dest), "versions/v1", "polled without SIGHUP");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    w.wait_line("v2 is live", LIMIT);
    assert!(fs::read(dest.join("current/blob.bin")).unwrap() == v2);
    w.terminate();
    let run = w.finish(LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.err());
    drop((seed1, seed2));
}
