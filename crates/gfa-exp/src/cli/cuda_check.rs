//! `gfa cuda-check`: gfa on a GPU against gfa on the CPU, on the same weights and points, and
//! gfa's GPU speed (what `scripts/gpu-check.sh` runs; no Rust toolchain needed on the GPU
//! machine, only the binary).
//!
//! Comparisons (each with the bound it must meet):
//! - one short training run (4 epochs of 512 synthetic images, `cnn` width 0.25, GFA on all
//!   taps at λ = 0.03, Adam) from the same initial weights: each epoch's training loss within
//!   1 % of the first epoch's (the GPU sums in another order, and the difference grows with
//!   every step);
//! - then, on the CPU-trained weights copied to the GPU: forward logits on `n` test points to
//!   1e-4, the GFA value per tap to 1e-4, and FGSM and PGD-20 (Linf 8/255, reference preset)
//!   robust accuracy within one point of `n` (500 by default).
//!
//! These comparisons run at strict fp32 (TF32 rounds every convolution's inputs to 10 mantissa
//! bits, far beyond 1e-4). When `--precision` makes runs on a GPU use TF32 (`auto`, the
//! default, or `tf32`), one more compares the GPU's logits at TF32 with the CPU's at fp32,
//! within a bound per logit from TF32's 10-bit mantissa, emulated on the CPU
//! ([`crate::cli::tf32`]), plus the fp32 allowance; a dry run emulates the GPU side too. The
//! timings run at the precision of `--precision`, the one every command uses
//! (docs/numerics.md); the report names the precision of every comparison and of the timings.
//! Exit code [`DISAGREES`] (3) when a comparison fails, so that a crash is not read as a
//! disagreement.
//!
//! Timings, on the GPU, each after the device has finished: the training step (plain, GFA-first,
//! GFA-deep, each GFA one exact and by finite difference; [`gfa_core::bench`]) and APGD-CE
//! (Linf 8/255, 100 iterations) on `n` points; the weights and points are written out
//! (`--export`) so that `scripts/gpu_check_torch.py` times PyTorch on the same ones.
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use gfa_attacks::AttackSpec;
use gfa_attacks::apgd::ApgdConfig;
use gfa_attacks::fgsm::FgsmConfig;
use gfa_attacks::pgd::PgdConfig;
use gfa_core::device::{Numerics, Precision};
use gfa_core::method::gfa::Gfa;
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::regularizer::{Layers, RegularizerConfig};
use gfa_core::train::{AugmentConfig, OptimizerConfig, Schedule, TrainOptions};
use gfa_core::{Classifier, Method, TrainConfig, checkpoint};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::cli::args::CudaCheckArgs;

/// Sizes of the check.
#[derive(Debug, Clone)]
pub struct Options {
    /// Test points of the forward, GFA-value and attack comparisons and of the APGD timing.
    pub n: usize,
    /// Training images per epoch and epochs of the training comparison.
    pub train_n: usize,
    pub epochs: usize,
    /// Width of the `cnn`.
    pub width: f64,
    /// Timed training steps per case (after 3 untimed).
    pub steps: usize,
    pub batch: i64,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { n: 500, train_n: 512, epochs: 4, width: 0.25, steps: 20, batch: 128, seed: 0 }
    }
}

/// The fp32 comparisons' bound on logits and GFA values: float32 round-off of forwards that sum
/// in other orders on the two devices (logits of order 1, sums of ≤ 2,048 products).
pub const FP32_ALLOWANCE: f64 = 1e-4;

/// One comparison: the largest difference found and the bound it must stay within.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub check: String,
    /// The GPU side's precision (`fp32`, or `tf32` for the TF32 comparison); the CPU's is fp32.
    pub precision: Precision,
    pub value: f64,
    pub bound: f64,
    pub pass: bool,
    pub detail: String,
}

impl Comparison {
    /// A comparison at strict fp32.
    fn new(check: &str, value: f64, bound: f64, detail: String) -> Self {
        let precision = Precision::Fp32;
        Self { check: check.into(), precision, value, bound, pass: value <= bound, detail }
    }
}

