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
//!   weight gradient run a direct kernel instead, without im2col; with AVX-512F the forward
//!   and the input gradient run a 512-bit one (`direct512.rs`) where the output maps have a
//!   multiple of 16 pixels, which gives the same bits as the AVX2 one where both apply. For
//!   wide 3x3 stride-1 layers (`geom.rs` has the rule) Winograd F(2x2, 3x3) computes the
//!   forward and the input gradient (`winograd.rs`; float rounding apart from the others,
//!   `tests/fast_winograd.rs`). With AVX-512F the weight gradient of a 3x3 padding-1
//!   layer (stride 1 or 2) with a multiple of 16 output channels, whose image fits the
//!   kernel's cache budget, runs `wgrad.rs`'s kernel (16 output channels in a register,
//!   where the AVX2 one holds 8 pixels), also under a Winograd forward below 256 channels
//!   (`geom.rs`). With `--features cudnn`, [`conv2d`] runs on CUDA through cuDNN (forward,
//!   backward-data, backward-filter; `cudnn.rs`, not yet run on a GPU).
//! - [`conv2d_affine`]: a convolution and an eval-mode batch norm in one op when nothing
//!   needs a gradient (the scale folded into the weights, the shift added in cache).
//! - [`masked_relu`]: the SNL activation `x + a * relu(-x)` in one pass each way;
//!   [`masked_relu_add`] the same of a residual sum, which is not kept for the backward pass.
//! - [`batch_norm_train`], [`channel_affine`]: batch normalisation in train and eval mode
//!   in two passes each way, with parallel per-channel reductions (candle's reductions over
//!   axes (0, 2, 3) are single-threaded strided loops).
//! - [`batch_norm_masked_relu`]: the two above in a row (train mode, the mask's input
//!   optionally a residual sum) as one op each way that stores nothing between them.
//! - [`tune_allocator`]: glibc settings so large buffers are reused instead of mmapped
//!   afresh for every activation.

mod alloc;
mod bn;
mod bn_mask;
mod conv;
#[cfg(feature = "cudnn")]
mod cudnn;
mod direct;
mod direct512;
mod gemm;
mod geom;
mod masked;
mod wgrad;
mod winograd;

pub use alloc::tune_allocator;
pub use bn::{batch_norm_train, channel_affine};
pub use bn_mask::batch_norm_masked_relu;
pub use conv::{ConvKernel, conv2d, conv2d_affine, conv2d_with};
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
    let chunk = chunk.max(1);
    let mut v: Vec<f32> = Vec::with_capacity(len);
    let base = Shared(v.spare_capacity_mut().as_mut_ptr());
    par_for(len.div_ceil(chunk), |i| {
        let start = i * chunk;
        // SAFETY: `start..end` lies inside the `len` floats reserved above, and each `i`
        // (so each range) is handed out once.
        let c = unsafe { std::slice::from_raw_parts_mut(base.at(start), chunk.min(len - start)) };
        fill(i, c)
    })?;
    // SAFETY: no chunk failed, so the chunks, which cover `0..len`, were all initialised
    // (the caller's promise).
    unsafe { v.set_len(len) };
    Ok(v)
}

/// Runs `f(i)` for every `i < n` in parallel; the first error is the result.
///
/// The threads are candle's own (its elementwise ops run there, and its worker spins a
/// while after each op): work on a second pool (rayon's) ran beside that spinning, which
/// took a twentieth of a width-16 training step on 2 cores.
fn par_for(n: usize, f: impl Fn(usize) -> candle::Result<()> + Sync) -> candle::Result<()> {
    let first_err = std::sync::Mutex::new(None);
    candle::utils::barrier_pool().execute_chunked(n, |range| {
        for i in range {
            if let Err(e) = f(i) {
                first_err.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                return;
            }
        }
    });
    match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What decides the last bits of the fast ops' sums besides the inputs: the threads they
/// split work over and the instruction set whose kernels (and gemm's) run, e.g. `2 threads,
/// avx512`. A run resumed under another value continues, but not bit-identically.
pub fn numerics() -> String {
    #[cfg(target_arch = "x86_64")]
    let isa = if direct512::cpu_has_avx512f() {
        "avx512"
    } else if direct::cpu_has_avx2_fma() {
        "avx2"
    } else {
        "x86-64 baseline"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let isa = std::env::consts::ARCH;
    format!("{} threads, {isa}", threads())
}

/// Threads [`par_for`] runs on.
fn threads() -> usize {
    candle::utils::barrier_pool().n_workers() + 1
}

/// A pointer to output floats that parallel tasks write in disjoint parts.
#[derive(Clone, Copy)]
struct Shared(*mut std::mem::MaybeUninit<f32>);

// SAFETY: the tasks that share it write disjoint ranges (see each use).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer `i` floats on (a method, so closures capture the whole `Shared`).
    fn at(self, i: usize) -> *mut std::mem::MaybeUninit<f32> {
        self.0.wrapping_add(i)
    }
}

/// `dst.copy_from_slice(src)` for the short rows of small maps (an image row, a tile row):
/// up to 32 floats are copied inline in pieces of constant size, where `copy_from_slice`
/// called `memmove` for each row.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    if n > 32 || src.len() != n {
        return dst.copy_from_slice(src);
    }
    let mut i = 0;
    while i + 8 <= n {
        dst[i..i + 8].copy_from_slice(&src[i..i + 8]);
        i += 8;
    }
    for piece in [4, 2, 1] {
        if i + piece <= n {
            dst[i..i + piece].copy_from_slice(&src[i..i + piece]);
            i += piece;
        }
    }
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
fn ordered_sum<T, F>(n: usize, len: usize, add: F) -> candle::Result<Vec<T>>
where
    T: Copy + Default + Send + Sync + std::ops::AddAssign,
    F: Fn(std::ops::Range<usize>, &mut [T]) -> candle::Result<()> + Sync,
{
    Ok(ordered_sum_fill(n, 0, len, 0, |items, _, acc| add(items, acc))?.1)
}

