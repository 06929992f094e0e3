//! The thread pool must not change anything observable: the same warnings, file reports and
//! totals, in the same order, as the sequential engine.

use std::os::unix::fs::symlink;
use std::path::Path;

use blobpin::residency::{Crawler, FileReport, Op, Options, Sink, Totals, Warning};

use crate::common::Scratch;

#[derive(Default)]
struct Log {
    lines: Vec<String>,
}

impl Sink for Log {
    fn warning(&mut self, w: Warning) {
        self.lines.push(format!("W {w}"));
    }
    fn evicting(&mut self, path: &Path) {
        self.lines.push(format!("E {}", path.display()));
    }
    fn file(&mut self, r: &FileReport) {
        self.lines
            .push(format!("F {} {} {:?}", r.path.display(), r.pages, r.span));
    }
}

fn crawl(root: &Path, op: Op, threads: usize) -> (Vec<String>, Totals) {
    let opts = Options {
        op,
        ..Options::default()
    };
    let mut crawler = Crawler::with_threads(opts, threads);
    let mut log = Log::default();
    crawler.crawl(root, &mut log).unwrap();
    crawler.crawl(&root.join("missing"), &mut log).unwrap();
    crawler.crawl(root, &mut log).unwrap();
    crawler.finish(&mut log).unwrap();
    (log.lines, crawler.totals())
}

#[test]
fn pool_delivers_in_crawl_order() {
    let s = Scratch::new("parallel-order");
    for d in 0..6 {
        for f in 0..60 {
            s.file(&format!("t/d{d}/f{f}"), 1 + (f * 977) % 20_000);
            if f % 7 == 0 {
                symlink("nowhere", s.path(&format!("t/d{d}/link{f}"))).unwrap();
            }
            if f % 11 == 0 {
                nix::unistd::mkfifo(
                    &s.path(&format!("t/d{d}/fifo{f}")),
                    nix::sys::stat::Mode::from_bits_truncate(0o644),
                )
                .unwrap();
            }
        }
        std::fs::File::create(s.path(&format!("t/d{d}/empty"))).unwrap();
    }
    let root = s.path("t");
    for op in [Op::Stat, Op::Evict, Op::Touch] {
        let (seq_lines, seq_totals) = crawl(&root, op, 0);
        let (par_lines, par_totals) = crawl(&root, op, 4);
        assert!(seq_lines.len() > 400, "{op:?}: {}", seq_lines.len());
        assert_eq!(seq_lines, par_lines, "{op:?}");
        assert_eq!(seq_totals.files, par_totals.files, "{op:?}");
        assert_eq!(seq_totals.dirs, par_totals.dirs, "{op:?}");
        assert_eq!(seq_totals.pages, par_totals.pages, "{op:?}");
    }
}
