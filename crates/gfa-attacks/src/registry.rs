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
use crate::facts::Loss::{Ce, Margin};
use crate::facts::{Access, Algorithm, Costed, Facts, Steps};
use crate::fgsm::{Fgsm, FgsmConfig};
use crate::noise::{Noise, NoiseConfig};
use crate::pgd::{Pgd, PgdConfig};
use crate::preset::{Configured, Preset};
use crate::square::{Square, SquareConfig};
use crate::transfer::{self, NoSurrogates, Surrogates, TransferConfig};
use crate::{AttackError, Norm, Result};

/// One row of `gfa list attacks`.
#[derive(Debug, Clone, Serialize)]
pub struct AttackInfo {
    pub kind: &'static str,
    pub facts: Facts,
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

fn info<T: Configured + Serialize>(kind: &'static str, facts: Facts) -> AttackInfo {
    let norm = T::norms()[0];
    AttackInfo {
        kind,
        facts,
        norms: T::norms().to_vec(),
        presets: Preset::ALL.to_vec(),
        defaults: serde_json::to_string(&T::preset_for(Preset::Reference, norm))
            .unwrap_or_default(),
    }
}

/// The build function of a registry line: the config and the surrogate loader (transfer).
type BuildFn<C> = fn(&C, &dyn Surrogates) -> Result<Box<dyn Attack>>;

macro_rules! registry {
    ($( $kind:literal => $variant:ident($cfg:ty),
        facts($alg:ident, $family:ident, $access:ident, $steps:ident, $loss:expr,
            trace: $traced:literal),
        $build:expr; )*) => {
        /// An attack as written in a config: its `kind` plus its settings.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "kind")]
        pub enum AttackSpec {
            $( #[serde(rename = $kind)] $variant($cfg), )*
        }

        /// The facts of a registered kind (`None` for a kind this build does not know).
        pub fn facts(kind: &str) -> Option<Facts> {
            match kind {
                $( $kind => Some(Facts {
                    algorithm: Algorithm::$alg,
                    family: Family::$family,
                    access: Access::$access,
                    steps: Steps::$steps,
                    loss: $loss,
                    cost_key: <$cfg as Costed>::COST_KEY,
                    traced: $traced,
                }), )*
                _ => None,
            }
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

            /// The attack, ready to run; a transfer attack loads its surrogate through
            /// `surrogates`.
            pub fn build_with(&self, surrogates: &dyn Surrogates) -> Result<Box<dyn Attack>> {
                match self {
                    $( Self::$variant(c) => {
                        let f: BuildFn<$cfg> = $build;
                        f(c, surrogates)
                    } )*
                }
            }

            /// The registry name (`"pgd"`, `"apgd-ce"`, …).
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $kind, )*
                }
            }

            /// Image-gradient evaluations per attacked point and budget (see [`Costed`]).
            pub fn cost_per_point(&self) -> f64 {
                match self {
                    $( Self::$variant(c) => c.cost_per_point(), )*
                }
            }

            /// What an attacked point costs at one budget, by outcome (see
            /// [`Costed::point_cost`]).
            pub fn point_cost(&self) -> crate::facts::PointCost {
                match self {
                    $( Self::$variant(c) => c.point_cost(), )*
                }
            }
        }

        /// The registered attacks, their facts, threat models, presets and reference defaults.
        pub fn list() -> Vec<AttackInfo> {
            vec![ $( info::<$cfg>($kind, facts($kind).expect("registered")), )* ]
        }
    };
}

