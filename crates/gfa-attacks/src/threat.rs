//! Threat models and budgets, written once and used by every iterative attack.
use std::fmt;
use std::str::FromStr;

use gfa_core::seed::SeededRng;
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::{Device, Kind, Tensor};

use crate::{AttackError, Result};

/// The norm of a perturbation budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    #[default]
    Linf,
    L2,
    L1,
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
            Norm::L1 => "l1",
        })
    }
}

/// A budget as written (`"8/255"`, `"0.5"`) and its value. Parsed, never evaluated, so CSV rows
/// carry both the exact text and the number.
#[derive(Debug, Clone, PartialEq)]
pub struct Eps {
    pub text: String,
    pub value: f64,
}

impl Eps {
    pub fn new(value: f64) -> Self {
        Self { text: format!("{value}"), value }
    }
}

impl FromStr for Eps {
    type Err = AttackError;
    fn from_str(s: &str) -> Result<Self> {
        let text = s.trim().to_string();
        let bad = |reason: &str| AttackError::BadEps { text: text.clone(), reason: reason.into() };
        let value = gfa_core::rational::parse_rational(&text).map_err(|r| bad(&r))?;
        if !value.is_finite() || value < 0.0 {
            return Err(bad("must be a finite number >= 0"));
        }
        Ok(Self { text, value })
    }
}

impl fmt::Display for Eps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Eps {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Eps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Num(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Raw::Num(v) => Ok(Eps::new(v)),
        }
    }
}

/// A norm ball of radius `eps` intersected with the `[0, 1]` box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreatModel {
    pub norm: Norm,
    pub eps: f64,
}

/// Per-sample norms of a batch of perturbations `[N, ...]` → `[N]`.
pub fn per_sample_norm(delta: &Tensor, norm: Norm) -> Tensor {
    let d = delta.flatten(1, -1);
    match norm {
        Norm::Linf => d.abs().amax(1, false),
        Norm::L2 => d.square().sum_dim_intlist(1, false, d.kind()).sqrt(),
        Norm::L1 => d.abs().sum_dim_intlist(1, false, d.kind()),
    }
}

/// Reshape a per-sample `[N]` tensor to broadcast against `like` (`[N, 1, 1, 1]`).
pub fn per_sample(v: &Tensor, like: &Tensor) -> Tensor {
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1, like.dim() - 1));
    v.view(shape.as_slice())
}

/// Uniform `[0, 1)` numbers drawn from a seeded Rust generator, so results do not depend on
/// libtorch's global generator state or on the device.
pub fn uniform(shape: &[i64], rng: &mut SeededRng, device: Device) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.r#gen::<f32>()).collect();
    Tensor::from_slice(&v).view(shape).to_device(device)
}

/// Standard normal numbers from a seeded Rust generator (Box–Muller).
pub fn normal(shape: &[i64], rng: &mut SeededRng, device: Device) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            let u1: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = rng.r#gen();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect();
    Tensor::from_slice(&v).view(shape).to_device(device)
}

impl ThreatModel {
    pub fn new(norm: Norm, eps: f64) -> Self {
        Self { norm, eps }
    }

    /// Per-sample norm of `delta`.
    pub fn norm_of(&self, delta: &Tensor) -> Tensor {
        per_sample_norm(delta, self.norm)
    }

    /// Project `x` onto the ball of radius `eps` around `x0`, then onto the `[0, 1]` box.
    /// (For L2 and L1 the box clip after the ball projection can only shrink the norm.)
    pub fn project(&self, x: &Tensor, x0: &Tensor) -> Tensor {
        let delta = x - x0;
        let delta = match self.norm {
            Norm::Linf => delta.clamp(-self.eps, self.eps),
            Norm::L2 => {
                let n = self.norm_of(&delta).clamp_min(1e-12);
                let factor = (self.eps / &n).clamp_max(1.0);
                &delta * per_sample(&factor, &delta)
            }
            Norm::L1 => project_l1_ball(&delta, self.eps),
        };
        (x0 + delta).clamp(0.0, 1.0)
    }

    /// One steepest-ascent step of length `step_size` along `grad` (sign for Linf, unit L2
    /// direction for L2, for L1 the sign of the largest-magnitude coordinate per sample spread
    /// over the top 1% coordinates), not projected.
    pub fn step(&self, x: &Tensor, grad: &Tensor, step_size: f64) -> Tensor {
        match self.norm {
            Norm::Linf => x + grad.sign() * step_size,
            Norm::L2 => {
                let n = per_sample_norm(grad, Norm::L2).clamp_min(1e-12);
                x + grad / per_sample(&n, grad) * step_size
            }
            Norm::L1 => {
                let flat = grad.flatten(1, -1);
                let d = flat.size()[1];
                let k = ((d as f64) * 0.01).ceil().max(1.0) as i64;
                let kth = flat.abs().topk(k, 1, true, true).0.select(1, k - 1).unsqueeze(1);
                let mask = flat.abs().ge_tensor(&kth).to_kind(flat.kind());
                let count = mask.sum_dim_intlist(1, true, flat.kind()).clamp_min(1.0);
                let dir = flat.sign() * mask / count;
                x + dir.view(grad.size().as_slice()) * step_size
            }
        }
    }

