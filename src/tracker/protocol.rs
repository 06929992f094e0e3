//! The tracker's wire format, pure: parsing of `/announce` (BEP 3) and `/scrape` (BEP 48)
//! query strings, and bencoding of the answers (BEP 23 compact `peers`, BEP 7 `peers6`,
//! non-compact dictionaries, `failure reason`). No sockets, no tokio, no clock.
//!
//! Parsing rules (every violation is a [`RequestError`] whose text becomes the bencoded
//! `failure reason` sent to the client):
//! - `info_hash` and `peer_id` are percent-decoded and must be exactly 20 bytes; a `%` not
//!   followed by two hex digits is a bad escape. `+` is kept literally (clients percent-encode
//!   every byte outside RFC 3986's unreserved set, so a literal `+` is the byte 0x2B).
//! - `port` must be a decimal in 1..=65535; `left` is required; `uploaded` and `downloaded`
//!   default to 0; numbers are plain unsigned decimals (at most 20 digits).
//! - `numwant` is a decimal (a negative value, as UDP clients send, means "default"); any
//!   value above the server's maximum is lowered to it, never refused.
//! - `event` is empty, `started`, `completed`, `stopped` or `paused` (BEP 21, treated as none).
//! - `key` may occur several times (librqbit appends the tracker URL's own query after its
//!   own random `key=`): the request carries the shared secret if any of them equals it.
//! - The peer's address is never taken from `ip=`: the server uses the connection's source
//!   address, so a host cannot claim another rack.
//! - Unknown parameters are ignored; at most [`MAX_PARAMS`] parameters are looked at.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// A 20-byte SHA-1 info-hash.
pub type InfoHash = [u8; 20];
/// A 20-byte BitTorrent peer id.
pub type PeerId = [u8; 20];

/// Parameters beyond this count are ignored (a request is bounded in size anyway).
pub const MAX_PARAMS: usize = 64;
/// At most this many `info_hash` values are answered in one scrape.
pub const MAX_SCRAPE_HASHES: usize = 64;

/// `event=` of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A regular re-announce (no event, `paused`, or an empty value).
    None,
    /// First announce of a download.
    Started,
    /// The download finished.
    Completed,
    /// The client stops: forget the peer.
    Stopped,
}

/// A validated announce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    /// `None` when absent or negative; the caller applies its default and maximum.
    pub numwant: Option<u64>,
    /// `compact=0` asks for the dictionary model; anything else is compact.
    pub compact: bool,
    pub no_peer_id: bool,
    /// Whether one of the `key=` values equals the configured secret (true when none is set).
    pub key_ok: bool,
    /// Whether any `key=` was present.
    pub key_present: bool,
}

/// Why a request was refused; the `Display` text is the bencoded `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("missing info_hash")]
    MissingInfoHash,
    #[error("info_hash must be 20 bytes, got {0}")]
    InfoHashLength(usize),
    #[error("missing peer_id")]
    MissingPeerId,
    #[error("peer_id must be 20 bytes, got {0}")]
    PeerIdLength(usize),
    #[error("missing port")]
    MissingPort,
    #[error("invalid port")]
    BadPort,
    #[error("missing left")]
    MissingLeft,
    #[error("invalid {0}: not an unsigned decimal")]
    BadNumber(&'static str),
    #[error("invalid numwant")]
    BadNumwant,
    #[error("invalid event")]
    BadEvent,
    #[error("bad percent-escape in {0}")]
    BadEscape(String),
    #[error("missing key")]
    MissingKey,
    #[error("invalid key")]
    WrongKey,
    #[error("unregistered info_hash")]
    UnknownInfoHash,
    #[error("too many swarms")]
    TooManySwarms,
    #[error("swarm is full")]
    SwarmFull,
    #[error("request too large")]
    TooLarge,
    #[error("malformed HTTP request")]
    BadHttp,
    #[error("scrape needs at least one info_hash")]
    ScrapeWithoutHash,
}

