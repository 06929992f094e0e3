//! The tracker server end to end over real HTTP on loopback (port 0): every refused input
//! with its bencoded failure reason, the overlay seen from distinct 127.0.x.y sources,
//! keep-alive and pipelining, scrape, `/metrics`, `/healthz`, IPv6 `peers6`, the run-time
//! allow-list API the origin uses, and embedding inside a tokio runtime.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use blobpin::tracker::config::{OriginMatcher, Topology, TrackerConfig};
use blobpin::tracker::protocol::percent_encode;
use blobpin::tracker::Tracker;

use super::{
    announce_query, bdecode, compact_peers, connect_from, get_from, peer_id, split_response, Bv,
};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config() -> TrackerConfig {
    TrackerConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        threads: 2,
        ..TrackerConfig::default()
    }
}

fn announce(t: &Tracker, from: IpAddr, target: &str) -> Bv {
    let r = get_from(from, t.local_addr(), target);
    assert_eq!(r.status, 200, "{}", r.head);
    bdecode(&r.body)
}

fn failure(t: &Tracker, target: &str) -> String {
    announce(t, LO, target)
        .failure()
        .unwrap_or_else(|| panic!("{target} was accepted"))
}

#[test]
fn every_bad_announce_gets_its_failure_reason() {
    let allowed = [1u8; 20];
    let mut c = config();
    c.key = Some(b"s3cret".to_vec());
    c.allow = Some(HashSet::from([allowed]));
    let t = Tracker::bind(c).unwrap();
    let ih = percent_encode(&allowed);
    let pid = percent_encode(&peer_id(1));
    let base = |rest: &str| format!("/announce?{rest}");
    let ok = format!("info_hash={ih}&peer_id={pid}&port=6881&left=10&key=s3cret");
    let cases: Vec<(String, &str)> = vec![
        (
            base(&format!("peer_id={pid}&port=1&left=1&key=s3cret")),
            "missing info_hash",
        ),
        (
            base(&format!(
                "info_hash={}&peer_id={pid}&port=1&left=1&key=s3cret",
                percent_encode(&[1; 19])
            )),
            "info_hash must be 20 bytes, got 19",
        ),
        (
            base(&format!(
                "info_hash={}&peer_id={pid}&port=1&left=1&key=s3cret",
                percent_encode(&[1; 21])
            )),
            "info_hash must be 20 bytes, got 21",
        ),
        (
            base(&format!("info_hash={ih}&port=1&left=1&key=s3cret")),
            "missing peer_id",
        ),
        (
            base(&format!(
                "info_hash={ih}&peer_id=short&port=1&left=1&key=s3cret"
            )),
            "peer_id must be 20 bytes, got 5",
        ),
        (
            base(&format!("info_hash={ih}&peer_id={pid}&left=1&key=s3cret")),
            "missing port",
        ),
        (
            base(&format!(
                "info_hash={ih}&peer_id={pid}&port=0&left=1&key=s3cret"
            )),
            "invalid port",
        ),
        (
            base(&format!(
                "info_hash={ih}&peer_id={pid}&port=65536&left=1&key=s3cret"
            )),
            "invalid port",
        ),
        (
            base(&format!(
                "info_hash={ih}&peer_id={pid}&port=-1&left=1&key=s3cret"
            )),
            "invalid port",
        ),
        (
            base(&format!(
                "info_hash={ih}&peer_id={pid}&port=http&left=1&key=s3cret"
            )),
            "invalid port",
        ),
        (
            base(&format!(
                "info_hash=%G1{}&peer_id={pid}&port=1&left=1&key=s3cret",
                &ih[3..]
            )),
            "bad percent-escape in info_hash",
        ),
        (
            base(&format!(
                "info_hash={ih}&peer_id={}%4&port=1&left=1&key=s3cret",
                &pid[..pid.len() - 3]
            )),
            "bad percent-escape in peer_id",
        ),
        (
            base(&format!("info_hash={ih}&peer_id={pid}&port=1&key=s3cret")),
            "missing left",
        ),
        (
            base(&format!(
                "info_hash={ih}&peer_id={pid}&port=1&left=-5&key=s3cret"
            )),
            "invalid left: not an unsigned decimal",
        ),
        (
            base(&format!(
                "info_hash={ih}&peer_id={pid}&port=1&left=1&uploaded=1e9&key=s3cret"
            )),
            "invalid uploaded: not an unsigned decimal",
        ),
        (base(&format!("{ok}&numwant=lots")), "invalid numwant"),
        (base(&format!("{ok}&event=exploded")), "invalid event"),
        (
            base(&format!("info_hash={ih}&peer_id={pid}&port=6881&left=10")),
            "missing key",
        ),
        (
            base(&format!(
                "info_hash={ih}&peer_id={pid}&port=6881&left=10&key=guess"
            )),
            "invalid key",
        ),
        (
            base(&format!(
                "info_hash={}&peer_id={pid}&port=6881&left=10&key=s3cret",
                percent_encode(&[2; 20])
            )),
            "unregistered info_hash",
        ),
    ];
    for (target, reason) in &cases {
        assert_eq!(failure(&t, target), *reason, "for {target}");
    }
    // The good request passes, also with librqbit's own random key= before the secret.
    assert!(announce(&t, LO, &base(&ok)).failure().is_none());
    let two_keys =
        format!("info_hash={ih}&peer_id={pid}&port=6881&left=10&key=3635711595&key=s3cret");
    assert!(announce(&t, LO, &base(&two_keys)).failure().is_none());
    // A huge numwant is bounded, not refused.
    let huge = format!("{ok}&numwant=99999999999999999999999999999");
    let a = announce(&t, LO, &base(&huge));
    assert!(a.failure().is_none() && a.get("peers").is_some());
    // Scrape without info_hash, a malformed head, a non-GET method and unknown paths.
    let r = get_from(LO, t.local_addr(), "/scrape");
    assert_eq!(
        bdecode(&r.body).failure().as_deref(),
        Some("scrape needs at least one info_hash")
    );
    let r = get_from(LO, t.local_addr(), "/nothing-here");
    assert_eq!(r.status, 404);
    for (raw, status, reason) in [
        ("BROKEN\r\n\r\n", 400, Some("malformed HTTP request")),
        (
            "GET /announce HTTP/2.0\r\n\r\n",
            400,
            Some("malformed HTTP request"),
        ),
        (
            "POST /announce HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            405,
            None,
        ),
    ] {
        let mut s = connect_from(LO, t.local_addr());
        s.write_all(raw.as_bytes()).unwrap();
        let mut data = Vec::new();
        s.read_to_end(&mut data).unwrap();
        let (resp, _) = split_response(&data).unwrap();
        assert_eq!(resp.status, status, "{raw:?}");
        if let Some(reason) = reason {
            assert_eq!(bdecode(&resp.body).failure().as_deref(), Some(reason));
        }
    }
    // A request head larger than the bound is refused and the connection closed.
    let mut s = connect_from(LO, t.local_addr());
    let long = format!("GET /announce?{} HTTP/1.1\r\n", "a=b&".repeat(4000));
    let _ = s.write_all(long.as_bytes());
    let mut data = Vec::new();
    let _ = s.read_to_end(&mut data);
    let (resp, _) = split_response(&data).expect("an answer to an oversized request");
    assert_eq!(resp.status, 431);
    assert_eq!(
        bdecode(&resp.body).failure().as_deref(),
        Some("request too large")
    );
    // Every refusal was counted by reason.
    let m = t.metrics_text();
    for label in [
        "missing_info_hash 1",
        "info_hash_length 2",
        "bad_port 4",
        "wrong_key 1",
        "unknown_info_hash 1",
        "too_large 1",
    ] {
        let (reason, n) = label.split_once(' ').unwrap();
        assert!(
            m.contains(&format!(
                "blobpin_tracker_errors_total{{reason=\"{reason}\"}} {n}"
            )),
            "{label} not in\n{m}"
        );
    }
    // The server survived all of it.
    assert_eq!(get_from(LO, t.local_addr(), "/healthz").body, b"ok\n");
}

