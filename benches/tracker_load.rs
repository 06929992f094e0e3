//! An HTTP announce load generator, the same for every tracker under test (blobpin's and
//! Debian's opentracker), driven by `benches/tracker_vs_opentracker.sh`.
//!
//! ```text
//! cargo bench --bench tracker_load -- --target 127.0.0.1:6969 [--seconds 5] [--connections 64]
//!     [--swarms 100] [--peers 100] [--numwant 50] [--threads 1] [--close]
//! cargo bench --bench tracker_load -- --print-hashes --swarms 100   # whitelist for opentracker
//! ```
//! Each connection has its own loopback source address (127.0.1.x .. 127.0.4.x, so a
//! topology file can place them in 2 DCs x 2 racks) and announces a fixed share of the
//! peers of every swarm, always from that address; a tenth of the peers are seeds
//! (`left=0`). `--close` opens a new connection per announce (opentracker closes after
//! every answer); otherwise connections are kept alive. Prints the announce rate; answers
//! that are not `200` or carry a `failure reason` are counted and reported separately.
//! Without `--target` or `--print-hashes` (as under a plain `cargo bench`) it does nothing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blobpin::tracker::protocol::{hex, percent_encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

struct Opts {
    target: Option<SocketAddr>,
    seconds: u64,
    connections: usize,
    swarms: usize,
    peers: usize,
    numwant: usize,
    threads: usize,
    close: bool,
    print_hashes: bool,
}

fn parse() -> Opts {
    let mut o = Opts {
        target: None,
        seconds: 5,
        connections: 64,
        swarms: 100,
        peers: 100,
        numwant: 50,
        threads: 1,
        close: false,
        print_hashes: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--target" => o.target = Some(val().parse().expect("--target ADDR")),
            "--seconds" => o.seconds = val().parse().expect("--seconds N"),
            "--connections" => o.connections = val().parse().expect("--connections N"),
            "--swarms" => o.swarms = val().parse().expect("--swarms N"),
            "--peers" => o.peers = val().parse().expect("--peers N"),
            "--numwant" => o.numwant = val().parse().expect("--numwant N"),
            "--threads" => o.threads = val().parse().expect("--threads N"),
            "--close" => o.close = true,
            "--print-hashes" => o.print_hashes = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// The info-hash of swarm `s` (spread over every byte).
fn info_hash(s: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    let mut x = (s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xB10B;
    for chunk in h.chunks_mut(8) {
        x = (x ^ (x >> 31))
            .wrapping_mul(0xBF58_476D_1CE4_E5B9)
            .wrapping_add(1);
        chunk.copy_from_slice(&x.to_be_bytes()[..chunk.len()]);
    }
    h
}

/// Source address of connection `c`: 127.0.1.1 .. in racks of 64 hosts.
fn source(c: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (c / 64 % 4) as u8,
        1 + (c % 64) as u8,
    ))
}

fn requests(o: &Opts, c: usize) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for s in 0..o.swarms {
        let ih = percent_encode(&info_hash(s));
        for p in (c..o.peers).step_by(o.connections) {
            let mut pid = *b"-LG0001-000000000000";
            pid[8..].copy_from_slice(format!("{:06}{:06}", s, p).as_bytes());
            let left = if p % 10 == 0 { 0 } else { 1 << 30 };
            let conn = if o.close { "Connection: close\r\n" } else { "" };
            v.push(
                format!(
                    "GET /announce?info_hash={ih}&peer_id={}&port={}&uploaded=0&downloaded=0&left={left}\
                     &compact=1&numwant={} HTTP/1.1\r\nHost: tracker\r\n{conn}\r\n",
                    percent_encode(&pid),
                    10_000 + p,
                    o.numwant
                )
                .into_bytes(),
            );
        }
    }
    v
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failure: AtomicU64,
    error: AtomicU64,
}

async fn connect(src: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    let s = sock.connect(target).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one response; returns whether it was a success, or None when the peer closed.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + len {
                let ok = head.starts_with("http/1.1 200")
                    && !buf[end..end + len].starts_with(b"d14:failure reason");
                buf.drain(..end + len);
                return Ok(Some(ok));
            }
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn worker(
    c: usize,
    o: Arc<Opts>,
    reqs: Vec<Vec<u8>>,
    counts: Arc<Counts>,
    deadline: Instant,
) {
    let target = o.target.unwrap();
    let src = source(c);
    let mut buf = Vec::new();
    let mut stream: Option<TcpStream> = None;
    let mut i = 0;
    while Instant::now() < deadline {
        if stream.is_none() {
            match connect(src, target).await {
                Ok(s) => stream = Some(s),
                Err(_) => {
                    counts.error.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            }
            buf.clear();
        }
        let s = stream.as_mut().unwrap();
        let req = &reqs[i % reqs.len()];
        i += 1;
        let result = match s.write_all(req).await {
            Ok(()) => read_response(s, &mut buf).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(Some(true)) => counts.ok.fetch_add(1, Ordering::Relaxed),
            Ok(Some(false)) => counts.failure.fetch_add(1, Ordering::Relaxed),
            _ => {
                stream = None;
                counts.error.fetch_add(1, Ordering::Relaxed)
            }
        };
        if o.close {
            stream = None;
        }
    }
}

fn main() {
    let o = parse();
    if o.print_hashes {
        for s in 0..o.swarms {
            println!("{}", hex(&info_hash(s)));
        }
        return;
    }
    if o.target.is_none() {
        eprintln!("tracker_load: no --target; see benches/tracker_vs_opentracker.sh");
        return;
    }
    let o = Arc::new(o);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads)
        .enable_all()
        .build()
        .unwrap();
    let counts = Arc::new(Counts::default());
    // Warm-up: every peer announces once, so the measured phase is steady-state re-announces.
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..o.connections {
            let reqs = requests(&o, c);
            let (o2, cnt) = (o.clone(), Arc::new(Counts::default()));
            tasks.push(tokio::spawn(async move {
                for r in &reqs {
                    if Instant::now() > warm_deadline {
                        break;
                    }
                    if let Ok(mut s) = connect(source(c), o2.target.unwrap()).await {
                        let _ = s.write_all(r).await;
                        let mut b = Vec::new();
                        if let Ok(Some(true)) = read_response(&mut s, &mut b).await {
                            cnt.ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.seconds);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..o.connections {
            tasks.push(tokio::spawn(worker(
                c,
                o.clone(),
                requests(&o, c),
                counts.clone(),
                deadline,
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let ok = counts.ok.load(Ordering::Relaxed);
    println!(
        "announces/s {:.0} (ok {ok}, failure answers {}, transport errors {}, {:.1} s, {} connections, {})",
        ok as f64 / secs,
        counts.failure.load(Ordering::Relaxed),
        counts.error.load(Ordering::Relaxed),
        secs,
        o.connections,
        if o.close { "one announce per connection" } else { "keep-alive" }
    );
}
