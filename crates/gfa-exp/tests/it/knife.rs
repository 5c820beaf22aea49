//! Designs that are not one product (`[[grid]]` blocks), the conditional escalation of
//! `[escalate]` and the λ-sweep figures, on a synthetic grid worked by fake stages, and the
//! knife-edge experiment's expansion.
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::Result;
use gfa_exp::config::grid::{ExperimentSpec, RunSpec};
use gfa_exp::results::records::{EvalRow, GfaValueRow, TrainRow, read_rows};
use gfa_exp::results::store::{RunDir, Stage, Status};
use gfa_exp::run::runner::{EvalOutput, RunOptions, Stages, run_grid};

/// Ten runs in four blocks: a sweep (3 λ × first/deep), a variant at one λ, the two baselines
/// and a second seed at one λ.
const EDGE: &str = r#"experiment = "edge"
seeds = [0]

[base]
data = { source = "synthetic", n_train = 64 }
train = { epochs = 2 }
method = { kind = "gfa", lambda = 0.1, layers = "first" }
model = { arch = "cnn", width = 0.25 }
eval = { n = 16 }

[[grid]]
"method.lambda" = [0.1, 0.2, 0.3]
"method.layers" = ["first", "deep"]

[[grid]]
"method.lambda" = [0.2]
"method.penalty" = ["sin2"]

[[grid]]
method = [{ kind = "standard" }, { kind = "pgd_at", steps = 3, step = "3/255" }]

[[grid]]
seeds = [1]
"method.lambda" = [0.2]

[[attacks]]
kind = "pgd"
eps = ["2/255", "8/255"]

[[attacks]]
kind = "fgsm"
eps = ["8/255"]

[escalate]
eps = "8/255"
attacks = [{ kind = "autoattack", eps = ["8/255"] }]
"#;

fn parse(text: &str) -> std::result::Result<ExperimentSpec, gfa_exp::config::keys::ConfigError> {
    ExperimentSpec::parse(Path::new("edge.toml"), text, &[])
}

/// What the fake model of a run scores: collapsed (clean at chance) from λ = 0.3, robust (worst
/// case 10 %) at λ = 0.2 with seed 0 and the default penalty, PGD-AT 30 %, the rest 2–3 %.
fn profile(run: &RunSpec) -> (f64, f64) {
    let key = run.key();
    let sin2 = key.method_params.contains("sin2");
    match (key.method.as_str(), key.lambda) {
        ("standard", _) => (0.6, 0.02),
        ("pgd_at", _) => (0.5, 0.30),
        (_, Some(l)) if l >= 0.3 => (0.1, 0.03),
        (_, Some(l)) if (l - 0.2).abs() < 1e-9 && run.seed == 0 && !sin2 => (0.55, 0.10),
        _ => (0.6, 0.03),
    }
}

#[derive(Default)]
struct Fake {
    evaluated: BTreeMap<String, usize>,
}

impl Stages for Fake {
    fn train(&mut self, run: &RunSpec, dir: &RunDir) -> Result<Vec<TrainRow>> {
        fs::create_dir_all(dir.file("checkpoints"))?;
        fs::write(dir.file("checkpoints/final.safetensors"), b"weights")?;
        let collapsed = profile(run).0 < 0.2;
        Ok((1..=2)
            .map(|epoch| TrainRow {
                epoch,
                train_loss: 1.0,
                steps: Some(10 * epoch),
                collapse_step: collapsed.then_some(5),
                ..TrainRow::keyed(&run.key())
            })
            .collect())
    }

    fn correct(&mut self, _: &RunSpec, _: &RunDir) -> Result<Vec<bool>> {
        Ok(vec![true; 16])
    }

    fn evaluate(&mut self, run: &RunSpec, _: &RunDir, _: Option<&[bool]>) -> Result<EvalOutput> {
        *self.evaluated.entry(run.run_id.clone()).or_default() += 1;
        let (clean, worst) = profile(run);
        let mut eval = Vec::new();
        for (i, a) in run.attacks.iter().enumerate() {
            for e in &a.eps {
                // Each attack lowers the cumulative worst case by one point.
                let acc = worst + 0.01 * (run.attacks.len() - 1 - i) as f64;
                for mode in ["individual", "cumulative"] {
                    eval.push(EvalRow {
                        attack: a.name.clone(),
                        kind: a.kind.clone(),
                        preset: a.preset.clone(),
                        norm: a.norm.clone(),
                        eps_text: e.text.clone(),
                        eps: Some(e.value),
                        mode: mode.into(),
                        subset: "all".into(),
                        n: 16,
                        clean_acc: clean,
                        robust_acc: Some(acc),
                        ..EvalRow::keyed(&run.key())
                    });
                }
            }
        }
        let gfa_value = vec![GfaValueRow {
            split: "test".into(),
            tap: "input".into(),
            value: run.key().lambda.unwrap_or(0.0),
            n: 16,
            ..GfaValueRow::keyed(&run.key())
        }];
        Ok(EvalOutput { eval, gfa_value, ..Default::default() })
    }
}

