//! An evaluation killed mid-way (`kill -9` at a fault point) resumes from its batch log: the
//! rerun redoes only the unfinished batches and writes the CSVs of an uninterrupted run.
//! Also: minimum-norm attacks run once per model, and summary.csv keeps each seed's value.
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use gfa_exp::analysis::report::SummaryRow;
use gfa_exp::results::records::{EvalRow, NormRow, PointRow, read_rows};

/// Two seeds, a tiny CNN on synthetic data, 32 evaluation points in batches of 8 (the clean pass
/// is 4 batches); one minimum-norm attack at two budgets and two fixed-budget attacks at two.
const GRID: &str = r#"
experiment = "resume"
seeds = [0, 1]

[base.data]
source = "synthetic"
n_train = 128
n_test = 32

[base.model]
arch = "cnn"
width = 0.125

[base.train]
epochs = 1
batch_size = 64
eval_batch_size = 64
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9 }
schedule = { kind = "constant" }

[base.eval]
n = 32
batch_size = 8

[[attacks]]
kind = "deepfool"
norm = "l2"
eps = ["0.1", "0.5"]
steps = 5

[[attacks]]
kind = "fgsm"
eps = ["2/255", "8/255"]

[[attacks]]
kind = "pgd"
eps = ["2/255", "8/255"]
steps = 2
"#;

/// The batch at which the first evaluation is killed: after the clean pass (4 batches) and
/// inside the attacks.
const KILL_AT: usize = 6;

