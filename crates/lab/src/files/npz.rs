//! NumPy `.npz` archives: what `numpy.load` reads with no extra code.
//!
//! An `.npz` is a zip of `.npy` files. Headers and string arrays are encoded by `npyz`; the
//! bulk data of numeric arrays is written as raw little-endian bytes after the header (the npy
//! layout), which is what `npyz` would do element by element, only faster. Entries are
//! deflated (as `numpy.savez_compressed` does) with fixed timestamps and permissions, so the
//! same arrays always give the same bytes.
//!
//! Reading accepts numpy's own files (stored or deflated, any of the dtypes a user is likely
//! to produce for labels) and reports a wrong dtype, shape or a truncated file by array name.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Seek, Write};
use std::path::{Path, PathBuf};

use npyz::{DType, TypeStr, WriterBuilder};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::error::{Error, Result};

/// Writes arrays into an `.npz` archive.
pub struct NpzWriter<W: Write + Seek> {
    zip: ZipWriter<W>,
}

fn entry_options(bytes: u64) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1))
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644)
        .large_file(bytes >= u32::MAX as u64)
}

fn header(dtype: &str, shape: &[u64]) -> std::io::Result<Vec<u8>> {
    let ts: TypeStr = dtype.parse().expect("valid type string");
    let mut buf = Vec::new();
    npyz::WriteOptions::new_header_only()
        .dtype(DType::Plain(ts))
        .shape(shape)
        .writer(&mut buf)
        .write_header_only()?;
    Ok(buf)
}

impl<W: Write + Seek> NpzWriter<W> {
    pub fn new(w: W) -> Self {
        NpzWriter {
            zip: ZipWriter::new(w),
        }
    }

    fn start(&mut self, name: &str, bytes: u64) -> std::io::Result<()> {
        self.zip
            .start_file(format!("{name}.npy"), entry_options(bytes))
            .map_err(std::io::Error::other)
    }

    /// Adds a `uint8` array.
    pub fn add_u8(&mut self, name: &str, shape: &[u64], data: &[u8]) -> std::io::Result<()> {
        debug_assert_eq!(shape.iter().product::<u64>() as usize, data.len());
        let h = header("|u1", shape)?;
        self.start(name, (h.len() + data.len()) as u64)?;
        self.zip.write_all(&h)?;
        self.zip.write_all(data)
    }

    /// Adds a `uint16` array (little-endian).
    pub fn add_u16(&mut self, name: &str, shape: &[u64], data: &[u16]) -> std::io::Result<()> {
        debug_assert_eq!(shape.iter().product::<u64>() as usize, data.len());
        let h = header("<u2", shape)?;
        self.start(name, (h.len() + 2 * data.len()) as u64)?;
        self.zip.write_all(&h)?;
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.zip.write_all(&bytes)
    }

    /// Adds a `float32` array.
    pub fn add_f32(&mut self, name: &str, shape: &[u64], data: &[f32]) -> std::io::Result<()> {
        debug_assert_eq!(shape.iter().product::<u64>() as usize, data.len());
        let h = header("<f4", shape)?;
        self.start(name, (h.len() + 4 * data.len()) as u64)?;
        self.zip.write_all(&h)?;
        let mut buf = Vec::with_capacity(4 * data.len().min(1 << 20));
        for chunk in data.chunks(1 << 18) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
            self.zip.write_all(&buf)?;
        }
        Ok(())
    }

    /// Adds a unicode string array (numpy dtype `<U{longest}`); an empty `shape` makes a 0-d
    /// array from one string.
    pub fn add_strings(&mut self, name: &str, shape: &[u64], data: &[&str]) -> std::io::Result<()> {
        let width = data
            .iter()
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
            .max(1);
        let ts: TypeStr = format!("<U{width}").parse().expect("valid type string");
        let mut buf = Vec::new();
        {
            let mut w = npyz::WriteOptions::<str>::new()
                .dtype(DType::Plain(ts))
                .shape(shape)
                .writer(&mut buf)
                .begin_nd()?;
            for s in data {
                w.push(s)?;
            }
            w.finish()?;
        }
        self.start(name, buf.len() as u64)?;
        self.zip.write_all(&buf)
    }

    /// Finishes the archive.
    pub fn finish(self) -> std::io::Result<W> {
        self.zip.finish().map_err(std::io::Error::other)
    }
}

