//! Golden per-sample norms of torchattacks 3.5.1 DeepFool, CW, EADEN and EADL1 on a tiny fixed
//! CNN, made by `tests/fixtures/gen_minnorm_fixtures.py`; gfa's `torchattacks` presets must
//! reproduce them within [`NORM_TOL`] relative, both sides in float64 (the float32 weights
//! converted with `.double()`), so that libtorch's CPU code path does not matter. The script's
//! calls, mirrored below:
//!
//! ```python
//! torchattacks.DeepFool(model, steps=50, overshoot=0.02)
//! torchattacks.CW(model, c=100.0, kappa=0, steps=50, lr=0.005)
//! torchattacks.EADEN(model, kappa=0, lr=0.01, binary_search_steps=9, max_iterations=20,
//!                    abort_early=True, initial_const=0.001, beta=0.001)   # EADL1 likewise
//! ```
use std::collections::HashMap;
use std::path::PathBuf;

use gfa_attacks::Attack;
use gfa_attacks::attack::run;
use gfa_attacks::cw::{Cw, CwConfig};
use gfa_attacks::deepfool::{DeepFool, DeepFoolConfig};
use gfa_attacks::ead::{Ead, EadConfig, EadRule};
use gfa_core::Classifier;
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::seed::rng_for;
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Relative bound on each per-sample norm, both sides in float64. An iteration's gradients and
/// logits round by at most k · 1.1e-16 of their terms' magnitudes on any code path (k ≤ 1024,
/// the widest reduction of this `cnn`), ≈ 1e-13; DeepFool divides the logit gap by its
/// gradient's norm, which lifts that by up to |z| / |gap| near the boundary, and the attacks
/// iterate up to 50 (DeepFool, CW) or 9 × 20 (EAD) times. 1e-9 stays far above that compound
/// (measured: DeepFool 2.8e-11, CW 4e-16, EAD 9e-16 and 0), while a wrong step, overshoot or
/// constant moves a norm by 1e-3 or more, and a discrete decision that went the other way
/// (success, binary-search step) by far more.
const NORM_TOL: f64 = 1e-9;

fn golden() -> (Classifier, HashMap<String, Tensor>) {
    let spec = ModelSpec { arch: Arch::Cnn, width: 0.125, ..ModelSpec::default() };
    let mut m = Classifier::new(&spec, Device::Cpu).unwrap();
    m.vs.load(fixture("minnorm_model.safetensors")).unwrap();
    m.vs.double();
    m.freeze();
    let g = Tensor::read_safetensors(fixture("minnorm_golden.safetensors")).unwrap();
    (m, g.into_iter().collect())
}

fn check(name: &str, atk: &dyn Attack, norm_key: &str) {
    let (m, g) = golden();
    let (x, y) = (&g["x"], &g["y"]);
    let out = run(atk, &m, x, y, f64::INFINITY, &mut rng_for(0, "golden")).unwrap();
    assert_eq!(x.kind(), Kind::Double, "the fixture's points are float64");
    let got: Vec<f64> = match norm_key {
        "l1" => &out.l1,
        _ => &out.l2,
    }
    .view([-1])
    .try_into()
    .unwrap();
    let want: Vec<f64> = g[&format!("{name}.{norm_key}")].view([-1]).try_into().unwrap();
    let fooled: Vec<i64> = g[&format!("{name}.fooled")].view([-1]).try_into().unwrap();
    let succ: Vec<i64> = out.success.to_kind(Kind::Int64).try_into().unwrap();
    println!("{name}: gfa {got:?}\n{name}: torchattacks {want:?}");
    assert_eq!(succ, fooled, "{name}: success flags differ from torchattacks");
    let rel = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / b.abs().max(1e-6));
    let max = rel.fold(0.0, f64::max);
    println!("{name}: max relative difference {max:e}");
    assert!(max <= NORM_TOL, "{name}: norms differ from torchattacks by {max:e} relative");
}

#[test]
fn deepfool_matches_torchattacks() {
    check("deepfool", &DeepFool::new(DeepFoolConfig::torchattacks()).unwrap(), "l2");
}

#[test]
fn cw_matches_torchattacks() {
    let cfg = CwConfig { initial_const: 100.0, steps: 50, lr: 0.005, ..CwConfig::torchattacks() };
    check("cw", &Cw::new(cfg).unwrap(), "l2");
}

#[test]
fn ead_en_matches_torchattacks() {
    let cfg = EadConfig { steps: 20, ..EadConfig::torchattacks(EadRule::En) };
    check("eaden", &Ead::new(cfg).unwrap(), "l2");
}

#[test]
fn ead_l1_matches_torchattacks() {
    let cfg = EadConfig { steps: 20, ..EadConfig::torchattacks(EadRule::L1) };
    check("eadl1", &Ead::new(cfg).unwrap(), "l1");
}
