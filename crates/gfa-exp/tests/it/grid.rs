//! Golden expansions of small TOMLs, run-id stability, overrides and error messages.
use std::path::Path;

use gfa_exp::config::grid::{ExperimentSpec, canonical_spec, run_id_of};
use toml::Value;

use super::SMALL;

fn parse(text: &str, set: &[&str]) -> Result<ExperimentSpec, gfa_exp::config::keys::ConfigError> {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    ExperimentSpec::parse(Path::new("exp.toml"), text, &set)
}

fn err(text: &str, set: &[&str]) -> String {
    match parse(text, set).and_then(|s| s.expand()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn small_grid_expands_in_order() {
    let spec = parse(SMALL, &[]).unwrap();
    assert_eq!(spec.name, "small");
    assert_eq!(spec.len(), 8);
    let runs = spec.expand().unwrap();
    let got: Vec<(usize, u64, String)> =
        runs.iter().map(|r| (r.index, r.seed, r.axes_text())).collect();
    let lam = |l: &str, lr: &str, s: &str| {
        format!("method.lambda={l}; train.optimizer.lr={lr}; train.schedule.kind={s}")
    };
    let want = vec![
        (1, 0, lam("0.1", "0.1", "cosine")),
        (2, 1, lam("0.1", "0.1", "cosine")),
        (3, 0, lam("0.1", "0.01", "constant")),
        (4, 1, lam("0.1", "0.01", "constant")),
        (5, 0, lam("1.0", "0.1", "cosine")),
        (6, 1, lam("1.0", "0.1", "cosine")),
        (7, 0, lam("1.0", "0.01", "constant")),
        (8, 1, lam("1.0", "0.01", "constant")),
    ];
    assert_eq!(got, want);
    // Values land in the typed config.
    assert_eq!(runs[6].config.lambda(), Some(1.0));
    assert_eq!(runs[6].config.train.schedule, gfa_core::train::Schedule::Constant);
    assert_eq!(runs[6].config.model.width, 0.25);
    assert_eq!(runs[6].config.eval.n, 64);
    assert_eq!(runs[6].config.data.n_train, Some(256));
    assert_eq!(runs[0].attacks.len(), 2);
    assert_eq!(runs[0].attacks[1].eps[0].text, "2/255");
    // Ids are distinct, 12 hex digits, and the BLAKE3 hash of the canonical spec.
    let mut ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    let attacks: Vec<Value> = runs[0].attacks.iter().map(|a| Value::Table(a.to_table())).collect();
    for r in &runs {
        assert_eq!(r.run_id, run_id_of(&canonical_spec(&r.config, r.seed, &attacks)));
    }
}

/// The canonical form hashed into run ids: sorted keys, every default filled in. Changing it
/// changes every run id (and orphans existing results folders), so it is pinned here.
#[test]
fn canonical_spec_is_pinned() {
    let text =
        "[base]\nmodel = { arch = \"linear\" }\n[[attacks]]\nkind = \"fgsm\"\neps = [\"8/255\"]\n";
    let runs = parse(text, &[]).unwrap().expand().unwrap();
    let attacks: Vec<Value> = runs[0].attacks.iter().map(|a| Value::Table(a.to_table())).collect();
    let c = canonical_spec(&runs[0].config, 0, &attacks);
    let want = concat!(
        r#"{"attacks":[{"eps":["8/255"],"kind":"fgsm","name":"fgsm","norm":"linf","preset":"reference"}],"#,
        r#""config":{"data":{"source":"cifar10"},"eval":{"batch_size":250,"individual":true,"n":1000,"subset":"all"},"#,
        r#""method":{"kind":"standard"},"#,
        r#""model":{"arch":"linear","bias":true,"mean":[0.5,0.5,0.5],"#,
        r#""normalize":true,"num_classes":10,"std":[0.5,0.5,0.5],"width":1.0,"widths":[1024,512,256]},"#,
        r#""train":{"augment":{"crop_padding":4,"flip":true},"batch_size":128,"epochs":100,"#,
        r#""eval_batch_size":500,"#,
        r#""optimizer":{"kind":"sgd","lr":0.1,"momentum":0.9,"nesterov":false,"weight_decay":0.0005},"#,
        r#""schedule":{"kind":"cosine"},"task_loss":"ce"}},"seed":0}"#
    );
    assert_eq!(c, want);
    assert_eq!(runs[0].run_id, blake3::hash(want.as_bytes()).to_hex()[..12]);
}

#[test]
fn run_id_is_stable_across_key_order_defaults_and_grids() {
    let a = "seeds = [3]\n[base]\nmethod = { kind = \"gfa\", lambda = 0.5 }\nmodel = { arch = \"cnn\", width = 0.25 }\n";
    // Same run: other key order, a default written out, and reached through a grid.
    let b = "[base.model]\nnum_classes = 10\nwidth = 0.25\n[base]\nmethod.kind = \"gfa\"\nmethod.penalty = \"one_minus_cos\"\n[grid]\nmethod.lambda = [0.25, 0.5]\n[grid.eval]\nn = [1000]\n";
    let ra = parse(a, &[]).unwrap().expand().unwrap();
    let rb = parse(b, &["seeds=[3]"]).unwrap().expand().unwrap();
    assert_eq!(rb.len(), 2);
    assert_eq!(ra[0].run_id, rb[1].run_id);
    assert_ne!(ra[0].run_id, rb[0].run_id);
    // The seed and the attack suite are part of the identity.
    let rc = parse(a, &["seeds=[4]"]).unwrap().expand().unwrap();
    assert_ne!(ra[0].run_id, rc[0].run_id);
    let with_attack = format!("{a}[[attacks]]\nkind = \"fgsm\"\neps = [\"8/255\"]\n");
    let rd = parse(&with_attack, &[]).unwrap().expand().unwrap();
    assert_ne!(ra[0].run_id, rd[0].run_id);
}

#[test]
fn overrides_apply_before_expansion_and_pin_axes() {
    let spec = parse(SMALL, &["method.lambda=0.3", "train.epochs=2", "seeds=[7]"]).unwrap();
    let runs = spec.expand().unwrap();
    // The λ axis is pinned away: 2 zip rows × 1 seed.
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.config.lambda() == Some(0.3) && r.seed == 7));
    assert_eq!(runs[0].config.train.epochs, 2);
    assert!(!runs[0].axes_text().contains("lambda"));
    assert!(runs[0].overrides_toml().contains("train.epochs=2"));
    // Overriding a grid list itself.
    let runs = parse(SMALL, &["grid.\"method.lambda\"=[0.5, 2.0, 4.0]"]).unwrap().expand().unwrap();
    assert_eq!(runs.len(), 12);
    // Bare strings need no quotes.
    let runs = parse(SMALL, &["model.arch=mlp"]).unwrap().expand().unwrap();
    assert_eq!(runs[0].config.model.arch.name(), "mlp");
    // A different value gives different ids.
    let base = parse(SMALL, &[]).unwrap().expand().unwrap();
    let other = parse(SMALL, &["train.epochs=2"]).unwrap().expand().unwrap();
    assert_ne!(base[0].run_id, other[0].run_id);
}

