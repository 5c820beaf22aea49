//! `gfa export robustbench RUN_DIR`: a run's AutoAttack result as RobustBench's model-info JSON.
//!
//! RobustBench describes each leaderboard entry with a small JSON file (its `model_info/`
//! folder): accuracies are percentage strings with two decimals (`"clean_acc": "85.31"`,
//! `"autoattack_acc": "57.09"`), `eps` is written as a fraction (`"8/255"`), and `dataset`,
//! `architecture`, `additional_data`, `number_forward_passes` describe the model. gfa writes
//! those keys from the run's `eval.csv` row of AutoAttack in its standard version (reference
//! preset, every point: the only RobustBench-comparable number), adds `threat_model` (`Linf` /
//! `L2`), `training_method`, `n_examples` and `date`, and keeps everything else it knows about
//! the run under `"gfa"`. Fields RobustBench fills by hand (`link`, `name`, `authors`, `venue`)
//! are left for the author.
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use toml::Table;

use crate::cli::args::RobustbenchArgs;
use crate::cli::commands::RUN_TOML;
use crate::config::spec::RunConfig;
use crate::results::records::{EvalRow, TrainRow, read_rows};
use gfa_data::atomic::write_atomic;

/// RobustBench's model-info fields, then gfa's own.
#[derive(Debug, Serialize)]
pub struct ModelInfo {
    pub link: String,
    pub name: String,
    pub authors: String,
    pub additional_data: bool,
    pub number_forward_passes: u32,
    pub dataset: String,
    pub venue: String,
    pub architecture: String,
    pub eps: String,
    pub clean_acc: String,
    /// The robust accuracy the entry reports: gfa's AutoAttack number.
    pub reported: String,
    pub autoattack_acc: String,
    pub footnote: Option<String>,
    pub unreliable: bool,
    pub threat_model: String,
    pub training_method: String,
    pub n_examples: usize,
    /// UTC date `eval.csv` was written (YYYY-MM-DD).
    pub date: String,
    pub gfa: GfaFields,
}

/// What gfa knows about the run beyond RobustBench's fields.
#[derive(Debug, Serialize)]
pub struct GfaFields {
    pub experiment: String,
    pub run_id: String,
    pub seed: u64,
    /// The run's model; `None` for a model evaluated from a file (`gfa eval --weights |
    /// --torchscript`), named by `architecture`.
    pub model: Option<gfa_core::ModelSpec>,
    pub method: String,
    pub lambda: Option<f64>,
    /// The method's sections as compact JSON (`method_params` of the CSVs).
    pub method_params: String,
    /// Clean and AutoAttack accuracy as fractions, unrounded.
    pub clean_acc: f64,
    pub autoattack_acc: f64,
    /// `individual` (AutoAttack alone) or `cumulative` (the worst case over the suite up to and
    /// including AutoAttack, a lower bound on AutoAttack alone).
    pub autoattack_mode: String,
    pub attack_config: String,
    pub subset: String,
    pub seconds: f64,
    pub device: String,
    pub git_rev: String,
    pub eval_csv: String,
    /// Epochs trained and the last per-epoch test accuracy, from `train.csv` when present.
    pub epochs: Option<usize>,
    pub final_test_acc: Option<f64>,
}

/// The run's configuration: `config.toml` (gfa run) or `run.toml` (gfa train --out); `None` for
/// a folder holding only the `eval.csv` of `gfa eval --weights | --torchscript … --csv`.
fn run_config(dir: &Path) -> Result<Option<RunConfig>> {
    for name in ["config.toml", RUN_TOML] {
        let path = dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let mut t: Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for k in crate::config::spec::RUN_FILE_KEYS {
            t.remove(*k);
        }
        return RunConfig::from_table(&t).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{}: `{}`: {}",
                path.display(),
                crate::config::keys::dotted(&e.path),
                e.message
            )
        });
    }
    Ok(None)
}

/// RobustBench's name of an architecture (theirs where it has one).
fn architecture(spec: &gfa_core::ModelSpec) -> String {
    use gfa_core::models::Arch;
    let name = match spec.arch {
        Arch::Linear => "Linear",
        Arch::Mlp => "MLP",
        Arch::Cnn => "CNN",
        Arch::PreActResNet18 => "PreActResNet-18",
        Arch::Wrn28x10 => "WideResNet-28-10",
        Arch::Wrn34x10 => "WideResNet-34-10",
        Arch::ResNet18 => "ResNet-18",
        Arch::TorchScript => "TorchScript module",
    };
    if spec.width == 1.0 || spec.arch == Arch::Linear {
        name.to_string()
    } else {
        format!("{name} (width × {})", spec.width)
    }
}

