//! `gfa doctor`: what gfa runs on, on this machine, and what to do about what is missing —
//! libtorch (version, file), the CPU code path its kernels use, threads, the CUDA backend (or
//! the exact `dlopen` error and its fix), the GPUs, where CIFAR-10 was found, the libtorch
//! cache and its size.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gfa_core::device::{self, DeviceChoice};
use gfa_core::libtorch;
use serde::Serialize;

/// One GPU, as the NVIDIA driver reports it.
#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    pub index: usize,
    pub name: String,
    pub memory_bytes: u64,
}

/// Everything `gfa doctor` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub gfa_version: String,
    pub git_rev: String,
    /// `libtorch_cpu.so` as loaded.
    pub libtorch_path: Option<PathBuf>,
    pub libtorch_version: Option<String>,
    /// The libtorch version this build needs.
    pub libtorch_built_for: String,
    pub cpu_model: Option<String>,
    pub cpu_cores: usize,
    /// `DEFAULT`, `AVX2` or `AVX512`.
    pub cpu_capability: Option<String>,
    /// `ATEN_CPU_CAPABILITY`, when set.
    pub cpu_capability_env: Option<String>,
    pub threads: i32,
    pub interop_threads: i32,
    /// Whether `libtorch_cuda.so` loaded; else the `dlopen` error.
    pub cuda_backend: Result<(), String>,
    /// What to do when the CUDA backend did not load.
    pub cuda_fix: Option<String>,
    /// Why this machine looks like it has an NVIDIA driver.
    pub nvidia_driver: Option<String>,
    /// The driver's CUDA version (e.g. "13.0").
    pub driver_cuda_version: Option<String>,
    /// GPUs the driver lists (empty without a driver).
    pub gpus: Vec<GpuInfo>,
    /// Why the driver lists no GPU, when it does not.
    pub gpus_error: Option<String>,
    /// CUDA devices libtorch sees.
    pub torch_cuda_devices: i64,
    /// What `--device auto` resolves to.
    pub auto_device: String,
    /// Where CIFAR-10 was found, or why not and how to get it.
    pub cifar10: Result<PathBuf, String>,
    /// The libtorch cache folder and its size in bytes.
    pub cache: Option<(PathBuf, u64)>,
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// The fix for a failed `dlopen("libtorch_cuda.so")`, from the loader's error. Its forms
/// (glibc's `dlerror`): `<lib>: cannot open shared object file: …` names the library not found
/// (`libtorch_cuda.so` itself: a CPU-only libtorch; another: a CUDA library it needs);
/// `<lib>: undefined symbol: <sym>` and `<lib>: version `<v>' not found (required by <lib>)`
/// mean that libraries of different builds were loaded together (a torch/CUDA mismatch, not a
/// missing backend); `invalid ELF header`, `file too short` a damaged file.
fn cuda_fix(error: &str, driver: bool) -> String {
    let library = error.split(": ").next().unwrap_or(error).trim();
    let file = library.rsplit('/').next().unwrap_or(library);
    if error.contains("undefined symbol") || error.contains("not found (required by") {
        let what = error.split(": ").skip(1).collect::<Vec<_>>().join(": ");
        format!(
            "{file} does not match the libraries loaded with it ({what}): libtorch and its CUDA \
             libraries come from different builds (another torch version or CUDA build, or a \
             CUDA library of another version found first on LD_LIBRARY_PATH). Use one torch \
             2.11.0 whole: `GFA_CUDA=1 make setup` reinstalls the pinned CUDA libraries into the \
             libtorch cache, or point LD_LIBRARY_PATH at a single pip-installed torch 2.11.0's \
             torch/lib and nothing else; `ldd {library}` shows what each library resolves to"
        )
    } else if error.contains("cannot open shared object file") && file == "libtorch_cuda.so" {
        "this libtorch has no CUDA backend (a CPU-only build): point LD_LIBRARY_PATH at the \
         torch/lib of a CUDA build of torch 2.11.0"
            .into()
    } else if error.contains("cannot open shared object file") {
        format!(
            "{library} is missing: the CUDA libraries libtorch needs are not installed next to \
             it. `GFA_CUDA=1 make setup` installs them into the libtorch cache{}; or run with \
             LD_LIBRARY_PATH=<site-packages>/torch/lib of a pip-installed torch 2.11.0 whose \
             nvidia-* packages are installed",
            if driver {
                ""
            } else {
                " (this machine has no NVIDIA driver, so gfa would still run on the CPU)"
            }
        )
    } else if error.contains("invalid ELF header") || error.contains("file too short") {
        format!(
            "{library} is damaged (not a complete library): `GFA_CUDA=1 make setup` reinstalls it"
        )
    } else {
        "reinstall the CUDA libraries: `GFA_CUDA=1 make setup`".into()
    }
}

