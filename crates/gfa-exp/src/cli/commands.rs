//! The single-model commands: `gfa train`, `gfa eval`, `gfa gfa-value`, `gfa landscape`.
//!
//! They build the same typed [`RunConfig`] as an experiment run (from flags or a run TOML), so
//! every value goes through the same checks, and use the same stages as `gfa run`
//! ([`crate::run::stages`]). `gfa train --out DIR` writes `DIR/run.toml` (the typed config, defaults
//! filled in) next to the checkpoint, so `eval` and `gfa-value` find the run's data settings.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use gfa_core::import::Normalization;
use gfa_core::{Classifier, Method, ModelSpec, checkpoint};
use gfa_data::Splits;
use gfa_data::atomic::write_atomic;
use tch::Device;
use toml::{Table, Value};

use crate::cli::args::{
    DataArgs, DatasetArg, EvalArgs, GfaValueArgs, GradientArg, LandscapeArgs, LayersArg, ModelArgs,
    OptimizerKind, TrainArgs,
};
use crate::config::keys::to_table;
use crate::config::spec::{AttackEntry, DataConfig, DataSource, EvalConfig, RunConfig};
use crate::results::records::{EvalRow, RunKey, read_rows, write_rows};
use crate::run::landscape::{Landscape, landscape_rows};
use crate::run::stages;

pub use crate::config::spec::RUN_TOML;

fn table(pairs: Vec<(&str, Value)>) -> Value {
    Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The data source the flags name.
fn source_of(d: &DataArgs) -> DataSource {
    match (d.synthetic, d.dataset) {
        (true, _) => DataSource::Synthetic,
        (false, Some(DatasetArg::FashionMnist)) => DataSource::FashionMnist,
        (false, _) => DataSource::Cifar10,
    }
}

fn data_table(d: &DataArgs) -> Table {
    let mut t = Table::new();
    t.insert("source".into(), Value::String(source_of(d).name().into()));
    if let Some(dir) = &d.data {
        t.insert("dir".into(), Value::String(dir.display().to_string()));
    }
    if let Some(n) = d.n_train {
        t.insert("n_train".into(), Value::Integer(n as i64));
    }
    if let Some(n) = d.n_test {
        t.insert("n_test".into(), Value::Integer(n as i64));
    }
    t
}

/// The flag of `gfa train` that sets a run key, for errors about values given as flags.
const FLAG_OF: &[(&str, &str)] = &[
    ("model.arch", "--model"),
    ("model.width", "--width"),
    ("method.kind", "--method"),
    ("method.lambda", "--lambda"),
    ("method.layers", "--layers"),
    ("method.gradient", "--gradient"),
    ("method.fd_step", "--fd-step"),
    ("train.epochs", "--epochs"),
    ("train.batch_size", "--batch-size"),
    ("train.optimizer.lr", "--lr"),
    ("data.n_train", "--n-train"),
    ("data.n_test", "--n-test"),
];

fn type_check(t: &Table, origin: &str) -> Result<RunConfig> {
    RunConfig::from_table(t).map_err(|e| {
        let key = crate::config::keys::dotted(&e.path);
        let origin = match FLAG_OF.iter().find(|(k, _)| *k == key) {
            Some((_, flag)) if origin == "flags" => *flag,
            _ => origin,
        };
        let mut msg = format!("{origin}: `{key}`: {}", e.message);
        if let Some(s) = e.suggestion {
            let _ = write!(msg, "; did you mean `{s}`?");
        }
        anyhow!(msg)
    })
}

/// The run configuration `gfa train`'s flags describe, and its seed.
pub fn train_config(a: &TrainArgs) -> Result<(RunConfig, u64)> {
    if let Some(path) = &a.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut t: Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let seed = match t.remove("seed") {
            Some(Value::Integer(s)) => s as u64,
            _ => a.seed.unwrap_or(0),
        };
        // A run's config.toml also records its id, attack suite and landscape.
        for k in crate::config::spec::RUN_FILE_KEYS {
            t.remove(*k);
        }
        let mut cfg = type_check(&t, &path.display().to_string())?;
        if a.data.synthetic || a.data.data.is_some() || a.data.dataset.is_some() {
            cfg.data = type_check(
                &[("data".to_string(), Value::Table(data_table(&a.data)))].into_iter().collect(),
                "--data/--synthetic",
            )?
            .data;
        }
        return Ok((cfg, a.seed.unwrap_or(seed)));
    }
    let mut model = Table::new();
    model.insert("arch".into(), Value::String(a.model.clone()));
    if let Some(w) = a.width {
        model.insert("width".into(), Value::Float(w));
    }
    let method = method_table(a)?;
    let optimizer = match a.optimizer {
        OptimizerKind::Sgd => table(vec![
            ("kind", Value::String("sgd".into())),
            ("lr", Value::Float(a.lr.unwrap_or(0.1))),
            ("momentum", Value::Float(0.9)),
            ("weight_decay", Value::Float(5e-4)),
        ]),
        OptimizerKind::Adam => table(vec![
            ("kind", Value::String("adam".into())),
            ("lr", Value::Float(a.lr.unwrap_or(1e-3))),
        ]),
    };
    let mut train = Table::new();
    train.insert("optimizer".into(), optimizer);
    if let Some(e) = a.epochs {
        train.insert("epochs".into(), Value::Integer(e as i64));
    }
    if let Some(b) = a.batch_size {
        train.insert("batch_size".into(), Value::Integer(b as i64));
    }
    if let Some(n) = a.validation {
        train.insert("validation".into(), table(vec![("n", Value::Integer(n as i64))]));
    }
    let mut t = Table::new();
    t.insert("model".into(), Value::Table(model));
    t.insert("method".into(), Value::Table(method));
    t.insert("train".into(), Value::Table(train));
    t.insert("data".into(), Value::Table(data_table(&a.data)));
    Ok((type_check(&t, "flags")?, a.seed.unwrap_or(0)))
}

