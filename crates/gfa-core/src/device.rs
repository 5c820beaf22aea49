//! Device selection: `auto`, `cpu`, `cuda` or `cuda:i`.
//!
//! rustc links with `--as-needed`, which drops `libtorch_cuda.so` from the binary because no
//! symbol of it is referenced. The CUDA backend then never registers and tch reports no GPU even
//! on a GPU machine. [`load_cuda_backend`] `dlopen`s it, so the same binary uses CUDA where the
//! library and a driver exist and the CPU elsewhere. libtorch caches the first answer of its CUDA
//! hooks for the life of the process, so the load must come before the first CUDA query: every
//! query in gfa goes through [`cuda_available`] and [`cuda_device_count`], which load the backend
//! first. Binaries, library callers and test binaries therefore all see the same answer.
//!
//! The numerics of a run are set here too, once per process, before its first tensor:
//! [`Precision`] (TF32 or strict float32 on GPUs) and [`set_deterministic`] (deterministic cuDNN
//! and algorithms, `CUBLAS_WORKSPACE_CONFIG`). docs/numerics.md says which claims hold under
//! which setting.
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::{CoreError, Result};

/// Where a run executes. Asking for CUDA where none works is an error, never a silent CPU run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when one works, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                other.strip_prefix("cuda:").and_then(|i| i.parse().ok()).map(Self::Cuda).ok_or_else(
                    || {
                        CoreError::Device(format!(
                            "unknown device '{other}': use auto, cpu, cuda or cuda:<index>"
                        ))
                    },
                )
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceChoice {
    /// Resolve to a tch device, checking that a requested GPU really works.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(if cuda_available() { Device::Cuda(0) } else { Device::Cpu }),
            Self::Cuda(i) => {
                if !cuda_available() {
                    let why = match load_cuda_backend() {
                        Err(e) => format!("the CUDA backend of libtorch could not be loaded ({e})"),
                        Ok(()) => {
                            "libtorch's CUDA backend is loaded but sees no GPU (driver?)".into()
                        }
                    };
                    return Err(CoreError::Device(format!(
                        "--device cuda:{i} was requested but CUDA is not usable: {why}; \
                         use --device cpu or auto"
                    )));
                }
                let n = cuda_device_count();
                if i >= n {
                    return Err(CoreError::Device(format!(
                        "--device cuda:{i} was requested but only {n} CUDA device(s) exist"
                    )));
                }
                Ok(Device::Cuda(i))
            }
        }
    }
}

/// Short human name of a device for CSV rows (`cpu`, `cuda:0`).
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// One line naming where work runs, for the first line of `gfa run`, `train` and `eval`:
/// `cpu (AVX2 code path, 2 threads)` or `cuda:0 (NVIDIA H200, 139.8 GiB)`.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cuda(i) => {
            let gpu = crate::libtorch::driver_gpus()
                .ok()
                .and_then(|(_, gpus)| gpus.into_iter().find(|g| g.index == i));
            match gpu {
                Some(g) => format!("cuda:{i} ({}, {})", g.name, gib(g.total_bytes)),
                None => format!("cuda:{i}"),
            }
        }
        _ => format!(
            "cpu ({} code path, {} threads)",
            crate::libtorch::cpu_capability().unwrap_or_else(|| "unknown".into()),
            tch::get_num_threads()
        ),
    }
}

/// Bytes as GiB with one decimal.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The warning `--device auto` prints when it falls back to the CPU on a machine with an
/// NVIDIA driver: the CUDA backend did not load (or sees no GPU), and `gfa doctor` says why.
pub fn auto_fallback_warning(choice: DeviceChoice, resolved: Device) -> Option<String> {
    if choice != DeviceChoice::Auto || resolved != Device::Cpu {
        return None;
    }
    let driver = crate::libtorch::nvidia_driver()?;
    let why = match load_cuda_backend() {
        Err(e) => format!("libtorch's CUDA backend did not load ({e})"),
        Ok(()) => "libtorch's CUDA backend loaded but sees no GPU".into(),
    };
    Some(format!(
        "warning: this machine has an NVIDIA driver ({driver}), but {why}; running on the CPU. \
         `gfa doctor` says what is missing and how to fix it; --device cpu silences this."
    ))
}

/// The float32 arithmetic of a run's matrix products and convolutions on a GPU
/// (`[run] precision`, `--precision`). docs/numerics.md is the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// `tf32` on a GPU, `fp32` on the CPU.
    #[default]
    Auto,
    /// Strict IEEE float32 everywhere: TF32 off in cuBLAS and cuDNN.
    Fp32,
    /// TensorFloat-32 in cuBLAS matrix products and cuDNN convolutions (inputs rounded to 10
    /// mantissa bits, float32 accumulation) on GPUs that have it; libtorch's default for
    /// convolutions. The CPU has no TF32: there it is `fp32`.
    Tf32,
}

