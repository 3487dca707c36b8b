//! ImageFolder trees: the layout Keras's `image_dataset_from_directory` and torchvision's
//! `ImageFolder` read directly.
//!
//! ```text
//! DIR/train/ellipse/000001.png     8-bit grayscale PNG; the number is the npz row + 1
//! DIR/train/rectangle/000002.png
//! DIR/val/...
//! DIR/test/...                     optional: the held-out split
//! DIR/factors.csv                  split,file,label,class_name,<factor columns>
//! DIR/spec.json                    the dataset metadata (shapelab datasets only)
//! ```
//!
//! Class directories sort alphabetically into label order, as both libraries do; shapelab's
//! class names (ellipse, rectangle, triangle) already sort that way. Reading accepts any such
//! tree of 8-bit grayscale PNGs of one size, so users can bring their own images: labels come
//! from the sorted class directories, factors from `factors.csv` when present.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::data::dataset::{Dataset, DatasetMeta, Split};
use crate::draw::gray_png;
use crate::error::{Error, Result};
use crate::files::fsio::write_dir_atomic;

/// The splits every tree has; `test/` is read when present.
const SPLITS: [&str; 2] = ["train", "val"];

fn file_name(index: usize, total: usize) -> String {
    let digits = total.to_string().len().max(6);
    format!("{:0digits$}.png", index + 1)
}

/// Writes the dataset as an ImageFolder tree at `dir`, atomically.
pub fn write(d: &Dataset, dir: &Path, force: bool) -> Result<()> {
    write_dir_atomic(dir, force, |root| {
        let mut csv = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["split", "file", "label", "class_name"];
        header.extend(d.factor_names.iter().map(String::as_str));
        csv.write_record(&header).expect("in-memory csv");
        for (part, split) in d.parts() {
            let name = part.name();
            for class in &d.class_names {
                let p = root.join(name).join(class);
                fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            }
            let px = d.pixels();
            let k = d.factor_names.len();
            (0..split.len()).into_par_iter().try_for_each(|i| {
                let class = &d.class_names[split.labels[i] as usize];
                let path = root.join(name).join(class).join(file_name(i, split.len()));
                let png = gray_png(&split.images[i * px..(i + 1) * px], d.width, d.height)
                    .map_err(|e| Error::io(&path, e))?;
                fs::write(&path, png).map_err(|e| Error::io(&path, e))
            })?;
            for i in 0..split.len() {
                let label = split.labels[i] as usize;
                let file = format!(
                    "{name}/{}/{}",
                    d.class_names[label],
                    file_name(i, split.len())
                );
                let mut row = vec![
                    name.to_string(),
                    file,
                    label.to_string(),
                    d.class_names[label].clone(),
                ];
                row.extend(
                    split.factors[i * k..(i + 1) * k]
                        .iter()
                        .map(|v| v.to_string()),
                );
                csv.write_record(&row).expect("in-memory csv");
            }
        }
        let bytes = csv.into_inner().expect("in-memory csv");
        let p = root.join("factors.csv");
        fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
        if let Some(meta) = &d.meta {
            let p = root.join("spec.json");
            let json = serde_json::to_string_pretty(meta).expect("meta serialises");
            fs::write(&p, json + "\n").map_err(|e| Error::io(&p, e))?;
        }
        Ok(())
    })
}

/// Hidden entries (`.ipynb_checkpoints`, `.DS_Store`, shapelab's marker) are never data.
fn hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// The class directories under a split directory, sorted; hidden ones are ignored.
fn subdirs(p: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(p).map_err(|e| Error::io(p, e))? {
        let entry = entry.map_err(|e| Error::io(p, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().map_err(|e| Error::io(p, e))?.is_dir() && !hidden(&name) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes an 8-bit grayscale PNG: `(width, height, pixels [h, w])`.
pub fn decode_gray(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let file = fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(path.to_path_buf()),
        _ => Error::io(path, e),
    })?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder
        .read_info()
        .map_err(|e| Error::bad(path, format!("not a readable PNG: {e}")))?;
    let info = reader.info();
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        return Err(Error::bad(
            path,
            format!(
                "is a {:?} {}-bit PNG; shapelab reads 8-bit grayscale (convert with PIL: img.convert('L'))",
                info.color_type, info.bit_depth as u8
            ),
        ));
    }
    let (w, h) = (info.width as usize, info.height as usize);
    let mut buf = vec![0; reader.output_buffer_size().expect("small image")];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| Error::bad(path, format!("damaged PNG data: {e}")))?;
    buf.truncate(frame.buffer_size());
    Ok((w, h, buf))
}

