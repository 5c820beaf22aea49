//! Is GFA on or above the frontier that cheaper controls trace? The comparison of table T7 and
//! of `gfa plot`'s `frontier_<model>` figures (docs/method.md §9), from a results folder's CSVs:
//!
//! - **Compared runs**: every run with a worst case over the suite at L∞ 8/255 under the
//!   standard protocol (reference presets, every point; under `all_correct` every clean accuracy
//!   is 100 % by construction). **GFA runs** train with the GFA penalty (the methods whose
//!   regularizer is GFA's in the registry: `gfa`, `gfa_pgd_at`, [`trains_with_gfa`]); every
//!   other run is a **control** (`standard` however long it trained, `gnr`, `pgd_at` at any ε,
//!   …). No key declares them: the method decides.
//! - **Robust accuracy** ([`Metric`]): AutoAttack's at L∞ 8/255 when every compared run has
//!   it, else the worst case over the suite there (the lowest cumulative row).
//! - **Configurations**: the one grouping rule ([`crate::analysis::report::groups`]); a
//!   configuration's point is the mean over its runs (seeds) of clean and robust accuracy.
//! - **Frontier**, per model: the control configurations that no other control configuration
//!   of the model matches or beats in both accuracies ([`envelope`]), joined by straight lines
//!   in order of clean accuracy, flat to the left of the most robust one (a more accurate
//!   control reaches that robustness), undefined beyond the most accurate one
//!   ([`interpolate`]).
//! - **Pairing**: each GFA configuration with the frontier configuration nearest to it in clean
//!   accuracy ([`nearest`]); each GFA run with that configuration's run of the same seed, else
//!   its run of the lowest seed ([`pairs`]), compared point by point on the robust rows' outcomes.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use gfa_attacks::Algorithm;
use gfa_core::{RegKind, TrainMethod};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::phase::{BUDGETS, fitted, input_cosines, legend_marker, markers};
use crate::analysis::points;
use crate::analysis::report::base::{Results, worst_rows};
use crate::analysis::report::groups::Groups;
use crate::analysis::stats::{Paired, Stat};
use crate::analysis::style::{Draw, FONT_NAME, Format, color, err, save, slug};
use crate::results::records::EvalRow;

/// The budget of the comparison (the norm is L∞).
pub const AT: &str = BUDGETS[1];

/// Whether runs of method `kind` train with the GFA penalty: the registry's example of the
/// method has GFA's regularizer (an unknown kind does not).
pub fn trains_with_gfa(kind: &str) -> bool {
    gfa_core::Method::info(kind)
        .and_then(|i| serde_json::from_value::<gfa_core::Method>(i.example).ok())
        .is_some_and(|m| m.regularizer().is_some_and(|(k, _)| k == RegKind::Gfa))
}

/// The registered methods that train with the GFA penalty, in registry order.
pub fn gfa_methods() -> Vec<&'static str> {
    gfa_core::Method::KINDS.iter().copied().filter(|k| trains_with_gfa(k)).collect()
}

/// Which robust accuracy the comparison uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// AutoAttack's at L∞ 8/255 (every compared run has it).
    AutoAttack,
    /// The worst case over the suite at L∞ 8/255.
    WorstCase,
}

impl Metric {
    /// What the robust accuracy is, as the table's header and the figure's axis name it.
    pub fn name(self) -> String {
        match self {
            Metric::AutoAttack => format!("AutoAttack at L∞ {AT}"),
            Metric::WorstCase => format!("worst case over the suite at L∞ {AT}"),
        }
    }
}

/// One compared run.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    pub run_id: String,
    pub seed: u64,
    pub clean: f64,
    pub robust: f64,
    /// The `eval.csv` row of `robust`: its per-point outcomes are what a pairing compares.
    pub row: &'a EvalRow,
    /// The input tap's mean cosine on the test points (`gfa_value.csv`).
    pub input_cos: Option<f64>,
}

/// The compared runs of one configuration: one model, every grid key equal but the seed.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    pub model: String,
    pub label: String,
    /// The configuration with λ left out (a GFA series' colour in the figure).
    pub series: String,
    pub method: String,
    /// In seed order; never empty.
    pub runs: Vec<Run<'a>>,
}

impl Config<'_> {
    fn mean(&self, f: impl Fn(&Run) -> f64) -> f64 {
        let xs: Vec<f64> = self.runs.iter().map(f).collect();
        Stat::of(&xs).map_or(f64::NAN, |s| s.mean)
    }

    /// Mean clean accuracy over the runs.
    pub fn clean(&self) -> f64 {
        self.mean(|r| r.clean)
    }

    /// Mean robust accuracy over the runs.
    pub fn robust(&self) -> f64 {
        self.mean(|r| r.robust)
    }
}

