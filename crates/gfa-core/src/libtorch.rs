//! What this process runs on: the libtorch library it loaded (file, version), the CPU code path
//! libtorch dispatches to, its TF32 switches, the NVIDIA driver and the GPUs it sees.
//!
//! tch exposes none of these, so they are read from the loaded libraries themselves: libtorch's
//! exported `at::` functions (found with `dlsym`, called with the C++ ABI's calling convention),
//! the `version.py` that pip's torch wheel puts next to `lib/`, and the CUDA driver API of
//! `libcuda.so.1` (present only where an NVIDIA driver is installed). Every probe returns `None`
//! or an error string when the library or symbol is missing; none of them can abort.
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};

/// The libtorch version tch 0.24.0 (and so this build of gfa) is made for.
pub const BUILT_FOR: &str = "2.11.0";

/// The address of `name` in the libraries loaded so far, or null.
fn symbol(name: &str) -> *mut c_void {
    let Ok(c) = CString::new(name) else { return std::ptr::null_mut() };
    // SAFETY: dlsym with RTLD_DEFAULT and a valid NUL-terminated name only looks the name up.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) }
}

/// The file `addr` was loaded from.
fn file_of(addr: *const c_void) -> Option<PathBuf> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: dladdr fills `info` for an address inside a loaded object; zeroed is valid input.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `addr` is a symbol address from dlsym; `info` is a valid out-pointer.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    std::fs::canonicalize(&name).ok().or(Some(PathBuf::from(name)))
}

/// `libtorch_cpu.so` as loaded by this process (through the binary's RUNPATH or
/// `LD_LIBRARY_PATH`).
pub fn library_path() -> Option<PathBuf> {
    file_of(symbol("_ZN2at13globalContextEv"))
}

/// The torch version of the libtorch whose `lib/` folder is `lib_dir`: pip's `torch/version.py`
/// (`__version__ = '2.11.0+cu130'`) or the libtorch archive's `build-version`.
pub fn version_in(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return line.split(['\'', '"']).nth(1).map(str::to_string);
    }
    let text = std::fs::read_to_string(root.join("build-version")).ok()?;
    text.lines().next().map(|l| l.trim().to_string())
}

/// The loaded libtorch's version, when its folder says.
pub fn version() -> Option<String> {
    version_in(library_path()?.parent()?)
}

/// Whether `version` (e.g. `2.11.0+cu130`) is the libtorch this build needs.
pub fn is_supported(version: &str) -> bool {
    version.split('+').next() == Some(BUILT_FOR)
}

/// libstdc++'s `std::string` (the C++11 ABI libtorch is built with): pointer, length, and a
/// 16-byte buffer the pointer points into for short strings.
#[repr(C)]
struct CxxString {
    ptr: *const u8,
    len: usize,
    local: [u8; 16],
}

/// Call an exported `std::string f()` of libtorch. The C++ ABI returns such a class through a
/// hidden pointer passed as the first argument, which is what the `extern "C"` signature below
/// passes.
fn string_function(name: &str) -> Option<String> {
    let f = symbol(name);
    if f.is_null() {
        return None;
    }
    // SAFETY: `f` is libtorch's `std::string f()`; under the Itanium C++ ABI it takes the return
    // slot's address in the first argument register and constructs the string there.
    let call: unsafe extern "C" fn(*mut CxxString) -> *mut CxxString =
        unsafe { std::mem::transmute(f) };
    let mut out = std::mem::MaybeUninit::<CxxString>::uninit();
    // SAFETY: `out` is a writable, suitably aligned return slot that stays in place until read.
    unsafe { call(out.as_mut_ptr()) };
    // SAFETY: the call constructed the string in `out`.
    let s = unsafe { out.assume_init_ref() };
    // SAFETY: ptr/len describe the string's bytes, valid until the string is freed.
    let text =
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(s.ptr, s.len) }).into_owned();
    if !std::ptr::eq(s.ptr, s.local.as_ptr()) {
        // A long string lives on the heap: free it with libstdc++'s operator delete.
        let delete = symbol("_ZdlPv");
        if !delete.is_null() {
            // SAFETY: `operator delete(void*)` frees memory from `operator new`, as here.
            let delete: unsafe extern "C" fn(*mut c_void) = unsafe { std::mem::transmute(delete) };
            // SAFETY: the pointer came from the string's allocator and is freed once.
            unsafe { delete(s.ptr as *mut c_void) };
        }
    }
    Some(text)
}

/// The CPU code path libtorch's kernels use: `DEFAULT`, `AVX2` or `AVX512` on x86-64
/// (`at::get_cpu_capability()`; `ATEN_CPU_CAPABILITY` lowers it).
pub fn cpu_capability() -> Option<String> {
    string_function("_ZN2at18get_cpu_capabilityB5cxx11Ev").filter(|s| !s.is_empty())
}

