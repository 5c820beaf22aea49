//! `gfa plot DIR`: figures from a results folder's CSVs (never from a model), as SVG and PNG.
//!
//! One function per figure kind, each writing `figures/<name>.{svg,png}`:
//! - [`robust_vs_eps`] (F1): robust accuracy vs eps, one figure per (protocol, attack, norm),
//!   one line per run (eps 0 is the clean accuracy);
//! - [`landscapes`] (F2): loss heat map over (α radial, β tangential) per run, from
//!   `landscape.csv`;
//! - [`training_curves`]: training loss and test accuracy per epoch;
//! - [`crate::analysis::phase::figures`]: for a λ sweep, the phase diagram over λ (clean, worst case at
//!   L∞ 2/255 and 8/255, input-tap cosine, collapse epoch; a marker per run, a line through
//!   the runs of one seed of each sweep series) and the clean-vs-robust trade-off with the
//!   methods without λ as reference points;
//! - [`crate::analysis::frontier::figures`]: clean accuracy against AutoAttack (or the worst
//!   case over the suite) at L∞ 8/255, a marker per run, the seeds of a configuration joined,
//!   GFA configurations coloured by series, the controls in black and the frontier they trace
//!   (table T7's);
//! - [`norm_distributions`]: cumulative distributions of the per-point minimum perturbation
//!   norms of minimum-norm attacks, from `norms.csv`, standard training's median marked.
//!
//! Lines are named by [`line_names`]: the configuration's label of the one grouping rule
//! ([`crate::analysis::report::groups`]), with the seed where a configuration has several — a
//! line is one run, never a mean over seeds whose outcomes may differ in kind.
//!
//! Fonts, colours and the one SVG + PNG save are in [`crate::analysis::style`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::report::base::{Results, protocol};
use crate::analysis::report::groups::Groups;
use crate::analysis::stats::Stat;
use crate::analysis::style::{CHART_SIZE, Draw, FONT_NAME, Format, color, err, save, slug};
use crate::results::records::{EvalRow, LandscapeRow, NormRow, RunKey, TrainRow, read_rows};

/// Whether every value is an integer (up to the rounding of, e.g., 8/255 × 255).
fn all_integers(v: &[f64]) -> bool {
    !v.is_empty() && v.iter().all(|x| (x - x.round()).abs() < 1e-9)
}

/// A line chart: named series of (x, y) points.
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// Fixed y range (e.g. 0–100 for accuracies).
    pub y_range: Option<(f64, f64)>,
}

fn pad_range(lo: f64, hi: f64) -> (f64, f64) {
    if (hi - lo).abs() < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        let p = 0.05 * (hi - lo);
        (lo - p, hi + p)
    }
}

impl Draw for LineChart {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        draw_lines(root, self)
    }
}

