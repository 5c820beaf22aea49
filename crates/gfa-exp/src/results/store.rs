//! Results layout, atomic writes, stage markers, status files and per-run locks.
//!
//! ```text
//! results/<experiment>/
//!   manifest.csv  train.csv  eval.csv  checks.csv  …   (regenerated from the runs' files)
//!   <run_id>/
//!     config.toml  overrides.toml                     (snapshot, written by `gfa plan`)
//!     status                                          (pending | running | done | failed + error
//!                                                      | interrupted + signal and time)
//!     trained  evaluated  checked                     (stage markers)
//!     train.csv                                       (rewritten after every epoch)
//!     eval.csv  checks.csv  …                         (each written once, when its stage ends)
//!     log.txt                                         (stages, epochs, attacks, timings)
//!     checkpoints/                                    (model weights)
//!     lock                                            (held while a process works the run)
//!   lock                                              (held while a process collects the CSVs)
//! ```
//!
//! Every file is written with `gfa_data::atomic::write_atomic` (temporary file in the same
//! folder, fsync, rename, fsync of the folder), so a kill or a power failure at any moment
//! leaves either the old or the new file, never half of one. A stage's CSV is renamed
//! into place before its marker, so a marker implies complete rows; a stage killed before its
//! marker is redone and its CSV replaced, never appended to (no duplicated rows).
//! Experiment-level CSVs are concatenations of the per-run files, regenerated at will under the
//! experiment's lock, so that the last of several processes to collect sees every run.
//!
//! A process writes nothing of a run before it holds the run's lock ([`RunDir::try_lock`]);
//! the config snapshots `gfa plan` writes are the exception, and they are written only when
//! missing or different ([`write_if_changed`]). Temporary files name their owner and only a
//! provably dead owner's are removed (`gfa_data::atomic::remove_stale_temp_files`).
//!
//! `log.txt` is the one file appended to rather than replaced: one line per event, each line
//! written by a single `write` of a file opened for appending, so lines of a killed process are
//! whole and a resumed run's lines follow them.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use gfa_data::atomic::{remove_dead_temp_files, write_atomic};

/// A stage of a run; each completed stage leaves a marker file of this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Trained,
    Evaluated,
    Checked,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Trained, Stage::Evaluated, Stage::Checked];

    pub fn marker(self) -> &'static str {
        match self {
            Stage::Trained => "trained",
            Stage::Evaluated => "evaluated",
            Stage::Checked => "checked",
        }
    }
}

/// What a run's `status` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Pending,
    Running,
    Done,
    Failed(String),
    /// Stopped by SIGTERM or SIGINT (see `signals`): the signal and when.
    Interrupted(String),
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed(_) => "failed",
            Status::Interrupted(_) => "interrupted",
        }
    }
}

/// `--shard i/n` (1-based): this process works runs whose 0-based index `k` has `k % n == i-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("bad shard '{s}': expected i/n with 1 <= i <= n, e.g. --shard 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether the run at 0-based position `k` of the expansion belongs to this shard.
    pub fn contains(&self, k: usize) -> bool {
        k % self.count == self.index - 1
    }
}

/// The folder of one experiment's results.
#[derive(Debug, Clone)]
pub struct ExperimentDir {
    pub root: PathBuf,
}

impl ExperimentDir {
    pub fn new(results: &Path, experiment: &str) -> Self {
        Self { root: results.join(experiment) }
    }

    pub fn run(&self, run_id: &str) -> RunDir {
        RunDir { path: self.root.join(run_id) }
    }

    pub fn manifest(&self) -> PathBuf {
        self.root.join("manifest.csv")
    }

    /// All run folders (those holding a `config.toml`), sorted by name.
    pub fn runs(&self) -> Result<Vec<RunDir>> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.root).with_context(|| format!("reading {}", self.root.display()))?;
        for e in entries {
            let p = e?.path();
            if p.join("config.toml").is_file() {
                out.push(RunDir { path: p });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Wait for the experiment's lock (held while a process collects the experiment-level
    /// CSVs); released when the guard drops or the process dies.
    pub fn lock(&self) -> Result<RunLock> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        let p = self.root.join("lock");
        let f = open_lock_file(&p)?;
        f.lock().with_context(|| format!("locking {}", p.display()))?;
        Ok(RunLock { _file: f })
    }

    /// Regenerate the experiment-level CSV `name` from every run's file of that name.
    pub fn collect(&self, name: &str) -> Result<usize> {
        let inputs: Vec<PathBuf> = self.runs()?.iter().map(|r| r.path.join(name)).collect();
        crate::results::records::concat_csv(&inputs, &self.root.join(name))
    }
}

