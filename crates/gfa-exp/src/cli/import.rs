//! `gfa import`: a PyTorch checkpoint into gfa weights, checked and with its normalization.
use anyhow::{Context, Result};
use gfa_core::checkpoint::{load_weights, write_tensors};
use gfa_core::import::import_state_dict;
use gfa_core::{Classifier, ModelSpec};
use tch::Device;

use crate::cli::args::ImportArgs;

/// `gfa import IN.pt --model ARCH [--width W] --normalize … -o OUT.safetensors`.
pub fn import(a: &ImportArgs) -> Result<()> {
    let spec = crate::cli::commands::spec_from_flags(&a.model, a.width)?;
    let spec = ModelSpec { input: a.input_shape, ..spec };
    spec.validate()?;
    gfa_core::import::check_output_is_not_input(&a.input, &a.out, "-o")?;
    let imported = import_state_dict(&a.input, &spec, &a.normalize)
        .with_context(|| format!("importing {}", a.input.display()))?;
    write_tensors(&a.out, &imported.tensors)?;
    // The written file loads into the gfa model it was made for (its normalization buffers
    // replace the default spec's).
    let mut model = Classifier::new(&ModelSpec { normalize: true, ..spec.clone() }, Device::Cpu)?;
    load_weights(&mut model, &a.out)
        .with_context(|| format!("checking {} loads into `{}`", a.out.display(), a.model))?;

    let n = imported.tensors.len() - 2;
    let mut how = Vec::new();
    if let Some(k) = &imported.found_under {
        how.push(format!("found under `{k}`"));
    }
    if !imported.stripped.is_empty() {
        how.push(format!("prefix {} stripped", imported.stripped.join(" and ")));
    }
    if !imported.dropped.is_empty() {
        let first = &imported.dropped[0];
        how.push(format!(
            "{} tensors the architecture does not use left out ({first}, …)",
            imported.dropped.len()
        ));
    }
    if !imported.converted.is_empty() {
        how.push(format!("converted {}", imported.converted.join(", ")));
    }
    println!(
        "read {n} tensors of `{}` (width {}) from {}{}",
        spec.arch,
        spec.width,
        a.input.display(),
        if how.is_empty() { String::new() } else { format!(": {}", how.join("; ")) }
    );
    println!("inputs: {}", a.normalize);
    println!("wrote {} ({n} tensors + normalize.mean, normalize.std)", a.out.display());
    let width = a.width.map(|w| format!(" --width {w}")).unwrap_or_default();
    println!("evaluate it with: gfa eval --weights {} --model {}{width}", a.out.display(), a.model);
    Ok(())
}
