//! The tracker's sockets: a small HTTP/1.1 server on tokio that routes `/announce`,
//! `/scrape`, `/metrics` and `/healthz` to the pure [`super::protocol`] and
//! [`super::swarm`] code. Everything here is I/O, locking and counting.
//!
//! HTTP: `GET` only; the request head is bounded to [`MAX_REQUEST`] bytes (larger heads get a
//! failure and the connection is closed); the body, if any, is ignored; keep-alive follows
//! HTTP/1.1 rules (`Connection: close`, or HTTP/1.0 without `keep-alive`, closes);
//! pipelined requests are answered in order; an idle connection is closed after
//! [`IDLE_TIMEOUT`]. At most `max_connections` connections are open at once (further
//! clients wait in the listen backlog). Announce and scrape errors are answered with
//! `200 OK` and a bencoded `failure reason`, which is what clients read.
//!
//! State is split in [`SHARDS`] shards by info-hash, each behind a mutex, so announces to
//! different swarms run in parallel. A background task expires silent peers every half
//! interval.
//!
//! Embedding (the origin): [`Tracker::bind`] binds the sockets synchronously, then serves on
//! a runtime of its own in a background thread, so it works from plain threads and from
//! inside another tokio runtime alike; [`Tracker::allow`]/[`Tracker::set_allowed`] change the
//! allow-list at run time; dropping the handle (or [`Tracker::shutdown`]) stops it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::config::{Topology, TrackerConfig};
use super::protocol::{
    self, canonical_ip, check_key, encode_announce, encode_failure, encode_scrape, InfoHash,
    PeerEntry, RequestError,
};
use super::swarm::{SplitMix64, SwarmSettings, Swarms, Tier};

/// Largest request head accepted, in bytes.
pub const MAX_REQUEST: usize = 8192;
/// Idle keep-alive connections are closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Number of state shards (by the first byte of the info-hash).
pub const SHARDS: usize = 16;

/// Counters for `/metrics`.
#[derive(Default)]
struct Metrics {
    announces: AtomicU64,
    scrapes: AtomicU64,
    connections: AtomicU64,
    handout: [AtomicU64; 5],
    errors: Mutex<HashMap<&'static str, u64>>,
}

/// State shared by every connection.
struct Shared {
    shards: Vec<Mutex<Swarms>>,
    allow: RwLock<Option<HashSet<InfoHash>>>,
    key: Option<Vec<u8>>,
    interval: u32,
    min_interval: u32,
    topology: Option<Arc<Topology>>,
    metrics: Metrics,
    start: Instant,
    loopback_by_destination: bool,
}

impl Shared {
    fn new(config: &TrackerConfig) -> Shared {
        let mut settings = SwarmSettings::from_config(config);
        settings.max_swarms = config.max_swarms.div_ceil(SHARDS).max(1);
        let topology = settings.topology.clone();
        Shared {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Swarms::new(settings.clone())))
                .collect(),
            allow: RwLock::new(config.allow.clone()),
            key: config.key.clone(),
            interval: config.interval,
            min_interval: config.min_interval,
            topology,
            metrics: Metrics::default(),
            start: Instant::now(),
            loopback_by_destination: config.loopback_by_destination,
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn shard(&self, h: &InfoHash) -> &Mutex<Swarms> {
        &self.shards[usize::from(h[0]) % SHARDS]
    }

    fn allowed(&self, h: &InfoHash) -> bool {
        match &*self.allow.read().unwrap_or_else(|e| e.into_inner()) {
            Some(set) => set.contains(h),
            None => true,
        }
    }

    fn count_error(&self, e: &RequestError) {
        let mut m = self
            .metrics
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry(e.label()).or_default() += 1;
    }

