//! The crawl: vmtouch 1.3.1's order of checks for every path, recursion in raw `readdir`
//! order, hard-link de-duplication and loop detection.
//!
//! Two vmtouch bugs are fixed here, in every mode (the man page lists them):
//! - loops are detected on (device, inode), not the inode alone, so a mounted filesystem
//!   whose root has an ancestor's inode number is crawled instead of reported as a loop (Q1);
//! - a child of a path ending in `/` (the root, or `dir//`) is not printed with `//` (Q10).
//!
//! And one quirk: with `-I`, a file that the filter rejects no longer claims its inode, so a
//! later link to it that matches is still processed (Q14).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::file::{Done, FileWorker};
use super::parallel::Pool;
use super::{Fatal, Options, Sink, Totals, Warning};
use crate::sys::Mapping;

/// vmtouch's `MAX_CRAWL_DEPTH`.
const MAX_DEPTH: usize = 1024;
/// vmtouch builds child paths in a `PATH_MAX` buffer.
const PATH_MAX: usize = 4096;

/// Who processes the files the crawl reaches.
enum Files {
    /// On the crawling thread, one after the other.
    Here(FileWorker),
    /// On a pool of threads, delivered in crawl order.
    Pool(Pool),
}

/// Walks paths and hands files to a [`FileWorker`] (or a pool of them); keeps the counters.
pub struct Crawler {
    opts: Options,
    seen: HashSet<(u64, u64)>,
    first_dev: Option<u64>,
    ancestors: Vec<(u64, u64)>,
    totals: Totals,
    files: Files,
}

impl Crawler {
    /// A crawler processing files on the calling thread.
    pub fn new(opts: Options) -> Crawler {
        Crawler::with_threads(opts, 0)
    }

    /// A crawler processing files on `threads` worker threads (0: on the calling thread).
    /// Charts (`page_maps`) and locks are always processed on the calling thread.
    pub fn with_threads(opts: Options, threads: usize) -> Crawler {
        let files = if threads == 0 || opts.page_maps || opts.op.keeps_mappings() {
            Files::Here(FileWorker::new(&opts))
        } else {
            Files::Pool(Pool::new(&opts, threads))
        };
        Crawler {
            files,
            opts,
            seen: HashSet::new(),
            first_dev: None,
            ancestors: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// Waits for files still being processed and delivers their reports. Call once the last
    /// path has been crawled, before reading [`Crawler::totals`].
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), Fatal> {
        if let Files::Pool(pool) = &mut self.files {
            let done = pool.finish(sink)?;
            self.add(done);
        }
        Ok(())
    }

    /// The counters so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The mappings kept for locking, and their pages.
    pub fn into_kept(self) -> (Vec<Mapping>, u64) {
        match self.files {
            Files::Here(w) => w.into_kept(),
            Files::Pool(mut p) => p.take_kept(),
        }
    }

    fn add(&mut self, done: Done) {
        self.totals.pages += done.pages;
        self.totals.resident += done.resident;
        self.totals.unmeasured += done.unmeasured;
    }

    fn warn(&mut self, w: Warning, sink: &mut dyn Sink) {
        match &mut self.files {
            Files::Here(_) => sink.warning(w),
            Files::Pool(pool) => pool.warning(w, sink),
        }
    }

    /// Crawls one top-level path (an argument or a batch record).
    pub fn crawl(&mut self, path: &Path, sink: &mut dyn Sink) -> Result<(), Fatal> {
        let mut bytes = path.as_os_str().as_bytes().to_vec();
        // vmtouch strips exactly one trailing slash "to prevent ugly double slashes".
        if bytes.len() > 1 && bytes.last() == Some(&b'/') {
            bytes.pop();
        }
        let path = PathBuf::from(OsString::from_vec(bytes));
        self.visit(path, sink)
    }

    fn visit(&mut self, path: PathBuf, sink: &mut dyn Sink) -> Result<(), Fatal> {
        if self.opts.ignore.iter().any(|p| p.matches(&path)) {
            return Ok(());
        }
        let meta = if self.opts.follow_symlinks {
            fs::metadata(&path)
        } else {
            fs::symlink_metadata(&path)
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                self.warn(Warning::Stat(path, e), sink);
                return Ok(());
            }
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            self.warn(Warning::SymlinkNotFollowed(path), sink);
            return Ok(());
        }
        if self.opts.single_filesystem {
            match self.first_dev {
                None => self.first_dev = Some(meta.dev()),
                Some(dev) if dev != meta.dev() => {
                    self.warn(Warning::SeparateFilesystem(path), sink);
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        let key = (meta.dev(), meta.ino());
        let is_file = ft.is_file() || ft.is_block_device();
        let included = !is_file
            || self.opts.include.is_empty()
            || self.opts.include.iter().any(|p| p.matches(&path));
        if !self.opts.count_hardlinks && meta.nlink() > 1 && included && !self.seen.insert(key) {
            return Ok(());
        }
        if ft.is_dir() {
            self.directory(path, key, sink)
        } else if is_file {
            if included {
                self.totals.files += 1;
                match &mut self.files {
                    Files::Here(worker) => {
                        let done = worker.process(&path, sink)?;
                        self.add(done);
                    }
                    Files::Pool(pool) => pool.file(&path, sink)?,
                }
            }
            Ok(())
        } else {
            self.warn(Warning::NonRegular(path), sink);
            Ok(())
        }
    }

    fn directory(
        &mut self,
        path: PathBuf,
        key: (u64, u64),
        sink: &mut dyn Sink,
    ) -> Result<(), Fatal> {
        if self.ancestors.contains(&key) {
            self.warn(Warning::Loop(path), sink);
            return Ok(());
        }
        if self.ancestors.len() == MAX_DEPTH {
            return Err(Fatal::Depth(path));
        }
        self.totals.dirs += 1;
        let entries = match fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) => {
                self.warn(Warning::OpenDir(path, e), sink);
                return Ok(());
            }
        };
        self.ancestors.push(key);
        let base = path.as_os_str().as_bytes();
        let sep: &[u8] = if base.ends_with(b"/") { b"" } else { b"/" };
        let mut result = Ok(());
        // readdir errors end the listing, as in vmtouch (readdir returning NULL).
        for entry in entries.map_while(Result::ok) {
            let name = entry.file_name();
            let name = name.as_bytes();
            // `.` and `..` never come from read_dir.
            let mut child = Vec::with_capacity(base.len() + sep.len() + name.len());
            child.extend_from_slice(base);
            child.extend_from_slice(sep);
            child.extend_from_slice(name);
            // vmtouch: snprintf("%s/%s") into char[PATH_MAX] >= sizeof -> give up on the dir.
            if base.len() + 1 + name.len() >= PATH_MAX {
                self.warn(Warning::PathTooLong(path.clone()), sink);
                break;
            }
            if let Err(f) = self.visit(PathBuf::from(OsString::from_vec(child)), sink) {
                result = Err(f);
                break;
            }
        }
        self.ancestors.pop();
        result
    }
}
