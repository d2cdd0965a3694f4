//! Train-mode batch norm followed by the SNL masked activation (of a residual sum or not)
//! in one op each way: [`batch_norm_masked_relu`].
//!
//! As two ops, the normalised activation is written, kept for the mask's backward, and
//! read twice more; its gradient is written by the mask's backward, accumulated by candle
//! (a zeroed tensor, then an add: two more passes) and read twice by the batch norm's
//! backward. Here the normalised value is recomputed where it is needed (one multiply-add
//! per element, from the same `scale` and `shift`), and the batch norm's gradient sums are
//! taken in the same pass as the mask's gradients, channel by channel while each plane is
//! in cache. Every result has the bits of the two ops in a row.

use candle::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::bn::{self, BatchStats, InputGrad};
use super::masked::{self, Bcast};
use super::{add_into, f32_slice, ordered_fold, par_vec_uninit};

const WHAT: &str = "batch norm + masked_relu";

/// `masked_relu(batch_norm_train(x) + residual, alphas)` (without `+ residual` when it is
/// `None`; [`super::masked_relu_add`] otherwise), returning the activation and the batch
/// statistics `(mean, var)` as [`super::batch_norm_train`] does. One op each way on the
/// CPU with `f32` tensors where both ops would run their own kernels, with their results to
/// the bit; elsewhere the two ops in a row. (When the mask trains, a constant `weight` or
/// `bias` gets an entry in candle's gradient store too, as every part of a `cat` does;
/// every variable's gradient is the two ops'.)
pub fn batch_norm_masked_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    residual: Option<&Tensor>,
    alphas: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let residual_fits = residual.is_none_or(|r| masked::residual_fits(x, r));
    let fused = match (masked::broadcast_of(x, alphas), residual_fits) {
        (Some(bcast), true) => bn::train_stats(x, weight, bias, eps)?.map(|s| (bcast, s)),
        _ => None,
    };
    let Some((bcast, (x, mean, var, stats))) = fused else {
        let (y, mean, var) = super::batch_norm_train(x, weight, bias, eps)?;
        let out = match residual {
            Some(r) => super::masked_relu_add(&y, r, alphas)?,
            None => super::masked_relu(&y, alphas)?,
        };
        return Ok((out, mean, var));
    };
    // One argument for the parameters (candle's custom ops take at most three tensors);
    // `cat`'s backward hands each its part of the gradient.
    let params = Tensor::cat(&[weight, bias, &alphas.flatten_all()?], 0)?;
    let op = BnMask { stats, bcast, alphas_train: alphas.track_op() };
    let out = match residual {
        Some(r) => x.apply_op3(&r.contiguous()?, &params, op)?,
        None => x.apply_op2(&params, op)?,
    };
    Ok((out, mean, var))
}

/// `(x, (residual,) [weight | bias | alphas])`: the batch's statistics are fixed in
/// `stats`; `alphas_train` says whether the mask takes a gradient.
struct BnMask {
    stats: BatchStats,
    bcast: Bcast,
    alphas_train: bool,
}

/// The three parts of the packed parameters, checked against `c` channels.
fn split(params: &[f32], c: usize) -> Result<(&[f32], &[f32], &[f32])> {
    if params.len() < 2 * c {
        candle::bail!("fast {WHAT}: {} parameters for {c} channels", params.len())
    }
    let (weight, rest) = params.split_at(c);
    let (bias, alphas) = rest.split_at(c);
    Ok((weight, bias, alphas))
}

/// `out = x * scale + shift`, the batch norm's output for one plane.
fn normalise(x: &[f32], scale: f32, shift: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v * scale + shift;
    }
}

/// The residual's part `at..at + len`, or nothing without one.
fn residual_part(r: &[f32], at: usize, len: usize) -> &[f32] {
    if r.is_empty() { r } else { &r[at..at + len] }
}

impl BnMask {
    fn forward(&self, x: &[f32], xl: &Layout, r: &[f32], params: &[f32]) -> Result<(CpuStorage, Shape)> {
        let (_, c, plane) = bn::geometry(xl)?;
        let (weight, bias, alphas) = split(params, c)?;
        let len = masked::image_len(self.bcast, xl, alphas.len())?;
        let (scale, shift) = self.stats.affine(weight, bias);
        // SAFETY: every channel's plane of every image's output is written below.
        let y = unsafe {
            par_vec_uninit(x.len(), len, |i, yi| {
                let mut s = vec![0f32; plane];
                for ch in 0..c {
                    let at = i * len + ch * plane;
                    normalise(&x[at..at + plane], scale[ch], shift[ch], &mut s);
                    let a = &alphas[self.bcast.channel_range(ch, plane)];
                    let out = &mut yi[ch * plane..(ch + 1) * plane];
                    masked::forward_image(self.bcast, a, &s, residual_part(r, at, plane), out);
                }
                Ok(())
            })?
        };
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn backward(
        &self,
        x: &Tensor,
        r: Option<&Tensor>,
        params: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let need_dx = x.track_op();
        let need_dr = r.is_some_and(|r| r.track_op());
        let need_params = params.track_op();
        if !need_dx && !need_dr && !need_params {
            return Ok((None, None, None));
        }
        let c = x.dim(1)?;
        let param_values = params.to_vec1::<f32>()?;
        let (weight, bias, alphas) = split(&param_values, c)?;
        let (scale, shift) = self.stats.affine(weight, bias);
        let need_da = need_params && self.alphas_train;
        let op = BnMaskGrads {
            stats: self.stats.clone(),
            bcast: self.bcast,
            scale,
            shift,
            alphas: alphas.to_vec(),
            need_da,
        };
        let g = g.contiguous()?;
        // [ds | da | sum ds | sum ds xhat], ds the gradient at the sum (the mask's input).
        let flat = match r {
            Some(r) => x.apply_op3_no_bwd(r, &g, &op)?,
            None => x.apply_op2_no_bwd(&g, &op)?,
        };
        let ds = flat.narrow(0, 0, x.elem_count())?.reshape(x.shape())?;
        let da_len = if need_da { alphas.len() } else { 0 };
        let tail = flat.narrow(0, x.elem_count(), da_len + 2 * c)?.to_vec1::<f32>()?;
        let (da, sums) = tail.split_at(da_len);
        let (sum_g, sum_gx) = sums.split_at(c);
        let dr = need_dr.then(|| ds.clone());
        let dx = match need_dx {
            true => {
                let inputs = Tensor::from_slice(&[weight, sum_g, sum_gx].concat(), 3 * c, x.device())?;
                Some(x.apply_op3_no_bwd(&ds, &inputs, &InputGrad(self.stats.clone()))?)
            }
            false => None,
        };
        let dparams = match need_params {
            true => {
                let da = if need_da { da.to_vec() } else { vec![0.0; alphas.len()] };
                Some(Tensor::from_vec([sum_gx, sum_g, &da].concat(), param_values.len(), x.device())?)
            }
            false => None,
        };
        Ok((dx, dr, dparams))
    }
}

impl CustomOp2 for BnMask {
    fn name(&self) -> &'static str {
        "snl-fast-batch-norm-masked-relu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(f32_slice(xs, xl, WHAT)?, xl, &[], f32_slice(ps, pl, WHAT)?)
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, _, dparams) = self.backward(x, None, params, g)?;
        Ok((dx, dparams))
    }
}

