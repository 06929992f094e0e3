//! criterion benchmarks of the pure hot paths: the residency chart, C-style `%g` formatting,
//! the size/range grammar and the vmtouch getopt scan.

use std::ffi::OsString;

use criterion::{black_box, criterion_group, criterion_main, Criterion};

use blobpin::cli::vmtouch::getopt;
use blobpin::report::vmtouch::{chart, fmt_g, pretty_size};
use blobpin::residency::range::{parse_size, Range};

fn bench_chart(c: &mut Criterion) {
    let mut map = vec![0u8; 262_144];
    for (i, b) in map.iter_mut().enumerate() {
        *b = u8::from(i % 3 != 0);
    }
    let mut out = Vec::with_capacity(128);
    c.bench_function("chart 1 GiB of pages", |b| {
        b.iter(|| {
            out.clear();
            chart(&mut out, black_box(&map)).unwrap();
        })
    });
}

fn bench_format(c: &mut Criterion) {
    c.bench_function("fmt_g %.3g", |b| {
        b.iter(|| fmt_g(black_box(46.868_896_484_375), 3))
    });
    c.bench_function("pretty_size", |b| {
        b.iter(|| pretty_size(black_box(1100 << 30)))
    });
}

fn bench_grammar(c: &mut Criterion) {
    c.bench_function("parse_size 1.5G", |b| {
        b.iter(|| parse_size(black_box("1.5G")))
    });
    c.bench_function("range 16M-64M", |b| {
        b.iter(|| Range::WHOLE.apply(black_box("16M-64M"), 4096))
    });
    let args: Vec<OsString> = ["-vt", "-m", "64M", "dir", "-p", "0-1G", "--", "-x"]
        .iter()
        .map(OsString::from)
        .collect();
    c.bench_function("getopt", |b| b.iter(|| getopt(black_box(&args), false)));
}

criterion_group!(benches, bench_chart, bench_format, bench_grammar);
criterion_main!(benches);