/// One model's controls, their frontier and its GFA configurations.
#[derive(Debug, Clone)]
pub struct ModelFrontier<'a> {
    pub model: String,
    /// By growing mean clean accuracy.
    pub controls: Vec<Config<'a>>,
    /// The indices in `controls` of the frontier's configurations, by growing clean accuracy.
    pub frontier: Vec<usize>,
    pub gfa: Vec<Config<'a>>,
}

impl<'a> ModelFrontier<'a> {
    /// The frontier's points (mean clean, mean robust), by growing clean accuracy.
    pub fn line(&self) -> Vec<(f64, f64)> {
        self.frontier
            .iter()
            .map(|&i| (self.controls[i].clean(), self.controls[i].robust()))
            .collect()
    }

    /// The frontier's robust accuracy at clean accuracy `clean` ([`interpolate`]).
    pub fn value_at(&self, clean: f64) -> Option<f64> {
        interpolate(&self.line(), clean)
    }

    /// The frontier configuration nearest to clean accuracy `clean` ([`nearest`]).
    pub fn nearest(&self, clean: f64) -> &Config<'a> {
        let k = nearest(&self.line(), clean).expect("a frontier has a point");
        &self.controls[self.frontier[k]]
    }
}

/// What T7 and the frontier figures compare.
#[derive(Debug, Clone)]
pub struct Comparison<'a> {
    pub metric: Metric,
    /// The models with both GFA runs and controls.
    pub models: Vec<ModelFrontier<'a>>,
    /// Models with GFA runs but no control: their GFA configurations are not compared.
    pub without_controls: Vec<String>,
    /// Runs that are not compared (no standard-protocol worst case at L∞ 8/255).
    pub not_compared: usize,
}

/// Indices of the points `(clean, robust)` that no other point matches or beats in both
/// coordinates (one strictly), by growing clean accuracy (then falling robust accuracy).
pub fn envelope(points: &[(f64, f64)]) -> Vec<usize> {
    let beats = |q: (f64, f64), p: (f64, f64)| q.0 >= p.0 && q.1 >= p.1 && (q.0 > p.0 || q.1 > p.1);
    let mut out: Vec<usize> =
        (0..points.len()).filter(|&i| !points.iter().any(|&q| beats(q, points[i]))).collect();
    out.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
            .then(a.cmp(&b))
    });
    out
}

/// The robust accuracy of the frontier `line` (points by growing clean accuracy) at clean
/// accuracy `x`: linear between its neighbouring points, its first point's robust accuracy left
/// of it, none beyond its last point (no control is that accurate).
pub fn interpolate(line: &[(f64, f64)], x: f64) -> Option<f64> {
    let (first, last) = (line.first()?, line.last()?);
    if x <= first.0 {
        return Some(first.1);
    }
    if x > last.0 {
        return None;
    }
    line.windows(2).find(|w| x <= w[1].0).map(|w| {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x1 > x0 { y0 + (x - x0) / (x1 - x0) * (y1 - y0) } else { y0.max(y1) }
    })
}

/// The index of the point of `line` nearest to clean accuracy `x`; on a tie, the more robust.
pub fn nearest(line: &[(f64, f64)], x: f64) -> Option<usize> {
    let d = |i: usize| (line[i].0 - x).abs();
    (0..line.len()).min_by(|&a, &b| d(a).total_cmp(&d(b)).then(line[b].1.total_cmp(&line[a].1)))
}

/// One GFA run and the control run it is paired with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedPair {
    pub seed: u64,
    pub control_seed: u64,
    /// The 2×2 table of the two robust rows' outcomes (GFA first); none without per-point
    /// outcomes of both on the same points.
    pub table: Option<Paired>,
}

/// Each run of `gfa` paired with `control`'s run of the same seed, else its run of the lowest
/// seed.
pub fn pairs(res: &Results, gfa: &Config, control: &Config) -> Vec<SeedPair> {
    gfa.runs
        .iter()
        .map(|g| {
            let c = control.runs.iter().find(|c| c.seed == g.seed).unwrap_or(&control.runs[0]);
            let outcomes = |r: &Run| points::of(&res.points, r.row);
            let table = outcomes(g)
                .zip(outcomes(c))
                .and_then(|(a, b)| points::paired(a, b))
                .map(|p| Paired::of(&p));
            SeedPair { seed: g.seed, control_seed: c.seed, table }
        })
        .collect()
}

