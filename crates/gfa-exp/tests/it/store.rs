//! The results store and the runner, with fake stages: failures are recorded and the grid goes
//! on; a run interrupted mid-stage resumes without redoing finished stages or duplicating rows.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Result, bail};
use gfa_exp::config::grid::{ExperimentSpec, RunSpec};
use gfa_exp::results::records::{EvalRow, TrainRow, read_rows};
use gfa_exp::results::store::{ExperimentDir, Shard, Stage, Status};
use gfa_exp::run::runner::{EvalOutput, RunOptions, Stages, run_grid};

use super::SMALL;

/// Fake stages: deterministic rows, call counts, and injectable failures.
#[derive(Default)]
struct Fake {
    trained: BTreeMap<String, usize>,
    evaluated: BTreeMap<String, usize>,
    fail_eval: BTreeSet<String>,
    panic_train: BTreeSet<String>,
    /// Per run: the points its model classifies correctly (all 64 when absent).
    correct: BTreeMap<String, Vec<bool>>,
    /// The `keep` each evaluation received, and how many runs were trained at that moment.
    kept: BTreeMap<String, (Option<Vec<bool>>, usize)>,
}

impl Stages for Fake {
    fn train(
        &mut self,
        run: &RunSpec,
        dir: &gfa_exp::results::store::RunDir,
    ) -> Result<Vec<TrainRow>> {
        *self.trained.entry(run.run_id.clone()).or_default() += 1;
        if self.panic_train.contains(&run.run_id) {
            panic!("shape mismatch in a tensor op");
        }
        fs::create_dir_all(dir.file("checkpoints"))?;
        fs::write(dir.file("checkpoints/final.safetensors"), b"weights")?;
        Ok((1..=2)
            .map(|epoch| TrainRow {
                epoch,
                lr: 0.1,
                train_loss: 1.0 / epoch as f64,
                train_acc: 0.5,
                device: "cpu".into(),
                ..TrainRow::keyed(&run.key())
            })
            .collect())
    }

    fn correct(
        &mut self,
        run: &RunSpec,
        dir: &gfa_exp::results::store::RunDir,
    ) -> Result<Vec<bool>> {
        assert!(dir.has(Stage::Trained), "correct() on an untrained run");
        Ok(self.correct.get(&run.run_id).cloned().unwrap_or_else(|| vec![true; 64]))
    }

    fn evaluate(
        &mut self,
        run: &RunSpec,
        _dir: &gfa_exp::results::store::RunDir,
        keep: Option<&[bool]>,
    ) -> Result<EvalOutput> {
        *self.evaluated.entry(run.run_id.clone()).or_default() += 1;
        let trained = self.trained.len();
        self.kept.insert(run.run_id.clone(), (keep.map(<[bool]>::to_vec), trained));
        if self.fail_eval.contains(&run.run_id) {
            bail!("CUDA out of memory (simulated)");
        }
        let mut eval = Vec::new();
        for a in &run.attacks {
            for e in &a.eps {
                eval.push(EvalRow {
                    attack: a.name.clone(),
                    kind: a.kind.clone(),
                    preset: a.preset.clone(),
                    attack_config: "{}".into(),
                    norm: a.norm.clone(),
                    eps_text: e.text.clone(),
                    eps: Some(e.value),
                    mode: "individual".into(),
                    subset: "all".into(),
                    n: 64,
                    clean_acc: 0.8,
                    robust_acc: Some(0.8 - e.value),
                    ..EvalRow::keyed(&run.key())
                });
            }
        }
        Ok(EvalOutput { eval, ..Default::default() })
    }
}

fn setup(dir: &Path) -> (ExperimentDir, Vec<RunSpec>) {
    let spec =
        ExperimentSpec::parse(Path::new("small.toml"), SMALL, &["seeds=[0]".into()]).unwrap();
    let runs = spec.expand().unwrap();
    assert_eq!(runs.len(), 4);
    (ExperimentDir::new(dir, &spec.name), runs)
}

/// Experiment-level eval rows, asserting there is no duplicated (run, attack, eps, mode).
fn unique_eval_rows(exp: &ExperimentDir) -> Vec<EvalRow> {
    let rows: Vec<EvalRow> = read_rows(&exp.root.join("eval.csv")).unwrap();
    let keys: BTreeSet<_> = rows
        .iter()
        .map(|r| (r.run_id.clone(), r.attack.clone(), r.eps_text.clone(), r.mode.clone()))
        .collect();
    assert_eq!(keys.len(), rows.len(), "duplicated eval rows");
    rows
}

