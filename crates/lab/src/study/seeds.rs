//! The report's section "Do seeds agree?": the seeds stage's files in words, tables and
//! figures. Per case study, the families of its runs with their shares and intervals and the
//! CKA between its runs against initial filters'; over the sweep's grid, the loss barrier
//! between disjoint pairs of seeds before and after alignment, against width, per dataset and
//! condition (never pooled across them).
//!
//! Reads [`ReportData`], writes HTML; must not align or evaluate a model.

use std::fmt::Write as _;

use crate::analyses::seeds::barriers::{figure_name, Barriers, Summary};
use crate::analyses::seeds::families::{Families, Family, LayerFamilies};
use crate::analyses::stats::median_range;
use crate::study::data::ReportData;
use crate::study::html::{esc, img_bytes, img_file};

/// `median (range lo-hi)` of `v`, or a dash.
fn spread(v: &[f64], decimals: usize) -> String {
    match median_range(v) {
        None => "&ndash;".into(),
        Some((median, lo, hi)) => format!(
            "median {median:.d$} (range {lo:.d$}&ndash;{hi:.d$})",
            d = decimals
        ),
    }
}

/// How a layer's CKA between learned runs stands against the initialisations': above all of
/// them, or not.
fn cka_verdict(learned: &[f64], null: &[f64]) -> &'static str {
    let lo = learned.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = null.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if learned.is_empty() || null.is_empty() {
        ""
    } else if lo > hi {
        "every pair of learned runs is more alike than the reference is to any initialisation"
    } else {
        "the two ranges overlap, so at this layer CKA does not tell these runs apart from random filters"
    }
}

/// One layer of a case in a sentence.
fn layer_sentence(f: &Families, l: &LayerFamilies) -> String {
    let live: Vec<&Family> = l.families.iter().filter(|x| !x.silent).collect();
    let others = live.first().map_or(0, |x| x.learned_runs);
    let all = live.iter().filter(|x| x.learned_with == others).count();
    let none = live.iter().filter(|x| x.learned_with == 0).count();
    let silent = l.families.len() - live.len();
    let learned = f.learned_cka(l);
    format!(
        "Layer {}: of the reference's {} filters, {all} {} found in all {others} other learned runs and {none} in none{}. Of the other runs' {} filters, {} ({:.0}%) belong to no family: a seed's own. CKA between learned runs: {} over {} pairs; the reference against {} initialisations: {}; {}.",
        l.layer,
        l.families.len(),
        if all == 1 { "is" } else { "are" },
        if silent > 0 { format!(" ({silent} silent in the reference)") } else { String::new() },
        l.filters,
        l.own,
        100.0 * l.own as f64 / l.filters.max(1) as f64,
        spread(&learned, 4),
        learned.len(),
        l.cka_null.len(),
        spread(&l.cka_null, 4),
        cka_verdict(&learned, &l.cka_null)
    )
}

/// A layer's families as a table, most shared first.
fn family_table(l: &LayerFamilies) -> String {
    let mut h = String::from("<table class=\"num\"><tr><th>layer</th><th>filter</th><th>label</th><th title=\"the 95th percentile (nearest rank) of the matched correlations initial filters reach with this filter\">bar r</th><th title=\"mean correlation of the other learned runs' matched filters with it, held-out split\">mean r</th><th title=\"other learned runs that have it, 95% Wilson interval\">share</th><th title=\"runs that did not learn that have it\">not learned</th></tr>");
    let mut order: Vec<&Family> = l.families.iter().collect();
    order.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.filter.cmp(&b.filter)));
    for f in order {
        let label = f
            .label
            .as_ref()
            .map(|(s, c, n)| format!("{} ({c} of {n})", esc(s)))
            .unwrap_or_else(|| "&ndash;".into());
        let share = if f.silent {
            "silent".to_string()
        } else {
            format!(
                "{} of {} <span class=\"ci\">[{:.0}, {:.0}]%</span>",
                f.learned_with,
                f.learned_runs,
                100.0 * f.interval.0,
                100.0 * f.interval.1
            )
        };
        let stuck = if f.stuck_runs > 0 {
            format!("{} of {}", f.stuck_with, f.stuck_runs)
        } else {
            "&ndash;".into()
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>F{}</td><td class=\"txt\">{label}</td><td>{:.3}</td><td>{:.3}</td><td>{share}</td><td>{stuck}</td></tr>",
            l.layer, f.filter, f.bar, f.mean_correlation
        );
    }
    h + "</table>"
}

