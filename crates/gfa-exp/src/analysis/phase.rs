//! The figures of a λ sweep of the penalty methods (GFA, GNR, GFA+PGD-AT), from a results
//! folder's CSVs, drawn by `gfa plot` when some variant has runs at two λ or more:
//!
//! - `phase_diagram_<model>`: x = λ (log scale); one panel each for clean accuracy, the
//!   worst case over the suite at L∞ 2/255 and 8/255 (standard protocol), the input-tap cosine
//!   on the test points (`gfa_value.csv`) and the collapse epoch (`train.csv`: when the fixed
//!   diagnostics batch fell to chance for good, in epochs of training; no point: no collapse).
//!   One line per variant through the means over seeds, each seed a point; the methods without
//!   λ (standard training, PGD-AT, …) are dashed horizontal references.
//! - `tradeoff_clean_vs_robust_<model>`: worst case against clean accuracy at L∞ 2/255 and
//!   8/255, a point per run, the methods without λ as black reference markers.
//!
//! A *variant* is everything that tells runs of one method apart except λ and the seed: the
//! method options that differ from the method's defaults (`layers`, `penalty`, warm-up, `tap`,
//! …) and the other keys the grid varies (`manifest.csv`'s axes, e.g. `train.task_loss`).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::report::base::{Budget, Results, WorstKey, protocol, worst_cases};
use crate::analysis::stats::Stat;
use crate::analysis::style::{Draw, FONT_NAME, Format, color, err, save, slug};

/// The L∞ budgets of the worst-case panels.
pub const BUDGETS: [&str; 2] = ["2/255", "8/255"];

/// One run, as the figures see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPoint {
    pub run_id: String,
    pub model: String,
    /// The method kind for runs without λ (references); the variant label otherwise.
    pub series: String,
    pub lambda: Option<f64>,
    pub clean: Option<f64>,
    /// Worst case at each of [`BUDGETS`].
    pub worst: [Option<f64>; 2],
    pub input_cos: Option<f64>,
    /// Epochs of training after which the fixed batch fell to chance for good.
    pub collapse_epoch: Option<f64>,
}

/// How an option value reads in a variant label.
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
        ("layers", _) => text,
        ("penalty", "one_minus_cos") => "1−cos".into(),
        ("penalty", "one_minus_abs_cos") => "1−|cos|".into(),
        ("penalty", "sin2") => "sin²".into(),
        ("tap", "pre_activation") => "pre-act taps".into(),
        ("tap", "post_activation") => "post-act taps".into(),
        ("lambda_warmup_epochs", n) => format!("warm-up {n} ep"),
        (k, v) => format!("{k}={v}"),
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

/// The variant label of a run of `method` with options `params` (JSON) and grid axes `axes`
/// (`manifest.csv`'s `key=value; …`): the method, then each option that differs from its
/// default (`layers` first), then the other keys the grid varies, seeds and the method aside.
pub fn variant(method: &str, params: &str, axes: &str) -> String {
    let defaults = default_options(method);
    let mut parts = vec![method.to_string()];
    if let Ok(serde_json::Value::Object(p)) = serde_json::from_str::<serde_json::Value>(params) {
        // `layers` first: the main split of a sweep (first / deep).
        let mut keys: Vec<&String> =
            p.keys().filter(|k| !["kind", "lambda"].contains(&k.as_str())).collect();
        keys.sort_by_key(|k| (k.as_str() != "layers", k.as_str()));
        for k in keys {
            if k == "layers" || defaults.get(k.as_str()) != Some(&p[k.as_str()]) {
                parts.push(option_text(k, &p[k.as_str()]));
            }
        }
    }
    for pair in axes.split("; ").filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "method" || key.starts_with("method.") || key == "seed" {
            continue;
        }
        parts.push(format!("{}={value}", key.rsplit('.').next().unwrap_or(key)));
    }
    parts.join(" ")
}