#[test]
fn failing_run_does_not_stop_the_grid_and_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, runs) = setup(dir.path());
    let ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let mut fake = Fake::default();
    fake.fail_eval.insert(ids[1].clone());
    fake.panic_train.insert(ids[2].clone());
    let s = run_grid(&exp, &runs, &mut fake, &RunOptions::default()).unwrap();
    assert_eq!(s.done, vec![ids[0].clone(), ids[3].clone()]);
    assert_eq!(s.failed.len(), 2);
    let run1 = exp.run(&ids[1]);
    match run1.status() {
        Status::Failed(e) => assert!(e.contains("evaluation: CUDA out of memory"), "{e}"),
        s => panic!("{s:?}"),
    }
    assert!(run1.has(Stage::Trained) && !run1.has(Stage::Evaluated));
    match exp.run(&ids[2]).status() {
        Status::Failed(e) => assert!(e.contains("panicked: shape mismatch"), "{e}"),
        s => panic!("{s:?}"),
    }
    // 3 attack-eps rows per finished run; experiment-level files hold the finished runs only.
    assert_eq!(unique_eval_rows(&exp).len(), 6);
    let checks: Vec<gfa_exp::results::records::CheckRow> =
        read_rows(&exp.root.join("checks.csv")).unwrap();
    assert_eq!(checks.len(), 2 * 10);

    // Simulate a kill -9 of run 3 in the middle of its evaluation: status stays `running`, the
    // marker is missing, and a half-written temporary file is left behind.
    let run3 = exp.run(&ids[3]);
    run3.set_status(&Status::Running).unwrap();
    run3.unmark_from(Stage::Evaluated).unwrap();
    fs::write(run3.file(".tmp.99999.0.eval.csv"), "schema_version,experiment\n1,small\n1,sm")
        .unwrap();

    let mut fake = Fake::default();
    let s = run_grid(&exp, &runs, &mut fake, &RunOptions::default()).unwrap();
    assert_eq!(s.already_done, vec![ids[0].clone()]);
    assert!(!run3.file(".tmp.99999.0.eval.csv").exists(), "stale temp file removed");
    assert_eq!(s.done.len(), 3);
    assert!(s.failed.is_empty());
    // Finished stages are not redone: only run 2 (panicked in training) trains again.
    assert_eq!(fake.trained.keys().cloned().collect::<Vec<_>>(), vec![ids[2].clone()]);
    let evaluated: BTreeSet<String> = fake.evaluated.keys().cloned().collect();
    assert_eq!(evaluated, [ids[1].clone(), ids[2].clone(), ids[3].clone()].into_iter().collect());
    let rows = unique_eval_rows(&exp);
    assert_eq!(rows.len(), 12);
    let train: Vec<TrainRow> = read_rows(&exp.root.join("train.csv")).unwrap();
    assert_eq!(train.len(), 8, "2 epochs x 4 runs, none duplicated");
    for id in &ids {
        assert_eq!(exp.run(id).status(), Status::Done);
    }
}

#[test]
fn only_shard_and_locks_select_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, runs) = setup(dir.path());
    let ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    // Another process holds run 1.
    let held = exp.run(&ids[1]).try_lock().unwrap().unwrap();
    let mut fake = Fake::default();
    let opts = RunOptions { shard: Some("2/2".parse::<Shard>().unwrap()), ..Default::default() };
    let s = run_grid(&exp, &runs, &mut fake, &opts).unwrap();
    assert_eq!(s.locked, vec![ids[1].clone()]);
    assert_eq!(s.done, vec![ids[3].clone()]);
    drop(held);
    let opts = RunOptions { only: vec![ids[2][..6].to_string()], ..Default::default() };
    let s = run_grid(&exp, &runs, &mut fake, &opts).unwrap();
    assert_eq!(s.done, vec![ids[2].clone()]);
    let opts = RunOptions { only: vec!["zzzz".into()], ..Default::default() };
    let e = run_grid(&exp, &runs, &mut fake, &opts).unwrap_err();
    assert!(format!("{e:#}").contains("--only zzzz"));
}

#[test]
fn changed_config_is_refused_by_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, runs) = setup(dir.path());
    let run = exp.run(&runs[0].run_id);
    fs::create_dir_all(&run.path).unwrap();
    fs::write(run.file("config.toml"), "other = 1\n").unwrap();
    let e = run_grid(&exp, &runs, &mut Fake::default(), &RunOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("different configuration"));
}

