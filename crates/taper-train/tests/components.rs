//! Data loading, clipping, metrics and device selection.

use candle_core::{DType, Device, Tensor, Var};
use taper_train::clip::{clip_grad_norm, clip_grad_value, grad_norm};
use taper_train::data::{
    split_indices, Batcher, DataLoader, Dataset, LoaderConfig, StackBatcher, TensorDataset,
};
use taper_train::device::parse_device;
use taper_train::metrics::{accuracy, topk_accuracy, Accuracy, Metric, TopK};
use taper_train::{Error, Metrics};

fn range_dataset(n: usize) -> TensorDataset {
    let x = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap();
    let y = (Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap() * 2.0).unwrap();
    TensorDataset::new(vec![x, y], &Device::Cpu).unwrap()
}

fn epoch_items(
    loader: &DataLoader<taper_train::data::TensorBatch>,
    epoch: usize,
    skip: usize,
) -> Vec<Vec<u32>> {
    loader
        .epoch(epoch, skip)
        .map(|b| b.unwrap().inputs().to_vec1::<u32>().unwrap())
        .collect()
}

#[test]
fn loader_batches_cover_every_item_once_in_seeded_order() {
    let cfg = LoaderConfig {
        batch_size: 4,
        shuffle: true,
        drop_last: false,
        seed: 9,
        prefetch: 2,
    };
    let loader = DataLoader::new(range_dataset(10), cfg.clone()).unwrap();
    assert_eq!(loader.num_batches(), 3);
    let e0 = epoch_items(&loader, 0, 0);
    assert_eq!(
        e0.iter().map(|b| b.len()).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    let mut all: Vec<u32> = e0.concat();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    // Pure function of (seed, epoch): same again, another epoch differs.
    assert_eq!(epoch_items(&loader, 0, 0), e0);
    assert_ne!(epoch_items(&loader, 1, 0), e0);
    // Built inline or on the background thread: the same batches.
    let inline = DataLoader::new(range_dataset(10), LoaderConfig { prefetch: 0, ..cfg }).unwrap();
    assert_eq!(epoch_items(&inline, 0, 0), e0);
    // Skipping (resume mid-epoch) yields the tail of the same order.
    assert_eq!(epoch_items(&loader, 0, 1), e0[1..].to_vec());
    // Targets travel with their inputs.
    for b in loader.epoch(3, 0) {
        let b = b.unwrap();
        let x = b.inputs().to_vec1::<u32>().unwrap();
        let y = b.targets().to_vec1::<u32>().unwrap();
        assert!(x.iter().zip(&y).all(|(a, b)| *b == 2 * a));
    }
}

#[test]
fn drop_last_and_unshuffled_order() {
    let loader = DataLoader::new(
        range_dataset(10),
        LoaderConfig {
            drop_last: true,
            ..LoaderConfig::eval(4)
        },
    )
    .unwrap();
    assert_eq!(loader.num_batches(), 2);
    assert_eq!(
        epoch_items(&loader, 0, 0),
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]
    );
}

#[test]
fn stopping_early_releases_the_background_thread() {
    let loader = DataLoader::new(range_dataset(1000), LoaderConfig::train(1, 0)).unwrap();
    let mut it = loader.epoch(0, 0);
    assert!(it.next().is_some());
    drop(it); // must not hang on the worker blocked on a full channel
}

#[test]
fn bad_loader_settings_are_refused() {
    let e = DataLoader::new(range_dataset(5), LoaderConfig::train(0, 0))
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("batch size"),
        "{e}"
    );
    let empty = Tensor::zeros((0, 3), DType::F32, &Device::Cpu).unwrap();
    let e = TensorDataset::new(vec![empty], &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("empty data set"), "{e}");
    let a = Tensor::zeros((5, 3), DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(4, DType::U32, &Device::Cpu).unwrap();
    let e = TensorDataset::new(vec![a, b], &Device::Cpu).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("field 1: expected 5 items"), "{e}");
    assert!(e.to_string().contains("got shape [4]"), "{e}");
    let e = DataLoader::new(
        range_dataset(3),
        LoaderConfig {
            drop_last: true,
            ..LoaderConfig::eval(4)
        },
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("leaves no batch"), "{e}");
    assert!(range_dataset(3).get(3).is_err());
}

