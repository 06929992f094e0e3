//! Every exit status blobpin uses, in one place (also listed in the man page).
//!
//! vmtouch mode keeps vmtouch 1.3.1's statuses exactly: 0 for success (warnings included),
//! 1 for usage errors and every FATAL. The modern subcommands use the whole table.

/// Success; in vmtouch mode also a run that printed warnings.
pub const OK: i32 = 0;
/// A fatal error (vmtouch's FATAL, a failed lock, an unusable argument value).
pub const FATAL: i32 = 1;
/// The command line could not be parsed (modern subcommands; vmtouch mode uses 1).
pub const USAGE: i32 = 2;
/// The run finished but some paths could not be processed (modern subcommands only).
pub const PARTIAL: i32 = 3;
/// Interrupted by SIGINT before finishing (modern subcommands only).
pub const INTERRUPTED: i32 = 130;
