//! The study's report: one self-contained HTML file that reads like the thesis.
//!
//! Built from the study directory alone: the store (runs, histories, continuations, analyses)
//! and the pictures the study wrote; nothing is trained or analysed again, so `shapelab report
//! DIR` rebuilds it in seconds. Every number shown is read or computed from the store; every
//! image is embedded (base64), so the file works offline and can be mailed as is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::analyses::analysis::Report as Analysis;
use crate::analyses::pruning::PruneJson;
use base64::Engine as _;

use crate::draw::{Canvas, FAINT, FRAME, INK, PAPER};
use crate::error::{Error, Result};
use crate::experiments::outcome::Outcome;
use crate::experiments::store::{RunRow, Store};
use crate::experiments::summary::{summarize, wilson, Group};
use crate::study::config::{data_file, pick_case, Study};
use tinycnn::ArchLabel;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn img_bytes(png: &[u8], alt: &str) -> String {
    format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
        esc(alt),
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

/// An image file embedded, or a note that it is missing.
fn img_file(path: &Path, alt: &str) -> String {
    match std::fs::read(path) {
        Ok(b) => img_bytes(&b, alt),
        Err(_) => format!(
            "<p class=\"missing\">({} not found)</p>",
            esc(&path.display().to_string())
        ),
    }
}

/// A drawn picture embedded as a PNG; a picture that fails to encode is an error, never an
/// empty image.
fn img_canvas(c: &Canvas, alt: &str) -> Result<String> {
    let png = c
        .to_png()
        .map_err(|e| Error::io(Path::new("report.html"), e))?;
    Ok(img_bytes(&png, alt))
}

fn pct(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.digits$}"))
}

/// The report's style sheet (`report.css` beside this file, built in: no CDN, no network).
const STYLE: &str = include_str!("report.css");

/// The report's script: sortable tables and the image check the browser test reads
/// (`report.js` beside this file, built in).
const SCRIPT: &str = include_str!("report.js");

/// Validation accuracy against epoch for every run of a group, coloured by outcome.
fn learning_curves(title: &str, runs: &[(&RunRow, Vec<tinycnn::EpochStats>)]) -> Canvas {
    let (w, h) = (520usize, 270usize);
    let (l, t, pw, ph) = (50usize, 34usize, 450usize, 190usize);
    let mut c = Canvas::new(w, h, PAPER);
    c.text(10, 8, title, 1, INK);
    c.frame(l, t, pw, ph, FRAME);
    let epochs = runs.iter().map(|r| r.1.len()).max().unwrap_or(1).max(2);
    for v in [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0] {
        let y = t + ((1.0 - v) * ph as f64) as usize;
        c.fill(l, y, pw, 1, [228, 228, 222]);
        c.text(8, y.saturating_sub(4), &format!("{v:.2}"), 1, FAINT);
    }
    let color = |o: &Outcome| match o {
        Outcome::Learned => [26, 152, 80],
        Outcome::Stuck => [178, 24, 43],
        Outcome::Partial => [230, 145, 56],
        Outcome::Diverged => [120, 120, 120],
    };
    for (r, hist) in runs {
        let pts: Vec<(i64, i64)> = hist
            .iter()
            .map(|e| {
                let x = l as f64 + pw as f64 * (e.epoch - 1) as f64 / (epochs - 1) as f64;
                let y = t as f64 + ph as f64 * (1.0 - e.val_acc.clamp(0.0, 1.0));
                (x.round() as i64, y.round() as i64)
            })
            .collect();
        for p in pts.windows(2) {
            c.line(p[0], p[1], color(&r.outcome));
        }
    }
    let mut x = l;
    for o in Outcome::ALL {
        c.fill(x, t + ph + 14, 10, 10, color(&o));
        c.text(x + 14, t + ph + 15, o.name(), 1, INK);
        x += 100;
    }
    c.text(
        l + pw - 90,
        t + ph + 30,
        &format!("epochs 1-{epochs}"),
        1,
        FAINT,
    );
    c
}

/// One row per architecture, one group of columns per condition.
fn sweep_table(groups: &[&Group]) -> String {
    let mut s = String::from(
        "<div class=\"scroll\"><table class=\"sortable\"><thead><tr><th>architecture</th>",
    );
    for g in groups {
        let c = esc(if g.condition.is_empty() {
            "default"
        } else {
            &g.condition
        });
        let _ = write!(
            s,
            "<th>{c}: learned</th><th>95% interval</th><th>epochs to learn</th><th>stuck</th>"
        );
    }
    s += "</tr></thead><tbody>";
    let mut archs: Vec<&ArchLabel> = groups
        .iter()
        .flat_map(|g| g.cells.iter().map(|c| &c.arch))
        .collect();
    archs.sort_by_key(|a| (a.layers(), *a));
    archs.dedup();
    for a in archs {
        let shown = esc(&a.to_string());
        let _ = write!(s, "<tr><td data-v=\"{shown}\">{shown}</td>");
        for g in groups {
            match g.cells.iter().find(|c| c.arch == *a) {
                Some(c) => {
                    let _ = write!(
                        s,
                        "<td data-v=\"{}\">{}/{} ({})</td><td>{}-{}</td><td>{}</td><td>{}</td>",
                        c.rate,
                        c.learned,
                        c.runs,
                        pct(c.rate),
                        pct(c.low),
                        pct(c.high),
                        c.median_epochs.map_or("-".into(), |e| format!("{e}")),
                        c.outcomes.get("stuck").copied().unwrap_or(0)
                    );
                }
                None => s += "<td></td><td></td><td></td><td></td>",
            }
        }
        s += "</tr>";
    }
    s + "</tbody></table></div>"
}