impl FromStr for Precision {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "fp32" => Ok(Self::Fp32),
            "tf32" => Ok(Self::Tf32),
            other => Err(CoreError::invalid(
                "precision",
                format!("unknown precision '{other}': use auto, fp32 or tf32"),
            )),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Fp32 => "fp32",
            Self::Tf32 => "tf32",
        })
    }
}

impl Precision {
    /// What runs on `device`: `auto` is `tf32` on a GPU and `fp32` on the CPU, and the CPU
    /// has no TF32.
    pub fn resolve(self, device: Device) -> Precision {
        match (self, device.is_cuda()) {
            (_, false) | (Self::Fp32, true) => Self::Fp32,
            (Self::Auto | Self::Tf32, true) => Self::Tf32,
        }
    }
}

/// The numerics of a run: its precision and whether libtorch's deterministic mode is on.
/// Recorded in every checkpoint and CSV row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Numerics {
    /// As resolved for the run's device (`fp32` or `tf32`, never `auto`).
    pub precision: Precision,
    pub deterministic: bool,
}

impl Numerics {
    /// Resolve `precision` for `device` and switch libtorch to it and to `deterministic`
    /// (once per process, before the run's first tensor; the switches are process-wide).
    ///
    /// Deterministic mode: deterministic cuDNN convolutions, no cuDNN benchmarking,
    /// deterministic algorithms (an operation without a deterministic CUDA implementation
    /// prints libtorch's warning naming it), and `CUBLAS_WORKSPACE_CONFIG=:4096:8` when the
    /// environment does not set it (cuBLAS reads it when its first handle is made, so this
    /// must come before any CUDA work).
    pub fn apply(precision: Precision, deterministic: bool, device: Device) -> Result<Numerics> {
        let requested = precision;
        let precision = precision.resolve(device);
        if deterministic && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
            // SAFETY: set before the run starts its worker threads (callers apply the numerics
            // at start-up); nothing else writes the environment.
            unsafe { std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8") };
        }
        let set = crate::libtorch::set_tf32(precision == Precision::Tf32)
            .and_then(|()| crate::libtorch::set_deterministic(deterministic, true));
        set.map_err(|e| CoreError::Device(format!("cannot set the run's numerics: {e}")))?;
        let applied = Numerics { precision, deterministic };
        *APPLIED.lock().unwrap_or_else(|p| p.into_inner()) = Some((requested, applied));
        Ok(applied)
    }

