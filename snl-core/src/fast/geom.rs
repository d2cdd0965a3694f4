//! The sizes of one convolution, and which kernel computes it.

use candle::Result;

use super::conv::{ConvKernel, TARGET_COLUMNS};
use super::direct::{Direct, Forward};
use super::wgrad::DirectWgrad;
use super::winograd::Winograd;

/// Every size of one convolution (shared with the cuDNN op).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geom {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) k: usize,
    pub(super) r: usize,
    pub(super) s: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Geom {
    pub(super) fn new(x: &[usize], weight: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[n, c, h, w], &[k, wc, r, s]) = (x, weight) else {
            candle::bail!("fast conv2d: expected 4-D input and weight, got {x:?} and {weight:?}")
        };
        if wc != c {
            candle::bail!("fast conv2d: input has {c} channels, weight {weight:?} expects {wc}")
        }
        if stride == 0 {
            candle::bail!("fast conv2d: stride must be positive")
        }
        if h + 2 * pad < r || w + 2 * pad < s || r == 0 || s == 0 {
            candle::bail!("fast conv2d: kernel {r}x{s} larger than padded input {h}x{w} (padding {pad})")
        }
        let oh = (h + 2 * pad - r) / stride + 1;
        let ow = (w + 2 * pad - s) / stride + 1;
        Ok(Self { n, c, h, w, k, r, s, stride, pad, oh, ow })
    }

    /// The kernel of this convolution's forward (`input_grad` false) or of its input
    /// gradient, which for stride 1 is itself a "same" convolution of the output gradient.
    pub(super) fn kernel(&self, asked: ConvKernel, input_grad: bool) -> Kernel {
        if input_grad && self.stride != 1 {
            return Kernel::Im2col;
        }
        let (c, k, hw) = if input_grad {
            (self.k, self.c, (self.oh, self.ow))
        } else {
            (self.c, self.k, (self.h, self.w))
        };
        let rs = (self.r, self.s);
        let winograd = || Winograd::new(c, hw, rs, self.stride, self.pad).map(Kernel::Winograd);
        let direct = || Forward::new(c, hw, rs, self.stride, self.pad).map(Kernel::Direct);
        let found = match asked {
            ConvKernel::Im2col => None,
            ConvKernel::Direct => direct(),
            ConvKernel::Winograd => winograd().or_else(direct),
            ConvKernel::Auto => winograd().filter(|_| winograd_pays(c, k, hw)).or_else(direct),
        };
        found.unwrap_or(Kernel::Im2col)
    }

    /// The kernel of this convolution's weight gradient: Winograd's where the forward runs
    /// Winograd, except, under `Auto` only, on layers under 256 channels when the AVX-512
    /// direct kernel applies (it took 88 ms against Winograd's 107 on 128 channels of 16x16
    /// maps, and lost on 256 and 512 channels: BENCHMARKS.md); else the direct one where it
    /// applies.
    pub(super) fn weight_grad_kernel(&self, asked: ConvKernel) -> WeightGrad {
        let direct = Direct::new(self.c, (self.h, self.w), (self.r, self.s), self.stride, self.pad)
            .and_then(|d| DirectWgrad::new(d, self.k))
            .filter(|_| asked != ConvKernel::Im2col);
        if let Kernel::Winograd(wg) = self.kernel(asked, false) {
            let direct_pays = asked == ConvKernel::Auto && self.c.min(self.k) < 256;
            return match direct {
                Some(d @ DirectWgrad::Avx512(_)) if direct_pays => WeightGrad::Direct(d),
                _ => WeightGrad::Winograd(wg),
            };
        }
        direct.map_or(WeightGrad::Im2col, WeightGrad::Direct)
    }

    /// Rows of the column matrix.
    pub(super) fn crs(&self) -> usize {
        self.c * self.r * self.s
    }

    /// Output pixels per image and channel.
    pub(super) fn p(&self) -> usize {
        self.oh * self.ow
    }

    pub(super) fn input_len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub(super) fn output_len(&self) -> usize {
        self.k * self.p()
    }

    /// Images per chunk, and whether chunks run in parallel (with single-threaded gemms)
    /// or one after the other (with a parallel gemm).
    pub(super) fn plan(&self) -> (usize, bool, gemm::Parallelism) {
        let threads = candle::utils::get_num_threads().max(1);
        let want = TARGET_COLUMNS.div_ceil(self.p().max(1)).max(1);
        let nb = want.min(self.n.div_ceil(threads)).max(1);
        let chunks = self.n.div_ceil(nb);
        if threads > 1 && chunks >= threads {
            (nb, true, gemm::Parallelism::None)
        } else if threads > 1 {
            (nb, false, gemm::Parallelism::Rayon(threads))
        } else {
            (nb, false, gemm::Parallelism::None)
        }
    }

    /// For stride 1 with output rows as wide as input rows (a "same" convolution), kernel
    /// offset `(r, s)` reads input pixel `p + delta` for output pixel `p`: its column-matrix
    /// row is one shifted copy of the input plane, give or take the padded edges. `None`
    /// otherwise, or when this offset reads no input row at all.
    pub(super) fn shifted(&self, r: usize, s: usize) -> Option<Shift> {
        if self.stride != 1 || self.ow != self.w {
            return None;
        }
        // Output rows [oh0, oh1) read input rows oh + r - pad inside [0, H).
        let oh0 = self.pad.saturating_sub(r);
        let oh1 = (self.h + self.pad).saturating_sub(r).min(self.oh);
        let (lo, hi) = self.valid_cols(s);
        if oh0 >= oh1 || lo >= hi {
            return None;
        }
        let (first, last) = (oh0 * self.ow + lo, (oh1 - 1) * self.ow + hi);
        // The input pixel output pixel `first` reads; the rest of the span follows it.
        let src = (oh0 + r - self.pad) * self.w + lo + s - self.pad;
        Some(Shift { span: (first, last), src, rows: (oh0, oh1), pitch: self.ow })
    }

    /// Output columns `[lo, hi)` of kernel offset `s` that read inside the input row
    /// (the rest read the zero padding).
    pub(super) fn valid_cols(&self, s: usize) -> (usize, usize) {
        let (st, pad) = (self.stride, self.pad);
        let lo = if pad > s { (pad - s).div_ceil(st) } else { 0 };
        let hi = if self.w + pad > s { ((self.w - 1 + pad - s) / st + 1).min(self.ow) } else { 0 };
        (lo.min(hi), hi)
    }
}

