//! The `gfa` binary: parse the command line, run it, print errors with their causes.
use clap::Parser;

fn main() {
    // Registers libtorch's CUDA backend where it exists; its absence is normal on a CPU machine
    // and is reported only when a CUDA device is asked for.
    let _ = gfa_core::device::load_cuda_backend();
    // Freed tensor memory is reused instead of faulted in again every step.
    gfa_core::host_memory::keep_freed_memory();
    let cli = gfa_exp::cli::Cli::parse();
    match gfa_exp::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