/// One array read from an archive: its header and its raw data bytes.
pub struct RawArray {
    pub dtype: String,
    pub shape: Vec<u64>,
    data: Vec<u8>,
    full: Vec<u8>,
}

/// The arrays of an `.npz` file, read into memory.
pub struct NpzFile {
    path: PathBuf,
    arrays: BTreeMap<String, RawArray>,
}

impl NpzFile {
    /// Reads every array of the archive, checking that each is a well-formed npy.
    pub fn open(path: &Path) -> Result<NpzFile> {
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(path.to_path_buf()),
            _ => Error::io(path, e),
        })?;
        let mut zip = ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
            Error::bad(path, format!("not an .npz archive (a zip of .npy files): {e}; is it truncated or another format?"))
        })?;
        let mut arrays = BTreeMap::new();
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| Error::bad(path, format!("unreadable zip entry {i}: {e}")))?;
            let name = entry.name().to_string();
            let Some(array) = name.strip_suffix(".npy") else {
                continue;
            };
            let mut full = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut full).map_err(|e| {
                Error::bad(
                    path,
                    format!("array `{array}` is damaged ({e}); is the file truncated?"),
                )
            })?;
            let raw =
                parse_npy(&full).map_err(|e| Error::bad(path, format!("array `{array}`: {e}")))?;
            arrays.insert(array.to_string(), raw);
        }
        Ok(NpzFile {
            path: path.to_path_buf(),
            arrays,
        })
    }

    /// The path it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Array names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.arrays.keys().map(String::as_str)
    }

    pub fn has(&self, name: &str) -> bool {
        self.arrays.contains_key(name)
    }

    fn get(&self, name: &str) -> Result<&RawArray> {
        self.arrays.get(name).ok_or_else(|| {
            let have: Vec<&str> = self.names().collect();
            Error::bad(
                &self.path,
                format!(
                    "has no array `{name}` (it holds: {}); is it a shapelab file?",
                    have.join(", ")
                ),
            )
        })
    }

    fn bad(&self, name: &str, what: String) -> Error {
        Error::bad(&self.path, format!("array `{name}` {what}"))
    }

    /// A `uint8` array: `(shape, data)`.
    pub fn u8(&self, name: &str) -> Result<(Vec<u64>, Vec<u8>)> {
        let a = self.get(name)?;
        if a.dtype != "|u1" && a.dtype != "<u1" {
            return Err(self.bad(
                name,
                format!(
                    "has dtype {}, expected uint8 (|u1); convert with .astype(numpy.uint8)",
                    a.dtype
                ),
            ));
        }
        Ok((a.shape.clone(), a.data.clone()))
    }

    /// An integer array of any width, as `i64`.
    pub fn ints(&self, name: &str) -> Result<(Vec<u64>, Vec<i64>)> {
        let a = self.get(name)?;
        let ts = &a.dtype;
        let little = !ts.starts_with('>');
        let (kind, width) = (
            ts.as_bytes().get(1).copied(),
            ts.get(2..).unwrap_or("").parse::<usize>().unwrap_or(0),
        );
        if !matches!(kind, Some(b'u') | Some(b'i'))
            || ![1, 2, 4, 8].contains(&width)
            || !little && width > 1
        {
            return Err(self.bad(name, format!("has dtype {ts}, expected integers")));
        }
        let signed = kind == Some(b'i');
        let out = a
            .data
            .chunks_exact(width)
            .map(|b| {
                let mut buf = [0u8; 8];
                buf[..width].copy_from_slice(b);
                let u = u64::from_le_bytes(buf);
                if signed && width < 8 {
                    let shift = 64 - 8 * width;
                    ((u << shift) as i64) >> shift
                } else {
                    u as i64
                }
            })
            .collect();
        Ok((a.shape.clone(), out))
    }

    /// A float array (`float32` or `float64`), as `f32`.
    pub fn floats(&self, name: &str) -> Result<(Vec<u64>, Vec<f32>)> {
        let a = self.get(name)?;
        let out = match a.dtype.as_str() {
            "<f4" => a
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            "<f8" => a
                .data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            other => {
                return Err(self.bad(
                    name,
                    format!("has dtype {other}, expected float32 or float64"),
                ))
            }
        };
        Ok((a.shape.clone(), out))
    }

    /// A unicode string array, flattened.
    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let a = self.get(name)?;
        if !a.dtype.starts_with("<U") {
            return Err(self.bad(
                name,
                format!("has dtype {}, expected a unicode string array", a.dtype),
            ));
        }
        npyz::NpyFile::new(Cursor::new(&a.full))
            .and_then(|f| f.into_vec::<String>())
            .map_err(|e| self.bad(name, format!("holds invalid text: {e}")))
    }
}

