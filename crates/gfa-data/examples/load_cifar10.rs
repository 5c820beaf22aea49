//! Times loading CIFAR-10 from a folder or archive in the official binary layout.
//!
//! `cargo run --release -p gfa-data --example load_cifar10 -- [<dir or .tar.gz>] [--repeat N]`
//! (without a path: `$GFA_DATA_DIR`, else `./data`).
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut path = None;
    let mut repeat = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--repeat" {
            repeat = args.next().ok_or("--repeat needs a count")?.parse()?;
        } else {
            path = Some(PathBuf::from(a));
        }
    }
    let dir = gfa_data::resolve_data_dir(path.as_deref())?;
    println!("loading {}", dir.display());
    for run in 1..=repeat.max(1) {
        let t = Instant::now();
        let s = gfa_data::load_cifar10(&dir)?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "run {run}: {} train + {} test records in {:.1} ms (train per class {:?}, test per class {:?})",
            s.train.len(),
            s.test.len(),
            secs * 1e3,
            s.train.class_counts(),
            s.test.class_counts(),
        );
        if run == 1 {
            println!("classes: {}", s.train.classes.join(", "));
        }
    }
    Ok(())
}
