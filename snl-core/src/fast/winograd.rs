//! Winograd F(2x2, 3x3): a 3x3, stride-1, padding-1 convolution of even-sized maps as 16
//! matrix products over 4x4 input tiles, 2.25x fewer multiplications than the direct sum.
//!
//! With `B`, `G`, `A` the F(2, 3) matrices, each 2x2 output tile is `A^T [(G g G^T) ⊙
//! (B^T d B)] A` for its 4x4 input window `d` (overlapping by 2) and each filter `g`. Tiles
//! are columns: the 16 elementwise products become 16 gemms `(K x C) (C x tiles)`.
//! Every coefficient is 0, ±1 or ±1/2, so the results differ from the direct sum by float
//! rounding only (a few ulps of the operands' magnitudes; `tests/fast_winograd.rs`).
//!
//! The weight gradient is the adjoint: `G^T [sum over tiles of (A dy A^T) ⊙ (B^T d B)] G`,
//! 16 gemms `(K x tiles)(tiles x C)` on the same transformed inputs.
//!
//! A chunk of images is transformed, multiplied and transformed back while its tiles are
//! still in cache; chunks run in parallel with single-threaded gemms, so each output of
//! the forward and input gradient is summed in the same order whatever the thread count.
//! The weight gradient's chunks are summed in order (`ordered_sum`), like every weight
//! gradient here: the same bits for the same thread count.

use std::mem::MaybeUninit;

use super::conv::with_scratch;
use super::gemm::{Mat, sgemm};
use super::{copy_row, ordered_sum, par_vec, par_vec_uninit};

/// Tiles per chunk: the gemms' width. Fewer made the 4x4 maps' gemms slow (16 columns);
/// more only cost memory.
const TILE_COLUMNS: usize = 128;

/// A Winograd F(2x2, 3x3) convolution of `c`-channel `h x w` maps (both even).
#[derive(Debug, Clone, Copy)]
pub(super) struct Winograd {
    c: usize,
    h: usize,
    w: usize,
}

impl Winograd {
    /// The kernel of a 3x3, stride-1, padding-1 convolution of even-sized maps.
    pub(super) fn new(
        c: usize,
        (h, w): (usize, usize),
        rs: (usize, usize),
        stride: usize,
        pad: usize,
    ) -> Option<Self> {
        let even = h >= 2 && w >= 2 && h % 2 == 0 && w % 2 == 0;
        (rs == (3, 3) && stride == 1 && pad == 1 && even && c > 0).then_some(Self { c, h, w })
    }

    /// 2x2 output tiles per map.
    fn tiles(&self) -> usize {
        (self.h / 2) * (self.w / 2)
    }

    /// The transformed filters `G g G^T` of the filters `tap(ko, ci, r, s)` (`k` output
    /// channels), `[k][16][c]`: matrix `xi` is rows `xi * c..` of each output channel's block.
    pub(super) fn transform_weights(
        &self,
        k: usize,
        tap: impl Fn(usize, usize, usize, usize) -> f32 + Sync,
    ) -> candle::Result<Vec<f32>> {
        let c = self.c;
        par_vec(k * 16 * c, 16 * c, |ko, block| {
            for ci in 0..c {
                let g = |r: usize, s: usize| tap(ko, ci, r, s);
                // G g: 4 rows of 3.
                let col = |s: usize| (g(0, s), g(1, s), g(2, s));
                let gg: [[f32; 3]; 4] = [
                    std::array::from_fn(|s| col(s).0),
                    std::array::from_fn(|s| 0.5 * (col(s).0 + col(s).1 + col(s).2)),
                    std::array::from_fn(|s| 0.5 * (col(s).0 - col(s).1 + col(s).2)),
                    std::array::from_fn(|s| col(s).2),
                ];
                // (G g) G^T: 4 columns.
                for (a, row) in gg.iter().enumerate() {
                    let [g0, g1, g2] = *row;
                    let t = [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2];
                    for (b, v) in t.into_iter().enumerate() {
                        block[(a * 4 + b) * c + ci] = v;
                    }
                }
            }
            Ok(())
        })
    }

