//! Facts about the machine and this process that decide whether a lock can work, gathered
//! from `/proc`, `/sys` and `/etc` under a root directory: `/` for the running system, or a
//! `--sysroot` (an image, or a test fixture). With a sysroot every fact comes from it; a fact
//! it does not give is unknown (`None`), never taken from the running system.

use std::path::{Path, PathBuf};

use super::limits::{UserInfo, UNLIMITED};

/// `CAP_IPC_LOCK` (capability bit 14): mlock ignores RLIMIT_MEMLOCK.
pub const CAP_IPC_LOCK: u32 = 14;
/// `CAP_SYS_RESOURCE` (bit 24): may raise a hard rlimit.
pub const CAP_SYS_RESOURCE: u32 = 24;

/// The memory cgroup this process is charged to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemCgroup {
    /// 1 or 2.
    pub version: u8,
    /// Path inside the hierarchy (from /proc/self/cgroup).
    pub path: String,
    /// The directory read.
    pub dir: PathBuf,
    /// Effective limit in bytes (the smallest up the tree); None: no limit.
    pub limit: Option<u64>,
    /// Bytes charged now.
    pub usage: Option<u64>,
    /// OOM kills so far in this cgroup.
    pub oom_kills: Option<u64>,
    /// v1 `oom_kill_disable`: the process hangs instead of being killed.
    pub oom_kill_disable: bool,
}

/// Everything the checks look at.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Facts {
    /// The root the facts were read under (`/` for the live system).
    pub root: PathBuf,
    pub live: bool,
    /// RLIMIT_MEMLOCK (soft, hard) in bytes; `UNLIMITED` = infinity.
    pub memlock: Option<(u64, u64)>,
    /// PID 1's RLIMIT_MEMLOCK: what new login sessions start from.
    pub memlock_pid1: Option<(u64, u64)>,
    /// RLIMIT_AS (soft, hard).
    pub address_space: Option<(u64, u64)>,
    pub cap_eff: Option<u64>,
    pub cap_bnd: Option<u64>,
    pub no_new_privs: bool,
    /// 0 none, 1 strict, 2 filter.
    pub seccomp: Option<u32>,
    /// `/proc/self/attr/current` when it is not "unconfined".
    pub lsm_label: Option<String>,
    /// Whether this is the initial user namespace (uid_map `0 0 4294967295`).
    pub initial_userns: bool,
    /// Bytes locked by this process now (VmLck).
    pub vm_lck: Option<u64>,
    /// Mappings this process has now.
    pub map_count: Option<u64>,
    pub max_map_count: Option<u64>,
    pub mem_total: Option<u64>,
    pub mem_available: Option<u64>,
    pub mlocked: Option<u64>,
    pub overcommit_memory: Option<u32>,
    pub kernel: Option<String>,
    pub cgroup: Option<MemCgroup>,
    /// What says this runs in a container (docker, containerd, kubepods, libpod, lxc, podman).
    pub container: Option<String>,
    /// `/.dockerenv` exists (unreliable on its own).
    pub dockerenv: bool,
    pub kubernetes: bool,
    /// The systemd service this process runs in, from /proc/self/cgroup.
    pub service_unit: Option<String>,
    /// `$INVOCATION_ID` is set (started by systemd).
    pub invocation_id: bool,
    /// Audit login uid; None when unset (not from a login session).
    pub loginuid: Option<u32>,
    /// Effective uid of this process.
    pub euid: Option<u32>,
    /// Debian or Ubuntu (`/etc/debian_version`): `*`/`@group` lines skip root.
    pub debian: bool,
    pub pointer_width: u32,
    /// The running blobpin binary is on a `nosuid` mount (file capabilities are ignored
    /// there); live only.
    pub exe_nosuid: Option<bool>,
    /// Names (`comm`) of this process's ancestors, nearest first; live only.
    pub ancestors: Vec<String>,
}

impl Facts {
    /// Whether CAP_IPC_LOCK is effective and counts (initial user namespace).
    pub fn ipc_lock(&self) -> bool {
        self.has_cap(CAP_IPC_LOCK) && self.initial_userns
    }

