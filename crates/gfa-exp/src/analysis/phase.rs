//! The figures of a λ sweep of the penalty methods (GFA, GNR, GFA+PGD-AT), from a results
//! folder's CSVs, drawn by `gfa plot` when some variant has runs at two λ or more:
//!
//! - `phase_diagram_<model>`: x = λ (log scale); one panel each for clean accuracy, the
//!   worst case over the suite at L∞ 2/255 and 8/255 (standard protocol), the input-tap cosine
//!   on the test points (`gfa_value.csv`) and the collapse epoch (`train.csv`: when the fixed
//!   diagnostics batch fell to chance for good, in epochs of training; no point: no collapse).
//!   A marker per run; a line through the runs of one seed of each sweep series (seed 0
//!   solid, other seeds dashed), never through a mean over runs whose outcomes may differ in
//!   kind; the collapse epochs are markers only. The configurations without λ (standard
//!   training, PGD-AT, …) are dashed horizontal references at the mean of their runs (the
//!   legend says over how many). Each y-axis spans the runs and the references, padded.
//! - `tradeoff_clean_vs_robust_<model>`: worst case against clean accuracy at L∞ 2/255 and
//!   8/255, a point per run, the configurations without λ as black reference markers; axes
//!   fitted to the points.
//!
//! A series is a sweep series of [`crate::report::groups`]: a configuration with λ left out
//! (the method options that differ from the method's defaults and the other keys the grid
//! varies, e.g. `train.task_loss`), the same rule as the tables'.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::report::base::{Budget, Results, WorstKey, protocol, worst_cases};
use crate::analysis::report::groups::Groups;
use crate::analysis::stats::Stat;
use crate::analysis::style::{Draw, FONT_NAME, Format, color, err, save, slug};

/// The L∞ budgets of the worst-case panels.
pub const BUDGETS: [&str; 2] = ["2/255", "8/255"];

/// One run, as the figures see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPoint {
    pub run_id: String,
    pub model: String,
    /// The configuration's label for runs without λ (references); the sweep series otherwise.
    pub series: String,
    pub lambda: Option<f64>,
    pub seed: u64,
    pub clean: Option<f64>,
    /// Worst case at each of [`BUDGETS`].
    pub worst: [Option<f64>; 2],
    pub input_cos: Option<f64>,
    /// When the run fell to chance for good, if it did ([`collapse_of`]).
    pub collapse: Option<Collapse>,
}

impl RunPoint {
    /// The collapse epoch, whichever diagnostic dated it.
    pub fn collapse_epoch(&self) -> Option<f64> {
        self.collapse.map(|c| c.epoch)
    }
}

/// When a run fell to chance for good, and which diagnostic of `train.csv` says so.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Collapse {
    /// Epochs of training.
    pub epoch: f64,
    /// `true`: the fixed diagnostics batch (`collapse_step` of the last epoch, in epochs);
    /// `false`: the training accuracy (the `collapse` flag, set in every epoch from this one
    /// to the last, while the fixed batch was off chance at its last probe).
    pub fixed_batch: bool,
}

/// When the run whose `train.csv` rows are `rows` (in epoch order) fell to chance for good:
/// the fixed batch's date when it was at chance at the end of training; else, when the
/// training accuracy was at chance (the `collapse` flag) in the last epoch, the first epoch of
/// the unbroken run of flagged epochs that ends there; else none.
pub fn collapse_of(rows: &[&crate::results::records::TrainRow]) -> Option<Collapse> {
    let last = rows.last()?;
    let per_epoch = rows.first().and_then(|t| t.steps).filter(|s| *s > 0);
    if let (Some(steps), Some(at)) = (per_epoch, last.collapse_step) {
        return Some(Collapse { epoch: at as f64 / steps as f64, fixed_batch: true });
    }
    let flagged = rows.iter().rev().take_while(|t| t.collapse).last()?;
    Some(Collapse { epoch: flagged.epoch as f64, fixed_batch: false })
}

