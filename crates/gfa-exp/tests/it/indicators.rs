//! A run's Indicators of Attack Failure (`gfa_exp::run::indicators`, `indicators.csv`): the
//! rows a healthy and a dead model get, the points they are measured on, and the CSV.
use std::path::Path;

use gfa_attacks::transfer::NoSurrogates;
use gfa_core::models::Arch;
use gfa_core::{Classifier, ModelSpec, seed};
use gfa_exp::config::grid::{ExperimentSpec, RunSpec};
use gfa_exp::results::records::{IndicatorRow, read_rows, write_rows};
use gfa_exp::run::batches::Suite;
use gfa_exp::run::indicators::{Probe, indicator_rows};
use gfa_exp::run::stages::{grad_health, indicator_points};
use tch::{Device, Kind, Tensor};

/// A one-run grid with PGD and FGSM at two budgets and the given `[indicators]` section.
fn run_with(indicators: &str) -> RunSpec {
    let text = format!(
        "experiment = \"ind\"\n[base]\ndata = {{ source = \"synthetic\", n_train = 64 }}\n\
         eval = {{ n = 48, batch_size = 16 }}\n[[attacks]]\nkind = \"fgsm\"\neps = [\"2/255\", \
         \"8/255\"]\n[[attacks]]\nkind = \"pgd\"\nsteps = 5\neps = [\"2/255\", \"8/255\"]\n\
         {indicators}"
    );
    ExperimentSpec::parse(Path::new("ind.toml"), &text, &[]).unwrap().expand().unwrap().remove(0)
}

fn linear(zero: bool) -> Classifier {
    seed::seed_all(3);
    let spec = ModelSpec { arch: Arch::Linear, ..ModelSpec::default() };
    let m = Classifier::new(&spec, Device::Cpu).unwrap();
    if zero {
        tch::no_grad(|| {
            for (name, mut v) in m.vs.variables() {
                if !name.contains("norm") {
                    let _ = v.fill_(0.0);
                }
            }
        });
    }
    m
}

/// The rows of `model` on 48 synthetic-sized points, labels its own predictions but for the
/// first 8 (shifted by one class: misclassified, never measured).
fn rows_of(run: &RunSpec, model: &Classifier) -> (Vec<IndicatorRow>, i64) {
    let mut g = gfa_core::seed::rng_for(1, "points");
    let x = gfa_attacks::threat::uniform(&[48, 3, 32, 32], &mut g, Device::Cpu);
    let pred = tch::no_grad(|| model.logits(&x, false)).argmax(1, false);
    let shift = Tensor::cat(
        &[Tensor::ones([8], (Kind::Int64, Device::Cpu)), pred.zeros_like().narrow(0, 0, 40)],
        0,
    );
    let y = (pred + shift).remainder(10);
    let config = run.indicators.as_ref().unwrap();
    let (ix, iy) = indicator_points(model, (&x, &y), None, config.n, &run.config.eval);
    let suite = Suite {
        attacks: &run.attacks,
        eval: &run.config.eval,
        seed: run.seed,
        surrogates: &NoSurrogates,
    };
    let grad = Some(grad_health(model, &x, &y, 16));
    let key = run.key();
    let probe = Probe { model, x: &ix, y: &iy, suite, config, grad, key: &key };
    (indicator_rows(&probe).unwrap(), ix.size()[0])
}

fn find<'a>(rows: &'a [IndicatorRow], indicator: &str, eps: &str) -> &'a IndicatorRow {
    rows.iter()
        .find(|r| r.indicator == indicator && r.eps_text == eps)
        .unwrap_or_else(|| panic!("no {indicator} {eps} row: {rows:#?}"))
}

/// A model whose output ignores its input has unavailable gradients on every point and
/// fails the unconstrained PGD on every point it classifies correctly; a healthy linear model
/// on neither. Only PGD (traced) gets per-budget rows, FGSM (no trace) none; the unconstrained
/// attack is PGD (the most work per point); the measured points are the first `n` correctly
/// classified ones.
#[test]
fn a_dead_model_flags_gradients_and_the_unbounded_attack_and_a_healthy_one_does_not() {
    let run = run_with("[indicators]\nn = 30\nsamples = 20\n");
    let (dead, n_dead) = rows_of(&run, &linear(true));
    let (healthy, n_healthy) = rows_of(&run, &linear(false));
    assert_eq!((n_dead, n_healthy), (30, 30));
    for rows in [&dead, &healthy] {
        // PGD at two budgets × 3 indicators, the unconstrained run, the gradients.
        assert_eq!(rows.len(), 2 * 3 + 2, "{rows:#?}");
        assert!(rows.iter().all(|r| r.attack != "fgsm"), "{rows:#?}");
        let u = find(rows, "unconstrained_attack_failure", "unbounded");
        assert_eq!((u.attack.as_str(), u.eps, u.n), ("pgd", Some(1.0), 30));
    }
    let g = find(&dead, "unavailable_gradients", "");
    assert_eq!((g.n, g.flagged, g.result.as_str()), (48, 48, "flag"));
    assert_eq!(find(&dead, "unconstrained_attack_failure", "unbounded").flagged, 30);
    assert_eq!(find(&dead, "unconstrained_attack_failure", "unbounded").fraction, Some(1.0));
    let g = find(&healthy, "unavailable_gradients", "");
    assert_eq!((g.flagged, g.result.as_str()), (0, "pass"));
    let u = find(&healthy, "unconstrained_attack_failure", "unbounded");
    assert_eq!((u.flagged, u.result.as_str()), (0, "pass"));
    // The dead model's loss ignores its input: nothing unstable, no silent success.
    for eps in ["2/255", "8/255"] {
        assert_eq!(find(&dead, "unstable_predictions", eps).flagged, 0);
        assert_eq!(find(&dead, "silent_success", eps).flagged, 0);
        assert_eq!(find(&dead, "silent_success", eps).threshold, 0.05);
    }
}

/// Without `attacks`, every traced entry of the suite is read; `n` larger than the correctly
/// classified points takes them all.
#[test]
fn the_default_reads_every_traced_attack() {
    let run = run_with("[indicators]\nsamples = 5\n");
    assert!(run.indicators.as_ref().is_some_and(|c| c.attacks.is_empty() && c.n == 100));
    let (rows, n) = rows_of(&run, &linear(false));
    assert_eq!(n, 40);
    assert_eq!(rows.iter().filter(|r| r.attack == "pgd").count(), 2 * 3 + 1);
}

/// A grid's `[indicators]` section is part of its runs: the run id changes with it and the
/// run's config.toml records it.
#[test]
fn the_section_is_part_of_the_run() {
    let with = run_with("[indicators]\nn = 30\n");
    let without = run_with("");
    assert_ne!(with.run_id, without.run_id);
    assert!(with.config_toml().contains("[indicators]\nn = 30"), "{}", with.config_toml());
    assert!(!without.config_toml().contains("indicators"));
}

/// indicators.csv rows read back equal, budgets and fractions bit for bit.
#[test]
fn indicator_rows_round_trip_through_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_with("[indicators]\nn = 30\nsamples = 5\n");
    let (rows, _) = rows_of(&run, &linear(false));
    let mut rows = rows;
    rows[0].fraction = Some(1.0 / 3.0);
    rows[0].eps = Some(8.0 / 255.0);
    let p = dir.path().join("indicators.csv");
    write_rows(&p, &rows).unwrap();
    let back: Vec<IndicatorRow> = read_rows(&p).unwrap();
    assert_eq!(back, rows);
}
