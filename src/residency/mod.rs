//! The residency engine: crawl paths and stat, touch, evict or lock the page cache of the
//! files found, with vmtouch 1.3.1's semantics (order, counting, warnings) and faster
//! system calls where the result is the same.
//!
//! The engine never prints: it reports to a [`Sink`] (warnings, per-file residency for charts
//! and JSON) and returns [`Totals`] or a [`Fatal`]. It never imports `cli`.

pub mod crawl;
pub mod file;
pub mod parallel;
pub mod pattern;
pub mod range;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use crawl::Crawler;
pub use pattern::Pattern;
pub use range::{Range, Span};

use crate::sys;

/// What to do with each file's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Count resident pages (vmtouch default).
    Stat,
    /// Read missing pages into the cache (`-t`).
    Touch,
    /// Drop the pages from the cache (`-e`).
    Evict,
    /// Touch, then `mlock` each file's mapping (`-l`).
    Lock,
    /// Touch and keep the mappings; the caller then runs `mlockall` (`-L`).
    LockAll,
}

impl Op {
    /// Whether the operation reads pages in (touch and both locks).
    pub fn touches(self) -> bool {
        matches!(self, Op::Touch | Op::Lock | Op::LockAll)
    }

    /// Whether mappings are kept after the file is done.
    pub fn keeps_mappings(self) -> bool {
        matches!(self, Op::Lock | Op::LockAll)
    }
}

/// Everything the engine needs to know, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub op: Op,
    /// `stat` instead of `lstat` for every path (`-f`).
    pub follow_symlinks: bool,
    /// Skip paths on another device than the first one seen (`-F`).
    pub single_filesystem: bool,
    /// Process every hard link (`-h`); by default a file or directory with several links is
    /// processed once.
    pub count_hardlinks: bool,
    /// Paths whose name matches are skipped silently (`-i`).
    pub ignore: Vec<Pattern>,
    /// When not empty, only files (regular, block devices) whose name matches are processed
    /// (`-I`).
    pub include: Vec<Pattern>,
    /// Files larger than this are skipped with a warning (`-m`).
    pub max_file_size: u64,
    /// The byte range of each file (`-p`).
    pub range: Range,
    /// Keep per-page residency so the sink can draw charts (vmtouch `-v`).
    pub page_maps: bool,
    /// Measure honestly: where the kernel would fake residency (no write permission), report
    /// it as unknown instead of taking mincore's word (modern mode).
    pub honest: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            op: Op::Stat,
            follow_symlinks: false,
            single_filesystem: false,
            count_hardlinks: false,
            ignore: Vec::new(),
            include: Vec::new(),
            max_file_size: u64::MAX,
            range: Range::WHOLE,
            page_maps: false,
            honest: false,
        }
    }
}

/// A problem with one path; the crawl goes on. `Display` is vmtouch's exact text (without the
/// `vmtouch: WARNING: ` prefix).
#[derive(Debug)]
pub enum Warning {
    Stat(PathBuf, io::Error),
    SymlinkNotFollowed(PathBuf),
    SeparateFilesystem(PathBuf),
    Loop(PathBuf),
    OpenDir(PathBuf, io::Error),
    PathTooLong(PathBuf),
    NonRegular(PathBuf),
    Open(PathBuf, io::Error),
    Fstat(PathBuf, io::Error),
    Ioctl(PathBuf, io::Error),
    TooLarge(PathBuf),
    SmallerThanOffset(PathBuf),
    Mmap(PathBuf, io::Error),
    /// vmtouch quirk Q4: after a failed mmap it munmaps MAP_FAILED and warns (EINVAL).
    BogusMunmap(PathBuf),
    Fadvise(PathBuf, io::Error),
    /// The file shrank while its pages were being read (vmtouch would die of SIGBUS).
    Shrunk(PathBuf),
    /// Residency of this file cannot be measured by this process (modern mode only).
    Unmeasurable(PathBuf),
}

