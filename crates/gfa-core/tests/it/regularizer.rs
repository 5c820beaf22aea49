//! The GFA/GNR regularizer against PyTorch, finite differences and closed forms.
//!
//! Golden fixtures come from `tests/fixtures/gen_gfa_fixtures.py` (PyTorch 2.11): a
//! name-for-name twin of `cnn` at width 0.0625 with its normalization layer. Per case:
//!
//! ```python
//! logits, taps = model.forward_taps(x, pre=(tap == "pre"))
//! loss = F.cross_entropy(logits, y, reduction="sum")           # or the summed MSE variants
//! S = taps[:1] if layers == "first" else taps
//! grads = torch.autograd.grad(loss, S, create_graph=True)
//! R = sum(1/len(S) * phi(cosine(g, h)).mean() for g, h in zip(grads, S))   # gnr: ‖g‖² per sample
//! R.backward()                                                  # fixture: R and p.grad per parameter
//! ```
//!
//! The script computes R and its gradients in float64 (float32 weights and batch converted
//! exactly), and so does the test, against [`GOLDEN_TOL`].
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::regularizer::{
    Layers, Penalty, PenaltyGradient, RegKind, Regularizer, RegularizerConfig, cosine,
};
use gfa_core::{Classifier, TapPoint, TaskLoss};
use tch::{Device, Kind, Tensor};

fn twin() -> Classifier {
    super::cnn_twin("gfa_model.safetensors")
}

