//! The `limits.conf` / `limits.d` evaluator: what pam_limits would set RLIMIT_MEMLOCK to for
//! one user, with the file and line that decided the soft and the hard value.
//!
//! The rules are pam_limits' (Linux-PAM 1.5.2 source, checked by experiment on Debian 12; see
//! the reference `memlock-and-page-cache.md` §A.3):
//! - a line is `<domain> <type> <item> <value>`; `#` starts a comment anywhere; blank and
//!   `#` lines are skipped; lines with another number of fields are skipped (two fields
//!   `<domain> -` is the "no limits" form); `type` and `item` are case-insensitive;
//! - `type` is `soft`, `hard` or `-` (both);
//! - the memlock value is in KiB (the kernel limit in bytes is 1024 times it); `unlimited`,
//!   `infinity`, `-1` and `-` mean no limit; there are no unit suffixes: `strtoul` stops at
//!   the first non-digit, so `64m` is 64 KiB; a value without leading digits is skipped;
//! - domains: a user name; `@group` (primary or supplementary); `*`; `%`/`%group` are for
//!   `maxlogins` only (ignored here); uid ranges `min:max`, `min:` and `:uid` (exact uid);
//!   gid ranges `@min:max`, `@min:` (primary gid only) and `@:gid` (exact, supplementary too);
//! - specificity first, then order: user and uid ranges beat `@group` and gid ranges, which
//!   beat `*`; among equally specific lines the later one wins;
//! - `/etc/security/limits.conf` is read first, then `/etc/security/limits.d/*.conf` in C
//!   locale (byte) order; other files there are ignored; hidden files too (glob `*.conf`);
//! - `<domain> -` matching the user stops everything: pam_limits applies no limits at all;
//! - Debian/Ubuntu patch: `*` and `@group` lines (gid ranges too) never apply to root;
//! - at `setrlimit` time a soft value above the hard one is lowered to the hard one.

use std::fmt;
use std::path::{Path, PathBuf};

/// `RLIM_INFINITY` as blobpin stores it: limits are `u64` bytes, `u64::MAX` is unlimited.
pub const UNLIMITED: u64 = u64::MAX;

/// Who the limits are evaluated for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Names and gids of every group the user is in (primary included).
    pub groups: Vec<(String, u32)>,
}

/// How specific a matching line is; lower is more specific (pam_limits' `LIMITS_DEF_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rank {
    User,
    Group,
    Default,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    pub file: PathBuf,
    pub line: usize,
    pub rank: Rank,
    /// The value as written in the file (KiB or a keyword).
    pub written: String,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A configured value in bytes with its origin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Configured {
    /// Bytes (`UNLIMITED` for no limit).
    pub bytes: u64,
    pub source: Source,
}

/// Something in the files that does not do what it seems to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// Finding id this note becomes (`limits-…`).
    pub id: &'static str,
    pub file: PathBuf,
    /// 0 when about the whole file.
    pub line: usize,
    pub message: String,
}

/// The outcome for one user.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Evaluation {
    /// Soft memlock limit pam_limits would set (None: left as inherited).
    pub soft: Option<Configured>,
    /// Hard memlock limit pam_limits would set (None: left as inherited).
    pub hard: Option<Configured>,
    /// A `<domain> -` line matched: no limits at all are applied (file:line).
    pub no_limits: Option<Source>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    pub notes: Vec<Note>,
}

impl Evaluation {
    /// The (soft, hard) pair the session would get, starting from `inherited`, after
    /// pam_limits' clamping of soft to hard. `can_raise_hard`: whether the process running
    /// PAM has CAP_SYS_RESOURCE (without it a higher hard limit silently stays as it was).
    pub fn predict(&self, inherited: (u64, u64), can_raise_hard: bool) -> (u64, u64) {
        if self.no_limits.is_some() {
            return inherited;
        }
        let hard = self.hard.as_ref().map_or(inherited.1, |c| c.bytes);
        let soft = self
            .soft
            .as_ref()
            .map_or(inherited.0, |c| c.bytes)
            .min(hard);
        if hard > inherited.1 && !can_raise_hard {
            // setrlimit fails with EPERM; Debian's pam_limits goes on silently and the
            // whole call (soft too) is lost.
            return inherited;
        }
        (soft, hard)
    }
}