/// Per run id, the input tap's mean cosine on the test points (`gfa_value.csv`'s `test` split,
/// tap `input`).
pub fn input_cosines(res: &Results) -> BTreeMap<&str, f64> {
    res.gfa_value
        .iter()
        .filter(|g| g.split == "test" && g.tap == "input")
        .map(|g| (g.run_id.as_str(), g.value))
        .collect()
}

/// Every run of `res` with what the figures show of it (`groups`: [`Results::groups`]).
pub fn run_points(res: &Results, groups: &Groups) -> Vec<RunPoint> {
    let worst = worst_cases(&res.eval);
    let mut out: BTreeMap<String, RunPoint> = BTreeMap::new();
    for r in &res.eval {
        let p = protocol(&r.preset, &r.subset);
        let e = out.entry(r.run_id.clone()).or_insert_with(|| RunPoint {
            run_id: r.run_id.clone(),
            model: r.model.clone(),
            series: match r.lambda {
                Some(_) => groups.series(&r.run_id),
                None => groups.label(&r.run_id),
            },
            seed: r.seed,
            lambda: r.lambda,
            clean: None,
            worst: [None, None],
            input_cos: None,
            collapse: None,
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
    for (run, cos) in input_cosines(res) {
        if let Some(p) = out.get_mut(run) {
            p.input_cos = Some(cos);
        }
    }
    let mut by_run: BTreeMap<&str, Vec<&crate::results::records::TrainRow>> = BTreeMap::new();
    for t in &res.train {
        by_run.entry(t.run_id.as_str()).or_default().push(t);
    }
    for (run, mut rows) in by_run {
        rows.sort_by_key(|t| t.epoch);
        if let Some(p) = out.get_mut(run) {
            p.collapse = collapse_of(&rows);
        }
    }
    out.into_values().collect()
}

/// A figure's series: a marker at each of `points` (one per run) and, per seed, a line through
/// that seed's runs (`lines`: seed → points in λ order).
#[derive(Debug, Clone, Default)]
struct Series {
    lines: BTreeMap<u64, Vec<(f64, f64)>>,
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
    /// A line above the legend (what a line and a marker are).
    note: Option<String>,
    panels: Vec<Panel>,
    cols: usize,
    names: Vec<String>,
    refs: Vec<String>,
    size: (u32, u32),
}

fn series_style(i: usize) -> ShapeStyle {
    color(i).stroke_width(2)
}

/// Draw `pts` as markers of shape `shape` (0 circle, 1 square, 2 triangle, 3 cross) of radius
/// `r`.
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
            2 => $chart.draw_series(pts.map(|p| TriangleMarker::new(p, r + 1, style))).map(drop),
            _ => $chart
                .draw_series(pts.map(|p| Cross::new(p, r + 1, style.stroke_width(2))))
                .map(drop),
        }
        .map_err(err)?
    }};
}
pub(crate) use markers;

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
                for (k, line) in s.lines.values().enumerate().filter(|(_, l)| l.len() > 1) {
                    if k == 0 {
                        chart
                            .draw_series(LineSeries::new(line.clone(), series_style(i)))
                            .map_err(err)?;
                    } else {
                        let style = color(i).stroke_width(1);
                        chart
                            .draw_series(DashedLineSeries::new(line.clone(), 6, 4, style))
                            .map_err(err)?;
                    }
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
pub(crate) fn legend_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    shape: usize,
    at: (i32, i32),
    style: ShapeStyle,
) -> Result<()> {
    match shape {
        0 => area.draw(&Circle::new(at, 4, style)),
        1 => area.draw(&Rectangle::new([(at.0 - 5, at.1 - 5), (at.0 + 5, at.1 + 5)], style)),
        2 => area.draw(&TriangleMarker::new(at, 6, style)),
        _ => area.draw(&Cross::new(at, 5, style.stroke_width(2))),
    }
    .map_err(err)
}

/// The legend cell: a line and marker per series, then the references.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, f: &Figure) -> Result<()> {
    let style = (FONT_NAME, 14).into_font().color(&BLACK);
    let mut y = 16;
    if let Some(note) = &f.note {
        area.draw(&Text::new(note.clone(), (10, y - 8), style.clone())).map_err(err)?;
        y += 22;
    }
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
    ("collapse epoch (no point: none)", "epochs of training", |p| p.collapse_epoch()),
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