impl RequestError {
    /// A short, fixed label for metrics (`errors_total{reason=...}`).
    pub fn label(&self) -> &'static str {
        match self {
            RequestError::MissingInfoHash => "missing_info_hash",
            RequestError::InfoHashLength(_) => "info_hash_length",
            RequestError::MissingPeerId => "missing_peer_id",
            RequestError::PeerIdLength(_) => "peer_id_length",
            RequestError::MissingPort => "missing_port",
            RequestError::BadPort => "bad_port",
            RequestError::MissingLeft => "missing_left",
            RequestError::BadNumber(_) => "bad_number",
            RequestError::BadNumwant => "bad_numwant",
            RequestError::BadEvent => "bad_event",
            RequestError::BadEscape(_) => "bad_escape",
            RequestError::MissingKey => "missing_key",
            RequestError::WrongKey => "wrong_key",
            RequestError::UnknownInfoHash => "unknown_info_hash",
            RequestError::TooManySwarms => "too_many_swarms",
            RequestError::SwarmFull => "swarm_full",
            RequestError::TooLarge => "too_large",
            RequestError::BadHttp => "bad_http",
            RequestError::ScrapeWithoutHash => "scrape_without_hash",
        }
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `raw` into `out` (cleared first); `None` on a bad escape.
pub fn percent_decode_into(raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'%' {
            let hi = hex_val(*raw.get(i + 1)?)?;
            let lo = hex_val(*raw.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(())
}

/// Decodes a percent-encoded value that must be exactly 20 bytes, without allocating.
fn decode20(raw: &[u8], field: &'static str) -> Result<[u8; 20], RequestError> {
    let mut out = [0u8; 20];
    let mut n = 0usize;
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        let b = if c == b'%' {
            let hi = raw.get(i + 1).and_then(|&c| hex_val(c));
            let lo = raw.get(i + 2).and_then(|&c| hex_val(c));
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    i += 3;
                    h << 4 | l
                }
                _ => return Err(RequestError::BadEscape(field.to_string())),
            }
        } else {
            i += 1;
            c
        };
        if n < 20 {
            out[n] = b;
        }
        n += 1;
    }
    if n != 20 {
        // Count the whole decoded length for the message, checking the remaining escapes.
        return Err(match field {
            "info_hash" => RequestError::InfoHashLength(n),
            _ => RequestError::PeerIdLength(n),
        });
    }
    Ok(out)
}

fn parse_u64(raw: &[u8], field: &'static str) -> Result<u64, RequestError> {
    if raw.is_empty() || raw.len() > 20 {
        return Err(RequestError::BadNumber(field));
    }
    let mut v: u64 = 0;
    for &c in raw {
        if !c.is_ascii_digit() {
            return Err(RequestError::BadNumber(field));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
            .ok_or(RequestError::BadNumber(field))?;
    }
    Ok(v)
}

/// Splits a request target into path and query (without the `?`).
pub fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    match target.iter().position(|&c| c == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &[]),
    }
}

/// Iterates `name=value` pairs of a query string (raw, still percent-encoded).
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&c| c == b'&')
        .filter(|p| !p.is_empty())
        .take(MAX_PARAMS)
        .map(|p| match p.iter().position(|&c| c == b'=') {
            Some(e) => (&p[..e], &p[e + 1..]),
            None => (p, &[][..]),
        })
}

