//! Which runs are alike: the one grouping rule of every table, `summary.csv` and figure.
//!
//! A *configuration* is everything the grid sets for a run except its seed: the model, the
//! method with every option (`method_params`) and every other key the grid varies
//! (`manifest.csv`'s `axes`: `train.task_loss`, `eval.subset`, `data.n_train`, …). Runs of one
//! configuration differ only by their seed; they are the rows averaged over seeds. Two runs
//! that differ in anything else — the task loss, the evaluation subset — are two
//! configurations, however alike their method options.
//!
//! Each configuration gets a label: `method`, `method λ=x`, and, where several configurations
//! share the method and λ, what sets each apart: the method options that differ from the
//! method's defaults (`layers` always; `1−|cos|`, `sin²`, `pre-act taps`, `warm-up 2 ep`) and
//! the other grid keys of the run (`task_loss=mse_softmax`, `subset=all_correct`). A *sweep
//! series* is a configuration with λ left out: the runs a λ sweep draws as one line.
use std::collections::{BTreeMap, BTreeSet};

use crate::results::records::RunKey;

/// A run's configuration: everything the grid sets for it but the seed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Config {
    pub model: String,
    pub method: String,
    /// λ as the CSVs write it (none: the method has none, or a sweep series).
    pub lambda: Option<String>,
    /// The method value as compact JSON (`method_params`).
    pub method_params: String,
    /// The other grid keys the manifest lists for the run, in its order: all but the seed and
    /// the method's own keys (`method`, `method.*`), which `method_params` holds.
    pub axes: Vec<(String, String)>,
}

/// Whether a grid key is the method's own (its value is in `method_params`) or the seed.
fn outside_config(key: &str) -> bool {
    key == "seed" || key == "method" || key.starts_with("method.")
}

/// Whether a grid key is a method's weight λ (`method.lambda`; `regularizer.lambda` in folders
/// of schema version 2).
fn is_lambda(key: &str) -> bool {
    key == "method.lambda" || key == "regularizer.lambda"
}

/// `manifest.csv`'s `axes` text (`key=value; …`) as pairs.
pub fn axis_pairs(axes: &str) -> Vec<(String, String)> {
    axes.split("; ")
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

impl Config {
    /// The configuration of the run `key` whose manifest axes are `axes`.
    pub fn of(key: &RunKey, axes: &str) -> Config {
        Config {
            model: key.model.clone(),
            method: key.method.clone(),
            lambda: key.lambda.map(|l| format!("{l}")),
            method_params: key.method_params.clone(),
            axes: axis_pairs(axes).into_iter().filter(|(k, _)| !outside_config(k)).collect(),
        }
    }

    /// The configuration of the run's training: the evaluation's keys (`eval.*`) left out.
    /// Runs with equal trainings and seeds share one training (`gfa run` trains it once).
    pub fn training(&self) -> Config {
        let axes = self.axes.iter().filter(|(k, _)| !k.starts_with("eval.")).cloned().collect();
        Config { axes, ..self.clone() }
    }

    /// The configuration with λ left out: the series of a λ sweep it belongs to.
    pub fn sweep_series(&self) -> Config {
        Config {
            lambda: None,
            method_params: without_lambda(&self.method_params),
            axes: self.axes.iter().filter(|(k, _)| !is_lambda(k)).cloned().collect(),
            ..self.clone()
        }
    }
}

/// `method_params` JSON without the method's `lambda` (also inside `regularizer`, as schema
/// version 2 wrote it); unchanged if it is not JSON.
pub fn without_lambda(params: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(params) {
        Ok(mut v) => {
            if let Some(m) = v.as_object_mut() {
                m.remove("lambda");
                if let Some(r) = m.get_mut("regularizer").and_then(|r| r.as_object_mut()) {
                    r.remove("lambda");
                }
            }
            v.to_string()
        }
        Err(_) => params.to_string(),
    }
}

/// A pixel radius or step as a multiple of 1/255 with at most three decimals (`3/255`,
/// `0.75/255`), as grid files write them; other values: none.
fn per_255(x: f64) -> Option<String> {
    let k = x * 255.0;
    let milli = (k * 1000.0).round();
    if !(x > 0.0 && x <= 1.0) || (k * 1000.0 - milli).abs() > 1e-6 * milli.max(1.0) {
        return None;
    }
    let text = format!("{:.3}", milli / 1000.0);
    Some(format!("{}/255", text.trim_end_matches('0').trim_end_matches('.')))
}

/// A method option's value as a label prints it: radii and steps of pixel attacks in units of
/// 1/255 (see [`per_255`]), the rest as written.
fn value_text(key: &str, text: &str) -> String {
    match key {
        "eps" | "step" => text.parse::<f64>().ok().and_then(per_255).unwrap_or(text.to_string()),
        _ => text.to_string(),
    }
}

/// How a method option reads in a label.
fn option_text(key: &str, value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map_or(v.to_string(), String::from))
            .collect::<Vec<_>>()
            .join(","),
        v => v.to_string(),
    };
    match (key, text.as_str()) {
        ("penalty", "one_minus_cos") => "1−cos".into(),
        ("penalty", "one_minus_abs_cos") => "1−|cos|".into(),
        ("penalty", "sin2") => "sin²".into(),
        ("tap", "pre_activation") => "pre-act taps".into(),
        ("tap", "post_activation") => "post-act taps".into(),
        ("lambda_warmup_epochs", n) => format!("warm-up {n} ep"),
        ("lambda_warmup_steps", n) => format!("warm-up {n} steps"),
        (k, v) => format!("{k}={}", value_text(k, v)),
    }
}