#[test]
fn overlay_over_http_from_distinct_loopback_racks() {
    let topo = Topology::parse(
        r#"
        [overlay]
        fanout = 1
        [[dc]]
        name = "ams"
        [[dc.rack]]
        name = "ams-r1"
        cidrs = ["127.0.1.0/24"]
        [[dc.rack]]
        name = "ams-r2"
        cidrs = ["127.0.2.0/24"]
        [[dc]]
        name = "fra"
        [[dc.rack]]
        name = "fra-r1"
        cidrs = ["127.0.3.0/24"]
        "#,
    )
    .unwrap();
    let mut c = config();
    c.topology = Some(topo);
    c.origin = OriginMatcher {
        addrs: vec![(IpAddr::from([127, 0, 9, 1]), Some(7000))],
        peer_id_prefix: None,
    };
    let t = Tracker::bind(c).unwrap();
    let ih = [5u8; 20];
    let ip = |c: u8, d: u8| IpAddr::from([127, 0, c, d]);
    let sa = |c: u8, d: u8, port: u16| SocketAddr::new(ip(c, d), port);
    let ann = |from: IpAddr, n: u32, port: u16, left: u64| {
        announce(&t, from, &announce_query(&ih, &peer_id(n), port, left, ""))
    };
    // The origin seeds; it gets no peers.
    let a = ann(ip(9, 1), 1, 7000, 0);
    assert!(compact_peers(&a).is_empty());
    assert_eq!(a.get("complete").unwrap().int(), 1);
    // First host of each DC: fed by the origin. The second DC's gateway gets the first one
    // as its backup (a gateway may have one outside its DC), remote before origin.
    assert_eq!(
        compact_peers(&ann(ip(1, 1), 11, 6001, 100)),
        [sa(9, 1, 7000)]
    );
    assert_eq!(
        compact_peers(&ann(ip(3, 1), 31, 6003, 100)),
        [sa(1, 1, 6001), sa(9, 1, 7000)]
    );
    // Second host of rack ams-r1: parent 127.0.1.1 (same rack) only: nothing else in its
    // DC is ahead of it, and a host that is not a gateway never has the origin as backup.
    assert_eq!(
        compact_peers(&ann(ip(1, 2), 12, 6001, 100)),
        [sa(1, 1, 6001)]
    );
    // First host of ams-r2: a rack head fed from ams-r1 (same DC), never over the WAN.
    let peers = compact_peers(&ann(ip(2, 1), 21, 6002, 100));
    assert_eq!(
        peers[0].ip(),
        ip(1, 2),
        "rack head fed from the DC: {peers:?}"
    );
    // Second host in fra: fed inside fra.
    let peers = compact_peers(&ann(ip(3, 2), 32, 6003, 100));
    assert_eq!(peers[0], sa(3, 1, 6003));
    assert!(
        peers
            .iter()
            .all(|p| p.ip() == ip(3, 1) || p.ip() == ip(9, 1)),
        "{peers:?}"
    );
    // Non-compact answers carry the same peers as dictionaries.
    let a = announce(
        &t,
        ip(3, 2),
        &announce_query(&ih, &peer_id(32), 6003, 100, "").replace("compact=1", "compact=0"),
    );
    let Some(Bv::List(list)) = a.get("peers") else {
        panic!("no peer list: {a:?}")
    };
    assert_eq!(list[0].get("ip").unwrap().bytes(), b"127.0.3.1");
    assert_eq!(list[0].get("port").unwrap().int(), 6003);
    assert_eq!(list[0].get("peer id").unwrap().bytes(), &peer_id(31));
    // Scrape counts, metrics per DC and tier.
    let r = get_from(
        LO,
        t.local_addr(),
        &format!("/scrape?info_hash={}", percent_encode(&ih)),
    );
    let s = bdecode(&r.body);
    let f = s.get("files").unwrap();
    let Bv::Dict(files) = f else { panic!() };
    let counts = &files[&ih.to_vec()];
    assert_eq!(
        (
            counts.get("complete").unwrap().int(),
            counts.get("incomplete").unwrap().int()
        ),
        (1, 5)
    );
    let m = String::from_utf8(get_from(LO, t.local_addr(), "/metrics").body).unwrap();
    for line in [
        "blobpin_tracker_dc_peers{dc=\"ams\"} 3",
        "blobpin_tracker_dc_peers{dc=\"fra\"} 2",
        "blobpin_tracker_dc_gateways{dc=\"ams\"} 1",
        "blobpin_tracker_dc_gateways{dc=\"fra\"} 1",
        "blobpin_tracker_swarms 1",
        "blobpin_tracker_peers 6",
        "blobpin_tracker_scrapes_total 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in\n{m}");
    }
    assert!(m.contains("blobpin_tracker_handout_peers_total{tier=\"rack\"}"));
}

