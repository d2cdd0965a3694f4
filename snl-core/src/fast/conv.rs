//! 2-D convolution (NCHW, `f32`, no bias, dilation 1, one group) as im2col + gemm, with a
//! gemm + col2im input gradient and an im2col + gemm weight gradient.
//!
//! candle 0.11's CPU backward runs the input gradient through a direct-loop transposed
//! convolution and always computes both gradients; here both gradients are one large gemm
//! each, and a gradient is computed only when its argument is part of a graph.
//!
//! The batch is cut into chunks of whole images, each chunk lowered to one column matrix
//! `(C*R*S, images*OH*OW)` so that even the 4x4 maps of ResNet18's last stage make gemms
//! a few hundred columns wide. Chunks run in parallel on candle's thread pool with
//! single-threaded gemms; a batch too small to fill the pool runs its chunks one after
//! the other with a parallel gemm instead. The column buffer is recomputed in backward
//! rather than kept alive from forward.
//!
//! Where a direct kernel applies (3x3, padding 1; AVX2 or AVX-512F, see [`Forward`]), the
//! forward and the stride-1 input gradient skip im2col altogether, and so does the weight
//! gradient where a direct one applies (AVX2 `direct.rs`, or AVX-512F `wgrad.rs`). Where
//! Winograd F(2x2, 3x3) is faster (3x3, stride 1, wide layers; `geom.rs` has the rules,
//! `winograd.rs` the kernel) it computes the forward and the input gradient instead, and
//! the weight gradient unless [`Geom::weight_grad_kernel`] picks `wgrad.rs`'s (below 256
//! channels).

use std::cell::RefCell;

use candle::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::direct::Forward;
use super::gemm::{Mat, sgemm};
pub(super) use super::geom::Geom;
use super::geom::{Kernel, WeightGrad};
use super::{copy_row, f32_slice, ordered_sum, par_vec, par_vec_uninit};

/// A column matrix this wide (in output pixels) keeps gemm near its peak; wider only costs
/// memory.
pub(super) const TARGET_COLUMNS: usize = 512;

/// `x` (N, C, H, W) convolved with `weight` (K, C, R, S): stride and zero padding on both
/// spatial axes, no bias, dilation 1, one group. Output (N, K, OH, OW).
///
/// On the CPU with `f32` tensors this is the im2col + gemm op of this module, whose
/// backward computes only the gradients the graph needs. With `--features cudnn`, on CUDA
/// with `f32` tensors, it is the cuDNN op of `fast/cudnn.rs` (backward the same way; not
/// yet run on a GPU). Anywhere else (CUDA, Metal, other dtypes) it is candle's own
/// `conv2d`, which it matches to rounding.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    conv2d_with(x, weight, stride, padding, ConvKernel::Auto)
}

/// Which kernel computes a convolution's forward and stride-1 input gradient on the CPU.
/// `Auto` is the rule of [`Geom::kernel`]; tests and benchmarks force the others (one that
/// does not apply falls back: Winograd to direct, direct to im2col). The weight gradient
/// follows [`Geom::weight_grad_kernel`]: the same kernel, except that under `Auto` a
/// Winograd layer below 256 channels takes the AVX-512 direct one where it applies.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvKernel {
    #[default]
    Auto,
    Im2col,
    Direct,
    Winograd,
}

/// [`conv2d`] with the CPU kernel `kernel`.
#[doc(hidden)]
pub fn conv2d_with(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    kernel: ConvKernel,
) -> Result<Tensor> {
    #[cfg(feature = "cudnn")]
    if super::cudnn::applies(x, weight) {
        return super::cudnn::conv2d(x, weight, stride, padding);
    }
    if !applies(x, weight) {
        return x.conv2d(weight, padding, stride, 1, 1);
    }
    let geom = Geom::new(x.dims(), weight.dims(), stride, padding)?;
    let x = x.contiguous()?;
    let weight = weight.contiguous()?;
    x.apply_op2(&weight, Conv2dOp { geom, shift: None, kernel })
}

