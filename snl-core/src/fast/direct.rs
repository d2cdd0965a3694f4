//! A direct 3x3, padding 1 convolution (stride 1 or 2) for x86-64 CPUs with AVX2 and FMA.
//!
//! im2col writes nine shifted copies of the input for gemm to read back; for the 3x3
//! "same" convolutions that make up most of a ResNet, that copy alone took about a third
//! of an inference pass. Here each image is copied once into a zero-padded buffer and the
//! kernel reads its taps straight from there: twelve AVX registers accumulate 16 output
//! pixels (two runs of 8) of 6 output channels, each tap one load per run and one broadcast
//! weight per channel.
//!
//! The same kernel computes the input gradient of a stride-1 convolution, which is the
//! convolution of the output gradient with the weights transposed and flipped (both are
//! [`Forward`]'s, which runs `direct512.rs` instead on CPUs with AVX-512F). A second
//! kernel computes the weight gradient from the same padded copy: each weight is a sum over
//! pixels, kept in eight lanes per register and added up once per group of images.

/// Output channels per register block.
const KB: usize = 6;
/// Output channels and input channels per register block of the weight gradient.
const WG_K: usize = 4;
const WG_C: usize = 3;
/// Output pixels per AVX register.
const LANES: usize = 8;

/// One direct convolution: `c` input channels of `(h, w)` maps, 3x3 kernel, padding 1,
/// stride 1 or 2, output `(oh, ow)`.
///
/// The kernel reads a zero-padded copy of each image. For stride 2 that copy is split into
/// four phases (even and odd padded rows and columns), so the taps of a run of output pixels
/// are again 8 consecutive floats: tap `(r, s)` of output `(oh, ow)` is padded pixel
/// `(2 oh + r, 2 ow + s)`, which is phase `(r % 2, s % 2)` at `(oh + r / 2, ow + s / 2)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Direct {
    c: usize,
    h: usize,
    w: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    /// Row pitch of a (phase) plane of the padded copy.
    pitch: usize,
    /// Floats per phase plane.
    phase: usize,
}

impl Direct {
    /// The kernel for this convolution on this CPU, or `None` where it does not apply: it
    /// needs a 3x3 kernel, padding 1, stride 1 (or 2 on even maps), output rows a whole
    /// number of AVX registers wide or half of one (then a register holds two rows), and
    /// output maps a whole number of register pairs.
    pub fn new(
        c: usize,
        (h, w): (usize, usize),
        (r, s): (usize, usize),
        stride: usize,
        pad: usize,
    ) -> Option<Self> {
        let (oh, ow) = three_by_three((h, w), (r, s), stride, pad).filter(|_| cpu_has_avx2_fma())?;
        if !(ow % LANES == 0 || ow == LANES / 2) || (oh * ow) % (2 * LANES) != 0 {
            return None;
        }
        let pitch = (w + 2) / stride;
        Some(Self { c, h, w, stride, oh, ow, pitch, phase: (h + 2) / stride * pitch })
    }

    /// Whether [`Self::weight_grad`] applies, for `k` output channels: output rows of 8
    /// pixels or more, and one image's padded input and output gradient within half of a
    /// 512 KiB L2 cache. Each weight's sum sweeps that data again, so beyond it the kernel
    /// waits on memory (ResNet18 at width 64 measured up to 2x slower than im2col + gemm); on
    /// rows of 4 pixels each image adds only two registers to a sum (also 2x slower).
    pub fn has_weight_grad(&self, k: usize) -> bool {
        const CACHE_FLOATS: usize = 256 * 1024 / 4;
        self.ow >= LANES && self.padded_len() + k * self.oh * self.ow <= CACHE_FLOATS
    }

    /// Input channels, input and output map sizes, and stride.
    pub(super) fn shape(&self) -> (usize, (usize, usize), (usize, usize), usize) {
        (self.c, (self.h, self.w), (self.oh, self.ow), self.stride)
    }

    /// Floats of one image's output of `k` channels.
    pub fn out_len(&self, k: usize) -> usize {
        k * self.oh * self.ow
    }

    /// Floats of the padded copy of one image.
    pub fn padded_len(&self) -> usize {
        self.c * self.stride * self.stride * self.phase
    }

