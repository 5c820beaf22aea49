//! Bad input, as a new user would give it: TOML grids, data folders, checkpoints, weights files
//! and flags. Each case runs the `gfa` binary and checks that it refuses with exit status 2,
//! that its message (on stderr) names the file, key or flag at fault and the fix, and that the
//! folder it ran in is byte for byte what it was: a refused command writes nothing.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::write;

pub(super) fn gfa(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gfa")).current_dir(dir).args(args).output().unwrap()
}

/// Every entry under `root`: folders as `None`, files with their bytes.
pub(super) fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                stack.push(p);
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Run `gfa args` in `dir` and check the refusal: exit status 2, every one of `needles` in
/// stderr, no error on stdout, the folder unchanged. The error says which check failed.
fn check_refusal(dir: &Path, args: &[&str], needles: &[&str]) -> Result<(), String> {
    let before = snapshot(dir);
    let o = gfa(dir, args);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    if o.status.code() != Some(2) {
        return Err(format!("gfa {args:?} exited with {:?}, not 2:\n{out}\n{err}", o.status));
    }
    if let Some(n) = needles.iter().find(|n| !err.contains(**n)) {
        return Err(format!("gfa {args:?}: stderr lacks {n:?}:\n{err}"));
    }
    if out.contains("error") {
        return Err(format!("gfa {args:?}: an error on stdout:\n{out}"));
    }
    let after = snapshot(dir);
    let changed: Vec<_> =
        after.keys().chain(before.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
    if !changed.is_empty() {
        return Err(format!("gfa {args:?} refused but changed {changed:?}"));
    }
    Ok(())
}

/// One refusal to check: the command line and what stderr must say.
pub(super) type Case<'a> = (Vec<&'a str>, Vec<&'a str>);

/// Check every case, each in its own copy of the folder `fixture`, four processes at a time
/// (most of a refusal's time is the process starting); all failures are reported together.
pub(super) fn refused_all(fixture: &Path, cases: &[Case<'_>]) {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((args, needles)) = cases.get(i) else { break };
                    let dir = fixture.with_file_name(format!("case{i}"));
                    copy_tree(fixture, &dir);
                    if let Err(e) = check_refusal(&dir, args, needles) {
                        failures.lock().unwrap().push(e);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    println!("battery: {} cases run, {} failed", cases.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A correct grid: synthetic data, an MLP, GFA, one attack. Each TOML case edits one line.
pub(super) const GOOD: &str = r#"experiment = "good"

[base]
data = { source = "synthetic", n_train = 64, n_test = 64 }
method = { kind = "gfa", lambda = 0.5 }

[base.model]
arch = "mlp"

[base.train]
epochs = 1

[base.eval]
n = 32

[[attacks]]
kind = "fgsm"
eps = ["8/255"]
"#;

/// `GOOD` with `from` replaced by `to` (which must occur), written as `name.toml`.
fn variant(dir: &Path, name: &str, from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{name}: {from:?} is not in the grid");
    let file = format!("{name}.toml");
    write(dir, &file, &GOOD.replacen(from, to, 1));
    file
}

/// (case, replaced text, replacement, what stderr must say: file:line, key, fix)
const TOML_CASES: &[(&str, &str, &str, &[&str])] = &[
    ("epochs0", "epochs = 1", "epochs = 0", &[":11:", "`base.train.epochs`", "at least 1"]),
    ("lambda_neg", "lambda = 0.5", "lambda = -1.0", &[":5:", "`base.method.lambda`", "≥ 0"]),
    ("lambda_nan", "lambda = 0.5", "lambda = nan", &[":5:", "`base.method.lambda`", "finite"]),
    (
        "batch0",
        "epochs = 1",
        "epochs = 1\nbatch_size = 0",
        &[":12:", "`base.train.batch_size`", "at least 1"],
    ),
    (
        "eval_batch0_train",
        "epochs = 1",
        "epochs = 1\neval_batch_size = 0",
        &[":12:", "`base.train.eval_batch_size`", "at least 1"],
    ),
    (
        "eval_batch0",
        "n = 32",
        "n = 32\nbatch_size = 0",
        &[":15:", "`base.eval.batch_size`", "at least 1"],
    ),
    ("eval_n_large", "n = 32", "n = 20000", &[":14:", "`base.eval.n`", "1..=64"]),
    ("eval_n0", "n = 32", "n = 0", &[":14:", "`base.eval.n`", "at least 1"]),
    ("n_train0", "n_train = 64", "n_train = 0", &[":4:", "`base.data.n_train`", "valid range ≥ 1"]),
    (
        "n_test_cifar",
        r#"source = "synthetic", n_train = 64, n_test = 64"#,
        r#"source = "cifar10", n_test = 20000"#,
        &[":4:", "`base.data.n_test`", "1..=10000"],
    ),
    (
        "linf_eps_huge",
        r#"eps = ["8/255"]"#,
        "eps = [1e9]",
        &[":18:", "`attacks.0.eps.0`", "from 0 up to 1"],
    ),
    (
        "linf_eps_neg",
        r#"eps = ["8/255"]"#,
        r#"eps = ["-1"]"#,
        &[":18:", "`attacks.0.eps.0`", ">= 0"],
    ),
    (
        "linf_eps_neg_float",
        r#"eps = ["8/255"]"#,
        "eps = [-0.5]",
        &[":18:", "`attacks.0.eps.0`", "from 0 up to 1"],
    ),
    (
        "l2_eps_diameter",
        "kind = \"fgsm\"\neps = [\"8/255\"]",
        "kind = \"pgd\"\nnorm = \"l2\"\neps = [\"0.5\", 60.0]",
        &[":19:", "`attacks.0.eps.1`", "55.43"],
    ),
    ("empty", GOOD, "", &["describes no run", "add a [base] section"]),
    (
        "sectionless",
        GOOD,
        "experiment = \"x\"\nseeds = [1]\n",
        &[":1:", "describes no run", "[base]"],
    ),
    (
        "typo_key",
        "epochs = 1",
        "epoch = 1",
        &[":11:", "`base.train.epoch`", "did you mean `epochs`"],
    ),
    ("attack_kind", r#"kind = "fgsm""#, r#"kind = "pgdd""#, &[":17:", "did you mean `pgd`"]),
    (
        "method_kind",
        r#"kind = "gfa""#,
        r#"kind = "gfaa""#,
        &[":5:", "`base.method.kind`", "did you mean `gfa`"],
    ),
    (
        "lr_neg",
        "epochs = 1",
        "epochs = 1\noptimizer = { kind = \"sgd\", lr = -0.1 }",
        &[":12:", "`base.train.optimizer.lr`", "positive"],
    ),
    (
        "momentum",
        "epochs = 1",
        "epochs = 1\noptimizer = { kind = \"sgd\", lr = 0.1, momentum = 1.5 }",
        &[":12:", "`base.train.optimizer.momentum`", "[0, 1)"],
    ),
    ("width0", r#"arch = "mlp""#, "arch = \"mlp\"\nwidth = 0.0", &[":9:", "`base.model.width`"]),
    (
        "layers_empty",
        "lambda = 0.5",
        "lambda = 0.5, layers = []",
        &[":5:", "`base.method.layers`", "name at least one tap"],
    ),
    (
        "inner_eps",
        r#"kind = "gfa", lambda = 0.5"#,
        r#"kind = "pgd_at", eps = "2""#,
        &[":5:", "`base.method.eps`", "[0, 1]"],
    ),
    (
        "grid_axis_value",
        "[[attacks]]",
        "[grid]\n\"method.lambda\" = [0.1, -1.0]\n\n[[attacks]]",
        &[":17:", "grid.\"method.lambda\".1", "≥ 0"],
    ),
    (
        "seeds_empty",
        "experiment = \"good\"",
        "experiment = \"good\"\nseeds = []",
        &[":2:", "`seeds`"],
    ),
    ("bad_syntax", "epochs = 1", "epochs = ", &[":11:", "invalid TOML"]),
    (
        "binarize_dlr",
        "[[attacks]]",
        "[binarize]\nattack = { kind = \"apgd-dlr\" }\neps = \"8/255\"\n\n[[attacks]]",
        &[":17:", "`binarize.attack.kind`", "at least 3 classes", "apgd-ce"],
    ),
    (
        "binarize_eps0",
        "[[attacks]]",
        "[binarize]\nattack = { kind = \"pgd\" }\neps = \"0\"\n\n[[attacks]]",
        &[":18:", "`binarize.eps`", "eps > 0"],
    ),
    // `[indicators]` reads the traces of the attacks it names: one whose kind records none, one
    // the suite does not have, a zero count and a mistyped key are refused at their key.
    (
        "indicators_untraced",
        r#"eps = ["8/255"]"#,
        "eps = [\"8/255\"]\n\n[indicators]\nattacks = [\"fgsm\"]",
        &[":21:", "`indicators.attacks.0`", "records no trace", "pgd, apgd-ce"],
    ),
    (
        "indicators_unknown",
        r#"eps = ["8/255"]"#,
        "eps = [\"8/255\"]\n\n[indicators]\nattacks = [\"fgsmm\"]",
        &[":21:", "`indicators.attacks.0`", "no [[attacks]] entry", "did you mean `fgsm`"],
    ),
    (
        "indicators_n0",
        r#"eps = ["8/255"]"#,
        "eps = [\"8/255\"]\n\n[indicators]\nn = 0",
        &[":21:", "`indicators.n`", "at least 1"],
    ),
    (
        "indicators_typo",
        r#"eps = ["8/255"]"#,
        "eps = [\"8/255\"]\n\n[indicators]\nsample = 10",
        &[":21:", "`indicators.sample`", "did you mean `samples`"],
    ),
];

/// `gfa plan` and `gfa run` refuse each bad grid at its key, writing no results folder.
#[test]
fn bad_grids_are_refused_at_their_key() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("fixture");
    fs::create_dir(&dir).unwrap();
    write(&dir, "good.toml", GOOD);
    let mut cases: Vec<Case> = Vec::new();
    let files: Vec<String> =
        TOML_CASES.iter().map(|(name, from, to, _)| variant(&dir, name, from, to)).collect();
    for ((name, _, _, needles), file) in TOML_CASES.iter().zip(&files) {
        let mut needles = needles.to_vec();
        needles.push(file);
        cases.push((vec!["plan", file], needles.clone()));
        if ["epochs0", "eval_batch0", "linf_eps_huge", "empty", "indicators_untraced"]
            .contains(name)
        {
            cases.push((vec!["run", file, "--quiet"], needles));
        }
    }
    // A `--set` override is refused at the file's key, naming the override.
    cases.push((
        vec!["plan", "good.toml", "--set", "train.epochs=0"],
        vec!["good.toml:11", "--set train.epochs=0", "`base.train.epochs`", "at least 1"],
    ));
    cases.push((vec!["plan", "missing.toml"], vec!["missing.toml", "cannot read"]));
    // An unknown `--only` id is refused before anything is written (no manifest, no run
    // folder), and names the way to see the ids.
    cases.push((
        vec!["run", "good.toml", "--only", "deadbeef"],
        vec!["--only deadbeef", "gfa plan"],
    ));
    cases.push((vec!["run", "good.toml", "--shard", "3/2"], vec!["--shard", "e.g. --shard 2/4"]));
    refused_all(&dir, &cases);
}

/// A folder in CIFAR-10's binary layout with one record per file, labels `label`.
fn fake_cifar(dir: &Path, label: u8) {
    fs::create_dir_all(dir).unwrap();
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    fs::write(dir.join("batches.meta.txt"), names).unwrap();
    let mut record = vec![0u8; 3073];
    record[0] = label;
    for f in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"] {
        fs::write(dir.join(format!("{f}.bin")), &record).unwrap();
    }
    fs::write(dir.join("test_batch.bin"), &record).unwrap();
}

/// `gfa train` checks its flags, data and output folder before it writes: a refusal leaves no
/// `run.toml` and no new folder behind, and a refusal into a trained folder changes nothing in
/// it, so evaluating that folder afterwards gives the numbers it gave before.
#[test]
fn refused_training_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let d = &root.path().join("fixture");
    fs::create_dir(d).unwrap();
    let trained =
        gfa(d, &["train", "--model", "mlp", "--synthetic", "--epochs", "1", "--out", "m"]);
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    let eval = ["eval", "--checkpoint", "m", "--attacks", "fgsm", "--eps", "8/255", "--n", "64"];
    let first = gfa(d, &eval);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    fs::create_dir(d.join("empty")).unwrap();
    fake_cifar(&d.join("badlabel"), 200);
    fs::create_dir_all(d.join("dirbatch/data_batch_1.bin")).unwrap();
    write(d, "afile", "x");
    write(d, "run_epochs0.toml", "[model]\narch = \"mlp\"\n[train]\nepochs = 0\n");

    fn train<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["train", "--model", "mlp"][..], extra].concat()
    }
    let cases: &[(&[&str], &[&str])] = &[
        // Other data into a folder that holds a checkpoint (the run.toml stays the model's).
        (&["--data", "empty", "--out", "m"], &["m already holds a checkpoint", "--resume"]),
        (&["--synthetic", "--out", "m"], &["m already holds a checkpoint", "another --out"]),
        // --resume with another configuration.
        (
            &["--synthetic", "--lr", "0.5", "--out", "m", "--resume"],
            &["m/checkpoint.json", "different configuration", "drop --resume"],
        ),
        (&["--data", "empty", "--out", "new"], &["no CIFAR-10 data at empty", "gfa data fetch"]),
        (
            &["--data", "dirbatch", "--out", "new"],
            &["dirbatch/data_batch_1.bin is a folder", "move that entry away"],
        ),
        (&["--data", "badlabel", "--out", "new"], &["has label 200", "0–9"]),
        (
            &["--dataset", "fashion-mnist", "--data", "empty", "--out", "new"],
            &["no Fashion-MNIST data at empty", "gfa data fetch fashion-mnist"],
        ),
        (&["--synthetic", "--out", "afile"], &["--out afile", "is a file"]),
        (
            &["--synthetic", "--epochs", "0", "--out", "new"],
            &["--epochs", "`train.epochs`", "at least 1"],
        ),
        (&["--synthetic", "--batch-size", "0", "--out", "new"], &["--batch-size", "at least 1"]),
        (
            &["--synthetic", "--method", "gfa", "--lambda=-1", "--out", "new"],
            &["--lambda", "`method.lambda`", "≥ 0"],
        ),
        (&["--synthetic", "--method", "gfa", "--out", "new"], &["needs --lambda", "e.g. --lambda"]),
        (
            &["--synthetic", "--method", "pgd_at", "--layers", "first", "--out", "new"],
            &["--layers", "has no option `layers`", "its options"],
        ),
        (
            &["--synthetic", "--width", "0", "--out", "new"],
            &["--width", "`model.width`", "positive"],
        ),
        (
            &["--synthetic", "--config", "run_epochs0.toml", "--out", "new"],
            &["run_epochs0.toml", "`train.epochs`", "at least 1"],
        ),
    ];
    // Training other data into the trained folder is refused and leaves it as it was: the
    // same evaluation gives the same numbers.
    check_refusal(d, &train(cases[0].0), cases[0].1).unwrap();
    let again = gfa(d, &eval);
    assert!(again.status.success());
    assert_eq!(again.stdout, first.stdout, "a refused gfa train changed what m evaluates to");
    let mut cases: Vec<Case> =
        cases.iter().map(|(extra, needles)| (train(extra), needles.to_vec())).collect();
    cases.push((
        vec!["train", "--model", "nosuch", "--synthetic", "--out", "new"],
        vec!["--model", "mlp"],
    ));
    refused_all(d, &cases);
}

/// `gfa eval` names what a checkpoint folder or weights file is when it is not one, and checks
/// budgets and sizes before it writes its `--csv`.
#[test]
fn bad_checkpoints_weights_and_eval_flags_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let d = &root.path().join("fixture");
    fs::create_dir(d).unwrap();
    let trained =
        gfa(d, &["train", "--model", "mlp", "--synthetic", "--epochs", "1", "--out", "m"]);
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    fs::create_dir(d.join("empty")).unwrap();
    // Random bytes named .safetensors, a truncated copy, a damaged sidecar.
    let noise: Vec<u8> =
        (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(d.join("noise.safetensors"), noise).unwrap();
    let weights = fs::read(d.join("m/final.safetensors")).unwrap();
    fs::create_dir(d.join("cut")).unwrap();
    fs::copy(d.join("m/checkpoint.json"), d.join("cut/checkpoint.json")).unwrap();
    fs::write(d.join("cut/final.safetensors"), &weights[..weights.len() / 2]).unwrap();
    // A checkpoint whose run.toml no longer reads: no silent fall back to the default data.
    fs::create_dir(d.join("badrun")).unwrap();
    for f in ["checkpoint.json", "final.safetensors"] {
        fs::copy(d.join("m").join(f), d.join("badrun").join(f)).unwrap();
    }
    write(&d.join("badrun"), "run.toml", "[train]\nepochs = 0\n");
    fs::create_dir(d.join("badmeta")).unwrap();
    fs::write(d.join("badmeta/checkpoint.json"), "{ not json").unwrap();
    fs::write(d.join("badmeta/final.safetensors"), &weights).unwrap();

    fn eval<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["eval", "--n", "16", "--csv", "out.csv"][..], extra].concat()
    }
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--checkpoint", "empty"],
            &["empty", "no checkpoint.json", "--out folder of `gfa train`"],
        ),
        (&["--checkpoint", "nowhere"], &["nowhere", "no such folder"]),
        (&["--checkpoint", "noise.safetensors"], &["is a file", "--weights FILE"]),
        (&["--checkpoint", "cut"], &["cut/final.safetensors", "not a complete safetensors file"]),
        (&["--checkpoint", "badmeta"], &["badmeta/checkpoint.json", "unreadable"]),
        (
            &["--checkpoint", "badrun"],
            &["badrun/run.toml", "`train.epochs`", "--data / --dataset / --synthetic"],
        ),
        (
            &[
                "--weights",
                "noise.safetensors",
                "--model",
                "mlp",
                "--normalize",
                "none",
                "--synthetic",
            ],
            &["noise.safetensors", "not a complete safetensors file", "save_file"],
        ),
        (
            &["--weights", "m", "--model", "mlp", "--normalize", "none", "--synthetic"],
            &["m: is a folder, not a safetensors file", "--checkpoint"],
        ),
        (
            &["--weights", "m/final.safetensors", "--model", "cnn", "--synthetic"],
            &["m/final.safetensors", "does not match"],
        ),
        (&["--checkpoint", "m", "--eps", "1e9"], &["--eps", "linf eps 1e9", "from 0 up to 1"]),
        (&["--checkpoint", "m", "--eps=-0.1"], &["--eps", "-0.1", ">= 0"]),
        (
            &["--checkpoint", "m", "--attacks", "pgd", "--norm", "l2", "--eps", "100"],
            &["--eps", "l2 eps 100", "55.43"],
        ),
        (
            &["--checkpoint", "m", "--attacks", "fgsm,pgdd"],
            &["--attacks pgdd", "did you mean `pgd`"],
        ),
        (&["--checkpoint", "m", "--batch-size", "0"], &["--batch-size", "at least 1"]),
        (&["--checkpoint", "m", "--data", "empty", "--other-data"], &["no CIFAR-10 data at empty"]),
    ];
    let cases: Vec<Case> =
        cases.iter().map(|(extra, needles)| (eval(extra), needles.to_vec())).collect();
    refused_all(d, &cases);
}

