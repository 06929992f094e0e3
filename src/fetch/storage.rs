//! Cache-safe storage for librqbit: its own file storage, wrapped so that a download never
//! fills the page cache (DESIGN.md §5, reference librqbit-9.1.md §3.3).
//!
//! Every write goes through librqbit's `FilesystemStorage` (plain `pwritev`, never mmap). When
//! a piece has passed its SHA-1 check, `on_piece_completed` queues the piece's byte ranges to a
//! background thread, which writes them back (`sync_file_range`, waiting) and then drops them
//! from the cache (`posix_fadvise(DONTNEED)`). The queue is bounded, so a disk slower than the
//! network throttles the download instead of piling up dirty pages. Optionally, ranges read to
//! serve other peers (and the initial hash check of a seeder) are dropped again after reading.
//!
//! librqbit only logs errors returned by `on_piece_completed`, so failures are counted in
//! [`WriteBehindStats`] for the caller to report.

use std::fs::File;
use std::io::IoSlice;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use librqbit::storage::filesystem::FilesystemStorageFactory;
use librqbit::storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage};
use librqbit::{ManagedTorrentShared, TorrentMetadata};
use librqbit_core::lengths::ValidPieceIndex;

use crate::sys::writeback;

/// Counters shared between a storage and whoever started the download.
#[derive(Debug, Default)]
pub struct WriteBehindStats {
    /// Pieces written back and dropped from the cache.
    pub pieces: AtomicU64,
    /// Bytes written back and dropped.
    pub bytes: AtomicU64,
    /// Failed `sync_file_range`/`fadvise` calls.
    pub errors: AtomicU64,
    /// The first failure, for the report.
    pub first_error: Mutex<Option<String>>,
}

impl WriteBehindStats {
    fn fail(&self, msg: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut g = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(msg);
        }
    }
}

/// Makes [`WriteBehindStorage`]s for torrents stored under one directory.
#[derive(Clone)]
pub struct WriteBehindFactory {
    dir: PathBuf,
    drop_after_read: Arc<std::sync::atomic::AtomicBool>,
    stats: Arc<WriteBehindStats>,
    /// Test hook (`blobpin seed --corrupt-uploads`): flip a byte of every upload read once the
    /// torrent is live, to play a peer that sends bad data.
    corrupt_uploads: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl WriteBehindFactory {
    /// Storage for a torrent whose files live under `dir` (librqbit's output folder). While
    /// `drop_after_read` is set, ranges read (to serve peers) are dropped from the cache again.
    pub fn new(
        dir: &Path,
        drop_after_read: Arc<std::sync::atomic::AtomicBool>,
        stats: Arc<WriteBehindStats>,
    ) -> WriteBehindFactory {
        WriteBehindFactory {
            dir: dir.to_path_buf(),
            drop_after_read,
            stats,
            corrupt_uploads: None,
        }
    }

    /// Corrupts every upload read while `armed` is true (a test hook, see the field).
    pub fn corrupt_uploads(mut self, armed: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.corrupt_uploads = Some(armed);
        self
    }
}

impl StorageFactory for WriteBehindFactory {
    type Storage = WriteBehindStorage;

