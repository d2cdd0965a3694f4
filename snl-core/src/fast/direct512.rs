//! A direct 3x3, padding 1 convolution (stride 1 or 2) for x86-64 CPUs with AVX-512F.
//!
//! A core with two 512-bit FMA units (Intel Xeons) does twice the FMAs per cycle of the
//! AVX2 kernel in `direct.rs`. A register holds 16 output pixels.
//!
//! Where output rows are a multiple of 16 pixels (16 and 32 in ResNet18 on CIFAR), a
//! register never spans two rows, and the kernel reads the AVX2 kernel's zero-padded copy
//! of each image (one copy, phase-split at stride 2).
//!
//! Shorter rows (the 8x8 and 4x4 maps of ResNet18's later stages) would put one register
//! across rows of that copy, so there each input channel is copied into planes in which
//! the taps of any run of output pixels are consecutive floats. Plane `(r % stride, s)`
//! holds padded pixel `(stride a + r % stride, stride j + s)` at row `a`, column `j`, with
//! rows as wide as the output's, so tap `(r, s)` of output pixel `p` (raster order) is
//! float `p + (r / stride) ow` of that plane: 3 copies of the input at stride 1 and 1.5 at
//! stride 2, against im2col's 9. (Writing planes for the large maps too took about a
//! twentieth of a width-16 SNL step.) Either way each tap is one load of 16 floats holding
//! the same values, so the results are the same bits.
//!
//! Twenty-four registers accumulate: 4 runs of 16 pixels of 6 output channels where a map
//! has a multiple of 64 pixels, else 1 run of 24 channels (the 4x4 maps).

use std::mem::MaybeUninit;

use super::copy_row;
use super::direct::Direct;

/// Output pixels per AVX-512 register.
const LANES: usize = 16;
/// Accumulator registers: runs times output channels per block.
const ACCS: usize = 24;

/// One direct convolution: `c` input channels of `(h, w)` maps, 3x3 kernel, padding 1,
/// stride 1 or 2, output `(oh, ow)`, computed `runs` registers of pixels at a time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Direct512 {
    c: usize,
    h: usize,
    w: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    /// Rows of a plane (of the planes layout): `oh + 2` at stride 1, `oh + 1` at stride 2.
    rows: usize,
    /// Registers of 16 output pixels per step: 4 or 1.
    runs: usize,
    /// The AVX2 kernel's layout, whose padded copy is read instead of the planes where
    /// output rows are a multiple of 16 pixels.
    padded: Option<Direct>,
}

impl Direct512 {
    /// The kernel for this convolution on this CPU, or `None` where it does not apply: it
    /// needs AVX-512F, a 3x3 kernel, padding 1, stride 1 (or 2 on even maps) and output maps
    /// of a multiple of 16 pixels.
    pub fn new(
        c: usize,
        (h, w): (usize, usize),
        (r, s): (usize, usize),
        stride: usize,
        pad: usize,
    ) -> Option<Self> {
        let (oh, ow) =
            super::direct::three_by_three((h, w), (r, s), stride, pad).filter(|_| cpu_has_avx512f())?;
        let o = oh * ow;
        let runs = match o {
            _ if o % (4 * LANES) == 0 => 4,
            _ if o % LANES == 0 => 1,
            _ => return None,
        };
        let padded = (ow % LANES == 0).then(|| Direct::new(c, (h, w), (r, s), stride, pad)).flatten();
        Some(Self { c, h, w, stride, oh, ow, rows: oh + 2 / stride, runs, padded })
    }

    /// Output channels per block of [`Self::pack`]: 6 or 24.
    fn block(&self) -> usize {
        ACCS / self.runs
    }

    /// Floats of one image's output of `k` channels.
    pub fn out_len(&self, k: usize) -> usize {
        k * self.oh * self.ow
    }

    /// Floats of one plane.
    fn plane(&self) -> usize {
        self.rows * self.ow
    }

    /// Floats of the scratch of one image: its planes or its padded copy.
    pub fn scratch_len(&self) -> usize {
        self.c * self.chan_len()
    }

    /// Floats of one input channel in the scratch.
    fn chan_len(&self) -> usize {
        self.padded.map_or(self.stride * 3 * self.plane(), |p| p.chan_len())
    }

