//! The webhook's deploys as `GET /v1/deploys/<id>` shows them: kept in
//! memory (the newest `KEEP_JOBS`) and, when a directory is given, one
//! record file each, so that an id answers after the process restarts.
//!
//! A record file is named by its id alone (`<32 hex digits>.json`) and read
//! back bounded (`MAX_RECORD`); anything else in the directory is left
//! alone. A deploy that was running when the process stopped reads back
//! as `interrupted`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A deploy the webhook started, as `GET /v1/deploys/<id>` shows it and
/// its record file holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// 32 hex digits.
    pub id: String,
    pub app: String,
    /// The revision asked for, and the commit it named then.
    pub revision: String,
    pub sha: String,
    /// `running`, `guarding` once a guarded release watches its traffic
    /// (`guard:`); then `live`, `rolled-back` (its guard failed it, with
    /// `error`) or `failed` (with `error`); or `interrupted` (with
    /// `error`): the process stopped while it was running, and how it
    /// ended is not known.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What a person can do about `error`, when there is something, as
    /// the CLI prints it under the same error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub started: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<chrono::DateTime<chrono::Utc>>,
}
/// How many finished deploys are remembered for `GET /v1/deploys/<id>`
/// (and kept as record files).
pub const KEEP_JOBS: usize = 200;

/// The largest record file read back: anything larger was not written
/// here.
const MAX_RECORD: u64 = 1024 * 1024;

/// What a deploy that was running when its process stopped says.
const INTERRUPTED: &str = "the process serving the webhook stopped while this deploy ran, \
    so how it ended is not known; `reconciler releases APP` shows what each server runs";

/// Random bytes in a deploy's id (32 hex digits).
pub(super) const JOB_ID_BYTES: usize = 16;

/// The deploys the webhook knows, by id, and where their records are
/// kept, if anywhere.
#[derive(Default)]
pub(super) struct Jobs {
    jobs: Mutex<BTreeMap<String, Job>>,
    /// Where each deploy's record is kept (`<id>.json`), if anywhere.
    records: Option<PathBuf>,
}

impl Jobs {
    /// Deploys kept in `dir` (made, 0700, if missing) as `<id>.json`,
    /// written atomically when a deploy starts and when it ends, and the
    /// last `KEEP_JOBS` kept. The records already there are read now: a
    /// deploy they show `running` was cut off when its process stopped,
    /// and reads back (and is rewritten) as `interrupted`. Records that
    /// cannot be read or written are logged, never fatal: the webhook goes
    /// on without them.
    pub(super) fn recorded_in(dir: PathBuf) -> Self {
        let jobs = match load_records(&dir) {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot read the deploy records");
                BTreeMap::new()
            }
        };
        if !jobs.is_empty() {
            tracing::info!(deploys = jobs.len(), dir = %dir.display(), "read the deploy records");
        }
        Self {
            jobs: Mutex::new(jobs),
            records: Some(dir),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The deploy `id`, if it is known.
    pub(super) fn get(&self, id: &str) -> Option<Job> {
        self.lock().get(id).cloned()
    }

    /// Changes the deploy `id` (if known) with `change`, and its record.
    pub(super) fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        let mut jobs = self.lock();
        if let Some(job) = jobs.get_mut(id) {
            change(job);
            self.record(job);
        }
    }

    /// Remembers `job`, forgetting the oldest finished deploys past
    /// `KEEP_JOBS`.
    pub(super) fn insert(&self, job: Job) {
        let mut jobs = self.lock();
        while jobs.len() >= KEEP_JOBS {
            let oldest = jobs
                .values()
                .filter(|j| !in_progress(&j.state))
                .min_by_key(|j| j.started)
                .map(|j| j.id.clone());
            let Some(oldest) = oldest else { break };
            jobs.remove(&oldest);
            if let Some(dir) = &self.records {
                remove_record(dir, &oldest);
            }
        }
        self.record(&job);
        jobs.insert(job.id.clone(), job);
    }

    /// Writes `job`'s record file, when records are kept.
    fn record(&self, job: &Job) {
        let Some(dir) = &self.records else { return };
        if let Err(error) = write_record(dir, job) {
            tracing::warn!(id = %job.id, dir = %dir.display(), %error, "cannot write the deploy's record");
        }
    }
}

/// Whether a deploy in `state` has not ended.
fn in_progress(state: &str) -> bool {
    matches!(state, "running" | "guarding")
}

/// Whether `name` is a record file's name: `<32 hex digits>.json`.
fn record_id(name: &str) -> Option<&str> {
    let id = name.strip_suffix(".json")?;
    let valid =
        id.len() == JOB_ID_BYTES * 2 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then_some(id)
}

fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn write_record(dir: &Path, job: &Job) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(job).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomically(&record_path(dir, &job.id), &bytes)
}