/// Parses an announce query string. `secret` is the configured `--key`, if any.
pub fn parse_announce(
    query: &[u8],
    secret: Option<&[u8]>,
) -> Result<AnnounceRequest, RequestError> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let mut left = None;
    let mut uploaded = 0;
    let mut downloaded = 0;
    let mut event = Event::None;
    let mut numwant = None;
    let mut compact = true;
    let mut no_peer_id = false;
    let mut key_ok = secret.is_none();
    let mut key_present = false;
    let mut scratch = Vec::new();
    for (name, value) in query_pairs(query) {
        match name {
            b"info_hash" if info_hash.is_none() => info_hash = Some(decode20(value, "info_hash")?),
            b"peer_id" => peer_id = Some(decode20(value, "peer_id")?),
            b"port" => {
                let p = parse_u64(value, "port").map_err(|_| RequestError::BadPort)?;
                if p == 0 || p > 65535 {
                    return Err(RequestError::BadPort);
                }
                port = Some(p as u16);
            }
            b"left" => left = Some(parse_u64(value, "left")?),
            b"uploaded" => uploaded = parse_u64(value, "uploaded")?,
            b"downloaded" => downloaded = parse_u64(value, "downloaded")?,
            b"event" => {
                event = match value {
                    b"" | b"paused" | b"empty" => Event::None,
                    b"started" => Event::Started,
                    b"completed" => Event::Completed,
                    b"stopped" => Event::Stopped,
                    _ => return Err(RequestError::BadEvent),
                }
            }
            b"numwant" => {
                numwant = if value.first() == Some(&b'-') {
                    parse_u64(&value[1..], "numwant").map_err(|_| RequestError::BadNumwant)?;
                    None
                } else if value.len() > 20 && value.iter().all(u8::is_ascii_digit) {
                    Some(u64::MAX) // absurdly large: bounded by the caller
                } else {
                    Some(parse_u64(value, "numwant").map_err(|_| RequestError::BadNumwant)?)
                }
            }
            b"compact" => compact = value != b"0",
            b"no_peer_id" => no_peer_id = value == b"1",
            b"key" => {
                key_present = true;
                if let Some(s) = secret {
                    percent_decode_into(value, &mut scratch)
                        .ok_or_else(|| RequestError::BadEscape("key".into()))?;
                    if constant_time_eq(&scratch, s) {
                        key_ok = true;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(AnnounceRequest {
        info_hash: info_hash.ok_or(RequestError::MissingInfoHash)?,
        peer_id: peer_id.ok_or(RequestError::MissingPeerId)?,
        port: port.ok_or(RequestError::MissingPort)?,
        uploaded,
        downloaded,
        left: left.ok_or(RequestError::MissingLeft)?,
        event,
        numwant,
        compact,
        no_peer_id,
        key_ok,
        key_present,
    })
}

/// Checks the shared secret of a parsed announce: absent or wrong keys are refused.
pub fn check_key(req: &AnnounceRequest) -> Result<(), RequestError> {
    if req.key_ok {
        Ok(())
    } else if !req.key_present {
        Err(RequestError::MissingKey)
    } else {
        Err(RequestError::WrongKey)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a scrape query string: the `info_hash` values (at most [`MAX_SCRAPE_HASHES`]).
pub fn parse_scrape(query: &[u8]) -> Result<Vec<InfoHash>, RequestError> {
    let mut hashes = Vec::new();
    for (name, value) in query_pairs(query) {
        if name == b"info_hash" {
            let h = decode20(value, "info_hash")?;
            if hashes.len() < MAX_SCRAPE_HASHES && !hashes.contains(&h) {
                hashes.push(h);
            }
        }
    }
    if hashes.is_empty() {
        return Err(RequestError::ScrapeWithoutHash);
    }
    Ok(hashes)
}

/// One peer in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEntry {
    pub addr: SocketAddr,
    pub peer_id: PeerId,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let _ = write!(Fmt(out), "{}:", b.len());
    out.extend_from_slice(b);
}

fn put_int(out: &mut Vec<u8>, v: u64) {
    let _ = write!(Fmt(out), "i{v}e");
}

/// `fmt::Write` over a byte vector.
struct Fmt<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Counts of a swarm as announces and scrapes report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwarmCounts {
    /// Peers with `left=0`.
    pub complete: u64,
    /// Peers still downloading.
    pub incomplete: u64,
    /// `event=completed` seen so far.
    pub downloaded: u64,
}

/// Bencodes an announce answer (keys in sorted order as bencoding requires).
pub fn encode_announce(
    out: &mut Vec<u8>,
    interval: u32,
    min_interval: u32,
    counts: SwarmCounts,
    peers: &[PeerEntry],
    compact: bool,
    no_peer_id: bool,
) {
    out.push(b'd');
    put_bytes(out, b"complete");
    put_int(out, counts.complete);
    put_bytes(out, b"downloaded");
    put_int(out, counts.downloaded);
    put_bytes(out, b"incomplete");
    put_int(out, counts.incomplete);
    put_bytes(out, b"interval");
    put_int(out, u64::from(interval));
    put_bytes(out, b"min interval");
    put_int(out, u64::from(min_interval));
    put_bytes(out, b"peers");
    if compact {
        let v4: Vec<u8> = peers
            .iter()
            .filter_map(|p| match p.addr {
                SocketAddr::V4(a) => Some(a),
                SocketAddr::V6(_) => None,
            })
            .flat_map(|a| {
                let mut e = [0u8; 6];
                e[..4].copy_from_slice(&a.ip().octets());
                e[4..].copy_from_slice(&a.port().to_be_bytes());
                e
            })
            .collect();
        put_bytes(out, &v4);
        let v6: Vec<u8> = peers
            .iter()
            .filter_map(|p| match p.addr {
                SocketAddr::V6(a) => Some(a),
                SocketAddr::V4(_) => None,
            })
            .flat_map(|a| {
                let mut e = [0u8; 18];
                e[..16].copy_from_slice(&a.ip().octets());
                e[16..].copy_from_slice(&a.port().to_be_bytes());
                e
            })
            .collect();
        if !v6.is_empty() {
            put_bytes(out, b"peers6");
            put_bytes(out, &v6);
        }
    } else {
        out.push(b'l');
        for p in peers {
            out.push(b'd');
            put_bytes(out, b"ip");
            put_bytes(out, p.addr.ip().to_string().as_bytes());
            if !no_peer_id {
                put_bytes(out, b"peer id");
                put_bytes(out, &p.peer_id);
            }
            put_bytes(out, b"port");
            put_int(out, u64::from(p.addr.port()));
            out.push(b'e');
        }
        out.push(b'e');
    }
    out.push(b'e');
}

/// Bencodes a scrape answer for the given hashes (BEP 48).
pub fn encode_scrape(out: &mut Vec<u8>, files: &[(InfoHash, SwarmCounts)]) {
    let mut sorted: Vec<&(InfoHash, SwarmCounts)> = files.iter().collect();
    sorted.sort_by_key(|a| a.0);
    out.extend_from_slice(b"d5:filesd");
    for (h, c) in sorted {
        put_bytes(out, h);
        out.push(b'd');
        put_bytes(out, b"complete");
        put_int(out, c.complete);
        put_bytes(out, b"downloaded");
        put_int(out, c.downloaded);
        put_bytes(out, b"incomplete");
        put_int(out, c.incomplete);
        out.push(b'e');
    }
    out.extend_from_slice(b"ee");
}

/// Bencodes `d14:failure reason<len>:<reason>e`.
pub fn encode_failure(out: &mut Vec<u8>, reason: &str) {
    out.push(b'd');
    put_bytes(out, b"failure reason");
    put_bytes(out, reason.as_bytes());
    out.push(b'e');
}

/// Normalises an address: an IPv4-mapped IPv6 address becomes plain IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Percent-encodes bytes for a query string (used by clients, tests and benches).
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// Parses a 40-digit hex info-hash (allow-list files, `--allow`).
pub fn parse_hex_hash(s: &str) -> Option<InfoHash> {
    let s = s.trim();
    if s.len() != 40 {
        return None;
    }
    let mut h = [0u8; 20];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        h[i] = hex_val(chunk[0])? << 4 | hex_val(chunk[1])?;
    }
    Some(h)
}

/// Formats an info-hash as 40 lowercase hex digits.
pub fn hex(h: &[u8]) -> String {
    let mut s = String::with_capacity(h.len() * 2);
    for b in h {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects() {
        let ih = percent_encode(&[0xAB; 20]);
        let pid = percent_encode(b"-rQ9100-abcdefghijkl");
        let q = format!("info_hash={ih}&peer_id={pid}&port=6881&left=5&numwant=3");
        let r = parse_announce(q.as_bytes(), None).unwrap();
        assert_eq!(r.info_hash, [0xAB; 20]);
        assert_eq!(r.port, 6881);
        assert_eq!(r.numwant, Some(3));
        let bad = format!("info_hash={ih}&peer_id={pid}&port=6881&left=5&numwant=x");
        assert_eq!(
            parse_announce(bad.as_bytes(), None),
            Err(RequestError::BadNumwant)
        );
        let bad = format!("info_hash=%zz{ih}&peer_id={pid}&port=1&left=5");
        assert_eq!(
            parse_announce(bad.as_bytes(), None),
            Err(RequestError::BadEscape("info_hash".into()))
        );
    }

    #[test]
    fn hex_round_trip() {
        let h = [0x0f; 20];
        assert_eq!(parse_hex_hash(&hex(&h)), Some(h));
        assert_eq!(parse_hex_hash("xyz"), None);
    }
}