/// One timing on the device.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub what: String,
    pub device: String,
    pub median_s: f64,
    /// Images per second (training steps) or attacked points per second (APGD-CE).
    pub per_s: f64,
    pub detail: String,
}

fn spec(o: &Options) -> ModelSpec {
    ModelSpec { arch: Arch::Cnn, width: o.width, ..ModelSpec::default() }
}

/// Copy every variable of `from` into `to` (any devices).
fn copy_weights(from: &Classifier, to: &Classifier) {
    let src = checkpoint::named_weights(from);
    for ((na, a), (nb, mut b)) in src.iter().zip(checkpoint::named_weights(to)) {
        assert_eq!(na, &nb, "same architecture");
        tch::no_grad(|| b.copy_(a));
    }
}

fn train_cfg(o: &Options) -> (TrainConfig, Method) {
    let cfg = TrainConfig {
        epochs: o.epochs,
        batch_size: 64,
        optimizer: OptimizerConfig::adam(1e-3),
        schedule: Schedule::Constant,
        augment: AugmentConfig { crop_padding: 0, flip: false },
        eval_batch_size: 250,
        ..TrainConfig::default()
    };
    // A small λ: the model learns (test accuracy ≈ 50 % after 4 epochs), so the attacks have
    // points to fool, and every step still goes through the double backprop.
    let reg =
        RegularizerConfig { layers: Some(Layers::Deep), ..RegularizerConfig::with_lambda(0.03) };
    (cfg, Method::Gfa(Gfa(reg)))
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_device(Device::Cpu) - b.to_device(Device::Cpu)).abs().max().double_value(&[])
}

/// Robust points (not fooled, clean-correct included) of an attack spec on `model`.
fn robust(model: &Classifier, spec: AttackSpec, x: &Tensor, y: &Tensor) -> Result<i64> {
    let attack = spec.build()?;
    let mut rng = gfa_core::seed::rng_for(0, "cuda-check/attack");
    let out = gfa_attacks::attack::run(attack.as_ref(), model, x, y, 8.0 / 255.0, &mut rng)?;
    Ok(out.success.logical_not().sum(Kind::Int64).int64_value(&[]))
}

/// The comparisons of `gpu` against `cpu` (see the module doc), and the CPU-trained model.
pub fn compare(cpu: Device, gpu: Device, o: &Options) -> Result<(Vec<Comparison>, Classifier)> {
    if gpu.is_cuda() {
        gfa_core::libtorch::set_tf32(false).map_err(anyhow::Error::msg)?;
    }
    let data = gfa_data::synthetic(o.train_n, o.n, o.seed);
    let mut out = Vec::new();

    // Training from the same initial weights.
    gfa_core::seed::seed_all(o.seed);
    let mut a = Classifier::new(&spec(o), cpu)?;
    let mut b = Classifier::new(&spec(o), gpu)?;
    copy_weights(&a, &b);
    let (cfg, method) = train_cfg(o);
    let opts = TrainOptions { seed: o.seed, ..Default::default() };
    let ra = gfa_core::train(&mut a, &data, &cfg, &method, &opts, &mut |_| Ok(()))?.records;
    let rb = gfa_core::train(&mut b, &data, &cfg, &method, &opts, &mut |_| Ok(()))?.records;
    // Differences relative to the curve's scale (its first epoch): a loss near zero late in
    // training would make a plain relative difference meaningless.
    let scale = ra.first().map(|r| r.train_loss.abs()).unwrap_or(1.0).max(1e-12);
    let rel: Vec<f64> =
        ra.iter().zip(&rb).map(|(p, q)| (p.train_loss - q.train_loss).abs() / scale).collect();
    let curve = |r: &[gfa_core::EpochRecord]| {
        r.iter().map(|e| format!("{:.5}", e.train_loss)).collect::<Vec<_>>().join(" ")
    };
    out.push(Comparison::new(
        "training loss per epoch, |diff| / first",
        rel.iter().copied().fold(0.0, f64::max),
        1e-2,
        format!("{}: {} | {}: {}", name(cpu), curve(&ra), name(gpu), curve(&rb)),
    ));

    // The rest on identical (CPU-trained) weights.
    copy_weights(&a, &b);
    let n = o.n.min(data.test.len());
    let (x, y) = crate::run::stages::head_tensors(&data.test, n);
    let (xa, ya, xb, yb) = (x.to_device(cpu), y.to_device(cpu), x.to_device(gpu), y.to_device(gpu));
    let (la, lb) = tch::no_grad(|| (a.logits(&xa, false), b.logits(&xb, false)));
    out.push(Comparison::new(
        "forward logits, max |diff|",
        max_abs(&la, &lb),
        FP32_ALLOWANCE,
        format!("{n} points, |logit| up to {:.2}", la.abs().max().double_value(&[])),
    ));
    let head = data.test.head(n);
    let va = gfa_core::gfa_value(&a, &head, &Default::default())?;
    let vb = gfa_core::gfa_value(&b, &head, &Default::default())?;
    let worst = va
        .iter()
        .zip(&vb)
        .map(|(p, q)| ((p.mean_cos - q.mean_cos).abs(), p.tap.clone()))
        .fold((0.0, String::new()), |m, d| if d.0 > m.0 { d } else { m });
    let taps = va.iter().map(|v| format!("{}={:.6}", v.tap, v.mean_cos)).collect::<Vec<_>>();
    out.push(Comparison::new(
        "GFA value per tap, max |diff|",
        worst.0,
        FP32_ALLOWANCE,
        format!(
            "largest at {}; {}",
            if worst.1.is_empty() { "-" } else { &worst.1 },
            taps.join(" ")
        ),
    ));
    for (label, spec) in [
        ("FGSM", AttackSpec::Fgsm(FgsmConfig::default())),
        ("PGD-20", AttackSpec::Pgd(PgdConfig { steps: 20, ..PgdConfig::default() })),
    ] {
        let (pa, pb) = (robust(&a, spec.clone(), &xa, &ya)?, robust(&b, spec, &xb, &yb)?);
        out.push(Comparison::new(
            &format!("{label} robust points, |diff| of {n}"),
            (pa - pb).abs() as f64,
            1.0,
            format!("{}: {pa}/{n}, {}: {pb}/{n} (Linf 8/255)", name(cpu), name(gpu)),
        ));
    }
    Ok((out, a))
}

