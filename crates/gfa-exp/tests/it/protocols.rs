//! Both protocols in one grid (attack entries restricted to a subset), transfer attacks through
//! the grid's standard model (masking check 4), and `[landscape]`: plan-time errors, and one
//! synthetic grid run end to end through report and plot.
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use gfa_exp::config::grid::ExperimentSpec;
use gfa_exp::config::surrogate::SurrogateRef;
use gfa_exp::results::records::{CheckRow, EvalRow, LandscapeRow, read_rows};

use super::write;

/// Three methods × both protocols on synthetic data: six runs, three trainings.
const GRID: &str = r#"experiment = "protocols"
[base]
data = { source = "synthetic", n_train = 128, n_test = 48 }
model = { arch = "mlp" }
train = { epochs = 1, batch_size = 64, optimizer = { kind = "sgd", lr = 0.05 } }
eval = { n = 48, batch_size = 48 }

[grid]
method = [{ kind = "standard" }, { kind = "pgd_at", steps = 1 }, { kind = "gfa", lambda = 0.1 }]
"eval.subset" = ["all", "all_correct"]

[landscape]
n = 16
steps = 3

[[attacks]]
kind = "fgsm"
subset = "all"
eps = ["8/255"]

[[attacks]]
kind = "apgd-ce"
subset = "all"
n_iter = 2
eps = ["8/255"]

[[attacks]]
kind = "transfer"
subset = "all"
attack = { kind = "fgsm" }
eps = ["8/255"]

[[attacks]]
kind = "fgsm"
preset = "torchattacks"
subset = "all_correct"
eps = ["8/255"]

[[attacks]]
kind = "apgd-ce"
preset = "torchattacks"
subset = "all_correct"
n_iter = 2
eps = ["8/255"]
"#;

fn parse(text: &str) -> Result<Vec<gfa_exp::config::grid::RunSpec>, String> {
    ExperimentSpec::parse(Path::new("exp.toml"), text, &[])
        .and_then(|s| s.expand())
        .map_err(|e| e.to_string())
}

#[test]
fn subset_entries_attack_only_their_protocol_and_transfer_resolves_to_the_standard_run() {
    let runs = parse(GRID).unwrap();
    assert_eq!(runs.len(), 6);
    let standard: Vec<&str> = runs
        .iter()
        .filter(|r| r.config.method.name() == "standard")
        .map(|r| r.run_id.as_str())
        .collect();
    for r in &runs {
        let presets: BTreeSet<&str> = r.attacks.iter().map(|a| a.preset.as_str()).collect();
        match r.config.eval.subset {
            gfa_exp::config::spec::Subset::All => {
                assert_eq!(presets, BTreeSet::from(["reference"]), "{}", r.run_id);
                assert_eq!(r.attacks.len(), 3);
                // The surrogate is a standard run sharing the run's training recipe and seed.
                let [(name, SurrogateRef::Run(id))] = r.surrogates.as_slice() else {
                    panic!("{:?}", r.surrogates)
                };
                assert_eq!(name, "standard");
                assert!(standard.contains(&id.as_str()), "{id}");
            }
            gfa_exp::config::spec::Subset::AllCorrect => {
                assert_eq!(presets, BTreeSet::from(["torchattacks"]), "{}", r.run_id);
                assert!(r.surrogates.is_empty());
            }
        }
        assert_eq!(r.landscape.as_ref().map(|l| (l.n, l.steps)), Some((16, 3)));
    }
    // The two protocols' runs of one method share one training.
    let keys: BTreeSet<String> = runs.iter().map(|r| r.train_key()).collect();
    assert_eq!(keys.len(), 3);
}

