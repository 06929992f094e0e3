//! The checks: pure functions of the gathered facts, the limits.conf evaluation, the PAM
//! stacks and the unit, producing findings (id, severity, evidence, fix). No I/O here, so
//! every rule is table-tested with fixtures.
//!
//! Finding ids (stable; `--json` consumers match on them):
//! `memlock-ok`, `memlock-soft-raisable`, `memlock-hard-too-low`, `memlock-zero`,
//! `cap-ipc-lock`, `cap-ipc-lock-userns`, `no-new-privs`, `cap-bounding-set`,
//! `no-cap-sys-resource`, `binary-nosuid`, `max-lock`, `max-lock-unset`, `limits-predicted`,
//! `limits-mismatch`, `limits-file-ignored`, `limits-file-unreadable`, `limits-unit-suffix`,
//! `limits-invalid-line`, `limits-percent-ignored`, `limits-root-wildcard`,
//! `limits-no-limits-entry`, `limits-soft-above-hard`, `pam-limits-missing`,
//! `pam-limits-conf-option`, `sshd-usepam-off`, `unit-not-found`, `unit-limit-too-low`,
//! `unit-ok`, `unit-bounding-set`, `running-in-service`, `container`, `cgroup-limit`,
//! `cgroup-oom-kill-disable`, `cgroup-oom-kills`, `mem-available`, `max-map-count`,
//! `rlimit-as`, `32-bit`, `tmpfs`, `seccomp`, `lsm-confined`, `overcommit-strict`,
//! `kernel-old-default`, `lock-shortfall`.

use std::path::PathBuf;

use super::facts::{Facts, CAP_IPC_LOCK, CAP_SYS_RESOURCE};
use super::limits::{kib_text, Evaluation, UserInfo, UNLIMITED};
use super::pam::Stack;
use super::unit::UnitInfo;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    /// The cause, one sentence.
    pub title: String,
    pub evidence: Vec<String>,
    pub fix: Vec<String>,
    /// How to check that the fix took.
    pub verify: Option<String>,
}

impl Finding {
    fn new(id: &'static str, severity: Severity, title: impl Into<String>) -> Finding {
        Finding {
            id,
            severity,
            title: title.into(),
            evidence: Vec::new(),
            fix: Vec::new(),
            verify: None,
        }
    }
    fn ev(mut self, e: impl Into<String>) -> Finding {
        self.evidence.push(e.into());
        self
    }
    fn fix(mut self, f: impl Into<String>) -> Finding {
        self.fix.push(f.into());
        self
    }
    fn verify(mut self, v: impl Into<String>) -> Finding {
        self.verify = Some(v.into());
        self
    }
}

/// What is to be locked.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Request {
    /// Bytes to lock (page-rounded spans).
    pub bytes: u64,
    /// Of those, bytes not in the page cache now (newly charged to the memory cgroup).
    pub uncached: u64,
    /// Files (one mapping each).
    pub files: u64,
    /// Paths on tmpfs.
    pub tmpfs: Vec<PathBuf>,
    /// `--max-lock`.
    pub max_lock: Option<u64>,
}

/// Where the lock will run, which decides whose limits count and which fix applies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Context {
    /// This very process (or a shell like it): its own rlimits and capabilities.
    Process,
    /// A new login session of `--user` (limits.conf through pam_limits).
    Login,
    /// A systemd service (`--unit`, or detected from /proc/self/cgroup).
    Unit { name: String },
    /// A container (limits from the runtime).
    Container { runtime: String },
}

/// Everything the checks look at.
pub struct Input<'a> {
    pub facts: &'a Facts,
    pub request: &'a Request,
    pub user: &'a UserInfo,
    /// `--user` is the user this process runs as (so the process's limits are the session's).
    pub same_user: bool,
    pub limits: Option<&'a Evaluation>,
    pub pam: &'a [Stack],
    pub sshd_use_pam: Option<bool>,
    pub unit: Option<&'a UnitInfo>,
    /// Headroom kept below a memory cgroup limit, bytes.
    pub cgroup_headroom: u64,
}

/// Bytes with explicit units: `8388608 bytes (8192 KiB, 8.0 MiB)` or `unlimited`.
pub fn units(bytes: u64) -> String {
    if bytes == UNLIMITED {
        return "unlimited".into();
    }
    format!("{bytes} bytes ({}, {})", kib_text(bytes), human(bytes))
}

