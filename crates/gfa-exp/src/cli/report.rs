//! `gfa report` and `gfa plot`: the tables and the figures of a results folder.

use anyhow::Result;

use crate::analysis::style::Format;
use crate::analysis::{plot, report};
use crate::cli::args::{PlotArgs, PlotFormat, ReportArgs};

/// `gfa report DIR`: `summary.csv`, the tables and `report.md`, printed and written.
pub fn report(args: &ReportArgs) -> Result<i32> {
    let out = report::report_with(&args.dir, args.strict)?;
    println!("{}", out.markdown);
    if !out.unfinished.is_empty() {
        eprintln!(
            "warning: {} planned runs of {} are not finished (listed above the tables; \
             --strict makes this an error)",
            out.unfinished.len(),
            args.dir.display()
        );
    }
    eprintln!(
        "wrote {}",
        out.written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    Ok(0)
}

/// `gfa plot DIR [--format]`: every figure the folder's records support.
pub fn plot(args: &PlotArgs) -> Result<i32> {
    let files = plot::plot_dir(&args.dir, args.format.into())?;
    for f in &files {
        println!("{}", f.display());
    }
    Ok(0)
}

impl From<PlotFormat> for Format {
    fn from(f: PlotFormat) -> Format {
        match f {
            PlotFormat::Svg => Format::Svg,
            PlotFormat::Png => Format::Png,
            PlotFormat::Both => Format::Both,
        }
    }
}