    /// Outputs per image with `k` output channels.
    pub(super) fn out_len(&self, k: usize) -> usize {
        k * self.h * self.w
    }

    /// The convolution of `n` images `x` (each `c x h x w`) with the transformed filters `u`
    /// of [`Self::transform_weights`] for `k` output channels, plus `shift[ko]` when given.
    pub(super) fn forward(
        &self,
        x: &[f32],
        n: usize,
        u: &[f32],
        k: usize,
        shift: Option<&[f32]>,
    ) -> candle::Result<Vec<f32>> {
        let c = self.c;
        let (in_len, out_len) = (c * self.h * self.w, self.out_len(k));
        if x.len() != n * in_len || u.len() != 16 * k * c || shift.is_some_and(|t| t.len() != k) {
            candle::bail!(
                "fast winograd: {} inputs, {} filters for {n} images of {c}->{k} channels",
                x.len(),
                u.len()
            )
        }
        let nb = self.images_per_chunk(n);
        // SAFETY: `chunk` writes every element of its output (each tile of each channel).
        unsafe {
            par_vec_uninit(n * out_len, nb * out_len, |ci, y| {
                let imgs = y.len() / out_len;
                let xs = &x[ci * nb * in_len..(ci * nb + imgs) * in_len];
                self.chunk(xs, imgs, u, k, shift, y)
            })
        }
    }

    /// Images per chunk: whole images, at least 4 chunks where the batch allows (work for
    /// every thread), sized by the batch alone: the thread count never changes how a sum is
    /// cut.
    fn images_per_chunk(&self, n: usize) -> usize {
        TILE_COLUMNS.div_ceil(self.tiles()).min(n / 4).max(1)
    }

    /// Scratch floats for a chunk of `cols` tiles: the gathered windows and the split rows.
    fn gather_len(&self, cols: usize) -> usize {
        16 * cols + 2 * (self.h + 2) * (self.w / 2 + 1)
    }

    /// Runs `f(v, out, d)` on this thread's scratch: `v` holds the transformed inputs of the
    /// `imgs` images `x` (`[16][c][cols]`), `out` has room for `[16][k][cols]` and `d` for
    /// 16 rows of `cols`.
    fn with_inputs<T>(
        &self,
        x: &[f32],
        imgs: usize,
        k: usize,
        f: impl FnOnce(&[f32], &mut [f32], &mut [f32]) -> T,
    ) -> T {
        let cols = imgs * self.tiles();
        let (v_len, out_len) = (16 * self.c * cols, 16 * k * cols);
        with_scratch(v_len + out_len + self.gather_len(cols), |buf| {
            let (v, rest) = buf.split_at_mut(v_len);
            let (out, rest) = rest.split_at_mut(out_len);
            let (d, split) = rest.split_at_mut(16 * cols);
            self.input_transform(x, imgs, v, d, split);
            f(v, out, d)
        })
    }

    /// `B^T d B` of every window of the `imgs` images `x` into `v` (`[16][c][cols]`); `d`
    /// (16 rows of `cols`) and `split` are scratch.
    fn input_transform(&self, x: &[f32], imgs: usize, v: &mut [f32], d: &mut [f32], split: &mut [f32]) {
        let (c, h, w) = (self.c, self.h, self.w);
        let cols = imgs * self.tiles();
        for ci in 0..c {
            let out = rows16(v, ci, cols);
            let planes = (0..imgs).map(|i| &x[(i * c + ci) * h * w..(i * c + ci + 1) * h * w]);
            widest(InputChannel { wg: self, planes, split: &mut *split, d: &mut *d, out, cols });
        }
    }