/// The `[method]` table of `--method` and its option flags (`--lambda`, `--layers`,
/// `--gradient`, `--fd-step`); a flag the method has no option for, or a missing λ, is an error
/// naming the method's options.
fn method_table(a: &TrainArgs) -> Result<Table> {
    let info = Method::info(&a.method)
        .ok_or_else(|| anyhow!("--method {}: not a method (gfa list methods)", a.method))?;
    let options = info.options();
    let mut t = Table::new();
    t.insert("kind".into(), Value::String(a.method.clone()));
    let layers = a.layers.map(|l| if l == LayersArg::First { "first" } else { "deep" });
    let gradient = a.gradient.map(|g| match g {
        GradientArg::Exact => "exact",
        GradientArg::FiniteDifference => "finite_difference",
    });
    let flags = [
        ("lambda", "--lambda", a.lambda.map(Value::Float)),
        ("layers", "--layers", layers.map(|w| Value::String(w.into()))),
        ("gradient", "--gradient", gradient.map(|g| Value::String(g.into()))),
        ("fd_step", "--fd-step", a.fd_step.map(Value::Float)),
    ];
    for (key, flag, value) in flags {
        match value {
            Some(_) if !options.iter().any(|o| o == key) => bail!(
                "{flag}: method `{}` has no option `{key}` (its options: {})",
                a.method,
                if options.is_empty() { "none".into() } else { options.join(", ") }
            ),
            Some(v) => {
                t.insert(key.into(), v);
            }
            None if key == "lambda" && options.iter().any(|o| o == "lambda") => {
                let example = &info.example["lambda"];
                bail!("--method {} needs --lambda (e.g. --lambda {example})", a.method)
            }
            None => {}
        }
    }
    Ok(t)
}

fn key_for(cfg: &RunConfig, out: &Path, seed: u64) -> RunKey {
    let run_id = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    RunKey::of("", &run_id, seed, &cfg.model, &cfg.method)
}

