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
pub(crate) const ALIGN: usize = 64 / std::mem::size_of::<f32>();
/// The bits of `-0.0`.
const NEG_ZERO: u32 = 0x8000_0000;

/// Each filter's non-zero values of `dz [C, n]` with their positions, in position order,
/// and where each block of positions the weight gradient sums over starts among them.
#[derive(Debug, Default)]
pub(crate) struct Nonzeros {
    /// Filter `c`'s entries are `start[c]..start[c + 1]`.
    start: Vec<usize>,
    /// Filter `c`'s entries in block `j` (positions `j*depth..(j+1)*depth`) are
    /// `bounds[c*(blocks+1) + j]..bounds[c*(blocks+1) + j + 1]`.
    bounds: Vec<usize>,
    /// The positions of a block ([`crate::direct::block_depth`]).
    depth: usize,
    /// Blocks per filter (at least one).
    blocks: usize,
    pos: Vec<u32>,
    val: Vec<f32>,
}

impl Nonzeros {
    /// Gathers the values of `dz [c, n]` that are not `±0` (a NaN is kept), row by row, and
    /// their blocks of `depth` positions.
    pub(crate) fn collect(&mut self, dz: &[f32], shape: (usize, usize), depth: usize) {
        self.collect_with(crate::isa::isa(), dz, shape, depth)
    }

    /// [`Nonzeros::collect`] with the kernels of `isa` (tests run each).
    fn collect_with(&mut self, isa: Isa, dz: &[f32], (c, n): (usize, usize), depth: usize) {
        assert!(depth > 0, "sparse: blocks of no positions");
        // Room for a whole vector written past the last value kept.
        if self.pos.len() < c * n + 16 {
            self.pos.resize(c * n + 16, 0);
            self.val.resize(c * n + 16, 0.0);
        }
        (self.depth, self.blocks) = (depth, n.max(1).div_ceil(depth));
        self.start.clear();
        self.start.push(0);
        self.bounds.clear();
        let mut k = 0;
        for row in dz[..c * n].chunks_exact(n.max(1)) {
            let (pos, val) = (&mut self.pos[k..k + n + 16], &mut self.val[k..k + n + 16]);
            let kept = match () {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX-512 (checked); `pos` and `val` hold `n + 16`.
                () if isa == Isa::Avx512 && isa.supported() => unsafe {
                    keep_nonzero_avx512(row, pos, val)
                },
                () => keep_nonzero(row, pos, val),
            };
            let pos = &self.pos[k..k + kept];
            for j in 0..self.blocks {
                self.bounds
                    .push(k + pos.partition_point(|&p| (p as usize) < j * depth));
            }
            k += kept;
            self.bounds.push(k);
            self.start.push(k);
        }
    }

