//! The outcome spool: where a worker keeps a try's outcome on local disk while the store
//! cannot take it, so that no outcome is lost to a database outage, a worker restart or a
//! crash while the worker waits.
//!
//! One file per outcome, `<ti_id>-<try_number>.json`, in `$SLUICE_HOME/spool/`. A file is
//! written whole to a temporary name, synced, renamed into place and the directory synced:
//! an entry is either absent or complete, even across a power cut. A file per outcome (not
//! one append-only log per worker) because a worker's name changes with its process, the
//! home may be shared by several workers, and removing a recorded outcome is then one
//! `unlink` instead of a compaction.
//!
//! Replay ([`replay`]) records each entry through the store's usual finish, which only ends
//! a try that is still running with that try number: recording is exactly-once however often
//! an entry is replayed, by whichever worker. When the try is no longer running (the zombie
//! sweep failed it and a retry may be under way, or another replay got there first), the
//! store's state wins: the spooled outcome is logged and dropped, never applied twice.

use crate::registry::Registry;
use crate::scheduler::Dispatch;
use crate::store::{Finish, Outcome, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An outcome waiting in the spool: what [`Store::finish_many`] needs, and who ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spooled {
    pub pipeline_id: String,
    pub task_id: String,
    pub ti_id: i64,
    pub try_number: i64,
    /// The worker that ran the try (for the log: a restarted worker has another name).
    pub worker: String,
    pub outcome: Outcome,
}

/// A worker's spool directory. Clones share the set of entries being recorded in process.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    /// Entries this process is still trying to record itself: replay leaves them alone.
    recording: Arc<Mutex<HashSet<(i64, i64)>>>,
}

/// What one [`replay`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Outcomes the store took: their try was still running.
    pub recorded: usize,
    /// Outcomes dropped because the store had moved on (see the module's comment).
    pub superseded: usize,
    /// Entries left in the spool because the store failed; a later pass tries again.
    pub kept: usize,
    /// Entries left in the spool that this build cannot record (an unknown pipeline, an
    /// unreadable file): an operator has to look.
    pub stuck: usize,
}

