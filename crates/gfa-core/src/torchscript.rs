//! TorchScript modules as gfa classifiers: any PyTorch model, scripted or traced
//! (`torch.jit.script` / `torch.jit.trace`, then `torch.jit.save`), evaluated with gfa's attacks.
//!
//! [`load`] reads the module with libtorch (`tch::CModule`, no Python), puts it in eval mode,
//! stops gradients to its weights and probes it once on a batch of the data's shape: the forward
//! must run on the chosen device, return one tensor of logits `[N, classes]` (not a tuple, not
//! probabilities) and be differentiable with respect to its input, or loading fails naming what
//! it returned. The result is a [`Classifier`] whose network is the module: inputs are `[0, 1]`
//! pixels, `--normalize` adds gfa's normalization layer in front when the module does not
//! normalize itself, and input gradients flow through the scripted graph, so every attack runs
//! on it unchanged.
//!
//! What an opaque module cannot do: it has no taps after `input` (the GFA value per layer and
//! the finite-difference regularizer need gfa's own architectures), and it cannot be trained
//! (its forward always runs in eval mode).
use std::path::{Path, PathBuf};

use tch::{CModule, Device, IValue, Kind, Tensor, nn};

use crate::classifier::{Classifier, Network, Taps};
use crate::import::Normalization;
use crate::models::{Arch, ModelSpec};
use crate::{CoreError, Result};

/// A loaded TorchScript module behind gfa's [`Network`] trait.
pub struct ScriptNet {
    module: CModule,
    path: PathBuf,
}

impl std::fmt::Debug for ScriptNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptNet").field("path", &self.path).finish()
    }
}

impl Network for ScriptNet {
    /// The module's forward. Its output was checked at [`load`] on a batch of the same shape; a
    /// module that fails on a later batch (one traced for a fixed batch size, say) panics with
    /// libtorch's message.
    fn forward(&self, x: &Tensor, train: bool, _taps: Option<&mut Taps>) -> Tensor {
        assert!(
            !train,
            "{}: a TorchScript module runs in eval mode only; gfa does not train it",
            self.path.display()
        );
        self.module.forward_ts(&[x]).unwrap_or_else(|e| {
            panic!("{}: the TorchScript module's forward failed: {e}", self.path.display())
        })
    }

    /// None: the module is opaque.
    fn tap_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What [`load`] found out about a module.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptInfo {
    pub path: PathBuf,
    /// Classes: the width of the probe's logits.
    pub num_classes: i64,
    /// Parameters (scalars) of the module.
    pub parameters: i64,
    /// The dtype of its floating-point parameters (`Float` when it has none).
    pub kind: Kind,
}

fn ts_err(path: &Path, reason: impl Into<String>) -> CoreError {
    CoreError::TorchScript { path: path.to_path_buf(), reason: reason.into() }
}

/// Refuses what is no TorchScript archive before libtorch sees it, naming what it is.
fn check_archive(path: &Path) -> Result<()> {
    let io = |source| CoreError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let Ok(mut zip) = zip::ZipArchive::new(file) else {
        let head = std::fs::read(path).map_err(io)?;
        let what = if head.starts_with(crate::pt::LEGACY_MAGIC) {
            "a legacy torch.save file (a pickle, PyTorch < 1.6): if it holds a state dict, \
             `gfa import` reads it"
        } else {
            "not a zip archive, which torch.jit.save writes"
        };
        return Err(ts_err(path, format!("not a TorchScript module: {what}")));
    };
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let scripted = names.iter().any(|n| n.ends_with("/constants.pkl") || n.contains("/code/"));
    if !scripted {
        let saved = names.iter().any(|n| n.ends_with("/data.pkl"));
        let what = if saved {
            "it is a torch.save file (a state dict or a pickled object), not torch.jit.save's \
             archive: import weights with `gfa import --model ARCH FILE`, or script the model \
             with scripts/export_torchscript.py"
        } else {
            "a zip archive without TorchScript code (no constants.pkl, no code/)"
        };
        return Err(ts_err(path, format!("not a TorchScript module: {what}")));
    }
    // Reading a member checks the archive is whole before libtorch parses it.
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| ts_err(path, format!("damaged archive: {e}")))?;
        std::io::copy(&mut f, &mut std::io::sink())
            .map_err(|e| ts_err(path, format!("damaged archive: {e}")))?;
    }
    Ok(())
}

