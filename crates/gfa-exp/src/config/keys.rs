//! The TOML layer under the experiment file: errors that name the file, line and key path
//! ([`ConfigError`], [`FieldError`]), dotted key paths, the closest valid key, typed reading of a
//! table, tables back from typed values, and the canonical text that run ids hash.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::{Table, Value};

/// A configuration error located in the experiment file (or in a `--set` override).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The experiment file.
    pub file: Box<Path>,
    /// 1-based line in `file`, when the value comes from the file.
    pub line: Option<u32>,
    /// The `--set` override the value came from, if any.
    pub from_override: Option<String>,
    /// Dotted TOML path of the offending key (as written in the file).
    pub path: String,
    pub message: String,
    /// The closest valid key or value.
    pub suggestion: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(o) = &self.from_override {
            write!(f, " (--set {o})")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": `{}`: {}", self.path, self.message)?;
        }
        if let Some(s) = &self.suggestion {
            write!(f, "; did you mean `{s}`?")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Join path segments as a dotted TOML path (quoting segments that contain dots).
pub fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            if s.is_empty() || s.contains(['.', ' ', '"']) { format!("\"{s}\"") } else { s.clone() }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Split a dotted key (`a.b."c.d"`) into segments.
pub fn split_dotted(key: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for c in key.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                if cur.is_empty() && !was_quoted {
                    return Err(format!("empty segment in key '{key}'"));
                }
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("unbalanced quote in key '{key}'"));
    }
    if cur.is_empty() && !was_quoted {
        return Err(format!("empty segment in key '{key}'"));
    }
    out.push(cur);
    Ok(out.into_iter().map(|s| s.trim().to_string()).collect())
}

/// The closest candidate to `word` (Damerau–Levenshtein similarity ≥ 0.5), if any.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(word, c), c))
        .filter(|(s, _)| *s >= 0.5)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// Line lookup in the experiment file's text, by TOML path, via `toml_edit` spans.
#[derive(Debug)]
pub struct SourceMap {
    pub file: PathBuf,
    text: String,
    doc: Option<toml_edit::ImDocument<String>>,
}

impl SourceMap {
    pub fn new(file: &Path, text: &str) -> Self {
        let doc = toml_edit::ImDocument::parse(text.to_string()).ok();
        Self { file: file.to_path_buf(), text: text.to_string(), doc }
    }

    /// 1-based line of byte `offset`.
    pub fn line_of_offset(&self, offset: usize) -> u32 {
        let newlines = self.text.as_bytes()[..offset.min(self.text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        u32::try_from(newlines + 1).unwrap_or(u32::MAX)
    }

    /// Line of the deepest existing prefix of `path` (numeric segments index arrays).
    pub fn line_of(&self, path: &[String]) -> Option<u32> {
        let doc = self.doc.as_ref()?;
        let span = span_of(doc.as_item(), path)?;
        Some(self.line_of_offset(span.start))
    }

    /// An error at TOML path `path` of this file.
    pub fn error(&self, path: &[String], message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone().into_boxed_path(),
            line: self.line_of(path),
            from_override: None,
            path: dotted(path),
            message: message.into(),
            suggestion: None,
        }
    }
}

/// Span of the deepest item along `path` that exists (key span preferred).
fn span_of(item: &toml_edit::Item, path: &[String]) -> Option<Range<usize>> {
    let Some((head, rest)) = path.split_first() else { return item.span() };
    let child_span = |key: Option<&toml_edit::Key>, child: &toml_edit::Item| {
        span_of(child, rest).or_else(|| key.and_then(|k| k.span())).or_else(|| child.span())
    };
    match item {
        toml_edit::Item::Table(t) => {
            let (k, v) = t.get_key_value(head)?;
            child_span(Some(k), v)
        }
        toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
            let (k, v) = t.get_key_value(head)?;
            child_span(Some(k), v)
        }
        toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
            let v = a.get(head.parse::<usize>().ok()?)?;
            let item = toml_edit::Item::Value(v.clone());
            span_of(&item, rest).or_else(|| v.span())
        }
        toml_edit::Item::ArrayOfTables(a) => {
            let t = a.get(head.parse::<usize>().ok()?)?;
            let item = toml_edit::Item::Table(t.clone());
            span_of(&item, rest).or_else(|| t.span())
        }
        _ => None,
    }
    .or_else(|| item.span())
}

