//! The convolutions' matrix products for the engine's small shapes, without packing.
//!
//! A chunk of 4 images makes products of a few hundred columns by at most a few hundred
//! rows: the forward convolution `pre [C_out, n] = [W | b] [C_out, q] x [col; 1] [q, n]` and
//! the input gradient `dX [C_in, n] = Wt [C_in, q] x col(dz) [q, n]`. A general GEMM packs
//! both operands first, and on these shapes packing cost as much as multiplying (`perf` on
//! `bench train --arch 16-16`: 35% packing, 37% kernel). Here the right operand's rows are
//! already contiguous along `n`, so a register tile of `R` rows by `P` columns reads them in
//! place and broadcasts the left operand's values: nothing is copied. The input gradient's
//! `col(dz)` is not even written: [`Unfolded`] reads `dz` shifted in place and masks what
//! crosses an image's edge. The tiles come in one version per instruction set
//! ([`crate::isa`]), each an explicit `#[target_feature]` clone. The AVX-512 version packs
//! the only thing worth packing, 8 rows of the left operand at a time ([`panels`]: the 8
//! weights of a term at one address), and reads [`Unfolded`] by masked loads
//! ([`Unfolded512`]).
//!
//! Hand-written because no maintained crate offers a product that skips packing *and* sums
//! in a fixed, documented order: every output is summed over `q` in order with a fused
//! multiply-add from zero, in blocks whose sums are then added in order ([`block_depth`]).
//! That is exactly the order of `matrixmultiply`'s kernels (blocks of [`KC`]) where both
//! sides have 8 or more, and of `gemm`'s packed kernels on the thin shapes, with the blocks
//! `gemm` chooses on a CPU with a 32 KiB 8-way L1 ([`gemm_depth`]); so the engine's results
//! are bit for bit those of the GEMM path it replaces (tests compare the two on random
//! shapes), and the same on every CPU. `mul_add` is exactly rounded on every target, so every
//! instruction set gives the same bits.
//!
//! Must not allocate, and must not change the order of any sum.

use crate::isa::Isa;

/// The depth of `matrixmultiply`'s f32 kernels' blocks: sums over longer `q` are made block
/// by block and the block sums added in order.
pub const KC: usize = 256;

/// The depth of the blocks a product of `a [m, q]` by `b [q, n]` is summed in, as
/// [`crate::ops::matmul`] sums the forward convolution and the input gradient: [`KC`] where
/// `matrixmultiply` computes it (both sides 8 or more) or where the depth fits one block,
/// else `gemm`'s blocks ([`gemm_depth`]). `None` for a single row or column deeper than
/// [`KC`], which `gemm` sums with its matrix-vector kernels in another order.
pub fn block_depth(m: usize, q: usize, n: usize) -> Option<usize> {
    if q <= KC || (m >= 8 && n >= 8) {
        Some(KC)
    } else if m >= 2 && n >= 2 {
        Some(gemm_depth(m, q, n))
    } else {
        None
    }
}

/// The depth of `gemm` 0.18's blocks for a product of `m x q` by `q x n` that its packed
/// kernels compute, as it chooses them on a CPU whose L1 data cache is 32 KiB and 8-way (AMD
/// Zen 2 to 4, Intel up to Skylake; `gemm_common::cache::kernel_params`): `min(q, 512)` when
/// both sides are 64 or less, else `q` cut into the fewest blocks of at most 512, all of the
/// same depth but the last. `gemm` derives the 512 from the cache it detects (a 48 KiB 12-way
/// L1 gives 1024), so its bits differ from one CPU to another; the engine's own kernels
/// ([`product`], [`crate::wgrad`]) fix them to these, on every CPU.
pub fn gemm_depth(m: usize, q: usize, n: usize) -> usize {
    const MOST: usize = 512;
    if m <= 64 && n <= 64 {
        q.min(MOST)
    } else if q <= MOST {
        q
    } else {
        q.div_ceil(q.div_ceil(MOST))
    }
}

/// Whether the engine uses [`product`] for `a [m, q]` by `b [q, n]`: wherever it has the
/// GEMM's bits ([`block_depth`]). Thin products (fewer than 8 rows, as a 2-4's or a 16-4's
/// second layer) run in tiles of 4 or 2 rows made wider, so that they still keep enough
/// independent sums in flight; measured faster than the GEMM crates with `bench train`.
pub fn pays(m: usize, q: usize, n: usize) -> bool {
    block_depth(m, q, n).is_some()
}

/// `out [m, n] = a [m, q] x b [q, n]`, all row-major, each output summed over `q` in order
/// with fused multiply-adds from zero, in blocks of [`block_depth`] (of [`KC`] where it has
/// none), with the kernels of [`crate::isa::isa`].
///
/// # Shapes
/// `a [m, q]`, `b [q, n]`, `out [m, n]`; panics when a slice is shorter.
pub fn product(a: &[f32], b: &[f32], shape: (usize, usize, usize), out: &mut [f32]) {
    product_with(crate::isa::isa(), a, b, shape, out)
}

/// [`product`] with `b` unfolded in place ([`Unfolded`]): the input gradient's
/// `dX [C_in, n] = Wt [C_in, C_out*k*k] x col(dz) [C_out*k*k, n]` without writing `col(dz)`.
///
/// # Shapes
/// `a [m, q]`, `b` of `q = C*k*k` rows of `n`, `out [m, n]`.
pub(crate) fn product_unfolded(
    a: &[f32],
    b: Unfolded,
    shape: (usize, usize, usize),
    out: &mut [f32],
) {
    product_of(crate::isa::isa(), a, b, shape, out)
}