fn draw_lines<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &LineChart) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let pts = c.series.iter().flat_map(|(_, p)| p.iter());
    let (xs, ys): (Vec<f64>, Vec<f64>) = pts.cloned().unzip();
    let fold = |v: &[f64]| {
        (
            v.iter().cloned().fold(f64::INFINITY, f64::min),
            v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let (x0, x1) = if xs.is_empty() { (0.0, 1.0) } else { pad_range(fold(&xs).0, fold(&xs).1) };
    let (y0, y1) = c.y_range.unwrap_or_else(|| {
        if ys.is_empty() { (0.0, 1.0) } else { pad_range(fold(&ys).0, fold(&ys).1) }
    });
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, (FONT_NAME, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let area = chart.plotting_area().dim_in_pixel();
    let mut mesh = chart.configure_mesh();
    // Integer values (epochs, eps in 1/255 units, accuracies in %) get integer tick labels;
    // others keep plotters' format.
    let integer = |x: &f64| format!("{x:.0}");
    if all_integers(&xs) {
        mesh.x_label_formatter(&integer);
    }
    let y_integer = match c.y_range {
        Some((lo, hi)) => hi - lo >= 10.0 && all_integers(&[lo, hi]),
        None => all_integers(&ys) && fold(&ys).1 - fold(&ys).0 >= 5.0,
    };
    if y_integer {
        mesh.y_label_formatter(&integer);
    }
    mesh.x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .label_style((FONT_NAME, 15))
        .axis_desc_style((FONT_NAME, 17))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in c.series.iter().enumerate() {
        let col = color(i);
        chart
            .draw_series(LineSeries::new(pts.iter().cloned(), col.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        // Markers cycle circle, triangle, square, cross: series of similar colors differ in
        // shape too.
        let p = pts.iter().cloned();
        match i % 4 {
            0 => chart.draw_series(p.map(|p| Circle::new(p, 4, col.filled()))),
            1 => chart.draw_series(p.map(|p| TriangleMarker::new(p, 6, col.filled()))),
            2 => {
                chart.draw_series(p.map(|p| {
                    EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], col.filled())
                }))
            }
            _ => chart.draw_series(p.map(|p| Cross::new(p, 5, col.stroke_width(2)))),
        }
        .map_err(err)?;
    }
    if !c.series.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT_NAME, 15))
            .position(legend_corner(&c.series, (x0, x1), (y0, y1), area))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// The legend position that covers the fewest data points of a plot area of `(width, height)`
/// pixels. The legend box is estimated from its 15 px labels: about 22 px high per series and
/// 8.5 px per character of the longest name, plus the line sample and padding.
fn legend_corner(
    series: &[(String, Vec<(f64, f64)>)],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    (width, height): (u32, u32),
) -> SeriesLabelPosition {
    let longest = series.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0);
    let w = ((longest as f64 * 8.5 + 48.0) / width.max(1) as f64).min(1.0);
    let h = ((series.len() as f64 * 22.0 + 16.0) / height.max(1) as f64).min(1.0);
    let mid = (1.0 - h) / 2.0;
    // (position, x range, y range) in plot fractions, y upwards; ties go to the first.
    let boxes = [
        (SeriesLabelPosition::UpperRight, (1.0 - w, 1.0), (1.0 - h, 1.0)),
        (SeriesLabelPosition::UpperLeft, (0.0, w), (1.0 - h, 1.0)),
        (SeriesLabelPosition::LowerRight, (1.0 - w, 1.0), (0.0, h)),
        (SeriesLabelPosition::LowerLeft, (0.0, w), (0.0, h)),
        (SeriesLabelPosition::MiddleRight, (1.0 - w, 1.0), (mid, mid + h)),
        (SeriesLabelPosition::MiddleLeft, (0.0, w), (mid, mid + h)),
    ];
    let covered = |xr: &(f64, f64), yr: &(f64, f64)| {
        series
            .iter()
            .flat_map(|(_, p)| p)
            .filter(|(x, y)| {
                let (fx, fy) = ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0));
                (xr.0..=xr.1).contains(&fx) && (yr.0..=yr.1).contains(&fy)
            })
            .count()
    };
    let (best, _, _) =
        boxes.iter().min_by_key(|(_, xr, yr)| covered(xr, yr)).expect("six candidate boxes");
    best.clone()
}

/// Viridis-like color for t in [0, 1].
fn heat(t: f64) -> RGBColor {
    const A: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 1.0 };
    let x = t * (A.len() - 1) as f64;
    let i = (x.floor() as usize).min(A.len() - 2);
    let f = x - i as f64;
    let lerp = |a: f64, b: f64| (a + f * (b - a)).round() as u8;
    RGBColor(lerp(A[i].0, A[i + 1].0), lerp(A[i].1, A[i + 1].1), lerp(A[i].2, A[i + 1].2))
}

/// A heat map of z over a regular (x, y) grid.
pub struct HeatMap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<(f64, f64, f64)>,
}

impl Draw for HeatMap {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        draw_heat(root, self)
    }
}

