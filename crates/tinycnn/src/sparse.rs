//! A pooled layer's weight gradient from the positions that carry a gradient.
//!
//! After 2x2 max pooling, a layer's `dz [C, n]` is zero wherever the pooling did not pick the
//! position (three values in four), and after ReLU also at every winner whose maximum was not
//! positive. The direct product ([`crate::direct`]) multiplies every one of those zeros in
//! the weight gradient `d[W | b] [C, q] = dz [C, n] x [col; 1]^T [n, q]`. Here it is computed
//! from the non-zero values of `dz` alone, gathered per filter in position order
//! ([`Nonzeros`]): for each non-zero `g = dz[c, p]`, `g` times the input's 3x3 patch at `p`,
//! read from a copy of the layer's input padded by one and laid out channels-last, so that a
//! vector holds a tap's value in as many input channels as it has lanes, nine vectors a
//! patch. The gradient of max pooling is its definition (only the maximum passes a gradient;
//! Boureau, Ponce & LeCun 2010, "A theoretical analysis of feature pooling in visual
//! recognition"); this module only declines to multiply the zeros.
//!
//! **Same bits as the direct product.** Each output is the direct product's sum, in the same
//! order and the same blocks ([`crate::direct::block_depth`]), less terms whose product is a
//! zero (`dz = ±0` times a finite value). Leaving out such a term leaves a non-zero partial
//! sum as it is, and a multiply-add of a non-zero product gives the same on `+0` and `-0`; so
//! the two sums can differ only in the sign of a zero, where a partial sum rounded to `-0`
//! (an underflow) and a left-out `+0` would have made it `+0`. A `-0` from the direct
//! product implies a `-0` here, so every output that comes out `-0` is recomputed with the
//! direct product's definition; the others are its results. Where the input is not finite
//! (`0 x inf` is NaN), the caller runs the direct product: [`weight_gradient`] returns
//! `false` without writing.
//!
//! Only 3x3 kernels (every architecture of the thesis and the sweeps): the nine taps are
//! compile-time constants, so that their accumulators stay in registers. The caller takes
//! it for layers after the first (`net::sparse_takes`). Tried and left out (README, "Speed"):
//! the first layer's patches the same way, and the input gradient scattered from the
//! non-zeros; both measured slower than the direct product.
//!
//! Must not change the order of any sum, and must not allocate once its buffers are sized.

use crate::direct::blocks;
use crate::isa::Isa;
use crate::silent::{all_finite, any_negative_zero};
use crate::transpose::transpose_with;

/// The kernel side these products handle.
pub const K: usize = 3;
/// Taps of a 3x3 kernel.
const TAPS: usize = K * K;
/// Values after a padded copy, so that a vector may start at any of its positions.
const SLACK: usize = 16;
/// Values a buffer may skip so that the copy starts on a 64-byte line ([`aligned`]).
const ALIGN: usize = 64 / std::mem::size_of::<f32>();
/// The bits of `-0.0`.
const NEG_ZERO: u32 = 0x8000_0000;

/// Each filter's non-zero values of `dz [C, n]` with their positions, in position order.
#[derive(Debug, Default)]
pub(crate) struct Nonzeros {
    /// Filter `c`'s entries are `start[c]..start[c + 1]`.
    start: Vec<usize>,
    pos: Vec<u32>,
    val: Vec<f32>,
}

impl Nonzeros {
    /// Gathers the values of `dz [c, n]` that are not `±0` (a NaN is kept), row by row.
    pub(crate) fn collect(&mut self, dz: &[f32], shape: (usize, usize)) {
        self.collect_with(crate::isa::isa(), dz, shape)
    }

    /// [`Nonzeros::collect`] with the kernels of `isa` (tests run each).
    fn collect_with(&mut self, isa: Isa, dz: &[f32], (c, n): (usize, usize)) {
        // Room for a whole vector written past the last value kept.
        if self.pos.len() < c * n + 16 {
            self.pos.resize(c * n + 16, 0);
            self.val.resize(c * n + 16, 0.0);
        }
        self.start.clear();
        self.start.push(0);
        let mut k = 0;
        for row in dz[..c * n].chunks_exact(n.max(1)) {
            let (pos, val) = (&mut self.pos[k..k + n + 16], &mut self.val[k..k + n + 16]);
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx512 && isa.supported() {
                // SAFETY: the CPU has AVX-512 (checked); `pos` and `val` hold `n + 16`.
                k += unsafe { keep_nonzero_avx512(row, pos, val) };
                self.start.push(k);
                continue;
            }
            k += keep_nonzero(row, pos, val);
            self.start.push(k);
        }
    }

