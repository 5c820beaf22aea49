fn main() {
    if let Err(e) = gfa_core::device::load_cuda_backend() {
        let _ = e; // normal on a CPU machine
    }
}
