//! The feed: what a build machine publishes and every service machine polls. Pure: the
//! `latest.json` model, its validation as untrusted input, and the .torrent format
//! ([`torrent`], [`bencode`]); [`publish`] is the one part that touches the disk.
//!
//! A feed is a directory (served over HTTP by `origin`, or read in place) holding one
//! sub-directory per blob name:
//!
//! ```text
//! FEED/NAME/latest.json          the entry below, replaced atomically (temp + rename)
//! FEED/NAME/<version>.torrent    one private torrent per published version
//! FEED/NAME/<version>.source     absolute path of the published file or directory (origin)
//! ```
//!
//! `latest.json` (schema `blobpin.feed/1`):
//!
//! ```json
//! {
//!   "schema": "blobpin.feed/1",
//!   "name": "idx",
//!   "version": "20261125T123000Z-1a2b3c4d",
//!   "created": "2026-11-25T12:30:00Z",
//!   "created_unix": 1795609800,
//!   "torrent": { "file": "20261125T123000Z-1a2b3c4d.torrent",
//!                "sha256": "<64 hex>", "info_hash": "<40 hex>" },
//!   "piece_length": 262144,
//!   "total_size": 16777216,
//!   "files": [ { "path": "idx.bin", "size": 16777216, "sha256": "<64 hex>" } ]
//! }
//! ```
//!
//! `files[].path` is relative to the version's directory (`DIR/versions/<version>/`), `/`
//! separated; absolute paths and `..` are refused. Unknown fields are ignored (forward
//! compatible); a different major schema is refused.

pub mod bencode;
pub mod publish;
pub mod torrent;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// The schema tag every entry carries.
pub const SCHEMA: &str = "blobpin.feed/1";

/// The torrent a feed entry points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorrentRef {
    /// File name of the .torrent next to `latest.json`.
    pub file: String,
    /// SHA-256 of the .torrent's bytes (lower-case hex).
    pub sha256: String,
    /// BitTorrent info-hash (SHA-1 of the info dictionary, lower-case hex).
    pub info_hash: String,
}

/// One file of the blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the version directory, `/`-separated.
    pub path: String,
    pub size: u64,
    /// SHA-256 of the whole file (lower-case hex).
    pub sha256: String,
}

/// `latest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEntry {
    pub schema: String,
    pub name: String,
    pub version: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    pub created_unix: u64,
    pub torrent: TorrentRef,
    pub piece_length: u64,
    pub total_size: u64,
    pub files: Vec<FileEntry>,
}

impl FeedEntry {
    /// Parses and validates `latest.json` bytes received from anywhere.
    pub fn parse(bytes: &[u8]) -> Result<FeedEntry> {
        let entry: FeedEntry =
            serde_json::from_slice(bytes).context("latest.json is not a valid feed entry")?;
        entry.validate()?;
        Ok(entry)
    }

    /// Checks every field that is later used as a path, a hash or a size.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.schema == SCHEMA,
            "feed field schema is {:?}, this blobpin reads {SCHEMA:?}",
            self.schema
        );
        check_name("feed field name", &self.name)?;
        check_name("feed field version", &self.version)?;
        check_name("feed field torrent.file", &self.torrent.file)?;
        ensure!(
            self.torrent.file.ends_with(".torrent"),
            "feed field torrent.file {:?} does not end in .torrent",
            self.torrent.file
        );
        check_hex("feed field torrent.sha256", &self.torrent.sha256, 64)?;
        check_hex("feed field torrent.info_hash", &self.torrent.info_hash, 40)?;
        ensure!(self.piece_length > 0, "feed field piece_length is 0");
        ensure!(!self.files.is_empty(), "feed field files is empty");
        let mut seen = std::collections::HashSet::new();
        let mut sum = 0u64;
        for (i, f) in self.files.iter().enumerate() {
            check_rel_path(&format!("feed field files[{i}].path"), &f.path)?;
            check_hex(&format!("feed field files[{i}].sha256"), &f.sha256, 64)?;
            ensure!(
                seen.insert(f.path.as_str()),
                "feed field files[{i}].path {:?} is listed twice",
                f.path
            );
            sum = sum
                .checked_add(f.size)
                .with_context(|| format!("feed field files[{i}].size overflows the total"))?;
        }
        ensure!(
            sum == self.total_size,
            "feed field total_size is {} but the files add up to {sum}",
            self.total_size
        );
        Ok(())
    }

    /// Checks that a (validated) torrent describes exactly this entry's files and pieces.
    pub fn matches_torrent(&self, t: &torrent::TorrentInfo) -> Result<()> {
        ensure!(
            t.info_hash_hex() == self.torrent.info_hash,
            "torrent info-hash {} differs from feed field torrent.info_hash {}",
            t.info_hash_hex(),
            self.torrent.info_hash
        );
        ensure!(
            t.piece_length == self.piece_length,
            "torrent piece length {} differs from feed field piece_length {}",
            t.piece_length,
            self.piece_length
        );
        ensure!(
            t.files.len() == self.files.len(),
            "torrent has {} files, feed field files lists {}",
            t.files.len(),
            self.files.len()
        );
        for (i, (tf, ff)) in t.files.iter().zip(&self.files).enumerate() {
            ensure!(
                tf.path == ff.path && tf.len == ff.size,
                "torrent file {} ({:?}, {} bytes) differs from feed field files[{i}] ({:?}, {} bytes)",
                i,
                tf.path,
                tf.len,
                ff.path,
                ff.size
            );
        }
        Ok(())
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a feed entry serializes");
        v.push(b'\n');
        v
    }
}

