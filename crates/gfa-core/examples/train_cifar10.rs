//! Train one model on CIFAR-10 with the library trainer and print one line per epoch.
//!
//! `cargo run -p gfa-core --example train_cifar10 -- <data dir> [epochs] [method] [lambda] [width]`
//! with method `standard`, `gfa-first` or `gfa-deep`; Adam (lr 1e-3), batch 128, crop + flip,
//! seed 0. The `gfa train` command runs the same trainer with every option.
use gfa_core::method::gfa::Gfa;
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::regularizer::{Layers, RegularizerConfig};
use gfa_core::seed::seed_all;
use gfa_core::train::{OptimizerConfig, Schedule, TrainConfig, TrainOptions, summary_line};
use gfa_core::{Classifier, Method, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir =
        args.first().ok_or("usage: train_cifar10 <data dir> [epochs] [method] [lambda] [width]")?;
    let epochs: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let method = args.get(2).map(String::as_str).unwrap_or("standard");
    let lambda: f64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(0.3);
    let width: f64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(0.25);
    let splits = gfa_data::load_cifar10(std::path::Path::new(dir))?;
    let gfa = |layers| {
        Method::Gfa(Gfa(RegularizerConfig {
            layers: Some(layers),
            ..RegularizerConfig::with_lambda(lambda)
        }))
    };
    let method = match method {
        "standard" => Method::default(),
        "gfa-first" => gfa(Layers::First),
        "gfa-deep" => gfa(Layers::Deep),
        other => return Err(format!("unknown method {other}").into()),
    };
    let cfg = TrainConfig {
        epochs,
        batch_size: 128,
        optimizer: OptimizerConfig::adam(1e-3),
        schedule: Schedule::Constant,
        ..TrainConfig::default()
    };
    seed_all(0);
    let mut model = Classifier::new(
        &ModelSpec { arch: Arch::Cnn, width, ..ModelSpec::default() },
        tch::Device::Cpu,
    )?;
    let opts = TrainOptions { seed: 0, progress: true, ..TrainOptions::default() };
    let chance = 1.0 / model.num_classes() as f64;
    train(&mut model, &splits, &cfg, &method, &opts, &mut |r| {
        println!("{}", summary_line(r, epochs, chance));
        Ok(())
    })?;
    Ok(())
}
