//! The SNL masked activation `x + a * relu(-x)` (= `a * relu(x) + (1 - a) * x`) in one
//! pass forward and one pass backward for both gradients, optionally of a sum
//! `x + residual` (a residual block's output) that neither pass stores.
//!
//! The plain candle expression takes four passes and three temporaries forward and about
//! ten backward (neg, relu, broadcast mul, add, the relu mask, the broadcast reduction);
//! on 2 cores those passes, not arithmetic, dominate the activation's cost. The residual
//! sum as its own candle op is one more single-threaded pass forward, a stored activation,
//! and a gradient candle accumulates in two more single-threaded passes.

use candle::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

use std::mem::MaybeUninit;

use super::{f32_slice, ordered_sum_fill, par_vec, par_vec_uninit};

const WHAT: &str = "masked_relu";

/// `x + alphas * relu(-x)`, `alphas` broadcast over the batch (first) axis of `x`.
///
/// `alphas` is either `(1, rest of x's shape)` (one mask element per activation) or
/// `(1, C, 1, ..., 1)` (one per channel, `C = x.dim(1)`). On the CPU with `f32` tensors of
/// those shapes this is one custom op whose backward computes `dx = g * (1 - a [x <= 0])`
/// and `da = sum of g * relu(-x)` over the broadcast axes, each only when its argument is
/// part of a graph, with the plain expression's values (the same `[x <= 0]` convention as
/// candle's relu gradient). Anywhere else it is the plain expression itself.
pub fn masked_relu(x: &Tensor, alphas: &Tensor) -> Result<Tensor> {
    match broadcast_of(x, alphas) {
        Some(bcast) => x.contiguous()?.apply_op2(&alphas.contiguous()?, MaskedRelu { bcast }),
        None => x + x.neg()?.relu()?.broadcast_mul(alphas)?,
    }
}

/// [`masked_relu`] of `x + residual` (same shapes), in one op where [`masked_relu`] is one.
/// Both passes add as they go and store no sum; the gradients are those of [`masked_relu`]
/// at the sum, the same for `x` and `residual`.
pub fn masked_relu_add(x: &Tensor, residual: &Tensor, alphas: &Tensor) -> Result<Tensor> {
    match broadcast_of(x, alphas).filter(|_| residual_fits(x, residual)) {
        Some(bcast) => {
            x.contiguous()?.apply_op3(&residual.contiguous()?, &alphas.contiguous()?, MaskedReluAdd { bcast })
        }
        None => masked_relu(&(x + residual)?, alphas),
    }
}

/// Whether the custom ops can add `residual` to `x` (which [`broadcast_of`] accepted).
pub(super) fn residual_fits(x: &Tensor, residual: &Tensor) -> bool {
    residual.shape() == x.shape() && residual.device().is_cpu() && residual.dtype() == x.dtype()
}

/// Refuses a residual whose layout is not the activations'; `what` names the op.
pub(super) fn check_residual(what: &str, xl: &Layout, rl: &Layout) -> Result<()> {
    if xl.dims() != rl.dims() {
        candle::bail!("fast {what}: residual {:?} for activations {:?}", rl.dims(), xl.dims())
    }
    Ok(())
}

/// How mask elements map onto the activations of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bcast {
    /// One mask element per activation.
    Element,
    /// One mask element per run of `plane` consecutive activations (a channel).
    Channel { plane: usize },
}

impl Bcast {
    /// Where the mask elements (or their gradients) that gate channel `ch` of an image lie,
    /// its planes being `plane` activations: with that part of the mask, [`forward_image`]
    /// and the [`ImageGrads`] run on one channel's plane as on a whole image.
    pub(super) fn channel_range(self, ch: usize, plane: usize) -> std::ops::Range<usize> {
        match self {
            Bcast::Element => ch * plane..(ch + 1) * plane,
            Bcast::Channel { .. } => ch..ch + 1,
        }
    }
}

