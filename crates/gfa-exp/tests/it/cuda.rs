//! gfa on CUDA against gfa on the CPU. The CUDA tests need a GPU: they run with
//! `GFA_TEST_CUDA=1 cargo test -p gfa-exp --test integration cuda` and are listed as ignored,
//! with that reason, elsewhere. The CPU test runs the same check with the CPU in both roles,
//! so its plumbing is tested on every machine.
use std::path::Path;
use std::process::Command;

use gfa_core::DeviceChoice;
use gfa_core::device::{Numerics, Precision};
use gfa_exp::cli::cuda_check::{Options, compare, compare_tf32, cuda_device, export, timings};
use tch::Device;

/// Small sizes: seconds on two CPU cores.
fn small() -> Options {
    Options { n: 32, train_n: 128, epochs: 2, width: 0.125, steps: 1, batch: 16, seed: 0 }
}

#[test]
fn cuda_check_runs_on_the_cpu_against_itself() {
    let (rows, model) = compare(Device::Cpu, Device::Cpu, &small()).unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    for r in &rows {
        // The same device twice: every difference is exactly zero, at fp32.
        assert!(r.pass && r.value == 0.0 && r.precision == Precision::Fp32, "{r:?}");
    }
    // The TF32 comparison, TF32 emulated on the CPU: within the derived bound.
    let r = compare_tf32(&model, Device::Cpu, &small()).unwrap();
    assert!(r.pass && r.precision == Precision::Tf32 && r.detail.contains("emulated"), "{r:?}");
    let t = timings(Device::Cpu, &model, &small()).unwrap();
    // Every training-step case of gfa_core::bench, then APGD-CE.
    assert_eq!(t.len(), gfa_core::bench::CASES.len() + 1, "{t:?}");
    assert!(t.iter().all(|t| t.median_s > 0.0 && t.per_s > 0.0), "{t:?}");
    let dir = tempfile::tempdir().unwrap();
    export(&model, &small(), dir.path()).unwrap();
    let w = tch::Tensor::read_safetensors(dir.path().join("model.safetensors")).unwrap();
    assert!(w.iter().any(|(n, _)| n == "conv1.weight"));
    let p = tch::Tensor::read_safetensors(dir.path().join("points.safetensors")).unwrap();
    assert_eq!(p.iter().find(|(n, _)| n == "x").unwrap().1.size(), vec![32, 3, 32, 32]);
    let spec: gfa_core::ModelSpec =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("model.json")).unwrap())
            .unwrap();
    assert_eq!(spec, model.spec);
}

/// GPU 0; with GFA_TEST_CUDA=1 a machine without one is an error.
fn gpu() -> Device {
    cuda_device(DeviceChoice::Auto)
        .unwrap_or_else(|e| panic!("GFA_TEST_CUDA=1, but no CUDA device is usable: {e}"))
}

#[test]
#[cfg_attr(not(gfa_test_cuda), ignore = "needs a GPU: run with GFA_TEST_CUDA=1")]
fn cuda_agrees_with_the_cpu() {
    let gpu = gpu();
    let o = Options { n: 500, ..Options::default() };
    let (rows, model) = compare(Device::Cpu, gpu, &o).unwrap();
    for r in &rows {
        println!("{r:?}");
    }
    let failed: Vec<_> = rows.iter().filter(|r| !r.pass).collect();
    assert!(failed.is_empty(), "CUDA disagrees with the CPU: {failed:?}");
    // At TF32 (what runs use by default on a GPU), within the bound derived for it.
    Numerics::apply(Precision::Tf32, false, gpu).unwrap();
    let r = compare_tf32(&model, gpu, &o).unwrap();
    println!("{r:?}");
    Numerics::apply(Precision::Fp32, false, gpu).unwrap();
    assert!(r.pass && r.precision == Precision::Tf32, "CUDA at TF32 beyond its bound: {r:?}");
    let t = timings(gpu, &model, &Options { steps: 3, ..o }).unwrap();
    assert!(t.iter().all(|t| t.device.starts_with("cuda")), "{t:?}");
}