registry! {
    "fgsm" => Fgsm(FgsmConfig),
        facts(Fgsm, FixedBudget, WhiteBox, Single, Some(Ce), trace: false),
        |c, _| Ok(Box::new(Fgsm::new(c.clone())?));
    "pgd" => Pgd(PgdConfig), facts(Pgd, FixedBudget, WhiteBox, Iterative, Some(Ce), trace: true),
        |c, _| Ok(Box::new(Pgd::new(c.clone())?));
    "apgd-ce" => ApgdCe(ApgdConfig),
        facts(Apgd, FixedBudget, WhiteBox, Iterative, Some(Ce), trace: true),
        |c, _| Ok(Box::new(Apgd::new(c.clone(), ApgdLoss::Ce)?));
    "apgd-dlr" => ApgdDlr(ApgdConfig),
        facts(Apgd, FixedBudget, WhiteBox, Iterative, Some(Margin), trace: true),
        |c, _| Ok(Box::new(Apgd::new(c.clone(), ApgdLoss::Dlr)?));
    "apgd-t" => ApgdT(ApgdTConfig),
        facts(Apgd, FixedBudget, WhiteBox, Iterative, Some(Margin), trace: true),
        |c, _| Ok(Box::new(ApgdT::new(c.clone())?));
    "square" => Square(SquareConfig),
        facts(Square, FixedBudget, BlackBox, Iterative, Some(Margin), trace: true),
        |c, _| Ok(Box::new(Square::new(c.clone())?));
    "autoattack" => AutoAttack(AutoAttackConfig),
        facts(AutoAttack, FixedBudget, WhiteBox, Iterative, None, trace: false),
        |c, _| Ok(Box::new(AutoAttack::new(c.clone())?));
    "deepfool" => DeepFool(DeepFoolConfig),
        facts(DeepFool, MinimumNorm, WhiteBox, Iterative, None, trace: true),
        |c, _| Ok(Box::new(DeepFool::new(c.clone())?));
    "cw" => Cw(CwConfig), facts(Cw, MinimumNorm, WhiteBox, Iterative, Some(Margin), trace: true),
        |c, _| Ok(Box::new(Cw::new(c.clone())?));
    "ead-en" => EadEn(EadEnConfig),
        facts(Ead, MinimumNorm, WhiteBox, Iterative, Some(Margin), trace: true),
        |c, _| Ok(Box::new(Ead::new(c.0.clone())?));
    "ead-l1" => EadL1(EadL1Config),
        facts(Ead, MinimumNorm, WhiteBox, Iterative, Some(Margin), trace: true),
        |c, _| Ok(Box::new(Ead::new(c.0.clone())?));
    "fab" => Fab(FabConfig), facts(Fab, MinimumNorm, WhiteBox, Iterative, None, trace: true),
        |c, _| Ok(Box::new(Fab::new(c.clone())?));
    "fab-t" => FabT(FabTConfig), facts(Fab, MinimumNorm, WhiteBox, Iterative, None, trace: true),
        |c, _| Ok(Box::new(Fab::new(c.0.clone())?));
    "noise" => Noise(NoiseConfig), facts(Noise, FixedBudget, Random, Single, None, trace: false),
        |c, _| Ok(Box::new(Noise::new(c.clone())?));
    "transfer" => Transfer(TransferConfig),
        facts(Transfer, FixedBudget, Surrogate, Iterative, None, trace: true),
        |c, s| Ok(Box::new(transfer::build(c, s)?));
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

impl Costed for EadEnConfig {
    const COST_KEY: Option<&'static str> = EadConfig::COST_KEY;
    fn cost_per_point(&self) -> f64 {
        self.0.cost_per_point()
    }
    fn point_cost(&self) -> crate::facts::PointCost {
        self.0.point_cost()
    }
}

impl Costed for EadL1Config {
    const COST_KEY: Option<&'static str> = EadConfig::COST_KEY;
    fn cost_per_point(&self) -> f64 {
        self.0.cost_per_point()
    }
    fn point_cost(&self) -> crate::facts::PointCost {
        self.0.point_cost()
    }
}

impl Costed for FabTConfig {
    const COST_KEY: Option<&'static str> = FabConfig::COST_KEY;
    fn cost_per_point(&self) -> f64 {
        self.0.cost_per_point()
    }
    fn point_cost(&self) -> crate::facts::PointCost {
        self.0.point_cost()
    }
}

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

    /// The attack, ready to run (a transfer attack needs [`AttackSpec::build_with`]).
    pub fn build(&self) -> Result<Box<dyn Attack>> {
        self.build_with(&NoSurrogates)
    }

    /// The facts of this attack's kind.
    pub fn facts(&self) -> Facts {
        facts(self.kind()).expect("a spec's kind is registered")
    }

    /// The fewest classes a model needs for this attack to run: APGD-DLR's ratio reads the
    /// third-largest logit (3), APGD-T's targeted DLR the fourth (4, auto-attack's
    /// `APGDAttack_targeted`); AutoAttack needs what its components need, a transfer attack what
    /// its inner attack needs; every other attack runs on two classes. The binarization test
    /// ([`crate::binarize`]) asks it before it builds a two-class model.
    pub fn min_classes(&self) -> i64 {
        match self {
            Self::ApgdDlr(_) => 3,
            Self::ApgdT(_) => 4,
            Self::AutoAttack(c) => {
                let components = match c.version {
                    crate::autoattack::AaVersion::Standard => {
                        crate::autoattack::standard_components(c.preset, c.norm).unwrap_or_default()
                    }
                    crate::autoattack::AaVersion::Custom => c.attacks.clone(),
                };
                components.iter().map(Self::min_classes).max().unwrap_or(2)
            }
            Self::Transfer(c) => c.attack.min_classes(),
            _ => 2,
        }
    }

    /// The surrogate a transfer attack names (`None` for every other attack).
    pub fn surrogate(&self) -> Option<&str> {
        match self {
            Self::Transfer(c) => Some(&c.surrogate),
            _ => None,
        }
    }

    /// A spec from a result row's `kind` and `attack_config` (the attack's settings as JSON).
    pub fn from_config_json(kind: &str, config: &str) -> Result<Self> {
        let mut v: Value = serde_json::from_str(config)
            .map_err(|e| AttackError::Config(format!("attack \"{kind}\": config {config}: {e}")))?;
        match v.as_object_mut() {
            Some(m) => {
                m.insert("kind".into(), Value::String(kind.into()));
            }
            None => {
                return Err(AttackError::Config(format!(
                    "attack \"{kind}\": config {config} is not a JSON object"
                )));
            }
        }
        Self::from_value(v)
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
        if let Self::Transfer(c) = self {
            return c.norm;
        }
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

    /// Loads a linear model under any name (for building transfer attacks).
    struct AnyLinear;

    impl Surrogates for AnyLinear {
        fn load(&self, name: &str) -> Result<(String, gfa_core::Classifier)> {
            let spec = gfa_core::ModelSpec {
                arch: gfa_core::models::Arch::Linear,
                ..gfa_core::ModelSpec::default()
            };
            let m = gfa_core::Classifier::new(&spec, tch::Device::Cpu)
                .map_err(|e| AttackError::Config(e.to_string()))?;
            Ok((name.to_string(), m))
        }
    }

    /// Each kind builds an attack that reports that kind, the registry's family, and every norm
    /// the registry lists for it, and whose config_json is the spec's own settings and reads
    /// back as the same spec (what the report does with a result row).
    #[test]
    fn built_attacks_describe_themselves_as_registered() {
        for info in list() {
            for norm in &info.norms {
                let v = serde_json::json!({ "kind": info.kind, "norm": norm });
                let spec = AttackSpec::from_value(v).unwrap();
                let a = spec.build_with(&AnyLinear).unwrap();
                assert_eq!(a.name(), info.kind);
                assert_eq!(a.family(), info.facts.family, "{}", info.kind);
                assert_eq!(a.norm(), *norm, "{}", info.kind);
                assert_eq!(spec.norm(), *norm, "{}", info.kind);
                let mut want = serde_json::to_value(&spec).unwrap();
                want.as_object_mut().unwrap().remove("kind");
                let got: Value = serde_json::from_str(&a.config_json()).unwrap();
                assert_eq!(got, want, "{}", info.kind);
                assert_eq!(
                    AttackSpec::from_config_json(info.kind, &a.config_json()).unwrap(),
                    spec
                );
            }
        }
    }

    /// Every kind's cost model: positive for every preset and norm, and, where a config key
    /// counts the cost, doubling that key raises it.
    #[test]
    fn cost_models_read_their_key() {
        for info in list() {
            for &p in Preset::ALL {
                for &n in &info.norms {
                    let spec = AttackSpec::preset(info.kind, p, n).unwrap();
                    let cost = spec.cost_per_point();
                    assert!(cost > 0.0, "{} {p} {n}: {cost}", info.kind);
                    let Some(key) = info.facts.cost_key else { continue };
                    let mut v = serde_json::to_value(&spec).unwrap();
                    let old = v[key].as_u64().unwrap_or_else(|| panic!("{}: {key}", info.kind));
                    v[key] = Value::from(2 * old);
                    let more = AttackSpec::from_value(v).unwrap().cost_per_point();
                    assert!(
                        more > cost,
                        "{} {p} {n}: {key} doubled, cost {cost} -> {more}",
                        info.kind
                    );
                }
            }
        }
    }

    /// Every kind's cost by outcome: a point it does not fool pays the whole budget
    /// (`cost_per_point`), one it fools a positive part of it at most.
    #[test]
    fn point_costs_are_at_most_the_budget() {
        for info in list() {
            for &p in Preset::ALL {
                for &n in &info.norms {
                    let spec = AttackSpec::preset(info.kind, p, n).unwrap();
                    let c = spec.point_cost();
                    assert_eq!(c.robust, spec.cost_per_point(), "{} {p} {n}", info.kind);
                    assert!(c.fooled > 0.0 && c.fooled <= c.robust, "{} {p} {n}: {c:?}", info.kind);
                }
            }
        }
    }

    /// A transfer attack needs its surrogate loaded; its inner attack is a fixed-budget white-box
    /// attack of the transfer's norm.
    #[test]
    fn transfer_needs_a_surrogate_and_a_matching_inner_attack() {
        let spec = AttackSpec::from_value(serde_json::json!({ "kind": "transfer" })).unwrap();
        assert_eq!(spec.surrogate(), Some("standard"));
        let e = spec.build().unwrap_err().to_string();
        assert!(e.contains("surrogate") && e.contains("--surrogate"), "{e}");
        let v = serde_json::json!({ "kind": "transfer", "norm": "l2",
            "attack": { "kind": "pgd", "steps": 3 } });
        let e = AttackSpec::from_value(v).unwrap().build_with(&AnyLinear).unwrap_err().to_string();
        assert!(e.contains("norm = \"l2\""), "{e}");
        let v = serde_json::json!({ "kind": "transfer", "attack": { "kind": "deepfool" } });
        let e = AttackSpec::from_value(v).unwrap().build_with(&AnyLinear).unwrap_err().to_string();
        assert!(e.contains("fixed-budget white-box"), "{e}");
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