#[test]
fn grid_blocks_are_a_union_of_products_with_their_own_seeds() {
    let spec = parse(EDGE).unwrap();
    let runs = spec.expand().unwrap();
    assert_eq!((spec.len(), runs.len()), (10, 10));
    // Blocks in file order, each a product; a block's `seeds` replace the file's.
    let seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let methods: Vec<String> = runs.iter().map(|r| r.key().method).collect();
    assert_eq!(&methods[7..9], ["standard", "pgd_at"]);
    assert!(runs[6].key().method_params.contains("sin2"));
    // The seed-1 run is the seed-0 run of the sweep at λ = 0.2, first, with another seed.
    assert_eq!(runs[9].config, runs[2].config);
    assert_eq!(runs.iter().map(|r| r.index).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
}

#[test]
fn grid_blocks_name_their_mistakes() {
    let err = |text: &str| parse(text).and_then(|s| s.expand()).unwrap_err().to_string();
    // Two blocks giving one run.
    let e = err(&EDGE.replace("\"method.penalty\" = [\"sin2\"]", "\"method.layers\" = [\"deep\"]"));
    assert!(e.contains("two runs of the expansion are identical"), "{e}");
    assert!(e.contains("[[grid]] blocks"), "{e}");
    // A block's seeds are checked like the file's, at the block's line.
    let e = err(&EDGE.replace("seeds = [1]", "seeds = [1, 1]"));
    assert!(e.contains("a seed appears twice") && e.contains("grid.3.seeds"), "{e}");
    let e = err(&EDGE.replace("seeds = [1]", "seeds = \"one\""));
    assert!(e.contains("grid.3.seeds"), "{e}");
    // A mistyped run key inside a block names the block and the closest section.
    let e = err(&EDGE.replace("\"method.penalty\"", "\"metod.penalty\""));
    assert!(e.contains("metod.penalty") && e.contains("not a run key"), "{e}");
    // A mistyped [escalate] key is caught when the file is read.
    let e = err(&EDGE.replace("eps = \"8/255\"\nattacks", "eps = \"8/255\"\nmargn = 0.1\nattacks"));
    assert!(e.contains("escalate") && e.contains("margin"), "{e}");
}

#[test]
fn escalation_adds_autoattack_to_the_runs_that_beat_standard_and_the_figures_follow() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parse(EDGE).unwrap();
    let runs = spec.expand().unwrap();
    let exp = gfa_exp::results::plan::write_plan(&spec, &runs, tmp.path()).unwrap();
    let mut fake = Fake::default();
    let s = run_grid(&exp, &runs, &mut fake, &RunOptions::default()).unwrap();
    assert_eq!(s.done.len(), 10, "{s:?}");

    // Standard's worst case at L∞ 8/255 is 2 %: PGD-AT (30 %) and GFA λ = 0.2 with seed 0, first
    // and deep (10 %), are more than 5 points above it; the collapsed runs (3 %), the sin² and
    // seed-1 runs at λ = 0.2 and the rest are not.
    let esc = spec.escalate.as_ref().expect("[escalate] is read");
    // A batch log an interrupted escalation would leave in every run folder.
    for r in &runs {
        fs::write(exp.run(&r.run_id).file("eval_batches.jsonl"), "{}\n").unwrap();
    }
    let done =
        gfa_exp::run::escalate::escalate(&exp, &runs, esc, &mut fake, &RunOptions::default())
            .unwrap();
    let expected: Vec<String> =
        runs.iter().filter(|r| profile(r).1 > 0.07).map(|r| r.run_id.clone()).collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(done, expected);
    for r in &runs {
        let dir = exp.run(&r.run_id);
        let eval: Vec<EvalRow> = read_rows(&dir.file("eval.csv")).unwrap();
        let aa = eval.iter().filter(|e| e.kind == "autoattack").count();
        let escalated = expected.contains(&r.run_id);
        assert_eq!(aa, if escalated { 2 } else { 0 }, "run {}", r.run_id);
        assert_eq!(dir.file("escalated").is_file(), escalated);
        // An escalated run's evaluation is written: its batch log goes.
        assert_eq!(dir.file("eval_batches.jsonl").is_file(), !escalated, "run {}", r.run_id);
        // The masking checks ran again on the new rows and the run is finished.
        assert!(dir.has(Stage::Checked) && dir.status() == Status::Done);
        if escalated {
            // The cumulative rows now run through AutoAttack, the suite's last attack.
            let last = eval.iter().rfind(|e| e.mode == "cumulative" && e.eps_text == "8/255");
            assert_eq!(last.unwrap().kind, "autoattack");
            assert!((esc.worst_case(&eval).unwrap() - profile(r).1).abs() < 1e-12);
        }
    }
    let all: Vec<EvalRow> = read_rows(&exp.root.join("eval.csv")).unwrap();
    assert_eq!(all.iter().filter(|e| e.kind == "autoattack").count(), 6);
    // A second call finds the added rows and evaluates nothing.
    let before = fake.evaluated.clone();
    let again =
        gfa_exp::run::escalate::escalate(&exp, &runs, esc, &mut fake, &RunOptions::default())
            .unwrap();
    assert!(again.is_empty() && fake.evaluated == before);

    // The λ-sweep figures from the folder's CSVs.
    let files =
        gfa_exp::analysis::plot::plot_dir(&exp.root, gfa_exp::analysis::style::Format::Both)
            .unwrap();
    let figures = exp.root.join("figures");
    for name in ["phase_diagram_cnn", "tradeoff_clean_vs_robust_cnn"] {
        for ext in ["svg", "png"] {
            let p = figures.join(format!("{name}.{ext}"));
            assert!(files.contains(&p), "{} not in {files:?}", p.display());
            assert!(fs::metadata(&p).unwrap().len() > 1000, "{} is empty", p.display());
        }
    }
    let svg = fs::read_to_string(figures.join("phase_diagram_cnn.svg")).unwrap();
    for text in [
        "gfa layers=first",
        "gfa layers=deep",
        "gfa layers=first sin²",
        "standard (reference)",
        "pgd_at (reference)",
        "collapse epoch",
        "worst case, L∞ 8/255",
        "input-tap cosine",
    ] {
        assert!(svg.contains(text), "the phase diagram lacks {text:?}");
    }
    let svg = fs::read_to_string(figures.join("tradeoff_clean_vs_robust_cnn.svg")).unwrap();
    assert!(svg.contains("clean vs worst case, L∞ 2/255") && svg.contains("standard (reference)"));
}

