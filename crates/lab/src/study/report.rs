//! The study's report: one self-contained HTML file that reads like the thesis.
//!
//! Built from the study directory alone: the store (runs, histories, continuations, analyses)
//! and the pictures the study wrote; nothing is trained or analysed again, so `shapelab report
//! DIR` rebuilds it in seconds. Every number shown is read or computed from the store; every
//! image is embedded (base64), so the file works offline and can be mailed as is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::analyses::pruning::PruneJson;

use crate::draw::{Canvas, INK};
use crate::error::{Error, Result};
use crate::experiments::outcome::Outcome;
use crate::experiments::store::RunRow;
use crate::experiments::summary::wilson;
use crate::experiments::summary::{summarize, Group};
use crate::study::config::data_file;
use crate::study::data::{CaseData, ReportData};
use crate::study::findings::{
    findings, pruning_reading, Agreement, Claim, Dying, Evidence, Finding, Headline, Inputs,
    Interplay, Learning, Mechanism, Redundancy, Stuck, StuckTally, StuckVerdict, SuccessModel,
    Tally, Verdict,
};
use crate::study::html::{esc, img_bytes, img_file};
use tinycnn::ArchLabel;

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

/// Validation accuracy against epoch for every run of a group, coloured by outcome (the
/// split training stopped on: the curve is what the outcome is read from); drawn with
/// plotters ([`crate::chart`]).
fn learning_curves(title: &str, runs: &[(&RunRow, &[tinycnn::EpochStats])]) -> Canvas {
    use plotters::prelude::*;
    let epochs = runs.iter().map(|r| r.1.len()).max().unwrap_or(1).max(2);
    let color = |o: &Outcome| match o {
        Outcome::Learned => [26, 152, 80],
        Outcome::Stuck => [178, 24, 43],
        Outcome::Collapsed => [230, 120, 30],
        Outcome::Partial => [200, 160, 40],
        Outcome::Diverged => [120, 120, 120],
    };
    crate::chart::draw(560, 320, |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(title, crate::chart::text(14.0, INK))
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(52)
            .build_cartesian_2d(1..epochs, 0.0..1.02)?;
        crate::chart::house_style(
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc("validation accuracy")
                .x_labels(epochs.min(15))
                .y_labels(7)
                .y_label_formatter(&|v| crate::chart::short_number(*v)),
        )
        .draw()?;
        // The thesis's plateaus: one and two classes of three.
        for level in [1.0 / 3.0, 2.0 / 3.0] {
            chart.draw_series(LineSeries::new(
                [(1, level), (epochs, level)],
                crate::chart::rgb([190, 190, 184]).stroke_width(1),
            ))?;
        }
        for (r, hist) in runs {
            let c = crate::chart::rgb(color(&r.outcome)).mix(0.75);
            chart.draw_series(LineSeries::new(
                hist.iter().map(|e| (e.epoch, e.val_acc.clamp(0.0, 1.0))),
                c.stroke_width(1),
            ))?;
        }
        for o in Outcome::ALL {
            let n = runs.iter().filter(|r| r.0.outcome == o).count();
            if n == 0 {
                continue;
            }
            let c = crate::chart::rgb(color(&o));
            chart
                .draw_series(std::iter::empty::<PathElement<(usize, f64)>>())?
                .label(format!("{} ({n})", o.name()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
        }
        crate::chart::legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
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
                (Some(a), Some(r)) if r == i + 1 => {
                    format!("<td class=\"removed\" style=\"{}\">{a:.4}</td>", grade(a))
                }
                (Some(a), _) => format!("<td style=\"{}\">{a:.4}</td>", grade(a)),
                (None, _) => "<td></td>".into(),
            };
            s += &cell;
        }
        s += "</tr>";
    }
    let _ = write!(s, "<tr><td><b>after ({})</b></td>", esc(&p.on));
    for st in steps {
        let _ = write!(s, "<td><b>{:.4}</b></td>", st.accuracy_after);
    }
    s += "</tr>";
    if let Some(h) = &p.held_out {
        let _ = write!(
            s,
            "<tr class=\"held\"><td><b>after ({})</b></td>",
            h.split.name()
        );
        for a in &h.after {
            let _ = write!(s, "<td><b>{a:.4}</b></td>");
        }
        s += "</tr>";
    }
    s + "</tbody></table></div>"
}

/// A pruning cell's background by its accuracy: white at 1.0, through yellow, to a deep
/// orange-red at chance (1/3) and below, so a table reads at a glance where accuracy falls.
fn grade(a: f64) -> String {
    let t = ((1.0 - a) / (1.0 - 1.0 / 3.0)).clamp(0.0, 1.0);
    // Two linear pieces: white (255,255,255) -> yellow (254,224,139) -> red (215,48,39).
    let mix = |x: [f64; 3], y: [f64; 3], u: f64| -> [u8; 3] {
        [0, 1, 2].map(|i| (x[i] + (y[i] - x[i]) * u).round() as u8)
    };
    let (white, yellow, red) = (
        [255.0, 255.0, 255.0],
        [254.0, 224.0, 139.0],
        [215.0, 48.0, 39.0],
    );
    let c = if t < 0.5 {
        mix(white, yellow, t * 2.0)
    } else {
        mix(yellow, red, t * 2.0 - 1.0)
    };
    format!("background:rgb({},{},{})", c[0], c[1], c[2])
}

