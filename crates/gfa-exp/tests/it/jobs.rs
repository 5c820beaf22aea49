//! `gfa run` with several processes on one grid (`--jobs` workers), killed at any
//! moment (`kill -9` from outside, or `GFA_FAULT` at a chosen point), and what it shows and logs
//! while it works. Every case ends with the experiment's CSVs of an uninterrupted sequential run,
//! timing columns aside. All processes run libtorch on one thread (`--threads 1`): the results
//! are then bit for bit those of any other one-thread run, and the tests stay fast on a busy
//! machine.
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gfa_exp::results::records::{TrainRow, read_rows};

/// 2 methods × 2 seeds of a linear model on synthetic data, three epochs, two attacks.
pub(super) const TINY: &str = r#"experiment = "tiny"
seeds = [0, 1]

[base]
data = { source = "synthetic", n_train = 96, n_test = 32 }
model = { arch = "linear" }
train = { epochs = 3, batch_size = 32, optimizer = { kind = "sgd", lr = 0.1 } }
eval = { n = 16, batch_size = 8 }

[grid]
method = [{ kind = "standard" }, { kind = "gfa", lambda = 0.1 }]

[[attacks]]
kind = "fgsm"
eps = ["8/255"]

[[attacks]]
kind = "pgd"
eps = ["8/255"]
steps = 3
"#;

const RUNS: usize = 4;

pub(super) fn gfa_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gfa"));
    c.current_dir(dir).args(["--device", "cpu"]).args(args).env_remove("GFA_FAULT");
    c
}

/// `gfa run grid.toml --results <res> --threads 1` plus `extra`, in `dir`.
pub(super) fn run_args<'a>(res: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", "grid.toml", "--results", res, "--threads", "1"];
    a.extend_from_slice(extra);
    a
}

pub(super) fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub(super) fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

/// A temporary folder holding `grid.toml` with `grid`.
pub(super) fn setup(grid: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("grid.toml"), grid).unwrap();
    dir
}

/// Every experiment-level CSV of `exp` as text cells, without its timing column (`seconds`).
pub(super) fn tables(exp: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut out = BTreeMap::new();
    for name in [
        "train.csv",
        "train_steps.csv",
        "eval.csv",
        "points.csv",
        "checks.csv",
        "gfa_value.csv",
        "norms.csv",
    ] {
        let mut r = csv::Reader::from_path(exp.join(name)).unwrap();
        let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        let keep: Vec<usize> = (0..header.len()).filter(|i| header[*i] != "seconds").collect();
        let mut rows = vec![keep.iter().map(|i| header[*i].clone()).collect::<Vec<_>>()];
        for rec in r.records() {
            let rec = rec.unwrap();
            rows.push(keep.iter().map(|i| rec[*i].to_string()).collect());
        }
        out.insert(name.to_string(), rows);
    }
    out
}

/// The CSVs of a sequential, uninterrupted run of `grid` (with `extra` flags).
pub(super) fn reference(grid: &str, extra: &[&str]) -> BTreeMap<String, Vec<Vec<String>>> {
    let dir = setup(grid);
    ok(gfa_cmd(dir.path(), &run_args("res", extra)).output().unwrap());
    tables(&exp_dir(dir.path()))
}

pub(super) fn exp_dir(dir: &Path) -> PathBuf {
    dir.join("res/tiny")
}

pub(super) fn run_dirs(exp: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.toml").is_file())
        .collect();
    v.sort();
    v
}

/// Temporary files (`.tmp.*`) anywhere under `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(temp_files(&p));
        } else if p.file_name().unwrap().to_string_lossy().starts_with(".tmp.") {
            out.push(p);
        }
    }
    out
}

