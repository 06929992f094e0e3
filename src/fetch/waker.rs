//! The waker: a tiny in-process BitTorrent peer that keeps librqbit 9.1's piece requesters
//! awake while a download runs.
//!
//! # Why
//! A librqbit 9.1 connection that finds no piece to request (it holds everything its peers
//! announced) sleeps until `new_pieces_notify` fires or 5 s pass. A HAVE from a peer does not
//! fire it (`on_have` only wakes the start-up wait for a bitfield); only the death of a peer
//! that had requests in flight, or a failed hash check, does. So a host fed by a parent that is
//! itself still downloading catches up, then idles up to 5 s while its parent completes
//! pieces; every level of a tree adds that. Measured in the emulated 2-DC benchmark: progress
//! of hosts behind a parent advanced in 5 s steps (`1 MiB at 1.0 s, 2 MiB at 5.3 s, 3 MiB at
//! 10.3 s`), and hosts finished 6-19 s after the DC's first copy was complete.
//!
//! # How
//! Every `period` (100 ms by default; hidden `sync --wake-ms`, 0 turns it off), the waker
//! connects to the host's own librqbit listener as a peer, announces
//! a few pieces at the end of the torrent (which an in-order download needs last), unchokes,
//! lets librqbit put requests in flight to it, never answers them, and disconnects. librqbit
//! sees a peer die with requests in flight, releases them, and wakes every sleeping requester,
//! which then asks its real peers for the pieces they completed meanwhile. The pieces the
//! waker held come back to the queue at once. It stops when the download completes; a round
//! in which librqbit requests nothing (the host already holds the claimed pieces) costs one
//! loopback connection and wakes nobody.
//!
//! Measured: the demo's download (4 hosts, 256 MiB) took 5.2 s instead of 9.1 s; in the
//! emulated benchmark (32 MiB, 16 hosts in one rack, trees of fan-out 2, bound 5.4 s) the
//! slowest host finished in 14.7-16.5 s instead of 25.4-27.8 s; in the 2-DC shape, hosts
//! behind a DC's first copy followed it within 1-4 s instead of 6-19 s.
//!
//! An upstream fix is one line (notify `new_pieces_notify` in `on_have`); this module can go
//! when librqbit has it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Pieces the waker claims: the last `max(1, pieces / CLAIM_DIV)` (at most [`CLAIM_MAX`]).
const CLAIM_DIV: usize = 16;
const CLAIM_MAX: usize = 64;

/// The handshake a peer sends: protocol string, no extensions, info-hash, peer id.
pub fn handshake(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> [u8; 68] {
    let mut h = [0u8; 68];
    h[0] = 19;
    h[1..20].copy_from_slice(b"BitTorrent protocol");
    h[28..48].copy_from_slice(info_hash);
    h[48..68].copy_from_slice(peer_id);
    h
}

/// The first piece the waker claims, and the bitfield message (length prefix, id 5, bits)
/// claiming pieces `first..pieces`.
pub fn claim(pieces: usize) -> (usize, Vec<u8>) {
    let n = (pieces / CLAIM_DIV).clamp(1, CLAIM_MAX).min(pieces);
    let first = pieces - n;
    let bytes = pieces.div_ceil(8);
    let mut msg = Vec::with_capacity(5 + bytes);
    msg.extend_from_slice(&(1 + bytes as u32).to_be_bytes());
    msg.push(5);
    let start = msg.len();
    msg.resize(start + bytes, 0);
    for p in first..pieces {
        msg[start + p / 8] |= 0x80 >> (p % 8);
    }
    (first, msg)
}

/// One waking round: connect, claim, unchoke, hold the connection for `hold`, drop it.
/// Returns whether librqbit sent at least one request (so the drop wakes its requesters).
pub async fn wake_once(
    listen: SocketAddr,
    info_hash: &[u8; 20],
    pieces: usize,
    hold: Duration,
) -> std::io::Result<bool> {
    let mut peer_id = *b"-BPWAKE-000000000000";
    let nonce = std::process::id() as u64
        ^ (std::time::UNIX_EPOCH
            .elapsed()
            .unwrap_or_default()
            .as_nanos() as u64);
    peer_id[8..20].copy_from_slice(format!("{:012x}", nonce & 0xffff_ffff_ffff).as_bytes());
    let mut s = TcpStream::connect(listen).await?;
    s.set_nodelay(true)?;
    s.write_all(&handshake(info_hash, &peer_id)).await?;
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).await?;
    if theirs[28..48] != info_hash[..] {
        return Err(std::io::Error::other(
            "the listener answered for another torrent",
        ));
    }
    let (_, bitfield) = claim(pieces);
    s.write_all(&bitfield).await?;
    s.write_all(&[0, 0, 0, 1, 1]).await?; // unchoke
    let mut requested = false;
    let deadline = tokio::time::Instant::now() + hold;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break,
            Ok(r) => r?,
        };
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        // Walk complete messages; a request is id 6.
        let mut at = 0;
        while pending.len() >= at + 4 {
            let len = u32::from_be_bytes(pending[at..at + 4].try_into().expect("4 bytes")) as usize;
            if pending.len() < at + 4 + len {
                break;
            }
            if len > 0 && pending[at + 4] == 6 {
                requested = true;
            }
            at += 4 + len;
        }
        pending.drain(..at);
    }
    Ok(requested)
}

/// Runs waking rounds every `period` until `done()` says the download is over.
pub async fn run(
    listen: SocketAddr,
    info_hash: [u8; 20],
    pieces: usize,
    period: Duration,
    done: impl Fn() -> bool,
) {
    // Connect to the listener's own address, or loopback when it listens on every address.
    let target = if listen.ip().is_unspecified() {
        SocketAddr::new(
            if listen.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            listen.port(),
        )
    } else {
        listen
    };
    while !done() {
        let r = wake_once(target, &info_hash, pieces, period).await;
        if r.is_err() {
            tokio::time::sleep(period).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_the_tail_of_the_torrent() {
        let (first, msg) = claim(20);
        assert_eq!(first, 19);
        assert_eq!(&msg[..5], &[0, 0, 0, 4, 5]);
        assert_eq!(&msg[5..], &[0, 0, 0b0001_0000]);
        let (first, msg) = claim(1000);
        assert_eq!(first, 1000 - 62);
        assert_eq!(msg.len(), 5 + 125);
        let bits: u32 = msg[5..].iter().map(|b| b.count_ones()).sum();
        assert_eq!(bits, 62);
        assert_eq!(claim(1).0, 0);
        assert_eq!(claim(100_000).0, 100_000 - CLAIM_MAX);
    }

    #[test]
    fn handshake_layout() {
        let h = handshake(&[7; 20], &[9; 20]);
        assert_eq!(h[0], 19);
        assert_eq!(&h[1..20], b"BitTorrent protocol");
        assert_eq!(&h[20..28], &[0; 8]);
        assert_eq!(&h[28..48], &[7; 20]);
        assert_eq!(&h[48..], &[9; 20]);
    }
}