/// A single path component used as a file or directory name: not empty, not `.`/`..`, no `/`,
/// no NUL, no leading `.` (hidden names are blobpin's own: `.staging`, `.locks`), at most 200
/// bytes.
pub fn check_name(field: &str, s: &str) -> Result<()> {
    ensure!(!s.is_empty(), "{field} is empty");
    ensure!(s.len() <= 200, "{field} is longer than 200 bytes");
    ensure!(
        !s.contains('/') && !s.contains('\0'),
        "{field} {s:?} contains '/' or NUL"
    );
    ensure!(!s.starts_with('.'), "{field} {s:?} starts with '.'");
    ensure!(
        s.chars().all(|c| !c.is_control()),
        "{field} {s:?} contains a control character"
    );
    Ok(())
}

/// A relative `/`-separated path that stays inside its directory: not absolute, no `..`, no
/// empty or `.` components, no NUL or control characters.
pub fn check_rel_path(field: &str, s: &str) -> Result<()> {
    ensure!(!s.is_empty(), "{field} is empty");
    if s.starts_with('/') {
        bail!("{field} {s:?} is an absolute path");
    }
    for comp in s.split('/') {
        if comp == ".." {
            bail!("{field} {s:?} contains \"..\"");
        }
        ensure!(
            !comp.is_empty() && comp != ".",
            "{field} {s:?} has an empty or '.' component"
        );
        ensure!(
            !comp.contains('\0') && comp.chars().all(|c| !c.is_control()),
            "{field} {s:?} contains NUL or a control character"
        );
    }
    Ok(())
}

fn check_hex(field: &str, s: &str, len: usize) -> Result<()> {
    ensure!(
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{field} {s:?} is not {len} lower-case hex digits"
    );
    Ok(())
}

/// RFC 3339 UTC text for seconds since the epoch (proleptic Gregorian calendar).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let rem = unix % 86400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A compact, sortable UTC stamp (`20261125T123000Z`) for default version names.
pub fn compact_stamp(unix: u64) -> String {
    rfc3339(unix).replace(['-', ':'], "")
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's civil calendar
/// algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> FeedEntry {
        FeedEntry {
            schema: SCHEMA.into(),
            name: "idx".into(),
            version: "v1".into(),
            created: rfc3339(0),
            created_unix: 0,
            torrent: TorrentRef {
                file: "v1.torrent".into(),
                sha256: "a".repeat(64),
                info_hash: "b".repeat(40),
            },
            piece_length: 262144,
            total_size: 3,
            files: vec![
                FileEntry {
                    path: "x/a".into(),
                    size: 1,
                    sha256: "0".repeat(64),
                },
                FileEntry {
                    path: "b".into(),
                    size: 2,
                    sha256: "1".repeat(64),
                },
            ],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let e = entry();
        assert_eq!(FeedEntry::parse(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_609_845), "2026-11-25T12:30:45Z");
        assert_eq!(compact_stamp(0), "19700101T000000Z");
    }

    fn err_of(f: impl FnOnce(&mut FeedEntry)) -> String {
        let mut e = entry();
        f(&mut e);
        format!("{:#}", FeedEntry::parse(&e.to_json()).unwrap_err())
    }

    #[test]
    fn refuses_bad_fields_naming_them() {
        assert!(err_of(|e| e.files[0].path = "../x".into()).contains("files[0].path"));
        assert!(err_of(|e| e.files[1].path = "/etc/passwd".into()).contains("files[1].path"));
        assert!(err_of(|e| e.files[1].path = "a//b".into()).contains("files[1].path"));
        assert!(err_of(|e| e.version = "../v".into()).contains("field version"));
        assert!(err_of(|e| e.version = ".staging".into()).contains("field version"));
        assert!(err_of(|e| e.name = "a/b".into()).contains("field name"));
        assert!(err_of(|e| e.torrent.file = "../x.torrent".into()).contains("torrent.file"));
        assert!(err_of(|e| e.torrent.sha256 = "zz".into()).contains("torrent.sha256"));
        assert!(err_of(|e| e.total_size = 4).contains("total_size"));
        assert!(err_of(|e| e.schema = "blobpin.feed/2".into()).contains("schema"));
        assert!(err_of(|e| e.files[1].path = "x/a".into()).contains("twice"));
    }

    #[test]
    fn refuses_malformed_and_truncated_json() {
        let full = entry().to_json();
        for cut in [0, 1, full.len() / 2, full.len() - 3] {
            assert!(FeedEntry::parse(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(FeedEntry::parse(b"{\"schema\": 5}").is_err());
    }
}
