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

use super::file::FileWorker;
use super::{Fatal, Options, Sink, Totals, Warning};

/// vmtouch's `MAX_CRAWL_DEPTH`.
const MAX_DEPTH: usize = 1024;
/// vmtouch builds child paths in a `PATH_MAX` buffer.
const PATH_MAX: usize = 4096;

/// Walks paths and hands files to the [`FileWorker`]; keeps the counters.
pub struct Crawler {
    opts: Options,
    seen: HashSet<(u64, u64)>,
    first_dev: Option<u64>,
    ancestors: Vec<(u64, u64)>,
    totals: Totals,
    worker: FileWorker,
}

impl Crawler {
    pub fn new(opts: Options) -> Crawler {
        Crawler {
            worker: FileWorker::new(&opts),
            opts,
            seen: HashSet::new(),
            first_dev: None,
            ancestors: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// The counters so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The worker, which holds the kept (locked) mappings.
    pub fn into_worker(self) -> FileWorker {
        self.worker
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
                sink.warning(Warning::Stat(path, e));
                return Ok(());
            }
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            sink.warning(Warning::SymlinkNotFollowed(path));
            return Ok(());
        }
        if self.opts.single_filesystem {
            match self.first_dev {
                None => self.first_dev = Some(meta.dev()),
                Some(dev) if dev != meta.dev() => {
                    sink.warning(Warning::SeparateFilesystem(path));
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
                let done = self.worker.process(&path, sink)?;
                self.totals.pages += done.pages;
                self.totals.resident += done.resident;
                self.totals.unmeasured += done.unmeasured;
            }
            Ok(())
        } else {
            sink.warning(Warning::NonRegular(path));
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
            sink.warning(Warning::Loop(path));
            return Ok(());
        }
        if self.ancestors.len() == MAX_DEPTH {
            return Err(Fatal::Depth(path));
        }
        self.totals.dirs += 1;
        let entries = loop {
            match fs::read_dir(&path) {
                Ok(rd) => break rd,
                // Out of descriptors: raise the limit and retry, as vmtouch does.
                Err(e) if super::out_of_fds(&e) => super::raise_nofile_limit()?,
                Err(e) => {
                    sink.warning(Warning::OpenDir(path, e));
                    return Ok(());
                }
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
                sink.warning(Warning::PathTooLong(path.clone()));
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
