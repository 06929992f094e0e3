//! Write-behind for downloads: push a byte range of a file to disk and drop it from the page
//! cache, so a download never grows the cache past a few pieces (DESIGN.md §5).
//!
//! `sync_file_range(2)` is not wrapped by nix 0.30; `posix_fadvise(2)` is (nix, safe). Neither is
//! a durability primitive: callers still `fsync` before trusting the data.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};

/// `sync_file_range(fd, off, len, WAIT_BEFORE | WRITE | WAIT_AFTER)`: starts writeback of the
/// dirty pages of the range and waits until it is done.
/// <https://man7.org/linux/man-pages/man2/sync_file_range.2.html>
///
/// Kernel caveat: flushes neither metadata nor the device cache (use fsync for durability).
pub fn sync_range(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let off = i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: sync_file_range takes only integers; a bad fd or range is reported as an errno
    // and no memory is accessed through the arguments.
    let rc = unsafe { libc::sync_file_range(fd.as_raw_fd(), off, len, flags) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `posix_fadvise(POSIX_FADV_DONTNEED)` on the range: drops its clean, unmapped, unlocked pages
/// from the page cache (partial first and last pages are kept by the kernel).
pub fn drop_range(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    let off = i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    posix_fadvise(
        fd.as_fd(),
        off,
        len,
        PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .map_err(io::Error::from)
}

/// `posix_fadvise(POSIX_FADV_RANDOM)` on a whole descriptor: no readahead through it.
///
/// Measured on Linux 6.18 (ext4): reading a file sequentially in 1 MiB chunks and dropping each
/// chunk with DONTNEED right after reading it left 98 of 128 MiB cached with readahead on (the
/// same with the drop lagging 1 or 4 chunks behind), and nothing with readahead off. Readers
/// that must not fill the cache turn readahead off and read in large chunks instead.
pub fn no_readahead(fd: BorrowedFd<'_>) -> io::Result<()> {
    posix_fadvise(fd.as_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_RANDOM).map_err(io::Error::from)
}

/// Write-behind of one range: write it back (waiting), then drop it from the cache.
pub fn write_behind(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    sync_range(fd, off, len)?;
    drop_range(fd, off, len)
}

/// Makes a child started by `cmd` the leader of a new session (`setsid(2)` between fork and
/// exec), so it outlives its parent's terminal and process group: a detached daemon.
pub fn detach_on_spawn(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which
    // is async-signal-safe, allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
