//! The modern subcommands (`stat`, `touch`, `evict`, `lock`) and what they add over vmtouch:
//! the JSON contract, honest residency, touching only missing pages, exit codes, no SIGBUS.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{blobpin, run, without_cache_drop, Run, Scratch};

const MIB: u64 = 1 << 20;

fn json(r: &Run) -> Value {
    serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", r.out(), r.err()))
}

fn stat_json(dir: &Path, path: &Path) -> Value {
    let r = run(dir, [Path::new("stat"), Path::new("--json"), path]);
    assert_eq!(r.code, Some(0), "stat failed: {}", r.err());
    json(&r)
}

fn resident_pages(dir: &Path, path: &Path) -> u64 {
    stat_json(dir, path)["totals"]["resident_pages"]
        .as_u64()
        .unwrap()
}

#[test]
fn json_report_follows_the_schema() {
    let s = Scratch::new("modern-json");
    let f = s.file("data/a.bin", (2 * MIB) as usize);
    s.file("data/sub/b.bin", 10_000);
    let v = stat_json(&s.dir, &s.path("data"));
    assert_eq!(v["schema"], "blobpin.residency/1");
    assert_eq!(v["operation"], "stat");
    assert_eq!(v["page_size"], 4096);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let a = files
        .iter()
        .find(|x| x["path"].as_str().unwrap().ends_with("a.bin"))
        .unwrap();
    assert_eq!(a["size"], 2 * MIB);
    assert_eq!(a["pages"], 512);
    assert_eq!(a["offset"], 0);
    assert_eq!(a["length"], 2 * MIB);
    assert!(a["method"] == "cachestat" || a["method"] == "mincore");
    let t = &v["totals"];
    assert_eq!(t["files"], 2);
    assert_eq!(t["directories"], 2);
    assert_eq!(t["pages"], 512 + 3);
    assert_eq!(t["bytes"], (512 + 3) * 4096);
    assert!(v["warnings"].as_array().unwrap().is_empty());
    assert!(v["elapsed_seconds"].as_f64().unwrap() >= 0.0);
    assert!(f.exists());
}

#[test]
fn evict_then_touch_round_trip() {
    let s = Scratch::new("modern-touch");
    let f = s.file("blob", (8 * MIB) as usize);
    without_cache_drop(|| {
        let r = run(&s.dir, [Path::new("evict"), &f]);
        assert_eq!(r.code, Some(0), "{}", r.err());
        let after_evict = resident_pages(&s.dir, &f);
        let r = run(&s.dir, [Path::new("touch"), Path::new("--json"), &f]);
        assert_eq!(r.code, Some(0), "{}", r.err());
        let v = json(&r);
        let file = &v["files"][0];
        let after_touch = resident_pages(&s.dir, &f);
        (after_evict == 0
            && file["resident_pages"] == 0
            && file["resident_pages_after"] == 2048
            && after_touch == 2048)
            .then_some(())
    });
}

#[test]
fn touch_reads_only_the_missing_range() {
    let s = Scratch::new("modern-partial");
    let f = s.file("blob", (64 * MIB) as usize);
    without_cache_drop(|| {
        // 2 MiB-aligned ranges: large folios make smaller partial evictions unreliable.
        assert_eq!(run(&s.dir, [Path::new("touch"), &f]).code, Some(0));
        assert_eq!(
            run(
                &s.dir,
                [
                    Path::new("evict"),
                    Path::new("--range"),
                    Path::new("16M-"),
                    &f
                ]
            )
            .code,
            Some(0)
        );
        let v = stat_json(&s.dir, &f);
        let before = v["totals"]["resident_pages"].as_u64().unwrap();
        let r = run(&s.dir, [Path::new("touch"), Path::new("--json"), &f]);
        let t = json(&r);
        let after = resident_pages(&s.dir, &f);
        (before == 4096 && t["files"][0]["resident_pages"] == 4096 && after == 16384).then_some(())
    });
}

