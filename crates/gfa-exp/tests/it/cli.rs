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
    assert!(lines[0].contains("method.lambda") && lines[0].contains("est. cost"), "{out}");
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

/// The Slurm script of a grid with `[slurm]` settings (one overridden by its flag), `--set`,
/// `--device` and relative paths: everything absolute, resources as asked, progress lines (no
/// --quiet), logs by job and task id; run as written from another folder with gfa not on PATH.
#[test]
fn plan_emits_a_slurm_script_that_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let slurm = "\n[slurm]\npartition = \"long\"\naccount = \"lab\"\nmem = \"4G\"\n\
                 cpus_per_task = 1\nextra = [\"--qos=high\"]\n";
    write(&root, "small.toml", &format!("{SMALL}{slurm}"));
    let o = gfa(
        &root,
        &[
            "--device",
            "cpu",
            "plan",
            "small.toml",
            "--set",
            "seeds=[5]",
            "--results",
            "out",
            "--emit",
            "slurm",
            "--slurm-partition",
            "short",
        ],
    );
    let (out, errs) = text(&o);
    assert!(o.status.success(), "{out}\n{errs}");
    assert!(out.contains("4 runs"), "{out}");
    let exp = root.join("out/small");
    let script = fs::read_to_string(exp.join("slurm.sh")).unwrap();
    let sbatch: Vec<&str> = script.lines().filter(|l| l.starts_with("#SBATCH")).collect();
    let exe = fs::canonicalize(env!("CARGO_BIN_EXE_gfa")).unwrap();
    let time = sbatch.iter().find(|l| l.starts_with("#SBATCH --time=")).expect("a time limit");
    assert_eq!(
        sbatch.iter().filter(|l| !l.starts_with("#SBATCH --time=")).copied().collect::<Vec<_>>(),
        [
            "#SBATCH --job-name=gfa-small".to_string(),
            "#SBATCH --array=1-4".into(),
            format!("#SBATCH --output={}/slurm-logs/%x-%A_%a.log", exp.display()),
            "#SBATCH --cpus-per-task=1".into(),
            "#SBATCH --mem=4G".into(),
            "#SBATCH --partition=short".into(),
            "#SBATCH --account=lab".into(),
            "#SBATCH --qos=high".into(),
        ],
        "{script}"
    );
    // The task waits for a run another submission holds as long as it may run.
    let limit: Vec<u64> =
        time["#SBATCH --time=".len()..].split(':').map(|x| x.parse().unwrap()).collect();
    let secs = limit[0] * 3600 + limit[1] * 60 + limit[2];
    assert!(secs >= 600, "{time}");
    assert!(script.contains(&format!("GFA=\"${{GFA_BIN:-{}}}\"", exe.display())), "{script}");
    let run = format!(
        "exec \"$GFA\" --device cpu run {}/small.toml --results {}/out --set 'seeds=[5]' \
         --wait-locked {secs} --only \"${{IDS[$((SLURM_ARRAY_TASK_ID - 1))]}}\"",
        root.display(),
        root.display()
    );
    assert!(script.contains(&run), "{script}");
    assert!(!script.contains("--quiet"), "{script}");
    assert!(exp.join("slurm-logs").is_dir());

    // As Slurm runs task 2: from another folder, with a PATH that has no gfa.
    let elsewhere = root.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let o = std::process::Command::new("bash")
        .arg(exp.join("slurm.sh"))
        .current_dir(&elsewhere)
        .env("PATH", "/usr/bin:/bin")
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_CPUS_PER_TASK", "1")
        .output()
        .unwrap();
    let (out, errs) = text(&o);
    assert!(o.status.success(), "{out}\n{errs}");
    assert!(out.contains("1 runs done"), "{out}");
    assert!(out.contains("1 threads)"), "SLURM_CPUS_PER_TASK sets the threads: {out}");
    assert!(errs.contains("train epoch 1/1"), "progress lines in the task log: {errs}");
    let manifest = fs::read_to_string(exp.join("manifest.csv")).unwrap();
    let second = manifest.lines().nth(2).unwrap().split(',').nth(3).unwrap();
    assert_eq!(fs::read_to_string(exp.join(second).join("status")).unwrap(), "done\n");

    // GPUs per task: --gres and the task's GPUs as --devices; a shard per task.
    let o =
        gfa(&root, &["plan", "small.toml", "--emit", "slurm", "--tasks", "3", "--slurm-gpus", "2"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let script = fs::read_to_string(root.join("results/small/slurm.sh")).unwrap();
    assert!(
        script.contains("#SBATCH --array=1-3")
            && script.contains("#SBATCH --gres=gpu:2")
            && script.contains("--devices \"$DEVICES\"")
            && script.contains("--shard \"${SLURM_ARRAY_TASK_ID}/3\"")
            && !script.contains("--device cpu"),
        "{script}"
    );
    // A bad [slurm] value is an error at its key.
    write(&root, "bad.toml", &format!("{SMALL}\n[slurm]\ntime = \"soon\"\n"));
    let o = gfa(&root, &["plan", "bad.toml", "--emit", "slurm"]);
    let (_, errs) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{errs}");
    assert!(errs.contains("slurm.time") && errs.contains("HH:MM:SS"), "{errs}");
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

/// A finite-difference step of zero or NaN, or the option on a method without a penalty,
/// stops `gfa train` before anything is written.
#[test]
fn train_refuses_a_bad_finite_difference_step_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["--device", "cpu", "train", "--synthetic", "--out", "m"];
    let fd = ["--gradient", "finite_difference"];
    for (extra, want) in [
        (
            &["--method", "gfa", "--lambda", "0.3", fd[0], fd[1], "--fd-step", "0"][..],
            "`method.fd_step`: must be a number in (0, 1)",
        ),
        (
            &["--method", "gnr", "--lambda", "1", "--fd-step", "NaN"][..],
            "`method.fd_step`: must be a number in (0, 1)",
        ),
        (
            &["--method", "pgd_at", fd[0], fd[1]][..],
            "--gradient: method `pgd_at` has no option `gradient`",
        ),
    ] {
        let o = gfa(dir.path(), &[&base[..], extra].concat());
        let errs = text(&o).1;
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {errs}");
        assert!(errs.contains(want), "{extra:?}: {errs}");
        assert!(!dir.path().join("m").exists(), "{extra:?}: nothing is written");
    }
    // The flags reach the method's options, `--layers` included (unwritten at its default).
    let ok = ["--method", "gfa", "--lambda", "0.3", "--layers", "first", fd[0], fd[1]];
    let tiny = ["--n-train", "16", "--epochs", "1", "--batch-size", "8", "--width", "0.0625"];
    let o = gfa(dir.path(), &[&base[..], &ok, &["--fd-step", "2e-3"], &tiny].concat());
    assert!(o.status.success(), "{}", text(&o).1);
    let rows: Vec<gfa_exp::results::records::TrainRow> =
        gfa_exp::results::records::read_rows(&dir.path().join("m/train.csv")).unwrap();
    let params: serde_json::Value = serde_json::from_str(&rows[0].method_params).unwrap();
    assert_eq!(params["gradient"], "finite_difference", "{params}");
    assert_eq!((params["fd_step"].as_f64(), &params["layers"]), (Some(2e-3), &"first".into()));
    assert!(rows[0].terms().unwrap()["gfa"] > 0.0);
}

#[test]
fn missing_pieces_say_so() {
    let dir = tempfile::tempdir().unwrap();
    // A model command without a model says what to give.
    let o = gfa(dir.path(), &["landscape", "--synthetic"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("give --checkpoint DIR, --weights FILE or --torchscript FILE"),
        "{}",
        text(&o).1
    );
    // `data fetch` refuses a non-empty destination before any download.
    write(dir.path(), "keep.txt", "x");
    let o = gfa(dir.path(), &["data", "fetch", "--dir", "."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("fetching CIFAR-10 into ."), "{}", text(&o).1);
    // The method list is the registry's: every kind, its cost and an example value.
    let o = gfa(dir.path(), &["list", "methods"]);
    assert!(o.status.success());
    let out = text(&o).0;
    for m in gfa_core::Method::list() {
        assert!(out.lines().any(|l| l.starts_with(m.kind) && l.contains(m.summary)), "{out}");
    }
    assert!(out.contains("e.g. { kind = \"gfa\", ") && out.contains("lambda = 0.3, "), "{out}");
}

/// `--method` takes the registry's kinds; `--lambda`/`--layers` go to methods that have them.
#[test]
fn method_flags_are_checked_against_the_method() {
    let dir = tempfile::tempdir().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--synthetic", "--n-train", "16", "--out", "m"];
        args.extend_from_slice(extra);
        let o = gfa(dir.path(), &args);
        assert!(!o.status.success());
        text(&o).1
    };
    let e = train(&["--method", "pgd_at", "--lambda", "0.3"]);
    assert!(e.contains("--lambda: method `pgd_at` has no option `lambda`"), "{e}");
    assert!(e.contains("eps, random_start, step, steps"), "{e}");
    let e = train(&["--method", "gfa"]);
    assert!(e.contains("--method gfa needs --lambda (e.g. --lambda 0.3)"), "{e}");
    let e = train(&["--method", "gfa+pgd"]);
    assert!(e.contains("possible values") && e.contains("gfa_pgd_at"), "{e}");
    assert!(!dir.path().join("m").exists(), "nothing is written before the flags are right");
}

/// A file of the old form (methods zipped with a `[regularizer]`) is refused with its method
/// keys in the current form.
#[test]
fn old_experiment_files_show_the_new_form() {
    let dir = tempfile::tempdir().unwrap();
    let old = r#"
[base.train]
method = { kind = "standard" }
[base.regularizer]
kind = "none"
[[zip]]
"train.method" = [{ kind = "standard" }, { kind = "gfa" }]
"regularizer.kind" = ["none", "gfa"]
"regularizer.lambda" = [0.0, 0.3]
"#;
    write(dir.path(), "old.toml", old);
    let o = gfa(dir.path(), &["plan", "old.toml"]);
    let e = text(&o).1;
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("old.toml:4: `base.regularizer`: the `[regularizer]` section"), "{e}");
    assert!(e.contains("[grid]\nmethod = ["), "{e}");
    assert!(
        e.contains("method = [\n  { kind = \"standard\" },\n  { kind = \"gfa\", lambda = 0.3 },"),
        "{e}"
    );
}

/// `gfa --version` names the build; rows written by the binary outside the repository still
/// carry the revision it was built from.
#[test]
fn version_and_rows_name_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let o = gfa(dir.path(), &["--version"]);
    let out = text(&o).0;
    assert!(
        out.starts_with("gfa 0.1.0 (git ")
            && out.contains("dirty: ")
            && out.contains("libtorch 2.11.0"),
        "{out}"
    );
    let o = gfa(
        dir.path(),
        &[
            "train",
            "--synthetic",
            "--n-train",
            "16",
            "--n-test",
            "8",
            "--epochs",
            "1",
            "--width",
            "0.0625",
            "--out",
            "m",
        ],
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let rows: Vec<gfa_exp::results::records::TrainRow> =
        gfa_exp::results::records::read_rows(&dir.path().join("m/train.csv")).unwrap();
    let meta = gfa_core::checkpoint::read_meta(&dir.path().join("m")).unwrap();
    assert_eq!(meta.build.git_rev, rows[0].git_rev);
    assert!(rows[0].libtorch.starts_with("2.11.0") && meta.build.libtorch == rows[0].libtorch);
    assert!(out.contains(&rows[0].git_rev));
    // Built from this checkout (the test runs from it), the revision is its HEAD.
    if let Some(head) = head {
        assert_eq!(rows[0].git_rev, head);
    }
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
    let out = run(&args);
    assert!(out.starts_with("device: cpu (") && out.contains("code path"), "{out}");
    let rows: Vec<gfa_exp::results::records::TrainRow> =
        gfa_exp::results::records::read_rows(&dir.path().join("m/train.csv")).unwrap();
    assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![1, 2]);
    assert!(rows.iter().all(|r| r.method == "gfa"
        && r.lambda == Some(0.3)
        && r.lambda_now == Some(0.3)
        && r.terms().unwrap()["gfa"] > 0.0));
    // A second train into the same folder needs --resume; with it, nothing is retrained.
    let o = gfa(dir.path(), &args);
    assert!(!o.status.success() && text(&o).1.contains("--resume"), "{}", text(&o).1);
    args.push("--resume");
    run(&args);
    let again: Vec<gfa_exp::results::records::TrainRow> =
        gfa_exp::results::records::read_rows(&dir.path().join("m/train.csv")).unwrap();
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
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("device: cpu ("), "{out}");
    assert!(lines.next().unwrap().starts_with("data: synthetic"), "{out}");
    assert!(lines.next().unwrap().starts_with("attack"), "{out}");
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
    let rows: Vec<gfa_exp::results::records::EvalRow> =
        gfa_exp::results::records::read_rows(&dir.path().join("e.csv")).unwrap();
    // 2 attacks × 2 eps × 2 modes, then 1 × 1 × 2 appended.
    assert_eq!(rows.len(), 8 + 2);
    assert!(rows.iter().all(|r| r.n == 32 && r.method == "gfa"));
    // Landscape: 5 × 5 over ±1/255; along the radial (gradient-sign) direction the loss rises
    // on one side of x and falls on the other (first order), and `gfa plot` draws it.
    run(&["landscape", "--checkpoint", "m", "--n", "32", "--steps", "5", "--radius", "1/255"]);
    let land: Vec<gfa_exp::results::records::LandscapeRow> =
        gfa_exp::results::records::read_rows(&dir.path().join("m/landscape.csv")).unwrap();
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

