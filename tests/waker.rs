//! The waker (src/fetch/waker.rs) against real librqbit sessions in `blobpin` processes on
//! loopback: a session that is still downloading puts requests in flight to the pieces the
//! waker claims (so dropping the waker wakes its requesters), and a complete seeder does not.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blobpin::feed::torrent;
use blobpin::fetch::waker::wake_once;

use crate::common::Scratch;
use crate::swarm::*;

#[test]
fn a_downloading_session_requests_from_the_waker_and_a_seeder_does_not() {
    let s = Scratch::new("waker");
    write_blob(&s.path("build/blob.bin"), 8 << 20, 11);
    let entry = publish_with(&s.path("build/blob.bin"), &s.path("feed"), &[]);
    let tbytes = std::fs::read(s.path("feed/blob").join(&entry.torrent.file)).unwrap();
    let info = torrent::parse(&tbytes).unwrap();
    let rt = blobpin::fetch::runtime().unwrap();
    let feed = s.path("feed/blob");
    let feed = feed.to_str().unwrap();

    // A sync with no source at all keeps downloading; its own waker is off.
    let listen = free_addr("127.0.0.7");
    let mut child = Command::new(crate::common::blobpin())
        .args(["sync", feed, "--dest", s.path("dest").to_str().unwrap()])
        .args(["--listen", &listen.to_string(), "--stall-timeout", "120"])
        .args(["--wake-ms", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut last = None;
    let requested = loop {
        let r = rt.block_on(wake_once(
            listen,
            &info.info_hash,
            info.pieces.len(),
            Duration::from_secs(2),
        ));
        if let Ok(true) = r {
            break true;
        }
        // Until the torrent is added, the listener is closed or drops unknown info-hashes.
        last = Some(format!("{r:?}"));
        if start.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        requested,
        "the downloading session never requested the claimed pieces: {last:?}"
    );

    // A seeder holds every piece: it never requests anything from the waker.
    let seeder = Seeder::start(feed, &s.path("build/blob.bin"), free_addr("127.0.0.8"), &[]);
    let r = rt.block_on(wake_once(
        seeder.addr,
        &info.info_hash,
        info.pieces.len(),
        Duration::from_secs(2),
    ));
    assert!(matches!(r, Ok(false)), "{r:?}");
    seeder.stop();
}