/// `(done, already done, failed, locked)` from `gfa run`'s summary line.
pub(super) fn counts(o: &Output) -> [usize; 4] {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.contains(" runs done, ")).unwrap_or_else(|| panic!("{out}"));
    let n: Vec<usize> =
        line.split(' ').filter_map(|w| w.trim_end_matches(',').parse().ok()).collect();
    [n[0], n[1], n[2], n[3]]
}

/// Each run's train.csv has epochs 1..=3, each once.
fn assert_train_csvs_complete(exp: &Path) {
    for d in run_dirs(exp) {
        let rows: Vec<TrainRow> = read_rows(&d.join("train.csv")).unwrap();
        let epochs: Vec<usize> = rows.iter().map(|r| r.epoch).collect();
        assert_eq!(epochs, [1, 2, 3], "{}", d.display());
    }
}

/// `kill -9` right after an epoch, and while train.csv is being rewritten (its temporary file
/// written, not yet renamed), then a rerun: the CSVs are the uninterrupted run's, every epoch
/// once, and the killed writer's temporary file is gone.
#[test]
fn a_kill_during_training_or_the_csv_write_resumes_to_the_uninterrupted_csvs() {
    let want = reference(TINY, &[]);
    // (fault, train.csv rows of the first run when it struck)
    for (fault, rows_at_kill, tmp_left) in
        [("epoch:2", 2, false), ("train-csv:2", 1, true), ("train-csv:3", 2, true)]
    {
        let dir = setup(TINY);
        let o = gfa_cmd(dir.path(), &run_args("res", &["--quiet"]))
            .env("GFA_FAULT", fault)
            .output()
            .unwrap();
        assert_eq!(o.status.signal(), Some(9), "{fault}: {}", text(&o));
        let exp = exp_dir(dir.path());
        let first = run_dirs(&exp)
            .into_iter()
            .find(|d| d.join("train.csv").is_file())
            .unwrap_or_else(|| panic!("{fault}: no train.csv written before the kill"));
        let rows: Vec<TrainRow> = read_rows(&first.join("train.csv")).unwrap();
        assert_eq!(rows.len(), rows_at_kill, "{fault}");
        assert_eq!(temp_files(&exp).is_empty(), !tmp_left, "{fault}: {:?}", temp_files(&exp));
        let o = ok(gfa_cmd(dir.path(), &run_args("res", &["--quiet"])).output().unwrap());
        assert_eq!(counts(&o), [RUNS, 0, 0, 0], "{fault}");
        assert_eq!(tables(&exp), want, "{fault}");
        assert_train_csvs_complete(&exp);
        assert!(temp_files(&exp).is_empty(), "{fault}: {:?}", temp_files(&exp));
    }
}

/// A real `kill -9` from outside as soon as the first epoch's row is on disk (wherever the
/// process then is), then a rerun: the uninterrupted run's CSVs.
#[test]
fn kill_9_from_outside_then_rerun_gives_the_uninterrupted_csvs() {
    let want = reference(TINY, &[]);
    let dir = setup(TINY);
    let mut child =
        gfa_cmd(dir.path(), &run_args("res", &["--quiet"])).stdout(Stdio::null()).spawn().unwrap();
    let exp = exp_dir(dir.path());
    let t0 = Instant::now();
    while !(exp.is_dir() && run_dirs(&exp).iter().any(|d| d.join("train.csv").is_file())) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no train.csv within 2 minutes");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = ok(gfa_cmd(dir.path(), &run_args("res", &["--quiet"])).output().unwrap());
    let c = counts(&o);
    assert_eq!(c[0] + c[1], RUNS, "{c:?}");
    assert_eq!(tables(&exp), want);
    assert_train_csvs_complete(&exp);
}