/// The options of `method` at their defaults (λ aside), as canonical JSON; the registry's
/// example when the method needs more than λ to be written.
fn default_options(method: &str) -> serde_json::Value {
    let mut t = toml::Table::new();
    t.insert("kind".into(), toml::Value::String(method.into()));
    t.insert("lambda".into(), toml::Value::Float(1.0));
    match toml::Value::Table(t).try_into::<gfa_core::Method>() {
        Ok(m) => {
            let text = crate::config::keys::canonical(&toml::Value::Table(
                crate::config::keys::to_table(&m),
            ));
            serde_json::from_str(&text).unwrap_or_default()
        }
        Err(_) => gfa_core::Method::info(method).map(|i| i.example).unwrap_or_default(),
    }
}

/// What sets a configuration apart from others of its method: each method option that differs
/// from the method's default (`layers` first and always), then the other grid keys.
pub fn distinguishing_parts(c: &Config) -> Vec<String> {
    let defaults = default_options(&c.method);
    let mut parts = Vec::new();
    if let Ok(serde_json::Value::Object(p)) =
        serde_json::from_str::<serde_json::Value>(&c.method_params)
    {
        let mut keys: Vec<&String> =
            p.keys().filter(|k| !["kind", "lambda"].contains(&k.as_str())).collect();
        keys.sort_by_key(|k| (k.as_str() != "layers", k.as_str()));
        for k in keys {
            if k == "layers" || defaults.get(k.as_str()) != Some(&p[k.as_str()]) {
                parts.push(option_text(k, &p[k.as_str()]));
            }
        }
    }
    for (key, value) in &c.axes {
        parts.push(format!("{}={value}", key.rsplit('.').next().unwrap_or(key)));
    }
    parts
}

/// A JSON object's leaves as `dotted.path → text` (strings unquoted); not JSON: empty.
fn flatten_json(text: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&path, v, out);
                }
            }
            serde_json::Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        walk("", &v, &mut out);
    }
    out
}

/// What a label must tell apart within a method and λ: the method options and the other grid
/// keys (configurations of several models may share them, and their label).
type Settings<'a> = (&'a str, &'a Vec<(String, String)>);