/// The folder that `.libtorch` links to (the setup script's cache), when this binary loaded
/// libtorch from it.
fn cache_of(libtorch: Option<&Path>) -> Option<PathBuf> {
    // <cache>/torch-<version>/torch/lib/libtorch_cpu.so
    let root = libtorch?.parent()?.parent()?.parent()?;
    root.file_name()?
        .to_str()?
        .starts_with("torch-")
        .then(|| root.parent().map(Path::to_path_buf))?
}

/// Bytes under `path` (files counted once per inode).
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
    }
    total
}

/// `gfa doctor [--json] [--data DIR]`.
pub fn command(args: &crate::cli::args::DoctorArgs) -> anyhow::Result<i32> {
    let report = collect(args.data.as_deref());
    if args.json {
        println!("{}", to_json(&report));
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}

/// Collect the report (`data`: the `--data` flag, if given).
pub fn collect(data: Option<&Path>) -> Report {
    let backend = device::load_cuda_backend();
    let driver = libtorch::nvidia_driver();
    let libtorch_path = libtorch::library_path();
    let (driver_cuda_version, gpus, gpus_error) = match libtorch::driver_gpus() {
        Ok((v, g)) => (
            (v > 0).then(|| format!("{}.{}", v / 1000, (v % 1000) / 10)),
            g.into_iter()
                .map(|g| GpuInfo { index: g.index, name: g.name, memory_bytes: g.total_bytes })
                .collect(),
            None,
        ),
        Err(e) => (None, vec![], Some(e)),
    };
    let auto = DeviceChoice::Auto
        .resolve()
        .map(gfa_core::device::device_name)
        .unwrap_or_else(|e| format!("error: {e}"));
    let cifar10 = gfa_data::cifar10::resolve_data_dir(data).map_err(|e| e.to_string());
    let cache = cache_of(libtorch_path.as_deref()).map(|c| {
        let size = disk_usage(&c);
        (c, size)
    });
    Report {
        gfa_version: env!("CARGO_PKG_VERSION").into(),
        git_rev: crate::results::build_info::GIT_REV.into(),
        libtorch_version: libtorch::version(),
        libtorch_path,
        libtorch_built_for: libtorch::BUILT_FOR.into(),
        cpu_model: cpu_model(),
        cpu_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu_capability: libtorch::cpu_capability(),
        cpu_capability_env: std::env::var("ATEN_CPU_CAPABILITY").ok(),
        threads: tch::get_num_threads(),
        interop_threads: tch::get_num_interop_threads(),
        cuda_fix: backend.as_ref().err().map(|e| cuda_fix(e, driver.is_some())),
        cuda_backend: backend,
        nvidia_driver: driver,
        driver_cuda_version,
        gpus,
        gpus_error,
        torch_cuda_devices: gfa_core::device::cuda_device_count() as i64,
        auto_device: auto,
        cifar10,
        cache,
    }
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// The report as aligned `key  value` lines.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<14}{v}");
    };
    line("gfa", format!("{} (git {})", r.gfa_version, r.git_rev));
    let lt = match (&r.libtorch_version, &r.libtorch_path) {
        (Some(v), Some(p)) if libtorch::is_supported(v) => format!("{v} at {}", p.display()),
        (Some(v), Some(p)) => format!(
            "{v} at {} — WRONG VERSION: this gfa is built for libtorch {}; rebuild with \
             `make build`, or point LD_LIBRARY_PATH at a torch {} torch/lib",
            p.display(),
            r.libtorch_built_for,
            r.libtorch_built_for
        ),
        (None, Some(p)) => format!("unknown version at {} (no version.py beside it)", p.display()),
        _ => "not found".into(),
    };
    line("libtorch", lt);
    let env = match &r.cpu_capability_env {
        Some(e) => format!("ATEN_CPU_CAPABILITY={e}"),
        None => "ATEN_CPU_CAPABILITY unset".into(),
    };
    line(
        "CPU",
        format!(
            "{}, {} cores; libtorch code path {} ({env})",
            r.cpu_model.as_deref().unwrap_or("unknown model"),
            r.cpu_cores,
            r.cpu_capability.as_deref().unwrap_or("unknown")
        ),
    );
    line("threads", format!("{} intra-op, {} inter-op", r.threads, r.interop_threads));
    match &r.cuda_backend {
        Ok(()) => line("CUDA backend", "loaded (libtorch_cuda.so)".into()),
        Err(e) => {
            line("CUDA backend", format!("not loaded: {e}"));
            if let Some(fix) = &r.cuda_fix {
                line("", format!("fix: {fix}"));
            }
        }
    }
    line(
        "NVIDIA driver",
        match (&r.nvidia_driver, &r.driver_cuda_version) {
            (Some(why), Some(v)) => format!("present ({why}; CUDA {v})"),
            (Some(why), None) => format!("present ({why})"),
            (None, _) => "none (no /proc/driver/nvidia, no nvidia-smi on PATH)".into(),
        },
    );
    let mut gpus = format!("{} seen by libtorch", r.torch_cuda_devices);
    for g in &r.gpus {
        let _ = write!(gpus, "; cuda:{} {} ({})", g.index, g.name, device::gib(g.memory_bytes));
    }
    if let (Some(e), true) = (&r.gpus_error, r.nvidia_driver.is_some()) {
        let _ = write!(gpus, "; driver: {e}");
    }
    line("CUDA devices", gpus);
    line("--device auto", r.auto_device.clone());
    line(
        "CIFAR-10",
        match &r.cifar10 {
            Ok(p) => format!("found at {}", p.display()),
            Err(e) => format!("not found: {e}"),
        },
    );
    line(
        "cache",
        match &r.cache {
            Some((p, size)) => format!("{} ({})", p.display(), gb(*size)),
            None => "libtorch is not loaded from the setup script's cache".into(),
        },
    );
    out
}