    /// Floats of one input channel in the padded copy.
    pub(super) fn chan_len(&self) -> usize {
        self.stride * self.stride * self.phase
    }

    /// Where in a channel of the padded copy the nine taps `(r, s)` (row-major) of an output
    /// pixel are, from the pixel's [`Self::pixel_offset`].
    pub(super) fn tap_offsets(&self) -> [usize; 9] {
        std::array::from_fn(|t| tap_offset(self.stride, t, self.pitch, self.phase))
    }

    /// Row pitch and floats of one (phase) plane of the padded copy.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn pitch_phase(&self) -> (usize, usize) {
        (self.pitch, self.phase)
    }

    /// Where output pixel `p` (raster order) reads its top-left tap in a channel of the
    /// padded copy.
    pub(super) fn pixel_offset(&self, p: usize) -> usize {
        p / self.ow * self.pitch + p % self.ow
    }

    /// Zero-padded (and for stride 2 phase-split) copy of one image `x` into `dst`.
    pub(super) fn pad_into(&self, x: &[f32], dst: &mut [f32]) {
        let (h, w, pitch, chan) = (self.h, self.w, self.pitch, self.chan_len());
        for (ci, d) in dst.chunks_exact_mut(chan).take(self.c).enumerate() {
            let plane = &x[ci * h * w..(ci + 1) * h * w];
            if self.stride == 1 {
                d[..pitch].fill(0.0);
                d[(h + 1) * pitch..].fill(0.0);
                for (row, src) in plane.chunks_exact(w).enumerate() {
                    let line = &mut d[(row + 1) * pitch..(row + 2) * pitch];
                    line[0] = 0.0;
                    line[w + 1] = 0.0;
                    copy_row(&mut line[1..=w], src);
                }
                continue;
            }
            // Padded row 0 is the first row of the even-row phases, padded row h + 1 the
            // last of the odd-row ones.
            let (even, odd) = d.split_at_mut(2 * self.phase);
            even[..pitch].fill(0.0);
            even[self.phase..self.phase + pitch].fill(0.0);
            odd[self.oh * pitch..(self.oh + 1) * pitch].fill(0.0);
            odd[self.phase + self.oh * pitch..self.phase + (self.oh + 1) * pitch].fill(0.0);
            for (row, src) in plane.chunks_exact(w).enumerate() {
                // Input row `row` is padded row `row + 1`, in the phases of its parity.
                let padded_row = row + 1;
                let phases = if padded_row % 2 == 1 { &mut *odd } else { &mut *even };
                let at = padded_row / 2 * pitch;
                let (col_even, col_odd) = phases.split_at_mut(self.phase);
                let (col_even, col_odd) = (&mut col_even[at..at + pitch], &mut col_odd[at..at + pitch]);
                // Input column `j` is padded column `j + 1`: odd padded columns are the
                // even input columns.
                col_even[0] = 0.0;
                col_odd[pitch - 1] = 0.0;
                for (j, pair) in src.chunks_exact(2).enumerate() {
                    col_odd[j] = pair[0];
                    col_even[j + 1] = pair[1];
                }
            }
        }
    }

    /// `y (k, oh, ow) = conv3x3(x (c, h, w)) + shift[ko]` for one image, with `packed` from
    /// [`pack`] and `padded` scratch of at least [`Self::padded_len`] floats. Writes every
    /// element of `y[..k * oh * ow]`, which need not be initialised.
    pub fn image(
        &self,
        x: &[f32],
        packed: &[f32],
        k: usize,
        shift: Option<&[f32]>,
        padded: &mut [f32],
        y: &mut [MaybeUninit<f32>],
    ) {
        let (c, o) = (self.c, self.oh * self.ow);
        assert!(
            x.len() >= c * self.h * self.w
                && padded.len() >= self.padded_len()
                && packed.len() >= k * c * 9
                && y.len() >= k * o
                && shift.is_none_or(|t| t.len() >= k),
            "direct conv: buffers shorter than their shapes"
        );
        self.pad_into(x, padded);
        for k0 in (0..k).step_by(KB) {
            let nk = KB.min(k - k0);
            let wts = &packed[k0 * c * 9..(k0 + nk) * c * 9];
            let init = |j: usize| shift.map_or(0.0, |t| t[k0 + j]);
            let out = &mut y[k0 * o..(k0 + nk) * o];
            // SAFETY: `new` checked AVX2 and FMA and the shapes; the assert above the
            // buffer lengths (see `block`).
            unsafe { block_kernel(self.ow < LANES, nk)(self, padded, wts, &init, out) }
        }
    }

    /// Adds the weight gradient `(k, c, 3, 3)` of `imgs` images `x` `(imgs, c, h, w)` with
    /// output gradients `dy` `(imgs, k, oh, ow)` into `dw`, with `padded` scratch of at
    /// least `imgs` times [`Self::padded_len`] floats.
    ///
    /// Each weight is a sum over pixels: eight partial sums per register, over all the
    /// images, added up once at the end.
    pub fn weight_grad(
        &self,
        x: &[f32],
        dy: &[f32],
        imgs: usize,
        k: usize,
        padded: &mut [f32],
        dw: &mut [f32],
    ) {
        let (c, in_len, pad_len) = (self.c, self.c * self.h * self.w, self.padded_len());
        assert!(
            x.len() >= imgs * in_len
                && dy.len() >= imgs * k * self.oh * self.ow
                && padded.len() >= imgs * pad_len
                && dw.len() >= k * c * 9,
            "direct conv weight grad: buffers shorter than their shapes"
        );
        assert!(
            self.has_weight_grad(k),
            "direct conv weight grad: not for {k} channels of {}x{}",
            self.oh,
            self.ow
        );
        for i in 0..imgs {
            self.pad_into(&x[i * in_len..(i + 1) * in_len], &mut padded[i * pad_len..(i + 1) * pad_len]);
        }
        // The nine taps of one block read the same planes (shifted by a pixel or a row):
        // run them back to back while those planes are in L1.
        for k0 in (0..k).step_by(WG_K) {
            for c0 in (0..c).step_by(WG_C) {
                let kernel = wgrad_kernel(WG_K.min(k - k0), WG_C.min(c - c0));
                for tap in 0..9 {
                    // SAFETY: `new` checked AVX2 and FMA and the shapes, the assert above
                    // the buffer lengths (see `wgrad`).
                    unsafe { kernel(self, padded, imgs, dy, k, (k0, c0), tap, dw) }
                }
            }
        }
    }
}