/// [`product_unfolded`] of some rows of a product summed in blocks of `depth`: each output is
/// summed in the same order whatever the number of rows, so with the `depth` of the whole
/// product ([`block_depth`] of its shape) these rows get the whole product's bits.
///
/// # Shapes
/// `a [m, q]` (the rows wanted), `b` of `q` rows of `n`, `out [m, n]`.
pub(crate) fn product_unfolded_rows(
    a: &[f32],
    b: Unfolded,
    shape: (usize, usize, usize),
    depth: usize,
    out: &mut [f32],
) {
    product_in(crate::isa::isa(), a, b, shape, depth, out)
}

/// [`product`] with the kernels of `isa`, which the CPU must have (tests run each).
pub(crate) fn product_with(
    isa: Isa,
    a: &[f32],
    b: &[f32],
    (m, q, n): (usize, usize, usize),
    out: &mut [f32],
) {
    product_of(isa, a, Dense { b, n }, (m, q, n), out)
}

/// `out [m, n] = a [m, q] x b [q, n]` for any right operand `b` that gives its rows.
pub(crate) fn product_of<B: Rows>(
    isa: Isa,
    a: &[f32],
    b: B,
    (m, q, n): (usize, usize, usize),
    out: &mut [f32],
) {
    let depth = block_depth(m, q, n).unwrap_or(KC);
    product_in(isa, a, b, (m, q, n), depth, out)
}

/// [`product_of`] summed in blocks of `depth`.
fn product_in<B: Rows>(
    isa: Isa,
    a: &[f32],
    b: B,
    shape: (usize, usize, usize),
    depth: usize,
    out: &mut [f32],
) {
    product_over(isa, a, b, shape, blocks(shape.1, depth), out)
}

/// `out [m, n] = a [m, q] x b [q, n]` with `b`'s rows gathered ([`Gathered`], or an
/// [`Unfolded`] whose row table lists the rows kept), summed in the
/// blocks `spans` (`(q0, q1)` in order, covering `0..q`): the first written, each later one's
/// sum added. A product whose zero terms were left out, in the blocks the whole one had.
///
/// # Shapes
/// `a [m, q]`, `b` of `q` rows, `out [m, n]`.
pub(crate) fn product_gathered<B: Rows>(
    a: &[f32],
    b: B,
    shape: (usize, usize, usize),
    spans: &[(usize, usize)],
    out: &mut [f32],
) {
    let spans = spans
        .iter()
        .enumerate()
        .map(|(i, &(q0, q1))| (q0, q1, i == 0));
    product_over(crate::isa::isa(), a, b, shape, spans, out)
}

/// The product of [`product_of`] over the given blocks `(q0, q1, first)`.
fn product_over<B: Rows>(
    isa: Isa,
    a: &[f32],
    b: B,
    shape: (usize, usize, usize),
    spans: impl Iterator<Item = (usize, usize, bool)>,
    out: &mut [f32],
) {
    let (m, q, n) = shape;
    assert!(
        a.len() >= m * q && out.len() >= m * n,
        "direct::product: {m}x{q} by {q}x{n} into {} values from {}",
        out.len(),
        a.len(),
    );
    assert!(isa.supported(), "direct::product: no {} here", isa.name());
    assert!(
        !B::AVX512_ONLY || isa == Isa::Avx512,
        "direct::product: an AVX-512 operand for {}",
        isa.name()
    );
    let args = (a, shape, spans);
    match isa {
        // SAFETY: the CPU has the instructions (asserted above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => each_block(args, b.avx512(), out, |b, o| unsafe { block_avx512(b, o) }),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => each_block(args, b, out, |b, o| unsafe { block_avx2(b, o) }),
        _ => each_block(args, b, out, block_baseline),
    }
}

/// The blocks of [`product_over`], each by `kernel`, once `b` proved its reads in range.
fn each_block<B: Rows>(
    (a, (m, q, n), spans): (
        &[f32],
        (usize, usize, usize),
        impl Iterator<Item = (usize, usize, bool)>,
    ),
    b: B,
    out: &mut [f32],
    kernel: impl Fn(Block<B>, &mut [f32]),
) {
    b.check(q, n);
    for (q0, q1, first) in spans {
        assert!(
            q0 <= q1 && q1 <= q,
            "direct::product: block {q0}..{q1} of {q}"
        );
        let args = Block {
            a,
            b,
            shape: (m, q, n),
            depth: (q0, q1),
            first,
        };
        kernel(args, out);
    }
}

/// The blocks `(q0, q1, first)` of a sum over `q` terms in blocks of `depth`: at least one,
/// so that an empty sum still writes its zeros.
pub(crate) fn blocks(q: usize, depth: usize) -> impl Iterator<Item = (usize, usize, bool)> {
    let starts = (0..q.max(1)).step_by(depth.max(1));
    starts.map(move |q0| (q0, (q0 + depth).min(q), q0 == 0))
}

/// The right operand of a product, row by row.
///
/// The tiles read it without bounds checks: a check per row read cost more instructions than
/// the multiply-adds it fed, which a CPU with two 512-bit FMA units per core (Intel) could not
/// hide (`perf annotate` of `bench train --arch 32-32`: 8 checks, 2 stack reloads and their
/// branches beside 16 `vfmadd231ps` per row). [`Rows::check`] proves every read in range once
/// per product instead.
pub(crate) trait Rows: Copy {
    /// Panics unless rows `0..q` at columns `0..n` are all in range.
    fn check(&self, q: usize, n: usize);