/// `--jobs 2` (one thread per worker) gives the CSVs of `--jobs 1` (one thread). Workers that
/// die (killed at their first epoch) are the runs' failures, recorded in their status; a rerun
/// resumes them.
#[test]
fn jobs_2_gives_the_csvs_of_jobs_1_and_a_dead_worker_is_a_failed_run() {
    let want = reference(TINY, &[]);
    let dir = setup(TINY);
    let o = ok(gfa_cmd(dir.path(), &run_args("res", &["--jobs", "2"])).output().unwrap());
    assert_eq!(counts(&o), [RUNS, 0, 0, 0]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 worker processes, 1 libtorch thread each"), "{err}");
    // The workers' per-epoch lines reach the parent's stderr.
    assert_eq!(err.matches(" train epoch 3/3 ").count(), RUNS, "{err}");
    let exp = exp_dir(dir.path());
    assert_eq!(tables(&exp), want);

    let dir = setup(TINY);
    let o = gfa_cmd(dir.path(), &run_args("res", &["--jobs", "2", "--quiet"]))
        .env("GFA_FAULT", "epoch:1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(counts(&o), [0, 0, RUNS, 0], "{}", text(&o));
    let exp = exp_dir(dir.path());
    for d in run_dirs(&exp) {
        let status = fs::read_to_string(d.join("status")).unwrap();
        assert!(
            status.starts_with("failed\nthe worker process was killed by signal 9"),
            "{status}"
        );
    }
    let o =
        ok(gfa_cmd(dir.path(), &run_args("res", &["--jobs", "2", "--quiet"])).output().unwrap());
    assert_eq!(counts(&o), [RUNS, 0, 0, 0]);
    assert_eq!(tables(&exp), want);
    assert_train_csvs_complete(&exp);
}

/// On an all-correct grid, `--jobs 2` trains every run, then evaluates each on the
/// intersection, as `--jobs 1` does: same CSVs, same intersection files.
#[test]
fn jobs_on_an_all_correct_grid_match_one_process() {
    let grid = TINY.replace("eval = { n = 16,", "eval = { subset = \"all_correct\", n = 16,");
    let want = reference(&grid, &[]);
    let dir = setup(&grid);
    let o =
        ok(gfa_cmd(dir.path(), &run_args("res", &["--jobs", "3", "--quiet"])).output().unwrap());
    assert_eq!(counts(&o), [RUNS, 0, 0, 0]);
    let exp = exp_dir(dir.path());
    assert_eq!(tables(&exp), want);
    let members: Vec<String> =
        run_dirs(&exp).iter().map(|d| fs::read_to_string(d.join("all_correct")).unwrap()).collect();
    assert!(members.iter().all(|m| m == &members[0] && m.contains(" of 16")), "{members:?}");
}

/// A transfer attack's surrogate (the grid's standard run) is trained before any worker
/// evaluates a run that attacks with it, even when that run comes first in the expansion and
/// trains faster: both workers start with the GFA runs, whose surrogates no worker has trained.
#[test]
fn jobs_train_transfer_surrogates_before_evaluating() {
    let grid = TINY
        .replace(
            "[grid]\nmethod = [{ kind = \"standard\" }, { kind = \"gfa\", lambda = 0.1 }]",
            "[[grid]]\nmethod = [{ kind = \"gfa\", lambda = 0.1 }]\n\
             \"train.epochs\" = [1]\n\n[[grid]]\nmethod = [{ kind = \"standard\" }]",
        )
        .replace(
            "[[attacks]]\nkind = \"pgd\"",
            "[[attacks]]\nkind = \"transfer\"\neps = [\"8/255\"]\n\n[[attacks]]\nkind = \"pgd\"",
        );
    assert!(grid.contains("[[grid]]") && grid.contains("transfer"), "{grid}");
    let want = reference(&grid, &[]);
    let dir = setup(&grid);
    let o =
        ok(gfa_cmd(dir.path(), &run_args("res", &["--jobs", "2", "--quiet"])).output().unwrap());
    assert_eq!(counts(&o), [RUNS, 0, 0, 0], "{}", text(&o));
    assert_eq!(tables(&exp_dir(dir.path())), want);
}

/// Bad `--jobs`, `--threads`, `--devices` and `[run] jobs` are errors before anything is
/// written.
#[test]
fn bad_jobs_threads_and_devices_are_refused_before_any_work() {
    let missing = format!("cuda:{}", 7);
    let cases: [(&str, Vec<&str>, &str); 7] = [
        (TINY, vec!["--jobs", "0"], "--jobs 0"),
        (TINY, vec!["--jobs", "5"], "only 4 runs; use --jobs 4 or fewer"),
        (TINY, vec!["--threads", "0"], "--threads 0"),
        (TINY, vec!["--devices", &missing], "cuda:7"),
        (&format!("{TINY}\n[run]\njobs = 0\n"), vec![], "`run.jobs`"),
        (&format!("{TINY}\n[run]\nprecision = \"bf16\"\n"), vec![], "`run.precision`"),
        (&format!("{TINY}\n[run]\nprecison = \"fp32\"\n"), vec![], "precision"),
    ];
    for (grid, flags, message) in cases {
        let dir = setup(grid);
        let args: Vec<&str> = ["run", "grid.toml", "--results", "res"]
            .into_iter()
            .chain(flags.iter().copied())
            .collect();
        let o = gfa_cmd(dir.path(), &args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(message), "{flags:?}: {err}");
        assert!(!dir.path().join("res").exists(), "{flags:?} wrote into the results folder");
    }
}

/// `[run] deterministic = true` reaches the workers of `--jobs 2` and every row they write,
/// with the precision the CPU computes at (fp32, whatever `[run] precision` asks of a GPU), and
/// every checkpoint (the sidecar and each epoch record); the first line names them.
#[test]
fn the_grids_numerics_reach_every_row_and_checkpoint() {
    let grid = format!("{TINY}\n[run]\nprecision = \"tf32\"\ndeterministic = true\n");
    let dir = setup(&grid);
    let o = ok(gfa_cmd(dir.path(), &run_args("res", &["--jobs", "2"])).output().unwrap());
    let first = String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string();
    assert!(first.contains("precision fp32, deterministic"), "{}", text(&o));
    let exp = exp_dir(dir.path());
    let mut files = 0;
    for entry in fs::read_dir(&exp).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".csv") || name == "manifest.csv" || name == "summary.csv" {
            continue;
        }
        let mut r = csv::Reader::from_path(&p).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |c: &str| h.iter().position(|x| x == c).unwrap_or_else(|| panic!("{name}: {c}"));
        let (prec, det) = (col("precision"), col("deterministic"));
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        for row in &rows {
            assert_eq!((&row[prec], &row[det]), ("fp32", "true"), "{name}");
        }
        files += usize::from(!rows.is_empty());
    }
    // train, train_steps, eval, checks and points have rows (norms.csv none: no minimum-norm
    // attack in the suite).
    assert!(files >= 5, "{files} files with rows");
    for d in run_dirs(&exp) {
        let meta = gfa_core::checkpoint::read_meta(&d.join("checkpoints")).unwrap();
        let want = gfa_core::device::Numerics {
            precision: gfa_core::device::Precision::Fp32,
            deterministic: true,
        };
        assert_eq!(meta.numerics, want);
        assert!(meta.metrics.iter().all(|r| r.numerics == want), "{}", d.display());
    }
}

