//! `gfa report` and `gfa plot` on hand-made CSVs with known means and standard deviations.
use std::path::Path;
use std::process::Command;

use gfa_exp::analysis::report::{SummaryRow, report};
use gfa_exp::analysis::stats::{Paired, wilson};
use gfa_exp::results::records::{
    CheckRow, EvalRow, IndicatorRow, NormRow, PointRow, RunKey, TrainRow, write_rows,
};

pub fn key(method: &str, lambda: Option<f64>, seed: u64) -> RunKey {
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

/// One seed's (clean, APGD, FGSM, DeepFool median L2) accuracies/norm at eps 8/255 (APGD-DLR
/// is 1 point above APGD-CE, EAD-L1's median L1 is 10 times DeepFool's median L2).
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
                    norm: match attack {
                        "deepfool" => "l2",
                        "ead-l1" => "l1",
                        _ => "linf",
                    }
                    .into(),
                    eps_text: if eps { "8/255".into() } else { String::new() },
                    eps: eps.then_some(8.0 / 255.0),
                    mode: mode.into(),
                    subset: subset.into(),
                    n: 100,
                    clean_acc: *clean,
                    robust_acc: acc,
                    ..EvalRow::keyed(&k)
                };
                eval.push(row("apgd-ce", "individual", Some(*apgd), true));
                eval.push(row("apgd-dlr", "individual", Some(apgd + 0.01), true));
                eval.push(row("fgsm", "individual", Some(*fgsm), true));
                eval.push(row("apgd-ce", "cumulative", Some(*apgd), true));
                let mut d = row("deepfool", "individual", None, false);
                d.median_l2 = Some(*df);
                eval.push(d);
                let mut e = row("ead-l1", "individual", None, false);
                e.median_l1 = Some(10.0 * df);
                eval.push(e);
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
    // DeepFool's per-point L2 norms: three fooled points around the run's median, one not.
    let mut norms = Vec::new();
    for (method, lambda, seeds) in NUMBERS {
        for (seed, (_, _, _, df)) in seeds.iter().enumerate() {
            let k = key(method, lambda, seed as u64);
            for (index, f) in [0.5, 1.0, 1.5, f64::NAN].into_iter().enumerate() {
                norms.push(NormRow {
                    attack: "deepfool".into(),
                    preset: "reference".into(),
                    index,
                    success: !f.is_nan(),
                    l2: (!f.is_nan()).then_some(f * df),
                    ..NormRow::keyed(&k)
                });
            }
        }
    }
    write_rows(&dir.join("norms.csv"), &norms).unwrap();
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
    let (dm, ds) = mean_std(&[0.10, 0.08]);
    let cell = |m: f64, s: f64| format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s);
    // GFA − ADV under each APGD variant of the suite: 51.0 − 42.0 = +9.0 next to the paper's
    // +15.2, with the clean accuracies and n beside; no points.csv: no McNemar p per seed.
    let apgd_row = format!(
        "| gfa λ=0.1 − pgd_at | cnn | apgd-ce | linf 8/255 | 100 | {} | {} | {} | {} | {:+.1} ± \
         {:.1} | —; — | up to +15.2 |",
        cell(0.86, mean_std(&[0.85, 0.87]).1),
        cell(0.80, 0.0),
        cell(ga, gs),
        cell(aa, as_),
        100.0 * (ga - aa),
        100.0 * ds,
    );
    assert!(md.contains(&apgd_row), "{apgd_row}\n{md}");
    assert!(md.contains("| gfa λ=0.1 − pgd_at | cnn | apgd-dlr | linf 8/255 | 100 |"), "{md}");
    assert!((dm - 0.09).abs() < 1e-12);
    let (gf, _) = mean_std(&[0.80, 0.82]);
    let (af, _) = mean_std(&[0.50, 0.52]);
    assert!(
        md.contains(&format!("| {:+.1} ± 0.0 | —; — | up to +24.7 |", 100.0 * (gf - af))),
        "{md}"
    );
    assert!(!md.contains("cannot be computed"), "{md}");
    // Every minimum-norm attack's median ratio to standard training, with n and clean beside:
    // DeepFool L2 2.1 / 0.1 = 21×, pgd_at 0.6 / 0.1 = 6×; EAD-L1 the same ratios.
    let clean_gfa = cell(0.86, mean_std(&[0.85, 0.87]).1);
    for (attack, median) in
        [("deepfool (l2)", "2.1000 ± 0.1414"), ("ead-l1 (l1)", "21.0000 ± 1.4142")]
    {
        let row = format!(
            "| cnn | gfa λ=0.1 | 100 | {clean_gfa} | {attack} | {median} | 21.0× | 20–30× |"
        );
        assert!(md.contains(&row), "{row}\n{md}");
    }
    assert!(md.contains("| 6.0× |"), "{md}");
    // Masking verdicts over seeds.
    assert!(
        md.contains("masking_suspected (1/2)") && md.contains("black_box_not_better (1)"),
        "{md}"
    );
    // Clean-vs-robust over λ lists the GFA run's worst case.
    assert!(md.contains("### Clean versus robust accuracy over λ"), "{md}");

    // summary.csv holds the same numbers unrounded.
    let rows: Vec<SummaryRow> =
        gfa_exp::results::records::read_rows(&dir.path().join("summary.csv")).unwrap();
    let r = rows
        .iter()
        .find(|r| {
            r.label == "gfa λ=0.1"
                && r.attack == "apgd-ce"
                && r.preset == "reference"
                && r.mode == "individual"
                && r.metric == "robust_acc"
        })
        .unwrap();
    assert!((r.mean - ga).abs() < 1e-12 && (r.std.unwrap() - gs).abs() < 1e-12 && r.n_seeds == 2);
    // Each seed's value beside the mean, bit for bit as written in eval.csv.
    assert_eq!(r.per_seed, "0:0.5;1:0.52");
    assert_eq!(r.seeds().unwrap(), [(0, 0.50), (1, 0.52)]);
    for s in &rows {
        let v = s.seeds().unwrap();
        assert_eq!(v.len(), s.n_seeds, "{s:?}");
        let mean = v.iter().map(|p| p.1).sum::<f64>() / v.len() as f64;
        assert!((mean - s.mean).abs() <= 1e-15, "{s:?}");
    }
    let t = rows.iter().find(|r| r.label == "standard" && r.metric == "final_test_acc").unwrap();
    assert!((t.mean - 0.75).abs() < 1e-12 && t.std == Some(0.0));
    let tables = ["tables/T1.md", "tables/T2.md", "tables/T3.md", "tables/T4.md", "tables/T5.md"];
    for f in ["summary.csv", "report.md", "tables/T6.md", "tables/T7.md"].iter().chain(&tables) {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
}

