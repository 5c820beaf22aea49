//! Attack traces: per point, at every step of an iterative attack, the value the attack drives
//! up and whether that step's iterate fooled the model. Off by default; the Indicators of Attack
//! Failure read them ([`crate::indicators`]).
//!
//! An attack that traces ([`crate::Facts::traced`]) implements
//! [`crate::Attack::perturb_traced`] with the same internal function as `perturb`, given
//! `Some(&mut Trace)` instead of `None`: recording only reads tensors the attack computed (or
//! runs an extra forward pass of its own), never draws a random number and never changes an
//! iterate, so an attack returns the same tensors, bit for bit, with its trace on or off.
//!
//! Steps are kept as device tensors and put together once, in [`Trace::finish`]: no read from
//! the device per step. A step may cover only some points (APGD drops the points it fooled,
//! restarts run on the points not fooled yet): [`Trace::within`] scopes the trace to rows of
//! the batch, and each point's trajectory is the steps it took part in, in order (restarts one
//! after the other).
use tch::{Device, Kind, Tensor};

use crate::Norm;
use crate::attack::BUDGET_TOL;
use crate::threat::per_sample_norm;

/// One recorded step: the batch rows it covers, and per row the value and the adversarial flag.
struct Step {
    /// Positions in the traced batch `[M]` int64.
    pos: Tensor,
    value: Tensor,
    adv: Tensor,
}

/// The steps of one traced attack run on a batch of `n` points.
pub struct Trace {
    n: i64,
    /// The positions, in the traced batch, of the rows of the current scope (`None`: all).
    rows: Option<Tensor>,
    steps: Vec<Step>,
    /// A minimum-norm attack's target radius ([`Trace::set_budget`]): an iterate counts as
    /// adversarial only within it.
    budget: Option<(Norm, f64)>,
}

impl Trace {
    /// An empty trace of a batch of `n` points.
    pub fn new(n: i64) -> Self {
        Self { n, rows: None, steps: Vec::new(), budget: None }
    }

    /// Count an iterate recorded with its perturbation ([`Trace::record_iterate`],
    /// [`Trace::record_iterate_where`]) as adversarial only when that perturbation's `norm` is
    /// at most `eps` (with the validator's tolerance): a minimum-norm attack traced at a target
    /// radius visits adversarial points outside it by design, and those are no success at that
    /// radius. [`crate::attack::run_traced`] sets it for a minimum-norm attack.
    pub fn set_budget(&mut self, norm: Norm, eps: f64) {
        self.budget = Some((norm, eps));
    }

    /// `adv` where the iterate's perturbation `delta` (`[M, ...]`, iterate − clean point) lies
    /// within the budget, when one is set.
    fn within_budget(&self, adv: &Tensor, delta: &Tensor) -> Tensor {
        match self.budget {
            None => adv.shallow_clone(),
            Some((norm, eps)) => {
                adv.logical_and(&per_sample_norm(delta, norm).le(eps + BUDGET_TOL))
            }
        }
    }

    /// [`Trace::record`] for an iterate whose perturbation from the clean point is `delta`
    /// (the minimum-norm attacks): with a budget set, `adv` counts only within it.
    pub fn record_iterate(&mut self, value: &Tensor, adv: &Tensor, delta: &Tensor) {
        let adv = self.within_budget(adv, delta);
        self.record(value, &adv);
    }

    /// [`Trace::record_where`] for an iterate whose perturbation is `delta`, as
    /// [`Trace::record_iterate`].
    pub fn record_iterate_where(
        &mut self,
        mask: &Tensor,
        value: &Tensor,
        adv: &Tensor,
        delta: &Tensor,
    ) {
        let adv = self.within_budget(adv, delta);
        self.record_where(mask, value, &adv);
    }

    /// Positions in the traced batch of the scope's rows `at` (`None`: every row of the scope).
    fn positions(&self, at: Option<&Tensor>, len: i64, device: Device) -> Tensor {
        match (&self.rows, at) {
            (None, None) => Tensor::arange(len, (Kind::Int64, device)),
            (None, Some(at)) => at.shallow_clone(),
            (Some(rows), None) => rows.shallow_clone(),
            (Some(rows), Some(at)) => rows.index_select(0, at),
        }
    }

    /// One step of every row of the current scope: `value` `[M]` float, `adv` `[M]` bool.
    pub fn record(&mut self, value: &Tensor, adv: &Tensor) {
        let pos = self.positions(None, value.size()[0], value.device());
        self.push(pos, value, adv);
    }

    /// One step of the rows `at` (`[K]` int64 positions in the current scope).
    pub fn record_at(&mut self, at: &Tensor, value: &Tensor, adv: &Tensor) {
        let pos = self.positions(Some(at), value.size()[0], value.device());
        self.push(pos, value, adv);
    }

    /// One step of the rows of the current scope where `mask` (`[M]` bool) holds; the others
    /// did not take part in it (CW and EAD stop points that no longer improve).
    pub fn record_where(&mut self, mask: &Tensor, value: &Tensor, adv: &Tensor) {
        let absent = Tensor::full_like(value, f64::NAN);
        self.record(&value.where_self(mask, &absent), &adv.logical_and(mask));
    }