/// The civil date (UTC) of a time, `2025-01-31`.
fn utc_date(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    crate::results::store::utc_text(secs)[..10].to_string()
}

/// Whether `row` is an AutoAttack row (the registry's facts of its kind).
fn is_autoattack(row: &EvalRow) -> bool {
    gfa_attacks::registry::facts(&row.kind)
        .is_some_and(|f| f.algorithm == gfa_attacks::Algorithm::AutoAttack)
}

/// Whether `row` is AutoAttack in its standard version with the reference preset.
fn is_standard_autoattack(row: &EvalRow) -> bool {
    let version = serde_json::from_str::<serde_json::Value>(&row.attack_config)
        .ok()
        .and_then(|v| v.get("version").and_then(|s| s.as_str().map(String::from)));
    is_autoattack(row) && row.preset == "reference" && version.as_deref() == Some("standard")
}

/// The AutoAttack row to report, chosen by `--eps` / `--norm` when there are several.
fn autoattack_row<'r>(rows: &'r [EvalRow], a: &RobustbenchArgs, csv: &Path) -> Result<&'r EvalRow> {
    let aa: Vec<&EvalRow> = rows.iter().filter(|r| is_autoattack(r)).collect();
    let how_to_run = "run it with `[[attacks]] kind = \"autoattack\"` (gfa run) or `gfa eval \
                      --attacks autoattack --csv <run_dir>/eval.csv`";
    if aa.is_empty() {
        bail!(
            "{} has no AutoAttack row, and RobustBench reports AutoAttack accuracy; {how_to_run}",
            csv.display()
        );
    }
    let usable: Vec<&EvalRow> = aa
        .iter()
        .copied()
        .filter(|r| is_standard_autoattack(r) && r.subset == "all")
        .filter(|r| r.norm == "linf" || r.norm == "l2")
        .filter(|r| a.eps.as_deref().is_none_or(|e| r.eps_text == e.trim()))
        .filter(|r| a.norm.as_deref().is_none_or(|n| r.norm.eq_ignore_ascii_case(n.trim())))
        .collect();
    if usable.is_empty() {
        let have: Vec<String> = aa
            .iter()
            .map(|r| format!("{} {} preset {} subset {}", r.norm, r.eps_text, r.preset, r.subset))
            .collect();
        bail!(
            "{} has no AutoAttack row RobustBench can use (version standard, preset reference, \
             subset all, Linf or L2{}); it has: {}; {how_to_run}",
            csv.display(),
            match (&a.eps, &a.norm) {
                (None, None) => String::new(),
                _ => format!(", at --eps {:?} --norm {:?}", a.eps, a.norm),
            },
            have.join("; ")
        );
    }
    let mut budgets: Vec<(String, String)> =
        usable.iter().map(|r| (r.norm.clone(), r.eps_text.clone())).collect();
    budgets.sort();
    budgets.dedup();
    if budgets.len() > 1 {
        let list: Vec<String> = budgets.iter().map(|(n, e)| format!("{n} {e}")).collect();
        bail!(
            "{} has AutoAttack rows at {}; choose one with --norm and --eps",
            csv.display(),
            list.join(", ")
        );
    }
    // AutoAttack alone when the run has it; else the cumulative row (a lower bound).
    Ok(usable.iter().find(|r| r.mode == "individual").copied().unwrap_or(usable[0]))
}

