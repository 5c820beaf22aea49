//! PyTorch checkpoints into gfa weights (`gfa import`), and how a model normalizes its inputs
//! (`--normalize`).
//!
//! [`import_state_dict`] reads what `torch.save` writes for a `state_dict` ([`crate::pt`]): the
//! dict itself, or a checkpoint dict holding it under `state_dict`, `model` or `net`. It strips
//! the `module.` (`nn.DataParallel`, DDP) and `_orig_mod.` (`torch.compile`) prefixes, checks
//! every name, shape and dtype against the gfa architecture (naming each missing, unexpected
//! and mis-shaped tensor, and the architecture the names fit when they fit another one), and
//! adds the normalization buffers, so the result loads with `gfa eval --weights` as it is.
use std::path::Path;
use std::str::FromStr;

use tch::{Device, Kind, Tensor};

use crate::classifier::Classifier;
use crate::models::{Arch, ModelSpec};
use crate::pt::{self, Value};
use crate::{CoreError, Result};

/// How a model expects its `[0, 1]` pixels: as they are, or shifted and scaled per channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalization {
    /// The model takes `[0, 1]` pixels (the auto-attack / RobustBench convention).
    None,
    /// `(x − mean) / std`, one value per channel or one for all.
    MeanStd { mean: Vec<f64>, std: Vec<f64> },
}

/// CIFAR-10's per-channel training-set mean and std, as most CIFAR-10 code normalizes.
pub const CIFAR10_MEAN_STD: ([f64; 3], [f64; 3]) =
    ([0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]);
/// ImageNet's (torchvision's) per-channel mean and std.
pub const IMAGENET_MEAN_STD: ([f64; 3], [f64; 3]) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);

impl FromStr for Normalization {
    type Err = String;

    /// `none`, `cifar10`, `imagenet`, `MEAN,STD` (one value each for all channels) or
    /// `M1,…,Mc,S1,…,Sc` (one per channel).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let preset = |(m, s): ([f64; 3], [f64; 3])| Normalization::MeanStd {
            mean: m.to_vec(),
            std: s.to_vec(),
        };
        match s.trim() {
            "none" => return Ok(Normalization::None),
            "cifar10" => return Ok(preset(CIFAR10_MEAN_STD)),
            "imagenet" => return Ok(preset(IMAGENET_MEAN_STD)),
            _ => {}
        }
        let usage = "expected none, cifar10, imagenet, MEAN,STD (e.g. 0.5,0.5) or one mean per \
                     channel then one std per channel (e.g. 0.4914,0.4822,0.4465,0.2471,0.2435,\
                     0.2616)";
        let values: Vec<f64> = s
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| format!("bad normalization '{s}': {usage}"))?;
        if values.len() < 2 || !values.len().is_multiple_of(2) {
            return Err(format!("bad normalization '{s}': {} numbers; {usage}", values.len()));
        }
        let (mean, std) = values.split_at(values.len() / 2);
        if let Some(v) = mean.iter().find(|v| !v.is_finite()) {
            return Err(format!(
                "bad normalization '{s}': mean {v} is not a finite number (a NaN or infinite \
                 mean makes every output NaN); {usage}"
            ));
        }
        if let Some(v) = std.iter().find(|v| !(**v > 0.0 && v.is_finite())) {
            return Err(format!(
                "bad normalization '{s}': std {v} is not a positive finite number; {usage}"
            ));
        }
        Ok(Normalization::MeanStd { mean: mean.to_vec(), std: std.to_vec() })
    }
}

impl Normalization {
    /// `spec` with this normalization (`normalize = false` for [`Normalization::None`]).
    pub fn apply(&self, spec: &ModelSpec) -> ModelSpec {
        match self {
            Normalization::None => ModelSpec { normalize: false, ..spec.clone() },
            Normalization::MeanStd { mean, std } => {
                ModelSpec { normalize: true, mean: mean.clone(), std: std.clone(), ..spec.clone() }
            }
        }
    }

