//! Is `pam_limits.so` in the session stack of a PAM service? Reads `/etc/pam.d/<service>`
//! (else `/usr/lib/pam.d/<service>`) under a root directory and follows `@include`,
//! `include` and `substack` (depth-limited, loops detected).
//!
//! limits.conf is applied only by pam_limits, only in the `session` phase, and only for the
//! login paths whose stack has it; Debian's `common-session` does not (reference §A.3).

use std::path::{Path, PathBuf};

/// The PAM services of the usual login paths, in the order they are reported.
pub const LOGIN_SERVICES: &[&str] = &[
    "login",
    "sshd",
    "su",
    "su-l",
    "sudo",
    "runuser",
    "runuser-l",
    "cron",
    "systemd-user",
];

/// What was found for one service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stack {
    pub service: String,
    /// The file read for the service (None: no such service here).
    pub file: Option<PathBuf>,
    /// Where `session … pam_limits.so` was found (file:line), if anywhere.
    pub limits_at: Option<String>,
    /// The `conf=` argument of that pam_limits line (limits.d is then not read).
    pub conf_option: Option<String>,
    /// Files that an include named but that do not exist.
    pub missing_includes: Vec<String>,
}

fn service_file(root: &Path, name: &str) -> Option<PathBuf> {
    ["etc/pam.d", "usr/lib/pam.d", "lib/pam.d"]
        .iter()
        .map(|d| root.join(d).join(name))
        .find(|p| p.is_file())
}

/// Reads one service's stack.
pub fn stack(root: &Path, service: &str) -> Stack {
    let mut st = Stack {
        service: service.to_string(),
        file: service_file(root, service),
        limits_at: None,
        conf_option: None,
        missing_includes: Vec::new(),
    };
    if let Some(f) = st.file.clone() {
        let mut seen = Vec::new();
        walk(root, &f, false, 0, &mut seen, &mut st);
    }
    st
}

/// Walks `file`; `session_only`: it was included from a `session include` line, so only its
/// session lines count (`@include` takes every line).
fn walk(
    root: &Path,
    file: &Path,
    session_only: bool,
    depth: usize,
    seen: &mut Vec<PathBuf>,
    st: &mut Stack,
) {
    if depth > 16 || seen.iter().any(|s| s == file) || st.limits_at.is_some() {
        return;
    }
    seen.push(file.to_path_buf());
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    // Join continuation lines; keep the number of the first physical line.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut cont: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (n, mut acc) = cont.take().unwrap_or((i + 1, String::new()));
        if let Some(stripped) = raw.strip_suffix('\\') {
            acc.push_str(stripped);
            acc.push(' ');
            cont = Some((n, acc));
        } else {
            acc.push_str(raw);
            logical.push((n, acc));
        }
    }
    if let Some(c) = cont {
        logical.push(c);
    }
    for (lineno, line) in logical {
        let line = line.split('#').next().unwrap_or("").trim().to_string();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("@include") {
            let name = rest.trim();
            include(root, file, name, session_only, depth, seen, st);
            if st.limits_at.is_some() {
                return;
            }
            continue;
        }
        let tokens = tokenize(&line);
        if tokens.len() < 2 {
            continue;
        }
        let ty = tokens[0].trim_start_matches('-').to_ascii_lowercase();
        if ty != "session" {
            continue;
        }
        let control = tokens[1].as_str();
        if control == "include" || control == "substack" {
            if let Some(name) = tokens.get(2) {
                include(root, file, name, true, depth, seen, st);
                if st.limits_at.is_some() {
                    return;
                }
            }
            continue;
        }
        let Some(module) = tokens.get(2) else {
            continue;
        };
        let base = module.rsplit('/').next().unwrap_or(module);
        if base == "pam_limits.so" {
            st.limits_at = Some(format!("{}:{lineno}", file.display()));
            st.conf_option = tokens[3..]
                .iter()
                .find_map(|a| a.strip_prefix("conf=").map(str::to_string));
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn include(
    root: &Path,
    from: &Path,
    name: &str,
    session_only: bool,
    depth: usize,
    seen: &mut Vec<PathBuf>,
    st: &mut Stack,
) {
    let target = if let Some(abs) = name.strip_prefix('/') {
        Some(root.join(abs)).filter(|p| p.is_file())
    } else {
        let sibling = from.parent().map(|d| d.join(name)).filter(|p| p.is_file());
        sibling.or_else(|| service_file(root, name))
    };
    match target {
        Some(t) => walk(root, &t, session_only, depth + 1, seen, st),
        None => st.missing_includes.push(name.to_string()),
    }
}

/// Splits a PAM line into fields; a `[...]` control (which may contain blanks) is one field.
fn tokenize(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut bracket = false;
    for c in line.chars() {
        match c {
            '[' if cur.is_empty() => {
                bracket = true;
                cur.push(c);
            }
            ']' if bracket => {
                bracket = false;
                cur.push(c);
            }
            c if c.is_whitespace() && !bracket => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `UsePAM` in `etc/ssh/sshd_config` (first value wins; OpenSSH's default is `no`). None when
/// there is no sshd_config.
pub fn sshd_use_pam(root: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(root.join("etc/ssh/sshd_config")).ok()?;
    let mut files = vec![text];
    if let Ok(rd) = std::fs::read_dir(root.join("etc/ssh/sshd_config.d")) {
        let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        // Debian's sshd_config includes sshd_config.d/*.conf at the top.
        let mut pre: Vec<String> = names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        pre.append(&mut files);
        files = pre;
    }
    for t in files {
        for l in t.lines() {
            let l = l.split('#').next().unwrap_or("").trim();
            let mut it = l.split_whitespace();
            if it.next().is_some_and(|k| k.eq_ignore_ascii_case("usepam")) {
                return Some(it.next().is_some_and(|v| v.eq_ignore_ascii_case("yes")));
            }
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_bracket_controls() {
        assert_eq!(
            tokenize("session [success=ok default=ignore] pam_limits.so conf=/x"),
            vec![
                "session",
                "[success=ok default=ignore]",
                "pam_limits.so",
                "conf=/x"
            ]
        );
    }
}