/// The broadcast of `alphas` over `x`, when the custom op applies.
pub(super) fn broadcast_of(x: &Tensor, a: &Tensor) -> Option<Bcast> {
    if !x.device().is_cpu() || !a.device().is_cpu() || x.dtype() != DType::F32 || a.dtype() != DType::F32 {
        return None;
    }
    let (xd, ad) = (x.dims(), a.dims());
    if xd.len() < 2 || ad.len() != xd.len() || ad[0] != 1 || xd[0] == 0 {
        return None;
    }
    if ad[1..] == xd[1..] {
        Some(Bcast::Element)
    } else if ad[1] == xd[1] && ad[2..].iter().all(|&d| d == 1) {
        Some(Bcast::Channel { plane: xd[2..].iter().product() })
    } else {
        None
    }
}

/// Activations per image, checked against the mask's length.
pub(super) fn image_len(bcast: Bcast, x: &Layout, a_len: usize) -> Result<usize> {
    let dims = x.dims();
    let per_image: usize = dims[1..].iter().product();
    let expect = match bcast {
        Bcast::Element => per_image,
        Bcast::Channel { plane } => per_image / plane.max(1),
    };
    if a_len != expect || dims[0] == 0 {
        candle::bail!("fast masked_relu: mask of {a_len} elements for activations {dims:?}")
    }
    Ok(per_image)
}

/// Writes `s + m * relu(-s)`, `s = x (+ r)`, to every element of one image's output `out`,
/// `m` its element of the mask `a` (checked against the image by [`image_len`]); `r` is
/// empty without a residual.
pub(super) fn forward_image(bcast: Bcast, a: &[f32], x: &[f32], r: &[f32], out: &mut [MaybeUninit<f32>]) {
    fn run(out: &mut [MaybeUninit<f32>], x: &[f32], r: &[f32], m: impl Fn(usize) -> f32) {
        let x = &x[..out.len()];
        let f = |v: f32, m: f32| v + (-v).max(0.0) * m;
        if r.is_empty() {
            for (j, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                o.write(f(v, m(j)));
            }
        } else {
            for (j, ((o, &u), &w)) in out.iter_mut().zip(x).zip(&r[..x.len()]).enumerate() {
                o.write(f(u + w, m(j)));
            }
        }
    }
    match bcast {
        Bcast::Element => {
            let a = &a[..out.len()];
            run(out, x, r, |j| a[j]);
        }
        Bcast::Channel { plane } => {
            for (ch, oc) in out.chunks_mut(plane).enumerate() {
                let (m, at) = (a[ch], ch * plane);
                let rc = if r.is_empty() { r } else { &r[at..] };
                run(oc, &x[at..], rc, |_| m);
            }
        }
    }
}

/// Forward: `(x, alphas) -> x + alphas * relu(-x)`.
struct MaskedRelu {
    bcast: Bcast,
}

impl CustomOp2 for MaskedRelu {
    fn name(&self) -> &'static str {
        "snl-fast-masked-relu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(xs, xl, WHAT)?;
        let a = f32_slice(as_, al, WHAT)?;
        let len = image_len(self.bcast, xl, a.len())?;
        // SAFETY: `forward_image` writes every element of its output.
        let y = unsafe {
            par_vec_uninit(x.len(), len, |i, yi| {
                forward_image(self.bcast, a, &x[i * len..], &[], yi);
                Ok(())
            })?
        };
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        grads(self.bcast, x, None, x.track_op(), a, g)
    }
}

