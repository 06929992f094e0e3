//! `blobpin publish`: hash a blob (a file, or a directory of files), write its private
//! .torrent into the feed, then replace `latest.json` atomically. The feed is never left
//! half-written: every file is written to a temporary name, fsynced and renamed into place, and
//! `latest.json` is replaced last, so a reader sees either the old entry or the complete new one.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::torrent::{self, hex, TorrentFile, TorrentSpec};
use super::{check_name, compact_stamp, rfc3339, FeedEntry, FileEntry, TorrentRef, SCHEMA};

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// A regular file or a directory (walked recursively, files in byte order of their paths).
    pub blob: PathBuf,
    /// The feed directory; the entry goes to `feed/NAME/`.
    pub feed: PathBuf,
    /// Feed name; default: the file's name without its extension, or the directory's name.
    pub name: Option<String>,
    /// Version; default: UTC creation stamp and the first 8 hex digits of the info-hash.
    pub version: Option<String>,
    /// Tracker announce URLs written into the torrent (the first is the one private torrents use).
    pub trackers: Vec<String>,
    /// Piece length; default chosen from the size ([`torrent::piece_length_for`]).
    pub piece_length: Option<u64>,
}

/// What `publish` did.
#[derive(Debug, Clone)]
pub struct Published {
    pub entry: FeedEntry,
    /// The entry directory (`feed/NAME`).
    pub dir: PathBuf,
    /// False when the feed's latest entry already was this very content (nothing written).
    pub new_version: bool,
}

/// Publishes a blob; see the module doc.
pub fn publish(req: &PublishRequest) -> Result<Published> {
    let meta =
        fs::metadata(&req.blob).with_context(|| format!("cannot stat {}", req.blob.display()))?;
    let base = req
        .blob
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no UTF-8 file name", req.blob.display()))?
        .to_string();
    let (files, multi) = if meta.is_file() {
        (vec![(req.blob.clone(), base.clone(), meta.len())], false)
    } else if meta.is_dir() {
        let mut out = Vec::new();
        walk(&req.blob, "", &mut out)?;
        out.sort_by(|a, b| a.1.as_bytes().cmp(b.1.as_bytes()));
        ensure!(
            !out.is_empty(),
            "{} holds no files to publish",
            req.blob.display()
        );
        (out, true)
    } else {
        bail!(
            "{} is neither a regular file nor a directory",
            req.blob.display()
        );
    };
    let name = match &req.name {
        Some(n) => n.clone(),
        None if multi => base.clone(),
        None => Path::new(&base)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(&base)
            .to_string(),
    };
    check_name("--name", &name)?;
    let total: u64 = files.iter().map(|f| f.2).sum();
    ensure!(
        total > 0,
        "{} is empty: nothing to publish",
        req.blob.display()
    );
    let piece_length = req
        .piece_length
        .unwrap_or_else(|| torrent::piece_length_for(total));
    ensure!(
        piece_length >= 16384 && piece_length.is_power_of_two(),
        "piece length {piece_length} must be a power of two of at least 16 KiB"
    );

    let (pieces, sums) = hash_files(&files, piece_length)?;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tfiles: Vec<TorrentFile> = files
        .iter()
        .map(|(_, rel, len)| TorrentFile {
            path: rel.clone(),
            len: *len,
        })
        .collect();
    let torrent_name = if multi { name.clone() } else { base.clone() };
    let mut spec = TorrentSpec {
        name: torrent_name,
        piece_length,
        pieces,
        files: tfiles,
        multi_file: multi,
        trackers: req.trackers.clone(),
        created,
    };
    let (_, info_hash) = torrent::build(&spec)?;
    let dir = req.feed.join(&name);
    let latest = dir.join("latest.json");
    if let Ok(old) = fs::read(&latest) {
        if let Ok(old) = FeedEntry::parse(&old) {
            if old.torrent.info_hash == hex(&info_hash)
                && req.version.as_ref().map_or(true, |v| *v == old.version)
            {
                return Ok(Published {
                    entry: old,
                    dir,
                    new_version: false,
                });
            }
        }
    }
    let version = match &req.version {
        Some(v) => v.clone(),
        None => format!("{}-{}", compact_stamp(created), &hex(&info_hash)[..8]),
    };
    check_name("--version", &version)?;
    spec.created = created;
    let (bytes, info_hash) = torrent::build(&spec)?;
    let entry = FeedEntry {
        schema: SCHEMA.to_string(),
        name: name.clone(),
        version: version.clone(),
        created: rfc3339(created),
        created_unix: created,
        torrent: TorrentRef {
            file: format!("{version}.torrent"),
            sha256: hex(&Sha256::digest(&bytes)),
            info_hash: hex(&info_hash),
        },
        piece_length,
        total_size: total,
        files: files
            .iter()
            .zip(&sums)
            .map(|((_, rel, len), sum)| FileEntry {
                path: rel.clone(),
                size: *len,
                sha256: hex(sum),
            })
            .collect(),
    };
    entry
        .validate()
        .context("the entry blobpin built is invalid (a bug)")?;

    fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create feed directory {}", dir.display()))?;
    let tpath = dir.join(&entry.torrent.file);
    ensure!(
        !tpath.exists(),
        "{} already exists: version {version} was published before",
        tpath.display()
    );
    write_atomic(&tpath, &bytes)?;
    // Where the data is, for `blobpin origin` to seed it (FEED/NAME/<version>.source).
    let source = fs::canonicalize(&req.blob)
        .with_context(|| format!("cannot resolve {}", req.blob.display()))?;
    write_atomic(
        &dir.join(format!("{version}.source")),
        source.as_os_str().as_encoded_bytes(),
    )?;
    write_atomic(&latest, &entry.to_json())?;
    Ok(Published {
        entry,
        dir,
        new_version: true,
    })
}

