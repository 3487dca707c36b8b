//! `dissect`: parse, find the data's concept masks, call `lab::analyses::dissection`, write,
//! record, print.

use anyhow::Result;
use lab::analyses::dissection::{dissect as run_dissection, Settings};
use lab::data::masks::ConceptMasks;
use lab::models::run::Run;

use crate::cli::{DissectArgs, SplitChoice};
use crate::model_cmds::{
    check_derived_out, load_eval_data, present, recorded_data, run_name, store_of_run,
};
use crate::usage;

/// The concept masks of `part` of `d`: from `--masks`, from the data file itself, or drawn
/// again from the dataset's generator spec; an error naming the fix when there are none.
fn masks_of(
    d: &lab::Dataset,
    part: shapes::Split,
    data_arg: &Option<String>,
    masks_arg: &Option<std::path::PathBuf>,
    data_name: &str,
) -> Result<ConceptMasks> {
    let parts = d.part_sizes();
    let side = (d.height, d.width);
    if let Some(p) = masks_arg {
        if !p.exists() {
            return Err(lab::Error::NotFound(p.clone()).into());
        }
        return ConceptMasks::of_file(p, &parts, side)?.ok_or_else(|| {
            usage(format!(
                "--masks {}: the file holds no concept masks (concept_names and masks_<split>)",
                p.display()
            ))
        });
    }
    if let Some(a) = data_arg {
        if let Some(m) = ConceptMasks::of_file(std::path::Path::new(a), &parts, side)? {
            return Ok(m);
        }
    }
    match ConceptMasks::of_dataset(d, part)? {
        Some(m) => Ok(m),
        None => Err(usage(format!(
            "{data_name} has no generator spec (a dataset from elsewhere), so its concept masks are unknown; give --masks FILE.npz with masks_{} and concept_names (see docs/datasets.md)",
            part.name()
        ))),
    }
}

pub fn dissect(args: DissectArgs, quiet: bool) -> Result<()> {
    let settings = Settings {
        quantile: args.quantile,
        null_seeds: args.null_seeds,
        ..Settings::default()
    };
    settings.check()?;
    match (args.model.clone(), &args.store) {
        (Some(model), _) => one(&args, &model, &settings),
        (None, Some(store)) => population(&args, store, &settings, quiet),
        (None, None) => Err(usage(
            "give a model directory (shapelab dissect DIR), or --store PATH to dissect every learned run of a store",
        )),
    }
}

/// The learned runs of `--store`, each dissected (or read back), summarised cell by cell.
fn population(
    args: &DissectArgs,
    path: &lab::experiments::store::StoreUrl,
    settings: &Settings,
    quiet: bool,
) -> Result<()> {
    for (flag, given) in [
        ("--data", args.data.is_some()),
        ("--masks", args.masks.is_some()),
        ("--layer", args.layer.is_some()),
    ] {
        if given {
            return Err(usage(format!(
                "{flag} applies to one run: give its model directory, or drop {flag} to dissect the store's runs"
            )));
        }
    }
    let store = lab::experiments::store::Store::open_existing(path)?
        .with_artifacts(args.artifacts.artifacts.clone());
    let arch = args
        .arch
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| usage(format!("--arch {e}")))?;
    let rows: Vec<_> = store
        .runs(&lab::experiments::store::RunFilter {
            experiment: args.experiment.clone(),
            dataset: args.dataset.clone(),
            arch,
            outcome: Some(lab::experiments::outcome::Outcome::Learned),
        })?
        .into_iter()
        .filter(|r| args.condition.as_ref().is_none_or(|c| *c == r.condition))
        .collect();
    if rows.is_empty() {
        return Err(usage(format!(
            "{} has no learned run{}; see `shapelab runs --store {} --outcome learned`",
            path,
            if args.experiment.is_some()
                || args.dataset.is_some()
                || args.arch.is_some()
                || args.condition.is_some()
            {
                " matching --experiment, --dataset, --arch and --condition"
            } else {
                ""
            },
            path
        )));
    }
    let part = args.split.map(crate::model_cmds::part);
    let cancel = crate::sweep_cmds::install_ctrlc();
    let bar = crate::progress::bar(
        rows.len() as u64,
        "dissecting learned runs [{bar:30}] {pos}/{len} {elapsed}",
        quiet,
    );
    let members = lab::experiments::dissections::dissect_learned(
        &store,
        &rows,
        part,
        settings,
        (&cancel, &|done, _| bar.set_position(done as u64)),
    )?;
    bar.finish_and_clear();
    let split = members
        .first()
        .map_or(shapes::Split::Test, |m| m.dissection.split);
    let summary = lab::analyses::dissection::population::summarize(&members, split, settings);
    let beside = path.directory();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| beside.join(format!("dissections-{}", summary.split.name())));
    let files = summary.write(&out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.to_text());
        println!(
            "\n{} files written to {}; every dissection is recorded in {}",
            files.len(),
            out.display(),
            path
        );
    }
    Ok(())
}

/// One run dissected, its files and sheets written.
fn one(args: &DissectArgs, model: &std::path::Path, settings: &Settings) -> Result<()> {
    let run = Run::load(model)?;
    let layers = run.model.arch.filters.len();
    if let Some(l) = args.layer {
        if !(1..=layers).contains(&l) {
            return Err(usage(format!(
                "--layer {l}: {} has conv layers 1 to {layers}",
                run.model.arch.label()
            )));
        }
    }
    let (d, data_name) = load_eval_data(&run, &args.data)?;
    let split = args.split.unwrap_or(SplitChoice::Val);
    let part = present(&d, ("--split", split), &data_name)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| model.join(format!("dissection-{}", part.name())));
    check_derived_out(&out, &run, model, &args.data, args.store.as_ref())?;
    let store = store_of_run(args.store.as_ref(), &args.artifacts, model)?;
    let masks = masks_of(&d, part, &args.data, &args.masks, &data_name)?;
    let words = masks.part(part.name()).ok_or_else(|| {
        usage(format!(
            "the concept masks have no masks_{}; give masks for the split you dissect",
            part.name()
        ))
    })?;
    let name = run_name(model);
    let recorded = match &store {
        Some((_, row)) => recorded_data(&args.data, row, &data_name),
        None => data_name.clone(),
    };
    let mut result = run_dissection(
        &run.model,
        &d,
        part,
        (words, &masks.concept_names),
        run.meta.train.scaling,
        settings,
        (&name, &recorded),
        None,
    )?;
    if let Some(l) = args.layer {
        result.layers.retain(|x| x.layer == l);
    }
    let mut files = result.write(&out)?;
    files.extend(lab::analyses::dissection::sheet::write_sheets(
        &result,
        &run.model,
        &d.split(part).images,
        words,
        run.meta.train.scaling,
        &out,
    )?);
    if let Some((s, row)) = &store {
        s.put_dissection(&row.key, &result)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", result.to_text());
        println!("\n{} files written to {}", files.len(), out.display());
    }
    Ok(())
}
