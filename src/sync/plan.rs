//! What `sync` has to do, decided from the feed entry and the destination's state alone (pure,
//! table-tested). The destination directory looks like this:
//!
//! ```text
//! DIR/current -> versions/<v>     the live version (a relative symlink, replaced by rename)
//! DIR/versions/<v>/...            complete, verified, fsynced versions
//! DIR/.staging/<v>/...            a download in progress (resumed by the next sync)
//! DIR/.locks/<v>.pid              pid of the detached `blobpin lock` holding version <v>
//! ```

/// The destination as found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestState {
    /// The version `current` points to, if it points into `versions/`.
    pub current: Option<String>,
    /// Complete versions, oldest first (by the time they were switched to or created).
    pub versions: Vec<String>,
    /// Versions with a download in progress.
    pub staging: Vec<String>,
    /// Versions whose lock holder is alive.
    pub locked: Vec<String>,
}

/// The steps of one sync, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub version: String,
    /// Download into `.staging/<version>` (resuming if it already exists) and verify.
    pub download: bool,
    /// A partial download of this version is there to resume.
    pub resume: bool,
    /// Stale partial downloads of other versions to delete first.
    pub drop_staging: Vec<String>,
    /// Start a lock holder for the new version (before the switch).
    pub lock: bool,
    /// Point `current` at the new version.
    pub switch: bool,
    /// Run the `--exec` hook (only after a switch).
    pub exec: bool,
    /// Versions whose lock holders to stop (after the switch).
    pub unlock: Vec<String>,
    /// Versions to evict from the page cache and delete (`--keep`).
    pub prune: Vec<String>,
}

impl Plan {
    /// Whether the live version is already the feed's and nothing has to change.
    pub fn is_noop(&self) -> bool {
        !self.download
            && !self.lock
            && !self.switch
            && self.unlock.is_empty()
            && self.prune.is_empty()
    }
}

/// Decides the steps for syncing to `version`, locking if `lock`, keeping `keep` (>= 1)
/// complete versions including the live one.
pub fn plan(version: &str, state: &DestState, lock: bool, keep: usize) -> Plan {
    let have = state.versions.iter().any(|v| v == version);
    let live = state.current.as_deref() == Some(version) && have;
    let download = !have;
    let switch = !live;
    let lock_new = lock && !state.locked.iter().any(|v| v == version);
    // Once `version` is live every other holder goes; without --lock all of them go (the
    // operator asked for an unlocked deploy).
    let unlock: Vec<String> = state
        .locked
        .iter()
        .filter(|v| !lock || *v != version)
        .cloned()
        .collect();
    let mut after: Vec<String> = state
        .versions
        .iter()
        .filter(|v| *v != version)
        .cloned()
        .collect();
    after.push(version.to_string());
    let keep = keep.max(1);
    let prune = if after.len() > keep {
        after[..after.len() - keep].to_vec()
    } else {
        Vec::new()
    };
    Plan {
        version: version.to_string(),
        download,
        resume: download && state.staging.iter().any(|v| v == version),
        drop_staging: state
            .staging
            .iter()
            .filter(|v| *v != version)
            .cloned()
            .collect(),
        lock: lock_new,
        switch,
        exec: switch,
        unlock,
        prune,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(
        current: Option<&str>,
        versions: &[&str],
        staging: &[&str],
        locked: &[&str],
    ) -> DestState {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        DestState {
            current: current.map(String::from),
            versions: v(versions),
            staging: v(staging),
            locked: v(locked),
        }
    }

    #[test]
    fn fresh_destination_downloads_switches_and_locks() {
        let p = plan("v1", &DestState::default(), true, 2);
        assert!(p.download && !p.resume && p.lock && p.switch && p.exec);
        assert!(p.unlock.is_empty() && p.prune.is_empty());
    }

    #[test]
    fn up_to_date_and_locked_is_a_noop() {
        let p = plan("v1", &st(Some("v1"), &["v1"], &[], &["v1"]), true, 2);
        assert!(p.is_noop(), "{p:?}");
        let p = plan("v1", &st(Some("v1"), &["v1"], &[], &[]), false, 2);
        assert!(p.is_noop(), "{p:?}");
    }

    #[test]
    fn up_to_date_but_holder_gone_relocks_without_switching() {
        let p = plan("v1", &st(Some("v1"), &["v1"], &[], &[]), true, 2);
        assert!(p.lock && !p.download && !p.switch && !p.exec);
    }

    #[test]
    fn update_resumes_unlocks_old_and_prunes() {
        let p = plan(
            "v3",
            &st(Some("v2"), &["v1", "v2"], &["v3", "v0"], &["v2"]),
            true,
            2,
        );
        assert!(p.download && p.resume && p.lock && p.switch);
        assert_eq!(p.drop_staging, vec!["v0".to_string()]);
        assert_eq!(p.unlock, vec!["v2".to_string()]);
        assert_eq!(p.prune, vec!["v1".to_string()]);
    }

    #[test]
    fn unlocked_sync_stops_every_holder() {
        let p = plan("v2", &st(Some("v1"), &["v1"], &[], &["v1"]), false, 5);
        assert_eq!(p.unlock, vec!["v1".to_string()]);
        assert!(!p.lock && p.prune.is_empty());
    }

    #[test]
    fn complete_but_not_live_version_switches_without_download() {
        // A crash between the rename into versions/ and the flip.
        let p = plan("v2", &st(Some("v1"), &["v1", "v2"], &[], &[]), false, 1);
        assert!(!p.download && p.switch);
        assert_eq!(p.prune, vec!["v1".to_string()]);
    }
}