fn pruning_summary(p: &PruneJson) -> String {
    let r = pruning_reading(p);
    let (split, _, _) = p.reported();
    format!(
        "On the {split} split, starting from {:.4} with {} filters: the first {} removals cost at most 0.01 of accuracy, and accuracy stays at or above 0.90 for the first {}; the minimal network keeps {} ({} evaluations, exact).",
        r.initial,
        r.filters,
        r.keep99,
        r.keep90,
        r.survivors.join(" and "),
        p.evaluations
    )
}

fn finding(h: &mut String, title: &str, body: &str) {
    let _ = write!(h, "<div class=\"finding\"><b>{title}</b> {body}</div>");
}

/// A share as a whole percent, `-` when nothing was counted.
fn pct_or_dash(v: Option<f64>) -> String {
    v.map_or("-".into(), pct)
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

/// The findings section's paragraphs: each [`Finding`] in words.
fn findings_html(findings: &[Finding]) -> String {
    let mut h = String::new();
    for f in findings {
        match f {
            Finding::Headline(x) => headline_html(&mut h, x),
            Finding::Thesis(x) => thesis_html(&mut h, x),
            Finding::Learning(l) => learning_html(&mut h, l),
            Finding::Model(m) => model_html(&mut h, m),
            Finding::Stuck(s) => stuck_html(&mut h, s),
            Finding::Mechanism(m) => mechanism_html(&mut h, m),
            Finding::Dying(d) => dying_html(&mut h, d),
            Finding::Redundancy(r) => redundancy_html(&mut h, r),
            Finding::Interplay(i) => interplay_html(&mut h, i),
            Finding::Agreement(a) => agreement_html(&mut h, a),
        }
    }
    h
}

/// `k/n (p%, 95% interval lo-hi%)`.
fn rate(t: &Tally) -> String {
    let (lo, hi) = wilson(t.k, t.n);
    format!(
        "{}/{} ({}, 95% interval {}-{})",
        t.k,
        t.n,
        pct(t.k as f64 / t.n.max(1) as f64),
        pct(lo),
        pct(hi)
    )
}

/// A signed share in whole percentage points (`+58 points`), never `-0`.
fn signed_pct(v: f64) -> String {
    format!("{} points", signed_points(v))
}

/// `v` in whole percentage points with its sign; `+0` for anything that rounds to zero.
fn signed_points(v: f64) -> String {
    let r = (100.0 * v).round();
    format!("{:+.0}", if r == 0.0 { 0.0 } else { r })
}

/// A difference of shares in percentage points with its interval (a bound that rounds to
/// zero prints as `+0`, never `-0`).
fn points(d: (f64, f64, f64)) -> String {
    format!(
        "{} points (95% interval {} to {})",
        signed_points(d.0),
        signed_points(d.1),
        signed_points(d.2)
    )
}

fn headline_html(h: &mut String, x: &Headline) {
    let parts: Vec<String> = x
        .conditions
        .iter()
        .map(|(c, t, _, epochs)| {
            let e = epochs.map_or(String::new(), |e| format!(", in a median {e} epochs"));
            format!(
                "under <b>{}</b> {} of the runs learned{e}",
                esc(cond_name(c)),
                rate(t)
            )
        })
        .collect();
    let verdict = match &x.decided {
        Some((best, worst)) => format!(
            " The training condition decides whether a tiny net learns, beyond the seed and the architecture: the failures the thesis studied are a property of <b>{}</b>, and they nearly vanish under <b>{}</b>.",
            esc(cond_name(worst)),
            esc(cond_name(best))
        ),
        None if x.conditions.len() > 1 => {
            " The conditions do not differ beyond their intervals.".to_string()
        }
        None => String::new(),
    };
    let held: Vec<String> = x
        .held_out
        .iter()
        .map(|(c, s)| {
            format!(
                "under {} a median {:.3} (lowest {:.3}; {} of {} below 0.99)",
                esc(cond_name(c)),
                s.median,
                s.lowest,
                s.below_99,
                s.runs
            )
        })
        .collect();
    let held = if held.is_empty() {
        " The datasets have no held-out test split, so every accuracy here is on validation."
            .to_string()
    } else {
        format!(
            " Runs are judged learned on the validation split they stopped on; on the held-out test split, which made no choice, the learned runs score {}.",
            held.join("; ")
        )
    };
    finding(
        h,
        "The headline.",
        &format!("{}.{verdict}{held}", capitalise(&parts.join("; "))),
    );
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| {
        f.to_uppercase().collect::<String>() + c.as_str()
    })
}

fn cond_name(c: &str) -> &str {
    if c.is_empty() {
        "the default settings"
    } else {
        c
    }
}

