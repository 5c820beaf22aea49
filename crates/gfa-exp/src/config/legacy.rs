//! Files in the form gfa read before a method was one value: a `[regularizer]` section beside
//! `train.method`, grids that zip the two. They are refused with an error that prints the
//! file's method keys in the current form, computed from the old ones, so the fix is a paste.
//!
//! Old → new: `train.method = { kind, options… }` and `regularizer = { kind, lambda, layers, … }`
//! become one `method = { kind, options…, lambda, layers, … }` (the regularizer's keys join the
//! method when the regularizer was not `none`); `regularizer.task_loss` becomes
//! `train.task_loss`; grid keys `regularizer.x` and `train.method.x` become `method.x`; a
//! `[[zip]]` that zips `train.method` with `regularizer.*` becomes one `method = [ … ]` list.
use std::fmt::Write as _;

use toml::{Table, Value};

use crate::config::keys::{dotted, method_inline as inline, method_lines as lines};

/// Whether a dotted run key is of the old form.
pub fn is_old_key(key: &[String]) -> bool {
    matches!(key.first().map(String::as_str), Some("regularizer"))
        || (key.len() >= 2 && key[0] == "train" && key[1] == "method")
}

/// The key in the current form (`regularizer.lambda` → `method.lambda`).
pub fn new_key(key: &[String]) -> Vec<String> {
    let rest = if key[0] == "regularizer" { &key[1..] } else { &key[2..] };
    let mut k = vec!["method".to_string()];
    k.extend(rest.iter().cloned());
    k
}

/// The method value (and a non-default task loss) of a run table of the old form, or `None`
/// when the table has neither `regularizer` nor `train.method`.
pub fn method_of(run: &Table) -> Option<(Table, Option<Value>)> {
    let train_method = run.get("train").and_then(|t| t.get("method"));
    let reg = run.get("regularizer").and_then(Value::as_table);
    if train_method.is_none() && reg.is_none() {
        return None;
    }
    let mut method = match train_method {
        Some(Value::Table(t)) => t.clone(),
        Some(Value::String(k)) => Table::from_iter([("kind".to_string(), Value::from(k.as_str()))]),
        _ => Table::from_iter([("kind".to_string(), Value::from("standard"))]),
    };
    if method.get("kind").and_then(Value::as_str) == Some("gfa+pgd_at") {
        method.insert("kind".into(), "gfa_pgd_at".into());
    }
    let mut task_loss = None;
    if let Some(reg) = reg {
        let active = reg.get("kind").and_then(Value::as_str).is_some_and(|k| k != "none");
        for (k, v) in reg {
            match k.as_str() {
                "kind" => {}
                "task_loss" => task_loss = Some(v.clone()).filter(|v| v.as_str() != Some("ce")),
                _ if active => {
                    method.insert(k.clone(), v.clone());
                }
                _ => {}
            }
        }
    }
    Some((method, task_loss))
}

/// The error text for a run table of the old form (a run's `config.toml`, `gfa train
/// --config`), or `None` when the table is current.
pub fn run_error(run: &Table) -> Option<String> {
    let (method, task_loss) = method_of(run)?;
    let mut fix = format!("[method]\n{}", lines(&method));
    if let Some(t) = task_loss {
        let _ = write!(fix, "\n[train]\ntask_loss = {t}\n");
    }
    Some(format!(
        "{INTRO}; this run's method in the current form (and drop `[regularizer]` and \
         `train.method`):\n\n{fix}"
    ))
}

const INTRO: &str = "the `[regularizer]` section and `train.method` are gone: a method is one \
                     value, its kind and all its options in `[method]`";

/// The error text for an experiment file (after `--set`) of the old form, or `None`.
pub fn experiment_error(root: &Table) -> Option<String> {
    let base = root.get("base").and_then(Value::as_table).cloned().unwrap_or_default();
    let axes = |t: Option<&Value>| -> Vec<(Vec<String>, Vec<Value>)> {
        let mut out = Vec::new();
        if let Some(Value::Table(t)) = t {
            leaves(t, &[], &mut out);
        }
        out
    };
    let grid = axes(root.get("grid"));
    let zips: Vec<Vec<(Vec<String>, Vec<Value>)>> = match root.get("zip") {
        Some(Value::Array(a)) => a.iter().map(|z| axes(Some(z))).collect(),
        _ => vec![],
    };
    let old_axis = |a: &[(Vec<String>, Vec<Value>)]| a.iter().any(|(k, _)| is_old_key(k));
    if method_of(&base).is_none() && !old_axis(&grid) && !zips.iter().any(|z| old_axis(z)) {
        return None;
    }
    let mut fix = String::new();
    let (method, task_loss) = method_of(&base).unwrap_or_else(|| (standard(), None));
    let _ = writeln!(fix, "[base.method]\n{}", lines(&method));
    if let Some(t) = task_loss {
        let _ = writeln!(fix, "[base.train]\ntask_loss = {t}\n");
    }
    let mut grid_lines: Vec<String> = grid
        .iter()
        .filter(|(k, _)| is_old_key(k))
        .map(|(k, v)| format!("\"{}\" = {}", dotted(&new_key(k)), Value::Array(v.clone())))
        .collect();
    let mut zip_blocks = Vec::new();
    for z in zips.iter().filter(|z| old_axis(z)) {
        // A zip of old keys only becomes one grid axis; one with other columns stays a zip.
        if z.iter().all(|(k, _)| is_old_key(k)) {
            grid_lines.push(zip_fix(&base, z));
        } else {
            zip_blocks.push(format!("[[zip]]\n{}\n", zip_fix(&base, z)));
        }
    }
    if !grid_lines.is_empty() {
        let _ = writeln!(fix, "[grid]\n{}\n", grid_lines.join("\n"));
    }
    fix.push_str(&zip_blocks.concat());
    Some(format!("{INTRO}; this file's method keys in the current form:\n\n{}", fix.trim_end()))
}

