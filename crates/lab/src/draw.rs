//! A small RGB raster canvas for the figures shapelab draws (contact sheets, later activation
//! and kernel sheets), with text in the public-domain 8x8 bitmap font of `font8x8`.
//!
//! Bitmap text keeps every sheet pixel-exact and reproducible across machines (no font
//! lookup, no hinting, no anti-aliasing differences), which golden-image tests rely on. The
//! canvas does layout arithmetic only; it must not know what it draws.

use std::path::Path;

use font8x8::UnicodeFonts;

use crate::error::{Error, Result};
use crate::fsio::write_file_atomic;

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

    /// Width in pixels of `s` drawn at `scale`.
    pub fn text_width(s: &str, scale: usize) -> usize {
        s.chars().count() * GLYPH * scale
    }

    /// Encodes as PNG.
    pub fn to_png(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
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
    fn gray_scales_up() {
        let mut c = Canvas::new(4, 4, WHITE);
        c.gray(0, 0, &[0, 255, 128, 7], 2, 2, 2);
        assert_eq!(&c.pixels[0..3], &[0, 0, 0]);
        assert_eq!(&c.pixels[(4 + 1) * 3..(4 + 1) * 3 + 3], &[0, 0, 0]);
        assert_eq!(&c.pixels[(3 * 4 + 3) * 3..], &[7, 7, 7]);
    }
}