/// The distribution of final validation accuracies of some runs, as bars of 0.1.
fn accuracy_histogram(title: &str, runs: &[&RunRow]) -> Canvas {
    let bins = 10;
    let mut counts = vec![0usize; bins];
    for r in runs {
        counts[((r.val_acc * bins as f64) as usize).min(bins - 1)] += 1;
    }
    let n = runs.len().max(1) as f64;
    let bars: Vec<(String, f64, usize)> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| (format!("{:.1}", i as f64 / bins as f64), c as f64 / n, c))
        .collect();
    crate::analyses::plots::bars(title, &bars)
}

fn pruning_table(p: &PruneJson) -> String {
    let (filters, steps) = (&p.filters, &p.steps);
    let removed_at = p.removed_at();
    let mut s =
        String::from("<div class=\"scroll\"><table class=\"prune\"><thead><tr><th>filter</th>");
    for i in 1..=steps.len() {
        let _ = write!(s, "<th>{i}</th>");
    }
    s += "</tr></thead><tbody>";
    for (j, f) in filters.iter().enumerate() {
        let survivor = removed_at[j].is_none();
        let _ = write!(
            s,
            "<tr><td class=\"{}\">{}</td>",
            if survivor { "survivor" } else { "" },
            f.label()
        );
        for (i, st) in steps.iter().enumerate() {
            let a = st.accuracies.get(j).copied().flatten();
            let cell = match (a, removed_at[j]) {
                (_, Some(r)) if r < i + 1 => "<td class=\"gone\">-</td>".to_string(),
                (Some(a), Some(r)) if r == i + 1 => format!("<td class=\"removed\">{a:.4}</td>"),
                (Some(a), _) => format!("<td>{a:.4}</td>"),
                (None, _) => "<td></td>".into(),
            };
            s += &cell;
        }
        s += "</tr>";
    }
    s += "<tr><td><b>after</b></td>";
    for st in steps {
        let _ = write!(s, "<td><b>{:.4}</b></td>", st.accuracy_after);
    }
    s + "</tr></tbody></table></div>"
}

/// Stuck-run statistics of one dataset and condition, summed over architectures.
#[derive(Default)]
struct StuckAgg {
    runs: usize,
    stuck: usize,
    plateaus: BTreeMap<String, usize>,
    /// Dead fraction of the last layer, times runs, and the runs counted.
    dead: (f64, f64, f64, f64),
    starts: Vec<f64>,
    escaped: usize,
    tried: usize,
}

impl StuckAgg {
    fn add(&mut self, g: &crate::experiments::stuck::StuckGroup) {
        self.runs += g.runs;
        self.stuck += g.stuck;
        for (p, n) in &g.plateaus {
            *self.plateaus.entry(p.clone()).or_default() += n;
        }
        if let Some(v) = g.dead_fraction_stuck.last() {
            self.dead.0 += v * g.stuck as f64;
            self.dead.1 += g.stuck as f64;
        }
        let others = g.runs - g.stuck;
        if let Some(v) = g.dead_fraction_other.last() {
            self.dead.2 += v * others as f64;
            self.dead.3 += others as f64;
        }
        if let Some(v) = g.median_plateau_start {
            self.starts.push(v);
        }
        for (_, _, k, n) in &g.continued {
            self.escaped += k;
            self.tried += n;
        }
    }
    fn dead_stuck(&self) -> String {
        if self.dead.1 > 0.0 {
            pct(self.dead.0 / self.dead.1)
        } else {
            "-".into()
        }
    }
    fn dead_other(&self) -> String {
        if self.dead.3 > 0.0 {
            pct(self.dead.2 / self.dead.3)
        } else {
            "-".into()
        }
    }
}

/// The thesis's reading of a pruning table: filters, initial accuracy, how many removals
/// (in order) cost at most 0.01 of accuracy, how many keep it at or above 0.90, survivors.
fn pruning_numbers(p: &PruneJson) -> (usize, f64, usize, usize, Vec<String>) {
    let initial = p.initial_accuracy;
    let (mut removed, mut keep99, mut keep90) = (0, 0, 0);
    for st in &p.steps {
        let before = removed;
        removed += st.removed.len();
        let a = st.accuracy_after;
        if a >= initial - 0.01 && keep99 == before {
            keep99 = removed;
        }
        if a >= 0.9 && keep90 == before {
            keep90 = removed;
        }
    }
    let survivors = p.survivors.iter().map(|f| f.label()).collect();
    (p.filters.len(), initial, keep99, keep90, survivors)
}

fn pruning_summary(p: &PruneJson) -> String {
    let (filters, initial, keep99, keep90, survivors) = pruning_numbers(p);
    format!(
        "Starting from {initial:.4} with {filters} filters: the first {keep99} removals cost at most 0.01 of accuracy, and accuracy stays at or above 0.90 for the first {keep90}; the minimal network keeps {} ({} evaluations, exact).",
        survivors.join(" and "),
        p.evaluations
    )
}

