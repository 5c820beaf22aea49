//! Synthetic data: determinism by seed, independence of the splits.
use gfa_data::synthetic;

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let a = synthetic(50, 20, 7);
    let b = synthetic(50, 20, 7);
    let c = synthetic(50, 20, 8);
    assert!(a.train.images.equal(&b.train.images) && a.train.labels.equal(&b.train.labels));
    assert!(a.test.images.equal(&b.test.images) && a.test.labels.equal(&b.test.labels));
    assert!(!a.train.images.equal(&c.train.images));
    // Train and test are different draws.
    assert!(!a.train.images.narrow(0, 0, 20).equal(&a.test.images));
}

#[test]
fn train_split_does_not_depend_on_test_size() {
    let a = synthetic(40, 5, 3);
    let b = synthetic(40, 50, 3);
    assert!(a.train.images.equal(&b.train.images));
    assert!(a.train.labels.equal(&b.train.labels));
    assert_eq!((a.test.len(), b.test.len()), (5, 50));
}