/// [`Direct::tap_offsets`]'s offset of tap `t` (`3 r + s`) at stride `st`, for a padded copy
/// of row pitch `pitch` and (phase) planes of `phase` floats; a kernel with the stride as a
/// constant gets each tap's offset folded to a sum of those two.
#[inline(always)]
pub(super) fn tap_offset(st: usize, t: usize, pitch: usize, phase: usize) -> usize {
    let (r, s) = (t / 3, t % 3);
    ((r % st) * st + s % st) * phase + r / st * pitch + s / st
}

/// The output size of a convolution both direct kernels can compute: 3x3, padding 1, stride
/// 1, or 2 on even maps (whose output is then half as large each way), nonempty.
pub(super) fn three_by_three(
    (h, w): (usize, usize),
    (r, s): (usize, usize),
    stride: usize,
    pad: usize,
) -> Option<(usize, usize)> {
    let shape_fits = match stride {
        1 => true,
        2 => h % 2 == 0 && w % 2 == 0,
        _ => false,
    };
    ((r, s, pad) == (3, 3, 1) && shape_fits && h > 0 && w > 0).then_some((h / stride, w / stride))
}

/// The direct kernel a convolution's forward (or stride-1 input gradient) runs: the AVX-512
/// one where the CPU has AVX-512F and the output maps suit it, else the AVX2 one. A rule,
/// not a timing, so that the same CPU always makes the same choice and a run repeats bit
/// for bit.
#[derive(Debug, Clone, Copy)]
pub(super) enum Forward {
    Avx512(Direct512),
    Avx2(Direct),
}

impl Forward {
    /// A direct kernel for this convolution on this CPU, if one applies (see
    /// [`Direct512::new`] and [`Direct::new`]).
    pub fn new(c: usize, hw: (usize, usize), rs: (usize, usize), stride: usize, pad: usize) -> Option<Self> {
        Direct512::new(c, hw, rs, stride, pad)
            .map(Self::Avx512)
            .or_else(|| Direct::new(c, hw, rs, stride, pad).map(Self::Avx2))
    }