/// Whether Winograd beats the direct kernel on a convolution of `c` into `k` channels of
/// `hw` maps, by the per-layer timings in BENCHMARKS.md (batch 128, AVX-512, 1 and 2
/// threads): 1.1-1.7x from 128 channels on 16x16 maps and 256 on smaller ones (ResNet18's
/// last three stages at width 64); 0.4-1.0x with fewer channels, whose gemms are too
/// narrow (every stage at width 16).
fn winograd_pays(c: usize, k: usize, (h, w): (usize, usize)) -> bool {
    let channels = c.min(k);
    channels >= 256 || (channels >= 128 && h * w >= 256)
}

/// A kernel chosen by [`Geom::weight_grad_kernel`].
pub(super) enum WeightGrad {
    Im2col,
    Direct(DirectWgrad),
    Winograd(Winograd),
}

/// A kernel chosen by [`Geom::kernel`].
pub(super) enum Kernel {
    Im2col,
    Direct(Forward),
    Winograd(Winograd),
}

/// One kernel offset of a stride-1 "same" convolution: output pixels `[span.0, span.1)`
/// read as many consecutive input pixels from `src` on; the valid output rows are `rows`.
pub(super) struct Shift {
    pub(super) span: (usize, usize),
    pub(super) src: usize,
    pub(super) rows: (usize, usize),
    pub(super) pitch: usize,
}

impl Shift {
    /// Calls `f` with the first output pixel of every valid output row.
    pub(super) fn for_each_row(&self, mut f: impl FnMut(usize)) {
        (self.rows.0..self.rows.1).for_each(|oh| f(oh * self.pitch));
    }
}
