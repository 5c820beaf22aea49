//! SIGTERM and SIGINT to `gfa run` (what `scancel`, a Slurm time limit and Ctrl-C send), sent for
//! real from outside; a run another process holds (`--wait-locked`); `gfa report` on a grid
//! that is not finished.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::jobs::{TINY, counts, exp_dir, gfa_cmd, ok, reference, run_args, run_dirs, setup};

/// Long enough that a signal sent after the first epoch lands during training.
const EPOCHS: &str = "train.epochs=12";

/// Send `sig` (a `kill` signal name) to `pid`.
fn kill(sig: &str, pid: u32) {
    let s = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap();
    assert!(s.success(), "kill -{sig} {pid}");
}

/// Start `gfa run` on TINY with `extra` flags in `dir`, and return once a run has written a
/// `train.csv` row (training under way).
fn start_training(dir: &Path, extra: &[&str]) -> Child {
    let mut args = run_args("res", &["--set", EPOCHS]);
    args.extend_from_slice(extra);
    let child = gfa_cmd(dir, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let exp = exp_dir(dir);
    let t0 = Instant::now();
    while !(exp.is_dir() && run_dirs(&exp).iter().any(|d| d.join("train.csv").is_file())) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no train.csv within 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Wait up to `limit` for `child`; its exit code and stderr.
fn wait_for(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read as _;
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status.code(), err);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("gfa run still alive {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Processes whose working folder is `dir` (the gfa processes a test started there).
fn processes_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        if p.file_name().unwrap().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if fs::read_link(p.join("cwd")).is_ok_and(|cwd| cwd == dir) {
            let cmd = fs::read(p.join("cmdline")).unwrap_or_default();
            out.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    out
}

/// Each run's status file's first line.
fn statuses(exp: &Path) -> Vec<(PathBuf, String)> {
    run_dirs(exp)
        .into_iter()
        .map(|d| {
            let s = fs::read_to_string(d.join("status")).unwrap_or_else(|_| "pending".into());
            let head = s.lines().next().unwrap_or_default().to_string();
            (d, head)
        })
        .collect()
}

/// The acceptance case of a Slurm time limit or `scancel` on a `--jobs 2` run: SIGTERM to the
/// parent leaves no gfa process after 5 s, no run marked running (those in flight are marked
/// interrupted, in `status` and `log.txt`), one line saying how to resume; a rerun finishes
/// with the uninterrupted run's CSVs.
#[test]
fn sigterm_to_jobs_2_marks_runs_interrupted_and_a_rerun_gives_the_uninterrupted_csvs() {
    let want = reference(TINY, &["--set", EPOCHS]);
    let dir = setup(TINY);
    let dir_path = fs::canonicalize(dir.path()).unwrap();
    let child = start_training(&dir_path, &["--jobs", "2"]);
    let pid = child.id();
    kill("TERM", pid);
    let (code, err) = wait_for(child, Duration::from_secs(5));
    assert_eq!(code, Some(143), "{err}");
    let resume: Vec<&str> = err.lines().filter(|l| l.contains("To resume")).collect();
    assert_eq!(resume.len(), 1, "{err}");
    assert!(resume[0].contains("stopped by SIGTERM") && resume[0].contains("--jobs 2"), "{err}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(processes_in(&dir_path).is_empty(), "alive: {:?}", processes_in(&dir_path));
    let exp = exp_dir(&dir_path);
    let st = statuses(&exp);
    assert!(st.iter().all(|(_, s)| s != "running"), "{st:?}");
    let interrupted: Vec<&PathBuf> =
        st.iter().filter(|(_, s)| s == "interrupted").map(|(d, _)| d).collect();
    assert!(!interrupted.is_empty(), "{st:?}");
    for d in &interrupted {
        let log = fs::read_to_string(d.join("log.txt")).unwrap();
        assert!(log.contains("interrupted: stopped by SIGTERM"), "{log}");
    }
    let o =
        ok(gfa_cmd(&dir_path, &run_args("res", &["--set", EPOCHS, "--quiet"])).output().unwrap());
    let c = counts(&o);
    assert_eq!(c[0] + c[1], 4, "{c:?}");
    let got = super::jobs::tables(&exp);
    for (name, rows) in &want {
        let first_diff = rows.iter().zip(&got[name]).position(|(a, b)| a != b);
        assert!(
            first_diff.is_none() && rows.len() == got[name].len(),
            "{name}: {} rows against {}; first differing row: {:?}\nheader: {:?}",
            got[name].len(),
            rows.len(),
            first_diff.map(|i| (&rows[i], &got[name][i])),
            rows[0]
        );
    }
}

/// SIGINT (Ctrl-C) to a single process: its run is marked interrupted, exit code 130.
#[test]
fn sigint_to_one_process_marks_its_run_interrupted() {
    let dir = setup(TINY);
    let child = start_training(dir.path(), &[]);
    kill("INT", child.id());
    let (code, err) = wait_for(child, Duration::from_secs(5));
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("stopped by SIGINT; run ") && err.contains("To resume"), "{err}");
    let st = statuses(&exp_dir(dir.path()));
    assert_eq!(st.iter().filter(|(_, s)| s == "interrupted").count(), 1, "{st:?}");
    assert!(st.iter().all(|(_, s)| s != "running"), "{st:?}");
}

/// A run held by another process: without --wait-locked it is skipped (exit 0); with it, the
/// process waits and exits 3 when the holder keeps it, or works the run once it is let go.
#[test]
fn a_locked_run_is_waited_for_or_reported_with_exit_code_3() {
    let dir = setup(TINY);
    ok(gfa_cmd(dir.path(), &["plan", "grid.toml", "--results", "res"]).output().unwrap());
    let exp = gfa_exp::results::store::ExperimentDir::new(&dir.path().join("res"), "tiny");
    let first = exp.runs().unwrap().remove(0);
    let id = first.id();
    let lock = first.try_lock().unwrap().expect("the run is free");
    let only = |extra: &[&str]| {
        let mut a = run_args("res", &["--only", &id, "--quiet"]);
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let o = ok(gfa_cmd(dir.path(), &[]).args(only(&[])).output().unwrap());
    assert_eq!(counts(&o), [0, 0, 0, 1]);
    let o = gfa_cmd(dir.path(), &[]).args(only(&["--wait-locked", "1"])).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("--wait-locked 1") && err.contains(&id), "{err}");
    // Let go after a moment: the waiting process then works the run.
    let waiter = gfa_cmd(dir.path(), &[])
        .args(only(&["--wait-locked", "60"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(lock);
    let o = ok(waiter.wait_with_output().unwrap());
    assert_eq!(counts(&o), [1, 0, 0, 0]);
}

/// `gfa report` on a grid with an unfinished run names it, marks the incomplete group's rows
/// with the seeds it averages, and `--strict` refuses.
#[test]
fn report_on_an_incomplete_grid_names_the_missing_runs_and_strict_refuses() {
    let dir = setup(TINY);
    ok(gfa_cmd(dir.path(), &["plan", "grid.toml", "--results", "res"]).output().unwrap());
    let exp = exp_dir(dir.path());
    // Every run but the first (a standard or GFA run of one seed).
    let ids: Vec<String> = run_dirs(&exp)
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let manifest = fs::read_to_string(exp.join("manifest.csv")).unwrap();
    let missing = manifest.lines().nth(1).unwrap().split(',').nth(3).unwrap().to_string();
    for id in ids.iter().filter(|i| **i != missing) {
        ok(gfa_cmd(dir.path(), &run_args("res", &["--only", id, "--quiet"])).output().unwrap());
    }
    let o = ok(gfa_cmd(dir.path(), &["report", "res/tiny"]).output().unwrap());
    let (md, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(md.contains("**Incomplete grid**: 1 of 4 planned runs"), "{md}");
    assert!(md.contains(&format!("- {missing} (seed 0): not started")), "{md}");
    assert!(err.contains("1 planned runs of res/tiny are not finished"), "{err}");
    // The first run of the manifest is `standard`, seed 0: its rows average 1 of 2 seeds.
    let t2 = fs::read_to_string(exp.join("tables/T2.md")).unwrap();
    assert!(t2.lines().any(|l| l.starts_with("| linear | standard ⚠ 1/2 seeds |")), "{t2}");
    assert!(!t2.contains("gfa λ=0.1 ⚠"), "{t2}");
    let before = fs::read(exp.join("report.md")).unwrap();
    let o = gfa_cmd(dir.path(), &["report", "res/tiny", "--strict"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("--strict") && err.contains(&format!("{missing} (not started)")), "{err}");
    assert_eq!(fs::read(exp.join("report.md")).unwrap(), before, "--strict wrote report.md");
}
