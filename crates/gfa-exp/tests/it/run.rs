//! `gfa run` end to end on `experiments/smoke.toml`: real training and attacks, then report,
//! plot, and a resume after a simulated kill.
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use gfa_exp::results::records::{
    CheckRow, EvalRow, GfaValueRow, IndicatorRow, PointRow, StepRow, TrainRow, read_rows,
};

use super::gfa_ok as gfa;

/// `gfa run FILE --results RESULTS --quiet` on the CPU.
fn run_args(file: &Path, results: &str) -> Vec<String> {
    ["--device", "cpu", "run", file.to_str().unwrap(), "--results", results, "--quiet"]
        .map(String::from)
        .to_vec()
}

/// `gfa args` started in `dir`, its output captured.
fn spawn(dir: &Path, args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gfa"))
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn smoke_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/smoke.toml")
}

#[test]
fn smoke_grid_runs_reports_plots_and_resumes_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let file = smoke_file();
    let file = file.to_str().unwrap();
    let o = gfa(dir.path(), &["--device", "cpu", "run", file, "--results", "res", "--quiet"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("4 runs done, 0 already done, 0 failed"), "{out}");
    let exp = dir.path().join("res/smoke");

    // 4 runs × 1 epoch; both methods; GFA rows carry λ and the penalty's value as a term.
    let train: Vec<TrainRow> = read_rows(&exp.join("train.csv")).unwrap();
    assert_eq!(train.len(), 4);
    let methods: HashSet<&str> = train.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, HashSet::from(["standard", "gfa"]));
    for r in &train {
        assert_eq!(r.epoch, 1);
        assert!(r.train_loss.is_finite() && r.train_loss > 0.0);
        assert_eq!(r.terms().unwrap().contains_key("gfa"), r.method == "gfa");
        assert_eq!(r.lambda, (r.method == "gfa").then_some(0.3));
        assert!(r.test_acc.is_some_and(|a| (0.0..=1.0).contains(&a)));
    }
    // Per run: 2 attacks × 2 eps × (individual + cumulative), on the 64 eval points.
    let eval: Vec<EvalRow> = read_rows(&exp.join("eval.csv")).unwrap();
    assert_eq!(eval.len(), 4 * 2 * 2 * 2);
    for r in &eval {
        assert_eq!(r.n, 64);
        let robust = r.robust_acc.unwrap();
        assert!(robust <= r.clean_acc + 1e-12, "{r:?}");
    }
    // Cumulative robust accuracy never rises along the suite (worst case over more attacks).
    for id in train.iter().map(|r| &r.run_id) {
        for eps in ["2/255", "8/255"] {
            let cum: Vec<f64> = eval
                .iter()
                .filter(|r| &r.run_id == id && r.eps_text == eps && r.mode == "cumulative")
                .map(|r| r.robust_acc.unwrap())
                .collect();
            assert_eq!(cum.len(), 2);
            assert!(cum[1] <= cum[0] + 1e-12, "{cum:?}");
        }
    }
    // Per-point outcomes: one row per eval.csv row and one clean row per run, each agreeing
    // with its eval.csv row (the reader checks the robust fraction).
    let points: Vec<PointRow> = read_rows(&exp.join("points.csv")).unwrap();
    assert_eq!(points.len(), eval.len() + 4);
    let outcomes = gfa_exp::analysis::points::read_points(&exp.join("points.csv"), &eval).unwrap();
    assert_eq!(outcomes.len(), eval.len());
    assert!(outcomes.values().all(|o| o.index == (0..64).collect::<Vec<_>>()));
    // The GFA value has one row per tap, the first being the input.
    let gv: Vec<GfaValueRow> = read_rows(&exp.join("gfa_value.csv")).unwrap();
    assert!(gv.len() >= 4 * 2 && gv.iter().all(|r| r.n == 64 && r.value.abs() <= 1.0));
    assert!(gv.iter().any(|r| r.tap == "input"));
    // Indicators of Attack Failure per run: PGD at 2 budgets × 3 indicators, the unconstrained
    // PGD and the gradients; the verdict reads them.
    let ind: Vec<IndicatorRow> = read_rows(&exp.join("indicators.csv")).unwrap();
    assert_eq!(ind.len(), 4 * (2 * 3 + 2), "{ind:#?}");
    for r in ind.iter().filter(|r| r.indicator != "unavailable_gradients") {
        assert!(r.attack == "pgd" && r.n <= 16 && r.flagged <= r.n, "{r:?}");
    }
    let checks: Vec<CheckRow> = read_rows(&exp.join("checks.csv")).unwrap();
    for id in train.iter().map(|r| &r.run_id) {
        let v = checks.iter().find(|c| &c.run_id == id && c.check == "verdict").unwrap();
        let flagged = ind.iter().any(|r| &r.run_id == id && r.result == "flag");
        assert_eq!(v.detail.contains("attack-failure indicators"), flagged, "{v:?}");
    }

    let o = gfa(dir.path(), &["report", "res/smoke"]);
    assert!(!o.stdout.is_empty());
    assert!(exp.join("summary.csv").is_file() && exp.join("report.md").is_file());
    let report = fs::read_to_string(exp.join("report.md")).unwrap();
    assert!(report.contains("### Indicators of Attack Failure"), "{report}");
    gfa(dir.path(), &["plot", "res/smoke", "--format", "svg"]);
    assert!(fs::read_dir(exp.join("figures")).unwrap().count() > 0);

    // Simulate a kill during one run's evaluation: its marker and eval CSV are gone.
    let run = exp.join(&train[0].run_id);
    let train_bytes = fs::read(run.join("train.csv")).unwrap();
    let ckpt_bytes = fs::read(run.join("checkpoints/final.safetensors")).unwrap();
    let eval_before = fs::read(run.join("eval.csv")).unwrap();
    fs::remove_file(run.join("evaluated")).unwrap();
    fs::remove_file(run.join("eval.csv")).unwrap();
    let o = gfa(dir.path(), &["--device", "cpu", "run", file, "--results", "res", "--quiet"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("1 runs done, 3 already done, 0 failed"), "{out}");
    // Training was not redone; evaluation was, with the same seeded result.
    assert_eq!(fs::read(run.join("train.csv")).unwrap(), train_bytes);
    assert_eq!(fs::read(run.join("checkpoints/final.safetensors")).unwrap(), ckpt_bytes);
    let strip = |b: &[u8]| -> Vec<EvalRow> {
        let p = dir.path().join("tmp.csv");
        fs::write(&p, b).unwrap();
        read_rows::<EvalRow>(&p)
            .unwrap()
            .into_iter()
            .map(|r| EvalRow { seconds: 0.0, ..r })
            .collect()
    };
    assert_eq!(strip(&fs::read(run.join("eval.csv")).unwrap()), strip(&eval_before));
    // No duplicated rows at the experiment level.
    let eval2: Vec<EvalRow> = read_rows(&exp.join("eval.csv")).unwrap();
    assert_eq!(eval2.len(), eval.len());
    let keys: HashSet<_> =
        eval2.iter().map(|r| (&r.run_id, &r.attack, &r.eps_text, &r.mode)).collect();
    assert_eq!(keys.len(), eval2.len());
}

