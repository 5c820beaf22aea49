//! SGD and Adam written on tensors with the update rules of `torch.optim.SGD` and
//! `torch.optim.Adam` (PyTorch 2.11, single-tensor path, `dampening = 0`, L2 weight decay added
//! to the gradient, not AdamW), so that their state — momentum buffers, moments and the step
//! count — is plain named tensors saved with the checkpoint, and a resumed run is exact.
//!
//! Parameters are the model's trainable variables (`requires_grad`), in name order.
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::classifier::Classifier;
use crate::{CoreError, Result};

/// The `[train.optimizer]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    Sgd {
        lr: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        weight_decay: f64,
        #[serde(default)]
        nesterov: bool,
    },
    Adam {
        lr: f64,
        #[serde(default = "adam_betas")]
        betas: [f64; 2],
        #[serde(default = "adam_eps")]
        eps: f64,
        #[serde(default)]
        weight_decay: f64,
    },
}

fn adam_betas() -> [f64; 2] {
    [0.9, 0.999]
}

fn adam_eps() -> f64 {
    1e-8
}

impl Default for OptimizerConfig {
    /// SGD, lr 0.1, momentum 0.9, weight decay 5e-4: the CIFAR-10 reference of docs/method.md §3
    /// (Rice et al. 2020; Madry et al. 2018).
    fn default() -> Self {
        OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: false }
    }
}

impl OptimizerConfig {
    /// Adam at learning rate `lr` with the TOML defaults of its other keys (PyTorch's: betas
    /// (0.9, 0.999), eps 1e-8, no weight decay).
    pub fn adam(lr: f64) -> Self {
        OptimizerConfig::Adam { lr, betas: adam_betas(), eps: adam_eps(), weight_decay: 0.0 }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } => *lr,
        }
    }

    /// Checks the values; an error names the key (`train.optimizer.lr`) and the valid range.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, m: String| Err(CoreError::invalid(format!("train.optimizer.{key}"), m));
        let lr = self.lr();
        if !(lr > 0.0 && lr.is_finite()) {
            return bad("lr", format!("must be a positive number, got {lr}"));
        }
        match self {
            OptimizerConfig::Sgd { momentum, weight_decay, nesterov, .. } => {
                if !(0.0..1.0).contains(momentum) {
                    return bad("momentum", format!("must be in [0, 1), got {momentum}"));
                }
                if *nesterov && *momentum == 0.0 {
                    return bad("nesterov", "needs momentum > 0".into());
                }
                if weight_decay.is_nan() || *weight_decay < 0.0 {
                    return bad("weight_decay", format!("must be ≥ 0, got {weight_decay}"));
                }
            }
            OptimizerConfig::Adam { betas, eps, weight_decay, .. } => {
                if betas.iter().any(|b| !(0.0..1.0).contains(b)) {
                    return bad("betas", format!("must be in [0, 1), got {betas:?}"));
                }
                if eps.is_nan() || *eps <= 0.0 {
                    return bad("eps", format!("must be positive, got {eps}"));
                }
                if weight_decay.is_nan() || *weight_decay < 0.0 {
                    return bad("weight_decay", format!("must be ≥ 0, got {weight_decay}"));
                }
            }
        }
        Ok(())
    }
}

/// An optimizer over a model's trainable variables.
#[derive(Debug)]
pub struct Optimizer {
    pub cfg: OptimizerConfig,
    params: Vec<(String, Tensor)>,
    /// SGD: one momentum buffer per parameter; Adam: first then second moments.
    state: Vec<Vec<Tensor>>,
    /// Number of `step` calls so far (Adam's t; SGD uses it to initialize the buffers).
    steps: i64,
}

impl Optimizer {
    pub fn new(cfg: &OptimizerConfig, model: &Classifier) -> Result<Self> {
        cfg.validate()?;
        let mut params: Vec<(String, Tensor)> =
            model.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = match cfg {
            OptimizerConfig::Sgd { momentum, .. } if *momentum == 0.0 => 0,
            OptimizerConfig::Sgd { .. } => 1,
            OptimizerConfig::Adam { .. } => 2,
        };
        let state =
            params.iter().map(|(_, p)| (0..slots).map(|_| p.zeros_like()).collect()).collect();
        Ok(Self { cfg: cfg.clone(), params, state, steps: 0 })
    }