/// A committed fixture of gfa-core's tests.
fn core_fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gfa-core/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `gfa import` of a PyTorch checkpoint, then `gfa eval --weights` on it; a file without
/// normalization buffers needs `--normalize`, and a flag that contradicts the file's buffers is
/// refused.
#[test]
fn import_then_eval_weights_with_normalize() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        let o = gfa(dir.path(), args);
        let (out, errs) = text(&o);
        assert!(o.status.success(), "{args:?}\n{out}\n{errs}");
        out
    };
    let pt = core_fixture("import_preact_resnet18.pt");
    let out = ok(&[
        "import",
        &pt,
        "--model",
        "preact_resnet18",
        "--width",
        "0.0625",
        "--normalize",
        "cifar10",
        "-o",
        "p.safetensors",
    ]);
    assert!(out.contains("found under `state_dict`") && out.contains("module."), "{out}");
    let names: Vec<String> = tch::Tensor::read_safetensors(dir.path().join("p.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"normalize.mean".to_string()));
    assert!(names.iter().all(|n| !n.starts_with("module.")));
    let eval = ["eval", "--device", "cpu", "--synthetic", "--n", "8", "--attacks", "fgsm"];
    fn with<'a>(eval: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        eval.iter().chain(extra).copied().collect()
    }
    ok(&with(
        &eval,
        &["--weights", "p.safetensors", "--model", "preact_resnet18", "--width", "0.0625"],
    ));
    let o = gfa(
        dir.path(),
        &with(
            &eval,
            &[
                "--weights",
                "p.safetensors",
                "--model",
                "preact_resnet18",
                "--width",
                "0.0625",
                "--normalize",
                "none",
            ],
        ),
    );
    assert!(!o.status.success() && text(&o).1.contains("drop --normalize"), "{}", text(&o).1);

    // A [0, 1] model whose file has no normalization buffers (the PyTorch twin's state dict).
    let sd = core_fixture("models_resnet18_state.safetensors");
    let plain = ["--weights", sd.as_str(), "--model", "resnet18", "--width", "0.0625"];
    let o = gfa(dir.path(), &with(&eval, &plain));
    assert!(!o.status.success() && text(&o).1.contains("--normalize none"), "{}", text(&o).1);
    let none = ok(&with(&eval, &[&plain[..], &["--normalize", "none"]].concat()));
    // `none` is the identity normalization: the same numbers as mean 0, std 1.
    let identity = ok(&with(&eval, &[&plain[..], &["--normalize", "0,1"]].concat()));
    assert_eq!(none, identity);
    assert!(none.lines().nth(3).unwrap().starts_with("fgsm"), "{none}");

    // A legacy (pre-1.6) file imports to the same weights as its zip-format twin.
    let import = |file: &str, out: &str| {
        let f = core_fixture(file);
        let args = ["import", &f, "--model", "resnet18", "--width", "0.0625", "--normalize"];
        gfa(dir.path(), &[&args[..], &["none", "-o", out]].concat())
    };
    assert!(import("import_resnet18.pt", "zip.safetensors").status.success());
    let o = import("legacy_resnet18.pt", "legacy.safetensors");
    assert!(o.status.success(), "{}", text(&o).1);
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    assert_eq!(read("zip.safetensors"), read("legacy.safetensors"));
    // Bad input is named, and nothing is written: a truncated legacy file, a TorchScript module.
    for (file, says) in [
        ("legacy_bad_truncated.pt", "is truncated"),
        ("legacy_bad_float64.pt", "torch.DoubleStorage"),
        ("ts_resnet18_traced.pt", "gfa eval --torchscript"),
    ] {
        let o = import(file, "x.safetensors");
        assert!(!o.status.success() && text(&o).1.contains(says), "{file}: {}", text(&o).1);
        assert!(!dir.path().join("x.safetensors").exists(), "{file}");
    }
}