/// Per-run CSV files that `collect_all` concatenates to the experiment level.
pub const RUN_CSVS: [&str; 10] = [
    "train.csv",
    "train_steps.csv",
    "eval.csv",
    "checks.csv",
    "gfa_value.csv",
    "norms.csv",
    "points.csv",
    "landscape.csv",
    "binarization.csv",
    "indicators.csv",
];

/// The folder of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn id(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn has(&self, stage: Stage) -> bool {
        self.path.join(stage.marker()).is_file()
    }

    pub fn mark(&self, stage: Stage) -> Result<()> {
        Ok(write_atomic(&self.path.join(stage.marker()), b"")?)
    }

    /// Remove the markers of `stage` and every later stage (their results are redone).
    pub fn unmark_from(&self, stage: Stage) -> Result<()> {
        let from = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        for s in &Stage::ALL[from..] {
            let p = self.path.join(s.marker());
            if p.exists() {
                fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
        Ok(())
    }

    pub fn status(&self) -> Status {
        let Ok(text) = fs::read_to_string(self.path.join("status")) else {
            return Status::Pending;
        };
        let (head, rest) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        match head.trim() {
            "running" => Status::Running,
            "done" => Status::Done,
            "failed" => Status::Failed(rest.trim().to_string()),
            "interrupted" => Status::Interrupted(rest.trim().to_string()),
            _ => Status::Pending,
        }
    }

    /// Write the run's status, under the lock that a SIGTERM's handler takes (`run::signals`).
    pub fn set_status(&self, status: &Status) -> Result<()> {
        let mut guard = crate::results::running::status_guard();
        self.write_status(status)?;
        guard.note(&self.path, *status == Status::Running);
        Ok(())
    }

    /// [`RunDir::set_status`] without the lock (the signal handler, which holds it).
    pub(crate) fn write_status(&self, status: &Status) -> Result<()> {
        let text = match status {
            Status::Failed(e) => format!("failed\n{e}\n"),
            Status::Interrupted(e) => format!("interrupted\n{e}\n"),
            s => format!("{}\n", s.label()),
        };
        Ok(write_atomic(&self.path.join("status"), text.as_bytes())?)
    }

    /// Try to take the run's lock; `None` when another process holds it. The lock is released
    /// when the guard drops or the process dies (`File::try_lock`, an `flock` on Linux), so a
    /// killed run never stays locked.
    pub fn try_lock(&self) -> Result<Option<RunLock>> {
        fs::create_dir_all(&self.path)
            .with_context(|| format!("creating {}", self.path.display()))?;
        let p = self.path.join("lock");
        let f = open_lock_file(&p)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(RunLock { _file: f })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", p.display()))
            }
        }
    }

    /// Append one line to the run's `log.txt`: UTC time, then `text` (see the module
    /// documentation). A log that cannot be written is not worth failing a run for.
    pub fn log(&self, text: &str) {
        let line = format!("{} {text}\n", utc_now());
        let _ = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join("log.txt"))
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }

    /// Write the config snapshot, or check that an existing one is identical.
    pub fn write_config(&self, config_toml: &str) -> Result<()> {
        let p = self.path.join("config.toml");
        if let Ok(old) = fs::read_to_string(&p) {
            if old != config_toml {
                bail!(
                    "{} exists with a different configuration; this folder belongs to another \
                     expansion (same run id, different config: was gfa upgraded?). Move it away \
                     or use another --results folder",
                    p.display()
                );
            }
            return Ok(());
        }
        Ok(write_atomic(&p, config_toml.as_bytes())?)
    }
}

/// Held while a process works a run (see [`RunDir::try_lock`]) or collects an experiment's
/// CSVs ([`ExperimentDir::lock`]); closing the file releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

fn open_lock_file(p: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .with_context(|| format!("opening {}", p.display()))
}

/// Write `bytes` to `path` atomically unless it already holds exactly them (so that processes
/// sharing a results folder rewrite nothing they agree on).
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    Ok(write_atomic(path, bytes)?)
}

