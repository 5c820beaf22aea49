//! `gfa data fetch`: download a dataset in its official layout, with a progress bar.

use anyhow::{Context, Result};

use crate::cli::args::DatasetArg;

/// `gfa data fetch [cifar10 | fashion-mnist] [--dir DIR]`, with a progress bar.
pub fn fetch(dataset: DatasetArg, dir: Option<std::path::PathBuf>) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg}")
            .expect("valid template"),
    );
    let mut show = |name: &str, done: u64, total: Option<u64>| {
        bar.set_message(name.to_string());
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    };
    let (name, dir, out) = match dataset {
        DatasetArg::Cifar10 => {
            let dir = dir.unwrap_or_else(|| gfa_data::cifar10::DEFAULT_DATA_DIR.into());
            let out = gfa_data::fetch::fetch_official(&dir, |d, t| show("CIFAR-10", d, t));
            ("CIFAR-10", dir, out)
        }
        DatasetArg::FashionMnist => {
            let dir = dir.unwrap_or_else(|| gfa_data::fashion::DEFAULT_DIR.into());
            let out = gfa_data::fetch::fetch_official_fashion_mnist(&dir, &mut show);
            ("Fashion-MNIST", dir, out)
        }
    };
    bar.finish_and_clear();
    let out = out.with_context(|| format!("fetching {name} into {}", dir.display()))?;
    println!("{name} is in {}", out.display());
    Ok(())
}
