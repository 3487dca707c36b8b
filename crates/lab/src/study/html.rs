//! The HTML pieces every section of the report shares: escaping, and pictures embedded as
//! PNG data so the report is one self-contained file.
//!
//! Strings in, strings out; must not read the store.

use std::path::Path;

use base64::Engine;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn img_bytes(png: &[u8], alt: &str) -> String {
    format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
        esc(alt),
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

/// An image file embedded, or a note that it is missing.
pub fn img_file(path: &Path, alt: &str) -> String {
    match std::fs::read(path) {
        Ok(b) => img_bytes(&b, alt),
        Err(_) => format!(
            "<p class=\"missing\">({} not found)</p>",
            esc(&path.display().to_string())
        ),
    }
}
