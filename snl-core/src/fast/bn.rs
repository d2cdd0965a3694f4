//! Batch normalisation over `(N, C, H, W)` in two passes forward and two backward.
//!
//! The plain candle expression (mean, subtract, square, mean, divide, multiply, add)
//! takes seven passes and six temporaries forward and about fifteen backward; its
//! reductions over axes (0, 2, 3) run single-threaded through a strided loop. On 2 cores
//! they cost more than all the convolutions of a width-16 ResNet18 together.

use candle::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::{f32_slice, lane_sum, ordered_sum, par_vec_uninit};

const WHAT: &str = "batch norm";

/// Train-mode batch normalisation: `(x - mean) / sqrt(var + eps) * weight + bias` with the
/// batch mean and biased batch variance of each channel (axis 1), as PyTorch's
/// `F.batch_norm(training=True)`. Returns the output and the detached statistics
/// `(mean, var)`, each of shape `(C,)`, from which the caller updates running statistics.
///
/// On the CPU with `f32` tensors this is one custom op whose backward is the closed-form
/// batch-norm gradient (statistics accumulated in `f64`); anywhere else it is the plain
/// expression.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let Some((x, mean, var, stats)) = train_stats(x, weight, bias, eps)? else {
        return plain_train(x, weight, bias, eps);
    };
    let y = x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, BatchNormTrain(stats))?;
    Ok((y, mean, var))
}

/// Checks the arguments of a train-mode batch norm; where the custom ops apply, returns `x`
/// (contiguous), its detached batch mean and variance `(C,)`, and the statistics the ops use.
pub(super) fn train_stats(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Option<(Tensor, Tensor, Tensor, BatchStats)>> {
    let (n, c, h, w) = x.dims4()?;
    if n * h * w < 2 {
        candle::bail!(
            "batch norm in train mode needs more than one value per channel, got input {:?}",
            x.dims()
        )
    }
    if weight.dims() != [c] || bias.dims() != [c] {
        candle::bail!("batch norm: weight {:?} and bias {:?} for {c} channels", weight.dims(), bias.dims())
    }
    if !applies(&[x, weight, bias]) {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let stats = x.apply_op1_no_bwd(&ChannelStats)?; // (2, C): mean, biased variance
    let (mean, var) = (stats.get(0)?, stats.get(1)?);
    let means = mean.to_vec1::<f32>()?;
    let invstd = var.to_vec1::<f32>()?.iter().map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32).collect();
    Ok(Some((x, mean, var, BatchStats { mean: means, invstd })))
}

/// `x * scale + shift` per channel (axis 1) of `(N, C, H, W)`: eval-mode batch norm once
/// the running statistics are folded into `scale` and `shift` (each `(C,)`). One pass when
/// nothing needs a gradient (a frozen teacher, inference); otherwise the plain expression.
pub fn channel_affine(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let c = x.dim(1)?;
    if scale.dims() != [c] || shift.dims() != [c] {
        candle::bail!(
            "channel affine: scale {:?} and shift {:?} for {c} channels",
            scale.dims(),
            shift.dims()
        )
    }
    let graph = x.track_op() || scale.track_op() || shift.track_op();
    if graph || x.rank() != 4 || !applies(&[x, scale, shift]) {
        let per_channel = |t: &Tensor| t.reshape((1, c, 1, 1));
        return x.broadcast_mul(&per_channel(scale)?)?.broadcast_add(&per_channel(shift)?);
    }
    x.contiguous()?.apply_op3_no_bwd(&scale.contiguous()?, &shift.contiguous()?, &ChannelAffine)
}

fn applies(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
        && ts[0].rank() == 4
        && ts[0].elem_count() > 0
}

/// The expression the custom op replaces (and the path off the CPU).
fn plain_train(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let c = x.dim(1)?;
    let per_channel = |t: &Tensor| t.reshape((1, c, 1, 1));
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
    let scale = per_channel(weight)?.broadcast_div(&(&var + eps)?.sqrt()?)?;
    let y = centered.broadcast_mul(&scale)?.broadcast_add(&per_channel(bias)?)?;
    Ok((y, mean.detach().flatten_all()?, var.detach().flatten_all()?))
}

/// `(N, C, plane)` of an NCHW layout.
pub(super) fn geometry(l: &Layout) -> Result<(usize, usize, usize)> {
    match *l.dims() {
        [n, c, h, w] => Ok((n, c, h * w)),
        ref d => candle::bail!("fast batch norm: expected (N, C, H, W), got {d:?}"),
    }
}

/// `k` sums per channel of `x` `(n, c, plane)`: `add(channel, plane, offset, sums)` adds a
/// plane's terms to its channel's `k` sums (in `f64`); `offset` is where the plane starts
/// in `x`. The batch is read image after image, in one contiguous stream per thread (a
/// channel's planes are scattered through memory: reading them channel after channel ran at
/// a fraction of that speed), and summed in a fixed order ([`ordered_sum`]).
fn per_channel_sums(
    x: &[f32],
    (n, c, plane): (usize, usize, usize),
    k: usize,
    add: impl Fn(usize, &[f32], usize, &mut [f64]) + Sync,
) -> Result<Vec<f64>> {
    ordered_sum(n, c * k, |images, acc| {
        for i in images {
            for (ch, out) in acc.chunks_exact_mut(k).enumerate() {
                let start = (i * c + ch) * plane;
                add(ch, &x[start..start + plane], start, out);
            }
        }
        Ok(())
    })
}

/// `x -> (2, C)`: each channel's mean and biased variance (two passes, in `f64`).
struct ChannelStats;

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "snl-fast-channel-stats"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(xs, xl, WHAT)?;
        let (n, c, plane) = geometry(xl)?;
        let count = (n * plane) as f64;
        let sums =
            per_channel_sums(x, (n, c, plane), 1, |_, p, _, out| out[0] += lane_sum(p, p, |v, _| v as f64))?;
        let means: Vec<f64> = sums.iter().map(|s| s / count).collect();
        let sq = per_channel_sums(x, (n, c, plane), 1, |ch, p, _, out| {
            out[0] += lane_sum(p, p, |v, _| (v as f64 - means[ch]).powi(2))
        })?;
        let pairs = means.iter().zip(&sq).map(|(&m, &q)| [m as f32, (q / count) as f32]);
        let (mean, var): (Vec<f32>, Vec<f32>) = pairs.map(|[m, v]| (m, v)).unzip();
        Ok((CpuStorage::F32([mean, var].concat()), Shape::from((2, c))))
    }
}

