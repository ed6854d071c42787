//! The NCCL engine: one process per GPU, collectives on the devices.

use super::nccl_id;
use super::watch::{self, Watch};
use super::{check_root, launcher, Collective};
use crate::{Error, Result};
use candle_core::backend::BackendStorage;
use candle_core::cuda::CudaStorageSlice;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use cudarc::nccl::{Comm, Id, NcclType, ReduceOp};
use std::ffi::c_char;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// NCCL between GPUs: one process per device, every rank on `cuda:<local rank>`.
///
/// Rank 0 creates NCCL's unique id and writes it atomically to
/// [`super::NCCL_ID_FILE`] in a folder all ranks see (the run folder; a shared file
/// system across machines); the other ranks wait for that file (up to
/// `TAPER_COLLECTIVE_TIMEOUT` seconds, default 300), then all join the
/// communicator. Rank 0 deletes the file once every rank has joined.
///
/// The communicator runs on the device's candle stream, so collectives are
/// ordered with the kernels that produce and consume their tensors.
/// [`Collective::all_reduce_sum_tensor`] reduces f32, f64, bf16 and f16 tensors
/// in place on the GPU; the host-slice operations copy through the device. A
/// collective that waits longer than the timeout for its peers ends the process.
pub struct Nccl {
    /// `None` once [`Collective::abort`] has dropped it.
    comm: Mutex<Option<SendComm>>,
    device: Device,
    rank: usize,
    world: usize,
    watch: Arc<Watch>,
}

/// [`Comm`] holds NCCL's communicator handle, a raw pointer, so it is neither
/// `Send` nor `Sync`.
struct SendComm(Comm);

// SAFETY: an NCCL communicator may be used from any thread as long as no two
// threads call it at once (NCCL's rule for sharing a communicator); `Nccl`
// only reaches it through its `Mutex`, one caller at a time. The CUDA stream
// it holds is `Send` and `Sync` already.
unsafe impl Send for SendComm {}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nccl")
            .field("rank", &self.rank)
            .field("world_size", &self.world)
            .field("device", &self.device)
            .finish()
    }
}

impl Nccl {
    /// Joins the NCCL communicator of `world_size` ranks as `rank`, on `device`
    /// (a CUDA device: the one this rank trains on). `id_dir` is the folder,
    /// the same for every rank, through which rank 0 hands out NCCL's id.
    ///
    /// # Errors
    /// `rank` outside the world, `device` not a CUDA device, the id file not
    /// written or not found in time, or NCCL failing to start.
    pub fn new(rank: usize, world_size: usize, device: &Device, id_dir: &Path) -> Result<Self> {
        if world_size == 0 || rank >= world_size {
            return Err(Error::Distributed(format!(
                "NCCL: rank {rank} is outside a world of {world_size}"
            )));
        }
        let cuda = device
            .as_cuda_device()
            .map_err(|_| Error::Distributed(format!("NCCL needs a CUDA device, got {device:?}")))?;
        let timeout = watch::timeout();
        let id = if rank == 0 {
            let id = Id::new().map_err(|e| nccl_error("creating the unique id", e))?;
            nccl_id::publish(id_dir, &id.internal().map(|c| c as u8))?;
            id
        } else {
            let raw = nccl_id::wait_for(id_dir, timeout, rank)?;
            Id::uninit(raw.map(|b| b as c_char))
        };
        // Joining waits for every rank: a rank that never comes must not hang
        // the others, so the watchdog covers it too.
        let watch = Watch::start(rank, "NCCL", timeout);
        let comm = watch.run("initialisation", 0, || {
            Comm::from_rank(cuda.cuda_stream(), rank, world_size, id)
                .map_err(|e| nccl_error("joining the communicator", e))
        })?;
        if rank == 0 {
            // Initialisation is collective: every rank has joined.
            nccl_id::retire(id_dir);
        }
        Ok(Self {
            comm: Mutex::new(Some(SendComm(comm))),
            device: device.clone(),
            rank,
            world: world_size,
            watch,
        })
    }