fn draw_heat<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, h: &HeatMap) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let uniq = |f: fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = h.points.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
        v
    };
    let (xs, ys) = (uniq(|p| p.0), uniq(|p| p.1));
    let step =
        |v: &[f64]| if v.len() > 1 { (v[v.len() - 1] - v[0]) / (v.len() - 1) as f64 } else { 1.0 };
    let (dx, dy) = (step(&xs), step(&ys));
    let zs: Vec<f64> = h.points.iter().map(|p| p.2).filter(|z| z.is_finite()).collect();
    let (z0, z1) = (
        zs.iter().cloned().fold(f64::INFINITY, f64::min),
        zs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    );
    let (main, bar) = root.split_horizontally(CHART_SIZE.0 - 110);
    let x_range =
        xs.first().copied().unwrap_or(0.0) - dx / 2.0..xs.last().copied().unwrap_or(1.0) + dx / 2.0;
    let y_range =
        ys.first().copied().unwrap_or(0.0) - dy / 2.0..ys.last().copied().unwrap_or(1.0) + dy / 2.0;
    let mut chart = ChartBuilder::on(&main)
        .caption(&h.title, (FONT_NAME, 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(h.x_label.as_str())
        .y_desc(h.y_label.as_str())
        .label_style((FONT_NAME, 15))
        .axis_desc_style((FONT_NAME, 17))
        .draw()
        .map_err(err)?;
    let span = if z1 > z0 { z1 - z0 } else { 1.0 };
    chart
        .draw_series(h.points.iter().map(|&(x, y, z)| {
            Rectangle::new(
                [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)],
                heat((z - z0) / span).filled(),
            )
        }))
        .map_err(err)?;
    // Color bar with the loss range.
    let mut cb = ChartBuilder::on(&bar)
        .margin_top(60)
        .margin_bottom(64)
        .margin_right(8)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..1.0, z0.min(z1)..z1.max(z0 + 1e-9))
        .map_err(err)?;
    cb.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("loss")
        .label_style((FONT_NAME, 13))
        .axis_desc_style((FONT_NAME, 15))
        .draw()
        .map_err(err)?;
    let n = 64;
    cb.draw_series((0..n).map(|i| {
        let a = z0 + span * i as f64 / n as f64;
        let b = z0 + span * (i + 1) as f64 / n as f64;
        Rectangle::new([(0.0, a), (1.0, b)], heat(i as f64 / (n - 1) as f64).filled())
    }))
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Run id → the name of its line in a figure: its configuration's label ([`Groups`]), then
/// `seed s` where the configuration has runs of several seeds, then `(model)` where the runs
/// are of several models.
pub fn line_names(
    groups: &Groups,
    keys: impl IntoIterator<Item = RunKey>,
) -> BTreeMap<String, String> {
    let mut runs: BTreeMap<String, RunKey> = BTreeMap::new();
    for k in keys {
        runs.entry(k.run_id.clone()).or_insert(k);
    }
    let models: BTreeSet<&str> = runs.values().map(|k| k.model.as_str()).collect();
    let mut seeds: BTreeMap<(&str, String), BTreeSet<u64>> = BTreeMap::new();
    for k in runs.values() {
        seeds.entry((k.model.as_str(), groups.label(&k.run_id))).or_default().insert(k.seed);
    }
    runs.iter()
        .map(|(id, k)| {
            let label = groups.label(id);
            let mut name = label.clone();
            if seeds[&(k.model.as_str(), label)].len() > 1 {
                name = format!("{name} seed {}", k.seed);
            }
            if models.len() > 1 {
                name = format!("{name} ({})", k.model);
            }
            (id.clone(), name)
        })
        .collect()
}

/// Attack name of the worst-case figures (`f1_robust_vs_eps_<protocol>_worst-case_<norm>`).
pub const WORST_CASE: &str = "worst-case";

/// An F1 figure: one protocol, attack (or [`WORST_CASE`]) and norm.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct F1Key {
    protocol: String,
    attack: String,
    norm: String,
}

/// One line of a figure over eps: per eps (keyed in units of 1e-9), the eps and the per-run
/// values.
type EpsPoints = BTreeMap<i64, (f64, Vec<f64>)>;

