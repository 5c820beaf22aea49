//! Three things for the `gfa` binary:
//!
//! - an rpath to the project's libtorch, so `cargo test`/`cargo run` and `target/*/` binaries
//!   work without `LD_LIBRARY_PATH` (which still overrides it, `DT_RUNPATH`; e.g. on a GPU
//!   machine);
//! - the build's provenance, fixed into the binary: the git revision of the sources, whether
//!   they had uncommitted changes, and the libtorch version linked. `src/build_info.rs` reads
//!   them (`GFA_GIT_REV`, `GFA_GIT_DIRTY`, `GFA_LIBTORCH`); every CSV row and checkpoint
//!   records them;
//! - `GFA_TEST_CUDA=1` turns on the CUDA-only tests (cfg `gfa_test_cuda`); without it they are
//!   reported as ignored, with the reason.
//!
//! "Dirty" means `git status` lists a change under the paths the binary is built from
//! (`crates/`, `Cargo.toml`, `Cargo.lock`). The script reruns when those paths, the checked-out
//! commit or libtorch change, so the flag follows edits; it does not rerun (and nothing is
//! rebuilt) for changes elsewhere in the repository.
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCES: [&str; 3] = ["crates", "Cargo.toml", "Cargo.lock"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.ancestors().nth(2).unwrap_or(&manifest).to_path_buf();
    let (rev, dirty) = git_state(&root);
    println!("cargo:rustc-env=GFA_GIT_REV={rev}");
    println!("cargo:rustc-env=GFA_GIT_DIRTY={dirty}");
    println!("cargo:rustc-env=GFA_LIBTORCH={}", libtorch_version());
    for s in SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(s).display());
    }
    for p in git_paths(&root) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
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

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0") // never rewrite the index (it would rerun this script)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The revision and the dirty flag; `unknown` outside a git checkout.
fn git_state(root: &Path) -> (String, bool) {
    let Some(rev) = git(root, &["rev-parse", "HEAD"]).filter(|r| !r.is_empty()) else {
        return ("unknown".into(), false);
    };
    let mut args = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    args.extend(SOURCES);
    let dirty = git(root, &args).is_some_and(|s| !s.is_empty());
    (rev, dirty)
}

/// Files whose change means another commit is checked out or staged: HEAD, the branch it
/// points to, packed refs and the index (those that exist: cargo reruns a script on every
/// build while a watched path is missing).
fn git_paths(root: &Path) -> Vec<PathBuf> {
    let mut names = vec!["HEAD".to_string(), "index".into(), "packed-refs".into()];
    if let Some(r) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        names.push(r);
    }
    names
        .iter()
        .filter_map(|n| git(root, &["rev-parse", "--git-path", n]))
        .map(|p| if Path::new(&p).is_absolute() { PathBuf::from(p) } else { root.join(p) })
        .filter(|p| p.exists())
        .collect()
}

/// libtorch's version from the installation tch builds against (`$LIBTORCH`): the wheel's
/// `version.py` or a standalone libtorch's `build-version`.
fn libtorch_version() -> String {
    let Ok(dir) = std::env::var("LIBTORCH") else { return "unknown".into() };
    let dir = PathBuf::from(dir);
    for file in ["version.py", "build-version"] {
        println!("cargo:rerun-if-changed={}", dir.join(file).display());
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"));
        if let Some(v) = line.and_then(|l| l.split(['\'', '"']).nth(1)) {
            return v.to_string();
        }
    }
    std::fs::read_to_string(dir.join("build-version"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
