//! An uploaded image: a PNG of the network's size, read as the gray pixels it would see.
//!
//! The header is checked before any pixel is decoded, so a small file declaring a huge image
//! costs nothing. Colour is read as luminance (ITU-R BT.601 weights) and transparency as
//! background (black), which is how the generator's figures look: light on dark.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State as Extract};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::run::RunQuery;
use super::{bad, blocking, Failure};
use crate::State;

/// The pixels of an upload.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    /// `[H x W]`, 0 to 255.
    pub pixels: Vec<u8>,
}

pub async fn upload(
    Extract(state): Extract<Arc<State>>,
    Query(q): Query<RunQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Pixels>, Failure> {
    let body = body.map_err(|e| {
        bad(format!(
            "the upload was refused ({e}); upload a PNG of at most {} KB",
            crate::BODY_LIMIT / 1024
        ))
    })?;
    blocking(move || {
        let run = state.run(&q.run)?;
        let (w, h) = (run.model.arch.width, run.model.arch.height);
        Ok(Json(decode(&body, w, h)?))
    })
    .await
}

/// `bytes` as a `w x h` gray image, or a 400 saying what is wrong with it.
pub fn decode(bytes: &[u8], w: usize, h: usize) -> Result<Pixels, Failure> {
    let not_png = |e: png::DecodingError| {
        bad(format!(
            "the upload is not a PNG image ({e}); upload a {w}x{h} PNG"
        ))
    };
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(not_png)?;
    let info = reader.info();
    let (iw, ih) = (info.width as usize, info.height as usize);
    if (iw, ih) != (w, h) {
        return Err(bad(format!(
            "the image is {iw}x{ih}; the network reads {w}x{h} images: resize it to {w}x{h}"
        )));
    }
    let mut buf = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| bad("the PNG is too large".into()))?
    ];
    let frame = reader.next_frame(&mut buf).map_err(not_png)?;
    let (color, _) = reader.output_color_type();
    let channels = color.samples();
    let data = &buf[..frame.buffer_size()];
    let pixels = data
        .chunks(channels)
        .take(w * h)
        .map(|p| {
            let (lum, alpha) = match p {
                [g] => (*g as f64, 255.0),
                [g, a] => (*g as f64, *a as f64),
                [r, g, b] => (luminance(*r, *g, *b), 255.0),
                [r, g, b, a, ..] => (luminance(*r, *g, *b), *a as f64),
                [] => (0.0, 0.0),
            };
            (lum * alpha / 255.0).round().clamp(0.0, 255.0) as u8
        })
        .collect();
    Ok(Pixels {
        width: w,
        height: h,
        pixels,
    })
}

fn luminance(r: u8, g: u8, b: u8) -> f64 {
    0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(w: u32, h: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(png::BitDepth::Eight);
        e.write_header().unwrap().write_image_data(data).unwrap();
        out
    }

    #[test]
    fn gray_rgb_and_alpha_read_as_the_network_sees_them() {
        let gray: Vec<u8> = (0..4).map(|i| i * 60).collect();
        let p = decode(&png_of(2, 2, png::ColorType::Grayscale, &gray), 2, 2).unwrap();
        assert_eq!(p.pixels, gray);
        let rgb = [255, 255, 255, 255, 0, 0, 0, 0, 0, 10, 20, 30];
        let p = decode(&png_of(2, 2, png::ColorType::Rgb, &rgb), 2, 2).unwrap();
        assert_eq!(p.pixels, vec![255, 76, 0, 18]);
        // Transparent is background.
        let rgba = [
            255, 255, 255, 0, 255, 255, 255, 255, 0, 0, 0, 255, 200, 200, 200, 128,
        ];
        let p = decode(&png_of(2, 2, png::ColorType::Rgba, &rgba), 2, 2).unwrap();
        assert_eq!(p.pixels, vec![0, 255, 0, 100]);
    }

    #[test]
    fn wrong_sizes_and_non_images_are_refused_with_the_fix() {
        let e = decode(&png_of(3, 2, png::ColorType::Grayscale, &[0; 6]), 28, 28).unwrap_err();
        assert!(
            e.1.contains("3x2") && e.1.contains("resize it to 28x28"),
            "{}",
            e.1
        );
        let e = decode(b"GIF89a not a png", 28, 28).unwrap_err();
        assert!(e.1.contains("not a PNG"), "{}", e.1);
        let mut cut = png_of(28, 28, png::ColorType::Grayscale, &[7; 784]);
        cut.truncate(cut.len() - 30);
        assert!(decode(&cut, 28, 28).is_err());
    }
}