#[test]
fn keep_alive_and_pipelined_requests() {
    let t = Tracker::bind(config()).unwrap();
    let mut s = connect_from(IpAddr::from([127, 0, 4, 4]), t.local_addr());
    let ih = [9u8; 20];
    let mut both = String::new();
    for n in 0..2u32 {
        both += &format!(
            "GET {} HTTP/1.1\r\nHost: t\r\n\r\n",
            announce_query(&ih, &peer_id(n), 7000 + n as u16, 5, "")
        );
    }
    s.write_all(both.as_bytes()).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early");
        data.extend_from_slice(&buf[..n]);
        while let Some((resp, used)) = split_response(&data) {
            answers.push(resp);
            data.drain(..used);
        }
    }
    // The second announce sees the first peer, from this connection's source address.
    let second = bdecode(&answers[1].body);
    assert_eq!(
        compact_peers(&second),
        [SocketAddr::from(([127, 0, 4, 4], 7000))]
    );
    // The connection stays open for a third request.
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(split_response(&rest).unwrap().0.body, b"ok\n");
}

#[test]
fn ipv6_peers_come_back_in_peers6() {
    let mut c = config();
    c.listen = vec!["[::1]:0".parse().unwrap()];
    let t = Tracker::bind(c).unwrap();
    let ih = [6u8; 20];
    let v6: IpAddr = "::1".parse().unwrap();
    announce(&t, v6, &announce_query(&ih, &peer_id(1), 6001, 5, ""));
    let a = announce(&t, v6, &announce_query(&ih, &peer_id(2), 6002, 5, ""));
    let p6 = a.get("peers6").expect("no peers6").bytes();
    assert_eq!(p6.len(), 18);
    assert_eq!(
        &p6[..16],
        &"::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(u16::from_be_bytes([p6[16], p6[17]]), 6001);
    assert!(compact_peers(&a).is_empty());
}

#[test]
fn allow_list_changes_at_run_time_and_embeds_in_a_tokio_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = config();
        c.allow = Some(HashSet::new());
        let t = Tracker::bind(c).unwrap();
        let h = [3u8; 20];
        let q = announce_query(&h, &peer_id(1), 6001, 5, "");
        let addr = t.local_addr();
        let get =
            |q: String| tokio::task::spawn_blocking(move || bdecode(&get_from(LO, addr, &q).body));
        assert_eq!(
            get(q.clone()).await.unwrap().failure().as_deref(),
            Some("unregistered info_hash")
        );
        t.allow(h);
        assert!(get(q.clone()).await.unwrap().failure().is_none());
        t.disallow(&h);
        assert_eq!(
            get(q.clone()).await.unwrap().failure().as_deref(),
            Some("unregistered info_hash")
        );
        t.set_allowed(None);
        assert!(get(q).await.unwrap().failure().is_none());
        t.shutdown();
    });
    // After shutdown the port is closed.
}