/// The gradients of the activations (`x`, or `x + r` with a residual; when `need_dx`) and
/// of the mask (when it is part of a graph), both from one pass over `x`, `r` and `g`.
fn grads(
    bcast: Bcast,
    x: &Tensor,
    r: Option<&Tensor>,
    need_dx: bool,
    a: &Tensor,
    g: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let need_da = a.track_op();
    if !need_dx && !need_da {
        return Ok((None, None));
    }
    let op = MaskedReluGrads { bcast, alphas: a.flatten_all()?.to_vec1()?, need_dx, need_da };
    let g = g.contiguous()?;
    // One flat tensor: the activation gradient (if any), then the mask gradient (if any).
    let flat = match r {
        Some(r) => x.apply_op3_no_bwd(r, &g, &op)?,
        None => x.apply_op2_no_bwd(&g, &op)?,
    };
    let dx_len = if need_dx { x.elem_count() } else { 0 };
    let dx = if need_dx { Some(flat.narrow(0, 0, dx_len)?.reshape(x.shape())?) } else { None };
    // Copied into its own few floats. As a view of the flat buffer (activation-sized) the
    // SNL step's peak memory measured 60-80 MiB higher at width 16 and 260-280 MiB higher at
    // width 64 (`throughput --only snl_step`); the mechanism is not pinned down.
    let da = match need_da {
        true => Some(flat.narrow(0, dx_len, a.elem_count())?.force_contiguous()?.reshape(a.shape())?),
        false => None,
    };
    Ok((dx, da))
}

/// Forward: `(x, residual, alphas) -> s + alphas * relu(-s)`, `s = x + residual`.
struct MaskedReluAdd {
    bcast: Bcast,
}

impl CustomOp3 for MaskedReluAdd {
    fn name(&self) -> &'static str {
        "snl-fast-masked-relu-add"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(xs, xl, WHAT)?;
        let r = f32_slice(rs, rl, WHAT)?;
        let a = f32_slice(as_, al, WHAT)?;
        check_residual(WHAT, xl, rl)?;
        let len = image_len(self.bcast, xl, a.len())?;
        // SAFETY: `forward_image` writes every element of its output.
        let y = unsafe {
            par_vec_uninit(x.len(), len, |i, yi| {
                forward_image(self.bcast, a, &x[i * len..], &r[i * len..], yi);
                Ok(())
            })?
        };
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        r: &Tensor,
        a: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (ds, da) = grads(self.bcast, x, Some(r), x.track_op() || r.track_op(), a, g)?;
        let dx = ds.as_ref().filter(|_| x.track_op()).cloned();
        let dr = ds.filter(|_| r.track_op());
        Ok((dx, dr, da))
    }
}

/// The mask element where the activation is off (`x <= 0`, candle's relu convention), else
/// 0. A select rather than a branch, so the loops vectorise: with half the activations
/// negative a branch mispredicts every other element.
#[inline(always)]
fn gate(x: f32, a: f32) -> f32 {
    if x <= 0.0 { a } else { 0.0 }
}

/// The gradients of `s + a * relu(-s)`, `s = x (+ r)`: `(x, (r,) g) -> [dx | da]`, the
/// activation gradient `g - g a [s <= 0]` (when `need_dx`) followed by the mask gradient,
/// `g relu(-s)` summed over the broadcast axes (when `need_da`). One pass over the inputs
/// for both, and the sum `s` is never stored.
struct MaskedReluGrads {
    bcast: Bcast,
    alphas: Vec<f32>,
    need_dx: bool,
    need_da: bool,
}

impl MaskedReluGrads {
    fn run(&self, x: &[f32], xl: &Layout, r: &[f32], g: &[f32], gl: &Layout) -> Result<(CpuStorage, Shape)> {
        if xl.dims() != gl.dims() {
            candle::bail!("fast masked_relu grad: gradient {:?} for activations {:?}", gl.dims(), xl.dims())
        }
        let len = image_len(self.bcast, xl, self.alphas.len())?;
        let (a, n, bcast) = (&self.alphas[..], xl.dims()[0], self.bcast);
        let image = image_grads_fn(!r.is_empty(), self.need_dx, self.need_da);
        let ri = |i: usize| if r.is_empty() { r } else { &r[i * len..(i + 1) * len] };
        let flat = if self.need_da {
            let dx_len = if self.need_dx { len } else { 0 };
            let (mut flat, da) = ordered_sum_fill(n, dx_len, a.len(), a.len(), |items, dx, acc| {
                let first = items.start;
                for i in items {
                    let dxi = &mut dx[(i - first) * dx_len..(i - first + 1) * dx_len];
                    image(bcast, a, &x[i * len..(i + 1) * len], ri(i), &g[i * len..(i + 1) * len], dxi, acc);
                }
                Ok(())
            })?;
            flat.extend_from_slice(&da);
            flat
        } else {
            par_vec(x.len(), len, |i, dxi| {
                image(bcast, a, &x[i * len..(i + 1) * len], ri(i), &g[i * len..(i + 1) * len], dxi, &mut []);
                Ok(())
            })?
        };
        let total = flat.len();
        Ok((CpuStorage::F32(flat), Shape::from(total)))
    }
}