    /// Row `q`'s values at columns `j0..j0 + P`.
    ///
    /// # Safety
    /// [`Rows::check`] passed for some `(q', n')` with `q < q'` and `j0 + P <= n'`.
    unsafe fn row<const P: usize>(&self, q: usize, j0: usize) -> [f32; P];

    /// Whether only the AVX-512 kernels may read it ([`Unfolded512`]); [`product_over`]
    /// refuses it to the others.
    const AVX512_ONLY: bool = false;

    /// The form of the operand the AVX-512 kernels read: itself, or one that reads the same
    /// values faster with AVX-512's instructions ([`Unfolded512`]).
    #[cfg(target_arch = "x86_64")]
    type Avx512: Rows;

    /// [`Rows::Avx512`] of this operand.
    #[cfg(target_arch = "x86_64")]
    fn avx512(self) -> Self::Avx512;
}

/// A row-major `b [q, n]`.
#[derive(Clone, Copy)]
pub(crate) struct Dense<'a> {
    pub b: &'a [f32],
    pub n: usize,
}

impl<'a> Rows for Dense<'a> {
    #[cfg(target_arch = "x86_64")]
    type Avx512 = Self;

    #[cfg(target_arch = "x86_64")]
    fn avx512(self) -> Self {
        self
    }

    fn check(&self, q: usize, n: usize) {
        assert!(
            n <= self.n && self.b.len() >= q * self.n,
            "direct::Dense: {q} rows of {n} from {} values of rows of {}",
            self.b.len(),
            self.n
        );
    }

    #[inline(always)]
    unsafe fn row<const P: usize>(&self, q: usize, j0: usize) -> [f32; P] {
        // SAFETY: in range by `check` (the caller's contract).
        unsafe { read(self.b, q * self.n + j0) }
    }
}

/// Some rows of a row-major `b [_, n]`: row `i` of the operand is row `rows[i]` of `b`.
#[derive(Clone, Copy)]
pub(crate) struct Gathered<'a> {
    pub b: &'a [f32],
    pub n: usize,
    pub rows: &'a [usize],
}

impl<'a> Rows for Gathered<'a> {
    #[cfg(target_arch = "x86_64")]
    type Avx512 = Self;

    #[cfg(target_arch = "x86_64")]
    fn avx512(self) -> Self {
        self
    }

    fn check(&self, q: usize, n: usize) {
        let rows = &self.rows[..q];
        let most = rows.iter().map(|&r| (r + 1) * self.n).max().unwrap_or(0);
        assert!(
            n <= self.n && self.b.len() >= most,
            "direct::Gathered: rows up to {most} values from {}",
            self.b.len()
        );
    }

    #[inline(always)]
    unsafe fn row<const P: usize>(&self, q: usize, j0: usize) -> [f32; P] {
        // SAFETY: in range by `check` (the caller's contract).
        unsafe { read(self.b, *self.rows.get_unchecked(q) * self.n + j0) }
    }
}

/// `col(x) [C*k*k, n]`, the unfolding of `x [C, n]` (`n` = images x `h` x `w`) that
/// [`crate::ops::im2col`] writes, read in place instead: row `(c, dy, dx)` is channel `c`
/// shifted by `(dy - k/2, dx - k/2)`, with what falls outside an image masked to +0.0, the
/// value im2col writes there. Saves writing and reading the unfolded copy, `k*k` times `x`.
#[derive(Clone, Copy)]
pub(crate) struct Unfolded<'a> {
    /// `x` with a margin of at least `(k/2) * (w + 1)` values before and after (any values:
    /// what is read there is masked).
    pub x: &'a [f32],
    /// Per row `q`: where row `q` starts in `x` (its column 0, margin included) and where
    /// its tap's mask starts in `masks` ([`unfold_taps`]).
    pub taps: &'a [(usize, usize)],
    /// [`unfold_masks`].
    pub masks: &'a UnfoldMasks,
}

impl<'a> Rows for Unfolded<'a> {
    fn check(&self, q: usize, n: usize) {
        for &(x0, m0) in &self.taps[..q] {
            assert!(
                x0 + n <= self.x.len() && m0 + n <= self.masks.words.len(),
                "direct::Unfolded: a tap at {x0} (mask {m0}) of {n} values past {} (masks {})",
                self.x.len(),
                self.masks.words.len()
            );
        }
    }

    #[inline(always)]
    unsafe fn row<const P: usize>(&self, q: usize, j0: usize) -> [f32; P] {
        // SAFETY: in range by `check` (the caller's contract).
        let (x, m): ([f32; P], [u32; P]) = unsafe {
            let (x0, m0) = *self.taps.get_unchecked(q);
            (read(self.x, x0 + j0), read(&self.masks.words, m0 + j0))
        };
        std::array::from_fn(|j| f32::from_bits(x[j].to_bits() & m[j]))
    }

    #[cfg(target_arch = "x86_64")]
    type Avx512 = Unfolded512<'a>;

    #[cfg(target_arch = "x86_64")]
    fn avx512(self) -> Unfolded512<'a> {
        Unfolded512(self)
    }
}
/// [`Unfolded`] read by the AVX-512 kernels: 16 positions at a time by one masked load
/// (`vmovups` with a `k` register of [`UnfoldMasks`]'s bits), which leaves out what falls
/// outside an image as +0.0 without loading its mask or spending an `and` on the ports the
/// multiply-adds need (`perf annotate` of `bench train --arch 32-32` on an Intel Xeon: 2
/// mask loads and 2 `vpandd` beside 16 `vfmadd231ps` per row). The same values, so the same
/// bits. Rows narrower than 16 (the last columns of a product) read as [`Unfolded`] does.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Unfolded512<'a>(Unfolded<'a>);

