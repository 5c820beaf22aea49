//! What a run costs, in image-gradients (forward + backward of one image; a forward alone counts
//! [`FORWARD_COST`]), the totals that compare runs (`est_cost_mgrad` in `manifest.csv`), and the
//! counts `gfa plan` multiplies by its calibration (`cli::calibrate`) to predict hours and wall
//! time, by which `gfa run` orders its runs: the training images a run's steps take
//! ([`train_images`], times the timed step per image of its recipe) and the evaluation's
//! image-gradients ([`eval_cost`], times the timed attack gradient of its model).
//!
//! - **Training**: epochs × training images × the method's gradients per step
//!   ([`gfa_core::TrainMethod::grads_per_step`]), plus each epoch's forward pass over the test
//!   images (its test accuracy).
//! - **Evaluation**: the clean forward pass over the `eval.n` points; each attack on the points
//!   it attacks — the points the model classifies correctly (with `subset = "all_correct"`, the
//!   points every compared model does) — at each of its budgets (a minimum-norm attack once), at
//!   its cost per point by outcome ([`gfa_attacks::PointCost`]: attacks that stop on fooled
//!   points spend little on them); with `eval.individual = false`, the attacks after the first
//!   of a budget's pass only on the points the earlier ones left; the loss landscape's forward
//!   passes; the Indicators of Attack Failure's runs on their points; the binarization test's
//!   samples and attack.
//!
//! How many points a model classifies correctly and how many resist the attacks is not known
//! before training: the evaluation's cost assumes [`ASSUMED`] and `gfa plan` says so.

use gfa_attacks::facts::FORWARD_COST;

use crate::config::grid::RunSpec;
use crate::config::spec::{AttackEntry, DataSource};

/// What the evaluation's cost assumes about models not trained yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assumptions {
    /// The share of the `eval.n` points a model classifies correctly, the points its attacks
    /// run on; the all-correct subset of several models is taken as large (at most it is the
    /// smallest of their correct sets).
    pub clean: f64,
    /// The share of those points that every attack fails on (robust at the attack's budget); a
    /// minimum-norm attack, searching without a budget, is taken to fool every point.
    pub robust: f64,
}

/// Half the points classified correctly, half of those robust: the middle of the range, from a
/// collapsed model (7 % clean accuracy in `make quick`) to a standard CIFAR-10 one (over 90 %)
/// and from no robust point (standard training) to most (adversarial training at small budgets).
pub const ASSUMED: Assumptions = Assumptions { clean: 0.5, robust: 0.5 };

impl Assumptions {
    /// The assumption in words, for `gfa plan`'s output.
    pub fn describe(&self) -> String {
        format!(
            "models classify {:.0} % of the evaluation points correctly (an all-correct subset \
             as many) and {:.0} % of those resist every attack",
            100.0 * self.clean,
            100.0 * self.robust
        )
    }
}

/// Cost of a run in millions of image-gradients: [`estimate_train_cost`] +
/// [`estimate_eval_cost`]. Architecture size is not included (the calibration times it).
pub fn estimate_cost(run: &RunSpec) -> f64 {
    estimate_train_cost(run) + estimate_eval_cost(run)
}

/// The training part of [`estimate_cost`], in millions of image-gradients.
pub fn estimate_train_cost(run: &RunSpec) -> f64 {
    use gfa_core::TrainMethod;
    let steps = train_images(run) * run.config.method.grads_per_step();
    (steps + validation_grads(run) + test_forwards(run) * FORWARD_COST) / 1e6
}

/// The training images a run's steps take: epochs × the training split (synthetic data is drawn
/// at the size asked for; a real split is cut to it) less the images `[train] validation` holds
/// out, cut by `train.stop_after_steps`.
pub fn train_images(run: &RunSpec) -> f64 {
    let d = &run.config.data;
    let t = &run.config.train;
    let n = match (d.source, d.n_train) {
        (DataSource::Synthetic, Some(n)) => n,
        (source, n) => n.unwrap_or(usize::MAX).min(source.train_len()),
    };
    let n = n.saturating_sub(t.validation.as_ref().map_or(0, |v| v.n));
    let images = (n * t.epochs) as f64;
    match t.stop_after_steps {
        Some(s) => images.min((s * t.batch_size) as f64),
        None => images,
    }
}

/// Image-gradients of the robust checkpoint's measurement (`[train] validation`): PGD's steps and
/// a clean pass on the held-out images, every `every` epochs and after the last.
fn validation_grads(run: &RunSpec) -> f64 {
    let t = &run.config.train;
    t.validation.as_ref().map_or(0.0, |v| {
        let times = (t.epochs as f64 / v.every.max(1) as f64).ceil();
        times * (v.n * (v.steps + 1)) as f64
    })
}

/// The forward passes of each epoch's test accuracy: epochs × the test points.
pub fn test_forwards(run: &RunSpec) -> f64 {
    (run.config.data.test_len() * run.config.train.epochs) as f64
}