    /// Filter `c`'s positions and values.
    fn of(&self, c: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.start[c], self.start[c + 1]);
        (&self.pos[a..b], &self.val[a..b])
    }
}

/// Writes `row`'s non-zero values and their positions to the front of `val` and `pos`
/// (`row.len()` each at least), in order; returns how many.
fn keep_nonzero(row: &[f32], pos: &mut [u32], val: &mut [f32]) -> usize {
    let mut k = 0;
    // Branch-free: write every value, advance past the non-zero ones (k <= p).
    for (p, &g) in row.iter().enumerate() {
        pos[k] = p as u32;
        val[k] = g;
        k += (g != 0.0) as usize;
    }
    k
}

/// [`keep_nonzero`] 16 values at a time, compressed in registers (a compress straight to
/// memory is microcoded on Zen 4). `pos` and `val` need `row.len() + 16` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn keep_nonzero_avx512(row: &[f32], pos: &mut [u32], val: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let n = row.len();
    assert!(pos.len() >= n + 16 && val.len() >= n + 16);
    let (zero, step) = (_mm512_setzero_ps(), _mm512_set1_epi32(16));
    let mut at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let (mut k, mut p) = (0, 0);
    while p + 16 <= n {
        // SAFETY: `p + 16 <= n`; `k <= p`, so `k + 16 <= n + 16`, within both outputs.
        unsafe {
            let v = _mm512_loadu_ps(row.as_ptr().add(p));
            // Not equal, or unordered: NaNs are kept, both zeros dropped.
            let m = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero);
            _mm512_storeu_ps(val.as_mut_ptr().add(k), _mm512_maskz_compress_ps(m, v));
            let idx = _mm512_maskz_compress_epi32(m, at);
            _mm512_storeu_si512(pos.as_mut_ptr().add(k).cast(), idx);
            k += m.count_ones() as usize;
        }
        at = _mm512_add_epi32(at, step);
        p += 16;
    }
    k + keep_nonzero_from(row, p, &mut pos[k..], &mut val[k..])
}

/// [`keep_nonzero`] of `row[p0..]`, with positions counted from the row's start.
#[cfg(target_arch = "x86_64")]
fn keep_nonzero_from(row: &[f32], p0: usize, pos: &mut [u32], val: &mut [f32]) -> usize {
    let k = keep_nonzero(&row[p0..], pos, val);
    for p in &mut pos[..k] {
        *p += p0 as u32;
    }
    k
}

/// A layer's sizes for one chunk: `cin` input channels, `cout` filters, `b` images of
/// `h x w` (the conv output's size, "same" padding, 3x3 kernels).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub cin: usize,
    pub cout: usize,
    pub b: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    fn n(&self) -> usize {
        self.b * self.h * self.w
    }

    /// Values in a copy of the chunk padded by one on every side, `cp` per position.
    fn padded(&self, cp: usize) -> usize {
        self.b * (self.h + 2) * (self.w + 2) * cp + SLACK
    }

    /// Where tap `(ty, tx)` of a position reads, relative to it, in such a copy.
    fn tap(&self, (ty, tx): (usize, usize), cp: usize) -> isize {
        ((ty as isize - 1) * (self.w as isize + 2) + tx as isize - 1) * cp as isize
    }
}

/// Where each of `images x h x w` positions sits in a copy of the chunk padded by one on
/// every side, `[images, h + 2, w + 2]`, in positions ([`padded_row`] plus the column).
pub(crate) fn frame(images: usize, h: usize, w: usize) -> Vec<u32> {
    let s = Shape {
        cin: 0,
        cout: 0,
        b: images,
        h,
        w,
    };
    (0..images * h)
        .flat_map(|r| (0..w).map(move |x| (padded_row(s, r) + x) as u32))
        .collect()
}

/// Values each buffer of [`weight_gradient`] needs at most for a layer of `cin` inputs on
/// `cap` images of `h x w`: a padded copy, from the first 64-byte line in the buffer.
pub(crate) fn scratch_len(cin: usize, cap: usize, h: usize, w: usize) -> usize {
    let cp = cin.next_multiple_of(16);
    let s = Shape {
        cin,
        cout: 0,
        b: cap,
        h,
        w,
    };
    s.padded(cp) + ALIGN
}