/// `gfa escalate --only ID` escalates that run alone, against the reference of the whole grid
/// (no standard run is among the picked ones); a run an interrupted call escalated before its
/// masking checks ran gets them from the next call.
#[test]
fn escalating_picked_runs_compares_with_the_whole_grid_and_rechecks_interrupted_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parse(EDGE).unwrap();
    let runs = spec.expand().unwrap();
    let exp = gfa_exp::results::plan::write_plan(&spec, &runs, tmp.path()).unwrap();
    let mut fake = Fake::default();
    run_grid(&exp, &runs, &mut fake, &RunOptions::default()).unwrap();
    let esc = spec.escalate.as_ref().expect("[escalate] is read");
    let pgd_at = runs.iter().find(|r| r.key().method == "pgd_at").unwrap().run_id.clone();
    let only = |id: &str| RunOptions { only: vec![id.to_string()], ..RunOptions::default() };
    let done = gfa_exp::run::escalate::escalate(&exp, &runs, esc, &mut fake, &only(&pgd_at))
        .expect("the reference comes from the standard run, which --only does not pick");
    assert_eq!(done, vec![pgd_at.clone()]);
    let escalated: Vec<&RunSpec> =
        runs.iter().filter(|r| exp.run(&r.run_id).file("escalated").is_file()).collect();
    assert_eq!(escalated.len(), 1, "only the picked run is escalated");
    // A standard run picked alone is the reference, never escalated.
    let standard = runs.iter().find(|r| r.key().method == "standard").unwrap();
    let none =
        gfa_exp::run::escalate::escalate(&exp, &runs, esc, &mut fake, &only(&standard.run_id))
            .unwrap();
    assert!(none.is_empty());

    // An interruption between the new rows and the checks: the next call checks the run again.
    let dir = exp.run(&pgd_at);
    dir.unmark_from(Stage::Checked).unwrap();
    assert!(!dir.has(Stage::Checked));
    let again =
        gfa_exp::run::escalate::escalate(&exp, &runs, esc, &mut fake, &RunOptions::default())
            .unwrap();
    assert!(!again.contains(&pgd_at), "its rows are there: not evaluated again");
    assert!(dir.has(Stage::Checked) && dir.status() == Status::Done);
}

#[test]
fn the_knife_edge_experiment_expands_to_its_design() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/knife_edge.toml");
    let spec = ExperimentSpec::load(&file, &[]).unwrap();
    let runs = spec.expand().unwrap();
    // 16 sweep + 2 baselines + 8 warm-up + 16 penalties + 8 MSE + 4 pre-activation + 7 seeds.
    assert_eq!(runs.len(), 61);
    let count = |f: &dyn Fn(&RunSpec) -> bool| runs.iter().filter(|r| f(r)).count();
    assert_eq!(count(&|r| r.seed == 1), 7);
    assert_eq!(count(&|r| r.key().method == "standard"), 2);
    assert_eq!(count(&|r| r.key().method == "pgd_at"), 1);
    assert_eq!(count(&|r| r.key().method_params.contains("pre_activation")), 4);
    assert_eq!(count(&|r| r.key().method_params.contains("\"lambda_warmup_epochs\":2")), 8);
    // Every run meets the transfer attack (check 4); the two costly ones wait for [escalate].
    assert!(runs.iter().all(|r| r.attacks.iter().any(|a| a.kind == "transfer")));
    assert!(runs.iter().all(|r| !r.attacks.iter().any(|a| a.kind == "square")));
    let esc = spec.escalate.expect("knife_edge.toml escalates");
    assert_eq!(
        (esc.reference.as_str(), esc.margin, esc.eps.text.as_str()),
        ("standard", 0.05, "8/255")
    );
    let kinds: Vec<&str> = esc.attacks.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["autoattack", "pgd", "square"]);
}