fn finding(h: &mut String, title: &str, body: &str) {
    let _ = write!(h, "<div class=\"finding\"><b>{title}</b> {body}</div>");
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// What the case studies are, in the thesis's words when they are the thesis's four: "16-4
/// and 2-16 on the size dataset, 16-16 and 8-4 on the rotation dataset".
fn cases_sentence(cases: &[crate::study::config::Case]) -> String {
    let mut by_dataset: Vec<(&str, Vec<String>)> = Vec::new();
    for c in cases {
        match by_dataset.iter_mut().find(|(d, _)| *d == c.dataset) {
            Some((_, archs)) => archs.push(c.arch.to_string()),
            None => by_dataset.push((&c.dataset, vec![c.arch.to_string()])),
        }
    }
    let parts: Vec<String> = by_dataset
        .iter()
        .map(|(d, archs)| format!("{} on the {d} dataset", archs.join(" and ")))
        .collect();
    let thesis = parts.join(", ")
        == "16-4 and 2-16 on the size dataset, 16-16 and 8-4 on the rotation dataset";
    if thesis {
        format!("As in the thesis (its Chapter 3): {}", parts.join(", "))
    } else {
        format!("The study's case studies: {}", parts.join(", "))
    }
}

/// The findings section's paragraphs, every number computed from the runs and case analyses.
fn findings(
    runs: &[RunRow],
    stuck_groups: &[crate::experiments::stuck::StuckGroup],
    cases: &[(String, Analysis)],
) -> Result<String> {
    let mut h = String::new();
    let mut conds: Vec<&str> = runs.iter().map(|r| r.condition.as_str()).collect();
    conds.sort();
    conds.dedup();
    // How often the same architecture learns, per condition.
    for cond in &conds {
        let rs: Vec<&RunRow> = runs.iter().filter(|r| r.condition == *cond).collect();
        let count = |f: &dyn Fn(&RunRow) -> bool, o: Outcome| {
            rs.iter().filter(|r| f(r) && r.outcome == o).count()
        };
        let all = |_: &RunRow| true;
        // By layer count: a three-layer net is neither (it used to count as two-layer).
        let two = |r: &RunRow| r.arch.layers() == 2;
        let one = |r: &RunRow| r.arch.layers() == 1;
        let deeper = |r: &RunRow| r.arch.layers() > 2;
        let n_deeper = rs.iter().filter(|r| deeper(r)).count();
        let deeper_text = if n_deeper == 0 {
            String::new()
        } else {
            format!(
                "; three or more: {}/{n_deeper}",
                count(&deeper, Outcome::Learned)
            )
        };
        let k = count(&all, Outcome::Learned);
        let (lo, hi) = wilson(k, rs.len());
        let mixed = {
            let mut cells: BTreeMap<(&str, &ArchLabel), (usize, usize)> = BTreeMap::new();
            for r in &rs {
                let e = cells.entry((r.dataset.as_str(), &r.arch)).or_default();
                e.0 += 1;
                e.1 += usize::from(r.outcome == Outcome::Learned);
            }
            let m = cells.values().filter(|(n, l)| *l > 0 && l < n).count();
            if m == 0 {
                format!("No architecture both learned and failed with different seeds ({} dataset-architecture cells).", cells.len())
            } else {
                format!(
                    "The same architecture both learned and failed with different seeds in {m} of {} dataset-architecture cells: whether a tiny net learns depends on its initialisation as well as its size, as the thesis saw.",
                    cells.len()
                )
            }
        };
        finding(
            &mut h,
            &format!("Learning under {}.", esc(if cond.is_empty() { "the default settings" } else { cond })),
            &format!(
                "{k} of {} runs learned ({}, 95% interval {}-{}); {} got stuck and {} stopped part-way. Two conv layers: {}/{} learned; one layer: {}/{}{deeper_text}. {mixed}",
                rs.len(),
                pct(k as f64 / rs.len().max(1) as f64),
                pct(lo),
                pct(hi),
                count(&all, Outcome::Stuck),
                count(&all, Outcome::Partial),
                count(&two, Outcome::Learned),
                rs.iter().filter(|r| two(r)).count(),
                count(&one, Outcome::Learned),
                rs.iter().filter(|r| one(r)).count(),
            ),
        );
    }
    // When runs get stuck.
    let stuck_total: usize = stuck_groups.iter().map(|g| g.stuck).sum();
    if stuck_total > 0 {
        let mut agg = StuckAgg::default();
        for g in stuck_groups {
            agg.add(g);
        }
        let by_cond: Vec<String> = conds
            .iter()
            .map(|c| {
                let n = runs.iter().filter(|r| r.condition == *c).count();
                let k = runs
                    .iter()
                    .filter(|r| r.condition == *c && r.outcome == Outcome::Stuck)
                    .count();
                format!("{} {k}/{n}", if c.is_empty() { "default" } else { c })
            })
            .collect();
        // Stuck share by the first layer's width, over two-layer runs.
        let mut by_f1: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for r in runs.iter().filter(|r| r.arch.layers() == 2) {
            let f1 = r.arch.filters()[0];
            let e = by_f1.entry(f1).or_default();
            e.0 += 1;
            e.1 += usize::from(r.outcome == Outcome::Stuck);
        }
        let f1: Vec<String> = by_f1
            .iter()
            .map(|(f, (n, k))| format!("{f}: {}", pct(*k as f64 / (*n).max(1) as f64)))
            .collect();
        let plateaus: Vec<String> = agg
            .plateaus
            .iter()
            .map(|(p, n)| format!("{n} at {p}"))
            .collect();
        let dead = if agg.dead.1 > 0.0 {
            agg.dead.0 / agg.dead.1
        } else {
            0.0
        };
        let verdict = if agg.tried > 0 && agg.escaped * 10 < agg.tried && dead >= 0.5 {
            "So a stuck run is not a slow learner in a shallow minimum: its last layer's ReLUs are dead, no gradient reaches those filters, and more epochs do not help."
        } else if agg.tried > 0 && agg.escaped * 10 >= agg.tried {
            "A good share escape: many plateaus are slow stretches rather than dead ends."
        } else {
            "The evidence is mixed: see the table above."
        };
        finding(
            &mut h,
            "When runs get stuck, and whether it is a local minimum (thesis future work 4).",
            &format!(
                "{stuck_total} runs got stuck ({}); by condition: {}. Share of two-layer runs stuck by first-layer filters: {}. In stuck runs, on average {} of the last conv layer's filters are dead (zero on every training image), against {} in the other runs; the plateau begins by epoch {} (median over architectures). Trained further, {} of {} escaped. {}",
                plateaus.join(", "),
                by_cond.join("; "),
                f1.join(", "),
                agg.dead_stuck(),
                agg.dead_other(),
                crate::experiments::summary::median(&mut agg.starts.clone()).map_or("-".into(), |v| format!("{v}")),
                agg.escaped,
                agg.tried,
                verdict
            ),
        );
    }
    if cases.is_empty() {
        return Ok(h);
    }
    // (a) Similar filters, hence redundant.
    let (mut with, mut without, mut nw, mut nwo, mut twins, mut total) =
        (0.0, 0.0, 0usize, 0usize, 0usize, 0usize);
    let mut removable = Vec::new();
    let mut thresholds: Vec<String> = Vec::new();
    for (slug, a) in cases {
        let s = &a.similarity;
        let shown = format!("{}%", s.threshold);
        if !thresholds.contains(&shown) {
            thresholds.push(shown);
        }
        if let Some(v) = s.drop_with_twin {
            with += v * s.with_twin as f64;
            nw += s.with_twin;
        }
        if let Some(v) = s.drop_without_twin {
            without += v * s.without_twin as f64;
            nwo += s.without_twin;
        }
        for l in &s.layers {
            for (i, row) in l.activation_cosine.iter().enumerate() {
                total += 1;
                if row
                    .iter()
                    .enumerate()
                    .any(|(j, &v)| j != i && v >= s.threshold)
                {
                    twins += 1;
                }
            }
        }
        let (n, _, k99, _, _) = pruning_numbers(&a.pruning);
        removable.push(format!("{slug} {k99}/{n}"));
    }
    finding(
        &mut h,
        "Filters are often alike, hence redundant (thesis conclusion a).",
        &format!(
            "Over the {} case studies, {twins} of {total} filters have a twin whose activation maps are at least {} alike (cosine over the validation set). Removing one filter alone costs {} of accuracy on average when it has a twin ({nw} filters), against {} when it has none ({nwo}). Filters greedy pruning removes for at most 0.01 of accuracy: {}.",
            cases.len(),
            thresholds.join(" or "),
            fmt_opt((nw > 0).then(|| with / nw as f64), 4),
            fmt_opt((nwo > 0).then(|| without / nwo as f64), 4),
            removable.join(", ")
        ),
    );
    // (b) Interaction.
    let (mut raised, mut strong, mut pairs) = (0usize, 0usize, 0usize);
    let mut best: Option<(f64, String)> = None;
    for (slug, a) in cases {
        for e in &a.interaction.events {
            if e.kind == crate::analyses::interaction::EventKind::Raised {
                raised += 1;
                let gain = e.after - e.before;
                if best.as_ref().is_none_or(|b| gain > b.0) {
                    best = Some((gain, format!("{slug}, {}", e.text)));
                }
            }
        }
        for (i, row) in a.interaction.interaction.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                if let (true, Some(v)) = (i < j, v) {
                    pairs += 1;
                    strong += usize::from(v.abs() > 0.05);
                }
            }
        }
    }
    finding(
        &mut h,
        "Filters interact (thesis conclusion b).",
        &format!(
            "Of the {pairs} pairs of filters in the case studies, {strong} interact strongly: removing both changes accuracy by more than 0.05 beyond the sum of removing each alone. Along the pruning paths, {raised} removals raised accuracy{}. {}",
            best.map_or(String::new(), |(_, t)| format!(" (the largest: {})", esc(&t))),
            if strong + raised > 0 {
                "One-at-a-time scores therefore do not add up, as the thesis found when accuracy rose from 66.7% to 87.1% after one deletion."
            } else {
                "Here the filters act nearly independently: one-at-a-time scores add up."
            }
        ),
    );
    // (c) Agreement of the readings with pruning.
    let mut agree: BTreeMap<(usize, crate::analyses::ranking::Criterion), Vec<f64>> =
        BTreeMap::new();
    for (_, a) in cases {
        for ag in &a.ranking.agreement {
            if let Some(v) = ag.spearman {
                agree.entry((ag.layer, ag.criterion)).or_default().push(v);
            }
        }
    }
    let mut layers: BTreeMap<usize, Vec<(crate::analyses::ranking::Criterion, f64)>> =
        BTreeMap::new();
    for ((l, c), v) in &agree {
        layers
            .entry(*l)
            .or_default()
            .push((*c, mean(v).unwrap_or(0.0)));
    }
    let verdicts: Vec<String> = layers
        .iter()
        .map(|(l, v)| {
            let parts: Vec<String> = v.iter().map(|(c, m)| format!("{c} {m:+.2}")).collect();
            let top = v.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
            let word = if top >= 0.5 {
                "agree"
            } else if top >= 0.2 {
                "agree weakly"
            } else {
                "do not agree"
            };
            format!("layer {l}: {} &mdash; they {word}", parts.join(", "))
        })
        .collect();
    finding(
        &mut h,
        "Do simple readings of the filters agree with pruning? (thesis conclusion c)",
        &format!(
            "Mean Spearman correlation between each criterion and the greedy pruning order (1: the criterion ranks filters exactly as pruning keeps them), over the case studies: {}. The thesis read activation maps by eye (here: mean activation, and its future-work L1 norm) and found agreement clear for layer 1 and hardly readable for layer 2.",
            verdicts.join("; ")
        ),
    );
    Ok(h)
}

