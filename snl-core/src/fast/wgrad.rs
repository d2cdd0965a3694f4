//! The direct weight gradient of a 3x3, padding 1 convolution: which kernel computes it,
//! and the AVX-512 one.
//!
//! `dw[k][c][r][s]` is a sum over output pixels `p` of `dy[k][p] x[c][p + (r, s)]`. The AVX2
//! kernel (`direct.rs`) keeps 8 pixels of one weight in a register and adds the lanes up at
//! the end of each group of images. The AVX-512 one here keeps 16 *output channels* of
//! one weight in a register instead: each pixel loads `dy[p][k0..k0 + 16]` once, from a
//! pixel-major copy of the output gradient, and multiplies it by one broadcast input float
//! per tap, into up to 27 registers (2 blocks of output channels by one input channel's 9
//! taps, or 1 by 3 input channels'). Every product is a full-width FMA, no sum crosses
//! lanes, and rows of any width the direct layout takes work (the 4x4 maps of ResNet18's
//! last stage too, where the AVX2 kernel needs rows of 8 pixels). Stride 2
//! reads the phase-split padded copy of the AVX2 kernel, as its forward does.

use super::direct::Direct;
use super::direct512::cpu_has_avx512f;

/// Output pixels per group of images summed before the group's sums are added into the
/// gradient, so those final adds are a small part of the work (AVX-512: 16 adds per
/// register, against the AVX2 kernel's cheaper in-register sums).
const GROUP_PIXELS: usize = 1024;
const AVX2_GROUP_PIXELS: usize = 256;
/// Output channels per AVX-512 register.
const LANES: usize = 16;
/// A group's padded input and output gradient should stay in (a 2 MiB) L2 cache: each
/// block of channels sweeps them again.
const CACHE_FLOATS: usize = 1 << 18;

/// The direct weight-gradient kernel of one convolution.
#[derive(Debug, Clone, Copy)]
pub(super) enum DirectWgrad {
    /// Channels in lanes (AVX-512F, output channels and pixels multiples of 16).
    Avx512(Wgrad512),
    /// Pixels in lanes (AVX2; see [`Direct::has_weight_grad`]).
    Avx2(Direct),
}

impl DirectWgrad {
    /// The kernel for `k` output channels of the convolution `d` computes, if one applies
    /// on this CPU: the AVX-512 one where it applies, else the AVX2 one.
    pub fn new(d: Direct, k: usize) -> Option<Self> {
        Wgrad512::new(d, k).map(Self::Avx512).or_else(|| d.has_weight_grad(k).then_some(Self::Avx2(d)))
    }

    /// Images per group, for maps of `p` output pixels.
    pub fn group(&self, p: usize, k: usize) -> usize {
        match self {
            Self::Avx512(w) => GROUP_PIXELS.div_ceil(p.max(1)).min(CACHE_FLOATS / w.image_floats(k)).max(1),
            Self::Avx2(_) => AVX2_GROUP_PIXELS.div_ceil(p.max(1)),
        }
    }

    /// Scratch floats [`Self::weight_grad`] needs for `imgs` images of `k` output channels.
    pub fn scratch_len(&self, imgs: usize, k: usize) -> usize {
        match self {
            Self::Avx512(w) => imgs * w.image_floats(k),
            Self::Avx2(d) => imgs * d.padded_len(),
        }
    }

    /// Adds into `dw` `(k, c, 3, 3)` the weight gradient of `imgs` images `x` `(imgs, c, h,
    /// w)` with output gradients `dy` `(imgs, k, oh, ow)`.
    pub fn weight_grad(
        &self,
        x: &[f32],
        dy: &[f32],
        imgs: usize,
        k: usize,
        scratch: &mut [f32],
        dw: &mut [f32],
    ) {
        match self {
            Self::Avx512(w) => w.weight_grad(x, dy, imgs, k, scratch, dw),
            Self::Avx2(d) => d.weight_grad(x, dy, imgs, k, scratch, dw),
        }
    }
}

/// One block size and stride of [`x86::block`].
type BlockKernel = unsafe fn(&Wgrad512, &[f32], &[f32], usize, usize, (usize, usize), &mut [f32]);

/// The AVX-512 weight gradient of a convolution, reading the AVX2 kernel's padded (at
/// stride 2 phase-split) copy of each image.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wgrad512 {
    d: Direct,
    /// Input channels.
    c: usize,
    /// Floats of one input image.
    in_len: usize,
    oh: usize,
    ow: usize,
    stride: usize,
}