/// Per run id, its lowest AutoAttack robust accuracy row at L∞ [`AT`], standard protocol.
fn autoattack_rows(res: &Results) -> BTreeMap<&str, &EvalRow> {
    let mut out: BTreeMap<&str, &EvalRow> = BTreeMap::new();
    for r in res.eval.iter().filter(|r| standard_at(r) && r.mode == "individual") {
        let aa = gfa_attacks::registry::facts(&r.kind)
            .is_some_and(|f| f.algorithm == Algorithm::AutoAttack);
        let Some(acc) = r.robust_acc.filter(|_| aa) else { continue };
        let e = out.entry(r.run_id.as_str()).or_insert(r);
        if acc < e.robust_acc.unwrap_or(f64::INFINITY) {
            *e = r;
        }
    }
    out
}

/// Whether `r` is a standard-protocol row at L∞ [`AT`].
fn standard_at(r: &EvalRow) -> bool {
    (r.preset.as_str(), r.subset.as_str(), r.norm.as_str(), r.eps_text.as_str())
        == ("reference", "all", "linf", AT)
}

/// The comparison of the results `res` (`groups`: [`Results::groups`]), or why there is none.
pub fn compare<'a>(res: &'a Results, groups: &Groups) -> Result<Comparison<'a>, String> {
    let worst: BTreeMap<&str, &EvalRow> = worst_rows(&res.eval)
        .into_values()
        .filter(|r| standard_at(r))
        .map(|r| (r.run_id.as_str(), r))
        .collect();
    if worst.is_empty() {
        return Err(format!(
            "no run has a worst case at L∞ {AT} under the standard protocol (reference \
             presets, every point)"
        ));
    }
    let aa = autoattack_rows(res);
    let metric = if worst.keys().all(|id| aa.contains_key(id)) {
        Metric::AutoAttack
    } else {
        Metric::WorstCase
    };
    let cos = input_cosines(res);
    let mut configs: BTreeMap<(String, String), Config> = BTreeMap::new();
    for (id, w) in worst {
        let row = if metric == Metric::AutoAttack { aa[id] } else { w };
        let model = groups.config(id).map_or_else(|| w.model.clone(), |c| c.model.clone());
        let label = groups.label(id);
        let run = Run {
            run_id: id.to_string(),
            seed: w.seed,
            clean: row.clean_acc,
            robust: row.robust_acc.unwrap_or(f64::NAN),
            row,
            input_cos: cos.get(id).copied(),
        };
        let c = configs.entry((model.clone(), label.clone())).or_insert_with(|| Config {
            model,
            label,
            series: groups.series(id),
            method: w.method.clone(),
            runs: vec![],
        });
        c.runs.push(run);
    }
    let ran = res.eval.iter().map(|r| r.run_id.as_str()).collect::<BTreeSet<_>>().len();
    let compared: usize = configs.values().map(|c| c.runs.len()).sum();
    let mut cmp = Comparison {
        metric,
        models: vec![],
        without_controls: vec![],
        not_compared: ran - compared,
    };
    split_by_model(configs.into_values(), &mut cmp)?;
    Ok(cmp)
}

/// `cmp`'s models from the configurations, or why none has both GFA runs and controls.
fn split_by_model<'a>(
    configs: impl Iterator<Item = Config<'a>>,
    cmp: &mut Comparison<'a>,
) -> Result<(), String> {
    let mut by: BTreeMap<String, (Vec<Config>, Vec<Config>)> = BTreeMap::new();
    for mut c in configs {
        c.runs.sort_by_key(|r| r.seed);
        let e = by.entry(c.model.clone()).or_default();
        if trains_with_gfa(&c.method) { e.1.push(c) } else { e.0.push(c) }
    }
    let gfa_methods = gfa_methods().join("`, `");
    if by.values().all(|(_, g)| g.is_empty()) {
        return Err(format!("no compared run trains with the GFA penalty (`{gfa_methods}`)"));
    }
    if by.values().all(|(c, _)| c.is_empty()) {
        return Err(format!(
            "no control: every compared run trains with the GFA penalty (`{gfa_methods}`)"
        ));
    }
    for (model, (mut controls, gfa)) in by {
        match (controls.is_empty(), gfa.is_empty()) {
            (_, true) => continue,
            (true, false) => cmp.without_controls.push(model),
            (false, false) => {
                controls.sort_by(|a, b| a.clean().total_cmp(&b.clean()));
                let points: Vec<(f64, f64)> =
                    controls.iter().map(|c| (c.clean(), c.robust())).collect();
                let frontier = envelope(&points);
                cmp.models.push(ModelFrontier { model, controls, frontier, gfa });
            }
        }
    }
    if cmp.models.is_empty() {
        return Err("no model has both GFA runs and controls".into());
    }
    Ok(())
}