fn params(model: &Classifier) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> =
        model.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn zero_grads(model: &Classifier) {
    for (_, p) in params(model) {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// Relative bound of R (to |R|) and of each parameter gradient (to its largest element) against
/// PyTorch, both in float64: the same operations in another order round by at most
/// k · 1.1e-16 of the magnitudes summed, k ≤ 1024 (the widest reduction of this `cnn`), through
/// a forward, a backward and the backward of that (three such chains deep): ≤ 4e-13 before the
/// cosine's division, which can lift it by |g||h| / (g·h) where the cosine is small. 1e-9 leaves a
/// factor 1000 for that; a wrong penalty or tap moves R by 1e-3 or more.
const GOLDEN_TOL: f64 = 1e-9;

#[test]
fn penalty_and_parameter_gradients_match_pytorch() {
    let mut model = twin();
    model.vs.double();
    let cases = Tensor::read_safetensors(super::fixture("gfa_cases.safetensors")).unwrap();
    let get = |k: &str| {
        cases.iter().find(|(n, _)| n == k).unwrap_or_else(|| panic!("{k}")).1.shallow_clone()
    };
    let (x, y) = (get("x").to_kind(Kind::Double), get("y"));
    let mut worst: (f64, f64) = (0.0, 0.0);
    let mut checked = 0;
    for (name, kind, cfg, task) in [
        (
            "gfa.one_minus_cos.first",
            Penalty::OneMinusCos,
            Layers::First,
            TapPoint::PostActivation,
            TaskLoss::Ce,
        ),
        (
            "gfa.one_minus_cos.deep",
            Penalty::OneMinusCos,
            Layers::Deep,
            TapPoint::PostActivation,
            TaskLoss::Ce,
        ),
        (
            "gfa.one_minus_abs_cos.first",
            Penalty::OneMinusAbsCos,
            Layers::First,
            TapPoint::PostActivation,
            TaskLoss::Ce,
        ),
        (
            "gfa.one_minus_abs_cos.deep",
            Penalty::OneMinusAbsCos,
            Layers::Deep,
            TapPoint::PostActivation,
            TaskLoss::Ce,
        ),
        ("gfa.sin2.first", Penalty::Sin2, Layers::First, TapPoint::PostActivation, TaskLoss::Ce),
        ("gfa.sin2.deep", Penalty::Sin2, Layers::Deep, TapPoint::PostActivation, TaskLoss::Ce),
        (
            "gfa.one_minus_cos.deep.pre",
            Penalty::OneMinusCos,
            Layers::Deep,
            TapPoint::PreActivation,
            TaskLoss::Ce,
        ),
        (
            "gfa.one_minus_cos.deep.mse_softmax",
            Penalty::OneMinusCos,
            Layers::Deep,
            TapPoint::PostActivation,
            TaskLoss::MseSoftmax,
        ),
    ]
    .map(|(n, penalty, layers, tap, task)| {
        let cfg = RegularizerConfig {
            penalty,
            layers: Some(layers),
            tap,
            ..RegularizerConfig::with_lambda(1.0)
        };
        (n, RegKind::Gfa, cfg, task)
    })
    .into_iter()
    .chain([("gnr.first", RegKind::Gnr, RegularizerConfig::with_lambda(1.0), TaskLoss::Ce)])
    {
        let reg = Regularizer::new(kind, &cfg, task, &model.tap_names()).unwrap();
        zero_grads(&model);
        let f = reg.forward(&model, &x, &y, true, true);
        f.reg.backward();
        let want_r = get(&format!("{name}/R")).double_value(&[0]);
        let got_r = f.reg.double_value(&[]);
        let rel_r = (got_r - want_r).abs() / want_r.abs().max(1e-12);
        worst.0 = worst.0.max(rel_r);
        assert!(rel_r <= GOLDEN_TOL, "{name}: R {got_r} vs {want_r}");
        for (pname, p) in params(&model) {
            let want = get(&format!("{name}/grad/{pname}"));
            let got = p.grad();
            let err = max_abs(&(&got - &want));
            let scale = max_abs(&want);
            assert!(scale > 0.0, "{name}/{pname}: the fixture gradient must not vanish");
            worst.1 = worst.1.max(err / scale);
            let tol = GOLDEN_TOL * scale;
            assert!(err <= tol, "{name}/{pname}: max |Δ| {err:e} vs max |g| {scale:e}");
            checked += 1;
        }
    }
    println!("max relative difference: R {:e}, parameter gradients {:e}", worst.0, worst.1);
    assert_eq!(checked, 9 * 14);
}

/// GFA on every tap of `model`, λ = 1, cross-entropy.
fn gfa_deep(model: &Classifier) -> Regularizer {
    let cfg = RegularizerConfig::with_lambda(1.0);
    Regularizer::new(RegKind::Gfa, &cfg, TaskLoss::Ce, &model.tap_names()).unwrap()
}

/// A tiny double-precision MLP for finite differences.
fn mlp64(seed: i64) -> Classifier {
    tch::manual_seed(seed);
    let spec = ModelSpec { widths: vec![12, 8], num_classes: 4, ..ModelSpec::of(Arch::Mlp) };
    let mut model = Classifier::new(&spec, Device::Cpu).unwrap();
    model.vs.double();
    model
}

#[test]
fn gradient_of_r_matches_finite_differences() {
    let one = RegularizerConfig::with_lambda(1.0);
    for (kind, cfg) in [
        (RegKind::Gfa, RegularizerConfig { penalty: Penalty::Sin2, ..one.clone() }),
        (RegKind::Gfa, RegularizerConfig { layers: Some(Layers::First), ..one.clone() }),
        (RegKind::Gnr, one.clone()),
    ] {
        let model = mlp64(3);
        let x = Tensor::rand([5, 3, 32, 32], (Kind::Double, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 1]);
        let reg = Regularizer::new(kind, &cfg, TaskLoss::Ce, &model.tap_names()).unwrap();
        let r_of = || reg.forward(&model, &x, &y, true, true).reg;
        zero_grads(&model);
        r_of().backward();
        // Directional derivative along a random direction over every parameter.
        let ps = params(&model);
        let dirs: Vec<Tensor> = ps.iter().map(|(_, p)| p.randn_like()).collect();
        let analytic: f64 = ps
            .iter()
            .zip(&dirs)
            .map(|((_, p), d)| (p.grad() * d).sum(Kind::Double).double_value(&[]))
            .sum();
        let h = 1e-6;
        let shift = |s: f64| {
            tch::no_grad(|| {
                for ((_, p), d) in ps.iter().zip(&dirs) {
                    let mut p = p.shallow_clone();
                    let _ = p.g_add_(&(d * s));
                }
            })
        };
        shift(h);
        let plus = r_of().double_value(&[]);
        shift(-2.0 * h);
        let minus = r_of().double_value(&[]);
        shift(h);
        let numeric = (plus - minus) / (2.0 * h);
        let tol = 1e-5 * analytic.abs().max(numeric.abs()).max(1e-8);
        assert!(
            (numeric - analytic).abs() <= tol,
            "{kind:?} {cfg:?}: fd {numeric} vs autograd {analytic}"
        );
    }
}

#[test]
fn gfa_penalty_is_invariant_to_rescaling_the_loss_and_gnr_is_not() {
    let model = mlp64(5);
    let x = Tensor::rand([4, 3, 32, 32], (Kind::Double, Device::Cpu));
    let y = Tensor::from_slice(&[3i64, 2, 1, 0]);
    for (kind, factor) in [(RegKind::Gfa, 1.0), (RegKind::Gnr, 7.5f64.powi(2))] {
        // A tiny eps: the cosine's stabilizer is the only term that is not scale-free.
        let cfg = RegularizerConfig { eps: 1e-30, ..RegularizerConfig::with_lambda(1.0) };
        let reg = Regularizer::new(kind, &cfg, TaskLoss::Ce, &model.tap_names()).unwrap();
        let r_at = |scale: f64| {
            let f = model.forward_taps(&x, true, TapPoint::PostActivation);
            let taps = reg.select(&f.taps);
            let loss = TaskLoss::Ce.sum(&f.logits, &y) * scale;
            let grads = Tensor::run_backward(&[loss], &taps, false, false);
            reg.penalty(&taps, &grads).0.double_value(&[])
        };
        let (r1, r2) = (r_at(1.0), r_at(7.5));
        assert!((r2 - factor * r1).abs() <= 1e-9 * r2.abs().max(1e-12), "{kind:?}: {r1} {r2}");
    }
}

/// In float64: the closed form and gfa's cosine are sums of at most 3072 terms in different
/// orders, which round by at most 3072 · 1.1e-16 ≈ 3.4e-13 of their magnitudes on any code path;
/// a cosine (|c| ≤ 1) then differs by ≤ 3 · 3.4e-13 ≈ 1e-12, and 1e-10 leaves a factor 100. The
/// gradient of another tap, or of the mean loss without the cosine's scale invariance, moves it
/// by 1e-2 or more.
#[test]
fn input_cosine_of_a_linear_model_matches_the_closed_form() {
    // Bias-free linear model: ∂ℓ_i/∂h_0 = Wᵀ(softmax(W h_i) − e_{y_i}).
    tch::manual_seed(11);
    let spec = ModelSpec { bias: false, ..ModelSpec::of(Arch::Linear) };
    let mut model = Classifier::new(&spec, Device::Cpu).unwrap();
    model.vs.double();
    let x = Tensor::rand([6, 3, 32, 32], (Kind::Double, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5]);
    let reg = gfa_deep(&model);
    let f = reg.forward(&model, &x, &y, false, false);
    let w = model.vs.variables()["fc.weight"].detach();
    let h = ((&x - 0.5) / 0.5).flatten(1, -1);
    let p = h.matmul(&w.tr()).softmax(-1, Kind::Double);
    let g = (p - y.one_hot(10).to_kind(Kind::Double)).matmul(&w);
    let c = (&g * &h).sum_dim_intlist(1, false, Kind::Double)
        / (g.norm_scalaropt_dim(2, 1, false) * h.norm_scalaropt_dim(2, 1, false) + 1e-8);
    let want = c.mean(Kind::Double).double_value(&[]);
    let got = f.cos.double_value(&[0]);
    assert!((got - want).abs() < 1e-10, "{got} vs {want}");
    assert!((f.reg.double_value(&[]) - (1.0 - want)).abs() < 1e-10);
    // and the cosine helper agrees with the same closed form sample by sample
    let g_auto = {
        let t = model.forward_taps(&x, false, TapPoint::PostActivation);
        let l = TaskLoss::Ce.sum(&t.logits, &y);
        Tensor::run_backward(&[l], &t.taps, false, false).remove(0)
    };
    let c_auto = cosine(&g_auto, &h.view([6, 3, 32, 32]), 1e-8);
    assert!(max_abs(&(c_auto - c)) < 1e-10);
}

/// Bound of a float32 mean cosine computed in batches of different sizes (the per-point values
/// need not round alike: kernels block a batch by its size). Each tap gradient element of this
/// `cnn` (width 0.0625) is a chain of ≤ 7 reductions of ≤ 512 terms, rounding by ≤ 7 · 512 · 6e-8
/// ≈ 2.2e-4 of its magnitude on any code path, and a cosine's three sums over a tap of ≤ 4096
/// values add ≤ 3 · 4096 · 6e-8 ≈ 7.4e-4: 1e-3 in all. Averaging per batch instead of per
/// point, or dropping the last partial batch, moves the mean by 1e-2 or more.
const BATCHING_TOL: f64 = 1e-3;

#[test]
fn gfa_value_does_not_depend_on_batching_and_leaves_the_model_alone() {
    use gfa_core::{GfaValueConfig, gfa_value};
    tch::manual_seed(2);
    let spec = ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::Cnn) };
    let model = Classifier::new(&spec, Device::Cpu).unwrap();
    let data = super::train::synthetic(10, 7);
    let before: Vec<Tensor> = params(&model).into_iter().map(|(_, p)| p.detach().copy()).collect();
    let a =
        gfa_value(&model, &data, &GfaValueConfig { batch_size: 3, ..Default::default() }).unwrap();
    let b =
        gfa_value(&model, &data, &GfaValueConfig { batch_size: 10, ..Default::default() }).unwrap();
    assert_eq!(a.len(), model.tap_names().len());
    for (u, v) in a.iter().zip(&b) {
        assert_eq!(u.tap, v.tap);
        assert_eq!(u.n, 10);
        assert!((u.mean_cos - v.mean_cos).abs() < BATCHING_TOL, "{u:?} {v:?}");
        assert!(u.mean_abs_cos >= u.mean_cos.abs() - 1e-9);
    }
    // The input-tap value equals the regularizer's cosine on the whole set.
    let reg = gfa_deep(&model);
    let (x, y) = data.batch(&Tensor::arange(10, (Kind::Int64, Device::Cpu)), Device::Cpu);
    let f = reg.forward(&model, &x, &y, false, false);
    assert!((f.cos.double_value(&[0]) - a[0].mean_cos).abs() < BATCHING_TOL);
    for ((_, p), q) in params(&model).into_iter().zip(before) {
        assert!(p.equal(&q));
        assert!(!p.grad().defined(), "no parameter gradient may be accumulated");
    }
}

