//! Batcher: seeded determinism, coverage of every record once per epoch, evaluation order.
use gfa_data::SeededRng;
use gfa_data::{Batcher, Dataset};
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

/// `n` one-pixel images whose pixel is `i % 256` and whose label is `i`, so a batch's labels
/// are its record indices.
fn numbered(n: i64) -> Dataset {
    let opts = (Kind::Int64, Device::Cpu);
    let x = Tensor::arange(n, opts).remainder(256).to_kind(Kind::Uint8).view([n, 1, 1, 1]);
    Dataset::new(x, Tensor::arange(n, opts), vec![]).unwrap()
}

/// The labels (record indices) of each batch, checking each `x` matches its `y`.
fn visit(epoch: gfa_data::Epoch<'_>) -> Vec<Vec<i64>> {
    epoch
        .map(|(x, y)| {
            assert_eq!(x.kind(), Kind::Float);
            let ids = Vec::<i64>::try_from(&y).unwrap();
            let px = Vec::<f32>::try_from(&x.flatten(0, -1)).unwrap();
            for (id, p) in ids.iter().zip(px) {
                assert_eq!((p * 255.0).round() as i64, id % 256);
            }
            ids
        })
        .collect()
}

#[test]
fn same_seed_same_order_other_seed_other_order() {
    let d = numbered(300);
    let b = Batcher::new(&d, 32).unwrap();
    let a1 = visit(b.shuffled(&mut SeededRng::seed_from_u64(5)));
    let a2 = visit(b.shuffled_seed(5));
    let c = visit(b.shuffled_seed(6));
    assert_eq!(a1, a2);
    assert_ne!(a1, c);
}

#[test]
fn each_record_once_per_epoch_and_epochs_differ() {
    let d = numbered(1000);
    let b = Batcher::new(&d, 64).unwrap();
    let mut rng = SeededRng::seed_from_u64(0);
    let mut orders = Vec::new();
    for _ in 0..3 {
        let order: Vec<i64> = visit(b.shuffled(&mut rng)).concat();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(order, sorted, "a shuffled epoch is not in dataset order");
        orders.push(order);
    }
    assert_ne!(orders[0], orders[1]);
    assert_ne!(orders[1], orders[2]);
}

#[test]
fn drop_last_visits_distinct_records_in_full_batches() {
    let d = numbered(1000);
    let b = Batcher::new(&d, 64).unwrap().drop_last(true);
    let batches = visit(b.shuffled_seed(1));
    assert_eq!(batches.len(), 15);
    assert!(batches.iter().all(|ids| ids.len() == 64));
    let mut all = batches.concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 960);
}

#[test]
fn sequential_is_dataset_order_with_a_short_tail() {
    let d = numbered(10);
    let b = Batcher::new(&d, 4).unwrap();
    assert_eq!(visit(b.sequential()), [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    assert_eq!(b.sequential().len(), 3);
}