/// T4 shows, beside the masking checks, each indicator's largest share of flagged points per
/// model and method (over seeds, attacks and budgets, with where) and the rows that flag,
/// counted in runs; a results folder without indicators.csv has no such block.
#[test]
fn t4_shows_the_indicators_beside_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    hand_made(dir.path());
    let t4 = |dir: &Path| {
        let md = report(dir).unwrap().markdown;
        md[md.find("## T4").unwrap()..].to_string()
    };
    assert!(!t4(dir.path()).contains("Indicators of Attack Failure"));
    let row = |seed: u64, indicator: &str, eps: &str, flagged: usize| {
        let (fraction, result) = gfa_exp::analysis::indicators::outcome(flagged, 50);
        IndicatorRow {
            attack: "pgd".into(),
            kind: "pgd".into(),
            preset: "reference".into(),
            norm: "linf".into(),
            eps_text: eps.into(),
            indicator: indicator.into(),
            n: 50,
            flagged,
            fraction,
            threshold: 0.05,
            result: result.into(),
            ..IndicatorRow::keyed(&key("gfa", Some(0.1), seed))
        }
    };
    let rows = [
        row(0, "incomplete_optimization", "2/255", 1),
        row(0, "incomplete_optimization", "8/255", 6),
        row(1, "incomplete_optimization", "8/255", 10),
        row(1, "silent_success", "8/255", 0),
    ];
    write_rows(&dir.path().join("indicators.csv"), &rows).unwrap();
    let md = t4(dir.path());
    assert!(md.contains("### Indicators of Attack Failure (docs/method.md §10)"), "{md}");
    let want = "| cnn | gfa λ=0.1 | 0.0% pgd linf 8/255 (n=50) | 20.0% pgd linf 8/255 (n=50) | — \
                | — | — | — | incomplete_optimization (2) |";
    assert!(md.contains(want), "{want}\n{md}");
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
        "f1_robust_vs_eps_standard_apgd-ce_linf",
        "f1_robust_vs_eps_standard_worst-case_linf",
        "train_train_loss",
        "train_test_acc",
        "norms_deepfool_reference_l2",
    ] {
        let svg = std::fs::read_to_string(figs.join(format!("{f}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("gfa λ=0.1"), "{f}");
        let png = std::fs::read(figs.join(format!("{f}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{f}");
    }
    // The norm distribution marks standard training's median (0.1 × the middle norm 1.0).
    let svg = std::fs::read_to_string(figs.join("norms_deepfool_reference_l2.svg")).unwrap();
    assert!(svg.contains("standard median 0.100"), "{svg}");
    // A results folder without CSVs is a clear error.
    let empty = tempfile::tempdir().unwrap();
    let o = Command::new(gfa).arg("report").arg(empty.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no results yet"));
}

/// One seed of GFA and ADV under APGD-CE on 10 points, with their per-point outcomes.
fn one_seed(dir: &Path, gfa_robust: &str, adv_robust: &str) -> Vec<EvalRow> {
    let mut eval = Vec::new();
    let mut points = Vec::new();
    for (method, lambda, robust) in [("gfa", Some(0.1), gfa_robust), ("pgd_at", None, adv_robust)] {
        let k = key(method, lambda, 0);
        let acc = robust.chars().filter(|&c| c == '1').count() as f64 / 10.0;
        eval.push(EvalRow {
            attack: "apgd-ce".into(),
            kind: "apgd-ce".into(),
            preset: "reference".into(),
            attack_config: "{}".into(),
            norm: "linf".into(),
            eps_text: "8/255".into(),
            eps: Some(8.0 / 255.0),
            mode: "individual".into(),
            subset: "all".into(),
            n: 10,
            clean_acc: 0.9,
            robust_acc: Some(acc),
            ..EvalRow::keyed(&k)
        });
        points.push(PointRow {
            attack: "apgd-ce".into(),
            kind: "apgd-ce".into(),
            preset: "reference".into(),
            norm: "linf".into(),
            eps_text: "8/255".into(),
            mode: "individual".into(),
            subset: "all".into(),
            n: 10,
            points: "1".repeat(10),
            robust: robust.into(),
            ..PointRow::keyed(&k)
        });
    }
    write_rows(&dir.join("eval.csv"), &eval).unwrap();
    write_rows(&dir.join("points.csv"), &points).unwrap();
    eval
}

/// With one seed and per-point outcomes, accuracies carry Wilson intervals and GFA − ADV the
/// paired interval and exact McNemar p of gfa_exp::analysis::stats, computed from the points.
#[test]
fn one_seed_gets_intervals_and_mcnemar_from_the_points() {
    let dir = tempfile::tempdir().unwrap();
    // GFA robust on 0–6, ADV on 5–7: both 5, 6; GFA only 0–4; ADV only 7; neither 8, 9.
    one_seed(dir.path(), "1111111000", "0000011100");
    let md = report(dir.path()).unwrap().markdown;
    let t = Paired { both: 2, first_only: 5, second_only: 1, neither: 2 };
    let row = format!(
        "| gfa λ=0.1 − pgd_at | cnn | apgd-ce | linf 8/255 | 10 | {} | {} | {} | {} | {} | {:.3} |",
        wilson(9, 10).unwrap().pct(1),
        wilson(9, 10).unwrap().pct(1),
        wilson(7, 10).unwrap().pct(1),
        wilson(3, 10).unwrap().pct(1),
        t.difference().unwrap().pct_signed(1),
        t.mcnemar_p()
    );
    assert!(md.contains(&row), "{row}\n{md}");
    // McNemar by hand: 6 discordant points, 1 on ADV's side: 2·(1 + 6)/64 = 0.21875.
    assert!(md.contains("| 0.219 |"), "{md}");
}

/// A points.csv that does not match eval.csv (another run's) or of another schema is refused.
#[test]
fn points_of_another_run_or_schema_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut eval = one_seed(dir.path(), "1111111000", "0000011100");
    eval[0].robust_acc = Some(0.2);
    write_rows(&dir.path().join("eval.csv"), &eval).unwrap();
    let e = format!("{:#}", report(dir.path()).unwrap_err());
    assert!(e.contains("points.csv") && e.contains("another run"), "{e}");
    one_seed(dir.path(), "1111111000", "0000011100");
    let p = dir.path().join("points.csv");
    let mut rows: Vec<PointRow> = gfa_exp::results::records::read_rows(&p).unwrap();
    rows[1].schema_version = 2;
    write_rows(&p, &rows).unwrap();
    let e = format!("{:#}", report(dir.path()).unwrap_err());
    assert!(e.contains("schema_version 2") && e.contains("rerun the evaluation"), "{e}");
    rows[1].schema_version = gfa_exp::results::records::SCHEMA_VERSION;
    rows[1].robust = "11".into();
    write_rows(&p, &rows).unwrap();
    let e = format!("{:#}", report(dir.path()).unwrap_err());
    assert!(e.contains("`robust` has 2"), "{e}");
}

/// A grid without APGD or without ADV still reports, saying which claim rows cannot be computed
/// and why; without a minimum-norm attack, T3 says so.
#[test]
fn missing_claims_are_named_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    hand_made(dir.path());
    let p = dir.path().join("eval.csv");
    let rows: Vec<EvalRow> = gfa_exp::results::records::read_rows(&p).unwrap();
    let kept: Vec<EvalRow> = rows
        .into_iter()
        .filter(|r| !r.kind.starts_with("apgd") && r.method != "pgd_at" && r.median_l2.is_none())
        .filter(|r| r.median_l1.is_none())
        .collect();
    write_rows(&p, &kept).unwrap();
    let md = report(dir.path()).unwrap().markdown;
    assert!(
        md.contains(
            "- GFA − ADV under APGD cannot be computed: the suite has no APGD attack \
             (apgd-ce, apgd-dlr, apgd-t); no run trains with `pgd_at`"
        ),
        "{md}"
    );
    assert!(md.contains("- GFA − ADV under FGSM cannot be computed: no run trains with `pgd_at`"));
    assert!(md.contains("T3 cannot be computed: the suite has no minimum-norm attack (deepfool"));
}

/// A model the minimum-norm attack fooled nowhere keeps its T3 row, saying so.
#[test]
fn a_model_fooled_nowhere_keeps_its_t3_row() {
    let dir = tempfile::tempdir().unwrap();
    hand_made(dir.path());
    let p = dir.path().join("eval.csv");
    let mut rows: Vec<EvalRow> = gfa_exp::results::records::read_rows(&p).unwrap();
    for r in rows.iter_mut().filter(|r| r.method == "pgd_at" && r.kind == "deepfool") {
        r.median_l2 = None;
    }
    write_rows(&p, &rows).unwrap();
    let md = report(dir.path()).unwrap().markdown;
    let row =
        "| cnn | pgd_at | 100 | 80.0 ± 0.0 | deepfool (l2) | — (fooled no point) | — | 20–30× |";
    assert!(md.contains(row), "{row}\n{md}");
}

/// The accuracies the committed results READMEs quote next to a run id are that run's rows,
/// rounded (`report::readme::check`).
#[test]
fn results_readmes_quote_their_rows() {
    use gfa_exp::analysis::report::base::Results;
    use gfa_exp::results::records::read_rows;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
    for name in ["knife_edge", "quick", "methods", "attack_failure", "frontier", "frontier_long"] {
        let dir = root.join(name);
        let res = Results {
            eval: read_rows(&dir.join("eval.csv")).unwrap(),
            train: read_rows(&dir.join("train.csv")).unwrap(),
            axes: gfa_exp::results::plan::manifest_axes(&dir).unwrap(),
            ..Default::default()
        };
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let problems = gfa_exp::analysis::report::readme::check(&readme, &res);
        assert!(problems.is_empty(), "results/{name}/README.md: {problems:#?}");
    }
}

/// Every committed results folder was computed on the CPU in fp32 without the deterministic
/// switches: rows written before the numerics were recorded (CSV schema 2 or 4) read so by the
/// documented upgrade, later ones (schema 5: results/quick, results/attack_failure,
/// results/frontier, results/frontier_long) say so, and
/// every file of it reads (points.csv of version 4 included).
#[test]
fn committed_results_read_as_fp32_not_deterministic() {
    use gfa_exp::results::records::{EvalRow, PointRow, TrainRow, read_rows};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
    let old = gfa_core::device::Numerics::BEFORE_RECORDING;
    for name in [
        "quick",
        "methods",
        "knife_edge",
        "fd_vs_exact",
        "attack_failure",
        "frontier",
        "frontier_long",
    ] {
        let dir = root.join(name);
        let eval: Vec<EvalRow> = read_rows(&dir.join("eval.csv")).unwrap();
        let train: Vec<TrainRow> = read_rows(&dir.join("train.csv")).unwrap();
        assert!(!eval.is_empty() && !train.is_empty(), "{name}");
        assert!(eval.iter().all(|r| r.numerics() == old && r.device == "cpu"), "{name}");
        assert!(train.iter().all(|r| r.numerics() == old && r.device == "cpu"), "{name}");
        if dir.join("points.csv").is_file() {
            let points: Vec<PointRow> = read_rows(&dir.join("points.csv")).unwrap();
            assert!(points.iter().all(|r| r.numerics() == old), "{name}");
            gfa_exp::analysis::points::read_points(&dir.join("points.csv"), &eval).unwrap();
        }
    }
    // results/foundation's train log of schema 2 (its other CSV is of schema 1, which gfa does
    // not read, before this change or after).
    let file = root.join("foundation/cnn_w025_standard_adam_constant_10ep.csv");
    let rows: Vec<TrainRow> = read_rows(&file).unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.numerics() == old), "{}", file.display());
}
