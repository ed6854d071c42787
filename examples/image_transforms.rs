//! Loads a photo and writes a PNG grid of its seeded augmentations
//! (`assets/china.jpg` by default; `--image FILE` for another).

use anyhow::{Context, Result};
use clap::Parser;
use image::{GenericImage, RgbImage};
use std::path::PathBuf;
use taper::train::cli::ExampleArgs;
use taper::train::report::{self, Block, Picture, Section};
use taper::vision::transforms::*;

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Write a grid of augmentations of a photo")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// The photo (default: the embedded assets/china.jpg).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Grid columns (and rows).
    #[arg(long, default_value_t = 4)]
    grid: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Nothing is trained or resumed here.
    args.common
        .reject("image_transforms", ExampleArgs::TRAINING)?;
    args.common
        .reject("image_transforms", &["resume", "data"])?;
    let path = args
        .image
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/china.jpg"));
    let img = open_image(&path)?;
    let side = 224;
    let pipeline = Compose::new()
        .then(Resize::new(256, 256))
        .then(RandomRotation { max_degrees: 20.0 })
        .then(RandomCrop {
            width: side,
            height: side,
            padding: 8,
        })
        .then(HorizontalFlip { p: 0.5 })
        .then(ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
        })
        .then(GaussianBlur {
            min_sigma: 0.1,
            max_sigma: 1.5,
        });
    let n = args.grid * args.grid;
    let seeds: Vec<u64> = (0..n as u64)
        .map(|i| args.common.seed.wrapping_add(i))
        .collect();
    let t0 = std::time::Instant::now();
    let outs = pipeline.apply_batch(&vec![img; n as usize], &seeds)?;
    let secs = t0.elapsed().as_secs_f64();
    let mut grid = RgbImage::new(side * args.grid, side * args.grid);
    for (i, o) in outs.iter().enumerate() {
        let (x, y) = (i as u32 % args.grid, i as u32 / args.grid);
        grid.copy_from(&o.to_rgb8(), x * side, y * side)?;
    }
    let dir = args.common.run_dir("image_transforms")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = dir.join("augmentations.png");
    grid.save(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({n} augmentations of {})",
        out.display(),
        path.display()
    );
    let json = serde_json::json!({"example": "image_transforms", "image": path, "output": out, "images": n,
        "images_per_second": n as f64 / secs});
    Section::new("Augmentations", 10)
        .with(Block::Images {
            images: vec![Picture {
                file: "augmentations.png".into(),
                caption: format!("{n} seeded augmentations of {}", path.display()),
            }],
            slider: false,
        })
        .save(&dir, "augmentations")?;
    let info = report::RunInfo::new(args.common.seed, &candle_core::Device::Cpu);
    println!(
        "report: {}",
        report::finish(&dir, &json, Some(info))?.display()
    );
    println!("{json}");
    Ok(())
}
