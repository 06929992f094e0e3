//! `blobpin doctor`, the lock preflight and the short diagnosis printed under a failed lock:
//! "will locking this much work for this user in this context, and if not, why, and what
//! exactly to change" (reference `memlock-and-page-cache.md`, Topic A).
//!
//! [`facts`] gathers (from the system or a `--sysroot`), [`limits`] evaluates limits.conf as
//! pam_limits would, [`pam`] reads the PAM stacks, [`unit`] reads systemd units, and
//! [`checks`] turns all of that into findings without any I/O.

pub mod checks;
pub mod facts;
pub mod limits;
pub mod pam;
pub mod unit;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use checks::{human, units, Input};
pub use checks::{Finding, Request, Severity};
use facts::Facts;

use crate::residency::{Crawler, FileReport, Op, Options, Sink, Warning};

/// Bytes kept free below a memory cgroup limit for the process's own memory.
pub const CGROUP_HEADROOM: u64 = 16 << 20;

/// What `blobpin doctor` was asked.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    pub size: Option<u64>,
    pub paths: Vec<PathBuf>,
    pub residency: Option<Options>,
    pub user: Option<String>,
    pub unit: Option<String>,
    pub sysroot: Option<PathBuf>,
    pub json: bool,
    pub strict: bool,
    pub max_lock: Option<u64>,
}

struct Collect {
    reports: Vec<FileReport>,
    warnings: Vec<String>,
}

impl Sink for Collect {
    fn warning(&mut self, w: Warning) {
        self.warnings.push(w.to_string());
    }
    fn file(&mut self, r: &FileReport) {
        self.reports.push(r.clone());
    }
}

/// Measures what locking `paths` with `opts` would pin: bytes (page-rounded), bytes not yet
/// cached, files, paths on tmpfs. Crawl warnings are returned as text.
pub fn measure(opts: &Options, paths: &[PathBuf]) -> (Request, Vec<FileReport>, Vec<String>) {
    let mut o = opts.clone();
    o.op = Op::Stat;
    o.page_maps = false;
    o.honest = false;
    let page = crate::sys::page_size();
    let mut crawler = Crawler::new(o);
    let mut sink = Collect {
        reports: Vec::new(),
        warnings: Vec::new(),
    };
    for p in paths {
        let _ = crawler.crawl(p, &mut sink);
    }
    let mut req = Request::default();
    for r in &sink.reports {
        let bytes = r.pages * page;
        req.bytes += bytes;
        req.uncached += r.pages.saturating_sub(r.resident_before.unwrap_or(0)) * page;
        req.files += 1;
    }
    for p in paths {
        if nix::sys::statfs::statfs(p.as_path())
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        {
            req.tmpfs.push(p.clone());
        }
    }
    (req, sink.reports, sink.warnings)
}

/// The whole diagnosis, for text or JSON.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// `ok`, `risk` (warnings only) or `fail`.
    pub verdict: &'static str,
    pub exit: i32,
    pub request: Request,
    pub user: limits::UserInfo,
    pub context: checks::Context,
    pub limits: Option<limits::Evaluation>,
    pub pam: Vec<pam::Stack>,
    pub unit: Option<unit::UnitInfo>,
    pub facts: Facts,
    pub findings: Vec<Finding>,
}

/// JSON schema name of `blobpin doctor --json`.
pub const SCHEMA: &str = "blobpin.doctor/1";