/// The evaluation part of [`estimate_cost`] under [`ASSUMED`], in millions of image-gradients.
pub fn estimate_eval_cost(run: &RunSpec) -> f64 {
    eval_cost(run, &ASSUMED) / 1e6
}

/// Image-gradients of `run`'s evaluation stage under `assumed`: the clean pass, the attack
/// suite on the points it attacks, the loss landscape, the indicators, the binarization test.
pub fn eval_cost(run: &RunSpec, assumed: &Assumptions) -> f64 {
    let n = run.config.eval.n as f64;
    let attacked = n * assumed.clean;
    let suite = suite_cost(&run.attacks, attacked, assumed.robust, run.config.eval.individual);
    n * FORWARD_COST
        + suite
        + landscape_cost(run)
        + indicators_cost(run, attacked)
        + binarize_cost(run)
}

/// Image-gradients of the binarization test: per tested point, a forward pass of each training
/// and validation sample through the features (an unset `inner` counted at the reference's 999,
/// an upper estimate for a model with fewer features) and the attack under test on the
/// binarized model, at its cost per point. The head's training on features is not counted.
fn binarize_cost(run: &RunSpec) -> f64 {
    run.binarize.as_ref().map_or(0.0, |b| {
        let o = &b.options;
        let inner = o.inner.unwrap_or(gfa_attacks::binarize::REFERENCE_INNER);
        let samples = (inner + o.boundary + 2 * o.validation) as f64;
        b.n as f64 * (samples * FORWARD_COST + b.attack.spec.cost_per_point())
    })
}

/// Image-gradients of the Indicators of Attack Failure: their runs on the first `n` of the
/// `attacked` points (those the model classifies correctly), at the full cost per point
/// ([`crate::config::spec::IndicatorsConfig::cost_per_point`]: traced attacks, the unconstrained
/// run, the random points of unstable predictions).
fn indicators_cost(run: &RunSpec, attacked: f64) -> f64 {
    run.indicators
        .as_ref()
        .map_or(0.0, |i| (i.n as f64).min(attacked) * i.cost_per_point(&run.attacks))
}

/// Image-gradients of the attack suite `attacks` on `points` points, of which a share `robust`
/// resists every fixed-budget attack (the evaluation's order: [`gfa_attacks::eval`]). A
/// minimum-norm attack runs once and fools every point; a fixed-budget attack runs at each of
/// its budgets on every point when `individual`, else (cumulative rows only) the first attack of
/// a budget's pass on every point and each later one on the robust share, which it fails on.
pub fn suite_cost(attacks: &[AttackEntry], points: f64, robust: f64, individual: bool) -> f64 {
    let min_norm: f64 = attacks
        .iter()
        .filter(|a| a.spec.facts().minimum_norm())
        .map(|a| points * a.spec.point_cost().fooled)
        .sum();
    let mut fixed = 0.0;
    for members in passes(attacks) {
        for (k, a) in members.iter().enumerate() {
            let cost = a.spec.point_cost();
            fixed += match individual || k == 0 {
                true => points * cost.expected(robust),
                false => points * robust * cost.robust,
            };
        }
    }
    min_norm + fixed
}

/// The fixed-budget entries of `attacks` by pass: per threat model and budget, in the order
/// they first appear, the entries listing that budget (as [`gfa_attacks::eval`] runs them).
fn passes(attacks: &[AttackEntry]) -> Vec<Vec<&AttackEntry>> {
    let mut out: Vec<(&str, &str, Vec<&AttackEntry>)> = Vec::new();
    for a in attacks.iter().filter(|a| !a.spec.facts().minimum_norm()) {
        for e in &a.eps {
            match out.iter_mut().find(|(n, t, _)| *n == a.norm && *t == e.text) {
                Some((_, _, members)) => members.push(a),
                None => out.push((&a.norm, &e.text, vec![a])),
            }
        }
    }
    out.into_iter().map(|(_, _, members)| members).collect()
}

