//! `[train] init` in a grid: sources resolved when the grid expands (their identity in the run's
//! config and id), bad sources refused before any work, sources trained first (one process,
//! `--jobs`, `--only`), the fine-tuned run starting from its source's weights bit for bit, and a
//! resume.
use std::fs;
use std::path::Path;

use gfa_exp::config::grid::{ExperimentSpec, RunSpec};
use gfa_exp::config::init::InitSource;

use super::jobs::{counts, exp_dir, gfa_cmd, ok, reference, run_args, setup, tables, text};

/// Standard training of a linear model (the sources, 3 epochs) and GFA fine-tuned from it (2
/// epochs); one attack.
const FINE: &str = r#"experiment = "tiny"
seeds = [0]

[base]
data = { source = "synthetic", n_train = 96, n_test = 32 }
model = { arch = "linear" }
method = { kind = "standard" }
train = { epochs = 3, batch_size = 32, optimizer = { kind = "sgd", lr = 0.1 } }
eval = { n = 16, batch_size = 8 }

[[grid]]
"train.epochs" = [3]

[[grid]]
method = [{ kind = "gfa", lambda = 0.1 }]
"train.epochs" = [2]
"train.init" = [{ run = { "method.kind" = "standard", "train.epochs" = 3 } }]

[[attacks]]
kind = "fgsm"
eps = ["8/255"]
"#;

fn expand(text: &str) -> Result<Vec<RunSpec>, String> {
    ExperimentSpec::parse(Path::new("exp.toml"), text, &[])
        .and_then(|s| s.expand())
        .map_err(|e| e.to_string())
}

fn is_fine(r: &RunSpec) -> bool {
    r.config.train.init.is_some()
}

fn with_seeds(text: &str, seeds: &str) -> String {
    text.replace("seeds = [0]", &format!("seeds = {seeds}"))
}

/// Each fine-tuned run starts from the standard run of its seed; the source's training key is
/// its fingerprint, written into its config; a changed source (another seed, another recipe)
/// changes the run's id, the sources' ids stay; a source may be named by an id prefix, and a
/// chain of fine-tunings resolves sources first.
#[test]
fn sources_resolve_and_enter_the_run_id() {
    let runs = expand(&with_seeds(FINE, "[0, 1]")).unwrap();
    assert_eq!(runs.len(), 4);
    let (sources, fine): (Vec<&RunSpec>, Vec<&RunSpec>) = runs.iter().partition(|r| !is_fine(r));
    for f in &fine {
        let s = sources.iter().find(|s| s.seed == f.seed).unwrap();
        let want = InitSource::Run { id: s.run_id.clone(), weights: Default::default() };
        assert_eq!(f.init.as_ref(), Some(&want));
        let init = f.config.train.init.as_ref().unwrap();
        assert_eq!(init.fingerprint.as_deref(), Some(s.train_key().as_str()));
        assert_eq!(f.run_id, f.identity());
        let toml = f.config_toml();
        assert!(toml.contains("[train.init]") && toml.contains(&s.train_key()), "{toml}");
    }
    let id = |runs: &[RunSpec], fine: bool, seed: u64| {
        runs.iter().find(|r| is_fine(r) == fine && r.seed == seed).unwrap().run_id.clone()
    };
    // The source's seed pinned: seed 0's source, then seed 1's, for the seed-0 run. Its own text
    // is the same; the source, its fingerprint and its id change; the sources' ids do not.
    let pinned = |s: u64| {
        let to = format!("\"train.epochs\" = 3 }}, seed = {s} }}");
        expand(&with_seeds(&FINE.replace("\"train.epochs\" = 3 } }", &to), "[0, 1]")).unwrap()
    };
    let (p0, p1) = (pinned(0), pinned(1));
    let fp = |runs: &[RunSpec], seed: u64| {
        let f = runs.iter().find(|r| is_fine(r) && r.seed == seed).unwrap();
        f.config.train.init.as_ref().unwrap().fingerprint.clone().unwrap()
    };
    assert_eq!((fp(&p0, 0), fp(&p1, 0)), (fp(&runs, 0), fp(&runs, 1)));
    assert_ne!(id(&p0, true, 0), id(&p1, true, 0));
    assert_eq!(id(&p1, false, 0), id(&runs, false, 0));
    // Another recipe of the source, the fine-tuned run's own text unchanged: a new id.
    let lr = FINE
        .replace("[[grid]]\n\"train.epochs\" = [3]", "[[grid]]\n\"train.optimizer.lr\" = [0.05]");
    let lr = expand(&lr).unwrap();
    assert_ne!(id(&lr, true, 0), id(&runs, true, 0));
    // By an id prefix: the same source, the same fingerprint.
    let src = id(&runs, false, 0);
    let by_id = FINE.replace(
        "{ run = { \"method.kind\" = \"standard\", \"train.epochs\" = 3 } }",
        &format!("{{ run = \"{}\" }}", &src[..6]),
    );
    let by_id = expand(&by_id).unwrap();
    let f = by_id.iter().find(|r| is_fine(r)).unwrap();
    assert_eq!(f.init.as_ref().and_then(|i| i.run_id()), Some(src.as_str()));
    // A chain: standard → GFA → standard again from the GFA run.
    let chain = format!(
        "{FINE}\n[[grid]]\n\"train.epochs\" = [1]\n\"train.init\" = [{{ run = {{ \"method.kind\" \
         = \"gfa\" }} }}]\n"
    );
    let runs = expand(&chain).unwrap();
    assert_eq!(runs.len(), 3);
    let (gfa, last) = (&runs[1], &runs[2]);
    assert_eq!(last.init.as_ref().and_then(|i| i.run_id()), Some(gfa.run_id.as_str()));
    let fp = last.config.train.init.as_ref().and_then(|i| i.fingerprint.clone());
    assert_eq!(fp, Some(gfa.train_key()));
}