/// Which files pam_limits reads under `root` (a sysroot or `/`): `limits.conf`, then
/// `limits.d/*.conf` in byte order. Files in `limits.d` that are skipped are returned too.
pub fn config_files(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let main = root.join("etc/security/limits.conf");
    let mut read = Vec::new();
    if main.is_file() {
        read.push(main);
    }
    let mut ignored = Vec::new();
    let dir = root.join("etc/security/limits.d");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut names: Vec<Vec<u8>> = entries
            .filter_map(|e| e.ok())
            .map(|e| std::os::unix::ffi::OsStrExt::as_bytes(e.file_name().as_os_str()).to_vec())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&n));
            if n.ends_with(b".conf") && !n.starts_with(b".") {
                read.push(p);
            } else {
                ignored.push(p);
            }
        }
    }
    (read, ignored)
}

/// Evaluates the files under `root` for `user`. `debian`: apply the Debian/Ubuntu rule that
/// `*` and `@group` lines do not apply to root.
pub fn evaluate(root: &Path, user: &UserInfo, debian: bool) -> Evaluation {
    let (read, ignored) = config_files(root);
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for p in read {
        match std::fs::read(&p) {
            Ok(b) => files.push((p, String::from_utf8_lossy(&b).into_owned())),
            Err(e) => unreadable.push((p, e)),
        }
    }
    let mut ev = evaluate_texts(&files, user, debian);
    for (p, e) in unreadable {
        ev.notes.push(Note {
            id: "limits-file-unreadable",
            file: p.clone(),
            line: 0,
            message: format!("cannot read {}: {e}", p.display()),
        });
    }
    for p in ignored {
        ev.notes.push(Note {
            id: "limits-file-ignored",
            file: p.clone(),
            line: 0,
            message: format!(
                "{} is ignored by pam_limits: only files named *.conf (not starting with a dot) in limits.d are read",
                p.display()
            ),
        });
    }
    ev
}

/// What a domain field matches.
fn domain_rank(domain: &str, user: &UserInfo, debian: bool) -> Option<Rank> {
    let is_root = user.uid == 0;
    if domain == "*" {
        return (!(debian && is_root)).then_some(Rank::Default);
    }
    if domain.starts_with('%') {
        return None;
    }
    if let Some(g) = domain.strip_prefix('@') {
        if debian && is_root {
            return None;
        }
        if let Some((lo, hi)) = g.split_once(':') {
            let m = match (lo.is_empty(), hi.is_empty()) {
                (true, false) => hi
                    .parse::<u32>()
                    .is_ok_and(|gid| user.groups.iter().any(|(_, g)| *g == gid) || user.gid == gid),
                (false, true) => lo.parse::<u32>().is_ok_and(|lo| user.gid >= lo),
                (false, false) => match (lo.parse::<u32>(), hi.parse::<u32>()) {
                    (Ok(lo), Ok(hi)) => user.gid >= lo && user.gid <= hi,
                    _ => false,
                },
                (true, true) => false,
            };
            return m.then_some(Rank::Group);
        }
        return user
            .groups
            .iter()
            .any(|(n, _)| n == g)
            .then_some(Rank::Group);
    }
    if let Some((lo, hi)) = domain.split_once(':') {
        let m = match (lo.is_empty(), hi.is_empty()) {
            (true, false) => hi.parse::<u32>().is_ok_and(|u| user.uid == u),
            (false, true) => lo.parse::<u32>().is_ok_and(|lo| user.uid >= lo),
            (false, false) => match (lo.parse::<u32>(), hi.parse::<u32>()) {
                (Ok(lo), Ok(hi)) => user.uid >= lo && user.uid <= hi,
                _ => false,
            },
            (true, true) => false,
        };
        return m.then_some(Rank::User);
    }
    (domain == user.name).then_some(Rank::User)
}