/// Builds the report.
pub fn diagnose(o: &DoctorOptions) -> Result<Report> {
    let (root, live) = match &o.sysroot {
        Some(r) => {
            if !r.is_dir() {
                bail!("--sysroot {}: not a directory", r.display());
            }
            (r.clone(), false)
        }
        None => (PathBuf::from("/"), true),
    };
    let facts = Facts::gather(&root, live);
    let user = match &o.user {
        Some(name) => facts::lookup_user(&root, name).with_context(|| {
            format!(
                "--user {name}: no such user in {}",
                root.join("etc/passwd").display()
            )
        })?,
        None => facts::user_by_uid(&root, facts.euid.unwrap_or(0)),
    };
    let same_user = facts.euid == Some(user.uid);
    let mut request = match (&o.size, o.paths.is_empty()) {
        (Some(n), _) => Request {
            bytes: *n,
            uncached: *n,
            files: 1,
            ..Request::default()
        },
        (None, false) => {
            let opts = o.residency.clone().unwrap_or_default();
            let (req, _, warnings) = measure(&opts, &o.paths);
            for w in warnings {
                eprintln!("blobpin: warning: {w}");
            }
            req
        }
        (None, true) => Request::default(),
    };
    request.max_lock = o.max_lock;
    let evaluation = limits::evaluate(&root, &user, facts.debian);
    let stacks: Vec<pam::Stack> = pam::LOGIN_SERVICES
        .iter()
        .map(|s| pam::stack(&root, s))
        .collect();
    let sshd = pam::sshd_use_pam(&root);
    let unit = o.unit.as_deref().map(|u| unit::read_unit(&root, u));
    let input = Input {
        facts: &facts,
        request: &request,
        user: &user,
        same_user,
        limits: Some(&evaluation),
        pam: &stacks,
        sshd_use_pam: sshd,
        unit: unit.as_ref(),
        cgroup_headroom: CGROUP_HEADROOM,
    };
    let findings = checks::run(&input);
    let context = input.context();
    let ok = checks::passes(&findings, false);
    let strict_ok = checks::passes(&findings, o.strict);
    let verdict = if !ok {
        "fail"
    } else if !checks::passes(&findings, true) {
        "risk"
    } else {
        "ok"
    };
    Ok(Report {
        schema: SCHEMA,
        verdict,
        exit: if strict_ok { 0 } else { 1 },
        request,
        user,
        context,
        limits: Some(evaluation),
        pam: stacks,
        unit,
        facts,
        findings,
    })
}

/// Runs `blobpin doctor`; returns the exit status.
pub fn command(o: &DoctorOptions) -> Result<i32> {
    let report = diagnose(o)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if o.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    out.flush()?;
    Ok(report.exit)
}

fn context_text(c: &checks::Context) -> String {
    match c {
        checks::Context::Process => "this process (its own limits and capabilities)".into(),
        checks::Context::Login => "a new login session (limits.conf via pam_limits)".into(),
        checks::Context::Unit { name } => format!("systemd service {name}"),
        checks::Context::Container { runtime } => format!("container ({runtime})"),
    }
}

/// The text report.
pub fn write_text(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    writeln!(
        out,
        "blobpin doctor: lock {} in {} file(s) as {} (uid {})",
        units(r.request.bytes),
        r.request.files,
        r.user.name,
        r.user.uid
    )?;
    writeln!(out, "context: {}", context_text(&r.context))?;
    let n = |s| r.findings.iter().filter(|f| f.severity == s).count();
    let verdict = match r.verdict {
        "ok" => "will work".to_string(),
        "risk" => format!("should work, with {} warning(s)", n(Severity::Warning)),
        _ => format!("will NOT work ({} error(s))", n(Severity::Error)),
    };
    writeln!(out, "verdict: {verdict}")?;
    for f in &r.findings {
        writeln!(out)?;
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        writeln!(out, "[{sev}] {}: {}", f.id, f.title)?;
        for e in &f.evidence {
            writeln!(out, "    evidence: {e}")?;
        }
        for (i, x) in f.fix.iter().enumerate() {
            writeln!(out, "    {}{x}", if i == 0 { "fix: " } else { "     " })?;
        }
        if let Some(v) = &f.verify {
            writeln!(out, "    check: {v}")?;
        }
    }
    Ok(())
}

/// Short form of the error findings: `cause:`/`evidence:`/`fix:`/`check:` lines (no indent),
/// then a `note:` line per warning.
pub fn short_form(findings: &[Finding]) -> Vec<String> {
    let mut lines = Vec::new();
    for f in findings.iter().filter(|f| f.severity == Severity::Error) {
        lines.push(format!("cause: {} [{}]", f.title, f.id));
        for e in &f.evidence {
            lines.push(format!("  evidence: {e}"));
        }
        for (i, x) in f.fix.iter().enumerate() {
            lines.push(format!("  {}{x}", if i == 0 { "fix: " } else { "     " }));
        }
        if let Some(v) = &f.verify {
            lines.push(format!("  check: {v}"));
        }
    }
    if !lines.is_empty() {
        for f in findings.iter().filter(|f| f.severity == Severity::Warning) {
            lines.push(format!("note: {} [{}]", f.title, f.id));
        }
    }
    lines
}

