//! gfa-attacks' PGD as the trainer's inner maximization: every adversarial method trains with
//! it, lowers its own loss (on the inputs it trains on) over three epochs, and logs its terms
//! by name.
use gfa_attacks::InnerPgd;
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::train::TrainOptions;
use gfa_core::{Classifier, Method, TrainConfig, TrainMethod, train};

#[test]
fn adversarial_methods_lower_their_own_loss_with_the_pgd_of_the_attacks() {
    let data = gfa_data::synthetic(64, 8, 0);
    // (method, the terms it logs): every adversarial method, PGD-type loops at 2 steps.
    let methods = [
        (r#"{"kind": "pgd_at", "steps": 2}"#, vec![]),
        (r#"{"kind": "fast_at"}"#, vec![]),
        (r#"{"kind": "trades", "steps": 2}"#, vec!["kl"]),
        (r#"{"kind": "gradalign"}"#, vec!["align"]),
        (r#"{"kind": "gfa_pgd_at", "steps": 2, "lambda": 0.5}"#, vec!["gfa"]),
    ];
    let adversarial = Method::list()
        .into_iter()
        .filter(|m| serde_json::from_value::<Method>(m.example.clone()).unwrap().inner().is_some());
    assert_eq!(adversarial.count(), methods.len(), "a new adversarial method belongs here");
    // The CIFAR-10 recipe of docs/method.md §3 (SGD 0.1, momentum 0.9, cosine, crop + flip)
    // at a small batch.
    let cfg =
        TrainConfig { epochs: 3, batch_size: 8, eval_batch_size: 64, ..TrainConfig::default() };
    for (json, terms) in methods {
        let method: Method = serde_json::from_str(json).unwrap();
        gfa_core::seed::seed_all(6);
        let spec = ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::Cnn) };
        let mut model = Classifier::new(&spec, tch::Device::Cpu).unwrap();
        let opts = TrainOptions { seed: 2, perturbation: Some(&InnerPgd), ..Default::default() };
        let out = train(&mut model, &data, &cfg, &method, &opts, &mut |_| Ok(())).unwrap();
        let name = method.name();
        let losses: Vec<f64> = out.records.iter().map(|r| r.train_loss).collect();
        assert!(losses.iter().all(|l| l.is_finite()), "{name}: {losses:?}");
        assert!(losses[2] < losses[0], "{name}: {losses:?}");
        let names: Vec<&str> = out.records[0].terms.keys().map(String::as_str).collect();
        assert_eq!(names, terms, "{name}");
    }
}