    fn set_allowed(&self, allow: Option<HashSet<InfoHash>>) {
        if let Some(set) = &allow {
            for shard in &self.shards {
                shard
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|h| set.contains(h));
            }
        }
        *self.allow.write().unwrap_or_else(|e| e.into_inner()) = allow;
    }

    /// Handles `/announce?query` from `src`; writes the bencoded body.
    fn announce(
        &self,
        query: &[u8],
        src: SocketAddr,
        rng: &mut SplitMix64,
        peers: &mut Vec<(PeerEntry, Tier)>,
        body: &mut Vec<u8>,
    ) {
        let result = protocol::parse_announce(query, self.key.as_deref()).and_then(|req| {
            check_key(&req)?;
            if !self.allowed(&req.info_hash) {
                return Err(RequestError::UnknownInfoHash);
            }
            let addr = SocketAddr::new(canonical_ip(src.ip()), req.port);
            let now = self.now();
            let counts = self
                .shard(&req.info_hash)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .announce(&req, addr, now, rng, peers)?;
            Ok((req, counts))
        });
        match result {
            Ok((req, counts)) => {
                self.metrics.announces.fetch_add(1, Ordering::Relaxed);
                for (_, t) in peers.iter() {
                    self.metrics.handout[*t as usize].fetch_add(1, Ordering::Relaxed);
                }
                let list: Vec<PeerEntry> = peers.iter().map(|p| p.0).collect();
                encode_announce(
                    body,
                    self.interval,
                    self.min_interval,
                    counts,
                    &list,
                    req.compact,
                    req.no_peer_id,
                );
            }
            Err(e) => {
                tracing::debug!(%src, error = %e, "announce refused");
                self.count_error(&e);
                encode_failure(body, &e.to_string());
            }
        }
    }

    fn scrape(&self, query: &[u8], body: &mut Vec<u8>) {
        match protocol::parse_scrape(query) {
            Ok(hashes) => {
                self.metrics.scrapes.fetch_add(1, Ordering::Relaxed);
                let files: Vec<_> = hashes
                    .iter()
                    .filter(|h| self.allowed(h))
                    .map(|h| {
                        (
                            *h,
                            self.shard(h)
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .scrape(h),
                        )
                    })
                    .collect();
                encode_scrape(body, &files);
            }
            Err(e) => {
                self.count_error(&e);
                encode_failure(body, &e.to_string());
            }
        }
    }

    /// Prometheus text exposition of the counters and of the swarms.
    fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, u64)>| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        metric(
            "blobpin_tracker_announces_total",
            "counter",
            "Announces answered with peers.",
            vec![(String::new(), m.announces.load(Ordering::Relaxed))],
        );
        metric(
            "blobpin_tracker_scrapes_total",
            "counter",
            "Scrapes answered.",
            vec![(String::new(), m.scrapes.load(Ordering::Relaxed))],
        );
        let mut errors: Vec<_> = m
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (format!("{{reason=\"{k}\"}}"), *v))
            .collect();
        errors.sort();
        metric(
            "blobpin_tracker_errors_total",
            "counter",
            "Requests refused, by reason.",
            errors,
        );
        metric(
            "blobpin_tracker_handout_peers_total",
            "counter",
            "Peers handed out, by tier relative to the asker.",
            Tier::ALL
                .iter()
                .map(|t| {
                    (
                        format!("{{tier=\"{}\"}}", t.name()),
                        m.handout[*t as usize].load(Ordering::Relaxed),
                    )
                })
                .collect(),
        );
        metric(
            "blobpin_tracker_connections",
            "gauge",
            "Open client connections.",
            vec![(String::new(), m.connections.load(Ordering::Relaxed))],
        );
        let mut total = super::swarm::Summary::default();
        for shard in &self.shards {
            let sum = shard.lock().unwrap_or_else(|e| e.into_inner()).summary();
            total.swarms += sum.swarms;
            total.peers += sum.peers;
            total.seeds += sum.seeds;
            for (dc, n) in sum.peers_by_dc {
                *total.peers_by_dc.entry(dc).or_default() += n;
            }
            for (dc, n) in sum.gateways_by_dc {
                *total.gateways_by_dc.entry(dc).or_default() += n;
            }
        }
        metric(
            "blobpin_tracker_swarms",
            "gauge",
            "Swarms held.",
            vec![(String::new(), total.swarms)],
        );
        metric(
            "blobpin_tracker_peers",
            "gauge",
            "Peers held.",
            vec![(String::new(), total.peers)],
        );
        metric(
            "blobpin_tracker_seeds",
            "gauge",
            "Peers with nothing left to fetch.",
            vec![(String::new(), total.seeds)],
        );
        let dc_name = |dc: u16| {
            self.topology
                .as_ref()
                .map_or("unknown", |t| t.dc_name(dc))
                .to_string()
        };
        let by_dc = |m: HashMap<u16, u64>| {
            let mut v: Vec<_> = m
                .into_iter()
                .map(|(dc, n)| (format!("{{dc=\"{}\"}}", dc_name(dc)), n))
                .collect();
            v.sort();
            v
        };
        metric(
            "blobpin_tracker_dc_peers",
            "gauge",
            "Peers per data centre.",
            by_dc(total.peers_by_dc),
        );
        metric(
            "blobpin_tracker_dc_gateways",
            "gauge",
            "Peers fed from outside their data centre (WAN crossings), per data centre.",
            by_dc(total.gateways_by_dc),
        );
        s
    }
}