fn name(d: Device) -> String {
    gfa_core::device::device_name(d)
}

/// The GPU's logits at TF32 (the process's switches must allow it) against the CPU's at fp32,
/// on `model`'s weights (trained on the CPU) and the test points: each logit within its TF32
/// bound ([`crate::cli::tf32::logit_bound`]: twice the larger change of TF32 emulated on the
/// CPU, by truncation or to nearest) plus [`FP32_ALLOWANCE`]. The value is the largest excess of
/// |diff| over the TF32 bound. On the CPU (a dry run) the GPU side is TF32 emulated too.
pub fn compare_tf32(model: &Classifier, gpu: Device, o: &Options) -> Result<Comparison> {
    use crate::cli::tf32::{Rounding, emulated_logits, logit_bound};
    let (x, _) = points(o);
    let fp32 = tch::no_grad(|| model.logits(&x, false)).to_kind(Kind::Double);
    let (tf32, how) = if gpu.is_cuda() {
        let on = Classifier::new(&model.spec, gpu)?;
        copy_weights(model, &on);
        let l = tch::no_grad(|| on.logits(&x.to_device(gpu), false));
        (l.to_device(Device::Cpu), name(gpu))
    } else {
        let l = emulated_logits(model, &x, Rounding::Nearest)?;
        (l, "TF32 emulated on the cpu (dry run)".to_string())
    };
    let bound = logit_bound(model, &x, 0.0)?;
    let diff = (tf32.to_kind(Kind::Double) - &fp32).abs();
    let excess = (&diff - &bound).max().double_value(&[]).max(0.0);
    Ok(Comparison {
        precision: Precision::Tf32,
        ..Comparison::new(
            "forward logits at tf32, max(|diff| - tf32 bound)",
            excess,
            FP32_ALLOWANCE,
            format!(
                "{} points; {how} against cpu fp32: max |diff| {:.3e}; tf32 bound per logit up \
                 to {:.3e} (2 x TF32 emulated on the cpu, truncated or to nearest)",
                x.size()[0],
                diff.max().double_value(&[]),
                bound.max().double_value(&[])
            ),
        )
    })
}