/// Every run of `res` with what the figures show of it (`axes`: run id → manifest axes).
pub fn run_points(res: &Results, axes: &BTreeMap<String, String>) -> Vec<RunPoint> {
    let worst = worst_cases(&res.eval);
    let mut out: BTreeMap<String, RunPoint> = BTreeMap::new();
    for r in &res.eval {
        let p = protocol(&r.preset, &r.subset);
        let e = out.entry(r.run_id.clone()).or_insert_with(|| RunPoint {
            run_id: r.run_id.clone(),
            model: r.model.clone(),
            series: match r.lambda {
                Some(_) => {
                    variant(&r.method, &r.method_params, axes.get(&r.run_id).map_or("", |a| a))
                }
                None => r.method.clone(),
            },
            lambda: r.lambda,
            clean: None,
            worst: [None, None],
            input_cos: None,
            collapse_epoch: None,
        });
        if p == "standard" {
            e.clean = Some(r.clean_acc);
            for (k, eps) in BUDGETS.iter().enumerate() {
                let key = WorstKey {
                    run_id: r.run_id.clone(),
                    protocol: p.clone(),
                    budget: Budget { norm: "linf".into(), eps_text: eps.to_string() },
                };
                e.worst[k] = worst.get(&key).copied();
            }
        }
    }
    for g in res.gfa_value.iter().filter(|g| g.split == "test" && g.tap == "input") {
        if let Some(p) = out.get_mut(&g.run_id) {
            p.input_cos = Some(g.value);
        }
    }
    let mut by_run: BTreeMap<&str, Vec<&crate::results::records::TrainRow>> = BTreeMap::new();
    for t in &res.train {
        by_run.entry(t.run_id.as_str()).or_default().push(t);
    }
    for (run, mut rows) in by_run {
        rows.sort_by_key(|t| t.epoch);
        let per_epoch = rows.first().and_then(|t| t.steps).filter(|s| *s > 0);
        let last = rows.last().and_then(|t| t.collapse_step);
        if let (Some(p), Some(steps), Some(at)) = (out.get_mut(run), per_epoch, last) {
            p.collapse_epoch = Some(at as f64 / steps as f64);
        }
    }
    out.into_values().collect()
}

/// A figure's series: a line through `mean` and a marker at each of `points`.
#[derive(Debug, Clone, Default)]
struct Series {
    mean: Vec<(f64, f64)>,
    points: Vec<(f64, f64)>,
}

/// One panel of a figure.
#[derive(Debug, Clone)]
struct Panel {
    title: String,
    x_label: String,
    y_label: String,
    x: (f64, f64),
    y: (f64, f64),
    log_x: bool,
    series: Vec<Series>,
    /// Horizontal references (phase diagram) or single labelled points (trade-off).
    refs: Vec<(String, Vec<(f64, f64)>)>,
}

/// Panels on a grid of `cols` columns, the last cell holding the legend of `names`.
struct Figure {
    panels: Vec<Panel>,
    cols: usize,
    names: Vec<String>,
    refs: Vec<String>,
    size: (u32, u32),
}

fn series_style(i: usize) -> ShapeStyle {
    color(i).stroke_width(2)
}