/// `conv2d(x, weight, stride, padding)` then `* scale + shift` per output channel (each
/// `(K,)`): a convolution followed by an eval-mode batch norm.
///
/// When nothing needs a gradient (a frozen teacher, inference) and the CPU op applies,
/// `scale` is folded into the weights and `shift` is added to each chunk of output while it
/// is still in cache: one pass over the output instead of two. Otherwise it is [`conv2d`]
/// then [`super::channel_affine`], which it matches to rounding.
pub fn conv2d_affine(
    x: &Tensor,
    weight: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let graph = [x, weight, scale, shift].iter().any(|t| t.track_op());
    let per_channel =
        |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.dims() == [weight.dims()[0]];
    if graph || !applies(x, weight) || !per_channel(scale) || !per_channel(shift) {
        return super::channel_affine(&conv2d(x, weight, stride, padding)?, scale, shift);
    }
    let k = weight.dim(0)?;
    let folded = weight.broadcast_mul(&scale.reshape((k, 1, 1, 1))?)?.contiguous()?;
    let geom = Geom::new(x.dims(), folded.dims(), stride, padding)?;
    let op = Conv2dOp { geom, shift: Some(shift.to_vec1()?), kernel: ConvKernel::Auto };
    x.contiguous()?.apply_op2_no_bwd(&folded, &op)
}

/// Where the custom op runs: both tensors on the CPU, both `f32`, both 4-D.
fn applies(x: &Tensor, weight: &Tensor) -> bool {
    x.device().is_cpu()
        && weight.device().is_cpu()
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && x.rank() == 4
        && weight.rank() == 4
}