fn live_input_findings(req: &Request) -> (Facts, Vec<Finding>) {
    let root = Path::new("/");
    let facts = Facts::gather(root, true);
    let user = facts::user_by_uid(root, facts.euid.unwrap_or(0));
    let input = Input {
        facts: &facts,
        request: req,
        user: &user,
        same_user: true,
        limits: None,
        pam: &[],
        sshd_use_pam: None,
        unit: None,
        cgroup_headroom: CGROUP_HEADROOM,
    };
    let f = checks::run(&input);
    (facts, f)
}

/// The outcome of the lock preflight.
#[derive(Debug)]
pub struct Preflight {
    /// Lines to print as notes (e.g. the soft limit was raised).
    pub notes: Vec<String>,
    /// When the lock must not be attempted: the headline and the short diagnosis lines.
    pub refused: Option<(String, Vec<String>)>,
    pub findings: Vec<Finding>,
}

/// Checks a lock of `req` in this process before anything is locked: memlock limit (raising
/// the soft limit to the hard one when that is enough), CAP_IPC_LOCK, `--max-lock`,
/// vm.max_map_count, the memory cgroup and MemAvailable. For `blobpin lock` and `sync`.
pub fn preflight(req: &Request) -> Preflight {
    let (facts, findings) = live_input_findings(req);
    let mut notes = Vec::new();
    let errors: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if let Some(first) = errors.first() {
        return Preflight {
            notes,
            refused: Some((
                format!(
                    "refusing to lock {} in {} file(s): {}",
                    human(req.bytes),
                    req.files,
                    first.title
                ),
                short_form(&findings),
            )),
            findings,
        };
    }
    if findings.iter().any(|f| f.id == "memlock-soft-raisable") {
        if let Some((soft, hard)) = facts.memlock {
            match raise_soft_memlock(hard) {
                Ok(()) => notes.push(format!(
                    "raised soft memlock limit from {} to hard limit {}",
                    units(soft),
                    units(hard)
                )),
                Err(e) => notes.push(format!(
                    "could not raise the soft memlock limit to the hard limit: {e}"
                )),
            }
        }
    }
    Preflight {
        notes,
        refused: None,
        findings,
    }
}

fn raise_soft_memlock(hard: u64) -> io::Result<()> {
    use nix::sys::resource::{setrlimit, Resource};
    let h = if hard == limits::UNLIMITED {
        nix::sys::resource::RLIM_INFINITY
    } else {
        hard
    };
    setrlimit(Resource::RLIMIT_MEMLOCK, h, h).map_err(io::Error::from)
}

/// What an errno from mlock/mlockall means (reference §A.1).
pub fn errno_meaning(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOMEM) => "ENOMEM: over RLIMIT_MEMLOCK without CAP_IPC_LOCK, or part of the range is not mapped (file truncated), or vm.max_map_count reached",
        Some(libc::EPERM) => "EPERM: no CAP_IPC_LOCK and the memlock soft limit is 0, or a seccomp/LSM policy denied it",
        Some(libc::EAGAIN) => "EAGAIN: some of the range could not be locked (transient memory shortage); retry",
        Some(libc::EINVAL) => "EINVAL: bad flags or address range",
        _ => "unexpected error from mlock",
    }
}

/// The short diagnosis printed under a failed lock: what the errno means, then the cause,
/// evidence, fix and check of every problem found for locking `bytes` more. Lines carry no
/// indentation; the caller indents them.
pub fn lock_failure_hints(err: &io::Error, bytes: u64, mlockall: bool) -> Vec<String> {
    let req = Request {
        bytes,
        uncached: 0,
        files: 1,
        ..Request::default()
    };
    let (facts, findings) = live_input_findings(&req);
    let mut lines = vec![format!("why: {}", errno_meaning(err))];
    let short = short_form(&findings);
    if short.is_empty() {
        if let Some((s, h)) = facts.memlock {
            lines.push(format!(
                "evidence: RLIMIT_MEMLOCK soft {}, hard {}; CAP_IPC_LOCK {}; VmLck {}",
                units(s),
                units(h),
                if facts.ipc_lock() {
                    "present"
                } else {
                    "missing"
                },
                units(facts.vm_lck.unwrap_or(0))
            ));
        }
        lines.push("the limits allow it: check that the file was not truncated, `sysctl vm.max_map_count`, and seccomp/LSM policies".into());
    } else {
        lines.extend(short);
    }
    if mlockall {
        lines.push("note: mlockall(MCL_CURRENT) counts every mapping (libraries, thread stacks) against the limit; per-file locking (-l) needs less".into());
    }
    lines.push("full diagnosis: blobpin doctor --size BYTES".into());
    lines
}
