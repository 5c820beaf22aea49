//! `gfa binarize`: the binarization test of one attack on a trained model (docs/method.md §7),
//! written to `binarization.csv`.

use anyhow::{Result, anyhow, bail};
use tch::Device;
use toml::{Table, Value};

use crate::analysis::binarization::summary_text;
use crate::cli::args::BinarizeArgs;
use crate::cli::commands::{load_model, model_key};
use crate::config::binarize::Binarize;
use crate::config::keys::dotted;
use crate::results::records::write_rows;

/// `--attack`: a kind, or an inline TOML table of the attack's keys; `--preset` and `--norm`
/// fill what the table leaves out.
fn attack_table(a: &BinarizeArgs) -> Result<Table> {
    let text = a.attack.trim();
    let mut t = if text.starts_with('{') {
        let doc: Table = toml::from_str(&format!("attack = {text}"))
            .map_err(|e| anyhow!("--attack {text}: not an inline TOML table: {}", e.message()))?;
        match doc.get("attack") {
            Some(Value::Table(t)) => t.clone(),
            _ => bail!("--attack {text}: expected a table like '{{ kind = \"pgd\", steps = 10 }}'"),
        }
    } else {
        Table::from_iter([("kind".to_string(), Value::String(text.to_string()))])
    };
    t.entry("preset").or_insert_with(|| Value::String(a.preset.clone()));
    if let Some(norm) = &a.norm {
        t.entry("norm").or_insert_with(|| Value::String(norm.clone()));
    }
    Ok(t)
}

/// The flags as a checked `[binarize]` table; an error names the flag at fault.
fn from_flags(a: &BinarizeArgs) -> Result<Binarize> {
    let int = |v: usize| Value::Integer(v as i64);
    let mut t = Table::from_iter([
        ("attack".to_string(), Value::Table(attack_table(a)?)),
        ("eps".into(), Value::String(a.eps.clone())),
        ("n".into(), int(a.n)),
        ("boundary".into(), int(a.boundary)),
        ("validation".into(), int(a.validation)),
        ("steps".into(), int(a.steps)),
        ("lr".into(), Value::Float(a.lr)),
        ("batch_size".into(), int(a.batch_size)),
    ]);
    if let Some(inner) = a.inner {
        t.insert("inner".into(), int(inner));
    }
    Binarize::from_table(&t).map_err(|e| {
        let flag = match e.path.first().map(String::as_str) {
            Some("attack") => match e.path.get(1).map(String::as_str) {
                Some("norm") => "--norm".to_string(),
                Some("preset") => "--preset".to_string(),
                _ => "--attack".to_string(),
            },
            Some(key) => format!("--{}", key.replace('_', "-")),
            None => dotted(&e.path),
        };
        anyhow!("{flag}: {}", e.message)
    })
}

/// `gfa binarize`: check the flags, the model and the budget before any work, test the first
/// `--n` points, write the rows and print the pass rate. Exit code 0.
pub fn binarize(a: &BinarizeArgs, device: Device) -> Result<i32> {
    let b = from_flags(a)?;
    let csv = match (&a.csv, &a.model.checkpoint) {
        (Some(c), _) => c.clone(),
        (None, Some(d)) => d.join("binarization.csv"),
        (None, None) => bail!("--csv FILE is needed with --weights or --torchscript"),
    };
    let (model, run, data, data_line) = load_model(&a.model, &a.data, device)?;
    b.check_run(model.spec.arch, model.spec.input).map_err(|e| {
        let at =
            if e.path.is_empty() { "the model".to_string() } else { format!("--{}", e.path[0]) };
        anyhow!("{at}: {}", e.message)
    })?;
    gfa_attacks::binarize::check(&model, &b.attack.spec, &b.options)?;
    println!("{data_line}");
    let n = b.n.min(data.test.len());
    let (x, y) = crate::run::stages::head_tensors(&data.test, n);
    let key = model_key(&model, run.as_ref(), &a.model, a.seed);
    let mut progress = |done: usize, total: usize| eprint!("\rbinarization test {done}/{total}");
    let (rows, _) =
        crate::run::binarize::binarization_rows(model, (&x, &y), &b, &key, a.seed, &mut progress)?;
    eprintln!();
    write_rows(&csv, &rows)?;
    for r in rows.iter().filter(|r| r.result == "summary") {
        println!("binarization test, pass rate {} ({})", summary_text(r), r.detail);
    }
    println!("wrote {}", csv.display());
    Ok(0)
}
