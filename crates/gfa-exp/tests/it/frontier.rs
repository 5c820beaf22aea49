//! T7 and the frontier figure on a hand-made results folder whose per-point outcomes are known:
//! the envelope of the controls, the frontier control each GFA configuration is paired with,
//! the paired numbers against a hand computation, and the omissions.
use std::path::Path;

use gfa_exp::analysis::plot::plot_dir;
use gfa_exp::analysis::report::report;
use gfa_exp::analysis::stats::wilson;
use gfa_exp::analysis::style::Format;
use gfa_exp::results::records::{EvalRow, GfaValueRow, PointRow, RunKey, write_rows};

/// Every run is evaluated on the same 44 points.
const N: usize = 44;

/// A run: method, λ, seed, clean accuracy, and its robust points at L∞ 8/255 (`1` robust).
struct Run {
    method: &'static str,
    lambda: Option<f64>,
    seed: u64,
    clean: f64,
    robust: String,
}

/// Outcomes on the 44 points: robust (`1`) on the index ranges `[start, end)` of `ones`.
fn robust(ones: &[(usize, usize)]) -> String {
    (0..N).map(|i| if ones.iter().any(|&(a, b)| (a..b).contains(&i)) { '1' } else { '0' }).collect()
}

fn run(method: &'static str, lambda: Option<f64>, seed: u64, clean: f64, r: String) -> Run {
    Run { method, lambda, seed, clean, robust: r }
}

/// The runs of the folder. Controls (configuration means of clean, robust in points of 44):
/// standard (0.90, 2) with seeds 0 and 1, gnr λ=0.1 (0.80, 8), gnr λ=1 (0.60, 6), pgd_at (0.62,
/// 14) with seeds 0 and 1. gnr λ=1 loses to pgd_at in both: the frontier is pgd_at, gnr λ=0.1,
/// standard. GFA: λ=0.1 (clean 0.64, next to pgd_at), λ=0.5 (seeds 0 and 1, mean clean 0.86:
/// nearer standard's 0.90 than gnr's 0.80), λ=1 (clean 0.95, beyond the frontier; seed 2, which
/// standard lacks), λ=2 (clean 0.30, left of the frontier).
fn runs() -> Vec<Run> {
    // GFA λ=0.1 against pgd_at seed 0 on the 44 points: both robust on 0..12, GFA only on
    // 12..21, pgd_at only on 21..23, neither on the rest: a = 12, b = 9, c = 2, d = 21.
    vec![
        run("standard", None, 0, 0.90, robust(&[(0, 2)])),
        run("standard", None, 1, 0.90, robust(&[(0, 2)])),
        run("gnr", Some(0.1), 0, 0.80, robust(&[(0, 8)])),
        run("gnr", Some(1.0), 0, 0.60, robust(&[(0, 6)])),
        run("pgd_at", None, 0, 0.62, robust(&[(0, 12), (21, 23)])),
        run("pgd_at", None, 1, 0.62, robust(&[(0, 14)])),
        run("gfa", Some(0.1), 0, 0.64, robust(&[(0, 21)])),
        run("gfa", Some(0.5), 0, 0.85, robust(&[(0, 3)])),
        run("gfa", Some(0.5), 1, 0.87, robust(&[(0, 1)])),
        run("gfa", Some(1.0), 2, 0.95, robust(&[])),
        run("gfa", Some(2.0), 0, 0.30, robust(&[])),
    ]
}

fn key(r: &Run) -> RunKey {
    let lambda = r.lambda.map_or(String::new(), |l| format!(",\"lambda\":{l}"));
    RunKey {
        experiment: "frontier".into(),
        run_id: format!("{}-{:?}-s{}", r.method, r.lambda, r.seed),
        seed: r.seed,
        model: "cnn".into(),
        method: r.method.into(),
        lambda: r.lambda,
        method_params: format!("{{\"kind\":\"{}\"{lambda}}}", r.method),
    }
}

/// The eval.csv and points.csv rows of `run` under attack `attack` (`cumulative`: the worst
/// case over the suite; `autoattack`: AutoAttack's own row), robust on `outcomes`.
fn rows(r: &Run, attack: &str, mode: &str, outcomes: &str) -> (EvalRow, PointRow) {
    let k = key(r);
    let robust = outcomes.chars().filter(|&c| c == '1').count() as f64 / N as f64;
    let eval = EvalRow {
        attack: attack.into(),
        kind: attack.into(),
        preset: "reference".into(),
        attack_config: "{}".into(),
        norm: "linf".into(),
        eps_text: "8/255".into(),
        eps: Some(8.0 / 255.0),
        mode: mode.into(),
        subset: "all".into(),
        n: N,
        clean_acc: r.clean,
        robust_acc: Some(robust),
        ..EvalRow::keyed(&k)
    };
    let point = PointRow {
        attack: attack.into(),
        kind: attack.into(),
        preset: "reference".into(),
        norm: "linf".into(),
        eps_text: "8/255".into(),
        mode: mode.into(),
        subset: "all".into(),
        n: N,
        points: "1".repeat(N),
        robust: outcomes.into(),
        ..PointRow::keyed(&k)
    };
    (eval, point)
}

