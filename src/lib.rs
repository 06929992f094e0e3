//! blobpin: deploy static data blobs and keep them in RAM.
//!
//! The library owns everything; `main.rs` only forwards `argv`. [`run`] picks the face:
//! vmtouch 1.3.1 compatibility (invoked as `vmtouch`, or first argument not a subcommand
//! name) or the modern subcommands defined in [`cli`].
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cli;
#[cfg(all(feature = "fetch", feature = "tracker"))]
pub mod demo;
pub mod doctor;
pub mod exit;
pub mod feed;
#[cfg(feature = "fetch")]
pub mod fetch;
#[cfg(all(feature = "fetch", feature = "tracker"))]
pub mod origin;
pub mod report;
pub mod residency;
#[cfg(feature = "fetch")]
pub mod sync;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(feature = "tracker")]
pub mod tracker;

use std::ffi::OsString;

/// Runs blobpin with a whole `argv` (including `argv[0]`) and returns the process exit status.
pub fn run(argv: Vec<OsString>) -> i32 {
    cli::dispatch(argv)
}