    /// The normalization stored in a weight file (`normalize.mean` and `normalize.std`), if any.
    pub fn of_tensors(named: &[(String, Tensor)]) -> Option<Normalization> {
        let get = |k: &str| named.iter().find(|(n, _)| n == k).map(|(_, t)| t);
        let values = |t: &Tensor| Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1));
        match (get("normalize.mean"), get("normalize.std")) {
            (Some(m), Some(s)) => {
                Some(Normalization::MeanStd { mean: values(m).ok()?, std: values(s).ok()? })
            }
            _ => None,
        }
    }

    /// Whether both map pixels the same way on `channels` channels (`None` is mean 0, std 1;
    /// values equal in float32, as the buffers store them).
    pub fn same_as(&self, other: &Normalization, channels: i64) -> bool {
        let spread = |n: &Normalization| -> Option<(Vec<f32>, Vec<f32>)> {
            let (m, s) = match n {
                Normalization::None => (vec![0.0], vec![1.0]),
                Normalization::MeanStd { mean, std } => (mean.clone(), std.clone()),
            };
            let spec =
                ModelSpec { mean: m, std: s, input: [channels, 1, 1], ..ModelSpec::default() };
            let (m, s) = spec.per_channel_mean_std().ok()?;
            let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
            Some((f(m), f(s)))
        };
        matches!((spread(self), spread(other)), (Some(a), Some(b)) if a == b)
    }
}

impl std::fmt::Display for Normalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Normalization::None => f.write_str("none ([0, 1] pixels)"),
            Normalization::MeanStd { mean, std } => {
                // As float32, the precision the buffers keep (0.4914, not 0.49140000343…).
                let f32s = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<_>>();
                write!(f, "mean {:?}, std {:?}", f32s(mean), f32s(std))
            }
        }
    }
}

/// What [`import_state_dict`] did.
#[derive(Debug)]
pub struct Imported {
    /// gfa tensor names and values (normalization buffers included), in name order.
    pub tensors: Vec<(String, Tensor)>,
    /// The checkpoint key the state dict was under (`state_dict`, `model`, `net`), if any.
    pub found_under: Option<String>,
    /// Prefixes stripped from the names (`module.`, `_orig_mod.`).
    pub stripped: Vec<String>,
    /// Tensors of the file the architecture does not use and that were left out on purpose
    /// (the reference WideResNet's unused `sub_block1.*`).
    pub dropped: Vec<String>,
    /// Tensors converted to the dtype gfa stores (e.g. float16 → float32).
    pub converted: Vec<String>,
}

/// Checkpoint keys a state dict is looked for under, in this order.
pub const STATE_DICT_KEYS: [&str; 3] = ["state_dict", "model", "net"];
/// Name prefixes added by wrappers: `nn.DataParallel` / DDP and `torch.compile`.
pub const WRAPPER_PREFIXES: [&str; 2] = ["module.", "_orig_mod."];

fn import_err(path: &Path, reason: impl Into<String>) -> CoreError {
    CoreError::Checkpoint { path: path.to_path_buf(), reason: reason.into() }
}

/// Whether `v` is a state dict: a dict of string keys whose values include tensors.
fn is_state_dict(v: &Value) -> bool {
    match v {
        Value::Dict(items) => {
            !items.is_empty()
                && items.iter().all(|(k, _)| matches!(k, Value::Str(_)))
                && items.iter().any(|(_, v)| matches!(v, Value::Tensor(_)))
        }
        _ => false,
    }
}

