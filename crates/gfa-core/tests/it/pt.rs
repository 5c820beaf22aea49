//! The torch.save reader on legacy (pre-1.6) files (`scripts/gen_torchscript_fixtures.py`), and
//! on any byte string: random bytes and damaged copies of real files give an error, never a
//! panic or an allocation beyond the file's size.
use std::path::Path;

use gfa_core::CoreError;
use gfa_core::import::{Normalization, import_state_dict};
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::pt::{self, PtError};
use gfa_core::seed::rng_for;
use rand::Rng;
use tch::Kind;

use super::fixture;

fn resnet18() -> ModelSpec {
    ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::ResNet18) }
}

#[test]
fn legacy_state_dict_imports_exactly_as_its_zip_twin() {
    // legacy_resnet18.pt is import_resnet18.pt re-saved in the legacy format: the same tensors.
    let zip = import_state_dict(&fixture("import_resnet18.pt"), &resnet18(), &Normalization::None)
        .unwrap();
    let legacy =
        import_state_dict(&fixture("legacy_resnet18.pt"), &resnet18(), &Normalization::None)
            .unwrap();
    assert_eq!(zip.tensors.len(), legacy.tensors.len());
    for ((n1, t1), (n2, t2)) in zip.tensors.iter().zip(&legacy.tensors) {
        assert_eq!(n1, n2);
        assert_eq!((t1.kind(), t1.size()), (t2.kind(), t2.size()), "{n1}");
        assert!(t1.equal(t2), "{n1} differs");
    }
    assert!(legacy.converted.is_empty(), "{:?}", legacy.converted);
    // The int64 counters come through as int64.
    let root = pt::read(&fixture("legacy_resnet18.pt")).unwrap();
    let Some(pt::Value::Tensor(n)) = root.get("layer1.0.bn1.num_batches_tracked") else {
        panic!("{}", root.describe())
    };
    assert_eq!((n.kind(), n.size()), (Kind::Int64, vec![]));
}

/// The message of reading `file` as a legacy import.
fn legacy_error(file: &str) -> (CoreError, String) {
    let err = import_state_dict(&fixture(file), &resnet18(), &Normalization::None)
        .expect_err(&format!("{file} imported"));
    let msg = err.to_string();
    (err, msg)
}

#[test]
fn bad_legacy_files_are_named_with_the_fix() {
    let (err, e) = legacy_error("legacy_bad_truncated.pt");
    assert!(matches!(err, CoreError::Pt(PtError::Truncated { .. })), "{err:?}");
    assert!(e.contains("truncated") && e.contains("storage") && e.contains("fetch"), "{e}");
    let (err, e) = legacy_error("legacy_bad_float64.pt");
    assert!(matches!(err, CoreError::Pt(PtError::LegacyDtype { .. })), "{err:?}");
    assert!(e.contains("torch.DoubleStorage") && e.contains("model.float()"), "{e}");
    // A legacy file that does read but is another model's state dict.
    let (err, e) = legacy_error("import_bad_legacy.pt");
    assert!(matches!(err, CoreError::Checkpoint { .. }), "{err:?}");
    assert!(e.contains("does not fit `resnet18`") && e.contains("weight [2, 4]"), "{e}");
}

/// Reads `bytes`; returns whether it read. A panic fails the test.
fn reads(bytes: &[u8]) -> bool {
    pt::read_bytes(bytes, Path::new("fuzz.pt")).is_ok()
}

#[test]
fn any_byte_string_gives_a_value_or_an_error() {
    let mut rng = rng_for(26, "pt-fuzz");
    let legacy = std::fs::read(fixture("legacy_bad_float64.pt")).unwrap();
    let mut float32 = std::fs::read(fixture("import_bad_legacy.pt")).unwrap();
    let zip = std::fs::read(fixture("import_bad_optimizer.pt")).unwrap();
    assert!(reads(&float32) && reads(&zip));
    // Random strings, bare and behind each format's magic bytes.
    for _ in 0..300 {
        let n = rng.gen_range(0..400);
        let tail: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
        for head in [&[][..], pt::LEGACY_MAGIC, b"PK\x03\x04"] {
            reads(&[head, &tail].concat());
        }
    }
    // Every prefix of a real legacy file is refused (cut anywhere, it is incomplete).
    for cut in 0..float32.len() {
        assert!(!reads(&float32[..cut]), "a prefix of {cut} bytes read");
    }
    // Damaged copies: flipped bytes, random values at random places, in both formats.
    for base in [&mut float32, &mut legacy.clone(), &mut zip.clone()] {
        for _ in 0..400 {
            let mut b = base.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..b.len());
                b[i] =
                    if rng.gen_bool(0.5) { b[i] ^ (1 << rng.gen_range(0..8)) } else { rng.r#gen() };
            }
            reads(&b);
        }
    }
}

#[test]
fn huge_claimed_sizes_are_refused_without_allocating_them() {
    // A legacy stream whose storage claims 2^60 elements: refused for what the file holds.
    let bytes = std::fs::read(fixture("import_bad_legacy.pt")).unwrap();
    let root = pt::read_bytes(&bytes, Path::new("ok.pt")).unwrap();
    let Some(pt::Value::Tensor(w)) = root.get("weight") else { panic!() };
    assert_eq!(w.size(), [2, 4]);
    // The element count of the first storage is the 8 bytes after the key list; find the
    // (little-endian) count 8 of the [2, 4] weight and replace it by 2^60.
    let eight = 8i64.to_le_bytes();
    let at = bytes.windows(8).rposition(|w| w == eight).unwrap();
    let mut huge = bytes.clone();
    huge[at..at + 8].copy_from_slice(&(1i64 << 60).to_le_bytes());
    let err = pt::read_bytes(&huge, Path::new("huge.pt")).unwrap_err().to_string();
    assert!(err.contains("elements"), "{err}");
}