/// Every parameter gradient, flattened in name order.
fn flat_grads(model: &Classifier) -> Tensor {
    let g: Vec<Tensor> = params(model).iter().map(|(_, p)| p.grad().flatten(0, -1)).collect();
    Tensor::cat(&g, 0)
}

/// ∇θR as the change it makes to the plain gradient (over λ), with double backprop or with
/// the finite difference; the trainer's own calls in both cases.
fn penalty_gradient(
    model: &Classifier,
    reg: &Regularizer,
    (x, y): (&Tensor, &Tensor),
    train: bool,
    finite_difference: bool,
) -> Tensor {
    let lambda = reg.cfg.lambda;
    zero_grads(model);
    reg.forward(model, x, y, train, false).loss.backward();
    let plain = flat_grads(model);
    zero_grads(model);
    if finite_difference {
        reg.finite_difference(model, x, y, lambda, train).1.accumulate();
    } else {
        let f = reg.forward(model, x, y, train, true);
        (&f.loss + &f.reg * lambda).backward();
    }
    (flat_grads(model) - plain) / lambda
}

/// ‖a − b‖ / ‖b‖.
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[])
}

/// The bound of the finite difference against double backprop: at the default step δ = 1e-3
/// truncation (O(δ)) and float32 rounding (≈ 6e-8·k/δ, k the accumulation over a backward)
/// each stay near 1e-3 (`examples/fd_accuracy.rs` measures 1e-4–4e-3 on these models), so
/// 1e-2 leaves a margin for other CPUs' summation orders. ‖Δ‖/‖g‖ ≤ 1e-2 also bounds the
/// cosine (≥ 1 − 5e-5) and the norm ratio (within 1 %). The fixture test below runs in float64,
/// where the rounding term is ≈ 1e-16·k/δ and only the truncation, which no code path changes,
/// is left.
const FD_TOL: f64 = 1e-2;