/// One model's frontier figure.
struct Figure<'a> {
    view: &'a ModelFrontier<'a>,
    metric: Metric,
}

impl Draw for Figure<'_> {
    fn size(&self) -> (u32, u32) {
        (1250, 640)
    }
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        draw_figure(root, self)
    }
}

/// In percent.
fn pct((x, y): (f64, f64)) -> (f64, f64) {
    (100.0 * x, 100.0 * y)
}

/// A configuration's runs in percent, by growing clean accuracy (the line joining its seeds).
fn run_points(c: &Config) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = c.runs.iter().map(|r| pct((r.clean, r.robust))).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

/// The colour of the `i`-th GFA series: the series colours without black, the controls'.
fn series_color(i: usize) -> RGBColor {
    let k = i % 11;
    color(if k >= 6 { k + 1 } else { k })
}

/// The marker shape of the `k`-th control method: squares, triangles and crosses (GFA runs are
/// circles).
fn control_shape(k: usize) -> usize {
    k % 3 + 1
}

/// The figure's series: the GFA series (colours) and the control methods (black shapes).
fn legend_names(v: &ModelFrontier) -> (Vec<String>, Vec<String>) {
    let series: BTreeSet<String> = v.gfa.iter().map(|c| c.series.clone()).collect();
    let methods: BTreeSet<String> = v.controls.iter().map(|c| c.method.clone()).collect();
    (series.into_iter().collect(), methods.into_iter().collect())
}

fn draw_figure<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, f: &Figure) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (main, legend) = root.split_horizontally(860);
    let v = f.view;
    let (series, methods) = legend_names(v);
    let every = v.controls.iter().chain(&v.gfa).flat_map(run_points);
    let all: Vec<(f64, f64)> = every.chain(v.line().into_iter().map(pct)).collect();
    let x = fitted(all.iter().map(|p| p.0), true);
    let y = fitted(all.iter().map(|p| p.1), true);
    let mut chart = ChartBuilder::on(&main)
        .caption(format!("{}: the controls' frontier", v.model), (FONT_NAME, 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("clean accuracy (%)")
        .y_desc(format!("{} (%)", f.metric.name()))
        .label_style((FONT_NAME, 14))
        .axis_desc_style((FONT_NAME, 15))
        .draw()
        .map_err(err)?;
    // The frontier: flat from the left edge to its most robust point, then through its points.
    let line: Vec<(f64, f64)> = v.line().into_iter().map(pct).collect();
    let edge = (x.0, line[0].1);
    let drawn = std::iter::once(edge).chain(line.iter().copied());
    chart.draw_series(LineSeries::new(drawn, BLACK.stroke_width(2))).map_err(err)?;
    let label_style = (FONT_NAME, 13).into_font().color(&BLACK.mix(0.8));
    for (&k, p) in v.frontier.iter().zip(&line) {
        chart
            .draw_series(std::iter::once(Circle::new(*p, 8, BLACK.stroke_width(1))))
            .map_err(err)?;
        let text = Text::new(v.controls[k].label.clone(), (8, -18), label_style.clone());
        chart.draw_series(std::iter::once(EmptyElement::at(*p) + text)).map_err(err)?;
    }
    for c in &v.controls {
        let shape = control_shape(methods.iter().position(|m| m == &c.method).unwrap_or(0));
        let pts = run_points(c);
        chart
            .draw_series(LineSeries::new(pts.clone(), BLACK.mix(0.5).stroke_width(1)))
            .map_err(err)?;
        markers!(chart, shape, pts.into_iter(), BLACK.filled(), 4);
    }
    for c in &v.gfa {
        let col = series_color(series.iter().position(|s| s == &c.series).unwrap_or(0));
        let pts = run_points(c);
        chart.draw_series(LineSeries::new(pts.clone(), col.stroke_width(1))).map_err(err)?;
        markers!(chart, 0, pts.into_iter(), col.filled(), 4);
    }
    draw_legend(&legend, &series, &methods)
}

/// The legend: what a marker and a line are, a colour per GFA series, a shape per control
/// method, the frontier.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[String],
    methods: &[String],
) -> Result<()> {
    let style = (FONT_NAME, 14).into_font().color(&BLACK);
    let mut y = 40;
    let line = |text: String, y: &mut i32| -> Result<()> {
        area.draw(&Text::new(text, (48, *y - 8), style.clone())).map_err(err)?;
        *y += 22;
        Ok(())
    };
    for note in ["a marker per run; a thin line joins", "the seeds of one configuration"] {
        area.draw(&Text::new(note, (10, y - 8), style.clone())).map_err(err)?;
        y += 20;
    }
    y += 8;
    for (i, name) in series.iter().enumerate() {
        let col = series_color(i);
        area.draw(&PathElement::new(vec![(10, y), (40, y)], col.stroke_width(1))).map_err(err)?;
        legend_marker(area, 0, (25, y), col.filled())?;
        line(name.clone(), &mut y)?;
    }
    for (k, m) in methods.iter().enumerate() {
        legend_marker(area, control_shape(k), (25, y), BLACK.filled())?;
        line(format!("{m} (control)"), &mut y)?;
    }
    area.draw(&PathElement::new(vec![(10, y), (40, y)], BLACK.stroke_width(2))).map_err(err)?;
    area.draw(&Circle::new((25, y), 8, BLACK.stroke_width(1))).map_err(err)?;
    line("the controls' frontier (configuration means)".into(), &mut y)
}

