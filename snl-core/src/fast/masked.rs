//! The SNL masked activation `x + a * relu(-x)` (= `a * relu(x) + (1 - a) * x`) in one
//! pass forward and one pass per gradient, optionally of a sum `x + residual` (a residual
//! block's output) that is never stored.
//!
//! The plain candle expression takes four passes and three temporaries forward and about
//! ten backward (neg, relu, broadcast mul, add, the relu mask, the broadcast reduction);
//! on 2 cores those passes, not arithmetic, dominate the activation's cost. The residual
//! sum as its own op costs another pass each way and a stored activation.

use candle::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};

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

/// [`masked_relu`] of `x + residual` (same shapes), in one op where [`masked_relu`] is one:
/// the sum is formed image by image in cache and never stored, forward or backward.
pub fn masked_relu_add(x: &Tensor, residual: &Tensor, alphas: &Tensor) -> Result<Tensor> {
    let same = residual.shape() == x.shape() && residual.device().is_cpu() && residual.dtype() == x.dtype();
    match broadcast_of(x, alphas).filter(|_| same) {
        Some(bcast) => {
            x.contiguous()?.apply_op3(&residual.contiguous()?, &alphas.contiguous()?, MaskedRelu { bcast })
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

/// Where the kernels read the activations: `x`, or `x + residual`.
#[derive(Clone, Copy)]
enum Input<'a> {
    One(&'a [f32]),
    Sum(&'a [f32], &'a [f32]),
}

impl<'a> Input<'a> {
    /// Image `i`'s `len` activations: a slice of `x`, or their sum written into `scratch`.
    #[inline]
    fn image<'s>(self, i: usize, len: usize, scratch: &'s mut Vec<f32>) -> &'s [f32]
    where
        'a: 's,
    {
        let range = i * len..(i + 1) * len;
        match self {
            Input::One(x) => &x[range],
            Input::Sum(x, r) => {
                scratch.resize(len, 0.0);
                for ((s, &u), &v) in scratch.iter_mut().zip(&x[range.clone()]).zip(&r[range]) {
                    *s = u + v;
                }
                scratch
            }
        }
    }

    fn len(self) -> usize {
        match self {
            Input::One(x) | Input::Sum(x, _) => x.len(),
        }
    }
}

/// The activations of a custom op's first one (`x`) or two (`x`, `residual`) arguments.
fn input_of<'a>(x: (&'a CpuStorage, &Layout), r: Option<(&'a CpuStorage, &Layout)>) -> Result<Input<'a>> {
    let xs = f32_slice(x.0, x.1, WHAT)?;
    Ok(match r {
        None => Input::One(xs),
        Some((rs, rl)) => {
            if rl.dims() != x.1.dims() {
                candle::bail!("fast masked_relu: residual {:?} for activations {:?}", rl.dims(), x.1.dims())
            }
            Input::Sum(xs, f32_slice(rs, rl, WHAT)?)
        }
    })
}

/// Calls `f(x, a, out)` for every activation of one image, `a` its mask element.
#[inline(always)]
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

/// Forward: `(x, alphas) -> x + alphas * relu(-x)` as a [`CustomOp2`], and the same of
/// `x + residual` as a [`CustomOp3`] `(x, residual, alphas)`.
struct MaskedRelu {
    bcast: Bcast,
}

impl MaskedRelu {
    fn forward(&self, input: Input, xl: &Layout, a: &[f32]) -> Result<(CpuStorage, Shape)> {
        let len = image_len(self.bcast, xl, a.len())?;
        let y = par_vec(input.len(), len, |i, yi| {
            let mut scratch = Vec::new();
            let xi = input.image(i, len, &mut scratch);
            per_element(self.bcast, xi, a, yi, |v, m| v + (-v).max(0.0) * m);
            Ok(())
        })?;
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    /// The gradients of the activations (`dx`, also `d residual`) and of the mask, each only
    /// when its argument is part of a graph.
    fn grads(&self, inputs: &[&Tensor], a: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let bcast = self.bcast;
        let dx = if inputs.iter().any(|t| t.track_op()) {
            Some(apply_no_bwd(inputs, &g, &InputGrad { bcast, alphas: a.detach() })?)
        } else {
            None
        };
        let da = if a.track_op() {
            Some(apply_no_bwd(inputs, &g, &MaskGrad { bcast })?.reshape(a.shape())?)
        } else {
            None
        };
        Ok((dx, da))
    }
}

/// `op` of the activations (`x`, or `x` and the residual) and `g`, recording no graph.
fn apply_no_bwd(inputs: &[&Tensor], g: &Tensor, op: &(impl CustomOp2 + CustomOp3)) -> Result<Tensor> {
    match inputs {
        [x] => x.apply_op2_no_bwd(g, op),
        [x, r] => x.apply_op3_no_bwd(r, g, op),
        _ => candle::bail!("fast masked_relu: {} activation inputs", inputs.len()),
    }
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
        self.forward(input_of((xs, xl), None)?, xl, f32_slice(as_, al, WHAT)?)
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(&[x], a, g)
    }
}

impl CustomOp3 for MaskedRelu {
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
        self.forward(input_of((xs, xl), Some((rs, rl)))?, xl, f32_slice(as_, al, WHAT)?)
    }

    fn bwd(
        &self,
        x: &Tensor,
        r: &Tensor,
        a: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (d, da) = self.grads(&[x, r], a, g)?;
        let dx = d.as_ref().filter(|_| x.track_op()).cloned();
        let dr = d.filter(|_| r.track_op());
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

/// Input gradient `g - g * alphas [x <= 0]` (also the residual's): a [`CustomOp2`]
/// `(x, g)`, or a [`CustomOp3`] `(x, residual, g)`. The mask is held here, as a fourth
/// argument would not fit a custom op.
struct InputGrad {
    bcast: Bcast,
    alphas: Tensor,
}

impl InputGrad {
    fn grad(&self, input: Input, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(gs, gl, WHAT)?;
        if xl.dims() != gl.dims() {
            candle::bail!("fast masked_relu grad: gradient {:?} for activations {:?}", gl.dims(), xl.dims())
        }
        let (storage, al) = self.alphas.storage_and_layout();
        let Storage::Cpu(a) = &*storage else { candle::bail!("fast masked_relu grad: mask not on the CPU") };
        let a = f32_slice(a, al, WHAT)?;
        let len = image_len(self.bcast, xl, a.len())?;
        let dx = par_vec(input.len(), len, |i, di| {
            let mut scratch = Vec::new();
            let xi = input.image(i, len, &mut scratch);
            let gi = &g[i * len..(i + 1) * len];
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

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "snl-fast-masked-relu-input-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.grad(input_of((xs, xl), None)?, xl, gs, gl)
    }
}

impl CustomOp3 for InputGrad {
    fn name(&self) -> &'static str {
        "snl-fast-masked-relu-add-input-grad"
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
        self.grad(input_of((xs, xl), Some((rs, rl)))?, xl, gs, gl)
    }
}

/// Mask gradient: the sum over the broadcast axes of `g * relu(-x)`, flat: a [`CustomOp2`]
/// `(x, g)`, or a [`CustomOp3`] `(x, residual, g)`.
struct MaskGrad {
    bcast: Bcast,
}

impl MaskGrad {
    fn grad(&self, input: Input, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
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
            let mut scratch = Vec::new();
            for i in range {
                let xi = input.image(i, len, &mut scratch);
                let gi = &g[i * len..(i + 1) * len];
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

impl CustomOp2 for MaskGrad {
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
        self.grad(input_of((xs, xl), None)?, xl, gs, gl)
    }
}

impl CustomOp3 for MaskGrad {
    fn name(&self) -> &'static str {
        "snl-fast-masked-relu-add-mask-grad"
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
        self.grad(input_of((xs, xl), Some((rs, rl)))?, xl, gs, gl)
    }
}