    /// The weight gradient (`k x c x 3 x 3`) of the convolution of the `n` images `x` whose
    /// output gradient is `dy`: `G^T [sum over tiles of (A dy A^T) ⊙ (B^T d B)] G`, the
    /// adjoint of the forward's transforms. Chunks are summed in order ([`ordered_sum`]).
    pub(super) fn weight_grad(&self, x: &[f32], dy: &[f32], n: usize, k: usize) -> candle::Result<Vec<f32>> {
        let c = self.c;
        let (in_len, out_len) = (c * self.h * self.w, self.out_len(k));
        if x.len() != n * in_len || dy.len() != n * out_len {
            candle::bail!("fast winograd: {} inputs, {} output gradients for {n} images", x.len(), dy.len())
        }
        let nb = self.images_per_chunk(n);
        let du = ordered_sum(n.div_ceil(nb), 16 * k * c, |chunks, acc| {
            chunks.into_iter().try_for_each(|chunk| {
                let (n0, imgs) = (chunk * nb, nb.min(n - chunk * nb));
                let xs = &x[n0 * in_len..(n0 + imgs) * in_len];
                self.weight_grad_chunk(xs, &dy[n0 * out_len..(n0 + imgs) * out_len], imgs, k, acc)
            })
        })?;
        let mut dw = vec![0f32; k * c * 9];
        for (kc, g) in dw.chunks_exact_mut(9).enumerate() {
            let e = |a: usize, b: usize| du[(a * 4 + b) * k * c + kc];
            // G^T on rows, then G on columns: q0 = u0 + (u1 + u2) / 2, q1 = (u1 - u2) / 2,
            // q2 = (u1 + u2) / 2 + u3.
            let q: [[f32; 4]; 3] = [
                std::array::from_fn(|b| e(0, b) + 0.5 * (e(1, b) + e(2, b))),
                std::array::from_fn(|b| 0.5 * (e(1, b) - e(2, b))),
                std::array::from_fn(|b| 0.5 * (e(1, b) + e(2, b)) + e(3, b)),
            ];
            for (r, [q0, q1, q2, q3]) in q.into_iter().enumerate() {
                g[3 * r] = q0 + 0.5 * (q1 + q2);
                g[3 * r + 1] = 0.5 * (q1 - q2);
                g[3 * r + 2] = 0.5 * (q1 + q2) + q3;
            }
        }
        Ok(dw)
    }

    /// Adds the transformed weight gradient of `imgs` images into `acc` (`[16][k][c]`).
    fn weight_grad_chunk(
        &self,
        x: &[f32],
        dy: &[f32],
        imgs: usize,
        k: usize,
        acc: &mut [f32],
    ) -> candle::Result<()> {
        let (c, h, w) = (self.c, self.h, self.w);
        let cols = imgs * self.tiles();
        self.with_inputs(x, imgs, k, |v, z, d| {
            for ko in 0..k {
                let out = rows16(z, ko, cols);
                let maps = (0..imgs).map(|i| &dy[(i * k + ko) * h * w..(i * k + ko + 1) * h * w]);
                widest(GradChannel { wg: self, maps, d: &mut d[..4 * cols], out, cols });
            }
            for xi in 0..16 {
                let a = Mat::rows(&z[xi * k * cols..(xi + 1) * k * cols], k, cols);
                let b = Mat::rows(&v[xi * c * cols..(xi + 1) * c * cols], c, cols).t();
                sgemm(a, b, &mut acc[xi * k * c..(xi + 1) * k * c], c, true, gemm::Parallelism::None)?;
            }
            Ok(())
        })
    }

    /// [`Self::forward`] of the `imgs` images `x` into `y`.
    ///
    /// Every transform runs over all tiles of the chunk at once (long runs of consecutive
    /// floats, which vectorize whatever the map size): each input channel's 16 window
    /// positions are first gathered tile by tile from a zero-padded copy of the plane, and
    /// each output channel's four tile positions are scattered back after.
    fn chunk(
        &self,
        x: &[f32],
        imgs: usize,
        u: &[f32],
        k: usize,
        shift: Option<&[f32]>,
        y: &mut [MaybeUninit<f32>],
    ) -> candle::Result<()> {
        let (c, h, w) = (self.c, self.h, self.w);
        let cols = imgs * self.tiles();
        self.with_inputs(x, imgs, k, |v, m, d| {
            for xi in 0..16 {
                let a = Mat { data: &u[xi * c..], rows: k, cols: c, rs: 16 * c, cs: 1 };
                let b = Mat::rows(&v[xi * c * cols..(xi + 1) * c * cols], c, cols);
                let dst = &mut m[xi * k * cols..(xi + 1) * k * cols];
                sgemm(a, b, dst, cols, false, gemm::Parallelism::None)?;
            }
            let out_len = self.out_len(k);
            for ko in 0..k {
                let add = shift.map_or(0.0, |t| t[ko]);
                let input: [&[f32]; 16] =
                    std::array::from_fn(|xi| &m[(xi * k + ko) * cols..(xi * k + ko + 1) * cols]);
                let maps = y.chunks_exact_mut(out_len).map(|yi| &mut yi[ko * h * w..(ko + 1) * h * w]);
                widest(OutputChannel { wg: self, m: input, maps, tmp: &mut d[..4 * cols], cols, add });
            }
            Ok(())
        })
    }
}