    /// Whether bit `cap` is in CapEff.
    pub fn has_cap(&self, cap: u32) -> bool {
        self.cap_eff.is_some_and(|c| c & (1 << cap) != 0)
    }
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// Parses the "Max locked memory" style line of /proc/PID/limits.
pub fn parse_limits(text: &str, name: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let rest = line[name.len()..].split_whitespace().collect::<Vec<_>>();
    let v = |s: &str| -> Option<u64> {
        if s == "unlimited" {
            Some(UNLIMITED)
        } else {
            s.parse().ok()
        }
    };
    Some((v(rest.first()?)?, v(rest.get(1)?)?))
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    status_field(text, key)?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

/// Bytes a process has locked (`VmLck` of /proc/PID/status; `None`: this process).
pub fn vm_locked(pid: Option<i32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    kb_field(&std::fs::read_to_string(path).ok()?, "VmLck")
}

impl Facts {
    /// Reads the facts under `root`; `live` also reads the environment and uses this
    /// process's own rlimits.
    pub fn gather(root: &Path, live: bool) -> Facts {
        let mut f = Facts {
            root: root.to_path_buf(),
            live,
            pointer_width: usize::BITS,
            ..Facts::default()
        };
        if let Some(l) = read(root, "proc/self/limits") {
            f.memlock = parse_limits(&l, "Max locked memory");
            f.address_space = parse_limits(&l, "Max address space");
        }
        if let Some(l) = read(root, "proc/1/limits") {
            f.memlock_pid1 = parse_limits(&l, "Max locked memory");
        }
        if let Some(s) = read(root, "proc/self/status") {
            let hex = |k| status_field(&s, k).and_then(|v| u64::from_str_radix(v, 16).ok());
            f.cap_eff = hex("CapEff");
            f.cap_bnd = hex("CapBnd");
            f.no_new_privs = status_field(&s, "NoNewPrivs") == Some("1");
            f.seccomp = status_field(&s, "Seccomp").and_then(|v| v.parse().ok());
            f.vm_lck = kb_field(&s, "VmLck");
            f.euid = status_field(&s, "Uid")
                .and_then(|v| v.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok());
        }
        f.initial_userns = match read(root, "proc/self/uid_map") {
            Some(m) => {
                let v: Vec<&str> = m.split_whitespace().collect();
                v == ["0", "0", "4294967295"]
            }
            None => true,
        };
        f.lsm_label = read(root, "proc/self/attr/current")
            .map(|s| {
                s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                    .to_string()
            })
            .filter(|s| !s.is_empty() && s != "unconfined" && !s.starts_with("unconfined"));
        f.map_count = read(root, "proc/self/maps").map(|m| m.lines().count() as u64);
        f.max_map_count =
            read(root, "proc/sys/vm/max_map_count").and_then(|v| v.trim().parse().ok());
        f.overcommit_memory =
            read(root, "proc/sys/vm/overcommit_memory").and_then(|v| v.trim().parse().ok());
        f.kernel = read(root, "proc/sys/kernel/osrelease").map(|s| s.trim().to_string());
        if let Some(m) = read(root, "proc/meminfo") {
            f.mem_total = kb_field(&m, "MemTotal");
            f.mem_available = kb_field(&m, "MemAvailable");
            f.mlocked = kb_field(&m, "Mlocked");
        }
        f.loginuid = read(root, "proc/self/loginuid")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|&u| u != u32::MAX);
        let cg = read(root, "proc/self/cgroup").unwrap_or_default();
        f.cgroup = mem_cgroup(root, &cg);
        for l in cg.lines() {
            let path = l.splitn(3, ':').nth(2).unwrap_or("");
            for word in ["docker", "containerd", "kubepods", "libpod", "lxc", "crio"] {
                if path.contains(word) && f.container.is_none() {
                    f.container = Some(word.to_string());
                }
            }
            let ctl = l.split(':').nth(1).unwrap_or("");
            if ctl == "name=systemd" || ctl.is_empty() {
                if let Some(last) = path.rsplit('/').find(|c| c.ends_with(".service")) {
                    f.service_unit = Some(last.to_string());
                }
            }
        }
        if f.container.is_none() && root.join("run/.containerenv").exists() {
            f.container = Some("podman".into());
        }
        f.dockerenv = root.join(".dockerenv").exists();
        f.debian = root.join("etc/debian_version").exists();
        if live {
            f.ancestors = ancestors();
            f.exe_nosuid = std::env::current_exe().ok().and_then(|exe| {
                nix::sys::statvfs::statvfs(&exe)
                    .ok()
                    .map(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID))
            });
            f.invocation_id = std::env::var_os("INVOCATION_ID").is_some();
            f.kubernetes = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
            if f.kubernetes && f.container.is_none() {
                f.container = Some("kubernetes".into());
            }
        }
        f
    }
}