fn case_article(c: &ReportData, case: &crate::study::config::Case) -> String {
    let mut h = format!(
        "<article><h4>{} {}</h4>",
        esc(&case.dataset),
        esc(&case.arch.to_string())
    );
    let Some(f) = c.families.get(&case.slug()) else {
        return h + "<p class=\"note\">Fewer than two of this case's nets learned (or the seeds stage has not run yet), so there are no families to read.</p></article>";
    };
    let learned = f.runs.iter().filter(|r| r.learned).count();
    let reference = f.runs.iter().find(|r| r.key == f.reference);
    let _ = write!(
        h,
        "<p>{} runs under <b>{}</b>, {learned} learned; the reference is seed {}. Matching chosen on {}, correlations and CKA measured on the {} split ({} images; CKA on the first {}).</p>",
        f.runs.len(),
        esc(&f.condition),
        reference.map_or(0, |r| r.seed),
        f.chosen_on.name(),
        f.split.name(),
        f.images,
        f.cka_images
    );
    for l in &f.layers {
        let _ = write!(h, "<p>{}</p>", layer_sentence(f, l));
    }
    for l in &f.layers {
        h += &family_table(l);
    }
    if let Ok(png) = crate::analyses::seeds::figures::cka_strip(f).to_png() {
        h += &img_bytes(&png, &format!("CKA between the runs of {}", case.slug()));
    }
    let dir = crate::study::config::seeds_dirs(&c.dir).0.join(case.slug());
    let _ = write!(
        h,
        "<details><summary>The families of {} {} drawn: each one's mean kernel after alignment and its mean maps on one image per class</summary>",
        esc(&case.dataset),
        esc(&case.arch.to_string())
    );
    for l in &f.layers {
        h += &img_file(
            &dir.join(format!("families-layer-{}.png", l.layer)),
            &format!("families of {} layer {}", case.slug(), l.layer),
        );
    }
    h + "</details></article>"
}

fn summary_sentence(s: &Summary) -> String {
    let rho = match s.width_rho {
        Some((r, lo, hi)) => format!(
            "Spearman's rho between width (filters summed over layers) and the aligned barrier is {r:.2} (95% CI {lo:.2} to {hi:.2})."
        ),
        None => "Too few pairs to correlate with width.".into(),
    };
    format!(
        "Under <b>{}</b> on <b>{}</b>, {} cells with two learned seeds give {} pairs.{} Alignment lowered the loss barrier in {} of the {} it changed ({:.0}%, 95% CI {:.0}&ndash;{:.0}%). The barrier as trained: median {:.3} (quartiles {:.3}&ndash;{:.3}); aligned: median {:.3} (quartiles {:.3}&ndash;{:.3}). {rho}",
        esc(&s.condition),
        esc(&s.dataset),
        s.cells,
        s.pairs,
        match s.unmoved {
            0 => String::new(),
            1 => " In 1 pair the matching kept every filter in place, so its barrier cannot change.".into(),
            k => format!(" In {k} pairs the matching kept every filter in place, so their barriers cannot change."),
        },
        s.lowered,
        s.pairs - s.unmoved,
        100.0 * s.lowered as f64 / (s.pairs - s.unmoved).max(1) as f64,
        100.0 * s.lowered_interval.0,
        100.0 * s.lowered_interval.1,
        s.before.1,
        s.before.0,
        s.before.2,
        s.after.1,
        s.after.0,
        s.after.2
    )
}

