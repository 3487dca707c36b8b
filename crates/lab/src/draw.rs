//! A small RGB raster canvas for the image sheets shapelab draws (contact sheets, activation
//! and kernel sheets, image grids), with text in the public-domain 8x8 bitmap font of
//! `font8x8`; charts (axes, curves, bars, matrices) are drawn onto it by [`crate::chart`] with
//! plotters and a real typeface.
//!
//! Bitmap text keeps every sheet pixel-exact and reproducible across machines (no font
//! lookup, no hinting, no anti-aliasing differences), which golden-image tests rely on. The
//! canvas does layout arithmetic only; it must not know what it draws.

use std::path::Path;

use font8x8::UnicodeFonts;

use crate::error::{Error, Result};
use crate::files::fsio::write_file_atomic;

/// An RGB colour.
pub type Rgb = [u8; 3];

pub const WHITE: Rgb = [255, 255, 255];
pub const PAPER: Rgb = [240, 240, 236];
pub const INK: Rgb = [24, 24, 24];
pub const FAINT: Rgb = [110, 110, 110];
pub const FRAME: Rgb = [150, 150, 150];

/// Width in pixels of one glyph at scale 1.
pub const GLYPH: usize = 8;

/// An RGB image.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    /// `[height, width, 3]` row-major.
    pub pixels: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `bg`.
    pub fn new(width: usize, height: usize, bg: Rgb) -> Canvas {
        Canvas {
            width,
            height,
            pixels: bg
                .iter()
                .copied()
                .cycle()
                .take(width * height * 3)
                .collect(),
        }
    }

    /// Sets one pixel; out-of-bounds writes are ignored (clipping).
    #[inline]
    pub fn put(&mut self, x: usize, y: usize, c: Rgb) {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Fills a rectangle.
    pub fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.put(xx, yy, c);
            }
        }
    }

    /// Draws a 2-pixel-wide line between two points (Bresenham), clipped to the canvas.
    pub fn line(&mut self, a: (i64, i64), b: (i64, i64), c: Rgb) {
        let (mut x, mut y) = a;
        let (dx, dy) = ((b.0 - a.0).abs(), -(b.1 - a.1).abs());
        let (sx, sy) = (
            if a.0 < b.0 { 1 } else { -1 },
            if a.1 < b.1 { 1 } else { -1 },
        );
        let mut err = dx + dy;
        loop {
            if x >= 0 && y >= 0 {
                self.fill(x as usize, y as usize, 2, 2, c);
            }
            if (x, y) == b {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws a one-pixel rectangle outline around `[x, x+w) x [y, y+h)`, outside it.
    pub fn frame(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        let (x0, y0) = (x.saturating_sub(1), y.saturating_sub(1));
        self.fill(x0, y0, w + 2, 1, c);
        self.fill(x0, y + h, w + 2, 1, c);
        self.fill(x0, y0, 1, h + 2, c);
        self.fill(x + w, y0, 1, h + 2, c);
    }

    /// Draws a grayscale image `[h, w]` scaled up `scale` times (nearest neighbour).
    pub fn gray(&mut self, x: usize, y: usize, img: &[u8], w: usize, h: usize, scale: usize) {
        for (r, row) in img.chunks(w).take(h).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                self.fill(x + c * scale, y + r * scale, scale, scale, [v, v, v]);
            }
        }
    }

    /// Draws text with its top-left corner at `(x, y)`, each glyph `8 * scale` pixels square.
    /// Characters without a glyph are drawn as `?`.
    pub fn text(&mut self, x: usize, y: usize, s: &str, scale: usize, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS
                .get(ch)
                .or_else(|| font8x8::LATIN_FONTS.get(ch))
                .or_else(|| font8x8::BASIC_FONTS.get('?'))
                .expect("'?' has a glyph");
            let gx = x + i * GLYPH * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.fill(gx + col * scale, y + row * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Draws `s` turned a quarter turn anticlockwise, read from bottom to top, its first
    /// character's lower-left corner at `(x, bottom)`: column labels that fit above narrow
    /// columns.
    pub fn text_up(&mut self, x: usize, bottom: usize, s: &str, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS
                .get(ch)
                .or_else(|| font8x8::LATIN_FONTS.get(ch))
                .or_else(|| font8x8::BASIC_FONTS.get('?'))
                .expect("'?' has a glyph");
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..GLYPH {
                    let up = i * GLYPH + col + 1;
                    if bits & (1 << col) != 0 && up <= bottom {
                        self.fill(x + row, bottom - up, 1, 1, c);
                    }
                }
            }
        }
    }

    /// Width in pixels of `s` drawn at `scale`.
    pub fn text_width(s: &str, scale: usize) -> usize {
        s.chars().count() * GLYPH * scale
    }

    /// Encodes as PNG (fast compression: these are flat-coloured pictures).
    pub fn to_png(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Fast);
            let mut w = enc.write_header().map_err(std::io::Error::other)?;
            w.write_image_data(&self.pixels)
                .map_err(std::io::Error::other)?;
        }
        Ok(out)
    }

    /// Writes a PNG file atomically (replacing an existing one).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let bytes = self.to_png().map_err(|e| Error::io(path, e))?;
        write_file_atomic(path, true, |w| std::io::Write::write_all(w, &bytes))
    }
}

