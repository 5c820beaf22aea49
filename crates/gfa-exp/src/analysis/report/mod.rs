//! `gfa report DIR`: aggregate a results folder over seeds into `summary.csv` and the Markdown
//! tables of docs/method.md §9 (`tables/T1.md` … `T7.md`, all of them in `report.md`).
//!
//! One module per table (`t1` … `t7`, each a `table(res, ctx)` listed in [`build`]; the paper's
//! claims in [`claims`]); this module loads the CSVs, labels the runs, writes `summary.csv` and
//! holds what the tables share: the typed keys and the accuracy cell (`acc_cell`).
//!
//! Reads only CSVs. Per-run numbers are computed first, then each cell is the mean ± sample
//! standard deviation over the runs of one group: every grid key equal except the seed
//! ([`groups`]). Accuracies are shown in percent.
//! Two protocols are kept apart in every table:
//! - **paper**: attack preset `torchattacks`, subset `all_correct` (the paper's likely setup);
//! - **standard**: preset `reference`, every test point, with AutoAttack.
//!
//! The paper's claims are printed next to the measured numbers: GFA − ADV of up to +15.2 points
//! under APGD and +24.7 under FGSM, and DeepFool/EAD perturbations 20–30× those of standard
//! training (Lin et al., "DeepDefense: Layer-Wise Gradient-Feature Alignment", arXiv 2511.13749).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use gfa_core::device::Numerics;
use serde::{Deserialize, Serialize};

use self::base::{Ctx, Results, worst_rows};
use crate::analysis::stats::Stat;
use crate::results::records::{RunKey, SCHEMA_VERSION, TrainRow, write_rows};
use gfa_data::atomic::write_atomic;

pub mod base;
pub mod claims;
pub mod groups;
pub mod incomplete;
pub mod readme;
mod t1;
mod t2;
mod t3;
mod t4;
mod t5;
mod t6;
mod t7;

/// `summary.csv`: one row per (group of runs differing only by seed, measurement).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub schema_version: u32,
    pub experiment: String,
    pub model: String,
    pub method: String,
    pub lambda: Option<f64>,
    pub method_params: String,
    /// Short name of the method configuration used in the tables.
    pub label: String,
    /// `eval`, `worst_case`, `train` or `gfa_value`.
    pub source: String,
    pub attack: String,
    pub preset: String,
    pub norm: String,
    pub eps_text: String,
    pub eps: Option<f64>,
    pub mode: String,
    pub subset: String,
    /// `gfa_value` rows: split and tap.
    pub split: String,
    pub tap: String,
    pub metric: String,
    pub mean: f64,
    /// Sample standard deviation over seeds (empty with one seed).
    pub std: Option<f64>,
    pub n_seeds: usize,
    /// Evaluated points per run (eval rows).
    pub n: Option<usize>,
    /// Each run's value, `seed:value` pairs joined by `;` in seed order (`0:0.512;1:0.498`);
    /// values in the shortest form that reads back to the same `f64` ([`SummaryRow::seeds`]).
    #[serde(default)]
    pub per_seed: String,
    /// The precision of the rows aggregated (`fp32`, `tf32`): one value when they all agree,
    /// else every value, joined by `;` in name order.
    pub precision: String,
    /// Their `deterministic` values, the same way (`false`, `true`, `false;true`).
    pub deterministic: String,
}

impl SummaryRow {
    /// The per-seed values of `per_seed`, or an error naming the pair that does not parse.
    pub fn seeds(&self) -> Result<Vec<(u64, f64)>> {
        self.per_seed
            .split(';')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let parsed =
                    p.split_once(':').and_then(|(s, v)| Some((s.parse().ok()?, v.parse().ok()?)));
                parsed.ok_or_else(|| anyhow::anyhow!("per_seed: {p:?} is not seed:value"))
            })
            .collect()
    }
}

