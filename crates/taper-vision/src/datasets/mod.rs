//! Image data sets: MNIST-style IDX files and the embedded 8x8 digits.

pub mod digits;
pub mod idx;
pub mod mnist;

pub use digits::load_digits;
pub use idx::{read_idx, Idx};
pub use mnist::{load_mnist, Split};