/// `gfa train`.
pub fn train(a: &TrainArgs, device: Device) -> Result<()> {
    // Everything that can refuse the command is checked before the first write, so a refused
    // `gfa train` leaves --out as it was (its run.toml still describes its checkpoint).
    let (mut cfg, seed) = train_config(a)?;
    let init = crate::config::init::resolve_outside(&mut cfg).map_err(|e| {
        let origin = a.config.as_deref().map_or("flags".into(), |p| p.display().to_string());
        anyhow!("{origin}: `{}`: {}", crate::config::keys::dotted(&e.path), e.message)
    })?;
    if a.out.exists() && !a.out.is_dir() {
        bail!("--out {}: is a file, not a folder; pick another --out", a.out.display());
    }
    if !a.resume && checkpoint::exists(&a.out) {
        bail!(
            "{} already holds a checkpoint; pass --resume to continue it or pick another --out",
            a.out.display()
        );
    }
    let splits = stages::load_data(&cfg.data)?;
    let target = stages::TrainTarget {
        run_id: "",
        seed,
        ckpt: &a.out,
        resume: a.resume,
        init: init.as_deref(),
    };
    stages::check_train(&cfg, &splits, target)?;
    let mut snapshot = to_table(&cfg);
    snapshot.insert("seed".into(), Value::Integer(seed as i64));
    write_atomic(&a.out.join(RUN_TOML), toml::to_string(&snapshot)?.as_bytes())?;
    let run_id = key_for(&cfg, &a.out, seed).run_id;
    let dev = gfa_core::device::device_name(device);
    let key = key_for(&cfg, &a.out, seed);
    let target = stages::TrainTarget { run_id: &run_id, ..target };
    let mut write = stages::train_csv_writer(&key, &a.out, &a.out, &dev);
    let (_, records) = stages::train_model(&cfg, &splits, target, device, &mut write)?;
    let rows = stages::write_train_csvs(&a.out, &key, &records, &dev)?;
    println!("epoch  lr        train_loss  train_acc  test_acc  terms");
    for (r, rec) in rows.iter().zip(&records) {
        let mut terms: Vec<String> = rec.terms.iter().map(|(k, v)| format!("{k}={v:.4}")).collect();
        if let Some(v) = rec.validation {
            terms.push(format!("val_clean={:.4} val_robust={:.4}", v.clean_acc, v.robust_acc));
        }
        println!(
            "{:<5}  {:<8.4}  {:<10.4}  {:<9.4}  {:<8}  {}",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_acc,
            r.test_acc.map(|v| format!("{v:.4}")).unwrap_or_default(),
            terms.join(" ")
        );
    }
    if let Some(best) = records.last().and_then(|r| r.best_epoch) {
        println!("best.safetensors: epoch {best} (best robust accuracy on the held-out images)");
    }
    println!(
        "wrote {}, {} and the checkpoint",
        a.out.join("train.csv").display(),
        a.out.join(crate::results::store::TRAIN_STEPS).display()
    );
    Ok(())
}

/// The model of `--checkpoint` / `--weights`, the data settings of its run when known, the
/// data to run it on (the run's; other data only with `--other-data`) and a line saying which
/// data that is. A `--weights` model takes the data's image shape and the normalization of its
/// file or of `--normalize`.
pub(crate) fn load_model(
    m: &ModelArgs,
    flags: &DataArgs,
    device: Device,
) -> Result<(Classifier, Option<RunConfig>, Splits, String)> {
    if let Some(dir) = &m.checkpoint {
        return load_checkpoint(m, dir, flags, device);
    }
    if let Some(file) = &m.torchscript {
        return load_torchscript(m, file, flags, device);
    }
    let Some(w) = &m.weights else {
        bail!("give --checkpoint DIR, --weights FILE or --torchscript FILE")
    };
    load_weights(m, w, flags, device)
}

