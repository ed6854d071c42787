//! Data sets, batching and the data loader.

pub mod root;

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use taper_nn::init::mix;

/// A data set: a length and an item by index. It knows nothing of batches.
pub trait Dataset: Send + Sync {
    /// One example.
    type Item: Send;
    /// Number of items.
    fn len(&self) -> usize;
    /// True when there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The item at `index` (< `len()`).
    fn get(&self, index: usize) -> Result<Self::Item>;
    /// The item at `index` as served in `epoch`: data sets with random
    /// augmentation override this to draw from `(seed, epoch, index)`.
    fn get_in_epoch(&self, index: usize, _epoch: usize) -> Result<Self::Item> {
        self.get(index)
    }
}

/// Turns a list of items into one batch (stacking, padding, moving to a device).
pub trait Batcher<I>: Send + Sync {
    /// The batch type the model consumes.
    type Batch: Send;
    /// Builds a batch from items in loader order.
    fn batch(&self, items: Vec<I>) -> Result<Self::Batch>;
}

/// Anything that can build a batch from a list of indices; what [`DataLoader`] reads.
///
/// Implemented for every `(Dataset, Batcher)` pair via [`ItemBatches`], and directly
/// by [`TensorDataset`], which gathers a whole batch with one `index_select` per field.
pub trait BatchSource: Send + Sync {
    /// The batch type.
    type Batch: Send;
    /// Number of items.
    fn len(&self) -> usize;
    /// True when there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Builds the batch of the items at `indices`.
    fn batch(&self, indices: &[usize]) -> Result<Self::Batch>;
    /// Builds the batch of the items at `indices` as served in `epoch`
    /// (see [`Dataset::get_in_epoch`]); the loader calls this one.
    fn batch_in_epoch(&self, indices: &[usize], _epoch: usize) -> Result<Self::Batch> {
        self.batch(indices)
    }
}

/// A [`Dataset`] paired with a [`Batcher`].
pub struct ItemBatches<D, C> {
    /// The data set.
    pub dataset: D,
    /// The batcher.
    pub batcher: C,
}

