//! The durable state: one redb file in the state directory. A table of jobs by submission number
//! (each job's record: the job as submitted, its state, what it holds when placed) and a table of
//! metadata (the format, the fleet and the policy the server runs). The changes of one or more
//! batches of requests are one write transaction, committed durably (redb's default,
//! `Durability::Immediate`: fsync before `commit` returns) before any request of those batches is
//! answered.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gpuplace::engine::Allocation;
use gpuplace::model::jobs::Job;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::api::JobState;
use crate::error::ServeError;

/// The store's file in a state directory.
pub const STATE_FILE: &str = "gpuplace.redb";
/// The version of what the store holds; a server refuses a store of another.
pub const STORE_FORMAT: u32 = 1;

const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// What a store holds besides its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The fleet, as `Fleet::to_json` writes it.
    pub fleet_json: String,
    /// The policy, as `Policy::to_json` writes it.
    pub policy_json: String,
    /// The latest scheduling round's number (written with every commit).
    pub round: u64,
    /// What fleet events changed (node states, site power, online days), as JSON
    /// (`crate::service::Overrides`).
    pub overrides_json: String,
    /// The tenants, as `Tenants::to_json` writes them; None: no quotas.
    pub tenants_json: Option<String>,
}

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredJob {
    /// The job as submitted.
    pub job: Job,
    /// Its state.
    pub state: JobState,
    /// What it holds while placed, and its anchor rack's score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed: Option<(Allocation, u32)>,
    /// The scheduling round that placed it (while it is placed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u64>,
    /// Why it was rejected or preempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a pod bound through the Kubernetes extender, its gang (`NAMESPACE/GROUP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// For a pod bound through the Kubernetes extender, its node: gpuplace neither moves nor
    /// evicts it (Kubernetes runs it), and a fleet event that takes its tray finishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The open store. It is shared (`Arc`) between the service, which prepares each batch's write,
/// and the server's committer thread, which writes it while the core goes on with the next batch.
pub struct Store {
    db: Database,
    path: PathBuf,
    commits: AtomicU64,
    commit_nanos: AtomicU64,
    /// Test hook: writes left before they fail (`u64::MAX`: never).
    fail_after: AtomicU64,
    /// Test hook: how long each write waits before it begins, ns.
    delay_nanos: AtomicU64,
}

/// One transaction's content, serialized: what a batch changed, ready to be written by
/// [`Store::write_batch`] on any thread.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    meta: Option<Meta>,
    round: u64,
    jobs: Vec<(u64, Vec<u8>)>,
}

impl Batch {
    /// Adds `later`, a batch prepared after this one: one transaction that leaves the store as
    /// writing both in order would (its metadata and round replace these; a job's later record
    /// is inserted after, and so replaces, its earlier one).
    pub fn absorb(&mut self, later: Batch) {
        if later.meta.is_some() {
            self.meta = later.meta;
        }
        self.round = later.round;
        self.jobs.extend(later.jobs);
    }
}

