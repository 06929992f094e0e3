//! vmtouch 1.3.1's output, byte for byte: summaries, `LOCKED`, the `-v` residency chart, the
//! HEAD `-o kv` line, the usage text, and the C number formats they use (`%.3g`, `%.5g`,
//! truncated K/M/G sizes). Everything writes to `&mut dyn Write`.

use std::io::{self, Write};

use crate::residency::Totals;

/// vmtouch's chart width.
const CHART_WIDTH: u64 = 60;

/// C's `printf("%.<prec>g", v)` for finite and non-finite doubles (glibc output, including
/// `-nan`).
pub fn fmt_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    let p = prec.max(1);
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // The exponent after rounding to p significant digits decides the style.
    let e_form = format!("{:.*e}", p - 1, v);
    let (mantissa, exp) = e_form.split_once('e').expect("exponent form");
    let x: i32 = exp.parse().expect("exponent");
    if x < -4 || x >= p as i32 {
        let m = strip_zeros(mantissa);
        let sign = if x < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", x.abs())
    } else {
        let decimals = (p as i32 - 1 - x).max(0) as usize;
        strip_zeros(&format!("{:.*}", decimals, v)).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// vmtouch's `pretty_print_size`: truncating division by 1024; bare, K, M, then G (no T).
pub fn pretty_size(bytes: u64) -> String {
    if bytes < 1024 {
        return bytes.to_string();
    }
    let k = bytes / 1024;
    if k < 1024 {
        return format!("{k}K");
    }
    let m = k / 1024;
    if m < 1024 {
        return format!("{m}M");
    }
    format!("{}G", m / 1024)
}

/// The residency chart `\r[OOo  ] res/pages` (no newline), from one byte per page (bit 0).
pub fn chart(out: &mut dyn Write, map: &[u8]) -> io::Result<()> {
    let pages = map.len() as u64;
    let per_char = if pages <= CHART_WIDTH {
        1
    } else {
        pages / CHART_WIDTH + 1
    };
    let mut line = Vec::with_capacity(80);
    line.extend_from_slice(b"\r[");
    let mut resident = 0u64;
    for group in map.chunks(per_char as usize) {
        let r = group.iter().filter(|b| *b & 1 == 1).count();
        resident += r as u64;
        line.push(if r == group.len() {
            b'O'
        } else if r == 0 {
            b' '
        } else {
            b'o'
        });
    }
    write!(line, "] {resident}/{pages}")?;
    out.write_all(&line)?;
    out.flush()
}

/// Which summary line vmtouch prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stat,
    Touch,
    Evict,
}

/// The end-of-run summary (not printed in lock mode). `verbose` adds the blank line first.
pub fn summary(
    out: &mut dyn Write,
    mode: Mode,
    t: &Totals,
    elapsed: f64,
    verbose: bool,
    page: u64,
) -> io::Result<()> {
    if verbose {
        out.write_all(b"\n")?;
    }
    writeln!(out, "           Files: {}", t.files)?;
    writeln!(out, "     Directories: {}", t.dirs)?;
    let total = pretty_size(t.pages * page);
    match mode {
        Mode::Touch => writeln!(out, "   Touched Pages: {} ({total})", t.pages)?,
        Mode::Evict => writeln!(out, "   Evicted Pages: {} ({total})", t.pages)?,
        Mode::Stat => {
            write!(
                out,
                "  Resident Pages: {}/{}  {}/{total}  ",
                t.resident,
                t.pages,
                pretty_size(t.resident * page)
            )?;
            if t.pages > 0 {
                write!(
                    out,
                    "{}%",
                    fmt_g(100.0 * t.resident as f64 / t.pages as f64, 3)
                )?;
            }
            writeln!(out)?;
        }
    }
    writeln!(out, "         Elapsed: {} seconds", fmt_g(elapsed, 5))
}

/// HEAD's `-o kv` line. `<D>Pages` is the resident count before the operation (0 for evict),
/// as in vmtouch.
pub fn kv(out: &mut dyn Write, mode: Mode, t: &Totals, elapsed: f64, page: u64) -> io::Result<()> {
    let d = match mode {
        Mode::Stat => "Resident",
        Mode::Touch => "Touched",
        Mode::Evict => "Evicted",
    };
    let resident = if mode == Mode::Evict { 0 } else { t.resident };
    let pct = if t.pages == 0 {
        "-nan".to_string()
    } else {
        fmt_g(100.0 * resident as f64 / t.pages as f64, 3)
    };
    writeln!(
        out,
        "Files={} Directories={} {d}Pages={} TotalPages={} {d}Size={} TotalSize={} {d}Percent={pct} Elapsed={}",
        t.files,
        t.dirs,
        resident,
        t.pages,
        resident * page,
        t.pages * page,
        fmt_g(elapsed, 5)
    )
}