    pub fn steps(&self) -> i64 {
        self.steps
    }

    /// Zero the parameters' gradients (before each backward).
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update with learning rate `lr` (the schedule's value for this epoch).
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| match self.cfg.clone() {
            OptimizerConfig::Sgd { momentum, weight_decay, nesterov, .. } => {
                for ((_, p), st) in self.params.iter_mut().zip(&mut self.state) {
                    let g = p.grad();
                    if !g.defined() {
                        continue;
                    }
                    let mut d = if weight_decay != 0.0 { &g + &*p * weight_decay } else { g };
                    if momentum != 0.0 {
                        let buf = &mut st[0];
                        if self.steps == 0 {
                            buf.copy_(&d);
                        } else {
                            let _ = buf.g_mul_scalar_(momentum).g_add_(&d);
                        }
                        d = if nesterov { d + &*buf * momentum } else { buf.shallow_clone() };
                    }
                    let _ = p.g_add_(&(d * -lr));
                }
            }
            OptimizerConfig::Adam { betas: [b1, b2], eps, weight_decay, .. } => {
                let t = (self.steps + 1) as f64;
                let bias1 = 1.0 - b1.powf(t);
                let bias2_sqrt = (1.0 - b2.powf(t)).sqrt();
                let step_size = lr / bias1;
                for ((_, p), st) in self.params.iter_mut().zip(&mut self.state) {
                    let g = p.grad();
                    if !g.defined() {
                        continue;
                    }
                    let g = if weight_decay != 0.0 { &g + &*p * weight_decay } else { g };
                    let _ = st[0].lerp_(&g, 1.0 - b1);
                    let _ = st[1].g_mul_scalar_(b2).addcmul_(&(&g * (1.0 - b2)), &g);
                    let denom = st[1].sqrt() / bias2_sqrt + eps;
                    let _ = p.g_add_(&(&st[0] / denom * -step_size));
                }
            }
        });
        self.steps += 1;
    }

    /// The state as named tensors: `step`, then `<slot>.<param>` with slot `momentum_buffer`
    /// (SGD) or `exp_avg` / `exp_avg_sq` (Adam), PyTorch's names.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from_slice(&[self.steps]))];
        for ((name, _), st) in self.params.iter().zip(&self.state) {
            for (slot, t) in self.slot_names().iter().zip(st) {
                out.push((format!("{slot}.{name}"), t.shallow_clone()));
            }
        }
        out
    }

    fn slot_names(&self) -> &'static [&'static str] {
        match &self.cfg {
            OptimizerConfig::Sgd { momentum, .. } if *momentum == 0.0 => &[],
            OptimizerConfig::Sgd { .. } => &["momentum_buffer"],
            OptimizerConfig::Adam { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }

    /// Restore the state written by [`Self::state_tensors`]; every entry must be present with
    /// the parameter's shape.
    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        let find = |key: &str| {
            named.iter().find(|(n, _)| n == key).map(|(_, t)| t).ok_or_else(|| {
                CoreError::Config(format!("optimizer state has no tensor \"{key}\""))
            })
        };
        self.steps = find("step")?.int64_value(&[0]);
        let slots = self.slot_names();
        for ((name, p), st) in self.params.iter().zip(&mut self.state) {
            for (slot, t) in slots.iter().zip(st.iter_mut()) {
                let src = find(&format!("{slot}.{name}"))?;
                if src.size() != p.size() {
                    return Err(CoreError::Config(format!(
                        "optimizer state {slot}.{name} has shape {:?}, the parameter {:?}",
                        src.size(),
                        p.size()
                    )));
                }
                tch::no_grad(|| t.copy_(&src.to_kind(Kind::Float)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, ModelSpec};

    /// A double-precision bias-free linear model whose loss (w·c).sum() has gradient c.
    fn setup() -> (Classifier, Tensor) {
        tch::manual_seed(0);
        let spec = ModelSpec { bias: false, num_classes: 2, ..ModelSpec::of(Arch::Linear) };
        let mut model = Classifier::new(&spec, tch::Device::Cpu).unwrap();
        model.vs.double();
        let c = Tensor::randn([2, 3072], (Kind::Double, tch::Device::Cpu));
        (model, c)
    }

    fn run(model: &Classifier, opt: &mut Optimizer, c: &Tensor, lr: f64) {
        let w = model.vs.variables()["fc.weight"].shallow_clone();
        opt.zero_grad();
        (&w * c).sum(Kind::Double).backward();
        opt.step(lr);
    }

    fn close(a: &Tensor, b: &Tensor) -> bool {
        (a - b).abs().max().double_value(&[]) < 1e-12
    }

    #[test]
    fn sgd_follows_torch_update_rule() {
        for nesterov in [false, true] {
            let (model, c) = setup();
            let w0 = model.vs.variables()["fc.weight"].detach().copy();
            let cfg = OptimizerConfig::Sgd { lr: 0.5, momentum: 0.9, weight_decay: 0.1, nesterov };
            let mut opt = Optimizer::new(&cfg, &model).unwrap();
            run(&model, &mut opt, &c, 0.5);
            run(&model, &mut opt, &c, 0.25);
            // torch.optim.SGD: d = g + wd·w; buf = d (first) else 0.9·buf + d;
            // nesterov: d + 0.9·buf, else buf; w -= lr·that.
            let d1 = &c + &w0 * 0.1;
            let buf1 = d1.copy();
            let u1 = if nesterov { &d1 + &buf1 * 0.9 } else { buf1.copy() };
            let w1 = &w0 - u1 * 0.5;
            let d2 = &c + &w1 * 0.1;
            let buf2 = &buf1 * 0.9 + &d2;
            let u2 = if nesterov { &d2 + &buf2 * 0.9 } else { buf2.copy() };
            let w2 = &w1 - u2 * 0.25;
            assert!(close(&model.vs.variables()["fc.weight"], &w2));
            assert_eq!(opt.steps(), 2);
        }
    }

    #[test]
    fn adam_follows_torch_update_rule_and_state_round_trips() {
        let (model, c) = setup();
        let w0 = model.vs.variables()["fc.weight"].detach().copy();
        let (b1, b2, eps, wd, lr) = (0.8, 0.9, 1e-3, 0.05, 0.01);
        let cfg = OptimizerConfig::Adam { lr, betas: [b1, b2], eps, weight_decay: wd };
        let mut opt = Optimizer::new(&cfg, &model).unwrap();
        run(&model, &mut opt, &c, lr);
        run(&model, &mut opt, &c, lr);
        let (mut w, mut m, mut v) = (w0, c.zeros_like(), c.zeros_like());
        for t in 1..=2 {
            let g = &c + &w * wd;
            m = &m * b1 + &g * (1.0 - b1);
            v = &v * b2 + &g * &g * (1.0 - b2);
            let denom = v.sqrt() / (1.0 - f64::powi(b2, t)).sqrt() + eps;
            w = &w - &m / denom * (lr / (1.0 - f64::powi(b1, t)));
        }
        assert!(close(&model.vs.variables()["fc.weight"], &w));
        let state = opt.state_tensors();
        let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["step", "exp_avg.fc.weight", "exp_avg_sq.fc.weight"]);
        assert!(close(&state[1].1, &m) && close(&state[2].1, &v));
        let mut fresh = Optimizer::new(&cfg, &model).unwrap();
        fresh.load_state(&state).unwrap();
        assert_eq!(fresh.steps(), 2);
        let e = fresh.load_state(&state[..2]).unwrap_err().to_string();
        assert!(e.contains("exp_avg_sq.fc.weight"), "{e}");
    }
}
