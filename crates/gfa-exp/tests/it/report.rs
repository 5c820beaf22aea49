//! `gfa report` and `gfa plot` on hand-made CSVs with known means and standard deviations.
use std::path::Path;
use std::process::Command;

use gfa_exp::records::{CheckRow, EvalRow, RunKey, TrainRow, write_rows};
use gfa_exp::report::{SummaryRow, report};

fn key(method: &str, lambda: Option<f64>, seed: u64) -> RunKey {
    RunKey {
        experiment: "hand".into(),
        run_id: format!("{method}-{seed}"),
        seed,
        model: "cnn".into(),
        method: method.into(),
        lambda,
        method_params: format!("{{\"method\":\"{method}\",\"lambda\":{lambda:?}}}"),
    }
}

/// One seed's (clean, APGD, FGSM, DeepFool median L2) accuracies/norm at eps 8/255.
type Seed = (f64, f64, f64, f64);

/// Per method (and λ) and seed.
pub const NUMBERS: [(&str, Option<f64>, [Seed; 2]); 3] = [
    ("standard", None, [(0.90, 0.00, 0.10, 0.10), (0.92, 0.02, 0.12, 0.10)]),
    ("pgd_at", None, [(0.80, 0.40, 0.50, 0.50), (0.80, 0.44, 0.52, 0.70)]),
    ("gfa", Some(0.1), [(0.85, 0.50, 0.80, 2.00), (0.87, 0.52, 0.82, 2.20)]),
];

/// Write eval.csv, train.csv and checks.csv of a hand-made experiment into `dir`.
pub fn hand_made(dir: &Path) {
    let mut eval = Vec::new();
    let mut train = Vec::new();
    let mut checks = Vec::new();
    for (method, lambda, seeds) in NUMBERS {
        for (seed, (clean, apgd, fgsm, df)) in seeds.iter().enumerate() {
            let k = key(method, lambda, seed as u64);
            for (preset, subset) in [("reference", "all"), ("torchattacks", "all_correct")] {
                let row = |attack: &str, mode: &str, acc: Option<f64>, eps: bool| EvalRow {
                    attack: attack.into(),
                    kind: attack.into(),
                    preset: preset.into(),
                    attack_config: "{}".into(),
                    norm: if attack == "deepfool" { "l2" } else { "linf" }.into(),
                    eps_text: if eps { "8/255".into() } else { String::new() },
                    eps: eps.then_some(8.0 / 255.0),
                    mode: mode.into(),
                    subset: subset.into(),
                    n: 100,
                    clean_acc: *clean,
                    robust_acc: acc,
                    ..EvalRow::keyed(&k)
                };
                eval.push(row("apgd", "individual", Some(*apgd), true));
                eval.push(row("fgsm", "individual", Some(*fgsm), true));
                eval.push(row("apgd", "cumulative", Some(*apgd), true));
                let mut d = row("deepfool", "individual", None, false);
                d.median_l2 = Some(*df);
                eval.push(d);
            }
            for epoch in 1..=3 {
                train.push(TrainRow {
                    epoch,
                    train_loss: 2.0 / epoch as f64,
                    train_acc: 0.3 * epoch as f64,
                    test_acc: Some(0.25 * epoch as f64),
                    ..TrainRow::keyed(&k)
                });
            }
            let mut v = CheckRow::keyed(&k);
            v.check = "verdict".into();
            v.result = if method == "gfa" && seed == 0 {
                "masking_suspected"
            } else {
                "no_masking_detected"
            }
            .into();
            checks.push(v);
            if method == "gfa" && seed == 0 {
                let mut f = CheckRow::keyed(&k);
                f.number = Some(3);
                f.check = "black_box_not_better".into();
                f.result = "flag".into();
                checks.push(f);
            }
        }
    }
    write_rows(&dir.join("eval.csv"), &eval).unwrap();
    write_rows(&dir.join("train.csv"), &train).unwrap();
    write_rows(&dir.join("checks.csv"), &checks).unwrap();
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() as f64 - 1.0);
    (m, v.sqrt())
}

