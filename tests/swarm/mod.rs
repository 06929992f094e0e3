//! Helpers for the publish/seed/sync tests: blob contents, free loopback ports, a `blobpin
//! seed` process, a tiny HTTP server for feed directories, and bounded waits on children. All
//! network traffic stays on 127.0.0.0/8.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{blobpin, Run};

/// `len` pseudo-random bytes (xorshift64*, seeded), incompressible and distinct per seed.
pub fn blob_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes a blob file and fsyncs it.
pub fn write_blob(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let data = blob_bytes(len, seed);
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(path, &data).unwrap();
    fs::File::open(path).unwrap().sync_all().unwrap();
    data
}

/// `blobpin publish BLOB --feed FEED --json EXTRA...`; panics unless it succeeds. Returns the
/// feed entry it printed.
pub fn publish_with(blob: &Path, feed: &Path, extra: &[&str]) -> blobpin::feed::FeedEntry {
    let mut args = vec![
        "publish",
        blob.to_str().unwrap(),
        "--feed",
        feed.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let r = run_bounded(&args, Duration::from_secs(120));
    assert_eq!(r.code, Some(0), "publish failed: {}", r.err());
    blobpin::feed::FeedEntry::parse(&r.stdout).expect("publish prints the feed entry")
}

/// A free TCP port on a loopback address.
pub fn free_addr(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    l.local_addr().unwrap()
}

/// Runs blobpin with a deadline; kills it and panics when the deadline passes.
pub fn run_bounded(args: &[&str], limit: Duration) -> Run {
    let child = Command::new(blobpin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn blobpin");
    wait_bounded(child, limit, &args.join(" "))
}

/// Waits for a child with piped stdout/stderr, at most `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Run {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`blobpin {what}` did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
        code: status.code(),
    }
}

/// A `blobpin seed` process; stopped with SIGTERM on drop (or by [`Seeder::stop`], which
/// returns the bytes it uploaded).
pub struct Seeder {
    child: Option<Child>,
    lines: Option<std::sync::mpsc::Receiver<String>>,
    pub addr: SocketAddr,
}

impl Seeder {
    /// Starts seeding `data` for the feed entry `feed` on `addr`; returns once it serves.
    pub fn start(feed: &str, data: &Path, addr: SocketAddr, extra: &[&str]) -> Seeder {
        let mut child = Command::new(blobpin())
            .args(["seed", "--feed", feed, "--data"])
            .arg(data)
            .args(["--listen", &addr.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn blobpin seed");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the seeder did not report that it serves");
        assert!(
            first.starts_with("seeding "),
            "unexpected seeder output {first:?}"
        );
        Seeder {
            child: Some(child),
            lines: Some(rx),
            addr,
        }
    }

    /// Stops the seeder; returns the bytes it uploaded.
    pub fn stop(mut self) -> u64 {
        let mut child = self.child.take().unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let line = self
            .lines
            .take()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .expect("the seeder did not report its totals");
        let _ = child.wait();
        let v: serde_json::Value = serde_json::from_str(&line).expect("seeder totals are JSON");
        v["uploaded_bytes"].as_u64().expect("uploaded_bytes")
    }
}

impl Drop for Seeder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A minimal HTTP/1.0 server for a directory (GET only, 404 for anything missing), on an
/// ephemeral loopback port; stops on drop.
pub struct FeedServer {
    pub base: String,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl FeedServer {
    pub fn start(root: &Path) -> FeedServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let root: PathBuf = root.to_path_buf();
        let flag = stop.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                let root = root.clone();
                std::thread::spawn(move || serve(&mut s, &root));
            }
        });
        FeedServer {
            base: format!("http://{addr}"),
            stop,
            addr,
        }
    }
}

fn serve(s: &mut TcpStream, root: &Path) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let file = root.join(path.trim_start_matches('/'));
    let body = if path.contains("..") {
        None
    } else {
        fs::read(&file).ok()
    };
    let _ = match body {
        Some(b) => s
            .write_all(format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes())
            .and_then(|()| s.write_all(&b)),
        None => s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"),
    };
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// The pid of the detached lock holder of `version` in `dest`.
pub fn holder_pid(dest: &Path, version: &str) -> Option<i32> {
    fs::read_to_string(dest.join(".locks").join(format!("{version}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `VmLck` of a process, in bytes.
pub fn vm_locked(pid: i32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Stops every lock holder under `dest` (test clean-up).
pub fn stop_holders(dest: &Path) {
    let Ok(rd) = fs::read_dir(dest.join(".locks")) else {
        return;
    };
    for e in rd.flatten() {
        if let Ok(t) = fs::read_to_string(e.path()) {
            if let Ok(pid) = t.trim().parse::<i32>() {
                let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains(&*dest.to_string_lossy()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
    }
}

/// Removes lock holders when a test ends, pass or fail.
pub struct HolderGuard(pub PathBuf);

impl Drop for HolderGuard {
    fn drop(&mut self) {
        stop_holders(&self.0);
    }
}

/// The `sync --json` report.
pub fn report(r: &Run) -> serde_json::Value {
    assert_eq!(r.code, Some(0), "sync failed: {}", r.err());
    serde_json::from_slice(&r.stdout).unwrap_or_else(|e| panic!("bad report {e}: {}", r.out()))
}

/// A running blobpin whose stderr is read line by line (to wait for a log line) while stdout
/// is collected.
pub struct Streaming {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Streaming {
    pub fn spawn(mut cmd: Command) -> Streaming {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn blobpin");
        let mut out = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming {
            child,
            lines: rx,
            seen: Vec::new(),
            out: Some(out),
        }
    }

    /// Waits (at most `limit`) for a stderr line containing `needle`.
    pub fn wait_line(&mut self, needle: &str, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {limit:?}; stderr so far: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }

    /// Waits for the process to end (at most `limit`).
    pub fn finish(mut self, limit: Duration) -> Run {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "blobpin did not finish within {limit:?}; stderr: {:?}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.out.take().unwrap().join().unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        let mut stderr = self.seen.join("\n").into_bytes();
        if !stderr.is_empty() {
            stderr.push(b'\n');
        }
        Run {
            stdout,
            stderr,
            code: status.code(),
        }
    }
}
