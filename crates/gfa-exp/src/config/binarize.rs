//! The `[binarize]` table of an experiment file, and `[escalate] binarize`: the binarization test
//! (docs/method.md §7; the work is [`gfa_attacks::binarize`]) of one attack on each run's model:
//!
//! ```toml
//! [binarize]
//! attack = { kind = "pgd" }     # the attack tested: kind, preset, norm and its own keys
//! eps = "8/255"                 # ε, in the attack's norm
//! n = 100                       # test points (the first n of the test split)
//! subset = "all"                # only the runs of this protocol (every run when absent)
//! inner = 999                   # inner samples per point, the clean point included (default:
//!                               # 999, at most the model's feature dimension − boundary)
//! boundary = 1                  # samples on the ε-sphere per point
//! validation = 200              # fresh samples per class for the head's validation accuracy
//! steps = 300                   # Adam steps of the head
//! lr = 0.05                     # Adam's learning rate
//! batch_size = 500              # samples per forward pass
//! ```

use gfa_attacks::Eps;
use gfa_attacks::binarize::BinarizeOptions;
use serde::Deserialize;
use toml::{Table, Value};

use crate::config::keys::{FieldError, typed};
use crate::config::spec::{AttackEntry, Subset};

/// The `[binarize]` table, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Binarize {
    /// The attack under test (its `eps` is [`Binarize::eps`]).
    pub attack: AttackEntry,
    pub eps: Eps,
    /// Test points: the first `n` of the test split.
    pub n: usize,
    /// Only the runs evaluated on this subset (every run when `None`).
    pub subset: Option<Subset>,
    /// The library's settings (ε included).
    pub options: BinarizeOptions,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BinarizeTable {
    attack: Table,
    eps: Eps,
    #[serde(default = "hundred")]
    n: usize,
    subset: Option<Subset>,
    inner: Option<usize>,
    boundary: Option<usize>,
    validation: Option<usize>,
    steps: Option<usize>,
    lr: Option<f64>,
    batch_size: Option<usize>,
}

fn hundred() -> usize {
    100
}

/// An error at `path` inside the table.
fn at(path: &[&str], message: String) -> FieldError {
    FieldError { path: path.iter().map(|s| s.to_string()).collect(), message, suggestion: None }
}

impl Binarize {
    /// Check a `[binarize]` table; error paths are relative to it. Everything that does not need
    /// the run's model or images is checked here, before any run starts.
    pub fn from_table(t: &Table) -> Result<Binarize, FieldError> {
        let f: BinarizeTable = typed(t)?;
        if f.eps.value.is_nan() || f.eps.value <= 0.0 {
            let message = format!(
                "the binarization test needs eps > 0 (its boundary samples lie on the \
                 eps-sphere), got {}",
                f.eps.text
            );
            return Err(at(&["eps"], message));
        }
        if f.n == 0 {
            return Err(at(&["n"], "must be at least 1, got 0".into()));
        }
        if let Some(key) = ["eps", "subset", "name"].into_iter().find(|k| f.attack.contains_key(*k))
        {
            let message = format!(
                "the tested attack takes its budget and its runs from [binarize] (`eps`, \
                 `subset`) and has no name of its own: move `{key}` out of `attack`"
            );
            return Err(at(&["attack", key], message));
        }
        let mut entry = f.attack.clone();
        entry.insert("eps".into(), Value::Array(vec![Value::String(f.eps.text.clone())]));
        let attack = AttackEntry::from_table(&entry).map_err(|mut e| {
            e.path.insert(0, "attack".into());
            e
        })?;
        gfa_attacks::binarize::check_attack(&attack.spec).map_err(|e| {
            let key = if e.to_string().contains("l1") { "norm" } else { "kind" };
            at(&["attack", key], e.to_string())
        })?;
        let d = BinarizeOptions::default();
        let options = BinarizeOptions {
            eps: f.eps.value,
            inner: f.inner.or(d.inner),
            boundary: f.boundary.unwrap_or(d.boundary),
            validation: f.validation.unwrap_or(d.validation),
            steps: f.steps.unwrap_or(d.steps),
            lr: f.lr.unwrap_or(d.lr),
            batch_size: f.batch_size.unwrap_or(d.batch_size),
        };
        for (key, v) in [
            ("inner", options.inner.unwrap_or(1)),
            ("boundary", options.boundary),
            ("steps", options.steps),
            ("batch_size", options.batch_size),
        ] {
            if v == 0 {
                return Err(at(&[key], "must be at least 1, got 0".into()));
            }
        }
        if !(options.lr.is_finite() && options.lr > 0.0) {
            return Err(at(&["lr"], format!("must be a positive number, got {}", options.lr)));
        }
        Ok(Binarize { attack, eps: f.eps, n: f.n, subset: f.subset, options })
    }

