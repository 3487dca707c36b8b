//! Logits files: what `shapelab predict --data ... --out LOGITS.npz` writes.
//!
//! | array | dtype | shape |
//! |---|---|---|
//! | `logits` | float32 | (N, classes), in dataset order |
//! | `y` | uint8 | (N,) the true labels |
//! | `class_names` | unicode | (classes,) |

use std::path::Path;

use crate::error::Result;
use crate::fsio::write_file_atomic;
use crate::npz::NpzWriter;

/// Writes logits `[n, K]` with their labels, atomically.
pub fn write_logits(
    path: &Path,
    force: bool,
    logits: &[f32],
    labels: &[u8],
    class_names: &[String],
) -> Result<()> {
    let (n, k) = (labels.len() as u64, class_names.len() as u64);
    debug_assert_eq!(logits.len() as u64, n * k);
    let names: Vec<&str> = class_names.iter().map(String::as_str).collect();
    write_file_atomic(path, force, |out| {
        let mut z = NpzWriter::new(out);
        z.add_f32("logits", &[n, k], logits)?;
        z.add_u8("y", &[n], labels)?;
        z.add_strings("class_names", &[k], &names)?;
        z.finish()?;
        Ok(())
    })
}