#[cfg(target_arch = "x86_64")]
impl Rows for Unfolded512<'_> {
    const AVX512_ONLY: bool = true;

    fn check(&self, q: usize, n: usize) {
        self.0.check(q, n);
        let bits = self.0.masks.bits.len() * 16;
        for &(_, m0) in &self.0.taps[..q] {
            assert!(
                m0.is_multiple_of(16) && m0 + n <= bits,
                "direct::Unfolded512: a tap's mask at {m0} of {n} positions past {bits}, or \
                 not on a word"
            );
        }
    }

    /// # Safety
    /// As [`Rows::row`]; also, the CPU runs AVX-512 F (only the AVX-512 kernels read it,
    /// [`Rows::AVX512_ONLY`]), and `j0` is a multiple of 16 where `P >= 16` (the bands of
    /// [`bands`] and [`panels`] are).
    #[inline(always)]
    unsafe fn row<const P: usize>(&self, q: usize, j0: usize) -> [f32; P] {
        use std::arch::x86_64::{_mm512_maskz_loadu_ps, _mm512_storeu_ps};
        if P < 16 {
            // SAFETY: the caller's contract.
            return unsafe { self.0.row::<P>(q, j0) };
        }
        debug_assert!(
            P.is_multiple_of(16) && j0.is_multiple_of(16),
            "{P} columns at {j0}"
        );
        let mut out = [0.0f32; P];
        // SAFETY: in range by `check` (the caller's contract), the tap's mask on a word; a
        // masked load touches no lane its mask leaves out.
        unsafe {
            let (x0, m0) = *self.0.taps.get_unchecked(q);
            let x = self.0.x.as_ptr().add(x0 + j0);
            let word = (m0 + j0) / 16;
            for c in 0..P / 16 {
                let k = *self.0.masks.bits.get_unchecked(word + c);
                let v = _mm512_maskz_loadu_ps(k, x.add(16 * c));
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * c), v);
            }
        }
        out
    }

    type Avx512 = Self;

    fn avx512(self) -> Self {
        self
    }
}

/// `P` values of `v` from `at`, unchecked.
///
/// # Safety
/// `at + P <= v.len()`.
#[inline(always)]
unsafe fn read<T: Copy, const P: usize>(v: &[T], at: usize) -> [T; P] {
    debug_assert!(at + P <= v.len(), "read {P} at {at} of {}", v.len());
    // SAFETY: in range (the caller's contract); `[T; P]` has `T`'s alignment.
    unsafe { v.as_ptr().add(at).cast::<[T; P]>().read() }
}

/// The masks of [`Unfolded`] for up to some number of images: per tap `(dy, dx)` of a
/// `k x k` kernel, `stride` positions (the images' `h*w` each, then zeros up to a multiple of
/// 16), set where the tap of that position reads inside its image.
#[derive(Debug, Clone, Default)]
pub(crate) struct UnfoldMasks {
    /// `[k*k, stride]`: all ones where set, else zero, to `and` with the values read.
    pub words: Vec<u32>,
    /// The same, 16 positions a word (bit `i` of word `t` is position `16*t + i`), for the
    /// masked loads of [`Unfolded512`].
    pub bits: Vec<u16>,
    /// Positions per tap, a multiple of 16 so that each tap's masks start on a word.
    pub stride: usize,
}

/// [`UnfoldMasks`] for up to `images` images of `h x w` and a `k x k` kernel.
pub(crate) fn unfold_masks(h: usize, w: usize, k: usize, images: usize) -> UnfoldMasks {
    let pad = (k / 2) as isize;
    let stride = (images * h * w).next_multiple_of(16);
    let mut words = Vec::with_capacity(k * k * stride);
    for dy in 0..k as isize {
        for dx in 0..k as isize {
            for _ in 0..images {
                for y in 0..h as isize {
                    for x in 0..w as isize {
                        let (sy, sx) = (y + dy - pad, x + dx - pad);
                        let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                        words.push(if inside { u32::MAX } else { 0 });
                    }
                }
            }
            words.resize(words.len().next_multiple_of(16), 0);
        }
    }
    let bits = words
        .chunks(16)
        .map(|c| {
            c.iter()
                .rev()
                .fold(0u16, |b, &m| (b << 1) | u16::from(m != 0))
        })
        .collect();
    UnfoldMasks {
        words,
        bits,
        stride,
    }
}

/// The row table of [`Unfolded`] for `c` channels of `n` positions, `w` wide, a `k x k`
/// kernel, `margin` values before `x`'s first channel and masks of `stride` per tap.
pub(crate) fn unfold_taps(
    (c, n, w, k): (usize, usize, usize, usize),
    margin: usize,
    stride: usize,
    taps: &mut Vec<(usize, usize)>,
) {
    let pad = k / 2;
    assert!(
        margin >= pad * (w + 1),
        "a margin of {margin} < {}",
        pad * (w + 1)
    );
    taps.clear();
    for ci in 0..c {
        for dy in 0..k {
            for dx in 0..k {
                let x0 = margin + ci * n + dy * w + dx - pad * (w + 1);
                taps.push((x0, (dy * k + dx) * stride));
            }
        }
    }
}

/// One block `q0..q1` of a product, written into `out` (`first`) or added to it.
#[derive(Clone, Copy)]
struct Block<'a, B> {
    a: &'a [f32],
    b: B,
    /// `(m, q, n)`.
    shape: (usize, usize, usize),
    /// `(q0, q1)`.
    depth: (usize, usize),
    first: bool,
}

