//! `blobpin doctor` against `--sysroot` fixtures: the limits.conf evaluator table (every
//! pam_limits rule), PAM stacks, systemd units, process facts, memory cgroups (v1 and v2),
//! containers; JSON contract and exit statuses. All pure fixtures: no privileges needed.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::common::{run, Scratch};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000::/home/alice:/bin/sh
bob:x:1500:1500::/home/bob:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";
const GROUP: &str = "root:x:0:
video:x:44:alice
alice:x:1000:
bob:x:1500:
dev:x:2000:alice,bob
nogroup:x:65534:
";
const PAM_LOGIN: &str = "auth optional pam_faildelay.so delay=3000000\n@include common-session\nsession    required   pam_limits.so\n";

/// A sysroot: passwd, group, Debian marker, a login PAM stack with pam_limits; then `files`
/// (path relative to the root, content; content "-" removes the file).
fn sysroot(s: &Scratch, files: &[(&str, &str)]) -> std::path::PathBuf {
    let root = s.path("root");
    let base: &[(&str, &str)] = &[
        ("etc/passwd", PASSWD),
        ("etc/group", GROUP),
        ("etc/debian_version", "12.8\n"),
        ("etc/pam.d/login", PAM_LOGIN),
        ("etc/pam.d/common-session", "session required pam_unix.so\n"),
        ("etc/security/limits.conf", "# empty\n"),
    ];
    for (p, c) in base.iter().chain(files) {
        let path = root.join(p);
        if *c == "-" {
            let _ = fs::remove_file(&path);
            continue;
        }
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, c).unwrap();
    }
    root
}

fn doctor(root: &Path, extra: &[&str]) -> (Value, i32, String) {
    let mut args = vec![
        "doctor".to_string(),
        "--json".into(),
        "--sysroot".into(),
        root.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let r = run(root, &args);
    let v: Value = serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("doctor JSON: {e}\nstdout: {}\nstderr: {}", r.out(), r.err()));
    (v, r.code.expect("exit code"), r.err())
}

fn ids(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

const INF: u64 = u64::MAX;

/// One situation of the evaluator table.
struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    user: &'static str,
    /// (bytes, file suffix, line) or None for "not set".
    soft: Option<(u64, &'static str, u64)>,
    hard: Option<(u64, &'static str, u64)>,
    findings: &'static [&'static str],
    absent: &'static [&'static str],
}

const LC: &str = "etc/security/limits.conf";

fn check_value(case: &str, v: &Value, which: &str, want: Option<(u64, &str, u64)>) {
    let got = &v["limits"][which];
    match want {
        None => assert!(got.is_null(), "{case}: {which} should be unset, got {got}"),
        Some((bytes, file, line)) => {
            assert_eq!(
                got["bytes"].as_u64(),
                Some(bytes),
                "{case}: {which} bytes ({got})"
            );
            let f = got["source"]["file"].as_str().unwrap();
            assert!(
                f.ends_with(file),
                "{case}: {which} decided by {f}, expected {file}"
            );
            assert_eq!(
                got["source"]["line"].as_u64(),
                Some(line),
                "{case}: {which} line"
            );
        }
    }
}