    /// Where in a channel of the scratch the nine taps `(r, s)` (row-major) of an output
    /// pixel are, from the pixel's [`Self::pixel_offset`].
    fn tap_offsets(&self) -> [usize; 9] {
        let (st, plane, ow) = (self.stride, self.plane(), self.ow);
        self.padded.map_or_else(
            || std::array::from_fn(|i| ((i / 3 % st) * 3 + i % 3) * plane + i / 3 / st * ow),
            |p| p.tap_offsets(),
        )
    }

    /// Where the taps of output pixel `p` (raster order) start in a channel of the scratch.
    fn pixel_offset(&self, p: usize) -> usize {
        self.padded.map_or(p, |d| d.pixel_offset(p))
    }

    /// Weights of `k` output and `c` input channels in blocks of [`Self::block`] output
    /// channels, each `[c][3][3][block]`. `tap(ko, ci, r, s)` gives the weight of output
    /// channel `ko`, input channel `ci`, kernel row `r`, column `s`.
    pub fn pack(&self, k: usize, c: usize, tap: impl Fn(usize, usize, usize, usize) -> f32) -> Vec<f32> {
        super::direct::pack_blocks(k, c, self.block(), tap)
    }

    /// The planes of one image `x` into `dst` (see the module doc).
    fn planes_into(&self, x: &[f32], dst: &mut [f32]) {
        let (h, w, ow, st) = (self.h, self.w, self.ow, self.stride);
        let planes = dst.chunks_exact_mut(self.plane()).take(self.c * st * 3);
        for (i, plane) in planes.enumerate() {
            let (ci, rp, s) = (i / (3 * st), i / 3 % st, i % 3);
            for (a, row) in plane.chunks_exact_mut(ow).enumerate() {
                // Padded row `st a + rp` is input row `st a + rp - 1`, if any.
                let Some(ir) = (st * a + rp).checked_sub(1).filter(|&ir| ir < h) else {
                    row.fill(0.0);
                    continue;
                };
                let src = &x[(ci * h + ir) * w..(ci * h + ir + 1) * w];
                // Column j reads input column st j + s - 1 (at stride 2, never past the
                // row: w is even).
                match (st, s) {
                    (1, 0) => {
                        row[0] = 0.0;
                        copy_row(&mut row[1..], &src[..w - 1]);
                    }
                    (1, 1) => copy_row(row, src),
                    (1, _) => {
                        copy_row(&mut row[..w - 1], &src[1..]);
                        row[w - 1] = 0.0;
                    }
                    (_, 0) => {
                        row[0] = 0.0;
                        row[1..].iter_mut().zip(src.chunks_exact(2)).for_each(|(v, pair)| *v = pair[1]);
                    }
                    (_, 1) => row.iter_mut().zip(src.chunks_exact(2)).for_each(|(v, pair)| *v = pair[0]),
                    (_, _) => row.iter_mut().zip(src.chunks_exact(2)).for_each(|(v, pair)| *v = pair[1]),
                }
            }
        }
    }

    /// `y (k, oh, ow) = conv3x3(x (c, h, w)) + shift[ko]` for one image, with `packed` from
    /// [`Self::pack`] and `scratch` of at least [`Self::scratch_len`] floats. Writes
    /// every element of `y[..k * oh * ow]`, which need not be initialised.
    pub fn image(
        &self,
        x: &[f32],
        packed: &[f32],
        k: usize,
        shift: Option<&[f32]>,
        scratch: &mut [f32],
        y: &mut [MaybeUninit<f32>],
    ) {
        let (c, o, kb) = (self.c, self.oh * self.ow, self.block());
        assert!(
            x.len() >= c * self.h * self.w
                && scratch.len() >= self.scratch_len()
                && packed.len() >= k * c * 9
                && y.len() >= k * o
                && shift.is_none_or(|t| t.len() >= k),
            "direct AVX-512 conv: buffers shorter than their shapes"
        );
        match &self.padded {
            Some(p) => p.pad_into(x, scratch),
            None => self.planes_into(x, scratch),
        }
        for k0 in (0..k).step_by(kb) {
            let nk = kb.min(k - k0);
            let wts = &packed[k0 * c * 9..(k0 + nk) * c * 9];
            let init = |j: usize| shift.map_or(0.0, |t| t[k0 + j]);
            let out = &mut y[k0 * o..(k0 + nk) * o];
            // SAFETY: `new` checked AVX-512F and the shapes; the assert above the buffer
            // lengths (see `x86::block`).
            unsafe { kernel(self.runs, nk)(self, scratch, wts, &init, out) }
        }
    }
}

