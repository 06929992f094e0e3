//! The only module with `unsafe` code: thin, typed wrappers over the system calls blobpin
//! needs and that neither std, nix nor memmap2 wrap safely.
//!
//! Each wrapper names its man page and the kernel caveat that matters to callers. Everything
//! returns `io::Result`; callers add the path to the error.

pub mod mapping;
pub mod writeback;

pub use mapping::Mapping;

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::OnceLock;

/// The system page size in bytes (`sysconf(_SC_PAGESIZE)`), cached.
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions and only reads a constant.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if v > 0 {
            v as u64
        } else {
            4096
        }
    })
}

/// Page-cache counters of a byte range, as `cachestat(2)` (Linux >= 6.5) reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStat {
    /// Pages of the range in the page cache.
    pub cached: u64,
    /// Cached pages that are dirty.
    pub dirty: u64,
    /// Cached pages under writeback.
    pub writeback: u64,
    /// Pages of the range evicted from the cache (as far as the kernel still remembers).
    pub evicted: u64,
    /// Evicted pages that would still be in the cache had they been used recently.
    pub recently_evicted: u64,
}

/// `cachestat(2)` syscall number: 451 on every architecture (it is in the generic table).
const SYS_CACHESTAT: libc::c_long = 451;

/// `cachestat(2)`: page-cache state of `len` bytes from `off` (`len == 0`: to the end of the
/// file). <https://man7.org/linux/man-pages/man2/cachestat.2.html>
///
/// Kernel caveat: like `mincore(2)` since Linux 5.2, it refuses (EPERM) files the caller may
/// not write and does not own, instead of lying; `ENOSYS` before Linux 6.5.
pub fn cachestat(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<CacheStat> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Raw {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let range = Range { off, len };
    let mut raw = Raw::default();
    // SAFETY: both pointers refer to live, properly laid out (repr(C)) values for the duration
    // of the call; the kernel reads `range` and writes only `raw`; flags must be 0.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd.as_raw_fd(),
            &range as *const Range,
            &mut raw as *mut Raw,
            0u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(CacheStat {
        cached: raw.nr_cache,
        dirty: raw.nr_dirty,
        writeback: raw.nr_writeback,
        evicted: raw.nr_evicted,
        recently_evicted: raw.nr_recently_evicted,
    })
}

/// Size in bytes of the block device open on `fd` (`ioctl(BLKGETSIZE64)`).
pub fn block_device_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes exactly one u64 through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// `fnmatch(3)` with flags 0, exactly as vmtouch's `-i`/`-I` use it (`*` also matches `/`,
/// a leading `.` needs no special match).
pub fn fnmatch(pattern: &CStr, name: &CStr) -> bool {
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    unsafe { libc::fnmatch(pattern.as_ptr(), name.as_ptr(), 0) == 0 }
}

/// Whether `fork` returned in the parent (with the child's pid) or in the child.
pub enum Forked {
    Parent(libc::pid_t),
    Child,
}

/// `fork(2)`, for vmtouch's `-d`. Call only while the process has one thread: the child gets
/// a copy of this thread alone.
pub fn fork_single_threaded() -> io::Result<Forked> {
    // SAFETY: the caller guarantees no other thread exists, so no lock can be held by a thread
    // missing from the child; the child only continues ordinary single-threaded code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent(child.as_raw())),
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Makes fd `target` refer to what `src` refers to (`dup2(2)`), e.g. to point stdout at
/// /dev/null in a daemon.
pub fn redirect_fd(src: BorrowedFd<'_>, target: libc::c_int) -> io::Result<()> {
    // SAFETY: dup2 takes two integers; it closes `target` atomically before reusing it. The
    // targets blobpin passes are the standard streams, which Rust code only uses via their
    // numbers, so no owned fd is invalidated.
    let rc = unsafe { libc::dup2(src.as_raw_fd(), target) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Text of an errno value exactly as C's `strerror` prints it (no "(os error N)" suffix).
pub fn strerror(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let s = io::Error::from_raw_os_error(code).to_string();
            match s.rfind(" (os error ") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
        None => err.to_string(),
    }
}
