//! gfa-exp's source is five layers, each a folder of `src/` (see `src/lib.rs`):
//! `config` ← `results` ← `analysis` ← `run` ← `cli`. A file may import its own layer and the
//! layers to its left, never one to its right, and no files import each other in a circle.
//! These tests read `src/**` and check both, so the layering survives the next feature.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, left (lowest) to right.
const LAYERS: [&str; 5] = ["config", "results", "analysis", "run", "cli"];

/// Imports allowed against the rule, as (importing file, imported file, reason). Empty: none is
/// needed today; add one only with its reason.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// Source files by their path under `src/` (`config/grid.rs`).
type Files = BTreeMap<String, String>;

fn read_src(dir: &Path, under: &str, out: &mut Files) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let rel = if under.is_empty() { name.clone() } else { format!("{under}/{name}") };
        if p.is_dir() {
            read_src(&p, &rel, out);
        } else if name.ends_with(".rs") {
            out.insert(rel, std::fs::read_to_string(&p).unwrap());
        }
    }
}

/// The text without comments (doc links are not imports). String contents are kept: no
/// string of gfa-exp holds a path that starts with `crate::`.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    out.push_str(rest);
    out.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

/// The module path of a file: `analysis/report/mod.rs` → `[analysis, report]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> =
        file.trim_end_matches(".rs").split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `a::b::{c, d::{e, f}}` → `a::b::c`, `a::b::d::e`, `a::b::d::f`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_string()];
    };
    let Some(close) = tree.rfind('}').filter(|c| *c > open) else { return Vec::new() };
    let (prefix, body) = (&tree[..open], &tree[open + 1..close]);
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p).into_iter().map(|e| format!("{prefix}{e}")))
        .collect()
}

