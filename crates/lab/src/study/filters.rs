//! The report's section "What the filters detect": the dissection stage's summaries in words
//! and tables, per condition and never pooled across conditions, each case's sheets, and the
//! comparison every labelled share needs: the share of the same layer's initial filters that
//! the same rule labels.
//!
//! Reads [`ReportData`], writes HTML; must not compute a dissection.

use std::fmt::Write as _;

use crate::analyses::dissection::population::{Cell, LayerSummary, Population, Share};
use crate::study::data::ReportData;
use crate::study::html::{esc, img_file};

/// How a trained layer's labelled share compares with its initial filters': the two 95%
/// intervals apart, one way or the other, or overlapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versus {
    Above,
    Below,
    Overlapping,
}

pub fn versus(l: &LayerSummary) -> Versus {
    if l.labelled.low > l.null_labelled.high {
        Versus::Above
    } else if l.labelled.high < l.null_labelled.low {
        Versus::Below
    } else {
        Versus::Overlapping
    }
}

fn share(s: &Share) -> String {
    format!(
        "{:.0}% <span class=\"ci\">[{:.0}, {:.0}]</span>",
        100.0 * s.rate(),
        100.0 * s.low,
        100.0 * s.high
    )
}

/// Per condition, the cell-layers with at least `min_runs` runs, and how many lie above,
/// below or level with their initial filters.
fn tally(p: &Population, condition: &str, min_runs: usize) -> (usize, usize, usize, usize) {
    let layers: Vec<&LayerSummary> = p
        .cells
        .iter()
        .filter(|c| c.condition == condition && c.seeds.len() >= min_runs)
        .flat_map(|c| &c.layers)
        .collect();
    let count = |v: Versus| layers.iter().filter(|l| versus(l) == v).count();
    (
        layers.len(),
        count(Versus::Above),
        count(Versus::Below),
        count(Versus::Overlapping),
    )
}

/// The conditions of a population, in order of appearance.
fn conditions(p: &Population) -> Vec<&str> {
    let mut v: Vec<&str> = Vec::new();
    for c in &p.cells {
        if !v.contains(&c.condition.as_str()) {
            v.push(&c.condition);
        }
    }
    v
}

/// One condition's cells as a table: a row per cell and layer.
fn table(p: &Population, condition: &str) -> String {
    let mut h = String::from("<table class=\"num\"><tr><th>dataset</th><th>arch</th><th>runs</th><th>layer</th><th>labelled (95% CI)</th><th>initial filters</th><th>edge detectors</th><th>commonest labels</th></tr>");
    for c in p.cells.iter().filter(|c| c.condition == condition) {
        for l in &c.layers {
            let mark = match versus(l) {
                Versus::Above => " class=\"above\"",
                Versus::Below => " class=\"below\"",
                Versus::Overlapping => "",
            };
            let labels: Vec<String> = l
                .concepts
                .iter()
                .take(3)
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            let _ = write!(
                h,
                "<tr{mark}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td><td class=\"txt\">{}</td></tr>",
                esc(&c.dataset),
                esc(&c.arch),
                c.seeds.len(),
                l.layer,
                share(&l.labelled),
                share(&l.null_labelled),
                l.edges,
                l.labelled.k,
                esc(&labels.join(", "))
            );
        }
    }
    h + "</table>"
}

/// The case nets' cell of a case, under the case condition.
fn case_cell<'a>(
    p: &'a Population,
    dataset: &str,
    arch: &str,
    condition: &str,
) -> Option<&'a Cell> {
    p.cells
        .iter()
        .find(|c| c.dataset == dataset && c.arch == arch && c.condition.starts_with(condition))
}

/// The section, numbered `n`.
pub fn section(c: &ReportData, n: usize) -> String {
    let mut h = format!("<section id=\"filters\"><h2>{n}. What the filters detect</h2>");
    let Some(p) = &c.dissection else {
        return h + "<p class=\"note\">The dissection stage has not run for this study yet: run <code>shapelab study</code> again to add it (the runs already trained are kept).</p></section>";
    };
    if p.runs == 0 {
        return h + "<p class=\"note\">No run of the sweep learned, so no filter was dissected.</p></section>";
    }
    let _ = write!(
        h,
        "<p>The thesis described its filters by eye. Here each filter of every learned run is measured against the generator's exact concept masks (the interior, the outline, edges in 8 directions of the outward normal, corners, the background), as Network Dissection does on hand-labelled photographs (Bau et al. 2017): its activation map, upsampled to the image, is thresholded at its top {q} over the {split} split, and its IoU with each concept is counted. A concept labels the filter only when its IoU exceeds by {m} the 95th percentile of the IoUs that the same layer's filters reach at Glorot initialisation ({s} initialisations), not a fixed 0.04. The control for every labelled share is the share of those initial filters that the same rule labels: with 12 concepts to clear, some random filters clear one. Removing a filter (the masked evaluation that pruning uses) shows whether it matters.</p>",
        q = p.settings.quantile,
        split = p.split.name(),
        m = p.settings.margin,
        s = p.settings.null_seeds
    );
    h += "<h3>Learned runs against their initial filters</h3>";
    for cond in conditions(p) {
        let (n_layers, above, below, level) = tally(p, cond, 3);
        if n_layers == 0 {
            let _ = write!(
                h,
                "<p>Under <b>{}</b>, no cell has 3 learned runs: too few to compare with its initial filters (the tables below give every cell).</p>",
                esc(cond)
            );
            continue;
        }
        let _ = write!(
            h,
            "<p>Under <b>{}</b>, of the {n_layers} layers of cells with at least 3 learned runs, the labelled share's interval lies above the initial filters' in {above}, below it in {below}, and overlaps it in {level}.</p>",
            esc(cond)
        );
    }
    for cond in conditions(p) {
        let _ = write!(
            h,
            "<details><summary>Every cell under {} (rows above their initial filters in green, below in red)</summary>{}</details>",
            esc(cond),
            table(p, cond)
        );
    }
    h += "<h3>The case studies</h3>";
    let cp = c.case_dissection.as_ref();
    for case in &c.study.table.cases {
        let arch = case.arch.to_string();
        let _ = write!(h, "<article><h4>{} {}</h4>", esc(&case.dataset), esc(&arch));
        match cp.and_then(|p| case_cell(p, &case.dataset, &arch, &c.study.table.case_condition)) {
            Some(cell) => {
                for l in &cell.layers {
                    let _ = write!(h, "<p>{}</p>", esc(&l.sentence(cell)));
                }
            }
            None => {
                h +=
                    "<p class=\"note\">No case net of this cell learned, so none was dissected.</p>"
            }
        }
        let dir = c.dir.join("cases").join(case.slug()).join("dissection");
        for layer in 1..=case.arch.layers() {
            let sheet = dir.join(format!("sheet-layer-{layer}.png"));
            if sheet.exists() {
                h += &img_file(
                    &sheet,
                    &format!(
                        "dissection sheet of {} {} layer {layer}",
                        case.dataset, arch
                    ),
                );
            }
        }
        h += "</article>";
    }
    h + "</section>"
}