/// The report as one JSON object (for scripts).
pub fn to_json(r: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("the report serializes");
    // Results as plain fields: `cuda_backend`: "loaded" or the error; `cifar10`: path or error.
    v["cuda_backend"] = match &r.cuda_backend {
        Ok(()) => "loaded".into(),
        Err(e) => format!("not loaded: {e}").into(),
    };
    v["cifar10"] = match &r.cifar10 {
        Ok(p) => p.display().to_string().into(),
        Err(e) => format!("not found: {e}").into(),
    };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fix_names_the_missing_library_and_the_command() {
        let e = "libcusparse.so.12: cannot open shared object file: No such file or directory";
        let fix = cuda_fix(e, true);
        assert!(
            fix.contains("libcusparse.so.12") && fix.contains("GFA_CUDA=1 make setup"),
            "{fix}"
        );
        let fix = cuda_fix("libtorch_cuda.so: cannot open shared object file", false);
        assert!(fix.contains("CPU-only"), "{fix}");
    }

    /// An undefined symbol or a missing symbol version in libtorch_cuda.so (or a library it
    /// loads) is a mismatch of builds, never a CPU-only libtorch; a damaged file says so.
    #[test]
    fn mismatched_builds_are_not_called_cpu_only() {
        let undefined = "/opt/torch/lib/libtorch_cuda.so: undefined symbol: \
                         _ZN3c104cuda29c10_cuda_check_implementationEiPKcS2_ib";
        let versioned = "/usr/lib/x86_64-linux-gnu/libcudart.so.13: version `libcudart.so.13' \
                         not found (required by /opt/torch/lib/libtorch_cuda.so)";
        for (e, names) in [(undefined, "libtorch_cuda.so"), (versioned, "libcudart.so.13")] {
            let fix = cuda_fix(e, true);
            assert!(!fix.contains("CPU-only"), "{fix}");
            assert!(fix.contains("different builds") && fix.starts_with(names), "{fix}");
            assert!(fix.contains("GFA_CUDA=1 make setup") && fix.contains("ldd"), "{fix}");
        }
        let fix = cuda_fix(undefined, true);
        assert!(fix.contains("c10_cuda_check_implementation"), "names the symbol: {fix}");
        let damaged = "/c/torch/lib/libtorch_cuda.so: invalid ELF header";
        assert!(cuda_fix(damaged, true).contains("damaged"), "{}", cuda_fix(damaged, true));
        // A dependency that is missing is named, with or without a driver.
        let fix = cuda_fix("libcudnn.so.9: cannot open shared object file: No such file", false);
        assert!(fix.starts_with("libcudnn.so.9 is missing") && fix.contains("no NVIDIA"), "{fix}");
    }

    #[test]
    fn cache_is_the_folder_above_torch_version() {
        let p = Path::new("/c/tch-libtorch/torch-2.11.0/torch/lib/libtorch_cpu.so");
        assert_eq!(cache_of(Some(p)), Some(PathBuf::from("/c/tch-libtorch")));
        assert_eq!(cache_of(Some(Path::new("/opt/venv/site-packages/torch/lib/x.so"))), None);
    }
}