/// Gathers the 4x4 windows of one input channel of every image (`planes`) and transforms
/// them (`B^T d B`) into `out[4a + b]`, element `(a, b)` of each tile in `cols` floats.
///
/// Window column `b` of tile `tx` is padded column `2tx + b`. Each padded row is split once
/// into its even and odd columns (`split`); then window position `(a, b)` of a tile row is
/// `tw` consecutive floats of one of them, copied into row `4a + b` of `d`.
struct InputChannel<'a, I> {
    wg: &'a Winograd,
    planes: I,
    split: &'a mut [f32],
    d: &'a mut [f32],
    out: [&'a mut [f32]; 16],
    cols: usize,
}

impl<'a, I: Iterator<Item = &'a [f32]>> Body for InputChannel<'a, I> {
    #[inline(always)]
    fn run(self) {
        let Self { wg, planes, split, d, out, cols } = self;
        let (h, w, tw) = (wg.h, wg.w, wg.w / 2);
        let (half, tiles) = (tw + 1, wg.tiles());
        // Padded row r: even columns at split[2r * half..], odd at split[(2r + 1) * half..].
        split[..2 * half].fill(0.0);
        split[2 * (h + 1) * half..].fill(0.0);
        for (i, plane) in planes.enumerate() {
            for (row, eo) in plane.chunks_exact(w).zip(split[2 * half..].chunks_exact_mut(2 * half)) {
                let (even, odd) = eo.split_at_mut(half);
                even[0] = 0.0;
                odd[tw] = 0.0;
                for ((e, o), pair) in even[1..].iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
                    *o = pair[0];
                    *e = pair[1];
                }
            }
            for (ab, dab) in d.chunks_exact_mut(cols).enumerate() {
                let (a, b) = (ab / 4, ab % 4);
                let dst = &mut dab[i * tiles..(i + 1) * tiles];
                for (ty, line) in dst.chunks_exact_mut(tw).enumerate() {
                    let r = 2 * ty + a;
                    let src = (2 * r + b % 2) * half + b / 2;
                    copy_row(line, &split[src..src + tw]);
                }
            }
        }
        InputTransform { d, out, cols }.run()
    }
}

/// `A^T m A + add` of one output channel's tiles (`m`, as [`OutputTransform`] takes them),
/// written into that channel's map of each image (`maps`); `tmp` holds 4 rows of `cols`.
struct OutputChannel<'a, I> {
    wg: &'a Winograd,
    m: [&'a [f32]; 16],
    maps: I,
    tmp: &'a mut [f32],
    cols: usize,
    add: f32,
}

impl<'a, I: Iterator<Item = &'a mut [MaybeUninit<f32>]>> Body for OutputChannel<'a, I> {
    #[inline(always)]
    fn run(self) {
        let Self { wg, m, maps, tmp, cols, add } = self;
        let (w, tw, tiles) = (wg.w, wg.w / 2, wg.tiles());
        OutputTransform { m, out: &mut *tmp, cols, add }.run();
        for (i, map) in maps.enumerate() {
            let tile_rows =
                |ij: usize| tmp[ij * cols + i * tiles..ij * cols + (i + 1) * tiles].chunks_exact(tw);
            // Output row 2ty + i interleaves positions (i, 0) and (i, 1) of tile row ty.
            for (pair_rows, (r0, r1)) in map.chunks_exact_mut(2 * w).zip(tile_rows(0).zip(tile_rows(1))) {
                let (top, _) = pair_rows.split_at_mut(w);
                for (pair, (&a, &b)) in top.chunks_exact_mut(2).zip(r0.iter().zip(r1)) {
                    pair[0].write(a);
                    pair[1].write(b);
                }
            }
            for (pair_rows, (r2, r3)) in map.chunks_exact_mut(2 * w).zip(tile_rows(2).zip(tile_rows(3))) {
                let (_, bottom) = pair_rows.split_at_mut(w);
                for (pair, (&a, &b)) in bottom.chunks_exact_mut(2).zip(r2.iter().zip(r3)) {
                    pair[0].write(a);
                    pair[1].write(b);
                }
            }
        }
    }
}