/// Allow or forbid TensorFloat-32 in cuDNN convolutions and cuBLAS matrix products on GPUs
/// that have it. libtorch allows it for convolutions by default, which rounds their inputs to
/// 10 mantissa bits: comparisons of CUDA against the CPU at 1e-4 must turn it off.
pub fn set_tf32(allow: bool) -> Result<(), String> {
    let ctx = symbol("_ZN2at13globalContextEv");
    let cudnn = symbol("_ZN2at7Context17setAllowTF32CuDNNEb");
    let cublas = symbol("_ZN2at7Context18setAllowTF32CuBLASEb");
    if ctx.is_null() || cudnn.is_null() || cublas.is_null() {
        return Err("this libtorch does not export at::Context's TF32 switches".into());
    }
    // SAFETY: `at::globalContext()` returns `at::Context&` (a pointer in the C++ ABI); the
    // setters are `void at::Context::f(bool)` members, taking `this` as the first argument.
    unsafe {
        let ctx_fn: unsafe extern "C" fn() -> *mut c_void = std::mem::transmute(ctx);
        let this = ctx_fn();
        let cudnn: unsafe extern "C" fn(*mut c_void, bool) = std::mem::transmute(cudnn);
        let cublas: unsafe extern "C" fn(*mut c_void, bool) = std::mem::transmute(cublas);
        cudnn(this, allow);
        cublas(this, allow);
    }
    Ok(())
}

/// Call `void at::Context::<name>(args)` on libtorch's global context (`name` mangled).
///
/// # Safety
/// `F` must be the member function's exact C ABI signature with `this` as its first argument.
unsafe fn context_member<F: Copy>(mangled: &str) -> Result<(*mut c_void, F), String> {
    let ctx = symbol("_ZN2at13globalContextEv");
    let f = symbol(mangled);
    if ctx.is_null() || f.is_null() {
        return Err(format!("this libtorch does not export {mangled}"));
    }
    // SAFETY: `at::globalContext()` returns `at::Context&` (a pointer in the C++ ABI); the
    // caller vouches for `F`, and `F` is a function pointer of the symbol's size.
    unsafe {
        let ctx_fn: unsafe extern "C" fn() -> *mut c_void = std::mem::transmute(ctx);
        Ok((ctx_fn(), std::mem::transmute_copy::<*mut c_void, F>(&f)))
    }
}

/// libtorch's determinism switches: deterministic cuDNN convolutions (and no cuDNN
/// benchmarking, which picks algorithms by timing them), and `at::Context`'s deterministic
/// algorithms (`warn_only`: an operation without a deterministic implementation prints a
/// warning naming it instead of failing). They act on CUDA; on the CPU libtorch's kernels
/// are deterministic for a given code path and thread count anyway.
pub fn set_deterministic(on: bool, warn_only: bool) -> Result<(), String> {
    type SetBool = unsafe extern "C" fn(*mut c_void, bool);
    type SetBool2 = unsafe extern "C" fn(*mut c_void, bool, bool);
    // SAFETY: `void at::Context::f(bool)` / `f(bool, bool)` members, `this` first.
    unsafe {
        let (this, cudnn) = context_member::<SetBool>("_ZN2at7Context21setDeterministicCuDNNEb")?;
        let (_, bench) = context_member::<SetBool>("_ZN2at7Context17setBenchmarkCuDNNEb")?;
        let (_, algos) =
            context_member::<SetBool2>("_ZN2at7Context26setDeterministicAlgorithmsEbb")?;
        cudnn(this, on);
        bench(this, false);
        algos(this, on, warn_only);
    }
    Ok(())
}

/// The switches as libtorch holds them: (TF32 allowed in cuBLAS, deterministic cuDNN,
/// deterministic algorithms, cuDNN benchmarking).
pub fn numerics_switches() -> Result<(bool, bool, bool, bool), String> {
    type GetBool = unsafe extern "C" fn(*const c_void) -> bool;
    // SAFETY: `bool at::Context::f() const` members, `this` first.
    unsafe {
        let (this, tf32) = context_member::<GetBool>("_ZNK2at7Context15allowTF32CuBLASEv")?;
        let (_, cudnn) = context_member::<GetBool>("_ZNK2at7Context18deterministicCuDNNEv")?;
        let (_, algos) = context_member::<GetBool>("_ZNK2at7Context23deterministicAlgorithmsEv")?;
        let (_, bench) = context_member::<GetBool>("_ZNK2at7Context14benchmarkCuDNNEv")?;
        Ok((tf32(this), cudnn(this), algos(this), bench(this)))
    }
}