/// Parses a memlock value as pam_limits does: bytes, and whether a suffix was dropped.
fn parse_value(v: &str) -> Option<(u64, Option<String>)> {
    let lower = v.to_ascii_lowercase();
    if v == "-1" || v == "-" || lower == "unlimited" || lower == "infinity" {
        return Some((UNLIMITED, None));
    }
    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return None;
    }
    let kib: u64 = digits.parse().unwrap_or(u64::MAX / 1024);
    let rest = &v[digits.len()..];
    let bytes = kib.saturating_mul(1024);
    Some((bytes, (!rest.is_empty()).then(|| rest.to_string())))
}

/// Evaluates already-read files (path, text), in the order pam_limits reads them.
pub fn evaluate_texts(files: &[(PathBuf, String)], user: &UserInfo, debian: bool) -> Evaluation {
    let mut ev = Evaluation {
        files: files.iter().map(|(p, _)| p.clone()).collect(),
        ..Evaluation::default()
    };
    for (path, text) in files {
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let line = raw.split('#').next().unwrap_or("");
            let fields: Vec<&str> = line.split_whitespace().collect();
            let note = |ev: &mut Evaluation, id: &'static str, message: String| {
                ev.notes.push(Note {
                    id,
                    file: path.clone(),
                    line: lineno,
                    message,
                })
            };
            match fields.len() {
                0 => continue,
                2 if fields[1].starts_with('-') => {
                    let d = fields[0];
                    // pam_limits honours the "no limits" form for user names, uid ranges and
                    // groups, not for `*`.
                    if d != "*" {
                        if let Some(rank) = domain_rank(d, user, debian) {
                            ev.no_limits = Some(Source {
                                file: path.clone(),
                                line: lineno,
                                rank,
                                written: "-".into(),
                            });
                            note(
                                &mut ev,
                                "limits-no-limits-entry",
                                format!(
                                    "'{}' matches {}: pam_limits applies NO limits at all and stops reading (all later lines and files are ignored)",
                                    line.trim(),
                                    user.name
                                ),
                            );
                            ev.soft = None;
                            ev.hard = None;
                            return ev;
                        }
                    }
                    continue;
                }
                n if n < 4 => {
                    note(
                        &mut ev,
                        "limits-invalid-line",
                        format!(
                            "'{}': invalid line ({n} fields), skipped by pam_limits",
                            line.trim()
                        ),
                    );
                    continue;
                }
                _ => {}
            }
            let (domain, ty, item, value) = (fields[0], fields[1], fields[2], fields[3]);
            if !item.eq_ignore_ascii_case("memlock") {
                continue;
            }
            let ty = ty.to_ascii_lowercase();
            let (soft, hard) = match ty.as_str() {
                "soft" => (true, false),
                "hard" => (false, true),
                "-" => (true, true),
                _ => {
                    note(
                        &mut ev,
                        "limits-invalid-line",
                        format!(
                            "'{}': unknown type '{ty}' (soft, hard or -), skipped",
                            line.trim()
                        ),
                    );
                    continue;
                }
            };
            if domain.starts_with('%') {
                note(
                    &mut ev,
                    "limits-percent-ignored",
                    format!(
                        "'{}': % domains only apply to maxlogins; this memlock line has no effect",
                        line.trim()
                    ),
                );
                continue;
            }
            let Some((bytes, suffix)) = parse_value(value) else {
                note(
                    &mut ev,
                    "limits-invalid-line",
                    format!(
                        "'{}': value '{value}' is not a number, skipped by pam_limits",
                        line.trim()
                    ),
                );
                continue;
            };
            let rank = domain_rank(domain, user, debian);
            if let Some(sfx) = &suffix {
                note(
                    &mut ev,
                    "limits-unit-suffix",
                    format!(
                        "'{}': pam_limits has no unit suffixes: '{value}' is read as {} KiB ({} bytes), the '{sfx}' is dropped; write KiB, e.g. {} for {value}",
                        line.trim(),
                        bytes / 1024,
                        bytes,
                        suggest_kib(value),
                    ),
                );
            }
            if rank.is_none()
                && debian
                && user.uid == 0
                && (domain == "*" || domain.starts_with('@'))
            {
                note(
                    &mut ev,
                    "limits-root-wildcard",
                    format!(
                        "'{}': on Debian/Ubuntu '*' and '@group' lines do not apply to root; use the literal name 'root'",
                        line.trim()
                    ),
                );
            }
            let Some(rank) = rank else { continue };
            let src = Source {
                file: path.clone(),
                line: lineno,
                rank,
                written: value.to_string(),
            };
            let conf = Configured { bytes, source: src };
            if soft && !ev.soft.as_ref().is_some_and(|c| c.source.rank < rank) {
                ev.soft = Some(conf.clone());
            }
            if hard && !ev.hard.as_ref().is_some_and(|c| c.source.rank < rank) {
                ev.hard = Some(conf);
            }
        }
    }
    if let (Some(s), Some(h)) = (&ev.soft, &ev.hard) {
        if s.bytes > h.bytes {
            ev.notes.push(Note {
                id: "limits-soft-above-hard",
                file: s.source.file.clone(),
                line: s.source.line,
                message: format!(
                    "soft memlock {} is above hard {} ({}); the soft limit is lowered to the hard one",
                    kib_text(s.bytes),
                    kib_text(h.bytes),
                    h.source
                ),
            });
        }
    }
    ev
}

