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
    fn cuda_request_without_gpu_is_an_error() {
        if !tch::Cuda::is_available() {
            let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
            assert!(err.contains("CUDA is not usable"), "{err}");
        }
    }
}