    /// Floats of scratch one image needs.
    pub fn scratch_len(&self) -> usize {
        match self {
            Self::Avx512(d) => d.scratch_len(),
            Self::Avx2(d) => d.padded_len(),
        }
    }

    /// Floats of one image's output of `k` channels.
    pub fn out_len(&self, k: usize) -> usize {
        match self {
            Self::Avx512(d) => d.out_len(k),
            Self::Avx2(d) => d.out_len(k),
        }
    }

    /// The weights as this kernel reads them (see [`pack`]).
    pub fn pack(&self, k: usize, c: usize, tap: impl Fn(usize, usize, usize, usize) -> f32) -> Vec<f32> {
        match self {
            Self::Avx512(d) => d.pack(k, c, tap),
            Self::Avx2(_) => pack(k, c, tap),
        }
    }

    /// One image, as [`Direct::image`] says, with weights from [`Self::pack`] and
    /// [`Self::scratch_len`] floats of scratch.
    pub fn image(
        &self,
        x: &[f32],
        packed: &[f32],
        k: usize,
        shift: Option<&[f32]>,
        scratch: &mut [f32],
        y: &mut [MaybeUninit<f32>],
    ) {
        match self {
            Self::Avx512(d) => d.image(x, packed, k, shift, scratch, y),
            Self::Avx2(d) => d.image(x, packed, k, shift, scratch, y),
        }
    }
}

/// The forward kernel of one row width (`half`: 4 pixels) and block size.
type BlockKernel = unsafe fn(&Direct, &[f32], &[f32], &dyn Fn(usize) -> f32, &mut [MaybeUninit<f32>]);

fn block_kernel(half: bool, nk: usize) -> BlockKernel {
    fn of<const HALF: bool>(nk: usize) -> BlockKernel {
        match nk {
            6 => x86::block::<HALF, 6>,
            5 => x86::block::<HALF, 5>,
            4 => x86::block::<HALF, 4>,
            3 => x86::block::<HALF, 3>,
            2 => x86::block::<HALF, 2>,
            _ => x86::block::<HALF, 1>,
        }
    }
    if half { of::<true>(nk) } else { of::<false>(nk) }
}

/// The weight-gradient kernel of one block size.
type WgradKernel = unsafe fn(&Direct, &[f32], usize, &[f32], usize, (usize, usize), usize, &mut [f32]);

fn wgrad_kernel(nk: usize, nc: usize) -> WgradKernel {
    match (nk, nc) {
        (4, 3) => x86::wgrad::<4, 3>,
        (4, 2) => x86::wgrad::<4, 2>,
        (4, _) => x86::wgrad::<4, 1>,
        (3, 3) => x86::wgrad::<3, 3>,
        (3, 2) => x86::wgrad::<3, 2>,
        (3, _) => x86::wgrad::<3, 1>,
        (2, 3) => x86::wgrad::<2, 3>,
        (2, 2) => x86::wgrad::<2, 2>,
        (2, _) => x86::wgrad::<2, 1>,
        (_, 3) => x86::wgrad::<1, 3>,
        (_, 2) => x86::wgrad::<1, 2>,
        (_, _) => x86::wgrad::<1, 1>,
    }
}

use std::mem::MaybeUninit;

use super::copy_row;
use super::direct512::Direct512;

#[cfg(target_arch = "x86_64")]
pub(super) fn cpu_has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn cpu_has_avx2_fma() -> bool {
    false
}

/// Weights of `k` output and `c` input channels rearranged for the kernel: blocks of up to
/// [`KB`] output channels, each `[c][3][3][block]`, so the weights one tap broadcasts are
/// adjacent. `tap(ko, ci, r, s)` gives the weight of output channel `ko`, input channel
/// `ci`, kernel row `r`, column `s`.
pub(super) fn pack(k: usize, c: usize, tap: impl Fn(usize, usize, usize, usize) -> f32) -> Vec<f32> {
    pack_blocks(k, c, KB, tap)
}