/// Forward: `(x, weight, bias) -> (x - mean) * invstd * weight + bias`, statistics fixed.
struct BatchNormTrain(BatchStats);

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "snl-fast-batch-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (f32_slice(xs, xl, WHAT)?, f32_slice(ws, wl, WHAT)?, f32_slice(bs, bl, WHAT)?);
        let (scale, shift) = self.0.affine(w, b);
        affine_planes(x, xl, &scale, &shift)
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let stats = self.0.clone();
        // (2, C): sum of g and sum of g * xhat per channel, which are also db and dw.
        let sums = x.apply_op2_no_bwd(&g, &GradSums(stats.clone()))?;
        let dx = if x.track_op() {
            let inputs = Tensor::cat(&[weight.detach().unsqueeze(0)?, sums.clone()], 0)?; // (3, C)
            Some(x.apply_op3_no_bwd(&g, &inputs, &InputGrad(stats))?)
        } else {
            None
        };
        let dw = if weight.track_op() { Some(sums.get(1)?) } else { None };
        let db = if bias.track_op() { Some(sums.get(0)?) } else { None };
        Ok((dx, dw, db))
    }
}

/// Each channel's batch mean and `1 / sqrt(var + eps)`.
#[derive(Clone)]
pub(super) struct BatchStats {
    mean: Vec<f32>,
    invstd: Vec<f32>,
}