/// `64m` → `65536`: what the user probably meant, in KiB.
fn suggest_kib(v: &str) -> String {
    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().unwrap_or(0);
    let mult = match v[digits.len()..]
        .chars()
        .next()
        .map(|c| c.to_ascii_lowercase())
    {
        Some('k') => 1,
        Some('m') => 1024,
        Some('g') => 1024 * 1024,
        Some('t') => 1024 * 1024 * 1024,
        _ => 1,
    };
    (n.saturating_mul(mult)).to_string()
}

/// `8388608` → `8192 KiB`, `UNLIMITED` → `unlimited`.
pub fn kib_text(bytes: u64) -> String {
    if bytes == UNLIMITED {
        "unlimited".into()
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody() -> UserInfo {
        UserInfo {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: vec![("nogroup".into(), 65534), ("video".into(), 44)],
        }
    }

    fn one(text: &str, user: &UserInfo) -> Evaluation {
        evaluate_texts(&[(PathBuf::from("l.conf"), text.to_string())], user, true)
    }

    #[test]
    fn specificity_then_order() {
        let e = one("nobody - memlock 1024\n* - memlock 4096\n", &nobody());
        assert_eq!(e.soft.unwrap().bytes, 1024 * 1024);
        let e = one("* - memlock 1\n* - memlock 2\n", &nobody());
        assert_eq!(e.hard.unwrap().source.line, 2);
        let e = one(
            "@video soft memlock 7\n@nogroup soft memlock 9 # x\n",
            &nobody(),
        );
        assert_eq!(e.soft.unwrap().bytes, 9 * 1024);
    }

    #[test]
    fn values() {
        assert_eq!(parse_value("unlimited"), Some((UNLIMITED, None)));
        assert_eq!(parse_value("-1"), Some((UNLIMITED, None)));
        assert_eq!(parse_value("64m"), Some((64 * 1024, Some("m".into()))));
        assert_eq!(parse_value("m"), None);
        assert_eq!(suggest_kib("64m"), "65536");
    }

    #[test]
    fn predict_clamps_and_needs_cap_for_hard() {
        let e = one(
            "nobody soft memlock 5000\nnobody hard memlock 2000\n",
            &nobody(),
        );
        assert_eq!(
            e.predict((8 << 20, 8 << 20), true),
            (2000 * 1024, 2000 * 1024)
        );
        let e = one("nobody - memlock unlimited\n", &nobody());
        assert_eq!(e.predict((8 << 20, 8 << 20), false), (8 << 20, 8 << 20));
        assert_eq!(e.predict((8 << 20, 8 << 20), true), (UNLIMITED, UNLIMITED));
    }
}