/// The kernel of one run count and block size.
type Kernel = unsafe fn(&Direct512, &[f32], &[f32], &dyn Fn(usize) -> f32, &mut [MaybeUninit<f32>]);

fn kernel(runs: usize, nk: usize) -> Kernel {
    macro_rules! by_nk {
        ($nr:literal; $($n:literal)*) => {
            match nk { $($n => x86::block::<$nr, $n>,)* _ => unreachable!("block of {nk}") }
        };
    }
    if runs == 4 {
        by_nk!(4; 1 2 3 4 5 6)
    } else {
        by_nk!(1; 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24)
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) fn cpu_has_avx512f() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn cpu_has_avx512f() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{Direct512, LANES};

    /// `NK` output channels of one image, `NR` registers of pixels at a time: `out` is
    /// `(NK, oh, ow)`, each element written once (never read), `wts` is `[c][3][3][NK]`,
    /// `scratch` the image as [`Direct512::image`] laid it out; channel `j` starts from
    /// `init(j)`.
    ///
    /// # Safety
    /// The CPU has AVX-512F, `d` came from [`Direct512::new`] with `NR` its run count, and
    /// the slices are at least as long as their shapes. The pixels of a step, `q..q + 16 NR`
    /// with `q + 16 NR <= oh ow`, then read inside their channel's scratch: in the planes,
    /// floats up to `2 / stride * ow + oh ow`, one plane, from the start of a plane. In the
    /// padded copy a register starts at a column that is a multiple of 16 in a row a
    /// multiple of 16 wide, so its 16 pixels are the AVX2 kernel's two runs at `q` and
    /// `q + 8` of one row, whose loads stay in their (phase) plane (see
    /// `direct::x86::block`); at stride 1 tap `(2, 2)` of the last register reads the
    /// channel's last float. They write inside `out`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block<const NR: usize, const NK: usize>(
        d: &Direct512,
        scratch: &[f32],
        wts: &[f32],
        init: &dyn Fn(usize) -> f32,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (o, chan, taps) = (d.oh * d.ow, d.chan_len(), d.tap_offsets());
        // SAFETY: the caller's promises above keep every pointer inside its slice.
        unsafe {
            let op = out.as_mut_ptr().cast::<f32>();
            for q in (0..o).step_by(NR * LANES) {
                let at: [usize; NR] = std::array::from_fn(|t| d.pixel_offset(q + t * LANES));
                let mut acc = [[_mm512_setzero_ps(); NR]; NK];
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = [_mm512_set1_ps(init(j)); NR];
                }
                for ci in 0..d.c {
                    let xc = scratch.as_ptr().add(ci * chan);
                    let wc = wts.as_ptr().add(ci * 9 * NK);
                    for r in 0..3 {
                        for s in 0..3 {
                            let xt = xc.add(taps[r * 3 + s]);
                            let v: [__m512; NR] = std::array::from_fn(|t| _mm512_loadu_ps(xt.add(at[t])));
                            let wt = wc.add((r * 3 + s) * NK);
                            for (j, a) in acc.iter_mut().enumerate() {
                                let wv = _mm512_set1_ps(*wt.add(j));
                                for (t, at) in a.iter_mut().enumerate() {
                                    *at = _mm512_fmadd_ps(wv, v[t], *at);
                                }
                            }
                        }
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    for (t, at) in a.iter().enumerate() {
                        _mm512_storeu_ps(op.add(j * o + q + t * LANES), *at);
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    /// Never called: [`super::Direct512::new`] is `None` off x86-64.
    pub(super) unsafe fn block<const NR: usize, const NK: usize>(
        _: &super::Direct512,
        _: &[f32],
        _: &[f32],
        _: &dyn Fn(usize) -> f32,
        _: &mut [std::mem::MaybeUninit<f32>],
    ) {
        unreachable!("direct AVX-512 conv kernel called without AVX-512")
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// The plain definition: `y[ko][i][j] = shift[ko] + sum x[ci][st i + r - 1][st j + s - 1]
    /// w[ko][ci][r][s]`, in f64.
    fn reference(
        x: &[f32],
        w: &[f32],
        shift: &[f32],
        (c, h, wd): (usize, usize, usize),
        st: usize,
    ) -> Vec<f32> {
        let (k, oh, ow) = (shift.len(), h / st, wd / st);
        let mut y = vec![0f32; k * oh * ow];
        for ko in 0..k {
            for i in 0..oh {
                for j in 0..ow {
                    let mut sum = f64::from(shift[ko]);
                    for ci in 0..c {
                        for r in 0..3 {
                            for s in 0..3 {
                                let (ir, ic) = ((st * i + r).wrapping_sub(1), (st * j + s).wrapping_sub(1));
                                if ir < h && ic < wd {
                                    let xv = f64::from(x[(ci * h + ir) * wd + ic]);
                                    sum += xv * f64::from(w[((ko * c + ci) * 3 + r) * 3 + s]);
                                }
                            }
                        }
                    }
                    y[(ko * oh + i) * ow + j] = sum as f32;
                }
            }
        }
        y
    }

    /// Every stride, run count and block size the kernel has, against the definition:
    /// maps from 4x4 (one run, 24 channels a block) to 32x32 (four runs, 6 a block), wide
    /// and tall ones, rows of 1 and 12 pixels (runs that start mid-row), one-row maps, odd
    /// heights, and channel counts that leave every partial block.
    #[test]
    fn matches_the_definition_on_every_kernel() {
        if !cpu_has_avx512f() {
            eprintln!("SKIPPED: this CPU has no AVX-512F, so the kernel cannot run here");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut cases = Vec::new();
        for hw in [
            (32, 32),
            (16, 16),
            (8, 8),
            (4, 4),
            (8, 32),
            (2, 8),
            (16, 1),
            (1, 16),
            (3, 16),
            (4, 12),
            (16, 12),
            (12, 4),
        ] {
            cases.push((hw, 1));
        }
        // (4, 64) at stride 2: the padded copy's phases with rows of 32 pixels (2 registers),
        // a step of 4 registers across two rows.
        for hw in [(32, 32), (16, 16), (8, 8), (8, 32), (4, 16), (32, 2), (2, 32), (8, 24), (4, 64)] {
            cases.push((hw, 2));
        }
        for ((h, w), st) in cases {
            let c = rng.random_range(2..6);
            let d = Direct512::new(c, (h, w), (3, 3), st, 1).expect("applies");
            let nks: Vec<usize> =
                if d.runs == 4 { (1..=13).collect() } else { (1..=25).chain([49]).collect() };
            for k in nks {
                let x: Vec<f32> = (0..c * h * w).map(|_| rng.random_range(-1.0..1.0)).collect();
                let wt: Vec<f32> = (0..k * c * 9).map(|_| rng.random_range(-1.0..1.0)).collect();
                let shift: Vec<f32> = (0..k).map(|_| rng.random_range(-1.0..1.0)).collect();
                let want = reference(&x, &wt, &shift, (c, h, w), st);
                let packed = d.pack(k, c, |ko, ci, r, s| wt[((ko * c + ci) * 3 + r) * 3 + s]);
                let mut planes = vec![f32::NAN; d.scratch_len()];
                let mut y = vec![MaybeUninit::new(f32::NAN); d.out_len(k)];
                d.image(&x, &packed, k, Some(&shift), &mut planes, &mut y);
                for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                    // SAFETY: `image` wrote every element (each started as NaN and would fail).
                    let got = unsafe { got.assume_init() };
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{h}x{w} stride {st}, c {c}, k {k}: output {i} is {got}, want {want}"
                    );
                }
            }
        }
    }

    /// Both kernels add the same products in the same order (input channel, then kernel
    /// row, then column, one FMA each, from the shift), so where both apply they agree to
    /// the bit. Every block size of the AVX2 kernel (1 to 6 channels) runs here, with rows
    /// of 8 or more pixels and of 4, at both strides: on a CPU with AVX-512F this is the
    /// AVX2 kernel's only test, since `tests/fast_conv.rs` then runs the AVX-512 one.
    #[test]
    fn agrees_with_the_avx2_kernel_to_the_bit() {
        if !cpu_has_avx512f() {
            eprintln!("SKIPPED: this CPU has no AVX-512F, so the kernel cannot run here");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // The padded copy at both strides and both run counts ((3, 16): one register a step,
        // 24-channel blocks), and the planes.
        let shapes = [
            ((32, 32), 1, 5),
            ((3, 16), 1, 3),
            ((8, 8), 1, 16),
            ((4, 4), 1, 9),
            ((32, 32), 2, 3),
            ((4, 64), 2, 2),
            ((16, 16), 2, 4),
            ((8, 8), 2, 6),
        ];
        for ((h, w), st, c, k) in
            shapes.into_iter().flat_map(|(hw, st, c)| (1..=7).chain([13, 30]).map(move |k| (hw, st, c, k)))
        {
            let avx2 =
                super::super::direct::Direct::new(c, (h, w), (3, 3), st, 1).expect("AVX2 kernel applies");
            let avx512 = Direct512::new(c, (h, w), (3, 3), st, 1).expect("AVX-512 kernel applies");
            let x: Vec<f32> = (0..c * h * w).map(|_| rng.random_range(-1.0..1.0)).collect();
            let wt: Vec<f32> = (0..k * c * 9).map(|_| rng.random_range(-1.0..1.0)).collect();
            let shift: Vec<f32> = (0..k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let tap = |ko: usize, ci: usize, r: usize, s: usize| wt[((ko * c + ci) * 3 + r) * 3 + s];
            let run = |image: &dyn Fn(&mut [MaybeUninit<f32>])| {
                let mut y = vec![MaybeUninit::new(f32::NAN); avx512.out_len(k)];
                image(&mut y);
                // SAFETY: both kernels write every element they are given.
                y.into_iter().map(|v| unsafe { v.assume_init() }.to_bits()).collect::<Vec<_>>()
            };
            let by_avx2 = run(&|y| {
                let packed = super::super::direct::pack(k, c, tap);
                avx2.image(&x, &packed, k, Some(&shift), &mut vec![0.0; avx2.padded_len()], y)
            });
            let by_avx512 = run(&|y| {
                avx512.image(
                    &x,
                    &avx512.pack(k, c, tap),
                    k,
                    Some(&shift),
                    &mut vec![0.0; avx512.scratch_len()],
                    y,
                )
            });
            assert!(by_avx2 == by_avx512, "{h}x{w} stride {st}, c {c}, k {k}: the kernels differ");
        }
    }

    /// Where it applies: 3x3, padding 1, stride 1 or 2 on even maps, and 16 output pixels
    /// or a multiple.
    #[test]
    fn applies_exactly_to_its_shapes() {
        if !cpu_has_avx512f() {
            eprintln!("SKIPPED: this CPU has no AVX-512F");
            return;
        }
        let new = |hw, r, stride, pad| Direct512::new(3, hw, (r, r), stride, pad);
        for (hw, stride, runs) in [
            ((32, 32), 1, 4),
            ((8, 8), 1, 4),
            ((16, 12), 1, 4),
            ((4, 4), 1, 1),
            ((2, 8), 1, 1),
            ((16, 1), 1, 1),
            ((3, 16), 1, 1),
            ((8, 8), 2, 1),
            ((32, 32), 2, 4),
            ((32, 2), 2, 1),
            ((8, 24), 2, 1),
        ] {
            let d = new(hw, 3, stride, 1);
            assert_eq!(d.map(|d| d.runs), Some(runs), "{hw:?} stride {stride}");
            // Rows of a whole number of registers read the padded copy, others the planes.
            let rows_of_registers = (hw.1 / stride) % LANES == 0;
            assert_eq!(d.is_some_and(|d| d.padded.is_some()), rows_of_registers, "{hw:?} stride {stride}");
        }
        for (hw, r, stride, pad) in [
            ((2, 2), 3, 1, 1),
            ((3, 4), 3, 1, 1),
            ((5, 5), 3, 1, 1),
            ((16, 1), 3, 2, 1),
            ((4, 4), 3, 2, 1),
            ((17, 16), 3, 2, 1),
            ((8, 8), 1, 1, 0),
            ((8, 8), 3, 1, 0),
            ((8, 8), 3, 3, 1),
        ] {
            assert!(new(hw, r, stride, pad).is_none(), "{hw:?} r {r} stride {stride} pad {pad}");
        }
    }
}