/// Every path in `code` that starts with one of `starts` (`crate`, `super`, a child module).
fn paths_from(code: &str, starts: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    // `use` trees, braces expanded.
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let tail = &rest[i + 4..];
        rest = tail;
        if before.is_some_and(is_ident) {
            continue;
        }
        if let Some(end) = tail.find(';') {
            let first = |p: &String| p.split("::").next().unwrap_or("").to_string();
            out.extend(expand(&tail[..end]).into_iter().filter(|p| starts.contains(&first(p))));
        }
    }
    // Paths in expressions and types: `start::name(::name)*`.
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            let mut j = i;
            while j < chars.len() && (is_ident(chars[j]) || chars[j] == ':') {
                j += 1;
            }
            let path: String = chars[i..j].iter().collect();
            let path = path.trim_end_matches(':');
            let first = path.split("::").next().unwrap_or("");
            if path.contains("::") && starts.contains(first) {
                out.push(path.to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The file a module path names: the longest prefix that is a file.
fn file_of(files: &Files, segs: &[String]) -> String {
    let mut best = "lib.rs".to_string();
    let mut cur: Vec<&str> = Vec::new();
    for s in segs {
        cur.push(s);
        let stem = cur.join("/");
        if files.contains_key(&format!("{stem}.rs")) {
            best = format!("{stem}.rs");
        } else if files.contains_key(&format!("{stem}/mod.rs")) {
            best = format!("{stem}/mod.rs");
        } else {
            break;
        }
    }
    best
}

/// Which files each file imports (by `crate::`, `super::`, `self::` or a child module's name).
fn imports(files: &Files) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (file, text) in files {
        let code = strip_comments(text);
        let module = module_of(file);
        let children: BTreeSet<String> = code
            .lines()
            .filter_map(|l| {
                let l = l.trim().trim_start_matches("pub ").trim_start_matches("pub(crate) ");
                let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
                Some(name.trim().to_string())
            })
            .collect();
        let mut starts: BTreeSet<String> = ["crate", "super", "self"].map(String::from).into();
        starts.extend(children.iter().cloned());
        // An inline module (`mod tests { … }`) is one level deeper for `super::`.
        let inline = code.lines().position(|l| {
            let l = l.trim();
            l.starts_with("mod ") && l.ends_with('{')
        });
        let (outer, inner): (String, String) = match inline {
            Some(k) => {
                let lines: Vec<&str> = code.lines().collect();
                (lines[..k].join("\n"), lines[k..].join("\n"))
            }
            None => (code.clone(), String::new()),
        };
        let inner_name = inline.map(|k| {
            let l = code.lines().nth(k).unwrap().trim();
            l["mod ".len()..].trim_end_matches('{').trim().to_string()
        });
        let mut targets = BTreeSet::new();
        for (part, depth_extra) in [(&outer, false), (&inner, true)] {
            let mut here = module.clone();
            if depth_extra {
                here.push(inner_name.clone().unwrap_or_default());
            }
            for path in paths_from(part, &starts) {
                let mut segs: Vec<String> = path.split("::").map(str::to_string).collect();
                let abs = match segs[0].as_str() {
                    "crate" => segs.split_off(1),
                    "super" | "self" => {
                        let mut base = here.clone();
                        while let Some(s) = segs.first().filter(|s| *s == "super" || *s == "self") {
                            if s == "super" {
                                base.pop();
                            }
                            segs.remove(0);
                        }
                        base.extend(segs);
                        base
                    }
                    _ if !depth_extra => module.iter().cloned().chain(segs).collect(),
                    _ => continue,
                };
                let target = file_of(files, &abs);
                if &target != file {
                    targets.insert(target);
                }
            }
        }
        graph.insert(file.clone(), targets);
    }
    graph
}

fn layer(file: &str) -> Option<usize> {
    LAYERS.iter().position(|l| file.split('/').next() == Some(*l))
}

/// Imports of a layer to the file's right, as `file -> imported file` lines.
fn upward(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (file, targets) in graph {
        let Some(from) = layer(file) else { continue };
        for t in targets {
            let allowed = EXCEPTIONS.iter().any(|(a, b, _)| a == file && b == t);
            if layer(t).is_none_or(|to| to > from) && !allowed {
                bad.push(format!("{file} -> {t}"));
            }
        }
    }
    bad
}

/// One import circle of files, if any: `a -> b -> … -> a`.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // 0: not seen, 1: on the current path, 2: done.
    fn visit(
        f: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(f.to_string(), 1);
        path.push(f.to_string());
        for t in graph.get(f).into_iter().flatten() {
            match state.get(t).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == t).unwrap();
                    let mut c = path[start..].to_vec();
                    c.push(t.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(t, graph, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(f.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for f in graph.keys() {
        if state.get(f).copied().unwrap_or(0) != 0 {
            continue;
        }
        if let Some(c) = visit(f, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn source() -> Files {
    let mut files = Files::new();
    read_src(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), "", &mut files);
    files
}

#[test]
fn no_file_imports_a_layer_to_its_right() {
    let files = source();
    for f in files.keys().filter(|f| f.contains('/')) {
        assert!(layer(f).is_some(), "src/{f} is in no layer: put it in one of {LAYERS:?}");
    }
    let bad = upward(&imports(&files));
    assert!(
        bad.is_empty(),
        "imports of a layer to the right ({}): move the item to the lowest layer that needs \
         it, or list the import with its reason in EXCEPTIONS:\n{}",
        LAYERS.join(" ← "),
        bad.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let graph = imports(&source());
    assert!(graph.values().map(BTreeSet::len).sum::<usize>() > 100, "the imports were not read");
    if let Some(c) = circle(&graph) {
        panic!("an import circle of files: {}", c.join(" -> "));
    }
}

/// The checks above on a made-up source: they catch what they exist to catch.
#[test]
fn the_checks_catch_an_upward_import_and_a_circle() {
    let files: Files = [
        ("lib.rs", "pub mod config;\npub mod results;\npub mod cli;\n"),
        ("config/mod.rs", "pub mod a;\n"),
        ("config/a.rs", "pub fn a() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"),
        ("results/mod.rs", "pub mod b;\npub mod c;\n"),
        ("results/b.rs", "use crate::config::a;\nuse super::c::C;\n"),
        ("results/c.rs", "pub struct C;\nfn f() { crate::results::b::g(); }\n"),
        ("cli/mod.rs", "pub mod args;\n"),
        ("cli/args.rs", "use crate::{config::a::a, results::b};\n"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .into();
    let graph = imports(&files);
    assert_eq!(graph["cli/args.rs"], ["config/a.rs", "results/b.rs"].map(String::from).into());
    assert!(graph["config/a.rs"].is_empty(), "a test module's `super` is its own file");
    assert!(upward(&graph).is_empty());
    let c = circle(&graph).expect("b and c import each other");
    assert!(c.contains(&"results/b.rs".to_string()) && c.contains(&"results/c.rs".to_string()));

    let mut up = files.clone();
    up.insert("cli/args.rs".into(), "use crate::config::a::a;\n".into());
    up.insert("results/c.rs".into(), "use crate::cli::args::Args;\n".into());
    let graph = imports(&up);
    assert_eq!(upward(&graph), vec!["results/c.rs -> cli/args.rs".to_string()]);
    assert!(circle(&graph).is_none());
    // A path in an expression counts as much as a `use`.
    up.insert("results/c.rs".into(), "fn f() { crate::cli::args::parse(); }\n".into());
    assert_eq!(upward(&imports(&up)), vec!["results/c.rs -> cli/args.rs".to_string()]);
}