/// The vector width (in f32) for `cin` channels with `isa`: the narrowest of the version's
/// widths that holds them, so that a thin input wastes few lanes.
fn lanes(isa: Isa, cin: usize) -> usize {
    let widest = match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 => 8,
        Isa::Baseline => 4,
    };
    [4, 8, 16]
        .into_iter()
        .find(|&l| l >= cin)
        .unwrap_or(16)
        .min(widest)
}

/// `x [cin, n]` into `xt [b, h + 2, w + 2, cp]` (zeros around each image and past `cin`),
/// through `tmp` (`n * cin` values): transposed with the vector kernels, then copied a row
/// of the image at a time.
fn pad_channels_last(isa: Isa, x: &[f32], s: Shape, cp: usize, tmp: &mut [f32], xt: &mut [f32]) {
    let (n, cin) = (s.n(), s.cin);
    xt[..s.padded(cp)].fill(0.0);
    let src: &[f32] = if cin == 1 {
        x
    } else {
        transpose_with(isa, &x[..cin * n], (cin, n), tmp);
        tmp
    };
    for (r, row) in src[..n * cin].chunks_exact(s.w * cin).enumerate() {
        let at = padded_row(s, r) * cp;
        if cp == cin {
            xt[at..at + s.w * cin].copy_from_slice(row);
        } else {
            for (d, v) in xt[at..].chunks_mut(cp).zip(row.chunks_exact(cin)) {
                d[..cin].copy_from_slice(v);
            }
        }
    }
}

/// `buf` from its first 64-byte boundary on. A patch's vectors then each lie in one cache
/// line (with 16 or 8 lanes and as many channels per position): loads that cross a line
/// cost a second access, and the nine per non-zero made the gather a third slower
/// (timed inside a 32-32's training step, 2026-12-05).
fn aligned(buf: &mut [f32]) -> &mut [f32] {
    let skip = buf.as_ptr().align_offset(64).min(buf.len());
    &mut buf[skip..]
}

/// Where row `r` of the chunk (image `r / h`, row `r % h`) starts in the padded copy, in
/// positions.
fn padded_row(s: Shape, r: usize) -> usize {
    ((r / s.h) * (s.h + 2) + r % s.h + 1) * (s.w + 2) + 1
}

/// What [`weight_gradient`] reads.
#[derive(Clone, Copy)]
pub(crate) struct WeightArgs<'a> {
    pub nz: &'a Nonzeros,
    /// The layer's input `[cin, n]`.
    pub x: &'a [f32],
    /// `dz [cout, n]`, for the outputs recomputed densely.
    pub dz: &'a [f32],
    /// [`frame`] of the layer.
    pub frame: &'a [u32],
    /// The blocks over positions ([`crate::direct::block_depth`]).
    pub depth: usize,
}

/// `d[W | b]` of a 3x3 layer from `dz`'s non-zeros ([`Nonzeros`]), into `gw [cout, cin*9]`
/// and `gb [cout]`, bit for bit the direct product's `dz x [col; 1]^T` in blocks of `depth`
/// positions. Returns `false`, writing nothing, where the input is not finite.
///
/// # Shapes
/// `x [cin, n]`, `col [cin*9 + 1, n]`, `dz [cout, n]`, `n = b*h*w`; two buffers of
/// [`scratch_len`].
pub(crate) fn weight_gradient(
    isa: Isa,
    a: WeightArgs,
    s: Shape,
    scratch: [&mut [f32]; 2],
    gw: &mut [f32],
    gb: &mut [f32],
) -> bool {
    assert!(isa.supported(), "sparse: no {} here", isa.name());
    let n = s.n();
    if !all_finite(&a.x[..s.cin * n]) {
        return false;
    }
    let kdim = s.cin * TAPS;
    let [padded, tmp] = scratch;
    let padded = aligned(padded);
    let l = lanes(isa, s.cin);
    let cp = s.cin.next_multiple_of(l);
    pad_channels_last(isa, a.x, s, cp, tmp, padded);
    let offs: [isize; TAPS] = std::array::from_fn(|t| s.tap((t / K, t % K), cp));
    patches_inside(a.frame, (padded, cp, &offs));
    #[cfg(target_arch = "x86_64")]
    let both = isa == Isa::Avx512 && cp == 2 * l;
    #[cfg(not(target_arch = "x86_64"))]
    let both = false;
    for (c, gb) in gb[..s.cout].iter_mut().enumerate() {
        if both {
            let g = Gather::new(a, c, padded, cp, 0);
            *gb = pass_both(g, &offs, (gw, c), s);
            continue;
        }
        for lane0 in (0..s.cin).step_by(l) {
            let g = Gather::new(a, c, padded, cp, lane0);
            let bias = match l {
                16 => pass::<16>(isa, g, &offs, (gw, c), s),
                8 => pass::<8>(isa, g, &offs, (gw, c), s),
                _ => pass::<4>(isa, g, &offs, (gw, c), s),
            };
            if lane0 == 0 {
                *gb = bias;
            }
        }
    }
    // Outputs that came out -0 may be +0 in the dense product: recompute them.
    if !any_negative_zero(&gw[..s.cout * kdim]) && !any_negative_zero(&gb[..s.cout]) {
        return true;
    }
    for c in 0..s.cout {
        for q in 0..=kdim {
            let v = if q < kdim { gw[c * kdim + q] } else { gb[c] };
            if v.to_bits() == NEG_ZERO {
                let d = dense_weight(a, (padded, cp, &offs), (c, q), (n, kdim));
                if q < kdim {
                    gw[c * kdim + q] = d;
                } else {
                    gb[c] = d;
                }
            }
        }
    }
    true
}