/// Writes the runs' worst cases (PGD's cumulative row), their outcomes, the GFA runs' input-tap
/// cosines (0.12 for λ=0.1; 0.5 and 0.7 for λ=0.5's two seeds), and, for the runs `aa` keeps,
/// an AutoAttack row robust on one point fewer (the last of its robust points).
fn write(dir: &Path, runs: &[Run], aa: impl Fn(&Run) -> bool) {
    let (mut eval, mut points, mut cos) = (vec![], vec![], vec![]);
    for r in runs {
        let (e, p) = rows(r, "pgd", "cumulative", &r.robust);
        eval.push(e);
        points.push(p);
        if aa(r) {
            let mut weaker = r.robust.clone();
            if let Some(i) = weaker.rfind('1') {
                weaker.replace_range(i..=i, "0");
            }
            let (e, p) = rows(r, "autoattack", "individual", &weaker);
            eval.push(e);
            points.push(p);
        }
        if r.method == "gfa" {
            let value = match (r.lambda, r.seed) {
                (Some(0.1), _) => 0.12,
                (Some(0.5), 0) => 0.5,
                (Some(0.5), _) => 0.7,
                _ => 0.01,
            };
            let row = GfaValueRow {
                split: "test".into(),
                tap: "input".into(),
                value,
                n: N,
                ..GfaValueRow::keyed(&key(r))
            };
            cos.push(row);
        }
    }
    write_rows(&dir.join("eval.csv"), &eval).unwrap();
    write_rows(&dir.join("points.csv"), &points).unwrap();
    write_rows(&dir.join("gfa_value.csv"), &cos).unwrap();
}

/// The line of `t` that starts with `| cnn | {label} |`.
fn line<'a>(t: &'a str, label: &str) -> &'a str {
    let start = format!("| cnn | {label} |");
    t.lines().find(|l| l.starts_with(&start)).unwrap_or_else(|| panic!("{start}:\n{t}"))
}

fn t7(dir: &Path) -> String {
    report(dir).unwrap();
    std::fs::read_to_string(dir.join("tables/T7.md")).unwrap()
}