impl Store {
    /// Opens the store of state directory `dir` (created, with the store, when absent), and reads
    /// its metadata (None for a new store). A damaged, truncated or foreign file, or one another
    /// server holds, is a [`ServeError::State`] and is left as it is.
    pub fn open(dir: &Path) -> Result<(Store, Option<Meta>), ServeError> {
        let path = dir.join(STATE_FILE);
        let state_error = |record: &str, message: String| ServeError::State {
            path: path.clone(),
            record: record.to_string(),
            message,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(state_error("(directory)", "is not a directory".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| state_error("(directory)", format!("cannot be created: {e}")))?;
        let existed = path.exists();
        if existed {
            match std::fs::metadata(&path) {
                Ok(m) if !m.is_file() => return Err(state_error("(file)", "is not a regular file".into())),
                // redb would make an empty file a new store: refuse it instead, as something else
                // may have truncated it.
                Ok(m) if m.len() == 0 => {
                    return Err(state_error("(file)", "is empty: remove it to start a new state directory".into()));
                }
                Ok(_) => {}
                Err(e) => return Err(state_error("(file)", e.to_string())),
            }
        }
        let db = Database::create(&path).map_err(|e| state_error("(file)", describe_open_error(e)))?;
        if !existed {
            // The new file's directory entry must survive a crash too.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| state_error("(directory)", format!("cannot be synced: {e}")))?;
        }
        let store = Store {
            db,
            path: path.clone(),
            commits: AtomicU64::new(0),
            commit_nanos: AtomicU64::new(0),
            fail_after: AtomicU64::new(u64::MAX),
            delay_nanos: AtomicU64::new(0),
        };
        let meta = store.read_meta()?;
        if existed && meta.is_none() {
            // redb initializes an empty file; a file that held something else does not open.
            let jobs = store.count_jobs()?;
            if jobs > 0 {
                return Err(state_error("meta", "the store has jobs but no metadata".into()));
            }
        }
        Ok((store, meta))
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state_error(&self, record: &str, message: impl Into<String>) -> ServeError {
        ServeError::State { path: self.path.clone(), record: record.to_string(), message: message.into() }
    }

    fn store_error(&self, error: impl std::fmt::Display) -> ServeError {
        ServeError::Store { path: self.path.clone(), message: error.to_string() }
    }

    fn read_meta(&self) -> Result<Option<Meta>, ServeError> {
        let read = self.db.begin_read().map_err(|e| self.state_error("meta", e.to_string()))?;
        let table = match read.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.state_error("meta", e.to_string())),
        };
        let get = |key: &str| -> Result<Option<Vec<u8>>, ServeError> {
            Ok(table.get(key).map_err(|e| self.state_error("meta", e.to_string()))?.map(|v| v.value().to_vec()))
        };
        let text = |key: &str| -> Result<String, ServeError> {
            let bytes = get(key)?.ok_or_else(|| self.state_error(&format!("meta {key}"), "is missing"))?;
            String::from_utf8(bytes).map_err(|_| self.state_error(&format!("meta {key}"), "is not UTF-8"))
        };
        let Some(format) = get("format")? else {
            return Ok(None);
        };
        let format = std::str::from_utf8(&format).ok().and_then(|s| s.parse::<u32>().ok());
        if format != Some(STORE_FORMAT) {
            return Err(self.state_error(
                "meta format",
                format!(
                    "holds format {}, this gpuplace reads format {STORE_FORMAT}",
                    format.map_or_else(|| "(unreadable)".to_string(), |f| f.to_string())
                ),
            ));
        }
        let round = match get("round")? {
            None => 0,
            Some(_) => {
                text("round")?.parse::<u64>().map_err(|_| self.state_error("meta round", "is not a round number"))?
            }
        };
        Ok(Some(Meta {
            fleet_json: text("fleet")?,
            policy_json: text("policy")?,
            round,
            overrides_json: text("overrides")?,
            tenants_json: get("tenants")?
                .map(|bytes| String::from_utf8(bytes).map_err(|_| self.state_error("meta tenants", "is not UTF-8")))
                .transpose()?,
        }))
    }

    fn count_jobs(&self) -> Result<u64, ServeError> {
        let read = self.db.begin_read().map_err(|e| self.state_error("jobs", e.to_string()))?;
        match read.open_table(JOBS) {
            Ok(table) => table.len().map_err(|e| self.state_error("jobs", e.to_string())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(self.state_error("jobs", e.to_string())),
        }
    }

    /// Calls `each(number, job)` for every stored job, by submission number. A record that does
    /// not read back is a [`ServeError::State`] naming it.
    pub fn load_jobs(&self, mut each: impl FnMut(u64, StoredJob) -> Result<(), String>) -> Result<(), ServeError> {
        let read = self.db.begin_read().map_err(|e| self.state_error("jobs", e.to_string()))?;
        let table = match read.open_table(JOBS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(self.state_error("jobs", e.to_string())),
        };
        for entry in table.iter().map_err(|e| self.state_error("jobs", e.to_string()))? {
            let (key, value) = entry.map_err(|e| self.state_error("jobs", e.to_string()))?;
            let number = key.value();
            let record = format!("job {number}");
            let job: StoredJob =
                serde_json::from_slice(value.value()).map_err(|e| self.state_error(&record, e.to_string()))?;
            each(number, job).map_err(|message| self.state_error(&record, message))?;
        }
        Ok(())
    }

    /// Serializes `meta` (when given), the round number and `jobs` into one batch to write.
    pub fn prepare<'a>(
        &self,
        meta: Option<&Meta>,
        round: u64,
        jobs: impl IntoIterator<Item = (u64, &'a StoredJob)>,
    ) -> Result<Batch, ServeError> {
        let jobs = jobs
            .into_iter()
            .map(|(number, job)| serde_json::to_vec(job).map(|bytes| (number, bytes)).map_err(|e| self.store_error(e)))
            .collect::<Result<_, _>>()?;
        Ok(Batch { meta: meta.cloned(), round, jobs })
    }

    /// Writes `meta` (when given), the round number and `jobs` in one transaction, durable when
    /// this returns Ok.
    pub fn write<'a>(
        &self,
        meta: Option<&Meta>,
        round: u64,
        jobs: impl IntoIterator<Item = (u64, &'a StoredJob)>,
    ) -> Result<(), ServeError> {
        self.write_batch(&self.prepare(meta, round, jobs)?)
    }

    /// Writes `batch` in one transaction, durable when this returns Ok. The caller writes batches
    /// in the order they were prepared (the server: its one committer thread).
    pub fn write_batch(&self, batch: &Batch) -> Result<(), ServeError> {
        match self.delay_nanos.load(Ordering::Relaxed) {
            0 => {}
            nanos => std::thread::sleep(Duration::from_nanos(nanos)),
        }
        match self.fail_after.load(Ordering::Relaxed) {
            u64::MAX => {}
            0 => return Err(self.store_error("made to fail (test hook)")),
            left => self.fail_after.store(left - 1, Ordering::Relaxed),
        }
        let started = Instant::now();
        let write = self.db.begin_write().map_err(|e| self.store_error(e))?;
        {
            let mut table = write.open_table(META).map_err(|e| self.store_error(e))?;
            if let Some(meta) = &batch.meta {
                for (key, value) in [
                    ("format", STORE_FORMAT.to_string()),
                    ("fleet", meta.fleet_json.clone()),
                    ("policy", meta.policy_json.clone()),
                    ("overrides", meta.overrides_json.clone()),
                ] {
                    table.insert(key, value.as_bytes()).map_err(|e| self.store_error(e))?;
                }
                match &meta.tenants_json {
                    Some(json) => {
                        table.insert("tenants", json.as_bytes()).map_err(|e| self.store_error(e))?;
                    }
                    None => {
                        table.remove("tenants").map_err(|e| self.store_error(e))?;
                    }
                }
            }
            table.insert("round", batch.round.to_string().as_bytes()).map_err(|e| self.store_error(e))?;
            drop(table);
            let mut table = write.open_table(JOBS).map_err(|e| self.store_error(e))?;
            for (number, bytes) in &batch.jobs {
                table.insert(*number, bytes.as_slice()).map_err(|e| self.store_error(e))?;
            }
        }
        write.commit().map_err(|e| self.store_error(e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.commit_nanos.fetch_add(nanos, Ordering::Relaxed);
        Ok(())
    }

    /// Test hook: the write after the next `writes` ones fails, as a full disk would make it.
    #[doc(hidden)]
    pub fn fail_after_writes(&self, writes: u64) {
        self.fail_after.store(writes, Ordering::Relaxed);
    }

    /// Test hook: each write waits `delay` before it begins, as a slow disk would make it.
    #[doc(hidden)]
    pub fn delay_writes(&self, delay: Duration) {
        self.delay_nanos.store(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Durable commits written since the store was opened, and the time spent writing them.
    pub fn commit_counts(&self) -> (u64, Duration) {
        (self.commits.load(Ordering::Relaxed), Duration::from_nanos(self.commit_nanos.load(Ordering::Relaxed)))
    }
}

fn describe_open_error(error: redb::DatabaseError) -> String {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            "is open in another process (another `gpuplace serve` on this state directory?)".into()
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(what)) => {
            format!("is damaged or truncated ({what}); it was left as it is")
        }
        other => format!("cannot be opened as a gpuplace store: {other}"),
    }
}