/// The paper's MLP setting end to end on a synthetic Fashion-MNIST copy written as IDX files:
/// train reads them, the model takes 1×28×28 inputs and learns, and eval finds the run's data.
#[test]
fn mlp_trains_on_a_synthetic_fashion_mnist_copy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fm");
    gfa_data::fashion::write_synthetic(&data, 400, 100, 0).unwrap();
    let run = |args: &[&str]| {
        let o = gfa(dir.path(), args);
        let (out, errs) = text(&o);
        assert!(o.status.success(), "{args:?}\n{out}\n{errs}");
        out
    };
    run(&[
        "--device",
        "cpu",
        "train",
        "--model",
        "mlp",
        "--width",
        "0.125",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "5",
        "--batch-size",
        "50",
        "--dataset",
        "fashion-mnist",
        "--data",
        "fm",
        "--out",
        "m",
        "--seed",
        "1",
    ]);
    let rows: Vec<gfa_exp::results::records::TrainRow> =
        gfa_exp::results::records::read_rows(&dir.path().join("m/train.csv")).unwrap();
    assert_eq!(rows.len(), 5);
    // Chance is 0.1; the classes are separable gratings (gfa-data's synthetic set), so a
    // working reader and model reach far above it in five epochs (random flips make some
    // orientations look alike, which keeps it well below 1).
    let acc = rows.last().unwrap().test_acc.unwrap();
    assert!(acc > 0.5, "test accuracy {acc} after 5 epochs: {rows:?}");
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("m/checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(meta["model"]["input"], serde_json::json!([1, 28, 28]));
    // 784 inputs: the first layer's weight is [128, 784].
    let w = tch::Tensor::read_safetensors(dir.path().join("m/final.safetensors")).unwrap();
    let fc1 = &w.iter().find(|(n, _)| n == "fc1.weight").unwrap().1;
    assert_eq!(fc1.size(), [128, 784]);
    let out =
        run(&["--device", "cpu", "eval", "--checkpoint", "m", "--attacks", "fgsm", "--n", "50"]);
    assert!(out.lines().nth(3).unwrap().starts_with("fgsm"), "{out}");
    // A `model.input` that contradicts the data is an error, not silently replaced.
    let bad = "[data]\nsource = \"fashion_mnist\"\ndir = \"fm\"\n[model]\narch = \"mlp\"\n\
               input = [3, 28, 28]\n[train]\nepochs = 1\n";
    fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let o = gfa(dir.path(), &["--device", "cpu", "train", "--config", "bad.toml", "--out", "b"]);
    assert!(
        !o.status.success() && text(&o).1.contains("model.input = [3, 28, 28]"),
        "{}",
        text(&o).1
    );
    // A CIFAR-shaped model is not evaluated on grey images.
    run(&[
        "--device",
        "cpu",
        "train",
        "--width",
        "0.125",
        "--epochs",
        "1",
        "--synthetic",
        "--n-train",
        "64",
        "--n-test",
        "16",
        "--out",
        "c",
    ]);
    let o = gfa(
        dir.path(),
        &[
            "--device",
            "cpu",
            "eval",
            "--checkpoint",
            "c",
            "--other-data",
            "--dataset",
            "fashion-mnist",
            "--data",
            "fm",
            "--n",
            "8",
            "--attacks",
            "fgsm",
        ],
    );
    assert!(!o.status.success() && text(&o).1.contains("[1, 28, 28]"), "{}", text(&o).1);
}