/// Panics unless every patch of every position of `frame` lies in `x`, whichever lanes of
/// its `cp` values per position a pass reads: the proof [`gather`]'s unchecked reads rest on.
fn patches_inside(frame: &[u32], (x, cp, offs): (&[f32], usize, &[isize; TAPS])) {
    let (lo, hi) = (offs.iter().min(), offs.iter().max());
    let (lo, hi) = (*lo.unwrap_or(&0), *hi.unwrap_or(&0));
    let (fmin, fmax) = (frame.iter().min(), frame.iter().max());
    let (fmin, fmax) = (*fmin.unwrap_or(&0) as usize, *fmax.unwrap_or(&0) as usize);
    let first = (fmin * cp).checked_add_signed(lo);
    let end = ((fmax + 1) * cp).checked_add_signed(hi);
    assert!(
        first.is_some() && end.is_some_and(|e| e <= x.len()),
        "sparse: a patch outside the padded copy of {} values",
        x.len()
    );
}

/// One pass: lanes `lane0..lane0 + L` of filter `c`'s 9 taps, written into `gw`;
/// returns the bias's gradient.
fn pass<const L: usize>(
    isa: Isa,
    g: Gather,
    offs: &[isize; TAPS],
    (gw, c): (&mut [f32], usize),
    s: Shape,
) -> f32 {
    let (total, bias) = gather_with::<TAPS, L>(isa, g, offs);
    write_lanes(&total, g.lane0, (gw, c), s);
    bias
}

/// A pass's totals `[tap][lane]` of filter `c` into `gw [cout, cin*9]`, lanes `lane0..` up
/// to the last input channel.
fn write_lanes<const L: usize>(
    total: &[[f32; L]; TAPS],
    lane0: usize,
    (gw, c): (&mut [f32], usize),
    s: Shape,
) {
    let kdim = s.cin * TAPS;
    for j in 0..L.min(s.cin - lane0) {
        for (t, row) in total.iter().enumerate() {
            gw[c * kdim + (lane0 + j) * TAPS + t] = row[j];
        }
    }
}

/// [`pass`] of all 32 lanes of a position (17 to 32 input channels, AVX-512) at once: one
/// pass per filter instead of two, so that each non-zero's position, value and patch address
/// are read once for 18 multiply-adds, and a filter's bookkeeping (its blocks, its outputs'
/// writes) is done once. Written with intrinsics: the plain loop of [`gather`] with 32 lanes
/// kept its 18 sums and their totals in registers at once and spilled (measured 40% slower).
#[cfg(target_arch = "x86_64")]
fn pass_both(g: Gather, offs: &[isize; TAPS], (gw, c): (&mut [f32], usize), s: Shape) -> f32 {
    let mut total = [[0.0f32; 32]; TAPS];
    // SAFETY: `weight_gradient` asserted that the CPU runs AVX-512.
    let bias = unsafe { gather_both(g, offs, &mut total) };
    write_lanes(&total, g.lane0, (gw, c), s);
    bias
}