/// What every section of the report reads: the study directory, its store, configuration and
/// runs.
struct Ctx<'a> {
    dir: &'a Path,
    store: &'a Store,
    study: &'a Study,
    runs: &'a [RunRow],
}

/// Section 1: each dataset with its contact sheet, factor histograms and panel.
fn datasets_section(c: &Ctx) -> Result<String> {
    let dir = c.dir;
    let store = c.store;
    let runs = c.runs;
    let plan = &c.study.plan;
    let mut h = String::new();
    h += "<section id=\"datasets\"><h2>1. Datasets</h2>";
    for d in &plan.datasets {
        let ds = match runs.iter().find(|r| r.dataset == d.label) {
            Some(r) => store.dataset(&r.dataset_hash)?,
            None => None,
        };
        let _ = write!(h, "<h3>{}</h3>", esc(&d.label));
        if let Some(ds) = &ds {
            let _ = write!(
                h,
                "<p>{} training and {} validation images of {}x{} pixels, classes {}; dataset hash <code>{}</code>.</p>",
                ds.train,
                ds.val,
                ds.width,
                ds.height,
                esc(&ds.class_names.join(", ")),
                crate::text::prefix(&ds.hash, 12)
            );
        }
        h += &img_file(
            &data_file(dir, &d.label, ".contact.png"),
            &format!("{} contact sheet", d.label),
        );
        let mut hists: Vec<PathBuf> = std::fs::read_dir(dir.join("data"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        let n = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        n.starts_with(&format!("{}-", d.label))
                            && n.ends_with(".png")
                            && !n.contains("panel")
                    })
                    .collect()
            })
            .unwrap_or_default();
        hists.sort();
        h += "<div class=\"row\"><div><h4>Factor histograms</h4>";
        for p in hists {
            h += &img_file(&p, "factor histogram");
        }
        h += "</div><div><h4>Panel for looking inside the networks</h4>";
        h += &img_file(
            &data_file(dir, &d.label, "-panel.png"),
            &format!("{} panel", d.label),
        );
        h += "</div></div>";
    }
    h += "</section>";

    Ok(h)
}

