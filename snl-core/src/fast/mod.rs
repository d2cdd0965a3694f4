//! CPU fast paths for training and inference.
//!
//! Each function here gives the same numbers (to float rounding) as the plain candle ops
//! it replaces, forward and backward, and runs its own kernels only where they apply (CPU,
//! `f32`); on CUDA or Metal, or for other dtypes, it *is* the plain candle op (except
//! [`conv2d`] with `--features cudnn`, below). The tests in `snl-core/tests/fast_*.rs`
//! hold them to that, and `tests/cuda.rs` holds the CUDA results to the CPU's.
//!
//! - [`conv2d`]: im2col + gemm forward, gemm + col2im input gradient, im2col + gemm weight
//!   gradient, each gradient computed only when needed (candle 0.11's CPU backward is a
//!   direct-loop transposed convolution that always computes both). On AVX2 CPUs the
//!   forward of a 3x3 convolution with padding 1 (stride 1, or 2 on even maps), the input
//!   gradient of the stride-1 one and, where one image's data fits half an L2 cache, the
//!   weight gradient run a direct kernel instead, without im2col. With `--features cudnn`
//!   it runs on CUDA through cuDNN (forward, backward-data, backward-filter; `cudnn.rs`,
//!   not yet run on a GPU).
//! - [`conv2d_affine`]: a convolution and an eval-mode batch norm in one op when nothing
//!   needs a gradient (the scale folded into the weights, the shift added in cache).
//! - [`masked_relu`]: the SNL activation `x + a * relu(-x)` in one pass each way;
//!   [`masked_relu_add`] the same of a residual sum, which is not kept for the backward pass.
//! - [`batch_norm_train`], [`channel_affine`]: batch normalisation in train and eval mode
//!   in two passes each way, with parallel per-channel reductions (candle's reductions over
//!   axes (0, 2, 3) are single-threaded strided loops).
//! - [`tune_allocator`]: glibc settings so large buffers are reused instead of mmapped
//!   afresh for every activation.

mod alloc;
mod bn;
mod conv;
#[cfg(feature = "cudnn")]
mod cudnn;
mod direct;
mod gemm;
mod masked;

pub use alloc::tune_allocator;
pub use bn::{batch_norm_train, channel_affine};
pub use conv::{conv2d, conv2d_affine};
pub use masked::{masked_relu, masked_relu_add};

/// The contiguous `f32` data of a custom op argument; `what` names the op in errors.
fn f32_slice<'a>(s: &'a candle::CpuStorage, l: &candle::Layout, what: &str) -> candle::Result<&'a [f32]> {
    let candle::CpuStorage::F32(data) = s else {
        candle::bail!(
            "fast {what}: expected f32 storage, got {:?}",
            candle::backend::BackendStorage::dtype(s)
        )
    };
    match l.contiguous_offsets() {
        Some((lo, hi)) => Ok(&data[lo..hi]),
        None => candle::bail!("fast {what}: expected a contiguous tensor"),
    }
}

/// `len` floats computed in parallel, chunk `i` of `chunk` floats by `fill(i, chunk)`; each
/// chunk starts zeroed. The first error of any chunk is the result.
///
/// `vec![0.0; len]` would zero all of it on the calling thread first: one serial pass over
/// megabytes per activation while the other threads wait. Here each chunk is zeroed by the
/// thread that fills it, just before, while it stays in cache.
fn par_vec(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [f32]) -> candle::Result<()> + Sync,
) -> candle::Result<Vec<f32>> {
    // SAFETY: each chunk is initialised (zeroed) before `fill` sees it.
    unsafe {
        par_vec_uninit(len, chunk, |i, c| {
            let c = init_zeroed(c);
            fill(i, c)
        })
    }
}

/// [`par_vec`] for a `fill` that writes every element of its chunk, which is not zeroed
/// first: most outputs are written once in full, and zeroing them first was a sixth of
/// all the stores of a training step.
///
/// # Safety
/// When `fill(i, chunk)` returns `Ok`, it has initialised every element of `chunk`.
unsafe fn par_vec_uninit(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) -> candle::Result<()> + Sync,
) -> candle::Result<Vec<f32>> {
    use rayon::prelude::*;
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .try_for_each(|(i, c)| fill(i, c))?;
    // SAFETY: no chunk failed, so the chunks, which cover `0..len`, were all initialised
    // (the caller's promise).
    unsafe { v.set_len(len) };
    Ok(v)
}

