//! `blobpin tracker` as a command: starts on port 0 and prints its address, enforces
//! `--key` and `--allow`, re-reads the allow-list on SIGHUP, exits 0 on SIGTERM, and refuses
//! bad files and flags with a message naming them.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::{blobpin, Scratch};

use super::{announce_query, bdecode, get_from};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn command_serves_reloads_allow_list_on_sighup_and_stops_on_sigterm() {
    let dir = Scratch::new("tracker-cli");
    let allow = dir.path("allow.txt");
    let (a, b) = ([0xaa; 20], [0xbb; 20]);
    let hex = blobpin::tracker::protocol::hex;
    std::fs::write(&allow, format!("# published\n{}\n", hex(&a))).unwrap();
    let mut child = Command::new(blobpin())
        .args([
            "tracker",
            "--listen",
            "127.0.0.1:0",
            "--key",
            "k1",
            "--interval",
            "10",
            "--min-interval",
            "2",
        ])
        .arg("--allow")
        .arg(&allow)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("blobpin tracker: listening on http://")
        .and_then(|s| s.strip_suffix("/announce"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    let ann = |h: &[u8; 20], key: &str| {
        bdecode(
            &get_from(
                LO,
                addr,
                &announce_query(h, b"-TT0001-abcdefghijkl", 6881, 1, &format!("&key={key}")),
            )
            .body,
        )
    };
    let ok = ann(&a, "k1");
    assert!(ok.failure().is_none(), "{ok:?}");
    assert_eq!(ok.get("interval").unwrap().int(), 10);
    assert_eq!(ok.get("min interval").unwrap().int(), 2);
    assert_eq!(ann(&a, "k2").failure().as_deref(), Some("invalid key"));
    assert_eq!(
        ann(&b, "k1").failure().as_deref(),
        Some("unregistered info_hash")
    );
    // Publish b, drop a, and tell the tracker.
    std::fs::write(&allow, format!("{}\n", hex(&b))).unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGHUP).unwrap();
    let mut reloaded = false;
    for _ in 0..500 {
        if ann(&b, "k1").failure().is_none() {
            reloaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(reloaded, "SIGHUP did not reload the allow-list");
    assert_eq!(
        ann(&a, "k1").failure().as_deref(),
        Some("unregistered info_hash")
    );
    kill(pid, Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM should exit 0");
}

#[test]
fn bad_files_and_flags_are_refused_naming_them() {
    let dir = Scratch::new("tracker-cli-bad");
    let topo = dir.path("topo.toml");
    std::fs::write(
        &topo,
        "[[dc]]\nname = \"a\"\n[[dc.rack]]\nname = \"r\"\ncidrs = [\"127.0.1.0/33\"]\n",
    )
    .unwrap();
    let allow = dir.path("allow.txt");
    std::fs::write(&allow, "not-a-hash\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(blobpin())
            .arg("tracker")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let t = topo.to_str().unwrap();
    let (code, err) = run(&["--listen", "127.0.0.1:0", "--topology", t]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("blobpin: topology ") && err.contains(t) && err.contains("127.0.1.0/33"),
        "{err}"
    );
    let al = allow.to_str().unwrap();
    let (code, err) = run(&["--listen", "127.0.0.1:0", "--allow", al]);
    assert_eq!(code, Some(1));
    assert!(err.contains(al) && err.contains("line 1"), "{err}");
    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--topology",
        &dir.path("missing.toml").display().to_string(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("missing.toml"), "{err}");
    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "5",
        "--min-interval",
        "6",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--min-interval"), "{err}");
    let (code, err) = run(&["--listen", "127.0.0.1:0", "--origin", "not-an-ip"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--origin"), "{err}");
    let (code, _) = run(&["--listen", "nonsense"]);
    assert_eq!(code, Some(2), "clap rejects a bad --listen");
}