fn remove_record(dir: &Path, id: &str) {
    match std::fs::remove_file(record_path(dir, id)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(%id, dir = %dir.display(), %error, "cannot remove an old deploy's record");
        }
    }
}

/// Reads the records in `dir` (made, private, if missing): the newest
/// `KEEP_JOBS` (the older ones' files removed), a `running` one rewritten
/// as `interrupted`. A file that is not a record of this shape is logged
/// and left alone.
fn load_records(dir: &Path) -> std::io::Result<BTreeMap<String, Job>> {
    use std::io::Read as _;
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(record_id) else {
            continue;
        };
        let path = entry.path();
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&path)
            .and_then(|file| file.take(MAX_RECORD).read_to_end(&mut bytes));
        let job = read
            .map_err(|e| e.to_string())
            .and_then(|_| serde_json::from_slice::<Job>(&bytes).map_err(|e| e.to_string()))
            .and_then(|job| {
                if job.id == id {
                    Ok(job)
                } else {
                    Err(format!("it holds the deploy {}", job.id))
                }
            });
        match job {
            Ok(job) => found.push(job),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "not a deploy record; left alone");
            }
        }
    }
    found.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| a.id.cmp(&b.id)));
    for old in found.split_off(found.len().min(KEEP_JOBS)) {
        remove_record(dir, &old.id);
    }
    let mut jobs = BTreeMap::new();
    for mut job in found {
        if in_progress(&job.state) {
            job.state = "interrupted".into();
            job.error = Some(INTERRUPTED.into());
            if let Err(error) = write_record(dir, &job) {
                tracing::warn!(id = %job.id, %error, "cannot write the deploy's record");
            }
        }
        jobs.insert(job.id.clone(), job);
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u32, state: &str) -> Job {
        Job {
            id: format!("{n:032x}"),
            app: "shop".into(),
            revision: "v1".into(),
            sha: "4ba7558d2b6700000000000000000000000000aa".into(),
            state: state.into(),
            error: None,
            hint: None,
            started: chrono::DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0)
                .expect("a time"),
            finished: None,
        }
    }

    #[test]
    fn records_read_back_and_a_running_one_as_interrupted() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_record(dir.path(), &job(1, "live")).expect("write");
        write_record(dir.path(), &job(2, "running")).expect("write");
        write_record(dir.path(), &job(6, "guarding")).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a record").expect("write");
        std::fs::write(dir.path().join(format!("{:032x}.json", 3)), "{garbled").expect("write");
        // A record under another deploy's name is not believed.
        let mut moved = job(4, "live");
        moved.id = format!("{:032x}", 5);
        std::fs::write(
            dir.path().join(format!("{:032x}.json", 4)),
            serde_json::to_vec(&moved).expect("JSON"),
        )
        .expect("write");

        let jobs = load_records(dir.path()).expect("read");
        let states: Vec<(&str, &str)> = jobs
            .values()
            .map(|j| (j.id.as_str(), j.state.as_str()))
            .collect();
        let (one, two, six) = (
            format!("{:032x}", 1),
            format!("{:032x}", 2),
            format!("{:032x}", 6),
        );
        assert_eq!(
            states,
            [
                (one.as_str(), "live"),
                (two.as_str(), "interrupted"),
                (six.as_str(), "interrupted")
            ]
        );
        assert!(
            jobs[&two]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("stopped"))
        );
        // Rewritten: a second start reads it as interrupted too.
        let again = load_records(dir.path()).expect("read");
        assert_eq!(again[&two].state, "interrupted");
        assert!(
            dir.path().join("notes.txt").exists(),
            "other files are left alone"
        );
    }

    #[test]
    fn only_the_newest_records_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let total = u32::try_from(KEEP_JOBS).expect("small") + 5;
        for n in 1..=total {
            write_record(dir.path(), &job(n, "live")).expect("write");
        }
        let jobs = load_records(dir.path()).expect("read");
        assert_eq!(jobs.len(), KEEP_JOBS);
        assert!(!jobs.contains_key(&format!("{:032x}", 5)), "the oldest go");
        assert!(jobs.contains_key(&format!("{:032x}", 6)));
        let files = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(files, KEEP_JOBS, "and so do their files");
    }

    #[test]
    fn a_record_file_is_named_by_its_id_only() {
        assert_eq!(
            record_id("0123456789abcdef0123456789abcdef.json"),
            Some("0123456789abcdef0123456789abcdef")
        );
        for name in [
            "0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789ABCDEF.json",
            "../0123456789abcdef0123456789abc.json",
            ".0123456789abcdef0123456789abcdef.json.tmp",
        ] {
            assert_eq!(record_id(name), None, "{name}");
        }
    }
}