#[test]
fn unknown_key_names_file_line_path_and_suggestion() {
    let text = SMALL.replace("width = 0.25", "widht = 0.25");
    let line = text.lines().position(|l| l.starts_with("widht")).unwrap() + 1;
    let e = err(&text, &[]);
    assert!(e.starts_with(&format!("exp.toml:{line}: `base.model.widht`")), "{e}");
    assert!(e.contains("unknown field `widht`"), "{e}");
    assert!(e.ends_with("did you mean `width`?"), "{e}");
}

#[test]
fn bad_values_are_located_in_base_grid_and_attacks() {
    // A bad value inside a grid list points at the grid entry.
    let text = SMALL.replace(
        "\"train.optimizer.lr\" = [0.1, 0.01]",
        "\"train.optimizer.lr\" = [0.1, 0.01]\n\"eval.n\" = [10, \"many\"]",
    );
    let line = text.lines().position(|l| l.starts_with("\"eval.n\"")).unwrap() + 1;
    let e = err(&text, &[]);
    assert!(
        e.starts_with(&format!("exp.toml:{line}: `zip.0.\"eval.n\".1.n`"))
            || e.starts_with(&format!("exp.toml:{line}: `zip.0.\"eval.n\".1")),
        "{e}"
    );
    assert!(e.contains("run key eval.n"), "{e}");
    // Unknown attack kind, with suggestion.
    let text = SMALL.replace("kind = \"pgd\"", "kind = \"pdg\"");
    let line = text.lines().position(|l| l == "kind = \"pdg\"").unwrap() + 1;
    let e = err(&text, &[]);
    assert!(e.starts_with(&format!("exp.toml:{line}: `attacks.1.kind`")), "{e}");
    assert!(e.ends_with("did you mean `pgd`?"), "{e}");
    // Bad eps text.
    let text = SMALL.replace("\"2/255\"", "\"2/0\"");
    let e = err(&text, &[]);
    assert!(e.contains("`attacks.1.eps.0`") && e.contains("2/0"), "{e}");
    // Unknown method, with suggestion.
    let e = err(&SMALL.replace("kind = \"gfa\", lambda", "kind = \"gfa-pgd_at\", lambda"), &[]);
    assert!(e.contains("`base.method") && e.ends_with("did you mean `gfa_pgd_at`?"), "{e}");
    // An option the method does not have, with the closest one it has.
    let e = err(&SMALL.replace("lambda = 0.0 }", "lambda = 0.0, layres = \"first\" }"), &[]);
    assert!(e.contains("`base.method.layres`") && e.ends_with("did you mean `layers`?"), "{e}");
    // A method option given to a method without it, through the grid.
    let e = err(&SMALL.replace("kind = \"gfa\", lambda = 0.0", "kind = \"pgd_at\""), &[]);
    assert!(e.contains("grid.\"method.lambda\".0") && e.contains("unknown field `lambda`"), "{e}");
    // An attack's own keys are checked.
    let e = err(&SMALL.replace("steps = 10", "stesp = 10"), &[]);
    assert!(e.contains("attacks.1") && e.contains("stesp"), "{e}");
    // Unknown top-level key and unknown section.
    let e = err(&format!("sedes = [1]\n{SMALL}"), &[]);
    assert!(e.starts_with("exp.toml:1: `sedes`") && e.ends_with("did you mean `seeds`?"), "{e}");
    let e = err(&SMALL.replace("[base.eval]", "[base.evl]"), &[]);
    assert!(e.contains("`base.evl`") && e.ends_with("did you mean `eval`?"), "{e}");
    // Values the model rejects, at their own key and line.
    let e = err(&SMALL.replace("width = 0.25", "width = -1.0"), &[]);
    assert!(e.starts_with("exp.toml:11: `base.model.width`: must be a positive"), "{e}");
    // Zip lists of different lengths.
    let e = err(&SMALL.replace("[\"cosine\", \"constant\"]", "[\"cosine\"]"), &[]);
    assert!(e.contains("equal lengths"), "{e}");
}

