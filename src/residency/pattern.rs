//! Name filters: vmtouch's `-i`/`-I` (`fnmatch(3)` on the basename) and the modern
//! `--include`/`--exclude` globs (on the basename, or on the whole path when the glob has a
//! `/`, like rsync).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::sys;

/// One compiled name filter.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// `fnmatch(pattern, basename(path), 0)`, exactly as vmtouch.
    Fnmatch(CString),
    /// A glob; `whole_path` when it contains a `/`.
    Glob {
        matcher: globset::GlobMatcher,
        whole_path: bool,
    },
}

impl Pattern {
    /// A vmtouch pattern; `None` when it contains a NUL byte (impossible from argv).
    pub fn fnmatch(pattern: &[u8]) -> Option<Pattern> {
        CString::new(pattern).ok().map(Pattern::Fnmatch)
    }

    /// A modern glob (`*`, `?`, `[...]`, `{a,b}`, `**`).
    pub fn glob(pattern: &str) -> Result<Pattern, globset::Error> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()?;
        Ok(Pattern::Glob {
            matcher: glob.compile_matcher(),
            whole_path: pattern.contains('/'),
        })
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &Path) -> bool {
        match self {
            Pattern::Fnmatch(pat) => match CString::new(basename(path.as_os_str().as_bytes())) {
                Ok(name) => sys::fnmatch(pat, &name),
                Err(_) => false,
            },
            Pattern::Glob {
                matcher,
                whole_path,
            } => {
                if *whole_path {
                    matcher.is_match(path)
                } else {
                    let name = basename(path.as_os_str().as_bytes());
                    matcher.is_match(Path::new(std::ffi::OsStr::from_bytes(name)))
                }
            }
        }
    }
}

/// POSIX `basename(3)` (libgen): trailing slashes ignored, `/` for all-slash paths, the whole
/// string when it has no slash.
pub fn basename(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        return b".";
    }
    let end = path.iter().rposition(|&b| b != b'/');
    let Some(end) = end else {
        return b"/";
    };
    let trimmed = &path[..=end];
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basename_is_posix() {
        assert_eq!(basename(b"tree/a/f1"), b"f1");
        assert_eq!(basename(b"tree/a/"), b"a");
        assert_eq!(basename(b"tree/a//"), b"a");
        assert_eq!(basename(b"/"), b"/");
        assert_eq!(basename(b"f"), b"f");
        assert_eq!(basename(b""), b".");
    }

    #[test]
    fn fnmatch_matches_basename_only() {
        let p = Pattern::fnmatch(b"*.c").unwrap();
        assert!(p.matches(Path::new("tree/a/code.c")));
        assert!(!p.matches(Path::new("tree/a/code.h")));
        let slash = Pattern::fnmatch(b"a/f1").unwrap();
        assert!(!slash.matches(Path::new("tree/a/f1")));
        let star = Pattern::fnmatch(b"*").unwrap();
        assert!(star.matches(Path::new(".hidden")));
    }

    #[test]
    fn globs_match_name_or_whole_path() {
        let name = Pattern::glob("*.idx").unwrap();
        assert!(name.matches(Path::new("/data/v1/a.idx")));
        let whole = Pattern::glob("**/v1/*.idx").unwrap();
        assert!(whole.matches(Path::new("/data/v1/a.idx")));
        assert!(!whole.matches(Path::new("/data/v2/a.idx")));
    }
}