    /// Keep copies: an attack may later change its tensors in place.
    fn push(&mut self, pos: Tensor, value: &Tensor, adv: &Tensor) {
        let value = value.detach().to_kind(Kind::Double).copy();
        let adv = adv.detach().to_kind(Kind::Bool).copy();
        self.steps.push(Step { pos: pos.copy(), value, adv });
    }

    /// Run `f` with the trace scoped to the rows `rows` (`[K]` int64 positions in the current
    /// scope): what `f` records at its row `k` is recorded at the traced batch's row
    /// `rows[k]`.
    pub fn within<R>(&mut self, rows: &Tensor, f: impl FnOnce(&mut Trace) -> R) -> R {
        let outer = self.rows.take();
        self.rows = Some(match &outer {
            None => rows.shallow_clone(),
            Some(o) => o.index_select(0, rows),
        });
        let out = f(self);
        self.rows = outer;
        out
    }

    /// [`Trace::within`] for an optional trace: `f` gets the scoped trace, or `None`.
    pub fn scoped<R>(
        trace: Option<&mut Trace>,
        rows: &Tensor,
        f: impl FnOnce(Option<&mut Trace>) -> R,
    ) -> R {
        match trace {
            Some(t) => t.within(rows, |t| f(Some(t))),
            None => f(None),
        }
    }

    /// Put the steps together: one scatter on the device, one copy to the host.
    pub fn finish(self) -> Traced {
        let (n, t) = (self.n, self.steps.len() as i64);
        if t == 0 || n == 0 {
            return Traced { n: n as usize, steps: 0, value: vec![], adv: vec![] };
        }
        let device = self.steps[0].value.device();
        let flat: Vec<Tensor> =
            self.steps.iter().enumerate().map(|(k, s)| &s.pos + k as i64 * n).collect();
        let flat = Tensor::cat(&flat, 0);
        let values: Vec<&Tensor> = self.steps.iter().map(|s| &s.value).collect();
        let advs: Vec<&Tensor> = self.steps.iter().map(|s| &s.adv).collect();
        let value = Tensor::full([t * n], f64::NAN, (Kind::Double, device)).index_put(
            &[Some(&flat)],
            &Tensor::cat(&values, 0),
            false,
        );
        let adv = Tensor::zeros([t * n], (Kind::Bool, device)).index_put(
            &[Some(&flat)],
            &Tensor::cat(&advs, 0),
            false,
        );
        let host = |v: &Tensor| v.to_device(Device::Cpu);
        Traced {
            n: n as usize,
            steps: t as usize,
            value: Vec::try_from(&host(&value)).unwrap_or_default(),
            adv: Vec::try_from(&host(&adv)).unwrap_or_default(),
        }
    }
}

/// A finished trace on the host: `steps` × `n`, step-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Traced {
    pub n: usize,
    pub steps: usize,
    /// The value per step and point; NaN where the point did not take part.
    value: Vec<f64>,
    adv: Vec<bool>,
}

impl Traced {
    /// Point `i`'s trajectory: its values at the steps it took part in, in order.
    pub fn values(&self, i: usize) -> Vec<f64> {
        (0..self.steps).map(|t| self.value[t * self.n + i]).filter(|v| !v.is_nan()).collect()
    }

    /// Per point, whether any step's iterate fooled the model.
    pub fn any_adversarial(&self) -> Vec<bool> {
        (0..self.n).map(|i| (0..self.steps).any(|t| self.adv[t * self.n + i])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[f64]) -> Tensor {
        Tensor::from_slice(v)
    }
    fn b(v: &[bool]) -> Tensor {
        Tensor::from_slice(v)
    }

    /// Scoped, partial and masked steps land at the traced batch's rows, in order.
    #[test]
    fn steps_land_at_their_rows() {
        let mut t = Trace::new(4);
        t.record(&f(&[0.0, 1.0, 2.0, 3.0]), &b(&[false, false, true, false]));
        let rest = Tensor::from_slice(&[0i64, 1, 3]);
        t.within(&rest, |t| {
            // Row 2 of the scope is row 3 of the batch.
            t.record_at(&Tensor::from_slice(&[2i64]), &f(&[30.0]), &b(&[true]));
            let inner = Tensor::from_slice(&[1i64, 2]);
            t.within(&inner, |t| {
                t.record_where(&b(&[true, false]), &f(&[11.0, 99.0]), &b(&[false, true]))
            });
        });
        let d = t.finish();
        assert_eq!(d.steps, 3);
        assert_eq!(d.values(0), vec![0.0]);
        assert_eq!(d.values(1), vec![1.0, 11.0]);
        assert_eq!(d.values(2), vec![2.0]);
        assert_eq!(d.values(3), vec![3.0, 30.0]);
        assert_eq!(d.any_adversarial(), vec![false, false, true, true]);
    }

    #[test]
    fn an_empty_trace_has_no_steps() {
        let d = Trace::new(3).finish();
        assert_eq!((d.steps, d.values(0), d.any_adversarial()), (0, vec![], vec![false; 3]));
    }
}
