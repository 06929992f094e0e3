//! The modern commands' text: one line per file with `--verbose`, then a summary with human
//! sizes (IEC units, or exact bytes with `--bytes`).

use std::io::{self, Write};

use humansize::{format_size, BINARY};

use crate::residency::{FileReport, Totals};

/// Formats a byte count for people, or exactly.
pub fn size(bytes: u64, exact: bool) -> String {
    if exact {
        bytes.to_string()
    } else {
        format_size(bytes, BINARY)
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

/// One file: `resident/total  percent  path` (resident after the operation for touch/lock).
pub fn file_line(out: &mut dyn Write, r: &FileReport, page: u64, exact: bool) -> io::Result<()> {
    let total = r.span.len;
    let resident = r.resident_after.or(r.resident_before);
    match resident {
        Some(p) => {
            let bytes = (p * page).min(total);
            writeln!(
                out,
                "{:>10} / {:<10} {:>6}  {}{}",
                size(bytes, exact),
                size(total, exact),
                percent(p, r.pages),
                r.path.display(),
                if r.locked { "  [locked]" } else { "" }
            )
        }
        None => writeln!(
            out,
            "{:>10} / {:<10} {:>6}  {}",
            "?",
            size(total, exact),
            "?",
            r.path.display()
        ),
    }
}

/// The summary after a run. `verb` is what happened to the pages ("resident", "touched",
/// "evicted", "locked").
pub fn summary(
    out: &mut dyn Write,
    verb: &str,
    t: &Totals,
    page: u64,
    elapsed: f64,
    exact: bool,
) -> io::Result<()> {
    writeln!(out, "files: {}  directories: {}", t.files, t.dirs)?;
    let total = t.pages * page;
    match verb {
        "resident" => {
            let measured = t.pages - t.unmeasured;
            write!(
                out,
                "resident: {} of {} ({})",
                size(t.resident * page, exact),
                size(measured * page, exact),
                percent(t.resident, measured)
            )?;
            if t.unmeasured > 0 {
                write!(
                    out,
                    "; {} not measurable (no write permission)",
                    size(t.unmeasured * page, exact)
                )?;
            }
            writeln!(out)?;
        }
        _ => writeln!(
            out,
            "{verb}: {} ({} pages; {} were already resident)",
            size(total, exact),
            t.pages,
            size(t.resident * page, exact)
        )?,
    }
    writeln!(out, "elapsed: {elapsed:.3} s")
}