/// [`ordered_sum`] whose items also fill `per_item` floats each of an output, in the same
/// pass: `add(items, out, acc)` gets its items' part of the output (zeroed). Returns the
/// output, with room for `spare` more floats, and the sum.
fn ordered_sum_fill<T, F>(
    n: usize,
    per_item: usize,
    len: usize,
    spare: usize,
    add: F,
) -> candle::Result<(Vec<f32>, Vec<T>)>
where
    T: Copy + Default + Send + Sync + std::ops::AddAssign,
    F: Fn(std::ops::Range<usize>, &mut [f32], &mut [T]) -> candle::Result<()> + Sync,
{
    let merge = |sum: &mut Vec<T>, part: Vec<T>| add_into(sum, &part);
    ordered_fold(
        n,
        per_item,
        spare,
        || vec![T::default(); len],
        merge,
        |items, out, acc: &mut Vec<T>| add(items, out, acc),
    )
}

/// `sum += part`, element by element.
fn add_into<T: Copy + std::ops::AddAssign>(sum: &mut [T], part: &[T]) {
    sum.iter_mut().zip(part).for_each(|(s, &v)| *s += v);
}

/// The engine of [`ordered_sum_fill`], for accumulators of any kind: items `0..n` are split
/// into one contiguous range per thread, `add(items, out, acc)` fills the range's part of
/// the output (zeroed) and adds into its own accumulator (`new()`), and the accumulators are
/// merged into the first in range order (`merge(sum, next)`), so the result depends on the
/// thread count only.
fn ordered_fold<A, F>(
    n: usize,
    per_item: usize,
    spare: usize,
    new: impl Fn() -> A + Sync,
    merge: impl Fn(&mut A, A),
    add: F,
) -> candle::Result<(Vec<f32>, A)>
where
    A: Send + Sync,
    F: Fn(std::ops::Range<usize>, &mut [f32], &mut A) -> candle::Result<()> + Sync,
{
    let groups = threads().clamp(1, n.max(1));
    let per = n.div_ceil(groups);
    let items = |g: usize| (g * per).min(n)..((g + 1) * per).min(n);
    let mut out: Vec<f32> = Vec::with_capacity(n * per_item + spare);
    let base = Shared(out.spare_capacity_mut().as_mut_ptr());
    let partials: Vec<std::sync::OnceLock<A>> = (0..groups).map(|_| Default::default()).collect();
    par_for(groups, |g| {
        let range = items(g);
        // SAFETY: group `g` alone writes the floats of its items, inside the
        // `n * per_item` reserved above.
        let part = unsafe {
            std::slice::from_raw_parts_mut(base.at(range.start * per_item), range.len() * per_item)
        };
        let mut acc = new();
        add(range, init_zeroed(part), &mut acc)?;
        let _ = partials[g].set(acc);
        Ok(())
    })?;
    // SAFETY: no group failed, so the parts, which cover `0..n * per_item`, were all
    // initialised.
    unsafe { out.set_len(n * per_item) };
    let mut partials = partials.into_iter().filter_map(|p| p.into_inner());
    let mut sum = partials.next().unwrap_or_else(new);
    for part in partials {
        merge(&mut sum, part);
    }
    Ok((out, sum))
}

#[cfg(test)]
mod tests {
    /// Every length a row can have, inside the inline pieces and past them, at every offset.
    #[test]
    fn copy_row_copies_every_length_exactly() {
        let src: Vec<f32> = (0..48).map(|i| i as f32 + 0.5).collect();
        for n in 0..=40 {
            for at in [0, 1, 3, 7] {
                let mut dst = [-1.0f32; 48];
                super::copy_row(&mut dst[at..at + n], &src[..n]);
                assert_eq!(&dst[at..at + n], &src[..n], "length {n} at {at}");
                assert!(
                    dst[..at].iter().chain(&dst[at + n..]).all(|&v| v == -1.0),
                    "length {n} at {at}: wrote outside"
                );
            }
        }
    }
}
