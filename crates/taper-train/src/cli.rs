//! The command-line flags every example shares (feature `cli`).

use crate::data::root::resolve_data_root;
use crate::device::{parse_device, set_threads};
use crate::Result;
use candle_core::Device;
use std::path::PathBuf;

/// Flags shared by all examples; flatten it into an example's own parser with
/// `#[command(flatten)] common: ExampleArgs`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExampleArgs {
    /// Data root, laid out like `../shared/data` (`DIR/mnist/`, `DIR/text/`, ...).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Number of training epochs (each example has its own default).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed for weight initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Device: cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads for candle's kernels (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Run directory (default `runs/<example>-<timestamp>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run stored in this run directory.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Also checkpoint every N training steps within an epoch (epochs always end with one).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Average the gradients of K batches per update (an effective batch K times larger).
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub accumulate: usize,
    /// Start afresh in an `--out` directory that holds an earlier run, deleting
    /// its checkpoints (without it such a directory is refused).
    #[arg(long)]
    pub overwrite: bool,
    /// Fraction of the training data held out (seeded, stratified by class) for
    /// keep-best, early stopping and the plateau schedule, above 0 and below 1
    /// [default: 0.1].
    #[arg(long, value_name = "F")]
    pub valid_fraction: Option<f64>,
}

impl ExampleArgs {
    /// The shared flags that only training reads: what a command that trains
    /// nothing (prediction, sampling, explanation) rejects.
    pub const TRAINING: &'static [&'static str] = &[
        "accumulate",
        "checkpoint-every",
        "valid-fraction",
        "epochs",
        "lr",
        "batch-size",
    ];

    /// A one-line error for each shared flag this example does not use but was
    /// given (`flags` by their command-line names: `accumulate`,
    /// `checkpoint-every`, `valid-fraction`, `resume`, `batch-size`, `lr`,
    /// `epochs`, `overwrite`, `device` (other than `cpu`), `data`, `out`), so that no
    /// flag is accepted and silently ignored.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the first such flag.
    pub fn reject(&self, example: &str, flags: &[&str]) -> Result<()> {
        for f in flags {
            let given = match *f {
                "accumulate" => self.accumulate != 1,
                "checkpoint-every" => self.checkpoint_every.is_some(),
                "valid-fraction" => self.valid_fraction.is_some(),
                "resume" => self.resume.is_some(),
                "batch-size" => self.batch_size.is_some(),
                "lr" => self.lr.is_some(),
                "epochs" => self.epochs.is_some(),
                "overwrite" => self.overwrite,
                "device" => self.device != "cpu",
                "data" => self.data.is_some(),
                "out" => self.out.is_some(),
                _ => false,
            };
            if given {
                return Err(crate::Error::Config(format!(
                    "{example} does not use --{f}"
                )));
            }
        }
        Ok(())
    }

    /// The validation fraction (`--valid-fraction`, default 0.1).
    ///
    /// # Errors
    /// A fraction outside (0, 1): the examples select their kept epoch on the
    /// validation split, so it cannot be empty.
    pub fn valid_fraction(&self) -> Result<f64> {
        let f = self.valid_fraction.unwrap_or(0.1);
        if !(f > 0.0 && f < 1.0) {
            return Err(crate::Error::Config(format!(
                "--valid-fraction must be above 0 and below 1 (the kept epoch is chosen on that split), got {f}"
            )));
        }
        Ok(f)
    }

    /// The epochs to train in all: `--epochs`, else, when resuming, the number the
    /// run was started with (its `run.json`), else `default`. A resumed run thus
    /// finishes what it set out to do, on the same learning-rate schedule.
    ///
    /// # Errors
    /// An unreadable `run.json` in the `--resume` directory.
    pub fn epochs_or(&self, default: usize) -> Result<usize> {
        if let Some(e) = self.epochs {
            return Ok(e);
        }
        let recorded = match &self.resume {
            Some(dir) => crate::report::RunInfo::load(dir)?.and_then(|info| info.epochs),
            None => None,
        };
        Ok(recorded.unwrap_or(default))
    }

    /// A [`crate::TrainerConfig`] with the shared flags applied: run directory,
    /// seed, `--resume`, `--overwrite`, `--checkpoint-every`; `epochs` and the
    /// configuration recorded with each checkpoint come from the example.
    ///
    /// # Errors
    /// As [`ExampleArgs::run_dir`].
    pub fn trainer_config(
        &self,
        example: &str,
        epochs: usize,
        config: serde_json::Value,
    ) -> Result<crate::TrainerConfig> {
        Ok(crate::TrainerConfig {
            epochs,
            run_dir: Some(self.run_dir(example)?),
            seed: self.seed,
            resume: self.resume.is_some(),
            overwrite: self.overwrite,
            checkpoint_every: self.checkpoint_every,
            config,
            ..Default::default()
        })
    }

    /// Applies `--threads` and opens `--device`. Call before creating tensors.
    ///
    /// Under a data-parallel launcher (`mpirun -np N`) this also joins the other
    /// ranks ([`crate::distributed::init`]), and ranks other than 0 stop printing
    /// to standard output, so the run prints its lines, and its final JSON
    /// object, once (their errors still reach standard error).
    ///
    /// # Errors
    /// A flag value [`ExampleArgs::check`] refuses, a bad device name, or as
    /// [`crate::distributed::init`].
    pub fn device(&self) -> Result<Device> {
        self.check()?;
        set_threads(self.threads);
        let world = crate::distributed::init()?;
        if world.rank() > 0 {
            silence_stdout();
        }
        parse_device(&self.device)
    }

    /// The data root (see [`resolve_data_root`]).
    pub fn data_root(&self) -> PathBuf {
        resolve_data_root(self.data.as_deref())
    }

    /// Checks the shared flags' values, before anything runs, so that a value
    /// no training can use fails at once with one line instead of a panic, a
    /// NaN loss at step 1, or a run that trains to chance.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the flag: `--batch-size`, `--accumulate`
    /// or `--checkpoint-every` of 0; `--lr` not finite and
    /// positive; `--valid-fraction` outside (0, 1); `--threads` above four per
    /// core (thousands of threads only thrash); `--resume` with `--overwrite`.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        // `--epochs 0` stays allowed: it evaluates the initial weights (a baseline).
        for (flag, v) in [
            ("batch-size", self.batch_size),
            ("accumulate", Some(self.accumulate)),
            ("checkpoint-every", self.checkpoint_every),
        ] {
            if v == Some(0) {
                return bad(format!("--{flag} must be at least 1, got 0"));
            }
        }
        if let Some(lr) = self.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return bad(format!("--lr must be a finite number above 0, got {lr}"));
            }
        }
        self.valid_fraction()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.threads > 4 * cores {
            return bad(format!(
                "--threads {} is more than four per core ({cores} cores here); 0 uses them all",
                self.threads
            ));
        }
        if self.resume.is_some() && self.overwrite {
            return bad("--resume continues a run and --overwrite deletes it: give one".into());
        }
        Ok(())
    }

    /// The run directory: `--resume`, else `--out`, else `runs/<example>-<timestamp>`.
    ///
    /// A new run's directory is checked the first time it is asked for (before
    /// the example writes into it), so that nothing already there is lost: it
    /// must be absent or empty, or hold an earlier Taper run (a `run.json`,
    /// `model.json` or `checkpoints/latest.json`) and `--overwrite` be given.
    ///
    /// # Errors
    /// [`crate::Error::Config`]: `--out` is a file, a non-empty folder that holds
    /// no Taper run (with or without `--overwrite`: its files are not Taper's to
    /// delete), an earlier run without `--overwrite`, or `--out` beside
    /// `--resume` naming another folder (a resumed run stays where it is).
    pub fn run_dir(&self, example: &str) -> Result<PathBuf> {
        if let Some(r) = &self.resume {
            if let Some(o) = self.out.as_ref().filter(|o| *o != r) {
                return Err(crate::Error::Config(format!(
                    "--resume continues the run in {} and cannot move it to --out {}: copy the folder first and resume the copy",
                    r.display(),
                    o.display()
                )));
            }
            return Ok(r.clone());
        }
        let dir = match &self.out {
            Some(o) => o.clone(),
            None => self.default_run_dir(example),
        };
        // Checked once per folder and process: later calls come after the example
        // has written into it.
        static CHECKED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
        if !checked.contains(&dir) {
            check_new_run_dir(&dir, self.overwrite)?;
            checked.push(dir.clone());
        }
        Ok(dir)
    }

    fn default_run_dir(&self, example: &str) -> PathBuf {
        // One stamp per process: an example asks for its run directory more
        // than once, and the calls must not straddle a second.
        static STAMP: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let secs = *STAMP.get_or_init(|| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            // Data-parallel ranks share one run directory: rank 0's clock names it.
            let mut bytes = secs.to_le_bytes();
            if let Ok(world) = crate::distributed::init() {
                // A failed broadcast leaves this rank's own name; the trainer's
                // first collective then reports the failure.
                let _ = world.broadcast(0, &mut bytes);
            }
            u64::from_le_bytes(bytes)
        });
        PathBuf::from("runs").join(format!("{example}-{secs}"))
    }
}

