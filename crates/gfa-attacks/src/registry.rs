//! The attack registry: every attack gfa can run, by its `kind`.
//!
//! An attack is written in TOML as `{ kind = "apgd-ce", norm = "l2", preset = "torchattacks",
//! n_iter = 50 }`: the config starts from the preset's defaults for that norm and the given keys
//! override them; an unknown key or kind is an error naming the attack. Adding an attack is one
//! file plus one line in the [`registry!`] table below; `gfa list attacks` prints [`list`].
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::apgd::{Apgd, ApgdConfig, ApgdLoss, ApgdT, ApgdTConfig};
use crate::attack::{Attack, Family};
use crate::autoattack::{AutoAttack, AutoAttackConfig};
use crate::cw::{Cw, CwConfig};
use crate::deepfool::{DeepFool, DeepFoolConfig};
use crate::ead::{Ead, EadConfig, EadRule};
use crate::fab::{Fab, FabConfig};
use crate::fgsm::{Fgsm, FgsmConfig};
use crate::noise::{Noise, NoiseConfig};
use crate::pgd::{Pgd, PgdConfig};
use crate::preset::{Configured, Preset};
use crate::square::{Square, SquareConfig};
use crate::{AttackError, Norm, Result};

/// One row of `gfa list attacks`.
#[derive(Debug, Clone, Serialize)]
pub struct AttackInfo {
    pub kind: &'static str,
    pub family: Family,
    pub norms: Vec<Norm>,
    pub presets: Vec<Preset>,
    /// The reference defaults for the first supported norm, as JSON.
    pub defaults: String,
}

/// Merge `rest` over the defaults of `preset` for `norm`, then parse strictly.
fn merge<T: Configured + Serialize + DeserializeOwned>(
    kind: &str,
    preset: Preset,
    norm: Option<Norm>,
    mut rest: Map<String, Value>,
) -> Result<T> {
    // An attack defined for one norm only (CW: L2, EAD: L1) need not name it.
    let norm = norm.unwrap_or(T::norms()[0]);
    if !T::norms().contains(&norm) {
        return Err(AttackError::UnsupportedNorm { attack: kind.into(), norm: norm.to_string() });
    }
    let mut base = match serde_json::to_value(T::preset_for(preset, norm)) {
        Ok(Value::Object(m)) => m,
        _ => return Err(AttackError::Config(format!("attack {kind}: defaults do not serialize"))),
    };
    if !base.contains_key("norm") {
        rest.remove("norm");
    }
    base.extend(rest);
    serde_json::from_value(Value::Object(base))
        .map_err(|e| AttackError::Config(format!("attack \"{kind}\": {e}")))
}

fn info<T: Configured + Serialize>(kind: &'static str, family: Family) -> AttackInfo {
    let norm = T::norms()[0];
    AttackInfo {
        kind,
        family,
        norms: T::norms().to_vec(),
        presets: Preset::ALL.to_vec(),
        defaults: serde_json::to_string(&T::preset_for(Preset::Reference, norm))
            .unwrap_or_default(),
    }
}

macro_rules! registry {
    ($( $kind:literal => $variant:ident($cfg:ty), $family:expr, $build:expr; )*) => {
        /// An attack as written in a config: its `kind` plus its settings.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "kind")]
        pub enum AttackSpec {
            $( #[serde(rename = $kind)] $variant($cfg), )*
        }

        impl AttackSpec {
            /// Every registered kind.
            pub const KINDS: &[&str] = &[$($kind),*];

            fn from_parts(
                kind: &str,
                preset: Preset,
                norm: Option<Norm>,
                rest: Map<String, Value>,
            ) -> Result<Self> {
                match kind {
                    $( $kind => Ok(Self::$variant(merge::<$cfg>(kind, preset, norm, rest)?)), )*
                    other => Err(AttackError::Config(format!(
                        "unknown attack kind \"{other}\"; known kinds: {}",
                        Self::KINDS.join(", ")
                    ))),
                }
            }

            /// The attack, ready to run.
            pub fn build(&self) -> Result<Box<dyn Attack>> {
                match self {
                    $( Self::$variant(c) => {
                        let f: fn(&$cfg) -> Result<Box<dyn Attack>> = $build;
                        f(c)
                    } )*
                }
            }

            /// The registry name (`"pgd"`, `"apgd-ce"`, …).
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $kind, )*
                }
            }
        }

        /// The registered attacks, their threat models, presets and reference defaults.
        pub fn list() -> Vec<AttackInfo> {
            vec![ $( info::<$cfg>($kind, $family), )* ]
        }
    };
}