/// The state dict in a checkpoint, and the key it was under.
fn find_state_dict<'v>(root: &'v Value, path: &Path) -> Result<(&'v Value, Option<String>)> {
    if root.get("state").is_some() && root.get("param_groups").is_some() {
        return Err(import_err(
            path,
            "it holds an optimizer's state (keys `state` and `param_groups`, what \
             `optimizer.state_dict()` returns), not model weights; import the file saved from \
             `model.state_dict()`",
        ));
    }
    if is_state_dict(root) {
        return Ok((root, None));
    }
    for key in STATE_DICT_KEYS {
        if let Some(v) = root.get(key).filter(|v| is_state_dict(v)) {
            return Ok((v, Some(key.to_string())));
        }
    }
    let what = match root {
        Value::Dict(items) => {
            let keys: Vec<String> = items
                .iter()
                .map(|(k, v)| match k {
                    Value::Str(s) => format!("{s} ({})", v.describe()),
                    other => format!("{} ({})", other.describe(), v.describe()),
                })
                .collect();
            format!(
                "a dict with {}, and none of {} holds a state dict (names → tensors)",
                if keys.is_empty() { "no entries".into() } else { keys.join(", ") },
                STATE_DICT_KEYS.join(", ")
            )
        }
        Value::Object(class) => format!(
            "a pickled {class} object (torch.save(model) pickles the whole module); save \
             `model.state_dict()` instead"
        ),
        other => format!(
            "a {}, not a dict of names → tensors; save the weights with \
             `torch.save(model.state_dict(), \"weights.pt\")`",
            other.describe()
        ),
    };
    Err(import_err(path, format!("no state dict found: the file holds {what}")))
}

/// `name` without wrapper prefixes, and the prefixes removed.
fn strip_prefixes(name: &str) -> (&str, Vec<&'static str>) {
    let mut rest = name;
    let mut removed = Vec::new();
    'outer: loop {
        for p in WRAPPER_PREFIXES {
            if let Some(r) = rest.strip_prefix(p) {
                rest = r;
                removed.push(p);
                continue 'outer;
            }
        }
        return (rest, removed);
    }
}

/// Whether `name` is a tensor of the reference code that gfa's `arch` does not build.
fn unused_by_reference(arch: Arch, name: &str) -> bool {
    matches!(arch, Arch::Wrn28x10 | Arch::Wrn34x10) && name.starts_with("sub_block1.")
}

/// The network's tensors (names, shapes, dtypes) of `spec` without normalization.
fn expected_tensors(spec: &ModelSpec) -> Result<Vec<(String, Vec<i64>, Kind)>> {
    let spec = ModelSpec { normalize: false, ..spec.clone() };
    let model = Classifier::new(&spec, Device::Cpu)?;
    let mut v: Vec<_> =
        model.vs.variables().into_iter().map(|(n, t)| (n, t.size(), t.kind())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// Lists the first few of `items` (all when there are at most 8).
fn some(items: &[String]) -> String {
    const SHOWN: usize = 8;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!("{}, … ({} in all)", items[..SHOWN].join(", "), items.len())
    }
}

/// The architecture whose tensor names the file's names fit best, when that is not `arch`.
fn better_arch(arch: Arch, names: &[String]) -> Option<(Arch, usize, usize)> {
    let fit = |a: Arch| -> Option<usize> {
        // Names do not depend on width; a small width builds fast.
        let spec = ModelSpec { width: 0.0625, ..ModelSpec::of(a) };
        let want = expected_tensors(&spec).ok()?;
        Some(want.iter().filter(|(n, _, _)| names.contains(n)).count())
    };
    let own = fit(arch)?;
    let (best, score) = Arch::ALL
        .iter()
        .filter(|a| **a != arch)
        .filter_map(|a| Some((*a, fit(*a)?)))
        .max_by_key(|(_, s)| *s)?;
    (score > own).then_some((best, score, names.len()))
}

/// Reads `path` (a `torch.save` file), checks it against `spec` and returns gfa-named tensors
/// with the normalization buffers of `normalization` (mean 0, std 1 for
/// [`Normalization::None`], so the file says how the model takes its inputs).
pub fn import_state_dict(
    path: &Path,
    spec: &ModelSpec,
    normalization: &Normalization,
) -> Result<Imported> {
    let root = pt::read(path)?;
    let (sd, found_under) = find_state_dict(&root, path)?;
    let Value::Dict(items) = sd else { unreachable!("find_state_dict returns dicts") };

    let (file, stripped, dropped) = file_tensors(items, spec.arch);
    let expected = expected_tensors(spec)?;
    check_fit(path, spec, &expected, &file)?;
    let (mut tensors, converted) = convert_kinds(path, &expected, &file)?;
    check_finite_import(path, &file, &tensors)?;
    let (mean, std) = match normalization {
        Normalization::None => (vec![0.0], vec![1.0]),
        Normalization::MeanStd { mean, std } => (mean.clone(), std.clone()),
    };
    let norm_spec = ModelSpec { mean, std, normalize: true, ..spec.clone() };
    let (mean, std) =
        norm_spec.per_channel_mean_std().map_err(|e| import_err(path, e.to_string()))?;
    let buffer = |v: Vec<f64>| Tensor::from_slice(&v).to_kind(Kind::Float);
    tensors.push(("normalize.mean".into(), buffer(mean)));
    tensors.push(("normalize.std".into(), buffer(std)));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Imported { tensors, found_under, stripped, dropped, converted })
}