#[test]
fn t7_pairs_each_gfa_configuration_with_the_nearest_frontier_control() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &runs(), |_| false);
    let t = t7(dir.path());
    assert!(t.contains("Robust accuracy: **worst case over the suite at L∞ 8/255**"), "{t}");
    assert!(t.contains("not every compared run has AutoAttack there"), "{t}");
    // The envelope: gnr λ=1 (0.60, 6/44) loses to pgd_at (0.62, 14/44) in both.
    for (label, on) in [("standard", "yes"), ("gnr λ=0.1", "yes"), ("pgd_at", "yes")] {
        assert!(line(&t, label).ends_with(&format!("| {on} |")), "{label}: {t}");
    }
    assert!(line(&t, "gnr λ=1").ends_with("| no |"), "{t}");
    // GFA λ=0.1 (clean 28/44 rounded from 0.64, robust 21/44) next to pgd_at (0.62): the
    // frontier between pgd_at (0.62, 14/44) and gnr λ=0.1 (0.80, 8/44) at 0.64 is
    // 14/44 − (0.02/0.18)·6/44 = 30.3 %, so +17.4 points. Paired with pgd_at seed 0 on the 44
    // points: a = 12, b = 9, c = 2, d = 21, Newcombe's interval of docs/method.md §8 by hand
    // (gfa-exp's stats tests): +15.9 [+1.8, +28.9]; McNemar 2·(1 + 11 + 55)/2^11 = 0.065.
    let a = line(&t, "gfa λ=0.1");
    let want = format!(
        "| cnn | gfa λ=0.1 | 0 | 44 | {} | {} | 0.120 | 30.3 | +17.4 | pgd_at | {} | {} | \
         +15.9 [+1.8, +28.9] | 0.065 |",
        wilson(28, 44).unwrap().pct(1),
        wilson(21, 44).unwrap().pct(1),
        "62.0 ± 0.0",
        "31.8 ± 0.0",
    );
    assert_eq!(a, want, "{t}");
    // GFA λ=0.5 (seeds 0, 1; mean clean 0.86, robust 2/44): nearest is standard (0.90), the
    // frontier there (0.6 of the way from gnr λ=0.1 to standard) 8/44 − 0.6·6/44 = 10.0 %;
    // seed by seed: 3 vs 2 robust points (b = 1, c = 0, p = 1), 1 vs 2 (b = 0, c = 1, p = 1).
    let b = line(&t, "gfa λ=0.5");
    assert!(
        b.contains("| 0,1 | 44 | 86.0 ± 1.4 | 4.5 ± 3.2 | 0.600 ± 0.141 | 10.0 | -5.5 |"),
        "{b}"
    );
    assert!(b.contains("| standard | 90.0 ± 0.0 | 4.5 ± 0.0 |"), "{b}");
    assert!(b.contains("| s0 +2.3 [") && b.contains("; s1 -2.3 ["), "{b}");
    assert!(b.ends_with("| s0 1.000; s1 1.000 |"), "{b}");
    // GFA λ=1: more accurate than every control (no frontier value); seed 2 is paired with
    // standard's lowest seed, 0: c = 2, p = 2·1/4 = 0.5.
    let c = line(&t, "gfa λ=1");
    assert!(c.contains("| — | — | standard |") && c.ends_with("| s2↔0 0.500 |"), "{c}");
    // GFA λ=2: left of the frontier, whose most robust point (pgd_at, 14/44) holds there; 0 of
    // 14: p = 2/2^14.
    let d = line(&t, "gfa λ=2");
    assert!(d.contains("| 31.8 | -31.8 | pgd_at |") && d.ends_with("| 0.000 |"), "{d}");
    // λ=0.1 is above pgd_at beyond the interval; λ=2 below; λ=0.5 and λ=1 neither.
    assert!(t.contains("beyond the 95 % interval in every seed: gfa λ=0.1."), "{t}");
    assert!(t.contains("Of 4 GFA configurations: 1 above, 1 below beyond the interval"), "{t}");
    assert!(t.contains("2 neither, 0 without per-point outcomes"), "{t}");
    // report.md holds T7 after T6.
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.find("## T6").unwrap() < md.find("## T7").unwrap(), "{md}");
}

/// AutoAttack is the robust accuracy when every compared run has it, else the worst case.
#[test]
fn t7_takes_autoattack_only_when_every_run_has_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &runs(), |_| true);
    let t = t7(dir.path());
    assert!(t.contains("Robust accuracy: **AutoAttack at L∞ 8/255** (every compared run"), "{t}");
    // AutoAttack's row: one robust point fewer than the worst case's (20 of 44).
    assert!(line(&t, "gfa λ=0.1").contains(&wilson(20, 44).unwrap().pct(1)), "{t}");
    write(dir.path(), &runs(), |r| r.method != "gnr");
    let t = t7(dir.path());
    assert!(t.contains("Robust accuracy: **worst case over the suite at L∞ 8/255**"), "{t}");
}

/// Without controls or without GFA runs, T7 is one line saying why, and no figure is drawn.
#[test]
fn t7_is_omitted_without_controls_or_gfa_runs() {
    for (keep, why) in [
        ("gfa", "T7 is omitted: no control: every compared run trains with the GFA penalty"),
        (
            "pgd_at",
            "T7 is omitted: no compared run trains with the GFA penalty (`gfa`, `gfa_pgd_at`).",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let kept: Vec<Run> = runs().into_iter().filter(|r| r.method == keep).collect();
        write(dir.path(), &kept, |_| false);
        let t = t7(dir.path());
        assert_eq!(t.lines().filter(|l| !l.is_empty()).count(), 2, "{t}");
        assert!(t.contains(why) && !t.contains('|'), "{t}");
        let files = plot_dir(dir.path(), Format::Svg).unwrap();
        assert!(!files.iter().any(|f| f.to_string_lossy().contains("frontier")), "{files:?}");
    }
}

/// `gfa plot` draws one frontier figure per model: every configuration, the frontier's labels.
#[test]
fn the_frontier_figure_is_written() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &runs(), |_| false);
    plot_dir(dir.path(), Format::Both).unwrap();
    let figs = dir.path().join("figures");
    let svg = std::fs::read_to_string(figs.join("frontier_cnn.svg")).unwrap();
    for text in
        ["gfa", "gnr λ=0.1", "pgd_at (control)", "frontier (configuration means)", "worst case"]
    {
        assert!(svg.contains(text), "{text} missing");
    }
    let png = std::fs::read(figs.join("frontier_cnn.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