/// [`gather`] of 32 lanes in two 512-bit halves into `total` (which must hold zeros), and
/// the bias's sum, in the same order: each block's 18 sums from zero over its non-zeros in
/// position order, then added to `total` in order ([`add_block`]).
///
/// # Safety
/// The CPU runs AVX-512 F.
// A numeric kernel: the 18 sums must stay in registers, so the inner loop is one block's
// non-zeros with nothing else in it, and the totals live in memory.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_both(g: Gather, offs: &[isize; TAPS], total: &mut [[f32; 32]; TAPS]) -> f32 {
    use std::arch::x86_64::*;
    assert!(
        g.lane0 + 32 <= g.cp,
        "sparse: lanes past a position's {}",
        g.cp
    );
    let mut bias = 0.0f32;
    for (i, (pos, val)) in g.blocks().enumerate() {
        let first = i == 0;
        let mut acc = [[_mm512_setzero_ps(); 2]; TAPS];
        let mut sum = 0.0f32;
        for (&p, &v) in pos.iter().zip(val) {
            // SAFETY: as in `gather`: `p < frame.len()` and every patch of the frame lies in
            // `x` (`Gather::new`, `patches_inside`), both halves (`lane0 + 32 <= cp`).
            unsafe {
                let f = *g.frame.get_unchecked(p as usize) as usize;
                let at = g.x.as_ptr().add(f * g.cp + g.lane0);
                let v16 = _mm512_set1_ps(v);
                for (sums, &off) in acc.iter_mut().zip(offs) {
                    let x = at.offset(off);
                    sums[0] = _mm512_fmadd_ps(v16, _mm512_loadu_ps(x), sums[0]);
                    sums[1] = _mm512_fmadd_ps(v16, _mm512_loadu_ps(x.add(16)), sums[1]);
                }
            }
            // The ones row of [col; 1]: fma(1, v, s) is s + v.
            sum += v;
        }
        // SAFETY: the CPU runs AVX-512 F (the caller's contract).
        unsafe { add_block(&acc, first, total) };
        bias = if first { sum } else { bias + sum };
    }
    bias
}

/// Ends a block of [`gather_both`]: its sums become the totals (the first) or are added to
/// them. Not inlined, so that the totals stay in memory rather than in 18 more registers.
///
/// # Safety
/// The CPU runs AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn add_block(
    acc: &[[std::arch::x86_64::__m512; 2]; TAPS],
    first: bool,
    total: &mut [[f32; 32]; TAPS],
) {
    use std::arch::x86_64::*;
    for (t, sums) in total.iter_mut().zip(acc) {
        for (h, &s) in sums.iter().enumerate() {
            // SAFETY: 16 values from `16 * h` of 32.
            unsafe {
                let d = t.as_mut_ptr().add(16 * h);
                let v = if first {
                    s
                } else {
                    _mm512_add_ps(_mm512_loadu_ps(d), s)
                };
                _mm512_storeu_ps(d, v);
            }
        }
    }
}

/// The dense definition of weight-gradient output `(c, q)`: row `q` of `[col; 1]` against
/// filter `c`'s `dz`, over `n` positions in blocks. Row `q < kdim = cin*9` (channel `q / 9`, tap
/// `q % 9`) is read from the padded copy `x` (`cp` values per position, taps at `offs`),
/// which holds what im2col writes: the input, and +0 outside the image; the last row is ones.
fn dense_weight(
    a: WeightArgs,
    (x, cp, offs): (&[f32], usize, &[isize; TAPS]),
    (c, q): (usize, usize),
    (n, kdim): (usize, usize),
) -> f32 {
    let col = |p: usize| -> f32 {
        if q == kdim {
            return 1.0;
        }
        let at = (a.frame[p] as usize * cp).wrapping_add_signed(offs[q % TAPS]);
        x[at + q / TAPS]
    };
    let mut total = 0.0f32;
    for (p0, p1, first) in blocks(n, a.depth) {
        let mut acc = 0.0f32;
        for p in p0..p1 {
            acc = a.dz[c * n + p].mul_add(col(p), acc);
        }
        total = if first { acc } else { total + acc };
    }
    total
}

/// One pass of the weight gradient over a filter's non-zeros.
#[derive(Clone, Copy)]
struct Gather<'a> {
    pos: &'a [u32],
    val: &'a [f32],
    /// The padded copy, `cp` values per position.
    x: &'a [f32],
    /// [`frame`] of the layer.
    frame: &'a [u32],
    cp: usize,
    lane0: usize,
    depth: usize,
}

impl<'a> Gather<'a> {
    /// The filter's non-zeros `(positions, values)` block by block: the runs that fall in one
    /// block of `depth` positions, in order (blocks without non-zeros left out).
    fn blocks(&self) -> impl Iterator<Item = (&'a [u32], &'a [f32])> {
        let (mut pos, mut val, depth) = (self.pos, self.val, self.depth);
        std::iter::from_fn(move || {
            let &p0 = pos.first()?;
            let end = (p0 as usize / depth + 1) * depth;
            let k = pos.partition_point(|&p| (p as usize) < end);
            let block = (&pos[..k], &val[..k]);
            (pos, val) = (&pos[k..], &val[k..]);
            Some(block)
        })
    }