/// An error naming the first imported tensor holding a NaN or an infinity, and saying when the
/// file's value was finite but beyond float32's range (1e300 in a float64 tensor becomes inf).
fn check_finite_import(
    path: &Path,
    file: &[(String, &Tensor)],
    tensors: &[(String, Tensor)],
) -> Result<()> {
    let Some((name, nan, inf)) = crate::checkpoint::first_non_finite(tensors)? else {
        return Ok(());
    };
    let original = file.iter().find(|(n, _)| *n == name).map(|(_, t)| t.shallow_clone());
    let in_file = original.map(|t| vec![(name.clone(), t)]).unwrap_or_default();
    let why = if crate::checkpoint::first_non_finite(&in_file)?.is_some() {
        format!("tensor {name} holds {nan} NaN and {inf} infinite values")
    } else {
        format!(
            "tensor {name} holds {inf} values beyond float32's range (±3.4e38), which become \
             infinite in the float32 weights gfa stores"
        )
    };
    Err(import_err(
        path,
        format!(
            "{why}: a model with non-finite weights outputs NaN and its accuracy would mean \
             nothing; import weights saved before training diverged"
        ),
    ))
}

/// An error when writing `output` would replace `input`: the same path, a symbolic link to
/// it, or a hard link of it (`gfa import a.pt -o a.pt` used to replace the PyTorch file).
pub fn check_output_is_not_input(input: &Path, output: &Path, flag: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (Ok(i), Ok(o)) = (std::fs::metadata(input), std::fs::metadata(output)) else {
        return Ok(());
    };
    if i.dev() == o.dev() && i.ino() == o.ino() {
        let how = if input == output { "is" } else { "is the same file as (a link of)" };
        let stem = output.file_stem().unwrap_or_default().to_string_lossy();
        let other = output.with_file_name(format!("{stem}-gfa.safetensors"));
        return Err(CoreError::invalid(
            flag,
            format!(
                "{} {how} the input {}: writing it would replace the file being read; pass \
                 another {flag} (e.g. {})",
                output.display(),
                input.display(),
                other.display()
            ),
        ));
    }
    Ok(())
}

/// What [`file_tensors`] returns.
type FileTensors<'a> = (Vec<(String, &'a Tensor)>, Vec<String>, Vec<String>);