#[test]
fn range_include_exclude_and_max_size() {
    let s = Scratch::new("modern-filters");
    s.file("d/keep.idx", 100_000);
    s.file("d/skip.tmp", 100_000);
    s.file("d/big.idx", (3 * MIB) as usize);
    s.file("d/cache/x.idx", 5000);
    let r = run(
        &s.dir,
        [
            "stat",
            "--json",
            "--include",
            "*.idx",
            "--exclude",
            "cache",
            "--max-file-size",
            "1M",
            "--range",
            "4k-",
            "d",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.err());
    let v = json(&r);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{v}");
    assert!(files[0]["path"].as_str().unwrap().ends_with("keep.idx"));
    assert_eq!(files[0]["offset"], 4096);
    assert_eq!(files[0]["length"], 100_000 - 4096);
    // big.idx is skipped as too large: a rule, so the run still succeeds.
    assert_eq!(v["warnings"][0]["kind"], "too-large");
}

#[test]
fn exit_codes_and_messages() {
    let s = Scratch::new("modern-exit");
    s.file("ok", 4096);
    let missing = run(&s.dir, ["stat", "ok", "nope"]);
    assert_eq!(missing.code, Some(3), "{}", missing.err());
    assert!(missing
        .err()
        .contains("unable to stat nope (No such file or directory)"));
    assert!(missing.out().contains("files: 1"));

    let bad_range = run(&s.dir, ["stat", "--range", "16M-8M", "ok"]);
    assert_eq!(bad_range.code, Some(1));
    assert!(bad_range.err().contains("--range"), "{}", bad_range.err());
    assert!(bad_range.err().contains("range limits out of order"));

    let bad_glob = run(&s.dir, ["stat", "--include", "a{b", "ok"]);
    assert_eq!(bad_glob.code, Some(1));
    assert!(bad_glob.err().contains("--include"), "{}", bad_glob.err());

    let usage = run(&s.dir, ["stat", "--frobnicate", "ok"]);
    assert_eq!(usage.code, Some(2));
    let no_paths = run(&s.dir, ["touch"]);
    assert_eq!(no_paths.code, Some(2));
}

#[test]
fn first_argument_decides_the_face() {
    let s = Scratch::new("modern-face");
    s.file("stat", 4096);
    // A file named like a subcommand is reached after `--`, in vmtouch mode.
    let r = run(&s.dir, ["--", "stat"]);
    assert_eq!(r.code, Some(0), "{}", r.err());
    assert!(r.out().contains("           Files: 1\n"), "{}", r.out());
    // vmtouch flags first: vmtouch mode, with vmtouch's usage on error.
    let r = run(&s.dir, ["-z"]);
    assert_eq!(r.code, Some(1));
    assert!(r
        .out()
        .contains("vmtouch v1.3.1 - the Virtual Memory Toucher"));
    // A bare blobpin prints blobpin's help.
    let r = run(&s.dir, Vec::<&str>::new());
    assert_eq!(r.code, Some(2));
    assert!(r.out().contains("Usage: blobpin <COMMAND>"));
}

/// Needs root: the file belongs to root and is read by `nobody`, who may not write it. Linux
/// >= 5.2 then makes mincore report every page resident; blobpin must not repeat that lie.
#[test]
fn residency_is_unknown_without_write_permission() {
    let s = Scratch::new("modern-honest");
    fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let f = s.file("rootfile", (4 * MIB) as usize);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let as_nobody = |args: &[&str]| -> Run {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(blobpin())
            .args(args)
            .arg(&f)
            .current_dir(&s.dir)
            .stdin(Stdio::null())
            .output()
            .expect("setpriv (util-linux) is needed; the test must run as root")
            .into()
    };
    without_cache_drop(|| {
        assert_eq!(run(&s.dir, [Path::new("evict"), &f]).code, Some(0));
        let honest = as_nobody(&["stat", "--json"]);
        assert_eq!(honest.code, Some(0), "{}", honest.err());
        let v = json(&honest);
        let fake = as_nobody(&[]);
        let root_view = resident_pages(&s.dir, &f);
        (root_view == 0
            && v["files"][0]["resident_pages"].is_null()
            && v["totals"]["unmeasured_pages"] == 1024
            && v["warnings"][0]["kind"] == "unmeasurable"
            // vmtouch mode repeats what the kernel says, as vmtouch does.
            && fake.out().contains("Resident Pages: 1024/1024"))
        .then_some(())
    });
}

#[test]
fn terabyte_sparse_file_is_counted_without_scanning() {
    let s = Scratch::new("modern-sparse");
    let f = s.path("sparse");
    let file = fs::File::create(&f).unwrap();
    file.set_len(1 << 40).unwrap();
    let v = stat_json(&s.dir, &f);
    assert_eq!(v["totals"]["pages"], (1u64 << 40) / 4096);
    assert_eq!(v["totals"]["resident_pages"], 0);
}

#[test]
fn lock_holds_until_sigterm_and_removes_the_pidfile() {
    let s = Scratch::new("modern-lock");
    let f = s.file("locked.bin", (16 * MIB) as usize);
    let pidfile = s.path("lock.pid");
    let child = Command::new(blobpin())
        .args(["lock", "--pidfile"])
        .arg(&pidfile)
        .arg(&f)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "pidfile never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id();
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let vmlck_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert!(vmlck_kb >= 16 * 1024, "VmLck {vmlck_kb} kB");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("locked: 16 MiB"));
    assert!(!pidfile.exists(), "pidfile left behind");
}

/// A file truncated while it is being touched must never kill blobpin with SIGBUS (vmtouch
/// dies there, issue #14): every run ends with an exit status, not a signal.
#[test]
fn shrinking_file_never_raises_sigbus() {
    let s = Scratch::new("modern-shrink");
    let f = s.path("shrinking");
    for delay_ms in [0u64, 2, 5, 10, 20] {
        fs::File::create(&f).unwrap().set_len(2 << 30).unwrap();
        let child = Command::new(blobpin())
            .args(["touch", "--quiet"])
            .arg(&f)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.code().is_some(),
            "killed by a signal after {delay_ms} ms: {:?}",
            out.status
        );
        let _ = run(&s.dir, [Path::new("evict"), &f]);
    }
}
