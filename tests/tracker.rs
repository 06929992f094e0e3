//! Tests of the tracker (issue 4): the pure overlay logic with injected time and randomness
//! (`tracker_swarm.rs`), every refused input with its failure reason and the server over
//! real HTTP on loopback (`tracker_server.rs`), and the `blobpin tracker` command itself
//! (`tracker_cli.rs`). Shared here: a tiny bencode reader and a loopback HTTP client that
//! binds a chosen 127.x.y.z source address, so the tracker sees distinct racks.
#![cfg(feature = "tracker")]

#[path = "tracker_cli.rs"]
mod cli;
#[path = "tracker_server.rs"]
mod server;
#[path = "tracker_swarm.rs"]
mod swarm;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};

/// A decoded bencode value.
#[derive(Debug, Clone, PartialEq)]
pub enum Bv {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bv>),
    Dict(BTreeMap<Vec<u8>, Bv>),
}

impl Bv {
    pub fn get(&self, key: &str) -> Option<&Bv> {
        match self {
            Bv::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }
    pub fn bytes(&self) -> &[u8] {
        match self {
            Bv::Bytes(b) => b,
            other => panic!("not a byte string: {other:?}"),
        }
    }
    pub fn int(&self) -> i64 {
        match self {
            Bv::Int(i) => *i,
            other => panic!("not an integer: {other:?}"),
        }
    }
    /// The `failure reason` as text, if this is a failure.
    pub fn failure(&self) -> Option<String> {
        self.get("failure reason")
            .map(|b| String::from_utf8_lossy(b.bytes()).into_owned())
    }
}

/// Decodes one complete bencoded value (panics on trailing bytes or malformed input).
pub fn bdecode(data: &[u8]) -> Bv {
    fn one(d: &[u8], i: &mut usize) -> Bv {
        match d[*i] {
            b'i' => {
                let end = *i + d[*i..].iter().position(|&c| c == b'e').unwrap();
                let v = std::str::from_utf8(&d[*i + 1..end])
                    .unwrap()
                    .parse()
                    .unwrap();
                *i = end + 1;
                Bv::Int(v)
            }
            b'l' => {
                *i += 1;
                let mut v = Vec::new();
                while d[*i] != b'e' {
                    v.push(one(d, i));
                }
                *i += 1;
                Bv::List(v)
            }
            b'd' => {
                *i += 1;
                let mut m = BTreeMap::new();
                let mut last: Option<Vec<u8>> = None;
                while d[*i] != b'e' {
                    let Bv::Bytes(k) = one(d, i) else {
                        panic!("dict key not a string")
                    };
                    assert!(
                        last.as_ref().map_or(true, |l| *l < k),
                        "dict keys not sorted"
                    );
                    last = Some(k.clone());
                    let v = one(d, i);
                    m.insert(k, v);
                }
                *i += 1;
                Bv::Dict(m)
            }
            b'0'..=b'9' => {
                let colon = *i + d[*i..].iter().position(|&c| c == b':').unwrap();
                let n: usize = std::str::from_utf8(&d[*i..colon]).unwrap().parse().unwrap();
                let v = d[colon + 1..colon + 1 + n].to_vec();
                *i = colon + 1 + n;
                Bv::Bytes(v)
            }
            c => panic!("bad bencode byte {c:#x} at {i}"),
        }
    }
    let mut i = 0;
    let v = one(data, &mut i);
    assert_eq!(i, data.len(), "trailing bytes after bencode value");
    v
}

/// Compact IPv4 peers of an announce answer.
pub fn compact_peers(answer: &Bv) -> Vec<SocketAddr> {
    answer
        .get("peers")
        .expect("no peers key")
        .bytes()
        .chunks(6)
        .map(|c| SocketAddr::from(([c[0], c[1], c[2], c[3]], u16::from_be_bytes([c[4], c[5]]))))
        .collect()
}

/// An HTTP response: status code, head, body.
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Opens a TCP connection to `server` from source address `from` (port chosen by the kernel).
pub fn connect_from(from: IpAddr, server: SocketAddr) -> std::net::TcpStream {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(server),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    sock.bind(&SocketAddr::new(from, 0).into()).unwrap();
    sock.connect(&server.into()).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    sock.into()
}

/// Splits one HTTP response off the front of `data` (needs Content-Length).
pub fn split_response(data: &[u8]) -> Option<(Resp, usize)> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .map(|v| v.trim().parse().unwrap())
    })?;
    if data.len() < end + len {
        return None;
    }
    Some((
        Resp {
            status,
            head,
            body: data[end..end + len].to_vec(),
        },
        end + len,
    ))
}

/// One `GET target` from source address `from`, connection closed afterwards.
pub fn get_from(from: IpAddr, server: SocketAddr, target: &str) -> Resp {
    let mut s = connect_from(from, server);
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: tracker\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut data = Vec::new();
    s.read_to_end(&mut data).unwrap();
    split_response(&data)
        .unwrap_or_else(|| panic!("bad response: {:?}", String::from_utf8_lossy(&data)))
        .0
}

/// A peer id made of a printable prefix and a number.
pub fn peer_id(n: u32) -> [u8; 20] {
    let mut id = *b"-TT0001-000000000000";
    let digits = format!("{n:012}");
    id[8..].copy_from_slice(digits.as_bytes());
    id
}

/// An announce query string with the usual fields.
pub fn announce_query(
    info_hash: &[u8; 20],
    peer: &[u8; 20],
    port: u16,
    left: u64,
    extra: &str,
) -> String {
    format!(
        "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}&compact=1{extra}",
        blobpin::tracker::protocol::percent_encode(info_hash),
        blobpin::tracker::protocol::percent_encode(peer),
    )
}