/// F1: robust accuracy (%) vs eps per (protocol, attack, norm), and the worst case over the
/// suite per (protocol, norm) from the cumulative rows; eps 0 is the clean accuracy.
// Long: one figure kind whose collect, worst-case and draw steps share the same maps.
pub fn robust_vs_eps(
    eval: &[EvalRow],
    groups: &Groups,
    out: &Path,
    format: Format,
) -> Result<Vec<PathBuf>> {
    let names = line_names(groups, eval.iter().map(EvalRow::key));
    // figure -> series -> eps -> per-run values
    let mut figs: BTreeMap<F1Key, BTreeMap<String, EpsPoints>> = BTreeMap::new();
    let mut clean: BTreeMap<(String, String), BTreeMap<String, f64>> = BTreeMap::new();
    // (protocol, norm) -> series -> eps -> run -> lowest cumulative robust accuracy
    type Worst = BTreeMap<String, BTreeMap<i64, (f64, BTreeMap<String, f64>)>>;
    let mut worst: BTreeMap<(String, String), Worst> = BTreeMap::new();
    for r in eval {
        let p = protocol(&r.preset, &r.subset);
        let name = names[&r.run_id].clone();
        clean.entry((p.clone(), name.clone())).or_default().insert(r.run_id.clone(), r.clean_acc);
        let (Some(e), Some(acc)) = (r.eps, r.robust_acc) else { continue };
        let k = (e * 1e9).round() as i64;
        if r.mode == "cumulative" {
            let w = worst
                .entry((p.clone(), r.norm.clone()))
                .or_default()
                .entry(name.clone())
                .or_default()
                .entry(k)
                .or_insert((e, BTreeMap::new()));
            let v = w.1.entry(r.run_id.clone()).or_insert(acc);
            *v = v.min(acc);
        }
        if r.mode != "individual" {
            continue;
        }
        figs.entry(F1Key { protocol: p, attack: r.attack.clone(), norm: r.norm.clone() })
            .or_default()
            .entry(name)
            .or_default()
            .entry(k)
            .or_insert((e, vec![]))
            .1
            .push(acc);
    }
    // The worst case over the suite, per norm: the summary figure of an experiment.
    for ((p, norm), series) in worst {
        let fig =
            figs.entry(F1Key { protocol: p, attack: WORST_CASE.to_string(), norm }).or_default();
        for (name, by_eps) in series {
            let s = fig.entry(name).or_default();
            for (k, (e, runs)) in by_eps {
                s.insert(k, (e, runs.into_values().collect()));
            }
        }
    }
    let mut files = Vec::new();
    for (F1Key { protocol: p, attack, norm }, series) in figs {
        // Linf budgets read as multiples of 1/255.
        let scale = if norm == "linf" { 255.0 } else { 1.0 };
        let series: Vec<(String, Vec<(f64, f64)>)> = series
            .into_iter()
            .map(|(name, by_eps)| {
                let mut pts = Vec::new();
                if let Some(c) = clean.get(&(p.clone(), name.clone())) {
                    let xs: Vec<f64> = c.values().cloned().collect();
                    pts.push((0.0, 100.0 * Stat::of(&xs).expect("non-empty").mean));
                }
                for (_, (e, xs)) in by_eps {
                    pts.push((e * scale, 100.0 * Stat::of(&xs).expect("non-empty").mean));
                }
                (name, pts)
            })
            .collect();
        let chart = LineChart {
            title: if attack == WORST_CASE {
                format!("worst case over the suite ({norm}, {p} protocol)")
            } else {
                format!("{attack} ({norm}, {p} protocol)")
            },
            x_label: if norm == "linf" {
                "eps (linf, in units of 1/255)".into()
            } else {
                format!("eps ({norm}, [0,1] pixels)")
            },
            y_label: "robust accuracy (%)".into(),
            series,
            y_range: Some((0.0, 100.0)),
        };
        let stem = out.join(format!("f1_robust_vs_eps_{}_{}_{}", slug(&p), slug(&attack), norm));
        files.extend(save(&stem, format, &chart)?);
    }
    Ok(files)
}

/// F2: loss-landscape heat maps, one per run.
pub fn landscapes(
    rows: &[LandscapeRow],
    groups: &Groups,
    out: &Path,
    format: Format,
) -> Result<Vec<PathBuf>> {
    let mut by_run: BTreeMap<String, Vec<&LandscapeRow>> = BTreeMap::new();
    for r in rows {
        by_run.entry(r.run_id.clone()).or_default().push(r);
    }
    let mut files = Vec::new();
    for (run, rs) in by_run {
        let r0 = rs[0];
        let label = &groups.label(&run);
        let h = HeatMap {
            title: format!("loss landscape: {label}, {} seed {} ({run})", r0.model, r0.seed),
            x_label: "α (radial)".into(),
            y_label: "β (tangential)".into(),
            points: rs.iter().map(|r| (r.alpha, r.beta, r.loss)).collect(),
        };
        // No '.' in the stem (λ = 0.1): the extension is set after it.
        let name = format!("f2_landscape_{}_{}_seed{}_{run}", slug(label), r0.model, r0.seed);
        let stem = out.join(name.replace('.', "_"));
        files.extend(save(&stem, format, &h)?);
    }
    Ok(files)
}

