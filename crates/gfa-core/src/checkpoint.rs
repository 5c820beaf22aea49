//! Checkpoints: safetensors weights (normalization included) + optimizer state + a JSON
//! sidecar (STYLE §1.14).
//!
//! A checkpoint directory holds `last.safetensors` (the weights after the last finished
//! epoch), `optimizer.safetensors` (the optimizer state, PyTorch slot names), optionally
//! `final.safetensors` (the weights at the end of training) and `best.safetensors` (the robust
//! checkpoint: the epoch with the best robust validation accuracy, `[train] validation`), and
//! `checkpoint.json` with the
//! model spec, epoch, config hash, the build that wrote it ([`Provenance`]), run id and the
//! per-epoch metrics. Every file is written with `gfa_data::atomic::write_atomic` (temporary
//! file, fsync, rename, fsync of the folder); the sidecar goes last, so a sidecar always
//! describes complete weight files. Loading rebuilds the model from the spec.
use std::path::Path;

use gfa_data::atomic::{write_atomic, write_atomic_with};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::classifier::Classifier;
use crate::models::ModelSpec;
use crate::provenance::Provenance;
use crate::train::EpochRecord;
use crate::train::optim::Optimizer;
use crate::{CoreError, Result};

pub const LAST: &str = "last.safetensors";
pub const FINAL: &str = "final.safetensors";
/// The robust checkpoint (written only with `[train] validation`).
pub const BEST: &str = "best.safetensors";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const SIDECAR: &str = "checkpoint.json";
/// Version of the sidecar layout (3: `numerics` required, in the sidecar and in every epoch
/// record; 2: `build` replaced `git_revision`, epoch records carry named loss terms). Format 2
/// reads as 3 ([`read_meta`]).
pub const FORMAT: u32 = 3;

/// The contents of `checkpoint.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    pub format: u32,
    pub model: ModelSpec,
    /// Finished epochs.
    pub epoch: usize,
    /// Hash of everything that determines the run (model, training config, method, seed).
    pub config_hash: String,
    /// The build of gfa that wrote the checkpoint.
    pub build: Provenance,
    pub run_id: String,
    /// Test accuracy after the last finished epoch, when measured.
    pub clean_acc: Option<f64>,
    /// One record per finished epoch.
    pub metrics: Vec<EpochRecord>,
    /// The precision and determinism of the process that wrote the checkpoint, on the run's
    /// device (docs/numerics.md); each epoch record has its own (a resumed run may mix them).
    pub numerics: crate::device::Numerics,
}

fn ck_err(path: &Path, reason: impl Into<String>) -> CoreError {
    CoreError::Checkpoint { path: path.to_path_buf(), reason: reason.into() }
}

fn io_err(path: &Path, source: std::io::Error) -> CoreError {
    CoreError::Io { path: path.to_path_buf(), source }
}

/// Write named tensors as safetensors, atomically.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let contiguous: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.detach().contiguous())).collect();
    write_atomic_with(path, |tmp| {
        Tensor::write_safetensors(&contiguous, tmp).map_err(std::io::Error::other)
    })
    .map_err(|e| ck_err(path, e.to_string()))
}

/// Every variable of the model (trainable or not, normalization included), in name order.
pub fn named_weights(model: &Classifier) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The named tensors of the safetensors file `path`. The error says what the entry is when it
/// is not a readable safetensors file (a folder, a missing file, other bytes) and what to pass.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if path.is_dir() {
        return Err(ck_err(
            path,
            "is a folder, not a safetensors file: pass the weights file inside it (e.g. \
             final.safetensors), or pass the folder as --checkpoint",
        ));
    }
    if !path.exists() {
        return Err(ck_err(path, "no such file: check the path"));
    }
    let named = Tensor::read_safetensors(path).map_err(|e| {
        ck_err(
            path,
            format!(
                "is not a complete safetensors file (truncated, or other bytes: {}); pass a \
                 file written by gfa (final.safetensors), by `gfa import`, or by safetensors' \
                 save_file",
                e.to_string().rsplit(": ").next().unwrap_or_default()
            ),
        )
    })?;
    check_finite(path, &named)?;
    Ok(named)
}