/// [`load_model`] of `--checkpoint DIR` (a `gfa train --out` folder, a run folder or its
/// `checkpoints/`).
fn load_checkpoint(
    m: &ModelArgs,
    dir: &Path,
    flags: &DataArgs,
    device: Device,
) -> Result<(Classifier, Option<RunConfig>, Splits, String)> {
    // A run folder stands for its checkpoints/ folder.
    let inner = dir.join("checkpoints");
    let dir = &if !checkpoint::exists(dir) && checkpoint::exists(&inner) {
        inner
    } else {
        dir.to_path_buf()
    };
    checkpoint::check_dir(dir)?;
    // With --best the robust checkpoint; else the final weights of a finished run, or the
    // last epoch's of one in progress.
    let weights = if m.best {
        checkpoint::BEST
    } else if dir.join(checkpoint::FINAL).exists() {
        checkpoint::FINAL
    } else {
        checkpoint::LAST
    };
    let model = checkpoint::load(dir, weights, device).with_context(|| {
        if m.best {
            format!(
                "loading the robust checkpoint {} (written only by runs trained with \
                 validation: gfa train --validation N, [train] validation)",
                dir.join(checkpoint::BEST).display()
            )
        } else {
            format!("loading the checkpoint in {}", dir.display())
        }
    })?;
    // The run's settings (its data above all); a run.toml that does not read is an error
    // unless the flags name the data, never a silent fall back to the default data.
    let path = run_settings(dir);
    let run = match std::fs::read_to_string(&path) {
        Err(_) => None,
        Ok(text) => match read_run_toml(&text) {
            Ok(run) => Some(run),
            Err(_) if data_given(flags) => None,
            Err(e) => bail!(
                "{}: {e}; it names the data the checkpoint was trained on: fix it, or name \
                 the data with --data / --dataset / --synthetic",
                path.display()
            ),
        },
    };
    let config = data_for(flags, run.as_ref());
    let line = match &run {
        Some(r) if other_data(&r.data, &config) => {
            if !m.other_data {
                bail!(
                    "{}: the checkpoint was trained on {}, and the flags name {}: pass \
                     --other-data to evaluate it on other data, or drop --data / \
                     --dataset / --synthetic to use its own",
                    path.display(),
                    data_text(&r.data),
                    data_text(&config)
                );
            }
            format!(
                "data: {} (--other-data; the checkpoint was trained on {})",
                data_text(&config),
                data_text(&r.data)
            )
        }
        Some(_) => {
            format!("data: {} (the checkpoint's, {})", data_text(&config), path.display())
        }
        None => format!(
            "data: {} (from the flags: {} names no training data)",
            data_text(&config),
            dir.display()
        ),
    };
    let data = stages::load_data(&config)?;
    stages::check_input(&model, &data.test)?;
    Ok((model, run, data, line))
}

/// The data the flags name, for a model with no run behind it, and the line saying so.
fn data_from_flags(flags: &DataArgs) -> Result<(Splits, String)> {
    let config = data_for(flags, None);
    let line = format!("data: {} (from the flags)", data_text(&config));
    Ok((stages::load_data(&config)?, line))
}

/// [`load_model`] of `--torchscript FILE`: an opaque module, the data from the flags.
fn load_torchscript(
    m: &ModelArgs,
    file: &Path,
    flags: &DataArgs,
    device: Device,
) -> Result<(Classifier, Option<RunConfig>, Splits, String)> {
    let (data, line) = data_from_flags(flags)?;
    let input = ModelSpec::default().with_input_of(&data.test).input;
    let norm = m.normalize.clone().unwrap_or(Normalization::None);
    let (model, info) = gfa_core::torchscript::load(file, &norm, input, tch::Kind::Float, device)?;
    eprintln!(
        "TorchScript module {}: {} parameters, {} classes, inputs {norm}",
        file.display(),
        info.parameters,
        info.num_classes
    );
    Ok((model, None, data, line))
}

