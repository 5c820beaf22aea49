//! The real CIFAR-10 copy named by `GFA_DATA_DIR`, when there is one.
use super::common::CLASSES;

#[test]
fn real_cifar10_when_gfa_data_dir_is_set() {
    if std::env::var_os(gfa_data::cifar10::DATA_DIR_ENV).is_none() {
        eprintln!("skipped: set GFA_DATA_DIR to a CIFAR-10 copy to run the real-data test");
        return;
    }
    let dir = gfa_data::resolve_data_dir(None).unwrap();
    let s = gfa_data::load_cifar10(&dir).unwrap();
    assert_eq!(s.train.images.size(), [50_000, 3, 32, 32]);
    assert_eq!(s.test.images.size(), [10_000, 3, 32, 32]);
    assert_eq!(s.train.class_counts(), [5_000; 10]);
    assert_eq!(s.test.class_counts(), [1_000; 10]);
    assert_eq!(s.train.classes, CLASSES);
    assert_eq!(s.test.classes, CLASSES);
}