/// One run's value of a measurement and the run's seed.
type SeedValue = (u64, f64);

/// `per_seed` text of `(seed, value)` pairs, sorted by seed.
fn per_seed_text(values: &[SeedValue]) -> String {
    let mut v = values.to_vec();
    v.sort_by_key(|&(s, _)| s);
    v.iter().map(|(s, x)| format!("{s}:{x}")).collect::<Vec<_>>().join(";")
}

/// What `report` wrote.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    pub markdown: String,
    pub written: Vec<PathBuf>,
    pub summary: Vec<SummaryRow>,
    /// The planned runs that are not finished (the report says so above its tables).
    pub unfinished: Vec<incomplete::Unfinished>,
}

/// Build the summary and tables of a results folder and write them.
pub fn report(dir: &Path) -> Result<ReportOutput> {
    report_with(dir, false)
}

/// [`report`]; with `strict`, a planned run that is not finished is an error and nothing is
/// written (see [`incomplete`]).
pub fn report_with(dir: &Path, strict: bool) -> Result<ReportOutput> {
    let res = Results::load(dir)?;
    let mut out = build(&res);
    let gaps = incomplete::Gaps::load(dir, "", &res, &Ctx::of(&res))?;
    if strict && !gaps.unfinished.is_empty() {
        let runs: Vec<String> =
            gaps.unfinished.iter().map(|u| format!("{} ({})", u.run_id, u.state)).collect();
        anyhow::bail!(
            "{}: --strict: {} planned run{} not finished: {}; finish the grid with `gfa run` on \
             its experiment file (it resumes interrupted runs), or report without --strict",
            dir.display(),
            runs.len(),
            if runs.len() == 1 { " is" } else { "s are" },
            runs.join(", ")
        );
    }
    for (_, t) in out.tables.iter_mut() {
        *t = gaps.mark(t);
    }
    let marked = gaps.mark(&out.markdown);
    out.markdown = match marked.split_once("\n\n") {
        Some((title, rest)) => format!("{title}\n\n{}{rest}", gaps.note()),
        None => marked,
    };
    let mut written = Vec::new();
    let summary_path = dir.join("summary.csv");
    write_rows(&summary_path, &out.summary)?;
    written.push(summary_path);
    for (name, text) in &out.tables {
        let p = dir.join("tables").join(format!("{name}.md"));
        write_atomic(&p, text.as_bytes())?;
        written.push(p);
    }
    let p = dir.join("report.md");
    write_atomic(&p, out.markdown.as_bytes())?;
    written.push(p);
    Ok(ReportOutput {
        markdown: out.markdown,
        written,
        summary: out.summary,
        unfinished: gaps.unfinished,
    })
}

/// Tables and summary of loaded results (no I/O).
pub struct Built {
    pub summary: Vec<SummaryRow>,
    pub tables: Vec<(String, String)>,
    pub markdown: String,
}

pub fn build(res: &Results) -> Built {
    let ctx = Ctx::of(res);
    let summary = summarize(res, &ctx);
    // One line per table: its name and its module's `table`.
    let tables = vec![
        ("T1".to_string(), t1::table(res, &ctx)),
        ("T2".to_string(), t2::table(res, &ctx)),
        ("T3".to_string(), t3::table(res, &ctx)),
        ("T4".to_string(), t4::table(res, &ctx)),
        ("T5".to_string(), t5::table(res, &ctx)),
        ("T6".to_string(), t6::table(res)),
        ("T7".to_string(), t7::table(res, &ctx)),
    ];
    let experiment = res
        .eval
        .first()
        .map(|r| r.experiment.clone())
        .or_else(|| res.train.first().map(|r| r.experiment.clone()))
        .unwrap_or_default();
    let mut md = format!("# Results of experiment `{experiment}`\n\n");
    md.push_str(
        "Accuracies in %. With one seed, an accuracy is followed by its Wilson 95 % score \
         interval [low, high]: the true accuracies on the population the n points were drawn \
         from that these n points do not rule out. With several seeds, mean ± sample std over \
         seeds (each run's value is in eval.csv). GFA − ADV compares the two \
         methods on the same points: with one seed, the paired difference with Newcombe's 95 % \
         interval, and the exact McNemar p-value, the chance of points this lopsided between \
         the two methods were both equally robust; with several seeds, one p-value per seed. \
         Protocols: **paper** = torchattacks presets on the points every model classifies \
         correctly; **standard** = reference presets on all points.\n\n",
    );
    for (_, t) in &tables {
        md.push_str(t);
        md.push('\n');
    }
    Built { summary, tables, markdown: md }
}

