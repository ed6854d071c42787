//! Data-parallel pieces that need no second process: how loaders shard an
//! epoch, and the reductions through a collective that stands in for two
//! identical ranks. The ranks themselves are tested under `mpirun` in the
//! workspace's tests/distributed.rs.

use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use taper_train::data::{DataLoader, LoaderConfig, TensorDataset};
use taper_train::distributed::{self, Collective};
use taper_train::{Metrics, Result};

fn loader(n: usize, batch: usize, shuffle: bool) -> DataLoader<taper_train::data::TensorBatch> {
    let x = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap();
    let ds = TensorDataset::new(vec![x], &Device::Cpu).unwrap();
    let cfg = if shuffle {
        LoaderConfig::train(batch, 7)
    } else {
        LoaderConfig::eval(batch)
    };
    DataLoader::new(ds, cfg).unwrap()
}

#[test]
fn padded_shards_split_each_epoch_like_one_loader_with_a_larger_batch() {
    let (n, world, batch) = (103, 4, 5);
    let whole = loader(n, batch * world, true);
    let shards: Vec<_> = (0..world)
        .map(|r| loader(n, batch, true).shard(r, world).unwrap())
        .collect();
    for epoch in 0..3 {
        let order = whole.order(epoch);
        let parts: Vec<Vec<usize>> = shards.iter().map(|s| s.order(epoch)).collect();
        // Every rank takes ceil(n / world) items and the same number of batches.
        for (s, p) in shards.iter().zip(&parts) {
            assert_eq!(p.len(), n.div_ceil(world));
            assert_eq!(s.num_batches(), n.div_ceil(world).div_ceil(batch));
        }
        // Position p of the padded order goes to rank p % world.
        for (p, item) in order.iter().enumerate() {
            assert_eq!(parts[p % world][p / world], *item);
        }
        // The padding repeats the epoch's first items.
        let pad = n.div_ceil(world) * world - n;
        for (k, p) in (n..n + pad).enumerate() {
            assert_eq!(parts[p % world][p / world], order[k]);
        }
        // Batch i of all ranks together holds batch i of the whole loader
        // (while full batches last).
        let b0: Vec<usize> = parts.iter().flat_map(|p| p[..batch].to_vec()).collect();
        let mut b0s = b0.clone();
        b0s.sort_unstable();
        let mut want = order[..batch * world].to_vec();
        want.sort_unstable();
        assert_eq!(b0s, want);
    }
    assert_eq!(
        shards[0].num_items(),
        n,
        "num_items stays the data set's size"
    );
    assert!(loader(n, batch, true).shard(4, 4).is_err());
}

#[test]
fn unpadded_shards_hold_every_item_once() {
    let (n, world) = (10, 3);
    let mut seen: Vec<usize> = (0..world)
        .flat_map(|r| {
            loader(n, 2, false)
                .shard_unpadded(r, world)
                .unwrap()
                .order(0)
        })
        .collect();
    let counts: Vec<usize> = (0..world)
        .map(|r| {
            loader(n, 2, false)
                .shard_unpadded(r, world)
                .unwrap()
                .num_local_items()
        })
        .collect();
    assert_eq!(counts, [4, 3, 3]);
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
}

/// Two ranks holding the same values: every sum is twice this rank's.
struct Twins;

impl Collective for Twins {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        2
    }
    fn backend(&self) -> &'static str {
        "twins"
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        buf.iter_mut().for_each(|x| *x *= 2.0);
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        buf.iter_mut().for_each(|x| *x *= 2.0);
        Ok(())
    }
    fn broadcast(&self, _root: usize, _buf: &mut [u8]) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32, _why: &str) -> ! {
        std::process::exit(code)
    }
}

#[test]
fn gradients_are_summed_in_buckets_and_keep_their_shapes() {
    let dev = Device::Cpu;
    let g = |v: f32, shape: &[usize]| Some(Tensor::full(v, shape, &dev).unwrap());
    let mut grads = vec![g(1.0, &[2, 3]), None, g(2.0, &[4]), g(3.0, &[1, 1, 5])];
    // 40 bytes per bucket: the 24-byte and 16-byte tensors share one, the
    // 20-byte one gets its own.
    distributed::all_reduce_grads(&Twins, &mut grads, 40).unwrap();
    assert!(grads[1].is_none());
    let got: Vec<(Vec<usize>, Vec<f32>)> = grads
        .iter()
        .flatten()
        .map(|t| {
            (
                t.dims().to_vec(),
                t.flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect();
    assert_eq!(got[0], (vec![2, 3], vec![2.0; 6]));
    assert_eq!(got[1], (vec![4], vec![4.0; 4]));
    assert_eq!(got[2], (vec![1, 1, 5], vec![6.0; 5]));
    // f64 tensors go through the f64 path.
    let t = Tensor::full(0.1f64, 3, &dev).unwrap();
    let s = Twins.all_reduce_sum_tensor(&t).unwrap();
    assert_eq!(s.dtype(), DType::F64);
    assert_eq!(s.to_vec1::<f64>().unwrap(), vec![0.2; 3]);
}

#[test]
fn metrics_sum_their_weights_across_ranks() {
    let m = Metrics::new()
        .with("loss", 2.0, 4.0)
        .with("accuracy", 0.5, 4.0);
    let all = distributed::all_reduce_metrics(&Twins, &m).unwrap();
    assert_eq!(all.weight("loss"), 8.0);
    assert_eq!(all.mean("loss"), Some(2.0));
    assert_eq!(
        all.means(),
        BTreeMap::from([("accuracy".to_string(), 0.5), ("loss".to_string(), 2.0)])
    );
    // One process: nothing to do.
    let one = distributed::all_reduce_metrics(&distributed::Single, &m).unwrap();
    assert_eq!(one, m);
}