#[test]
fn old_form_files_are_refused_with_the_new_form() {
    let old = SMALL
        .replace("method = { kind = \"gfa\", lambda = 0.0 }", "regularizer = { kind = \"gfa\" }")
        .replace("epochs = 1,", "epochs = 1, method = { kind = \"gfa\" },")
        .replace("\"method.lambda\"", "\"regularizer.lambda\"");
    let e = err(&old, &[]);
    let line = old.lines().position(|l| l.starts_with("regularizer")).unwrap() + 1;
    assert!(e.starts_with(&format!("exp.toml:{line}: `base.regularizer`")), "{e}");
    assert!(e.contains("[base.method]\nkind = \"gfa\"\n"), "{e}");
    assert!(e.contains("[grid]\n\"method.lambda\" = [0.1, 1.0]"), "{e}");
    // An old key given as an override is refused the same way.
    let e = err(SMALL, &["regularizer.lambda=0.3"]);
    assert!(e.contains("write --set method.lambda=0.3"), "{e}");
}

#[test]
fn a_pin_inside_a_varying_method_is_refused() {
    let text = format!("{SMALL}\n[[zip]]\nmethod = [{{ kind = \"standard\" }}, {{ kind = \"gfa\", lambda = 0.3 }}]\n")
        .replace("\"method.lambda\" = [0.1, 1.0]", "\"eval.n\" = [64]");
    assert_eq!(parse(&text, &[]).unwrap().expand().unwrap().len(), 8);
    let e = err(&text, &["method.lambda=0.1"]);
    assert!(
        e.contains("sets a key inside the values of this axis") && e.contains("`method`"),
        "{e}"
    );
    // Pinning the whole method drops the axis.
    let runs =
        parse(&text, &["method={ kind = \"gnr\", lambda = 1.0 }"]).unwrap().expand().unwrap();
    assert!(runs.iter().all(|r| r.config.method() == "gnr"));
}

#[test]
fn override_errors_name_the_override() {
    let e = err(SMALL, &["model.widht=1"]);
    assert!(e.contains("(--set model.widht=1)") && e.ends_with("did you mean `width`?"), "{e}");
    let e = err(SMALL, &["modle.width=1"]);
    assert!(e.contains("did you mean `model`?"), "{e}");
}

#[test]
fn a_finite_difference_step_of_zero_or_nan_is_refused_at_parse_time() {
    for bad in ["0.0", "nan", "-1e-3", "1.5"] {
        let method = format!(
            "method = {{ kind = \"gfa\", lambda = 0.0, gradient = \"finite_difference\", \
             fd_step = {bad} }}"
        );
        let e = err(&SMALL.replace("method = { kind = \"gfa\", lambda = 0.0 }", &method), &[]);
        assert!(e.contains("method.fd_step") && e.contains("(0, 1)"), "{bad}: {e}");
        // A grid over the step is checked entry by entry as well.
        let e = err(
            &SMALL.replace("[grid]\n", &format!("[grid]\n\"method.fd_step\" = [1e-3, {bad}]\n")),
            &[],
        );
        assert!(e.contains("method.fd_step") && e.contains("(0, 1)"), "{bad}: {e}");
        // and so is an override.
        let e = err(SMALL, &[&format!("method.fd_step={bad}")]);
        assert!(e.contains("method.fd_step") && e.contains("(0, 1)"), "{bad}: {e}");
    }
}