/// `summary.csv`'s groups while they fill: per key (everything but the run and the value), the
/// first row's fields, the values of every run and the numerics of the rows they come from.
#[derive(Default)]
struct Summary {
    groups: BTreeMap<Vec<String>, (SummaryRow, Vec<SeedValue>, Vec<Numerics>)>,
}

impl Summary {
    /// A row with the run's key and `source`, the measurement left to the caller.
    fn base(k: &RunKey, label: String, source: &str) -> SummaryRow {
        SummaryRow {
            schema_version: SCHEMA_VERSION,
            experiment: k.experiment.clone(),
            model: k.model.clone(),
            method: k.method.clone(),
            lambda: k.lambda,
            method_params: k.method_params.clone(),
            label,
            source: source.into(),
            ..Default::default()
        }
    }

    /// The value `v`, computed at `numerics`, of the run with `seed` of the measurement `proto`
    /// describes (none: nothing).
    fn add(&mut self, proto: SummaryRow, (seed, numerics): (u64, Numerics), v: Option<f64>) {
        let Some(v) = v else { return };
        let k = vec![
            proto.model.clone(),
            proto.label.clone(),
            proto.source.clone(),
            proto.attack.clone(),
            proto.preset.clone(),
            proto.norm.clone(),
            proto.eps_text.clone(),
            proto.mode.clone(),
            proto.subset.clone(),
            proto.split.clone(),
            proto.tap.clone(),
            proto.metric.clone(),
        ];
        let group = self.groups.entry(k).or_insert_with(|| (proto, vec![], vec![]));
        group.1.push((seed, v));
        group.2.push(numerics);
    }

    fn eval(&mut self, res: &Results, ctx: &Ctx) {
        for r in &res.eval {
            let label = ctx.label(&r.run_id);
            for (metric, v) in [
                ("clean_acc", Some(r.clean_acc)),
                ("robust_acc", r.robust_acc),
                ("success_rate", r.success_rate),
                ("median_l1", r.median_l1),
                ("median_l2", r.median_l2),
                ("median_linf", r.median_linf),
            ] {
                let s = SummaryRow {
                    attack: r.attack.clone(),
                    preset: r.preset.clone(),
                    norm: r.norm.clone(),
                    eps_text: r.eps_text.clone(),
                    eps: r.eps,
                    mode: r.mode.clone(),
                    subset: r.subset.clone(),
                    metric: metric.into(),
                    n: Some(r.n),
                    ..Self::base(&r.key(), label.clone(), "eval")
                };
                self.add(s, (r.seed, r.numerics()), v);
            }
        }
    }

    fn worst_cases(&mut self, res: &Results, ctx: &Ctx) {
        // The cumulative row behind each worst case (its numerics are the worst case's).
        for (k, r) in &worst_rows(&res.eval) {
            let Some(acc) = r.robust_acc else { continue };
            let s = SummaryRow {
                attack: "suite".into(),
                preset: k.protocol.clone(),
                norm: k.budget.norm.clone(),
                eps_text: k.budget.eps_text.clone(),
                metric: "robust_acc".into(),
                ..Self::base(&r.key(), ctx.label(&r.run_id), "worst_case")
            };
            self.add(s, (r.seed, r.numerics()), Some(acc));
        }
    }

