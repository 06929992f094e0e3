//! `blobpin publish`, `seed` and `sync` end to end, with real processes on loopback
//! addresses (127.0.0.x stands for distinct hosts): a swarm of syncs, resume after kill -9,
//! a corrupting peer, bad inputs that leave the live version alone, and an update read
//! through `current` while it happens. Locking needs CAP_IPC_LOCK or a large enough
//! RLIMIT_MEMLOCK (CI runs as root).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use blobpin::feed::FeedEntry;

use crate::common::Scratch;
use crate::swarm::*;

const LIMIT: Duration = Duration::from_secs(120);

fn sync_args<'a>(feed: &'a str, dest: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "sync",
        feed,
        "--dest",
        dest,
        "--json",
        "--stall-timeout",
        "30",
    ];
    v.extend_from_slice(extra);
    v
}

fn current_target(dest: &Path) -> String {
    fs::read_link(dest.join("current"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn three_hosts_sync_in_parallel_verify_flip_and_lock() {
    let s = Scratch::new("sync-swarm");
    let data = write_blob(&s.path("build/idx.bin"), 24 << 20, 1);
    let entry = publish_with(&s.path("build/idx.bin"), &s.path("feed"), &[]);
    let http = FeedServer::start(&s.path("feed"));
    let feed_url = format!("{}/idx", http.base);
    let seeder = Seeder::start(
        &feed_url,
        &s.path("build/idx.bin"),
        free_addr("127.0.0.1"),
        &["--max-upload", "16M"],
    );
    let hosts: Vec<_> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| free_addr(ip))
        .collect();
    let dests: Vec<_> = (0..3).map(|i| s.path(&format!("host{i}"))).collect();
    let _guards: Vec<_> = dests.iter().map(|d| HolderGuard(d.clone())).collect();
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut cmd = Command::new(crate::common::blobpin());
            cmd.args(sync_args(
                &feed_url,
                dests[i].to_str().unwrap(),
                &["--lock"],
            ))
            .args([
                "--listen",
                &hosts[i].to_string(),
                "--peer",
                &seeder.addr.to_string(),
            ]);
            for (j, h) in hosts.iter().enumerate() {
                if j != i {
                    cmd.args(["--peer", &h.to_string()]);
                }
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let runs: Vec<_> = children
        .into_iter()
        .map(|c| wait_bounded(c, LIMIT, "sync"))
        .collect();
    let seeder_addr = seeder.addr.to_string();
    let uploaded = seeder.stop();
    let mut from_hosts = 0u64;
    for (i, r) in runs.iter().enumerate() {
        let rep = report(r);
        assert_eq!(rep["action"], "switched");
        assert_eq!(rep["version"], entry.version.as_str());
        assert_eq!(
            current_target(&dests[i]),
            format!("versions/{}", entry.version)
        );
        let got = fs::read(dests[i].join("current/idx.bin")).unwrap();
        assert!(got == data, "host {i} has different content");
        assert!(!dests[i].join(".staging").join(&entry.version).exists());
        // Locked: the detached holder has the whole version in VmLck.
        let pid = holder_pid(&dests[i], &entry.version).expect("a lock holder");
        assert_eq!(rep["lock_pid"].as_i64(), Some(pid as i64));
        assert!(alive(pid));
        assert!(
            vm_locked(pid) >= 24 << 20,
            "holder {pid} locks only {} bytes",
            vm_locked(pid)
        );
        for (peer, bytes) in rep["bytes_by_peer"].as_object().unwrap() {
            if *peer != seeder_addr {
                from_hosts += bytes.as_u64().unwrap();
            }
        }
    }
    eprintln!(
        "swarm share: seeder uploaded {uploaded} bytes, hosts got {from_hosts} bytes from each other ({:.0}% of 3 x blob)",
        100.0 * from_hosts as f64 / (3.0 * (24 << 20) as f64)
    );
    // A second sync finds everything up to date and keeps the same holder.
    let r = run_bounded(
        &sync_args(&feed_url, dests[0].to_str().unwrap(), &["--lock"]),
        LIMIT,
    );
    let rep = report(&r);
    assert_eq!(rep["action"], "up-to-date");
    assert_eq!(rep["fetched_bytes"], 0);
}

#[test]
fn resume_after_kill_does_not_fetch_verified_pieces_again() {
    let s = Scratch::new("sync-resume");
    let data = write_blob(&s.path("build/blob.bin"), 16 << 20, 2);
    let entry = publish_with(&s.path("build/blob.bin"), &s.path("feed"), &[]);
    let feed = s.path("feed/blob");
    let feed = feed.to_str().unwrap();
    let dest = s.path("dest");
    let seeder = Seeder::start(
        feed,
        &s.path("build/blob.bin"),
        free_addr("127.0.0.1"),
        &["--max-upload", "2M"],
    );
    let peer = seeder.addr.to_string();
    let mut child = Command::new(crate::common::blobpin())
        .args(sync_args(
            feed,
            dest.to_str().unwrap(),
            &["--peer", &peer, "--listen", "127.0.0.5:0"],
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a good part is on disk, then kill -9 mid-download.
    let partial = dest.join(".staging").join(&entry.version).join("blob.bin");
    let start = std::time::Instant::now();
    loop {
        let blocks = fs::metadata(&partial)
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
            .unwrap_or(0);
        if blocks >= 6 << 20 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "sync ended before it could be killed"
        );
        assert!(start.elapsed() < LIMIT, "the download never progressed");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dest.join("current").exists(),
        "nothing may be live after an interrupted first sync"
    );

    let r = run_bounded(
        &sync_args(
            feed,
            dest.to_str().unwrap(),
            &["--peer", &peer, "--listen", "127.0.0.5:0"],
        ),
        LIMIT,
    );
    let rep = report(&r);
    let resumed = rep["resumed_bytes"].as_u64().unwrap();
    let fetched = rep["fetched_bytes"].as_u64().unwrap();
    assert!(
        resumed >= 4 << 20,
        "only {resumed} bytes were kept from the first run"
    );
    assert!(
        fetched <= (16 << 20) - resumed + (1 << 20),
        "fetched {fetched} bytes although {resumed} were already verified"
    );
    assert_eq!(fs::read(dest.join("current/blob.bin")).unwrap(), data);
    drop(seeder);
}

#[test]
fn corrupt_peer_is_caught_by_the_piece_hash() {
    let s = Scratch::new("sync-corrupt");
    let data = write_blob(&s.path("build/blob.bin"), 8 << 20, 3);
    publish_with(&s.path("build/blob.bin"), &s.path("feed"), &[]);
    let feed = s.path("feed/blob");
    let feed = feed.to_str().unwrap();
    let bad = Seeder::start(
        feed,
        &s.path("build/blob.bin"),
        free_addr("127.0.0.1"),
        &["--corrupt-uploads"],
    );
    let good = Seeder::start(
        feed,
        &s.path("build/blob.bin"),
        free_addr("127.0.0.1"),
        &["--max-upload", "4M"],
    );
    let dest = s.path("dest");
    let r = run_bounded(
        &sync_args(
            feed,
            dest.to_str().unwrap(),
            &[
                "--peer",
                &bad.addr.to_string(),
                "--peer",
                &good.addr.to_string(),
                "--listen",
                "127.0.0.6:0",
            ],
        ),
        LIMIT,
    );
    report(&r);
    assert_eq!(fs::read(dest.join("current/blob.bin")).unwrap(), data);
    let bad_sent = bad.stop();
    good.stop();
    assert!(
        bad_sent > 0,
        "the corrupting peer was never asked for data: the test proved nothing"
    );
}

/// A destination with a live, locked v1 (fetched from a local feed) and a seeder for it.
fn live_destination(s: &Scratch) -> (std::path::PathBuf, FeedEntry, Vec<u8>) {
    let data = write_blob(&s.path("build/blob.bin"), 4 << 20, 4);
    let entry = publish_with(
        &s.path("build/blob.bin"),
        &s.path("feed"),
        &["--version-name", "v1"],
    );
    let feed = s.path("feed/blob");
    let seeder = Seeder::start(
        feed.to_str().unwrap(),
        &s.path("build/blob.bin"),
        free_addr("127.0.0.1"),
        &[],
    );
    let dest = s.path("dest");
    let r = run_bounded(
        &sync_args(
            feed.to_str().unwrap(),
            dest.to_str().unwrap(),
            &[
                "--lock",
                "--peer",
                &seeder.addr.to_string(),
                "--listen",
                "127.0.0.7:0",
            ],
        ),
        LIMIT,
    );
    report(&r);
    (dest, entry, data)
}

fn assert_live_untouched(dest: &Path, data: &[u8], pid: i32) {
    assert_eq!(current_target(dest), "versions/v1");
    assert!(
        fs::read(dest.join("current/blob.bin")).unwrap() == data,
        "live content changed"
    );
    assert!(alive(pid), "the live version's lock holder was stopped");
    assert_eq!(holder_pid(dest, "v1"), Some(pid));
}

#[test]
fn bad_inputs_fail_clearly_and_leave_the_live_version_alone() {
    let s = Scratch::new("sync-bad");
    let (dest, entry, data) = live_destination(&s);
    let _guard = HolderGuard(dest.clone());
    let pid = holder_pid(&dest, "v1").expect("v1 is locked");
    let d = dest.to_str().unwrap();
    let http = FeedServer::start(&s.path("feed"));

    let expect_fail = |feed: &str, want: &str, case: &str| {
        let r = run_bounded(&sync_args(feed, d, &["--lock"]), LIMIT);
        assert_eq!(
            r.code,
            Some(1),
            "{case}: exit {:?}, stderr {}",
            r.code,
            r.err()
        );
        assert!(r.err().starts_with("blobpin: "), "{case}: {}", r.err());
        assert!(
            r.err().contains(want),
            "{case}: expected {want:?} in {}",
            r.err()
        );
        assert!(!r.err().contains("panicked"), "{case}: {}", r.err());
        assert_live_untouched(&dest, &data, pid);
    };

    // Feed not there at all (HTTP 404) and unreachable.
    expect_fail(&format!("{}/nothing", http.base), "404", "feed 404");
    let closed = free_addr("127.0.0.1");
    expect_fail(
        &format!("http://{closed}/feed/blob"),
        "cannot fetch",
        "feed unreachable",
    );

    // Malformed and truncated latest.json.
    let mk = |name: &str, latest: &[u8], torrent: Option<&[u8]>| {
        let dir = s.path(&format!("feed/{name}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("latest.json"), latest).unwrap();
        if let Some(t) = torrent {
            fs::write(dir.join("v2.torrent"), t).unwrap();
        }
        format!("{}/{name}", http.base)
    };
    let good_json = fs::read(s.path("feed/blob/latest.json")).unwrap();
    let torrent = fs::read(s.path("feed/blob/v1.torrent")).unwrap();
    expect_fail(
        &mk("garbage", b"{ this is not json", None),
        "latest.json",
        "malformed JSON",
    );
    expect_fail(
        &mk("cut", &good_json[..good_json.len() / 2], None),
        "latest.json",
        "truncated JSON",
    );

    // A v2 entry whose torrent does not have the SHA-256 the feed promises.
    let mut v2 = entry.clone();
    v2.version = "v2".into();
    v2.torrent.file = "v2.torrent".into();
    let mut tampered = torrent.clone();
    tampered.push(b'x');
    expect_fail(
        &mk("tampered", &v2.to_json(), Some(&tampered)),
        "torrent.sha256",
        "torrent hash mismatch",
    );

    // `..` in the feed's file list, and in the torrent itself (with a matching SHA-256).
    let mut evil = v2.clone();
    evil.files[0].path = "../../evil".into();
    expect_fail(
        &mk("evil-feed", &evil.to_json(), Some(&torrent)),
        "files[0].path",
        "feed ..",
    );
    let spec = blobpin::feed::torrent::TorrentSpec {
        name: "blob".into(),
        piece_length: entry.piece_length,
        pieces: vec![[0u8; 20]; entry.total_size.div_ceil(entry.piece_length) as usize],
        files: vec![blobpin::feed::torrent::TorrentFile {
            path: "ok".into(),
            len: entry.total_size,
        }],
        multi_file: true,
        trackers: vec![],
        created: 0,
    };
    let (t, _) = blobpin::feed::torrent::build(&spec).unwrap();
    let t = String::from_utf8_lossy(&t)
        .replace("4:pathl2:okee", "4:pathl2:..ee")
        .into_bytes();
    let mut evil = v2.clone();
    evil.files[0].path = "ok".into();
    evil.torrent.sha256 = blobpin::feed::torrent::hex(&<sha2::Sha256 as sha2::Digest>::digest(&t));
    expect_fail(
        &mk("evil-torrent", &evil.to_json(), Some(&t)),
        "info.files[0].path",
        "torrent ..",
    );

    // A destination that cannot be written (immutable: even root cannot create files there).
    // A valid v2 is published so that only the destination is wrong.
    write_blob(&s.path("build/blob.bin"), 4 << 20, 5);
    publish_with(
        &s.path("build/blob.bin"),
        &s.path("feed"),
        &["--version-name", "v2"],
    );
    let staging = dest.join(".staging");
    let st = Command::new("chattr").arg("+i").arg(&staging).status();
    assert!(
        st.map(|s| s.success()).unwrap_or(false),
        "chattr +i failed: this test needs root (CAP_LINUX_IMMUTABLE) and e2fsprogs"
    );
    let r = run_bounded(
        &sync_args(&format!("{}/blob", http.base), d, &["--lock"]),
        LIMIT,
    );
    let _ = Command::new("chattr").arg("-i").arg(&staging).status();
    assert_eq!(r.code, Some(1), "{}", r.err());
    assert!(r.err().contains("not writable"), "{}", r.err());
    assert_live_untouched(&dest, &data, pid);
}

#[test]
fn update_is_atomic_for_a_reader_of_current() {
    let s = Scratch::new("sync-update");
    let (dest, _, v1) = live_destination(&s);
    let _guard = HolderGuard(dest.clone());
    let old_pid = holder_pid(&dest, "v1").unwrap();
    let v2 = write_blob(&s.path("build/blob.bin"), 4 << 20, 6);
    publish_with(
        &s.path("build/blob.bin"),
        &s.path("feed"),
        &["--version-name", "v2"],
    );
    let feed = s.path("feed/blob");
    let seeder = Seeder::start(
        feed.to_str().unwrap(),
        &s.path("build/blob.bin"),
        free_addr("127.0.0.1"),
        &[],
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, path) = (stop.clone(), dest.join("current/blob.bin"));
        let (v1, v2) = (v1.clone(), v2.clone());
        std::thread::spawn(move || {
            let (mut saw1, mut saw2, mut torn) = (0u32, 0u32, 0u32);
            let mut after_stop = 0;
            // Keep reading until the sync is over and v2 was seen (or clearly never will be).
            while saw2 == 0 || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    after_stop += 1;
                    if after_stop > 50 {
                        break;
                    }
                }
                let got = fs::read(&path).expect("current/blob.bin is always readable");
                if got == v1 {
                    saw1 += 1;
                } else if got == v2 {
                    saw2 += 1;
                } else {
                    torn += 1;
                }
            }
            (saw1, saw2, torn)
        })
    };
    let hook_out = s.path("hook.txt");
    let hook = format!(
        "echo \"$BLOBPIN_VERSION $BLOBPIN_PATH\" > {}",
        hook_out.display()
    );
    let r = run_bounded(
        &sync_args(
            feed.to_str().unwrap(),
            dest.to_str().unwrap(),
            &[
                "--lock",
                "--keep",
                "2",
                "--exec",
                &hook,
                "--peer",
                &seeder.addr.to_string(),
            ],
        ),
        LIMIT,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rep = report(&r);
    let (saw1, saw2, torn) = reader.join().unwrap();
    assert_eq!(torn, 0, "the reader saw a mixed blob {torn} times");
    assert!(saw1 > 0 && saw2 > 0, "reads: {saw1} of v1, {saw2} of v2");
    assert_eq!(rep["action"], "switched");
    assert_eq!(current_target(&dest), "versions/v2");
    // The hook ran with the new version; the old holder was stopped, the new one holds v2.
    let hook_text = fs::read_to_string(&hook_out).unwrap();
    assert_eq!(
        hook_text.trim(),
        format!(
            "v2 {}",
            fs::canonicalize(&dest)
                .unwrap()
                .join("versions/v2")
                .display()
        )
    );
    assert!(!alive(old_pid), "the v1 holder still runs");
    let new_pid = holder_pid(&dest, "v2").unwrap();
    assert!(alive(new_pid) && vm_locked(new_pid) >= 4 << 20);
    // --keep 2 keeps v1 on disk; a third version prunes it.
    assert!(dest.join("versions/v1").exists());
    let _ = write_blob(&s.path("build/blob.bin"), 4 << 20, 7);
    publish_with(
        &s.path("build/blob.bin"),
        &s.path("feed"),
        &["--version-name", "v3"],
    );
    drop(seeder);
    let seeder = Seeder::start(
        feed.to_str().unwrap(),
        &s.path("build/blob.bin"),
        free_addr("127.0.0.1"),
        &[],
    );
    let r = run_bounded(
        &sync_args(
            feed.to_str().unwrap(),
            dest.to_str().unwrap(),
            &["--keep", "2", "--peer", &seeder.addr.to_string()],
        ),
        LIMIT,
    );
    let rep = report(&r);
    assert_eq!(rep["pruned"], serde_json::json!(["v1"]));
    assert!(!dest.join("versions/v1").exists() && dest.join("versions/v2").exists());
    // Without --lock every holder is released.
    assert!(
        !alive(new_pid),
        "an unlocked sync left the v2 holder running"
    );
}

/// A child memory cgroup (v1) of this process's own cgroup; removed on drop.
struct MemCg {
    dir: std::path::PathBuf,
}

impl MemCg {
    /// `None` when the v1 memory controller is not mounted (cgroup v2 only).
    fn new(name: &str, limit: u64) -> Option<MemCg> {
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = own.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrl, path) = (it.next()?, it.next()?, it.next()?);
            ctrl.split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        })?;
        let base = Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'));
        if !base.join("memory.limit_in_bytes").exists() {
            return None;
        }
        let dir = base.join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create memory cgroup {}: {e} (needs root)",
                dir.display()
            )
        });
        fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        Some(MemCg { dir })
    }

    /// Runs `sh -c SCRIPT` inside the cgroup (the shell joins it, then execs the script).
    fn run(&self, script: &str) -> crate::common::Run {
        let procs = self.dir.join("cgroup.procs");
        let full = format!("echo $$ > '{}' && exec {script}", procs.display());
        let child = Command::new("sh")
            .args(["-c", &full])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_bounded(child, LIMIT, script)
    }

    fn oom_kills(&self) -> u64 {
        fs::read_to_string(self.dir.join("memory.oom_control"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemCg {
    fn drop(&mut self) {
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Percent of `path` in the page cache, measured by `blobpin stat --json`.
fn resident_percent(path: &Path) -> f64 {
    let r = run_bounded(&["stat", "--json", path.to_str().unwrap()], LIMIT);
    assert_eq!(r.code, Some(0), "{}", r.err());
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    v["totals"]["resident_percent"].as_f64().unwrap()
}

#[test]
fn sync_keeps_the_hot_set_resident_where_a_plain_copy_evicts_it() {
    let s = Scratch::new("sync-hotset");
    if crate::common::on_tmpfs(&s.dir) {
        panic!("the scratch directory is on tmpfs/overlay: page-cache tests cannot run there");
    }
    let limit = 96u64 << 20;
    let Some(cg) = MemCg::new("blobpin-hotset", limit) else {
        eprintln!("SKIPPED sync_keeps_the_hot_set_resident: no cgroup v1 memory controller here");
        return;
    };
    // The hot file of the "service", the blob (larger than the cgroup) and its seeder.
    let hot = s.path("service/hot.bin");
    write_blob(&hot, 32 << 20, 31);
    let blob = s.path("build/big.bin");
    write_blob(&blob, 128 << 20, 32);
    publish_with(&blob, &s.path("feed"), &[]);
    let feed = s.path("feed/big");
    let seeder = Seeder::start(feed.to_str().unwrap(), &blob, free_addr("127.0.0.1"), &[]);
    let hot_s = hot.to_str().unwrap();

    // The service reads its hot file once inside the cgroup (inactive list: the worst case).
    let warm = |cg: &MemCg| {
        assert_eq!(run_bounded(&["evict", "-q", hot_s], LIMIT).code, Some(0));
        let r = cg.run(&format!("cat '{hot_s}'"));
        assert_eq!(r.code, Some(0), "{}", r.err());
        resident_percent(&hot)
    };
    let (with_sync, kills) = crate::common::without_cache_drop(|| {
        let dest = s.path("dest");
        let _ = fs::remove_dir_all(&dest);
        let before = warm(&cg);
        if before < 99.0 {
            return None;
        }
        let kills = cg.oom_kills();
        let r = cg.run(&format!(
            "'{}' sync '{}' --dest '{}' --peer {} --listen 127.0.0.8:0 --stall-timeout 30",
            crate::common::blobpin().display(),
            feed.display(),
            dest.display(),
            seeder.addr
        ));
        assert_eq!(r.code, Some(0), "sync in the cgroup failed: {}", r.err());
        // The new blob itself is not left in the cache either (it is not locked here).
        let blob_cached = resident_percent(&dest.join("current/big.bin"));
        assert!(
            blob_cached < 10.0,
            "the synced blob is {blob_cached:.1}% cached"
        );
        Some((resident_percent(&hot), cg.oom_kills() - kills))
    });
    assert_eq!(kills, 0, "the sync was OOM-killed in the cgroup");
    assert!(
        with_sync >= 99.0,
        "sync left only {with_sync:.1}% of the hot file resident"
    );
    assert_eq!(
        fs::read(s.path("dest/current/big.bin")).unwrap().len(),
        128 << 20,
        "the blob arrived"
    );
    drop(seeder);

    // The control: the same bytes written by a plain copy in the same cgroup evict the hot set.
    let with_copy = crate::common::without_cache_drop(|| {
        assert_eq!(
            run_bounded(&["evict", "-q", blob.to_str().unwrap()], LIMIT).code,
            Some(0)
        );
        let before = warm(&cg);
        if before < 99.0 {
            return None;
        }
        let r = cg.run(&format!(
            "dd if='{}' of='{}' bs=1M conv=fsync status=none",
            blob.display(),
            s.path("copy.bin").display()
        ));
        assert_eq!(r.code, Some(0), "{}", r.err());
        Some(resident_percent(&hot))
    });
    eprintln!("hot set resident after: sync {with_sync:.1}%, plain copy {with_copy:.1}%");
    assert!(
        with_copy < 50.0,
        "a plain copy kept {with_copy:.1}% of the hot file: the cgroup does not constrain this machine, the test proves nothing"
    );
}

/// A small tmpfs mounted for a disk-full test; unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl Drop for SmallFs {
    fn drop(&mut self) {
        stop_holders(&self.0);
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn disk_full_fails_clearly_and_keeps_the_live_version() {
    let s = Scratch::new("sync-full");
    let mnt = s.path("small");
    fs::create_dir_all(&mnt).unwrap();
    // tmpfs only to get a tiny filesystem (no page-cache assertion here).
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=6m",
            "blobpin-test",
            mnt.to_str().unwrap(),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "mount -t tmpfs failed: this test needs root (CAP_SYS_ADMIN)"
    );
    let _fs = SmallFs(mnt.clone());
    let v1 = write_blob(&s.path("build/blob.bin"), 1 << 20, 41);
    publish_with(
        &s.path("build/blob.bin"),
        &s.path("feed"),
        &["--version-name", "v1"],
    );
    let feed = s.path("feed/blob");
    let feed = feed.to_str().unwrap();
    let dest = mnt.join("dest");
    let d = dest.to_str().unwrap();
    let seeder = Seeder::start(feed, &s.path("build/blob.bin"), free_addr("127.0.0.1"), &[]);
    report(&run_bounded(
        &sync_args(feed, d, &["--peer", &seeder.addr.to_string()]),
        LIMIT,
    ));
    drop(seeder);
    write_blob(&s.path("build/blob.bin"), 12 << 20, 42);
    publish_with(
        &s.path("build/blob.bin"),
        &s.path("feed"),
        &["--version-name", "v2"],
    );
    let seeder = Seeder::start(feed, &s.path("build/blob.bin"), free_addr("127.0.0.1"), &[]);
    let r = run_bounded(
        &sync_args(feed, d, &["--peer", &seeder.addr.to_string()]),
        LIMIT,
    );
    assert_eq!(r.code, Some(1), "{}", r.err());
    assert!(r.err().contains("No space left on device"), "{}", r.err());
    assert_eq!(current_target(&dest), "versions/v1");
    assert!(fs::read(dest.join("current/blob.bin")).unwrap() == v1);
}

#[test]
fn primed_hosts_fetch_from_a_parent_that_is_still_downloading() {
    // A chain: seeder -> A -> B -> C, each host knowing only its parent. Unprimed, B and C
    // stall (librqbit 9.1 never tells a peer that joined empty about new pieces); each primed
    // with one piece fetched over HTTP, they all finish from their parent.
    let s = Scratch::new("sync-chain");
    let data = write_blob(&s.path("build/blob.bin"), 16 << 20, 51);
    publish_with(&s.path("build/blob.bin"), &s.path("feed"), &[]);
    let http = FeedServer::start(&s.dir);
    let feed = format!("{}/feed/blob", http.base);
    let primer = format!("{}/build", http.base);
    let seeder = Seeder::start(
        &feed,
        &s.path("build/blob.bin"),
        free_addr("127.0.0.1"),
        &["--max-upload", "8M"],
    );
    let hosts: Vec<_> = ["127.0.0.10", "127.0.0.11", "127.0.0.12"]
        .iter()
        .map(|ip| free_addr(ip))
        .collect();
    // Each host is started once its parent has joined (as a tracker would only name a parent
    // after its first announce); started earlier, a child's connection is refused and librqbit
    // backs off for many seconds. Every host keeps seeding until the test stops it (SIGTERM
    // ends --seed-for early), a parent only once its child is done: a --seed-for that ran out
    // first (a busy machine) would leave the child without its only source.
    let mut parent = seeder.addr;
    let mut children: Vec<Streaming> = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        if let Some(p) = children.last_mut() {
            p.wait_line("joined the swarm", LIMIT);
        }
        let dest = s.path(&format!("host{i}"));
        let mut cmd = Command::new(crate::common::blobpin());
        cmd.args(sync_args(
            &feed,
            dest.to_str().unwrap(),
            &["--prime-from", &primer, "--seed-for", "3600", "-v"],
        ))
        .args(["--listen", &h.to_string(), "--peer", &parent.to_string()]);
        children.push(Streaming::spawn(cmd));
        parent = *h;
    }
    let mut runs = Vec::new();
    while let Some(mut c) = children.pop() {
        // From the tail up: each host is stopped once it is live and its child has finished.
        c.wait_line("is live", LIMIT);
        c.terminate();
        runs.push(c.finish(LIMIT));
    }
    runs.reverse();
    let uploaded = seeder.stop();
    for (i, r) in runs.iter().enumerate() {
        let rep = report(r);
        assert!(!r.err().contains("warning"), "host {i}: {}", r.err());
        assert!(
            rep["resumed_bytes"].as_u64().unwrap() > 0,
            "host {i} joined without its primer piece"
        );
        assert!(
            fs::read(s.path(&format!("host{i}/current/blob.bin"))).unwrap() == data,
            "host {i}"
        );
    }
    let from_parent_b = report(&runs[1])["bytes_by_peer"][hosts[0].to_string()]
        .as_u64()
        .unwrap_or(0);
    eprintln!("chain: seeder uploaded {uploaded} bytes; B got {from_parent_b} bytes from A");
    assert!(
        from_parent_b >= 8 << 20,
        "B got only {from_parent_b} bytes from its parent"
    );
}

#[test]
fn lock_failure_keeps_the_old_version_live_and_locked() {
    let s = Scratch::new("sync-lockfail");
    let (dest, _, data) = live_destination(&s);
    let _guard = HolderGuard(dest.clone());
    let pid = holder_pid(&dest, "v1").expect("v1 is locked");
    write_blob(&s.path("build/blob.bin"), 8 << 20, 61);
    publish_with(
        &s.path("build/blob.bin"),
        &s.path("feed"),
        &["--version-name", "v2"],
    );
    let feed = s.path("feed/blob");
    let seeder = Seeder::start(
        feed.to_str().unwrap(),
        &s.path("build/blob.bin"),
        free_addr("127.0.0.1"),
        &[],
    );
    // Without CAP_IPC_LOCK and with a 1 MiB memlock limit, locking 8 MiB must fail (needs root
    // to drop the capability from the bounding set; util-linux's prlimit and setpriv).
    let child = Command::new("prlimit")
        .args([
            "--memlock=1048576:1048576",
            "setpriv",
            "--bounding-set=-ipc_lock",
            "--",
        ])
        .arg(crate::common::blobpin())
        .args(sync_args(
            feed.to_str().unwrap(),
            dest.to_str().unwrap(),
            &["--lock", "--peer", &seeder.addr.to_string()],
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit and setpriv (util-linux) are needed");
    let r = wait_bounded(child, LIMIT, "sync under prlimit");
    assert_eq!(r.code, Some(1), "{}", r.err());
    assert!(r.err().contains("cannot lock version v2"), "{}", r.err());
    assert!(
        r.err().contains("mlock"),
        "the holder's own error is passed on: {}",
        r.err()
    );
    assert_live_untouched(&dest, &data, pid);
    assert!(vm_locked(pid) >= 4 << 20, "v1 is no longer locked");
}

#[test]
fn a_failing_hook_is_reported_after_the_switch() {
    let s = Scratch::new("sync-hook");
    let (dest, _, _) = live_destination(&s);
    let _guard = HolderGuard(dest.clone());
    let v2 = write_blob(&s.path("build/blob.bin"), 1 << 20, 71);
    publish_with(
        &s.path("build/blob.bin"),
        &s.path("feed"),
        &["--version-name", "v2"],
    );
    let feed = s.path("feed/blob");
    let seeder = Seeder::start(
        feed.to_str().unwrap(),
        &s.path("build/blob.bin"),
        free_addr("127.0.0.1"),
        &[],
    );
    let r = run_bounded(
        &sync_args(
            feed.to_str().unwrap(),
            dest.to_str().unwrap(),
            &["--exec", "exit 3", "--peer", &seeder.addr.to_string()],
        ),
        LIMIT,
    );
    assert_eq!(r.code, Some(1), "{}", r.err());
    assert!(
        r.err()
            .contains("version v2 is live, but the --exec hook failed")
            && r.err().contains("exit status: 3"),
        "{}",
        r.err()
    );
    assert_eq!(current_target(&dest), "versions/v2");
    assert!(fs::read(dest.join("current/blob.bin")).unwrap() == v2);
}