/// `gfa binarize` checks its flags, the model and the budget before it tests a point or writes
/// its CSV: a model without hidden layers, ε = 0, attacks that cannot run on two classes or
/// need a surrogate, L1, a mistyped attack key, zero counts.
#[test]
fn bad_binarization_requests_are_refused_before_any_work() {
    let root = tempfile::tempdir().unwrap();
    let d = &root.path().join("fixture");
    fs::create_dir(d).unwrap();
    for (model, out) in [("mlp", "m"), ("linear", "lin")] {
        let args = ["train", "--model", model, "--synthetic", "--epochs", "1", "--out", out];
        let trained = gfa(d, &args);
        assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    }
    fn binarize<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["binarize"][..], extra].concat()
    }
    let pgd_typo = "{ kind = \"pgd\", stesp = 1 }";
    let cases: &[(&[&str], &[&str])] = &[
        (&["--checkpoint", "lin"], &["the model", "`linear` has no tap after `input`"]),
        (&["--checkpoint", "m", "--eps", "0"], &["--eps", "eps > 0"]),
        (&["--checkpoint", "m", "--eps", "1e9"], &["--eps", "from 0 up to 1"]),
        (&["--checkpoint", "m", "--attack", "apgd-dlr"], &["--attack", "at least 3 classes"]),
        (&["--checkpoint", "m", "--attack", "apgd-t"], &["--attack", "at least 4 classes"]),
        (&["--checkpoint", "m", "--attack", "autoattack"], &["--attack", "at least 4 classes"]),
        (&["--checkpoint", "m", "--attack", "transfer"], &["--attack", "surrogate"]),
        (&["--checkpoint", "m", "--attack", "noise", "--norm", "l1"], &["--norm", "L∞ and L2"]),
        (&["--checkpoint", "m", "--attack", pgd_typo], &["--attack", "stesp"]),
        (&["--checkpoint", "m", "--n", "0"], &["--n", "at least 1"]),
        (&["--checkpoint", "m", "--steps", "0"], &["--steps", "at least 1"]),
        (&["--weights", "m/final.safetensors", "--model", "mlp", "--synthetic"], &["--csv FILE"]),
    ];
    let cases: Vec<Case> =
        cases.iter().map(|(extra, needles)| (binarize(extra), needles.to_vec())).collect();
    refused_all(d, &cases);
}
