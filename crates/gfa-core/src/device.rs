//! Device selection: `auto`, `cpu`, `cuda` or `cuda:i`.
//!
//! rustc links with `--as-needed`, which drops `libtorch_cuda.so` from the binary because no
//! symbol of it is referenced. The CUDA backend then never registers and tch reports no GPU even
//! on a GPU machine. [`load_cuda_backend`] `dlopen`s it at start-up, so the same binary uses CUDA
//! where the library and a driver exist and the CPU elsewhere.
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

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
            Self::Auto => Ok(if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
            Self::Cuda(i) => {
                if !tch::Cuda::is_available() {
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
                let n = tch::Cuda::device_count() as usize;
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

/// `dlopen` libtorch's CUDA library once, before any CUDA query (libtorch caches the first
/// answer of its CUDA hooks). Returns why it failed; on a CPU machine failing is normal.
pub fn load_cuda_backend() -> std::result::Result<(), String> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
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
    fn cuda_request_without_gpu_is_an_error() {
        if !tch::Cuda::is_available() {
            let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
            assert!(err.contains("CUDA is not usable"), "{err}");
        }
    }
}
