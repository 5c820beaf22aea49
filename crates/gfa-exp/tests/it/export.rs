//! `gfa export robustbench` on run folders whose CSVs are written with gfa's own row types.
use std::fs;
use std::path::Path;
use std::process::Command;

use gfa_attacks::autoattack::AutoAttackConfig;
use gfa_attacks::{Configured, Norm, Preset};
use gfa_exp::results::records::{EvalRow, RunKey, TrainRow, write_rows};

fn gfa(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_gfa")).current_dir(dir).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn key() -> RunKey {
    RunKey {
        experiment: "paper".into(),
        run_id: "ab12cd34".into(),
        seed: 1,
        model: "wrn_34_10".into(),
        method: "trades".into(),
        lambda: None,
        method_params: "{\"method\":{\"kind\":\"trades\"}}".into(),
    }
}

/// One `eval.csv` row of `kind` at `norm`/`eps`, as the evaluation stage writes it.
fn row(kind: &str, norm: &str, eps: &str, mode: &str, clean: f64, robust: f64) -> EvalRow {
    let config = match kind {
        "autoattack" => {
            let n = if norm == "l2" { Norm::L2 } else { Norm::Linf };
            serde_json::to_string(&AutoAttackConfig::preset_for(Preset::Reference, n)).unwrap()
        }
        _ => "{}".into(),
    };
    EvalRow {
        attack: kind.into(),
        kind: kind.into(),
        preset: "reference".into(),
        attack_config: config,
        norm: norm.into(),
        eps_text: eps.into(),
        eps: Some(8.0 / 255.0),
        mode: mode.into(),
        subset: "all".into(),
        n: 1000,
        clean_acc: clean,
        robust_acc: Some(robust),
        seconds: 12.5,
        device: "cuda:0".into(),
        git_rev: "0123456789ab".into(),
        ..EvalRow::keyed(&key())
    }
}

/// A run folder with the config `gfa plan` writes and the given eval rows.
fn run_dir(root: &Path, rows: &[EvalRow]) -> std::path::PathBuf {
    let dir = root.join("results/paper/ab12cd34");
    fs::create_dir_all(&dir).unwrap();
    let config = "run_id = \"ab12cd34\"\nseed = 1\n[data]\nsource = \"cifar10\"\n\
                  [model]\narch = \"wrn_34_10\"\n[train]\nepochs = 2\n\
                  [method]\nkind = \"trades\"\n";
    fs::write(dir.join("config.toml"), config).unwrap();
    write_rows(&dir.join("eval.csv"), rows).unwrap();
    let train: Vec<TrainRow> = (1..=2)
        .map(|epoch| TrainRow {
            epoch,
            test_acc: Some(0.8 + 0.01 * epoch as f64),
            ..TrainRow::keyed(&key())
        })
        .collect();
    write_rows(&dir.join("train.csv"), &train).unwrap();
    dir
}