fn thesis_html(h: &mut String, claims: &[Claim]) {
    let _ = write!(
        h,
        "<div class=\"finding\"><b>The thesis's claims, one by one.</b> Each claim set against each condition of this study (never pooled); the verdict is <i>reproduced</i> when this study agrees within its 95% interval, <i>contradicted</i> when it points the other way beyond it, <i>no evidence</i> when the interval allows both.</div><div class=\"scroll\"><table class=\"prose\"><thead><tr><th>claim</th><th>thesis</th><th>condition</th><th>this study</th><th>verdict</th></tr></thead><tbody>"
    );
    for c in claims {
        let ours = match &c.evidence {
            Evidence::Rate(t, _) if t.n == 0 => "no such runs".to_string(),
            Evidence::Rate(t, _) => rate(t),
            Evidence::Contrast(a, b, d) => {
                format!("{} against {}: {}", rate(a), rate(b), points(*d))
            }
            Evidence::MixedCells(t) => format!(
                "{} of {} dataset-architecture cells both learned and failed",
                t.k, t.n
            ),
            Evidence::Seeds(v, _) if v.is_empty() => "no such case in this study".to_string(),
            Evidence::Seeds(v, digits) => {
                let shown: Vec<String> = v.iter().map(|x| format!("{x:.digits$}")).collect();
                format!("{} over {} analysed seeds", shown.join(", "), v.len())
            }
            Evidence::Significant(t) => format!(
                "{} of {} accuracy-raising removals significant (exact McNemar, p &lt; 0.05)",
                t.k, t.n
            ),
            Evidence::None => "not in this study".to_string(),
        };
        let verdict = match c.verdict {
            Verdict::Reproduced => "reproduced",
            Verdict::Contradicted => "<b>contradicted</b>",
            Verdict::NoEvidence => "no evidence either way",
            Verdict::NotComparable => "not comparable",
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c.claim),
            esc(c.thesis),
            esc(cond_name(&c.condition)),
            ours,
            verdict
        );
    }
    h.push_str("</tbody></table></div>");
    let contradicted: Vec<String> = claims
        .iter()
        .filter(|c| c.verdict == Verdict::Contradicted)
        .map(|c| {
            format!(
                "&ldquo;{}&rdquo; under {}",
                esc(c.claim),
                esc(cond_name(&c.condition))
            )
        })
        .collect();
    if !contradicted.is_empty() {
        finding(
            h,
            "Where this study contradicts the thesis.",
            &format!("{}.", contradicted.join("; ")),
        );
    }
}

fn learning_html(h: &mut String, l: &Learning) {
    let deeper = if l.deeper.n == 0 {
        String::new()
    } else {
        format!("; three or more: {}", rate(&l.deeper))
    };
    let mixed = if l.mixed_cells.k == 0 {
        format!("No architecture both learned and failed with different seeds ({} dataset-architecture cells).", l.mixed_cells.n)
    } else {
        format!(
            "The same architecture both learned and failed with different seeds in {} of {} dataset-architecture cells: whether a tiny net learns depends on its initialisation as well as its size.",
            l.mixed_cells.k, l.mixed_cells.n
        )
    };
    let depth = match l.one_minus_two {
        Some(d) if d.1 > 0.0 => format!(" One-layer nets learned more often than two-layer nets, {}, the opposite of the thesis's Table 1.", points(d)),
        Some(d) if d.2 < 0.0 => format!(" One-layer nets learned less often than two-layer nets, {}.", points(d)),
        Some(d) => format!(" One- and two-layer nets do not differ beyond their interval, {}.", points(d)),
        None => String::new(),
    };
    finding(
        h,
        &format!("Learning under {}.", esc(cond_name(&l.condition))),
        &format!(
            "{} runs learned; {} got stuck, {} learned (or nearly) and then collapsed to a plateau, and {} stopped part-way{}. Two conv layers: {} learned; one layer: {}{deeper}.{depth} {mixed}",
            rate(&l.learned),
            l.stuck,
            l.collapsed,
            l.partial,
            if l.partial_continued.n == 0 {
                String::new()
            } else {
                format!(
                    " ({} still rising at the epoch cap were trained further with their own settings, and {} then learned)",
                    l.partial_continued.n, l.partial_continued.k
                )
            },
            rate(&l.two_layers),
            rate(&l.one_layer),
        ),
    );
}

fn model_html(h: &mut String, m: &SuccessModel) {
    let title = format!(
        "What predicts learning under {}?",
        esc(cond_name(&m.condition))
    );
    if let Some(why) = m.unfit {
        finding(
            h,
            &title,
            &format!(
                "No logistic model over its {} two-layer runs: {why}.",
                m.runs
            ),
        );
        return;
    }
    let terms: Vec<String> = m
        .terms
        .iter()
        .skip(1)
        .map(|(name, b, (lo, hi))| {
            let clear = if *lo > 0.0 {
                "raises the odds"
            } else if *hi < 0.0 {
                "lowers the odds"
            } else {
                "no clear effect"
            };
            format!(
                "{} &times;{:.2} (95% interval {:.2}-{:.2}, {clear})",
                esc(name),
                b.exp(),
                lo.exp(),
                hi.exp()
            )
        })
        .collect();
    finding(
        h,
        &title,
        &format!(
            "Logistic regression of learned against both widths and the dataset over this condition's {} two-layer runs (odds ratios with Wald 95% intervals): {}.",
            m.runs,
            terms.join("; ")
        ),
    );
}

fn mechanism_html(h: &mut String, m: &Mechanism) {
    let [start, first, last] = m.dead_last;
    let updates: Vec<String> = m
        .first_update
        .iter()
        .enumerate()
        .map(|(l, (bad, good))| format!("layer {}: {:.2} against {:.2}", l + 1, bad, good))
        .collect();
    finding(
        h,
        &format!(
            "When do the filters die under {}?",
            esc(cond_name(&m.condition))
        ),
        &format!(
            "The first {} updates of {} failed and {} learned runs, replayed bit for bit from their seeds. Share of the last conv layer's filters silent on 200 training images, failed against learned: {} against {} at initialisation, {} against {} after the first update, {} against {} after update {}{}. Size of the first update relative to the layer's weights (failed against learned): {}{}.",
            m.steps,
            m.runs.0,
            m.runs.1,
            pct(start.0),
            pct(start.1),
            pct(first.0),
            pct(first.1),
            pct(last.0),
            pct(last.1),
            m.steps,
            m.dead_difference.map_or(String::new(), |(d, lo, hi)| format!(
                " (difference {}, bootstrap 95% interval {} to {})",
                signed_pct(d),
                signed_pct(lo),
                signed_pct(hi)
            )),
            updates.join("; "),
            m.update_difference.map_or(String::new(), |(d, lo, hi)| format!(
                " (last layer: difference {d:+.2}, bootstrap 95% interval {lo:+.2} to {hi:+.2})"
            )),
        ),
    );
}

