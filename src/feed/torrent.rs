//! The .torrent files blobpin writes and accepts: BEP 3 metainfo with `private = 1` (BEP 27),
//! so peer exchange and DHT never leak around the tracker's overlay (librqbit's own
//! `create_torrent` cannot set it). Pure: building from already computed piece hashes, and
//! parsing plus validating untrusted bytes; hashing the files is `publish`'s job.

use anyhow::{bail, ensure, Context, Result};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;

use super::bencode::{self, Value};
use super::check_rel_path;

/// Smallest and largest piece sizes blobpin picks.
pub const MIN_PIECE: u64 = 256 << 10;
pub const MAX_PIECE: u64 = 16 << 20;
/// Piece count `piece_length_for` aims below (a .torrent of ~40 KiB of hashes at most for
/// blobs up to 32 GiB; bigger blobs get 16 MiB pieces and more of them).
pub const TARGET_PIECES: u64 = 2000;

/// The piece length for a blob of `total` bytes: the smallest power of two in
/// [`MIN_PIECE`, `MAX_PIECE`] that keeps the count at or below [`TARGET_PIECES`].
pub fn piece_length_for(total: u64) -> u64 {
    let want = total.div_ceil(TARGET_PIECES).max(1).next_power_of_two();
    want.clamp(MIN_PIECE, MAX_PIECE)
}

/// One file of a torrent: its path relative to the blob's directory (`/`-separated) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentFile {
    pub path: String,
    pub len: u64,
}

/// What a torrent says, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentInfo {
    /// SHA-1 of the bencoded info dictionary, as sent.
    pub info_hash: [u8; 20],
    pub name: String,
    pub piece_length: u64,
    pub pieces: Vec<[u8; 20]>,
    /// A single-file torrent has one entry whose path is `name`.
    pub files: Vec<TorrentFile>,
    pub private: bool,
    /// Whether the torrent is in multi-file form (files live under the blob directory).
    pub multi_file: bool,
}

impl TorrentInfo {
    /// Total size of all files.
    pub fn total_len(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }

    /// Where each file lives when the torrent's data is in `dir` (librqbit's output folder:
    /// the blob's directory, or the directory holding a single-file blob), in torrent order.
    pub fn file_paths(&self, dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        if self.multi_file {
            self.files.iter().map(|f| dir.join(&f.path)).collect()
        } else {
            vec![dir.join(&self.name)]
        }
    }

    /// Lower-case hex of the info-hash.
    pub fn info_hash_hex(&self) -> String {
        hex(&self.info_hash)
    }
}

/// Lower-case hex of some bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Everything needed to write a torrent.
#[derive(Debug, Clone)]
pub struct TorrentSpec {
    pub name: String,
    pub piece_length: u64,
    pub pieces: Vec<[u8; 20]>,
    /// One entry and `multi_file == false`: single-file form, the entry's path must be `name`.
    pub files: Vec<TorrentFile>,
    pub multi_file: bool,
    /// `announce` URL (the first tracker) and any further ones (`announce-list`).
    pub trackers: Vec<String>,
    /// Seconds since the epoch, for `creation date`.
    pub created: u64,
}

/// Bencodes a private torrent; returns the bytes and the info-hash.
pub fn build(spec: &TorrentSpec) -> Result<(Vec<u8>, [u8; 20])> {
    check_rel_path("torrent name", &spec.name)?;
    ensure!(
        !spec.name.contains('/'),
        "torrent name {:?} contains '/'",
        spec.name
    );
    let mut info = BTreeMap::new();
    info.insert(b"name".to_vec(), Value::str(&spec.name));
    info.insert(
        b"piece length".to_vec(),
        Value::Int(i64::try_from(spec.piece_length)?),
    );
    info.insert(
        b"pieces".to_vec(),
        Value::Bytes(spec.pieces.iter().flatten().copied().collect()),
    );
    info.insert(b"private".to_vec(), Value::Int(1));
    if spec.multi_file {
        let files = spec
            .files
            .iter()
            .map(|f| {
                let mut d = BTreeMap::new();
                d.insert(b"length".to_vec(), Value::Int(f.len as i64));
                d.insert(
                    b"path".to_vec(),
                    Value::List(f.path.split('/').map(Value::str).collect()),
                );
                Value::Dict(d)
            })
            .collect();
        info.insert(b"files".to_vec(), Value::List(files));
    } else {
        ensure!(
            spec.files.len() == 1 && spec.files[0].path == spec.name,
            "a single-file torrent has exactly one file named like the torrent"
        );
        info.insert(b"length".to_vec(), Value::Int(spec.files[0].len as i64));
    }
    let info = Value::Dict(info);
    let info_bytes = info.encode();
    let info_hash: [u8; 20] = Sha1::digest(&info_bytes).into();
    let mut top = BTreeMap::new();
    if let Some(first) = spec.trackers.first() {
        top.insert(b"announce".to_vec(), Value::str(first));
        if spec.trackers.len() > 1 {
            top.insert(
                b"announce-list".to_vec(),
                Value::List(
                    spec.trackers
                        .iter()
                        .map(|t| Value::List(vec![Value::str(t)]))
                        .collect(),
                ),
            );
        }
    }
    top.insert(
        b"created by".to_vec(),
        Value::str(concat!("blobpin ", env!("CARGO_PKG_VERSION"))),
    );
    top.insert(b"creation date".to_vec(), Value::Int(spec.created as i64));
    top.insert(b"info".to_vec(), info);
    let bytes = Value::Dict(top).encode();
    // The encoding of `top` embeds `info_bytes` verbatim, so the hash is that of what is sent.
    Ok((bytes, info_hash))
}

