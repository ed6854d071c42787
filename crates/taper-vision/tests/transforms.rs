//! Transforms: determinism, geometry, tensor conversion and bad settings.

use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, GenericImageView, GrayImage, Luma, Rgb, RgbImage};
use std::path::Path;
use taper_vision::transforms::*;

fn photo() -> DynamicImage {
    open_image(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/flower.jpg")).unwrap()
}

fn full_pipeline() -> Compose {
    Compose::new()
        .then(Resize::new(64, 48))
        .then(RandomRotation { max_degrees: 30.0 })
        .then(RandomCrop {
            width: 40,
            height: 40,
            padding: 4,
        })
        .then(HorizontalFlip { p: 0.5 })
        .then(VerticalFlip { p: 0.5 })
        .then(RandomAffine {
            degrees: 10.0,
            translate: (0.1, 0.1),
            scale: (0.9, 1.1),
        })
        .then(ColorJitter {
            brightness: 0.3,
            contrast: 0.3,
            saturation: 0.3,
        })
        .then(GaussianBlur {
            min_sigma: 0.5,
            max_sigma: 1.0,
        })
}

#[test]
fn same_seed_same_pixels_in_parallel_or_not() {
    let p = full_pipeline();
    let a = p.apply(photo(), 7).unwrap();
    let b = p.apply(photo(), 7).unwrap();
    let c = p.apply(photo(), 8).unwrap();
    assert_eq!(a.dimensions(), (40, 40));
    assert_eq!(a.as_bytes(), b.as_bytes());
    assert_ne!(a.as_bytes(), c.as_bytes());
    let batch = p
        .apply_batch(&[photo(), photo(), photo()], &[8, 7, 8])
        .unwrap();
    assert_eq!(batch[1].as_bytes(), a.as_bytes());
    assert_eq!(batch[0].as_bytes(), c.as_bytes());
    assert!(p.apply_batch(&[photo()], &[1, 2]).is_err());
}

#[test]
fn geometry_is_right() {
    // A white 3x3 block at the top-left of a black 9x9 image.
    let mut g = GrayImage::new(9, 9);
    for (x, y) in (0..3).flat_map(|x| (0..3).map(move |y| (x, y))) {
        g.put_pixel(x, y, Luma([255]));
    }
    let img = DynamicImage::ImageLuma8(g);
    let rng_free = |t: &dyn Transform| {
        t.apply(
            img.clone(),
            &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0),
        )
        .unwrap()
    };
    let f = rng_free(&HorizontalFlip { p: 1.0 });
    assert_eq!(f.to_luma8().get_pixel(8, 0)[0], 255);
    let v = rng_free(&VerticalFlip { p: 1.0 });
    assert_eq!(v.to_luma8().get_pixel(0, 8)[0], 255);
    // 90° clockwise about the centre moves the top-left corner to the top-right.
    let r = rng_free(&Rotate { degrees: 90.0 }).to_luma8();
    assert!(
        r.get_pixel(7, 1)[0] > 200 && r.get_pixel(1, 1)[0] < 50,
        "{r:?}"
    );
    let c = rng_free(&CenterCrop {
        width: 3,
        height: 3,
    });
    assert_eq!(c.dimensions(), (3, 3));
    let z = rng_free(&Resize::new(18, 4));
    assert_eq!(z.dimensions(), (18, 4));
    assert_eq!(rng_free(&Grayscale).color(), image::ColorType::L8);
}

#[test]
fn to_tensor_and_normalize() {
    let mut rgb = RgbImage::new(2, 1);
    rgb.put_pixel(0, 0, Rgb([255, 0, 51]));
    rgb.put_pixel(1, 0, Rgb([0, 255, 102]));
    let t = to_tensor(&DynamicImage::ImageRgb8(rgb), 3, &Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[3, 1, 2]);
    assert_eq!(
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        vec![1.0, 0.0, 0.0, 1.0, 0.2, 0.4]
    );
    let n = Normalize {
        mean: vec![0.5, 0.5, 0.0],
        std: vec![0.5, 0.5, 0.2],
    }
    .apply(&t)
    .unwrap();
    assert_eq!(
        n.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        vec![1.0, -1.0, -1.0, 1.0, 1.0, 2.0]
    );
    let batch = t.unsqueeze(0).unwrap();
    assert!(Normalize::imagenet().apply(&batch).is_ok());
    let e = Normalize::mnist().apply(&batch).unwrap_err().to_string();
    assert!(
        e.contains("1 means and 1 stds for an image of 3 channels"),
        "{e}"
    );
    let e = Normalize::mnist()
        .apply(&Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank 1"), "{e}");
}

#[test]
fn bad_settings_are_clear_errors() {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let e = CenterCrop {
        width: 1000,
        height: 10,
    }
    .apply(photo(), &mut rng)
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("center crop 1000x10 does not fit in a 640x427 image"),
        "{e}"
    );
    let e = RandomCrop {
        width: 700,
        height: 10,
        padding: 10,
    }
    .apply(photo(), &mut rng)
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("random crop 700x10 does not fit in a 660x447 image"),
        "{e}"
    );
    assert!(Resize::new(0, 3).apply(photo(), &mut rng).is_err());
    assert!(GaussianBlur {
        min_sigma: 0.0,
        max_sigma: 1.0
    }
    .apply(photo(), &mut rng)
    .is_err());
    assert!(RandomAffine {
        degrees: 0.0,
        translate: (0.0, 0.0),
        scale: (1.2, 0.8)
    }
    .apply(photo(), &mut rng)
    .is_err());
    assert!(to_tensor(&photo(), 2, &Device::Cpu).is_err());
}

