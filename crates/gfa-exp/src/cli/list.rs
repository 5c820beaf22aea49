//! `gfa list`: what an experiment TOML may name (models, methods, attacks, presets, sections).

use crate::cli::args::ListWhat;
use crate::config::{keys, spec};

pub fn list(what: ListWhat) {
    match what {
        ListWhat::Models => {
            for m in gfa_core::models::catalog() {
                println!(
                    "{:<16} {:>11} params  taps: {}  ({})",
                    m.name,
                    m.parameters,
                    m.taps.join(","),
                    m.description
                );
            }
        }
        ListWhat::Methods => {
            for m in gfa_core::Method::list() {
                let also = if m.unwritten.is_empty() {
                    String::new()
                } else {
                    format!("\n            also: {}", m.unwritten.join(", "))
                };
                println!(
                    "{:<11} {:>4} grad/step  {}\n            e.g. {}{also}",
                    m.kind,
                    m.grads_per_step,
                    m.summary,
                    keys::method_inline(&keys::json_table(&m.example))
                );
            }
        }
        ListWhat::Attacks => {
            for a in gfa_attacks::registry::list() {
                let norms: Vec<String> = a.norms.iter().map(|n| n.to_string()).collect();
                let f = a.facts;
                let trace = if f.traced { ", traced" } else { "" };
                println!(
                    "{:<11} {} ({:?}, {:?}, {:?}{trace}) norms: {}  defaults: {}",
                    a.kind,
                    f.algorithm.name(),
                    f.family,
                    f.access,
                    f.steps,
                    norms.join(","),
                    a.defaults
                );
            }
        }
        ListWhat::Presets => spec::PRESETS.iter().for_each(|m| println!("{m}")),
        ListWhat::Sections => spec::RUN_SECTIONS.iter().for_each(|m| println!("{m}")),
    }
}