/// Loads the TorchScript module at `path` on `device` for images shaped `input` (`[C, H, W]`),
/// with gfa's normalization layer `normalization` in front ([`Normalization::None`] when the
/// module normalizes itself), and checks it (see the module docs). `kind` is the dtype of the
/// probe batch: `Float` for the evaluation, `Double` for a float64 module.
pub fn load(
    path: &Path,
    normalization: &Normalization,
    input: [i64; 3],
    kind: Kind,
    device: Device,
) -> Result<(Classifier, ScriptInfo)> {
    check_archive(path)?;
    let mut module = CModule::load_on_device(path, device).map_err(|e| {
        ts_err(path, format!("libtorch cannot load it on {device:?}: {}", first_line(&e)))
    })?;
    module.set_eval();
    let params = module
        .named_parameters()
        .map_err(|e| ts_err(path, format!("its parameters: {}", first_line(&e))))?;
    let mut parameters = 0i64;
    let mut kinds = Vec::new();
    for (name, p) in &params {
        if p.device() != device {
            return Err(ts_err(
                path,
                format!("parameter {name} is on {:?}, gfa evaluates on {device:?}", p.device()),
            ));
        }
        if p.is_floating_point() && !kinds.contains(&p.kind()) {
            kinds.push(p.kind());
        }
        parameters += p.numel() as i64;
        // In place: the module's own parameter stops requiring a gradient.
        let _ = p.set_requires_grad(false);
    }
    if kinds.iter().any(|k| *k != kind) {
        return Err(ts_err(
            path,
            format!(
                "its parameters are {kinds:?}, gfa evaluates {kind:?} modules: convert the model \
                 (`model.float()`) before scripting it"
            ),
        ));
    }
    let num_classes = probe(&module, path, input, kind, device)?;

    let spec = normalization.apply(&ModelSpec {
        arch: Arch::TorchScript,
        num_classes,
        input,
        ..ModelSpec::default()
    });
    let net = ScriptNet { module, path: path.to_path_buf() };
    let vs = nn::VarStore::new(device);
    let mut model = Classifier::with_network(vs, &spec, Box::new(net))?;
    model.freeze();
    let info = ScriptInfo { path: path.to_path_buf(), num_classes, parameters, kind };
    Ok((model, info))
}

/// The line of a libtorch error that says what went wrong: the TorchScript interpreter's
/// `RuntimeError: …` after its traceback when there is one, else the first line (a C++
/// backtrace follows).
fn first_line(e: &tch::TchError) -> String {
    let s = e.to_string();
    let raised = s.lines().find_map(|l| l.trim().strip_prefix("RuntimeError: "));
    raised.or_else(|| s.lines().next()).unwrap_or_default().trim().to_string()
}