/// The first floating-point tensor of `named` holding a NaN or an infinity: its name, how many
/// of its values are NaN and how many infinite.
pub fn first_non_finite(named: &[(String, Tensor)]) -> Result<Option<(String, i64, i64)>> {
    for (name, t) in named {
        if !t.is_floating_point() {
            continue;
        }
        let nan = t.f_isnan()?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
        let inf = t.f_isinf()?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
        if nan + inf > 0 {
            return Ok(Some((name.clone(), nan, inf)));
        }
    }
    Ok(None)
}

/// An error naming the first tensor of `named` (read from `path`) that holds a NaN or an
/// infinity: such a model outputs NaN, and any accuracy measured on it would mean nothing.
pub fn check_finite(path: &Path, named: &[(String, Tensor)]) -> Result<()> {
    match first_non_finite(named)? {
        None => Ok(()),
        Some((name, nan, inf)) => Err(ck_err(
            path,
            format!(
                "tensor \"{name}\" holds {nan} NaN and {inf} infinite values: a model with \
                 non-finite weights outputs NaN and its accuracy would mean nothing; use \
                 weights saved before training diverged (an earlier checkpoint), or export them \
                 again"
            ),
        )),
    }
}

/// Save the model's weights to `path` (safetensors, atomically).
pub fn save_weights(model: &Classifier, path: &Path) -> Result<()> {
    write_tensors(path, &named_weights(model))
}

/// Load weights saved by [`save_weights`] (or PyTorch with the same names) into `model`; every
/// variable must be present with its shape.
pub fn load_weights(model: &mut Classifier, path: &Path) -> Result<()> {
    load_weights_except(model, path, |_| false)
}

/// [`load_weights`] for the variables whose names `skip` rejects (those keep their values).
pub fn load_weights_except(
    model: &mut Classifier,
    path: &Path,
    skip: impl Fn(&str) -> bool,
) -> Result<()> {
    let named = read_tensors(path)?;
    for (name, mut var) in named_weights(model).into_iter().filter(|(n, _)| !skip(n)) {
        let src = tensor_for(&named, &name, &var, path)?;
        tch::no_grad(|| var.f_copy_(src)).map_err(|e| ck_err(path, e.to_string()))?;
    }
    Ok(())
}

/// An error unless the safetensors file `path` holds every variable of `model` with its shape
/// (what [`load_weights`] needs), checked without changing the model.
pub fn check_weights_fit(model: &Classifier, path: &Path) -> Result<()> {
    let named = read_tensors(path)?;
    for (name, var) in named_weights(model) {
        tensor_for(&named, &name, &var, path)?;
    }
    Ok(())
}

/// The tensor of `named` (read from `path`) for the model variable `name`, of `var`'s shape.
fn tensor_for<'a>(
    named: &'a [(String, Tensor)],
    name: &str,
    var: &Tensor,
    path: &Path,
) -> Result<&'a Tensor> {
    let src = named.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or_else(|| {
        ck_err(path, format!("no tensor \"{name}\" (the model spec does not match the file)"))
    })?;
    if src.size() != var.size() {
        return Err(ck_err(
            path,
            format!(
                "tensor \"{name}\" has shape {:?}, the model expects {:?}",
                src.size(),
                var.size()
            ),
        ));
    }
    Ok(src)
}

/// Save `last.safetensors`, the optimizer state (when given) and then the sidecar.
pub fn save(
    dir: &Path,
    model: &Classifier,
    optimizer: Option<&Optimizer>,
    meta: &CheckpointMeta,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    // The three files are one checkpoint: a stop on request waits for all of them.
    let _group = gfa_data::atomic::write_group();
    save_weights(model, &dir.join(LAST))?;
    if let Some(opt) = optimizer {
        write_tensors(&dir.join(OPTIMIZER), &opt.state_tensors())?;
    }
    write_meta(dir, meta)
}

/// Write `checkpoint.json` atomically.
pub fn write_meta(dir: &Path, meta: &CheckpointMeta) -> Result<()> {
    let path = dir.join(SIDECAR);
    let text = serde_json::to_string_pretty(meta).map_err(|e| ck_err(&path, e.to_string()))?;
    write_atomic(&path, (text + "\n").as_bytes()).map_err(|e| io_err(&path, e))
}

