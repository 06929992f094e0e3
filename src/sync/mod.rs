//! `blobpin sync`: bring a destination directory to the feed's latest version. [`plan`] decides
//! (pure), [`apply`] does it: download into a staging directory, verify, fsync, lock, switch
//! `current` atomically, run the hook, release and prune old versions.

pub mod apply;
pub mod cmd;
pub mod plan;

pub use apply::{sync, SyncOptions, SyncReport};