/// `--device auto` on a machine with an NVIDIA driver but no working CUDA backend runs on the
/// CPU, says so in its first line, and warns naming `gfa doctor` (an `nvidia-smi` on PATH is
/// what makes it look like such a machine).
#[test]
fn auto_device_on_a_driver_without_cuda_warns() {
    if gfa_core::device::cuda_available() {
        return; // the GPU is used: nothing to warn about (see tests/it/cuda.rs)
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let smi = bin.join("nvidia-smi");
    fs::write(&smi, "#!/bin/sh\nexit 9\n").unwrap();
    fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let with_driver = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_gfa"))
            .current_dir(dir.path())
            .env("PATH", &path)
            .args(args)
            .output()
            .unwrap();
        let (out, errs) = text(&o);
        assert!(o.status.success(), "{args:?}\n{out}\n{errs}");
        (out, errs)
    };
    let train = ["train", "--synthetic", "--n-train", "32", "--n-test", "16", "--width", "0.125"];
    let (out, errs) = with_driver(&[&train[..], &["--epochs", "1", "--out", "a"]].concat());
    assert!(out.starts_with("device: cpu ("), "{out}");
    assert!(errs.contains("NVIDIA driver") && errs.contains("gfa doctor"), "{errs}");
    // --device cpu is a choice: no warning.
    let (out, errs) =
        with_driver(&[&["--device", "cpu"][..], &train, &["--epochs", "1", "--out", "b"]].concat());
    assert!(out.starts_with("device: cpu (") && !errs.contains("warning"), "{errs}");
    // gfa doctor sees the driver and says why CUDA is not used.
    let (out, _) = with_driver(&["doctor"]);
    assert!(out.contains("NVIDIA driver present") && out.contains("CUDA backend"), "{out}");
}