    /// The numerics [`Numerics::apply`] last set in this process, and the precision it was
    /// asked for (`auto` included); `None` before any.
    pub fn applied() -> Option<(Precision, Numerics)> {
        *APPLIED.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The numerics this process computes with, as every CSV row and checkpoint records them:
    /// those [`Numerics::apply`] set (gfa's commands apply them before their first tensor).
    /// In a program that never applied any, libtorch's defaults as this policy names them:
    /// `tf32` where a CUDA device is usable (libtorch allows TF32 in cuDNN convolutions by
    /// default, so the arithmetic is not strict float32), else `fp32`, and libtorch's
    /// deterministic-algorithms switch.
    pub fn current() -> Numerics {
        if let Some((_, n)) = Numerics::applied() {
            return n;
        }
        let precision = if cuda_available() { Precision::Tf32 } else { Precision::Fp32 };
        let deterministic = crate::libtorch::numerics_switches().is_ok_and(|s| s.2);
        Numerics { precision, deterministic }
    }

    /// [`Numerics::current`] for work on `device`: the CPU has no TF32, so work there is
    /// `fp32` whatever the process applied for its GPU.
    pub fn in_force(device: Device) -> Numerics {
        let n = Numerics::current();
        Numerics { precision: if device.is_cuda() { n.precision } else { Precision::Fp32 }, ..n }
    }

    /// The numerics of results written before gfa recorded them (CSV schema 4 and older,
    /// checkpoint format 2 without `numerics`): gfa had not run on a GPU then (docs/numerics.md,
    /// "Results written before the numerics were recorded"), so they were computed in strict
    /// float32 on the CPU, and `--deterministic` did not exist (its switches were off).
    pub const BEFORE_RECORDING: Numerics =
        Numerics { precision: Precision::Fp32, deterministic: false };
}

/// What [`Numerics::apply`] last set: (requested precision, numerics in force).
static APPLIED: std::sync::Mutex<Option<(Precision, Numerics)>> = std::sync::Mutex::new(None);

/// The outcome of the one attempt to load the CUDA backend, once it was made.
static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Set when a CUDA query of this crate ran before the backend load was attempted (it never
/// does; `tests/it/device.rs` checks it in a fresh process).
static QUERIED_BEFORE_LOAD: AtomicBool = AtomicBool::new(false);

/// Whether libtorch can use a CUDA device, asked after [`load_cuda_backend`]. The only place
/// gfa asks libtorch this.
pub fn cuda_available() -> bool {
    let _ = load_cuda_backend();
    cuda_query(tch::Cuda::is_available)
}

/// The number of CUDA devices libtorch sees (0 without a usable backend), asked after
/// [`load_cuda_backend`].
pub fn cuda_device_count() -> usize {
    let _ = load_cuda_backend();
    cuda_query(|| tch::Cuda::device_count().max(0) as usize)
}

/// Run a CUDA query of libtorch, noting whether the backend load was attempted before it.
fn cuda_query<T>(query: impl FnOnce() -> T) -> T {
    if LOADED.get().is_none() {
        QUERIED_BEFORE_LOAD.store(true, Ordering::SeqCst);
    }
    query()
}

/// Whether the backend load was attempted in this process (by [`load_cuda_backend`]), and
/// whether any CUDA query of gfa ran before it: `(attempted, queried_before)`.
pub fn load_order() -> (bool, bool) {
    (LOADED.get().is_some(), QUERIED_BEFORE_LOAD.load(Ordering::SeqCst))
}

/// `dlopen` libtorch's CUDA library once, before any CUDA query (libtorch caches the first
/// answer of its CUDA hooks). Returns why it failed; on a CPU machine failing is normal.
/// [`cuda_available`], [`cuda_device_count`], [`DeviceChoice::resolve`] and
/// [`crate::seed::seed_all`] call it first, so callers need not.
pub fn load_cuda_backend() -> std::result::Result<(), String> {
    LOADED
        .get_or_init(|| {
            let name = c"libtorch_cuda.so";
            // SAFETY: dlopen with a valid NUL-terminated name; the handle is intentionally leaked
            // so the library stays loaded for the life of the process.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns a thread-local C string or null.
                let err = unsafe { libc::dlerror() };
                let msg = if err.is_null() {
                    "unknown dlopen error".to_string()
                } else {
                    // SAFETY: non-null dlerror result is a valid C string.
                    unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned()
                };
                Err(msg)
            } else {
                Ok(())
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(3));
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn auto_warns_only_when_it_falls_back_to_the_cpu() {
        assert_eq!(auto_fallback_warning(DeviceChoice::Cpu, Device::Cpu), None);
        assert_eq!(auto_fallback_warning(DeviceChoice::Auto, Device::Cuda(0)), None);
        let w = auto_fallback_warning(DeviceChoice::Auto, Device::Cpu);
        assert_eq!(w.is_some(), crate::libtorch::nvidia_driver().is_some(), "{w:?}");
        assert!(describe(Device::Cpu).starts_with("cpu ("), "{}", describe(Device::Cpu));
    }

    #[test]
    fn precision_resolves_per_device_and_parses() {
        assert_eq!(Precision::Auto.resolve(Device::Cpu), Precision::Fp32);
        assert_eq!(Precision::Tf32.resolve(Device::Cpu), Precision::Fp32);
        assert_eq!(Precision::Auto.resolve(Device::Cuda(0)), Precision::Tf32);
        assert_eq!(Precision::Fp32.resolve(Device::Cuda(0)), Precision::Fp32);
        assert_eq!("tf32".parse::<Precision>().unwrap(), Precision::Tf32);
        assert_eq!(Precision::Fp32.to_string(), "fp32");
        assert!("bf16".parse::<Precision>().unwrap_err().to_string().contains("fp32 or tf32"));
        let n = Numerics::apply(Precision::Auto, false, Device::Cpu).unwrap();
        assert_eq!(n, Numerics { precision: Precision::Fp32, deterministic: false });
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, r#"{"precision":"fp32","deterministic":false}"#);
        assert!(!crate::libtorch::numerics_switches().unwrap().0, "TF32 off for fp32");
        assert_eq!(Numerics::applied(), Some((Precision::Auto, n)));
    }

    #[test]
    fn cuda_request_without_gpu_is_an_error() {
        if !cuda_available() {
            let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
            assert!(err.contains("CUDA is not usable"), "{err}");
        }
    }
}
