//! The SNL masked activation `x + a * relu(-x)` (= `a * relu(x) + (1 - a) * x`) in one
//! pass forward and one pass per gradient, optionally of a sum `x + residual` (a residual
//! block's output) that the forward pass never stores.
//!
//! The plain candle expression takes four passes and three temporaries forward and about
//! ten backward (neg, relu, broadcast mul, add, the relu mask, the broadcast reduction);
//! on 2 cores those passes, not arithmetic, dominate the activation's cost. The residual
//! sum as its own candle op is one more single-threaded pass forward, a stored activation,
//! and a gradient candle accumulates in two more single-threaded passes.

use candle::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::{f32_slice, lane_sum, ordered_sum, par_vec};

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
/// The forward pass adds as it goes and stores no sum; the backward pass forms the sum once
/// (in parallel) and computes the gradients of [`masked_relu`], the same for `x` and
/// `residual`.
pub fn masked_relu_add(x: &Tensor, residual: &Tensor, alphas: &Tensor) -> Result<Tensor> {
    let same = residual.shape() == x.shape() && residual.device().is_cpu() && residual.dtype() == x.dtype();
    match broadcast_of(x, alphas).filter(|_| same) {
        Some(bcast) => {
            x.contiguous()?.apply_op3(&residual.contiguous()?, &alphas.contiguous()?, MaskedReluAdd { bcast })
        }
        None => masked_relu(&(x + residual)?, alphas),
    }
}

/// How mask elements map onto the activations of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bcast {
    /// One mask element per activation.
    Element,
    /// One mask element per run of `plane` consecutive activations (a channel).
    Channel { plane: usize },
}