/// Zeroes `c` and returns it as the initialised floats it now is.
fn init_zeroed(c: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    c.iter_mut().for_each(|x| {
        x.write(0.0);
    });
    // SAFETY: every element of `c` was initialised just above, and `MaybeUninit<f32>` has
    // the layout of `f32`.
    unsafe { &mut *(c as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}

/// The sum of `f(a[i], b[i])` over two equally long slices, kept in eight interleaved
/// partial sums that are added in a fixed order at the end.
///
/// A single running sum is one long chain of dependent additions (one per 3-4 cycles, and
/// the compiler may not reorder float additions to vectorise it); eight independent lanes
/// vectorise and give the same result on every run.
#[inline(always)]
fn lane_sum<T>(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> T) -> T
where
    T: Copy + Default + std::ops::Add<Output = T>,
{
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::default(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for j in 0..LANES {
            acc[j] = acc[j] + f(xa[j], xb[j]);
        }
    }
    let mut sum = acc.into_iter().fold(T::default(), |s, v| s + v);
    for (&x, &y) in ra.iter().zip(rb) {
        sum = sum + f(x, y);
    }
    sum
}

/// The sum over items `0..n` of what `add(items, acc)` adds into a buffer of `len` floats.
///
/// The items are split into one contiguous range per thread, each summed in order into its
/// own buffer, and the buffers are added in range order. So the result depends on the
/// thread count only, never on scheduling: the same seed gives the same model (a rayon
/// `fold`/`reduce` would group items by work stealing and round differently per run).
fn ordered_sum<F>(n: usize, len: usize, add: F) -> candle::Result<Vec<f32>>
where
    F: Fn(std::ops::Range<usize>, &mut [f32]) -> candle::Result<()> + Sync,
{
    Ok(ordered_sum_fill(n, 0, len, 0, |items, _, acc| add(items, acc))?.1)
}

/// [`ordered_sum`] whose items also fill `per_item` floats each of an output, in the same
/// pass: `add(items, out, acc)` gets its items' part of the output (zeroed). Returns the
/// output, with room for `spare` more floats, and the sum.
fn ordered_sum_fill<F>(
    n: usize,
    per_item: usize,
    len: usize,
    spare: usize,
    add: F,
) -> candle::Result<(Vec<f32>, Vec<f32>)>
where
    F: Fn(std::ops::Range<usize>, &mut [f32], &mut [f32]) -> candle::Result<()> + Sync,
{
    use rayon::prelude::*;
    use std::mem::MaybeUninit;
    let groups = rayon::current_num_threads().clamp(1, n.max(1));
    let per = n.div_ceil(groups);
    let items = |g: usize| (g * per).min(n)..((g + 1) * per).min(n);
    let mut out: Vec<f32> = Vec::with_capacity(n * per_item + spare);
    let mut parts: Vec<&mut [MaybeUninit<f32>]> = Vec::with_capacity(groups);
    let mut rest = &mut out.spare_capacity_mut()[..n * per_item];
    for g in 0..groups {
        let (part, tail) = rest.split_at_mut(items(g).len() * per_item);
        parts.push(part);
        rest = tail;
    }
    let partials = parts
        .into_par_iter()
        .enumerate()
        .map(|(g, part)| {
            let part = init_zeroed(part);
            let mut acc = vec![0f32; len];
            add(items(g), part, &mut acc)?;
            Ok(acc)
        })
        .collect::<candle::Result<Vec<_>>>()?;
    // SAFETY: no group failed, so the parts, which cover `0..n * per_item`, were all
    // initialised.
    unsafe { out.set_len(n * per_item) };
    let mut partials = partials.into_iter();
    let mut sum = partials.next().unwrap_or_else(|| vec![0f32; len]);
    for part in partials {
        sum.iter_mut().zip(&part).for_each(|(s, v)| *s += v);
    }
    Ok((out, sum))
}