/// `LOCKED <pages> pages (<size>)`.
pub fn locked(out: &mut dyn Write, pages: u64, page: u64) -> io::Result<()> {
    writeln!(out, "LOCKED {pages} pages ({})", pretty_size(pages * page))
}

/// vmtouch 1.3.1's usage text (stdout), exactly.
pub const USAGE: &str = "
vmtouch v1.3.1 - the Virtual Memory Toucher by Doug Hoyte
Portable file system cache diagnostics and control

Usage: vmtouch [OPTIONS] ... FILES OR DIRECTORIES ...

Options:
  -t touch pages into memory
  -e evict pages from memory
  -l lock pages in physical memory with mlock(2)
  -L lock pages in physical memory with mlockall(2)
  -d daemon mode
  -m <size> max file size to touch
  -p <range> use the specified portion instead of the entire file
  -f follow symbolic links
  -F don't crawl different filesystems
  -h also count hardlinked copies
  -i <pattern> ignores files and directories that match this pattern
  -I <pattern> only process files that match this pattern
  -b <list file> get files or directories from the list file
  -0 in batch mode (-b) separate paths with NUL byte instead of newline
  -w wait until all pages are locked (only useful together with -d)
  -P <pidfile> write a pidfile (only useful together with -l or -L)
  -v verbose
  -q quiet
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_formats_match_c() {
        // Expected values from C printf("%.3g") / ("%.5g").
        let cases3 = [
            (100.0, "100"),
            (46.875, "46.9"),
            (100.0 / 3.0, "33.3"),
            (25.0, "25"),
            (0.78125, "0.781"),
            (0.0061, "0.0061"),
            (0.0913, "0.0913"),
            (2.38e-05, "2.38e-05"),
            (99.95, "100"),
            (123456.7, "1.23e+05"),
            (0.0001, "0.0001"),
            (1e-10, "1e-10"),
        ];
        for (v, want) in cases3 {
            assert_eq!(fmt_g(v, 3), want, "{v}");
        }
        let cases5 = [
            (0.001059, "0.001059"),
            (2.1e-05, "2.1e-05"),
            (12.394, "12.394"),
            (123456.7, "1.2346e+05"),
            (46.868896484375, "46.869"),
        ];
        for (v, want) in cases5 {
            assert_eq!(fmt_g(v, 5), want, "{v}");
        }
        assert_eq!(fmt_g(f64::NAN.copysign(-1.0), 3), "-nan");
    }

    #[test]
    fn sizes_truncate() {
        assert_eq!(pretty_size(0), "0");
        assert_eq!(pretty_size(384 * 4096), "1M");
        assert_eq!(pretty_size(16380 * 4096), "63M");
        assert_eq!(pretty_size(1100 << 30), "1100G");
        assert_eq!(pretty_size(24 << 10), "24K");
    }

    fn draw(map: &[u8]) -> String {
        let mut v = Vec::new();
        chart(&mut v, map).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn chart_width_and_glyphs() {
        assert_eq!(draw(&[1, 1]), "\r[OO] 2/2");
        let mut m = vec![1u8; 61];
        m[0] = 0;
        m[1] = 0;
        m[30] = 0;
        // 61 pages -> 2 pages per char -> 31 chars.
        assert_eq!(draw(&m), "\r[ OOOOOOOOOOOOOOoOOOOOOOOOOOOOOO] 58/61");
        let mut m = vec![0u8; 16384];
        m[..4096].fill(1);
        let s = draw(&m);
        assert_eq!(
            s,
            "\r[OOOOOOOOOOOOOOo                                             ] 4096/16384"
        );
        let mut m = vec![1u8; 121];
        m[120] = 0;
        assert_eq!(
            draw(&m),
            "\r[OOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO ] 120/121"
        );
    }

    #[test]
    fn summaries() {
        let t = Totals {
            files: 1,
            dirs: 0,
            pages: 16384,
            resident: 7680,
            unmeasured: 0,
        };
        let mut v = Vec::new();
        summary(&mut v, Mode::Stat, &t, 0.000942, true, 4096).unwrap();
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "\n           Files: 1\n     Directories: 0\n  Resident Pages: 7680/16384  30M/64M  46.9%\n         Elapsed: 0.000942 seconds\n"
        );
        let empty = Totals::default();
        let mut v = Vec::new();
        summary(&mut v, Mode::Stat, &empty, 2.1e-05, false, 4096).unwrap();
        assert!(String::from_utf8(v)
            .unwrap()
            .contains("  Resident Pages: 0/0  0/0  \n"));
        let mut v = Vec::new();
        kv(&mut v, Mode::Stat, &empty, 0.5, 4096).unwrap();
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "Files=0 Directories=0 ResidentPages=0 TotalPages=0 ResidentSize=0 TotalSize=0 ResidentPercent=-nan Elapsed=0.5\n"
        );
    }
}
