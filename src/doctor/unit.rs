//! What systemd would give a service: `LimitMEMLOCK=`, `DefaultLimitMEMLOCK=`,
//! `AmbientCapabilities=`, `CapabilityBoundingSet=` and `User=`, read from the unit file and
//! its drop-ins under a root directory (limits.conf is never read for services).
//!
//! Search path (first unit file found wins; drop-ins `NAME.d/*.conf` from every directory,
//! applied in file-name order, a name in an earlier directory masking the same name later):
//! `/etc/systemd/system`, `/run/systemd/system`, `/usr/local/lib/systemd/system`,
//! `/lib/systemd/system`, `/usr/lib/systemd/system`. Templates (`x@i.service`) fall back to
//! `x@.service`. `LimitMEMLOCK=` is bytes with optional K/M/G/T/P/E (base 1024), `infinity`,
//! or `SOFT:HARD`; unset, the manager's `DefaultLimitMEMLOCK=` (system.conf, then
//! system.conf.d/*.conf) applies, and unset there it is 8M (systemd >= 253 and Debian 12's 252).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::limits::UNLIMITED;

const DIRS: &[&str] = &[
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "lib/systemd/system",
    "usr/lib/systemd/system",
];

/// systemd's built-in `DefaultLimitMEMLOCK=`.
pub const SYSTEMD_DEFAULT_MEMLOCK: u64 = 8 << 20;

/// A value and where it was set (`file:line`, or "systemd default").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: String,
}

/// The service as systemd would start it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnitInfo {
    pub name: String,
    /// The unit file (None: not found under the root).
    pub file: Option<PathBuf>,
    pub dropins: Vec<PathBuf>,
    /// Effective (soft, hard) RLIMIT_MEMLOCK in bytes and where it came from.
    pub memlock: Setting<(u64, u64)>,
    /// `LimitMEMLOCK=` is set in the unit (else the default applies).
    pub memlock_from_unit: bool,
    pub ambient_ipc_lock: Option<String>,
    /// `CapabilityBoundingSet=` is set and leaves CAP_IPC_LOCK out (file:line).
    pub bounding_drops_ipc_lock: Option<String>,
    /// `User=` (None: root).
    pub user: Option<String>,
    pub no_new_privileges: bool,
}

/// Parses a systemd resource-limit value: bytes.
pub fn parse_limit(v: &str) -> Option<(u64, u64)> {
    let one = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("infinity") {
            return Some(UNLIMITED);
        }
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n: u64 = s[..digits_end].parse().ok()?;
        let mult: u64 = match s[digits_end..].trim() {
            "" | "B" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            "P" => 1 << 50,
            "E" => 1 << 60,
            _ => return None,
        };
        n.checked_mul(mult)
    };
    match v.split_once(':') {
        Some((a, b)) => Some((one(a)?, one(b)?)),
        None => one(v).map(|x| (x, x)),
    }
}

/// Key/value assignments of one section, with file:line, in order.
fn assignments(text: &str, file: &Path, section: &str, out: &mut Vec<(String, String, String)>) {
    let mut cur = String::new();
    let mut joined: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, l) in text.lines().enumerate() {
        let (n, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(s) = l.strip_suffix('\\') {
            acc.push_str(s);
            acc.push(' ');
            pending = Some((n, acc));
        } else {
            acc.push_str(l);
            joined.push((n, acc));
        }
    }
    for (n, l) in joined {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') {
            cur = l.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if cur != section {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            out.push((
                k.trim().to_string(),
                v.trim().to_string(),
                format!("{}:{n}", file.display()),
            ));
        }
    }
}

fn dropins(root: &Path, dirname: &str) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for d in DIRS {
        if let Ok(rd) = std::fs::read_dir(root.join(d).join(dirname)) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.ends_with(".conf") {
                    by_name.entry(n).or_insert(e.path());
                }
            }
        }
    }
    by_name.into_values().collect()
}

/// The manager's `DefaultLimitMEMLOCK=`.
pub fn default_memlock(root: &Path) -> Setting<(u64, u64)> {
    let mut files = vec![root.join("etc/systemd/system.conf")];
    let mut extra: Vec<PathBuf> = Vec::new();
    for d in [
        "etc/systemd/system.conf.d",
        "run/systemd/system.conf.d",
        "usr/lib/systemd/system.conf.d",
        "lib/systemd/system.conf.d",
    ] {
        if let Ok(rd) = std::fs::read_dir(root.join(d)) {
            extra.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "conf")),
            );
        }
    }
    extra.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
    files.extend(extra);
    let mut best = Setting {
        value: (SYSTEMD_DEFAULT_MEMLOCK, SYSTEMD_DEFAULT_MEMLOCK),
        source: "systemd built-in default (8M)".to_string(),
    };
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let mut a = Vec::new();
        assignments(&text, &f, "Manager", &mut a);
        for (k, v, src) in a {
            if k == "DefaultLimitMEMLOCK" {
                if let Some(val) = parse_limit(&v) {
                    best = Setting {
                        value: val,
                        source: src,
                    };
                }
            }
        }
    }
    best
}

