//! The JSON report of `blobpin stat|touch|evict|lock --json`, schema `blobpin.residency/1`.
//!
//! One object per run:
//! ```text
//! {
//!   "schema": "blobpin.residency/1",
//!   "operation": "stat" | "touch" | "evict" | "lock",
//!   "page_size": 4096,
//!   "files": [{
//!     "path": "...",                  // lossy UTF-8 where the name is not
//!     "size": 67108864,               // bytes
//!     "offset": 0, "length": 67108864, // the range operated on
//!     "pages": 16384,
//!     "resident_pages": 4096,         // before the operation; null when not measurable
//!     "resident_bytes": 16777216,     // null likewise
//!     "resident_pages_after": 16384,  // touch/lock only, else null
//!     "dirty_pages": 0,               // cachestat only, else null
//!     "method": "cachestat" | "mincore" | "none",
//!     "locked": false
//!   }],
//!   "totals": {
//!     "files": 1, "directories": 0, "pages": 16384, "bytes": 67108864,
//!     "resident_pages": 4096, "resident_bytes": 16777216,
//!     "resident_percent": 25.0,        // null when pages is 0
//!     "unmeasured_pages": 0
//!   },
//!   "warnings": [{"kind": "stat", "path": "...", "message": "..."}],
//!   "elapsed_seconds": 0.0012
//! }
//! ```
//! Fields are only ever added within a schema version; a change of meaning bumps it.

use std::io::{self, Write};

use serde::Serialize;

use crate::residency::{FileReport, Method, Totals, Warning};

/// The schema identifier written into every report.
pub const SCHEMA: &str = "blobpin.residency/1";

#[derive(Serialize)]
pub struct Report<'a> {
    pub schema: &'static str,
    pub operation: &'a str,
    pub page_size: u64,
    pub files: Vec<FileJson>,
    pub totals: TotalsJson,
    pub warnings: Vec<WarningJson>,
    pub elapsed_seconds: f64,
}

#[derive(Serialize)]
pub struct FileJson {
    pub path: String,
    pub size: u64,
    pub offset: u64,
    pub length: u64,
    pub pages: u64,
    pub resident_pages: Option<u64>,
    pub resident_bytes: Option<u64>,
    pub resident_pages_after: Option<u64>,
    pub dirty_pages: Option<u64>,
    pub method: Method,
    pub locked: bool,
}

impl FileJson {
    pub fn from_report(r: &FileReport, page: u64) -> FileJson {
        FileJson {
            path: r.path.to_string_lossy().into_owned(),
            size: r.size,
            offset: r.span.offset,
            length: r.span.len,
            pages: r.pages,
            resident_pages: r.resident_before,
            resident_bytes: r.resident_before.map(|p| (p * page).min(r.span.len)),
            resident_pages_after: r.resident_after,
            dirty_pages: r.dirty,
            method: r.method,
            locked: r.locked,
        }
    }
}

#[derive(Serialize)]
pub struct TotalsJson {
    pub files: u64,
    pub directories: u64,
    pub pages: u64,
    pub bytes: u64,
    pub resident_pages: u64,
    pub resident_bytes: u64,
    pub resident_percent: Option<f64>,
    pub unmeasured_pages: u64,
}

impl TotalsJson {
    pub fn from_totals(t: &Totals, page: u64) -> TotalsJson {
        let measured = t.pages - t.unmeasured;
        TotalsJson {
            files: t.files,
            directories: t.dirs,
            pages: t.pages,
            bytes: t.pages * page,
            resident_pages: t.resident,
            resident_bytes: t.resident * page,
            resident_percent: (measured > 0).then(|| 100.0 * t.resident as f64 / measured as f64),
            unmeasured_pages: t.unmeasured,
        }
    }
}

#[derive(Serialize)]
pub struct WarningJson {
    pub kind: &'static str,
    pub path: String,
    pub message: String,
}

impl From<&Warning> for WarningJson {
    fn from(w: &Warning) -> Self {
        WarningJson {
            kind: w.kind(),
            path: w.path().to_string_lossy().into_owned(),
            message: w.to_string(),
        }
    }
}

/// Writes the report as pretty JSON and a newline.
pub fn write(out: &mut dyn Write, report: &Report<'_>) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    out.write_all(b"\n")
}