/// [`load_model`] of `--weights FILE`: the architecture from `--model`, the data from the
/// flags, the normalization from the file or `--normalize`.
fn load_weights(
    m: &ModelArgs,
    w: &Path,
    flags: &DataArgs,
    device: Device,
) -> Result<(Classifier, Option<RunConfig>, Splits, String)> {
    let (data, line) = data_from_flags(flags)?;
    let spec = spec_from_flags(&m.model, m.width)?.with_input_of(&data.test);
    let named = checkpoint::read_tensors(w)?;
    let norm = match (&m.normalize, Normalization::of_tensors(&named)) {
        (Some(flag), Some(file)) if !flag.same_as(&file, spec.channels()) => bail!(
            "{} normalizes its inputs with {file} (its normalize.mean / normalize.std), but \
             --normalize says {flag}; drop --normalize to use the file's",
            w.display()
        ),
        (Some(flag), _) => flag.clone(),
        (None, Some(file)) => file,
        (None, None) => bail!(
            "{} has no normalize.mean / normalize.std, so how the model expects its inputs is \
             unknown: pass --normalize none (a model that takes [0, 1] pixels), --normalize \
             cifar10 | imagenet, or --normalize MEAN,STD (what its data loader used)",
            w.display()
        ),
    };
    let mut model = Classifier::new(&norm.apply(&spec), device)?;
    checkpoint::load_weights_except(&mut model, w, |n| n.starts_with("normalize."))
        .with_context(|| format!("loading weights from {}", w.display()))?;
    Ok((model, None, data, line))
}

/// The file naming the data a checkpoint folder was trained on: its `run.toml` (`gfa train
/// --out`), or, for a run's `checkpoints/` folder, the run folder's `config.toml` (`gfa run`).
fn run_settings(dir: &Path) -> PathBuf {
    let own = dir.join(RUN_TOML);
    if own.is_file() {
        return own;
    }
    let run = std::fs::canonicalize(dir).ok().filter(|d| d.ends_with("checkpoints"));
    match run.as_deref().and_then(Path::parent).map(|p| p.join("config.toml")) {
        Some(config) if config.is_file() => dir.join("..").join("config.toml"),
        _ => own,
    }
}

/// Whether `flags` names data other than `trained` (another source or folder; a smaller
/// `--n-test` is the same data).
fn other_data(trained: &DataConfig, flags: &DataConfig) -> bool {
    trained.source != flags.source || (flags.dir.is_some() && flags.dir != trained.dir)
}

/// The data set of `d`, for the header of `gfa eval`.
fn data_text(d: &DataConfig) -> String {
    match &d.dir {
        Some(dir) => format!("{} at {dir}", d.source.name()),
        None => d.source.name().to_string(),
    }
}

/// The model spec `--model ARCH [--width W]` name (defaults for the rest), checked.
pub fn spec_from_flags(model: &str, width: Option<f64>) -> Result<ModelSpec> {
    let mut t = Table::new();
    t.insert("arch".into(), Value::String(model.to_string()));
    if let Some(width) = width {
        t.insert("width".into(), Value::Float(width));
    }
    crate::config::keys::typed(&t).map_err(|e| anyhow!("--model/--width: {}", e.message))
}

/// A `run.toml` of `gfa train` (its sections and seed).
fn read_run_toml(text: &str) -> Result<RunConfig> {
    let mut t: Table = toml::from_str(text).map_err(|e| anyhow!("{}", e.message().trim()))?;
    for k in crate::config::spec::RUN_FILE_KEYS {
        t.remove(*k);
    }
    RunConfig::from_table(&t)
        .map_err(|e| anyhow!("`{}`: {}", crate::config::keys::dotted(&e.path), e.message))
}

/// Whether the flags name the data (else a checkpoint's run.toml does).
fn data_given(flags: &DataArgs) -> bool {
    flags.synthetic || flags.dataset.is_some() || flags.data.is_some() || flags.n_test.is_some()
}

fn data_for(flags: &DataArgs, run: Option<&RunConfig>) -> DataConfig {
    match run {
        Some(r) if !data_given(flags) => r.data.clone(),
        _ => DataConfig {
            source: source_of(flags),
            dir: flags.data.as_ref().map(|d| d.display().to_string()),
            n_train: flags.n_train,
            n_test: flags.n_test,
        },
    }
}