/// With stderr not a terminal, `gfa run` prints one line per epoch and stage; each run's
/// log.txt records its stages, epochs, attack batches and timings.
#[test]
fn progress_lines_without_a_terminal_and_a_log_per_run() {
    let dir = setup(&TINY.replace("seeds = [0, 1]", "seeds = [0]"));
    let o = ok(gfa_cmd(dir.path(), &run_args("res", &[])).output().unwrap());
    let err = String::from_utf8_lossy(&o.stderr);
    for epoch in 1..=3 {
        assert_eq!(err.matches(&format!(" train epoch {epoch}/3 loss ")).count(), 2, "{err}");
    }
    for stage in ["train start", "train done (", "evaluate done (", "checks done ("] {
        assert_eq!(err.matches(stage).count(), 2, "{stage}: {err}");
    }
    assert!(err.lines().all(|l| l.starts_with("[0:")), "{err}");
    for d in run_dirs(&exp_dir(dir.path())) {
        let log = fs::read_to_string(d.join("log.txt")).unwrap();
        for want in [
            " train start ",
            " train epoch 3/3 ",
            " train done (",
            " evaluate start",
            " clean pass 16/16",
            " attack fgsm 8/255 individual ",
            " attack pgd 8/255 individual ",
            " evaluate done (",
            " checks done (",
        ] {
            assert!(log.contains(want), "{want}:\n{log}");
        }
    }
}

