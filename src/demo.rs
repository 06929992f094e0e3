//! `blobpin demo` (being written).

use anyhow::Result;

/// Runs `blobpin demo`.
pub fn run(_a: &crate::cli::DemoArgs) -> Result<i32> {
    anyhow::bail!("not yet")
}
