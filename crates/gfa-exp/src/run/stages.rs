//! The real stages of a run: data → `gfa_core::train::train` (checkpointed, resumable) →
//! `gfa_attacks::eval::evaluate` over the run's attack suite → GFA value per tap.
//!
//! Randomness comes from the run seed only: `seed_all(seed)` before the weights are built, the
//! trainer's per-epoch generators, and the evaluation's `rng_for(seed, …)` per attack batch.
//! Synthetic data is drawn with seed 0 for every run, so the runs of a grid share their data.

use std::path::Path;

use anyhow::{Context, Result, bail};
use gfa_attacks::eval::{
    BatchStore, EvalOptions, EvalRecord, Mode, NoStore, Subset as EvalSubset, SuiteEntry,
    evaluate_suite,
};
use gfa_attacks::{Family, Norm};
use gfa_core::checkpoint;
use gfa_core::seed::seed_all;
use gfa_core::{Classifier, GfaValueConfig, TrainOptions};
use gfa_data::{Dataset, Splits};
use tch::{Device, Kind, Tensor};

use crate::analysis::masking::GradHealth;
use crate::config::grid::RunSpec;
use crate::config::spec::{
    AttackEntry, CheckpointChoice, DataConfig, DataSource, EvalConfig, RunConfig, Subset,
};
use crate::results::records::{
    EvalRow, GfaValueRow, NormRow, RunKey, StepRow, TrainRow, write_rows,
};
use crate::results::store::{RunDir, TRAIN_STEPS, checkpoint_dir};
use crate::run::batches::Suite;
use crate::run::monitor::Monitor;
use crate::run::runner::{EvalOutput, Stages};

/// Load the run's data and cut it to `n_train` / `n_test`.
pub fn load_data(cfg: &DataConfig) -> Result<Splits> {
    let splits = match cfg.source {
        DataSource::Synthetic => gfa_data::synthetic(
            cfg.n_train.unwrap_or(crate::config::spec::SYNTHETIC_TRAIN),
            cfg.n_test.unwrap_or(crate::config::spec::SYNTHETIC_TEST),
            0,
        ),
        DataSource::Cifar10 => {
            let dir = gfa_data::resolve_data_dir(cfg.dir.as_deref().map(Path::new)).context(
                "locating CIFAR-10 (data.dir, $GFA_DATA_DIR or data/; `gfa data fetch`)",
            )?;
            gfa_data::load_cifar10(&dir)
                .with_context(|| format!("loading CIFAR-10 from {}", dir.display()))?
        }
        DataSource::FashionMnist => {
            let dir = gfa_data::fashion::resolve_dir(cfg.dir.as_deref().map(Path::new)).context(
                "locating Fashion-MNIST (data.dir, $GFA_FASHION_MNIST_DIR or data/fashion-mnist; \
                 `gfa data fetch fashion-mnist`)",
            )?;
            gfa_data::fashion::load_dir(&dir)
                .with_context(|| format!("loading Fashion-MNIST from {}", dir.display()))?
        }
    };
    let cut = |d: Dataset, n: Option<usize>| match n {
        Some(n) if n < d.len() => d.head(n),
        _ => d,
    };
    Ok(Splits { train: cut(splits.train, cfg.n_train), test: cut(splits.test, cfg.n_test) })
}

/// An error unless `model` takes images shaped like `data`'s.
pub fn check_input(model: &Classifier, data: &Dataset) -> Result<()> {
    let s = data.images.size();
    let data_shape = [s[1], s[2], s[3]];
    if model.spec.input != data_shape {
        bail!(
            "the model takes {:?} images (C, H, W) but the data are {data_shape:?}: evaluate it \
             on the data it was trained on (data.source / --data)",
            model.spec.input
        );
    }
    Ok(())
}