fn dying_html(h: &mut String, d: &Dying) {
    let (fz, lz) = d.zero_gradient;
    let gradient = if fz.n == 0 {
        " These runs were stored before gradient norms were recorded.".to_string()
    } else {
        format!(
            " Its weights received exactly zero gradient for a whole epoch in {} of the failed runs and {} of the learned ones; in {} of those failed runs the dense layer's weights did too, so only the output bias still moved: training on with the same optimiser cannot revive such a net (the rescue with its own settings is that control).",
            rate(&fz),
            rate(&lz),
            rate(&d.dense_zero_too)
        )
    };
    finding(
        h,
        &format!(
            "How the failed runs die under {}.",
            esc(cond_name(&d.condition))
        ),
        &format!(
            "From each epoch's record: the last conv layer was entirely dead (silent on every training image of an epoch) in {} of the failed runs against {} of the learned ones{}.{gradient}",
            rate(&d.all_dead.0),
            rate(&d.all_dead.1),
            d.all_dead_epoch.map_or(String::new(), |e| format!(
                ", in the failed runs from a median epoch {e}"
            )),
        ),
    );
}

fn stuck_html(h: &mut String, s: &Stuck) {
    let t = &s.tally;
    let f1: Vec<String> = s
        .by_first_layer
        .iter()
        .map(|(f, x, (lo, hi))| format!("{f}: {}/{} ({}-{})", x.k, x.n, pct(*lo), pct(*hi)))
        .collect();
    let plateaus: Vec<String> = t
        .plateaus
        .iter()
        .map(|(p, n)| format!("{n} at {p}"))
        .collect();
    let verdict = match s.verdict {
        StuckVerdict::DeadByConstruction => format!("In all {} diagnosed stuck runs the last conv layer is entirely dead: its ReLUs output zero on every training image, so its weight gradients are exactly zero, and training on with the same settings cannot change that. That none escaped is therefore guaranteed by construction, not a test of a local minimum; only a change of settings could test it.", s.fully_dead.n),
        StuckVerdict::Rescued => rescued_text(s),
        StuckVerdict::DeadEnds => format!("No change revived a stuck run: in {} of {} diagnosed stuck runs the last conv layer is entirely dead, and none of the changes tried brought it back.", s.fully_dead.k, s.fully_dead.n),
        StuckVerdict::SlowStretches => "A good share escape: many plateaus are slow stretches rather than dead ends.".to_string(),
        StuckVerdict::Mixed => "The evidence is mixed: see the table above.".to_string(),
        StuckVerdict::NotTried => "No stuck run was trained further.".to_string(),
    };
    finding(
        h,
        &format!("When runs get stuck under {} (thesis future work 4).", esc(cond_name(&s.condition))),
        &format!(
            "{} of {} runs got stuck ({}). Stuck two-layer runs by first-layer filters, with 95% intervals: {}. On average {} of the last conv layer's filters are dead (zero on every training image) in stuck runs, against {} in this condition's other runs; the plateau begins by epoch {} (median over architectures). Trained further, runs escaped {}. {}",
            t.stuck,
            t.runs,
            plateaus.join(", "),
            f1.join(", "),
            pct_or_dash(t.dead_in_stuck()),
            pct_or_dash(t.dead_in_others()),
            t.median_start().map_or("-".into(), |v| format!("{v}")),
            rescues_text(&s.rescues),
            verdict
        ),
    );
}

/// The verdict when some change revived stuck runs: which, how many, and what that says.
fn rescued_text(s: &Stuck) -> String {
    let rate = |t: &Tally| t.k as f64 / t.n.max(1) as f64;
    let changed: Vec<&(String, Tally, (f64, f64))> =
        s.rescues.iter().filter(|r| r.0 != "same").collect();
    let Some(best) = changed
        .iter()
        .max_by(|a, b| rate(&a.1).total_cmp(&rate(&b.1)))
    else {
        return String::new();
    };
    let what = best
        .0
        .parse::<crate::experiments::rescue::Rescue>()
        .map_or(best.0.clone(), |r| r.describe());
    let others: Tally = changed
        .iter()
        .filter(|r| r.0 != best.0)
        .fold(Tally::default(), |t, r| Tally {
            k: t.k + r.1.k,
            n: t.n + r.1.n,
        });
    format!(
        "The change that revived most was {what}: {} of {} ({}-{}); the other changes revived {} of {}. In {} of {} diagnosed stuck runs the last conv layer is entirely dead, and a dead filter's weight gradients are exactly zero: what stops these runs is dead units, which only a change that reaches them can undo, not a shallow minimum that more training escapes.",
        best.1.k,
        best.1.n,
        pct(best.2 .0),
        pct(best.2 .1),
        others.k,
        others.n,
        s.fully_dead.k,
        s.fully_dead.n
    )
}