// The tiles per version: as many accumulators as the vector registers hold with room for
// the operands (32 x 512 bits; 16 x 256 bits; 16 x 128 bits): `R x P` where the product has
// `R` rows or more, else 4 rows by `P4` or 2 rows by `P2`, as wide as the registers allow, so
// that a thin product (a 16-4's second layer) still has enough independent sums in flight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
fn block_avx512<B: Rows>(args: Block<B>, out: &mut [f32]) {
    let (m, (q0, q1)) = (args.shape.0, args.depth);
    if m == FIRST_LAYER_ROWS {
        bands::<{ FIRST_LAYER_ROWS }, 32, B>(args, out)
    } else if m >= TILE_ROWS_AVX512 && q1 - q0 <= PANEL_DEPTH {
        // SAFETY: the CPU runs AVX-512 F (this function's features).
        let j = unsafe { panels(args, out) };
        bands_from::<{ TILE_ROWS_AVX512 }, 16, B>(args, j, out)
    } else {
        tiles::<{ TILE_ROWS_AVX512 }, 32, 64, 128, B>(args, out)
    }
}

/// The deepest block [`panels`] packs (`gemm_depth`'s most).
#[cfg(target_arch = "x86_64")]
const PANEL_DEPTH: usize = 512;
/// The vectors of 16 columns in a panel's tile: 8 x 48 (24 sums) rather than 8 x 32, so that
/// each broadcast weight feeds three multiply-adds (a micro-benchmark of the 32 x 289 x 784
/// unfolded product on the Intel Xeon: 125 to 133 GFLOP/s; `bench train` at one thread: 16-16
/// +5%, 32-32 +2%, three alternations).
const PV: usize = 3;

/// The columns `0..n/48*48` of an AVX-512 block of 8 rows or more: each 8 rows' weights for
/// the block packed first (`[depth, 8]`, 16 KiB at most, on the stack), so that a tile reads
/// the 8 weights of a term from one address rather than 8 rows `q` apart (`perf annotate` on
/// an Intel Xeon: the address arithmetic of the 8 rows took a fifth of the tile's
/// instructions), and each panel is used across all columns before the next is packed. The
/// last rows (fewer than 8) go through the tiles of 4, 2 and 1. Returns where the columns
/// it did end. Every output is summed as [`tile`] sums it, so the bits are the same.
///
/// # Safety
/// The CPU runs AVX-512 F; the block is at most [`PANEL_DEPTH`] deep.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn panels<B: Rows>(args: Block<B>, out: &mut [f32]) -> usize {
    let (a, (m, q, n), (q0, q1)) = (args.a, args.shape, args.depth);
    let (full_m, end) = (m / 8 * 8, n / (16 * PV) * (16 * PV));
    let mut panel = [0.0f32; 8 * PANEL_DEPTH];
    for i0 in (0..full_m).step_by(8) {
        for (p, w) in (q0..q1).zip(panel.chunks_exact_mut(8)) {
            for (r, w) in w.iter_mut().enumerate() {
                *w = a[(i0 + r) * q + p];
            }
        }
        for j0 in (0..end).step_by(16 * PV) {
            // SAFETY: the caller's; `i0 + 8 <= m`, `j0 + 16 * PV <= n`.
            unsafe { tile_panel::<B, PV>(args, &panel, (i0, j0), out) };
        }
    }
    for j0 in (0..end).step_by(16 * PV) {
        last_rows::<{ 16 * PV }, B>(args, (full_m, j0), out);
    }
    end
}