/// One `train.csv` row per epoch record.
pub fn train_rows(key: &RunKey, records: &[gfa_core::EpochRecord], device: &str) -> Vec<TrainRow> {
    records
        .iter()
        .map(|r| {
            let end = r.end_probe();
            let val = r.validation;
            TrainRow {
                epoch: r.epoch,
                lr: r.lr,
                train_loss: r.train_loss,
                train_acc: r.train_acc,
                test_acc: r.test_acc,
                lambda_now: r.lambda,
                terms: crate::results::records::join_pairs(
                    r.terms.iter().map(|(k, v)| (k.as_str(), *v)),
                ),
                tap_cos: join_taps(r.taps.iter().map(|t| (&t.tap, t.cos))),
                tap_reg: join_taps(r.taps.iter().map(|t| (&t.tap, t.term))),
                collapse: r.collapse,
                seconds: r.seconds,
                device: device.to_string(),
                steps: Some(r.steps),
                grad_norm: end.map(|p| p.grad_norm),
                dead_frac: end.map(|p| dead_text(&p.taps)).unwrap_or_default(),
                pred_entropy: end.map(|p| p.pred_entropy),
                collapse_step: r.collapse_step,
                val_clean_acc: val.map(|v| v.clean_acc),
                val_robust_acc: val.map(|v| v.robust_acc),
                best_epoch: r.best_epoch,
                // Each epoch's own: a resumed run may have trained its epochs at others.
                precision: r.numerics.precision,
                deterministic: r.numerics.deterministic,
                ..TrainRow::keyed(key)
            }
        })
        .collect()
}

/// `train_steps.csv` rows: every diagnostics probe of the records, in order.
pub fn step_rows(key: &RunKey, records: &[gfa_core::EpochRecord]) -> Vec<StepRow> {
    records
        .iter()
        .flat_map(|r| r.probes.iter().map(move |p| (p, r.numerics)))
        .map(|(p, n)| StepRow {
            epoch: p.epoch,
            step: p.step,
            train_acc: p.train_acc,
            test_acc: p.test_acc,
            loss: p.loss,
            penalty: p.penalty,
            lambda_now: p.lambda,
            tap_cos: join_taps(p.taps.iter().map(|t| (&t.tap, t.cos))),
            grad_norm: p.grad_norm,
            dead_frac: dead_text(&p.taps),
            pred_entropy: p.pred_entropy,
            collapse: p.collapse,
            precision: n.precision,
            deterministic: n.deterministic,
            ..StepRow::keyed(key)
        })
        .collect()
}

/// Write a run's `train.csv` and `train_steps.csv` into `dir` (the steps file first, so a
/// `train.csv` always has its steps beside it).
pub fn write_train_csvs(
    dir: &Path,
    key: &RunKey,
    records: &[gfa_core::EpochRecord],
    device: &str,
) -> Result<Vec<TrainRow>> {
    write_rows(&dir.join(TRAIN_STEPS), &step_rows(key, records))?;
    let rows = train_rows(key, records, device);
    write_rows(&dir.join("train.csv"), &rows)?;
    Ok(rows)
}

/// The dead-unit fractions of the taps that have one, `tap=value;…`.
fn dead_text(taps: &[gfa_core::train::TapProbe]) -> String {
    join_taps(taps.iter().filter_map(|t| Some((&t.tap, t.dead?))))
}

/// `tap=value` pairs joined by `;` (values to 6 significant digits).
fn join_taps<'a>(taps: impl Iterator<Item = (&'a String, f64)>) -> String {
    taps.map(|(t, v)| format!("{t}={v:.6}")).collect::<Vec<_>>().join(";")
}

/// The untrained model of `cfg` for `splits` (its input shape from the data), seeded.
fn new_model(cfg: &RunConfig, splits: &Splits, seed: u64, device: Device) -> Result<Classifier> {
    // The model takes the images as the data has them (3×32×32, 1×28×28, …); a `model.input`
    // written in the config must agree.
    let spec = cfg.model.with_input_of(&splits.train);
    if cfg.model.input != gfa_core::models::CIFAR_INPUT && cfg.model.input != spec.input {
        bail!(
            "model.input = {:?} but the data's images are {:?}; leave model.input out, it \
             comes from the data",
            cfg.model.input,
            spec.input
        );
    }
    seed_all(seed);
    Ok(Classifier::new(&spec, device)?)
}

