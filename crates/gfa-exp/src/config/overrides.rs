//! `--set key=value` overrides, applied to the experiment's TOML value tree before typing and
//! expansion (so an override can change anything the file can say, and is checked like it).
//!
//! - The key is a dotted path in the experiment file (`seeds`, `base.train.epochs`,
//!   `grid."regularizer.lambda"`, `attacks.0.steps`), or a run key starting with a run section
//!   (`train.epochs`), which is shorthand for `base.train.epochs` and also *pins* the key: a
//!   `[grid]` axis or `[[zip]]` column with that key is dropped, so the override holds in
//!   every run.
//! - The value is parsed as a TOML value (`1`, `0.5`, `"x"`, `[0, 1]`, `{ a = 1 }`); anything
//!   that does not parse is taken as a bare string (`--set model.arch=mlp`).
//! - Overrides are recorded in each run's `overrides.toml`.

use toml::{Table, Value};

use crate::config::keys::{closest, split_dotted};
use crate::config::spec::RUN_SECTIONS;

/// Top-level keys of an experiment file.
pub const TOP_KEYS: &[&str] =
    &["experiment", "description", "seeds", "base", "grid", "zip", "attacks"];

/// One parsed `--set`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// As given on the command line.
    pub text: String,
    /// Path from the file's root (after the `base.` shorthand).
    pub path: Vec<String>,
    pub value: Value,
    /// The run key this override pins (grid/zip axes with this key are dropped).
    pub pins: Option<Vec<String>>,
}

/// Parse a value as TOML, falling back to a bare string.
pub fn parse_value(s: &str) -> Value {
    let s = s.trim();
    match toml::from_str::<Table>(&format!("v = {s}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(s.into())),
        Err(_) => Value::String(s.to_string()),
    }
}

impl Override {
    pub fn parse(text: &str) -> Result<Override, String> {
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| format!("--set '{text}': expected key=value, e.g. train.epochs=1"))?;
        let key = split_dotted(k.trim()).map_err(|e| format!("--set '{text}': {e}"))?;
        if crate::config::legacy::is_old_key(&key) {
            return Err(format!(
                "--set '{text}': a method is one value now, its options under `method`: write \
                 --set {}={}",
                crate::config::keys::dotted(&crate::config::legacy::new_key(&key)),
                v.trim()
            ));
        }
        let head = key[0].as_str();
        let (path, pins) = if TOP_KEYS.contains(&head) {
            (key.clone(), None)
        } else if RUN_SECTIONS.contains(&head) {
            let mut p = vec!["base".to_string()];
            p.extend(key.iter().cloned());
            (p, Some(key.clone()))
        } else {
            let all = TOP_KEYS.iter().chain(RUN_SECTIONS.iter()).copied();
            let hint =
                closest(head, all).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
            return Err(format!(
                "--set '{text}': unknown key `{head}`: a key starts with one of {} or a run \
                 section ({}){hint}",
                TOP_KEYS.join(", "),
                RUN_SECTIONS.join(", ")
            ));
        };
        Ok(Override { text: text.to_string(), path, value: parse_value(v), pins })
    }

    /// Set the value in `root`, creating intermediate tables.
    pub fn apply(&self, root: &mut Table) -> Result<(), String> {
        set_path(root, &self.path, self.value.clone())
            .map_err(|e| format!("--set '{}': {e}", self.text))
    }
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (head, rest) = path.split_first().expect("non-empty path");
    if rest.is_empty() {
        table.insert(head.clone(), value);
        return Ok(());
    }
    let child = table.entry(head.clone()).or_insert_with(|| Value::Table(Table::new()));
    set_in_value(child, head, rest, value)
}

fn set_in_value(v: &mut Value, name: &str, rest: &[String], value: Value) -> Result<(), String> {
    match v {
        Value::Table(t) => set_path(t, rest, value),
        Value::Array(a) => {
            let (head, tail) = rest.split_first().expect("non-empty path");
            let i: usize =
                head.parse().map_err(|_| format!("`{name}` is a list; index it with a number"))?;
            let len = a.len();
            let slot = a
                .get_mut(i)
                .ok_or_else(|| format!("`{name}` has {len} entries, index {i} is out of range"))?;
            if tail.is_empty() {
                *slot = value;
                Ok(())
            } else {
                set_in_value(slot, head, tail, value)
            }
        }
        other => Err(format!("`{name}` is {}, not a table", other.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_toml_or_string() {
        assert_eq!(parse_value("1"), Value::Integer(1));
        assert_eq!(parse_value("0.5"), Value::Float(0.5));
        assert_eq!(parse_value("mlp"), Value::String("mlp".into()));
        assert_eq!(parse_value("\"8/255\""), Value::String("8/255".into()));
        assert_eq!(parse_value("[0, 1]"), Value::Array(vec![Value::Integer(0), Value::Integer(1)]));
    }

    #[test]
    fn shorthand_goes_to_base_and_pins() {
        let o = Override::parse("train.epochs=2").unwrap();
        assert_eq!(o.path, vec!["base", "train", "epochs"]);
        assert_eq!(o.pins, Some(vec!["train".to_string(), "epochs".to_string()]));
        let mut root = Table::new();
        o.apply(&mut root).unwrap();
        assert_eq!(root["base"]["train"]["epochs"], Value::Integer(2));
    }

    #[test]
    fn indexes_arrays_and_rejects_unknown_heads() {
        let mut root: Table = toml::from_str("[[attacks]]\nkind = \"pgd\"\nsteps = 10\n").unwrap();
        Override::parse("attacks.0.steps=20").unwrap().apply(&mut root).unwrap();
        assert_eq!(root["attacks"][0]["steps"], Value::Integer(20));
        assert!(Override::parse("attacks.3.steps=1").unwrap().apply(&mut root).is_err());
        let e = Override::parse("trian.epochs=1").unwrap_err();
        assert!(e.contains("did you mean `train`"), "{e}");
    }
}