impl Wgrad512 {
    /// The kernel for `k` output channels, or `None` where it does not apply: it needs
    /// AVX-512F, `k` and the output pixels multiples of 16 (whole 16x16 blocks to
    /// transpose) and one image's data within the cache budget.
    pub fn new(d: Direct, k: usize) -> Option<Self> {
        let (c, (h, w), (oh, ow), stride) = d.shape();
        let kernel = Self { d, c, in_len: c * h * w, oh, ow, stride };
        (cpu_has_avx512f()
            && k.is_multiple_of(LANES)
            && k > 0
            && (oh * ow).is_multiple_of(LANES)
            && kernel.image_floats(k) <= CACHE_FLOATS)
            .then_some(kernel)
    }

    /// Scratch floats per image: its padded copy and its pixel-major output gradient.
    fn image_floats(&self, k: usize) -> usize {
        self.d.padded_len() + k * self.oh * self.ow
    }

    /// See [`DirectWgrad::weight_grad`].
    fn weight_grad(&self, x: &[f32], dy: &[f32], imgs: usize, k: usize, scratch: &mut [f32], dw: &mut [f32]) {
        let (c, p, pad_len, in_len) = (self.c, self.oh * self.ow, self.d.padded_len(), self.in_len);
        assert!(
            x.len() >= imgs * in_len
                && dy.len() >= imgs * k * p
                && scratch.len() >= imgs * self.image_floats(k)
                && dw.len() >= k * c * 9,
            "AVX-512 weight grad: buffers shorter than their shapes"
        );
        let (padded, dyt) = scratch.split_at_mut(imgs * pad_len);
        for i in 0..imgs {
            self.d.pad_into(&x[i * in_len..(i + 1) * in_len], &mut padded[i * pad_len..(i + 1) * pad_len]);
            // Pixel-major: the 16 channels a register takes are consecutive.
            let (src, dst) = (&dy[i * k * p..(i + 1) * k * p], &mut dyt[i * k * p..(i + 1) * k * p]);
            for (k0, q0) in (0..k).step_by(LANES).flat_map(|k0| (0..p).step_by(LANES).map(move |q0| (k0, q0)))
            {
                // SAFETY: `new` checked AVX-512F and that `k` and `p` are multiples of 16, so
                // the block's 16 rows of 16 floats lie inside `src` (rows `p` apart) and
                // `dst` (rows `k` apart).
                unsafe {
                    x86::transpose16(src.as_ptr().add(k0 * p + q0), p, dst.as_mut_ptr().add(q0 * k + k0), k)
                }
            }
        }
        let (padded, dyt) = (&*padded, &*dyt);
        let mut k0 = 0;
        while k0 < k {
            // Two registers of output channels share each broadcast (per pixel 18 FMAs, 11
            // loads); a lone register takes three input channels instead (27 FMAs, 28 loads).
            let pair = k - k0 >= 2 * LANES;
            let mut c0 = 0;
            while c0 < c {
                let nc = if pair { 1 } else { 3.min(c - c0) };
                let kernel: BlockKernel = match (self.stride, pair, nc) {
                    (1, true, _) => x86::block::<1, 2, 1>,
                    (1, false, 3) => x86::block::<1, 1, 3>,
                    (1, false, 2) => x86::block::<1, 1, 2>,
                    (1, false, _) => x86::block::<1, 1, 1>,
                    (2, true, _) => x86::block::<2, 2, 1>,
                    (2, false, 3) => x86::block::<2, 1, 3>,
                    (2, false, 2) => x86::block::<2, 1, 2>,
                    (2, false, _) => x86::block::<2, 1, 1>,
                    (stride, ..) => unreachable!("direct layout with stride {stride}"),
                };
                // SAFETY: `new` checked AVX-512F; the assert above the buffer lengths, and
                // `k0 + 16 KV <= k`, `c0 + NC <= c` (see `block`).
                unsafe { kernel(self, padded, dyt, imgs, k, (k0, c0), dw) };
                c0 += nc;
            }
            k0 += if pair { 2 * LANES } else { LANES };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::direct::tap_offset;
    use super::{LANES, Wgrad512};

    /// Writes the transpose of the 16x16 block at `src` (rows `src_stride` floats apart)
    /// to `dst` (rows `dst_stride` apart): row `j` of `dst` is column `j` of `src`.
    ///
    /// # Safety
    /// The CPU has AVX-512F and the 16 rows of 16 floats on either side are in bounds.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose16(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        // SAFETY: as the caller promises.
        let r: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * src_stride)) });
        // Within each 128-bit lane L: rows 2j and 2j + 1 of columns 4L, 4L + 1 (even t),
        // and of columns 4L + 2, 4L + 3 (odd t).
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 { _mm512_unpacklo_ps(a, b) } else { _mm512_unpackhi_ps(a, b) }
        });
        // `q[4g + m]`, lane L: rows 4g..4g + 4 of column 4L + m.
        let q: [__m512; 16] = std::array::from_fn(|i| {
            let (g, m) = (i / 4, i % 4);
            let (a, b) = (_mm512_castps_pd(t[4 * g + m / 2]), _mm512_castps_pd(t[4 * g + m / 2 + 2]));
            _mm512_castpd_ps(if m % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
        });
        // `u[m]`: column m's rows 0-3, 4-7 of lanes 0 and 2; `u[4 + m]` of lanes 1 and 3;
        // `u[8 + m]`, `u[12 + m]` the same of rows 8-15.
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (half, odd_lanes, m) = (i / 8, i / 4 % 2 == 1, i % 4);
            let (a, b) = (q[8 * half + m], q[8 * half + 4 + m]);
            if odd_lanes { _mm512_shuffle_f32x4::<0xdd>(a, b) } else { _mm512_shuffle_f32x4::<0x88>(a, b) }
        });
        for m in 0..4 {
            let columns = [
                (m, _mm512_shuffle_f32x4::<0x88>(u[m], u[8 + m])),
                (4 + m, _mm512_shuffle_f32x4::<0x88>(u[4 + m], u[12 + m])),
                (8 + m, _mm512_shuffle_f32x4::<0xdd>(u[m], u[8 + m])),
                (12 + m, _mm512_shuffle_f32x4::<0xdd>(u[4 + m], u[12 + m])),
            ];
            for (col, v) in columns {
                // SAFETY: as the caller promises.
                unsafe { _mm512_storeu_ps(dst.add(col * dst_stride), v) };
            }
        }
    }

    /// Adds into `dw` the gradient of the weights of output channels `k0..k0 + 16 KV` and
    /// input channels `c0..c0 + NC`, summed over `imgs` images: `padded` holds them as
    /// [`super::Direct::pad_into`] left them, one after the other, and `dyt` their output
    /// gradients pixel-major, `(imgs, oh ow, k)`.
    ///
    /// # Safety
    /// The CPU has AVX-512F, `w` came from [`Wgrad512::new`] with stride `S`, the slices are
    /// at least as long as their shapes, `k0 + 16 KV <= k` and `c0 + NC <= c`. Tap `(r, s)`
    /// of output pixel `(row, col)` is then padded float `row pitch + col` plus the tap's
    /// offset (`Direct::tap_offsets`: at stride 1 `r pitch + s`) of its channel, inside the
    /// channel.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block<const S: usize, const KV: usize, const NC: usize>(
        w: &Wgrad512,
        padded: &[f32],
        dyt: &[f32],
        imgs: usize,
        k: usize,
        (k0, c0): (usize, usize),
        dw: &mut [f32],
    ) {
        let (c, oh, ow, chan) = (w.c, w.oh, w.ow, w.d.chan_len());
        let (pitch, phase) = w.d.pitch_phase();
        let mut acc = [[[_mm512_setzero_ps(); 9]; NC]; KV];
        // SAFETY: the caller's promises above keep every pointer inside its slice.
        unsafe {
            for i in 0..imgs {
                let xi = padded.as_ptr().add((i * c + c0) * chan);
                let gi = dyt.as_ptr().add(i * oh * ow * k + k0);
                for row in 0..oh {
                    for col in 0..ow {
                        let xo = xi.add(row * pitch + col);
                        let g = gi.add((row * ow + col) * k);
                        let gv: [__m512; KV] = std::array::from_fn(|v| _mm512_loadu_ps(g.add(v * LANES)));
                        for cc in 0..NC {
                            let xc = xo.add(cc * chan);
                            for t in 0..9 {
                                let b = _mm512_set1_ps(*xc.add(tap_offset(S, t, pitch, phase)));
                                for (a, g) in acc.iter_mut().zip(&gv) {
                                    a[cc][t] = _mm512_fmadd_ps(*g, b, a[cc][t]);
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut lanes = [0f32; LANES];
        for (v, per_c) in acc.iter().enumerate() {
            for (cc, taps) in per_c.iter().enumerate() {
                for (t, a) in taps.iter().enumerate() {
                    // SAFETY: `lanes` holds 16 floats.
                    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *a) };
                    for (j, &s) in lanes.iter().enumerate() {
                        dw[((k0 + v * LANES + j) * c + c0 + cc) * 9 + t] += s;
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    /// Never called: [`super::Wgrad512::new`] is `None` off x86-64.
    pub(super) unsafe fn transpose16(_: *const f32, _: usize, _: *mut f32, _: usize) {
        unreachable!("AVX-512 transpose called without AVX-512F")
    }

    /// Never called: [`super::Wgrad512::new`] is `None` off x86-64.
    pub(super) unsafe fn block<const S: usize, const KV: usize, const NC: usize>(
        _: &super::Wgrad512,
        _: &[f32],
        _: &[f32],
        _: usize,
        _: usize,
        _: (usize, usize),
        _: &mut [f32],
    ) {
        unreachable!("AVX-512 weight-gradient kernel called without AVX-512F")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: `dw[k][c][r][s] = sum over images and output pixels of dy x`, in f64.
    fn reference(
        x: &[f32],
        dy: &[f32],
        (n, c, h, w): (usize, usize, usize, usize),
        k: usize,
        stride: usize,
    ) -> Vec<f32> {
        let (oh, ow) = (h / stride, w / stride);
        let mut dw = vec![0f64; k * c * 9];
        for i in 0..n {
            for ko in 0..k {
                for ci in 0..c {
                    for t in 0..9 {
                        let (r, s) = (t / 3, t % 3);
                        let mut sum = 0f64;
                        for row in 0..oh {
                            for col in 0..ow {
                                let (a, b) =
                                    ((stride * row + r) as isize - 1, (stride * col + s) as isize - 1);
                                if a < 0 || b < 0 || a >= h as isize || b >= w as isize {
                                    continue;
                                }
                                let xv = x[((i * c + ci) * h + a as usize) * w + b as usize] as f64;
                                sum += dy[((i * k + ko) * oh + row) * ow + col] as f64 * xv;
                            }
                        }
                        dw[(ko * c + ci) * 9 + t] += sum;
                    }
                }
            }
        }
        dw.into_iter().map(|v| v as f32).collect()
    }

    /// Every block shape (two registers of output channels by one input channel, one by
    /// three, two or one) at both strides, output rows of 4 to 32 pixels, one image and
    /// several, against the definition; the sums start from what `dw` held.
    #[test]
    fn agrees_with_the_definition() {
        if !cpu_has_avx512f() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let mut seed = 1u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for (n, c, (h, w), k, stride) in [
            (1, 1, (4, 4), 16, 1),
            (2, 5, (8, 8), 16, 1),
            (3, 4, (4, 4), 48, 1),
            (2, 3, (8, 16), 32, 1),
            (1, 2, (32, 32), 64, 1),
            (2, 5, (8, 8), 16, 2),
            (1, 4, (16, 16), 48, 2),
            (2, 1, (8, 32), 32, 2),
        ] {
            let d = Direct::new(c, (h, w), (3, 3), stride, 1).expect("direct layout");
            let (oh, ow) = (h / stride, w / stride);
            let kernel = Wgrad512::new(d, k).expect("AVX-512 weight grad applies");
            let x: Vec<f32> = (0..n * c * h * w).map(|_| next()).collect();
            let dy: Vec<f32> = (0..n * k * oh * ow).map(|_| next()).collect();
            let start: Vec<f32> = (0..k * c * 9).map(|_| next()).collect();
            let mut dw = start.clone();
            let mut scratch = vec![f32::NAN; n * kernel.image_floats(k)];
            kernel.weight_grad(&x, &dy, n, k, &mut scratch, &mut dw);
            let want = reference(&x, &dy, (n, c, h, w), k, stride);
            for (i, ((&got, &want), &from)) in dw.iter().zip(&want).zip(&start).enumerate() {
                let err = (got - from - want).abs();
                assert!(
                    err < 1e-4,
                    "n {n} c {c} {h}x{w} k {k} stride {stride}: weight {i}: {got} - {from} vs {want}"
                );
            }
        }
    }

    #[test]
    fn applies_where_it_should() {
        let d = |c, hw, stride| Direct::new(c, hw, (3, 3), stride, 1).unwrap();
        if !cpu_has_avx512f() {
            eprintln!("skipped: this CPU has no AVX-512F");
            let layout = Direct::new(16, (32, 32), (3, 3), 1, 1);
            assert!(layout.and_then(|d| Wgrad512::new(d, 16)).is_none());
            return;
        }
        assert!(Wgrad512::new(d(16, (32, 32), 1), 16).is_some());
        assert!(Wgrad512::new(d(64, (32, 32), 1), 64).is_some(), "width 64's first stage fits");
        assert!(Wgrad512::new(d(16, (32, 32), 1), 24).is_none(), "k not a multiple of 16");
        assert!(Wgrad512::new(d(16, (32, 32), 2), 32).is_some(), "stride 2");
        assert!(Wgrad512::new(d(16, (8, 8), 2), 16).is_some(), "4x4 outputs");
        assert!(Wgrad512::new(d(256, (32, 32), 1), 256).is_none(), "one image beyond the cache budget");
    }
}