fn train_options(target: TrainTarget<'_>) -> TrainOptions<'static> {
    let TrainTarget { run_id, seed, ckpt, resume, init } = target;
    TrainOptions {
        seed,
        run_id: run_id.to_string(),
        checkpoint_dir: Some(ckpt.to_path_buf()),
        resume,
        init: init.map(Path::to_path_buf),
        progress: false,
        perturbation: Some(&gfa_attacks::InnerPgd),
        validation: Some(&gfa_attacks::ValidationPgd),
        max_steps: None,
        provenance: crate::results::build_info::provenance(),
    }
}

/// Everything [`train_model`] would refuse, checked on the CPU without writing anything (a
/// `--resume` against a checkpoint of another run, and `[train] init` weights that do not fit
/// the model, included).
pub fn check_train(cfg: &RunConfig, splits: &Splits, target: TrainTarget<'_>) -> Result<()> {
    let model = new_model(cfg, splits, target.seed, Device::Cpu)?;
    let opts = train_options(target);
    Ok(gfa_core::train::preflight(&model, splits, &cfg.train, &cfg.method, &opts)?)
}

/// Which model a training is: its run id and seed, where its checkpoints go, whether it
/// continues from the checkpoint found there, and the weights file it starts from
/// (`[train] init`, resolved).
#[derive(Debug, Clone, Copy)]
pub struct TrainTarget<'a> {
    pub run_id: &'a str,
    pub seed: u64,
    pub ckpt: &'a Path,
    pub resume: bool,
    pub init: Option<&'a Path>,
}

/// An `on_epoch` for [`train_model`] that rewrites `train_steps.csv` and then `train.csv` in
/// `dir` after every epoch, one row per finished epoch: the records of the checkpoint just
/// written, so that after a kill and a resume the files are the uninterrupted run's (no epoch
/// twice, none missing). Each rewrite is atomic: a reader sees all rows of some epoch, never a
/// partial row.
pub fn train_csv_writer<'a>(
    key: &'a RunKey,
    ckpt: &'a Path,
    dir: &'a Path,
    device: &'a str,
) -> impl FnMut(&gfa_core::EpochRecord) -> gfa_core::Result<()> + 'a {
    move |_| {
        let records = checkpoint::read_meta(ckpt)?.metrics;
        let csv = dir.join("train.csv");
        let failed = |source| gfa_core::CoreError::Io { path: csv.clone(), source };
        let bytes = |rows: Result<Vec<u8>>| {
            rows.map_err(|e| failed(std::io::Error::other(format!("{e:#}"))))
        };
        let steps = bytes(crate::results::records::to_csv_bytes(&step_rows(key, &records)))?;
        let rows =
            bytes(crate::results::records::to_csv_bytes(&train_rows(key, &records, device)))?;
        let steps_csv = dir.join(TRAIN_STEPS);
        gfa_data::atomic::write_atomic(&steps_csv, &steps)
            .map_err(|source| gfa_core::CoreError::Io { path: steps_csv.clone(), source })?;
        gfa_data::atomic::write_atomic_with(&csv, |tmp| {
            std::fs::write(tmp, &rows)?;
            crate::run::fault::point("train-csv");
            Ok(())
        })
        .map_err(failed)?;
        crate::run::fault::point("epoch");
        Ok(())
    }
}

/// Train `cfg`'s model as `target` says; `on_epoch` sees each epoch's record after its
/// checkpoint is written.
pub fn train_model(
    cfg: &RunConfig,
    splits: &Splits,
    target: TrainTarget<'_>,
    device: Device,
    on_epoch: &mut gfa_core::train::OnEpoch<'_>,
) -> Result<(Classifier, Vec<gfa_core::EpochRecord>)> {
    let mut model = new_model(cfg, splits, target.seed, device)?;
    let opts = train_options(target);
    let out = gfa_core::train(&mut model, splits, &cfg.train, &cfg.method, &opts, on_epoch)?;
    Ok((model, out.records))
}

/// The first `n` points of `data` as `[0, 1]` floats on the CPU.
pub fn head_tensors(data: &Dataset, n: usize) -> (Tensor, Tensor) {
    let n = n.min(data.len());
    let index = Tensor::arange(n as i64, (Kind::Int64, Device::Cpu));
    data.batch(&index, Device::Cpu)
}