impl<D, C> BatchSource for ItemBatches<D, C>
where
    D: Dataset,
    C: Batcher<D::Item>,
{
    type Batch = C::Batch;
    fn len(&self) -> usize {
        self.dataset.len()
    }
    fn batch(&self, indices: &[usize]) -> Result<C::Batch> {
        self.batch_in_epoch(indices, 0)
    }
    fn batch_in_epoch(&self, indices: &[usize], epoch: usize) -> Result<C::Batch> {
        let items = indices
            .iter()
            .map(|&i| {
                // A panicking data set or transform is named by its item, not lost
                // with the loader's thread.
                catch_unwind(AssertUnwindSafe(|| self.dataset.get_in_epoch(i, epoch)))
                    .unwrap_or_else(|p| {
                        Err(Error::Data(format!(
                            "item {i} of the data set: loading it panicked: {}",
                            panic_message(p.as_ref())
                        )))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        self.batcher.batch(items)
    }
}

/// The text of a panic's payload.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// One batch from `source`, a panic inside turned into an error naming the items.
fn load_batch<B: Send>(
    source: &dyn BatchSource<Batch = B>,
    items: &[usize],
    epoch: usize,
) -> Result<B> {
    catch_unwind(AssertUnwindSafe(|| source.batch_in_epoch(items, epoch))).unwrap_or_else(|p| {
        let shown: Vec<String> = items.iter().take(8).map(|i| i.to_string()).collect();
        let more = if items.len() > 8 { ", …" } else { "" };
        Err(Error::Data(format!(
            "the batch of items [{}{more}] (epoch {}): building it panicked: {}",
            shown.join(", "),
            epoch + 1,
            panic_message(p.as_ref())
        )))
    })
}

/// A batch of tensors, one per field (by convention inputs first, targets second),
/// all with the batch as their first dimension.
#[derive(Debug, Clone)]
pub struct TensorBatch {
    fields: Vec<Tensor>,
}

impl TensorBatch {
    /// A batch of `fields`.
    ///
    /// # Errors
    /// No field, a scalar field, or fields of different first dimensions.
    pub fn new(fields: Vec<Tensor>) -> Result<Self> {
        let Some(first) = fields.first() else {
            return Err(Error::Data("a batch needs at least one field".into()));
        };
        let n = first
            .dims()
            .first()
            .copied()
            .ok_or_else(|| Error::shape("batch field 0", "(batch, ...)", "a scalar"))?;
        for (i, f) in fields.iter().enumerate().skip(1) {
            if f.dims().first() != Some(&n) {
                return Err(Error::shape(
                    format!("batch field {i}"),
                    format!("{n} rows (as field 0)"),
                    format!("shape {:?}", f.dims()),
                ));
            }
        }
        Ok(Self { fields })
    }
    /// The fields.
    pub fn fields(&self) -> &[Tensor] {
        &self.fields
    }
    /// The fields, by value.
    pub fn into_fields(self) -> Vec<Tensor> {
        self.fields
    }
    /// The first field.
    pub fn inputs(&self) -> &Tensor {
        &self.fields[0]
    }
    /// The second field (the first one when there is only one).
    pub fn targets(&self) -> &Tensor {
        self.fields.get(1).unwrap_or(&self.fields[0])
    }
    /// Number of examples in the batch.
    pub fn len(&self) -> usize {
        self.fields[0].dims().first().copied().unwrap_or(0)
    }
    /// True for a batch of no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Stacks items made of tensors (one per field) along a new first dimension.
#[derive(Debug, Clone)]
pub struct StackBatcher {
    device: Device,
}

impl StackBatcher {
    /// Batches land on `device`.
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
        }
    }
}

impl Batcher<Vec<Tensor>> for StackBatcher {
    type Batch = TensorBatch;
    fn batch(&self, items: Vec<Vec<Tensor>>) -> Result<TensorBatch> {
        let nf = items
            .first()
            .map(|i| i.len())
            .ok_or_else(|| Error::Data("empty batch".into()))?;
        let mut fields = Vec::with_capacity(nf);
        for f in 0..nf {
            let parts = items
                .iter()
                .map(|it| {
                    it.get(f)
                        .cloned()
                        .ok_or_else(|| Error::Data(format!("item without field {f}")))
                })
                .collect::<Result<Vec<_>>>()?;
            fields.push(Tensor::stack(&parts, 0)?.to_device(&self.device)?);
        }
        TensorBatch::new(fields)
    }
}

/// An in-memory data set of tensors sharing their first dimension
/// (for instance images `(N, 1, 28, 28)` and labels `(N,)`).
#[derive(Debug, Clone)]
pub struct TensorDataset {
    fields: Vec<Tensor>,
    device: Device,
}

impl TensorDataset {
    /// Checks that every field has the same, non-zero, first dimension. Batches are
    /// moved to `device`; the data itself may stay on the host.
    pub fn new(fields: Vec<Tensor>, device: &Device) -> Result<Self> {
        let n = match fields.first() {
            None => {
                return Err(Error::Data(
                    "a tensor data set needs at least one field".into(),
                ))
            }
            Some(t) => *t
                .dims()
                .first()
                .ok_or_else(|| Error::Data("field 0 is a scalar, not a list of items".into()))?,
        };
        for (i, f) in fields.iter().enumerate() {
            if f.dims().first() != Some(&n) {
                return Err(Error::shape(
                    format!("tensor data set, field {i}"),
                    format!("{n} items (as field 0)"),
                    format!("shape {:?}", f.dims()),
                ));
            }
        }
        if n == 0 {
            return Err(Error::Data("empty data set (0 items)".into()));
        }
        Ok(Self {
            fields,
            device: device.clone(),
        })
    }

    /// The fields.
    pub fn fields(&self) -> &[Tensor] {
        &self.fields
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.fields[0].dims()[0]
    }

    /// True when there are no items (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items at `indices` as a new data set (e.g. after [`split_indices`]).
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let idx = index_tensor(indices, self.fields[0].device())?;
        let fields = self
            .fields
            .iter()
            .map(|f| f.index_select(&idx, 0))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Self::new(fields, &self.device)
    }
}

fn index_tensor(indices: &[usize], device: &Device) -> Result<Tensor> {
    let v: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
    Ok(Tensor::from_vec(v, indices.len(), device)?)
}

impl Dataset for TensorDataset {
    type Item = Vec<Tensor>;
    fn len(&self) -> usize {
        TensorDataset::len(self)
    }
    fn get(&self, index: usize) -> Result<Vec<Tensor>> {
        if index >= self.len() {
            return Err(Error::Data(format!(
                "index {index} out of range for {} items",
                self.len()
            )));
        }
        Ok(self
            .fields
            .iter()
            .map(|f| f.get(index))
            .collect::<candle_core::Result<Vec<_>>>()?)
    }
}

impl BatchSource for TensorDataset {
    type Batch = TensorBatch;
    fn len(&self) -> usize {
        TensorDataset::len(self)
    }
    fn batch(&self, indices: &[usize]) -> Result<TensorBatch> {
        let n = self.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Data(format!(
                "index {bad} out of range for {n} items"
            )));
        }
        let idx = index_tensor(indices, self.fields[0].device())?;
        let fields = self
            .fields
            .iter()
            .map(|f| f.index_select(&idx, 0)?.to_device(&self.device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        TensorBatch::new(fields)
    }
}

/// Splits `0..n` into shuffled (first, second) index lists, the second holding
/// `round(n * fraction)` items. The same seed gives the same split.
pub fn split_indices(n: usize, fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::Config(format!(
            "split fraction must lie in [0, 1], got {fraction}"
        )));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(&[seed], "split")));
    let k = ((n as f64) * fraction).round() as usize;
    let second = idx.split_off(n - k);
    Ok((idx, second))
}

