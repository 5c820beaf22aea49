//! The `gfa` binary in a temporary folder.
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use super::{SMALL, write};

fn gfa(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gfa")).current_dir(dir).args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn plan_prints_table_and_writes_manifest_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "small.toml", SMALL);
    let o = gfa(dir.path(), &["plan", "small.toml"]);
    let (out, errs) = text(&o);
    assert!(o.status.success(), "{out}\n{errs}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("#  run_id"), "{out}");
    assert!(lines[0].contains("regularizer.lambda") && lines[0].contains("est. cost"), "{out}");
    assert!(lines[1].starts_with("1 ") && lines[8].starts_with("8 "), "{out}");
    assert!(out.contains("8 runs of experiment `small`"), "{out}");

    let exp = dir.path().join("results/small");
    let manifest = fs::read_to_string(exp.join("manifest.csv")).unwrap();
    let mut rows = manifest.lines();
    assert!(rows.next().unwrap().starts_with("schema_version,experiment,index,run_id,seed,"));
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), 8);
    for r in &rows {
        let id = r.split(',').nth(3).unwrap();
        assert!(out.contains(id), "table lacks {id}");
        let cfg = fs::read_to_string(exp.join(id).join("config.toml")).unwrap();
        assert!(cfg.contains(&format!("run_id = \"{id}\"")), "{cfg}");
        // The snapshot parses back and holds the filled-in defaults.
        let t: toml::Table = toml::from_str(&cfg).unwrap();
        assert_eq!(t["model"]["num_classes"].as_integer(), Some(10));
        assert!(exp.join(id).join("overrides.toml").is_file());
    }

    // Planning again is idempotent; a changed snapshot is refused with exit code 2.
    assert!(gfa(dir.path(), &["plan", "small.toml"]).status.success());
    let id = rows[0].split(',').nth(3).unwrap();
    fs::write(exp.join(id).join("config.toml"), "changed = true\n").unwrap();
    let o = gfa(dir.path(), &["plan", "small.toml"]);
    let (_, errs) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(errs.contains("different configuration") && errs.contains(id), "{errs}");
}

#[test]
fn plan_with_override_and_slurm() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "small.toml", SMALL);
    let o = gfa(
        dir.path(),
        &["plan", "small.toml", "--set", "seeds=[5]", "--results", "out", "--emit", "slurm"],
    );
    let (out, errs) = text(&o);
    assert!(o.status.success(), "{out}\n{errs}");
    assert!(out.contains("4 runs"), "{out}");
    let script = fs::read_to_string(dir.path().join("out/small/slurm.sh")).unwrap();
    assert!(script.contains("#SBATCH --array=1-4"), "{script}");
    assert!(
        script.contains("gfa run small.toml --results out --quiet --set 'seeds=[5]' --only"),
        "{script}"
    );
    let o = gfa(dir.path(), &["plan", "small.toml", "--emit", "slurm", "--tasks", "3"]);
    assert!(o.status.success());
    let script = fs::read_to_string(dir.path().join("results/small/slurm.sh")).unwrap();
    assert!(
        script.contains("#SBATCH --array=1-3")
            && script.contains("--shard \"${SLURM_ARRAY_TASK_ID}/3\""),
        "{script}"
    );
}

#[test]
fn config_errors_exit_2_with_location() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.toml", &SMALL.replace("width = 0.25", "widht = 0.25"));
    let o = gfa(dir.path(), &["plan", "bad.toml"]);
    let (_, errs) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    let line = SMALL.lines().position(|l| l.starts_with("width")).unwrap() + 1;
    assert!(errs.starts_with(&format!("error: bad.toml:{line}: `base.model.widht`")), "{errs}");
    assert!(errs.trim_end().ends_with("did you mean `width`?"), "{errs}");
    assert!(!dir.path().join("results").exists(), "nothing is written for a bad file");
    // Bad flags are clap errors (exit 2), bad device too.
    let o = gfa(dir.path(), &["--device", "tpu", "plan", "bad.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("unknown device 'tpu'"));
}

/// A finite-difference step of zero or NaN, or the option on a method without a regularizer,
/// stops `gfa train` before anything is written.
#[test]
fn train_refuses_a_bad_finite_difference_step_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["--device", "cpu", "train", "--synthetic", "--out", "m"];
    for (extra, want) in [
        (
            &["--method", "gfa", "--gradient", "finite_difference", "--fd-step", "0"][..],
            "regularizer.fd_step must be a number in (0, 1)",
        ),
        (
            &["--method", "gnr", "--fd-step", "NaN"][..],
            "regularizer.fd_step must be a number in (0, 1)",
        ),
        (&["--method", "pgd_at", "--gradient", "finite_difference"][..], "has no regularizer"),
    ] {
        let o = gfa(dir.path(), &[&base[..], extra].concat());
        let errs = text(&o).1;
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {errs}");
        assert!(errs.contains(want), "{extra:?}: {errs}");
        assert!(!dir.path().join("m").exists(), "{extra:?}: nothing is written");
    }
}

