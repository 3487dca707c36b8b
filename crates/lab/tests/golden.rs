//! Golden images: the layout of the sheets, pixel for pixel. A fixed tiny model and panel are
//! drawn and compared with committed PNGs; a deliberate layout change regenerates them with
//! `UPDATE_GOLDEN=1 cargo test -p lab --test golden` (then look at them before committing).

use std::path::PathBuf;

use lab::inside::maps::{filter_sheet, image_sheet, SheetOptions};
use lab::PanelData;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut r = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn check(name: &str, canvas: lab::draw::Canvas) {
    let got = canvas.to_png().unwrap();
    let path = golden(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_GOLDEN=1", path.display()));
    let (w1, h1, a) = decode(&got);
    let (w2, h2, b) = decode(&want);
    assert_eq!((w1, h1), (w2, h2), "{name}: the sheet changed size");
    // Tolerance: a handful of pixels may differ by a few levels (float rounding elsewhere).
    let off = a
        .chunks(3)
        .zip(b.chunks(3))
        .filter(|(x, y)| x.iter().zip(*y).any(|(p, q)| p.abs_diff(*q) > 8))
        .count();
    assert!(
        off * 1000 <= (w1 * h1) as usize,
        "{name}: {off} pixels differ from the golden image"
    );
}

fn fixture() -> (tinycnn::Model, PanelData) {
    let arch = tinycnn::Arch::parse("3-2", 16, 16, 3).unwrap();
    let model = tinycnn::Model::init(&arch, tinycnn::Init::He, 11).unwrap();
    let panel = PanelData::from_panel(&shapes::panel::find("thesis-rotation").unwrap(), 16);
    (model, panel)
}

#[test]
fn filter_sheet_layout() {
    let (model, panel) = fixture();
    let maps = lab::inside::maps::capture(&model, &panel, tinycnn::Scaling::Unit);
    let o = SheetOptions {
        cell: 16,
        ..SheetOptions::default()
    };
    check(
        "filter-sheet.png",
        filter_sheet(&model, &panel, &maps, 0, "golden 3-2: layer 1", &o),
    );
}

#[test]
fn image_sheet_layout() {
    let (model, panel) = fixture();
    let maps = lab::inside::maps::capture(&model, &panel, tinycnn::Scaling::Unit);
    let o = SheetOptions {
        cell: 16,
        stage: lab::inside::maps::Stage::Pre,
        ..SheetOptions::default()
    };
    check(
        "image-sheet.png",
        image_sheet(&model, &panel, &maps, 5, "golden 3-2: image 6", &o),
    );
}

#[test]
fn kernel_sheet_layout() {
    let (model, _) = fixture();
    check(
        "kernel-sheet.png",
        lab::inside::kernels::kernel_sheet(&model, 1, "golden 3-2: layer 2 kernels", 18),
    );
}
