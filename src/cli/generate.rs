//! `blobpin generate`: renders the man pages and shell completions from the clap definition,
//! plus the hand-written man sections in `man_extra.roff`. The output is deterministic (no
//! dates, no paths) so the checked-in copies can be compared byte for byte by a test.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use clap_complete::Shell;

/// Hand-written sections appended to `blobpin.1`.
const EXTRA: &str = include_str!("man_extra.roff");

/// Every file `generate` writes, as (path relative to the output dir, contents).
pub fn files() -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let cmd = super::command();
    let mut main = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone()).date("");
    man.render(&mut main)?;
    main.extend_from_slice(EXTRA.as_bytes());
    files.push(("man/blobpin.1".to_string(), main));
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("blobpin-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).display_name(name.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).date("").render(&mut page)?;
        files.push((format!("man/{name}.1"), page));
    }
    for (shell, file) in [
        (Shell::Bash, "blobpin.bash"),
        (Shell::Zsh, "_blobpin"),
        (Shell::Fish, "blobpin.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut super::command(), "blobpin", &mut buf);
        files.push((format!("completions/{file}"), buf));
    }
    Ok(files)
}

/// Writes every generated file under `out`.
pub fn run(out: &Path) -> Result<()> {
    for (rel, data) in files()? {
        let path = out.join(&rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