/// Draw `pts` as markers of shape `shape` (0 circle, 1 square, 2 triangle) of radius `r`.
macro_rules! markers {
    ($chart:expr, $shape:expr, $pts:expr, $style:expr, $r:expr) => {{
        let (pts, style, r) = ($pts, $style, $r);
        match $shape {
            0 => $chart.draw_series(pts.map(|p| Circle::new(p, r, style))).map(drop),
            1 => $chart
                .draw_series(
                    pts.map(|p| EmptyElement::at(p) + Rectangle::new([(-r, -r), (r, r)], style)),
                )
                .map(drop),
            _ => $chart.draw_series(pts.map(|p| TriangleMarker::new(p, r + 1, style))).map(drop),
        }
        .map_err(err)?
    }};
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> Result<()> {
    let mut chart = ChartBuilder::on(area);
    chart.caption(&p.title, (FONT_NAME, 17)).margin(10).x_label_area_size(40).y_label_area_size(56);
    let (x0, x1) = p.x;
    let (y0, y1) = p.y;
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(p.x_label.as_str())
                .y_desc(p.y_label.as_str())
                .label_style((FONT_NAME, 13))
                .axis_desc_style((FONT_NAME, 14))
                .x_label_formatter(&|x| format!("{}", (x * 1000.0).round() / 1000.0))
                .draw()
                .map_err(err)?;
            for (k, (_, pts)) in p.refs.iter().enumerate() {
                let style = BLACK.mix(0.7).stroke_width(1 + k as u32 % 2);
                if pts.len() > 1 {
                    chart
                        .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                        .map_err(err)?;
                }
                if pts.len() == 1 {
                    markers!(chart, k % 3 + 1, pts.iter().copied(), BLACK.filled(), 6);
                }
            }
            for (i, s) in p.series.iter().enumerate() {
                if s.mean.len() > 1 {
                    chart
                        .draw_series(LineSeries::new(s.mean.clone(), series_style(i)))
                        .map_err(err)?;
                }
                markers!(chart, (i / 8) % 3, s.points.iter().copied(), color(i).filled(), 4);
            }
        }};
    }
    if p.log_x {
        body!(chart.build_cartesian_2d((x0..x1).log_scale(), y0..y1).map_err(err)?);
    } else {
        body!(chart.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?);
    }
    Ok(())
}

/// A legend marker of shape `shape` (as [`markers!`]) at pixel `at`.
fn legend_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    shape: usize,
    at: (i32, i32),
    style: ShapeStyle,
) -> Result<()> {
    match shape {
        0 => area.draw(&Circle::new(at, 4, style)),
        1 => area.draw(&Rectangle::new([(at.0 - 5, at.1 - 5), (at.0 + 5, at.1 + 5)], style)),
        _ => area.draw(&TriangleMarker::new(at, 6, style)),
    }
    .map_err(err)
}

/// The legend cell: a line and marker per series, then the references.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, f: &Figure) -> Result<()> {
    let style = (FONT_NAME, 14).into_font().color(&BLACK);
    let mut y = 16;
    for (i, name) in f.names.iter().enumerate() {
        area.draw(&PathElement::new(vec![(10, y), (40, y)], series_style(i))).map_err(err)?;
        legend_marker(area, (i / 8) % 3, (25, y), color(i).filled())?;
        area.draw(&Text::new(name.clone(), (48, y - 8), style.clone())).map_err(err)?;
        y += 22;
    }
    for (k, name) in f.refs.iter().enumerate() {
        let s = BLACK.mix(0.7).stroke_width(1 + k as u32 % 2);
        area.draw(&PathElement::new(vec![(10, y), (40, y)], s)).map_err(err)?;
        legend_marker(area, k % 3 + 1, (25, y), BLACK.filled())?;
        area.draw(&Text::new(format!("{name} (reference)"), (48, y - 8), style.clone()))
            .map_err(err)?;
        y += 22;
    }
    Ok(())
}

impl Draw for Figure {
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        draw_figure(root, self)
    }
}