/// Section 2: the sweep, as success-rate heatmaps, learning curves, accuracy histograms and
/// outcome counts per dataset and condition.
fn sweep_section(c: &Ctx) -> Result<String> {
    let store = c.store;
    let runs = c.runs;
    let plan = &c.study.plan;
    let mut h = String::new();
    let groups = summarize(runs);
    h += "<section id=\"sweep\"><h2>2. The sweep</h2>";
    let _ = write!(
        h,
        "<p>The thesis trained each filter combination a few times by hand (its Tables 2, 5 and 8). Here every architecture was trained with {} seeds per cell under each condition. A run <i>learned</i> when its validation accuracy reached {}; it is <i>stuck</i> when some class is never predicted, <i>partial</i> otherwise. Intervals are Wilson 95% intervals.</p>",
        runs.iter().map(|r| r.seed_index).max().unwrap_or(0),
        plan.learned
    );
    let mut datasets: Vec<&str> = groups.iter().map(|g| g.dataset.as_str()).collect();
    datasets.dedup();
    for d in datasets {
        let gs: Vec<&Group> = groups.iter().filter(|g| g.dataset == d).collect();
        let _ = write!(h, "<h3>{}</h3><div class=\"row\">", esc(d));
        let owned: Vec<Group> = gs.iter().map(|g| (*g).clone()).collect();
        h += &img_canvas(
            &crate::experiments::summary::heatmap(&owned),
            "success-rate heatmap",
        )?;
        let mut curves = String::new();
        let mut dists = String::new();
        for g in &gs {
            let cond = if g.condition.is_empty() {
                "default"
            } else {
                g.condition.as_str()
            };
            let members: Vec<&RunRow> = runs
                .iter()
                .filter(|r| r.dataset == g.dataset && r.condition == g.condition)
                .collect();
            let hist: Vec<(&RunRow, Vec<tinycnn::EpochStats>)> = members
                .iter()
                .map(|r| Ok((*r, store.history(&r.key)?)))
                .collect::<Result<_>>()?;
            curves += &img_canvas(
                &learning_curves(
                    &format!("{cond}: validation accuracy per epoch, {} runs", hist.len()),
                    &hist,
                ),
                "learning curves",
            )?;
            dists += &img_canvas(
                &accuracy_histogram(
                    &format!(
                        "{cond}: final validation accuracy, share of {} runs",
                        members.len()
                    ),
                    &members,
                ),
                "outcome distribution",
            )?;
        }
        let _ = write!(
            h,
            "<div>{curves}</div></div><div class=\"row\">{dists}</div>"
        );
        h += &sweep_table(&gs);
    }
    let mut outcome_rows: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    for r in runs {
        *outcome_rows
            .entry((r.dataset.clone(), r.condition.clone()))
            .or_default()
            .entry(r.outcome.name().to_string())
            .or_insert(0) += 1;
    }
    h += "<h3>Outcomes</h3><table class=\"sortable\"><thead><tr><th>dataset</th><th>condition</th><th>runs</th><th>learned</th><th>stuck</th><th>partial</th><th>diverged</th></tr></thead><tbody>";
    for ((d, c), o) in &outcome_rows {
        let g = |k: &str| o.get(k).copied().unwrap_or(0);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(d),
            esc(c),
            o.values().sum::<usize>(),
            g("learned"),
            g("stuck"),
            g("partial"),
            g("diverged")
        );
    }
    h += "</tbody></table></section>";

    Ok(h)
}

