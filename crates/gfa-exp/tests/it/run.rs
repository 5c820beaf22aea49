//! `gfa run` end to end on `experiments/smoke.toml`: real training and attacks, then report,
//! plot, and a resume after a simulated kill.
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gfa_exp::records::{EvalRow, GfaValueRow, TrainRow, read_rows};

fn gfa(dir: &Path, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_gfa")).current_dir(dir).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "gfa {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
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
    // The GFA value has one row per tap, the first being the input.
    let gv: Vec<GfaValueRow> = read_rows(&exp.join("gfa_value.csv")).unwrap();
    assert!(gv.len() >= 4 * 2 && gv.iter().all(|r| r.n == 64 && r.value.abs() <= 1.0));
    assert!(gv.iter().any(|r| r.tap == "input"));
    assert!(exp.join("checks.csv").is_file());

    let o = gfa(dir.path(), &["report", "res/smoke"]);
    assert!(!o.stdout.is_empty());
    assert!(exp.join("summary.csv").is_file() && exp.join("report.md").is_file());
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