fn norm_name(n: Norm) -> String {
    serde_json::to_value(n).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Per point, whether `model` classifies it correctly: `[N]` bool on the CPU, batched like
/// every other forward here (a whole split at once does not fit a GPU).
pub fn correct_mask(model: &Classifier, x: &Tensor, y: &Tensor, batch: usize) -> Tensor {
    tch::no_grad(|| {
        let preds: Vec<Tensor> = x
            .split((batch as i64).max(1), 0)
            .iter()
            .map(|xb| gfa_attacks::repeated::predict(model, &xb.to_device(model.device())))
            .collect();
        Tensor::cat(&preds, 0).to_device(Device::Cpu).eq_tensor(y)
    })
}

/// Run the attack suite on `(x, y)` once (each attack at its own budgets, a minimum-norm attack
/// once and thresholded at each) and turn the records into the `eval.csv`, `norms.csv` and
/// `points.csv` rows of `key`.
///
/// `subset = "all_correct"` keeps the points of `keep` (from `gfa run`: those every compared
/// model classifies correctly); without `keep`, the points this model classifies correctly.
///
/// With `log = Some((path, who))`, each finished batch is kept in the batch log `path`, an
/// interrupted evaluation started again takes the batches it holds, and how many it took is
/// said on stderr after `who` (`gfa run` names the run): how `gfa run` and `gfa eval --csv`
/// evaluate.
// The suite's inputs plus the batch log and where progress is reported.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_run(
    model: &Classifier,
    points: (&Tensor, &Tensor),
    keep: Option<&[bool]>,
    suite: Suite<'_>,
    key: &RunKey,
    device: &str,
    log: Option<(&Path, &str)>,
    progress: &mut dyn FnMut(&gfa_attacks::eval::Progress),
) -> Result<EvalOutput> {
    let Some((path, who)) = log else {
        return evaluate_run_with(model, points, keep, suite, key, device, &mut NoStore, progress);
    };
    let mut store = crate::run::batches::for_evaluation(path, model, points, keep, suite, key)?;
    let out = evaluate_run_with(model, points, keep, suite, key, device, &mut store, progress)?;
    if let Some(line) = store.resumed() {
        eprintln!("{who}{line}");
    }
    Ok(out)
}