/// The broadcast of `alphas` over `x`, when the custom op applies.
fn broadcast_of(x: &Tensor, a: &Tensor) -> Option<Bcast> {
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
fn image_len(bcast: Bcast, x: &Layout, a_len: usize) -> Result<usize> {
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

/// Calls `f(x, a, out)` for every activation of one image, `a` its mask element.
#[inline]
fn per_element(bcast: Bcast, x: &[f32], a: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    match bcast {
        Bcast::Element => {
            for ((o, &v), &m) in out.iter_mut().zip(x).zip(a) {
                *o = f(v, m);
            }
        }
        Bcast::Channel { plane } => {
            for ((oc, xc), &m) in out.chunks_mut(plane).zip(x.chunks(plane)).zip(a) {
                for (o, &v) in oc.iter_mut().zip(xc) {
                    *o = f(v, m);
                }
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
        let y = par_vec(x.len(), len, |i, yi| {
            let xi = &x[i * len..(i + 1) * len];
            per_element(self.bcast, xi, a, yi, |v, m| v + (-v).max(0.0) * m);
            Ok(())
        })?;
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        grads(self.bcast, x, x.track_op(), a, g)
    }
}

/// The gradients of the activations `x` (when `need_dx`) and of the mask (when it is part
/// of a graph).
fn grads(
    bcast: Bcast,
    x: &Tensor,
    need_dx: bool,
    a: &Tensor,
    g: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let g = g.contiguous()?;
    let dx = if need_dx { Some(x.apply_op3_no_bwd(a, &g, &MaskedReluInputGrad { bcast })?) } else { None };
    let da = if a.track_op() {
        Some(x.apply_op2_no_bwd(&g, &MaskedReluMaskGrad { bcast })?.reshape(a.shape())?)
    } else {
        None
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
        if xl.dims() != rl.dims() {
            candle::bail!("fast masked_relu: residual {:?} for activations {:?}", rl.dims(), xl.dims())
        }
        let len = image_len(self.bcast, xl, a.len())?;
        let y = par_vec(x.len(), len, |i, yi| {
            let range = i * len..(i + 1) * len;
            let (xi, ri) = (&x[range.clone()], &r[range]);
            match self.bcast {
                Bcast::Element => {
                    for (((o, &u), &w), &m) in yi.iter_mut().zip(xi).zip(ri).zip(a) {
                        let v = u + w;
                        *o = v + (-v).max(0.0) * m;
                    }
                }
                Bcast::Channel { plane } => {
                    for (((oc, xc), rc), &m) in
                        yi.chunks_mut(plane).zip(xi.chunks(plane)).zip(ri.chunks(plane)).zip(a)
                    {
                        for ((o, &u), &w) in oc.iter_mut().zip(xc).zip(rc) {
                            let v = u + w;
                            *o = v + (-v).max(0.0) * m;
                        }
                    }
                }
            }
            Ok(())
        })?;
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
        let s = x.apply_op2_no_bwd(r, &Sum)?;
        let (ds, da) = grads(self.bcast, &s, x.track_op() || r.track_op(), a, g)?;
        let dx = ds.as_ref().filter(|_| x.track_op()).cloned();
        let dr = ds.filter(|_| r.track_op());
        Ok((dx, dr, da))
    }
}

/// `(x, r) -> x + r` on all threads (candle's own add runs on one).
struct Sum;

impl CustomOp2 for Sum {
    fn name(&self) -> &'static str {
        "snl-fast-sum"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, r) = (f32_slice(xs, xl, WHAT)?, f32_slice(rs, rl, WHAT)?);
        if x.len() != r.len() {
            candle::bail!("fast masked_relu: residual {:?} for activations {:?}", rl.dims(), xl.dims())
        }
        let chunk: usize = xl.dims().get(1..).map_or(x.len(), |d| d.iter().product());
        let s = par_vec(x.len(), chunk, |i, si| {
            let range = i * chunk..i * chunk + si.len();
            for ((o, &u), &w) in si.iter_mut().zip(&x[range.clone()]).zip(&r[range]) {
                *o = u + w;
            }
            Ok(())
        })?;
        Ok((CpuStorage::F32(s), xl.shape().clone()))
    }
}

/// The mask element where the activation is off (`x <= 0`, candle's relu convention), else
/// 0. A select rather than a branch, so the loops vectorise: with half the activations
/// negative a branch mispredicts every other element.
#[inline(always)]
fn gate(x: f32, a: f32) -> f32 {
    if x <= 0.0 { a } else { 0.0 }
}

/// Input gradient: `(x, alphas, g) -> g - g * alphas [x <= 0]`.
struct MaskedReluInputGrad {
    bcast: Bcast,
}

impl CustomOp3 for MaskedReluInputGrad {
    fn name(&self) -> &'static str {
        "snl-fast-masked-relu-input-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(xs, xl, WHAT)?;
        let a = f32_slice(as_, al, WHAT)?;
        let g = f32_slice(gs, gl, WHAT)?;
        if xl.dims() != gl.dims() {
            candle::bail!("fast masked_relu grad: gradient {:?} for activations {:?}", gl.dims(), xl.dims())
        }
        let len = image_len(self.bcast, xl, a.len())?;
        let dx = par_vec(x.len(), len, |i, di| {
            let (xi, gi) = (&x[i * len..(i + 1) * len], &g[i * len..(i + 1) * len]);
            match self.bcast {
                Bcast::Element => {
                    for (((d, &v), &gv), &m) in di.iter_mut().zip(xi).zip(gi).zip(a) {
                        *d = gv + -(gv * gate(v, m));
                    }
                }
                Bcast::Channel { plane } => {
                    for (((dc, xc), gc), &m) in
                        di.chunks_mut(plane).zip(xi.chunks(plane)).zip(gi.chunks(plane)).zip(a)
                    {
                        for ((d, &v), &gv) in dc.iter_mut().zip(xc).zip(gc) {
                            *d = gv + -(gv * gate(v, m));
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

/// Mask gradient: `(x, g) -> sum over the broadcast axes of g * relu(-x)`, flat.
struct MaskedReluMaskGrad {
    bcast: Bcast,
}

impl CustomOp2 for MaskedReluMaskGrad {
    fn name(&self) -> &'static str {
        "snl-fast-masked-relu-mask-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(xs, xl, WHAT)?;
        let g = f32_slice(gs, gl, WHAT)?;
        if xl.dims() != gl.dims() {
            candle::bail!("fast masked_relu grad: gradient {:?} for activations {:?}", gl.dims(), xl.dims())
        }
        let len: usize = xl.dims()[1..].iter().product();
        let out_len = match self.bcast {
            Bcast::Element => len,
            Bcast::Channel { plane } => len / plane.max(1),
        };
        let (bcast, images) = (self.bcast, xl.dims()[0]);
        let da = ordered_sum(images, out_len, |range, acc| {
            for i in range {
                let (xi, gi) = (&x[i * len..(i + 1) * len], &g[i * len..(i + 1) * len]);
                match bcast {
                    Bcast::Element => {
                        for ((s, &v), &gv) in acc.iter_mut().zip(xi).zip(gi) {
                            *s += gv * (-v).max(0.0);
                        }
                    }
                    Bcast::Channel { plane } => {
                        for ((s, xc), gc) in acc.iter_mut().zip(xi.chunks(plane)).zip(gi.chunks(plane)) {
                            *s += lane_sum(xc, gc, |v, gv| gv * (-v).max(0.0));
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok((CpuStorage::F32(da), Shape::from(out_len)))
    }
}