/// Relative bound of the loss and terms the finite-difference pass logs against the plain
/// forward, both in float64: the two forwards compute the same values with possibly other
/// kernels (another batch layout, hence another summation order), and a sum of k terms rounds
/// by at most k · 1.1e-16 relative to the sum of their magnitudes; k ≤ 1024 (the `cnn`'s
/// widest reduction at this width, 3·3·channels or the `fc1` input) gives ≤ 1.2e-13, and the
/// logits and the loss are a few such sums deep; 1e-10 leaves a factor of over 100 on that.
/// In float32 the same argument gives k · 6e-8 ≈ 6e-5, which is why this comparison runs in
/// double: a plain 1e-6 held on two code paths and failed on AVX-512 (1.1e-6).
const LOGGED_TOL: f64 = 1e-10;

fn fd_config(base: RegularizerConfig) -> RegularizerConfig {
    RegularizerConfig { gradient: PenaltyGradient::FiniteDifference, ..base }
}

/// `cfg` with the finite-difference gradient, bound to `model`.
fn fd_reg(
    model: &Classifier,
    kind: RegKind,
    cfg: &RegularizerConfig,
    task: TaskLoss,
) -> Regularizer {
    Regularizer::new(kind, &fd_config(cfg.clone()), task, &model.tap_names()).unwrap()
}