fn barrier_table(b: &Barriers, dataset: &str, condition: &str) -> String {
    let mut h = String::from("<table class=\"num\"><tr><th>arch</th><th>learned</th><th>seeds</th><th title=\"filters the alignment moved, over all layers\">moved</th><th>loss barrier as trained</th><th>aligned</th><th>accuracy barrier as trained</th><th>aligned</th><th>matched r per layer</th></tr>");
    for c in b.cells_of(dataset, condition) {
        for p in &c.pairs {
            let matched: Vec<String> = p.matched.iter().map(|m| format!("{m:.2}")).collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{} &amp; {}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
                esc(&c.arch),
                c.learned,
                p.seeds.0,
                p.seeds.1,
                p.moved,
                p.loss_before,
                p.loss_after,
                p.accuracy_before,
                p.accuracy_after,
                matched.join(", ")
            );
        }
    }
    h + "</table>"
}

fn grid_html(c: &ReportData, b: &Barriers) -> String {
    let mut h = format!(
        "<h3>Barriers between seeds, against width</h3><p>For every cell of the sweep (runs stopped at their first perfect validation score), the learned runs in seed order form disjoint pairs (seeds 1 and 2, 3 and 4: at most {} independent pairs per cell). Each pair is joined by a straight line in weight space, {} points, as trained and with the second run's filters permuted onto the first's (Git Re-Basin's activation matching, Ainsworth et al. 2022). The barrier is the largest rise of the {} loss above the chord between the ends (Frankle et al. 2020). The matching is chosen on {} and maximises activation correlation, not loss, so a lower barrier after alignment is a measurement, not a construction; the pair as trained is its control.</p>",
        b.settings.pairs,
        b.settings.points,
        b.split.name(),
        b.chosen_on.name()
    );
    let dir = crate::study::config::seeds_dirs(&c.dir).1;
    for (dataset, condition) in b.groups() {
        let Some(s) = b.summary(dataset, condition) else {
            let _ = write!(
                h,
                "<p>Under <b>{}</b> on <b>{}</b>, no cell has two learned seeds.</p>",
                esc(condition),
                esc(dataset)
            );
            continue;
        };
        let _ = write!(h, "<p>{}</p>", summary_sentence(&s));
        h += &img_file(
            &dir.join(figure_name(dataset, condition)),
            &format!("loss barriers of {dataset} under {condition}"),
        );
        let _ = write!(
            h,
            "<details><summary>Every pair of {} under {}</summary>{}</details>",
            esc(dataset),
            esc(condition),
            barrier_table(b, dataset, condition)
        );
    }
    h
}

/// The section, numbered `n`.
pub fn section(c: &ReportData, n: usize) -> String {
    let mut h = format!("<section id=\"seeds\"><h2>{n}. Do seeds agree?</h2>");
    if c.families.is_empty() && c.barriers.is_none() {
        return h + "<p class=\"note\">The seeds stage has not run for this study yet: run <code>shapelab study</code> again to add it (the runs already trained are kept).</p></section>";
    }
    h += "<p>The thesis opened one or two networks per architecture and could not say whether what it saw was a rule or one seed's accident. Here the runs of a cell are compared filter by filter. A run's filters are matched one to one to a reference run's by the correlation of their activation maps (the Hungarian method; convergent learning, Li, Yosinski et al. 2016). A run has the reference filter's <em>family</em> when its matched filter correlates with it at or above a bar: the 95th percentile of what the same matching reaches with Glorot initialisations of the architecture, for that filter. The reference is the first learned seed; a family's share counts the other learned runs only, since the reference has its own filters by construction. Layers are also compared whole with debiased linear CKA (Kornblith et al. 2019, with the unbiased HSIC of Song et al. 2012), against the CKA of the reference with those initialisations.</p>";
    h += "<h3>Filter families in the case studies</h3>";
    for case in &c.study.table.cases {
        h += &case_article(c, case);
    }
    match &c.barriers {
        Some(b) => h += &grid_html(c, b),
        None => h += "<p class=\"note\">The barriers over the grid have not been measured yet: run <code>shapelab study</code> again.</p>",
    }
    h + "</section>"
}
