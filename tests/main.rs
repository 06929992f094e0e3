//! blobpin's integration tests: one binary, one module per area. Every test runs the real
//! `blobpin` binary (or the library's pure code) in a scratch directory under
//! `CARGO_TARGET_TMPDIR`, never on tmpfs.

mod common;

#[cfg(all(feature = "fetch", feature = "tracker"))]
mod deploy;
mod doctor;
mod generated;
mod lock;
mod modern;
#[cfg(all(feature = "fetch", feature = "tracker"))]
mod origin;
mod parallel;
mod publish;
mod swarm;
#[cfg(feature = "fetch")]
mod sync;
#[cfg(feature = "fetch")]
mod sync_watch;
mod tracker;
mod vmtouch_compat;
#[cfg(feature = "fetch")]
mod waker;