#[test]
fn report_aggregates_over_seeds_and_compares_with_the_paper() {
    let dir = tempfile::tempdir().unwrap();
    hand_made(dir.path());
    let out = report(dir.path()).unwrap();
    let md = &out.markdown;
    for t in ["## T1", "## T2", "## T3", "## T4", "### Protocol: paper", "### Protocol: standard"] {
        assert!(md.contains(t), "{t} missing:\n{md}");
    }
    let (ga, gs) = mean_std(&[0.50, 0.52]);
    let (aa, as_) = mean_std(&[0.40, 0.44]);
    let cell = |m: f64, s: f64| format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s);
    // GFA − ADV under APGD: 51.0 − 42.0 = +9.0 next to the paper's +15.2.
    let apgd_row = format!(
        "| gfa λ=0.1 − pgd_at | cnn | apgd | linf 8/255 | {} | {} | {:+.1} | up to +15.2 |",
        cell(ga, gs),
        cell(aa, as_),
        100.0 * (ga - aa)
    );
    assert!(md.contains(&apgd_row), "{apgd_row}\n{md}");
    let (gf, _) = mean_std(&[0.80, 0.82]);
    let (af, _) = mean_std(&[0.50, 0.52]);
    assert!(md.contains(&format!("| {:+.1} | up to +24.7 |", 100.0 * (gf - af))), "{md}");
    // DeepFool median L2 ratio to standard training: 2.1 / 0.1 = 21×, pgd_at 0.6 / 0.1 = 6×.
    assert!(md.contains("| 21.0× |") && md.contains("| 6.0× |") && md.contains("20–30×"), "{md}");
    // Masking verdicts over seeds.
    assert!(
        md.contains("masking_suspected (1/2)") && md.contains("black_box_not_better (1)"),
        "{md}"
    );
    // Clean-vs-robust over λ lists the GFA run's worst case.
    assert!(md.contains("### Clean versus robust accuracy over λ"), "{md}");

    // summary.csv holds the same numbers unrounded.
    let rows: Vec<SummaryRow> =
        gfa_exp::records::read_rows(&dir.path().join("summary.csv")).unwrap();
    let r = rows
        .iter()
        .find(|r| {
            r.label == "gfa λ=0.1"
                && r.attack == "apgd"
                && r.preset == "reference"
                && r.mode == "individual"
                && r.metric == "robust_acc"
        })
        .unwrap();
    assert!((r.mean - ga).abs() < 1e-12 && (r.std.unwrap() - gs).abs() < 1e-12 && r.n_seeds == 2);
    let t = rows.iter().find(|r| r.label == "standard" && r.metric == "final_test_acc").unwrap();
    assert!((t.mean - 0.75).abs() < 1e-12 && t.std == Some(0.0));
    for f in
        ["summary.csv", "report.md", "tables/T1.md", "tables/T2.md", "tables/T3.md", "tables/T4.md"]
    {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
}

#[test]
fn report_and_plot_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    hand_made(dir.path());
    let gfa = env!("CARGO_BIN_EXE_gfa");
    let o = Command::new(gfa).arg("report").arg(dir.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("## T2"));
    let o =
        Command::new(gfa).arg("plot").arg(dir.path()).args(["--format", "both"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let figs = dir.path().join("figures");
    for f in [
        "f1_robust_vs_eps_standard_apgd_linf",
        "f1_robust_vs_eps_standard_worst-case_linf",
        "train_train_loss",
        "train_test_acc",
    ] {
        let svg = std::fs::read_to_string(figs.join(format!("{f}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("gfa λ=0.1"), "{f}");
        let png = std::fs::read(figs.join(format!("{f}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{f}");
    }
    // A results folder without CSVs is a clear error.
    let empty = tempfile::tempdir().unwrap();
    let o = Command::new(gfa).arg("report").arg(empty.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no results yet"));
}