/// Runs that differ only in evaluation (here `eval.subset`) train once: the second takes the
/// first's checkpoint files and train rows (re-keyed), and both are evaluated.
#[test]
fn runs_differing_only_in_evaluation_share_one_training() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ExperimentSpec::parse(
        Path::new("small.toml"),
        SMALL,
        &["seeds=[0]".into(), "grid={\"eval.subset\" = [\"all\", \"all_correct\"]}".into()],
    )
    .unwrap();
    let runs = spec.expand().unwrap();
    // λ ∈ {0.1, 1.0} × subset ∈ {all, all_correct}: four runs, two trainings.
    assert_eq!(runs.len(), 4);
    let keys: BTreeSet<String> = runs.iter().map(RunSpec::train_key).collect();
    assert_eq!(keys.len(), 2);
    let exp = ExperimentDir::new(dir.path(), &spec.name);
    let mut fake = Fake::default();
    let s = run_grid(&exp, &runs, &mut fake, &RunOptions::default()).unwrap();
    assert_eq!(s.done.len(), 4);
    assert_eq!(fake.trained.values().sum::<usize>(), 2, "{:?}", fake.trained);
    assert_eq!(fake.evaluated.len(), 4);
    let adopted = runs.iter().find(|r| !fake.trained.contains_key(&r.run_id)).unwrap();
    let second = exp.run(&adopted.run_id);
    assert_eq!(fs::read(second.file("checkpoints/final.safetensors")).unwrap(), b"weights");
    let rows: Vec<TrainRow> = read_rows(&second.file("train.csv")).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.run_id == adopted.run_id));
}

/// `all_correct` evaluates every run on the points all compared models classify correctly: all
/// runs are trained before the first evaluation, each evaluation gets the intersection, and a
/// changed intersection (a model retrained) makes the runs evaluate again.
#[test]
fn all_correct_intersects_the_compared_models() {
    let dir = tempfile::tempdir().unwrap();
    let set = ["seeds=[0]".to_string(), "base.eval.subset=\"all_correct\"".to_string()];
    let spec = ExperimentSpec::parse(Path::new("small.toml"), SMALL, &set).unwrap();
    let runs = spec.expand().unwrap();
    let exp = ExperimentDir::new(dir.path(), &spec.name);
    let ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let mut fake = Fake::default();
    let mut want = vec![true; 64];
    for (k, id) in ids.iter().enumerate() {
        // Run k misclassifies points k, k + 10 and k + 20.
        let mut ok = vec![true; 64];
        for p in [k, k + 10, k + 20] {
            ok[p] = false;
            want[p] = false;
        }
        fake.correct.insert(id.clone(), ok);
    }
    let s = run_grid(&exp, &runs, &mut fake, &RunOptions::default()).unwrap();
    assert_eq!(s.done.len(), ids.len(), "{s:?}");
    for id in &ids {
        let (keep, trained) = &fake.kept[id];
        assert_eq!(keep.as_deref(), Some(want.as_slice()), "run {id}");
        assert_eq!(*trained, ids.len(), "run {id} was evaluated before every model was trained");
    }
    let key = fs::read_to_string(exp.run(&ids[0]).file("all_correct")).unwrap();
    assert!(key.ends_with(&format!(": {} of 64", 64 - 3 * ids.len())), "{key}");

    // Nothing changed: nothing is redone.
    let mut again = Fake { correct: fake.correct.clone(), ..Fake::default() };
    let s = run_grid(&exp, &runs, &mut again, &RunOptions::default()).unwrap();
    assert_eq!(s.already_done.len(), ids.len());
    assert!(again.evaluated.is_empty());

    // Run 0 is retrained and now classifies every point correctly: the intersection grows and
    // every run is evaluated again on it.
    exp.run(&ids[0]).unmark_from(Stage::Trained).unwrap();
    let mut changed = Fake { correct: fake.correct.clone(), ..Fake::default() };
    changed.correct.remove(&ids[0]);
    let s = run_grid(&exp, &runs, &mut changed, &RunOptions::default()).unwrap();
    assert_eq!(s.done.len(), ids.len(), "{s:?}");
    for id in &ids {
        let keep = changed.kept[id].0.clone().unwrap();
        assert!(keep[0] && !keep[1], "run {id}: {:?}", &keep[..4]);
    }
}