registry! {
    "fgsm" => Fgsm(FgsmConfig), Family::FixedBudget,
        |c| Ok(Box::new(Fgsm::new(c.clone())?));
    "pgd" => Pgd(PgdConfig), Family::FixedBudget,
        |c| Ok(Box::new(Pgd::new(c.clone())?));
    "apgd-ce" => ApgdCe(ApgdConfig), Family::FixedBudget,
        |c| Ok(Box::new(Apgd::new(c.clone(), ApgdLoss::Ce)?));
    "apgd-dlr" => ApgdDlr(ApgdConfig), Family::FixedBudget,
        |c| Ok(Box::new(Apgd::new(c.clone(), ApgdLoss::Dlr)?));
    "apgd-t" => ApgdT(ApgdTConfig), Family::FixedBudget,
        |c| Ok(Box::new(ApgdT::new(c.clone())?));
    "square" => Square(SquareConfig), Family::FixedBudget,
        |c| Ok(Box::new(Square::new(c.clone())?));
    "autoattack" => AutoAttack(AutoAttackConfig), Family::FixedBudget,
        |c| Ok(Box::new(AutoAttack::new(c.clone())?));
    "deepfool" => DeepFool(DeepFoolConfig), Family::MinimumNorm,
        |c| Ok(Box::new(DeepFool::new(c.clone())?));
    "cw" => Cw(CwConfig), Family::MinimumNorm,
        |c| Ok(Box::new(Cw::new(c.clone())?));
    "ead-en" => EadEn(EadEnConfig), Family::MinimumNorm,
        |c| Ok(Box::new(Ead::new(c.0.clone())?));
    "ead-l1" => EadL1(EadL1Config), Family::MinimumNorm,
        |c| Ok(Box::new(Ead::new(c.0.clone())?));
    "fab" => Fab(FabConfig), Family::MinimumNorm,
        |c| Ok(Box::new(Fab::new(c.clone())?));
    "fab-t" => FabT(FabTConfig), Family::MinimumNorm,
        |c| Ok(Box::new(Fab::new(c.0.clone())?));
    "noise" => Noise(NoiseConfig), Family::FixedBudget,
        |c| Ok(Box::new(Noise::new(c.clone())?));
}

/// EAD with the elastic-net decision rule (`kind = "ead-en"`, torchattacks' `EADEN`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EadEnConfig(pub EadConfig);

/// EAD with the L1 decision rule (`kind = "ead-l1"`, torchattacks' `EADL1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EadL1Config(pub EadConfig);

/// FAB-T, the targeted FAB of AutoAttack standard (`kind = "fab-t"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FabTConfig(pub FabConfig);

impl Configured for DeepFoolConfig {
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        let base = match preset {
            Preset::Reference => Self::default(),
            Preset::Torchattacks => Self::torchattacks(),
        };
        Self { norm, ..base }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::L2, Norm::Linf]
    }
}

impl Configured for CwConfig {
    fn preset_for(preset: Preset, _norm: Norm) -> Self {
        match preset {
            Preset::Reference => Self::default(),
            Preset::Torchattacks => Self::torchattacks(),
        }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::L2]
    }
}

fn ead_for(preset: Preset, rule: EadRule) -> EadConfig {
    match preset {
        Preset::Reference => EadConfig { rule, ..EadConfig::default() },
        Preset::Torchattacks => EadConfig::torchattacks(rule),
    }
}

impl Configured for EadEnConfig {
    fn preset_for(preset: Preset, _norm: Norm) -> Self {
        Self(ead_for(preset, EadRule::En))
    }
    fn norms() -> &'static [Norm] {
        &[Norm::L1]
    }
}

impl Configured for EadL1Config {
    fn preset_for(preset: Preset, _norm: Norm) -> Self {
        Self(ead_for(preset, EadRule::L1))
    }
    fn norms() -> &'static [Norm] {
        &[Norm::L1]
    }
}

impl Configured for FabConfig {
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        let base = match preset {
            Preset::Reference => Self::default(),
            Preset::Torchattacks => Self::torchattacks(),
        };
        Self { norm, ..base }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::Linf, Norm::L2]
    }
}

impl Configured for FabTConfig {
    /// Reference: AutoAttack standard's FAB-T; torchattacks: `FAB(multi_targeted=True,
    /// steps=10)` as its AutoAttack builds it.
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        let base = match preset {
            Preset::Reference => FabConfig::fab_t(norm),
            Preset::Torchattacks => FabConfig { targeted: true, ..FabConfig::torchattacks() },
        };
        Self(FabConfig { norm, ..base })
    }
    fn norms() -> &'static [Norm] {
        &[Norm::Linf, Norm::L2]
    }
}