/// The series of one metric over λ: per sweep series, a point per run and a line per seed
/// (none with `lines` false).
fn sweep(
    points: &[&RunPoint],
    get: fn(&RunPoint) -> Option<f64>,
    names: &[String],
    lines: bool,
) -> Vec<Series> {
    names
        .iter()
        .map(|name| {
            let mut s = Series::default();
            for p in points.iter().filter(|p| &p.series == name) {
                let (Some(l), Some(v)) = (p.lambda, get(p)) else { continue };
                s.points.push((l, v));
                if lines {
                    s.lines.entry(p.seed).or_default().push((l, v));
                }
            }
            for line in s.lines.values_mut() {
                line.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            s
        })
        .collect()
}

/// A y-axis range that holds every value of `ys`, padded; within [0, 100] for accuracies.
pub(crate) fn fitted(ys: impl Iterator<Item = f64>, percent: bool) -> (f64, f64) {
    let (lo, hi) = padded(span(ys).unwrap_or((0.0, 1.0)));
    if percent { (lo.max(0.0), hi.min(100.0)) } else { (lo, hi) }
}

/// The two figures for each model whose penalty runs span two λ or more (`groups`:
/// [`Results::groups`]).
pub fn figures(res: &Results, groups: &Groups, out: &Path, format: Format) -> Result<Vec<PathBuf>> {
    let points = run_points(res, groups);
    let models: BTreeSet<&str> = points.iter().map(|p| p.model.as_str()).collect();
    let mut files = Vec::new();
    for model in models {
        let Some(sweep) = ModelSweep::of(&points, model) else { continue };
        let phase = Figure {
            note: Some(
                "a marker per run; lines join the runs of one seed (seed 0 solid, seed 1 dashed)"
                    .into(),
            ),
            panels: sweep.phase_panels(),
            cols: 2,
            names: sweep.names.clone(),
            refs: sweep.refs_legend.clone(),
            size: (1200, 1350),
        };
        files.extend(save(&out.join(format!("phase_diagram_{}", slug(model))), format, &phase)?);
        let tradeoff = Figure {
            note: Some("a marker per run".into()),
            panels: sweep.tradeoff_panels(),
            cols: 3,
            names: sweep.names,
            refs: sweep.refs_legend,
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
    /// The legend's name of each reference, with the number of runs its line is the mean of.
    refs_legend: Vec<String>,
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
        let refs_legend = refs
            .iter()
            .map(|n| match of_model.iter().filter(|p| &p.series == n).count() {
                1 => n.clone(),
                k => format!("{n}, mean of {k} runs"),
            })
            .collect();
        let (l0, l1) = span(swept.iter().filter_map(|p| p.lambda)).unwrap_or((0.01, 1.0));
        Some(ModelSweep { of_model, swept, names, refs, refs_legend, x: (l0 / 1.3, l1 * 1.3) })
    }

    /// The mean of `get` over the runs of the reference series `name`.
    fn ref_mean(&self, name: &str, get: fn(&RunPoint) -> Option<f64>) -> Option<f64> {
        let vs: Vec<f64> =
            self.of_model.iter().filter(|p| p.series == name).filter_map(|p| get(p)).collect();
        Stat::of(&vs).map(|s| s.mean)
    }

    /// The phase diagram: one panel per metric over λ, the references as flat lines (none on
    /// the collapse-epoch panel).
    fn phase_panels(&self) -> Vec<Panel> {
        let x = self.x;
        METRICS
            .iter()
            .map(|(title, y_label, get)| {
                let collapse = title.starts_with("collapse");
                let series = sweep(&self.swept, *get, &self.names, !collapse);
                let refs: Vec<(String, Vec<(f64, f64)>)> = if collapse {
                    vec![]
                } else {
                    self.refs
                        .iter()
                        .filter_map(|n| {
                            let m = self.ref_mean(n, *get)?;
                            Some((n.clone(), vec![(x.0, m), (x.1, m)]))
                        })
                        .collect()
                };
                let ys =
                    series.iter().flat_map(|s| &s.points).chain(refs.iter().flat_map(|r| &r.1));
                let y = fitted(ys.map(|p| p.1), y_label.contains('%'));
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

    /// The trade-off: clean against worst-case accuracy, one panel per budget, a marker per
    /// run, the references as single points.
    fn tradeoff_panels(&self) -> Vec<Panel> {
        BUDGETS
            .iter()
            .enumerate()
            .map(|(k, eps)| {
                let pair = |p: &RunPoint| Some((100.0 * p.clean?, 100.0 * p.worst[k]?));
                let series: Vec<Series> = self
                    .names
                    .iter()
                    .map(|n| Series {
                        lines: BTreeMap::new(),
                        points: self
                            .swept
                            .iter()
                            .filter(|p| &p.series == n)
                            .filter_map(|p| pair(p))
                            .collect(),
                    })
                    .collect();
                let refs: Vec<(String, Vec<(f64, f64)>)> = self
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
                let all =
                    || series.iter().flat_map(|s| &s.points).chain(refs.iter().flat_map(|r| &r.1));
                Panel {
                    title: format!("clean vs worst case, L∞ {eps}"),
                    x_label: "clean accuracy (%)".into(),
                    y_label: "worst-case robust accuracy (%)".into(),
                    x: fitted(all().map(|p| p.0), true),
                    y: fitted(all().map(|p| p.1), true),
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
    use crate::results::records::TrainRow;

    fn epoch(e: usize, collapse: bool, step: Option<usize>) -> TrainRow {
        TrainRow { epoch: e, collapse, collapse_step: step, steps: Some(100), ..Default::default() }
    }

    /// A run at chance on its training accuracy to the end is collapsed even when the fixed
    /// batch was off chance at its last probe; a run that broke out is not.
    #[test]
    fn collapse_reads_the_fixed_batch_then_the_training_accuracy() {
        let rows = [epoch(1, false, Some(100)), epoch(2, true, Some(175)), epoch(3, true, None)];
        let c = collapse_of(&rows.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!((c.epoch, c.fixed_batch), (2.0, false));
        let rows = [epoch(1, false, Some(0)), epoch(2, true, Some(0)), epoch(3, true, Some(0))];
        let c = collapse_of(&rows.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!((c.epoch, c.fixed_batch), (0.0, true));
        let rows = [epoch(1, false, Some(0)), epoch(2, true, None), epoch(3, false, None)];
        assert_eq!(collapse_of(&rows.iter().collect::<Vec<_>>()), None);
    }

    /// Each seed's runs make their own line; no point of a line is a mean over runs.
    #[test]
    fn sweep_lines_join_the_runs_of_one_seed() {
        let run = |seed: u64, l: f64, clean: f64| RunPoint {
            run_id: format!("{seed}-{l}"),
            model: "cnn".into(),
            series: "gfa layers=first".into(),
            lambda: Some(l),
            seed,
            clean: Some(clean),
            worst: [None, None],
            input_cos: None,
            collapse: None,
        };
        let runs = [run(0, 0.1, 0.4), run(1, 0.1, 0.1), run(0, 0.2, 0.36), run(1, 0.2, 0.12)];
        let refs: Vec<&RunPoint> = runs.iter().collect();
        let s = &sweep(&refs, |p| p.clean, &["gfa layers=first".into()], true)[0];
        assert_eq!(s.points.len(), 4);
        assert_eq!(s.lines[&0], vec![(0.1, 0.4), (0.2, 0.36)]);
        assert_eq!(s.lines[&1], vec![(0.1, 0.1), (0.2, 0.12)]);
        // Fitted axes hold the data and stay inside [0, 100] for accuracies.
        let (lo, hi) = fitted([2.0, 12.0].into_iter(), true);
        assert!((0.0..=2.0).contains(&lo) && (12.0..20.0).contains(&hi), "{lo} {hi}");
    }
}