/// Parses and validates an untrusted .torrent: bencoding, field types, piece count against the
/// sizes, and every file name (no absolute paths, no `..`, no empty or `.` components).
pub fn parse(bytes: &[u8]) -> Result<TorrentInfo> {
    let doc = bencode::decode(bytes).context("torrent is not valid bencoding")?;
    let top = doc.value.as_dict().context("torrent is not a dictionary")?;
    let span = doc.info_span.context("torrent has no info dictionary")?;
    let info = top
        .get(&b"info"[..])
        .and_then(Value::as_dict)
        .context("torrent field info is not a dictionary")?;
    let info_hash: [u8; 20] = Sha1::digest(&bytes[span]).into();
    let text = |key: &str| -> Result<String> {
        let v = info
            .get(key.as_bytes())
            .with_context(|| format!("torrent field info.{key} is missing"))?;
        let b = v
            .as_bytes()
            .with_context(|| format!("torrent field info.{key} is not a string"))?;
        String::from_utf8(b.to_vec())
            .with_context(|| format!("torrent field info.{key} is not UTF-8"))
    };
    let int = |v: &Value, field: &str| -> Result<u64> {
        let i = v
            .as_int()
            .with_context(|| format!("torrent field {field} is not an integer"))?;
        u64::try_from(i).with_context(|| format!("torrent field {field} is negative"))
    };
    let name = text("name")?;
    check_rel_path("torrent field info.name", &name)?;
    ensure!(
        !name.contains('/'),
        "torrent field info.name {name:?} contains '/'"
    );
    let piece_length = int(
        info.get(&b"piece length"[..])
            .context("torrent field info.piece length is missing")?,
        "info.piece length",
    )?;
    ensure!(
        piece_length > 0 && piece_length <= 1 << 30,
        "torrent field info.piece length {piece_length} is out of range"
    );
    let raw = info
        .get(&b"pieces"[..])
        .and_then(Value::as_bytes)
        .context("torrent field info.pieces is missing or not a string")?;
    ensure!(
        raw.len() % 20 == 0,
        "torrent field info.pieces is not a multiple of 20 bytes"
    );
    let pieces: Vec<[u8; 20]> = raw
        .chunks(20)
        .map(|c| c.try_into().expect("20 bytes"))
        .collect();
    let private = info.get(&b"private"[..]).and_then(Value::as_int) == Some(1);
    let (files, multi_file) = match (info.get(&b"length"[..]), info.get(&b"files"[..])) {
        (Some(len), None) => (
            vec![TorrentFile {
                path: name.clone(),
                len: int(len, "info.length")?,
            }],
            false,
        ),
        (None, Some(list)) => {
            let list = list
                .as_list()
                .context("torrent field info.files is not a list")?;
            ensure!(!list.is_empty(), "torrent field info.files is empty");
            let mut files = Vec::new();
            for (i, f) in list.iter().enumerate() {
                let d = f.as_dict().with_context(|| {
                    format!("torrent field info.files[{i}] is not a dictionary")
                })?;
                let len = int(
                    d.get(&b"length"[..]).with_context(|| {
                        format!("torrent field info.files[{i}].length is missing")
                    })?,
                    &format!("info.files[{i}].length"),
                )?;
                let parts = d
                    .get(&b"path"[..])
                    .and_then(Value::as_list)
                    .with_context(|| format!("torrent field info.files[{i}].path is not a list"))?;
                let mut comps = Vec::new();
                for p in parts {
                    let b = p.as_bytes().with_context(|| {
                        format!("torrent field info.files[{i}].path has a non-string part")
                    })?;
                    let s = std::str::from_utf8(b).with_context(|| {
                        format!("torrent field info.files[{i}].path is not UTF-8")
                    })?;
                    ensure!(
                        !s.contains('/'),
                        "torrent field info.files[{i}].path part {s:?} contains '/'"
                    );
                    comps.push(s.to_string());
                }
                let path = comps.join("/");
                check_rel_path(&format!("torrent field info.files[{i}].path"), &path)?;
                files.push(TorrentFile { path, len });
            }
            (files, true)
        }
        _ => bail!("torrent must have exactly one of info.length and info.files"),
    };
    let mut seen = std::collections::HashSet::new();
    for f in &files {
        ensure!(
            seen.insert(f.path.as_str()),
            "torrent lists file {:?} twice",
            f.path
        );
    }
    let total: u64 = files.iter().map(|f| f.len).sum();
    ensure!(total > 0, "torrent describes an empty blob");
    ensure!(
        pieces.len() as u64 == total.div_ceil(piece_length),
        "torrent field info.pieces has {} hashes, {} bytes in {}-byte pieces need {}",
        pieces.len(),
        total,
        piece_length,
        total.div_ceil(piece_length)
    );
    Ok(TorrentInfo {
        info_hash,
        name,
        piece_length,
        pieces,
        files,
        private,
        multi_file,
    })
}