/// Each bad source is refused when the grid expands, at the run's `train.init` with the file's
/// line, saying what is wrong and what to do; `gfa plan` then writes nothing.
#[test]
fn bad_sources_are_refused_at_plan_time() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar_only = dir.path().join("unfinished");
    fs::create_dir_all(&sidecar_only).unwrap();
    fs::write(sidecar_only.join("checkpoint.json"), "{}").unwrap();
    let init =
        "\"train.init\" = [{ run = { \"method.kind\" = \"standard\", \"train.epochs\" = 3 } }]";
    let with_init = |to: &str| FINE.replace(init, &format!("\"train.init\" = [{to}]"));
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            FINE.replace("\"train.epochs\" = [2]", "\"train.epochs\" = [2]\n\"model.arch\" = [\"mlp\"]"),
            vec!["another architecture", "linear", "mlp"],
        ),
        (
            FINE.replace(
                "\"train.epochs\" = [2]",
                "\"train.epochs\" = [2]\ndata = [{ source = \"fashion_mnist\", n_train = 96, n_test = 32 }]",
            ),
            vec!["another data set", "synthetic", "fashion_mnist"],
        ),
        (
            with_init("{ run = { \"method.kind\" = \"standard\", \"train.epochs\" = 7 } }"),
            vec!["no run of this expansion with seed 0", "train.epochs = 7"],
        ),
        (with_init("{ run = \"ffffffffffff\" }"), vec!["no run of this expansion has an id"]),
        (with_init("{ checkpoint = \"no/such/folder\" }"), vec!["no/such/folder", "no such folder"]),
        (
            with_init(&format!("{{ checkpoint = \"{}\" }}", sidecar_only.display())),
            vec!["final.safetensors", "has not finished"],
        ),
        (with_init("{ file = \"nope.safetensors\" }"), vec!["nope.safetensors", "no such file"]),
        (
            with_init(
                "{ run = { \"method.kind\" = \"standard\", \"train.epochs\" = 3 }, weights = \"best\" }",
            ),
            vec!["\"train.init\".weights", "[train] validation"],
        ),
        (with_init("{ run = { \"method.kind\" = \"gfa\" } }"), vec!["itself"]),
        (
            FINE.replace("[[grid]]\n\"train.epochs\" = [3]", "[[grid]]\n\"train.optimizer.lr\" = [0.1, 0.05]"),
            vec!["2 runs with seed 0", "tell the source apart"],
        ),
        (
            FINE.replace(
                "[[grid]]\n\"train.epochs\" = [3]",
                "[[grid]]\n\"train.epochs\" = [3]\n\"train.init\" = [{ run = { \"method.kind\" = \"gfa\" } }]",
            ),
            vec!["cycle", "starts from"],
        ),
        (with_init("{ run = 3 }"), vec!["expected a run id"]),
        (with_init("{ weights = \"final\" }"), vec!["names no source"]),
        (with_init("{ rnu = \"x\" }"), vec!["rnu", "did you mean `run`"]),
        (
            FINE.replace("\"train.epochs\" = [2]", "\"train.epochs\" = [2]\n\"train.stop_after_steps\" = [6]"),
            vec!["train.stop_after_steps", "not before the end of training"],
        ),
    ];
    for (text, needles) in cases {
        let e = expand(&text).err().unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert!(e.starts_with("exp.toml:") && e.contains("train"), "{e}");
        for n in needles {
            assert!(e.contains(n), "{n:?} not in: {e}");
        }
    }
    // `gfa plan` exits 2 and writes no results folder.
    let d = setup(&with_init("{ run = \"ffffffffffff\" }"));
    let o = gfa_cmd(d.path(), &["plan", "grid.toml", "--results", "res"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("grid.toml:") && !d.path().join("res").exists(), "{}", text(&o));
}