impl CustomOp2 for MaskedReluGrads {
    fn name(&self) -> &'static str {
        "snl-fast-masked-relu-grads"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(f32_slice(xs, xl, WHAT)?, xl, &[], f32_slice(gs, gl, WHAT)?, gl)
    }
}

impl CustomOp3 for MaskedReluGrads {
    fn name(&self) -> &'static str {
        "snl-fast-masked-relu-add-grads"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        check_residual(WHAT, xl, rl)?;
        self.run(f32_slice(xs, xl, WHAT)?, xl, f32_slice(rs, rl, WHAT)?, f32_slice(gs, gl, WHAT)?, gl)
    }
}

/// One image's part of [`MaskedReluGrads`]: `x`, `r` (empty without a residual), `g` and
/// `dx` (empty unless `DX`) are its activations, `da` the mask gradient it adds to.
pub(super) type ImageGrads = fn(Bcast, &[f32], &[f32], &[f32], &[f32], &mut [f32], &mut [f32]);

pub(super) fn image_grads_fn(residual: bool, dx: bool, da: bool) -> ImageGrads {
    match (residual, dx, da) {
        (false, false, false) => image_grads::<false, false, false>,
        (false, false, true) => image_grads::<false, false, true>,
        (false, true, false) => image_grads::<false, true, false>,
        (false, true, true) => image_grads::<false, true, true>,
        (true, false, false) => image_grads::<true, false, false>,
        (true, false, true) => image_grads::<true, false, true>,
        (true, true, false) => image_grads::<true, true, false>,
        (true, true, true) => image_grads::<true, true, true>,
    }
}

/// See [`ImageGrads`]. A channel's mask gradient is summed in the eight lanes of
/// [`super::lane_sum`], in its order.
fn image_grads<const RES: bool, const DX: bool, const DA: bool>(
    bcast: Bcast,
    a: &[f32],
    x: &[f32],
    r: &[f32],
    g: &[f32],
    dx: &mut [f32],
    da: &mut [f32],
) {
    let n = x.len();
    let (g, r) = (&g[..n], if RES { &r[..n] } else { r });
    let dx = if DX { &mut dx[..n] } else { dx };
    let s = |j: usize| if RES { x[j] + r[j] } else { x[j] };
    match bcast {
        Bcast::Element => {
            let (a, da) = (&a[..n], if DA { &mut da[..n] } else { da });
            for j in 0..n {
                let (v, gv) = (s(j), g[j]);
                if DX {
                    dx[j] = gv + -(gv * gate(v, a[j]));
                }
                if DA {
                    da[j] += gv * (-v).max(0.0);
                }
            }
        }
        Bcast::Channel { plane } => {
            const LANES: usize = 8;
            for (ch, &m) in a.iter().enumerate().take(n / plane.max(1)) {
                let (o, full) = (ch * plane, plane / LANES * LANES);
                let mut lanes = [0f32; LANES];
                for j0 in (o..o + full).step_by(LANES) {
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        let (v, gv) = (s(j0 + l), g[j0 + l]);
                        if DX {
                            dx[j0 + l] = gv + -(gv * gate(v, m));
                        }
                        *lane += gv * (-v).max(0.0);
                    }
                }
                let mut sum = lanes.iter().fold(0f32, |t, &v| t + v);
                for j in o + full..o + plane {
                    let (v, gv) = (s(j), g[j]);
                    if DX {
                        dx[j] = gv + -(gv * gate(v, m));
                    }
                    sum += gv * (-v).max(0.0);
                }
                if DA {
                    da[ch] += sum;
                }
            }
        }
    }
}
