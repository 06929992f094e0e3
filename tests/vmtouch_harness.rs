//! The side-by-side harness for vmtouch mode: fixtures, running the real vmtouch 1.3.1 and
//! blobpin (through a link named `vmtouch`, with the same `argv[0]`, cwd and environment),
//! setting the page cache to the same known state before each side, normalising the
//! `Elapsed` figure, and printing a `cat -A` style diff when the two disagree.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Run, Scratch};

/// The real vmtouch (Debian's 1.3.1 package).
pub const REAL: &str = "/usr/bin/vmtouch";

/// Whether the real vmtouch is installed; says so loudly when it is not (the tests that need
/// it then return without checking anything). Under CI (`CI` set), which installs it, a
/// missing vmtouch fails the test instead.
pub fn have_vmtouch(test: &str) -> bool {
    if Path::new(REAL).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {REAL} is not installed, and CI must run the side-by-side tests"
    );
    eprintln!("SKIPPED {test}: {REAL} is not installed (apt-get install -y vmtouch)");
    false
}

/// Which program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Real,
    Ours,
}

/// A scratch directory with `real/vmtouch -> /usr/bin/vmtouch` and
/// `ours/vmtouch -> blobpin`, so both run as `vmtouch`.
pub struct Env {
    pub scratch: Scratch,
    real_bin: PathBuf,
    ours_bin: PathBuf,
}