/// A perceptually ordered colour for `t` in [0, 1] (viridis, by linear interpolation between
/// eight of its anchors; a colour map is a table, not worth a crate).
pub fn viridis(t: f64) -> Rgb {
    const A: [[f64; 3]; 8] = [
        [68.0, 1.0, 84.0],
        [70.0, 50.0, 127.0],
        [54.0, 92.0, 141.0],
        [39.0, 127.0, 142.0],
        [31.0, 161.0, 135.0],
        [74.0, 193.0, 109.0],
        [160.0, 218.0, 57.0],
        [253.0, 231.0, 37.0],
    ];
    let x = if t.is_nan() {
        0.0
    } else {
        t.clamp(0.0, 1.0) * 7.0
    };
    let i = (x.floor() as usize).min(6);
    let f = x - i as f64;
    let mut c = [0u8; 3];
    for k in 0..3 {
        c[k] = (A[i][k] + (A[i + 1][k] - A[i][k]) * f).round() as u8;
    }
    c
}

/// A diverging colour for `t` in [-1, 1]: blue, white at 0, red (the ends of ColorBrewer's
/// RdBu), for signed values such as weights and pre-activations.
pub fn diverging(t: f64) -> Rgb {
    let t = if t.is_nan() { 0.0 } else { t.clamp(-1.0, 1.0) };
    let (end, f) = if t < 0.0 {
        ([33.0, 102.0, 172.0], -t)
    } else {
        ([178.0, 24.0, 43.0], t)
    };
    let mut c = [0u8; 3];
    for k in 0..3 {
        c[k] = (247.0 + (end[k] - 247.0) * f).round() as u8;
    }
    c
}

/// Colour maps for pictures of activations and weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    /// Black (0) to white (max).
    Gray,
    /// Viridis, dark (0) to yellow (max).
    Viridis,
    /// Blue (-max), white (0), red (+max).
    Diverging,
}

impl Colormap {
    /// The colour of `t`: in [0, 1] for the sequential maps, [-1, 1] for the diverging one.
    pub fn color(self, t: f64) -> Rgb {
        match self {
            Colormap::Gray => {
                let v = (if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) } * 255.0).round() as u8;
                [v, v, v]
            }
            Colormap::Viridis => viridis(t),
            Colormap::Diverging => diverging(t),
        }
    }

    /// Whether values are signed around zero.
    pub fn signed(self) -> bool {
        self == Colormap::Diverging
    }
}

impl Canvas {
    /// A horizontal colour bar of `cmap` with labels at its ends.
    pub fn colorbar(
        &mut self,
        x: usize,
        y: usize,
        w: usize,
        cmap: Colormap,
        low: &str,
        high: &str,
    ) {
        for i in 0..w {
            let t = i as f64 / (w.max(2) - 1) as f64;
            let t = if cmap.signed() { 2.0 * t - 1.0 } else { t };
            self.fill(x + i, y, 1, 10, cmap.color(t));
        }
        self.frame(x, y, w, 10, FRAME);
        self.text(x, y + 14, low, 1, FAINT);
        self.text(
            (x + w).saturating_sub(Canvas::text_width(high, 1)),
            y + 14,
            high,
            1,
            FAINT,
        );
    }

    /// Draws a map `[h, w]` of values scaled `scale` times, each value `v` coloured as
    /// `cmap.color(v / range)` (range > 0).
    #[allow(clippy::too_many_arguments)]
    pub fn map(
        &mut self,
        x: usize,
        y: usize,
        values: &[f32],
        w: usize,
        h: usize,
        scale: usize,
        range: f32,
        cmap: Colormap,
    ) {
        for (r, row) in values.chunks(w).take(h).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let t = if range > 0.0 { (v / range) as f64 } else { 0.0 };
                self.fill(x + c * scale, y + r * scale, scale, scale, cmap.color(t));
            }
        }
    }
}

/// Encodes a grayscale image `[h, w]` as an 8-bit grayscale PNG.
pub fn gray_png(img: &[u8], w: usize, h: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(std::io::Error::other)?;
        wr.write_image_data(img).map_err(std::io::Error::other)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_marks_pixels_and_clips() {
        let mut c = Canvas::new(20, 10, WHITE);
        c.text(0, 0, "A", 1, INK);
        assert!(c.pixels.chunks(3).any(|p| p == INK));
        c.text(15, 5, "WWW", 2, INK); // runs off the canvas without panicking
        assert_eq!(Canvas::text_width("abc", 2), 48);
    }

    #[test]
    fn text_up_is_text_turned_a_quarter_turn() {
        let mut flat = Canvas::new(16, 8, WHITE);
        flat.text(0, 0, "L1", 1, INK);
        let mut up = Canvas::new(8, 16, WHITE);
        up.text_up(0, 16, "L1", INK);
        // Pixel (x, y) of the flat text is pixel (y, 15 - x) of the turned one.
        for y in 0..8 {
            for x in 0..16 {
                let a = &flat.pixels[(y * 16 + x) * 3..][..3];
                let b = &up.pixels[((15 - x) * 8 + y) * 3..][..3];
                assert_eq!(a, b, "({x}, {y})");
            }
        }
        up.text_up(0, 3, "LONG", INK); // runs off the top without panicking
    }

    #[test]
    fn colormaps_have_the_right_ends() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(diverging(0.0), [247, 247, 247]);
        assert_eq!(diverging(-1.0), [33, 102, 172]);
        assert_eq!(diverging(1.0), [178, 24, 43]);
        assert_eq!(Colormap::Gray.color(1.0), [255, 255, 255]);
        assert_eq!(Colormap::Gray.color(f64::NAN), [0, 0, 0]);
    }

    #[test]
    fn gray_scales_up() {
        let mut c = Canvas::new(4, 4, WHITE);
        c.gray(0, 0, &[0, 255, 128, 7], 2, 2, 2);
        assert_eq!(&c.pixels[0..3], &[0, 0, 0]);
        assert_eq!(&c.pixels[(4 + 1) * 3..(4 + 1) * 3 + 3], &[0, 0, 0]);
        assert_eq!(&c.pixels[(3 * 4 + 3) * 3..], &[7, 7, 7]);
    }
}