/// Each rescue's escapes in words: `with its own settings 0 of 103 (0%-4%)`.
fn rescues_text(rescues: &[(String, Tally, (f64, f64))]) -> String {
    if rescues.is_empty() {
        return "(none was tried)".into();
    }
    let parts: Vec<String> = rescues
        .iter()
        .map(|(label, t, (lo, hi))| {
            let what = label
                .parse::<crate::experiments::rescue::Rescue>()
                .map_or(label.clone(), |r| r.describe());
            format!("with {what} {} of {} ({}-{})", t.k, t.n, pct(*lo), pct(*hi))
        })
        .collect();
    parts.join("; ")
}

fn redundancy_html(h: &mut String, r: &Redundancy) {
    let thresholds: Vec<String> = r.thresholds.iter().map(|t| format!("{t}%")).collect();
    let removable: Vec<String> = r
        .removable
        .iter()
        .map(|(slug, t)| format!("{slug} {}/{}", t.k, t.n))
        .collect();
    let measure = if r.by_correlation {
        format!("correlate at {} or more", thresholds.join(" or "))
    } else {
        format!(
            "are at least {} alike by their cosine (analyses from before the correlation was measured)",
            thresholds.join(" or ")
        )
    };
    let null = match (&r.null_twins, r.median_correlation) {
        (Some(t), Some((trained, initial))) => format!(
            " At Glorot initialisation, before any training, {} of {} filters of the same architectures have such a twin (the null level), and the median pair of filters correlates at {:.0}% trained against {:.0}% at initialisation.",
            t.k, t.n, trained, initial
        ),
        _ => String::new(),
    };
    let interval = r.drop_difference.map_or(String::new(), |(d, lo, hi)| {
        format!(" (difference {d:+.4}, bootstrap 95% interval {lo:+.4} to {hi:+.4})")
    });
    let direction = match r.twin_direction() {
        Some(true) => format!("{interval}. This is the <b>opposite</b> of the thesis's conclusion (a): a filter with a twin costs more to remove than one without, beyond the interval, so having a twin does not make a filter redundant here."),
        Some(false) => format!("{interval}. As the thesis's conclusion (a) predicts, a filter with a twin costs less to remove than one without, beyond the interval."),
        None if r.drop_difference.is_some() => format!("{interval}: the interval holds 0, so this study cannot say whether a twin makes a filter cheaper to remove."),
        None => ".".to_string(),
    };

    finding(
        h,
        "Are alike filters redundant? (thesis conclusion a)",
        &format!(
            "Over {} analysed learned seeds of the {} case studies, {} of {} filters have a twin whose activation maps {measure} over the held-out images.{null} Removing one filter alone costs {} of accuracy on average when it has a twin ({} filters), against {} when it has none ({}){direction} Filters greedy pruning removes for at most 0.01 of accuracy, summed over each case's seeds: {}.",
            r.cases,
            r.removable.len(),
            r.twins.k,
            r.twins.n,
            fmt_opt(r.drop_with_twin, 4),
            r.with_twin,
            fmt_opt(r.drop_without_twin, 4),
            r.without_twin,
            removable.join(", ")
        ),
    );
}

fn interplay_html(h: &mut String, i: &Interplay) {
    let largest = match (&i.largest_raise, i.largest_raise_flips) {
        (Some((_, t)), Some((right, wrong, n))) => format!(
            " (the largest: {} on validation; on the {n} held-out images it turned {right} right and {wrong} wrong)",
            esc(t)
        ),
        (Some((_, t)), None) => format!(" (the largest: {})", esc(t)),
        _ => String::new(),
    };
    finding(
        h,
        "Filters interact (thesis conclusion b).",
        &format!(
            "Of the {} pairs of filters in the case studies, {} interact strongly: removing both changes held-out accuracy by more than 0.05 beyond the sum of removing each alone. Along the pruning paths, {} removals raised validation accuracy{largest}{}. {}",
            i.strong.n,
            i.strong.k,
            i.raised,
            if i.significant.n == 0 {
                String::new()
            } else {
                format!(
                    "; tested on the held-out images, which did not choose them, {} of the {} are significant at p &lt; 0.05 by an exact McNemar test on the images that flipped (the others are within what a few images of noise give)",
                    i.significant.k, i.significant.n
                )
            },
            if i.strong.k > 0 {
                "One-at-a-time scores therefore do not add up for those pairs."
            } else {
                "Here the filters act nearly independently: one-at-a-time scores add up."
            }
        ),
    );
}

