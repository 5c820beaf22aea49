//! The binarization test in a grid and on the command line: `[binarize]` runs after the
//! evaluation of the runs of its subset only and changes only their ids, `binarization.csv`
//! round-trips, checks.csv gets its row and T4 its column; `gfa binarize` tests one checkpoint;
//! a grid it cannot test is refused at its key.
use std::path::Path;

use gfa_exp::analysis::stats::wilson;
use gfa_exp::config::grid::ExperimentSpec;
use gfa_exp::results::records::{BinarizationRow, CheckRow, read_rows, to_csv_bytes};

use super::{gfa_ok as gfa, write};

/// One training (standard, synthetic data) evaluated under both protocols; the binarization
/// test of PGD-10 on the 4 first points of the standard protocol's run, with the default inner
/// samples.
const GRID: &str = r#"experiment = "bin"

[base.data]
source = "synthetic"
n_train = 256
n_test = 32

[base.model]
arch = "cnn"
width = 0.125

[base.train]
epochs = 2
batch_size = 64
eval_batch_size = 64
optimizer = { kind = "adam", lr = 3e-3 }
schedule = { kind = "constant" }

[base.eval]
n = 32
batch_size = 32

[grid]
"eval.subset" = ["all", "all_correct"]

[[attacks]]
kind = "pgd"
eps = ["8/255"]
steps = 5

[binarize]
attack = { kind = "pgd", steps = 10 }
eps = "8/255"
n = 4
subset = "all"
validation = 20
steps = 200
"#;

/// The expansion's run ids, subset "all" first.
fn ids(text: &str) -> Vec<String> {
    let spec = ExperimentSpec::parse(Path::new("bin.toml"), text, &[]).unwrap();
    spec.expand().unwrap().into_iter().map(|r| r.run_id).collect()
}