/// Why this machine looks like it has an NVIDIA driver (`/proc/driver/nvidia`, or `nvidia-smi`
/// on `PATH`), or `None`.
pub fn nvidia_driver() -> Option<String> {
    if Path::new("/proc/driver/nvidia").exists() {
        return Some("/proc/driver/nvidia exists".into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nvidia-smi"))
        .find(|p| p.is_file())
        .map(|p| format!("{} exists", p.display()))
}

/// One GPU as the CUDA driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub index: usize,
    pub name: String,
    pub total_bytes: u64,
}

/// The NVIDIA driver's CUDA version (e.g. 13000 for 13.0) and its GPUs, from the driver API
/// of `libcuda.so.1`. An error says why there is none (no driver library, `cuInit` failed).
pub fn driver_gpus() -> Result<(i32, Vec<Gpu>), String> {
    let lib = c"libcuda.so.1";
    // SAFETY: dlopen of a valid name; the handle stays open for the process's life.
    let handle = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        return Err("libcuda.so.1 (the NVIDIA driver's library) is not installed".into());
    }
    let get = |name: &CStr| {
        // SAFETY: dlsym on a live handle with a valid name.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if p.is_null() {
            Err(format!("libcuda.so.1 lacks {}", name.to_string_lossy()))
        } else {
            Ok(p)
        }
    };
    type Init = unsafe extern "C" fn(u32) -> c_int;
    type IntOut = unsafe extern "C" fn(*mut c_int) -> c_int;
    type DeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type Name = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type Mem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
    // SAFETY: the CUDA driver API's C signatures (cuda.h): cuInit(unsigned), cuDriverGetVersion(int*),
    // cuDeviceGetCount(int*), cuDeviceGet(CUdevice*, int), cuDeviceGetName(char*, int, CUdevice),
    // cuDeviceTotalMem_v2(size_t*, CUdevice); CUdevice is an int, CUresult an int (0 = success).
    unsafe {
        let init: Init = std::mem::transmute(get(c"cuInit")?);
        let version: IntOut = std::mem::transmute(get(c"cuDriverGetVersion")?);
        let count: IntOut = std::mem::transmute(get(c"cuDeviceGetCount")?);
        let device: DeviceGet = std::mem::transmute(get(c"cuDeviceGet")?);
        let name: Name = std::mem::transmute(get(c"cuDeviceGetName")?);
        let mem: Mem = std::mem::transmute(get(c"cuDeviceTotalMem_v2")?);
        let mut v = 0;
        if version(&mut v) != 0 {
            v = 0;
        }
        let rc = init(0);
        if rc != 0 {
            return Err(format!("the NVIDIA driver's cuInit failed (CUresult {rc})"));
        }
        let mut n = 0;
        if count(&mut n) != 0 {
            return Err("the NVIDIA driver cannot count its GPUs".into());
        }
        let mut gpus = Vec::new();
        for i in 0..n {
            let mut dev = 0;
            if device(&mut dev, i) != 0 {
                continue;
            }
            let mut buf = [0 as c_char; 256];
            let label = if name(buf.as_mut_ptr(), buf.len() as c_int, dev) == 0 {
                CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
            } else {
                "?".into()
            };
            let mut bytes = 0usize;
            let _ = mem(&mut bytes, dev);
            gpus.push(Gpu { index: i as usize, name: label, total_bytes: bytes as u64 });
        }
        Ok((v, gpus))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_loaded_libtorch_and_its_version() {
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let path = library_path().expect("libtorch_cpu.so is loaded");
        assert!(path.to_string_lossy().contains("libtorch_cpu"), "{}", path.display());
        let v = version().expect("pip's torch has version.py");
        assert!(is_supported(&v), "loaded libtorch {v}, built for {BUILT_FOR}");
        assert!(!is_supported("2.10.0+cpu") && is_supported("2.11.0"));
    }

    #[test]
    fn reports_the_cpu_code_path_libtorch_uses() {
        let cap = cpu_capability().expect("at::get_cpu_capability is exported");
        assert!(["DEFAULT", "AVX2", "AVX512"].contains(&cap.as_str()), "{cap}");
        // The environment variable picks the path (`make test-float` runs the tests under each
        // one the CPU has): the run really is on the path it names.
        if let Ok(path @ ("default" | "avx2" | "avx512")) =
            std::env::var("ATEN_CPU_CAPABILITY").as_deref()
        {
            assert_eq!(cap, path.to_uppercase());
        }
    }

    #[test]
    fn tf32_and_determinism_switches_are_found_and_read_back() {
        set_tf32(false).unwrap();
        set_deterministic(true, true).unwrap();
        assert_eq!(numerics_switches().unwrap(), (false, true, true, false));
        set_tf32(true).unwrap();
        set_deterministic(false, false).unwrap();
        assert_eq!(numerics_switches().unwrap(), (true, false, false, false));
        set_tf32(false).unwrap();
    }
}