#[test]
fn bad_surrogates_subsets_and_landscapes_are_plan_time_errors() {
    // No standard run to craft on: the error names the entry's line (line 27, its
    // `[[attacks]]`: the key is not written) and key.
    let no_standard = GRID.replace(r#"{ kind = "standard" }, "#, "");
    let e = parse(&no_standard).unwrap_err();
    assert!(e.contains("exp.toml:27:") && e.contains("`attacks.2.surrogate`"), "{e}");
    assert!(e.contains("kind = \"standard\""), "{e}");
    // A surrogate that is neither a run id nor a checkpoint folder.
    let named = GRID.replace(
        "attack = { kind = \"fgsm\" }",
        "attack = { kind = \"fgsm\" }\nsurrogate = \"no-such-run\"",
    );
    let e = parse(&named).unwrap_err();
    assert!(e.contains("`attacks.2.surrogate`") && e.contains("no-such-run"), "{e}");
    // A run id of the expansion is a valid surrogate (one without transfer entries, whose id
    // does not depend on what the entry names).
    let runs = parse(GRID).unwrap();
    let id = &runs
        .iter()
        .find(|r| r.config.method.name() == "gfa" && r.surrogates.is_empty())
        .unwrap()
        .run_id;
    let by_id = GRID.replace(
        "attack = { kind = \"fgsm\" }",
        &format!("attack = {{ kind = \"fgsm\" }}\nsurrogate = \"{}\"", &id[..8]),
    );
    let runs = parse(&by_id).unwrap();
    let r = runs.iter().find(|r| !r.surrogates.is_empty()).unwrap();
    assert_eq!(r.surrogates[0].1, SurrogateRef::Run(id.clone()));
    // A subset no run is evaluated on; a misspelt subset.
    let one = GRID.replace(r#""eval.subset" = ["all", "all_correct"]"#, "");
    let e = parse(&one).unwrap_err();
    assert!(e.contains("`attacks.3.subset`") && e.contains("all_correct"), "{e}");
    let typo = GRID.replacen("subset = \"all\"", "subset = \"al\"", 1);
    let e = parse(&typo).unwrap_err();
    assert!(e.contains("`attacks.0.subset`") && e.contains("did you mean `all`"), "{e}");
    // [landscape]: unknown keys and bad values at their key and line.
    let e = parse(&GRID.replace("steps = 3", "stesp = 3")).unwrap_err();
    assert!(e.contains("exp.toml:14") && e.contains("`landscape.stesp`"), "{e}");
    assert!(e.contains("did you mean `steps`"), "{e}");
    let e = parse(&GRID.replace("steps = 3", "steps = 1")).unwrap_err();
    assert!(e.contains("`landscape.steps`"), "{e}");
    let e = parse(&GRID.replace("steps = 3", "steps = 3\nradius = \"8/0\"")).unwrap_err();
    assert!(e.contains("`landscape.radius`"), "{e}");
}

/// CW without a norm is its own threat model (L2), not the L∞ of the other attacks.
#[test]
fn an_attack_without_norm_takes_its_own_default() {
    let cw = GRID.replace(
        "[[attacks]]\nkind = \"fgsm\"\nsubset = \"all\"",
        "[[attacks]]\nkind = \"cw\"\nsubset = \"all\"\n\n[[attacks]]\nkind = \"fgsm\"\nsubset = \"all\"",
    );
    let runs = parse(&cw).unwrap();
    let a = runs[0].attacks.iter().find(|a| a.kind == "cw").unwrap();
    assert_eq!(a.norm, "l2");
}

#[test]
fn both_protocols_and_transfer_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "protocols.toml", GRID);
    let gfa = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_gfa"))
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "gfa {args:?}: {text}");
        text
    };
    let out =
        gfa(&["--device", "cpu", "run", file.to_str().unwrap(), "--results", "res", "--quiet"]);
    assert!(out.contains("6 runs done, 0 already done, 0 failed"), "{out}");
    let exp = dir.path().join("res/protocols");
    let eval: Vec<EvalRow> = read_rows(&exp.join("eval.csv")).unwrap();
    // No torchattacks rows on every point, no reference rows on the all-correct points.
    for r in &eval {
        let paper = r.preset == "torchattacks";
        assert_eq!(paper, r.subset == "all_correct", "{r:?}");
    }
    assert!(eval.iter().any(|r| r.kind == "transfer" && r.robust_acc.is_some()));
    // Check 4 is computed (pass or flag) for every run of the standard protocol.
    let checks: Vec<CheckRow> = read_rows(&exp.join("checks.csv")).unwrap();
    let all_runs: BTreeSet<&str> =
        eval.iter().filter(|r| r.subset == "all").map(|r| r.run_id.as_str()).collect();
    assert_eq!(all_runs.len(), 3);
    for id in &all_runs {
        let c4 =
            checks.iter().find(|c| c.run_id == *id && c.check == "transfer_not_better").unwrap();
        assert!(c4.result == "pass" || c4.result == "flag", "{c4:?}");
    }
    // Each run's 3 × 3 landscape, centre at α = β = 0.
    let land: Vec<LandscapeRow> = read_rows(&exp.join("landscape.csv")).unwrap();
    assert_eq!(land.len(), 6 * 9);
    assert!(land.iter().all(|r| r.loss.is_finite() && r.loss >= 0.0));
    assert!(land.iter().filter(|r| r.alpha == 0.0 && r.beta == 0.0).count() == 6);

    gfa(&["report", "res/protocols"]);
    let report = std::fs::read_to_string(exp.join("report.md")).unwrap();
    // T2's GFA − ADV rows under both protocols (paper first), with the paper protocol's n.
    let blocks: Vec<&str> = report.split("#### GFA − ADV").skip(1).collect();
    assert!(blocks.len() >= 2, "{report}");
    for b in &blocks[..2] {
        let b = b.split("\n#").next().unwrap();
        assert!(b.contains("| GFA − ADV") || b.contains("gfa"), "{b}");
        assert!(b.contains("FGSM") || b.contains("fgsm"), "{b}");
    }
    gfa(&["plot", "res/protocols", "--format", "svg"]);
    let figs: Vec<String> = std::fs::read_dir(exp.join("figures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(figs.iter().filter(|f| f.starts_with("f2_landscape_")).count(), 6, "{figs:?}");
}