/// Percent with two decimals, as RobustBench writes accuracies.
fn percent(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// Builds the model info of the run in `a.run_dir`.
pub fn model_info(a: &RobustbenchArgs) -> Result<ModelInfo> {
    let dir = &a.run_dir;
    let csv = dir.join("eval.csv");
    if !csv.is_file() {
        bail!(
            "{} not found: evaluate the run first (gfa run, or gfa eval --checkpoint … --csv \
             {})",
            csv.display(),
            csv.display()
        );
    }
    let cfg = run_config(dir)?;
    crate::results::records::check_csv_file(&csv)?;
    let dataset = match (&cfg, &a.dataset) {
        (Some(c), _) => c.data.source.name().to_string(),
        (None, Some(d)) => d.clone(),
        (None, None) => bail!(
            "{} has neither config.toml (a gfa run folder) nor {RUN_TOML} (a gfa train --out \
             folder), which name the data; for the eval.csv of `gfa eval --weights | \
             --torchscript … --csv`, name the data set it was evaluated on with --dataset \
             (e.g. cifar10)",
            dir.display()
        ),
    };
    let rows: Vec<EvalRow> = read_rows(&csv)?;
    let row = autoattack_row(&rows, a, &csv)?;
    let modified = std::fs::metadata(&csv).and_then(|m| m.modified()).unwrap_or(SystemTime::now());
    let train_csv = dir.join("train.csv");
    let train: Vec<TrainRow> = if train_csv.is_file() { read_rows(&train_csv)? } else { vec![] };
    let last = train.iter().max_by_key(|r| r.epoch);
    let method = cfg.as_ref().map_or_else(|| row.method.clone(), |c| c.method().to_string());
    let training_method = match cfg.as_ref().and_then(|c| c.lambda()) {
        Some(l) => format!("{method} (lambda {l})"),
        None => method.clone(),
    };
    let robust = row.robust_acc.unwrap_or(f64::NAN);
    Ok(ModelInfo {
        link: String::new(),
        name: if row.experiment.is_empty() {
            row.run_id.clone()
        } else {
            format!("{}/{}", row.experiment, row.run_id)
        },
        authors: String::new(),
        additional_data: false,
        number_forward_passes: 1,
        dataset,
        venue: String::new(),
        architecture: match &cfg {
            Some(c) => architecture(&c.model),
            None if row.model == gfa_core::models::Arch::TorchScript.name() => {
                "TorchScript module".to_string()
            }
            None => row.model.clone(),
        },
        eps: row.eps_text.clone(),
        clean_acc: percent(row.clean_acc),
        reported: percent(robust),
        autoattack_acc: percent(robust),
        footnote: None,
        unreliable: false,
        threat_model: if row.norm == "l2" { "L2" } else { "Linf" }.to_string(),
        training_method,
        n_examples: row.n,
        date: utc_date(modified),
        gfa: GfaFields {
            experiment: row.experiment.clone(),
            run_id: row.run_id.clone(),
            seed: row.seed,
            model: cfg.as_ref().map(|c| c.model.clone()),
            method,
            lambda: row.lambda,
            method_params: row.method_params.clone(),
            clean_acc: row.clean_acc,
            autoattack_acc: robust,
            autoattack_mode: row.mode.clone(),
            attack_config: row.attack_config.clone(),
            subset: row.subset.clone(),
            seconds: row.seconds,
            device: row.device.clone(),
            git_rev: row.git_rev.clone(),
            eval_csv: csv.display().to_string(),
            epochs: last.map(|r| r.epoch),
            final_test_acc: last.and_then(|r| r.test_acc),
        },
    })
}

/// `gfa export robustbench`: writes the JSON and returns its path.
pub fn robustbench(a: &RobustbenchArgs) -> Result<PathBuf> {
    let info = model_info(a)?;
    let out = a.out.clone().unwrap_or_else(|| a.run_dir.join("robustbench.json"));
    let text = serde_json::to_string_pretty(&info)? + "\n";
    write_atomic(&out, text.as_bytes())?;
    println!(
        "{} {} {}: clean {} %, AutoAttack {} % on {} points ({})",
        info.architecture,
        info.threat_model,
        info.eps,
        info.clean_acc,
        info.autoattack_acc,
        info.n_examples,
        info.gfa.autoattack_mode
    );
    println!("wrote {}", out.display());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_of_known_times() {
        let at = |s: u64| utc_date(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29"); // a leap day of a century leap year
        assert_eq!(at(1_700_000_000), "2023-11-14");
        assert_eq!(at(4_102_444_799), "2099-12-31");
    }

    #[test]
    fn percent_has_two_decimals() {
        assert_eq!(percent(0.5725), "57.25");
        assert_eq!(percent(1.0), "100.00");
        assert_eq!(percent(0.0), "0.00");
    }
}
