//! `blobpin sync`: bring a destination directory to the feed's latest version. [`plan`] decides
//! (pure), [`apply`] does it: download into a staging directory, verify, fsync, lock, switch
//! `current` atomically, run the hook, release and prune old versions. [`watch`] repeats that
//! as a service, [`metrics`] exposes the figures, [`tiers`] places peers in the tracker's tiers.

pub mod apply;
pub mod cmd;
pub mod metrics;
pub mod plan;
#[cfg(feature = "tracker")]
pub mod tiers;
pub mod watch;

pub use apply::{sync, SyncOptions, SyncReport};
