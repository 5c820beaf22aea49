// rpath to the project's libtorch so `cargo test`/`cargo run` and target/*/ binaries work without
// LD_LIBRARY_PATH; LD_LIBRARY_PATH still overrides it (DT_RUNPATH), e.g. on a GPU machine.
// GFA_TEST_CUDA=1 turns on the CUDA-only tests (cfg `gfa_test_cuda`); without it they are
// reported as ignored, with the reason.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
    }
    println!("cargo:rustc-check-cfg=cfg(gfa_test_cuda)");
    println!("cargo:rerun-if-env-changed=GFA_TEST_CUDA");
    if std::env::var("GFA_TEST_CUDA").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=gfa_test_cuda");
    }
}
