//! How close the finite-difference GFA gradient (`gradient = "finite_difference"` in a GFA
//! method's options) comes to the exact double-backprop one, for a range of steps δ
//! (`fd_step`).
//! `make bench` (scripts/bench.sh) writes its output to `results/bench/fd_accuracy.md`.
//!
//! For each model and tap set it computes ∇θR both ways, each as the change the penalty makes
//! to the plain gradient (the trainer's own calls, λ = 1), and prints ‖fd − exact‖/‖exact‖.
//!
//! `cargo run --release -p gfa-core --example fd_accuracy`
use std::path::Path;

use gfa_core::Classifier;
use gfa_core::TaskLoss;
use gfa_core::checkpoint::load_weights;
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::regularizer::{
    DEFAULT_FD_STEP, Layers, PenaltyGradient, RegKind, Regularizer, RegularizerConfig,
};
use gfa_core::seed::seed_all;
use tch::{Device, Kind, Tensor};

const STEPS: [f64; 8] = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5];

/// Every trainable parameter's gradient, flattened in name order (zero where there is none).
fn flat_grads(model: &Classifier) -> Tensor {
    let mut vars: Vec<_> =
        model.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let g: Vec<Tensor> = vars
        .iter()
        .map(|(_, p)| {
            let g = p.grad();
            if g.defined() { g.flatten(0, -1) } else { p.zeros_like().flatten(0, -1) }
        })
        .collect();
    Tensor::cat(&g, 0)
}

fn zero_grads(model: &Classifier) {
    for p in model.vs.trainable_variables() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// ∇θR (λ = 1) as the trainer's step computes it, exactly or by the finite difference.
fn penalty_gradient(model: &Classifier, reg: &Regularizer, x: &Tensor, y: &Tensor) -> Tensor {
    zero_grads(model);
    reg.forward(model, x, y, true, false).loss.backward();
    let plain = flat_grads(model);
    zero_grads(model);
    if reg.uses_finite_difference(1.0) {
        reg.finite_difference(model, x, y, 1.0, true).1.accumulate();
    } else {
        let f = reg.forward(model, x, y, true, true);
        (&f.loss + &f.reg).backward();
    }
    flat_grads(model) - plain
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fixture_model = || -> Result<(Classifier, Tensor, Tensor), Box<dyn std::error::Error>> {
        let spec = ModelSpec {
            width: 0.0625,
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
            ..ModelSpec::of(Arch::Cnn)
        };
        let mut model = Classifier::new(&spec, Device::Cpu)?;
        load_weights(&mut model, &fixtures.join("gfa_model.safetensors"))?;
        let cases = Tensor::read_safetensors(fixtures.join("gfa_cases.safetensors"))?;
        let get = |k: &str| cases.iter().find(|(n, _)| n == k).map(|(_, t)| t.shallow_clone());
        Ok((model, get("x").ok_or("no x")?, get("y").ok_or("no y")?))
    };
    let random = |arch: Arch, width: f64, n: i64| -> Result<_, Box<dyn std::error::Error>> {
        seed_all(0);
        let x = Tensor::rand([n, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(10, [n], (Kind::Int64, Device::Cpu));
        let model = Classifier::new(&ModelSpec { width, ..ModelSpec::of(arch) }, Device::Cpu)?;
        Ok((model, x, y))
    };
    let setups = [
        ("`cnn` width 0.0625, the GFA test fixture's weights and 3 samples", fixture_model()?),
        ("`cnn` width 0.25, batch 128, random inputs", random(Arch::Cnn, 0.25, 128)?),
        (
            "`preact_resnet18` width 0.125, batch 32, random inputs, BatchNorm in training mode",
            random(Arch::PreActResNet18, 0.125, 32)?,
        ),
    ];

    println!("# Accuracy of the finite-difference GFA gradient\n");
    println!(
        "‖fd − exact‖ / ‖exact‖ of the penalty's parameter gradient ∇θR (GFA, 1 − cos, \
         cross-entropy, post-activation taps, λ = 1) for each step δ = `fd_step`; \
         exact is double backprop. The default step is δ = {DEFAULT_FD_STEP:e}. Command: \
         `cargo run --release -p gfa-core --example fd_accuracy` (run by `make bench`).\n"
    );
    let head: Vec<String> = STEPS.iter().map(|d| format!("δ = {d:e}")).collect();
    println!("| model | taps | {} |", head.join(" | "));
    println!("| --- | --- |{}", " --- |".repeat(STEPS.len()));
    for (name, (model, x, y)) in &setups {
        for layers in [Layers::First, Layers::Deep] {
            let base = RegularizerConfig {
                layers: Some(layers.clone()),
                ..RegularizerConfig::with_lambda(1.0)
            };
            let bind = |cfg: &RegularizerConfig| {
                Regularizer::new(RegKind::Gfa, cfg, TaskLoss::Ce, &model.tap_names())
            };
            let reg = bind(&base)?;
            let exact = penalty_gradient(model, &reg, x, y);
            let mut cells = Vec::new();
            for step in STEPS {
                let cfg = RegularizerConfig {
                    gradient: PenaltyGradient::FiniteDifference,
                    fd_step: Some(step),
                    ..base.clone()
                };
                let reg = bind(&cfg)?;
                let fd = penalty_gradient(model, &reg, x, y);
                let err = (&fd - &exact).norm().double_value(&[]) / exact.norm().double_value(&[]);
                cells.push(format!("{err:.1e}"));
            }
            let taps = if layers == Layers::First { "first" } else { "deep" };
            println!("| {name} | {taps} | {} |", cells.join(" | "));
        }
    }
    println!(
        "\nFloat32 throughout, {} threads. The error falls with δ while truncation (O(δ)) \
         dominates and rises again as rounding (≈ 6e-8·k/δ) takes over.",
        tch::get_num_threads()
    );
    Ok(())
}