/// [`evaluate_run`], keeping every finished batch in `store` and taking the batches it already
/// holds from it (a resumed evaluation; see [`crate::run::batches`]).
// The suite's inputs plus where the batches go and where progress is reported.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_run_with(
    model: &Classifier,
    (x, y): (&Tensor, &Tensor),
    keep: Option<&[bool]>,
    suite: Suite<'_>,
    key: &RunKey,
    device: &str,
    store: &mut dyn BatchStore,
    progress: &mut dyn FnMut(&gfa_attacks::eval::Progress),
) -> Result<EvalOutput> {
    let Suite { attacks, eval, seed, surrogates } = suite;
    let mask = match (eval.subset, keep) {
        (Subset::All, _) => None,
        (Subset::AllCorrect, Some(k)) => {
            if k.len() as i64 != x.size()[0] {
                bail!("all_correct: {} kept flags for {} evaluation points", k.len(), x.size()[0]);
            }
            Some(Tensor::from_slice(k))
        }
        (Subset::AllCorrect, None) => Some(correct_mask(model, x, y, eval.batch_size)),
    };
    let opts = EvalOptions {
        batch_size: eval.batch_size as i64,
        subset: match eval.subset {
            Subset::All => EvalSubset::All,
            Subset::AllCorrect => EvalSubset::AllCorrect,
        },
        individual: eval.individual,
        cumulative: true,
        seed,
    };
    let suite = attacks
        .iter()
        .map(|a| {
            Ok(SuiteEntry {
                name: a.name.clone(),
                attack: a.spec.build_with(surrogates)?,
                preset: a.preset.clone(),
                eps: a.eps.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let points = gfa_attacks::eval::Points { x, y, all_correct: mask.as_ref() };
    let records = evaluate_suite(model, points, &suite, &opts, store, progress)?;
    let out = EvalOutput {
        eval: eval_rows_of(&records, attacks, eval, key, device)?,
        norms: norm_rows(&records, attacks, key),
        points: crate::analysis::points::point_rows(
            &records,
            attacks,
            eval,
            key,
            x.size()[0] as usize,
        ),
        ..EvalOutput::default()
    };
    Ok(out)
}

/// The suite entry a record belongs to.
fn entry_of<'a>(rec: &EvalRecord, attacks: &'a [AttackEntry]) -> Result<&'a AttackEntry> {
    attacks.iter().find(|a| a.name == rec.name && a.preset == rec.preset).with_context(|| {
        format!(
            "the evaluation returned a record of \"{}\" ({}), not in the suite",
            rec.name, rec.preset
        )
    })
}

/// `eval.csv` rows of the records, after the clean record, in the evaluation's order.
fn eval_rows_of(
    records: &[EvalRecord],
    attacks: &[AttackEntry],
    eval: &EvalConfig,
    key: &RunKey,
    device: &str,
) -> Result<Vec<EvalRow>> {
    let mut rows = Vec::new();
    for rec in records.iter().filter(|r| r.mode != Mode::Clean) {
        let entry = entry_of(rec, attacks)?;
        let norm = rec.norm.map(norm_name).unwrap_or_else(|| entry.norm.clone());
        let mut row = EvalRow {
            attack: entry.name.clone(),
            kind: entry.kind.clone(),
            preset: entry.preset.clone(),
            attack_config: rec.config.clone(),
            norm: norm.clone(),
            eps_text: rec.eps_text.clone(),
            eps: rec.eps,
            mode: crate::analysis::points::mode_name(rec.mode).into(),
            subset: eval.subset.name().into(),
            n: rec.n as usize,
            clean_acc: rec.clean_acc,
            robust_acc: Some(rec.robust_acc),
            success_rate: rec.success_rate,
            queries: rec.queries,
            seconds: rec.seconds,
            device: device.to_string(),
            ..EvalRow::keyed(key)
        };
        match norm.as_str() {
            "l2" => (row.median_l2, row.mean_l2) = (rec.median_norm, rec.mean_norm),
            "l1" => (row.median_l1, row.mean_l1) = (rec.median_norm, rec.mean_norm),
            _ => (row.median_linf, row.mean_linf) = (rec.median_norm, rec.mean_norm),
        }
        rows.push(row);
    }
    Ok(rows)
}

/// `norms.csv`: per minimum-norm attack (its one run), per attacked point, the norm it found
/// (empty where it failed).
fn norm_rows(records: &[EvalRecord], attacks: &[AttackEntry], key: &RunKey) -> Vec<NormRow> {
    let mut rows = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let min_norm = records.iter().filter(|r| r.family == Some(Family::MinimumNorm));
    for rec in min_norm.filter(|r| r.mode == Mode::Individual) {
        if seen.contains(&(rec.name.as_str(), rec.preset.as_str())) {
            continue;
        }
        seen.push((&rec.name, &rec.preset));
        let Some(entry) = attacks.iter().find(|a| a.name == rec.name && a.preset == rec.preset)
        else {
            continue;
        };
        let clean = records.first().map(|c| c.robust.as_slice()).unwrap_or_default();
        for (i, (&v, &ok)) in rec.point_norm.iter().zip(clean).enumerate() {
            if !ok {
                continue; // not attacked: misclassified without attack
            }
            let found = (!v.is_nan()).then_some(f64::from(v));
            let mut row = NormRow {
                attack: entry.name.clone(),
                preset: entry.preset.clone(),
                index: rec.index.get(i).map_or(i, |&k| k as usize),
                success: found.is_some(),
                ..NormRow::keyed(key)
            };
            match rec.norm {
                Some(Norm::L2) => row.l2 = found,
                Some(Norm::L1) => row.l1 = found,
                _ => row.linf = found,
            }
            rows.push(row);
        }
    }
    rows
}

/// The points the Indicators of Attack Failure are measured on: the first `n` evaluated points
/// (those of `keep` under `all_correct`) that `model` classifies correctly, on the CPU.
pub fn indicator_points(
    model: &Classifier,
    (x, y): (&Tensor, &Tensor),
    keep: Option<&[bool]>,
    n: usize,
    eval: &EvalConfig,
) -> (Tensor, Tensor) {
    let mut mask = correct_mask(model, x, y, eval.batch_size);
    if let (Subset::AllCorrect, Some(k)) = (eval.subset, keep) {
        mask = mask.logical_and(&Tensor::from_slice(k));
    }
    let idx = gfa_attacks::repeated::indices(&mask);
    let idx = idx.narrow(0, 0, idx.size()[0].min(n as i64));
    (x.index_select(0, &idx), y.index_select(0, &idx))
}

/// Masking check 8: the fraction of points whose cross-entropy input gradient (at the clean
/// point, eval mode) is exactly zero or has a non-finite entry.
pub fn grad_health(model: &Classifier, x: &Tensor, y: &Tensor, batch: i64) -> GradHealth {
    let n = x.size()[0];
    let (mut zero, mut nonfinite) = (0i64, 0i64);
    for (xb, yb) in x.split(batch.max(1), 0).iter().zip(y.split(batch.max(1), 0)) {
        let dev = model.device();
        let (z, f) = gfa_attacks::checks::gradient_health(
            model,
            &xb.to_device(dev),
            &yb.to_device(dev),
            gfa_attacks::loss::ce,
        );
        zero += z;
        nonfinite += f;
    }
    let frac = |k: i64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    GradHealth { zero_frac: frac(zero), nonfinite_frac: frac(nonfinite), n: n as usize }
}

/// GFA value rows (mean cosine per tap) on `data`.
pub fn gfa_value_rows(
    model: &Classifier,
    data: &Dataset,
    split: &str,
    key: &RunKey,
) -> Result<Vec<GfaValueRow>> {
    let values = gfa_core::gfa_value(model, data, &GfaValueConfig::default())?;
    Ok(values
        .into_iter()
        .map(|v| GfaValueRow {
            split: split.into(),
            tap: v.tap,
            value: v.mean_cos,
            n: v.n,
            ..GfaValueRow::keyed(key)
        })
        .collect())
}

/// The weights file a run's `[train] init` starts from: a file, or the weights of a source run
/// of the grid (a sibling of `dir`), which must be trained (`gfa run` trains sources first).
pub fn init_weights(run: &RunSpec, dir: &RunDir) -> Result<Option<std::path::PathBuf>> {
    use crate::config::init::InitSource;
    match &run.init {
        None => Ok(None),
        Some(InitSource::File(p)) => Ok(Some(p.clone())),
        Some(InitSource::Run { id, weights }) => {
            let source = RunDir { path: dir.path.parent().unwrap_or(Path::new(".")).join(id) };
            if !source.has(crate::results::store::Stage::Trained) {
                bail!(
                    "train.init: the source run {id} is not trained (its training failed, or \
                     another process holds it, or it was left out by --only/--shard); `gfa run` \
                     trains a run's source first: rerun once it is trained"
                );
            }
            Ok(Some(checkpoint_dir(&source).join(weights.file())))
        }
    }
}

/// The stages `gfa run` works: real training and evaluation on `device`, progress to
/// `monitor` and each run's log.
pub struct TorchStages {
    pub device: Device,
    pub monitor: Monitor,
}

/// The weights file `[eval] checkpoint` names.
pub fn weights_file(choice: CheckpointChoice) -> &'static str {
    match choice {
        CheckpointChoice::Final => checkpoint::FINAL,
        CheckpointChoice::Best => checkpoint::BEST,
    }
}

impl TorchStages {
    /// The run's trained model (the weights `[eval] checkpoint` names) and its data.
    fn trained(&self, run: &RunSpec, dir: &RunDir) -> Result<(Classifier, Splits)> {
        let ckpt = checkpoint_dir(dir);
        let file = weights_file(run.config.eval.checkpoint);
        let model = checkpoint::load(&ckpt, file, self.device).with_context(|| {
            format!("loading the trained model ({file}) from {}", ckpt.display())
        })?;
        let data = load_data(&run.config.data)?;
        check_input(&model, &data.test)?;
        Ok((model, data))
    }
}

impl Stages for TorchStages {
    fn train(&mut self, run: &RunSpec, dir: &RunDir) -> Result<Vec<TrainRow>> {
        let splits = load_data(&run.config.data)?;
        let ckpt = checkpoint_dir(dir);
        let device = gfa_core::device::device_name(self.device);
        let key = run.key();
        let mut write = train_csv_writer(&key, &ckpt, &dir.path, &device);
        let epochs = run.config.train.epochs;
        let chance = gfa_core::metrics::chance(run.config.model.num_classes);
        let init = init_weights(run, dir)?;
        if let Some(source) = &run.init
            && !checkpoint::exists(&ckpt)
        {
            self.monitor.event(dir, &format!("train: starting from {}", source.describe()));
        }
        let target = TrainTarget {
            run_id: &run.run_id,
            seed: run.seed,
            ckpt: &ckpt,
            resume: true,
            init: init.as_deref(),
        };
        let (_, records) = train_model(&run.config, &splits, target, self.device, &mut |r| {
            write(r)?;
            let line = gfa_core::train::summary_line(r, epochs, chance);
            self.monitor.event(dir, &format!("train {line}"));
            Ok(())
        })?;
        write_rows(&dir.file(TRAIN_STEPS), &step_rows(&key, &records))?;
        Ok(train_rows(&key, &records, &device))
    }

    fn correct(&mut self, run: &RunSpec, dir: &RunDir) -> Result<Vec<bool>> {
        let (model, splits) = self.trained(run, dir)?;
        let n = run.config.eval.n.min(splits.test.len());
        let (x, y) = head_tensors(&splits.test, n);
        let mask = correct_mask(&model, &x, &y, run.config.eval.batch_size);
        Ok(Vec::try_from(&mask)?)
    }

    fn evaluate(
        &mut self,
        run: &RunSpec,
        dir: &RunDir,
        keep: Option<&[bool]>,
    ) -> Result<EvalOutput> {
        let (model, splits) = self.trained(run, dir)?;
        let n = run.config.eval.n.min(splits.test.len());
        let (x, y) = head_tensors(&splits.test, n);
        let key = run.key();
        let device = gfa_core::device::device_name(self.device);
        let surrogates = crate::run::surrogate::CheckpointSurrogates::of_run(run, dir, self.device);
        let suite = Suite {
            attacks: &run.attacks,
            eval: &run.config.eval,
            seed: run.seed,
            surrogates: &surrogates,
        };
        let log = dir.file(crate::run::batches::FILE);
        let who = format!("run {}: ", run.run_id);
        let mut progress = |p: &gfa_attacks::eval::Progress| {
            let text = match p.stage {
                gfa_attacks::eval::Stage::Clean => format!("clean pass {}/{}", p.done, p.total),
                stage => {
                    let stage = format!("{stage:?}").to_lowercase();
                    format!("attack {} {} {stage} {}/{}", p.attack, p.eps, p.done, p.total)
                }
            };
            self.monitor.progress(dir, &text);
        };
        let out = evaluate_run(
            &model,
            (&x, &y),
            keep,
            suite,
            &key,
            &device,
            Some((log.as_path(), who.as_str())),
            &mut progress,
        )?;
        let gfa_value = gfa_value_rows(&model, &splits.test.head(n), "test", &key)?;
        let grad_health = Some(grad_health(&model, &x, &y, run.config.eval.batch_size as i64));
        let indicators = match &run.indicators {
            None => None,
            Some(config) => {
                let (ix, iy) = indicator_points(&model, (&x, &y), keep, config.n, &run.config.eval);
                let probe = crate::run::indicators::Probe {
                    model: &model,
                    x: &ix,
                    y: &iy,
                    suite,
                    config,
                    grad: grad_health,
                    key: &key,
                };
                self.monitor.progress(dir, "indicators of attack failure");
                Some(crate::run::indicators::indicator_rows(&probe)?)
            }
        };
        let landscape = match &run.landscape {
            None => None,
            Some(l) => {
                let radius =
                    l.validate().map_err(|e| anyhow::anyhow!("[landscape]: {}", e.message))?;
                let (lx, ly) = head_tensors(&splits.test, l.n.min(splits.test.len()));
                let grid = crate::run::landscape::Landscape {
                    radius: radius.value,
                    steps: l.steps,
                    batch_size: l.batch_size,
                    seed: run.seed,
                };
                Some(crate::run::landscape::landscape_rows(
                    &model,
                    (&lx, &ly),
                    &grid,
                    &key,
                    self.device,
                ))
            }
        };
        let binarization = match &run.binarize {
            None => None,
            Some(b) => {
                let mut progress = |done: usize, total: usize| {
                    self.monitor.progress(dir, &format!("binarization test {done}/{total}"));
                };
                let points = (&x, &y);
                let (rows, _) = crate::run::binarize::binarization_rows(
                    model,
                    points,
                    b,
                    &key,
                    run.seed,
                    &mut progress,
                )?;
                Some(rows)
            }
        };
        Ok(EvalOutput { gfa_value, grad_health, landscape, indicators, binarization, ..out })
    }
}