#[test]
fn shutdown_closes_the_listener() {
    let t = Tracker::bind(config()).unwrap();
    let addr = t.local_addr();
    assert_eq!(get_from(LO, addr, "/healthz").status, 200);
    t.shutdown();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening after shutdown"
    );
}

#[test]
fn several_listen_addresses_serve_the_same_swarms() {
    let mut c = config();
    c.listen = vec![
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "[::1]:0".parse().unwrap(),
    ];
    let t = Tracker::bind(c).unwrap();
    let addrs = t.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert!(addrs.iter().all(|a| a.port() != 0));
    let ih = [4u8; 20];
    let v6: IpAddr = "::1".parse().unwrap();
    // A peer announced over IPv4 is seen by a peer announcing over IPv6, and back.
    let q = announce_query(&ih, &peer_id(1), 6001, 5, "");
    assert_eq!(get_from(LO, addrs[0], &q).status, 200);
    let a = bdecode(&get_from(v6, addrs[1], &announce_query(&ih, &peer_id(2), 6002, 5, "")).body);
    assert_eq!(
        compact_peers(&a),
        [SocketAddr::from(([127, 0, 0, 1], 6001))]
    );
    let a = bdecode(&get_from(LO, addrs[0], &q).body);
    assert_eq!(a.get("peers6").map(|p| p.bytes().len()), Some(18));
}
