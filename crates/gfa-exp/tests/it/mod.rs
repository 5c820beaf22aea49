mod bad_input;
mod bad_results;
mod binarize;
mod cli;
mod cuda;
mod export;
mod facts;
mod frontier;
mod grid;
mod indicators;
mod init;
mod jobs;
mod knife;
mod layers;
mod protocols;
mod report;
mod resume_eval;
mod run;
mod setup;
mod signals;
mod store;

use std::path::{Path, PathBuf};

/// Run the `gfa` binary in `dir` with `args`; fails the test, printing both streams, unless it
/// succeeds.
pub fn gfa_ok(dir: &Path, args: &[&str]) -> std::process::Output {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gfa"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "gfa {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Write `text` to `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A small grid: 2 λ × a 2-row zip × 2 seeds = 8 runs, two attacks.
pub const SMALL: &str = r#"experiment = "small"
seeds = [0, 1]

[base]
data = { source = "synthetic", n_train = 256 }
train = { epochs = 1, schedule = { kind = "cosine" }, optimizer = { kind = "sgd", lr = 0.1 } }
method = { kind = "gfa", lambda = 0.0 }

[base.model]
arch = "cnn"
width = 0.25

[base.eval]
n = 64

[grid]
"method.lambda" = [0.1, 1.0]

[[zip]]
"train.optimizer.lr" = [0.1, 0.01]
"train.schedule.kind" = ["cosine", "constant"]

[[attacks]]
kind = "fgsm"
eps = ["8/255"]

[[attacks]]
kind = "pgd"
preset = "torchattacks"
eps = ["2/255", "8/255"]
steps = 10
"#;