/// Section 3: the runs that get stuck, their diagnosis and whether they escape.
fn stuck_section(stuck_groups: &[crate::experiments::stuck::StuckGroup]) -> String {
    let mut h = String::new();
    h += "<section id=\"stuck\"><h2>3. Runs that get stuck</h2><p>The thesis saw runs stop at 0.333 or 0.667 and asked whether they were stuck in a local minimum (its future work 4). For every stuck run the store holds a diagnosis; stuck runs were then trained further to see whether they escape.</p>";
    // One line per dataset and condition, weighting each architecture by its runs.
    let mut agg: BTreeMap<(String, String), StuckAgg> = BTreeMap::new();
    for g in stuck_groups {
        let a = agg
            .entry((g.dataset.clone(), g.condition.clone()))
            .or_default();
        a.add(g);
    }
    h += "<div class=\"scroll\"><table class=\"sortable\"><thead><tr><th>dataset</th><th>condition</th><th>stuck / runs</th><th>plateaus</th><th>dead filters, last layer: stuck runs</th><th>other runs</th><th>plateau from epoch (median over architectures)</th><th>escaped when trained further</th></tr></thead><tbody>";
    for ((d, c), a) in &agg {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(d),
            esc(c),
            a.stuck,
            a.runs,
            a.plateaus.iter().map(|(p, n)| format!("{p} x{n}")).collect::<Vec<_>>().join(", "),
            a.dead_stuck(),
            a.dead_other(),
            crate::experiments::summary::median(&mut a.starts.clone()).map_or("-".into(), |v| format!("{v}")),
            if a.tried == 0 { "-".into() } else { format!("{}/{}", a.escaped, a.tried) }
        );
    }
    h += "</tbody></table></div><details><summary>By architecture</summary><div class=\"scroll\"><table class=\"sortable\"><thead><tr><th>dataset</th><th>condition</th><th>architecture</th><th>stuck/runs</th><th>plateaus</th><th>dead filters per layer (stuck)</th><th>(others)</th><th>median gradient norm</th><th>plateau from epoch</th><th>escaped</th></tr></thead><tbody>";
    for g in stuck_groups.iter().filter(|g| g.stuck > 0) {
        let f = |v: &[f64]| v.iter().map(|x| pct(*x)).collect::<Vec<_>>().join(" / ");
        let pl: Vec<String> = g
            .plateaus
            .iter()
            .map(|(p, n)| format!("{p} x{n}"))
            .collect();
        let cont: Vec<String> = g
            .continued
            .iter()
            .map(|(e, _, k, n)| format!("{k}/{n} (+{e} epochs)"))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.dataset),
            esc(&g.condition),
            esc(&g.arch.to_string()),
            g.stuck,
            g.runs,
            pl.join(", "),
            f(&g.dead_fraction_stuck),
            f(&g.dead_fraction_other),
            g.median_grad_norm.map_or("-".into(), |v| format!("{v:.1e}")),
            g.median_plateau_start.map_or("-".into(), |v| format!("{v}")),
            if cont.is_empty() { "-".into() } else { cont.join(", ") }
        );
    }
    h += "</tbody></table></div></details></section>";

    h
}

/// Section 4: every case study opened up; returns the section and the case analyses the
/// findings read.
fn cases_section(c: &Ctx) -> Result<(String, Vec<(String, Analysis)>)> {
    let study = c.study;
    let mut h = String::new();
    let _ = write!(
        h,
        "<section id=\"cases\"><h2>4. Case studies</h2><p>{}, each the first seed that learned.</p>",
        esc(&cases_sentence(&study.table.cases))
    );
    let mut case_reports: Vec<(String, Analysis)> = Vec::new();
    for case in &study.table.cases {
        let (article, analysis) = case_article(c, case)?;
        h += &article;
        case_reports.extend(analysis);
    }
    h += "</section>";

    Ok((h, case_reports))
}