impl AttackSpec {
    /// Parse a spec from a JSON value (TOML tables convert losslessly).
    pub fn from_value(v: Value) -> Result<Self> {
        let Value::Object(mut obj) = v else {
            return Err(AttackError::Config(format!(
                "an attack must be a table with a `kind` key, got {v}"
            )));
        };
        let kind = match obj.remove("kind") {
            Some(Value::String(k)) => k,
            _ => {
                return Err(AttackError::Config(format!(
                    "an attack needs `kind = \"...\"`, one of: {}",
                    Self::KINDS.join(", ")
                )));
            }
        };
        let field = |key: &str| obj.get(key).cloned();
        let preset: Preset = match field("preset") {
            Some(p) => serde_json::from_value(p).map_err(|e| {
                AttackError::Config(format!(
                    "attack \"{kind}\": preset: {e} (reference | torchattacks)"
                ))
            })?,
            None => Preset::Reference,
        };
        let norm: Option<Norm> = match field("norm") {
            Some(n) => Some(serde_json::from_value(n).map_err(|e| {
                AttackError::Config(format!("attack \"{kind}\": norm: {e} (linf | l2 | l1)"))
            })?),
            None => None,
        };
        Self::from_parts(&kind, preset, norm, obj)
    }

    /// The spec of `kind` with the defaults of `preset` for `norm`.
    pub fn preset(kind: &str, preset: Preset, norm: Norm) -> Result<Self> {
        Self::from_value(serde_json::json!({ "kind": kind, "preset": preset, "norm": norm }))
    }

    fn field(&self, key: &str) -> Option<Value> {
        serde_json::to_value(self).ok()?.get(key).cloned()
    }

    /// The preset the config started from.
    pub fn preset_name(&self) -> Preset {
        self.field("preset").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default()
    }

    /// The threat model of the config.
    pub fn norm(&self) -> Norm {
        match self.build() {
            Ok(a) => a.norm(),
            Err(_) => {
                self.field("norm").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default()
            }
        }
    }
}

impl<'de> Deserialize<'de> for AttackSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Self::from_value(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind builds an attack that reports that kind, the registry's family, and every norm
    /// the registry lists for it, and whose config_json is the spec's own settings.
    #[test]
    fn built_attacks_describe_themselves_as_registered() {
        for info in list() {
            for norm in &info.norms {
                let v = serde_json::json!({ "kind": info.kind, "norm": norm });
                let spec = AttackSpec::from_value(v).unwrap();
                let a = spec.build().unwrap();
                assert_eq!(a.name(), info.kind);
                assert_eq!(a.family(), info.family, "{}", info.kind);
                assert_eq!(a.norm(), *norm, "{}", info.kind);
                let mut want = serde_json::to_value(&spec).unwrap();
                want.as_object_mut().unwrap().remove("kind");
                let got: Value = serde_json::from_str(&a.config_json()).unwrap();
                assert_eq!(got, want, "{}", info.kind);
            }
        }
    }

    #[test]
    fn presets_and_overrides_merge() {
        let v = serde_json::json!({ "kind": "pgd", "preset": "torchattacks", "steps": 20 });
        let AttackSpec::Pgd(c) = AttackSpec::from_value(v).unwrap() else { panic!() };
        let mut want = PgdConfig::preset_for(Preset::Torchattacks, Norm::Linf);
        want.steps = 20;
        assert_eq!(c, want);
        let v = serde_json::json!({ "kind": "apgd-ce", "norm": "l2" });
        let spec = AttackSpec::from_value(v).unwrap();
        assert_eq!(spec, AttackSpec::ApgdCe(ApgdConfig::preset_for(Preset::Reference, Norm::L2)));
        assert_eq!(spec.norm(), Norm::L2);
        assert_eq!(spec.kind(), "apgd-ce");
    }

    #[test]
    fn typos_and_unknown_kinds_are_errors() {
        let e = AttackSpec::from_value(serde_json::json!({ "kind": "pgd", "stpes": 3 }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("stpes") && e.contains("pgd"), "{e}");
        let e =
            AttackSpec::from_value(serde_json::json!({ "kind": "pgdd" })).unwrap_err().to_string();
        assert!(e.contains("pgdd") && e.contains("apgd-ce"), "{e}");
        let e = AttackSpec::from_value(serde_json::json!({ "kind": "fgsm", "norm": "l2" }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("l2"), "{e}");
    }

    #[test]
    fn specs_round_trip_and_list_covers_every_kind() {
        for info in list() {
            for &p in Preset::ALL {
                for &n in &info.norms {
                    let spec = AttackSpec::preset(info.kind, p, n).unwrap();
                    let json = serde_json::to_value(&spec).unwrap();
                    assert_eq!(AttackSpec::from_value(json).unwrap(), spec);
                    assert_eq!(spec.preset_name(), p);
                }
            }
        }
        assert_eq!(list().len(), AttackSpec::KINDS.len());
    }
}
