//! Every registered attack reaches every consumer of the registry's facts in gfa-exp: the grid's
//! eps rule, the plan's cost estimate, the masking checks and the report's claim rows; and no
//! source file of gfa-exp names an attack kind outside its tests.
use std::path::Path;

use gfa_attacks::registry;
use gfa_attacks::{AttackSpec, Facts};
use gfa_exp::analysis::masking::masking_checks;
use gfa_exp::config::cost::estimate_cost;
use gfa_exp::config::grid::{ExperimentSpec, RunSpec};
use gfa_exp::config::spec::AttackEntry;
use gfa_exp::results::records::{CheckRow, EvalRow, RunKey, write_rows};

/// A one-run grid whose suite is `attacks` (TOML `[[attacks]]` tables).
fn run_with(attacks: &str) -> RunSpec {
    let text = format!(
        "experiment = \"facts\"\nseeds = [0]\n[base]\ndata = {{ source = \"synthetic\", \
         n_train = 100 }}\ntrain = {{ epochs = 1 }}\neval = {{ n = 100 }}\n{attacks}"
    );
    let spec = ExperimentSpec::parse(Path::new("facts.toml"), &text, &[]).unwrap();
    spec.expand().unwrap().remove(0)
}

fn attack_toml(kind: &str, norm: &str, eps: &[&str]) -> String {
    let eps: Vec<String> = eps.iter().map(|e| format!("\"{e}\"")).collect();
    format!("[[attacks]]\nkind = \"{kind}\"\nnorm = \"{norm}\"\neps = [{}]\n", eps.join(", "))
}

/// The grid accepts an entry without budgets exactly for minimum-norm attacks, and the plan's
/// cost counts the attack's own cost model, once per budget for a fixed-budget attack and once
/// in all for a minimum-norm one.
fn grid_and_cost(kind: &str, norm: &str, f: Facts) {
    let mut t = toml::Table::new();
    t.insert("kind".into(), kind.into());
    t.insert("norm".into(), norm.into());
    // A transfer entry crafts on the grid's standard run (here the one run's own model).
    assert_eq!(AttackEntry::from_table(&t).is_ok(), f.minimum_norm(), "{kind} without eps");
    let none = estimate_cost(&run_with(""));
    let one = estimate_cost(&run_with(&attack_toml(kind, norm, &["0.1"])));
    let two = estimate_cost(&run_with(&attack_toml(kind, norm, &["0.1", "0.2"])));
    assert!(one > none, "{kind}: cost {one} vs {none} without attacks");
    let runs = if f.minimum_norm() { 1.0 } else { 2.0 };
    let rel = ((two - none) - runs * (one - none)).abs() / (one - none);
    assert!(rel < 1e-9, "{kind}: {two} for two budgets, {one} for one");
}

fn eval_row(kind: &str, acc: f64, cfg: &str, key: &RunKey) -> EvalRow {
    EvalRow {
        attack: kind.into(),
        kind: kind.into(),
        preset: "reference".into(),
        attack_config: cfg.into(),
        norm: "linf".into(),
        eps_text: "8/255".into(),
        eps: Some(8.0 / 255.0),
        mode: "individual".into(),
        subset: "all".into(),
        n: 100,
        clean_acc: 0.9,
        robust_acc: Some(acc),
        ..EvalRow::keyed(key)
    }
}

fn outcomes(rows: &[CheckRow]) -> Vec<(String, Option<f64>, Option<f64>)> {
    rows.iter().map(|r| (r.result.clone(), r.value, r.threshold)).collect()
}

/// A row of `kind` fooling every point moves at least one masking check: the checks know
/// what role the attack plays (single step, iterative, white box, black box, transfer, noise).
fn masking(kind: &str) {
    let key = RunKey::default();
    let healthy = [
        ("fgsm", "{}"),
        ("pgd", r#"{"steps":20}"#),
        ("pgd", r#"{"steps":100}"#),
        ("apgd-dlr", "{}"),
        ("square", "{}"),
        ("transfer", "{}"),
        ("noise", "{}"),
    ];
    let base: Vec<EvalRow> = healthy.iter().map(|(k, c)| eval_row(k, 0.9, c, &key)).collect();
    let mut with = base.clone();
    with.push(eval_row(kind, 0.0, "{}", &key));
    let (a, b) =
        (masking_checks(&key, &base, None, 10, &[]), masking_checks(&key, &with, None, 10, &[]));
    assert_ne!(outcomes(&a[..9]), outcomes(&b[..9]), "{kind}: no masking check uses it");
}

/// The report prints the attack in T2's GFA − ADV block when it is APGD or FGSM, in T3 when it
/// is minimum-norm, and in neither otherwise.
fn report(kind: &str, norm: &str, f: Facts) {
    let dir = tempfile::tempdir().unwrap();
    let mut eval = Vec::new();
    for (method, acc, median) in [("standard", 0.1, 0.1), ("pgd_at", 0.4, 0.5), ("gfa", 0.5, 2.0)] {
        let key = RunKey {
            experiment: "facts".into(),
            run_id: method.into(),
            model: "cnn".into(),
            method: method.into(),
            method_params: format!("{{\"kind\":\"{method}\"}}"),
            ..RunKey::default()
        };
        let mut r = eval_row(kind, acc, "{}", &key);
        r.norm = norm.into();
        if f.minimum_norm() {
            (r.eps_text, r.eps, r.robust_acc) = (String::new(), None, None);
            (r.median_l1, r.median_l2, r.median_linf) = (Some(median), Some(median), Some(median));
        }
        eval.push(r);
    }
    write_rows(&dir.path().join("eval.csv"), &eval).unwrap();
    let md = gfa_exp::analysis::report::report(dir.path()).unwrap().markdown;
    let claimed =
        [gfa_attacks::Algorithm::Apgd, gfa_attacks::Algorithm::Fgsm].contains(&f.algorithm);
    let gain = format!("| gfa − pgd_at | cnn | {kind} | {norm} 8/255 |");
    assert_eq!(md.contains(&gain), claimed, "{kind}: GFA − ADV row\n{md}");
    let ratio = format!("| {kind} ({norm}) | 2.0000 | 20.0× |");
    assert_eq!(md.contains(&ratio), f.minimum_norm(), "{kind}: T3 row\n{md}");
}

#[test]
fn every_registered_attack_reaches_every_consumer() {
    let list = registry::list();
    assert_eq!(list.len(), AttackSpec::KINDS.len());
    for info in list {
        assert_eq!(registry::facts(info.kind), Some(info.facts), "{}", info.kind);
        let norm = info.norms[0].to_string();
        grid_and_cost(info.kind, &norm, info.facts);
        masking(info.kind);
        report(info.kind, &norm, info.facts);
    }
}

/// gfa-exp asks the registry what an attack is: no source file names a registered kind as a
/// string literal outside its `#[cfg(test)]` module.
#[test]
fn no_attack_kind_literal_outside_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.clone()];
    let mut found = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for kind in AttackSpec::KINDS {
            for (i, line) in code.lines().enumerate() {
                if line.contains(&format!("\"{kind}\"")) && !line.trim_start().starts_with("//") {
                    found.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "attack kinds named in gfa-exp:\n{}", found.join("\n"));
}