/// Runs `f` on a scratch buffer of `len` floats (contents unspecified), reused across
/// calls on the same thread (columns are megabytes: a fresh allocation per chunk would be
/// mmapped and page-faulted every time). Falls back to a fresh buffer if the thread's
/// scratch is already in use.
pub(super) fn with_scratch<T>(len: usize, f: impl FnOnce(&mut [f32]) -> T) -> T {
    thread_local! {
        static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Lowers image `img` (C, H, W) into columns `[off, off + OH*OW)` of `col`, a row-major
/// `(C*R*S, ld)` matrix. Every element of those columns is written.
fn im2col(g: &Geom, img: &[f32], col: &mut [f32], ld: usize, off: usize) {
    if (g.r, g.s, g.pad) == (3, 3, 1) && g.ow < 8 {
        return im2col_padded(g, img, col, ld, off);
    }
    let (p, st) = (g.p(), g.stride);
    for c in 0..g.c {
        let plane = &img[c * g.h * g.w..(c + 1) * g.h * g.w];
        for r in 0..g.r {
            for s in 0..g.s {
                let row = (c * g.r + r) * g.s + s;
                let dst = &mut col[row * ld + off..row * ld + off + p];
                let (lo, hi) = g.valid_cols(s);
                if let Some(shift) = g.shifted(r, s) {
                    let (first, last) = shift.span;
                    dst[..first].fill(0.0);
                    dst[last..].fill(0.0);
                    dst[first..last].copy_from_slice(&plane[shift.src..shift.src + last - first]);
                    shift.for_each_row(|row| {
                        dst[row..row + lo].fill(0.0);
                        dst[row + hi..row + g.ow].fill(0.0);
                    });
                    continue;
                }
                for oh in 0..g.oh {
                    let d = &mut dst[oh * g.ow..(oh + 1) * g.ow];
                    let ih = (oh * st + r) as isize - g.pad as isize;
                    if ih < 0 || ih >= g.h as isize {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &plane[ih as usize * g.w..(ih as usize + 1) * g.w];
                    d[..lo].fill(0.0);
                    d[hi..].fill(0.0);
                    if lo < hi {
                        let first = lo * st + s - g.pad;
                        if st == 1 {
                            d[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                        } else {
                            for (dv, sv) in d[lo..hi].iter_mut().zip(src[first..].iter().step_by(st)) {
                                *dv = *sv;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] of a 3x3, padding-1 convolution on small maps, from a zero-padded copy of the
/// image: each output row is `ow` (strided) floats of one padded row. On 4x4 maps the
/// general path spent most of its time on edge cases, several tiny fills and copies per
/// output row; this one has none.
fn im2col_padded(g: &Geom, img: &[f32], col: &mut [f32], ld: usize, off: usize) {
    thread_local! {
        static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    let (pitch, st, p) = (g.w + 2, g.stride, g.p());
    let chan = (g.h + 2) * pitch;
    PADDED.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.clear();
        buf.resize(g.c * chan, 0.0);
        for (plane, dst) in img.chunks_exact(g.h * g.w).zip(buf.chunks_exact_mut(chan)) {
            for (src, line) in plane.chunks_exact(g.w).zip(dst[pitch..].chunks_exact_mut(pitch)) {
                copy_row(&mut line[1..=g.w], src);
            }
        }
        for c in 0..g.c {
            for (r, s) in (0..3).flat_map(|r| (0..3).map(move |s| (r, s))) {
                let row = (c * 3 + r) * 3 + s;
                let dst = &mut col[row * ld + off..row * ld + off + p];
                for (oh, d) in dst.chunks_exact_mut(g.ow).enumerate() {
                    let src = &buf[c * chan + (oh * st + r) * pitch + s..];
                    for (j, v) in d.iter_mut().enumerate() {
                        *v = src[j * st];
                    }
                }
            }
        }
    });
}

/// The adjoint of [`im2col`]: adds columns `[off, off + OH*OW)` of `col` into image
/// `img` (C, H, W).
///
/// `col` is scratch: the entries that read padding may be overwritten.
fn col2im(g: &Geom, col: &mut [f32], ld: usize, off: usize, img: &mut [f32]) {
    let (p, st) = (g.p(), g.stride);
    for c in 0..g.c {
        let plane = &mut img[c * g.h * g.w..(c + 1) * g.h * g.w];
        for r in 0..g.r {
            for s in 0..g.s {
                let row = (c * g.r + r) * g.s + s;
                let (lo, hi) = g.valid_cols(s);
                if lo >= hi {
                    continue;
                }
                if let Some(shift) = g.shifted(r, s) {
                    // Zero what reads padding, then one contiguous add: the zeroed entries
                    // land on the neighbouring row's edge and add nothing.
                    let src = &mut col[row * ld + off..row * ld + off + p];
                    shift.for_each_row(|row| {
                        src[row..row + lo].fill(0.0);
                        src[row + hi..row + g.ow].fill(0.0);
                    });
                    let (first, last) = shift.span;
                    let dst = &mut plane[shift.src..shift.src + last - first];
                    for (dv, sv) in dst.iter_mut().zip(&src[first..last]) {
                        *dv += *sv;
                    }
                    continue;
                }
                let src = &col[row * ld + off..row * ld + off + p];
                for oh in 0..g.oh {
                    let ih = (oh * st + r) as isize - g.pad as isize;
                    if ih < 0 || ih >= g.h as isize {
                        continue;
                    }
                    let srow = &src[oh * g.ow + lo..oh * g.ow + hi];
                    let drow = &mut plane[ih as usize * g.w..(ih as usize + 1) * g.w];
                    let first = lo * st + s - g.pad;
                    if st == 1 {
                        for (dv, sv) in drow[first..first + hi - lo].iter_mut().zip(srow) {
                            *dv += *sv;
                        }
                    } else {
                        for (dv, sv) in drow[first..].iter_mut().step_by(st).zip(srow) {
                            *dv += *sv;
                        }
                    }
                }
            }
        }
    }
}

/// `y[i] = conv3x3(x[i]) + shift` for each of the `n` images of `x` (`x_len` floats each;
/// `y_len` each in `y`), in parallel over images, by kernel `d` with weights `packed` for
/// `k` output channels.
#[allow(clippy::too_many_arguments)]
fn direct_batch(
    d: &Forward,
    x: &[f32],
    n: usize,
    x_len: usize,
    packed: &[f32],
    k: usize,
    y_len: usize,
    shift: Option<&[f32]>,
) -> Result<Vec<f32>> {
    if y_len != d.out_len(k) {
        candle::bail!("fast conv2d: {y_len} outputs per image for {}", d.out_len(k))
    }
    // SAFETY: `Forward::image` writes every element of its output of `d.out_len(k)` floats,
    // here all of each chunk, or panics.
    unsafe {
        par_vec_uninit(n * y_len, y_len, |i, yi| {
            with_scratch(d.scratch_len(), |scratch| {
                d.image(&x[i * x_len..(i + 1) * x_len], packed, k, shift, scratch, yi)
            });
            Ok(())
        })
    }
}

/// Copies `imgs` images of (K, P) maps into one `(K, imgs*P)` matrix.
fn gather_maps(g: &Geom, maps: &[f32], imgs: usize, dst: &mut [f32]) {
    let (k, p) = (g.k, g.p());
    for i in 0..imgs {
        for kk in 0..k {
            let src = &maps[(i * k + kk) * p..(i * k + kk + 1) * p];
            dst[kk * imgs * p + i * p..kk * imgs * p + (i + 1) * p].copy_from_slice(src);
        }
    }
}

/// The inverse of [`gather_maps`].
fn scatter_maps(g: &Geom, src: &[f32], imgs: usize, maps: &mut [f32]) {
    let (k, p) = (g.k, g.p());
    for i in 0..imgs {
        for kk in 0..k {
            maps[(i * k + kk) * p..(i * k + kk + 1) * p]
                .copy_from_slice(&src[kk * imgs * p + i * p..kk * imgs * p + (i + 1) * p]);
        }
    }
}

/// The output of `n` images of `per_image` floats, computed by `work(first_image, images,
/// out_chunk)` on chunks of `nb` images (zeroed), in parallel or in sequence as planned.
fn chunked_output(
    n: usize,
    per_image: usize,
    nb: usize,
    parallel: bool,
    work: impl Fn(usize, usize, &mut [f32]) -> Result<()> + Sync,
) -> Result<Vec<f32>> {
    let size = (nb * per_image).max(1);
    let images = |chunk: &[f32]| chunk.len() / per_image.max(1);
    if parallel {
        return par_vec(n * per_image, size, |ci, chunk| work(ci * nb, images(chunk), chunk));
    }
    let mut out = vec![0f32; n * per_image];
    out.chunks_mut(size).enumerate().try_for_each(|(ci, chunk)| work(ci * nb, images(chunk), chunk))?;
    Ok(out)
}

/// Forward: `(x, weight) -> y`.
struct Conv2dOp {
    geom: Geom,
    /// Added to each output channel (a folded batch norm; see [`conv2d_affine`]).
    shift: Option<Vec<f32>>,
    kernel: ConvKernel,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "snl-fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(xl.dims(), wl.dims(), self.geom.stride, self.geom.pad)?;
        if self.shift.as_ref().is_some_and(|t| t.len() != g.k) {
            candle::bail!(
                "fast conv2d: a shift per output channel expected, {} for {}",
                self.shift.as_ref().map_or(0, Vec::len),
                g.k
            )
        }
        let x = f32_slice(xs, xl, "conv2d")?;
        let w = f32_slice(ws, wl, "conv2d")?;
        let tap = |ko: usize, ci: usize, r: usize, s: usize| w[((ko * g.c + ci) * 3 + r) * 3 + s];
        let shape = Shape::from((g.n, g.k, g.oh, g.ow));
        match g.kernel(self.kernel, false) {
            Kernel::Direct(d) => {
                let packed = d.pack(g.k, g.c, tap);
                let y = direct_batch(
                    &d,
                    x,
                    g.n,
                    g.input_len(),
                    &packed,
                    g.k,
                    g.output_len(),
                    self.shift.as_deref(),
                )?;
                return Ok((CpuStorage::F32(y), shape));
            }
            Kernel::Winograd(wg) => {
                let y = wg.forward(x, g.n, &wg.transform_weights(g.k, tap)?, g.k, self.shift.as_deref())?;
                return Ok((CpuStorage::F32(y), shape));
            }
            Kernel::Im2col => {}
        }
        let (crs, p) = (g.crs(), g.p());
        let (nb, parallel, par) = g.plan();
        let y = chunked_output(g.n, g.output_len(), nb, parallel, |n0, imgs, out| {
            let ld = imgs * p;
            let tmp_len = if imgs > 1 { g.k * ld } else { 0 };
            with_scratch(crs * ld + tmp_len, |buf| {
                let (col, tmp) = buf.split_at_mut(crs * ld);
                for i in 0..imgs {
                    let img = &x[(n0 + i) * g.input_len()..(n0 + i + 1) * g.input_len()];
                    im2col(&g, img, col, ld, i * p);
                }
                let a = Mat::rows(w, g.k, crs);
                let b = Mat::rows(col, crs, ld);
                if imgs == 1 {
                    sgemm(a, b, out, p, false, par)?;
                } else {
                    sgemm(a, b, tmp, ld, false, par)?;
                    scatter_maps(&g, tmp, imgs, out);
                }
                if let Some(shift) = &self.shift {
                    for (map, &t) in out.chunks_mut(p).zip(shift.iter().cycle()) {
                        map.iter_mut().for_each(|v| *v += t);
                    }
                }
                Ok(())
            })
        })?;
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.k, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(w, &Conv2dInputGrad { geom: self.geom, kernel: self.kernel })?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(&dy, &Conv2dWeightGrad { geom: self.geom, kernel: self.kernel })?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// Input gradient: `(dy, weight) -> dx`, `W^T dy` by gemm, then col2im.
struct Conv2dInputGrad {
    geom: Geom,
    kernel: ConvKernel,
}

impl CustomOp2 for Conv2dInputGrad {
    fn name(&self) -> &'static str {
        "snl-fast-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        ds: &CpuStorage,
        dl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        if dl.dims() != [g.n, g.k, g.oh, g.ow] || wl.dims() != [g.k, g.c, g.r, g.s] {
            candle::bail!("fast conv2d input grad: unexpected shapes {:?} and {:?}", dl.dims(), wl.dims())
        }
        let dy = f32_slice(ds, dl, "conv2d input grad")?;
        let w = f32_slice(ws, wl, "conv2d input grad")?;
        // A "same" convolution's input gradient convolves dy with the weights transposed
        // (input and output channels swapped) and flipped.
        let tap = |ci: usize, ko: usize, r: usize, s: usize| w[((ko * g.c + ci) * 3 + 2 - r) * 3 + 2 - s];
        let shape = Shape::from((g.n, g.c, g.h, g.w));
        match g.kernel(self.kernel, true) {
            Kernel::Direct(d) => {
                let packed = d.pack(g.c, g.k, tap);
                let dx = direct_batch(&d, dy, g.n, g.output_len(), &packed, g.c, g.input_len(), None)?;
                return Ok((CpuStorage::F32(dx), shape));
            }
            Kernel::Winograd(wg) => {
                let dx = wg.forward(dy, g.n, &wg.transform_weights(g.c, tap)?, g.c, None)?;
                return Ok((CpuStorage::F32(dx), shape));
            }
            Kernel::Im2col => {}
        }
        let (crs, p) = (g.crs(), g.p());
        let (nb, parallel, par) = g.plan();
        let dx = chunked_output(g.n, g.input_len(), nb, parallel, |n0, imgs, out| {
            let ld = imgs * p;
            let maps = &dy[n0 * g.output_len()..(n0 + imgs) * g.output_len()];
            let tmp_len = if imgs > 1 { g.k * ld } else { 0 };
            with_scratch(crs * ld + tmp_len, |buf| {
                let (col, tmp) = buf.split_at_mut(crs * ld);
                let b = if imgs == 1 {
                    Mat::rows(maps, g.k, ld)
                } else {
                    gather_maps(&g, maps, imgs, tmp);
                    Mat::rows(tmp, g.k, ld)
                };
                sgemm(Mat::rows(w, g.k, crs).t(), b, col, ld, false, par)?;
                for i in 0..imgs {
                    col2im(&g, &mut col[..], ld, i * p, &mut out[i * g.input_len()..(i + 1) * g.input_len()]);
                }
                Ok(())
            })
        })?;
        Ok((CpuStorage::F32(dx), Shape::from((g.n, g.c, g.h, g.w))))
    }
}

/// Weight gradient: `(x, dy) -> dW`, `dy im2col(x)^T` summed over the batch.
struct Conv2dWeightGrad {
    geom: Geom,
    kernel: ConvKernel,
}

impl Conv2dWeightGrad {
    /// Adds the chunk of `imgs` images starting at `n0` into `dw`.
    fn chunk(
        &self,
        x: &[f32],
        dy: &[f32],
        n0: usize,
        imgs: usize,
        dw: &mut [f32],
        par: gemm::Parallelism,
    ) -> Result<()> {
        let g = self.geom;
        let (crs, p) = (g.crs(), g.p());
        let ld = imgs * p;
        let maps = &dy[n0 * g.output_len()..(n0 + imgs) * g.output_len()];
        let tmp_len = if imgs > 1 { g.k * ld } else { 0 };
        with_scratch(crs * ld + tmp_len, |buf| {
            let (col, tmp) = buf.split_at_mut(crs * ld);
            for i in 0..imgs {
                let img = &x[(n0 + i) * g.input_len()..(n0 + i + 1) * g.input_len()];
                im2col(&g, img, col, ld, i * p);
            }
            let a = if imgs == 1 {
                Mat::rows(maps, g.k, ld)
            } else {
                gather_maps(&g, maps, imgs, tmp);
                Mat::rows(tmp, g.k, ld)
            };
            sgemm(a, Mat::rows(col, crs, ld).t(), dw, crs, true, par)
        })
    }
}

impl CustomOp2 for Conv2dWeightGrad {
    fn name(&self) -> &'static str {
        "snl-fast-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        if xl.dims() != [g.n, g.c, g.h, g.w] || dl.dims() != [g.n, g.k, g.oh, g.ow] {
            candle::bail!("fast conv2d weight grad: unexpected shapes {:?} and {:?}", xl.dims(), dl.dims())
        }
        let x = f32_slice(xs, xl, "conv2d weight grad")?;
        let dy = f32_slice(ds, dl, "conv2d weight grad")?;
        let len = g.k * g.crs();
        let kernel = g.weight_grad_kernel(self.kernel);
        if let WeightGrad::Winograd(wg) = kernel {
            let dw = wg.weight_grad(x, dy, g.n, g.k)?;
            return Ok((CpuStorage::F32(dw), Shape::from((g.k, g.c, g.r, g.s))));
        }
        if let WeightGrad::Direct(d) = kernel {
            // Groups of images wide enough (in output pixels) that the kernel's final sums
            // are a small part of its work.
            let group = d.group(g.p(), g.k);
            let dw = ordered_sum(g.n, len, |range, acc| {
                let end = range.end;
                range.step_by(group).for_each(|n0| {
                    let imgs = group.min(end - n0);
                    with_scratch(d.scratch_len(imgs, g.k), |scratch| {
                        d.weight_grad(
                            &x[n0 * g.input_len()..(n0 + imgs) * g.input_len()],
                            &dy[n0 * g.output_len()..(n0 + imgs) * g.output_len()],
                            imgs,
                            g.k,
                            scratch,
                            acc,
                        )
                    })
                });
                Ok(())
            })?;
            return Ok((CpuStorage::F32(dw), Shape::from((g.k, g.c, g.r, g.s))));
        }
        let (nb, parallel, par) = g.plan();
        let chunks = g.n.div_ceil(nb);
        let first = |ci: usize| (ci * nb, nb.min(g.n - ci * nb));
        let dw = if parallel {
            ordered_sum(chunks, len, |range, acc| {
                range.into_iter().try_for_each(|ci| {
                    let (n0, imgs) = first(ci);
                    self.chunk(x, dy, n0, imgs, acc, par)
                })
            })?
        } else {
            let mut acc = vec![0f32; len];
            for ci in 0..chunks {
                let (n0, imgs) = first(ci);
                self.chunk(x, dy, n0, imgs, &mut acc, par)?;
            }
            acc
        };
        Ok((CpuStorage::F32(dw), Shape::from((g.k, g.c, g.r, g.s))))
    }
}