/// Labels of configurations: `method` or `method λ=x` when no other configuration shares
/// both; otherwise that base and the [`distinguishing_parts`] not shared by all of them; where
/// those coincide, every method
/// option and grid key that differs between the configurations sharing the base, else `#k`.
pub fn labels(configs: &BTreeSet<Config>) -> BTreeMap<Config, String> {
    let mut buckets: BTreeMap<(&str, Option<&str>), Vec<&Config>> = BTreeMap::new();
    for c in configs {
        buckets.entry((c.method.as_str(), c.lambda.as_deref())).or_default().push(c);
    }
    let mut out = BTreeMap::new();
    for ((method, lambda), cs) in buckets {
        let base = match lambda {
            Some(l) => format!("{method} λ={l}"),
            None => method.to_string(),
        };
        // Configurations of several models with the same method settings share a label (the
        // model is a column of its own).
        let settings: BTreeSet<Settings> =
            cs.iter().map(|c| (c.method_params.as_str(), &c.axes)).collect();
        if settings.len() == 1 {
            out.extend(cs.into_iter().map(|c| (c.clone(), base.clone())));
            continue;
        }
        // The parts every configuration of the bucket shares tell none apart.
        let parts: Vec<Vec<String>> = cs.iter().map(|c| distinguishing_parts(c)).collect();
        let named: Vec<String> = parts
            .iter()
            .map(|ps| {
                let own: Vec<&str> = ps
                    .iter()
                    .filter(|p| !parts.iter().all(|other| other.contains(p)))
                    .map(String::as_str)
                    .collect();
                if own.is_empty() { base.clone() } else { format!("{base} {}", own.join(" ")) }
            })
            .collect();
        let distinct = |labels: &[String]| {
            let by_setting: BTreeMap<&String, BTreeSet<Settings>> =
                labels.iter().zip(&cs).fold(BTreeMap::new(), |mut m, (l, c)| {
                    m.entry(l).or_default().insert((c.method_params.as_str(), &c.axes));
                    m
                });
            by_setting.values().all(|s| s.len() == 1)
        };
        if distinct(&named) {
            out.extend(cs.into_iter().cloned().zip(named));
            continue;
        }
        // Every differing leaf of the method options and every differing grid key.
        let flat: Vec<BTreeMap<String, String>> = cs
            .iter()
            .map(|c| {
                let mut f = flatten_json(&c.method_params);
                f.extend(c.axes.iter().cloned());
                f
            })
            .collect();
        let keys: BTreeSet<&String> = flat.iter().flat_map(|f| f.keys()).collect();
        let differing: Vec<&String> = keys
            .into_iter()
            .filter(|k| flat.iter().any(|f| f.get(*k) != flat[0].get(*k)))
            .collect();
        let long: Vec<String> = flat
            .iter()
            .map(|f| {
                let suffix: Vec<String> = differing
                    .iter()
                    .map(|k| {
                        let leaf = k.rsplit('.').next().unwrap_or(k);
                        format!("{leaf}={}", f.get(*k).map_or("-".into(), |v| value_text(leaf, v)))
                    })
                    .collect();
                format!("{base} {}", suffix.join(" "))
            })
            .collect();
        let labels = if distinct(&long) {
            long
        } else {
            (1..=cs.len()).map(|i| format!("{base} #{i}")).collect()
        };
        out.extend(cs.into_iter().cloned().zip(labels));
    }
    out
}

/// Every run's configuration, label and sweep series: the grouping every table, `summary.csv`
/// and figure uses.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    runs: BTreeMap<String, (Config, String, String)>,
}

impl Groups {
    /// The groups of the runs `keys` names (one key per row is fine), with the manifest's
    /// `axes` per run id (a run without: no grid keys beyond its method).
    pub fn of(keys: impl IntoIterator<Item = RunKey>, axes: &BTreeMap<String, String>) -> Groups {
        let mut config_of: BTreeMap<String, Config> = BTreeMap::new();
        for k in keys {
            if !config_of.contains_key(&k.run_id) {
                let c = Config::of(&k, axes.get(&k.run_id).map_or("", String::as_str));
                config_of.insert(k.run_id.clone(), c);
            }
        }
        let configs: BTreeSet<Config> = config_of.values().cloned().collect();
        let series: BTreeSet<Config> = configs.iter().map(Config::sweep_series).collect();
        let (labels, series_labels) = (labels(&configs), labels(&series));
        let runs = config_of
            .into_iter()
            .map(|(run, c)| {
                let label = labels[&c].clone();
                let series = series_labels[&c.sweep_series()].clone();
                (run, (c, label, series))
            })
            .collect();
        Groups { runs }
    }

    /// The configuration of run `run_id`.
    pub fn config(&self, run_id: &str) -> Option<&Config> {
        self.runs.get(run_id).map(|r| &r.0)
    }

    /// The label of run `run_id`'s configuration (the run id for a run it does not know).
    pub fn label(&self, run_id: &str) -> String {
        self.runs.get(run_id).map_or_else(|| run_id.to_string(), |r| r.1.clone())
    }

    /// The label of run `run_id`'s sweep series (its configuration with λ left out).
    pub fn series(&self, run_id: &str) -> String {
        self.runs.get(run_id).map_or_else(|| run_id.to_string(), |r| r.2.clone())
    }

