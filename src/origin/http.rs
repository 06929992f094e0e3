//! The origin's HTTP side: a small HTTP/1.1 server (one request per connection, `GET` and
//! `HEAD` only) serving
//!
//! - `GET /feed/NAME/latest.json` and `GET /feed/NAME/<version>.torrent`: files of the feed
//!   directory, as published;
//! - `GET /feed/NAME/files/PATH`: file PATH of NAME's latest version (the blob's own files,
//!   read from where it was published), with `Range: bytes=A-B` support: the source that
//!   `blobpin sync --prime-from http://ORIGIN/feed/NAME/files` reads one piece from;
//! - `GET /feed/topology`: the `--topology` file as given (`404` without one), from which a
//!   sync places its peers in tiers for its figures;
//! - `GET /metrics` (Prometheus text: the origin's figures and the tracker's) and
//!   `GET /healthz`.
//!
//! Names and paths are validated as the feed validates them (no `..`, no absolute paths), so
//! nothing outside the feed and the published data is reachable. Anything else is `404`.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Shared;
use crate::feed::{check_name, check_rel_path, FeedEntry};

/// Largest request head accepted.
const MAX_HEAD: usize = 8192;

/// Accepts connections until the runtime stops.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(120), handle(stream, &shared)).await;
        });
    }
}

/// A response before its body is written.
struct Reply {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: Body,
    headers: Vec<(String, String)>,
}

enum Body {
    Bytes(Vec<u8>),
    /// A range of a file: path, offset, length.
    File(PathBuf, u64, u64),
}

impl Reply {
    fn text(status: u16, reason: &'static str, body: &str) -> Reply {
        Reply {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: Body::Bytes(body.as_bytes().to_vec()),
            headers: Vec::new(),
        }
    }

    fn not_found() -> Reply {
        Reply::text(404, "Not Found", "not found\n")
    }
}

async fn handle(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            let r = Reply::text(
                431,
                "Request Header Fields Too Large",
                "request too large\n",
            );
            return write(&mut stream, r, false).await;
        }
    }
    shared.http_requests.fetch_add(1, Ordering::Relaxed);
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut parts = request.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let range = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());
    let reply = match method {
        "GET" | "HEAD" => route(target, range.as_deref(), shared),
        _ => Reply::text(405, "Method Not Allowed", "only GET and HEAD\n"),
    };
    write(&mut stream, reply, method == "HEAD").await
}

fn route(target: &str, range: Option<&str>, shared: &Shared) -> Reply {
    let path = target.split('?').next().unwrap_or("");
    if path == "/metrics" {
        let mut r = Reply::text(200, "OK", &shared.metrics_text());
        r.content_type = "text/plain; version=0.0.4";
        return r;
    }
    if path == "/healthz" {
        return Reply::text(200, "OK", "ok\n");
    }
    if path == "/feed/topology" {
        return match &shared.topology_text {
            Some(t) => {
                let mut r = Reply::text(200, "OK", t);
                r.content_type = "application/toml";
                r.headers.push(("Cache-Control".into(), "no-cache".into()));
                r
            }
            None => Reply::not_found(),
        };
    }
    let Some(rest) = path.strip_prefix("/feed/") else {
        return Reply::not_found();
    };
    let Some((name, file)) = rest.split_once('/') else {
        return Reply::not_found();
    };
    if check_name("name", name).is_err() {
        return Reply::not_found();
    }
    let dir = shared.feed.join(name);
    if let Some(rel) = file.strip_prefix("files/") {
        return blob_file(&dir, rel, range, shared);
    }
    if check_name("file", file).is_err() || !(file == "latest.json" || file.ends_with(".torrent")) {
        return Reply::not_found();
    }
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => Reply {
            status: 200,
            reason: "OK",
            content_type: if file.ends_with(".json") {
                "application/json"
            } else {
                "application/x-bittorrent"
            },
            body: Body::Bytes(bytes),
            headers: vec![("Cache-Control".into(), "no-cache".into())],
        },
        Err(_) => Reply::not_found(),
    }
}

/// A file of the latest version's published data, whole or one byte range.
fn blob_file(dir: &std::path::Path, rel: &str, range: Option<&str>, shared: &Shared) -> Reply {
    if check_rel_path("path", rel).is_err() {
        return Reply::not_found();
    }
    let Ok(raw) = std::fs::read(dir.join("latest.json")) else {
        return Reply::not_found();
    };
    let Ok(entry) = FeedEntry::parse(&raw) else {
        return Reply::not_found();
    };
    // The seeder knows where the data is; look the version up there.
    let data = {
        let versions = shared.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions
            .values()
            .find(|v| v.seeding && v.info_hash == entry.torrent.info_hash)
            .and_then(|v| {
                let i = entry.files.iter().position(|f| f.path == rel)?;
                v.paths.get(i).cloned()
            })
    };
    let Some(data) = data else {
        return Reply::not_found();
    };
    let Ok(len) = std::fs::metadata(&data).map(|m| m.len()) else {
        return Reply::not_found();
    };
    let Some(range) = range else {
        return Reply {
            status: 200,
            reason: "OK",
            content_type: "application/octet-stream",
            body: Body::File(data, 0, len),
            headers: vec![("Accept-Ranges".into(), "bytes".into())],
        };
    };
    match parse_range(range, len) {
        Some((a, b)) => {
            shared.primer_bytes.fetch_add(b - a + 1, Ordering::Relaxed);
            Reply {
                status: 206,
                reason: "Partial Content",
                content_type: "application/octet-stream",
                body: Body::File(data, a, b - a + 1),
                headers: vec![("Content-Range".into(), format!("bytes {a}-{b}/{len}"))],
            }
        }
        None => {
            let mut r = Reply::text(416, "Range Not Satisfiable", "bad range\n");
            r.headers
                .push(("Content-Range".into(), format!("bytes */{len}")));
            r
        }
    }
}

/// One `bytes=A-B`, `bytes=A-` or `bytes=-N` range of a `len`-byte file, as inclusive bounds.
pub fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 {
                return None;
            }
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len - 1)),
    };
    (a <= b && a < len).then_some((a, b))
}

async fn write(stream: &mut TcpStream, r: Reply, head_only: bool) -> std::io::Result<()> {
    let len = match &r.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(_, _, n) => *n,
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {len}\r\nConnection: close\r\n",
        r.status, r.reason, r.content_type
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if head_only {
        return stream.shutdown().await;
    }
    match r.body {
        Body::Bytes(b) => stream.write_all(&b).await?,
        Body::File(path, off, n) => {
            let mut f = tokio::fs::File::open(&path).await?;
            f.seek(SeekFrom::Start(off)).await?;
            let mut left = n;
            let mut buf = vec![0u8; 1 << 20];
            while left > 0 {
                let want = buf.len().min(left as usize);
                let got = f.read(&mut buf[..want]).await?;
                if got == 0 {
                    break;
                }
                stream.write_all(&buf[..got]).await?;
                left -= got as u64;
            }
            // What was read for a primer is not worth keeping in the page cache.
            let std = f.into_std().await;
            let _ = crate::sys::writeback::drop_range(std::os::fd::AsFd::as_fd(&std), off, n);
        }
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=9-0", 100), None);
        assert_eq!(parse_range("bytes=0-1,4-5", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
