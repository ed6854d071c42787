//! Where a training step stands, handed to every step as an argument.
//!
//! Dropout masks, a GAN's noise and a teacher-forcing schedule all depend on the
//! step; they read it from the [`StepContext`] the trainer passes, never from
//! thread-local state, so a draw is the same on whatever thread computes it
//! (DP-SGD's per-example passes run on a thread pool) and a resumed run repeats
//! an uninterrupted one bit for bit.

use rand_chacha::ChaCha8Rng;
use taper_nn::init::{mix, rng_for};
use taper_nn::Mode;

/// Where training stands at one step: epoch, batch, iteration, seed and (for
/// data-parallel training) rank.
///
/// ```
/// use taper_train::StepContext;
///
/// let ctx = StepContext::new(42, 0, 3, 3);
/// // The same step gives the same keys; another iteration other ones.
/// assert_eq!(ctx.key("noise"), StepContext::new(42, 0, 3, 3).key("noise"));
/// assert_ne!(ctx.key("noise"), StepContext::new(42, 0, 4, 4).key("noise"));
/// assert!(ctx.mode().is_train());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepContext {
    /// The run's seed.
    pub seed: u64,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Batch within the epoch (0-based).
    pub batch: usize,
    /// Batches trained on since the run started, before this one.
    pub iteration: u64,
    /// This process's rank among `world_size` data-parallel processes.
    pub rank: usize,
    /// Number of data-parallel processes (1: a single process).
    pub world_size: usize,
}

impl StepContext {
    /// Step `iteration` (batch `batch` of `epoch`) of a single-process run seeded
    /// by `seed`.
    pub fn new(seed: u64, epoch: usize, batch: usize, iteration: u64) -> Self {
        Self {
            seed,
            epoch,
            batch,
            iteration,
            rank: 0,
            world_size: 1,
        }
    }

    /// The same step on data-parallel rank `rank` of `world_size`: its draws
    /// (dropout masks) differ between ranks, which see different examples.
    pub fn on_rank(mut self, rank: usize, world_size: usize) -> Self {
        self.rank = rank;
        self.world_size = world_size;
        self
    }

    /// A 64-bit key for the draw `name` of this step: a pure function of
    /// `(seed, iteration, rank, name)`.
    pub fn key(&self, name: &str) -> u64 {
        mix(&[self.seed, self.iteration, self.rank as u64], name)
    }

    /// A seeded generator for the draw `name` of this step.
    pub fn rng(&self, name: &str) -> ChaCha8Rng {
        rng_for(self.key(name), name)
    }

    /// The training [`Mode`] of this step's forward passes: dropout and every
    /// other draw of the model come from its stream.
    pub fn mode(&self) -> Mode {
        Mode::train(self.key("forward"))
    }
}