/// Runs the module on a probe batch (two seeded images of shape `input`, then one) and returns
/// the number of classes; an error names what the module returned instead of logits.
fn probe(
    module: &CModule,
    path: &Path,
    input: [i64; 3],
    kind: Kind,
    device: Device,
) -> Result<i64> {
    let shape = |n: i64| [n, input[0], input[1], input[2]];
    // A fixed, seed-free probe: a ramp of pixel values in [0, 1].
    let numel: i64 = 2 * input.iter().product::<i64>();
    let x = (Tensor::arange(numel, (kind, device)) / numel as f64)
        .view(shape(2))
        .set_requires_grad(true);
    let out = module.forward_is(&[IValue::Tensor(x.shallow_clone())]).map_err(|e| {
        let msg = first_line(&e);
        let devices = ["CUDA", "cuda", "NVIDIA", "device", "MPS"];
        let hint = if devices.iter().any(|d| msg.contains(d)) {
            format!(
                " (the module computes on another device than {device:?}: export it on the \
                 device gfa evaluates on, without device constants in its forward)"
            )
        } else {
            String::new()
        };
        ts_err(path, format!("its forward fails on a {:?} batch: {msg}{hint}", shape(2)))
    })?;
    let logits = match out {
        IValue::Tensor(t) => t,
        other => {
            return Err(ts_err(
                path,
                format!(
                    "its forward returns {}, gfa needs one tensor of logits [N, classes]: \
                     script a wrapper whose forward returns the logits alone",
                    describe(&other)
                ),
            ));
        }
    };
    let size = logits.size();
    if size.len() != 2 || size[0] != 2 || size[1] < 2 {
        return Err(ts_err(
            path,
            format!(
                "its forward returns a tensor {size:?} for a batch of 2, gfa needs logits [2, \
                 classes] (at least 2 classes)"
            ),
        ));
    }
    if logits.device() != device {
        return Err(ts_err(
            path,
            format!("its forward returns a tensor on {:?}, not {device:?}", logits.device()),
        ));
    }
    if !logits.is_floating_point() {
        return Err(ts_err(path, format!("its forward returns {:?} logits", logits.kind())));
    }
    let values = logits.detach().to_kind(Kind::Double);
    let in_unit = values.ge(0.0).logical_and(&values.le(1.0)).all().int64_value(&[]) == 1;
    let rows = values.sum_dim_intlist(1, false, Kind::Double);
    let sum_one = (rows - 1.0).abs().max().double_value(&[]) < 1e-4;
    if in_unit && sum_one {
        return Err(ts_err(
            path,
            "its forward returns probabilities (each row in [0, 1], summing to 1), gfa needs \
             logits: script the model without its final softmax",
        ));
    }
    if !logits.requires_grad() {
        return Err(ts_err(
            path,
            "its output does not depend differentiably on its input (no gradient reaches the \
             image: a `.detach()`, `torch.no_grad()` or a non-differentiable step in its \
             forward), and gfa's attacks need input gradients",
        ));
    }
    let grad = Tensor::f_run_backward(&[logits.sum(Kind::Double)], &[&x], false, false)
        .map_err(|e| ts_err(path, format!("its backward fails: {}", first_line(&e))))?;
    if grad.first().is_none_or(|g| !g.defined()) {
        return Err(ts_err(path, "no gradient reaches its input"));
    }
    // A second batch size: a module traced for a fixed batch fails here rather than later.
    let one = x.detach().narrow(0, 0, 1);
    let out = module
        .forward_ts(&[&one])
        .map_err(|e| ts_err(path, format!("its forward fails on one image: {}", first_line(&e))))?;
    if out.size() != [1, size[1]] {
        return Err(ts_err(
            path,
            format!(
                "its forward returns {:?} for one image and {size:?} for two: it was traced for \
                 a fixed batch size; script it instead",
                out.size()
            ),
        ));
    }
    Ok(size[1])
}

/// What a module returned, for the error: `a tuple of 2 (tensor [2, 10], tensor [2, 3])`.
fn describe(v: &IValue) -> String {
    match v {
        IValue::Tensor(t) => format!("tensor {:?}", t.size()),
        IValue::Tuple(items) | IValue::GenericList(items) => {
            let kind = if matches!(v, IValue::Tuple(_)) { "a tuple" } else { "a list" };
            let inner: Vec<String> = items.iter().map(describe).collect();
            format!("{kind} of {} ({})", items.len(), inner.join(", "))
        }
        IValue::TensorList(ts) => format!("a list of {} tensors", ts.len()),
        IValue::GenericDict(items) => format!("a dict of {} entries", items.len()),
        IValue::None => "None".into(),
        IValue::Double(_) => "a float".into(),
        IValue::Int(_) => "an int".into(),
        IValue::Bool(_) => "a bool".into(),
        IValue::String(_) => "a string".into(),
        _ => "a value that is not a tensor".into(),
    }
}