/// Read `checkpoint.json` (format 3, or format 2 upgraded: [`upgrade_format_2`]).
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta> {
    let path = dir.join(SIDECAR);
    let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
    let unreadable = |e: serde_json::Error| ck_err(&path, format!("unreadable: {e}"));
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(unreadable)?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        Some(f) if f == u64::from(FORMAT) => {}
        Some(2) => upgrade_format_2(&mut value),
        other => {
            let f = other.map_or_else(|| "missing".to_string(), |f| f.to_string());
            return Err(ck_err(
                &path,
                format!("format {f} is not one this gfa reads ({FORMAT}, and 2)"),
            ));
        }
    }
    serde_json::from_value(value).map_err(unreadable)
}

/// A format-2 sidecar as format 3. Its `numerics`, where the sidecar has them (written since
/// gfa recorded them, for the whole run), go into every epoch record too; a sidecar without
/// them was written before gfa recorded them and reads as
/// [`Numerics::BEFORE_RECORDING`](crate::device::Numerics::BEFORE_RECORDING): strict fp32,
/// deterministic switches off (docs/numerics.md).
fn upgrade_format_2(value: &mut serde_json::Value) {
    let Some(meta) = value.as_object_mut() else { return };
    let numerics = match meta.get("numerics") {
        Some(n) if !n.is_null() => n.clone(),
        _ => serde_json::to_value(crate::device::Numerics::BEFORE_RECORDING)
            .expect("numerics serialize"),
    };
    if let Some(records) = meta.get_mut("metrics").and_then(serde_json::Value::as_array_mut) {
        for r in records.iter_mut().filter_map(serde_json::Value::as_object_mut) {
            r.insert("numerics".into(), numerics.clone());
        }
    }
    meta.insert("numerics".into(), numerics);
    meta.insert("format".into(), FORMAT.into());
}

/// Whether `dir` holds a complete checkpoint (the sidecar is written last).
pub fn exists(dir: &Path) -> bool {
    dir.join(SIDECAR).is_file()
}

/// The model spec of a checkpoint, from a sidecar of any format (loading weights needs
/// nothing else, so models trained by an older gfa stay usable).
pub fn read_model_spec(dir: &Path) -> Result<ModelSpec> {
    #[derive(Deserialize)]
    struct SpecOnly {
        model: ModelSpec,
    }
    let path = dir.join(SIDECAR);
    let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
    let s: SpecOnly =
        serde_json::from_str(&text).map_err(|e| ck_err(&path, format!("unreadable: {e}")))?;
    Ok(s.model)
}

/// An error unless `dir` is a checkpoint folder (one holding `checkpoint.json`); it says what
/// `dir` is instead and what to pass.
pub fn check_dir(dir: &Path) -> Result<()> {
    let reason = if !dir.exists() {
        "no such folder: pass the --out folder of `gfa train` or a run's checkpoints/ folder"
    } else if !dir.is_dir() {
        "is a file, not a checkpoint folder: pass its folder, or pass a safetensors file as \
         --weights FILE"
    } else if !exists(dir) {
        "holds no gfa checkpoint (no checkpoint.json): pass the --out folder of `gfa train`, a \
         run's checkpoints/ folder (results/<experiment>/<run_id>/checkpoints), or a weights \
         file as --weights FILE"
    } else {
        return Ok(());
    };
    Err(ck_err(dir, reason))
}

/// Rebuild the model from the sidecar's spec and load `weights` (`LAST`, `FINAL` or `BEST`)
/// into it.
pub fn load(dir: &Path, weights: &str, device: Device) -> Result<Classifier> {
    let mut model = Classifier::new(&read_model_spec(dir)?, device)?;
    load_weights(&mut model, &dir.join(weights))?;
    Ok(model)
}

/// Restore weights and optimizer state of a run in progress (resume).
pub fn restore(
    dir: &Path,
    model: &mut Classifier,
    optimizer: &mut Optimizer,
) -> Result<CheckpointMeta> {
    let meta = read_meta(dir)?;
    if meta.model != model.spec {
        return Err(ck_err(
            &dir.join(SIDECAR),
            "the checkpoint's model spec differs from the run's",
        ));
    }
    load_weights(model, &dir.join(LAST))?;
    let path = dir.join(OPTIMIZER);
    let state = read_tensors(&path)?;
    optimizer.load_state(&state).map_err(|e| ck_err(&path, e.to_string()))?;
    Ok(meta)
}

/// Short hash of a serializable value (canonical JSON, blake3, 16 hex digits).
pub fn config_hash<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("configs serialize");
    blake3::hash(&json).to_hex()[..16].to_string()
}