    /// Training: the last epoch of each run.
    fn train(&mut self, res: &Results, ctx: &Ctx) {
        let mut last: BTreeMap<String, &TrainRow> = BTreeMap::new();
        for r in &res.train {
            let e = last.entry(r.run_id.clone()).or_insert(r);
            if r.epoch > e.epoch {
                *e = r;
            }
        }
        for r in last.values() {
            let label = ctx.label(&r.run_id);
            for (metric, v) in [
                ("final_train_loss", Some(r.train_loss)),
                ("final_train_acc", Some(r.train_acc)),
                ("final_test_acc", r.test_acc),
            ] {
                let s = SummaryRow {
                    metric: metric.into(),
                    ..Self::base(&r.key(), label.clone(), "train")
                };
                self.add(s, (r.seed, r.numerics()), v);
            }
        }
    }

    fn gfa_value(&mut self, res: &Results, ctx: &Ctx) {
        for r in &res.gfa_value {
            let s = SummaryRow {
                split: r.split.clone(),
                tap: r.tap.clone(),
                metric: "gfa_value".into(),
                n: Some(r.n),
                ..Self::base(&r.key(), ctx.label(&r.run_id), "gfa_value")
            };
            self.add(s, (r.seed, r.numerics()), Some(r.value));
        }
    }

    /// Each group's row with the mean and sample std over its runs.
    fn rows(self) -> Vec<SummaryRow> {
        self.groups
            .into_values()
            .map(|(mut s, values, numerics)| {
                let xs: Vec<f64> = values.iter().map(|&(_, v)| v).collect();
                let st = Stat::of(&xs).expect("non-empty group");
                s.per_seed = per_seed_text(&values);
                s.precision = distinct(numerics.iter().map(|n| n.precision.to_string()));
                s.deterministic = distinct(numerics.iter().map(|n| n.deterministic.to_string()));
                s.mean = st.mean;
                s.std = st.std;
                s.n_seeds = st.n;
                s
            })
            .collect()
    }
}

/// The distinct values of `values`, joined by `;` in order.
fn distinct(values: impl Iterator<Item = String>) -> String {
    values.collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(";")
}

/// `summary.csv`: every measurement of every run, aggregated over seeds.
fn summarize(res: &Results, ctx: &Ctx) -> Vec<SummaryRow> {
    let mut s = Summary::default();
    s.eval(res, ctx);
    s.worst_cases(res, ctx);
    s.train(res, ctx);
    s.gfa_value(res, ctx);
    s.rows()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gfa_core::device::Precision;

    /// A summary row names the numerics of the rows it aggregates: one value when they agree,
    /// each value when the seeds ran at different ones.
    #[test]
    fn summary_rows_name_the_numerics_of_their_runs() {
        let fp32 = Numerics { precision: Precision::Fp32, deterministic: false };
        let tf32 = Numerics { precision: Precision::Tf32, deterministic: true };
        let mut s = Summary::default();
        let k = RunKey { model: "cnn".into(), ..RunKey::default() };
        for (metric, second) in [("same", fp32), ("mixed", tf32)] {
            let proto = SummaryRow { metric: metric.into(), ..Summary::base(&k, "l".into(), "x") };
            s.add(proto.clone(), (0, fp32), Some(0.5));
            s.add(proto, (1, second), Some(0.25));
        }
        let rows = s.rows();
        let of = |m: &str| rows.iter().find(|r| r.metric == m).unwrap();
        assert_eq!(
            (of("same").precision.as_str(), of("same").deterministic.as_str()),
            ("fp32", "false")
        );
        assert_eq!(
            (of("mixed").precision.as_str(), of("mixed").deterministic.as_str()),
            ("fp32;tf32", "false;true")
        );
        assert_eq!(of("mixed").per_seed, "0:0.5;1:0.25");
    }
}