/// The announce URLs of a torrent: `announce-list` flattened, else `announce` (as BEP 12 and
/// librqbit read them); empty when there are none or the torrent is not valid bencoding.
pub fn announce_urls(bytes: &[u8]) -> Vec<String> {
    let Ok(doc) = bencode::decode(bytes) else {
        return Vec::new();
    };
    let Some(top) = doc.value.as_dict() else {
        return Vec::new();
    };
    let text = |v: &Value| {
        v.as_bytes()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    };
    let mut out: Vec<String> = top
        .get(&b"announce-list"[..])
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_list)
        .flatten()
        .filter_map(text)
        .collect();
    if out.is_empty() {
        out.extend(top.get(&b"announce"[..]).and_then(text));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|u| seen.insert(u.clone()));
    out
}

/// The torrent with its announce URLs replaced by `trackers` (`announce` the first,
/// `announce-list` all of them, one tier each); the info dictionary is copied byte for byte,
/// so the info-hash stays. Other top-level fields (`created by`, ...) are dropped.
pub fn with_trackers(bytes: &[u8], trackers: &[String]) -> Result<Vec<u8>> {
    let doc = bencode::decode(bytes).context("torrent is not valid bencoding")?;
    let span = doc.info_span.context("torrent has no info dictionary")?;
    let mut out = b"d".to_vec();
    if let Some(first) = trackers.first() {
        Value::str("announce").encode_into(&mut out);
        Value::str(first).encode_into(&mut out);
        Value::str("announce-list").encode_into(&mut out);
        Value::List(
            trackers
                .iter()
                .map(|t| Value::List(vec![Value::str(t)]))
                .collect(),
        )
        .encode_into(&mut out);
    }
    Value::str("info").encode_into(&mut out);
    out.extend_from_slice(&bytes[span]);
    out.push(b'e');
    Ok(out)
}

