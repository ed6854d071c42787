//! Image data sets: MNIST-style IDX files, CIFAR-10 binaries, image folders and
//! the embedded 8x8 digits. All plug into `taper-train`'s `DataLoader`.

pub mod builtin;
pub mod cifar;
pub mod digits;
pub mod folder;
pub mod idx;
pub mod memory;
pub mod mnist;
pub mod moving;

pub use builtin::{builtin, Builtin, FASHION_CLASSES};
pub use cifar::{load_cifar10, read_cifar_file};
pub use digits::load_digits;
pub use folder::{ImageFolder, OnBadFile};
pub use idx::{read_idx, Idx};
pub use memory::InMemoryImages;
pub use mnist::{load_mnist, Split};
pub use moving::{clip_from_frames, MovingDigits, MovingDigitsConfig};
