//! Moving blob bytes: the tokio runtime (owned here, so the rest of blobpin stays synchronous),
//! the librqbit session adapter ([`session`]), cache-safe storage ([`storage`]) and a small
//! HTTP GET for feeds ([`get`]).

pub mod seed;
pub mod session;
pub mod storage;
pub mod waker;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A tokio runtime for one command: two worker threads (the machine budget; librqbit does its
/// disk I/O in `block_in_place`, which moves other tasks off the worker) and timers.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("blobpin-net")
        .build()
        .context("cannot start the async runtime")
}

/// Where a feed lives: `http://HOST:PORT/feed/NAME` or a local directory (a plain path or
/// `file://` URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedLocation {
    Http(String),
    Local(std::path::PathBuf),
}

impl FeedLocation {
    /// Parses the `FEED_URL` argument of `sync`.
    pub fn parse(s: &str) -> Result<FeedLocation> {
        if let Some(rest) = s.strip_prefix("file://") {
            return Ok(FeedLocation::Local(rest.into()));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(FeedLocation::Http(s.trim_end_matches('/').to_string()));
        }
        if s.contains("://") {
            bail!("feed URL {s:?}: only http://, https:// and file:// are supported");
        }
        Ok(FeedLocation::Local(s.into()))
    }

    /// Where `file` of this feed is (for messages).
    pub fn url_of(&self, file: &str) -> String {
        match self {
            FeedLocation::Http(base) => format!("{base}/{file}"),
            FeedLocation::Local(dir) => dir.join(file).display().to_string(),
        }
    }

    /// Fetches one file of the feed (at most `limit` bytes).
    pub fn get(&self, rt: &tokio::runtime::Runtime, file: &str, limit: usize) -> Result<Vec<u8>> {
        match self {
            FeedLocation::Local(dir) => read_local(&dir.join(file), limit),
            FeedLocation::Http(_) => rt.block_on(get(&self.url_of(file), limit)),
        }
    }
}

fn read_local(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > limit as u64 {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads `len` bytes at `offset` of a file of the blob from a primer source: an `http(s)://`
/// base URL (HTTP Range request on `BASE/PATH`) or a local directory (`DIR/PATH`).
pub fn read_range(
    rt: &tokio::runtime::Runtime,
    base: &str,
    path: &str,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>> {
    if base.starts_with("http://") || base.starts_with("https://") {
        let url = format!("{}/{path}", base.trim_end_matches('/'));
        return rt.block_on(async {
            let range = format!("bytes={}-{}", offset, offset + len as u64 - 1);
            let resp = send(client()?.get(&url).header("Range", range), &url).await?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .with_context(|| format!("reading {url}"))?;
            if status.as_u16() == 206 {
                return Ok(body.to_vec());
            }
            // A server without Range support sends the whole file.
            let end = offset as usize + len;
            body.get(offset as usize..end)
                .map(<[u8]>::to_vec)
                .with_context(|| format!("{url} is shorter than {end} bytes"))
        });
    }
    let p = Path::new(base).join(path);
    let f = std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
    let mut buf = vec![0u8; len];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, offset)
        .with_context(|| format!("cannot read {}", p.display()))?;
    Ok(buf)
}

/// The client for feed documents and primer pieces: direct (no proxy), 30 s timeout.
fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")
}

/// Sends a request; a failure or a non-2xx status is an error naming `url`.
async fn send(req: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response> {
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot fetch {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("fetching {url}: HTTP {status}");
    }
    Ok(resp)
}

/// HTTP GET of a small document: a non-2xx status, a timeout (30 s) or a body over `limit`
/// bytes is an error naming the URL.
pub async fn get(url: &str, limit: usize) -> Result<Vec<u8>> {
    let mut resp = send(client()?.get(url), url).await?;
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        if body.len() + chunk.len() > limit {
            bail!("{url} is larger than {limit} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a rate such as `40M`, `40MB/s` or `1500000` into bytes per second (sizes as in
/// `--range`: k, m, g are powers of 1024).
pub fn parse_rate(s: &str) -> Result<std::num::NonZeroU32> {
    let t = s.trim().trim_end_matches("/s");
    let t = match t.strip_suffix(['B', 'b']) {
        Some(rest) if rest.ends_with(|c: char| c.is_ascii_alphabetic()) => rest,
        _ => t,
    };
    let n = crate::residency::range::parse_size(t)
        .map_err(|e| anyhow::anyhow!("invalid rate {s:?}: {e}"))?;
    if n < 16384 {
        bail!("invalid rate {s:?}: below 16k/s a transfer stalls (one block is 16 KiB)");
    }
    let n = u32::try_from(n).map_err(|_| anyhow::anyhow!("invalid rate {s:?}: at most 4G/s"))?;
    Ok(std::num::NonZeroU32::new(n).expect("checked above"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_accept_common_spellings() {
        assert_eq!(parse_rate("40M").unwrap().get(), 40 << 20);
        assert_eq!(parse_rate("40MB/s").unwrap().get(), 40 << 20);
        assert_eq!(parse_rate("100000").unwrap().get(), 100000);
        assert!(parse_rate("1k").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("8G").is_err());
    }

    #[test]
    fn feed_locations() {
        assert_eq!(
            FeedLocation::parse("http://h:7070/feed/idx/").unwrap(),
            FeedLocation::Http("http://h:7070/feed/idx".into())
        );
        assert_eq!(
            FeedLocation::parse("/srv/feed/idx").unwrap(),
            FeedLocation::Local("/srv/feed/idx".into())
        );
        assert_eq!(
            FeedLocation::parse("file:///x").unwrap(),
            FeedLocation::Local("/x".into())
        );
        assert!(FeedLocation::parse("ftp://x").is_err());
    }
}