#[test]
fn corrupt_empty_and_huge_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let e = open_image(&empty).unwrap_err().to_string();
    assert!(e.contains("empty.jpg") && e.contains("empty file"), "{e}");
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/flower.jpg"))
            .unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let e = open_image(&cut);
    // A truncated JPEG either fails to decode or decodes with missing rows; it must never panic.
    if let Err(e) = e {
        assert!(e.to_string().contains("cut.jpg"), "{e}");
    }
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let e = open_image(&junk).unwrap_err().to_string();
    assert!(
        e.contains("junk.png") && e.contains("unreadable image header"),
        "{e}"
    );
    // A PNG header claiming 100000 x 100000 pixels: refused by the limits, not allocated.
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend_from_slice(&100_000u32.to_be_bytes());
    png.extend_from_slice(&100_000u32.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&png[12..]);
    png.extend_from_slice(&crc.to_be_bytes());
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, &png).unwrap();
    let e = open_image(&huge).unwrap_err().to_string();
    assert!(
        e.contains("huge.png") && (e.contains("limit") || e.contains("Limit")),
        "{e}"
    );
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn borrowed_images_give_the_same_pixels_as_owned_ones() {
    let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(50, 31, |x, y| {
        image::Rgba([(x * 5) as u8, (y * 8) as u8, 77, 200])
    }));
    let grey = DynamicImage::ImageLuma8(GrayImage::from_fn(50, 31, |x, y| {
        Luma([(x * 3 + y * 7) as u8])
    }));
    let steps: Vec<Box<dyn Transform>> = vec![
        Box::new(Resize::new(24, 40)),
        Box::new(CenterCrop {
            width: 20,
            height: 11,
        }),
        Box::new(RandomCrop {
            width: 30,
            height: 30,
            padding: 3,
        }),
        Box::new(Rotate { degrees: 12.0 }),
        Box::new(RandomRotation { max_degrees: 30.0 }),
        Box::new(HorizontalFlip { p: 0.5 }),
        Box::new(VerticalFlip { p: 0.5 }),
        Box::new(ColorJitter {
            brightness: 0.3,
            contrast: 0.3,
            saturation: 0.3,
        }),
    ];
    for img in [photo(), rgba, grey] {
        for (i, t) in steps.iter().enumerate() {
            for seed in 0..4 {
                let rng = || <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
                let owned = t.apply(img.clone(), &mut rng()).unwrap();
                let borrowed = t.apply_ref(&img, &mut rng()).unwrap();
                assert_eq!(owned.dimensions(), borrowed.dimensions(), "step {i}");
                assert_eq!(owned.color(), borrowed.color(), "step {i}");
                assert_eq!(
                    owned.as_bytes(),
                    borrowed.as_bytes(),
                    "step {i}, seed {seed}"
                );
            }
        }
        let p = full_pipeline();
        assert_eq!(
            p.apply(img.clone(), 3).unwrap().as_bytes(),
            p.apply_ref(&img, 3).unwrap().as_bytes()
        );
        assert_eq!(
            Compose::new().apply_ref(&img, 3).unwrap().as_bytes(),
            img.as_bytes()
        );
    }
    // A flip keeps the image's own pixel type; crops of grey and RGB copy rows.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let f = HorizontalFlip { p: 1.0 }
        .apply(
            DynamicImage::ImageRgba8(image::RgbaImage::new(3, 2)),
            &mut rng,
        )
        .unwrap();
    assert_eq!(f.color(), image::ColorType::Rgba8);
    let c = CenterCrop {
        width: 2,
        height: 1,
    }
    .apply_ref(&grey_ramp(), &mut rng)
    .unwrap();
    assert_eq!(c.as_bytes(), &[5, 6]);
}

/// 4x3 grey image whose pixel (x, y) is 4y + x.
fn grey_ramp() -> DynamicImage {
    DynamicImage::ImageLuma8(GrayImage::from_fn(4, 3, |x, y| Luma([(4 * y + x) as u8])))
}

#[test]
fn a_batch_tensor_equals_stacked_normalised_images() {
    let p = full_pipeline();
    let imgs = p
        .apply_batch(&[photo(), photo(), photo()], &[1, 2, 3])
        .unwrap();
    let norm = Normalize::imagenet();
    let batch = to_tensor_batch(&imgs, 3, Some(&norm), &Device::Cpu).unwrap();
    assert_eq!(batch.dims(), &[3, 3, 40, 40]);
    let each: Vec<Tensor> = imgs
        .iter()
        .map(|i| to_tensor(i, 3, &Device::Cpu).unwrap())
        .collect();
    let want = norm.apply(&Tensor::stack(&each, 0).unwrap()).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(&batch), bits(&want));
    // Grey from colour, and no normalisation: to_tensor's values.
    let g = to_tensor_batch(&imgs[..1], 1, None, &Device::Cpu).unwrap();
    assert_eq!(
        bits(&g.squeeze(0).unwrap()),
        bits(&to_tensor(&imgs[0], 1, &Device::Cpu).unwrap())
    );
    assert_eq!(
        to_tensor_batch(&[], 3, None, &Device::Cpu).unwrap().dims(),
        &[0, 3, 0, 0]
    );
    let e = to_tensor_batch(&[imgs[0].clone(), photo()], 3, None, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("image 1 is 640x427, image 0 is 40x40"), "{e}");
    let e = to_tensor_batch(&imgs, 3, Some(&Normalize::mnist()), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 means and 1 stds for an image of 3 channels"),
        "{e}"
    );
    assert!(to_tensor_batch(&imgs, 2, None, &Device::Cpu).is_err());
}
