// rpath to the project's libtorch so `cargo test`/`cargo run` and target/*/ binaries work without
// LD_LIBRARY_PATH; LD_LIBRARY_PATH still overrides it (DT_RUNPATH), e.g. on a GPU machine.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
    }
}
