//! Charts (matrices, heatmaps, curves and bar charts) drawn with plotters onto shapelab's RGB
//! [`Canvas`], with axes, ticks and anti-aliased labels in DejaVu Sans, which is built into the
//! binary (`assets/fonts/`, with its licence) so that a chart looks the same on every machine
//! and needs no installed font.
//!
//! Plotters renders into memory with a pure-Rust rasteriser (ab_glyph for the text), so the
//! same data gives the same bytes everywhere; the report's byte-for-byte reproducibility holds.
//! Data in, pictures out: nothing here computes a statistic or knows what it draws. Image
//! sheets (contact sheets, activation maps, kernels) stay on the canvas with its bitmap font:
//! they are pixel grids, not charts.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use plotters::chart::{ChartContext, MeshStyle, SeriesLabelPosition};
use plotters::prelude::Cartesian2d;

use crate::draw::{Canvas, Colormap, Rgb, FRAME, INK, PAPER};

/// DejaVu Sans 2.37 (see `assets/fonts/README.md`).
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// The family name the font is registered under.
const FAMILY: &str = "shapelab-sans";

/// The area a chart draws on.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// What a drawing closure returns; errors only come from a broken font or a bug, and are
/// turned into a panic with the message by [`draw`].
pub type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the built-in DejaVu Sans does not parse; the binary is damaged");
        }
    });
}

/// The text style of `size` pixels in `colour`. Charts use 12 px and up: plotters places
/// each glyph at a truncated offset from the baseline, which at 11 px lifts a full stop half
/// a line ("1·00").
pub fn text(size: f64, colour: Rgb) -> TextStyle<'static> {
    register();
    TextStyle {
        font: (FAMILY, size).into_font(),
        color: rgb(colour).to_backend_color(),
        pos: Pos::new(HPos::Left, VPos::Top),
    }
}

/// A plotters colour.
pub fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Draws a `width x height` chart on paper with `f`.
///
/// # Panics
/// When plotters fails to draw into memory, which only a damaged font or a bug can cause.
pub fn draw(width: usize, height: usize, f: impl FnOnce(&Area) -> Drawn) -> Canvas {
    register();
    let mut pixels = vec![0u8; width * height * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width as u32, height as u32))
            .into_drawing_area();
        let done = root
            .fill(&rgb(PAPER))
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
            .and_then(|()| f(&root))
            .and_then(|()| root.present().map_err(|e| e.into()));
        if let Err(e) = done {
            panic!("drawing a chart in memory failed: {e}");
        }
    }
    Canvas {
        width,
        height,
        pixels,
    }
}

/// shapelab's look for a chart's axes: 12 px labels and axis titles, faint major grid lines
/// only, grey axes.
pub fn house_style<'m, 'a, 'b, X, Y>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, BitMapBackend<'a>>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, BitMapBackend<'a>>
where
    X: plotters::coord::ranged1d::Ranged<ValueType: std::fmt::Debug>,
    Y: plotters::coord::ranged1d::Ranged<ValueType: std::fmt::Debug>,
{
    mesh.label_style(text(12.0, INK))
        .axis_desc_style(text(12.0, INK))
        .light_line_style(TRANSPARENT)
        .bold_line_style(rgb([214, 214, 208]))
        .axis_style(rgb(FRAME))
}

/// The legend of a chart's labelled series at `position`, on paper with a frame.
pub fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Drawn
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(text(12.0, INK))
        .background_style(rgb(PAPER).mix(0.9))
        .border_style(rgb(FRAME))
        .draw()?;
    Ok(())
}

/// Writes `s` with its anchor `(h, v)` at `(x, y)`.
pub fn label(
    area: &Area,
    s: &str,
    (x, y): (i32, i32),
    style: &TextStyle,
    h: HPos,
    v: VPos,
) -> Drawn {
    area.draw(&Text::new(s.to_string(), (x, y), style.pos(Pos::new(h, v))))?;
    Ok(())
}

/// The width in pixels `s` takes in `style`.
pub fn width_of(area: &Area, s: &str, style: &TextStyle) -> i32 {
    area.estimate_text_size(s, style)
        .map_or(0, |(w, _)| w as i32)
}

/// A colour bar of `cmap` from `low` to `high` (labelled with `unit`), horizontal, at
/// `(x, y)` and `w` wide, with five ticks.
pub fn colorbar(
    area: &Area,
    (x, y): (i32, i32),
    w: i32,
    cmap: Colormap,
    (low, high): (f64, f64),
    unit: &str,
) -> Drawn {
    for i in 0..w {
        let t = i as f64 / (w.max(2) - 1) as f64;
        let t = if cmap.signed() { 2.0 * t - 1.0 } else { t };
        area.draw(&Rectangle::new(
            [(x + i, y), (x + i + 1, y + 10)],
            rgb(cmap.color(t)).filled(),
        ))?;
    }
    area.draw(&Rectangle::new(
        [(x, y), (x + w, y + 10)],
        rgb([150, 150, 150]),
    ))?;
    let style = text(12.0, [90, 90, 90]);
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let v = low + (high - low) * f;
        let xx = x + (f * (w - 1) as f64).round() as i32;
        area.draw(&PathElement::new(
            vec![(xx, y + 10), (xx, y + 13)],
            rgb([90, 90, 90]),
        ))?;
        let s = if v.abs() < 1e-12 {
            format!("0{unit}")
        } else {
            format!("{}{unit}", short_number(v))
        };
        label(area, &s, (xx, y + 15), &style, HPos::Center, VPos::Top)?;
    }
    Ok(())
}

/// A number for a tick: at most three significant decimals, no trailing zeros, a true minus.
pub fn short_number(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    s.replace('-', "\u{2212}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_with_the_built_in_font_and_is_reproducible() {
        let c = |s: &str| {
            draw(120, 40, |a| {
                label(
                    a,
                    s,
                    (60, 20),
                    &text(16.0, [0, 0, 0]),
                    HPos::Center,
                    VPos::Center,
                )
            })
        };
        let a = c("accuracy");
        assert_eq!(a, c("accuracy"), "the same text gives the same pixels");
        assert_ne!(a, c("accurecy"));
        // Anti-aliased: some pixels are neither paper nor ink.
        let greys = a
            .pixels
            .chunks(3)
            .filter(|p| p[0] == p[1] && p[0] > 40 && p[0] < 200)
            .count();
        assert!(greys > 10, "{greys} intermediate pixels");
    }

    #[test]
    fn tick_numbers_are_short_and_use_a_true_minus() {
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(-0.25), "\u{2212}0.25");
        assert_eq!(short_number(100.0), "100");
        assert_eq!(short_number(12.34), "12.3");
        assert_eq!(short_number(1.0), "1");
    }
}