    /// Run ids, each with its configuration.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Config)> {
        self.runs.iter().map(|(id, r)| (id, &r.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(run: &str, seed: u64, lambda: Option<f64>, params: &str) -> RunKey {
        RunKey {
            run_id: run.into(),
            seed,
            model: "cnn".into(),
            method: "gfa".into(),
            lambda,
            method_params: params.into(),
            ..Default::default()
        }
    }

    const FIRST: &str = r#"{"eps":1e-8,"kind":"gfa","lambda":0.1,"layers":"first","penalty":"one_minus_cos","tap":"post_activation","weights":"uniform","lambda_warmup_epochs":0}"#;

    /// Two runs that differ only in the task loss are two groups; two seeds of one
    /// configuration are one; the label names the key that differs.
    #[test]
    fn a_group_is_every_grid_key_but_the_seed() {
        let axes: BTreeMap<String, String> = [
            ("ce0", "method.lambda=0.1; method.layers=first"),
            ("ce1", "method.lambda=0.1; method.layers=first"),
            ("mse0", "method.lambda=0.1; method.layers=first; train.task_loss=mse_softmax"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let g = Groups::of(
            [
                key("ce0", 0, Some(0.1), FIRST),
                key("ce1", 1, Some(0.1), FIRST),
                key("mse0", 0, Some(0.1), FIRST),
            ],
            &axes,
        );
        assert_eq!(g.label("ce0"), g.label("ce1"));
        assert_ne!(g.label("ce0"), g.label("mse0"));
        assert_eq!(g.label("ce0"), "gfa λ=0.1");
        assert_eq!(g.label("mse0"), "gfa λ=0.1 task_loss=mse_softmax");
        assert_eq!(g.series("mse0"), "gfa task_loss=mse_softmax");
        assert_ne!(g.config("ce0"), g.config("mse0"));
    }

    /// A single configuration of a method and λ is named by them alone; method options read
    /// as the figures write them; the seed and λ never split a sweep series.
    #[test]
    fn labels_name_only_what_sets_a_configuration_apart() {
        let deep = r#"{"kind":"gfa","lambda":0.2,"layers":"deep","penalty":"sin2","tap":"pre_activation","lambda_warmup_epochs":2}"#;
        let first = FIRST.replace("0.1", "0.2");
        let g = Groups::of(
            [
                key("a", 0, Some(0.2), deep),
                key("b", 0, Some(0.2), &first),
                key("c", 0, Some(0.1), FIRST),
                RunKey {
                    method: "standard".into(),
                    ..key("s", 0, None, "{\"kind\":\"standard\"}")
                },
            ],
            &BTreeMap::new(),
        );
        assert_eq!(g.label("a"), "gfa λ=0.2 layers=deep warm-up 2 ep sin² pre-act taps");
        assert_eq!(g.label("b"), "gfa λ=0.2 layers=first");
        assert_eq!(g.label("c"), "gfa λ=0.1");
        assert_eq!(g.label("s"), "standard");
        assert_eq!(g.series("b"), g.series("c"));
        assert_eq!(g.series("b"), "gfa layers=first");
    }

    /// Parts every configuration of a method shares are left out of its labels.
    #[test]
    fn shared_options_are_not_named() {
        let adv = r#"{"kind":"pgd_at","step":0.011764705882352941,"steps":3}"#;
        let k = |run: &str| RunKey { method: "pgd_at".into(), ..key(run, 0, None, adv) };
        let axes: BTreeMap<String, String> =
            [("a", "eval.subset=all"), ("b", "eval.subset=all_correct")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        let g = Groups::of([k("a"), k("b")], &axes);
        assert_eq!(g.label("a"), "pgd_at subset=all");
        assert_eq!(g.label("b"), "pgd_at subset=all_correct");
    }

    /// PGD-AT at two radii reads in units of 1/255, as the grid file writes them; a value that
    /// is no such multiple keeps its digits.
    #[test]
    fn pixel_radii_read_in_units_of_one_255th() {
        let at = |eps: f64, step: f64| {
            format!(
                r#"{{"eps":{eps},"kind":"pgd_at","random_start":true,"step":{step},"steps":3}}"#
            )
        };
        let k = |run: &str, p: &str| RunKey { method: "pgd_at".into(), ..key(run, 0, None, p) };
        let (a, b) = (at(2.0 / 255.0, 0.75 / 255.0), at(8.0 / 255.0, 3.0 / 255.0));
        let c = at(0.0123456, 0.00123456);
        let g = Groups::of([k("a", &a), k("b", &b), k("c", &c)], &BTreeMap::new());
        assert_eq!(g.label("a"), "pgd_at eps=2/255 step=0.75/255");
        assert_eq!(g.label("b"), "pgd_at step=3/255");
        assert_eq!(g.label("c"), "pgd_at eps=0.0123456 step=0.00123456");
        assert_eq!(per_255(0.375 / 255.0).as_deref(), Some("0.375/255"));
        assert_eq!(per_255(1.0).as_deref(), Some("255/255"));
        assert_eq!(per_255(0.3 / 255.0 + 1e-7), None);
        assert_eq!(per_255(0.0), None);
    }

    /// Configurations whose distinguishing parts coincide fall back to every differing key.
    #[test]
    fn labels_stay_distinct() {
        let k =
            |run: &str, p: &str| RunKey { method: "custom".into(), ..key(run, 0, Some(0.1), p) };
        let cs: BTreeSet<Config> =
            [k("a", "x"), k("b", "y")].iter().map(|k| Config::of(k, "")).collect();
        let l = labels(&cs);
        let names: BTreeSet<&String> = l.values().collect();
        assert_eq!(names.len(), 2, "{l:?}");
    }
}