#[test]
fn robustbench_json_has_the_model_info_keys_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_dir(
        tmp.path(),
        &[
            row("pgd", "linf", "8/255", "individual", 0.8534, 0.5702),
            row("autoattack", "linf", "8/255", "individual", 0.8534, 0.5342),
            row("pgd", "linf", "8/255", "cumulative", 0.8534, 0.5702),
            row("autoattack", "linf", "8/255", "cumulative", 0.8534, 0.5331),
        ],
    );
    let (ok, out, err) = gfa(tmp.path(), &["export", "robustbench", dir.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    let text = fs::read_to_string(dir.join("robustbench.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "link",
        "name",
        "authors",
        "additional_data",
        "number_forward_passes",
        "dataset",
        "venue",
        "architecture",
        "eps",
        "clean_acc",
        "reported",
        "autoattack_acc",
        "footnote",
        "unreliable",
        "threat_model",
        "training_method",
        "n_examples",
        "date",
        "gfa",
    ];
    let mut got = keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Accuracies are percentage strings with two decimals; AutoAttack alone, not cumulative.
    assert_eq!(v["clean_acc"], "85.34");
    assert_eq!(v["autoattack_acc"], "53.42");
    assert_eq!(v["eps"], "8/255");
    assert_eq!(v["threat_model"], "Linf");
    assert_eq!(v["dataset"], "cifar10");
    assert_eq!(v["architecture"], "WideResNet-34-10");
    assert_eq!(v["training_method"], "trades");
    assert_eq!(v["additional_data"], false);
    assert_eq!(v["number_forward_passes"], 1);
    assert_eq!(v["n_examples"], 1000);
    let date = v["date"].as_str().unwrap();
    assert!(date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-', "{date}");
    let g = &v["gfa"];
    assert_eq!(g["run_id"], "ab12cd34");
    assert_eq!(g["autoattack_mode"], "individual");
    assert_eq!(g["autoattack_acc"], 0.5342);
    assert_eq!(g["model"]["arch"], "wrn_34_10");
    assert_eq!(g["epochs"], 2);
    assert_eq!(g["final_test_acc"], 0.8 + 0.02);
    assert!(out.contains("AutoAttack 53.42 %"), "{out}");
}

#[test]
fn robustbench_needs_an_autoattack_row_and_one_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_dir(tmp.path(), &[row("pgd", "linf", "8/255", "individual", 0.85, 0.57)]);
    let (ok, _, err) = gfa(tmp.path(), &["export", "robustbench", dir.to_str().unwrap()]);
    assert!(
        !ok && err.contains("no AutoAttack row") && err.contains("kind = \"autoattack\""),
        "{err}"
    );
    assert!(!dir.join("robustbench.json").exists());

    // Two threat models: the choice is asked for, then honoured.
    let dir = run_dir(
        tmp.path(),
        &[
            row("autoattack", "linf", "8/255", "individual", 0.85, 0.53),
            row("autoattack", "l2", "0.5", "individual", 0.85, 0.61),
        ],
    );
    let (ok, _, err) = gfa(tmp.path(), &["export", "robustbench", dir.to_str().unwrap()]);
    assert!(!ok && err.contains("l2 0.5, linf 8/255") && err.contains("--norm"), "{err}");
    let out = tmp.path().join("l2.json");
    let args = ["export", "robustbench", dir.to_str().unwrap(), "--norm", "l2", "-o"];
    let (ok, _, err) = gfa(tmp.path(), &[&args[..], &[out.to_str().unwrap()]].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!((v["threat_model"].as_str(), v["eps"].as_str()), (Some("L2"), Some("0.5")));
    assert_eq!(v["autoattack_acc"], "61.00");

    // The torchattacks preset's AutoAttack is not RobustBench's evaluation.
    let mut ta = row("autoattack", "linf", "8/255", "individual", 0.85, 0.5);
    ta.preset = "torchattacks".into();
    let dir = run_dir(tmp.path(), &[ta]);
    let (ok, _, err) = gfa(tmp.path(), &["export", "robustbench", dir.to_str().unwrap()]);
    assert!(!ok && err.contains("preset torchattacks"), "{err}");
}

/// Every config gfa writes, gfa reads: the `config.toml` `gfa plan` writes for a grid with
/// every optional section (`[landscape]`, `[escalate]`, a transfer attack) is read back by
/// `gfa export robustbench` and by `gfa train --config`.
#[test]
fn every_run_file_gfa_writes_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = format!(
        "{}\n[landscape]\nn = 8\nsteps = 3\n\n[escalate]\nreference = \"standard\"\n\
         margin = 0.05\neps = \"8/255\"\n\n[[escalate.attacks]]\nkind = \"autoattack\"\n\
         eps = [\"8/255\"]\n",
        super::SMALL
    );
    super::write(tmp.path(), "grid.toml", &grid);
    let (ok, out, err) = gfa(tmp.path(), &["plan", "grid.toml", "--results", "results"]);
    assert!(ok, "{out}\n{err}");
    let runs: Vec<std::path::PathBuf> = fs::read_dir(tmp.path().join("results/small"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.toml").is_file())
        .collect();
    assert_eq!(runs.len(), 8);
    let dir = &runs[0];
    let config = fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("[landscape]"), "{config}");
    // Every top-level key of the file is a run section or a key every reader takes out.
    let t: toml::Table = toml::from_str(&config).unwrap();
    for k in t.keys() {
        assert!(
            gfa_exp::config::spec::RUN_SECTIONS.contains(&k.as_str())
                || gfa_exp::config::spec::RUN_FILE_KEYS.contains(&k.as_str()),
            "config.toml key `{k}` is one no reader knows"
        );
    }
    let rows = [
        row("autoattack", "linf", "8/255", "individual", 0.8534, 0.5342),
        row("autoattack", "linf", "8/255", "cumulative", 0.8534, 0.5342),
    ];
    write_rows(&dir.join("eval.csv"), &rows).unwrap();
    let (ok, out, err) = gfa(tmp.path(), &["export", "robustbench", dir.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    assert!(dir.join("robustbench.json").is_file());
    // `gfa train --config` reads the same file (one epoch on the synthetic data of the grid).
    let cfg = dir.join("config.toml");
    let args = ["train", "--config", cfg.to_str().unwrap(), "--out", "m", "--epochs", "1"];
    let (ok, out, err) = gfa(tmp.path(), &args);
    assert!(ok, "{out}\n{err}");
}

/// The eval.csv of `gfa eval --torchscript … --csv` alone in a folder: exported with the data
/// set named by --dataset, the architecture named from the rows.
#[test]
fn robustbench_exports_a_torchscript_evaluation_without_a_run_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outside");
    fs::create_dir_all(&dir).unwrap();
    let mut aa = row("autoattack", "linf", "8/255", "individual", 0.9, 0.4);
    aa.experiment = String::new();
    aa.run_id = "model.pt".into();
    aa.model = "torchscript".into();
    aa.method = "unknown".into();
    write_rows(&dir.join("eval.csv"), &[aa]).unwrap();
    let (ok, _, err) = gfa(tmp.path(), &["export", "robustbench", dir.to_str().unwrap()]);
    assert!(!ok && err.contains("--dataset"), "{err}");
    let args = ["export", "robustbench", dir.to_str().unwrap(), "--dataset", "cifar10"];
    let (ok, _, err) = gfa(tmp.path(), &args);
    assert!(ok, "{err}");
    let text = fs::read_to_string(dir.join("robustbench.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["architecture"], "TorchScript module");
    assert_eq!(
        (v["dataset"].as_str(), v["autoattack_acc"].as_str()),
        (Some("cifar10"), Some("40.00"))
    );
    assert_eq!(v["name"], "model.pt");
    assert!(v["gfa"]["model"].is_null());
}