impl Warning {
    /// The path the warning is about.
    pub fn path(&self) -> &Path {
        match self {
            Warning::Stat(p, _)
            | Warning::SymlinkNotFollowed(p)
            | Warning::SeparateFilesystem(p)
            | Warning::Loop(p)
            | Warning::OpenDir(p, _)
            | Warning::PathTooLong(p)
            | Warning::NonRegular(p)
            | Warning::Open(p, _)
            | Warning::Fstat(p, _)
            | Warning::Ioctl(p, _)
            | Warning::TooLarge(p)
            | Warning::SmallerThanOffset(p)
            | Warning::Mmap(p, _)
            | Warning::BogusMunmap(p)
            | Warning::Fadvise(p, _)
            | Warning::Shrunk(p)
            | Warning::Unmeasurable(p) => p,
        }
    }

    /// Whether the path could not be processed at all (as opposed to being skipped by rule).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Warning::Stat(..)
                | Warning::OpenDir(..)
                | Warning::Open(..)
                | Warning::Fstat(..)
                | Warning::Ioctl(..)
                | Warning::Mmap(..)
                | Warning::Fadvise(..)
                | Warning::Shrunk(..)
                | Warning::PathTooLong(..)
        )
    }

    /// A short machine name for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::Stat(..) => "stat",
            Warning::SymlinkNotFollowed(..) => "symlink",
            Warning::SeparateFilesystem(..) => "separate-filesystem",
            Warning::Loop(..) => "loop",
            Warning::OpenDir(..) => "opendir",
            Warning::PathTooLong(..) => "path-too-long",
            Warning::NonRegular(..) => "non-regular",
            Warning::Open(..) => "open",
            Warning::Fstat(..) => "fstat",
            Warning::Ioctl(..) => "ioctl",
            Warning::TooLarge(..) => "too-large",
            Warning::SmallerThanOffset(..) => "smaller-than-offset",
            Warning::Mmap(..) => "mmap",
            Warning::BogusMunmap(..) => "munmap",
            Warning::Fadvise(..) => "fadvise",
            Warning::Shrunk(..) => "shrunk",
            Warning::Unmeasurable(..) => "unmeasurable",
        }
    }
}

/// The raw bytes of a path.
pub fn path_bytes(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

impl Warning {
    /// The message as (text before the path, path, text after it).
    fn parts(&self) -> (&'static str, &Path, String) {
        let e = sys::strerror;
        match self {
            Warning::Stat(p, err) => ("unable to stat ", p, format!(" ({})", e(err))),
            Warning::SymlinkNotFollowed(p) => ("not following symbolic link ", p, String::new()),
            Warning::SeparateFilesystem(p) => {
                ("not recursing into separate filesystem ", p, String::new())
            }
            Warning::Loop(p) => ("symbolic link loop detected: ", p, String::new()),
            Warning::OpenDir(p, err) => {
                ("unable to opendir ", p, format!(" ({}), skipping", e(err)))
            }
            Warning::PathTooLong(p) => ("path too long ", p, String::new()),
            Warning::NonRegular(p) => ("skipping non-regular file: ", p, String::new()),
            Warning::Open(p, err) => ("unable to open ", p, format!(" ({}), skipping", e(err))),
            Warning::Fstat(p, err) => ("unable to fstat ", p, format!(" ({}), skipping", e(err))),
            Warning::Ioctl(p, err) => ("unable to ioctl ", p, format!(" ({}), skipping", e(err))),
            Warning::TooLarge(p) => ("file ", p, " too large, skipping".to_string()),
            Warning::SmallerThanOffset(p) => {
                ("file ", p, " smaller than offset, skipping".to_string())
            }
            Warning::Mmap(p, err) => (
                "unable to mmap file ",
                p,
                format!(" ({}), skipping", e(err)),
            ),
            Warning::BogusMunmap(p) => (
                "unable to munmap file ",
                p,
                " (Invalid argument)".to_string(),
            ),
            Warning::Fadvise(p, err) => {
                ("unable to posix_fadvise file ", p, format!(" ({})", e(err)))
            }
            Warning::Shrunk(p) => (
                "file ",
                p,
                " shrank while being read, skipping the rest".to_string(),
            ),
            Warning::Unmeasurable(p) => (
                "cannot measure residency of ",
                p,
                ": no write permission (Linux >= 5.2 hides it; run as the owner or root)"
                    .to_string(),
            ),
        }
    }

    /// The exact message bytes (paths as raw bytes, not re-encoded).
    pub fn to_bytes(&self) -> Vec<u8> {
        let (pre, p, post) = self.parts();
        [pre.as_bytes(), path_bytes(p), post.as_bytes()].concat()
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// Displays a path lossily (for the `Display` of errors; byte-exact writers use `to_bytes`).
struct P<'a>(&'a Path);

impl fmt::Display for P<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// An error that stops the whole run. `Display` is vmtouch's exact text.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error("mlock: {} ({})", P(.0), sys::strerror(.1))]
    Mlock(PathBuf, io::Error, u64),
    #[error("unable to mlockall ({})", sys::strerror(.0))]
    Mlockall(io::Error, u64),
    #[error("mincore {} ({})", P(.0), sys::strerror(.1))]
    Mincore(PathBuf, io::Error),
    #[error("maximum directory crawl depth reached: {}", P(.0))]
    Depth(PathBuf),
}

impl Fatal {
    /// The exact message bytes (paths as raw bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let e = sys::strerror;
        match self {
            Fatal::Mlock(p, err, _) => [
                b"mlock: ",
                path_bytes(p),
                format!(" ({})", e(err)).as_bytes(),
            ]
            .concat(),
            Fatal::Mincore(p, err) => [
                b"mincore ",
                path_bytes(p),
                format!(" ({})", e(err)).as_bytes(),
            ]
            .concat(),
            Fatal::Depth(p) => [
                b"maximum directory crawl depth reached: ".as_slice(),
                path_bytes(p),
            ]
            .concat(),
            Fatal::Mlockall(..) => self.to_string().into_bytes(),
        }
    }
}

