//! Every vector-instruction level the CPU has (`taper_nn::kernels::simd`) gives
//! the same bytes and floats from the pixel loops behind the transforms: the
//! resize, the rotation (AVX2 gathers against the scalar path) and the
//! conversion to normalised planes. One test function: the level is
//! process-wide, so nothing else may run beside it in this binary.

use candle_core::Device;
use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use taper_nn::kernels::simd;
use taper_vision::transforms::*;

/// A photo-like pattern: gradients and sharp edges, at an odd size.
fn rgb(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 7 % 256) as u8,
            (y * 11 % 256) as u8,
            if (x / 5 + y / 3) % 2 == 0 { 250 } else { 5 },
        ])
    }))
}

fn grey(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| {
        Luma([((x * 13 + y * 29) % 256) as u8])
    }))
}

/// Everything the pixel loops produce for a handful of shapes and angles.
fn outputs() -> (Vec<Vec<u8>>, Vec<Vec<f32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let imgs = [
        rgb(37, 23),
        rgb(640, 427),
        rgb(5, 9),
        grey(41, 29),
        rgb(8, 8),
    ];
    let mut bytes = Vec::new();
    for img in &imgs {
        for (w, h) in [(16, 12), (64, 50), (256, 256), (20, 40)] {
            bytes.push(
                Resize::new(w, h)
                    .apply_ref(img, &mut rng)
                    .unwrap()
                    .into_bytes(),
            );
        }
        for degrees in [0.0f32, 7.5, -15.0, 33.3, 90.0, 180.0, 1e-3] {
            bytes.push(
                Rotate { degrees }
                    .apply_ref(img, &mut rng)
                    .unwrap()
                    .into_bytes(),
            );
        }
    }
    let norm = Normalize::imagenet();
    let floats = vec![
        to_tensor_batch(&[rgb(37, 23), rgb(37, 23)], 3, Some(&norm), &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
        to_tensor_batch(&[grey(41, 29)], 1, Some(&Normalize::mnist()), &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
        to_tensor(&rgb(33, 7), 3, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
    ];
    (bytes, floats)
}

#[test]
fn every_level_gives_the_portable_pixels() {
    simd::set_level(simd::Level::Portable).unwrap();
    let (want_bytes, want_floats) = outputs();
    for level in simd::available() {
        simd::set_level(level).unwrap();
        let (bytes, floats) = outputs();
        for (i, (a, b)) in bytes.iter().zip(&want_bytes).enumerate() {
            assert!(
                a == b,
                "{}: byte output {i} differs from the portable one",
                level.name()
            );
        }
        for (i, (a, b)) in floats.iter().zip(&want_floats).enumerate() {
            let same =
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same,
                "{}: float output {i} differs from the portable one",
                level.name()
            );
        }
    }
    simd::set_level(simd::detected()).unwrap();
}