impl CustomOp3 for BnMask {
    fn name(&self) -> &'static str {
        "snl-fast-batch-norm-masked-relu-add"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        masked::check_residual(WHAT, xl, rl)?;
        self.forward(f32_slice(xs, xl, WHAT)?, xl, f32_slice(rs, rl, WHAT)?, f32_slice(ps, pl, WHAT)?)
    }

    fn bwd(
        &self,
        x: &Tensor,
        r: &Tensor,
        params: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.backward(x, Some(r), params, g)
    }
}

/// `(x, (r,) g) -> [ds | da | sum ds | sum ds xhat]` in one pass: the mask's gradients at
/// `s = x * scale + shift (+ r)` (`ds` as the mask's backward computes it; `da` only when
/// `need_da`), and per channel the batch norm's two gradient sums of `ds`, as its backward
/// takes them, in the same groups of images in the same order.
struct BnMaskGrads {
    stats: BatchStats,
    bcast: Bcast,
    scale: Vec<f32>,
    shift: Vec<f32>,
    alphas: Vec<f32>,
    need_da: bool,
}

impl BnMaskGrads {
    fn run(&self, x: &[f32], xl: &Layout, r: &[f32], g: &[f32], gl: &Layout) -> Result<(CpuStorage, Shape)> {
        if xl.dims() != gl.dims() {
            candle::bail!("fast {WHAT} grad: gradient {:?} for activations {:?}", gl.dims(), xl.dims())
        }
        let (n, c, plane) = bn::geometry(xl)?;
        let len = masked::image_len(self.bcast, xl, self.alphas.len())?;
        let da_len = if self.need_da { self.alphas.len() } else { 0 };
        let image = masked::image_grads_fn(!r.is_empty(), true, self.need_da);
        let new = || (vec![0f64; 2 * c], vec![0f32; da_len]);
        let merge = |(sums, da): &mut (Vec<f64>, Vec<f32>), (s, d): (Vec<f64>, Vec<f32>)| {
            add_into(sums, &s);
            add_into(da, &d);
        };
        let (mut flat, (sums, da)) =
            ordered_fold(n, len, da_len + 2 * c, new, merge, |items, ds, (sums, da)| {
                let mut s = vec![0f32; plane];
                let first = items.start;
                for i in items {
                    for ch in 0..c {
                        let (at, local) = (i * len + ch * plane, (i - first) * len + ch * plane);
                        let (xp, dsp) = (&x[at..at + plane], &mut ds[local..local + plane]);
                        normalise(xp, self.scale[ch], self.shift[ch], &mut s);
                        let mask = self.bcast.channel_range(ch, plane);
                        let dap = if self.need_da { &mut da[mask.clone()] } else { &mut [][..] };
                        image(
                            self.bcast,
                            &self.alphas[mask],
                            &s,
                            residual_part(r, at, plane),
                            &g[at..at + plane],
                            dsp,
                            dap,
                        );
                        self.stats.add_grad_sums(ch, xp, dsp, &mut sums[2 * ch..2 * ch + 2]);
                    }
                }
                Ok(())
            })?;
        flat.extend_from_slice(&da);
        flat.extend(sums.iter().step_by(2).map(|&v| v as f32));
        flat.extend(sums.iter().skip(1).step_by(2).map(|&v| v as f32));
        let total = flat.len();
        Ok((CpuStorage::F32(flat), Shape::from(total)))
    }
}

impl CustomOp2 for BnMaskGrads {
    fn name(&self) -> &'static str {
        "snl-fast-batch-norm-masked-relu-grads"
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

impl CustomOp3 for BnMaskGrads {
    fn name(&self) -> &'static str {
        "snl-fast-batch-norm-masked-relu-add-grads"
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
        masked::check_residual(WHAT, xl, rl)?;
        self.run(f32_slice(xs, xl, WHAT)?, xl, f32_slice(rs, rl, WHAT)?, f32_slice(gs, gl, WHAT)?, gl)
    }
}