    /// Filter `c`'s positions and values.
    fn of(&self, c: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.start[c], self.start[c + 1]);
        (&self.pos[a..b], &self.val[a..b])
    }

    /// Filter `c`'s positions and values in block `j`, and whether none of its come before.
    fn block(&self, c: usize, j: usize) -> (&[u32], &[f32], bool) {
        let at = c * (self.blocks + 1);
        let (a, b) = (self.bounds[at + j], self.bounds[at + j + 1]);
        (&self.pos[a..b], &self.val[a..b], a == self.bounds[at])
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

/// Values each buffer of [`weight_gradient`] needs at most for a layer of `cin` inputs and
/// `cout` filters on `cap` images of `h x w`: a padded copy, from the first 64-byte line in
/// the buffer, or the filters' sums.
pub(crate) fn scratch_len(cin: usize, cout: usize, cap: usize, h: usize, w: usize) -> usize {
    let cp = cin.next_multiple_of(16);
    let s = Shape {
        cin,
        cout,
        b: cap,
        h,
        w,
    };
    (s.padded(cp) + ALIGN).max(cout * TAPS * cp)
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
    if cp == cin {
        zero_borders(s, cp, xt);
    } else {
        xt[..s.padded(cp)].fill(0.0);
    }
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

/// Zeros around each image of the padded copy `xt [b, h + 2, w + 2, cp]` and in the slack
/// after it: what [`pad_channels_last`] does not overwrite when `cp == cin` (zeroing the
/// whole copy first cost a 32-32's training step 1%, `perf record`).
fn zero_borders(s: Shape, cp: usize, xt: &mut [f32]) {
    let (ph, pw) = (s.h + 2, s.w + 2);
    for img in 0..s.b {
        let at = img * ph * pw * cp;
        xt[at..at + pw * cp].fill(0.0);
        xt[at + (ph - 1) * pw * cp..at + ph * pw * cp].fill(0.0);
        for y in 1..ph - 1 {
            let row = at + y * pw * cp;
            xt[row..row + cp].fill(0.0);
            xt[row + (pw - 1) * cp..row + pw * cp].fill(0.0);
        }
    }
    xt[s.b * ph * pw * cp..s.padded(cp)].fill(0.0);
}

/// `buf` from its first 64-byte boundary on. A patch's vectors then each lie in one cache
/// line (with 16 or 8 lanes and as many channels per position): loads that cross a line
/// cost a second access, and the nine per non-zero made the gather a third slower
/// (timed inside a 32-32's training step, 2026-12-05). The first layer's `dz^T` starts on a
/// line the same way (`net.rs`), so that no row of 16 filters is split.
pub(crate) fn aligned(buf: &mut [f32]) -> &mut [f32] {
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
    assert!(
        tmp.len() >= s.cout * TAPS * cp,
        "sparse: {} values for {} filters' sums",
        tmp.len(),
        s.cout
    );
    // The transposed input is in `padded` now: `tmp` holds the sums.
    let totals = &mut tmp[..s.cout * TAPS * cp];
    let x = Patches {
        x: padded,
        frame: a.frame,
        cp,
        offs,
    };
    block_sums(isa, a, x, (s, l), totals, &mut gb[..s.cout]);
    for (c, total) in totals.chunks_exact(TAPS * cp).enumerate() {
        write_lanes(total, l, (gw, c), s);
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

/// Every filter's sums. The 32-lane AVX-512 pass runs block of positions by block and, within
/// a block, filter by filter: each filter's sum over a block starts from zero and is then
/// added to its total, so this order gives each output the same bits as filter by filter,
/// and every filter reads the block's patches while they are still in L1 (filter by filter,
/// a 32-32's second layer streamed its whole 131 KB padded input from L2 once per filter).
/// The passes of 4, 8 and 16 lanes run filter by filter ([`pass`]).
///
/// `totals [cout, cin/L, 9, L]` (`L` lanes a pass, `cp` values per position) and the biases'
/// `gb [cout]` are written.
fn block_sums(
    isa: Isa,
    a: WeightArgs,
    x: Patches,
    (s, l): (Shape, usize),
    totals: &mut [f32],
    gb: &mut [f32],
) {
    totals.fill(0.0);
    gb.fill(0.0);
    #[cfg(target_arch = "x86_64")]
    let both = isa == Isa::Avx512 && x.cp == 2 * l;
    #[cfg(not(target_arch = "x86_64"))]
    let both = false;
    if !both {
        // Filter by filter, each pass over its blocks: the compiled gather of 4, 8 or 16
        // lanes (AVX2's 8 measured slower block by block, its sums no longer vectorised).
        for (c, total) in totals.chunks_exact_mut(TAPS * x.cp).enumerate() {
            for lane0 in (0..s.cin).step_by(l) {
                let g = Gather::new(a, c, x.x, x.cp, lane0);
                let total = &mut total[lane0 * TAPS..(lane0 + l) * TAPS];
                let bias = match l {
                    16 => pass::<16>(isa, g, &x.offs, total),
                    8 => pass::<8>(isa, g, &x.offs, total),
                    _ => pass::<4>(isa, g, &x.offs, total),
                };
                if lane0 == 0 {
                    gb[c] = bias;
                }
            }
        }
        return;
    }
    for c in 0..s.cout {
        check_positions(a, c);
    }
    for j in 0..a.nz.blocks {
        for (c, total) in totals.chunks_exact_mut(TAPS * x.cp).enumerate() {
            let (pos, val, first) = a.nz.block(c, j);
            if pos.is_empty() {
                continue;
            }
            // SAFETY: the CPU runs AVX-512 (`weight_gradient` asserted `isa`; `both` only
            // there).
            #[cfg(target_arch = "x86_64")]
            let sum = unsafe { gather_both((pos, val), x, total, first) };
            #[cfg(not(target_arch = "x86_64"))]
            let sum: f32 = unreachable!("{pos:?} {val:?} {first}");
            gb[c] = if first { sum } else { gb[c] + sum };
        }
    }
}

/// One pass of filter `g`'s lanes `lane0..lane0 + L` over all its blocks: its totals into
/// `total [9, L]`; returns the bias's.
fn pass<const L: usize>(isa: Isa, g: Gather, offs: &[isize; TAPS], total: &mut [f32]) -> f32 {
    let (sums, bias) = gather_with::<TAPS, L>(isa, g, offs);
    for (t, s) in total.chunks_exact_mut(L).zip(&sums) {
        t.copy_from_slice(s);
    }
    bias
}

/// Panics unless every position of filter `c`'s non-zeros is in the frame: with
/// [`patches_inside`], every read of [`gather`], which reads unchecked, lies in the copy.
fn check_positions(a: WeightArgs, c: usize) {
    let (pos, val) = a.nz.of(c);
    let n = a.frame.len();
    // A fold of comparisons, not `all` nor a maximum: no early exit, and no unsigned
    // maximum, which SSE2 lacks, so that it vectorises (a scalar loop per filter cost as much
    // as a filter's bookkeeping).
    let bound = u32::try_from(n).unwrap_or(u32::MAX);
    let inside = pos.iter().fold(true, |ok, &p| ok & (p < bound));
    assert!(
        pos.len() == val.len() && (inside || n > u32::MAX as usize),
        "sparse: a position past the frame's {n}"
    );
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

/// A filter's totals `[cin/L, 9, L]` (`L` = `l` lanes a pass) into its row of
/// `gw [cout, cin*9]`.
fn write_lanes(total: &[f32], l: usize, (gw, c): (&mut [f32], usize), s: Shape) {
    let kdim = s.cin * TAPS;
    let row = &mut gw[c * kdim..(c + 1) * kdim];
    // Channel `g * l + j` from lane `j` of pass `g`: no division per channel.
    for (outs, pass) in row.chunks_mut(l * TAPS).zip(total.chunks_exact(TAPS * l)) {
        for (j, out) in outs.chunks_exact_mut(TAPS).enumerate() {
            for (t, o) in out.iter_mut().enumerate() {
                *o = pass[t * l + j];
            }
        }
    }
}

/// [`gather`] of all 32 lanes of a position (17 to 32 input channels, AVX-512) at once: one
/// pass per filter and block instead of two, so that each non-zero's position, value and
/// patch address are read once for 18 multiply-adds, and the bias's sum; `total [2, 9, 16]`
/// takes the block's sums as [`flush`] does. Written with intrinsics: the plain loop of
/// [`gather`] with 32 lanes kept its 18 sums and their totals in registers at once and
/// spilled (measured 40% slower).
///
/// # Safety
/// The CPU runs AVX-512 F.
// A numeric kernel: the 18 sums must stay in registers, so the loop is the block's
// non-zeros with nothing else in it, and the totals live in memory.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_both(
    (pos, val): (&[u32], &[f32]),
    x: Patches,
    total: &mut [f32],
    first: bool,
) -> f32 {
    use std::arch::x86_64::*;
    assert!(
        32 <= x.cp && total.len() >= TAPS * 32,
        "sparse: lanes past a position's {}",
        x.cp
    );
    let mut acc = [[_mm512_setzero_ps(); 2]; TAPS];
    let mut sum = 0.0f32;
    for (&p, &v) in pos.iter().zip(val) {
        // SAFETY: as in `gather`: `p < frame.len()` and every patch of the frame lies in
        // `x` (`check_positions`, `patches_inside`), both halves (`32 <= cp`).
        unsafe {
            let f = *x.frame.get_unchecked(p as usize) as usize;
            let at = x.x.as_ptr().add(f * x.cp);
            let v16 = _mm512_set1_ps(v);
            for (sums, &off) in acc.iter_mut().zip(&x.offs) {
                let x = at.offset(off);
                sums[0] = _mm512_fmadd_ps(v16, _mm512_loadu_ps(x), sums[0]);
                sums[1] = _mm512_fmadd_ps(v16, _mm512_loadu_ps(x.add(16)), sums[1]);
            }
        }
        // The ones row of [col; 1]: fma(1, v, s) is s + v.
        sum += v;
    }
    // SAFETY: the CPU runs AVX-512 F (the caller's contract); `total` holds `[2, 9, 16]`.
    unsafe { add_block(&acc, first, total) };
    sum
}

/// Ends a block of [`gather_both`]: its sums become the totals `[2, 9, 16]` (the filter's
/// first block) or are added to them. Not inlined, so that the totals stay in memory rather
/// than in 18 more registers.
///
/// # Safety
/// The CPU runs AVX-512 F; `total` holds `2 * 9 * 16` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn add_block(acc: &[[std::arch::x86_64::__m512; 2]; TAPS], first: bool, total: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert!(total.len() >= 2 * TAPS * 16);
    for (t, sums) in acc.iter().enumerate() {
        for (h, &s) in sums.iter().enumerate() {
            // SAFETY: 16 values at `(h * 9 + t) * 16`, of `2 * 9 * 16`.
            unsafe {
                let d = total.as_mut_ptr().add((h * TAPS + t) * 16);
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
    for (p0, p1, first) in blocks(n, a.nz.depth) {
        let mut acc = 0.0f32;
        for p in p0..p1 {
            acc = a.dz[c * n + p].mul_add(col(p), acc);
        }
        total = if first { acc } else { total + acc };
    }
    total
}

/// The padded copy the gathers read and where a position's patch lies in it.
#[derive(Clone, Copy)]
struct Patches<'a> {
    /// `[b, h + 2, w + 2, cp]`.
    x: &'a [f32],
    /// [`frame`] of the layer.
    frame: &'a [u32],
    cp: usize,
    /// Where each tap reads, relative to the position's first value.
    offs: [isize; TAPS],
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
        check_positions(a, c);
        let (pos, val) = a.nz.of(c);
        Gather {
            pos,
            val,
            x,
            frame: a.frame,
            cp,
            lane0,
            depth: a.nz.depth,
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
        nz.collect_with(isa, dz, (sh.cout, n), depth);
        let fr = frame(sh.b, sh.h, sh.w);
        let len = scratch_len(sh.cin, sh.cout, sh.b, sh.h, sh.w);
        let mut bufs = [vec![f32::NAN; len], vec![f32::NAN; len]];
        let [one, two] = &mut bufs;
        let (mut gw, mut gb) = (vec![f32::NAN; sh.cout * kdim], vec![f32::NAN; sh.cout]);
        let args = WeightArgs {
            nz: &nz,
            x,
            dz,
            frame: &fr,
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
        nz.collect_with(Isa::Baseline, &dz, (8, n), KC);
        let fr = frame(1, 4, 4);
        let len = scratch_len(2, 8, 1, 4, 4);
        let mut bufs = [vec![0.0; len], vec![0.0; len]];
        let [one, two] = &mut bufs;
        let (mut gw, mut gb) = (vec![7.0; 8 * 2 * TAPS], vec![7.0; 8]);
        let args = WeightArgs {
            nz: &nz,
            x: &x,
            dz: &dz,
            frame: &fr,
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
            nz.collect_with(isa, &dz, (3, 3), KC);
            assert_eq!(nz.of(0), (&[1u32][..], &[2.0f32][..]));
            let (p, v) = nz.of(1);
            assert_eq!(p, &[0, 2]);
            assert!(v[0].is_nan() && v[1] == -1.0);
            assert_eq!(nz.of(2), (&[2u32][..], &[3.0f32][..]));
            nz.collect_with(isa, &long, (3, 37), KC);
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