fn agreement_html(h: &mut String, a: &Agreement) {
    let verdicts: Vec<String> = a
        .layers
        .iter()
        .map(|(l, v)| {
            let parts: Vec<String> = v.iter().map(|(c, m)| format!("{c} {m:+.2}")).collect();
            let control = a
                .index_control
                .iter()
                .find(|(x, _)| x == l)
                .map_or(String::new(), |(_, m)| {
                    format!(", filter index (control) {m:+.2}")
                });
            let random = a.random_band.iter().find(|(x, _)| x == l).map_or(
                String::new(),
                |(_, (lo, hi))| {
                    format!(", random rankings (null, 95% of draws) {lo:+.2} to {hi:+.2}")
                },
            );
            format!("layer {l}: {}{control}{random}", parts.join(", "))
        })
        .collect();
    let excluded = if a.excluded.is_empty() {
        String::new()
    } else {
        let e: Vec<String> = a
            .excluded
            .iter()
            .map(|(c, l)| format!("{c} layer {l}"))
            .collect();
        format!(" Left out, with fewer than 3 filters (a rank correlation there is ±1 by construction): {}.", e.join(", "))
    };
    finding(
        h,
        "Do simple readings of the filters agree with pruning? (thesis conclusion c)",
        &format!(
            "Mean Spearman correlation between each criterion, measured on the held-out split, and the greedy pruning order chosen on validation, over the case studies, beside the same correlation for the filters' index: {}.{excluded} {} of {} pruning steps were ties, where several removals left the same best accuracy; {} a criterion scores well only where it beats the index control and the random band.",
            if verdicts.is_empty() { "none measurable".to_string() } else { verdicts.join("; ") },
            a.tied_steps.k,
            a.tied_steps.n,
            if a.tie_rules.iter().all(|t| t == "loss") {
                "they went to the removal that left the lower validation loss, so the order is the network's, not the filter numbers';"
            } else {
                "in some cases they went to the lowest-numbered filter, so the pruning order partly follows filter numbers;"
            }
        ),
    );
}

/// What each split is for, with each dataset's sizes, and which datasets lack a test split.
fn splits_note(c: &ReportData) -> String {
    let sizes: Vec<String> = c
        .datasets
        .iter()
        .filter_map(|(label, d)| {
            let d = d.as_ref()?;
            Some(format!(
                "{} {}/{}/{}",
                esc(label),
                d.train,
                d.val,
                d.test.map_or("none".to_string(), |t| t.to_string())
            ))
        })
        .collect();
    let missing: Vec<String> = c
        .datasets
        .iter()
        .filter(|(_, d)| d.as_ref().is_some_and(|d| d.test.is_none()))
        .map(|(l, _)| esc(l))
        .collect();
    let mut h = format!(
        "<p><b>Splits.</b> Every dataset has a training, a validation and a held-out test split (train/val/test images: {}). Training stops on validation, outcomes are read from the validation curve, and every choice is made on validation: the case picks, the pruning steps, the events then tested. Every accuracy reported for a run, a pruned network or a filter is measured on the test split, which made no choice.",
        sizes.join("; ")
    );
    if !missing.is_empty() {
        let _ = write!(
            h,
            " <b>{} {} no test split</b> (made before shapelab had one): {} numbers are on validation, which also made the choices.",
            missing.join(", "),
            if missing.len() == 1 { "has" } else { "have" },
            if missing.len() == 1 { "its" } else { "their" }
        );
    }
    h + "</p>"
}

/// Section 1: each dataset with its contact sheet, factor histograms and panel.
fn datasets_section(c: &ReportData) -> Result<String> {
    let dir = c.dir.as_path();
    let mut h = String::new();
    h += "<section id=\"datasets\"><h2>1. Datasets</h2>";
    for (label, ds) in &c.datasets {
        let _ = write!(h, "<h3>{}</h3>", esc(label));
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
            &data_file(dir, label, ".contact.png"),
            &format!("{} contact sheet", label),
        );
        let mut hists: Vec<PathBuf> = std::fs::read_dir(dir.join("data"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        let n = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        n.starts_with(&format!("{}-", label))
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
            &data_file(dir, label, "-panel.png"),
            &format!("{} panel", label),
        );
        h += "</div></div>";
    }
    h += "</section>";

    Ok(h)
}

/// Section 2: the sweep, as success-rate heatmaps, learning curves, accuracy histograms and
/// outcome counts per dataset and condition.
fn sweep_section(c: &ReportData) -> Result<String> {
    let runs = &c.runs;
    let plan = &c.study.plan;
    let mut h = String::new();
    let groups = summarize(runs);
    h += "<section id=\"sweep\"><h2>2. The sweep</h2>";
    let _ = write!(
        h,
        "<p>The thesis trained each filter combination a few times by hand (its Tables 2, 5 and 8). Here every architecture was trained with {} seeds per cell under each condition. A run <i>learned</i> when its validation accuracy reached {}; it is <i>stuck</i> when some class is (almost) never predicted, on fewer than 1% of the validation images, <i>collapsed</i> when it fell there from an epoch at least 0.25 more accurate, and <i>partial</i> otherwise. Intervals are Wilson 95% intervals.</p>",
        runs.iter().map(|r| r.seed_index).max().unwrap_or(0),
        plan.learned
    );
    h += &conditions_table(plan);
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
            let hist: Vec<(&RunRow, &[tinycnn::EpochStats])> = members
                .iter()
                .map(|r| (*r, c.histories[&r.key].as_slice()))
                .collect();
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
    let mut outcome_rows: BTreeMap<(String, String), BTreeMap<Outcome, usize>> = BTreeMap::new();
    for r in runs {
        *outcome_rows
            .entry((r.dataset.clone(), r.condition.clone()))
            .or_default()
            .entry(r.outcome)
            .or_insert(0) += 1;
    }
    h += "<h3>Outcomes</h3><table class=\"sortable\"><thead><tr><th>dataset</th><th>condition</th><th>runs</th>";
    for o in Outcome::ALL {
        let _ = write!(h, "<th>{o}</th>");
    }
    h += "</tr></thead><tbody>";
    for ((d, c), counts) in &outcome_rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(d),
            esc(c),
            counts.values().sum::<usize>()
        );
        for o in Outcome::ALL {
            let _ = write!(h, "<td>{}</td>", counts.get(&o).map_or(0, |n| *n));
        }
        h += "</tr>";
    }
    h += "</tbody></table></section>";

    Ok(h)
}