/// `gfa plan` gives each run's and the grid's hours on the device it would use;
/// `--require-cuda` refuses a CPU with exit code 3 and says what to do.
#[test]
fn plan_estimates_hours_and_refuses_a_cpu_for_a_gpu_grid() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "small.toml", SMALL);
    let o = gfa(dir.path(), &["plan", "small.toml", "--require-cuda"]);
    let (out, errs) = text(&o);
    let dev = if gfa_core::device::cuda_available() { "cuda:0" } else { "cpu" };
    assert!(out.lines().next().unwrap().contains(&format!("est. h ({dev})")), "{out}");
    assert!(out.contains(&format!(" h on {dev}")) && out.contains("attack gradient"), "{out}");
    assert!(out.contains("training step") && out.contains("per image"), "{out}");
    if dev == "cpu" {
        assert_eq!(o.status.code(), Some(3), "{out}\n{errs}");
        assert!(errs.contains("refusing") && errs.contains("gfa doctor"), "{errs}");
        assert!(errs.contains("DEVICE=cpu make reproduce"), "{errs}");
        assert!(!dir.path().join("results").exists(), "a refused plan writes nothing");
        // Without the flag the same plan is fine, and with --jobs it predicts the wall time.
        let o = gfa(dir.path(), &["--device", "cpu", "plan", "small.toml", "--jobs", "2"]);
        let (out, errs) = text(&o);
        assert!(o.status.success(), "{errs}");
        assert!(
            out.contains("predicted wall time with 2 workers (gfa run --jobs 2): ")
                && out.contains("with the longest runs first (")
                && out.contains("in the grid's order)"),
            "{out}"
        );
        // It says what it assumes of the models it has not trained.
        assert!(out.contains("the evaluation's cost assumes models classify 50 %"), "{out}");
    } else {
        assert!(o.status.success(), "{errs}");
    }
}