impl Env {
    pub fn new(name: &str) -> Env {
        let scratch = Scratch::new(name);
        let real_bin = scratch.path("real");
        let ours_bin = scratch.path("ours");
        fs::create_dir_all(&real_bin).unwrap();
        fs::create_dir_all(&ours_bin).unwrap();
        symlink(REAL, real_bin.join("vmtouch")).unwrap();
        symlink(common::blobpin(), ours_bin.join("vmtouch")).unwrap();
        Env {
            scratch,
            real_bin,
            ours_bin,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.scratch.dir
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.scratch.path(rel)
    }

    /// The directory holding the `vmtouch` of `side`.
    pub fn bin(&self, side: Side) -> &Path {
        match side {
            Side::Real => &self.real_bin,
            Side::Ours => &self.ours_bin,
        }
    }

    /// PATH for `side`: its `vmtouch` first.
    pub fn path_var(&self, side: Side) -> OsString {
        let mut p = self.bin(side).as_os_str().to_os_string();
        p.push(":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        p
    }

    /// Runs the real vmtouch quietly with `args` (cache preparation); it must succeed.
    pub fn prep(&self, args: &[&str]) {
        let st = Command::new(REAL)
            .arg("-q")
            .args(args)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .status()
            .expect("run vmtouch to prepare the cache");
        assert!(
            st.success(),
            "cache preparation `vmtouch -q {args:?}` failed"
        );
    }

    /// The command for one side of a case (not yet spawned).
    pub fn command(&self, side: Side, case: &Case) -> Command {
        let mut wrapper: Vec<String> = Vec::new();
        if case.memlock.is_some() || case.nofile.is_some() || case.address_space.is_some() {
            wrapper.push("prlimit".into());
        }
        if let Some(n) = case.memlock {
            wrapper.push(format!("--memlock={n}:{n}"));
        }
        if let Some(n) = case.nofile {
            wrapper.push(format!("--nofile={n}:{n}"));
        }
        if let Some(n) = case.address_space {
            wrapper.push(format!("--as={n}:{n}"));
        }
        if case.nobody {
            wrapper.extend(
                [
                    "setpriv",
                    "--reuid=nobody",
                    "--regid=nogroup",
                    "--clear-groups",
                ]
                .map(String::from),
            );
        }
        let mut cmd = if wrapper.is_empty() {
            let mut c = Command::new(self.bin(side).join("vmtouch"));
            c.arg0(case.argv0.as_deref().unwrap_or("vmtouch"));
            c
        } else {
            // The wrapper finds `vmtouch` on PATH, so argv[0] is `vmtouch` on both sides.
            let mut c = Command::new(&wrapper[0]);
            c.args(&wrapper[1..]).arg("vmtouch");
            c
        };
        cmd.env_clear()
            .env("PATH", self.path_var(side))
            .envs(case.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir())
            .args(&case.args);
        cmd
    }
}

/// One side-by-side case.
#[derive(Debug, Clone, Default)]
pub struct Case {
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    /// Run as nobody:nogroup through setpriv (needs root).
    pub nobody: bool,
    /// RLIMIT_MEMLOCK (soft and hard) set through prlimit.
    pub memlock: Option<u64>,
    /// RLIMIT_NOFILE (soft and hard) set through prlimit.
    pub nofile: Option<u64>,
    /// RLIMIT_AS (soft and hard) set through prlimit.
    pub address_space: Option<u64>,
    /// stdout and stderr into one pipe (checks their interleaving).
    pub merged: bool,
    /// argv[0] when not `vmtouch`.
    pub argv0: Option<String>,
    /// Real-vmtouch invocations (each run with `-q`) that set the page cache before each side.
    pub prep: Vec<Vec<String>>,
    /// Compare stderr only up to the first line starting with two spaces (blobpin may add
    /// indented hints after a failed lock's FATAL line).
    pub stderr_until_hints: bool,
}

/// A case from whitespace-separated arguments (use [`Case::argv`] for arguments with spaces).
pub fn case(args: &str) -> Case {
    Case::argv(&args.split_whitespace().collect::<Vec<_>>())
}

impl Case {
    pub fn argv<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Case {
        Case {
            args: args.iter().map(|a| a.as_ref().to_os_string()).collect(),
            ..Case::default()
        }
    }
    /// Evict `paths` before each side.
    pub fn evicted(mut self, paths: &str) -> Case {
        self.prep.push(prep_args("-e", paths));
        self
    }
    /// Touch `paths` before each side.
    pub fn touched(mut self, paths: &str) -> Case {
        self.prep.push(prep_args("-t", paths));
        self
    }
    /// Any real-vmtouch invocation before each side (after the ones given so far).
    pub fn then_prep(mut self, args: &str) -> Case {
        self.prep
            .push(args.split_whitespace().map(String::from).collect());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Case {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn stdin(mut self, data: &[u8]) -> Case {
        self.stdin = Some(data.to_vec());
        self
    }
    pub fn nobody(mut self) -> Case {
        self.nobody = true;
        self
    }
    pub fn memlock(mut self, bytes: u64) -> Case {
        self.memlock = Some(bytes);
        self
    }
    pub fn nofile(mut self, n: u64) -> Case {
        self.nofile = Some(n);
        self
    }
    pub fn address_space(mut self, n: u64) -> Case {
        self.address_space = Some(n);
        self
    }
    pub fn merged(mut self) -> Case {
        self.merged = true;
        self
    }
    pub fn argv0(mut self, a: &str) -> Case {
        self.argv0 = Some(a.into());
        self
    }
    pub fn stderr_until_hints(mut self) -> Case {
        self.stderr_until_hints = true;
        self
    }
    pub fn name(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| format!("{:?}", a.to_string_lossy()))
            .collect();
        let mut n = format!("vmtouch {}", args.join(" "));
        if self.nobody {
            n.push_str(" [as nobody]");
        }
        if let Some(m) = self.memlock {
            n.push_str(&format!(" [memlock {m}]"));
        }
        if let Some(m) = self.nofile {
            n.push_str(&format!(" [nofile {m}]"));
        }
        if let Some(m) = self.address_space {
            n.push_str(&format!(" [address space {m}]"));
        }
        if self.merged {
            n.push_str(" [2>&1]");
        }
        for (k, v) in &self.env {
            n.push_str(&format!(" [{k}={v}]"));
        }
        n
    }
}

fn prep_args(op: &str, paths: &str) -> Vec<String> {
    let mut v = vec![op.to_string()];
    v.extend(paths.split_whitespace().map(String::from));
    v
}

/// A watchdog limit: no case takes anywhere near this; it only turns a hang into a failure.
const HANG_LIMIT: Duration = Duration::from_secs(120);

/// Spawns `cmd`, feeds `stdin`, collects its output and waits (killing it by pid if it hangs).
pub fn run_command(mut cmd: Command, stdin: Option<&[u8]>, merged: bool) -> Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut merged_reader = None;
    if merged {
        // Close-on-exec: other tests spawn processes concurrently, and a descriptor leaked
        // into them would keep this pipe open (and shift their RLIMIT_NOFILE budget).
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        cmd.stdout(Stdio::from(w.try_clone().expect("dup")));
        cmd.stderr(Stdio::from(w));
        merged_reader = Some(fs::File::from(r));
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn");
    // The Command holds the write end of the merged pipe: drop it so EOF can come.
    drop(cmd);
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let (out_t, err_t) = match merged_reader {
        Some(r) => (reader(Some(Box::new(r))), reader(None)),
        None => (
            reader(
                child
                    .stdout
                    .take()
                    .map(|o| Box::new(o) as Box<dyn Read + Send>),
            ),
            reader(
                child
                    .stderr
                    .take()
                    .map(|e| Box::new(e) as Box<dyn Read + Send>),
            ),
        ),
    };
    let status = wait_or_kill(&mut child);
    Run {
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        code: status,
    }
}

/// Waits for `child`; after [`HANG_LIMIT`] kills it (by its pid) and fails.
pub fn wait_or_kill(child: &mut Child) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st.code().or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                st.signal().map(|s| 128 + s)
            });
        }
        if start.elapsed() > HANG_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} hung", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Replaces the figure of `Elapsed: <n> seconds` and `Elapsed=<n>` with `X`.