fn standard() -> Table {
    Table::from_iter([("kind".to_string(), Value::from("standard"))])
}

/// A `[[zip]]` group in the current form: one `method = [ … ]` list when it varies the method
/// kind (`train.method` or `regularizer.kind`), else its keys renamed; other columns kept.
fn zip_fix(base: &Table, zip: &[(Vec<String>, Vec<Value>)]) -> String {
    let whole = zip.iter().any(|(k, _)| {
        let d = dotted(k);
        d == "train.method" || d == "train.method.kind" || d == "regularizer.kind"
    });
    let mut lines = Vec::new();
    for (k, v) in zip.iter().filter(|(k, _)| !(whole && is_old_key(k))) {
        let key = if is_old_key(k) { new_key(k) } else { k.clone() };
        lines.push(format!("\"{}\" = {}", dotted(&key), Value::Array(v.clone())));
    }
    if whole {
        let rows = zip.first().map_or(0, |(_, v)| v.len());
        let methods: Vec<String> = (0..rows)
            .map(|i| {
                let mut run = base.clone();
                for (k, v) in zip.iter().filter(|(k, _)| is_old_key(k)) {
                    set(&mut run, k, v[i].clone());
                }
                let (m, _) = method_of(&run).unwrap_or_else(|| (standard(), None));
                format!("  {},", inline(&m))
            })
            .collect();
        lines.insert(0, format!("method = [\n{}\n]", methods.join("\n")));
    }
    lines.join("\n")
}

/// Dotted leaves of a `[grid]`/`[[zip]]` table (lists only).
fn leaves(t: &Table, prefix: &[String], out: &mut Vec<(Vec<String>, Vec<Value>)>) {
    for (k, v) in t {
        let mut key = prefix.to_vec();
        key.extend(crate::config::keys::split_dotted(k).unwrap_or_else(|_| vec![k.clone()]));
        match v {
            Value::Table(sub) => leaves(sub, &key, out),
            Value::Array(a) => out.push((key, a.clone())),
            _ => {}
        }
    }
}

fn set(t: &mut Table, key: &[String], v: Value) {
    let (head, rest) = key.split_first().expect("non-empty key");
    if rest.is_empty() {
        t.insert(head.clone(), v);
        return;
    }
    let sub = t.entry(head.clone()).or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(sub) = sub {
        set(sub, rest, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_the_old_form_gets_its_method_in_the_new_form() {
        let old: Table = toml::from_str(
            "[train]\nmethod = { kind = \"gfa\" }\n[regularizer]\nkind = \"gfa\"\nlambda = 0.3\nlayers = \"first\"\ntask_loss = \"mse_softmax\"\n",
        )
        .unwrap();
        let e = run_error(&old).unwrap();
        assert!(e.contains("[method]\nkind = \"gfa\"\nlambda = 0.3\nlayers = \"first\""), "{e}");
        assert!(e.contains("task_loss = \"mse_softmax\""), "{e}");
        let new: Table = toml::from_str("[method]\nkind = \"gfa\"\nlambda = 0.3\n").unwrap();
        assert!(run_error(&new).is_none());
    }

    #[test]
    fn a_zipped_grid_becomes_one_method_list() {
        let old: Table = toml::from_str(
            r#"
[base.train]
method = { kind = "standard" }
[base.regularizer]
kind = "none"
[[zip]]
"train.method" = [{ kind = "standard" }, { kind = "pgd_at", steps = 3 }, { kind = "gfa" }]
"regularizer.kind" = ["none", "none", "gfa"]
"regularizer.lambda" = [0.0, 0.0, 0.3]
[grid]
"regularizer.layers" = ["first", "deep"]
"#,
        )
        .unwrap();
        let e = experiment_error(&old).unwrap();
        let want = "method = [\n  { kind = \"standard\" },\n  { kind = \"pgd_at\", steps = 3 },\n  \
                    { kind = \"gfa\", lambda = 0.3 },\n]";
        assert!(e.contains(want), "{e}");
        assert!(e.contains("[base.method]\nkind = \"standard\""), "{e}");
        assert!(e.contains("[grid]\n\"method.layers\" = [\"first\", \"deep\"]\nmethod = ["), "{e}");
        assert!(!e.contains("[[zip]]"), "a zip of old keys only is one grid axis: {e}");
        assert!(
            experiment_error(&toml::from_str("[base.method]\nkind = \"gfa\"").unwrap()).is_none()
        );
    }
}