/// Splits `0..labels.len()` into shuffled (train, held-out) index lists with
/// `round(n_c · fraction)` items of each class `c` held out, so both sides keep
/// the class proportions (scikit-learn's `train_test_split(stratify=...)`). The
/// same seed gives the same split; both lists are in ascending order.
///
/// # Errors
/// A fraction outside [0, 1].
pub fn stratified_split(
    labels: &[u32],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::Config(format!(
            "split fraction must lie in [0, 1], got {fraction}"
        )));
    }
    let mut by_class: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (class, mut idx) in by_class {
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
            &[seed, class as u64],
            "stratified split",
        )));
        let k = ((idx.len() as f64) * fraction).round() as usize;
        second.extend(idx.split_off(idx.len() - k));
        first.extend(idx);
    }
    first.sort_unstable();
    second.sort_unstable();
    Ok((first, second))
}

/// The items `indices` of a data set, served as the data set serves them, epoch
/// by epoch (random augmentation keeps drawing from `(seed, epoch, index)` of the
/// underlying item: a wrapper that forwarded only `get` would serve every epoch
/// epoch 0's augmentation).
pub struct Subset<D> {
    dataset: std::sync::Arc<D>,
    indices: Vec<usize>,
}

impl<D: Dataset> Subset<D> {
    /// The items `indices` of `dataset`.
    ///
    /// # Errors
    /// An index at or past the data set's length.
    pub fn new(dataset: std::sync::Arc<D>, indices: Vec<usize>) -> Result<Self> {
        let n = dataset.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Data(format!(
                "subset index {bad} out of range for {n} items"
            )));
        }
        Ok(Self { dataset, indices })
    }

    /// The underlying indices.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl<D: Dataset> Dataset for Subset<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get(&self, index: usize) -> Result<D::Item> {
        self.get_in_epoch(index, 0)
    }
    fn get_in_epoch(&self, index: usize, epoch: usize) -> Result<D::Item> {
        let i = *self.indices.get(index).ok_or_else(|| {
            Error::Data(format!(
                "index {index} out of range for a subset of {} items",
                self.indices.len()
            ))
        })?;
        self.dataset.get_in_epoch(i, epoch)
    }
}

/// Splits `dataset` into (train, held-out) [`Subset`]s, `fraction` of the items
/// held out, shuffled by `seed` (PyTorch's `random_split`); with `labels`, each
/// class is split in that proportion ([`stratified_split`]).
///
/// # Errors
/// A fraction outside [0, 1], or labels of another length than the data set.
pub fn random_split<D: Dataset>(
    dataset: D,
    fraction: f64,
    seed: u64,
    labels: Option<&[u32]>,
) -> Result<(Subset<D>, Subset<D>)> {
    let n = dataset.len();
    let (a, b) = match labels {
        Some(l) if l.len() != n => {
            return Err(Error::shape(
                "random_split: labels",
                format!("{n} (one per item)"),
                l.len(),
            ))
        }
        Some(l) => stratified_split(l, fraction, seed)?,
        None => split_indices(n, fraction, seed)?,
    };
    let d = std::sync::Arc::new(dataset);
    Ok((Subset::new(d.clone(), a)?, Subset::new(d, b)?))
}