#[test]
fn missing_pieces_say_so() {
    let dir = tempfile::tempdir().unwrap();
    // A model command without a model says what to give.
    let o = gfa(dir.path(), &["landscape", "--synthetic"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("give --checkpoint DIR or --weights FILE"), "{}", text(&o).1);
    // `data fetch` refuses a non-empty destination before any download.
    write(dir.path(), "keep.txt", "x");
    let o = gfa(dir.path(), &["data", "fetch", "--dir", "."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("fetching CIFAR-10 into ."), "{}", text(&o).1);
    let o = gfa(dir.path(), &["list", "methods"]);
    assert!(o.status.success());
    assert!(text(&o).0.lines().any(|l| l == "gfa_pgd_at"));
}

/// `gfa train` from flags, then `gfa-value` and `eval` on its checkpoint.
#[test]
fn train_then_gfa_value_and_eval_from_flags() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--device", "cpu"];
        all.extend_from_slice(args);
        let o = gfa(dir.path(), &all);
        let (out, errs) = text(&o);
        assert!(o.status.success(), "{args:?}\n{out}\n{errs}");
        out
    };
    let data = ["--synthetic", "--n-train", "128", "--n-test", "32"];
    let mut args = vec!["train", "--width", "0.125", "--method", "gfa", "--lambda", "0.3"];
    args.extend(["--epochs", "2", "--batch-size", "64", "--out", "m", "--seed", "3"]);
    args.extend(data);
    run(&args);
    let rows: Vec<gfa_exp::records::TrainRow> =
        gfa_exp::records::read_rows(&dir.path().join("m/train.csv")).unwrap();
    assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![1, 2]);
    assert!(
        rows.iter().all(|r| r.method == "gfa" && r.lambda == Some(0.3) && r.train_reg.is_some())
    );
    // A second train into the same folder needs --resume; with it, nothing is retrained.
    let o = gfa(dir.path(), &args);
    assert!(!o.status.success() && text(&o).1.contains("--resume"), "{}", text(&o).1);
    args.push("--resume");
    run(&args);
    let again: Vec<gfa_exp::records::TrainRow> =
        gfa_exp::records::read_rows(&dir.path().join("m/train.csv")).unwrap();
    assert_eq!(
        again.iter().map(|r| r.train_loss).collect::<Vec<_>>(),
        rows.iter().map(|r| r.train_loss).collect::<Vec<_>>()
    );

    let out = run(&["gfa-value", "--checkpoint", "m", "--n", "32", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let taps: Vec<&str> =
        v.as_array().unwrap().iter().map(|t| t["tap"].as_str().unwrap()).collect();
    assert_eq!(taps[0], "input");
    assert!(v.as_array().unwrap().iter().all(|t| t["n"] == 32));

    let out = run(&[
        "eval",
        "--checkpoint",
        "m",
        "--attacks",
        "fgsm,pgd",
        "--eps",
        "2/255,8/255",
        "--n",
        "32",
        "--csv",
        "e.csv",
    ]);
    assert!(out.lines().next().unwrap().starts_with("attack"), "{out}");
    run(&[
        "eval",
        "--checkpoint",
        "m",
        "--attacks",
        "fgsm",
        "--eps",
        "8/255",
        "--n",
        "32",
        "--csv",
        "e.csv",
    ]);
    let rows: Vec<gfa_exp::records::EvalRow> =
        gfa_exp::records::read_rows(&dir.path().join("e.csv")).unwrap();
    // 2 attacks × 2 eps × 2 modes, then 1 × 1 × 2 appended.
    assert_eq!(rows.len(), 8 + 2);
    assert!(rows.iter().all(|r| r.n == 32 && r.method == "gfa"));
    // Landscape: 5 × 5 over ±1/255; along the radial (gradient-sign) direction the loss rises
    // on one side of x and falls on the other (first order), and `gfa plot` draws it.
    run(&["landscape", "--checkpoint", "m", "--n", "32", "--steps", "5", "--radius", "1/255"]);
    let land: Vec<gfa_exp::records::LandscapeRow> =
        gfa_exp::records::read_rows(&dir.path().join("m/landscape.csv")).unwrap();
    assert_eq!(land.len(), 25);
    let at = |a: f64, b: f64| {
        land.iter().find(|r| (r.alpha - a).abs() < 1e-9 && (r.beta - b).abs() < 1e-9).unwrap().loss
    };
    let r = 1.0 / 255.0;
    assert!(at(r, 0.0) > at(0.0, 0.0) && at(0.0, 0.0) > at(-r, 0.0), "{land:?}");
    fs::create_dir_all(dir.path().join("p")).unwrap();
    for f in ["train.csv", "landscape.csv"] {
        fs::copy(dir.path().join("m").join(f), dir.path().join("p").join(f)).unwrap();
    }
    let out = run(&["plot", "p", "--format", "svg"]);
    assert!(out.contains("f2_landscape"), "{out}");
    // A typo in an attack kind is named, with a suggestion.
    let o = gfa(dir.path(), &["eval", "--checkpoint", "m", "--attacks", "pdg", "--synthetic"]);
    assert!(!o.status.success() && text(&o).1.contains("did you mean `pgd`"), "{}", text(&o).1);
}

/// Every committed experiment file plans without error (typos in keys, attack settings or eps
/// strings in `experiments/*.toml` fail here, not hours into a run).
#[test]
fn committed_experiments_plan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let tmp = tempfile::tempdir().unwrap();
    let mut planned = 0;
    for entry in fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let results = tmp.path().join("results");
        let o = gfa(
            tmp.path(),
            &["plan", path.to_str().unwrap(), "--results", results.to_str().unwrap()],
        );
        let (out, err) = text(&o);
        assert!(o.status.success(), "{}: {err}", path.display());
        assert!(out.contains("runs of experiment"), "{}: {out}", path.display());
        planned += 1;
    }
    assert!(planned >= 4, "expected smoke, quick, paper and ablation; planned {planned}");
}