/// The training conditions, each with its settings in words, in the plan's order.
fn conditions_table(plan: &crate::experiments::experiment::Plan) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let mut h = String::from(
        "<table class=\"prose\"><thead><tr><th>condition</th><th>training settings</th></tr></thead><tbody>",
    );
    for r in &plan.runs {
        if seen.contains(&r.condition.as_str()) {
            continue;
        }
        seen.push(&r.condition);
        let name = if r.condition.is_empty() {
            "(default)"
        } else {
            &r.condition
        };
        let _ = write!(
            h,
            "<tr><td><b>{}</b></td><td>{}</td></tr>",
            esc(name),
            esc(&r.settings.describe())
        );
    }
    h + "</tbody></table>"
}

/// Section 3: the runs that get stuck, their diagnosis and whether they escape.
fn stuck_section(stuck_groups: &[crate::experiments::stuck::StuckGroup]) -> String {
    let mut h = String::new();
    h += "<section id=\"stuck\"><h2>3. Runs that get stuck</h2><p>The thesis saw runs stop at 0.333 or 0.667 and asked whether they were stuck in a local minimum (its future work 4). For every stuck run the store holds a diagnosis; stuck runs were then trained further to see whether they escape.</p>";
    // One line per dataset and condition, weighting each architecture by its runs.
    let mut agg: BTreeMap<(String, String), StuckTally> = BTreeMap::new();
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
            pct_or_dash(a.dead_in_stuck()),
            pct_or_dash(a.dead_in_others()),
            a.median_start().map_or("-".into(), |v| format!("{v}")),
            if a.tried == 0 { "-".into() } else { a.rescues.iter().map(|(l, t)| format!("{l} {}/{}", t.k, t.n)).collect::<Vec<_>>().join(", ") }
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

/// Section 4: every case study opened up.
fn cases_section(c: &ReportData) -> String {
    let study = &c.study;
    let mut h = String::new();
    let epochs: Vec<usize> = c.case_runs.iter().map(|r| r.epochs_run).collect();
    let (lo, hi) = (
        epochs.iter().min().copied().unwrap_or(0),
        epochs.iter().max().copied().unwrap_or(0),
    );
    let _ = write!(
        h,
        "<section id=\"cases\"><h2>4. Case studies</h2><p>{}. The networks opened here are the case cells' seeds of <b>{}</b> trained again from the same initial weights for the full {} epochs, without stopping at the first perfect validation score, as the thesis trained the networks it opened; each case shows the first seed that learned, and the findings measure every learned seed.</p>",
        esc(&cases_sentence(&study.table.cases)),
        esc(cond_name(&study.table.case_condition)),
        if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }
    );
    for case in &c.cases {
        h += &case_article(&c.dir, case);
    }
    h += "</section>";
    h
}

/// One case study's article: its run, activation maps and kernels, pruning table, agreement of
/// the importance criteria, similarity, interaction and failures, once its analysis is
/// recorded.
fn case_article(dir: &Path, c: &CaseData) -> String {
    let case = &c.case;
    let mut h = String::new();
    let slug = case.slug();
    let _ = write!(
        h,
        "<article id=\"case-{}\"><h3>{} on {}</h3>",
        esc(&slug),
        esc(&case.arch.to_string()),
        esc(&case.dataset)
    );
    let Some(p) = &c.picked else {
        h += "<p class=\"missing\">No run of this architecture in the study.</p></article>";
        return h;
    };
    let (row, ds) = (&p.row, &p.dataset);
    let _ =
        write!(
        h,
        "<p>Run <code>{}</code>: {} ({} parameters on {}x{}), validation accuracy {:.4}{} {}{}.</p>",
        esc(&row.key),
        esc(&case.arch.to_string()),
        p.arch.param_count(),
        ds.width,
        ds.height,
        row.val_acc,
        row.test_acc.map_or(String::new(), |t| format!(", held-out test accuracy {t:.4}")),
        match row.epochs_to_learn {
            Some(e) => format!("(learned at epoch {e}; training ran {} epochs)", row.epochs_run),
            None => format!("after {} epochs", row.epochs_run),
        },
        if p.learned { "" } else { " &mdash; <b>no seed learned; this is the best run</b>" }
    );
    if c.population.len() > 1 {
        let _ = write!(
            h,
            "<p class=\"note\">This seed is shown in full; the findings measure all {} learned seeds of this case that were analysed.</p>",
            c.population.len()
        );
    }
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
    let Some(a) = &p.analysis else {
        h += "<p class=\"missing\">The case analysis is not in the store yet; run <code>shapelab study</code> again.</p></article>";
        return h;
    };
    let _ = write!(
        h,
        "<h4>Greedy pruning (the thesis's Tables 4, 6, 7, 9-11)</h4><p class=\"note\">Accuracy on the {} validation images after removing each filter at each step: they choose the step (one filter a step; equal accuracies go to the removal that leaves the lower validation loss, not to the lower filter number). Cells are shaded from white (1.0) to red (chance); an orange frame marks the filter removed, green the filters of the minimal network.{}</p>",
        a.pruning.images,
        match &a.pruning.held_out {
            Some(x) => format!(" The last row measures the same networks on the {} held-out {} images, which made no choice; the numbers in the text come from it.", x.images, x.split.name()),
            None => " This dataset has no held-out split, so the table's own numbers are reported.".into(),
        }
    );
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
    let strongest = a
        .interaction
        .interaction
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    if strongest > 0.0 {
        h += &img_file(&base.join("analysis/interaction.png"), "interaction matrix");
    }
    h += "</div>";
    if strongest == 0.0 {
        h += "<p>No pair of filters interacts: removing any two costs exactly the sum of removing each alone, so the interaction matrix is blank and not shown.</p>";
    }
    let events = &a.interaction.events;
    if !events.is_empty() {
        h += "<ul>";
        for e in events.iter().take(8) {
            let test = match (e.flips, e.p_value) {
                (Some((b, c)), Some(p)) => format!(
                    " (found on validation; on the {} split {b} images turned right, {c} turned wrong; exact McNemar p = {p:.2e})",
                    a.measured().name()
                ),
                _ => String::new(),
            };
            let _ = write!(h, "<li>{}{test}</li>", esc(&e.text));
        }
        h += "</ul>";
    }
    h += "<h4>Failures by latent factor (the thesis's Table 12)</h4>";
    let nf = a.failures.failures.len();
    let _ = write!(
        h,
        "<p>{} of {} {} images misclassified.</p>",
        nf,
        a.failures.images,
        a.measured().name()
    );
    if nf == 0 {
        h += "<p>With no image misclassified, accuracy is 100% in every bin of every factor: there are no failures to place, and the by-factor charts are not shown.</p></article>";
        return h;
    }
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
    h += &img_file(&base.join("analysis/failures.png"), "misclassified images");
    h += "</div>";
    h += "</article>";
    h
}