#[test]
fn limits_conf_evaluator_table() {
    let cases: &[Case] = &[
        Case {
            name: "user line, both",
            files: &[(LC, "alice - memlock 1024\n")],
            user: "alice",
            soft: Some((1 << 20, LC, 1)),
            hard: Some((1 << 20, LC, 1)),
            findings: &["limits-predicted"],
            absent: &["limits-unit-suffix"],
        },
        Case {
            name: "soft only",
            files: &[(LC, "alice soft memlock 2048\n")],
            user: "alice",
            soft: Some((2 << 20, LC, 1)),
            hard: None,
            findings: &[],
            absent: &[],
        },
        Case {
            name: "hard only",
            files: &[(LC, "\n\nalice hard memlock 4096\n")],
            user: "alice",
            soft: None,
            hard: Some((4 << 20, LC, 3)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "unlimited",
            files: &[(LC, "alice - memlock unlimited\n")],
            user: "alice",
            soft: Some((INF, LC, 1)),
            hard: Some((INF, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "infinity",
            files: &[(LC, "alice hard memlock infinity\n")],
            user: "alice",
            soft: None,
            hard: Some((INF, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "-1 is unlimited",
            files: &[(LC, "alice soft memlock -1\n")],
            user: "alice",
            soft: Some((INF, LC, 1)),
            hard: None,
            findings: &[],
            absent: &[],
        },
        Case {
            name: "64m is 64 KiB",
            files: &[("etc/security/limits.d/91-x.conf", "alice - memlock 64m\n")],
            user: "alice",
            soft: Some((64 << 10, "91-x.conf", 1)),
            hard: Some((64 << 10, "91-x.conf", 1)),
            findings: &["limits-unit-suffix"],
            absent: &[],
        },
        Case {
            name: "type and item case-insensitive",
            files: &[(LC, "alice SOFT MEMLOCK 10\n")],
            user: "alice",
            soft: Some((10 << 10, LC, 1)),
            hard: None,
            findings: &[],
            absent: &[],
        },
        Case {
            name: "trailing comment",
            files: &[(LC, "alice - memlock 100 # hundred\n#alice - memlock 5\n")],
            user: "alice",
            soft: Some((100 << 10, LC, 1)),
            hard: Some((100 << 10, LC, 1)),
            findings: &[],
            absent: &["limits-invalid-line"],
        },
        Case {
            name: "three fields skipped",
            files: &[(LC, "alice - memlock\nalice - memlock 7\n")],
            user: "alice",
            soft: Some((7 << 10, LC, 2)),
            hard: Some((7 << 10, LC, 2)),
            findings: &["limits-invalid-line"],
            absent: &[],
        },
        Case {
            name: "non-numeric value skipped",
            files: &[(LC, "alice - memlock lots\n")],
            user: "alice",
            soft: None,
            hard: None,
            findings: &["limits-invalid-line"],
            absent: &[],
        },
        Case {
            name: "user beats a later *",
            files: &[(LC, "alice - memlock 1024\n* - memlock 4096\n")],
            user: "alice",
            soft: Some((1 << 20, LC, 1)),
            hard: Some((1 << 20, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "* in limits.d overrides * in limits.conf",
            files: &[
                (LC, "* - memlock 1\n"),
                ("etc/security/limits.d/10-a.conf", "* - memlock 2\n"),
            ],
            user: "bob",
            soft: Some((2 << 10, "10-a.conf", 1)),
            hard: Some((2 << 10, "10-a.conf", 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "user in limits.conf not overridden by * in limits.d",
            files: &[
                (LC, "bob - memlock 3\n"),
                ("etc/security/limits.d/10-a.conf", "* - memlock 9\n"),
            ],
            user: "bob",
            soft: Some((3 << 10, LC, 1)),
            hard: Some((3 << 10, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "supplementary @group",
            files: &[(LC, "@video - memlock 44\n")],
            user: "alice",
            soft: Some((44 << 10, LC, 1)),
            hard: Some((44 << 10, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "user beats a later @group",
            files: &[(LC, "alice soft memlock 5\n@video soft memlock 6\n")],
            user: "alice",
            soft: Some((5 << 10, LC, 1)),
            hard: None,
            findings: &[],
            absent: &[],
        },
        Case {
            name: "@group beats a later *",
            files: &[(LC, "@dev hard memlock 20\n* hard memlock 30\n")],
            user: "bob",
            soft: None,
            hard: Some((20 << 10, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "later of two groups wins",
            files: &[(LC, "@video soft memlock 7\n@dev soft memlock 8\n")],
            user: "alice",
            soft: Some((8 << 10, LC, 2)),
            hard: None,
            findings: &[],
            absent: &[],
        },
        Case {
            name: "uid range ranks as user",
            files: &[(LC, "1000:2000 - memlock 11\n@video - memlock 12\n")],
            user: "alice",
            soft: Some((11 << 10, LC, 1)),
            hard: Some((11 << 10, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: ":uid is an exact uid",
            files: &[(LC, ":1000 - memlock 13\n:1500 - memlock 14\n")],
            user: "bob",
            soft: Some((14 << 10, LC, 2)),
            hard: Some((14 << 10, LC, 2)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "min: range",
            files: &[(LC, "1001: - memlock 15\n")],
            user: "alice",
            soft: None,
            hard: None,
            findings: &[],
            absent: &[],
        },
        Case {
            name: "gid range on the primary group",
            files: &[(LC, "@1000:1999 soft memlock 16\n")],
            user: "alice",
            soft: Some((16 << 10, LC, 1)),
            hard: None,
            findings: &[],
            absent: &[],
        },
        Case {
            name: "@min: checks the primary gid only",
            files: &[(LC, "@2000: soft memlock 17\n")],
            user: "alice",
            soft: None,
            hard: None,
            findings: &[],
            absent: &[],
        },
        Case {
            name: "@:gid exact, supplementary too",
            files: &[(LC, "@:2000 hard memlock 18\n")],
            user: "alice",
            soft: None,
            hard: Some((18 << 10, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "% lines are ignored for memlock",
            files: &[(LC, "% - memlock 19\n%dev - memlock 19\n")],
            user: "alice",
            soft: None,
            hard: None,
            findings: &["limits-percent-ignored"],
            absent: &[],
        },
        Case {
            name: "'user -' means no limits at all",
            files: &[
                (LC, "alice - memlock 20\nalice -\n"),
                ("etc/security/limits.d/a.conf", "alice - memlock 21\n"),
            ],
            user: "alice",
            soft: None,
            hard: None,
            findings: &["limits-no-limits-entry"],
            absent: &[],
        },
        Case {
            name: "Debian: * does not apply to root",
            files: &[(LC, "* - memlock 4096\n")],
            user: "root",
            soft: None,
            hard: None,
            findings: &["limits-root-wildcard"],
            absent: &[],
        },
        Case {
            name: "Debian: @group does not apply to root",
            files: &[(LC, "@root - memlock 4096\n")],
            user: "root",
            soft: None,
            hard: None,
            findings: &["limits-root-wildcard"],
            absent: &[],
        },
        Case {
            name: "Debian: * still applies to nobody",
            files: &[(LC, "* - memlock 4096\n")],
            user: "nobody",
            soft: Some((4 << 20, LC, 1)),
            hard: Some((4 << 20, LC, 1)),
            findings: &[],
            absent: &["limits-root-wildcard"],
        },
        Case {
            name: "upstream PAM: * applies to root",
            files: &[("etc/debian_version", "-"), (LC, "* - memlock 4096\n")],
            user: "root",
            soft: Some((4 << 20, LC, 1)),
            hard: Some((4 << 20, LC, 1)),
            findings: &[],
            absent: &["limits-root-wildcard"],
        },
        Case {
            name: "literal root applies",
            files: &[(LC, "root - memlock 2048\n")],
            user: "root",
            soft: Some((2 << 20, LC, 1)),
            hard: Some((2 << 20, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: ":0 applies to root",
            files: &[(LC, ":0 - memlock 555\n")],
            user: "root",
            soft: Some((555 << 10, LC, 1)),
            hard: Some((555 << 10, LC, 1)),
            findings: &[],
            absent: &[],
        },
        Case {
            name: "non-.conf files ignored",
            files: &[
                ("etc/security/limits.d/92-notconf", "alice - memlock 1\n"),
                ("etc/security/limits.d/.hidden.conf", "alice - memlock 2\n"),
            ],
            user: "alice",
            soft: None,
            hard: None,
            findings: &["limits-file-ignored"],
            absent: &[],
        },
        Case {
            name: "C-locale order: uppercase sorts before lowercase",
            files: &[
                ("etc/security/limits.d/50-a.conf", "alice soft memlock 50\n"),
                ("etc/security/limits.d/60-b.conf", "alice soft memlock 60\n"),
                (
                    "etc/security/limits.d/A-upper.conf",
                    "alice soft memlock 65\n",
                ),
                (
                    "etc/security/limits.d/b-lower.conf",
                    "alice soft memlock 66\n",
                ),
            ],
            user: "alice",
            soft: Some((66 << 10, "b-lower.conf", 1)),
            hard: None,
            findings: &[],
            absent: &[],
        },
        Case {
            name: "soft above hard",
            files: &[(LC, "alice soft memlock 5000\nalice hard memlock 2000\n")],
            user: "alice",
            soft: Some((5000 << 10, LC, 1)),
            hard: Some((2000 << 10, LC, 2)),
            findings: &["limits-soft-above-hard"],
            absent: &[],
        },
        Case {
            name: "other items are not memlock",
            files: &[(LC, "alice - nofile 1024\nalice - as unlimited\n")],
            user: "alice",
            soft: None,
            hard: None,
            findings: &[],
            absent: &["limits-invalid-line"],
        },
        Case {
            name: "user by uid",
            files: &[(LC, "bob - memlock 77\n")],
            user: "1500",
            soft: Some((77 << 10, LC, 1)),
            hard: Some((77 << 10, LC, 1)),
            findings: &[],
            absent: &[],
        },
    ];
    assert!(cases.len() >= 25);
    for c in cases {
        let s = Scratch::new("doctor-table");
        let root = sysroot(&s, c.files);
        let (v, code, err) = doctor(&root, &["--user", c.user]);
        assert!(code == 0 || code == 1, "{}: exit {code}: {err}", c.name);
        assert_eq!(v["schema"], "blobpin.doctor/1");
        assert_eq!(v["context"]["kind"], "login", "{}", c.name);
        check_value(c.name, &v, "soft", c.soft);
        check_value(c.name, &v, "hard", c.hard);
        let got = ids(&v);
        for f in c.findings {
            assert!(
                got.iter().any(|g| g == f),
                "{}: missing finding {f}; got {got:?}",
                c.name
            );
        }
        for f in c.absent {
            assert!(
                !got.iter().any(|g| g == f),
                "{}: unexpected finding {f}",
                c.name
            );
        }
    }
}

#[test]
fn verdict_for_a_login_session_follows_the_prediction() {
    let s = Scratch::new("doctor-verdict");
    let root = sysroot(
        &s,
        &[(
            LC,
            "alice hard memlock 1024\nalice soft memlock 512\nbob - memlock unlimited\n",
        )],
    );
    let (v, code, _) = doctor(&root, &["--user", "alice", "--size", "64M"]);
    assert_eq!(code, 1);
    assert_eq!(v["verdict"], "fail");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "memlock-hard-too-low")
        .expect("memlock-hard-too-low");
    let ev = f["evidence"].to_string();
    assert!(ev.contains("1048576 bytes (1024 KiB"), "{ev}");
    assert!(ev.contains("67108864 bytes (65536 KiB"), "{ev}");
    assert!(
        f["fix"]
            .to_string()
            .contains("alice hard memlock unlimited"),
        "{}",
        f["fix"]
    );
    let (v, code, _) = doctor(&root, &["--user", "bob", "--size", "64M"]);
    assert_eq!(code, 0, "{v}");
    assert!(ids(&v).contains(&"memlock-ok".to_string()));
    // 600 KiB: above alice's soft 512 KiB but within her hard 1024 KiB.
    let (v, code, _) = doctor(&root, &["--user", "alice", "--size", "600K"]);
    assert_eq!(code, 0);
    assert!(ids(&v).contains(&"memlock-soft-raisable".to_string()));
    // root logs in with CAP_IPC_LOCK.
    let (v, code, _) = doctor(&root, &["--user", "root", "--size", "64G"]);
    assert_eq!(code, 0);
    assert!(ids(&v).contains(&"cap-ipc-lock".to_string()));
}

#[test]
fn text_output_names_units() {
    let s = Scratch::new("doctor-text");
    let root = sysroot(&s, &[(LC, "alice - memlock 8192\n")]);
    let r = run(
        &root,
        [
            "doctor",
            "--sysroot",
            root.to_str().unwrap(),
            "--user",
            "alice",
            "--size",
            "64M",
        ],
    );
    assert_eq!(r.code, Some(1), "{}", r.err());
    let out = r.out();
    assert!(out.contains("verdict: will NOT work"), "{out}");
    assert!(out.contains("[error] memlock-hard-too-low"), "{out}");
    assert!(out.contains("8388608 bytes (8192 KiB, 8.0 MiB)"), "{out}");
    assert!(out.contains("written '8192' at "), "{out}");
}

#[test]
fn pam_stacks_and_includes() {
    let s = Scratch::new("doctor-pam");
    let root = sysroot(
        &s,
        &[
            // login has pam_limits only through an include of a file that has it.
            (
                "etc/pam.d/login",
                "@include common-auth\nsession include system-login\n",
            ),
            (
                "etc/pam.d/system-login",
                "session [success=ok default=ignore] /lib/security/pam_limits.so\n",
            ),
            ("etc/pam.d/common-auth", "auth required pam_unix.so\n"),
            // su includes common-session, which lacks it; su-l includes su.
            (
                "etc/pam.d/su",
                "@include common-session\n# session required pam_limits.so\n",
            ),
            ("etc/pam.d/su-l", "auth include su\nsession include su\n"),
            // sudo uses a private limits file.
            (
                "etc/pam.d/sudo",
                "session required pam_limits.so conf=/etc/security/sudo-limits.conf\n",
            ),
            // sshd has it but sshd does not use PAM.
            ("etc/pam.d/sshd", "session    required     pam_limits.so\n"),
            ("etc/ssh/sshd_config", "Port 22\nUsePAM no\n"),
            // cron has it on a continuation line.
            ("etc/pam.d/cron", "session \\\n required pam_limits.so\n"),
        ],
    );
    let (v, _, _) = doctor(&root, &["--user", "alice"]);
    let missing: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "pam-limits-missing")
        .map(|f| f["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(missing.iter().any(|m| m.contains("'su'")));
    assert!(missing.iter().any(|m| m.contains("'su-l'")));
    let stacks = v["pam"].as_array().unwrap();
    let login = stacks.iter().find(|s| s["service"] == "login").unwrap();
    assert!(
        login["limits_at"]
            .as_str()
            .unwrap()
            .ends_with("system-login:1"),
        "{login}"
    );
    let cron = stacks.iter().find(|s| s["service"] == "cron").unwrap();
    assert!(
        cron["limits_at"].as_str().unwrap().ends_with("cron:1"),
        "{cron}"
    );
    assert!(ids(&v).contains(&"pam-limits-conf-option".to_string()));
    assert!(ids(&v).contains(&"sshd-usepam-off".to_string()));
    // With UsePAM yes the sshd warning goes away.
    fs::write(root.join("etc/ssh/sshd_config"), "UsePAM yes\n").unwrap();
    let (v, _, _) = doctor(&root, &["--user", "alice"]);
    assert!(!ids(&v).contains(&"sshd-usepam-off".to_string()));
}

#[test]
fn systemd_units() {
    let s = Scratch::new("doctor-unit");
    let root = sysroot(&s, &[
        ("lib/systemd/system/idx.service", "[Unit]\nDescription=x\n[Service]\nUser=alice\nExecStart=/usr/bin/blobpin lock /data\n"),
        ("etc/systemd/system/inf.service", "[Service]\nUser=alice\nLimitMEMLOCK=infinity\n"),
        ("lib/systemd/system/amb.service", "[Service]\nUser=alice\nAmbientCapabilities=CAP_NET_BIND_SERVICE CAP_IPC_LOCK\n"),
        ("lib/systemd/system/bnd.service", "[Service]\nAmbientCapabilities=CAP_IPC_LOCK\nCapabilityBoundingSet=CAP_NET_ADMIN\nUser=alice\n"),
        ("lib/systemd/system/drop.service", "[Service]\nUser=alice\nLimitMEMLOCK=infinity\n"),
        ("etc/systemd/system/drop.service.d/10-small.conf", "[Service]\nLimitMEMLOCK=16M\n"),
        ("lib/systemd/system/rootsvc.service", "[Service]\nExecStart=/bin/true\n"),
        ("lib/systemd/system/tpl@.service", "[Service]\nUser=bob\nLimitMEMLOCK=1G:2G\n"),
    ]);
    let unit = |name: &str| {
        let (v, code, err) = doctor(&root, &["--unit", name, "--size", "64M"]);
        assert_eq!(v["context"]["kind"], "unit", "{err}");
        (ids(&v), code, v)
    };
    let (f, code, v) = unit("idx.service");
    assert_eq!(code, 1);
    assert!(f.contains(&"unit-limit-too-low".to_string()), "{f:?}");
    let t = v["findings"].to_string();
    assert!(
        t.contains("systemctl edit idx.service") && t.contains("LimitMEMLOCK=infinity"),
        "{t}"
    );
    assert!(t.contains("systemd built-in default (8M)"), "{t}");
    let (f, code, _) = unit("inf.service");
    assert_eq!(code, 0, "{f:?}");
    assert!(f.contains(&"unit-ok".to_string()));
    let (_, code, _) = unit("amb");
    assert_eq!(code, 0);
    let (f, code, _) = unit("bnd.service");
    assert_eq!(code, 1);
    assert!(f.contains(&"unit-bounding-set".to_string()));
    let (_, code, v) = unit("drop.service");
    assert_eq!(code, 1, "a drop-in lowers LimitMEMLOCK");
    assert!(v["unit"]["memlock"]["source"]
        .as_str()
        .unwrap()
        .ends_with("10-small.conf:2"));
    let (f, code, _) = unit("rootsvc.service");
    assert_eq!(code, 0, "root service has CAP_IPC_LOCK: {f:?}");
    let (_, code, v) = unit("tpl@one.service");
    assert_eq!(code, 0);
    assert_eq!(v["unit"]["memlock"]["value"][1].as_u64(), Some(2 << 30));
    let (f, _, _) = unit("nosuch.service");
    assert!(f.contains(&"unit-not-found".to_string()));
    // DefaultLimitMEMLOCK in system.conf.d raises the default for idx.service.
    fs::create_dir_all(root.join("etc/systemd/system.conf.d")).unwrap();
    fs::write(
        root.join("etc/systemd/system.conf.d/50-mem.conf"),
        "[Manager]\nDefaultLimitMEMLOCK=1G\n",
    )
    .unwrap();
    let (_, code, _) = unit("idx.service");
    assert_eq!(code, 0);
}

/// A process-context sysroot: /proc/self facts for uid `uid` with the given capabilities
/// and memlock limits.
fn proc_files(uid: u32, cap_eff: &str, soft: &str, hard: &str) -> Vec<(String, String)> {
    vec![
        (
            "proc/self/status".into(),
            format!("Name:\tblobpin\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nVmLck:\t       0 kB\nCapEff:\t{cap_eff}\nCapBnd:\t000001ffffffffff\nNoNewPrivs:\t0\nSeccomp:\t0\n"),
        ),
        (
            "proc/self/limits".into(),
            format!("Limit                     Soft Limit           Hard Limit           Units     \nMax locked memory         {soft}              {hard}              bytes     \nMax address space         unlimited            unlimited            bytes     \n"),
        ),
        ("proc/self/uid_map".into(), "         0          0 4294967295\n".into()),
        ("proc/sys/vm/max_map_count".into(), "65530\n".into()),
        ("proc/self/maps".into(), "00400000-00401000 r-xp 00000000 00:00 0 /bin/x\n".into()),
        ("proc/meminfo".into(), "MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\nMlocked:        0 kB\n".into()),
        ("proc/self/cgroup".into(), "0::/\n".into()),
    ]
}

fn proc_root(
    s: &Scratch,
    uid: u32,
    cap: &str,
    soft: &str,
    hard: &str,
    extra: &[(&str, &str)],
) -> std::path::PathBuf {
    let p = proc_files(uid, cap, soft, hard);
    let mut files: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    files.extend_from_slice(extra);
    sysroot(s, &files)
}

const NO_IPC_LOCK: &str = "000001fffeffbfff";
const ALL_CAPS: &str = "000001ffffffffff";

#[test]
fn process_limits_and_capabilities() {
    let s = Scratch::new("doctor-proc");
    let root = proc_root(&s, 0, NO_IPC_LOCK, "8388608", "8388608", &[]);
    let (v, code, _) = doctor(&root, &["--size", "64M"]);
    assert_eq!(code, 1);
    assert_eq!(v["context"]["kind"], "process");
    let f = ids(&v);
    assert!(f.contains(&"memlock-hard-too-low".to_string()), "{f:?}");
    assert!(f.contains(&"no-cap-sys-resource".to_string()), "{f:?}");
    let t = v["findings"].to_string();
    assert!(
        t.contains("8388608 bytes (8192 KiB") && t.contains("CAP_IPC_LOCK: missing"),
        "{t}"
    );

    let s = Scratch::new("doctor-proc");
    let root = proc_root(&s, 1000, "0000000000000000", "65536", "unlimited", &[]);
    let (v, code, _) = doctor(&root, &["--size", "64M"]);
    assert_eq!(code, 0);
    assert!(ids(&v).contains(&"memlock-soft-raisable".to_string()));

    let s = Scratch::new("doctor-proc");
    let root = proc_root(&s, 1000, "0000000000000000", "0", "0", &[]);
    let (v, code, _) = doctor(&root, &["--size", "4K"]);
    assert_eq!(code, 1);
    assert!(ids(&v).contains(&"memlock-zero".to_string()));
    assert!(v["findings"].to_string().contains("EPERM"));

    // Root in a user namespace: all caps in CapEff, but they do not count.
    let s = Scratch::new("doctor-proc");
    let root = proc_root(
        &s,
        0,
        ALL_CAPS,
        "8388608",
        "8388608",
        &[("proc/self/uid_map", "0 1000 1\n")],
    );
    let (v, code, _) = doctor(&root, &["--size", "64M"]);
    assert_eq!(code, 1);
    let f = ids(&v);
    assert!(
        f.contains(&"cap-ipc-lock-userns".to_string())
            && f.contains(&"memlock-hard-too-low".to_string()),
        "{f:?}"
    );

    // The same caps in the initial namespace: fine, and --max-lock is enforced.
    let s = Scratch::new("doctor-proc");
    let root = proc_root(&s, 0, ALL_CAPS, "8388608", "8388608", &[]);
    let (v, code, _) = doctor(&root, &["--size", "64M"]);
    assert_eq!(code, 0);
    assert!(ids(&v).contains(&"max-lock-unset".to_string()));
    let (v, code, _) = doctor(&root, &["--size", "64M", "--max-lock", "32M"]);
    assert_eq!(code, 1);
    assert!(ids(&v).contains(&"max-lock".to_string()));
}

#[test]
fn configured_vs_effective() {
    let s = Scratch::new("doctor-mismatch");
    let root = proc_root(
        &s,
        1000,
        "0000000000000000",
        "8388608",
        "8388608",
        &[
            (
                "etc/security/limits.d/90-blobpin.conf",
                "alice soft memlock unlimited\nalice hard memlock unlimited\n",
            ),
            (
                "proc/1/limits",
                "Max locked memory         8388608              8388608              bytes\n",
            ),
        ],
    );
    let (v, code, _) = doctor(&root, &["--size", "64M"]);
    assert_eq!(code, 1);
    let m = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "limits-mismatch")
        .expect("limits-mismatch");
    let ev = m["evidence"].to_string();
    assert!(ev.contains("no login session"), "{ev}");
    assert!(ev.contains("CAP_SYS_RESOURCE"), "{ev}");
    // From a login session (loginuid set) the reason is an old session.
    fs::write(root.join("proc/self/loginuid"), "1000").unwrap();
    let (v, _, _) = doctor(&root, &["--size", "64M"]);
    let m = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "limits-mismatch")
        .unwrap();
    assert!(
        m["evidence"].to_string().contains("before the change"),
        "{m}"
    );
    assert!(m["fix"].to_string().contains("new login"), "{m}");
}

#[test]
fn memory_cgroups_v1_and_v2() {
    let s = Scratch::new("doctor-cg1");
    let root = proc_root(
        &s,
        0,
        ALL_CAPS,
        "8388608",
        "8388608",
        &[
            ("proc/self/cgroup", "4:memory:/job/x\n0::/\n"),
            (
                "sys/fs/cgroup/memory/job/x/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "sys/fs/cgroup/memory/job/x/memory.stat",
                "cache 0\nhierarchical_memory_limit 104857600\n",
            ),
            (
                "sys/fs/cgroup/memory/job/x/memory.usage_in_bytes",
                "52428800\n",
            ),
            (
                "sys/fs/cgroup/memory/job/x/memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
        ],
    );
    let (v, code, _) = doctor(&root, &["--size", "64M"]);
    assert_eq!(code, 1);
    let f = ids(&v);
    assert!(
        f.contains(&"cgroup-limit".to_string()) && f.contains(&"cgroup-oom-kills".to_string()),
        "{f:?}"
    );
    assert!(v["findings"].to_string().contains("OOM-killed"));
    let (_, code, _) = doctor(&root, &["--size", "16M"]);
    assert_eq!(code, 0);
    fs::write(
        root.join("sys/fs/cgroup/memory/job/x/memory.oom_control"),
        "oom_kill_disable 1\nunder_oom 0\noom_kill 0\n",
    )
    .unwrap();
    let (v, _, _) = doctor(&root, &["--size", "64M"]);
    assert!(ids(&v).contains(&"cgroup-oom-kill-disable".to_string()));

    let s = Scratch::new("doctor-cg2");
    let root = proc_root(
        &s,
        0,
        ALL_CAPS,
        "8388608",
        "8388608",
        &[
            ("proc/self/cgroup", "0::/a/b\n"),
            ("sys/fs/cgroup/a/memory.max", "104857600\n"),
            ("sys/fs/cgroup/a/b/memory.max", "max\n"),
            ("sys/fs/cgroup/a/b/memory.current", "10485760\n"),
            (
                "sys/fs/cgroup/a/b/memory.events",
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
            ),
        ],
    );
    let (v, code, _) = doctor(&root, &["--size", "96M"]);
    assert_eq!(code, 1, "limit of the parent applies");
    assert_eq!(v["facts"]["cgroup"]["limit"].as_u64(), Some(100 << 20));
    assert_eq!(v["facts"]["cgroup"]["version"].as_u64(), Some(2));
    let (_, code, _) = doctor(&root, &["--size", "32M"]);
    assert_eq!(code, 0);
}

#[test]
fn containers_maps_memory_and_kernel() {
    let s = Scratch::new("doctor-misc");
    let root = proc_root(
        &s,
        0,
        NO_IPC_LOCK,
        "65536",
        "65536",
        &[
            (
                "proc/self/cgroup",
                "0::/system.slice/docker-0123abcd.scope\n",
            ),
            ("proc/sys/vm/max_map_count", "40\n"),
            (
                "proc/meminfo",
                "MemTotal: 4000000 kB\nMemAvailable: 1000 kB\n",
            ),
            ("proc/sys/kernel/osrelease", "5.10.0-28-amd64\n"),
            ("proc/sys/vm/overcommit_memory", "2\n"),
        ],
    );
    let (v, code, _) = doctor(&root, &["--size", "64M"]);
    assert_eq!(code, 1);
    assert_eq!(v["context"]["kind"], "container");
    let f = ids(&v);
    for want in [
        "container",
        "memlock-hard-too-low",
        "max-map-count",
        "mem-available",
        "kernel-old-default",
        "overcommit-strict",
    ] {
        assert!(f.contains(&want.to_string()), "missing {want}: {f:?}");
    }
    let t = v["findings"].to_string();
    assert!(
        t.contains("--ulimit memlock=-1:-1") && t.contains("--cap-add IPC_LOCK"),
        "{t}"
    );
    assert!(t.contains("vm.max_map_count="), "{t}");
}

#[test]
fn strict_and_usage_exit_codes() {
    let s = Scratch::new("doctor-exit");
    // Only a warning (a limits.d file that is ignored): 0, and 1 with --strict.
    let root = sysroot(
        &s,
        &[
            ("etc/security/limits.d/x.txt", "alice - memlock 1\n"),
            (LC, "alice - memlock unlimited\n"),
        ],
    );
    let (v, code, _) = doctor(&root, &["--user", "alice", "--size", "1M"]);
    assert_eq!((code, v["verdict"].as_str()), (0, Some("risk")));
    let (_, code, _) = doctor(&root, &["--user", "alice", "--size", "1M", "--strict"]);
    assert_eq!(code, 1);
    let bad = |args: &[&str]| run(&root, args).code;
    assert_eq!(
        bad(&[
            "doctor",
            "--sysroot",
            root.to_str().unwrap(),
            "--user",
            "nosuchuser"
        ]),
        Some(2)
    );
    assert_eq!(
        bad(&["doctor", "--sysroot", "/nonexistent-sysroot"]),
        Some(2)
    );
    assert_eq!(bad(&["doctor", "--size", "12Q"]), Some(2));
    assert_eq!(bad(&["doctor", "--size", "1M", "somefile"]), Some(2));
    assert_eq!(bad(&["doctor", "--bogus"]), Some(2));
}

#[test]
fn live_system_measures_paths() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root with CAP_IPC_LOCK (CI runs as root)"
    );
    let s = Scratch::new("doctor-live");
    s.file("d/a", 3 << 20);
    s.file("d/b", 5000);
    let r = run(&s.dir, ["doctor", "--json", "d"]);
    assert_eq!(r.code, Some(0), "{}", r.err());
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["request"]["files"].as_u64(), Some(2));
    assert_eq!(v["request"]["bytes"].as_u64(), Some((3 << 20) + 8192));
    assert_eq!(v["context"]["kind"], "process");
    assert!(ids(&v).contains(&"cap-ipc-lock".to_string()));
    // The same request without CAP_IPC_LOCK and with the limit lowered to 1 MiB.
    let out = std::process::Command::new("prlimit")
        .args([
            "--memlock=1048576:1048576",
            "setpriv",
            "--inh-caps=-ipc_lock",
            "--bounding-set=-ipc_lock",
            "--",
        ])
        .arg(crate::common::blobpin())
        .args(["doctor", "d"])
        .current_dir(&s.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[error] memlock-hard-too-low")
            && text.contains("1048576 bytes (1024 KiB, 1.0 MiB)"),
        "{text}"
    );
}