/// Reads unit `name` under `root`.
pub fn read_unit(root: &Path, name: &str) -> UnitInfo {
    let name = if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.service")
    };
    let template = name.split_once('@').and_then(|(pre, rest)| {
        let suffix = rest.rsplit_once('.').map(|(_, s)| s)?;
        (!rest.starts_with('.')).then(|| format!("{pre}@.{suffix}"))
    });
    let find = |n: &str| {
        DIRS.iter()
            .map(|d| root.join(d).join(n))
            .find(|p| p.is_file())
    };
    let file = find(&name).or_else(|| template.as_deref().and_then(find));
    let mut dropin_files = Vec::new();
    if let Some(t) = &template {
        dropin_files.extend(dropins(root, &format!("{t}.d")));
    }
    dropin_files.extend(dropins(root, &format!("{name}.d")));
    let mut a = Vec::new();
    for f in file.iter().chain(dropin_files.iter()) {
        if let Ok(text) = std::fs::read_to_string(f) {
            assignments(&text, f, "Service", &mut a);
        }
    }
    let mut info = UnitInfo {
        name,
        file,
        dropins: dropin_files,
        memlock: default_memlock(root),
        memlock_from_unit: false,
        ambient_ipc_lock: None,
        bounding_drops_ipc_lock: None,
        user: None,
        no_new_privileges: false,
    };
    let mut bounding: Option<(bool, Vec<String>, String)> = None;
    for (k, v, src) in a {
        match k.as_str() {
            "LimitMEMLOCK" => {
                if let Some(val) = parse_limit(&v) {
                    info.memlock = Setting {
                        value: val,
                        source: src,
                    };
                    info.memlock_from_unit = true;
                }
            }
            "AmbientCapabilities" => {
                if v.is_empty() {
                    info.ambient_ipc_lock = None;
                } else if let Some(rest) = v.strip_prefix('~') {
                    if rest.split_whitespace().any(|c| c == "CAP_IPC_LOCK") {
                        info.ambient_ipc_lock = None;
                    }
                } else if v.split_whitespace().any(|c| c == "CAP_IPC_LOCK") {
                    info.ambient_ipc_lock = Some(src);
                }
            }
            "CapabilityBoundingSet" => {
                if v.is_empty() {
                    bounding = Some((false, Vec::new(), src));
                } else {
                    let (inv, list) = match v.strip_prefix('~') {
                        Some(r) => (true, r),
                        None => (false, v.as_str()),
                    };
                    let caps: Vec<String> = list.split_whitespace().map(str::to_string).collect();
                    bounding = Some(match bounding {
                        Some((false, mut prev, _)) if !inv => {
                            prev.extend(caps);
                            (false, prev, src)
                        }
                        _ => (inv, caps, src),
                    });
                }
            }
            "User" => info.user = Some(v).filter(|u| !u.is_empty() && u != "root" && u != "0"),
            "NoNewPrivileges" => {
                info.no_new_privileges = matches!(v.as_str(), "yes" | "true" | "1" | "on")
            }
            _ => {}
        }
    }
    if let Some((inv, caps, src)) = bounding {
        let listed = caps.iter().any(|c| c == "CAP_IPC_LOCK");
        if listed == inv {
            info.bounding_drops_ipc_lock = Some(src);
        }
    }
    info
}

impl UnitInfo {
    /// Whether the service's process would have CAP_IPC_LOCK.
    pub fn has_ipc_lock(&self) -> bool {
        if self.bounding_drops_ipc_lock.is_some() {
            return false;
        }
        self.user.is_none() || self.ambient_ipc_lock.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_values() {
        assert_eq!(parse_limit("infinity"), Some((UNLIMITED, UNLIMITED)));
        assert_eq!(parse_limit("8M"), Some((8 << 20, 8 << 20)));
        assert_eq!(parse_limit("64K:1G"), Some((64 << 10, 1 << 30)));
        assert_eq!(parse_limit("12"), Some((12, 12)));
        assert_eq!(parse_limit("8Q"), None);
    }
}