/// The PNG files of split `s` as (file name, label, path relative to `dir`), class by class;
/// other visible files go to `skipped`. A class folder without a PNG, a class missing from
/// `train/`, or a split without images is refused.
fn list_split(
    dir: &Path,
    s: &str,
    class_names: &[String],
    skipped: &mut Vec<PathBuf>,
) -> Result<Vec<(String, u8, String)>> {
    let mut files: Vec<(String, u8, String)> = Vec::new();
    for (label, class) in class_names.iter().enumerate() {
        let p = dir.join(s).join(class);
        if !p.is_dir() {
            if s == "train" {
                return Err(Error::bad(
                    dir,
                    format!("class {class} has a val/{class}/ folder but no train/{class}/ images; every class needs training images"),
                ));
            }
            continue;
        }
        let before = files.len();
        for entry in fs::read_dir(&p).map_err(|e| Error::io(&p, e))? {
            let entry = entry.map_err(|e| Error::io(&p, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if hidden(&name) {
                continue;
            }
            if name.to_ascii_lowercase().ends_with(".png") {
                files.push((name.clone(), label as u8, format!("{s}/{class}/{name}")));
            } else {
                skipped.push(PathBuf::from(s).join(class).join(name));
            }
        }
        if files.len() == before {
            return Err(Error::bad(
                &p,
                "holds no .png images; remove the empty class folder or add images to it",
            ));
        }
    }
    if files.is_empty() {
        return Err(Error::bad(
            dir,
            format!(
                "the {s} split holds no images; a dataset needs at least one image in each split"
            ),
        ));
    }
    Ok(files)
}

/// Reads an ImageFolder tree (see the module docs). Hidden entries are ignored; a class
/// folder without images, or a class with no training image, is refused; other files in the
/// class folders (`.jpg`, notes) are listed in [`Dataset::skipped`].
pub fn read(dir: &Path) -> Result<Dataset> {
    if !dir.exists() {
        return Err(Error::NotFound(dir.to_path_buf()));
    }
    let mut class_names: Vec<String> = Vec::new();
    for s in SPLITS {
        let p = dir.join(s);
        if !p.is_dir() {
            return Err(Error::bad(dir, format!("has no {s}/ directory; an ImageFolder dataset needs train/CLASS/*.png and val/CLASS/*.png")));
        }
        for c in subdirs(&p)? {
            if !class_names.contains(&c) {
                class_names.push(c);
            }
        }
    }
    class_names.sort();
    if class_names.is_empty() || class_names.len() > 256 {
        return Err(Error::bad(
            dir,
            format!("has {} class directories; need 1 to 256", class_names.len()),
        ));
    }
    let (factor_names, factor_rows) = read_factors(dir)?;
    let mut size = None;
    let mut splits = Vec::new();
    let mut skipped = Vec::new();
    let has_test = dir.join("test").is_dir();
    for s in SPLITS.into_iter().chain(has_test.then_some("test")) {
        let mut files = list_split(dir, s, &class_names, &mut skipped)?;
        files.sort();
        let decoded: Vec<(usize, usize, Vec<u8>)> = files
            .par_iter()
            .map(|(_, _, rel)| decode_gray(&dir.join(rel)))
            .collect::<Result<_>>()?;
        let mut split = Split::default();
        for ((_, label, rel), (w, h, px)) in files.iter().zip(decoded) {
            match size {
                None => size = Some((w, h)),
                Some(prev) if prev != (w, h) => {
                    return Err(Error::bad(
                        &dir.join(rel),
                        format!(
                            "is {w}x{h} but earlier images are {}x{}; all images need one size",
                            prev.0, prev.1
                        ),
                    ))
                }
                _ => {}
            }
            split.images.extend(px);
            split.labels.push(*label);
            if !factor_names.is_empty() {
                let row = factor_rows.get(rel).ok_or_else(|| {
                    Error::bad(
                        &dir.join("factors.csv"),
                        format!("has no row for {rel}; regenerate it or remove factors.csv"),
                    )
                })?;
                split.factors.extend(row);
            }
        }
        splits.push(split);
    }
    let meta = match fs::read_to_string(dir.join("spec.json")) {
        Ok(json) => Some(serde_json::from_str::<DatasetMeta>(&json).map_err(|e| {
            Error::bad(
                &dir.join("spec.json"),
                format!("is not shapelab dataset metadata: {e}"),
            )
        })?),
        Err(_) => None,
    };
    let (width, height) = size.expect("at least one image");
    let test = if has_test { splits.pop() } else { None };
    let val = splits.pop().expect("two splits");
    let train = splits.pop().expect("two splits");
    skipped.sort();
    let d = Dataset {
        height,
        width,
        class_names,
        factor_names,
        train,
        val,
        test,
        meta,
        skipped,
    };
    d.validate(dir)?;
    Ok(d)
}

type FactorRows = (Vec<String>, BTreeMap<String, Vec<f32>>);

fn read_factors(dir: &Path) -> Result<FactorRows> {
    let path: PathBuf = dir.join("factors.csv");
    if !path.exists() {
        return Ok((Vec::new(), BTreeMap::new()));
    }
    let bad = |r: String| Error::bad(&path, r);
    let mut rdr = csv::Reader::from_path(&path).map_err(|e| bad(e.to_string()))?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    if header.len() < 4 || header[..4] != ["split", "file", "label", "class_name"] {
        return Err(bad(
            "must start with the columns split,file,label,class_name".into(),
        ));
    }
    let names = header[4..].to_vec();
    let mut rows = BTreeMap::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let values = rec
            .iter()
            .skip(4)
            .map(|v| v.parse::<f32>())
            .collect::<std::result::Result<Vec<f32>, _>>()
            .map_err(|e| bad(format!("row {}: {e}", line + 2)))?;
        rows.insert(rec[1].to_string(), values);
    }
    Ok((names, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_round_trip() {
        let spec = shapes::SpecFile::from_toml(
            "train = 14\nval = 7\n[factors]\nrotation = { min = 0, max = 90 }",
        )
        .unwrap()
        .resolve()
        .unwrap();
        let d = Dataset::generate(&spec, None, &|_| {});
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tree");
        write(&d, &dir, false).unwrap();
        assert!(dir.join("train/ellipse").is_dir());
        assert!(dir.join("factors.csv").is_file());
        assert_eq!(read(&dir).unwrap(), d);
    }

    #[test]
    fn rgb_png_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for s in SPLITS {
            fs::create_dir_all(tmp.path().join(s).join("cat")).unwrap();
        }
        let canvas = crate::draw::Canvas::new(4, 4, crate::draw::WHITE);
        fs::write(tmp.path().join("train/cat/a.png"), canvas.to_png().unwrap()).unwrap();
        fs::write(tmp.path().join("val/cat/a.png"), canvas.to_png().unwrap()).unwrap();
        let e = read(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("8-bit grayscale"), "{e}");
    }
}