/// [`pack`] with blocks of `kb` output channels.
pub(super) fn pack_blocks(
    k: usize,
    c: usize,
    kb: usize,
    tap: impl Fn(usize, usize, usize, usize) -> f32,
) -> Vec<f32> {
    let mut packed = Vec::with_capacity(k * c * 9);
    for k0 in (0..k).step_by(kb) {
        let nk = kb.min(k - k0);
        for ci in 0..c {
            for r in 0..3 {
                for s in 0..3 {
                    packed.extend((k0..k0 + nk).map(|ko| tap(ko, ci, r, s)));
                }
            }
        }
    }
    packed
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{Direct, LANES};

    /// The 8 padded input floats of a run of output pixels from `p` on: consecutive, or
    /// (`HALF`, rows of 4 pixels) 4 from `p` and 4 from the row below.
    ///
    /// # Safety
    /// AVX is available and the floats read are inside one allocation.
    #[inline(always)]
    unsafe fn run<const HALF: bool>(p: *const f32, pitch: usize) -> __m256 {
        // SAFETY: as the caller promises.
        unsafe { if HALF { _mm256_loadu2_m128(p.add(pitch), p) } else { _mm256_loadu_ps(p) } }
    }

    /// `NK` output channels of one image: `out` is `(NK, oh, ow)`, each element written once
    /// (never read), `wts` is `[c][3][3][NK]`, `padded` is the image as
    /// [`Direct::pad_into`] left it; channel `j` starts from `init(j)`.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA, `d` came from [`Direct::new`], the slices are at least as
    /// long as their shapes, and `HALF` is whether rows are 4 pixels wide. A run of 8 output
    /// pixels at `(oh, ow)` then reads (phase) rows `oh..oh + 3` from column `ow` to
    /// `ow + 9 < pitch` (stride 1), or rows `oh..oh + 2` from `ow` to `ow + 8 < pitch`
    /// (stride 2), one row more for `HALF`, inside its plane, and writes 8 consecutive
    /// output pixels.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block<const HALF: bool, const NK: usize>(
        d: &Direct,
        padded: &[f32],
        wts: &[f32],
        init: &dyn Fn(usize) -> f32,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (pitch, o, chan, taps) = (d.pitch, d.oh * d.ow, d.chan_len(), d.tap_offsets());
        // SAFETY: the caller's promises above keep every pointer inside its slice.
        unsafe {
            let xp = padded.as_ptr();
            let op = out.as_mut_ptr().cast::<f32>();
            // Two runs of 8 output pixels per step, in raster order.
            for q in (0..o).step_by(2 * LANES) {
                let runs = [q, q + LANES];
                let at = runs.map(|p| d.pixel_offset(p));
                let mut acc = [[_mm256_setzero_ps(); 2]; NK];
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = [_mm256_set1_ps(init(j)); 2];
                }
                for ci in 0..d.c {
                    let xc = xp.add(ci * chan);
                    let wc = wts.as_ptr().add(ci * 9 * NK);
                    for r in 0..3 {
                        for s in 0..3 {
                            let off = taps[r * 3 + s];
                            let va = run::<HALF>(xc.add(at[0] + off), pitch);
                            let vb = run::<HALF>(xc.add(at[1] + off), pitch);
                            let wt = wc.add((r * 3 + s) * NK);
                            for (j, a) in acc.iter_mut().enumerate() {
                                let wv = _mm256_broadcast_ss(&*wt.add(j));
                                a[0] = _mm256_fmadd_ps(wv, va, a[0]);
                                a[1] = _mm256_fmadd_ps(wv, vb, a[1]);
                            }
                        }
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(op.add(j * o + runs[0]), a[0]);
                    _mm256_storeu_ps(op.add(j * o + runs[1]), a[1]);
                }
            }
        }
    }

    /// Adds into `dw` (`(k, c, 3, 3)`) the gradient of tap `tap` (`3 r + s`) for output
    /// channels `k0..k0 + NK` and input channels `c0..c0 + NC`, summed over `imgs` images:
    /// `padded` holds them as [`Direct::pad_into`] left them, one after the other, and `dy`
    /// is `(imgs, k, oh, ow)`.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA, `d` came from [`Direct::new`], the slices are at least as
    /// long as their shapes, output rows are 8 pixels or more, `k0 + NK <= k`,
    /// `c0 + NC <= d.c` and `tap < 9`. Each load then reads 8 pixels of one
    /// output row of `dy`, or one run of a padded (phase) plane as [`block`] does.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn wgrad<const NK: usize, const NC: usize>(
        d: &Direct,
        padded: &[f32],
        imgs: usize,
        dy: &[f32],
        k: usize,
        (k0, c0): (usize, usize),
        tap: usize,
        dw: &mut [f32],
    ) {
        let (pitch, o, chan, off) = (d.pitch, d.oh * d.ow, d.chan_len(), d.tap_offsets()[tap]);
        let mut acc = [[_mm256_setzero_ps(); NC]; NK];
        // SAFETY: the caller's promises above keep every pointer inside its slice.
        unsafe {
            for i in 0..imgs {
                let xi = padded.as_ptr().add((i * d.c + c0) * chan + off);
                let gi = dy.as_ptr().add((i * k + k0) * o);
                // Row by row: no division per run of 8 pixels.
                for row in 0..d.oh {
                    let (xr, gr) = (xi.add(row * pitch), gi.add(row * d.ow));
                    for col in (0..d.ow).step_by(LANES) {
                        let xv: [__m256; NC] =
                            std::array::from_fn(|cc| _mm256_loadu_ps(xr.add(cc * chan + col)));
                        for (j, a) in acc.iter_mut().enumerate() {
                            let g = _mm256_loadu_ps(gr.add(j * o + col));
                            for (cc, v) in a.iter_mut().enumerate() {
                                *v = _mm256_fmadd_ps(g, xv[cc], *v);
                            }
                        }
                    }
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            for (cc, v) in a.iter().enumerate() {
                // Lanes 0-3 plus 4-7, then pairwise: a fixed order.
                let half = _mm_add_ps(_mm256_castps256_ps128(*v), _mm256_extractf128_ps::<1>(*v));
                let pair = _mm_hadd_ps(half, half);
                dw[((k0 + j) * d.c + c0 + cc) * 9 + tap] += _mm_cvtss_f32(_mm_hadd_ps(pair, pair));
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    /// Never called: [`super::Direct::new`] is `None` off x86-64.
    pub(super) unsafe fn block<const HALF: bool, const NK: usize>(
        _: &super::Direct,
        _: &[f32],
        _: &[f32],
        _: &dyn Fn(usize) -> f32,
        _: &mut [std::mem::MaybeUninit<f32>],
    ) {
        unreachable!("direct conv kernel called without AVX2")
    }

    /// Never called: [`super::Direct::new`] is `None` off x86-64.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn wgrad<const NK: usize, const NC: usize>(
        _: &super::Direct,
        _: &[f32],
        _: usize,
        _: &[f32],
        _: usize,
        _: (usize, usize),
        _: usize,
        _: &mut [f32],
    ) {
        unreachable!("direct conv kernel called without AVX2")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes `snl-core/tests/fast_conv.rs` checks against candle do run this kernel
    /// (on a CPU with AVX2), and the others do not.
    #[test]
    fn applies_exactly_to_its_shapes() {
        if !cpu_has_avx2_fma() {
            return;
        }
        let new = |hw, r, stride, pad| Direct::new(3, hw, (r, r), stride, pad).is_some();
        for hw in [(8, 8), (16, 8), (8, 24), (32, 32), (4, 4), (8, 4)] {
            assert!(new(hw, 3, 1, 1), "{hw:?}");
        }
        for hw in [(16, 16), (32, 16), (16, 32), (8, 8), (16, 8)] {
            assert!(new(hw, 3, 2, 1), "{hw:?} stride 2");
        }
        for (hw, r, stride, pad) in [
            ((6, 4), 3, 1, 1),
            ((4, 2), 3, 1, 1),
            ((8, 12), 3, 1, 1),
            ((4, 4), 3, 2, 1),
            ((9, 8), 3, 1, 1),
            ((8, 8), 1, 1, 0),
            ((8, 8), 3, 1, 0),
            ((17, 16), 3, 2, 1),
        ] {
            assert!(!new(hw, r, stride, pad), "{hw:?} r {r} stride {stride} pad {pad}");
        }
    }
}
