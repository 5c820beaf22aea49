//! The `[escalate]` table of an experiment file: which runs `gfa escalate` evaluates again, and
//! with which added attacks (the driver is [`crate::run::escalate`]):
//!
//! ```toml
//! [escalate]
//! reference = "standard"       # the method kind of the reference runs (their mean over seeds)
//! margin = 0.05                # qualify: worst case more than 5 points above the reference's
//! norm = "linf"                # where the worst cases are compared
//! eps = "8/255"
//! skip_collapsed = false       # true: leave out the runs the masking checks call collapsed
//! attacks = [{ kind = "autoattack", eps = ["8/255"] }]   # entries as in [[attacks]]
//! binarize = { attack = { kind = "apgd-ce" }, eps = "8/255", n = 100 }   # optional: as [binarize]
//! ```

use serde::Deserialize;
use toml::Table;

use gfa_attacks::{Eps, Norm};

use crate::config::binarize::Binarize;
use crate::config::keys::{FieldError, closest, typed};
use crate::config::spec::{AttackEntry, STANDARD};

/// The `[escalate]` table, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalate {
    /// Method kind of the reference runs.
    pub reference: String,
    /// How far (a fraction, 0.05 = 5 points) a run's worst case must exceed the reference's.
    pub margin: f64,
    pub norm: Norm,
    pub eps: Eps,
    /// Leave out runs whose masking verdict is `collapsed`.
    pub skip_collapsed: bool,
    /// The attacks added for the qualifying runs.
    pub attacks: Vec<AttackEntry>,
    /// A binarization test for the qualifying runs (replacing the grid's `[binarize]` there).
    pub binarize: Option<Binarize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalateTable {
    #[serde(default = "standard")]
    reference: String,
    #[serde(default = "five_points")]
    margin: f64,
    #[serde(default)]
    norm: Norm,
    eps: Eps,
    #[serde(default)]
    skip_collapsed: bool,
    attacks: Vec<Table>,
    binarize: Option<Table>,
}

fn standard() -> String {
    STANDARD.into()
}

fn five_points() -> f64 {
    0.05
}

impl Escalate {
    /// Check an `[escalate]` table; `suite` is the grid's `[[attacks]]` (an added attack may
    /// not reuse one of its names). Error paths are relative to the table.
    pub fn from_table(t: &Table, suite: &[AttackEntry]) -> Result<Escalate, FieldError> {
        let f: EscalateTable = typed(t)?;
        let at = |path: &[&str], message: String, suggestion: Option<String>| FieldError {
            path: path.iter().map(|s| s.to_string()).collect(),
            message,
            suggestion,
        };
        let kinds = gfa_core::Method::KINDS;
        if !kinds.contains(&f.reference.as_str()) {
            let message = format!("not a method kind; expected one of {}", kinds.join(", "));
            return Err(at(&["reference"], message, closest(&f.reference, kinds.iter().copied())));
        }
        if !(f.margin >= 0.0 && f.margin < 1.0) {
            let message = format!("a fraction in [0, 1) (0.05 = 5 points), got {}", f.margin);
            return Err(at(&["margin"], message, None));
        }
        if f.attacks.is_empty() {
            let message = "name at least one attack, as an [[attacks]] entry (kind, eps, options)";
            return Err(at(&["attacks"], message.into(), None));
        }
        let mut attacks: Vec<AttackEntry> = Vec::new();
        for (i, t) in f.attacks.iter().enumerate() {
            let entry = AttackEntry::from_table(t).map_err(|mut e| {
                e.path.splice(0..0, ["attacks".to_string(), i.to_string()]);
                e
            })?;
            let clash = |b: &AttackEntry| b.name == entry.name && b.preset == entry.preset;
            if suite.iter().chain(&attacks).any(clash) {
                let message = format!(
                    "attack name '{}' ({}) is already in the suite; give it a distinct `name`",
                    entry.name, entry.preset
                );
                return Err(at(&["attacks", &i.to_string()], message, None));
            }
            attacks.push(entry);
        }
        let binarize = match &f.binarize {
            None => None,
            Some(t) => Some(Binarize::from_table(t).map_err(|mut e| {
                e.path.insert(0, "binarize".into());
                e
            })?),
        };
        Ok(Escalate {
            binarize,
            reference: f.reference,
            margin: f.margin,
            norm: f.norm,
            eps: f.eps,
            skip_collapsed: f.skip_collapsed,
            attacks,
        })
    }
}

/// An `[escalate]` table for tests: AutoAttack at L∞ 8/255 above the default reference.
#[cfg(test)]
pub(crate) fn example() -> Escalate {
    let t = "eps = \"8/255\"\nattacks = [{ kind = \"autoattack\", eps = [\"8/255\"] }]";
    Escalate::from_table(&toml::from_str(t).unwrap(), &[]).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    fn esc() -> Escalate {
        example()
    }

    #[test]
    fn the_table_parses_with_defaults_and_names_mistakes() {
        let e = esc();
        assert_eq!((e.reference.as_str(), e.margin, e.norm), ("standard", 0.05, Norm::Linf));
        assert!(!e.skip_collapsed);
        assert_eq!(e.attacks[0].kind, "autoattack");
        let bad = |text: &str| {
            let suite =
                [AttackEntry::from_table(&table("kind = \"pgd\"\neps = [\"8/255\"]")).unwrap()];
            Escalate::from_table(&table(text), &suite).unwrap_err()
        };
        let aa = "attacks = [{ kind = \"autoattack\", eps = [\"8/255\"] }]";
        let e = bad(&format!("eps = \"8/255\"\nreference = \"standart\"\n{aa}"));
        assert_eq!((e.path, e.suggestion.as_deref()), (vec!["reference".into()], Some("standard")));
        let e = bad(&format!("eps = \"8/255\"\nmargn = 0.1\n{aa}"));
        assert_eq!(e.suggestion.as_deref(), Some("margin"));
        let e = bad(&format!("eps = \"8/255\"\nmargin = 5\n{aa}"));
        assert_eq!(e.path, vec!["margin"]);
        let e = bad("eps = \"8/255\"\nattacks = [{ kind = \"pgd\", eps = [\"8/255\"] }]");
        assert!(e.message.contains("already in the suite"), "{e:?}");
        let e = bad("eps = \"8/255\"\nattacks = [{ kind = \"autoatack\", eps = [\"8/255\"] }]");
        assert_eq!(e.path, vec!["attacks", "0", "kind"], "{e:?}");
        let e = bad("eps = \"8/255\"\nattacks = []");
        assert_eq!(e.path, vec!["attacks"]);
        let e = bad(&format!(
            "eps = \"8/255\"\n{aa}\nbinarize = {{ attack = {{ kind = \"apgd-t\" }}, eps = \"8/255\" }}"
        ));
        assert_eq!(e.path, vec!["binarize", "attack", "kind"], "{e:?}");
        let t = format!(
            "eps = \"8/255\"\n{aa}\nbinarize = {{ attack = {{ kind = \"apgd-ce\" }}, eps = \"8/255\", n = 5 }}"
        );
        let b = Escalate::from_table(&table(&t), &[]).unwrap().binarize.unwrap();
        assert_eq!((b.attack.kind.as_str(), b.n), ("apgd-ce", 5));
    }
}