/// Image-gradients of the loss landscape: one input gradient per point and a forward pass per
/// point and grid position.
fn landscape_cost(run: &RunSpec) -> f64 {
    run.landscape.as_ref().map_or(0.0, |l| {
        let grid = (l.steps * l.steps) as f64;
        l.n as f64 * (1.0 + grid * FORWARD_COST)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::grid::ExperimentSpec;

    /// The runs of an experiment file's text.
    fn runs(text: &str) -> Vec<RunSpec> {
        ExperimentSpec::parse(Path::new("cost.toml"), text, &[]).unwrap().expand().unwrap()
    }

    const BASE: &str = "experiment = \"cost\"\nseeds = [0]\n[base]\ndata = { source = \
                        \"synthetic\", n_train = 100 }\ntrain = { epochs = 1 }\n";

    /// Every cost here is a sum of products of small integers and powers of two (the assumed
    /// shares 1/2 and 1/4, [`gfa_attacks::facts::FOOLED_SHARE`] = 1/8), so float64 holds each
    /// exactly, on every CPU: the sums compare bit for bit.
    const SUITE: &str = "
[[attacks]]
kind = \"fgsm\"
eps = [\"2/255\", \"8/255\"]

[[attacks]]
kind = \"pgd\"
steps = 10
restarts = 3
eps = [\"8/255\"]

[[attacks]]
kind = \"apgd-ce\"
n_iter = 16
eps = [\"8/255\"]

[[attacks]]
kind = \"deepfool\"
norm = \"l2\"
steps = 8
eps = [\"0.25\", \"0.5\"]
";

    /// The suite's cost counts, per attack and budget, the points it runs on and what a fooled
    /// and a robust point cost it: FGSM 1 gradient whatever the outcome; PGD-10 with 3 restarts
    /// 10 on a fooled point (its first run), 30 on a robust one; APGD-CE with 16 iterations 2
    /// (an eighth) on a fooled point, 16 on a robust one; DeepFool (8 steps × 10 candidate
    /// classes, minimum norm) once for both its budgets, 10 per point (an eighth), fooling all.
    #[test]
    fn suite_cost_counts_points_by_outcome() {
        let run = &runs(&format!("{BASE}eval = {{ n = 400 }}\n{SUITE}"))[0];
        let (points, robust) = (200.0, 0.25);
        let fgsm = 2.0 * points;
        let pgd = points * (0.75 * 10.0 + 0.25 * 30.0);
        let apgd = points * (0.75 * 2.0 + 0.25 * 16.0);
        let deepfool = points * 10.0;
        let want = fgsm + pgd + apgd + deepfool;
        assert_eq!(suite_cost(&run.attacks, points, robust, true), want);
        // Cumulative rows only: at 8/255, FGSM (first of the pass) on every point; PGD and
        // APGD-CE on the robust quarter, paying their whole budget there.
        let cumulative = fgsm + points * 0.25 * 30.0 + points * 0.25 * 16.0 + deepfool;
        assert_eq!(suite_cost(&run.attacks, points, robust, false), cumulative);
        // Every point robust: each fixed-budget attack's whole budget on every point.
        let most = fgsm + points * 30.0 + points * 16.0 + deepfool;
        assert_eq!(suite_cost(&run.attacks, points, 1.0, true), most);
    }

    /// The attacks of an evaluation run on the assumed share of correctly classified points,
    /// for an all-correct subset as for all points, and the clean pass on every point: the
    /// suite's cost does not grow with `eval.n` beyond that share.
    #[test]
    fn evaluation_attacks_the_assumed_correct_points_of_either_subset() {
        let grid = format!(
            "{BASE}eval = {{ n = 400 }}\n[grid]\n\"eval.subset\" = [\"all\", \"all_correct\"]\n\
             method = [{{ kind = \"standard\" }}, {{ kind = \"pgd_at\" }}]\n{SUITE}"
        );
        let runs = runs(&grid);
        assert_eq!(runs.len(), 4);
        let assumed = Assumptions { clean: 0.5, robust: 0.25 };
        for run in &runs {
            let suite = suite_cost(&run.attacks, 200.0, 0.25, true);
            let clean_pass = 400.0 * FORWARD_COST;
            assert_eq!(eval_cost(run, &assumed), clean_pass + suite, "{}", run.axes_text());
        }
        // All points correct and robust: every attack's whole budget on all 400 points.
        let worst = Assumptions { clean: 1.0, robust: 1.0 };
        let suite = suite_cost(&runs[0].attacks, 400.0, 1.0, true);
        assert_eq!(eval_cost(&runs[0], &worst), 400.0 * FORWARD_COST + suite);
    }

    /// A landscape adds one gradient and steps² forward passes per point; training counts
    /// epochs × images × the method's gradients per step plus the per-epoch test pass.
    #[test]
    fn landscape_and_training_counts() {
        let text = format!(
            "{BASE}eval = {{ n = 8 }}\ndata = {{ source = \"synthetic\", n_train = 96, n_test = \
             48 }}\n[base.method]\nkind = \"pgd_at\"\nsteps = 3\n[landscape]\nn = 12\nsteps = \
             3\n"
        )
        .replace("[base]\ndata = { source = \"synthetic\", n_train = 100 }\n", "[base]\n");
        let run = &runs(&text)[0];
        let none = ASSUMED;
        let landscape = 12.0 * (1.0 + 9.0 * FORWARD_COST);
        assert_eq!(eval_cost(run, &none), 8.0 * FORWARD_COST + landscape);
        let train = (96.0 * 4.0 + 48.0 * FORWARD_COST) * 1.0 / 1e6;
        assert_eq!(estimate_train_cost(run), train);
    }
}