    /// [`Nccl::new`] with the rank and world size a launcher set
    /// ([`super::launcher`]: `TAPER_RANK`/`TAPER_WORLD_SIZE`, or `mpirun`'s),
    /// on `cuda:<local rank>`: `TAPER_LOCAL_RANK`, else Open MPI's
    /// `OMPI_COMM_WORLD_LOCAL_RANK`, else the rank (one machine).
    ///
    /// # Errors
    /// No launcher variables, values that do not parse, the device missing, or
    /// the errors of [`Nccl::new`].
    pub fn from_env(id_dir: &Path) -> Result<Self> {
        let l = launcher().ok_or_else(|| {
            Error::Distributed(
                "NCCL: no rank in the environment (set TAPER_RANK and TAPER_WORLD_SIZE, \
                 or start the ranks with mpirun)"
                    .into(),
            )
        })?;
        let (Some(rank), Some(world)) = (l.rank, l.world_size) else {
            return Err(Error::Distributed(format!(
                "NCCL: the launcher's rank and world size must be numbers: {}",
                l.variables
            )));
        };
        let local = ["TAPER_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"]
            .iter()
            .find_map(|v| std::env::var(v).ok().map(|s| (*v, s)));
        let ordinal = match local {
            Some((name, value)) => value
                .trim()
                .parse()
                .map_err(|_| Error::Distributed(format!("NCCL: {name}={value} is not a number")))?,
            None => rank,
        };
        let device = Device::new_cuda(ordinal)?;
        Self::new(rank, world, &device, id_dir)
    }

    /// The CUDA device this rank's collectives run on: build the model and
    /// the batches on it.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs `f` on the communicator, under the watchdog, and waits for the
    /// device to finish it.
    fn run<T>(
        &self,
        what: &'static str,
        bytes: usize,
        f: impl FnOnce(&Comm) -> Result<T>,
    ) -> Result<T> {
        let guard = self
            .comm
            .lock()
            .map_err(|_| Error::Distributed("NCCL communicator poisoned".into()))?;
        let comm = &guard
            .as_ref()
            .ok_or_else(|| Error::Distributed("NCCL communicator aborted".into()))?
            .0;
        self.watch.run(what, bytes, || {
            let v = f(comm)?;
            comm.stream()
                .synchronize()
                .map_err(|e| Error::Distributed(format!("NCCL {what}: {e:?}")))?;
            Ok(v)
        })
    }