/// The file's tensors under gfa's names (`module.`/`_orig_mod.` stripped), the prefixes
/// stripped, and what was dropped (tensors the reference code never uses, non-tensor entries).
fn file_tensors(items: &[(Value, Value)], arch: Arch) -> FileTensors<'_> {
    let mut stripped: Vec<String> = Vec::new();
    let mut file: Vec<(String, &Tensor)> = Vec::new();
    let mut dropped = Vec::new();
    for (k, v) in items {
        let Value::Str(name) = k else { continue };
        let (name, removed) = strip_prefixes(name);
        for p in removed {
            if !stripped.iter().any(|s| s == p) {
                stripped.push(p.to_string());
            }
        }
        match v {
            Value::Tensor(_) if unused_by_reference(arch, name) => dropped.push(name.to_string()),
            Value::Tensor(t) => file.push((name.to_string(), t)),
            other => dropped.push(format!("{name} ({})", other.describe())),
        }
    }

    (file, stripped, dropped)
}

/// An error listing every missing, unexpected and misshaped tensor (and the architecture the
/// names fit better, if one does) unless the file's tensors are exactly the model's.
fn check_fit(
    path: &Path,
    spec: &ModelSpec,
    expected: &[(String, Vec<i64>, Kind)],
    file: &[(String, &Tensor)],
) -> Result<()> {
    let file_names: Vec<String> = file.iter().map(|(n, _)| n.clone()).collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|(n, _, _)| !file_names.contains(n))
        .map(|(n, s, _)| format!("{n} {s:?}"))
        .collect();
    let unexpected: Vec<String> = file
        .iter()
        .filter(|(n, _)| !expected.iter().any(|(e, _, _)| e == n))
        .map(|(n, t)| format!("{n} {:?}", t.size()))
        .collect();
    let misshaped: Vec<String> = expected
        .iter()
        .filter_map(|(n, shape, _)| {
            let (_, t) = file.iter().find(|(f, _)| f == n)?;
            (t.size() != *shape).then(|| format!("{n}: file {:?}, model {shape:?}", t.size()))
        })
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && misshaped.is_empty()) {
        let mut msg =
            format!("its state dict does not fit `{}` at width {}", spec.arch.name(), spec.width);
        if let Some((best, score, total)) = better_arch(spec.arch, &file_names) {
            msg += &format!(
                " (its names are those of `{}`: {score} of its {total} tensors match; pass \
                 --model {})",
                best.name(),
                best.name()
            );
        }
        if !missing.is_empty() {
            msg += &format!("; missing {}: {}", missing.len(), some(&missing));
        }
        if !unexpected.is_empty() {
            msg += &format!("; unexpected {}: {}", unexpected.len(), some(&unexpected));
        }
        if !misshaped.is_empty() {
            msg += &format!(
                "; wrong shape {}: {} (a different --width or number of classes?)",
                misshaped.len(),
                some(&misshaped)
            );
        }
        return Err(import_err(path, msg));
    }

    Ok(())
}

/// Named tensors and the kind conversions made to them.
type Converted = (Vec<(String, Tensor)>, Vec<String>);

/// The model's tensors from the file in the model's kinds (floats to float32, integers to
/// int64; anything else refused), and the conversions made.
fn convert_kinds(
    path: &Path,
    expected: &[(String, Vec<i64>, Kind)],
    file: &[(String, &Tensor)],
) -> Result<Converted> {
    let mut converted = Vec::new();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, _, kind) in expected {
        let (_, t) = file.iter().find(|(f, _)| f == name).expect("checked above");
        let t = if t.kind() != *kind {
            let ok = match kind {
                Kind::Float => t.is_floating_point(),
                Kind::Int64 => !t.is_floating_point() && t.kind() != Kind::Bool,
                _ => false,
            };
            if !ok {
                return Err(import_err(
                    path,
                    format!("tensor {name} is {:?}, the model stores {kind:?}", t.kind()),
                ));
            }
            converted.push(format!("{name} ({:?} → {kind:?})", t.kind()));
            t.to_kind(*kind)
        } else {
            t.shallow_clone()
        };
        tensors.push((name.clone(), t));
    }
    Ok((tensors, converted))
}
