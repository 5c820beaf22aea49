//! placeholder
use std::path::{Path, PathBuf};
pub fn plot_dir(_dir: &Path, _f: crate::cli::PlotFormat) -> anyhow::Result<Vec<PathBuf>> { Ok(vec![]) }
