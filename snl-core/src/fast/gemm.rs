//! A bounds-checked front to `gemm::gemm` for row-major `f32` matrices given by strides.

use candle::Result;

/// One operand of a matrix product: `rows x cols` elements of `data`, element `(i, j)` at
/// `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A contiguous row-major matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose, without moving any element.
    pub fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
}

/// Highest index a `rows x cols` matrix with these strides touches, plus one.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 }
}

/// `dst = a * b` (or `dst += a * b` when `accumulate`), `dst` row-major with row stride
/// `dst_rs`. Every access is checked against the slices before `gemm` runs, so a wrong
/// shape is an error here rather than a wild write there.
pub(crate) fn sgemm(
    a: Mat<'_>,
    b: Mat<'_>,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        candle::bail!("fast gemm: inner dimensions differ ({m}x{k} by {}x{n})", b.rows)
    }
    if extent(a.rows, a.cols, a.rs, a.cs) > a.data.len()
        || extent(b.rows, b.cols, b.rs, b.cs) > b.data.len()
        || extent(m, n, dst_rs, 1) > dst.len()
    {
        candle::bail!("fast gemm: an operand is shorter than its shape ({m}x{k} by {k}x{n})")
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(0.0);
            }
        }
        return Ok(());
    }
    // SAFETY: the extents checked above keep every element gemm reads or writes inside the
    // three slices; `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}