    fn create(
        &self,
        shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<WriteBehindStorage> {
        let inner = FilesystemStorageFactory::default().create(shared, metadata)?;
        let lengths = metadata.lengths();
        let spans = metadata
            .file_infos
            .iter()
            .map(|f| {
                (
                    f.offset_in_torrent,
                    f.len,
                    f.attrs.padding,
                    self.dir.join(&f.relative_filename),
                )
            })
            .collect();
        let (tx, rx) = sync_channel::<(Arc<File>, u64, u64)>(8);
        let stats = self.stats.clone();
        std::thread::Builder::new()
            .name("blobpin-writeback".into())
            .spawn(move || {
                for (file, off, len) in rx {
                    match writeback::write_behind(file.as_fd(), off, len) {
                        Ok(()) => {
                            stats.pieces.fetch_add(1, Ordering::Relaxed);
                            stats.bytes.fetch_add(len, Ordering::Relaxed);
                        }
                        Err(e) => stats.fail(format!("write-behind of {len} bytes at {off}: {e}")),
                    }
                }
            })
            .context("cannot start the write-behind thread")?;
        Ok(WriteBehindStorage {
            inner: Box::new(inner),
            shared: Arc::new(Shared {
                piece_length: u64::from(lengths.default_piece_length()),
                total: lengths.total_length(),
                spans,
                files: Mutex::new(Vec::new()),
                tx,
                drop_after_read: self.drop_after_read.clone(),
                stats: self.stats.clone(),
                corrupt_uploads: self.corrupt_uploads.clone(),
            }),
        })
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

struct Shared {
    piece_length: u64,
    total: u64,
    /// Per torrent file: offset in the torrent, length, padding?, path on disk.
    spans: Vec<(u64, u64, bool, PathBuf)>,
    /// Read-only descriptors of the same files (the page cache is per inode), opened in init.
    files: Mutex<Vec<Option<Arc<File>>>>,
    tx: SyncSender<(Arc<File>, u64, u64)>,
    drop_after_read: Arc<std::sync::atomic::AtomicBool>,
    stats: Arc<WriteBehindStats>,
    corrupt_uploads: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// librqbit's file storage plus write-behind; see the module doc.
pub struct WriteBehindStorage {
    inner: Box<dyn TorrentStorage>,
    shared: Arc<Shared>,
}

impl Shared {
    fn file(&self, id: usize) -> Option<Arc<File>> {
        self.files.lock().ok()?.get(id).cloned().flatten()
    }
}

impl TorrentStorage for WriteBehindStorage {
    fn init(
        &mut self,
        shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<()> {
        self.inner.init(shared, metadata)?;
        let mut files = Vec::new();
        for (_, _, padding, path) in &self.shared.spans {
            if *padding {
                files.push(None);
                continue;
            }
            let f = File::open(path)
                .with_context(|| format!("cannot open {} for write-behind", path.display()))?;
            files.push(Some(Arc::new(f)));
        }
        *self.shared.files.lock().unwrap_or_else(|e| e.into_inner()) = files;
        Ok(())
    }

    fn pread_exact(&self, file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        self.inner.pread_exact(file_id, offset, buf)?;
        if self.shared.drop_after_read.load(Ordering::Relaxed) {
            if let Some(f) = self.shared.file(file_id) {
                let _ = writeback::drop_range(f.as_fd(), offset, buf.len() as u64);
            }
        }
        if let Some(armed) = &self.shared.corrupt_uploads {
            if armed.load(Ordering::Relaxed) && !buf.is_empty() {
                buf[0] ^= 0xff;
            }
        }
        Ok(())
    }

    fn pwrite_all(&self, file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        self.inner.pwrite_all(file_id, offset, buf)
    }

    fn pwrite_all_vectored(
        &self,
        file_id: usize,
        offset: u64,
        bufs: [IoSlice<'_>; 2],
    ) -> anyhow::Result<usize> {
        self.inner.pwrite_all_vectored(file_id, offset, bufs)
    }

    fn remove_file(&self, file_id: usize, filename: &Path) -> anyhow::Result<()> {
        self.inner.remove_file(file_id, filename)
    }

    fn remove_directory_if_empty(&self, path: &Path) -> anyhow::Result<()> {
        self.inner.remove_directory_if_empty(path)
    }

    fn ensure_file_length(&self, file_id: usize, length: u64) -> anyhow::Result<()> {
        self.inner.ensure_file_length(file_id, length)
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(WriteBehindStorage {
            inner: self.inner.take()?,
            shared: self.shared.clone(),
        }))
    }

    fn on_piece_completed(&self, piece: ValidPieceIndex) -> anyhow::Result<()> {
        let s = &self.shared;
        let start = u64::from(piece.get()) * s.piece_length;
        let end = (start + s.piece_length).min(s.total);
        for (id, (off, len, padding, _)) in s.spans.iter().enumerate() {
            let (a, b) = (start.max(*off), end.min(off + len));
            if a >= b || *padding {
                continue;
            }
            if let Some(f) = s.file(id) {
                if s.tx.send((f, a - off, b - a)).is_err() {
                    s.stats.fail("the write-behind thread is gone".into());
                }
            }
        }
        Ok(())
    }
}