#[test]
fn finite_difference_gradient_matches_double_backprop_on_the_fixture() {
    // Float64 (the weights converted exactly), so that neither comparison depends on libtorch's
    // CPU code path (see FD_TOL and LOGGED_TOL).
    let mut model = twin();
    model.vs.double();
    let cases = Tensor::read_safetensors(super::fixture("gfa_cases.safetensors")).unwrap();
    let get = |k: &str| cases.iter().find(|(n, _)| n == k).unwrap().1.shallow_clone();
    let (x, y) = (get("x").to_kind(Kind::Double), get("y"));
    let gfa = |penalty, layers, tap, task| {
        let cfg = RegularizerConfig {
            penalty,
            layers: Some(layers),
            tap,
            ..RegularizerConfig::with_lambda(1.0)
        };
        (RegKind::Gfa, cfg, task)
    };
    let (post, pre) = (TapPoint::PostActivation, TapPoint::PreActivation);
    let mut configs = Vec::new();
    for penalty in [Penalty::OneMinusCos, Penalty::OneMinusAbsCos, Penalty::Sin2] {
        for layers in [Layers::First, Layers::Deep] {
            configs.push(gfa(penalty, layers, post, TaskLoss::Ce));
        }
    }
    for task_loss in [TaskLoss::Ce, TaskLoss::MseSoftmax, TaskLoss::MseLogits] {
        configs.push(gfa(Penalty::OneMinusCos, Layers::Deep, pre, task_loss));
        configs.push(gfa(Penalty::Sin2, Layers::First, post, task_loss));
    }
    configs.push(gfa(Penalty::OneMinusCos, Layers::Deep, post, TaskLoss::MseLogits));
    let one = RegularizerConfig::with_lambda(1.0);
    configs.push((RegKind::Gnr, one.clone(), TaskLoss::Ce));
    configs.push((
        RegKind::Gnr,
        RegularizerConfig { layers: Some(Layers::Deep), ..one },
        TaskLoss::Ce,
    ));
    for (kind, cfg, task) in configs {
        let reg = fd_reg(&model, kind, &cfg, task);
        let exact = penalty_gradient(&model, &reg, (&x, &y), true, false);
        let fd = penalty_gradient(&model, &reg, (&x, &y), true, true);
        let err = rel_err(&fd, &exact);
        assert!(err <= FD_TOL, "{kind:?} {task:?} {cfg:?}: ‖fd − exact‖/‖exact‖ = {err:e}");

        // What the trainer logs is what the plain forward measures, and nothing is written
        // to `.grad` before the gradients are accumulated.
        zero_grads(&model);
        let (f, _) = reg.finite_difference(&model, &x, &y, 1.0, true);
        let untouched = |g: Tensor| !g.defined() || g.abs().max().double_value(&[]) == 0.0;
        assert!(params(&model).into_iter().all(|(_, p)| untouched(p.grad())));
        let m = reg.forward(&model, &x, &y, true, false);
        for (a, b) in [(&f.loss, &m.loss), (&f.reg, &m.reg), (&f.cos, &m.cos), (&f.terms, &m.terms)]
        {
            let tol = LOGGED_TOL * max_abs(b).max(1e-6);
            assert!(max_abs(&(a - b)) <= tol, "{cfg:?}: {a:?} vs {b:?}");
        }
        assert!(!f.loss.requires_grad() && !f.reg.requires_grad() && !f.logits.requires_grad());
    }
}