/// How the resident count of a file was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `cachestat(2)`: exact, with dirty and writeback counts.
    Cachestat,
    /// `mincore(2)` on a mapping the kernel answers truthfully for.
    Mincore,
    /// Not measured: the kernel would have lied (no write permission), or not asked (evict).
    None,
}

/// One processed file, as reported to the sink once it is done.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    /// File size in bytes (block devices: device size).
    pub size: u64,
    pub span: Span,
    /// Pages in the span.
    pub pages: u64,
    /// Resident pages before the operation, if measured.
    pub resident_before: Option<u64>,
    /// Resident pages after the operation, if measured (touch and lock: all of them).
    pub resident_after: Option<u64>,
    pub method: Method,
    /// Dirty pages in the span (cachestat only).
    pub dirty: Option<u64>,
    /// Whether the mapping is now locked.
    pub locked: bool,
}

/// Per-page residency of one file's span, for charts; bit 0 of each byte.
pub type PageMap = [u8];

/// When in a file's processing a chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartPhase {
    /// Right after measuring, before touching; preceded by the path line.
    Initial,
    /// While touching, at most every 0.1 s.
    Progress,
    /// After touching (or right after Initial when not touching).
    Final,
}

/// Where the engine reports. All methods are called on the crawling thread, in crawl order.
pub trait Sink {
    /// A warning about one path.
    fn warning(&mut self, w: Warning);
    /// Per-page residency for a chart (only with `Options::page_maps`).
    fn chart(&mut self, _path: &Path, _map: &PageMap, _phase: ChartPhase) {}
    /// A file is about to be evicted.
    fn evicting(&mut self, _path: &Path) {}
    /// A file is done (not called for skipped files).
    fn file(&mut self, _report: &FileReport) {}
    /// Bytes just read into the cache while touching (for progress bars).
    fn progress(&mut self, _bytes: u64) {}
}

/// The counters vmtouch prints (see the man page for what each includes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Regular files and block devices reached (including ones that then failed).
    pub files: u64,
    /// Directories reached (including unreadable ones).
    pub dirs: u64,
    /// Pages of all successfully opened spans.
    pub pages: u64,
    /// Of those, pages resident before the operation (0 for evict).
    pub resident: u64,
    /// Pages whose residency could not be measured (modern honest mode).
    pub unmeasured: u64,
}
