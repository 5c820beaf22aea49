//! `scripts/setup-libtorch.sh` (`make setup`) on bad input: each gets its own message, and a
//! failed install leaves nothing half-installed in the cache. No download happens here: the
//! checks come first, and pip runs with `PIP_NO_INDEX=1`.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup-libtorch.sh")
}

fn setup(env: &[(&str, &str)]) -> (Output, String) {
    let mut c = Command::new("bash");
    c.arg(script()).env("PIP_NO_INDEX", "1").env_remove("GFA_CUDA");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o, text)
}

#[test]
fn unknown_gfa_cuda_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().to_str().unwrap();
    let (o, text) = setup(&[("GFA_CUDA", "yes"), ("LIBTORCH_CACHE", cache)]);
    assert!(!o.status.success());
    assert!(
        text.contains("GFA_CUDA='yes' is not understood") && text.contains("GFA_CUDA=1"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may be created");
}

#[test]
fn libtorch_of_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let torch = dir.path().join("torch");
    std::fs::create_dir_all(&torch).unwrap();
    std::fs::write(torch.join("version.py"), "__version__ = '2.10.0+cpu'\n").unwrap();
    let (o, text) = setup(&[("LIBTORCH", torch.to_str().unwrap())]);
    assert!(!o.status.success());
    assert!(text.contains("holds libtorch 2.10.0+cpu") && text.contains("2.11.0"), "{text}");
    std::fs::remove_file(torch.join("version.py")).unwrap();
    let (o, text) = setup(&[("LIBTORCH", torch.to_str().unwrap())]);
    assert!(!o.status.success() && text.contains("not a libtorch folder"), "{text}");
}

#[test]
fn incomplete_cache_is_named_and_nothing_half_installed_remains() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("torch-2.11.0");
    std::fs::create_dir_all(dest.join("torch/lib")).unwrap();
    std::fs::write(dest.join("torch/lib/libtorch_cpu.so"), "half").unwrap();
    std::fs::create_dir_all(dir.path().join("torch-2.11.0.cuda-stage/nvidia")).unwrap();
    let (o, text) = setup(&[("LIBTORCH_CACHE", dir.path().to_str().unwrap()), ("GFA_CUDA", "0")]);
    assert!(!o.status.success(), "pip cannot install without an index: {text}");
    assert!(text.contains("incomplete install") && text.contains("left over"), "{text}");
    assert!(text.contains("nothing half-installed"), "{text}");
    let left: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}