fn parse_npy(full: &[u8]) -> std::result::Result<RawArray, String> {
    let mut cursor = Cursor::new(full);
    let npy = npyz::NpyFile::new(&mut cursor).map_err(|e| format!("is not a valid .npy ({e})"))?;
    if npy.order() != npyz::Order::C {
        return Err("is stored in Fortran order; save it with numpy.ascontiguousarray".into());
    }
    let dtype = match npy.dtype() {
        DType::Plain(ts) => ts.to_string(),
        other => {
            return Err(format!(
                "has structured dtype {other:?}, expected a plain array"
            ))
        }
    };
    let shape = npy.shape().to_vec();
    let start = cursor.position() as usize;
    let item = dtype.get(2..).unwrap_or("").parse::<u64>().unwrap_or(1);
    let item = if dtype.as_bytes().get(1) == Some(&b'U') {
        4 * item
    } else {
        item
    };
    let want = shape.iter().product::<u64>() * item;
    let data = &full[start..];
    if (data.len() as u64) < want {
        return Err(format!(
            "holds {} of its {want} data bytes; the file is truncated, write it again",
            data.len()
        ));
    }
    Ok(RawArray {
        dtype,
        shape,
        data: data[..want as usize].to_vec(),
        full: full.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_kinds() {
        let mut w = NpzWriter::new(Cursor::new(Vec::new()));
        w.add_u8("x", &[2, 3], &[1, 2, 3, 4, 5, 255]).unwrap();
        w.add_f32("f", &[3], &[0.5, -1.0, 1e9]).unwrap();
        w.add_strings("names", &[2], &["ellipse", "tri"]).unwrap();
        w.add_strings("spec", &[], &["{\"a\": \"é\"}"]).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npz");
        std::fs::write(&p, &bytes).unwrap();
        let f = NpzFile::open(&p).unwrap();
        assert_eq!(f.u8("x").unwrap(), (vec![2, 3], vec![1, 2, 3, 4, 5, 255]));
        assert_eq!(f.floats("f").unwrap().1, vec![0.5, -1.0, 1e9]);
        assert_eq!(f.strings("names").unwrap(), vec!["ellipse", "tri"]);
        assert_eq!(f.strings("spec").unwrap(), vec!["{\"a\": \"é\"}"]);
        assert_eq!(f.ints("x").unwrap().1, vec![1, 2, 3, 4, 5, 255]);
        assert!(f.u8("f").unwrap_err().to_string().contains("astype"));
        assert!(f
            .u8("nope")
            .unwrap_err()
            .to_string()
            .contains("holds: f, names, spec, x"));
    }

    #[test]
    fn same_arrays_same_bytes() {
        let make = || {
            let mut w = NpzWriter::new(Cursor::new(Vec::new()));
            w.add_u8("x", &[4], &[9, 8, 7, 6]).unwrap();
            w.finish().unwrap().into_inner()
        };
        assert_eq!(make(), make());
    }

    #[test]
    fn truncated_archive_is_reported() {
        let mut w = NpzWriter::new(Cursor::new(Vec::new()));
        w.add_u8("x", &[1000], &[7; 1000]).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npz");
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = NpzFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&p, b"hello").unwrap();
        assert!(NpzFile::open(&p).is_err());
    }
}