/// Training-step and APGD-CE timings on `device`; APGD-CE attacks `model`'s test points.
pub fn timings(device: Device, model: &Classifier, o: &Options) -> Result<Vec<Timing>> {
    let mut out = Vec::new();
    for case in gfa_core::bench::CASES {
        let t = gfa_core::bench::train_step_times(case, o.width, o.batch, device, 3, o.steps)?;
        let m = gfa_core::bench::median(&t.iter().map(|t| t.wall).collect::<Vec<_>>());
        out.push(Timing {
            what: format!("train step {case}"),
            device: name(device),
            median_s: m,
            per_s: o.batch as f64 / m,
            detail: format!(
                "cnn width {}, batch {}, median of {} steps",
                o.width, o.batch, o.steps
            ),
        });
    }
    let (x, y) = points(o);
    let on = Classifier::new(&model.spec, device)?;
    copy_weights(model, &on);
    let (x, y) = (x.to_device(device), y.to_device(device));
    let attack = AttackSpec::ApgdCe(ApgdConfig::default()).build()?;
    let mut rng = gfa_core::seed::rng_for(0, "cuda-check/apgd");
    gfa_core::bench::sync(device);
    let t0 = Instant::now();
    let res = gfa_attacks::attack::run(attack.as_ref(), &on, &x, &y, 8.0 / 255.0, &mut rng)?;
    gfa_core::bench::sync(device);
    let s = t0.elapsed().as_secs_f64();
    let robust = res.success.logical_not().sum(Kind::Int64).int64_value(&[]);
    out.push(Timing {
        what: "APGD-CE".into(),
        device: name(device),
        median_s: s,
        per_s: x.size()[0] as f64 / s,
        detail: format!(
            "Linf 8/255, 100 iterations, {} points, {robust} robust (gfa stops attacking a \
             point once it is fooled)",
            x.size()[0]
        ),
    });
    Ok(out)
}

/// The test points of the check (synthetic, seeded; those of [`compare`]).
fn points(o: &Options) -> (Tensor, Tensor) {
    let data = gfa_data::synthetic(o.train_n, o.n, o.seed);
    crate::run::stages::head_tensors(&data.test, o.n.min(data.test.len()))
}

/// Write the weights (`model.safetensors`, PyTorch state-dict names), the model spec
/// (`model.json`) and the points (`points.safetensors`: `x` float [n,3,32,32] in [0,1], `y`
/// int64) for the PyTorch side of the timing.
pub fn export(model: &Classifier, o: &Options, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    checkpoint::save_weights(model, &dir.join("model.safetensors"))?;
    gfa_data::atomic::write_atomic(
        &dir.join("model.json"),
        serde_json::to_string_pretty(&model.spec)?.as_bytes(),
    )?;
    let (x, y) = points(o);
    checkpoint::write_tensors(
        &dir.join("points.safetensors"),
        &[("x".into(), x), ("y".into(), y)],
    )?;
    Ok(())
}