/// The deepest TOML path whose key or value span contains `offset` (inverse of `span_of`).
fn path_at(item: &toml_edit::Item, offset: usize, path: &mut Vec<String>) {
    let contains = |r: Option<Range<usize>>| r.is_some_and(|r| r.start <= offset && offset < r.end);
    let visit = |key: &str, k: Option<&toml_edit::Key>, v: &toml_edit::Item, p: &mut Vec<_>| {
        if contains(k.and_then(|k| k.span())) {
            p.push(key.to_string());
            return true;
        }
        let mut sub = vec![key.to_string()];
        path_at(v, offset, &mut sub);
        if sub.len() > 1 || contains(v.span()) {
            p.extend(sub);
            return true;
        }
        false
    };
    match item {
        toml_edit::Item::Table(t) => {
            for (key, _) in t.iter() {
                let (k, v) = t.get_key_value(key).expect("key from iter");
                if visit(key, Some(k), v, path) {
                    return;
                }
            }
        }
        toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
            for (key, _) in t.iter() {
                let (k, v) = t.get_key_value(key).expect("key from iter");
                if visit(key, Some(k), v, path) {
                    return;
                }
            }
        }
        toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                if visit(&i.to_string(), None, &toml_edit::Item::Value(v.clone()), path) {
                    return;
                }
            }
        }
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                if visit(&i.to_string(), None, &toml_edit::Item::Table(t.clone()), path) {
                    return;
                }
            }
        }
        _ => {}
    }
}

/// Parse the candidates out of serde's "expected one of `a`, `b`" / "expected `a`" messages.
pub fn expected_names(message: &str) -> Vec<String> {
    let Some(i) = message.find("expected") else { return vec![] };
    message[i..].split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The name in serde's "unknown field `x`" / "unknown variant `x`" messages.
pub fn unknown_name(message: &str) -> Option<String> {
    let i = message.find("unknown field `").or_else(|| message.find("unknown variant `"))?;
    message[i..].split('`').nth(1).map(str::to_string)
}

/// A typing error inside one run's sections: path relative to the run, serde's message.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub path: Vec<String>,
    pub message: String,
    pub suggestion: Option<String>,
}

impl FieldError {
    /// An error at the dotted key `key` (`eval.n`), without a suggestion.
    pub fn at(key: &str, message: String) -> Self {
        FieldError { path: key.split('.').map(String::from).collect(), message, suggestion: None }
    }
}

/// Deserialize a TOML table into `T` and report the failing path and a suggestion.
///
/// The table is printed as TOML and re-parsed, because `toml`'s deserializer reports a span for
/// the failing key or value, which `toml_edit` maps back to a path.
pub fn typed<T: serde::de::DeserializeOwned>(table: &Table) -> Result<T, FieldError> {
    let text = toml::to_string(table).map_err(|e| FieldError {
        path: vec![],
        message: format!("cannot print the configuration as TOML: {e}"),
        suggestion: None,
    })?;
    toml::from_str::<T>(&text).map_err(|e| {
        let message = e.message().trim().to_string();
        let mut path = Vec::new();
        if let (Some(span), Ok(doc)) = (e.span(), toml_edit::ImDocument::parse(text.as_str())) {
            path_at(doc.as_item(), span.start, &mut path);
        }
        // An unknown-field span covers the key itself; serde names it too, so append it when
        // the span only reached the enclosing table.
        if let Some(name) = unknown_name(&message)
            && message.contains("unknown field")
            && path.last() != Some(&name)
        {
            path.push(name);
        }
        let suggestion = unknown_name(&message)
            .and_then(|n| closest(&n, expected_names(&message).iter().map(String::as_str)));
        FieldError { path, message, suggestion }
    })
}

/// A JSON object as a TOML table (empty when it is not an object).
pub fn json_table(v: &serde_json::Value) -> Table {
    match Value::try_from(v) {
        Ok(Value::Table(t)) => t,
        _ => Table::new(),
    }
}

/// Serialize a typed value back to a TOML table (defaults filled in).
pub fn to_table<T: Serialize>(v: &T) -> Table {
    match Value::try_from(v) {
        Ok(Value::Table(t)) => t,
        _ => Table::new(),
    }
}

/// `kind` first, then the options in name order.
fn ordered(m: &Table) -> Vec<(&String, &Value)> {
    let mut kv: Vec<(&String, &Value)> = m.iter().collect();
    kv.sort_by_key(|(k, _)| (k.as_str() != "kind", k.as_str()));
    kv
}

/// A method as `key = value` lines.
pub fn method_lines(m: &Table) -> String {
    ordered(m).iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

/// A method as an inline table.
pub fn method_inline(m: &Table) -> String {
    let kv: Vec<String> = ordered(m).iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", kv.join(", "))
}

/// A value as shown in tables and the manifest (strings without quotes).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Canonical JSON-like text of a TOML value: sorted keys, shortest round-trip floats.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(&serde_json::to_string(s).expect("string to JSON")),
        Value::Integer(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&format!("{f:?}")),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Datetime(d) => out.push_str(&serde_json::to_string(&d.to_string()).expect("json")),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        Value::Table(t) => {
            let mut keys: Vec<&String> = t.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("json"));
                out.push(':');
                write_canonical(&t[*k], out);
            }
            out.push('}');
        }
    }
}
