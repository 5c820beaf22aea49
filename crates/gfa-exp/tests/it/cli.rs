//! The `gfa` binary in a temporary folder.
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use super::{SMALL, write};

fn gfa(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gfa")).current_dir(dir).args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn plan_prints_table_and_writes_manifest_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "small.toml", SMALL);
    let o = gfa(dir.path(), &["plan", "small.toml"]);
    let (out, errs) = text(&o);
    assert!(o.status.success(), "{out}\n{errs}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("#  run_id"), "{out}");
    assert!(lines[0].contains("regularizer.lambda") && lines[0].contains("est. cost"), "{out}");
    assert!(lines[1].starts_with("1 ") && lines[8].starts_with("8 "), "{out}");
    assert!(out.contains("8 runs of experiment `small`"), "{out}");

    let exp = dir.path().join("results/small");
    let manifest = fs::read_to_string(exp.join("manifest.csv")).unwrap();
    let mut rows = manifest.lines();
    assert!(rows.next().unwrap().starts_with("schema_version,experiment,index,run_id,seed,"));
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), 8);
    for r in &rows {
        let id = r.split(',').nth(3).unwrap();
        assert!(out.contains(id), "table lacks {id}");
        let cfg = fs::read_to_string(exp.join(id).join("config.toml")).unwrap();
        assert!(cfg.contains(&format!("run_id = \"{id}\"")), "{cfg}");
        // The snapshot parses back and holds the filled-in defaults.
        let t: toml::Table = toml::from_str(&cfg).unwrap();
        assert_eq!(t["model"]["num_classes"].as_integer(), Some(10));
        assert!(exp.join(id).join("overrides.toml").is_file());
    }

    // Planning again is idempotent; a changed snapshot is refused with exit code 2.
    assert!(gfa(dir.path(), &["plan", "small.toml"]).status.success());
    let id = rows[0].split(',').nth(3).unwrap();
    fs::write(exp.join(id).join("config.toml"), "changed = true\n").unwrap();
    let o = gfa(dir.path(), &["plan", "small.toml"]);
    let (_, errs) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(errs.contains("different configuration") && errs.contains(id), "{errs}");
}

#[test]
fn plan_with_override_and_slurm() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "small.toml", SMALL);
    let o = gfa(
        dir.path(),
        &["plan", "small.toml", "--set", "seeds=[5]", "--results", "out", "--emit", "slurm"],
    );
    let (out, errs) = text(&o);
    assert!(o.status.success(), "{out}\n{errs}");
    assert!(out.contains("4 runs"), "{out}");
    let script = fs::read_to_string(dir.path().join("out/small/slurm.sh")).unwrap();
    assert!(script.contains("#SBATCH --array=1-4"), "{script}");
    assert!(
        script.contains("gfa run small.toml --results out --quiet --set 'seeds=[5]' --only"),
        "{script}"
    );
    let o = gfa(dir.path(), &["plan", "small.toml", "--emit", "slurm", "--tasks", "3"]);
    assert!(o.status.success());
    let script = fs::read_to_string(dir.path().join("results/small/slurm.sh")).unwrap();
    assert!(
        script.contains("#SBATCH --array=1-3")
            && script.contains("--shard \"${SLURM_ARRAY_TASK_ID}/3\""),
        "{script}"
    );
}

#[test]
fn config_errors_exit_2_with_location() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.toml", &SMALL.replace("width = 0.25", "widht = 0.25"));
    let o = gfa(dir.path(), &["plan", "bad.toml"]);
    let (_, errs) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    let line = SMALL.lines().position(|l| l.starts_with("width")).unwrap() + 1;
    assert!(errs.starts_with(&format!("error: bad.toml:{line}: `base.model.widht`")), "{errs}");
    assert!(errs.trim_end().ends_with("did you mean `width`?"), "{errs}");
    assert!(!dir.path().join("results").exists(), "nothing is written for a bad file");
    // Bad flags are clap errors (exit 2), bad device too.
    let o = gfa(dir.path(), &["--device", "tpu", "plan", "bad.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("unknown device 'tpu'"));
}

#[test]
fn missing_pieces_say_so() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["train", "x"][..], &["eval", "x"], &["gfa-value", "x"], &["landscape", "x"]] {
        let o = gfa(dir.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(text(&o).1.contains("not available in this build"), "{args:?}: {}", text(&o).1);
    }
    // `data fetch` refuses a non-empty destination before any download.
    write(dir.path(), "keep.txt", "x");
    let o = gfa(dir.path(), &["data", "fetch", "--dir", "."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("fetching CIFAR-10 into ."), "{}", text(&o).1);
    let o = gfa(dir.path(), &["list", "methods"]);
    assert!(o.status.success());
    assert!(text(&o).0.lines().any(|l| l == "gfa_pgd_at"));
}
