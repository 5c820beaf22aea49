//! What every figure shares: the bundled font, the series colours, file-name slugs, and the one
//! save that draws a figure to SVG and/or PNG through `gfa_data::atomic`.
//!
//! PNG text is drawn with the bundled DejaVu Sans (assets/, Bitstream Vera license) through
//! plotters' `ab_glyph` backend, so no system font or fontconfig is needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Which files a figure is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
    Both,
}

/// The size of a figure of one chart (a line chart, a heat map), in pixels.
pub const CHART_SIZE: (u32, u32) = (800, 560);

/// A figure that draws itself on any plotters backend.
pub trait Draw {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32) {
        CHART_SIZE
    }
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()>;
}

/// Draw `figure` to `stem.svg` and/or `stem.png`; the paths written.
pub fn save(stem: &Path, format: Format, figure: &impl Draw) -> Result<Vec<PathBuf>> {
    register_font();
    let size = figure.size();
    let mut out = Vec::new();
    if matches!(format, Format::Svg | Format::Both) {
        let p = stem.with_extension("svg");
        atomically(&p, |t| figure.draw(SVGBackend::new(t, size).into_drawing_area()))?;
        out.push(p);
    }
    if matches!(format, Format::Png | Format::Both) {
        let p = stem.with_extension("png");
        atomically(&p, |t| figure.draw(BitMapBackend::new(t, size).into_drawing_area()))?;
        out.push(p);
    }
    Ok(out)
}

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();
pub const FONT_NAME: &str = "sans-serif";

pub fn register_font() {
    REGISTER.call_once(|| {
        plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the bundled DejaVu Sans font is valid"));
    });
}

/// File-name form of a label.
pub fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') { c } else { '_' })
        .collect();
    while out.contains("__") {
        out = out.replace("__", "_");
    }
    out.trim_matches('_').to_string()
}

pub fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

/// Series colors: Okabe–Ito's eight (distinguishable with color-vision deficiencies), then four
/// darker ones, so up to 12 series get 12 colors.
pub fn color(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 12] = [
        (0, 114, 178),
        (213, 94, 0),
        (0, 158, 115),
        (204, 121, 167),
        (230, 159, 0),
        (86, 180, 233),
        (0, 0, 0),
        (240, 228, 66),
        (136, 34, 85),
        (68, 119, 170),
        (153, 153, 51),
        (102, 102, 102),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// Draw a figure to `path` through `gfa_data::atomic` (the backend writes the temporary file).
pub fn atomically(path: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    gfa_data::atomic::write_atomic_with(path, |tmp| draw(tmp).map_err(std::io::Error::other))?;
    Ok(())
}