/// With BatchNorm in training mode (samples coupled through the batch statistics) the finite
/// difference still matches, and the running statistics move exactly as on the exact path.
#[test]
fn finite_difference_handles_batch_norm_and_keeps_its_running_statistics() {
    let spec = ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::PreActResNet18) };
    let fresh = || {
        tch::manual_seed(4);
        Classifier::new(&spec, Device::Cpu).unwrap()
    };
    let x = Tensor::rand([6, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 3, 5, 7, 9, 1]);
    let buffers = |m: &Classifier| -> Vec<(String, Tensor)> {
        let mut b: Vec<_> =
            m.vs.variables().into_iter().filter(|(_, t)| !t.requires_grad()).collect();
        b.sort_by(|a, b| a.0.cmp(&b.0));
        b
    };
    for layers in [Layers::First, Layers::Deep] {
        let cfg = RegularizerConfig { layers: Some(layers), ..RegularizerConfig::with_lambda(1.0) };
        let model = fresh();
        let reg = fd_reg(&model, RegKind::Gfa, &cfg, TaskLoss::Ce);
        let exact = penalty_gradient(&model, &reg, (&x, &y), true, false);
        let fd = penalty_gradient(&model, &reg, (&x, &y), true, true);
        let err = rel_err(&fd, &exact);
        assert!(err <= FD_TOL, "{:?}: ‖fd − exact‖/‖exact‖ = {err:e}", cfg.layers);

        let (a, b) = (fresh(), fresh());
        let f = reg.forward(&a, &x, &y, true, true);
        (&f.loss + &f.reg).backward();
        reg.finite_difference(&b, &x, &y, 1.0, true).1.accumulate();
        for ((name, u), (_, v)) in buffers(&a).iter().zip(buffers(&b)) {
            assert!(u.equal(&v), "{name}: {u:?} vs {v:?}");
        }
    }
}