/// [`tile`] of 8 rows by `16 * V` columns with the weights from a packed panel, in AVX-512
/// intrinsics: written in plain Rust, LLVM turned the panel's loop into gathers across rows.
///
/// # Safety
/// The CPU runs AVX-512 F; `panel` holds the block's `[q1 - q0, 8]` weights of rows
/// `i0..i0 + 8`; `i0 + 8 <= m`, `j0 + 16 * V <= n`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_panel<B: Rows, const V: usize>(
    args: Block<B>,
    panel: &[f32],
    (i0, j0): (usize, usize),
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let ((_, _, n), (q0, q1)) = (args.shape, args.depth);
    debug_assert!(panel.len() >= (q1 - q0) * 8 && j0 + 16 * V <= n);
    // SAFETY: as `tile`'s reads; the panel holds `(q1 - q0) * 8` weights; the output rows
    // and columns lie in `out` (`product_over` asserted `m * n`).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; 8];
        let mut w = panel.as_ptr();
        for p in q0..q1 {
            let xs: [__m512; V] = std::array::from_fn(|v| {
                let x: [f32; 16] = args.b.row::<16>(p, j0 + 16 * v);
                _mm512_loadu_ps(x.as_ptr())
            });
            for (r, sums) in acc.iter_mut().enumerate() {
                let wr = _mm512_set1_ps(*w.add(r));
                for v in 0..V {
                    sums[v] = _mm512_fmadd_ps(xs[v], wr, sums[v]);
                }
            }
            w = w.add(8);
        }
        for (r, sums) in acc.iter().enumerate() {
            let o = out.as_mut_ptr().add((i0 + r) * n + j0);
            for (h, &s) in sums.iter().enumerate() {
                let o = o.add(16 * h);
                let v = if args.first {
                    s
                } else {
                    _mm512_add_ps(_mm512_loadu_ps(o), s)
                };
                _mm512_storeu_ps(o, v);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn block_avx2<B: Rows>(args: Block<B>, out: &mut [f32]) {
    tiles::<{ TILE_ROWS_NARROW }, 16, 24, 48, B>(args, out)
}

fn block_baseline<B: Rows>(args: Block<B>, out: &mut [f32]) {
    tiles::<{ TILE_ROWS_NARROW }, 8, 12, 24, B>(args, out)
}

/// The rows of a full tile of the AVX-512 kernels, and of the AVX2 and portable ones.
const TILE_ROWS_AVX512: usize = 8;
const TILE_ROWS_NARROW: usize = 6;
/// The rows of a first layer's weight gradient, `d[W | b]^T [10, C_out] = [col; 1] [10, n] x
/// dz^T`, which AVX-512 takes in one tile of all ten (20 of the 32 registers for 32 filters):
/// tiles of 8 and 2 read `dz^T` twice, and the 2-row tile waits on its two sums.
const FIRST_LAYER_ROWS: usize = 10;

/// The rows of [`product`]'s full tiles with the kernels of [`crate::isa::isa`]: rows past
/// the last multiple of it go through narrower tiles, which multiply less per value they
/// load, so computing a few unwanted rows to fill a tile can cost less than leaving them out.
pub(crate) fn tile_rows() -> usize {
    match crate::isa::isa() {
        Isa::Avx512 => TILE_ROWS_AVX512,
        _ => TILE_ROWS_NARROW,
    }
}

/// The tiles of one block: `R x P` where there are `R` rows, else `4 x P4`, else `2 x P2`.
#[inline(always)]
fn tiles<const R: usize, const P: usize, const P4: usize, const P2: usize, B: Rows>(
    args: Block<B>,
    out: &mut [f32],
) {
    let m = args.shape.0;
    if m >= R {
        bands::<R, P, B>(args, out)
    } else if m >= 4 {
        bands::<4, P4, B>(args, out)
    } else {
        bands::<2, P2, B>(args, out)
    }
}

/// Bands of `P` columns, then narrower ones (32, 16, 8) for the last columns, then one at a
/// time; in each band, tiles of `R` rows and the last rows in tiles of 4, 2 and 1.
#[inline(always)]
fn bands<const R: usize, const P: usize, B: Rows>(args: Block<B>, out: &mut [f32]) {
    bands_from::<R, P, B>(args, 0, out)
}

/// [`bands`] of the columns `from..`.
#[inline(always)]
fn bands_from<const R: usize, const P: usize, B: Rows>(
    args: Block<B>,
    from: usize,
    out: &mut [f32],
) {
    let j = columns::<R, P, B>(args, from, out);
    let j = if P > 32 {
        columns::<R, 32, B>(args, j, out)
    } else {
        j
    };
    let j = if P > 16 {
        columns::<R, 16, B>(args, j, out)
    } else {
        j
    };
    let j = if P > 8 {
        columns::<R, 8, B>(args, j, out)
    } else {
        j
    };
    columns::<R, 1, B>(args, j, out);
}

/// The columns `from..` of [`bands`] in bands of `P`; returns where the last full band ends.
#[inline(always)]
fn columns<const R: usize, const P: usize, B: Rows>(
    args: Block<B>,
    from: usize,
    out: &mut [f32],
) -> usize {
    let (m, _, n) = args.shape;
    let (full_m, end) = (m / R * R, from + (n - from) / P * P);
    for j0 in (from..end).step_by(P) {
        for i0 in (0..full_m).step_by(R) {
            tile::<R, P, B>(args, (i0, j0), out);
        }
        last_rows::<P, B>(args, (full_m, j0), out);
    }
    end
}

/// Rows `from..m` of the band of `P` columns at `j0`, in tiles of 4, 2 and 1.
#[inline(always)]
fn last_rows<const P: usize, B: Rows>(args: Block<B>, (from, j0): (usize, usize), out: &mut [f32]) {
    let m = args.shape.0;
    let mut i = from;
    while i + 4 <= m {
        tile::<4, P, B>(args, (i, j0), out);
        i += 4;
    }
    while i + 2 <= m {
        tile::<2, P, B>(args, (i, j0), out);
        i += 2;
    }
    if i < m {
        tile::<1, P, B>(args, (i, j0), out);
    }
}

/// Rows `i0..i0+R` by columns `j0..j0+P` of one block of a product; inlined into each
/// version's `block_*`, where its loops become vector multiply-adds.
#[inline(always)]
fn tile<const R: usize, const P: usize, B: Rows>(
    args: Block<B>,
    (i0, j0): (usize, usize),
    out: &mut [f32],
) {
    let (a, (m, q, n), (q0, q1)) = (args.a, args.shape, args.depth);
    debug_assert!(i0 + R <= m && j0 + P <= n && m * q <= a.len() && q1 <= q);
    let mut acc = [[0.0f32; P]; R];
    for p in q0..q1 {
        // SAFETY: `product_over` checked `b` for `q` rows of `n` and `a` for `m x q`, and
        // `p < q1 <= q`, `j0 + P <= n`, `i0 + R <= m` (the tiles cover `[m, n]` exactly).
        let x: [f32; P] = unsafe { args.b.row::<P>(p, j0) };
        for (r, row) in acc.iter_mut().enumerate() {
            let w = unsafe { *a.get_unchecked((i0 + r) * q + p) };
            for j in 0..P {
                row[j] = x[j].mul_add(w, row[j]);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let o = &mut out[(i0 + r) * n + j0..][..P];
        if args.first {
            o.copy_from_slice(row);
        } else {
            for (d, &s) in o.iter_mut().zip(row) {
                *d += s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{matmul, matmul_strided, Mat};
    use crate::testkit::{bits, gemm_depth_here, reference, values};

    /// The product is the plain sum in its blocks, and equals the GEMM path bit for bit, both
    /// as the forward convolution calls it (transposed, into a strided output) and as the
    /// input gradient does, with every version of the kernels this CPU runs: wherever the
    /// engine uses it, and `gemm` blocks as [`gemm_depth`] says on this CPU.
    #[test]
    fn the_same_bits_as_the_gemm_path() {
        let shapes = [
            (16, 146, 784),
            (16, 10, 3136),
            (4, 145, 784),
            (2, 37, 196),
            (16, 144, 784),
            (1, 1, 1),
            (7, 300, 33),
            (32, 289, 784),
            (9, 513, 40),
            (3, 5, 17),
            (13, 256, 64),
            (8, 257, 48),
            (145, 784, 16),
            (10, 3136, 16),
            (10, 3136, 32),
            (10, 300, 45),
            (289, 784, 32),
            (145, 196, 4),
            (19, 600, 20),
            (2, 10, 3136),
            (4, 19, 784),
            (2, 36, 784),
            (5, 73, 1001),
            (3, 256, 250),
            (4, 289, 784),
            (2, 289, 784),
            (2, 600, 300),
            (3, 1100, 70),
            (5, 700, 40),
            (4, 1537, 196),
        ];
        for (i, &(m, q, n)) in shapes.iter().enumerate() {
            let a = values(m * q, 3 + i as u64);
            let b = values(q * n, 77 + i as u64);
            let mut got = vec![f32::NAN; m * n];
            product(&a, &b, (m, q, n), &mut got);
            let depth = block_depth(m, q, n).unwrap_or(KC);
            let want = reference(&a, &b, (m, q, n), depth);
            assert_eq!(bits(&got), bits(&want), "the plain sum {m}x{q}x{n}");
            for isa in Isa::available() {
                let mut other = vec![f32::NAN; m * n];
                product_with(isa, &a, &b, (m, q, n), &mut other);
                assert_eq!(bits(&other), bits(&got), "{} {m}x{q}x{n}", isa.name());
            }
            // As the forward convolution: out^T [n, m] = b^T [n, q] x a^T [q, m], strided.
            let mut fwd = vec![f32::NAN; m * n];
            matmul_strided(n, m, q, Mat::t(&b, n), Mat::t(&a, q), &mut fwd, 1, n, false);
            // As the input gradient: out [m, n] = a [m, q] x b [q, n].
            let mut bwd = vec![f32::NAN; m * n];
            matmul(
                m,
                n,
                q,
                Mat::rows(&a, q),
                Mat::rows(&b, n),
                &mut bwd,
                n,
                false,
            );
            // As the weight gradient: out^T [n, m] = bt [n, q] x a^T [q, m], strided into out's
            // layout, with bt [n, q] the transpose of b.
            let mut bt = vec![0.0; q * n];
            for p in 0..q {
                for j in 0..n {
                    bt[j * q + p] = b[p * n + j];
                }
            }
            let mut wgt = vec![f32::NAN; m * n];
            matmul_strided(
                m,
                n,
                q,
                Mat::rows(&a, q),
                Mat::t(&bt, q),
                &mut wgt,
                n,
                1,
                false,
            );
            let theirs = if q <= KC || (m >= 8 && n >= 8) {
                KC
            } else {
                gemm_depth_here(m, q, n)
            };
            if pays(m, q, n) && theirs == depth {
                assert_eq!(bits(&got), bits(&fwd), "forward {m}x{q}x{n}");
                assert_eq!(bits(&got), bits(&bwd), "input gradient {m}x{q}x{n}");
            }
            // The weight gradient's layout goes to `gemm`'s dot-product kernels on thin
            // shapes, which sum in another order; the engine uses the direct product for it
            // only where `matrixmultiply` computes it.
            if m >= 8 && n >= 8 {
                assert_eq!(bits(&got), bits(&wgt), "weight gradient {m}x{q}x{n}");
            }
        }
    }

    /// The unfolded operand read in place gives the bits of the product with im2col's copy,
    /// on odd and even maps, 3x3 and 5x5 kernels, every version; +0.0 where masked, even
    /// when the margin holds NaNs and the maps hold -0.0.
    #[test]
    fn unfolded_in_place_equals_im2col() {
        for (i, &(m, c, b, h, w, k)) in [
            (16, 16, 4, 14, 14, 3),
            (8, 3, 2, 7, 9, 5),
            (13, 5, 3, 6, 6, 3),
            (32, 32, 4, 14, 14, 3),
            (9, 2, 1, 1, 1, 3),
            (2, 4, 4, 14, 14, 3),
            (5, 16, 2, 14, 14, 3),
            (10, 1, 3, 5, 7, 3),
            (3, 2, 1, 3, 11, 5),
        ]
        .iter()
        .enumerate()
        {
            let n = b * h * w;
            let q = c * k * k;
            let mut x = values(c * n, 5 + i as u64);
            x[0] = -0.0;
            let margin = (k / 2) * (w + 1) + 3;
            let mut padded = vec![f32::NAN; margin];
            padded.extend_from_slice(&x);
            padded.extend(std::iter::repeat_n(f32::NAN, margin));
            let a = values(m * q, 9 + i as u64);
            let mut col = vec![f32::NAN; q * n];
            crate::ops::im2col(&x, c, b, h, w, k, &mut col);
            let masks = unfold_masks(h, w, k, b + 1);
            let mut taps = Vec::new();
            unfold_taps((c, n, w, k), margin, masks.stride, &mut taps);
            for isa in Isa::available() {
                let mut want = vec![f32::NAN; m * n];
                product_with(isa, &a, &col, (m, q, n), &mut want);
                let mut got = vec![f32::NAN; m * n];
                let b = Unfolded {
                    x: &padded,
                    taps: &taps,
                    masks: &masks,
                };
                product_of(isa, &a, b, (m, q, n), &mut got);
                assert_eq!(bits(&got), bits(&want), "{} case {i}", isa.name());
            }
        }
    }

    #[test]
    fn an_empty_depth_gives_zeros() {
        let mut out = vec![f32::NAN; 6];
        product(&[], &[], (2, 0, 3), &mut out);
        assert_eq!(out, vec![0.0; 6]);
    }

    /// The tiles read their right operand unchecked, so each operand proves its reads in
    /// range before a product starts: an unfolded input or its masks one value short panics
    /// instead of reading past it.
    #[test]
    fn an_unfolded_operand_too_short_panics_before_reading() {
        let (a, x, masks, taps, shape) = small_unfolded();
        let whole = Unfolded {
            x: &x,
            taps: &taps,
            masks: &masks,
        };
        assert!(try_product(Isa::Baseline, &a, whole, shape).is_ok());
        let short = Unfolded {
            x: &x[..x.len() - 1],
            ..whole
        };
        assert!(
            try_product(Isa::Baseline, &a, short, shape).is_err(),
            "x one value short"
        );
        let mut short = masks.clone();
        short.words.pop();
        let masks_short = Unfolded {
            masks: &short,
            ..whole
        };
        for isa in Isa::available() {
            let got = try_product(isa, &a, masks_short, shape);
            assert!(got.is_err(), "{}: masks one value short", isa.name());
        }
    }

    /// The AVX-512 form of the unfolded operand ([`Unfolded512`]) checks its mask bits too,
    /// and no other version's kernels may read it.
    #[test]
    fn an_avx512_operand_short_of_its_bits_or_read_elsewhere_panics() {
        if !Isa::Avx512.supported() {
            return;
        }
        let (a, x, masks, taps, shape) = small_unfolded();
        let whole = Unfolded {
            x: &x,
            taps: &taps,
            masks: &masks,
        };
        assert!(try_product(Isa::Avx512, &a, whole, shape).is_ok());
        let mut short = masks.clone();
        short.bits.pop();
        let bits_short = Unfolded {
            masks: &short,
            ..whole
        };
        let got = try_product(Isa::Avx512, &a, bits_short, shape);
        assert!(got.is_err(), "mask bits one word short");
        let got = try_product(Isa::Baseline, &a, whole.avx512(), shape);
        assert!(got.is_err(), "the AVX-512 operand refused to the baseline");
    }

    /// A small unfolded operand with no slack: its weights, input, masks, taps and shape.
    #[allow(clippy::type_complexity)]
    fn small_unfolded() -> (
        Vec<f32>,
        Vec<f32>,
        UnfoldMasks,
        Vec<(usize, usize)>,
        (usize, usize, usize),
    ) {
        let (m, c, b, h, w, k) = (8, 2, 1, 4, 4, 3);
        let (n, q) = (b * h * w, c * k * k);
        let margin = (k / 2) * (w + 1);
        let x = values(margin + c * n + margin, 2);
        let masks = unfold_masks(h, w, k, b);
        let mut taps = Vec::new();
        unfold_taps((c, n, w, k), margin, masks.stride, &mut taps);
        (values(m * q, 1), x, masks, taps, (m, q, n))
    }

    /// [`product_of`] with `isa`, its panic caught.
    fn try_product<B: Rows>(
        isa: Isa,
        a: &[f32],
        b: B,
        (m, q, n): (usize, usize, usize),
    ) -> std::thread::Result<()> {
        // Nothing outlives the panic but the result.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut out = vec![0.0; m * n];
            product_of(isa, a, b, (m, q, n), &mut out)
        }))
    }

    /// As [`an_unfolded_operand_too_short_panics_before_reading`]: a gathered row past the
    /// operand, a dense operand one value short, rows narrower than the product.
    #[test]
    fn a_gathered_or_dense_operand_too_short_panics_before_reading() {
        let (m, q, n) = (8, 18, 16);
        let a = values(m * q, 1);
        let dense = values(q * n, 3);
        let mut out = vec![0.0; m * n];
        let rows: Vec<usize> = (0..q).collect();
        let gathered = Gathered {
            b: &dense,
            n,
            rows: &rows,
        };
        product_gathered(&a, gathered, (m, q, n), &[(0, q)], &mut out);
        let mut past = rows.clone();
        past[q - 1] = q;
        let result = std::panic::catch_unwind(|| {
            let mut out = vec![0.0; m * n];
            let b = Gathered {
                b: &dense,
                n,
                rows: &past,
            };
            product_gathered(&a, b, (m, q, n), &[(0, q)], &mut out)
        });
        assert!(result.is_err(), "a gathered row past the operand");
        let result = std::panic::catch_unwind(|| {
            let mut out = vec![0.0; m * n];
            product_with(Isa::Baseline, &a, &dense[..q * n - 1], (m, q, n), &mut out)
        });
        assert!(result.is_err(), "a dense operand one value short");
        let b = Dense {
            b: &dense,
            n: n - 1,
        };
        let result = std::panic::catch_unwind(|| b.check(q, n));
        assert!(result.is_err(), "rows narrower than the product");
    }
}