#[test]
#[cfg_attr(not(gfa_test_cuda), ignore = "needs a GPU: run with GFA_TEST_CUDA=1")]
fn cuda_device_is_named_with_its_gpu() {
    let gpu = gpu();
    let d = gfa_core::device::describe(gpu);
    assert!(d.starts_with("cuda:0 (") && d.contains("GiB"), "{d}");
    // --device auto takes the GPU and does not warn.
    assert_eq!(DeviceChoice::Auto.resolve().unwrap(), gpu);
    assert_eq!(gfa_core::device::auto_fallback_warning(DeviceChoice::Auto, gpu), None);
}

/// `scripts/gpu-check.sh` with a stub `gfa` that reports one GPU and ends `gfa cuda-check` as
/// told: the script's exit code and words tell a disagreement (1) from a crash, an error and a
/// timeout (2), and `gpu.md` says which and the numerics asked for. No GPU, Rust or PyTorch
/// needed (PYTHON=false: the PyTorch side is skipped, the report falls back to python3).
#[test]
fn gpu_check_tells_a_disagreement_from_a_crash_an_error_and_a_timeout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("gfa");
    std::fs::write(
        &stub,
        r#"#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
[ "$STUB_END" = nodoctor ] && exit 1
case "$*" in
  "doctor --json") echo '{"torch_cuda_devices":1,"cuda_backend":"loaded","gpus":[{"name":"stub"}]}' ;;
  doctor) echo "stub doctor" ;;
  *cuda-check*)
    case "$STUB_END" in
      segv) kill -SEGV $$ ;;
      hang) exec sleep 30 ;;
      *) exit "$STUB_END" ;;
    esac ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = dir.path().join("out");
    let log = dir.path().join("args.log");
    let run = |end: &str| {
        let o = Command::new("bash")
            .arg(root.join("scripts/gpu-check.sh"))
            .env("GFA", &stub)
            .env("PYTHON", "false")
            .env("LAYOUT_BIN", dir.path().join("none"))
            .env("GPU_CHECK_OUT", &out)
            .env("GPU_CHECK_TIMEOUT", "2")
            .env("GPU_CHECK_PRECISION", "fp32")
            .env("GPU_CHECK_DETERMINISTIC", "1")
            .env("STUB_END", end)
            .env("STUB_LOG", &log)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let errs = String::from_utf8_lossy(&o.stderr).to_string();
        let md = std::fs::read_to_string(out.join("gpu.md")).unwrap_or_default();
        (o.status.code(), text + &errs, md)
    };
    for (end, code, says) in [
        ("0", 0, "exit 0: CUDA agrees with the CPU within every bound"),
        ("3", 1, "CUDA disagrees with the CPU beyond a bound"),
        ("segv", 2, "crashed (killed by signal 11, SIGSEGV): not a disagreement"),
        ("1", 2, "failed with exit code 1 (an error"),
        ("hang", 2, "ran past its 2 s and was stopped: not a disagreement"),
    ] {
        let (got, text, md) = run(end);
        assert_eq!(got, Some(code), "{end}: {text}");
        assert!(md.contains(says), "{end}: gpu.md says {md}");
        if code != 0 {
            assert!(text.contains(says), "{end}: {text}");
        }
        assert!(text.contains("== numerics: --precision fp32 --deterministic"), "{text}");
        assert!(md.contains("--precision fp32, deterministic on"), "{md}");
        assert!(md.contains("PyTorch timings"), "the skipped parts are named: {md}");
    }
    // A binary that does not even start is an error, not a disagreement.
    let (got, text, _) = run("nodoctor");
    assert_eq!(got, Some(2), "{text}");
    assert!(
        text.contains("doctor` failed (exit 1)") && text.contains("not a disagreement"),
        "{text}"
    );
    let args = std::fs::read_to_string(&log).unwrap();
    assert!(args.contains("--precision fp32 --deterministic cuda-check --n 500"), "{args}");
}