/// Training loss and test accuracy per epoch, one line per run ([`line_names`]).
pub fn training_curves(
    train: &[TrainRow],
    groups: &Groups,
    out: &Path,
    format: Format,
) -> Result<Vec<PathBuf>> {
    if train.is_empty() {
        return Ok(vec![]);
    }
    let names = line_names(groups, train.iter().map(TrainRow::key));
    let mut files = Vec::new();
    for (metric, title, ylab, scale, get) in [
        (
            "train_loss",
            "training loss",
            "loss",
            1.0,
            (|r: &TrainRow| Some(r.train_loss)) as fn(&TrainRow) -> Option<f64>,
        ),
        ("test_acc", "test accuracy during training", "accuracy (%)", 100.0, |r: &TrainRow| {
            r.test_acc
        }),
    ] {
        let mut series: BTreeMap<String, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
        for r in train {
            let Some(v) = get(r) else { continue };
            let name = names[&r.run_id].clone();
            series.entry(name).or_default().entry(r.epoch).or_default().push(v * scale);
        }
        if series.is_empty() {
            continue;
        }
        let chart = LineChart {
            title: title.into(),
            x_label: "epoch".into(),
            y_label: ylab.into(),
            series: series
                .into_iter()
                .map(|(n, by)| {
                    (
                        n,
                        by.into_iter()
                            .map(|(e, xs)| (e as f64, Stat::of(&xs).expect("non-empty").mean))
                            .collect(),
                    )
                })
                .collect(),
            y_range: None,
        };
        files.extend(save(&out.join(format!("train_{metric}")), format, &chart)?);
    }
    Ok(files)
}

/// Per minimum-norm attack (and preset and norm), the cumulative distribution of the per-point
/// minimum perturbation norms of each model: at norm x, the fraction of the attacked points
/// fooled with a perturbation of at most x (it ends at the attack's success rate). A vertical
/// line marks standard training's median.
pub fn norm_distributions(
    rows: &[NormRow],
    groups: &Groups,
    out: &Path,
    format: Format,
) -> Result<Vec<PathBuf>> {
    let names = line_names(groups, rows.iter().map(NormRow::key));
    let mut files = Vec::new();
    // Per (attack, preset, norm) and label: the found norms and the number of attacked points.
    type Found = BTreeMap<String, (Vec<f64>, usize, bool)>;
    let mut groups: BTreeMap<(String, String, &str), Found> = BTreeMap::new();
    let own_norms = own_norms(rows);
    for r in rows {
        let label = names[&r.run_id].clone();
        for (norm, v) in [("l1", r.l1), ("l2", r.l2), ("linf", r.linf)] {
            // A failed point has every norm empty: it counts for the attack's own norm, which
            // the other rows of its attack name.
            let failed_here = own_norms.get(&(r.attack.as_str(), r.preset.as_str())) == Some(&norm);
            let own = v.is_some() || (!r.success && failed_here);
            if !own {
                continue;
            }
            let e = groups
                .entry((r.attack.clone(), r.preset.clone(), norm))
                .or_default()
                .entry(label.clone())
                .or_default();
            e.0.extend(v);
            e.1 += 1;
            e.2 |= r.method == crate::config::spec::STANDARD;
        }
    }
    for ((attack, preset, norm), by_label) in groups {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        let mut standard_median = None;
        for (name, (mut xs, total, standard)) in by_label {
            xs.sort_by(f64::total_cmp);
            if standard && !xs.is_empty() {
                let m = xs.len();
                standard_median = Some((xs[(m - 1) / 2] + xs[m / 2]) / 2.0);
            }
            let pts = xs
                .iter()
                .enumerate()
                .map(|(i, x)| (*x, (i + 1) as f64 / total.max(1) as f64))
                .collect();
            series.push((name, pts));
        }
        if let Some(m) = standard_median {
            series.push((format!("standard median {m:.3}"), vec![(m, 0.0), (m, 1.0)]));
        }
        let chart = LineChart {
            title: format!("{attack} ({preset}): smallest {norm} perturbation per point"),
            x_label: format!("{norm} norm"),
            y_label: "fraction of attacked points fooled".into(),
            series,
            y_range: Some((0.0, 1.0)),
        };
        let stem = out.join(format!("norms_{}_{}_{norm}", slug(&attack), slug(&preset)));
        files.extend(save(&stem, format, &chart)?);
    }
    Ok(files)
}