    /// Sums a host buffer across ranks through a device copy.
    fn all_reduce_host<T: NcclType + DeviceRepr>(&self, buf: &mut [T]) -> Result<()> {
        if self.world == 1 || buf.is_empty() {
            return Ok(());
        }
        self.run("all-reduce", std::mem::size_of_val(buf), |comm| {
            let stream = comm.stream();
            let mut d = stream.clone_htod(&*buf).map_err(driver_error)?;
            comm.all_reduce_in_place(&mut d, &ReduceOp::Sum)
                .map_err(|e| nccl_error("all-reduce", e))?;
            stream.memcpy_dtoh(&d, buf).map_err(driver_error)
        })
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn backend(&self) -> &'static str {
        "nccl"
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.all_reduce_host(buf)
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.all_reduce_host(buf)
    }
    fn broadcast(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        check_root(root, self.world)?;
        if self.world == 1 || buf.is_empty() {
            return Ok(());
        }
        self.run("broadcast", buf.len(), |comm| {
            let stream = comm.stream();
            let mut d = stream.clone_htod(&*buf).map_err(driver_error)?;
            comm.broadcast_in_place(&mut d, root as i32)
                .map_err(|e| nccl_error("broadcast", e))?;
            stream.memcpy_dtoh(&d, buf).map_err(driver_error)
        })
    }
    fn barrier(&self) -> Result<()> {
        // NCCL has no barrier: a one-element all-reduce that every rank must
        // reach, waited for on the host.
        if self.world == 1 {
            return Ok(());
        }
        self.run("barrier", 0, |comm| {
            let mut d = comm.stream().alloc_zeros::<f32>(1).map_err(driver_error)?;
            comm.all_reduce_in_place(&mut d, &ReduceOp::Sum)
                .map_err(|e| nccl_error("barrier", e))?;
            Ok(())
        })
    }
    fn abort(&self, code: i32, why: &str) -> ! {
        eprintln!("rank {}: {why}", self.rank);
        // Dropping the communicator calls ncclCommAbort, which ends this rank's
        // part in the collectives at once. (A thread inside a collective holds
        // the lock: then the exit alone.)
        if let Ok(mut comm) = self.comm.try_lock() {
            drop(comm.take());
        }
        std::process::exit(code)
    }
    fn all_reduce_sum_tensor(&self, t: &Tensor) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(t.clone());
        }
        if !matches!(
            t.dtype(),
            DType::F32 | DType::F64 | DType::BF16 | DType::F16
        ) {
            return Err(Error::Distributed(format!(
                "NCCL all-reduce of a {:?} tensor: f32, f64, bf16 and f16 only",
                t.dtype()
            )));
        }
        // A tensor elsewhere (the CPU, another candle device) goes through
        // this rank's device and comes back.
        let here = t.device().same_device(&self.device);
        let on_device = if here {
            t.contiguous()?
        } else {
            t.to_device(&self.device)?.contiguous()?
        };
        let bytes = t.elem_count() * t.dtype().size_in_bytes();
        let summed = self.run("all-reduce", bytes, |comm| {
            Ok(on_device.apply_op1_no_bwd(&AllReduce { comm })?)
        })?;
        Ok(if here {
            summed
        } else {
            summed.to_device(t.device())?
        })
    }
}

/// candle's extension point for an operation on its CUDA storage: the sum
/// across ranks of a contiguous tensor, into a new buffer.
struct AllReduce<'a> {
    comm: &'a Comm,
}

impl AllReduce<'_> {
    fn reduce<T: NcclType + DeviceRepr + ValidAsZeroBits>(
        &self,
        src: &CudaSlice<T>,
        l: &Layout,
    ) -> candle_core::Result<CudaSlice<T>> {
        let (start, end) = l.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("NCCL all-reduce of a non-contiguous tensor".into())
        })?;
        let mut dst = self
            .comm
            .stream()
            .alloc_zeros::<T>(end - start)
            .map_err(|e| candle_core::Error::Msg(format!("CUDA: {e}")))?;
        self.comm
            .all_reduce(&src.slice(start..end), &mut dst, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}")))?;
        Ok(dst)
    }
}

impl CustomOp1 for AllReduce<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Err(candle_core::Error::Msg(
            "NCCL all-reduce needs a CUDA tensor".into(),
        ))
    }
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let slice = match &s.slice {
            CudaStorageSlice::F32(x) => CudaStorageSlice::F32(self.reduce(x, l)?),
            CudaStorageSlice::F64(x) => CudaStorageSlice::F64(self.reduce(x, l)?),
            CudaStorageSlice::BF16(x) => CudaStorageSlice::BF16(self.reduce(x, l)?),
            CudaStorageSlice::F16(x) => CudaStorageSlice::F16(self.reduce(x, l)?),
            _ => {
                return Err(candle_core::Error::Msg(format!(
                    "NCCL all-reduce of a {:?} tensor",
                    s.dtype()
                )))
            }
        };
        let storage = CudaStorage {
            slice,
            device: s.device.clone(),
        };
        Ok((storage, l.shape().clone()))
    }
}

fn nccl_error(what: &str, e: cudarc::nccl::result::NcclError) -> Error {
    Error::Distributed(format!("NCCL {what}: {e:?}"))
}

fn driver_error(e: cudarc::driver::DriverError) -> Error {
    Error::Distributed(format!("CUDA: {e}"))
}
