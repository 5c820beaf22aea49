//! The CUDA backend is loaded before libtorch is first asked about CUDA (libtorch caches its
//! first answer for the life of the process), in every binary: the library's own entry points
//! load it, and nothing in the workspace asks libtorch directly.
use std::path::Path;
use std::process::Command;

use gfa_core::device::{self, DeviceChoice};

/// The child side of [`backend_is_loaded_before_the_first_cuda_query`]: in a fresh process,
/// seeding (the first thing every run does) loads the backend before it asks about CUDA, and
/// resolving a device asks only after that.
#[test]
#[ignore = "run in a fresh process by backend_is_loaded_before_the_first_cuda_query"]
fn load_order_in_a_fresh_process() {
    if std::env::var_os("GFA_LOAD_ORDER_CHILD").is_none() {
        return;
    }
    assert_eq!(device::load_order(), (false, false), "nothing has asked about CUDA yet");
    gfa_core::seed::seed_all(7);
    assert_eq!(device::load_order(), (true, false), "seed_all loads the backend first");
    let _ = DeviceChoice::Auto.resolve().unwrap();
    let _ = device::cuda_device_count();
    assert_eq!(device::load_order(), (true, false));
    println!("LOAD-ORDER-OK");
}

#[test]
fn backend_is_loaded_before_the_first_cuda_query() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "it::device::load_order_in_a_fresh_process", "--ignored", "--nocapture"])
        .env("GFA_LOAD_ORDER_CHILD", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("LOAD-ORDER-OK"), "{text}");
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// libtorch's CUDA queries appear only in `device.rs`, behind the backend load.
#[test]
fn no_cuda_query_bypasses_the_backend_load() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    sources(crates, &mut files);
    let queries =
        ["Cuda::is_available", "Cuda::device_count", "cuda_if_available", "Cuda::cudnn_is"];
    let mut offenders = Vec::new();
    for f in &files {
        if f.ends_with("gfa-core/src/device.rs") || f.ends_with("gfa-core/tests/it/device.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if queries.iter().any(|q| line.contains(q)) {
                offenders.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "ask gfa_core::device::cuda_available / cuda_device_count instead:\n{}",
        offenders.join("\n")
    );
    assert!(files.len() > 50, "found only {} sources under {}", files.len(), crates.display());
}