/// `comm` of each ancestor process, nearest first (from /proc/PID/stat).
fn ancestors() -> Vec<String> {
    let mut out = Vec::new();
    let mut pid = std::process::id();
    for _ in 0..64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            break;
        };
        // pid (comm) state ppid ...: comm may contain spaces and parentheses.
        let Some(close) = stat.rfind(')') else { break };
        let ppid: u32 = match stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
        {
            Some(p) => p,
            None => break,
        };
        if ppid == 0 {
            break;
        }
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{ppid}/comm")) else {
            break;
        };
        out.push(comm.trim().to_string());
        pid = ppid;
    }
    out
}

fn parse_cg_num(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return None;
    }
    let v: u64 = s.parse().ok()?;
    // v1 reports "no limit" as PAGE_COUNTER_MAX pages (about 2^63).
    (v < (1u64 << 62)).then_some(v)
}

/// Finds this process's memory cgroup (v1 `memory` controller, else v2) and its limit.
fn mem_cgroup(root: &Path, proc_cgroup: &str) -> Option<MemCgroup> {
    for l in proc_cgroup.lines() {
        let mut it = l.splitn(3, ':');
        let (_, ctl, path) = (it.next()?, it.next()?, it.next()?);
        if ctl.split(',').any(|c| c == "memory") {
            let base = root.join("sys/fs/cgroup/memory");
            let mut dir = base.join(path.trim_start_matches('/'));
            if !dir.join("memory.limit_in_bytes").exists() {
                dir = base.clone();
            }
            if !dir.join("memory.limit_in_bytes").exists() {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            let hier = stat
                .lines()
                .find_map(|l| l.strip_prefix("hierarchical_memory_limit "))
                .and_then(parse_cg_num);
            let own = std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
                .ok()
                .and_then(|s| parse_cg_num(&s));
            let limit = match (own, hier) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let oom = std::fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
            let field = |k: &str| {
                oom.lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            return Some(MemCgroup {
                version: 1,
                path: path.to_string(),
                limit,
                usage: std::fs::read_to_string(dir.join("memory.usage_in_bytes"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok()),
                oom_kills: field("oom_kill "),
                oom_kill_disable: field("oom_kill_disable ") == Some(1),
                dir,
            });
        }
    }
    for l in proc_cgroup.lines() {
        if let Some(path) = l.strip_prefix("0::") {
            for base in ["sys/fs/cgroup", "sys/fs/cgroup/unified"] {
                let top = root.join(base);
                let dir = top.join(path.trim_start_matches('/'));
                if !dir.join("memory.current").exists() && !dir.join("memory.max").exists() {
                    continue;
                }
                let mut limit: Option<u64> = None;
                let mut d = dir.clone();
                loop {
                    if let Some(v) = std::fs::read_to_string(d.join("memory.max"))
                        .ok()
                        .and_then(|s| parse_cg_num(&s))
                    {
                        limit = Some(limit.map_or(v, |l| l.min(v)));
                    }
                    if d == top || !d.pop() || !d.starts_with(&top) {
                        break;
                    }
                }
                let events = std::fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
                return Some(MemCgroup {
                    version: 2,
                    path: path.to_string(),
                    limit,
                    usage: std::fs::read_to_string(dir.join("memory.current"))
                        .ok()
                        .and_then(|s| s.trim().parse().ok()),
                    oom_kills: events
                        .lines()
                        .find_map(|l| l.strip_prefix("oom_kill "))
                        .and_then(|v| v.trim().parse().ok()),
                    oom_kill_disable: false,
                    dir,
                });
            }
        }
    }
    None
}

/// Looks a user up in `etc/passwd` and `etc/group` under `root` (by name, or by uid when
/// `name` is a number).
pub fn lookup_user(root: &Path, name: &str) -> Option<UserInfo> {
    let passwd = read(root, "etc/passwd")?;
    let (uname, uid, gid) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let numeric = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
        if f[0] != name && !(numeric && f[2] == name) {
            return None;
        }
        Some((f[0].to_string(), f[2].parse().ok()?, f[3].parse().ok()?))
    })?;
    Some(UserInfo {
        groups: groups_of(root, &uname, gid),
        name: uname,
        uid,
        gid,
    })
}

/// The user of uid `uid` (or a bare `uid` name when not in passwd).
pub fn user_by_uid(root: &Path, uid: u32) -> UserInfo {
    lookup_user(root, &uid.to_string()).unwrap_or(UserInfo {
        name: uid.to_string(),
        uid,
        gid: uid,
        groups: Vec::new(),
    })
}

fn groups_of(root: &Path, user: &str, gid: u32) -> Vec<(String, u32)> {
    let text = read(root, "etc/group").unwrap_or_default();
    let mut out = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        let Ok(g) = f[2].parse::<u32>() else { continue };
        if g == gid || f[3].split(',').any(|m| m == user) {
            out.push((f[0].to_string(), g));
        }
    }
    out
}