impl BatchStats {
    /// The normalisation with `weight` and `bias` as a per-channel `(scale, shift)`:
    /// the output is `x * scale + shift`, computed in that order everywhere (same bits).
    pub(super) fn affine(&self, weight: &[f32], bias: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = weight.iter().zip(&self.invstd).map(|(w, s)| w * s).collect();
        let shift = bias.iter().zip(&self.mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        (scale, shift)
    }

    /// The gradient sums of one channel's plane: `sum g` and `sum g * xhat`, each in the
    /// eight lanes of [`lane_sum`], added to `out` in `f64`.
    pub(super) fn add_grad_sums(&self, ch: usize, x: &[f32], g: &[f32], out: &mut [f64]) {
        let (mean, invstd) = (self.mean[ch], self.invstd[ch]);
        out[0] += lane_sum(g, g, |gv, _| gv) as f64;
        out[1] += lane_sum(x, g, |xv, gv| gv * (xv - mean) * invstd) as f64;
    }
}

/// `(x, g) -> (2, C)`: per channel `sum g` and `sum g * (x - mean) * invstd`, in `f64`.
struct GradSums(BatchStats);

impl CustomOp2 for GradSums {
    fn name(&self) -> &'static str {
        "snl-fast-batch-norm-grad-sums"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (f32_slice(xs, xl, WHAT)?, f32_slice(gs, gl, WHAT)?);
        if xl.dims() != gl.dims() {
            candle::bail!("fast batch norm grad: gradient {:?} for input {:?}", gl.dims(), xl.dims())
        }
        let (n, c, plane) = geometry(xl)?;
        let stats = &self.0;
        let sums = per_channel_sums(x, (n, c, plane), 2, |ch, xp, start, out| {
            stats.add_grad_sums(ch, xp, &g[start..start + xp.len()], out)
        })?;
        let (sg, sgx): (Vec<f32>, Vec<f32>) =
            sums.chunks_exact(2).map(|s| (s[0] as f32, s[1] as f32)).unzip();
        Ok((CpuStorage::F32([sg, sgx].concat()), Shape::from((2, c))))
    }
}

/// `(x, g, [weight; sum g; sum g xhat]) -> dx = weight * invstd * (g - (sum g + xhat sum g xhat) / M)`.
pub(super) struct InputGrad(pub(super) BatchStats);

impl CustomOp3 for InputGrad {
    fn name(&self) -> &'static str {
        "snl-fast-batch-norm-input-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        is: &CpuStorage,
        il: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g, inputs) = (f32_slice(xs, xl, WHAT)?, f32_slice(gs, gl, WHAT)?, f32_slice(is, il, WHAT)?);
        let (n, c, plane) = geometry(xl)?;
        let (w, sg, sgx) = (&inputs[..c], &inputs[c..2 * c], &inputs[2 * c..]);
        let count = (n * plane) as f32;
        if gl.dims() != xl.dims() {
            candle::bail!("fast batch norm grad: gradient {:?} for input {:?}", gl.dims(), xl.dims())
        }
        // SAFETY: the zip below runs over all of `dp` (the inputs are sliced to its length).
        let dx = unsafe {
            par_vec_uninit(x.len(), plane, |i, dp| {
                let (xp, gp) = (&x[i * plane..][..dp.len()], &g[i * plane..][..dp.len()]);
                let ch = i % c;
                let (mean, invstd) = (self.0.mean[ch], self.0.invstd[ch]);
                let k = w[ch] * invstd;
                let (mg, mgx) = (sg[ch] / count, sgx[ch] / count);
                for ((d, &xv), &gv) in dp.iter_mut().zip(xp).zip(gp) {
                    d.write(k * (gv - mg - (xv - mean) * invstd * mgx));
                }
                Ok(())
            })?
        };
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

/// `(x, scale, shift) -> x * scale + shift` per channel.
struct ChannelAffine;

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "snl-fast-channel-affine"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        affine_planes(f32_slice(xs, xl, WHAT)?, xl, f32_slice(ss, sl, WHAT)?, f32_slice(ts, tl, WHAT)?)
    }
}

fn affine_planes(x: &[f32], xl: &Layout, scale: &[f32], shift: &[f32]) -> Result<(CpuStorage, Shape)> {
    let (_, c, plane) = geometry(xl)?;
    if scale.len() != c || shift.len() != c {
        candle::bail!("fast batch norm: {} scales and {} shifts for {c} channels", scale.len(), shift.len())
    }
    // SAFETY: the zip below runs over all of `yp` (the input is sliced to its length).
    let y = unsafe {
        par_vec_uninit(x.len(), plane, |i, yp| {
            let (s, t) = (scale[i % c], shift[i % c]);
            let xp = &x[i * plane..][..yp.len()];
            for (o, &v) in yp.iter_mut().zip(xp) {
                o.write(v * s + t);
            }
            Ok(())
        })?
    };
    Ok((CpuStorage::F32(y), xl.shape().clone()))
}