    /// Filter `c`'s pass from lane `lane0` of `x` (`cp` values per position). Panics unless
    /// every position of the filter is in the frame: with [`patches_inside`], every read of
    /// [`gather`], which reads unchecked, lies in `x`.
    fn new(a: WeightArgs<'a>, c: usize, x: &'a [f32], cp: usize, lane0: usize) -> Gather<'a> {
        let (pos, val) = a.nz.of(c);
        let n = a.frame.len();
        // A fold, not `all`: no early exit, so that it vectorises (a scalar loop per pass
        // cost as much as a pass's bookkeeping).
        let last = pos.iter().fold(0, |m, &p| m.max(p));
        assert!(
            pos.len() == val.len() && (pos.is_empty() || (last as usize) < n),
            "sparse: a position past the frame's {n}"
        );
        Gather {
            pos,
            val,
            x,
            frame: a.frame,
            cp,
            lane0,
            depth: a.depth,
        }
    }
}

/// [`gather`] compiled for `isa`.
fn gather_with<const T: usize, const L: usize>(
    isa: Isa,
    g: Gather,
    offs: &[isize; T],
) -> ([[f32; L]; T], f32) {
    match isa {
        // SAFETY: `weight_gradient` asserted that the CPU runs `isa`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { gather_avx512::<T, L>(g, offs) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { gather_avx2::<T, L>(g, offs) },
        _ => gather::<T, L>(g, offs),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
fn gather_avx512<const T: usize, const L: usize>(
    g: Gather,
    offs: &[isize; T],
) -> ([[f32; L]; T], f32) {
    gather::<T, L>(g, offs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gather_avx2<const T: usize, const L: usize>(
    g: Gather,
    offs: &[isize; T],
) -> ([[f32; L]; T], f32) {
    gather::<T, L>(g, offs)
}

/// `total[t][j] = sum over the non-zeros (p, v) of v * x[at(p) + offs[t] + lane0 + j]`, and
/// the bias's `sum of v`, each summed in position order from zero in blocks of `depth`
/// positions whose sums are added in order (a block without non-zeros adds nothing).
///
/// Reads without bounds checks: [`Gather::new`] and [`patches_inside`] proved every patch of
/// every position inside `x`. With a check and a block test per non-zero, the loop ran three
/// scalar instructions per multiply-add and kept copies of its accumulators across the test
/// (`perf annotate` on an Intel Xeon with two 512-bit FMA units, `bench train --arch 32-32`).
// A numeric kernel: `acc` must stay in registers, so the inner loop is one block's
// non-zeros with nothing else in it.
#[inline(always)]
fn gather<const T: usize, const L: usize>(g: Gather, offs: &[isize; T]) -> ([[f32; L]; T], f32) {
    assert!(
        g.lane0 + L <= g.cp,
        "sparse: lanes past a position's {}",
        g.cp
    );
    let mut total = ([[0.0f32; L]; T], 0.0f32);
    for (i, (pos, val)) in g.blocks().enumerate() {
        let mut acc = ([[0.0f32; L]; T], 0.0f32);
        for (&p, &v) in pos.iter().zip(val) {
            // SAFETY: `p < frame.len()` and the patch at `frame[p]` lies in `x`, for every
            // offset and lane (`Gather::new`, `patches_inside`; `lane0 + L <= cp`).
            let at = unsafe {
                let f = *g.frame.get_unchecked(p as usize) as usize;
                g.x.as_ptr().add(f * g.cp + g.lane0)
            };
            for (sums, &off) in acc.0.iter_mut().zip(offs) {
                let x = unsafe { &*at.offset(off).cast::<[f32; L]>() };
                for (s, &x) in sums.iter_mut().zip(x) {
                    *s = v.mul_add(x, *s);
                }
            }
            // The ones row of [col; 1]: fma(1, v, s) is s + v.
            acc.1 += v;
        }
        flush(&mut total, &mut acc, i == 0);
    }
    total
}

/// Ends a block: its sums become the totals (the first block) or are added to them.
#[inline(always)]
fn flush<const T: usize, const L: usize>(
    total: &mut ([[f32; L]; T], f32),
    acc: &mut ([[f32; L]; T], f32),
    first: bool,
) {
    if first {
        *total = *acc;
    } else {
        for (tr, ar) in total.0.iter_mut().zip(&acc.0) {
            for (t, a) in tr.iter_mut().zip(ar) {
                *t += a;
            }
        }
        total.1 += acc.1;
    }
    *acc = ([[0.0; L]; T], 0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::{block_depth, KC};
    use crate::ops::im2col;
    use crate::testkit::{bits, reference, values};
    use crate::transpose::transpose;

    /// `dz` as a pooled ReLU layer leaves it: most values zero (of both signs), the rest
    /// random.
    fn sparse_values(len: usize, seed: u64) -> Vec<f32> {
        let v = values(len, seed);
        let pick = values(len, seed + 1);
        v.iter()
            .zip(&pick)
            .map(|(&x, &r)| match r {
                r if r < -0.6 => -0.0,
                r if r < 0.5 => 0.0,
                _ => x,
            })
            .collect()
    }

    /// An input with exact zeros (ReLU outputs) of both signs among its values.
    fn input_values(len: usize, seed: u64) -> Vec<f32> {
        values(len, seed)
            .into_iter()
            .enumerate()
            .map(|(i, x)| match i % 7 {
                0 => 0.0,
                3 => -0.0,
                _ => x,
            })
            .collect()
    }

    const SHAPES: [(usize, usize, usize, usize, usize); 7] = [
        // (cin, cout, b, h, w)
        (1, 16, 4, 28, 28),
        (16, 16, 4, 14, 14),
        (32, 32, 4, 14, 14),
        (5, 8, 3, 7, 9),
        (20, 9, 2, 6, 5),
        (1, 8, 1, 5, 4),
        (3, 12, 4, 14, 14),
    ];

    /// The expected `[kdim + 1, cout]` of the direct product, and the sparse result in the
    /// same layout.
    fn weight_case(
        isa: Isa,
        sh: Shape,
        depth: usize,
        x: &[f32],
        dz: &[f32],
    ) -> (Vec<u32>, Vec<u32>) {
        let (n, kdim) = (sh.n(), sh.cin * TAPS);
        let mut col = vec![0.0; (kdim + 1) * n];
        im2col(x, sh.cin, sh.b, sh.h, sh.w, K, &mut col);
        col[kdim * n..].fill(1.0);
        let mut dzt = vec![0.0; n * sh.cout];
        transpose(dz, (sh.cout, n), &mut dzt);
        let want = reference(&col, &dzt, (kdim + 1, n, sh.cout), depth);
        let mut nz = Nonzeros::default();
        nz.collect_with(isa, dz, (sh.cout, n));
        let fr = frame(sh.b, sh.h, sh.w);
        let len = scratch_len(sh.cin, sh.b, sh.h, sh.w);
        let mut bufs = [vec![f32::NAN; len], vec![f32::NAN; len]];
        let [one, two] = &mut bufs;
        let (mut gw, mut gb) = (vec![f32::NAN; sh.cout * kdim], vec![f32::NAN; sh.cout]);
        let args = WeightArgs {
            nz: &nz,
            x,
            dz,
            frame: &fr,
            depth,
        };
        assert!(weight_gradient(isa, args, sh, [one, two], &mut gw, &mut gb));
        let mut got = vec![0.0; (kdim + 1) * sh.cout];
        for c in 0..sh.cout {
            for q in 0..kdim {
                got[q * sh.cout + c] = gw[c * kdim + q];
            }
            got[kdim * sh.cout + c] = gb[c];
        }
        (bits(&got), bits(&want))
    }

    fn shape((cin, cout, b, h, w): (usize, usize, usize, usize, usize)) -> Shape {
        Shape { cin, cout, b, h, w }
    }

    /// Every version, on the engine's shapes and odd ones, in the engine's blocks and in
    /// short ones (several blocks, some without a non-zero): the direct product's bits.
    #[test]
    fn the_bits_of_the_dense_product() {
        for isa in Isa::available() {
            for (i, &dims) in SHAPES.iter().enumerate() {
                let sh = shape(dims);
                let (n, kdim) = (sh.n(), sh.cin * TAPS);
                let seed = 10 * i as u64;
                let x = input_values(sh.cin * n, seed);
                let dz = sparse_values(sh.cout * n, seed + 3);
                let engine = block_depth(kdim + 1, n, sh.cout).unwrap_or(KC);
                for depth in [engine, 37] {
                    let (got, want) = weight_case(isa, sh, depth, &x, &dz);
                    assert_eq!(got, want, "{dims:?} depth {depth} {isa:?}");
                }
            }
        }
    }

    /// A partial sum that underflows to -0, then a term the sparse sum skips (`+0 x 1`) and
    /// the dense one adds, turning it into +0: recomputed, the output is the dense +0.
    #[test]
    fn a_negative_zero_the_dense_sum_loses_is_recomputed() {
        let sh = shape((1, 8, 1, 4, 4));
        let n = sh.n();
        let mut x = vec![1.0f32; n];
        x[0] = 1e-30;
        let mut dz = vec![0.0f32; sh.cout * n];
        dz[0] = -1e-30; // filter 0, position 0: -1e-60 rounds to -0
        for isa in Isa::available() {
            let (got, want) = weight_case(isa, sh, KC, &x, &dz);
            assert_eq!(got, want, "{isa:?}");
            // Centre tap of filter 0 (q = 4): dense +0, not the sparse -0.
            assert_eq!(want[4 * sh.cout], 0.0f32.to_bits());
        }
    }

    /// `0 x inf` is NaN in the dense product: where the input is not finite, the sparse
    /// product does not apply.
    #[test]
    fn non_finite_factors_are_left_to_the_dense_product() {
        let sh = shape((2, 8, 1, 4, 4));
        let n = sh.n();
        let (mut x, dz) = (vec![1.0f32; 2 * n], sparse_values(8 * n, 1));
        x[5] = f32::INFINITY;
        let mut nz = Nonzeros::default();
        nz.collect_with(Isa::Baseline, &dz, (8, n));
        let fr = frame(1, 4, 4);
        let len = scratch_len(2, 1, 4, 4);
        let mut bufs = [vec![0.0; len], vec![0.0; len]];
        let [one, two] = &mut bufs;
        let (mut gw, mut gb) = (vec![7.0; 8 * 2 * TAPS], vec![7.0; 8]);
        let args = WeightArgs {
            nz: &nz,
            x: &x,
            dz: &dz,
            frame: &fr,
            depth: KC,
        };
        for isa in Isa::available() {
            let scratch = [&mut one[..], &mut two[..]];
            assert!(!weight_gradient(isa, args, sh, scratch, &mut gw, &mut gb));
            assert!(gw.iter().chain(&gb).all(|&v| v == 7.0));
        }
    }

    /// Zeros of both signs are dropped, NaNs and everything else kept, in order, by every
    /// version, on rows shorter and longer than a vector.
    #[test]
    fn nonzeros_keep_order_and_nans() {
        let dz = [0.0, 2.0, -0.0, f32::NAN, 0.0, -1.0, 0.0, 0.0, 3.0];
        let long = sparse_values(3 * 37, 5);
        for isa in Isa::available() {
            let mut nz = Nonzeros::default();
            nz.collect_with(isa, &dz, (3, 3));
            assert_eq!(nz.of(0), (&[1u32][..], &[2.0f32][..]));
            let (p, v) = nz.of(1);
            assert_eq!(p, &[0, 2]);
            assert!(v[0].is_nan() && v[1] == -1.0);
            assert_eq!(nz.of(2), (&[2u32][..], &[3.0f32][..]));
            nz.collect_with(isa, &long, (3, 37));
            for (c, row) in long.chunks(37).enumerate() {
                let want: Vec<(u32, f32)> = (0u32..)
                    .zip(row.iter().copied())
                    .filter(|&(_, g)| g != 0.0)
                    .collect();
                let (p, v) = nz.of(c);
                let got: Vec<(u32, f32)> = p.iter().copied().zip(v.iter().copied()).collect();
                assert_eq!(got, want, "{isa:?} row {c}");
            }
        }
    }

    /// The gather reads unchecked, so the padded copy is proved to hold every patch of every
    /// position first: a copy one value short of the last patch's last lane panics.
    #[test]
    fn a_copy_short_of_a_patch_panics() {
        let sh = shape((16, 4, 2, 5, 6));
        let cp = 16;
        let frame = frame(sh.b, sh.h, sh.w);
        let offs: [isize; TAPS] = std::array::from_fn(|t| sh.tap((t / K, t % K), cp));
        let last = *frame.iter().max().unwrap() as usize;
        let end = ((last + 1) * cp)
            .checked_add_signed(offs[TAPS - 1])
            .unwrap();
        assert_eq!(
            end,
            sh.padded(cp) - SLACK,
            "the last patch ends where the copy does"
        );
        let x = vec![0.0; end];
        patches_inside(&frame, (&x, cp, &offs));
        let short = std::panic::catch_unwind(|| patches_inside(&frame, (&x[..end - 1], cp, &offs)));
        assert!(short.is_err());
    }
}