/// Refuses a new run's directory where starting would lose what is there (see
/// [`ExampleArgs::run_dir`]).
fn check_new_run_dir(dir: &std::path::Path, overwrite: bool) -> Result<()> {
    let config = |m: String| Err(crate::Error::Config(m));
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) if dir.exists() && !dir.is_dir() => {
            return config(format!("--out {} is a file, not a folder", dir.display()))
        }
        Err(e) => return Err(crate::Error::io(dir, e)),
    };
    if entries.into_iter().next().is_none() {
        return Ok(());
    }
    let is_run = [
        dir.join(crate::report::RUN_FILE),
        dir.join(crate::card::MODEL_FILE),
        crate::checkpoint::checkpoints_dir(dir).join("latest.json"),
    ]
    .iter()
    .any(|p| p.exists());
    if !is_run {
        return config(format!(
            "--out {} is not empty and holds no Taper run: a run writes metrics.jsonl, report/ and checkpoints/ there, so choose a new or empty folder",
            dir.display()
        ));
    }
    if !overwrite {
        return config(format!(
            "--out {0} holds an earlier run: continue it with --resume {0}, start afresh with --overwrite, or choose another folder",
            dir.display()
        ));
    }
    Ok(())
}

/// Points standard output at /dev/null (ranks other than 0 of a data-parallel
/// run; `TAPER_ALL_RANKS_PRINT=1` keeps it).
fn silence_stdout() {
    if std::env::var_os("TAPER_ALL_RANKS_PRINT").is_some_and(|v| v == "1") {
        return;
    }
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
            return;
        };
        let _ = std::io::stdout().flush();
        // SAFETY: both descriptors are open (ours from `null`, which lives until
        // the end of this block, and the process's standard output); dup2 only
        // replaces what descriptor 1 refers to.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}