/// The torrent with `key=KEY` (percent-encoded) added to every announce URL, its own and
/// `extra` ones (see [`with_trackers`]); an error when there is none. A tracker with a shared
/// secret accepts an announce if any of its `key=` values is the secret (librqbit sends a
/// random `key=` of its own, then the URL's query).
pub fn with_key(bytes: &[u8], extra: &[String], key: &str) -> Result<Vec<u8>> {
    let mut urls = announce_urls(bytes);
    for t in extra {
        if !urls.contains(t) {
            urls.push(t.clone());
        }
    }
    ensure!(!urls.is_empty(), "the torrent names no tracker");
    let enc: String = key
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let urls: Vec<String> = urls
        .into_iter()
        .map(|u| {
            let sep = if u.contains('?') { '&' } else { '?' };
            format!("{u}{sep}key={enc}")
        })
        .collect();
    with_trackers(bytes, &urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trackers_are_replaced_and_the_info_hash_kept() {
        let (bytes, ih) = build(&spec(
            vec![TorrentFile {
                path: "blob".into(),
                len: 40000,
            }],
            false,
        ))
        .unwrap();
        assert_eq!(announce_urls(&bytes), ["http://t/announce"]);
        let urls = vec![
            "http://t/announce?key=s%20x".to_string(),
            "http://u/announce?key=s%20x".to_string(),
        ];
        let re = with_trackers(&bytes, &urls).unwrap();
        assert_eq!(announce_urls(&re), urls);
        let info = parse(&re).unwrap();
        assert_eq!(info.info_hash, ih);
        assert_eq!(info, parse(&bytes).unwrap());
        let keyed = with_key(&bytes, &["http://u/a?x=1".into()], "s x/").unwrap();
        assert_eq!(
            announce_urls(&keyed),
            [
                "http://t/announce?key=s%20x%2F",
                "http://u/a?x=1&key=s%20x%2F"
            ]
        );
        assert_eq!(parse(&keyed).unwrap().info_hash, ih);
        let none = with_trackers(&bytes, &[]).unwrap();
        assert!(with_key(&none, &[], "k").is_err());
        assert!(announce_urls(&none).is_empty());
        assert_eq!(parse(&none).unwrap().info_hash, ih);
    }

    fn spec(files: Vec<TorrentFile>, multi: bool) -> TorrentSpec {
        let total: u64 = files.iter().map(|f| f.len).sum();
        TorrentSpec {
            name: "blob".into(),
            piece_length: 16384,
            pieces: vec![[7u8; 20]; total.div_ceil(16384) as usize],
            files,
            multi_file: multi,
            trackers: vec!["http://t/announce".into()],
            created: 1,
        }
    }

    #[test]
    fn piece_length_scales_with_size() {
        assert_eq!(piece_length_for(1), MIN_PIECE);
        assert_eq!(piece_length_for(64 << 20), MIN_PIECE);
        assert_eq!(piece_length_for(1 << 30), 1 << 20);
        assert!(piece_length_for(1 << 30).is_power_of_two());
        assert_eq!(piece_length_for(1 << 40), MAX_PIECE);
        for size in [10u64 << 20, 3 << 30, 20 << 30] {
            let n = size.div_ceil(piece_length_for(size));
            assert!(n <= TARGET_PIECES, "{size}: {n} pieces");
        }
    }

    #[test]
    fn round_trips_single_and_multi_file_and_is_private() {
        let single = spec(
            vec![TorrentFile {
                path: "blob".into(),
                len: 40000,
            }],
            false,
        );
        let (bytes, ih) = build(&single).unwrap();
        let t = parse(&bytes).unwrap();
        assert_eq!(t.info_hash, ih);
        assert!(t.private);
        assert!(!t.multi_file);
        assert_eq!(t.files, single.files);
        assert_eq!(t.pieces.len(), 3);

        let multi = spec(
            vec![
                TorrentFile {
                    path: "a/b.bin".into(),
                    len: 20000,
                },
                TorrentFile {
                    path: "c".into(),
                    len: 1,
                },
            ],
            true,
        );
        let (bytes, ih) = build(&multi).unwrap();
        let t = parse(&bytes).unwrap();
        assert_eq!(t.info_hash, ih);
        assert_eq!(t.files, multi.files);
        assert_eq!(t.total_len(), 20001);
    }

    #[test]
    fn rejects_dangerous_file_names_naming_the_field() {
        for bad in ["../etc/passwd", "a/../../b", "/abs"] {
            let mut s = spec(
                vec![TorrentFile {
                    path: "ok".into(),
                    len: 5,
                }],
                true,
            );
            s.pieces = vec![[0; 20]];
            let (bytes, _) = build(&s).unwrap();
            // Rewrite the path list by hand: build() would not produce these.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let parts: Vec<&str> = bad.split('/').collect();
            let list: String = parts.iter().map(|p| format!("{}:{}", p.len(), p)).collect();
            let forged = text.replace("4:pathl2:okee", &format!("4:pathl{list}ee"));
            let err = parse(forged.as_bytes()).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("info.files[0].path"), "{msg}");
        }
    }

    #[test]
    fn rejects_wrong_piece_count_and_garbage() {
        let mut s = spec(
            vec![TorrentFile {
                path: "blob".into(),
                len: 40000,
            }],
            false,
        );
        s.pieces.pop();
        let (bytes, _) = build(&s).unwrap();
        assert!(format!("{:#}", parse(&bytes).unwrap_err()).contains("info.pieces"));
        assert!(parse(b"not bencode").is_err());
        assert!(parse(b"d4:infoi1ee").is_err());
    }
}