/// The CUDA device to check, or why there is none.
pub fn cuda_device(choice: gfa_core::DeviceChoice) -> std::result::Result<Device, String> {
    let choice = match choice {
        gfa_core::DeviceChoice::Auto => gfa_core::DeviceChoice::Cuda(0),
        c => c,
    };
    match choice.resolve() {
        Ok(d) if d.is_cuda() => Ok(d),
        Ok(_) => Err("--device cpu was given".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Fail when a comparison failed (after all were printed).
pub fn require_pass(rows: &[Comparison]) -> Result<()> {
    let failed: Vec<&str> = rows.iter().filter(|r| !r.pass).map(|r| r.check.as_str()).collect();
    if !failed.is_empty() {
        bail!("the GPU disagrees with the CPU: {}", failed.join("; "));
    }
    Ok(())
}

/// `gfa cuda-check`: prints the comparisons and timings, appends them to `--jsonl`; exit code
/// [`DISAGREES`] when a comparison fails, 0 when there is no GPU (it says what it skipped).
pub fn command(args: &CudaCheckArgs, choice: gfa_core::DeviceChoice) -> Result<i32> {
    let opts = Options { n: args.n, steps: args.steps, ..Default::default() };
    let gpu = if args.dry_run {
        tch::Device::Cpu
    } else {
        match cuda_device(choice) {
            Ok(d) => d,
            Err(why) => {
                println!(
                    "skipped: the CPU/CUDA comparison and the GPU timings: no usable CUDA device ({why})"
                );
                println!(
                    "  `gfa doctor` says what is missing; --dry-run runs the steps on the CPU"
                );
                return Ok(0);
            }
        }
    };
    let (mut rows, model) = compare(tch::Device::Cpu, gpu, &opts)?;
    // The timings run at the precision every command uses (`--precision`, default auto: tf32
    // on a GPU; docs/numerics.md); when that is TF32 on a GPU, its logits are compared too.
    let (asked, det) =
        Numerics::applied().map_or((Precision::Auto, false), |(a, n)| (a, n.deterministic));
    let timed = Numerics::apply(asked, det, gpu)?;
    let on_gpu = asked.resolve(Device::Cuda(0));
    if on_gpu == Precision::Tf32 {
        rows.push(compare_tf32(&model, gpu, &opts)?);
    }
    let mut lines = Vec::new();
    let said = numerics_line(on_gpu, timed);
    println!("{said}");
    lines.push(serde_json::json!({"kind": "numerics", "dry_run": args.dry_run,
        "comparisons": "fp32", "tf32_comparison": on_gpu == Precision::Tf32,
        "timings": timed, "text": said}));
    print_comparisons(&rows, gpu, args.dry_run, &mut lines);
    let times = timings(gpu, &model, &opts)?;
    for t in &times {
        println!(
            "{:<48} {:>10.4} s  {:>10.1}/s  on {}  {}",
            t.what, t.median_s, t.per_s, t.device, t.detail
        );
        lines.push(
            serde_json::json!({"kind": "timing", "impl": "gfa", "dry_run": args.dry_run, "row": t}),
        );
    }
    if let Some(dir) = &args.export {
        export(&model, &opts, dir)?;
        println!("wrote the weights and points to {}", dir.display());
    }
    if let Some(path) = &args.jsonl {
        append_lines(path, &lines)?;
    }
    if let Err(e) = require_pass(&rows) {
        eprintln!("error: {e:#}");
        return Ok(DISAGREES);
    }
    Ok(0)
}

/// What the report says of its numerics: the comparisons' precision (and the TF32 one's, when
/// runs on a GPU use TF32: `on_gpu`) and the timings'.
fn numerics_line(on_gpu: Precision, timed: Numerics) -> String {
    let tf32 = if on_gpu == Precision::Tf32 {
        "; forward logits also at tf32 (what runs use on a GPU), within 2 x TF32 emulated on the \
         cpu"
    } else {
        "; no tf32 comparison (runs on a GPU use fp32 at this --precision)"
    };
    format!(
        "numerics: comparisons at fp32 (TF32 off){tf32}; timings at precision {}, deterministic {}",
        timed.precision, timed.deterministic
    )
}

/// Print the comparison table and add its JSON lines to `lines`.
fn print_comparisons(
    rows: &[Comparison],
    gpu: Device,
    dry: bool,
    out: &mut Vec<serde_json::Value>,
) {
    let head = format!("comparison (cpu fp32 vs {} at the precision shown)", name(gpu));
    println!("{head:<48} {:>6} {:>10} {:>8}  result", "prec", "value", "bound");
    for r in rows {
        println!(
            "{:<48} {:>6} {:>10.3e} {:>8.0e}  {}  {}",
            r.check,
            r.precision.to_string(),
            r.value,
            r.bound,
            if r.pass { "pass" } else { "FAIL" },
            r.detail
        );
        out.push(serde_json::json!({"kind": "comparison", "dry_run": dry, "row": r}));
    }
}

/// Append `lines` to the JSON-lines file at `path`.
fn append_lines(path: &Path, lines: &[serde_json::Value]) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    for l in lines {
        writeln!(f, "{l}").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The exit code of `gfa cuda-check` when CUDA disagrees with the CPU beyond a bound (every
/// other failure, a crash included, exits otherwise: `scripts/gpu-check.sh` tells them apart).
pub const DISAGREES: i32 = 3;
