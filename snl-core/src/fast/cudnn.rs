//! [`super::conv2d`] on CUDA through cuDNN (`--features cudnn`): the forward pass, and in
//! the backward pass cuDNN's backward-data and backward-filter, each only when its argument
//! is part of a graph, as the CPU op does.
//!
//! candle's own CUDA backward computes both gradients every time, the input gradient as a
//! transposed convolution of its own kernels and the weight gradient as a convolution of
//! transposed tensors. Here each is one cuDNN call.
//!
//! **Not yet run on a GPU**: written and compiled (`.ci/cuda-build`) on a machine without
//! one. `scripts/gpu-check.sh cudnn` checks it against the CPU path
//! (`snl-core/tests/cuda.rs`).
//!
//! The math mode is `CUDNN_FMA_MATH`: plain `f32` arithmetic, never TF32 tensor cores,
//! so results match the CPU path to rounding, as every `fast` op does.

use std::cell::RefCell;
use std::sync::Arc;

use candle::cuda_backend::cudarc::cudnn::sys::{
    cudnnConvolutionMode_t, cudnnMathType_t, cudnnTensorFormat_t,
};
use candle::cuda_backend::cudarc::cudnn::{
    ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn, FilterDescriptor,
    TensorDescriptor,
};
use candle::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle::cuda_backend::{CudaDevice, DeviceId};
use candle::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::conv::Geom;

/// Where this op runs: both tensors on a CUDA device, both `f32`, both 4-D.
pub(super) fn applies(x: &Tensor, weight: &Tensor) -> bool {
    x.device().is_cuda()
        && weight.device().is_cuda()
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && x.rank() == 4
        && weight.rank() == 4
}

/// The convolution of [`super::conv2d`] as a cuDNN op.
pub(super) fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let geom = Geom::new(x.dims(), weight.dims(), stride, padding)?;
    x.contiguous()?.apply_op2(&weight.contiguous()?, Forward { geom })
}

/// The cuDNN handle of `device` for this thread (a handle is neither `Send` nor `Sync`).
fn handle(device: &CudaDevice) -> Result<Arc<Cudnn>> {
    thread_local! {
        static HANDLES: RefCell<Vec<(DeviceId, Arc<Cudnn>)>> = const { RefCell::new(Vec::new()) };
    }
    HANDLES.with(|cell| {
        let mut handles = cell.borrow_mut();
        if let Some((_, h)) = handles.iter().find(|(id, _)| *id == device.id()) {
            return Ok(h.clone());
        }
        let h = Cudnn::new(device.cuda_stream())?;
        handles.push((device.id(), h.clone()));
        Ok(h)
    })
}

/// The descriptors of one convolution: input, filter, output, and the convolution itself.
struct Descriptors {
    x: TensorDescriptor<f32>,
    w: FilterDescriptor<f32>,
    y: TensorDescriptor<f32>,
    conv: ConvDescriptor<f32>,
}

impl Descriptors {
    fn new(cudnn: &Arc<Cudnn>, g: &Geom) -> Result<Self> {
        let dims = |a: [usize; 4]| a.map(|v| v as i32);
        let nchw = cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        let x = cudnn.create_4d_tensor::<f32>(nchw, dims([g.n, g.c, g.h, g.w]))?;
        let w = cudnn.create_4d_filter::<f32>(nchw, dims([g.k, g.c, g.r, g.s]))?;
        let y = cudnn.create_4d_tensor::<f32>(nchw, dims([g.n, g.k, g.oh, g.ow]))?;
        let (pad, stride) = (g.pad as i32, g.stride as i32);
        let mut conv = cudnn.create_conv2d::<f32>(
            [pad, pad],
            [stride, stride],
            [1, 1],
            cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        )?;
        conv.set_math_type(cudnnMathType_t::CUDNN_FMA_MATH)?;
        Ok(Self { x, w, y, conv })
    }
}

/// The contiguous `f32` data of a custom op argument on the GPU.
fn view<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, f32>> {
    let slice = s.as_cuda_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((lo, hi)) => Ok(slice.slice(lo..hi)),
        None => candle::bail!("cudnn {what}: expected a contiguous tensor"),
    }
}

/// Checks `got` against the dims the geometry expects for argument `what`.
fn expect_dims(op: &str, what: &str, got: &[usize], want: [usize; 4]) -> Result<()> {
    if got != want {
        candle::bail!("cudnn {op}: {what} has shape {got:?}, expected {want:?}")
    }
    Ok(())
}

/// A zeroed workspace of `bytes` for one cuDNN call (`None` when it needs none).
fn workspace(device: &CudaDevice, bytes: usize) -> Result<Option<CudaSlice<u8>>> {
    Ok(if bytes == 0 { None } else { Some(device.alloc_zeros::<u8>(bytes)?) })
}