/// A running tracker; dropping it stops the server.
pub struct Tracker {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tracker {
    /// Binds every `config.listen` address and starts serving in a background thread.
    pub fn bind(config: TrackerConfig) -> anyhow::Result<Tracker> {
        if config.listen.is_empty() {
            anyhow::bail!("no --listen address");
        }
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let l = StdListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
            l.set_nonblocking(true)
                .with_context(|| format!("listening on {addr}"))?;
            listeners.push(l);
        }
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()?;
        // One thread: a current-thread runtime driven by the server thread itself (no
        // cross-thread wake-ups); otherwise a work-stealing runtime.
        let mut rt = if config.threads == 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        };
        rt.enable_all().thread_name("tracker");
        if config.threads > 1 {
            rt.worker_threads(config.threads);
        }
        let rt = rt.build().context("starting the tracker runtime")?;
        let shared = Arc::new(Shared::new(&config));
        let (stop, stop_rx) = watch::channel(false);
        let conn_limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tracker".into())
            .spawn(move || {
                rt.block_on(serve(listeners, sh, conn_limit, stop_rx));
                rt.shutdown_timeout(Duration::from_millis(200));
            })?;
        Ok(Tracker {
            addrs,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The first bound address (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every bound address, in `--listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Replaces the allow-list (`None` allows every info-hash); swarms no longer allowed are
    /// dropped.
    pub fn set_allowed(&self, allow: Option<HashSet<InfoHash>>) {
        self.shared.set_allowed(allow);
    }

    /// Adds an info-hash to the allow-list, starting a list (that allows only it) if none
    /// was set. The origin calls this for every published version.
    pub fn allow(&self, h: InfoHash) {
        self.shared
            .allow
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(h);
    }

    /// Removes an info-hash from the allow-list and forgets its swarm.
    pub fn disallow(&self, h: &InfoHash) {
        let mut allow = self.shared.allow.write().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = allow.as_mut() {
            set.remove(h);
            self.shared
                .shard(h)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|x| x != h);
        }
    }

    /// The `/metrics` text.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics_text()
    }

    /// Stops serving and waits for the server thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop_now();
    }
}

async fn serve(
    listeners: Vec<StdListener>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    for l in listeners {
        let l = match TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot register listener");
                continue;
            }
        };
        tasks.push(tokio::spawn(accept_loop(l, shared.clone(), limit.clone())));
    }
    let sh = shared.clone();
    let period = Duration::from_millis((u64::from(shared.interval) * 500).max(1000));
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let now = sh.now();
            let mut removed = 0;
            for shard in &sh.shards {
                removed += shard.lock().unwrap_or_else(|e| e.into_inner()).expire(now);
            }
            if removed > 0 {
                tracing::debug!(removed, "expired silent peers");
            }
        }
    }));
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    for t in tasks {
        t.abort();
    }
}

/// Accepts connections on one listener; each becomes a task running [`connection`], at
/// most `max_connections` at once.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, limit: Arc<Semaphore>) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, mut src)) => {
                let _ = stream.set_nodelay(true);
                if shared.loopback_by_destination && canonical_ip(src.ip()).is_loopback() {
                    if let Ok(local) = stream.local_addr() {
                        src = SocketAddr::new(canonical_ip(local.ip()), src.port());
                    }
                }
                let sh = shared.clone();
                tokio::spawn(async move {
                    sh.metrics.connections.fetch_add(1, Ordering::Relaxed);
                    let conn = Conn::new(src, &sh);
                    if let Err(e) = connection(stream, conn, &sh).await {
                        tracing::trace!(%src, error = %e, "connection ended");
                    }
                    sh.metrics.connections.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A parsed request head.
struct Head<'a> {
    method: &'a [u8],
    target: &'a [u8],
    keep_alive: bool,
}

/// Parses an HTTP/1.x request head into (method, target, keep-alive); `None` when malformed.
/// Public for the fuzz target.
pub fn parse_request_head(head: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    parse_head(head).map(|h| (h.method, h.target, h.keep_alive))
}

fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf[start..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| start + p + 4)
}

fn parse_head(head: &[u8]) -> Option<Head<'_>> {
    let mut lines = head
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next()?;
    let mut parts = request_line.split(|&c| c == b' ').filter(|p| !p.is_empty());
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some() || !version.starts_with(b"HTTP/1.") {
        return None;
    }
    let mut keep_alive = version == b"HTTP/1.1";
    for line in lines {
        if let Some(colon) = line.iter().position(|&c| c == b':') {
            let (name, value) = line.split_at(colon);
            if name.eq_ignore_ascii_case(b"connection") {
                let v = value[1..].trim_ascii();
                if v.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if v.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    Some(Head {
        method,
        target,
        keep_alive,
    })
}

fn respond(out: &mut Vec<u8>, status: &str, content_type: &str, body: &[u8], keep_alive: bool) {
    let _ = write!(
        Fmt(out),
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    out.extend_from_slice(body);
}

struct Fmt<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// One client connection's buffers and state, between reads.
struct Conn {
    src: SocketAddr,
    /// Bytes received and not yet answered.
    buf: Vec<u8>,
    /// Answers not yet written.
    out: Vec<u8>,
    body: Vec<u8>,
    peers: Vec<(PeerEntry, Tier)>,
    rng: SplitMix64,
    /// How far `buf` was searched for the end of a head.
    scanned: usize,
    /// The last answer asked to close the connection.
    close: bool,
}

impl Conn {
    fn new(src: SocketAddr, shared: &Shared) -> Conn {
        Conn {
            src,
            buf: Vec::with_capacity(1024),
            out: Vec::with_capacity(512),
            body: Vec::new(),
            peers: Vec::new(),
            rng: SplitMix64(shared.now() ^ (u64::from(src.port()) << 32) ^ 0x5EED),
            scanned: 0,
            close: false,
        }
    }

    /// Answers every complete request in `buf` (pipelining) into `out`; stops after one that
    /// closes the connection, or with a failure when the pending head exceeds the bound.
    fn process(&mut self, shared: &Shared) {
        while let Some(end) = find_head_end(&self.buf, self.scanned) {
            self.body.clear();
            let body = &mut self.body;
            let (status, ctype, keep) = match parse_head(&self.buf[..end]) {
                None => {
                    shared.count_error(&RequestError::BadHttp);
                    encode_failure(body, &RequestError::BadHttp.to_string());
                    ("400 Bad Request", "text/plain", false)
                }
                Some(head) if head.method != b"GET" => {
                    body.extend_from_slice(b"only GET is supported\n");
                    ("405 Method Not Allowed", "text/plain", false)
                }
                Some(head) => {
                    let (path, query) = protocol::split_target(head.target);
                    let status = match path {
                        b"/announce" => {
                            shared.announce(query, self.src, &mut self.rng, &mut self.peers, body);
                            "200 OK"
                        }
                        b"/scrape" => {
                            shared.scrape(query, body);
                            "200 OK"
                        }
                        b"/metrics" => {
                            body.extend_from_slice(shared.metrics_text().as_bytes());
                            "200 OK"
                        }
                        b"/healthz" => {
                            body.extend_from_slice(b"ok\n");
                            "200 OK"
                        }
                        _ => {
                            body.extend_from_slice(b"not found\n");
                            "404 Not Found"
                        }
                    };
                    let ctype = if path == b"/metrics" {
                        "text/plain; version=0.0.4"
                    } else {
                        "text/plain"
                    };
                    (status, ctype, head.keep_alive)
                }
            };
            respond(&mut self.out, status, ctype, &self.body, keep);
            self.buf.drain(..end);
            self.scanned = 0;
            if !keep {
                self.close = true;
                return;
            }
        }
        if self.buf.len() >= MAX_REQUEST {
            shared.count_error(&RequestError::TooLarge);
            self.body.clear();
            encode_failure(&mut self.body, &RequestError::TooLarge.to_string());
            respond(
                &mut self.out,
                "431 Request Header Fields Too Large",
                "text/plain",
                &self.body,
                false,
            );
            self.close = true;
            return;
        }
        self.scanned = self.buf.len();
    }
}

async fn connection(mut stream: TcpStream, mut conn: Conn, shared: &Shared) -> std::io::Result<()> {
    loop {
        if !conn.out.is_empty() {
            stream.write_all(&conn.out).await?;
            conn.out.clear();
        }
        if conn.close {
            // When everything the client sent was read, a plain close sends FIN after the
            // answer; unread bytes would turn the close into a reset, so those get a shutdown.
            if !conn.buf.is_empty() {
                let _ = stream.shutdown().await;
            }
            return Ok(());
        }
        conn.buf.reserve(1024.min(MAX_REQUEST - conn.buf.len()));
        let n = match tokio::time::timeout(IDLE_TIMEOUT, stream.read_buf(&mut conn.buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        conn.process(shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing() {
        let h = parse_head(b"GET /announce?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(h.target, b"/announce?x=1");
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        assert!(parse_head(b"GET /\r\n\r\n").is_none());
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest", 10), Some(18));
    }
}