/// One case study's article: its run, activation maps and kernels, pruning table, agreement of
/// the importance criteria, similarity, interaction and failures; with its analysis when the
/// store holds it.
fn case_article(
    c: &Ctx,
    case: &crate::study::config::Case,
) -> Result<(String, Option<(String, Analysis)>)> {
    let dir = c.dir;
    let store = c.store;
    let study = c.study;
    let runs = c.runs;
    let mut h = String::new();
    let slug = case.slug();
    let _ = write!(
        h,
        "<article id=\"case-{}\"><h3>{} on {}</h3>",
        esc(&slug),
        esc(&case.arch.to_string()),
        esc(&case.dataset)
    );
    let Some((row, learned)) = pick_case(runs, case, &study.table.case_condition) else {
        h += "<p class=\"missing\">No run of this architecture in the study.</p></article>";
        return Ok((h, None));
    };
    let params = serde_json::json!({ "case": case }).to_string();
    let analysis: Option<Analysis> = store
        .analyses(&row.key)?
        .into_iter()
        .find(|(k, p, _)| {
            *k == crate::experiments::store::AnalysisKind::StudyCase && *p == params
        })
        .map(|(_, _, r)| {
            // A stored analysis that does not read back is an error, never a zero.
            serde_json::from_str(&r).map_err(|e| {
                Error::bad(
                    store.path(),
                    format!("the case analysis of run {} does not read back ({e}); delete {} and run `shapelab study` again to redo it", row.key, dir.join("cases").join(&slug).display()),
                )
            })
        })
        .transpose()?;
    let ds = store.dataset(&row.dataset_hash)?.ok_or_else(|| {
        Error::bad(
            store.path(),
            format!(
                "has run {} but not its dataset; the store is damaged",
                row.key
            ),
        )
    })?;
    let arch = tinycnn::Arch::from_label(&case.arch, ds.height, ds.width, ds.class_names.len())?;
    let _ = write!(
        h,
        "<p>Run <code>{}</code>: {} ({} parameters on {}x{}), validation accuracy {:.4} after {} epochs{}.</p>",
        esc(&row.key),
        esc(&case.arch.to_string()),
        arch.param_count(),
        ds.width,
        ds.height,
        row.val_acc,
        row.epochs_run,
        if learned { "" } else { " &mdash; <b>no seed learned; this is the best run</b>" }
    );
    let base = dir.join("cases").join(&slug);
    h += "<h4>Activation maps (the thesis's Figures 15 and 17)</h4><div class=\"row\">";
    for l in 1..=row.arch.layers() {
        h += &img_file(
            &base.join(format!("activations/layer-{l}.png")),
            &format!("{slug} layer {l} activations"),
        );
    }
    h += "</div><h4>Kernels</h4><div class=\"row\">";
    for l in 1..=row.arch.layers() {
        h += &img_file(
            &base.join(format!("kernels/layer-{l}.png")),
            &format!("{slug} layer {l} kernels"),
        );
    }
    h += "</div>";
    let Some(a) = analysis else {
        h += "<p class=\"missing\">The case analysis is not in the store yet; run <code>shapelab study</code> again.</p></article>";
        return Ok((h, None));
    };
    h += "<h4>Greedy pruning (the thesis's Tables 4, 6, 7, 9-11)</h4><p class=\"note\">Accuracy after removing each filter at each step; orange: the filter removed; green: the filters of the minimal network.</p>";
    h += &pruning_table(&a.pruning);
    h += &format!("<p>{}</p>", pruning_summary(&a.pruning));
    h += "<div class=\"row\">";
    h += &img_file(&base.join("analysis/prune/accuracy.png"), "pruning curve");
    h += "<div>";
    h += "<h4>Agreement of the importance criteria with the pruning order</h4><table><thead><tr><th>layer</th><th>criterion</th><th>Spearman</th><th>Kendall</th></tr></thead><tbody>";
    for ag in &a.ranking.agreement {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ag.layer,
            esc(ag.criterion.name()),
            fmt_opt(ag.spearman, 2),
            fmt_opt(ag.kendall, 2)
        );
    }
    h +=
        "</tbody></table></div></div><h4>Filter similarity and interaction</h4><div class=\"row\">";
    for l in 1..=row.arch.layers() {
        h += &img_file(
            &base.join(format!("analysis/similarity-layer-{l}-activations.png")),
            "activation similarity",
        );
    }
    h += &img_file(&base.join("analysis/interaction.png"), "interaction matrix");
    h += "</div>";
    let events = &a.interaction.events;
    if !events.is_empty() {
        h += "<ul>";
        for e in events.iter().take(8) {
            let _ = write!(h, "<li>{}</li>", esc(&e.text));
        }
        h += "</ul>";
    }
    h += "<h4>Failures by latent factor (the thesis's Table 12)</h4>";
    let nf = a.failures.failures.len();
    let _ = write!(
        h,
        "<p>{} of {} validation images misclassified.</p>",
        nf, a.failures.images
    );
    h += "<div class=\"row\">";
    if let Ok(rd) = std::fs::read_dir(base.join("analysis")) {
        let mut pngs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().contains("accuracy-by-"))
            .collect();
        pngs.sort();
        for p in pngs {
            h += &img_file(&p, "accuracy by factor");
        }
    }
    if nf > 0 {
        h += &img_file(&base.join("analysis/failures.png"), "misclassified images");
    }
    h += "</div>";
    h += "</article>";
    Ok((h, Some((slug, a))))
}