    /// The table with every default filled (the form written to `config.toml` and hashed into
    /// the run ids of the runs it applies to).
    pub fn to_table(&self) -> Table {
        let mut attack = self.attack.to_table();
        for k in ["eps", "name", "subset"] {
            attack.remove(k);
        }
        let o = &self.options;
        let int = |v: usize| Value::Integer(v as i64);
        let mut t = Table::new();
        t.insert("attack".into(), Value::Table(attack));
        t.insert("eps".into(), Value::String(self.eps.text.clone()));
        t.insert("n".into(), int(self.n));
        if let Some(s) = self.subset {
            t.insert("subset".into(), Value::String(s.name().into()));
        }
        if let Some(inner) = o.inner {
            t.insert("inner".into(), int(inner));
        }
        t.insert("boundary".into(), int(o.boundary));
        t.insert("validation".into(), int(o.validation));
        t.insert("steps".into(), int(o.steps));
        t.insert("lr".into(), Value::Float(o.lr));
        t.insert("batch_size".into(), int(o.batch_size));
        t
    }

    /// Whether the test runs on the runs evaluated on `subset`.
    pub fn applies_to(&self, subset: Subset) -> bool {
        self.subset.is_none_or(|s| s == subset)
    }

    /// An error unless the test can run on a model of `arch` taking `shape` images: the model
    /// needs a tap after `input` (its features), ε must fit the threat model on such images.
    pub fn check_run(
        &self,
        arch: gfa_core::models::Arch,
        shape: [i64; 3],
    ) -> Result<(), FieldError> {
        if !arch.has_feature_taps() {
            let message = format!(
                "the binarization test reads a model's features before its logits (its last tap \
                 after `input`), and `{arch}` has no tap after `input`: leave these runs out \
                 with `subset`, or test a model with hidden layers (mlp, cnn, a ResNet)"
            );
            return Err(at(&[], message));
        }
        self.attack.check_eps(shape).map_err(|e| at(&["eps"], e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Binarize, FieldError> {
        Binarize::from_table(&toml::from_str(text).unwrap())
    }

    #[test]
    fn defaults_are_the_reference_settings_and_round_trip() {
        let b = parse("attack = { kind = \"pgd\" }\neps = \"8/255\"").unwrap();
        assert_eq!((b.n, b.subset, b.attack.kind.as_str()), (100, None, "pgd"));
        assert_eq!(b.options, BinarizeOptions { eps: 8.0 / 255.0, ..Default::default() });
        let again = Binarize::from_table(&b.to_table()).unwrap();
        assert_eq!(again, b);
    }

    #[test]
    fn mistakes_name_their_key() {
        let path = |text: &str| parse(text).unwrap_err().path;
        let pgd = "attack = { kind = \"pgd\" }";
        assert_eq!(path(&format!("{pgd}\neps = \"0\"")), vec!["eps"]);
        assert_eq!(path(&format!("{pgd}\neps = \"8/255\"\nn = 0")), vec!["n"]);
        assert_eq!(path(&format!("{pgd}\neps = \"8/255\"\nstpes = 3")), vec!["stpes"]);
        assert_eq!(path(&format!("{pgd}\neps = \"8/255\"\nlr = 0.0")), vec!["lr"]);
        let e = parse("attack = { kind = \"apgd-dlr\" }\neps = \"8/255\"").unwrap_err();
        assert_eq!(e.path, vec!["attack", "kind"]);
        assert!(e.message.contains("at least 3 classes"), "{}", e.message);
        let e = parse("attack = { kind = \"autoattack\" }\neps = \"8/255\"").unwrap_err();
        assert!(e.message.contains("at least 4 classes"), "{}", e.message);
        let e = parse("attack = { kind = \"transfer\" }\neps = \"8/255\"").unwrap_err();
        assert!(e.message.contains("surrogate"), "{}", e.message);
        let e = parse("attack = { kind = \"noise\", norm = \"l1\" }\neps = \"8\"").unwrap_err();
        assert_eq!(e.path, vec!["attack", "norm"]);
        let e = parse("attack = { kind = \"pgd\", stesp = 2 }\neps = \"8/255\"").unwrap_err();
        assert_eq!(e.path, vec!["attack", "stesp"], "{e:?}");
        let e = parse("attack = { kind = \"pgd\", eps = [\"8/255\"] }\neps = \"8/255\"");
        assert_eq!(e.unwrap_err().path, vec!["attack", "eps"]);
    }
}