/// Forward: `(x, weight) -> y`.
struct Forward {
    geom: Geom,
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "snl-cudnn-conv2d"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle::bail!("cudnn conv2d: called on the CPU (fast::conv2d uses its own op there)")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = Geom::new(xl.dims(), wl.dims(), self.geom.stride, self.geom.pad)?;
        let device = &xs.device;
        let cudnn = handle(device)?;
        let d = Descriptors::new(&cudnn, &g)?;
        let op = ConvForward { conv: &d.conv, x: &d.x, w: &d.w, y: &d.y };
        let algo = op.pick_algorithm()?;
        let mut ws_buf = workspace(device, op.get_workspace_size(algo)?)?;
        let mut y = device.alloc_zeros::<f32>(g.n * g.k * g.oh * g.ow)?;
        let (x, w) = (view(xs, xl, "conv2d")?, view(ws, wl, "conv2d")?);
        // SAFETY: the descriptors describe exactly these contiguous f32 buffers: x and w by
        // their layouts (checked by Geom::new), y allocated at the output size just above.
        unsafe { op.launch(algo, ws_buf.as_mut(), (1.0, 0.0), &x, &w, &mut y)? };
        Ok((CudaStorage::wrap_cuda_slice(y, device.clone()), Shape::from((g.n, g.k, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx =
            if x.track_op() { Some(dy.apply_op2_no_bwd(w, &InputGrad { geom: self.geom })?) } else { None };
        let dw =
            if w.track_op() { Some(x.apply_op2_no_bwd(&dy, &WeightGrad { geom: self.geom })?) } else { None };
        Ok((dx, dw))
    }
}

/// Input gradient: `(dy, weight) -> dx` (cuDNN backward-data).
struct InputGrad {
    geom: Geom,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "snl-cudnn-conv2d-input-grad"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle::bail!("cudnn conv2d input grad: called on the CPU")
    }

    fn cuda_fwd(
        &self,
        ds: &CudaStorage,
        dl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = self.geom;
        expect_dims("conv2d input grad", "dy", dl.dims(), [g.n, g.k, g.oh, g.ow])?;
        expect_dims("conv2d input grad", "weight", wl.dims(), [g.k, g.c, g.r, g.s])?;
        let device = &ds.device;
        let cudnn = handle(device)?;
        let d = Descriptors::new(&cudnn, &g)?;
        let op = ConvBackwardData { conv: &d.conv, dx: &d.x, w: &d.w, dy: &d.y };
        let algo = op.pick_algorithm()?;
        let mut ws_buf = workspace(device, op.get_workspace_size(algo)?)?;
        let mut dx = device.alloc_zeros::<f32>(g.n * g.c * g.h * g.w)?;
        let (dy, w) = (view(ds, dl, "conv2d input grad")?, view(ws, wl, "conv2d input grad")?);
        // SAFETY: dy and w have the shapes checked above, dx the input's size.
        unsafe { op.launch(algo, ws_buf.as_mut(), (1.0, 0.0), &mut dx, &w, &dy)? };
        Ok((CudaStorage::wrap_cuda_slice(dx, device.clone()), Shape::from((g.n, g.c, g.h, g.w))))
    }
}

/// Weight gradient: `(x, dy) -> dW`, summed over the batch (cuDNN backward-filter).
struct WeightGrad {
    geom: Geom,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "snl-cudnn-conv2d-weight-grad"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle::bail!("cudnn conv2d weight grad: called on the CPU")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ds: &CudaStorage,
        dl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = self.geom;
        expect_dims("conv2d weight grad", "x", xl.dims(), [g.n, g.c, g.h, g.w])?;
        expect_dims("conv2d weight grad", "dy", dl.dims(), [g.n, g.k, g.oh, g.ow])?;
        let device = &xs.device;
        let cudnn = handle(device)?;
        let d = Descriptors::new(&cudnn, &g)?;
        let op = ConvBackwardFilter { conv: &d.conv, x: &d.x, dw: &d.w, dy: &d.y };
        let algo = op.pick_algorithm()?;
        let mut ws_buf = workspace(device, op.get_workspace_size(algo)?)?;
        let mut dw = device.alloc_zeros::<f32>(g.k * g.c * g.r * g.s)?;
        let (x, dy) = (view(xs, xl, "conv2d weight grad")?, view(ds, dl, "conv2d weight grad")?);
        // SAFETY: x and dy have the shapes checked above, dw the weight's size.
        unsafe { op.launch(algo, ws_buf.as_mut(), (1.0, 0.0), &x, &mut dw, &dy)? };
        Ok((CudaStorage::wrap_cuda_slice(dw, device.clone()), Shape::from((g.k, g.c, g.r, g.s))))
    }
}