/// `B^T d B` of `cols` windows: `d` holds window position `4a + b` of every tile in row
/// `4a + b` (`cols` floats each); `out[4a + b]` gets the transformed tiles' element `(a, b)`.
struct InputTransform<'a> {
    d: &'a [f32],
    out: [&'a mut [f32]; 16],
    cols: usize,
}

impl Body for InputTransform<'_> {
    #[inline(always)]
    fn run(self) {
        let Self { d, mut out, cols } = self;
        let row = |ab: usize| &d[ab * cols..(ab + 1) * cols];
        for b in 0..4 {
            // B^T on rows: t0 = d0 - d2, t1 = d1 + d2, t2 = d2 - d1, t3 = d1 - d3, in
            // out[b], out[4 + b], ... first; then B on each row of four, below.
            let (d0, d1, d2, d3) = (row(b), row(4 + b), row(8 + b), row(12 + b));
            let [o0, o1, o2, o3] = [0, 4, 8, 12].map(|a| std::mem::take(&mut out[a + b]));
            for t in 0..cols {
                o0[t] = d0[t] - d2[t];
                o1[t] = d1[t] + d2[t];
                o2[t] = d2[t] - d1[t];
                o3[t] = d1[t] - d3[t];
            }
            for (a, o) in [o0, o1, o2, o3].into_iter().enumerate() {
                out[4 * a + b] = o;
            }
        }
        for a in 0..4 {
            let [t0, t1, t2, t3] = &mut out[4 * a..4 * a + 4] else { unreachable!() };
            let (t0, t1, t2, t3) = (&mut t0[..cols], &mut t1[..cols], &mut t2[..cols], &mut t3[..cols]);
            for t in 0..cols {
                let (e0, e1, e2, e3) = (t0[t], t1[t], t2[t], t3[t]);
                t0[t] = e0 - e2;
                t1[t] = e1 + e2;
                t2[t] = e2 - e1;
                t3[t] = e1 - e3;
            }
        }
    }
}

/// Gathers the 2x2 output-gradient tiles of one output channel of every image (`maps`)
/// and transforms them (`A dy A^T`, the adjoint of the output transform) into `out[4a + b]`,
/// element `(a, b)` of each tile in `cols` floats; `d` holds 4 rows of `cols`.
struct GradChannel<'a, I> {
    wg: &'a Winograd,
    maps: I,
    d: &'a mut [f32],
    out: [&'a mut [f32]; 16],
    cols: usize,
}