/// Per (attack, preset), its threat model: the norm its successful rows fill in.
fn own_norms(rows: &[NormRow]) -> BTreeMap<(&str, &str), &'static str> {
    let mut out = BTreeMap::new();
    for o in rows {
        let norm = match (o.l1, o.l2, o.linf) {
            (Some(_), _, _) => "l1",
            (_, Some(_), _) => "l2",
            (_, _, Some(_)) => "linf",
            _ => continue,
        };
        out.insert((o.attack.as_str(), o.preset.as_str()), norm);
    }
    out
}

/// Every figure of a results folder, into `DIR/figures/`.
pub fn plot_dir(dir: &Path, format: Format) -> Result<Vec<PathBuf>> {
    let res = Results::load(dir)?;
    let out = dir.join("figures");
    std::fs::create_dir_all(&out)?;
    let groups = res.groups();
    let mut files = robust_vs_eps(&res.eval, &groups, &out, format)?;
    files.extend(training_curves(&res.train, &groups, &out, format)?);
    let land = dir.join("landscape.csv");
    if land.is_file() {
        files.extend(landscapes(&read_rows(&land)?, &groups, &out, format)?);
    }
    let norms = dir.join("norms.csv");
    if norms.is_file() {
        files.extend(norm_distributions(&read_rows(&norms)?, &groups, &out, format)?);
    }
    files.extend(crate::analysis::phase::figures(&res, &groups, &out, format)?);
    files.extend(crate::analysis::frontier::figures(&res, &groups, &out, format)?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twelve series get twelve colors (a grid of nine methods gave two of them one color).
    #[test]
    fn twelve_series_twelve_colors() {
        let colors: BTreeSet<(u8, u8, u8)> = (0..12)
            .map(|i| {
                let RGBColor(r, g, b) = color(i);
                (r, g, b)
            })
            .collect();
        assert_eq!(colors.len(), 12);
        // 8/255 × 255 is an integer up to rounding: eps ticks in 1/255 units print as integers.
        assert!(all_integers(&[2.0 / 255.0 * 255.0, 8.0 / 255.0 * 255.0, 64.0]));
        assert!(!all_integers(&[0.5, 1.0]) && !all_integers(&[]));
    }

    #[test]
    fn slug_is_file_safe() {
        assert_eq!(slug("gfa λ=0.1 #2"), "gfa_0.1_2");
        assert_eq!(slug("apgd-ce"), "apgd-ce");
    }

    #[test]
    fn legend_avoids_the_data() {
        let at = |pts: Vec<(f64, f64)>| {
            let s = vec![("a".to_string(), pts), ("b".to_string(), vec![])];
            legend_corner(&s, (0.0, 10.0), (0.0, 100.0), (700, 440))
        };
        // A rising curve crosses the lower-left and upper-right corners.
        use SeriesLabelPosition::*;
        let rising: Vec<_> = (0..=10).map(|e| (e as f64, 10.0 * e as f64)).collect();
        assert!([UpperLeft, LowerRight].contains(&at(rising)));
        // A flat line at the top leaves the lower corners; one at the bottom the upper ones.
        let top: Vec<_> = (0..=10).map(|e| (e as f64, 95.0)).collect();
        assert_eq!(at(top), LowerRight);
        let bottom: Vec<_> = (0..=10).map(|e| (e as f64, 5.0)).collect();
        assert_eq!(at(bottom), UpperRight);
    }

    #[test]
    fn heat_endpoints() {
        assert_eq!(heat(0.0), RGBColor(68, 1, 84));
        assert_eq!(heat(1.0), RGBColor(253, 231, 37));
    }
}