#[test]
fn a_grid_tests_the_runs_of_its_subset_and_reports_the_pass_rate() {
    // The table changes the id of the run it tests, and of no other.
    let without = GRID.split("[binarize]").next().unwrap();
    let (with, plain) = (ids(GRID), ids(without));
    assert_ne!(with[0], plain[0]);
    assert_eq!(with[1], plain[1]);

    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bin.toml", GRID);
    let file = file.to_str().unwrap();
    gfa(dir.path(), &["--device", "cpu", "run", file, "--results", "res", "--quiet"]);
    let exp = dir.path().join("res/bin");
    let tested = exp.join(&with[0]);
    assert!(!exp.join(&with[1]).join("binarization.csv").exists(), "all_correct is not tested");
    let config = std::fs::read_to_string(tested.join("config.toml")).unwrap();
    assert!(config.contains("[binarize]") && config.contains("validation = 20"), "{config}");

    let path = tested.join("binarization.csv");
    let rows: Vec<BinarizationRow> = read_rows(&path).unwrap();
    // Written rows read back to the same bytes (floats in their shortest exact form).
    assert_eq!(to_csv_bytes(&rows).unwrap(), std::fs::read(&path).unwrap());
    assert_eq!(rows.len(), 4 + 1);
    let points = &rows[..4];
    assert_eq!(points.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2, 3].map(Some));
    for r in points {
        assert!(["pass", "fail", "invalid"].contains(&r.result.as_str()), "{r:?}");
        assert_eq!(
            (r.kind.as_str(), r.eps_text.as_str(), r.run_id.as_str()),
            ("pgd", "8/255", with[0].as_str())
        );
        assert!(r.val_inner_acc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{r:?}");
        assert_eq!(r.result == "invalid", r.adv_norm.is_none(), "{r:?}");
    }
    let s = &rows[4];
    let passed = points.iter().filter(|r| r.result == "pass").count();
    let valid = points.iter().filter(|r| r.result != "invalid").count();
    assert_eq!(
        (s.result.as_str(), s.passed, s.valid, s.index),
        ("summary", Some(passed), Some(valid), None)
    );
    let w = wilson(passed as u64, valid as u64);
    assert_eq!(s.pass_rate, w.map(|w| w.estimate));
    assert_eq!((s.pass_low, s.pass_high), (w.map(|w| w.low), w.map(|w| w.high)));
    // The default inner samples: as many as the 32 features of `cnn` at width 0.125 separate.
    assert!(s.settings.contains("\"inner\":31"), "{}", s.settings);

    // checks.csv: the test's row before the verdict.
    let checks: Vec<CheckRow> = read_rows(&tested.join("checks.csv")).unwrap();
    let b = &checks[checks.len() - 2];
    assert_eq!((b.check.as_str(), b.number), ("binarization", Some(10)));
    assert_eq!(b.value, s.pass_rate, "{b:?}");
    assert_eq!(checks.last().unwrap().check, "verdict");
    let untested: Vec<CheckRow> = read_rows(&exp.join(&with[1]).join("checks.csv")).unwrap();
    assert!(untested.iter().all(|c| c.check != "binarization"));

    // The experiment-level file and T4's column.
    gfa(dir.path(), &["report", exp.to_str().unwrap()]);
    let all: Vec<BinarizationRow> = read_rows(&exp.join("binarization.csv")).unwrap();
    assert_eq!(all, rows);
    let t4 = std::fs::read_to_string(exp.join("tables/T4.md")).unwrap();
    assert!(t4.contains("binarization pass rate"), "{t4}");
    assert!(t4.contains("pgd linf 8/255: "), "{t4}");

    // `gfa binarize` on the run folder: the same test, the same rows (same seed, same points).
    let out = gfa(
        dir.path(),
        &[
            "--device",
            "cpu",
            "binarize",
            "--checkpoint",
            tested.to_str().unwrap(),
            "--attack",
            "{ kind = \"pgd\", steps = 10 }",
            "--n",
            "4",
            "--validation",
            "20",
            "--steps",
            "200",
            "--csv",
            "again.csv",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pass rate pgd linf 8/255: "), "{text}");
    let again: Vec<BinarizationRow> = read_rows(&dir.path().join("again.csv")).unwrap();
    // Outcome level: `gfa run` and `gfa binarize` may run libtorch on other thread counts.
    let outcome =
        |v: &[BinarizationRow]| -> Vec<String> { v.iter().map(|r| r.result.clone()).collect() };
    assert_eq!(outcome(&again), outcome(&rows));
}

/// What the test cannot run on is refused at its key, with the file's line: a model without
/// hidden layers, a subset no run has.
#[test]
fn a_grid_the_test_cannot_run_on_is_refused_at_its_key() {
    let err = |text: &str| {
        let spec = ExperimentSpec::parse(Path::new("bin.toml"), text, &[]).unwrap();
        spec.expand().unwrap_err().to_string()
    };
    let linear = GRID.replace("arch = \"cnn\"", "arch = \"linear\"");
    let e = err(&linear);
    assert!(e.contains("bin.toml:31:") && e.contains("`binarize`"), "{e}");
    assert!(e.contains("`linear` has no tap after `input`"), "{e}");
    let one = GRID.replace(
        "\"eval.subset\" = [\"all\", \"all_correct\"]",
        "\"eval.subset\" = [\"all_correct\"]",
    );
    let e = err(&one);
    assert!(e.contains("`binarize.subset`") && e.contains("would test nothing"), "{e}");
}

/// T4's column on hand-made results: with two tested runs mean ± std of their pass rates, with
/// one its Wilson interval, "—" for a group never tested; the verdicts beside are unchanged.
#[test]
fn t4_shows_each_group_s_pass_rate_beside_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    super::report::hand_made(dir.path());
    let summary = |method: &str, lambda: Option<f64>, seed: u64, passed: usize| {
        let w = wilson(passed as u64, 20).unwrap();
        BinarizationRow {
            attack: "pgd".into(),
            kind: "pgd".into(),
            norm: "linf".into(),
            eps_text: "8/255".into(),
            eps: 8.0 / 255.0,
            result: "summary".into(),
            passed: Some(passed),
            valid: Some(20),
            pass_rate: Some(w.estimate),
            pass_low: Some(w.low),
            pass_high: Some(w.high),
            ..BinarizationRow::keyed(&super::report::key(method, lambda, seed))
        }
    };
    // A run whose heads separated no point's samples has no pass rate: it says so.
    let untested = BinarizationRow {
        valid: Some(0),
        passed: Some(0),
        pass_rate: None,
        pass_low: None,
        pass_high: None,
        ..summary("pgd_at", None, 0, 0)
    };
    let rows = [
        summary("standard", None, 0, 20),
        summary("standard", None, 1, 18),
        summary("gfa", Some(0.1), 0, 19),
        untested,
    ];
    gfa_exp::results::records::write_rows(&dir.path().join("binarization.csv"), &rows).unwrap();
    let md = gfa_exp::analysis::report::report(dir.path()).unwrap().markdown;
    // (1.0 + 0.9) / 2 = 0.95, sample std √((0.05² · 2) / 1) = 0.0707.
    let standard =
        "| cnn | standard | no_masking_detected (2/2) | none | pgd linf 8/255: 95.0 ± 7.1 |";
    assert!(md.contains(standard), "{standard}\n{md}");
    let gfa =
        format!("black_box_not_better (1) | pgd linf 8/255: {} |", wilson(19, 20).unwrap().pct(1));
    assert!(md.contains(&gfa), "{gfa}\n{md}");
    let none = "| cnn | pgd_at | no_masking_detected (2/2) | none | pgd linf 8/255: no valid point (1 run) |";
    assert!(md.contains(none), "{md}");
}