/// Four runs of the tiny model whose costs are in the ratio {14, 11, 11, 5} (their epochs; the
/// same model and evaluation), listed with the 5 first.
const LPT: &str = r#"experiment = "tiny"
seeds = [0]

[base]
data = { source = "synthetic", n_train = 96, n_test = 32 }
model = { arch = "linear" }
train = { epochs = 3, batch_size = 32, optimizer = { kind = "sgd", lr = 0.1 } }
eval = { n = 16, batch_size = 8 }

[[grid]]
"train.epochs" = [5, 14]

[[grid]]
seeds = [0, 1]
"train.epochs" = [11]

[[attacks]]
kind = "fgsm"
eps = ["8/255"]
"#;

/// The hand-outs of a `--jobs` parent, in order: (worker, epochs).
fn hand_outs(err: &str) -> Vec<(usize, u32)> {
    err.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("worker ")?;
            let (slot, rest) = rest.split_once(" takes ")?;
            let epochs = rest.split("train.epochs=").nth(1)?;
            let epochs: String = epochs.chars().take_while(char::is_ascii_digit).collect();
            Some((slot.parse().ok()?, epochs.parse().ok()?))
        })
        .collect()
}

/// A pool of 2 workers over runs of costs {14, 11, 11, 5} (the 5 listed first) takes them
/// longest first: 14 on worker 0 and 11 on worker 1 at once, the 5 last (which worker frees
/// first depends on the machine here; `schedule::tests` checks the hand-out on a simulated
/// clock, through the same `Dispatch`). It prints the predicted wall time at the start and the
/// measured one at the end, and its CSVs are those of the grid's own order.
#[test]
fn jobs_take_the_longest_runs_first_with_the_csvs_of_the_grid_order() {
    let dir = setup(LPT);
    let o = ok(gfa_cmd(dir.path(), &run_args("res", &["--jobs", "2", "--order", "arrival"]))
        .output()
        .unwrap());
    let err = String::from_utf8_lossy(&o.stderr);
    let arrival = hand_outs(&err);
    assert_eq!(arrival[..2], [(0, 5), (1, 14)], "the grid's order: {err}");
    let want = tables(&exp_dir(dir.path()));

    let dir = setup(LPT);
    let o = ok(gfa_cmd(dir.path(), &run_args("res", &["--jobs", "2"])).output().unwrap());
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let lpt = hand_outs(&err);
    let epochs: Vec<u32> = lpt.iter().map(|h| h.1).collect();
    assert_eq!(epochs, [14, 11, 11, 5], "longest first: {err}");
    assert_eq!(lpt[..2], [(0, 14), (1, 11)], "{err}");
    assert!(out.contains("predicted wall time ") && out.contains(" with 2 workers"), "{out}");
    assert!(out.contains("wall time ") && out.contains("(predicted "), "{out}");
    let timing = fs::read_to_string(exp_dir(dir.path()).join("timing.json")).unwrap();
    assert!(timing.contains("\"workers\": 2") && timing.contains("\"lpt\""), "{timing}");
    assert_eq!(tables(&exp_dir(dir.path())), want, "the order changes no result");
}