/// The fine-tuned run of a grid starts from its source's final weights bit for bit: its final
/// weights are those of `train_model` started from the source's `final.safetensors` in this
/// process (one libtorch thread on both sides, so the same arithmetic), and not those of the same
/// training from scratch. Killed during its first epoch and rerun, the grid gives the CSVs of an
/// uninterrupted run.
#[test]
fn a_fine_tuned_run_starts_from_its_source_bit_for_bit_and_is_resumed() {
    let want = reference(FINE, &[]);
    let d = setup(FINE);
    // Sources train first: epochs 1–3 are the standard run's, 4 the fine-tuned run's first.
    let o = gfa_cmd(d.path(), &run_args("res", &["--quiet"]))
        .env("GFA_FAULT", "epoch:4")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let o = ok(gfa_cmd(d.path(), &run_args("res", &["--quiet"])).output().unwrap());
    assert_eq!(counts(&o), [2, 0, 0, 0], "{}", text(&o));
    let exp = exp_dir(d.path());
    assert_eq!(tables(&exp), want);

    let runs = expand(FINE).unwrap();
    let (src, fine) = (&runs[0], &runs[1]);
    let log = fs::read_to_string(exp.join(&fine.run_id).join("log.txt")).unwrap();
    assert!(log.contains(&format!("train: starting from run {} (final.safetensors)", src.run_id)));
    tch::set_num_threads(1);
    let splits = gfa_exp::run::stages::load_data(&fine.config.data).unwrap();
    let source_file = exp.join(&src.run_id).join("checkpoints/final.safetensors");
    let final_of = |init: Option<&Path>| {
        let out = tempfile::tempdir().unwrap();
        let mut cfg = fine.config.clone();
        if init.is_none() {
            cfg.train.init = None;
        }
        let target = gfa_exp::run::stages::TrainTarget {
            run_id: &fine.run_id,
            seed: fine.seed,
            ckpt: out.path(),
            resume: false,
            init,
        };
        let (model, _) =
            gfa_exp::run::stages::train_model(&cfg, &splits, target, tch::Device::Cpu, &mut |_| {
                Ok(())
            })
            .unwrap();
        gfa_core::checkpoint::named_weights(&model)
    };
    let grid = {
        let ckpt = exp.join(&fine.run_id).join("checkpoints");
        gfa_core::checkpoint::named_weights(
            &gfa_core::checkpoint::load(&ckpt, "final.safetensors", tch::Device::Cpu).unwrap(),
        )
    };
    let same = |a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]| {
        a.len() == b.len() && a.iter().zip(b).all(|((n, x), (m, y))| n == m && x.equal(y))
    };
    assert!(same(&grid, &final_of(Some(&source_file))), "not trained from the source's weights");
    assert!(!same(&grid, &final_of(None)), "training from scratch ends at the same weights");
}

/// `--jobs 2`: the fine-tuned runs (the costlier, so first in the queue) wait for their
/// sources; the CSVs are one process's.
#[test]
fn jobs_train_the_sources_first() {
    let grid = with_seeds(FINE, "[0, 1]");
    let want = reference(&grid, &[]);
    let d = setup(&grid);
    let o = ok(gfa_cmd(d.path(), &run_args("res", &["--jobs", "2", "--quiet"])).output().unwrap());
    assert_eq!(counts(&o), [4, 0, 0, 0], "{}", text(&o));
    assert_eq!(tables(&exp_dir(d.path())), want);
}

/// `--only` a fine-tuned run trains its source first (trained, not evaluated: not one of the
/// selected runs); the whole grid then takes that training and gives one process's CSVs.
#[test]
fn only_a_fine_tuned_run_trains_its_source_first() {
    let want = reference(FINE, &[]);
    let runs = expand(FINE).unwrap();
    let (src, fine) = (&runs[0], &runs[1]);
    let d = setup(FINE);
    let o = ok(gfa_cmd(d.path(), &run_args("res", &["--only", &fine.run_id, "--quiet"]))
        .output()
        .unwrap());
    assert_eq!(counts(&o), [1, 0, 0, 0], "{}", text(&o));
    let exp = exp_dir(d.path());
    assert!(exp.join(&src.run_id).join("trained").is_file());
    assert!(!exp.join(&src.run_id).join("evaluated").exists());
    let o = ok(gfa_cmd(d.path(), &run_args("res", &["--quiet"])).output().unwrap());
    assert_eq!(counts(&o), [1, 1, 0, 0], "{}", text(&o));
    assert_eq!(tables(&exp), want);
}

/// `--jobs 2` with a source whose worker dies: the run that starts from it is not started and
/// fails saying why; a rerun trains both and gives one process's CSVs.
#[test]
fn jobs_do_not_start_a_run_whose_source_failed() {
    let want = reference(FINE, &[]);
    let runs = expand(FINE).unwrap();
    let d = setup(FINE);
    let o = gfa_cmd(d.path(), &run_args("res", &["--jobs", "2", "--quiet"]))
        .env("GFA_FAULT", "epoch:1")
        .output()
        .unwrap();
    assert_eq!(counts(&o), [0, 0, 2, 0], "{}", text(&o));
    let exp = exp_dir(d.path());
    let status = fs::read_to_string(exp.join(&runs[1].run_id).join("status")).unwrap();
    assert!(status.starts_with("failed\nnot started: its [train] init source"), "{status}");
    assert!(status.contains(&runs[0].run_id), "{status}");
    let o = ok(gfa_cmd(d.path(), &run_args("res", &["--jobs", "2", "--quiet"])).output().unwrap());
    assert_eq!(counts(&o), [2, 0, 0, 0], "{}", text(&o));
    assert_eq!(tables(&exp), want);
}