    /// A uniformly random start inside the ball (Linf: per-coordinate uniform; L2/L1: a direction
    /// uniform on the norm's sphere scaled to a uniform fraction of `eps`), clipped to the box.
    pub fn random_init(&self, x0: &Tensor, rng: &mut SeededRng) -> Tensor {
        let shape = x0.size();
        let dev = x0.device();
        let delta = match self.norm {
            Norm::Linf => (uniform(&shape, rng, dev) * 2.0 - 1.0) * self.eps,
            Norm::L2 | Norm::L1 => {
                // Gaussian coordinates are uniform in direction on the L2 sphere; Laplace ones
                // (a random sign times an exponential magnitude) on the L1 sphere.
                let dir = normal(&shape, rng, dev);
                let dir = if self.norm == Norm::L1 {
                    dir.sign() * -uniform(&shape, rng, dev).clamp_min(1e-12).log()
                } else {
                    dir
                };
                let n = per_sample_norm(&dir, self.norm).clamp_min(1e-12);
                let r = uniform(&[shape[0]], rng, dev) * self.eps;
                &dir / per_sample(&n, &dir) * per_sample(&r, &dir)
            }
        };
        (x0 + delta).clamp(0.0, 1.0)
    }
}

/// Euclidean projection of each sample of `delta` onto the L1 ball of radius `eps`
/// (Duchi et al. 2008, sorting-based, batched).
pub fn project_l1_ball(delta: &Tensor, eps: f64) -> Tensor {
    let shape = delta.size();
    let v = delta.flatten(1, -1);
    let abs = v.abs();
    let inside = abs.sum_dim_intlist(1, true, abs.kind()).le(eps);
    let (mu, _) = abs.sort(1, true);
    let cssv = mu.cumsum(1, mu.kind()) - eps;
    let d = v.size()[1];
    let ind = Tensor::arange_start(1, d + 1, (v.kind(), v.device())).unsqueeze(0);
    let cond = (&mu - &cssv / &ind).gt(0.0).to_kind(v.kind());
    // rho = last index where cond holds (cond is a prefix of ones).
    let rho = cond.sum_dim_intlist(1, true, v.kind()).clamp_min(1.0);
    let theta = cssv.gather(1, &(&rho - 1.0).to_kind(Kind::Int64), false) / &rho;
    let projected = v.sign() * (abs - theta).clamp_min(0.0);
    v.where_self(&inside, &projected).view(shape.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn eps_parses_rationals_and_rejects_garbage() {
        let e: Eps = "8/255".parse().unwrap();
        assert_eq!(e.text, "8/255");
        assert!((e.value - 8.0 / 255.0).abs() < 1e-15);
        assert_eq!("0.5".parse::<Eps>().unwrap().value, 0.5);
        assert!("8/0".parse::<Eps>().is_err());
        assert!("eight".parse::<Eps>().is_err());
        assert!("-1".parse::<Eps>().is_err());
    }

    /// In float32, as attacks run: a projected norm is a sum of 192 squares, which rounds by at
    /// most 192 · 6e-8 ≈ 1.2e-5 relative on any code path, ≤ 3.5e-6 of eps = 0.3 (1e-5 allowed);
    /// a missing projection leaves norms of order 1 to 10.
    #[test]
    fn projections_respect_budget_and_box() {
        let mut rng = SeededRng::seed_from_u64(0);
        let x0 = uniform(&[4, 3, 8, 8], &mut rng, Device::Cpu);
        let x = &x0 + normal(&[4, 3, 8, 8], &mut rng, Device::Cpu);
        for norm in [Norm::Linf, Norm::L2, Norm::L1] {
            let tm = ThreatModel::new(norm, 0.3);
            let p = tm.project(&x, &x0);
            let n = tm.norm_of(&(&p - &x0));
            assert!(n.max().double_value(&[]) <= 0.3 + 1e-5, "{norm}");
            assert!(p.min().double_value(&[]) >= 0.0 && p.max().double_value(&[]) <= 1.0);
            let r = tm.random_init(&x0, &mut rng);
            assert!(tm.norm_of(&(&r - &x0)).max().double_value(&[]) <= 0.3 + 1e-5, "{norm}");
        }
    }

    /// The L1 random start's coordinates are Laplace (|δᵢ| / mean |δ| is Exp(1): a fraction
    /// e⁻¹ ≈ 0.368 of them exceed the mean), not Gaussian (half-normal: 0.425). With 12 288
    /// coordinates the fraction's standard deviation is 0.0044, so ±0.02 separates the two.
    #[test]
    fn l1_random_start_is_uniform_on_the_l1_sphere() {
        let mut rng = SeededRng::seed_from_u64(1);
        let x0 = Tensor::full([4, 3, 32, 32], 0.5, (Kind::Float, Device::Cpu));
        let tm = ThreatModel::new(Norm::L1, 1.0);
        let d = (tm.random_init(&x0, &mut rng) - &x0).abs();
        let mean = d.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
        let above = d.gt_tensor(&mean).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((above - (-1.0f64).exp()).abs() < 0.02, "fraction above the mean: {above}");
    }

    #[test]
    fn l1_projection_is_exact_on_a_known_case() {
        // Projecting (3, 1) onto the L1 ball of radius 2 gives (2, 0) (float64: a sort, a
        // cumulative sum and a subtraction of small integers, exact on every CPU code path).
        let d = Tensor::from_slice(&[3.0f64, 1.0]).view([1, 2]);
        let p = project_l1_ball(&d, 2.0);
        let v: Vec<f64> = p.view([-1]).try_into().unwrap();
        assert_eq!(v, [2.0, 0.0]);
    }
}