impl Spool {
    /// The spool in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Spool {
        Spool { dir: dir.into(), recording: Arc::default() }
    }

    /// The spool of a worker whose home is `home`: `home/spool`.
    pub fn in_home(home: &Path) -> Spool {
        Spool::new(home.join("spool"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the entry for try `try_number` of `ti_id`.
    pub fn path_of(&self, ti_id: i64, try_number: i64) -> PathBuf {
        self.dir.join(file_name(ti_id, try_number))
    }

    /// Writes `entry` durably: it is on disk when this returns `Ok`.
    pub async fn keep(&self, entry: &Spooled) -> io::Result<PathBuf> {
        let text = serde_json::to_vec(entry).map_err(io::Error::other)?;
        let (dir, path) = (self.dir.clone(), self.path_of(entry.ti_id, entry.try_number));
        // Blocking file calls (fsync can take long) on the blocking pool, not a runtime thread.
        tokio::task::spawn_blocking(move || write_durably(&dir, &path, &text).map(|()| path))
            .await
            .map_err(io::Error::other)?
    }

    /// Removes the entry of a try (recorded, or superseded); absent is fine.
    pub async fn forget(&self, ti_id: i64, try_number: i64) -> io::Result<()> {
        match tokio::fs::remove_file(self.path_of(ti_id, try_number)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether the spool holds an outcome for this try.
    pub async fn holds(&self, ti_id: i64, try_number: i64) -> bool {
        tokio::fs::try_exists(self.path_of(ti_id, try_number)).await.unwrap_or(false)
    }

    /// The tries with an entry, in file-name order; none when the directory is absent.
    pub async fn tries(&self) -> io::Result<Vec<(i64, i64)>> {
        let mut dir = match tokio::fs::read_dir(&self.dir).await {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut tries = Vec::new();
        while let Some(entry) = dir.next_entry().await? {
            if let Some(name) = entry.file_name().to_str()
                && let Some(try_) = parse_file_name(name)
            {
                tries.push(try_);
            }
        }
        tries.sort_unstable();
        Ok(tries)
    }

    /// Marks a try as being recorded by this process until the guard drops (also when the
    /// future holding it is dropped): replay passes skip it meanwhile.
    pub fn recording(&self, ti_id: i64, try_number: i64) -> Recording {
        if let Ok(mut set) = self.recording.lock() {
            set.insert((ti_id, try_number));
        }
        Recording { spool: self.clone(), key: (ti_id, try_number) }
    }

    fn is_recording(&self, key: (i64, i64)) -> bool {
        self.recording.lock().is_ok_and(|set| set.contains(&key))
    }

    async fn read(&self, ti_id: i64, try_number: i64) -> Result<Spooled, String> {
        let path = self.path_of(ti_id, try_number);
        let text = tokio::fs::read(&path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{} is not a spooled outcome: {e}", path.display()))
    }
}

/// See [`Spool::recording`].
#[derive(Debug)]
pub struct Recording {
    spool: Spool,
    key: (i64, i64),
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Ok(mut set) = self.spool.recording.lock() {
            set.remove(&self.key);
        }
    }
}

/// `<ti_id>-<try_number>.json`.
pub fn file_name(ti_id: i64, try_number: i64) -> String {
    format!("{ti_id}-{try_number}.json")
}

/// The try a spool file name stands for; `None` for anything else (temporary files).
pub fn parse_file_name(name: &str) -> Option<(i64, i64)> {
    let (ti, try_) = name.strip_suffix(".json")?.split_once('-')?;
    Some((ti.parse().ok()?, try_.parse().ok()?))
}

/// Whether a failure to record may pass if the worker waits: the database away or a
/// statement failing (a lost connection, a restarting server). Anything else will not.
pub fn is_transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Connect { .. } | StoreError::Query { .. })
}

/// What a replay learnt of one entry from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The try was running: the spooled outcome is now its outcome.
    Recorded,
    /// The try was no longer running: the store's state stands, the entry is dropped.
    Superseded,
}

/// The verdict of a finish that returned; `ended` is [`crate::store::Recorded::ended`].
pub fn verdict(ended: bool) -> Verdict {
    if ended { Verdict::Recorded } else { Verdict::Superseded }
}

/// Records every spooled outcome that this process is not recording itself, oldest file
/// name first, and removes each entry the store has decided (recorded or superseded). What
/// a finish queued goes to `dispatch`. A store failure ends the pass: the rest stay for the
/// next one.
pub async fn replay(spool: &Spool, store: &Store, registry: &Registry, dispatch: &dyn Dispatch) -> Replayed {
    let mut done = Replayed::default();
    let tries = match spool.tries().await {
        Ok(tries) => tries,
        Err(e) => {
            tracing::error!("cannot list the outcome spool {}: {e}", spool.dir().display());
            return done;
        }
    };
    let mut failing = false;
    for (ti_id, try_number) in tries {
        if spool.is_recording((ti_id, try_number)) {
            continue;
        }
        if failing {
            done.kept += 1;
            continue;
        }
        let entry = match spool.read(ti_id, try_number).await {
            Ok(entry) => entry,
            Err(e) => {
                tracing::error!("outcome spool: {e}; left in place");
                done.stuck += 1;
                continue;
            }
        };
        let Some(pipeline) = registry.pipeline(&entry.pipeline_id) else {
            tracing::error!(
                "outcome spool: task instance {ti_id} try {try_number} belongs to pipeline `{}`, which this build \
                 does not carry; left in {}",
                entry.pipeline_id,
                spool.path_of(ti_id, try_number).display()
            );
            done.stuck += 1;
            continue;
        };
        let finish = Finish {
            pipeline,
            ti_id,
            try_number,
            outcome: entry.outcome.clone(),
            run: None,
            trail: Default::default(),
        };
        match store.finish_many(&[finish], registry.deployment.parallelism, None).await {
            Ok(batch) => {
                dispatch.dispatch(batch.queued);
                let ended = batch.each.first().is_some_and(|r| r.ended);
                match verdict(ended) {
                    Verdict::Recorded => {
                        tracing::info!(
                            "outcome spool: recorded the {} of {}.{} (task instance {ti_id}, try {try_number}, run \
                             by {})",
                            kind(&entry.outcome),
                            entry.pipeline_id,
                            entry.task_id,
                            entry.worker
                        );
                        done.recorded += 1;
                    }
                    Verdict::Superseded => {
                        tracing::warn!(
                            "outcome spool: dropped the {} of {}.{} (task instance {ti_id}, try {try_number}, run by \
                             {}): that try is no longer running in the store (taken for a zombie, or already \
                             recorded), and the store's state stands",
                            kind(&entry.outcome),
                            entry.pipeline_id,
                            entry.task_id,
                            entry.worker
                        );
                        done.superseded += 1;
                    }
                }
                if let Err(e) = spool.forget(ti_id, try_number).await {
                    tracing::error!("outcome spool: cannot remove a decided entry: {e}; its replay will find it done");
                }
            }
            Err(e) => {
                tracing::warn!("outcome spool: cannot record task instance {ti_id} try {try_number} yet: {e}");
                // The database away: the rest would fail too, and wait for the next pass.
                failing = is_transient(&e);
                if failing { done.kept += 1 } else { done.stuck += 1 }
            }
        }
    }
    done
}

fn kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Success(_) => "success",
        Outcome::Failed(_) => "failure",
        Outcome::Skipped(_) => "skip",
        Outcome::NotReady(_) => "not ready",
    }
}

/// Writes `text` to `path` so that it survives a crash: a temporary file, synced, renamed
/// over `path`, then the directory synced so the rename itself is on disk.
fn write_durably(dir: &Path, path: &Path, text: &[u8]) -> io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_temporary_files_are_not_entries() {
        assert_eq!(file_name(42, 3), "42-3.json");
        assert_eq!(parse_file_name("42-3.json"), Some((42, 3)));
        assert_eq!(parse_file_name("42-3.json.tmp"), None);
        assert_eq!(parse_file_name("notes.txt"), None);
        assert_eq!(parse_file_name("a-3.json"), None);
    }

    #[test]
    fn a_try_no_longer_running_is_superseded() {
        assert_eq!(verdict(true), Verdict::Recorded);
        assert_eq!(verdict(false), Verdict::Superseded);
    }

    #[test]
    fn only_an_unreachable_or_failing_database_is_worth_waiting_for() {
        let away = StoreError::Query { doing: "recording a task outcome", source: sqlx::Error::PoolTimedOut };
        assert!(is_transient(&away));
        assert!(!is_transient(&StoreError::Conflict("the worker's outcome recorder stopped".into())));
        assert!(!is_transient(&StoreError::NotFound("pipeline".into())));
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let entry = Spooled {
            pipeline_id: "p".into(),
            task_id: "t".into(),
            ti_id: 7,
            try_number: 2,
            worker: "host-1".into(),
            outcome: Outcome::Success(serde_json::json!({"rows": 3})),
        };
        let text = serde_json::to_string(&entry).expect("serializes");
        assert!(text.contains(r#""outcome":{"success":{"rows":3}}"#), "{text}");
        assert_eq!(serde_json::from_str::<Spooled>(&text).expect("parses"), entry);
    }
}
