//! The binarization test of a trained model (`gfa binarize`, `gfa run` with a `[binarize]` table,
//! `gfa escalate` with `[escalate] binarize`): [`gfa_attacks::binarize`] on the first test points,
//! as the rows of `binarization.csv` (one per point, then the summary with the pass rate).

use anyhow::Result;
use gfa_attacks::binarize::{Outcome, PointOutcome, binarization_test};
use gfa_core::Classifier;
use tch::Tensor;

use crate::analysis::binarization::summary_row;
use crate::config::binarize::Binarize;
use crate::results::records::{BinarizationRow, RunKey};

/// The test's settings as written in the rows' `settings` column (`inner`: the samples used).
fn settings(b: &Binarize, inner: Option<usize>) -> String {
    let o = &b.options;
    serde_json::json!({
        "boundary": o.boundary,
        "inner": inner.or(o.inner),
        "lr": o.lr,
        "steps": o.steps,
        "validation": o.validation,
    })
    .to_string()
}

/// One point's row.
fn point_row(p: &PointOutcome, base: &BinarizationRow) -> BinarizationRow {
    BinarizationRow {
        index: Some(p.index),
        label: Some(p.label),
        result: p.outcome.name().into(),
        train_acc: Some(p.train_acc),
        val_inner_acc: p.val_inner_acc,
        val_boundary_acc: p.val_boundary_acc,
        adv_norm: p.adv_norm,
        detail: match &p.outcome {
            Outcome::Invalid(why) => why.clone(),
            _ => String::new(),
        },
        seconds: p.seconds,
        ..base.clone()
    }
}

/// Run `b`'s test on the first `b.n` points of `(x, y)` (the test split's head) and return the
/// rows of `binarization.csv` (the points, then the summary) and the model, unchanged.
/// `progress` sees each finished point.
pub fn binarization_rows(
    model: Classifier,
    (x, y): (&Tensor, &Tensor),
    b: &Binarize,
    key: &RunKey,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<BinarizationRow>, Classifier)> {
    let n = (b.n as i64).min(x.size()[0]);
    let (x, y) = (x.narrow(0, 0, n), y.narrow(0, 0, n));
    let device = gfa_core::device::device_name(model.device());
    let (outcomes, model) =
        binarization_test(model, &x, &y, &b.attack.spec, &b.options, seed, progress)?;
    let base = BinarizationRow {
        attack: b.attack.name.clone(),
        kind: b.attack.kind.clone(),
        preset: b.attack.preset.clone(),
        attack_config: b.attack.spec.build()?.config_json(),
        norm: b.attack.norm.clone(),
        eps_text: b.eps.text.clone(),
        eps: b.eps.value,
        settings: settings(b, outcomes.first().map(|p| p.inner)),
        device,
        ..BinarizationRow::keyed(key)
    };
    let mut rows: Vec<BinarizationRow> = outcomes.iter().map(|p| point_row(p, &base)).collect();
    rows.extend(summary_row(&rows));
    Ok((rows, model))
}