/// Settings of a [`DataLoader`].
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Items per batch (> 0).
    pub batch_size: usize,
    /// Shuffle the order each epoch (a pure function of `(seed, epoch)`).
    pub shuffle: bool,
    /// Drop the last batch when it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Batches prepared ahead on the background thread (0: build on the caller's thread).
    pub prefetch: usize,
}

impl LoaderConfig {
    /// Training defaults: shuffled, drop-last off, 2 batches prefetched.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        Self {
            batch_size,
            shuffle: true,
            drop_last: false,
            seed,
            prefetch: 2,
        }
    }
    /// Evaluation defaults: in order, nothing dropped.
    pub fn eval(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: false,
            drop_last: false,
            seed: 0,
            prefetch: 2,
        }
    }
}

/// One rank's share of every epoch in data-parallel training
/// ([`DataLoader::shard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Pad the epoch's order with its first items to a multiple of
    /// `world_size`, so every rank takes the same number of batches (training);
    /// unpadded, each item is seen exactly once across ranks (evaluation).
    pub padded: bool,
}

/// Yields batches in an order that is a pure function of `(seed, epoch)`, prepared
/// on a background thread while the model works on the previous one.
///
/// In a data-parallel process (one whose [`crate::distributed::init`] found more
/// than one rank), a shuffled loader is created already sharded
/// ([`DataLoader::shard`]); evaluation loaders stay whole, and the trainer shards
/// them (unpadded) where it evaluates.
pub struct DataLoader<B> {
    source: Arc<dyn BatchSource<Batch = B>>,
    config: LoaderConfig,
    shard: Option<Shard>,
}

impl<B> Clone for DataLoader<B> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            config: self.config.clone(),
            shard: self.shard,
        }
    }
}