pub fn normalise(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let key: Option<&[u8]> = if rest.starts_with(b"Elapsed: ") {
            Some(b"Elapsed: ")
        } else if rest.starts_with(b"Elapsed=") {
            Some(b"Elapsed=")
        } else {
            None
        };
        if let Some(k) = key {
            out.extend_from_slice(k);
            out.push(b'X');
            i += k.len();
            while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'+' | b'-') {
                i += 1;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// stderr up to (not including) the first line that starts with two spaces.
pub fn until_hints(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in b.split_inclusive(|&c| c == b'\n') {
        if line.starts_with(b"  ") {
            break;
        }
        out.extend_from_slice(line);
    }
    out
}

/// `cat -A` of one line (without its newline).
fn cat_a(line: &[u8]) -> String {
    let mut s = String::new();
    for &c in line {
        let (meta, c) = if c >= 0x80 {
            (true, c - 0x80)
        } else {
            (false, c)
        };
        if meta {
            s.push_str("M-");
        }
        match c {
            b'\t' if !meta => s.push_str("^I"),
            0..=31 => {
                s.push('^');
                s.push((c + 64) as char);
            }
            127 => s.push_str("^?"),
            _ => s.push(c as char),
        }
    }
    s
}

/// A readable diff of two outputs, `cat -A` style (`^M` is `\r`, `$` ends a line).
pub fn diff(what: &str, real: &[u8], ours: &[u8]) -> String {
    let lines = |b: &[u8]| -> Vec<String> {
        b.split_inclusive(|&c| c == b'\n')
            .map(|l| match l.strip_suffix(b"\n") {
                Some(l) => format!("{}$", cat_a(l)),
                None => cat_a(l),
            })
            .collect()
    };
    let (r, o) = (lines(real), lines(ours));
    let mut s = format!("  {what} differs (- vmtouch, + blobpin):\n");
    let n = r.len().max(o.len());
    for i in 0..n {
        match (r.get(i), o.get(i)) {
            (Some(a), Some(b)) if a == b => s.push_str(&format!("     {a}\n")),
            (a, b) => {
                if let Some(a) = a {
                    s.push_str(&format!("    -{a}\n"));
                }
                if let Some(b) = b {
                    s.push_str(&format!("    +{b}\n"));
                }
            }
        }
    }
    s
}

/// Both sides of one case, normalised.
pub struct Pair {
    pub real: Run,
    pub ours: Run,
}

/// Runs one case on both sides, each after the same cache preparation, retrying when the
/// page cache was dropped meanwhile.
pub fn run_pair(env: &Env, c: &Case) -> Pair {
    common::without_cache_drop(|| {
        let side = |s: Side| {
            for p in &c.prep {
                let args: Vec<&str> = p.iter().map(String::as_str).collect();
                env.prep(&args);
            }
            let mut r = run_command(env.command(s, c), c.stdin.as_deref(), c.merged);
            r.stdout = normalise(&r.stdout);
            r.stderr = normalise(&r.stderr);
            if c.stderr_until_hints {
                r.stderr = until_hints(&r.stderr);
            }
            r
        };
        let real = side(Side::Real);
        let ours = side(Side::Ours);
        Some(Pair { real, ours })
    })
}

/// The differences between the two sides of a case, if any.
pub fn compare(c: &Case, p: &Pair) -> Option<String> {
    let mut s = String::new();
    if p.real.stdout != p.ours.stdout {
        s.push_str(&diff("stdout", &p.real.stdout, &p.ours.stdout));
    }
    if p.real.stderr != p.ours.stderr {
        s.push_str(&diff("stderr", &p.real.stderr, &p.ours.stderr));
    }
    if p.real.code != p.ours.code {
        s.push_str(&format!(
            "  exit code differs: vmtouch {:?}, blobpin {:?}\n",
            p.real.code, p.ours.code
        ));
    }
    (!s.is_empty()).then(|| format!("{}\n{s}", c.name()))
}

/// Runs every case side by side and fails with all the diffs at once.
pub fn check_all(env: &Env, cases: &[Case]) {
    eprintln!("vmtouch side by side: {} cases", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let mut diff = compare(c, &run_pair(env, c));
        // Residency can move under a case for reasons outside the test (reclaim, other
        // processes): a difference must show again, from a fresh cache preparation, twice.
        for _ in 0..2 {
            let Some(d) = &diff else { break };
            if c.prep.is_empty() {
                break;
            }
            eprintln!("vmtouch side by side: retrying after a difference:\n{d}");
            diff = compare(c, &run_pair(env, c));
        }
        if let Some(d) = diff {
            failures.push(d);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from vmtouch 1.3.1:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Runs only blobpin's side of a case (for documented differences), after its preparation.
pub fn run_ours(env: &Env, c: &Case) -> Run {
    common::without_cache_drop(|| {
        for p in &c.prep {
            let args: Vec<&str> = p.iter().map(String::as_str).collect();
            env.prep(&args);
        }
        let mut r = run_command(env.command(Side::Ours, c), c.stdin.as_deref(), c.merged);
        r.stdout = normalise(&r.stdout);
        r.stderr = normalise(&r.stderr);
        Some(r)
    })
}

/// Asserts blobpin's exact output for a documented difference.
pub fn assert_ours(env: &Env, c: &Case, stdout: &str, stderr: &str, code: i32) {
    let r = run_ours(env, c);
    let mut s = String::new();
    if r.stdout != stdout.as_bytes() {
        s.push_str(&diff("stdout", stdout.as_bytes(), &r.stdout));
    }
    if r.stderr != stderr.as_bytes() {
        s.push_str(&diff("stderr", stderr.as_bytes(), &r.stderr));
    }
    if r.code != Some(code) {
        s.push_str(&format!("  exit code: want {code}, got {:?}\n", r.code));
    }
    assert!(
        s.is_empty(),
        "{} (documented difference; - wanted, + blobpin):\n{s}",
        c.name()
    );
}

/// Kills the processes it holds (by pid, SIGKILL) when dropped: lock holders never outlive a
/// test, even a failing one. Each pid is remembered with its start time, so a pid that was
/// reused by another process after ours ended is left alone.
#[derive(Default)]
pub struct KillOnDrop {
    pids: Vec<(i32, u64)>,
}

impl KillOnDrop {
    pub fn add(&mut self, pid: i32) {
        if let Some(t) = start_time(pid) {
            self.pids.push((pid, t));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &(pid, t) in &self.pids {
            if start_time(pid) == Some(t) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), if it exists.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Waits until `cond` holds (the watchdog limit turns a hang into a failure).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG_LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A field of /proc/PID/status (e.g. `VmLck` in kB, `State`), if the process exists.
pub fn proc_status(pid: i32, field: &str) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// Whether `pid` has locked at least `kb` KiB and is asleep (blocked holding its locks).
pub fn holding_locks(pid: i32, kb: u64) -> bool {
    let locked = proc_status(pid, "VmLck")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let asleep = proc_status(pid, "State").is_some_and(|s| s.starts_with('S'));
    locked >= kb && asleep
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Writes `len` bytes (synced, so it can be evicted) at `rel` under the scratch dir.
pub fn file(env: &Env, rel: &str, len: usize) -> PathBuf {
    env.scratch.file(rel, len)
}

/// The tree of the reference's captures (A.05), plus a socket and odd names:
/// ```text
/// tree/a/f1 (3 pages; also c/f1.hardlink and f1.hl2)   tree/a/b/f2 (1)   tree/a/code.c, code.h
/// tree/c/f3   tree/c/x.bak (2)   tree/.git/obj (2)   tree/sparse (100 MiB hole)   tree/empty
/// tree/link_to_file -> a/f1   tree/link_to_dir -> a   tree/dangling -> nowhere
/// tree/a/b/loop_up -> ../..   tree/fifo   tree/sock   "tree/sp ace"   "tree/new\nline"
/// ```
pub fn build_tree(env: &Env) {
    file(env, "tree/a/f1", 12288);
    fs::create_dir_all(env.path("tree/c")).unwrap();
    fs::hard_link(env.path("tree/a/f1"), env.path("tree/c/f1.hardlink")).unwrap();
    fs::hard_link(env.path("tree/a/f1"), env.path("tree/f1.hl2")).unwrap();
    file(env, "tree/a/b/f2", 4096);
    file(env, "tree/c/f3", 3);
    file(env, "tree/a/code.c", 2);
    file(env, "tree/a/code.h", 2);
    file(env, "tree/c/x.bak", 8000);
    file(env, "tree/.git/obj", 8000);
    file(env, "tree/sp ace", 100);
    file(env, "tree/new\nline", 5000);
    fs::File::create(env.path("tree/sparse"))
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    fs::File::create(env.path("tree/empty")).unwrap();
    symlink("a/f1", env.path("tree/link_to_file")).unwrap();
    symlink("a", env.path("tree/link_to_dir")).unwrap();
    symlink("nowhere", env.path("tree/dangling")).unwrap();
    symlink("../..", env.path("tree/a/b/loop_up")).unwrap();
    nix::unistd::mkfifo(
        &env.path("tree/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let sock = std::os::unix::net::UnixListener::bind(env.path("tree/sock")).unwrap();
    drop(sock);
}

/// Whether `p`'s bytes contain `needle`.
pub fn contains(p: &[u8], needle: &str) -> bool {
    p.windows(needle.len()).any(|w| w == needle.as_bytes())
}