/// The frontier figure of each model with GFA runs and controls; none when T7 has nothing to
/// compare (`groups`: [`Results::groups`]).
pub fn figures(res: &Results, groups: &Groups, out: &Path, format: Format) -> Result<Vec<PathBuf>> {
    let Ok(cmp) = compare(res, groups) else { return Ok(vec![]) };
    let mut files = Vec::new();
    for view in &cmp.models {
        let figure = Figure { view, metric: cmp.metric };
        files.extend(save(&out.join(format!("frontier_{}", slug(&view.model))), format, &figure)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GFA methods are the registry's methods with GFA's penalty; GNR's penalty is not.
    #[test]
    fn gfa_runs_are_the_methods_with_the_gfa_penalty() {
        assert_eq!(gfa_methods(), ["gfa", "gfa_pgd_at"]);
        assert!(!trains_with_gfa("gnr") && !trains_with_gfa("standard"));
        assert!(!trains_with_gfa("no_such_method"));
    }

    /// A point matched or beaten in both coordinates is off the envelope; equal points both
    /// stay; the envelope runs by growing clean accuracy.
    #[test]
    fn envelope_keeps_the_points_nothing_beats_in_both() {
        let pts = [(0.9, 0.0), (0.6, 0.1), (0.62, 0.3), (0.8, 0.2), (0.8, 0.1), (0.5, 0.3)];
        // (0.6, 0.1) and (0.5, 0.3) lose to (0.62, 0.3); (0.8, 0.1) to (0.8, 0.2).
        assert_eq!(envelope(&pts), [2, 3, 0]);
        assert_eq!(envelope(&[(0.5, 0.5), (0.5, 0.5)]), [0, 1]);
        assert_eq!(envelope(&[]), Vec::<usize>::new());
    }

    /// Linear between the envelope's points, flat to the left, none to the right. The values
    /// are sums and products of a few numbers in [0, 1]: exact to 1e-15.
    #[test]
    fn interpolation_is_piecewise_linear_flat_on_the_left() {
        let line = [(0.6, 0.4), (0.8, 0.2), (0.9, 0.0)];
        let at = |x: f64| interpolate(&line, x);
        assert_eq!(at(0.3), Some(0.4));
        assert_eq!(at(0.6), Some(0.4));
        assert!((at(0.7).unwrap() - 0.3).abs() < 1e-15);
        assert!((at(0.85).unwrap() - 0.1).abs() < 1e-15);
        assert_eq!(at(0.9), Some(0.0));
        assert_eq!(at(0.95), None);
        assert_eq!(interpolate(&[], 0.5), None);
        assert_eq!(interpolate(&[(0.5, 0.2)], 0.4), Some(0.2));
        assert_eq!(interpolate(&[(0.5, 0.2)], 0.6), None);
    }

    /// The nearest point in clean accuracy; the more robust on a tie.
    #[test]
    fn nearest_is_by_clean_accuracy_then_robustness() {
        let line = [(0.5, 0.4), (0.7, 0.2), (0.9, 0.0)];
        assert_eq!(nearest(&line, 0.62), Some(1));
        assert_eq!(nearest(&line, 0.1), Some(0));
        assert_eq!(nearest(&line, 0.99), Some(2));
        // 0.75 and 0.25 are exact in binary: the two distances tie exactly.
        let tie = [(0.5, 0.4), (1.0, 0.1)];
        assert_eq!(nearest(&tie, 0.75), Some(0));
        assert_eq!(nearest(&[], 0.5), None);
    }
}
