//! A read-only shared mapping of a byte range of a file, and the page-level calls on it:
//! `mincore(2)`, `madvise(MADV_POPULATE_READ)`, `mlock(2)`.
//!
//! SIGBUS: touching a page of a mapping beyond the end of a file that shrank raises SIGBUS.
//! blobpin never dereferences a mapping: it populates with `MADV_POPULATE_READ`, which
//! reports that case as EFAULT instead, and falls back to `pread` (see `residency::touch`).

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap, MmapOptions};

/// A `PROT_READ`, `MAP_SHARED` mapping of `len` bytes of a file from a page-aligned offset.
/// Unmapped (and so unlocked) on drop, unless leaked with [`Mapping::keep_forever`].
pub struct Mapping {
    map: Mmap,
}

impl Mapping {
    /// `mmap(2)` of `len > 0` bytes from `offset`, which must be a multiple of the page size.
    pub fn new(file: &File, offset: u64, len: u64) -> io::Result<Mapping> {
        debug_assert!(offset % super::page_size() == 0);
        let len = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: the mapping is read-only and blobpin never reads through it (only mincore,
        // madvise and mlock take its address), so a concurrent change or truncation of the
        // file cannot cause undefined behaviour or SIGBUS in this process.
        let map = unsafe { MmapOptions::new().offset(offset).len(len).map(file)? };
        Ok(Mapping { map })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never, as constructed).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `mincore(2)` for `out.len()` pages starting at page `first_page` of the mapping; bit 0
    /// of each byte tells whether that page is resident.
    /// <https://man7.org/linux/man-pages/man2/mincore.2.html>
    ///
    /// Kernel caveat (Linux >= 5.2, commit 134fca9063ad): for a file the caller neither owns
    /// nor may write, every page is reported resident.
    pub fn mincore(&self, first_page: u64, out: &mut [u8]) -> io::Result<()> {
        let page = super::page_size();
        let start = first_page * page;
        let end = ((first_page + out.len() as u64) * page).min(self.len() as u64);
        if out.is_empty() || start >= end {
            return Ok(());
        }
        assert!(
            (end - start).div_ceil(page) <= out.len() as u64,
            "mincore vector too short"
        );
        // SAFETY: [start, end) lies inside this live mapping, whose base is page-aligned
        // (offset is page-aligned), and `out` has one byte per page of that range.
        let rc = unsafe {
            libc::mincore(
                self.map.as_ptr().add(start as usize) as *mut libc::c_void,
                (end - start) as usize,
                out.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Faults `pages` pages from page `first_page` into the page cache and page tables with
    /// `MADV_POPULATE_READ` (Linux >= 5.14): EINVAL on older kernels, EFAULT where an access
    /// would have raised SIGBUS (the file shrank).
    pub fn populate_read(&self, first_page: u64, pages: u64) -> io::Result<()> {
        let page = super::page_size();
        let start = (first_page * page) as usize;
        let end = (((first_page + pages) * page) as usize).min(self.len());
        if start >= end {
            return Ok(());
        }
        self.map
            .advise_range(Advice::PopulateRead, start, end - start)
    }

    /// `mlock(2)` of the whole mapping: faults every page in and pins it.
    pub fn lock(&self) -> io::Result<()> {
        self.map.lock()
    }

    /// Keeps the mapping (and any lock on it) until the process exits, as vmtouch does.
    pub fn keep_forever(self) {
        std::mem::forget(self.map);
    }
}
