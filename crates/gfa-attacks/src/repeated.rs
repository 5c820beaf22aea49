//! Restarts as a combinator: run an attack again on the points it has not fooled yet, keeping
//! per sample the first adversarial point found (foolbox `Repeated`, auto-attack's restart loop
//! in `APGDAttack.perturb`). Restarts combine per sample, never by "best loss" (docs/attacks.md §1.8).
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use tch::{Kind, Tensor};

use crate::attack::{Attack, Family};
use crate::trace::Trace;
use crate::{Norm, Result};

/// Predicted classes in eval mode without a graph.
///
/// # Shapes
/// `x`: `[N, ...]` → `[N]` int64.
pub fn predict(model: &Classifier, x: &Tensor) -> Tensor {
    tch::no_grad(|| model.logits(x, false)).argmax(1, false)
}

/// Indices `[M]` (int64) where the bool mask `[N]` holds (one device→host read).
pub fn indices(mask: &Tensor) -> Tensor {
    gfa_core::transfer::positions(mask)
}

/// The positions where the bool mask `[N]` holds and those where it does not, each ascending,
/// with one device→host read (the count); `None` when it holds nowhere.
///
/// # Shapes
/// `mask`: `[N]` → (`[M]`, `[N − M]`) int64.
pub fn split(mask: &Tensor) -> Option<(Tensor, Tensor)> {
    let m = gfa_core::transfer::read_i64(&mask.sum(Kind::Int64));
    if m == 0 {
        return None;
    }
    // A stable sort of the mask puts the positions where it does not hold first, then those
    // where it holds, each in ascending order.
    let order = mask.to_kind(Kind::Uint8).argsort_stable(true, 0, false);
    let n = order.size()[0];
    Some((order.narrow(0, n - m, m), order.narrow(0, 0, n - m)))
}

/// Run `single` up to `restarts` times, each time only on the points still classified correctly,
/// and keep for every point the first restart that fools it. Points misclassified at `x` are
/// never attacked and come back unchanged. Returns the adversarial batch and the summed queries.
/// With a `trace`, each run records its steps at the rows it attacks ([`Trace::within`]).
///
/// # Shapes
/// `x`: `[N, ...]`, `y`: `[N]` → (`[N, ...]`, `[N]` int64).
pub fn run_restarts(
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    restarts: usize,
    rng: &mut SeededRng,
    mut trace: Option<&mut Trace>,
    mut single: impl FnMut(
        &Tensor,
        &Tensor,
        &mut SeededRng,
        Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)>,
) -> Result<(Tensor, Tensor)> {
    let n = x.size()[0];
    let mut x_adv = x.detach().copy();
    let mut queries = Tensor::zeros([n], (Kind::Int64, x.device()));
    let mut robust = predict(model, x).eq_tensor(y);
    for _ in 0..restarts {
        let idx = indices(&robust);
        if idx.numel() == 0 {
            break;
        }
        let (xs, ys) = (x.index_select(0, &idx), y.index_select(0, &idx));
        let (adv, q) = Trace::scoped(trace.as_deref_mut(), &idx, |t| single(&xs, &ys, rng, t))?;
        let fooled = predict(model, &adv).ne_tensor(&ys);
        let keep = crate::threat::per_sample(&fooled, &adv);
        let merged = adv.where_self(&keep, &xs);
        x_adv = x_adv.index_copy(0, &idx, &merged);
        queries = queries.index_add(0, &idx, &q.to_kind(Kind::Int64));
        robust = robust.index_copy(0, &idx, &fooled.logical_not());
    }
    Ok((x_adv, queries))
}

/// Any attack, restarted on the points it has not fooled yet.
#[derive(Debug)]
pub struct Repeated {
    pub inner: Box<dyn Attack>,
    pub restarts: usize,
}

impl Repeated {
    pub fn new(inner: Box<dyn Attack>, restarts: usize) -> Self {
        Self { inner, restarts }
    }
}

impl Attack for Repeated {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn family(&self) -> Family {
        self.inner.family()
    }
    fn norm(&self) -> Norm {
        self.inner.norm()
    }
    fn config_json(&self) -> String {
        format!("{{\"restarts\":{},\"inner\":{}}}", self.restarts, self.inner.config_json())
    }
    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
    ) -> Result<(Tensor, Tensor)> {
        run_restarts(model, x, y, self.restarts, rng, None, |xs, ys, r, _| {
            self.inner.perturb(model, xs, ys, eps, r)
        })
    }
}