impl<B: Send + 'static> DataLoader<B> {
    /// A loader over `source`; fails on an empty source or a batch size of 0.
    pub fn new(
        source: impl BatchSource<Batch = B> + 'static,
        config: LoaderConfig,
    ) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if source.is_empty() {
            return Err(Error::Data("empty data set: nothing to load".into()));
        }
        if config.drop_last && source.len() < config.batch_size {
            return Err(Error::Config(format!(
                "drop_last with batch size {} over {} items leaves no batch",
                config.batch_size,
                source.len()
            )));
        }
        let loader = Self {
            source: Arc::new(source),
            config,
            shard: None,
        };
        // A shuffled (training) loader of a data-parallel process takes its
        // rank's shard from the start, so that `num_batches` (what schedules
        // are sized by) counts this rank's steps.
        match crate::distributed::current() {
            Some(w) if w.world_size() > 1 && loader.config.shuffle => {
                loader.shard(w.rank(), w.world_size())
            }
            _ => Ok(loader),
        }
    }

    /// A loader over a [`Dataset`] and a [`Batcher`].
    pub fn from_dataset<D, C>(dataset: D, batcher: C, config: LoaderConfig) -> Result<Self>
    where
        D: Dataset + 'static,
        C: Batcher<D::Item, Batch = B> + 'static,
    {
        Self::new(ItemBatches { dataset, batcher }, config)
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Number of items in the whole data set (all ranks' shards together).
    pub fn num_items(&self) -> usize {
        self.source.len()
    }

    /// This rank's share of every epoch, as PyTorch's `DistributedSampler` cuts
    /// it: the epoch's order (the same on every rank) padded with its first items
    /// to a multiple of `world_size`, of which rank `r` takes positions
    /// `r, r + world_size, r + 2·world_size, …`, then batches of `batch_size`. So
    /// batch `i` of all ranks together holds the items of batch `i` of one
    /// process with a batch `world_size` times larger, and every rank takes the
    /// same number of steps.
    ///
    /// # Errors
    /// `rank >= world_size`, or a world of 0.
    pub fn shard(&self, rank: usize, world_size: usize) -> Result<Self> {
        self.sharded(rank, world_size, true)
    }

    /// [`DataLoader::shard`] without padding: the ranks' shards hold every item
    /// exactly once, so metrics summed over ranks are the whole set's
    /// (evaluation). Ranks may take one batch more or less than others.
    ///
    /// # Errors
    /// `rank >= world_size`, or a world of 0.
    pub fn shard_unpadded(&self, rank: usize, world_size: usize) -> Result<Self> {
        self.sharded(rank, world_size, false)
    }

    fn sharded(&self, rank: usize, world_size: usize, padded: bool) -> Result<Self> {
        if rank >= world_size {
            return Err(Error::Config(format!(
                "rank {rank} is outside a world of {world_size} ranks"
            )));
        }
        let mut out = self.clone();
        out.shard = (world_size > 1).then_some(Shard {
            rank,
            world_size,
            padded,
        });
        Ok(out)
    }

    /// The shard this loader takes, if any.
    pub fn shard_of(&self) -> Option<Shard> {
        self.shard
    }

    /// Items this rank takes per epoch (all of them without a shard).
    pub fn num_local_items(&self) -> usize {
        let n = self.source.len();
        match self.shard {
            None => n,
            Some(s) if s.padded => n.div_ceil(s.world_size),
            Some(s) => n / s.world_size + usize::from(s.rank < n % s.world_size),
        }
    }

    /// Number of batches per epoch (on this rank).
    pub fn num_batches(&self) -> usize {
        let n = self.num_local_items();
        let b = self.config.batch_size;
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The item order of `epoch` (this rank's part of it when sharded).
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.source.len()).collect();
        if self.config.shuffle {
            let s = mix(&[self.config.seed, epoch as u64], "shuffle");
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(s));
        }
        let Some(s) = self.shard else {
            return idx;
        };
        let n = idx.len();
        let total = if s.padded {
            n.div_ceil(s.world_size) * s.world_size
        } else {
            n
        };
        (s.rank..total)
            .step_by(s.world_size)
            .map(|p| idx[p % n])
            .collect()
    }

    /// The batches of `epoch`, starting after the first `skip` (for resuming
    /// mid-epoch).
    pub fn epoch(&self, epoch: usize, skip: usize) -> Batches<B> {
        let order = self.order(epoch);
        let b = self.config.batch_size;
        let chunks: Vec<Vec<usize>> = order
            .chunks(b)
            .take(self.num_batches())
            .skip(skip)
            .map(|c| c.to_vec())
            .collect();
        if self.config.prefetch == 0 {
            return Batches {
                inner: BatchesInner::Inline {
                    source: self.source.clone(),
                    chunks: chunks.into_iter(),
                    epoch,
                },
            };
        }
        let (tx, rx) = sync_channel(self.config.prefetch);
        let source = self.source.clone();
        let expected = chunks.len();
        let handle = std::thread::spawn(move || {
            for c in chunks {
                // A closed receiver means the consumer stopped early: just end.
                if tx.send(load_batch(source.as_ref(), &c, epoch)).is_err() {
                    break;
                }
            }
        });
        Batches {
            inner: BatchesInner::Thread {
                rx: Some(rx),
                handle: Some(handle),
                left: expected,
            },
        }
    }
}

/// The batches of one epoch (see [`DataLoader::epoch`]).
pub struct Batches<B> {
    inner: BatchesInner<B>,
}

enum BatchesInner<B> {
    Inline {
        source: Arc<dyn BatchSource<Batch = B>>,
        chunks: std::vec::IntoIter<Vec<usize>>,
        epoch: usize,
    },
    Thread {
        rx: Option<Receiver<Result<B>>>,
        handle: Option<std::thread::JoinHandle<()>>,
        /// Batches still to come: an epoch that ends short is an error.
        left: usize,
    },
}

impl<B: Send> Iterator for Batches<B> {
    type Item = Result<B>;
    fn next(&mut self) -> Option<Result<B>> {
        match &mut self.inner {
            BatchesInner::Inline {
                source,
                chunks,
                epoch,
            } => chunks
                .next()
                .map(|c| load_batch(source.as_ref(), &c, *epoch)),
            BatchesInner::Thread { rx, left, .. } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                match rx.as_ref()?.recv() {
                    Ok(b) => Some(b),
                    // The loader's thread ended before its last batch: say so
                    // rather than end the epoch early without a word.
                    Err(_) => {
                        *left = 0;
                        Some(Err(Error::Data(
                            "the data loader's thread stopped before the end of the epoch".into(),
                        )))
                    }
                }
            }
        }
    }
}

impl<B> Drop for Batches<B> {
    fn drop(&mut self) {
        if let BatchesInner::Thread { rx, handle, .. } = &mut self.inner {
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
