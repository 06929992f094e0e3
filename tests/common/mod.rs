//! The test harness: the binary under test, scratch directories on disk, running commands
//! with captured output, and page-cache helpers that survive cache drops made by others.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Path of the blobpin binary built for these tests.
pub fn blobpin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_blobpin"))
}

/// A fresh, empty scratch directory on disk (under `CARGO_TARGET_TMPDIR`), named after the
/// test; removed when dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Writes `len` bytes of a repeating non-zero pattern to `rel` and syncs it, so that it
    /// can be evicted.
    pub fn file(&self, rel: &str, len: usize) -> PathBuf {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).unwrap();
        }
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        fs::write(&p, data).unwrap();
        fs::File::open(&p).unwrap().sync_all().unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Captured result of one command.
#[derive(Debug)]
pub struct Run {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: Option<i32>,
}

impl Run {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            stdout: o.stdout,
            stderr: o.stderr,
            code: o.status.code(),
        }
    }
}

/// Runs blobpin with `args` in `cwd`, stdin closed.
pub fn run<I, S>(cwd: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(blobpin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run blobpin")
        .into()
}

/// How many times the whole page cache has been dropped since boot (`drop_pagecache` in
/// /proc/vmstat).
pub fn drop_count() -> u64 {
    let s = fs::read_to_string("/proc/vmstat").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("drop_pagecache "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `attempt` until it returns `Some` while no page-cache drop happened during it; a
/// drop by another process invalidates residency observations, so the attempt is retried
/// (up to 5 times).
pub fn without_cache_drop<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    for _ in 0..5 {
        let before = drop_count();
        let got = attempt();
        if drop_count() == before {
            if let Some(v) = got {
                return v;
            }
            panic!("attempt failed without a concurrent page-cache drop");
        }
    }
    panic!("the page cache was dropped during every one of 5 attempts");
}

/// Whether `dir` is on tmpfs or overlayfs (where eviction does not work).
pub fn on_tmpfs(dir: &Path) -> bool {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .expect("stat -f");
    let t = String::from_utf8_lossy(&out.stdout);
    t.contains("tmpfs") || t.contains("overlay")
}