/// `gfa gfa-value`.
pub fn gfa_value(a: &GfaValueArgs, device: Device) -> Result<()> {
    if let Some(file) = &a.model.torchscript {
        bail!(
            "{}: a TorchScript module is opaque, with no taps after `input`, so it has no GFA \
             value per layer; when the model is one of gfa's architectures (gfa list models), \
             import its weights with gfa import and use --weights",
            file.display()
        );
    }
    let (model, _, data, _) = load_model(&a.model, &a.data, device)?;
    let (split, name) = match a.split {
        crate::cli::args::SplitArg::Train => (data.train, "train"),
        crate::cli::args::SplitArg::Test => (data.test, "test"),
    };
    let n = a.n.min(split.len());
    let values = gfa_core::gfa_value(&model, &split.head(n), &Default::default())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&values)?);
    } else {
        println!("{name} split, n = {n}");
        println!("{:<12}  {:>10}  {:>12}", "tap", "mean_cos", "mean_abs_cos");
        for v in &values {
            println!("{:<12}  {:>10.6}  {:>12.6}", v.tap, v.mean_cos, v.mean_abs_cos);
        }
    }
    Ok(())
}

/// `gfa eval`'s `--attacks`, `--preset`, `--norm` and `--eps` as checked suite entries for a
/// model taking `input`-shaped images; errors name the flag.
fn attacks_from_flags(a: &EvalArgs, input: [i64; 3]) -> Result<Vec<AttackEntry>> {
    let eps: Vec<Value> = a.eps.split(',').map(|e| Value::String(e.trim().to_string())).collect();
    let mut attacks = Vec::new();
    for kind in a.attacks.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let mut t = Table::new();
        t.insert("kind".into(), Value::String(kind.into()));
        t.insert("preset".into(), Value::String(a.preset.clone()));
        if let Some(norm) = &a.norm {
            t.insert("norm".into(), Value::String(norm.clone()));
        }
        t.insert("eps".into(), Value::Array(eps.clone()));
        let entry = AttackEntry::from_table(&t).map_err(|e| {
            let flag = match e.path.first().map(String::as_str) {
                Some("eps") => "--eps".to_string(),
                Some("norm") => "--norm".to_string(),
                _ => format!("--attacks {kind}"),
            };
            let mut msg = format!("{flag}: {}", e.message);
            if let Some(s) = e.suggestion {
                let _ = write!(msg, "; did you mean `{s}`?");
            }
            anyhow!(msg)
        })?;
        attacks.push(entry);
    }
    if attacks.is_empty() {
        bail!("--attacks: name at least one attack (gfa list attacks)");
    }
    for entry in &attacks {
        entry.check_eps(input).map_err(|e| anyhow!("--eps: {}", e.message))?;
    }
    Ok(attacks)
}