impl<'a, I: Iterator<Item = &'a [f32]>> Body for GradChannel<'a, I> {
    #[inline(always)]
    fn run(self) {
        let Self { wg, maps, d, out, cols } = self;
        let (w, tw, tiles) = (wg.w, wg.w / 2, wg.tiles());
        let (d0, rest) = d.split_at_mut(cols);
        let (d1, rest) = rest.split_at_mut(cols);
        let (d2, d3) = rest.split_at_mut(cols);
        // Tile position (i, j) of tile row ty: row 2ty + i, even (j = 0) or odd columns.
        for (i, map) in maps.enumerate() {
            let span = i * tiles..(i + 1) * tiles;
            let rows = map.chunks_exact(2 * w);
            let dsts = d0[span.clone()].chunks_exact_mut(tw).zip(d1[span.clone()].chunks_exact_mut(tw));
            let dsts = dsts.zip(d2[span.clone()].chunks_exact_mut(tw).zip(d3[span].chunks_exact_mut(tw)));
            for (two, ((y00, y01), (y10, y11))) in rows.zip(dsts) {
                let (top, bottom) = two.split_at(w);
                for ((e, o), pair) in y00.iter_mut().zip(y01.iter_mut()).zip(top.chunks_exact(2)) {
                    (*e, *o) = (pair[0], pair[1]);
                }
                for ((e, o), pair) in y10.iter_mut().zip(y11.iter_mut()).zip(bottom.chunks_exact(2)) {
                    (*e, *o) = (pair[0], pair[1]);
                }
            }
        }
        let [o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15] = out;
        let (d0, d1, d2, d3) = (&d0[..cols], &d1[..cols], &d2[..cols], &d3[..cols]);
        let o =
            [o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15].map(|r| &mut r[..cols]);
        let [o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15] = o;
        for t in 0..cols {
            // A on rows: r0 = y0, r1 = y0 + y1, r2 = y0 - y1, r3 = -y1 (each of two columns);
            // then A^T on columns the same way.
            let r = [
                (d0[t], d1[t]),
                (d0[t] + d2[t], d1[t] + d3[t]),
                (d0[t] - d2[t], d1[t] - d3[t]),
                (-d2[t], -d3[t]),
            ];
            let z = |(a, b): (f32, f32)| [a, a + b, a - b, -b];
            let [z0, z1, z2, z3] = r.map(z);
            (o0[t], o1[t], o2[t], o3[t]) = (z0[0], z0[1], z0[2], z0[3]);
            (o4[t], o5[t], o6[t], o7[t]) = (z1[0], z1[1], z1[2], z1[3]);
            (o8[t], o9[t], o10[t], o11[t]) = (z2[0], z2[1], z2[2], z2[3]);
            (o12[t], o13[t], o14[t], o15[t]) = (z3[0], z3[1], z3[2], z3[3]);
        }
    }
}

/// `A^T m A + add` of `cols` tiles: `m[4a + b]` holds element `(a, b)` of every tile;
/// `out` (4 rows of `cols`) gets output position `2i + j` of every tile in row `2i + j`.
struct OutputTransform<'a> {
    m: [&'a [f32]; 16],
    out: &'a mut [f32],
    cols: usize,
    add: f32,
}

impl Body for OutputTransform<'_> {
    #[inline(always)]
    fn run(self) {
        let Self { m, out, cols, add } = self;
        let (y0, rest) = out.split_at_mut(cols);
        let (y1, rest) = rest.split_at_mut(cols);
        let (y2, y3) = rest.split_at_mut(cols);
        let (y0, y1, y2, y3) = (&mut y0[..cols], &mut y1[..cols], &mut y2[..cols], &mut y3[..cols]);
        let m: [&[f32]; 16] = m.map(|r| &r[..cols]);
        for t in 0..cols {
            let e = |a: usize, b: usize| m[4 * a + b][t];
            // A^T on rows: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3; then A on columns.
            let s0: [f32; 4] = std::array::from_fn(|b| e(0, b) + e(1, b) + e(2, b));
            let s1: [f32; 4] = std::array::from_fn(|b| e(1, b) - e(2, b) - e(3, b));
            y0[t] = s0[0] + s0[1] + s0[2] + add;
            y1[t] = s0[1] - s0[2] - s0[3] + add;
            y2[t] = s1[0] + s1[1] + s1[2] + add;
            y3[t] = s1[1] - s1[2] - s1[3] + add;
        }
    }
}

/// Row `i` of each of the 16 matrices of `buf` (`[16][n][cols]`, any `n`).
fn rows16(buf: &mut [f32], i: usize, cols: usize) -> [&mut [f32]; 16] {
    let mut rows = buf.chunks_exact_mut(buf.len() / 16).map(|block| &mut block[i * cols..(i + 1) * cols]);
    std::array::from_fn(|_| rows.next().expect("16 blocks"))
}

/// A loop nest of plain Rust, inlined into [`widest`].
trait Body {
    fn run(self);
}

/// Runs `body` compiled for the widest vectors the CPU has: inlined into a
/// `#[target_feature]` function, its loops are vectorized for that instruction set (the
/// crate itself is built for baseline x86-64, SSE2).
fn widest(body: impl Body) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512(body) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2(body) };
        }
    }
    body.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(body: impl Body) {
    body.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(body: impl Body) {
    body.run()
}