fn draw_figure<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, f: &Figure) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let rows = (f.panels.len() + 1).div_ceil(f.cols);
    let cells = root.split_evenly((rows, f.cols));
    for (cell, panel) in cells.iter().zip(&f.panels) {
        draw_panel(cell, panel)?;
    }
    if let Some(cell) = cells.get(f.panels.len()) {
        draw_legend(cell, f)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// What each phase-diagram panel shows of a run, and its axis.
type Metric = (&'static str, &'static str, fn(&RunPoint) -> Option<f64>);

fn pct(v: Option<f64>) -> Option<f64> {
    v.map(|x| 100.0 * x)
}

const METRICS: [Metric; 5] = [
    ("clean accuracy", "accuracy (%)", |p| pct(p.clean)),
    ("worst case, L∞ 2/255", "robust accuracy (%)", |p| pct(p.worst[0])),
    ("worst case, L∞ 8/255", "robust accuracy (%)", |p| pct(p.worst[1])),
    ("input-tap cosine (test points)", "mean cos", |p| p.input_cos),
    ("collapse epoch (no point: none)", "epochs of training", |p| p.collapse_epoch),
];

fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

fn padded((lo, hi): (f64, f64)) -> (f64, f64) {
    let pad = if hi > lo { 0.06 * (hi - lo) } else { 0.5 };
    (lo - pad, hi + pad)
}

/// The series (variants with their seeds) of one metric over λ.
fn sweep(points: &[&RunPoint], get: fn(&RunPoint) -> Option<f64>, names: &[String]) -> Vec<Series> {
    names
        .iter()
        .map(|name| {
            let mut by_lambda: BTreeMap<i64, (f64, Vec<f64>)> = BTreeMap::new();
            let mut s = Series::default();
            for p in points.iter().filter(|p| &p.series == name) {
                let (Some(l), Some(v)) = (p.lambda, get(p)) else { continue };
                by_lambda.entry((l * 1e9).round() as i64).or_insert((l, vec![])).1.push(v);
                s.points.push((l, v));
            }
            s.mean = by_lambda
                .into_values()
                .filter_map(|(l, vs)| Some((l, Stat::of(&vs)?.mean)))
                .collect();
            s
        })
        .collect()
}

/// The two figures for each model whose penalty runs span two λ or more (`axes`: see
/// [`crate::results::plan::manifest_axes`]).
pub fn figures(
    res: &Results,
    axes: &BTreeMap<String, String>,
    out: &Path,
    format: Format,
) -> Result<Vec<PathBuf>> {
    let points = run_points(res, axes);
    let models: BTreeSet<&str> = points.iter().map(|p| p.model.as_str()).collect();
    let mut files = Vec::new();
    for model in models {
        let Some(sweep) = ModelSweep::of(&points, model) else { continue };
        let phase = Figure {
            panels: sweep.phase_panels(),
            cols: 2,
            names: sweep.names.clone(),
            refs: sweep.refs.clone(),
            size: (1200, 1350),
        };
        files.extend(save(&out.join(format!("phase_diagram_{}", slug(model))), format, &phase)?);
        let tradeoff = Figure {
            panels: sweep.tradeoff_panels(),
            cols: 3,
            names: sweep.names,
            refs: sweep.refs,
            size: (1500, 520),
        };
        let stem = out.join(format!("tradeoff_clean_vs_robust_{}", slug(model)));
        files.extend(save(&stem, format, &tradeoff)?);
    }
    Ok(files)
}

/// One model's λ sweep: its runs, those with λ > 0, the series they form and the reference
/// methods without λ.
struct ModelSweep<'a> {
    of_model: Vec<&'a RunPoint>,
    swept: Vec<&'a RunPoint>,
    names: Vec<String>,
    refs: Vec<String>,
    /// The λ axis: the swept λ, widened by a factor 1.3 each side.
    x: (f64, f64),
}