/// One GFA run of several epochs on synthetic data, one cheap attack.
const RESUME: &str = r#"experiment = "resume"
seeds = [3]

[base]
data = { source = "synthetic", n_train = 192, n_test = 64 }
model = { arch = "cnn", width = 0.0625 }
train = { epochs = 4, batch_size = 64, optimizer = { kind = "adam", lr = 0.003 } }
method = { kind = "gfa", lambda = 0.3 }
eval = { n = 16 }

[[attacks]]
kind = "fgsm"
eps = ["8/255"]
"#;

/// `kill -9` of `gfa run` in the middle of training, then a rerun: the run resumes from its
/// last checkpoint and its train.csv equals an uninterrupted run's, every float bit for bit
/// (only the wall-clock `seconds` differ).
#[test]
fn run_killed_during_training_resumes_to_the_same_csv() {
    let dir = tempfile::tempdir().unwrap();
    let file = super::write(dir.path(), "resume.toml", RESUME);
    let args = |results: &str| run_args(&file, results);
    gfa(dir.path(), &args("full").iter().map(String::as_str).collect::<Vec<_>>());

    let mut child = spawn(dir.path(), &args("killed"));
    let exp = dir.path().join("killed/resume");
    let epoch_done = || {
        fs::read_dir(&exp).ok().into_iter().flatten().flatten().any(|e| {
            let meta = e.path().join("checkpoints");
            gfa_core::checkpoint::read_meta(&meta).is_ok_and(|m| m.epoch >= 1)
        })
    };
    while !epoch_done() {
        assert!(child.try_wait().unwrap().is_none(), "gfa run ended before its first checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "gfa run finished before it was killed");
    let run = fs::read_dir(&exp).unwrap().flatten().find(|e| e.path().is_dir()).unwrap().path();
    assert!(!run.join("trained").exists(), "the kill came after training");

    gfa(dir.path(), &args("killed").iter().map(String::as_str).collect::<Vec<_>>());
    let rows = |root: &str| -> Vec<(TrainRow, [u64; 4])> {
        let p =
            dir.path().join(root).join("resume").join(run.file_name().unwrap()).join("train.csv");
        read_rows::<TrainRow>(&p)
            .unwrap()
            .into_iter()
            .map(|r| {
                let bits = [r.lr, r.train_loss, r.train_acc, r.test_acc.unwrap()].map(f64::to_bits);
                (TrainRow { seconds: 0.0, ..r }, bits)
            })
            .collect()
    };
    let (full, resumed) = (rows("full"), rows("killed"));
    assert_eq!(full.len(), 4);
    assert_eq!(resumed, full);
}

/// Four tiny runs: synthetic data, an MLP, one epoch, one cheap attack.
const RACE: &str = r#"experiment = "race"
seeds = [0, 1, 2, 3]

[base]
data = { source = "synthetic", n_train = 64, n_test = 32 }
model = { arch = "mlp" }
method = { kind = "standard" }
train = { epochs = 1, batch_size = 32 }
eval = { n = 16 }

[[attacks]]
kind = "fgsm"
eps = ["8/255"]
"#;

/// Two `gfa run` on one grid at the same time, several times: both exit 0, each run is done by
/// exactly one of them, and every run's CSVs equal those of a run alone (timing aside). (A
/// runner used to write a run's files before taking its lock, and the lock holder removed them
/// as stale.)
#[test]
fn two_runners_on_one_grid_share_it_without_a_race() {
    let dir = tempfile::tempdir().unwrap();
    let file = super::write(dir.path(), "race.toml", RACE);
    let args = |results: &str| run_args(&file, results);
    gfa(dir.path(), &args("alone").iter().map(String::as_str).collect::<Vec<_>>());
    let csvs = |root: &str| -> Vec<(String, Vec<TrainRow>, Vec<EvalRow>)> {
        let exp = dir.path().join(root).join("race");
        let mut runs: Vec<PathBuf> = fs::read_dir(&exp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        runs.sort();
        runs.iter()
            .map(|r| {
                assert_eq!(fs::read_to_string(r.join("status")).unwrap(), "done\n", "{r:?}");
                let train = read_rows::<TrainRow>(&r.join("train.csv")).unwrap();
                let eval = read_rows::<EvalRow>(&r.join("eval.csv")).unwrap();
                (
                    r.file_name().unwrap().to_string_lossy().into_owned(),
                    train.into_iter().map(|t| TrainRow { seconds: 0.0, ..t }).collect(),
                    eval.into_iter().map(|e| EvalRow { seconds: 0.0, ..e }).collect(),
                )
            })
            .collect()
    };
    let alone = csvs("alone");
    assert_eq!(alone.len(), 4);
    for trial in 0..3 {
        let results = format!("together{trial}");
        let (a, b) = (spawn(dir.path(), &args(&results)), spawn(dir.path(), &args(&results)));
        let mut done = 0;
        for child in [a, b] {
            let o = child.wait_with_output().unwrap();
            let (out, err) =
                (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            assert!(o.status.success(), "trial {trial}:\n{out}\n{err}");
            let summary = out.lines().find(|l| l.contains("runs done")).unwrap();
            let n: Vec<usize> =
                summary.split(' ').filter_map(|w| w.parse().ok()).collect::<Vec<_>>();
            assert_eq!(n[2], 0, "trial {trial}: failed runs: {summary}\n{err}");
            done += n[0];
        }
        assert_eq!(done, 4, "trial {trial}: each run is done once");
        for run in fs::read_dir(dir.path().join(&results).join("race")).unwrap().flatten() {
            let Ok(log) = fs::read_to_string(run.path().join("log.txt")) else { continue };
            assert_eq!(
                log.matches(" train start").count(),
                1,
                "trial {trial}: trained twice\n{log}"
            );
        }
        assert_eq!(csvs(&results), alone, "trial {trial}");
    }
}

/// Standard training with `[train] validation`, evaluated on the final and on the robust
/// checkpoint (two runs sharing one training).
const ROBUST: &str = r#"experiment = "robust"
seeds = [2]

[base]
data = { source = "synthetic", n_train = 320, n_test = 48 }
model = { arch = "mlp", width = 0.25 }
method = { kind = "standard" }
train = { epochs = 5, batch_size = 32, eval_batch_size = 64, optimizer = { kind = "adam", lr = 0.003 }, validation = { n = 32, steps = 2, every = 1, eps = "32/255" } }
eval = { n = 48, batch_size = 48 }

[grid]
"eval.checkpoint" = ["final", "best"]

[[attacks]]
kind = "fgsm"
eps = ["8/255"]
"#;

/// `gfa run` with `[train] validation`: train.csv logs the validation accuracies and the
/// chosen epoch, `best.safetensors` holds that epoch, and `[eval] checkpoint` picks the weights
/// the attack suite sees (the clean accuracy in eval.csv is the chosen file's). At 32/255 the
/// MLP's robust validation accuracy peaks before the last epoch (epoch 3 of 5: 14 of 32
/// held-out points against 12 at epochs 4 and 5), so the two files differ.
#[test]
fn validation_keeps_the_best_checkpoint_and_eval_picks_it() {
    use gfa_exp::config::grid::ExperimentSpec;
    use gfa_exp::config::spec::CheckpointChoice;
    let dir = tempfile::tempdir().unwrap();
    let file = super::write(dir.path(), "robust.toml", ROBUST);
    gfa(
        dir.path(),
        &["--device", "cpu", "run", file.to_str().unwrap(), "--results", "res", "--quiet"],
    );
    let runs = ExperimentSpec::load(&file, &[]).unwrap().expand().unwrap();
    let exp = dir.path().join("res/robust");
    let eval: Vec<EvalRow> = read_rows(&exp.join("eval.csv")).unwrap();
    let data = gfa_exp::run::stages::load_data(&runs[0].config.data).unwrap();
    let mut accs = Vec::new();
    for run in &runs {
        let rows: Vec<TrainRow> = read_rows(&exp.join(&run.run_id).join("train.csv")).unwrap();
        assert_eq!(rows.len(), 5);
        let robust: Vec<f64> = rows.iter().map(|r| r.val_robust_acc.unwrap()).collect();
        assert!(rows.iter().all(|r| r.val_clean_acc.is_some_and(|a| (0.0..=1.0).contains(&a))));
        // The highest robust validation accuracy so far, the earliest epoch on a tie.
        let mut best = 0;
        for (i, r) in rows.iter().enumerate() {
            if robust[i] > robust[best] {
                best = i;
            }
            assert_eq!(r.best_epoch, Some(best + 1), "epoch {}: {robust:?}", r.epoch);
        }
        // The collapse diagnostics (on by default): train_steps.csv holds every probe, and the
        // one taken at the end of each epoch fills that epoch's train.csv columns.
        let probes: Vec<StepRow> =
            read_rows(&exp.join(&run.run_id).join("train_steps.csv")).unwrap();
        assert_eq!(probes[0].step, 0, "the initial weights are probed");
        for r in &rows {
            let end = probes.iter().find(|p| Some(p.step) == r.steps).unwrap();
            assert_eq!((end.epoch, Some(end.grad_norm)), (r.epoch, r.grad_norm));
            assert_eq!((Some(end.pred_entropy), &end.dead_frac), (r.pred_entropy, &r.dead_frac));
            assert_eq!(r.collapse_step.is_some(), end.collapse, "epoch {}", r.epoch);
        }
        let ckpt = exp.join(&run.run_id).join("checkpoints");
        let file = gfa_exp::run::stages::weights_file(run.config.eval.checkpoint);
        let want =
            if run.config.eval.checkpoint == CheckpointChoice::Best { "best" } else { "final" };
        assert_eq!(file, format!("{want}.safetensors"));
        let model = gfa_core::checkpoint::load(&ckpt, file, tch::Device::Cpu).unwrap();
        let acc = gfa_core::metrics::accuracy(&model, &data.test.head(48), 48).unwrap();
        let clean: Vec<f64> =
            eval.iter().filter(|r| r.run_id == run.run_id).map(|r| r.clean_acc).collect();
        assert!(!clean.is_empty());
        // Same weights, same points, same kernels: the same count of correct points.
        assert!(clean.iter().all(|c| (c - acc).abs() < 1e-9), "{file}: {clean:?} vs {acc}");
        accs.push((run.config.eval.checkpoint, acc, rows[4].best_epoch));
    }
    // The setting tells the two files apart: the robust checkpoint is an earlier epoch, with
    // another test accuracy.
    assert!(accs.iter().all(|a| a.2.is_some_and(|e| e < 5)), "{accs:?}");
    assert_ne!(accs[0].1, accs[1].1, "{accs:?}");
}