/// `gfa eval --torchscript` on a traced ResNet-18 prints the numbers of `gfa eval --weights` on
/// the same weights imported; a state dict given to --torchscript and `gfa gfa-value` on a
/// module are refused, naming the way that works.
#[test]
fn eval_torchscript_equals_eval_of_the_imported_weights() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = gfa(dir.path(), args);
        let (out, errs) = text(&o);
        (o.status.success(), out, errs)
    };
    let pt = core_fixture("import_resnet18.pt");
    let import = ["import", &pt, "--model", "resnet18", "--width", "0.0625", "--normalize"];
    let (ok, _, errs) = run(&[&import[..], &["none", "-o", "r.safetensors"]].concat());
    assert!(ok, "{errs}");
    let eval = ["eval", "--device", "cpu", "--synthetic", "--n", "8", "--attacks", "fgsm,apgd-ce"];
    let ts = core_fixture("ts_resnet18_traced.pt");
    let (ok, from_ts, errs) = run(&[&eval[..], &["--torchscript", &ts]].concat());
    assert!(ok, "{errs}");
    assert!(errs.contains("TorchScript module") && errs.contains("10 classes"), "{errs}");
    let weights = ["--weights", "r.safetensors", "--model", "resnet18", "--width", "0.0625"];
    let (ok, from_weights, errs) = run(&[&eval[..], &weights[..]].concat());
    assert!(ok, "{errs}");
    // The table after its device line: attack, preset, eps, mode, n, clean and robust accuracy.
    let table = |s: &str| s.lines().skip(1).map(String::from).collect::<Vec<_>>();
    assert_eq!(table(&from_ts), table(&from_weights));
    assert!(from_ts.contains("apgd-ce"), "{from_ts}");

    let (ok, _, errs) = run(&[&eval[..], &["--torchscript", &pt]].concat());
    assert!(
        !ok && errs.contains("not a TorchScript module") && errs.contains("gfa import"),
        "{errs}"
    );
    let (ok, _, errs) = run(&["gfa-value", "--synthetic", "--torchscript", &ts]);
    assert!(!ok && errs.contains("opaque") && errs.contains("--weights"), "{errs}");
}