impl<'a> ModelSweep<'a> {
    /// The sweep of `model`, when its penalty runs span two λ or more.
    fn of(points: &'a [RunPoint], model: &str) -> Option<ModelSweep<'a>> {
        let of_model: Vec<&RunPoint> = points.iter().filter(|p| p.model == model).collect();
        let swept: Vec<&RunPoint> =
            of_model.iter().copied().filter(|p| p.lambda.is_some_and(|l| l > 0.0)).collect();
        let lambdas: BTreeSet<i64> =
            swept.iter().filter_map(|p| p.lambda).map(|l| (l * 1e9).round() as i64).collect();
        if lambdas.len() < 2 {
            return None;
        }
        let names: Vec<String> =
            swept.iter().map(|p| p.series.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let refs: Vec<String> = of_model
            .iter()
            .filter(|p| p.lambda.is_none())
            .map(|p| p.series.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (l0, l1) = span(swept.iter().filter_map(|p| p.lambda)).unwrap_or((0.01, 1.0));
        Some(ModelSweep { of_model, swept, names, refs, x: (l0 / 1.3, l1 * 1.3) })
    }

    /// The mean of `get` over the runs of the reference series `name`.
    fn ref_mean(&self, name: &str, get: fn(&RunPoint) -> Option<f64>) -> Option<f64> {
        let vs: Vec<f64> =
            self.of_model.iter().filter(|p| p.series == name).filter_map(|p| get(p)).collect();
        Stat::of(&vs).map(|s| s.mean)
    }

    /// The phase diagram: one panel per metric over λ, the references as flat lines.
    fn phase_panels(&self) -> Vec<Panel> {
        let x = self.x;
        METRICS
            .iter()
            .map(|(title, y_label, get)| {
                let series = sweep(&self.swept, *get, &self.names);
                let refs: Vec<(String, Vec<(f64, f64)>)> = self
                    .refs
                    .iter()
                    .filter_map(|n| {
                        Some((
                            n.clone(),
                            vec![(x.0, self.ref_mean(n, *get)?), (x.1, self.ref_mean(n, *get)?)],
                        ))
                    })
                    .collect();
                let ys =
                    series.iter().flat_map(|s| &s.points).chain(refs.iter().flat_map(|r| &r.1));
                let y = match *y_label {
                    "accuracy (%)" | "robust accuracy (%)" => (0.0, 100.0),
                    _ => padded(span(ys.map(|p| p.1)).unwrap_or((0.0, 1.0))),
                };
                Panel {
                    title: title.to_string(),
                    x_label: "λ (log scale)".into(),
                    y_label: y_label.to_string(),
                    x,
                    y,
                    log_x: true,
                    series,
                    refs,
                }
            })
            .collect()
    }

    /// The trade-off: clean against worst-case accuracy, one panel per budget, the references
    /// as single points.
    fn tradeoff_panels(&self) -> Vec<Panel> {
        BUDGETS
            .iter()
            .enumerate()
            .map(|(k, eps)| {
                let pair = |p: &RunPoint| Some((100.0 * p.clean?, 100.0 * p.worst[k]?));
                let series = self
                    .names
                    .iter()
                    .map(|n| Series {
                        mean: vec![],
                        points: self
                            .swept
                            .iter()
                            .filter(|p| &p.series == n)
                            .filter_map(|p| pair(p))
                            .collect(),
                    })
                    .collect();
                let refs = self
                    .refs
                    .iter()
                    .filter_map(|n| {
                        let at = |get: fn(&RunPoint) -> Option<f64>| self.ref_mean(n, get);
                        let c = at(|p| pct(p.clean))?;
                        let w = if k == 0 {
                            at(|p| pct(p.worst[0]))?
                        } else {
                            at(|p| pct(p.worst[1]))?
                        };
                        Some((n.clone(), vec![(c, w)]))
                    })
                    .collect();
                Panel {
                    title: format!("clean vs worst case, L∞ {eps}"),
                    x_label: "clean accuracy (%)".into(),
                    y_label: "worst-case robust accuracy (%)".into(),
                    x: (0.0, 100.0),
                    y: (0.0, 100.0),
                    log_x: false,
                    series,
                    refs,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_name_what_differs_from_the_defaults() {
        let p = r#"{"eps":1e-8,"kind":"gfa","lambda":0.1,"layers":"first","penalty":"one_minus_cos","tap":"post_activation","weights":"uniform","lambda_warmup_epochs":0}"#;
        assert_eq!(variant("gfa", p, "method={ kind = \"gfa\" }"), "gfa first");
        let p = r#"{"kind":"gfa","lambda":0.1,"layers":"deep","penalty":"sin2","tap":"pre_activation","lambda_warmup_epochs":2}"#;
        assert_eq!(
            variant("gfa", p, "method={ … }; train.task_loss=mse_softmax"),
            "gfa deep warm-up 2 ep sin² pre-act taps task_loss=mse_softmax"
        );
    }
}