/// Collects the regular files under `dir` as (path, relative path, size); refuses anything
/// else (symlinks, devices), since a blob must be exactly what was hashed.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<(PathBuf, String, u64)>) -> Result<()> {
    let rd =
        fs::read_dir(dir).with_context(|| format!("cannot read directory {}", dir.display()))?;
    for ent in rd {
        let ent = ent.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let path = ent.path();
        let name = ent
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("{}: file name {n:?} is not UTF-8", dir.display()))?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        super::check_rel_path(&format!("file {}", path.display()), &rel)?;
        let ft = ent
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if ft.is_dir() {
            walk(&path, &rel, out)?;
        } else if ft.is_file() {
            let len = ent
                .metadata()
                .with_context(|| format!("cannot stat {}", path.display()))?
                .len();
            out.push((path, rel, len));
        } else {
            bail!(
                "{} is not a regular file or directory (symlinks are not published)",
                path.display()
            );
        }
    }
    Ok(())
}

/// SHA-1 of every piece and SHA-256 of every file.
type PieceAndFileHashes = (Vec<[u8; 20]>, Vec<[u8; 32]>);

/// One pass over the files in order: SHA-1 of every piece (pieces span file boundaries) and
/// SHA-256 of every file.
fn hash_files(files: &[(PathBuf, String, u64)], piece_length: u64) -> Result<PieceAndFileHashes> {
    let mut pieces = Vec::new();
    let mut sums = Vec::new();
    let mut piece = Sha1::new();
    let mut in_piece = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (path, _, len) in files {
        let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut whole = Sha256::new();
        let mut left = *len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = f
                .read(&mut buf[..want])
                .with_context(|| format!("cannot read {}", path.display()))?;
            ensure!(n > 0, "{} shrank while being hashed", path.display());
            let mut chunk = &buf[..n];
            whole.update(chunk);
            while !chunk.is_empty() {
                let take = chunk.len().min((piece_length - in_piece) as usize);
                piece.update(&chunk[..take]);
                in_piece += take as u64;
                chunk = &chunk[take..];
                if in_piece == piece_length {
                    pieces.push(piece.finalize_reset().into());
                    in_piece = 0;
                }
            }
            left -= n as u64;
        }
        sums.push(whole.finalize().into());
    }
    if in_piece > 0 {
        pieces.push(piece.finalize().into());
    }
    Ok((pieces, sums))
}

/// Writes `bytes` to `path` through a temporary file in the same directory: write, fsync,
/// rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("path has no parent directory")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let res = (|| -> Result<()> {
        let mut f =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync directory {}", dir.display()))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Runs `blobpin publish`; returns the exit status.
pub fn run(a: &crate::cli::PublishArgs) -> Result<i32> {
    let piece_length = match &a.piece_size {
        Some(s) => Some(
            crate::residency::range::parse_size(s)
                .map_err(|e| anyhow::anyhow!("invalid --piece-size {s:?}: {e}"))?,
        ),
        None => None,
    };
    let p = publish(&PublishRequest {
        blob: a.path.clone(),
        feed: a.feed.clone(),
        name: a.name.clone(),
        version: a.version_name.clone(),
        trackers: a.tracker.clone(),
        piece_length,
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        out.write_all(&p.entry.to_json())?;
    } else {
        writeln!(
            out,
            "{} {}: {} ({} bytes, {} files, {} KiB pieces) in {}",
            p.entry.name,
            p.entry.version,
            if p.new_version {
                "published"
            } else {
                "already published"
            },
            p.entry.total_size,
            p.entry.files.len(),
            p.entry.piece_length >> 10,
            p.dir.display()
        )?;
    }
    Ok(crate::exit::OK)
}