fn gfa(dir: &Path, fault: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gfa"));
    c.current_dir(dir).args(["--device", "cpu", "run", "grid.toml", "--results", "res", "--quiet"]);
    c.env_remove("GFA_FAULT");
    if let Some(f) = fault {
        c.env("GFA_FAULT", f);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// eval.csv's rows with the timing column zeroed.
fn eval_rows(exp: &Path) -> Vec<EvalRow> {
    let mut rows: Vec<EvalRow> = read_rows(&exp.join("eval.csv")).unwrap();
    for r in &mut rows {
        r.seconds = 0.0;
    }
    rows
}

/// The run folders of an experiment folder, sorted.
fn run_dirs(exp: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.toml").is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn a_killed_evaluation_resumes_its_unfinished_batches_only() {
    let reference = tempfile::tempdir().unwrap();
    let killed = tempfile::tempdir().unwrap();
    for d in [&reference, &killed] {
        fs::write(d.path().join("grid.toml"), GRID).unwrap();
    }
    let o = gfa(reference.path(), None);
    assert!(o.status.success(), "{}", text(&o));
    let want = reference.path().join("res/resume");

    // Killed by SIGKILL right after the KILL_AT-th batch was recorded.
    let o = gfa(killed.path(), Some(&format!("eval-batch:{KILL_AT}")));
    assert_eq!(o.status.signal(), Some(9), "{}", text(&o));
    let exp = killed.path().join("res/resume");
    let runs = run_dirs(&exp);
    assert_eq!(runs.len(), 2);
    let first = runs.iter().find(|r| r.join(gfa_exp::run::batches::FILE).is_file()).unwrap();
    let log = fs::read_to_string(first.join(gfa_exp::run::batches::FILE)).unwrap();
    assert_eq!(log.lines().count(), 1 + KILL_AT, "header and one line per batch:\n{log}");
    assert!(!first.join("evaluated").exists() && !first.join("eval.csv").exists());
    // A log of another evaluation in the other run's folder is not reused.
    let other = runs.iter().find(|r| *r != first).unwrap();
    let _ = fs::remove_file(other.join("evaluated"));
    fs::write(other.join(gfa_exp::run::batches::FILE), &log).unwrap();

    let o = gfa(killed.path(), None);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("belongs to another evaluation"), "{out}");
    let resumed: Vec<&str> = out.lines().filter(|l| l.contains("resumed the evaluation")).collect();
    assert_eq!(resumed.len(), 1, "{out}");
    let line = resumed[0];
    assert!(line.contains(&format!(": {KILL_AT} finished batches taken from")), "{line}");
    let computed: usize =
        line.rsplit(", ").next().unwrap().split(' ').next().unwrap().parse().unwrap();

    // Every batch of the run once: 4 clean, and per attack run ceil(correct / 8) on the
    // clean-correct points: DeepFool once for both budgets, FGSM and PGD once per budget (the
    // cumulative rows reuse the individual runs).
    let first_id = first.file_name().unwrap().to_str().unwrap();
    let rows = eval_rows(&exp);
    let r0 = rows.iter().find(|r| r.run_id == first_id).unwrap();
    let correct = (r0.clean_acc * 32.0).round() as usize;
    assert!(correct > 0, "the trained model classifies no point correctly");
    assert_eq!(KILL_AT + computed, 4 + correct.div_ceil(8) * (1 + 2 * 2), "{line}");

    // The same CSVs as the uninterrupted run (timing aside), and no batch log left behind.
    assert_eq!(rows, eval_rows(&want));
    for f in ["points.csv", "norms.csv"] {
        let got = fs::read(exp.join(f)).unwrap();
        assert_eq!(got, fs::read(want.join(f)).unwrap(), "{f}");
    }
    let points: Vec<PointRow> = read_rows(&exp.join("points.csv")).unwrap();
    let norms: Vec<NormRow> = read_rows(&exp.join("norms.csv")).unwrap();
    assert!(!points.is_empty() && !norms.is_empty());
    for r in &runs {
        assert!(!r.join(gfa_exp::run::batches::FILE).exists(), "{}", r.display());
    }

    // DeepFool ran once per model: both of its rows carry the time of that one run.
    let with_time: Vec<EvalRow> = read_rows(&want.join("eval.csv")).unwrap();
    for run in run_dirs(&want) {
        let id = run.file_name().unwrap().to_str().unwrap().to_string();
        let df: Vec<&EvalRow> = with_time
            .iter()
            .filter(|r| r.run_id == id && r.kind == "deepfool" && r.mode == "individual")
            .collect();
        assert_eq!(df.iter().map(|r| r.eps_text.as_str()).collect::<Vec<_>>(), ["0.1", "0.5"]);
        assert!(df[0].seconds > 0.0 && df[0].seconds == df[1].seconds, "{df:?}");
    }

    // summary.csv: the mean over both seeds and each seed's value, exactly as in eval.csv.
    let o = Command::new(env!("CARGO_BIN_EXE_gfa"))
        .current_dir(killed.path())
        .args(["report", "res/resume"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let summary: Vec<SummaryRow> = read_rows(&exp.join("summary.csv")).unwrap();
    let evals: Vec<EvalRow> = read_rows(&exp.join("eval.csv")).unwrap();
    let mut checked = 0;
    for s in summary.iter().filter(|s| s.source == "eval" && s.metric == "robust_acc") {
        let mut want: Vec<(u64, f64)> = evals
            .iter()
            .filter(|r| {
                (&r.attack, &r.eps_text, &r.mode) == (&s.attack, &s.eps_text, &s.mode)
                    && r.method == s.method
            })
            .map(|r| (r.seed, r.robust_acc.unwrap()))
            .collect();
        want.sort_by_key(|&(seed, _)| seed);
        let got = s.seeds().unwrap();
        assert_eq!(got.len(), 2, "{s:?}");
        assert_eq!(
            got.iter().map(|p| (p.0, p.1.to_bits())).collect::<Vec<_>>(),
            want.iter().map(|p| (p.0, p.1.to_bits())).collect::<Vec<_>>(),
            "{s:?}"
        );
        assert_eq!(s.n_seeds, 2);
        checked += 1;
    }
    // One group per eval.csv row of a run (the runs differ only by seed).
    assert_eq!(checked, evals.iter().filter(|r| r.seed == 0).count());

    // `gfa eval --csv FILE` resumes the same way, its log beside FILE.
    let ckpt = run_dirs(&want)[0].join("checkpoints");
    let eval = |csv: &str, fault: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gfa"));
        c.current_dir(killed.path()).args(["--device", "cpu", "eval", "--checkpoint"]);
        c.arg(&ckpt).args(["--synthetic", "--n", "32", "--batch-size", "8", "--attacks"]);
        c.args(["fgsm", "--eps", "2/255,8/255", "--csv", csv]).env_remove("GFA_FAULT");
        if let Some(f) = fault {
            c.env("GFA_FAULT", f);
        }
        c.output().unwrap()
    };
    let o = eval("whole.csv", None);
    assert!(o.status.success(), "{}", text(&o));
    let o = eval("cut.csv", Some(&format!("eval-batch:{KILL_AT}")));
    assert_eq!(o.status.signal(), Some(9), "{}", text(&o));
    let log = killed.path().join("cut.csv.batches.jsonl");
    assert!(log.is_file() && !killed.path().join("cut.csv").exists());
    let o = eval("cut.csv", None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!(": {KILL_AT} finished batches taken from")), "{}", text(&o));
    assert!(!log.exists());
    let rows = |f: &str| {
        let mut v: Vec<EvalRow> = read_rows(&killed.path().join(f)).unwrap();
        v.iter_mut().for_each(|r| r.seconds = 0.0);
        v
    };
    assert_eq!(rows("cut.csv"), rows("whole.csv"));
}
