//! Damaged results and untrusted model files, as a crash, a full disk or a hand edit leave
//! them: each command refuses with exit status 2, names the file (and row, column or tensor)
//! and the fix, and leaves the folder byte for byte as it was; `gfa run` redoes a done run
//! whose files are damaged.
use std::fs;
use std::path::{Path, PathBuf};

use super::bad_input::{Case, GOOD, gfa, refused_all, snapshot};
use super::write;

/// A results folder of one finished run of `GOOD`, and that run's folder (relative).
fn finished_run(d: &Path) -> PathBuf {
    fs::create_dir_all(d).unwrap();
    write(d, "good.toml", GOOD);
    let o = gfa(d, &["run", "good.toml", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let runs: Vec<PathBuf> = fs::read_dir(d.join("results/good"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("eval.csv").is_file())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].strip_prefix(d).unwrap().to_path_buf()
}

/// `text` (a CSV) with the first data row's `column` set to `value`.
fn with_cell(text: &str, column: &str, value: &str) -> String {
    with_cell_at(text, 0, column, value)
}

/// `text` (a CSV) with data row `row`'s `column` set to `value` (every row's for `usize::MAX`).
fn with_cell_at(text: &str, row: usize, column: &str, value: &str) -> String {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r.headers().unwrap().clone();
    let i = headers.iter().position(|h| h == column).unwrap();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&headers).unwrap();
    for (k, rec) in r.records().enumerate() {
        let rec = rec.unwrap();
        let cells: Vec<&str> = rec
            .iter()
            .enumerate()
            .map(|(j, c)| if (row == usize::MAX || k == row) && j == i { value } else { c })
            .collect();
        w.write_record(&cells).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() { copy_dir(&p, &dest) } else { fs::copy(&p, &dest).map(|_| ()).unwrap() }
    }
}

/// A cut row, a NaN accuracy and a foreign schema_version in a run's eval.csv: `report`,
/// `plot` and `export` name the run's file and row and write nothing (report used to merge the
/// cut row into the next one in the aggregate eval.csv, then blame points.csv; export wrote
/// `"clean_acc": "NaN"` with exit 0).
#[test]
fn damaged_run_files_are_named_and_nothing_is_rewritten() {
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("good");
    let run = finished_run(&good);
    let eval = fs::read_to_string(good.join(&run).join("eval.csv")).unwrap();
    assert!(eval.lines().count() >= 3, "{eval}");
    let d = &root.path().join("fixture");
    // Each variant is one results folder with one damaged run.
    let variants: [(&str, String); 4] = [
        ("cut", eval[..eval.len() - 7].to_string()),
        ("nan", with_cell(&eval, "clean_acc", "NaN")),
        ("inf", with_cell(&eval, "robust_acc", "inf")),
        ("v9", with_cell(&eval, "schema_version", "9")),
    ];
    for (name, text) in &variants {
        copy_dir(&good.join("results"), &d.join(name));
        fs::write(d.join(name).join(run.strip_prefix("results").unwrap()).join("eval.csv"), text)
            .unwrap();
    }
    let rel = |v: &str| format!("{v}/{}", run.strip_prefix("results").unwrap().display());
    let file = |v: &str| format!("{}/eval.csv", rel(v));
    let (cut, nan, inf, v9) = (file("cut"), file("nan"), file("inf"), file("v9"));
    let exp = |v: &str| format!("{v}/good");
    let (ecut, enan, einf, ev9) = (exp("cut"), exp("nan"), exp("inf"), exp("v9"));
    let (rcut, rnan) = (rel("cut"), rel("nan"));
    let cases: Vec<Case> = vec![
        (vec!["report", &ecut], vec![&cut, "row", "the row is cut", "is damaged", "gfa run"]),
        (vec!["plot", &ecut], vec![&cut, "the row is cut", "no experiment-level file"]),
        (vec!["export", "robustbench", &rcut], vec![&cut, "the row is cut"]),
        (vec!["report", &enan], vec![&nan, "row 2", "clean_acc is NaN", "gfa run"]),
        (vec!["export", "robustbench", &rnan], vec![&nan, "row 2", "clean_acc is NaN"]),
        (vec!["report", &einf], vec![&inf, "row 2", "robust_acc is inf"]),
        (vec!["report", &ev9], vec![&v9, "row 2", "schema_version \"9\"", "reads version 5"]),
    ];
    refused_all(d, &cases);
}

/// `gfa run` on a folder whose done run has a cut eval.csv says so and evaluates it again: the
/// rewritten file equals the one before the damage (it used to say "1 already done").
#[test]
fn run_redoes_a_done_run_whose_files_are_damaged() {
    let root = tempfile::tempdir().unwrap();
    let d = &root.path().join("r");
    let run = finished_run(d);
    let path = d.join(&run).join("eval.csv");
    let before = fs::read(&path).unwrap();
    fs::write(&path, &before[..before.len() - 7]).unwrap();
    let o = gfa(d, &["run", "good.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{err}");
    let said = format!("{out}{err}");
    assert!(said.contains("damaged") && said.contains("redoing its evaluation"), "{said}");
    assert!(said.contains("eval.csv") && said.contains("the row is cut"), "{said}");
    // Timing aside (the `seconds` column), the re-evaluation is the evaluation before.
    let before = String::from_utf8(before).unwrap();
    let after = fs::read_to_string(&path).unwrap();
    let untimed = |t: &str| with_cell_at(t, usize::MAX, "seconds", "");
    assert_eq!(untimed(&after), untimed(&before), "the re-evaluation differs");
    let report = gfa(d, &["report", "results/good"]);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
}

/// Model files that are not a usable model: NaN or overflowing weights, NaN normalization,
/// `-o` over the input, a tar header claiming 2⁶² bytes, an all-zero test batch.
#[test]
fn untrusted_model_and_data_files_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let d = &root.path().join("fixture");
    fs::create_dir_all(d).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gfa-core/tests/fixtures");
    for f in ["import_resnet18.pt", "import_bad_f64_overflow.pt"] {
        fs::copy(fixtures.join(f), d.join(f)).unwrap();
    }
    fs::hard_link(d.join("import_resnet18.pt"), d.join("link.pt")).unwrap();
    // An mlp's weights with a NaN, and the same with a NaN normalization buffer.
    let spec = gfa_core::ModelSpec {
        width: 0.0625,
        ..gfa_core::ModelSpec::of(gfa_core::models::Arch::Mlp)
    };
    let model = gfa_core::Classifier::new(&spec, tch::Device::Cpu).unwrap();
    let mut named = gfa_core::checkpoint::named_weights(&model);
    let nan_at = |named: &mut Vec<(String, tch::Tensor)>, key: &str| {
        let (_, t) = named.iter_mut().find(|(n, _)| n == key).unwrap();
        *t = t.copy();
        let _ = t.flatten(0, -1).get(0).fill_(f64::NAN);
    };
    let mut nan_norm = named.iter().map(|(n, t)| (n.clone(), t.copy())).collect::<Vec<_>>();
    let victim = named.iter().map(|(n, _)| n.clone()).find(|n| n.ends_with("weight")).unwrap();
    nan_at(&mut named, &victim);
    nan_at(&mut nan_norm, "normalize.mean");
    gfa_core::checkpoint::write_tensors(&d.join("nan.safetensors"), &named).unwrap();
    gfa_core::checkpoint::write_tensors(&d.join("nan_norm.safetensors"), &nan_norm).unwrap();
    // A .tar.gz whose header claims 2⁶² bytes for data_batch_1.bin.
    let mut header = tar::Header::new_gnu();
    header.set_path("cifar-10-batches-bin/data_batch_1.bin").unwrap();
    header.set_size(1 << 62);
    header.set_cksum();
    let mut raw = header.as_bytes().to_vec();
    raw.resize(512 + 2048, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    fs::write(d.join("x.tar.gz"), gz.finish().unwrap()).unwrap();
    // A CIFAR-10 folder whose test batch is all zeros.
    let zero = d.join("zero");
    fs::create_dir_all(&zero).unwrap();
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    fs::write(zero.join("batches.meta.txt"), names).unwrap();
    let mut record: Vec<u8> = (0..3073u32).map(|i| (i % 251) as u8).collect();
    record[0] = 3;
    for f in 1..=5 {
        fs::write(zero.join(format!("data_batch_{f}.bin")), &record).unwrap();
    }
    fs::write(zero.join("test_batch.bin"), [vec![3u8], vec![0u8; 3072]].concat()).unwrap();

    let weights = |w: &'static str, norm: &'static str| -> Vec<&'static str> {
        vec!["eval", "--weights", w, "--model", "mlp", "--width", "0.0625"]
            .into_iter()
            .chain(["--normalize", norm, "--synthetic", "--n", "16", "--csv", "out.csv"])
            .collect()
    };
    let import = |input: &'static str, out: &'static str| -> Vec<&'static str> {
        vec!["import", input, "--model", "resnet18", "--width", "0.0625", "--normalize", "none"]
            .into_iter()
            .chain(["-o", out])
            .collect()
    };
    let cases: Vec<Case> = vec![
        (
            import("import_resnet18.pt", "import_resnet18.pt"),
            vec!["-o", "replace the file being read", "import_resnet18-gfa.safetensors"],
        ),
        (
            import("import_bad_f64_overflow.pt", "o.safetensors"),
            vec!["import_bad_f64_overflow.pt", "conv1.weight", "float32's range"],
        ),
        (
            [&["eval", "--checkpoint", "m"][..], &["--normalize", "nan,1"]].concat(),
            vec!["--normalize", "mean NaN is not a finite number"],
        ),
        (
            import("import_resnet18.pt", "o.safetensors")
                .into_iter()
                .map(|a| if a == "none" { "0,inf" } else { a })
                .collect(),
            vec!["--normalize", "std inf is not a positive finite number"],
        ),
        (weights("nan.safetensors", "none"), vec!["nan.safetensors", &victim, "NaN"]),
        (
            weights("nan_norm.safetensors", "none"),
            vec!["nan_norm.safetensors", "normalize.mean", "NaN"],
        ),
        (
            vec!["train", "--model", "mlp", "--data", "x.tar.gz", "--epochs", "1", "--out", "t"],
            vec!["x.tar.gz", "data_batch_1.bin", "claims 4611686018427387904 bytes"],
        ),
        (
            vec!["train", "--model", "mlp", "--data", "zero", "--epochs", "1", "--out", "t"],
            vec!["zero/test_batch.bin", "every pixel", "is 0", "gfa data fetch"],
        ),
    ];
    refused_all(d, &cases);
    // A hard link of the input (the battery's copies of the folder would not keep the link).
    let before = snapshot(d);
    let o = gfa(d, &import("import_resnet18.pt", "link.pt"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("link.pt is the same file as (a link of) the input"), "{err}");
    assert_eq!(snapshot(d), before);
}

/// A grid of 40⁴ = 2,560,000 runs is refused at once, before expanding, naming the file, the
/// count and the flag that raises the cap (`gfa plan` used to grow to 3.1 GB in 120 s without a
/// word); `--max-runs` below a grid's size refuses it too.
#[test]
fn huge_grids_are_refused_before_expanding() {
    let root = tempfile::tempdir().unwrap();
    let d = &root.path().join("fixture");
    fs::create_dir_all(d).unwrap();
    let forty = |f: &dyn Fn(usize) -> String| (1..=40).map(f).collect::<Vec<_>>().join(", ");
    let axes = format!(
        "[grid]\n\"method.lambda\" = [{}]\n\"train.epochs\" = [{}]\n\"train.batch_size\" = \
         [{}]\n\"eval.n\" = [{}]\n",
        forty(&|i| format!("{i}.0")),
        forty(&|i| i.to_string()),
        forty(&|i| i.to_string()),
        forty(&|i| i.to_string()),
    );
    let huge = GOOD.replace("[[attacks]]", &format!("{axes}\n[[attacks]]"));
    write(d, "huge.toml", &huge);
    write(d, "good.toml", GOOD);
    let started = std::time::Instant::now();
    let cases: Vec<Case> = vec![
        (
            vec!["plan", "huge.toml"],
            vec!["huge.toml", "2560000 runs", "--max-runs allows", "--max-runs N"],
        ),
        (vec!["run", "huge.toml"], vec!["huge.toml", "2560000 runs", "nothing was written"]),
        (
            vec!["plan", "good.toml", "--max-runs", "0"],
            vec!["good.toml", "1 runs", "more than the 0"],
        ),
    ];
    refused_all(d, &cases);
    assert!(started.elapsed().as_secs() < 60, "took {:?}", started.elapsed());
}

/// `gfa eval --checkpoint <run>/checkpoints` (or the run folder) of a run trained on synthetic
/// data evaluates on that data, and says so; other data needs `--other-data` (it used to
/// evaluate on CIFAR-10 without a word: clean 6 % against the run's 20 %).
#[test]
fn checkpoint_data_is_found_from_any_folder_gfa_wrote() {
    let root = tempfile::tempdir().unwrap();
    let d = &root.path().join("fixture");
    let run = finished_run(d);
    fs::create_dir_all(d.join("empty")).unwrap();
    let ckpt = format!("{}/checkpoints", run.display());
    let run_dir = run.display().to_string();
    for folder in [&ckpt, &run_dir] {
        let o = gfa(d, &["eval", "--checkpoint", folder, "--n", "16", "--csv", "o.csv"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.contains("data: synthetic (the checkpoint's"), "{out}");
        assert!(out.contains("config.toml"), "{out}");
        fs::remove_file(d.join("o.csv")).unwrap();
    }
    let cases: Vec<Case> = vec![
        (
            vec!["eval", "--checkpoint", &ckpt, "--data", "empty", "--csv", "o.csv"],
            vec!["config.toml", "trained on synthetic", "cifar10 at empty", "--other-data"],
        ),
        (
            vec!["eval", "--checkpoint", &run_dir, "--dataset", "fashion-mnist", "--csv", "o.csv"],
            vec!["trained on synthetic", "fashion_mnist", "--other-data"],
        ),
    ];
    refused_all(d, &cases);
    // With the flag, the other data is used (here: none there, so its own error).
    let o = gfa(d, &["eval", "--checkpoint", &ckpt, "--data", "empty", "--other-data"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no CIFAR-10 data at empty"), "{err}");
}