/// `gfa eval`.
pub fn eval(a: &EvalArgs, device: Device) -> Result<()> {
    let (model, run, data, data_line) = load_model(&a.model, &a.data, device)?;
    println!("{data_line}");
    let attacks = attacks_from_flags(a, model.spec.input)?;
    for (flag, v) in [("--n", a.n), ("--batch-size", a.batch_size)] {
        if v == 0 {
            bail!("{flag}: must be at least 1, got 0");
        }
    }
    let n = a.n.min(data.test.len());
    let (x, y) = stages::head_tensors(&data.test, n);
    let ecfg = EvalConfig { n, batch_size: a.batch_size, ..EvalConfig::default() };
    let out_dir = a
        .model
        .checkpoint
        .clone()
        .or_else(|| a.model.weights.clone())
        .or_else(|| a.model.torchscript.clone())
        .unwrap_or_default();
    let key = match &run {
        Some(r) => key_for(r, &out_dir, a.seed),
        None => RunKey {
            run_id: out_dir.display().to_string(),
            seed: a.seed,
            model: model.spec.arch.name().to_string(),
            method: "unknown".into(),
            ..Default::default()
        },
    };
    let dev = gfa_core::device::device_name(device);
    let specs: Vec<&gfa_attacks::AttackSpec> = attacks.iter().map(|e| &e.spec).collect();
    let surrogates =
        crate::run::surrogate::CheckpointSurrogates::folder(&specs, a.surrogate.as_deref(), device);
    let suite = crate::run::batches::Suite {
        attacks: &attacks,
        eval: &ecfg,
        seed: a.seed,
        surrogates: &surrogates,
    };
    // Writing into a folder: keep the finished batches beside the CSV, so that an interrupted
    // `gfa eval` started again resumes.
    let log = a.csv.as_ref().map(|csv| {
        let mut name = csv.file_name().unwrap_or_default().to_os_string();
        name.push(".batches.jsonl");
        csv.with_file_name(name)
    });
    let points = (&x, &y);
    let log_with = log.as_deref().map(|l| (l, ""));
    let rows =
        stages::evaluate_run(&model, points, None, suite, &key, &dev, log_with, &mut |_| {})?.eval;
    println!(
        "{:<10}  {:<12}  {:<8}  {:<10}  {:>6}  {:>9}  {:>10}",
        "attack", "preset", "eps", "mode", "n", "clean_acc", "robust_acc"
    );
    for r in &rows {
        println!(
            "{:<10}  {:<12}  {:<8}  {:<10}  {:>6}  {:>9.4}  {:>10.4}",
            r.attack,
            r.preset,
            r.eps_text,
            r.mode,
            r.n,
            r.clean_acc,
            r.robust_acc.unwrap_or(f64::NAN)
        );
    }
    if let Some(csv) = &a.csv {
        let mut all: Vec<EvalRow> = if csv.exists() { read_rows(csv)? } else { vec![] };
        all.extend(rows);
        write_rows(csv, &all)?;
        if let Some(log) = &log {
            crate::run::batches::remove(log)?;
        }
        println!("appended to {}", csv.display());
    }
    Ok(())
}

/// The key of rows about a loaded model.
pub(crate) fn model_key(
    model: &Classifier,
    run: Option<&RunConfig>,
    m: &ModelArgs,
    seed: u64,
) -> RunKey {
    let path = m
        .checkpoint
        .clone()
        .or_else(|| m.weights.clone())
        .or_else(|| m.torchscript.clone())
        .unwrap_or_default();
    match run {
        Some(r) => key_for(r, &path, seed),
        None => RunKey {
            run_id: path.display().to_string(),
            seed,
            model: model.spec.arch.name().to_string(),
            method: "unknown".into(),
            ..Default::default()
        },
    }
}

/// `gfa landscape`: u_radial = sign(∇ₓL) per point; u_tangential = a seeded random sign
/// vector with its component along u_radial removed (per point), rescaled to u_radial's L2
/// norm. Both directions are fixed per point; the grid points are clamped to [0, 1].
pub fn landscape(a: &LandscapeArgs, device: Device) -> Result<()> {
    if a.steps < 2 {
        bail!("--steps must be at least 2, got {}", a.steps);
    }
    let radius: gfa_attacks::Eps =
        a.radius.parse().map_err(|e| anyhow!("--radius {}: {e}", a.radius))?;
    let (model, run, data, _) = load_model(&a.model, &a.data, device)?;
    let n = a.n.min(data.test.len());
    let (x, y) = stages::head_tensors(&data.test, n);
    let key = model_key(&model, run.as_ref(), &a.model, a.seed);
    let grid =
        Landscape { radius: radius.value, steps: a.steps, batch_size: a.batch_size, seed: a.seed };
    let rows = landscape_rows(&model, (&x, &y), &grid, &key, device);
    let csv = match (&a.csv, &a.model.checkpoint) {
        (Some(c), _) => c.clone(),
        (None, Some(d)) => d.join("landscape.csv"),
        (None, None) => bail!("--csv FILE is needed with --weights or --torchscript"),
    };
    write_rows(&csv, &rows)?;
    let centre = rows[rows.len() / 2].loss;
    let max = rows.iter().map(|r| r.loss).fold(f64::MIN, f64::max);
    println!(
        "{} × {} grid over ±{} on {n} points: loss {centre:.4} at the centre, max {max:.4}",
        a.steps, a.steps, radius.text
    );
    println!("wrote {}", csv.display());
    Ok(())
}
