//! gfa on CUDA against gfa on the CPU. The CUDA tests need a GPU: they run with
//! `GFA_TEST_CUDA=1 cargo test -p gfa-exp --test integration cuda` and are listed as ignored,
//! with that reason, elsewhere. The CPU test runs the same check with the CPU in both roles,
//! so its plumbing is tested on every machine.
use gfa_core::DeviceChoice;
use gfa_exp::cli::cuda_check::{Options, compare, cuda_device, export, timings};
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
        // The same device twice: every difference is exactly zero.
        assert!(r.pass && r.value == 0.0, "{r:?}");
    }
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