/// `8.0 MiB`.
pub fn human(bytes: u64) -> String {
    if bytes == UNLIMITED {
        return "unlimited".into();
    }
    humansize::format_size(bytes, humansize::BINARY.decimal_places(1).decimal_zeroes(1))
}

/// What `limits.conf` wants for `n` bytes: KiB rounded up, or `unlimited`.
fn conf_value(n: u64) -> String {
    if n == UNLIMITED {
        "unlimited".into()
    } else {
        n.div_ceil(1024).to_string()
    }
}

impl Input<'_> {
    /// The context the verdict is about.
    pub fn context(&self) -> Context {
        if let Some(u) = self.unit {
            return Context::Unit {
                name: u.name.clone(),
            };
        }
        if !self.same_user {
            return Context::Login;
        }
        if let Some(c) = &self.facts.container {
            return Context::Container { runtime: c.clone() };
        }
        if let Some(s) = &self.facts.service_unit {
            if self.facts.invocation_id || !self.facts.live {
                return Context::Unit { name: s.clone() };
            }
        }
        Context::Process
    }
}

/// Runs every check.
pub fn run(inp: &Input) -> Vec<Finding> {
    let mut out = Vec::new();
    let f = inp.facts;
    let req = inp.request;
    let ctx = inp.context();
    let need = req.bytes.saturating_add(
        if matches!(ctx, Context::Process | Context::Container { .. }) {
            f.vm_lck.unwrap_or(0)
        } else {
            0
        },
    );

    // --- the limit and the capability, for the context ---
    let (limit, limit_src, has_cap): (Option<(u64, u64)>, String, bool) = match (&ctx, inp.unit) {
        (Context::Unit { .. }, Some(u)) => (
            Some(u.memlock.value),
            u.memlock.source.clone(),
            u.has_ipc_lock(),
        ),
        (Context::Login, _) => {
            let inherited = f.memlock_pid1.or(f.memlock).unwrap_or((8 << 20, 8 << 20));
            let p = inp
                .limits
                .map(|e| e.predict(inherited, true))
                .unwrap_or(inherited);
            (
                Some(p),
                "limits.conf as pam_limits applies it".into(),
                inp.user.uid == 0,
            )
        }
        _ => (
            f.memlock,
            "RLIMIT_MEMLOCK of this process".into(),
            f.ipc_lock(),
        ),
    };

    if let Some(m) = req.max_lock {
        if req.bytes > m {
            out.push(
                Finding::new(
                    "max-lock",
                    Severity::Error,
                    format!(
                        "{} to lock is more than --max-lock {}",
                        human(req.bytes),
                        human(m)
                    ),
                )
                .ev(format!(
                    "to lock: {}; --max-lock: {}",
                    units(req.bytes),
                    units(m)
                ))
                .fix("lock fewer files or raise --max-lock"),
            );
        }
    }

    if has_cap {
        let mut fnd = Finding::new(
            "cap-ipc-lock",
            Severity::Info,
            "CAP_IPC_LOCK is effective: RLIMIT_MEMLOCK does not apply to mlock",
        );
        if let Some((s, h)) = limit {
            fnd = fnd.ev(format!(
                "RLIMIT_MEMLOCK soft {} hard {} ({limit_src}) is ignored",
                units(s),
                units(h)
            ));
        }
        out.push(fnd);
        if req.max_lock.is_none() {
            out.push(
                Finding::new(
                    "max-lock-unset",
                    Severity::Info,
                    "with CAP_IPC_LOCK nothing caps how much this process may lock",
                )
                .fix("pass --max-lock SIZE to `blobpin lock` so a mistake cannot pin all of RAM"),
            );
        }
    } else if f.has_cap(CAP_IPC_LOCK)
        && !f.initial_userns
        && matches!(ctx, Context::Process | Context::Container { .. })
    {
        out.push(
            Finding::new(
                "cap-ipc-lock-userns",
                Severity::Warning,
                "CAP_IPC_LOCK is present but only inside a user namespace, where it does not lift RLIMIT_MEMLOCK",
            )
            .ev("CapEff has bit 14 (cap_ipc_lock), /proc/self/uid_map is not `0 0 4294967295`")
            .fix("the limit must be raised outside the namespace (by whoever starts the container/namespace), or run in the initial user namespace"),
        );
    }

    if let (false, Some((soft, hard))) = (has_cap, limit) {
        let evidence = format!(
            "RLIMIT_MEMLOCK soft {}, hard {} ({limit_src}); need {}",
            units(soft),
            units(hard),
            units(need)
        );
        if need <= soft {
            out.push(
                Finding::new(
                    "memlock-ok",
                    Severity::Info,
                    "the memlock limit allows this lock",
                )
                .ev(evidence),
            );
        } else if need <= hard {
            out.push(
                Finding::new(
                    "memlock-soft-raisable",
                    Severity::Info,
                    "the soft memlock limit is too low but the hard limit allows it: blobpin raises the soft limit to the hard limit itself",
                )
                .ev(evidence),
            );
        } else {
            let (id, errno) = if hard == 0 || soft == 0 && hard < need {
                ("memlock-zero", "EPERM (Operation not permitted)")
            } else {
                ("memlock-hard-too-low", "ENOMEM (Cannot allocate memory)")
            };
            let mut fnd = Finding::new(
                id,
                Severity::Error,
                format!(
                    "RLIMIT_MEMLOCK hard limit {} is below the {} to lock and CAP_IPC_LOCK is missing: mlock fails with {errno}",
                    human(hard),
                    human(need)
                ),
            )
            .ev(evidence)
            .ev(if f.has_cap(CAP_IPC_LOCK) && !f.initial_userns && matches!(ctx, Context::Process | Context::Container { .. }) {
                "CAP_IPC_LOCK: present in CapEff but only inside a user namespace, where it does not lift RLIMIT_MEMLOCK"
            } else {
                "CAP_IPC_LOCK: missing (CapEff bit 14)"
            });
            fnd = context_fixes(fnd, &ctx, inp, need);
            out.push(fnd);
            if f.euid == Some(0)
                && !f.has_cap(CAP_SYS_RESOURCE)
                && matches!(ctx, Context::Process | Context::Container { .. })
            {
                out.push(
                    Finding::new(
                        "no-cap-sys-resource",
                        Severity::Warning,
                        "running as root without CAP_SYS_RESOURCE: even root cannot raise the hard limit here",
                    )
                    .ev("CapEff bit 24 (cap_sys_resource) is clear")
                    .fix("rely on CAP_IPC_LOCK, or have the parent (service manager, container runtime) set the limit"),
                );
            }
        }
    }

    if !has_cap && matches!(ctx, Context::Process | Context::Container { .. }) {
        if f.no_new_privs {
            out.push(
                Finding::new(
                    "no-new-privs",
                    Severity::Warning,
                    "NoNewPrivs is set: file capabilities (setcap) are ignored on exec",
                )
                .ev("/proc/self/status NoNewPrivs: 1")
                .fix("grant CAP_IPC_LOCK through the service manager or runtime instead of setcap"),
            );
        }
        if f.exe_nosuid == Some(true) {
            out.push(
                Finding::new("binary-nosuid", Severity::Warning, "the blobpin binary is on a nosuid mount: `setcap cap_ipc_lock=+ep` on it has no effect")
                    .ev(std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default())
                    .fix("install blobpin on a filesystem mounted without nosuid before using setcap"),
            );
        }
        if f.cap_bnd.is_some_and(|b| b & (1 << CAP_IPC_LOCK) == 0) {
            out.push(
                Finding::new("cap-bounding-set", Severity::Warning, "CAP_IPC_LOCK is not in the bounding set: no exec can gain it")
                    .ev(format!("CapBnd {:016x} lacks bit 14", f.cap_bnd.unwrap_or(0)))
                    .fix("start blobpin from a parent whose bounding set keeps CAP_IPC_LOCK (systemd: CapabilityBoundingSet=, docker: --cap-add IPC_LOCK)"),
            );
        }
    }

    // --- limits.conf, PAM ---
    if let Some(ev) = inp.limits {
        for n in &ev.notes {
            let sev = match n.id {
                "limits-no-limits-entry"
                | "limits-unit-suffix"
                | "limits-root-wildcard"
                | "limits-file-ignored" => Severity::Warning,
                _ => Severity::Warning,
            };
            let loc = if n.line > 0 {
                format!("{}:{}", n.file.display(), n.line)
            } else {
                n.file.display().to_string()
            };
            out.push(Finding::new(n.id, sev, n.message.clone()).ev(loc));
        }
        let show = |c: &Option<super::limits::Configured>| match c {
            Some(c) => format!(
                "{} (written '{}' at {})",
                units(c.bytes),
                c.source.written,
                c.source
            ),
            None => "not set (inherited)".to_string(),
        };
        let mut fnd = Finding::new(
            "limits-predicted",
            Severity::Info,
            format!(
                "pam_limits would set memlock for '{}' (uid {})",
                inp.user.name, inp.user.uid
            ),
        )
        .ev(format!("soft: {}", show(&ev.soft)))
        .ev(format!("hard: {}", show(&ev.hard)))
        .ev(format!(
            "files read in order: {}",
            ev.files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if let Some(nl) = &ev.no_limits {
            fnd = fnd.ev(format!("'<domain> -' at {nl}: no limits applied"));
        }
        out.push(fnd);

        if inp.same_user && inp.unit.is_none() {
            if let Some(eff) = f.memlock {
                let inherited = f.memlock_pid1.unwrap_or(eff);
                let predicted = ev.predict(inherited, true);
                if predicted != eff && (ev.soft.is_some() || ev.hard.is_some()) {
                    let mut fnd = Finding::new(
                        "limits-mismatch",
                        Severity::Warning,
                        "this process's memlock limit is not what limits.conf configures",
                    )
                    .ev(format!(
                        "configured: soft {} hard {}",
                        units(predicted.0),
                        units(predicted.1)
                    ))
                    .ev(format!(
                        "effective:  soft {} hard {}",
                        units(eff.0),
                        units(eff.1)
                    ));
                    let why = mismatch_reason(f, &ctx, ev, inherited);
                    for w in why {
                        fnd = fnd.ev(w);
                    }
                    fnd = fnd
                        .fix("limits.conf is applied only when a PAM session opens: start a new login/ssh session (and restart tmux/screen servers)")
                        .verify("ulimit -l; ulimit -Hl   (KiB)  or  grep 'Max locked memory' /proc/self/limits   (bytes)");
                    out.push(fnd);
                }
            }
        }
    }
    let interesting = matches!(ctx, Context::Login | Context::Process);
    if interesting {
        let present: Vec<&Stack> = inp.pam.iter().filter(|s| s.file.is_some()).collect();
        for s in &present {
            if s.limits_at.is_none() {
                out.push(
                    Finding::new(
                        "pam-limits-missing",
                        Severity::Warning,
                        format!("pam_limits.so is not in the session stack of PAM service '{}': limits.conf is not applied on that login path", s.service),
                    )
                    .ev(format!("{} (includes followed){}", s.file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                        if s.missing_includes.is_empty() { String::new() } else { format!("; missing includes: {}", s.missing_includes.join(", ")) }))
                    .fix(format!("add \"session required pam_limits.so\" to /etc/pam.d/{}", s.service)),
                );
            } else if let Some(c) = &s.conf_option {
                out.push(
                    Finding::new(
                        "pam-limits-conf-option",
                        Severity::Warning,
                        format!(
                            "pam_limits in '{}' reads only {c} (conf=): limits.d is not read there",
                            s.service
                        ),
                    )
                    .ev(s.limits_at.clone().unwrap_or_default()),
                );
            }
        }
        if present.iter().any(|s| s.service == "sshd") && inp.sshd_use_pam == Some(false) {
            out.push(
                Finding::new(
                    "sshd-usepam-off",
                    Severity::Warning,
                    "sshd does not use PAM (UsePAM is not yes): ssh logins get no limits.conf",
                )
                .ev("etc/ssh/sshd_config")
                .fix("set `UsePAM yes` in /etc/ssh/sshd_config and restart sshd"),
            );
        }
    }

    // --- systemd ---
    if let Some(u) = inp.unit {
        if u.file.is_none() {
            out.push(
                Finding::new("unit-not-found", Severity::Warning, format!("no unit file for {} under the unit search path", u.name))
                    .ev("looked in /etc/systemd/system, /run/systemd/system, /usr/local/lib/systemd/system, /lib/systemd/system, /usr/lib/systemd/system"),
            );
        }
        if let Some(src) = &u.bounding_drops_ipc_lock {
            out.push(
                Finding::new(
                    "unit-bounding-set",
                    Severity::Error,
                    format!("{} drops CAP_IPC_LOCK from its bounding set", u.name),
                )
                .ev(src.clone())
                .fix("add CAP_IPC_LOCK to CapabilityBoundingSet="),
            );
        }
        let (s, h) = u.memlock.value;
        let ev = format!(
            "LimitMEMLOCK soft {} hard {} ({}{})",
            units(s),
            units(h),
            u.memlock.source,
            if u.memlock_from_unit {
                ""
            } else {
                ", DefaultLimitMEMLOCK"
            }
        );
        if u.has_ipc_lock() || need <= h {
            out.push(
                Finding::new(
                    "unit-ok",
                    Severity::Info,
                    format!("{} can lock {}", u.name, human(need)),
                )
                .ev(ev)
                .ev(match (&u.user, &u.ambient_ipc_lock) {
                    (_, Some(a)) => format!("AmbientCapabilities=CAP_IPC_LOCK ({a})"),
                    (None, None) => "runs as root (no User=): has CAP_IPC_LOCK".into(),
                    (Some(user), None) => format!("User={user}, no CAP_IPC_LOCK"),
                }),
            );
        } else {
            out.push(unit_fix(
                Finding::new(
                    "unit-limit-too-low",
                    Severity::Error,
                    format!("{} may lock at most {} but needs {}: limits.conf does not apply to services", u.name, human(h), human(need)),
                )
                .ev(ev)
                .ev(format!("User={}, AmbientCapabilities without CAP_IPC_LOCK", u.user.clone().unwrap_or_else(|| "root".into()))),
                &u.name,
            ));
        }
    } else if let Context::Unit { name } = &ctx {
        out.push(
            Finding::new(
                "running-in-service",
                Severity::Info,
                format!(
                    "running inside systemd service {name}: limits.conf is never read for services"
                ),
            )
            .ev("/proc/self/cgroup")
            .fix(format!(
                "set limits in the unit (pass --unit {name} to check it)"
            )),
        );
    }
    if let Context::Container { runtime } = &ctx {
        out.push(container_fix(
            Finding::new("container", Severity::Info, format!("running in a container ({runtime}): the host's limits.conf does not apply; limits come from the runtime"))
                .ev(format!("/proc/self/cgroup mentions {runtime}{}", if f.dockerenv { "; /.dockerenv exists (unreliable alone)" } else { "" })),
            runtime,
        ));
    }

    // --- memory ---
    if let Some(cg) = &f.cgroup {
        if let Some(limit) = cg.limit {
            let usage = cg.usage.unwrap_or(0);
            let charge = req.uncached;
            if usage
                .saturating_add(charge)
                .saturating_add(inp.cgroup_headroom)
                > limit
                && charge > 0
            {
                let sev = Severity::Error;
                let id = if cg.oom_kill_disable {
                    "cgroup-oom-kill-disable"
                } else {
                    "cgroup-limit"
                };
                let what = if cg.oom_kill_disable {
                    "the process would hang (oom_kill_disable=1)"
                } else {
                    "the process would be OOM-killed (SIGKILL, no error message)"
                };
                out.push(
                    Finding::new(
                        id,
                        sev,
                        format!(
                            "locking {} not yet cached inside memory cgroup {} limited to {}: {what}",
                            human(charge),
                            cg.path,
                            human(limit)
                        ),
                    )
                    .ev(format!(
                        "cgroup v{} {}: limit {}, usage {}, headroom {}, newly charged by the lock {}",
                        cg.version,
                        cg.dir.display(),
                        units(limit),
                        units(usage),
                        units(inp.cgroup_headroom),
                        units(charge)
                    ))
                    .fix("raise the memory limit: docker run --memory, Kubernetes resources.limits.memory, systemd MemoryMax=; or lock less")
                    .verify(if cg.version == 1 { "cat memory.limit_in_bytes memory.usage_in_bytes; grep oom_kill memory.oom_control" } else { "cat memory.max memory.current; grep oom_kill memory.events" }),
                );
            }
        }
        if cg.oom_kills.unwrap_or(0) > 0 {
            out.push(
                Finding::new("cgroup-oom-kills", Severity::Warning, format!("memory cgroup {} has OOM-killed {} process(es) already", cg.path, cg.oom_kills.unwrap_or(0)))
                    .ev(cg.dir.display().to_string())
                    .fix("a lock that was killed left no error: see dmesg for 'Memory cgroup out of memory'"),
            );
        }
    }
    if let Some(avail) = f.mem_available {
        if req.uncached > avail {
            out.push(
                Finding::new(
                    "mem-available",
                    Severity::Error,
                    format!("refusing to lock {}: only {} available; locking would invoke the OOM killer", human(req.uncached), human(avail)),
                )
                .ev(format!("MemAvailable {}; not yet cached to read in {}", units(avail), units(req.uncached)))
                .fix("lock less, or free memory first"),
            );
        }
    }
    if let (Some(max), Some(maps)) = (f.max_map_count, f.map_count) {
        if maps + req.files + 64 > max {
            out.push(
                Finding::new("max-map-count", Severity::Error, format!("{} files need a mapping each but vm.max_map_count is {max}", req.files))
                    .ev(format!("mappings now {maps}, files {}, vm.max_map_count {max}", req.files))
                    .fix(format!("sudo sysctl -w vm.max_map_count={} and persist it in /etc/sysctl.d/99-blobpin.conf", (maps + req.files + 65536).max(262144)))
                    .verify("sysctl vm.max_map_count"),
            );
        }
    }
    if let Some((soft, _)) = f.address_space {
        if soft != UNLIMITED && matches!(ctx, Context::Process | Context::Container { .. }) {
            let sev = if req.bytes >= soft {
                Severity::Error
            } else {
                Severity::Warning
            };
            out.push(
                Finding::new(
                    "rlimit-as",
                    sev,
                    format!("RLIMIT_AS is {}: mapping large files can fail", human(soft)),
                )
                .ev(format!(
                    "RLIMIT_AS soft {}; to map {}",
                    units(soft),
                    units(req.bytes)
                ))
                .fix("ulimit -v unlimited / systemd LimitAS=infinity"),
            );
        }
    }
    if f.pointer_width == 32 && req.bytes > (2 << 30) {
        out.push(
            Finding::new(
                "32-bit",
                Severity::Error,
                "a 32-bit process cannot map this much",
            )
            .fix("use a 64-bit build"),
        );
    }
    for p in &req.tmpfs {
        out.push(
            Finding::new("tmpfs", Severity::Info, format!("{} is on tmpfs: already RAM-resident; locking only prevents swap-out and still counts against the limit", p.display()))
                .ev("statfs f_type TMPFS_MAGIC"),
        );
    }
    if f.seccomp == Some(2) {
        out.push(
            Finding::new("seccomp", Severity::Info, "a seccomp filter is active: if mlock fails with EPERM although the limit allows it, the filter denies mlock")
                .ev("/proc/self/status Seccomp: 2")
                .fix("allow mlock, mlock2 and mlockall in the seccomp profile"),
        );
    }
    if let Some(l) = &f.lsm_label {
        out.push(
            Finding::new(
                "lsm-confined",
                Severity::Info,
                format!("confined by an LSM profile ({l}): it may deny CAP_IPC_LOCK"),
            )
            .ev("/proc/self/attr/current")
            .fix("AppArmor: allow `capability ipc_lock,`; SELinux: allow ipc_lock"),
        );
    }
    if f.overcommit_memory == Some(2) {
        out.push(
            Finding::new("overcommit-strict", Severity::Info, "vm.overcommit_memory=2: read-only file mappings are not commit-charged, so locking is not affected; other allocations may fail")
                .ev("/proc/sys/vm/overcommit_memory = 2"),
        );
    }
    if let Some(k) = &f.kernel {
        let mut it = k
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|x| x.parse::<u32>().ok());
        if let (Some(maj), Some(min)) = (it.next(), it.next()) {
            if (maj, min) < (5, 16) {
                out.push(
                    Finding::new("kernel-old-default", Severity::Info, format!("kernel {k}: the default RLIMIT_MEMLOCK is 64 KiB before Linux 5.16 (8 MiB since)"))
                        .ev("/proc/sys/kernel/osrelease"),
                );
            }
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

fn mismatch_reason(
    f: &Facts,
    ctx: &Context,
    ev: &Evaluation,
    inherited: (u64, u64),
) -> Vec<String> {
    let mut why = Vec::new();
    match ctx {
        Context::Unit { name } => why.push(format!(
            "runs in systemd service {name}: services never read limits.conf"
        )),
        Context::Container { runtime } => why.push(format!(
            "runs in a container ({runtime}): limits come from the runtime"
        )),
        _ => {}
    }
    if let Some(m) = f.ancestors.iter().find(|a| {
        matches!(
            a.as_str(),
            "tmux" | "tmux: server" | "screen" | "SCREEN" | "nohup" | "dtach" | "abduco"
        )
    }) {
        why.push(format!(
            "runs under a long-lived {m} server: it keeps the limits of the session that started it; restart it from a new login"
        ));
    }
    if f.loginuid.is_none() {
        why.push(
            "no login session (loginuid unset): pam_limits never ran for this process tree".into(),
        );
    } else {
        why.push("the session may have started before the change (limits apply at login), or a long-lived parent (tmux/screen server, nohup) passed older limits".into());
    }
    let wants_higher_hard = ev.hard.as_ref().is_some_and(|h| h.bytes > inherited.1);
    if wants_higher_hard {
        why.push(format!(
            "the configured hard limit is above what the login process had ({}): pam_limits needs CAP_SYS_RESOURCE to raise it, and on Debian fails silently without it (syslog: \"Could not set limit for 'memlock': Operation not permitted\")",
            units(inherited.1)
        ));
    }
    why
}

fn unit_fix(f: Finding, name: &str) -> Finding {
    f.fix(format!("sudo systemctl edit {name}   and add:"))
        .fix("  [Service]")
        .fix("  LimitMEMLOCK=infinity")
        .fix("  # or instead: AmbientCapabilities=CAP_IPC_LOCK")
        .fix(format!(
            "then: sudo systemctl daemon-reload && sudo systemctl restart {name}"
        ))
        .verify(format!(
            "systemctl show -p LimitMEMLOCK {name}   (expect LimitMEMLOCK=infinity; bytes)"
        ))
}

fn container_fix(f: Finding, runtime: &str) -> Finding {
    let f = f
        .fix("docker/podman: docker run --ulimit memlock=-1:-1 ...   (bytes, soft:hard, -1 = unlimited)  or  --cap-add IPC_LOCK")
        .fix("compose: ulimits: {memlock: {soft: -1, hard: -1}}  or  cap_add: [IPC_LOCK]");
    let f = if runtime == "kubepods"
        || runtime == "kubernetes"
        || runtime == "containerd"
        || runtime == "crio"
    {
        f.fix("Kubernetes has no ulimit field: securityContext.capabilities.add: [\"IPC_LOCK\"], or LimitMEMLOCK=infinity in the containerd/cri-o unit")
    } else {
        f.fix("daemon default: /etc/docker/daemon.json \"default-ulimits\": {\"memlock\": {\"Name\":\"memlock\",\"Soft\":-1,\"Hard\":-1}}")
    };
    f.verify("grep 'Max locked memory' /proc/self/limits   (bytes)")
}

fn context_fixes(f: Finding, ctx: &Context, inp: &Input, need: u64) -> Finding {
    let setcap = "or grant the capability: sudo setcap cap_ipc_lock=+ep \"$(readlink -f \"$(command -v blobpin)\")\"   (check: getcap; not on nosuid mounts; not with NoNewPrivs)";
    match ctx {
        Context::Unit { name } => unit_fix(f, name),
        Context::Container { runtime } => container_fix(f, runtime),
        Context::Login | Context::Process => {
            let user = &inp.user.name;
            f.fix(format!(
                "create /etc/security/limits.d/90-blobpin.conf with (values in KiB; {} needs {}):",
                human(need),
                conf_value(need)
            ))
            .fix(format!("  {user} soft memlock unlimited"))
            .fix(format!("  {user} hard memlock unlimited"))
            .fix("then log out and back in (limits.conf applies when a PAM session opens)")
            .fix(setcap)
            .fix("a running process (needs CAP_SYS_RESOURCE): sudo prlimit --pid PID --memlock=unlimited:unlimited")
            .verify("ulimit -l   (expect: unlimited; KiB)  or  grep 'Max locked memory' /proc/self/limits   (bytes)")
        }
    }
}

/// Whether the findings say it will work: no error (and, `strict`, no warning).
pub fn passes(findings: &[Finding], strict: bool) -> bool {
    findings
        .iter()
        .all(|f| f.severity < Severity::Error && (!strict || f.severity < Severity::Warning))
}