#[test]
fn dataset_and_batcher_compose() {
    let ds = range_dataset(6);
    let items = vec![ds.get(4).unwrap(), ds.get(1).unwrap()];
    let batch = StackBatcher::new(&Device::Cpu).batch(items).unwrap();
    assert_eq!(batch.inputs().to_vec1::<u32>().unwrap(), vec![4, 1]);
    let loader =
        DataLoader::from_dataset(ds, StackBatcher::new(&Device::Cpu), LoaderConfig::eval(4))
            .unwrap();
    assert_eq!(
        epoch_items(&loader, 0, 0),
        vec![vec![0, 1, 2, 3], vec![4, 5]]
    );
}

#[test]
fn split_is_seeded_and_disjoint() {
    let (a, b) = split_indices(100, 0.2, 3).unwrap();
    assert_eq!((a.len(), b.len()), (80, 20));
    let mut all = [a.clone(), b.clone()].concat();
    all.sort();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert_eq!(split_indices(100, 0.2, 3).unwrap(), (a, b.clone()));
    assert_ne!(split_indices(100, 0.2, 4).unwrap().1, b);
    assert!(split_indices(10, 1.5, 0).is_err());
}

#[test]
fn clipping_by_norm_and_value() {
    let a = Var::from_slice(&[3f32, 0.0], 2, &Device::Cpu).unwrap();
    let b = Var::from_slice(&[0f32, 4.0], 2, &Device::Cpu).unwrap();
    let loss = ((a.as_tensor() * a.as_tensor()).unwrap().sum_all().unwrap() * 0.5).unwrap();
    let loss = (loss + (b.as_tensor() * b.as_tensor()).unwrap().sum_all().unwrap() * 0.5).unwrap();
    let mut g = loss.backward().unwrap(); // gradients are a and b themselves: norm 5
    let vars = [&a, &b];
    assert!((grad_norm(&vars, &g).unwrap() - 5.0).abs() < 1e-6);
    let before = clip_grad_norm(&vars, &mut g, 1.0).unwrap();
    assert!((before - 5.0).abs() < 1e-6);
    assert!((grad_norm(&vars, &g).unwrap() - 1.0).abs() < 1e-5);
    // 1e-6 in the denominator, as in PyTorch, makes it 0.8 * 5 / (5 + 1e-6).
    assert!((g.get(&b).unwrap().to_vec1::<f32>().unwrap()[1] - 0.8).abs() < 1e-6);
    let mut g = loss.backward().unwrap();
    clip_grad_value(&vars, &mut g, 2.0).unwrap();
    assert_eq!(g.get(&a).unwrap().to_vec1::<f32>().unwrap(), vec![2.0, 0.0]);
    assert_eq!(g.get(&b).unwrap().to_vec1::<f32>().unwrap(), vec![0.0, 2.0]);
}

#[test]
fn metrics_from_logits() {
    let logits = Tensor::new(
        &[
            [0.1f32, 0.7, 0.2],
            [0.5, 0.3, 0.2],
            [0.2, 0.3, 0.5],
            [0.3, 0.3, 0.4],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let targets = Tensor::new(&[1u32, 1, 2, 0], &Device::Cpu).unwrap();
    assert_eq!(accuracy(&logits, &targets).unwrap(), 0.5);
    assert_eq!(topk_accuracy(&logits, &targets, 2).unwrap(), 1.0);
    assert_eq!(topk_accuracy(&logits, &targets, 1).unwrap(), 0.5);
    let mut acc = Accuracy::default();
    acc.update(&logits, &targets).unwrap();
    acc.update(
        &logits.narrow(0, 0, 1).unwrap(),
        &targets.narrow(0, 0, 1).unwrap(),
    )
    .unwrap();
    assert_eq!(acc.compute(), 0.6);
    let mut top = TopK::new(2);
    top.update(&logits, &targets).unwrap();
    assert_eq!((top.name(), top.compute()), ("top2_accuracy", 1.0));
    let mut m = Metrics::new().with("loss", 1.0, 3.0);
    m.merge(&Metrics::new().with("loss", 2.0, 1.0));
    assert_eq!(m.mean("loss"), Some(1.25));
    assert_eq!(m.weight("loss"), 4.0);
}

#[test]
fn device_names() {
    assert!(parse_device("cpu").unwrap().is_cpu());
    let e = parse_device("tpu").unwrap_err().to_string();
    assert!(e.contains("unknown device 'tpu'"), "{e}");
    if !cfg!(feature = "cuda") {
        assert!(parse_device("cuda")
            .unwrap_err()
            .to_string()
            .contains("'cuda' feature"));
    }
    assert!(parse_device("cuda:x").is_err());
}
