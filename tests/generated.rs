//! The checked-in man pages and shell completions must be exactly what `blobpin generate`
//! renders from the clap definition. With `BLOBPIN_BLESS=1` the test rewrites them (and
//! still fails, so a bless never passes silently).

use std::fs;
use std::path::Path;

use crate::common::{run, Scratch};

#[test]
fn man_pages_and_completions_are_up_to_date() {
    let scratch = Scratch::new("generated");
    let r = run(&scratch.dir, ["generate", "--out", "."]);
    assert_eq!(r.code, Some(0), "generate failed: {}", r.err());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for sub in ["man", "completions"] {
        let mut names: Vec<_> = fs::read_dir(scratch.path(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let fresh = fs::read(scratch.path(sub).join(&name)).unwrap();
            let checked_in = repo.join(sub).join(&name);
            if fs::read(&checked_in).ok().as_deref() != Some(&fresh[..]) {
                stale.push(checked_in.display().to_string());
                if std::env::var_os("BLOBPIN_BLESS").is_some() {
                    fs::write(&checked_in, &fresh).unwrap();
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files (run `cargo run -- generate --out .` or BLOBPIN_BLESS=1 cargo test generated): {stale:?}"
    );
}

#[test]
fn generated_output_is_deterministic() {
    let a = Scratch::new("gen-a");
    let b = Scratch::new("gen-b");
    assert_eq!(run(&a.dir, ["generate", "--out", "."]).code, Some(0));
    assert_eq!(run(&b.dir, ["generate", "--out", "."]).code, Some(0));
    let page_a = fs::read(a.path("man/blobpin.1")).unwrap();
    let page_b = fs::read(b.path("man/blobpin.1")).unwrap();
    assert_eq!(page_a, page_b);
    let text = String::from_utf8(page_a).unwrap();
    assert!(
        text.contains("VMTOUCH MODE"),
        "hand-written sections missing"
    );
    assert!(
        !text.contains(env!("CARGO_MANIFEST_DIR")),
        "a path leaked into the man page"
    );
}