/// Builds `DIR/report.html` from the study directory; returns its path.
pub fn build(dir: &Path, store: &crate::experiments::store::Store) -> Result<PathBuf> {
    let data = crate::study::data::gather(dir, store)?;
    let html = render(&data)?;
    let path = dir.join("report.html");
    crate::files::fsio::write_file_atomic(&path, true, |w| {
        std::io::Write::write_all(w, html.as_bytes())
    })?;
    Ok(path)
}

/// The report's HTML from its data.
fn render(c: &ReportData) -> Result<String> {
    let (dir, plan, runs) = (&c.dir, &c.study.plan, &c.runs);
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
        esc(&c.store.to_string())
    );
    h += "<nav><a href=\"#datasets\">Datasets</a><a href=\"#sweep\">The sweep</a><a href=\"#stuck\">Stuck runs</a><a href=\"#cases\">Case studies</a><a href=\"#filters\">What the filters detect</a><a href=\"#seeds\">Do seeds agree?</a><a href=\"#findings\">Findings</a><a href=\"#reproduce\">Reproduce</a></nav>";
    h += "<p>This report follows the thesis it grows out of: synthetic images of ellipses, rectangles and triangles whose size or rotation is controlled; tiny two-layer CNNs trained again and again; the networks that learned opened up with activation maps and greedy filter pruning; and the questions the thesis left open answered with numbers. Every figure and number below comes from this study's store.</p>";

    h += &splits_note(c);
    h += &datasets_section(c)?;
    h += &sweep_section(c)?;
    h += &stuck_section(&c.stuck);
    h += &cases_section(c);
    h += &crate::study::filters::section(c, 5);
    h += &crate::study::seeds::section(c, 6);

    // 7. Findings.
    h += "<section id=\"findings\"><h2>7. Findings</h2><p>The thesis's observations and conclusions, restated as measured statistics of this study, each with its evidence.</p>";
    let sources = c.sources();
    let cases = c.case_analyses();
    h += &findings_html(&findings(&Inputs {
        runs,
        sources: &sources,
        diagnoses: &c.diagnoses,
        stuck: &c.stuck,
        cases: &cases,
        continuations: &c.continuations,
        first_steps: &c.first_steps,
        histories: &c.histories,
    }));
    h += "</section>";

    // 8. Reproduce.
    let _ = write!(
        h,
        "<section id=\"reproduce\"><h2>8. Reproduce</h2><p>Everything above is recomputed from the study's configuration with <code>shapelab study</code> (the embedded default) or <code>shapelab study --config study.toml</code>; this report is rebuilt from the store without recomputing anything with <code>shapelab report {}</code>. Every random draw comes from the seeds recorded in the store; the same configuration gives the same bytes.</p><details><summary>study.toml</summary><pre>{}</pre></details></section>",
        esc(&dir.display().to_string()),
        esc(&c.text)
    );
    let _ = write!(h, "</main><script>{SCRIPT}</script></body></html>");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_never_print_minus_zero() {
        assert_eq!(
            points((-0.04, -0.13, -0.003)),
            "-4 points (95% interval -13 to +0)"
        );
        assert_eq!(
            points((0.27, 0.13, 0.4)),
            "+27 points (95% interval +13 to +40)"
        );
    }

    #[test]
    fn pruning_cells_are_graded_by_accuracy() {
        assert_eq!(grade(1.0), "background:rgb(255,255,255)");
        assert_eq!(grade(1.0 / 3.0), "background:rgb(215,48,39)");
        assert_eq!(
            grade(0.1),
            grade(1.0 / 3.0),
            "below chance is as red as chance"
        );
        assert_eq!(grade(2.0 / 3.0), "background:rgb(254,224,139)");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