/// Builds `DIR/report.html` from the study directory; returns its path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let store_path = dir.join("shapelab.db");
    let store = Store::open_read(&store_path)?;
    let text = std::fs::read_to_string(dir.join("study.toml"))
        .map_err(|e| Error::io(&dir.join("study.toml"), e))?;
    // Relative dataset paths in a custom study are relative to the file it was run from,
    // which the store records; the copy in DIR is the fallback (embedded studies, a moved
    // source).
    let source = store
        .experiments()?
        .into_iter()
        .find(|(_, _, t)| *t == text)
        .map(|(_, p, _)| PathBuf::from(p))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| dir.join("study.toml"));
    let study = Study::parse(&text, &source)?;
    let plan = &study.plan;
    let runs = crate::study::config::plan_runs(&store, plan)?;
    if runs.is_empty() {
        return Err(Error::Usage(format!(
            "{} holds no runs of study {}; run `shapelab study` first",
            store_path.display(),
            plan.name
        )));
    }
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>shapelab study: {name}</title><style>{STYLE}</style></head><body data-images=\"pending\"><main>",
        name = esc(&plan.name)
    );
    let learned_all = runs
        .iter()
        .filter(|r| r.outcome == Outcome::Learned)
        .count();
    let _ = write!(
        h,
        "<h1>How do tiny CNNs learn? A shapelab study</h1><p class=\"sub\">Study <b>{}</b>: {} runs over {} datasets, {} learned. Built by shapelab {} from <code>{}</code>.</p>",
        esc(&plan.name),
        runs.len(),
        plan.datasets.len(),
        learned_all,
        crate::VERSION,
        esc(&store_path.display().to_string())
    );
    h += "<nav><a href=\"#datasets\">Datasets</a><a href=\"#sweep\">The sweep</a><a href=\"#stuck\">Stuck runs</a><a href=\"#cases\">Case studies</a><a href=\"#findings\">Findings</a><a href=\"#reproduce\">Reproduce</a></nav>";
    h += "<p>This report follows the thesis it grows out of: synthetic images of ellipses, rectangles and triangles whose size or rotation is controlled; tiny two-layer CNNs trained again and again; the networks that learned opened up with activation maps and greedy filter pruning; and the questions the thesis left open answered with numbers. Every figure and number below comes from this study's store.</p>";

    let c = Ctx {
        dir,
        store: &store,
        study: &study,
        runs: &runs,
    };
    h += &datasets_section(&c)?;
    h += &sweep_section(&c)?;
    let stuck_groups = crate::experiments::stuck::report(&store, &runs)?;
    h += &stuck_section(&stuck_groups);
    let (cases, case_reports) = cases_section(&c)?;
    h += &cases;

    // 5. Findings.
    h += "<section id=\"findings\"><h2>5. Findings</h2><p>The thesis's observations and conclusions, restated as measured statistics of this study, each with its evidence.</p>";
    h += &findings(&runs, &stuck_groups, &case_reports)?;
    h += "</section>";

    // 6. Reproduce.
    let _ = write!(
        h,
        "<section id=\"reproduce\"><h2>6. Reproduce</h2><p>Everything above is recomputed from the study's configuration with <code>shapelab study</code> (the embedded default) or <code>shapelab study --config study.toml</code>; this report is rebuilt from the store without recomputing anything with <code>shapelab report {}</code>. Every random draw comes from the seeds recorded in the store; the same configuration gives the same bytes.</p><details><summary>study.toml</summary><pre>{}</pre></details></section>",
        esc(&dir.display().to_string()),
        esc(&text)
    );
    let _ = write!(h, "</main><script>{SCRIPT}</script></body></html>");
    let path = dir.join("report.html");
    crate::files::fsio::write_file_atomic(&path, true, |w| {
        std::io::Write::write_all(w, h.as_bytes())
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_numbers_read_the_table_like_the_thesis() {
        // 5 filters; steps remove 2 (1.0), 1 (0.995), 1 (0.93) then stop at one per layer.
        let v = serde_json::json!({
            "filters": [{"layer":1,"filter":1},{"layer":1,"filter":2},{"layer":1,"filter":3},{"layer":2,"filter":1},{"layer":2,"filter":2}],
            "initial_accuracy": 1.0,
            "steps": [
                {"accuracies": [], "removed": [{"layer":1,"filter":1},{"layer":1,"filter":2}], "accuracy_after": 1.0},
                {"accuracies": [], "removed": [{"layer":2,"filter":2}], "accuracy_after": 0.995},
                {"accuracies": [], "removed": [], "accuracy_after": 0.93}
            ],
            "survivors": [{"layer":1,"filter":3},{"layer":2,"filter":1}],
            "evaluations": 9, "on": "val", "images": 10, "ties": "batch",
            "rechecked_images": 0, "seconds": 0.0
        });
        let p: PruneJson = serde_json::from_value(v).unwrap();
        let (n, initial, k99, k90, survivors) = pruning_numbers(&p);
        assert_eq!((n, initial, k99, k90), (5, 1.0, 3, 3));
        assert_eq!(survivors, vec!["L1 F3", "L2 F1"]);
        // A dip below 0.99 ends the first count even if accuracy recovers later.
        let mut q = p.clone();
        q.steps[0].accuracy_after = 0.95;
        let (_, _, k99, k90, _) = pruning_numbers(&q);
        assert_eq!((k99, k90), (0, 3));
        // A stored table missing a field does not read back as zeros.
        let mut broken = serde_json::to_value(&p).unwrap();
        broken.as_object_mut().unwrap().remove("initial_accuracy");
        assert!(serde_json::from_value::<PruneJson>(broken).is_err());
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