/// The time now in UTC, `2025-01-31T23:59:59Z` (for log lines).
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc_text(secs)
}

/// `secs` after 1970-01-01T00:00:00Z as ISO 8601 text (civil calendar from a day count).
pub(crate) fn utc_text(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to year/month/day in the proleptic Gregorian calendar, counting
    // from 0000-03-01 so that the leap day ends a year (eras of 400 years = 146,097 days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3_600, rem / 60 % 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Where a run keeps its checkpoints.
pub fn checkpoint_dir(dir: &RunDir) -> PathBuf {
    dir.file("checkpoints")
}

/// The file of the diagnostics probes beside `train.csv`.
pub const TRAIN_STEPS: &str = "train_steps.csv";

/// Regenerate every experiment-level CSV from the runs' files, under the experiment's lock (so
/// that of several processes collecting, the last one sees every run's files).
pub fn collect_all(exp: &ExperimentDir) -> Result<()> {
    let _lock = exp.lock()?;
    remove_dead_temp_files(&exp.root);
    // Every run's files are checked first: a damaged one is named and no experiment-level file
    // is written.
    for dir in exp.runs()? {
        if let Some((_, e)) = damaged_file(&dir) {
            return Err(e.context(format!(
                "run {} is damaged, so no experiment-level file was written; `gfa run` on its \
                 grid redoes the damaged stage (or remove the folder {})",
                dir.id(),
                dir.path.display()
            )));
        }
    }
    for name in RUN_CSVS {
        exp.collect(name).with_context(|| format!("collecting {name}"))?;
    }
    Ok(())
}

/// The first CSV of a run folder that does not parse
/// ([`crate::results::records::check_csv_file`]), with the stage that writes it.
pub fn damaged_file(dir: &RunDir) -> Option<(Stage, anyhow::Error)> {
    RUN_CSVS.iter().find_map(|name| {
        let p = dir.file(name);
        let e = p.exists().then(|| super::records::check_csv_file(&p).err()).flatten()?;
        let stage = if name.starts_with("train") { Stage::Trained } else { Stage::Evaluated };
        Some((stage, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parsing_and_partition() {
        assert!("0/2".parse::<Shard>().is_err());
        assert!("3/2".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        let shards: Vec<Shard> = (1..=3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for k in 0..10 {
            assert_eq!(shards.iter().filter(|s| s.contains(k)).count(), 1, "k = {k}");
        }
    }

    #[test]
    fn status_round_trip_and_markers() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir { path: dir.path().join("r1") };
        assert_eq!(run.status(), Status::Pending);
        run.set_status(&Status::Failed("boom\nline 2".into())).unwrap();
        assert_eq!(run.status(), Status::Failed("boom\nline 2".into()));
        run.mark(Stage::Trained).unwrap();
        run.mark(Stage::Evaluated).unwrap();
        assert!(run.has(Stage::Trained) && run.has(Stage::Evaluated));
        run.unmark_from(Stage::Evaluated).unwrap();
        assert!(run.has(Stage::Trained) && !run.has(Stage::Evaluated));
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir { path: dir.path().join("r1") };
        let g = run.try_lock().unwrap().expect("first lock");
        assert!(run.try_lock().unwrap().is_none(), "second lock must fail");
        drop(g);
        assert!(run.try_lock().unwrap().is_some());
    }

    #[test]
    fn utc_text_of_known_instants() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_text(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(utc_text(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn log_lines_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir { path: dir.path().to_path_buf() };
        run.log("train start");
        run.log("train epoch 1/2");
        let text = fs::read_to_string(run.file("log.txt")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("Z train start") && lines[1].ends_with(" train epoch 1/2"));
    }

    #[test]
    fn write_if_changed_leaves_equal_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        write_if_changed(&p, b"a").unwrap();
        let t0 = fs::metadata(&p).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_if_changed(&p, b"a").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), t0);
        write_if_changed(&p, b"b").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"b");
    }

    #[test]
    fn config_snapshot_refuses_a_different_config() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir { path: dir.path().join("r1") };
        run.write_config("a = 1\n").unwrap();
        run.write_config("a = 1\n").unwrap();
        let e = run.write_config("a = 2\n").unwrap_err();
        assert!(format!("{e:#}").contains("different configuration"));
    }
}
