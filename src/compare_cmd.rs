//! `compare`: load two runs, check they can be compared, call `lab::analyses::seeds`, write
//! the comparison and B permuted onto A, print.

use anyhow::Result;
use lab::analyses::seeds::compare::{compare as run_compare, Settings, Side};
use lab::models::run::Run;

use crate::cli::{CompareArgs, SplitChoice};
use crate::model_cmds::{check_derived_out, load_eval_data, present, run_name};
use crate::usage;

pub fn compare(args: CompareArgs, quiet: bool) -> Result<()> {
    let settings = Settings {
        null_seeds: args.null_seeds,
        points: args.points as usize,
    };
    settings.check()?;
    let (ra, rb) = (Run::load(&args.a)?, Run::load(&args.b)?);
    let (na, nb) = (run_name(&args.a), run_name(&args.b));
    if args.data.is_none() {
        same_data(&ra, &rb, (&na, &nb))?;
    }
    let (d, data_name) = load_eval_data(&ra, &args.data)?;
    lab::models::training::check_compatible(&rb, &d)?;
    let split = match args.split {
        Some(s) => present(&d, ("--split", s), &data_name)?,
        None if d.test.is_some() => shapes::Split::Test,
        None => shapes::Split::Val,
    };
    let choose = present(&d, ("the matching's split", SplitChoice::Val), &data_name)?;
    let out = args.out.clone().unwrap_or_else(|| {
        args.b
            .join(format!("compare-with-{}", na.replace(['/', '\\'], "-")))
    });
    check_derived_out(&out, &ra, &args.a, &args.data, None)?;
    check_derived_out(&out, &rb, &args.b, &args.data, None)?;
    let spinner = crate::progress::bar(1, "{msg} {elapsed}", quiet);
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let lines = crate::progress::lines(quiet);
    let stage = |s: lab::analyses::seeds::compare::Stage| {
        spinner.set_message(s.to_string());
        if lines {
            eprintln!("compare: {s}");
        }
    };
    let compared = run_compare(
        &Side {
            name: &na,
            model: &ra.model,
            scaling: ra.meta.train.scaling,
        },
        &Side {
            name: &nb,
            model: &rb.model,
            scaling: rb.meta.train.scaling,
        },
        &d,
        (choose, split),
        &settings,
        &data_name,
        &stage,
    );
    // Cleared before an error is printed too, so that it reads on a line of its own.
    spinner.finish_and_clear();
    let (c, aligned) = compared?;
    let mut files = c.write(&out)?;
    if let Some(model) = aligned {
        let dir = out.join("b-aligned");
        Run {
            model,
            meta: rb.meta.clone(),
            history: rb.history.clone(),
        }
        .save(&dir, true)?;
        files.push(dir);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", c.to_text());
        println!("\n{} files written to {}", files.len(), out.display());
    }
    Ok(())
}

/// Runs trained on different data cannot be compared on their own data: say what differs.
fn same_data(a: &Run, b: &Run, (na, nb): (&str, &str)) -> Result<()> {
    let (x, y) = (&a.meta.data, &b.meta.data);
    let same = match (&x.hash, &y.hash) {
        (Some(p), Some(q)) => p == q,
        _ => x.source == y.source && (x.train, x.val, x.test) == (y.train, y.val, y.test),
    };
    if same {
        return Ok(());
    }
    let name = |d: &lab::models::run::DataRef| d.name.clone().unwrap_or_else(|| d.source.clone());
    Err(usage(format!(
        "{na} was trained on {} and {nb} on {}: runs of different datasets cannot be compared on their own data; give --data to compare both on one dataset",
        name(x),
        name(y)
    )))
}

/// `families`: the runs of one store cell, aligned to a reference and read as families.
pub fn families(args: crate::cli::FamiliesArgs, quiet: bool) -> Result<()> {
    use lab::analyses::seeds::families::{families as run_families, Settings as FamilySettings};
    let settings = FamilySettings {
        null_seeds: args.null_seeds,
        cka_images: args.cka_images as usize,
    };
    let store = lab::experiments::store::Store::open_existing(&args.store)?
        .with_artifacts(args.artifacts.artifacts.clone());
    let arch = args
        .arch
        .parse()
        .map_err(|e| usage(format!("--arch {e}")))?;
    let rows: Vec<_> = store
        .runs(&lab::experiments::store::RunFilter {
            experiment: args.experiment.clone(),
            dataset: Some(args.dataset.clone()),
            arch: Some(arch),
            outcome: None,
        })?
        .into_iter()
        .filter(|r| args.condition.as_ref().is_none_or(|c| *c == r.condition))
        .collect();
    if rows.is_empty() {
        return Err(usage(format!(
            "{} has no run of dataset {} and architecture {}{}; see `shapelab runs --store {}`",
            args.store,
            args.dataset,
            args.arch,
            args.condition
                .as_ref()
                .map(|c| format!(" under condition {c}"))
                .unwrap_or_default(),
            args.store
        )));
    }
    let spinner = crate::progress::bar(1, "{msg} {elapsed}", quiet);
    spinner.set_message(format!("loading {} runs", rows.len()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let held_out = |d: &lab::Dataset| {
        if d.test.is_some() {
            shapes::Split::Test
        } else {
            shapes::Split::Val
        }
    };
    let cell = lab::experiments::families::load_cell(&store, rows, shapes::Split::Test)?;
    let split = match args.split {
        Some(s) => present(&cell.dataset, ("--split", s), &args.dataset)?,
        None => held_out(&cell.dataset),
    };
    spinner.set_message("aligning them to the reference");
    let f = run_families(
        &cell.members(),
        &cell.dataset,
        (shapes::Split::Val, split),
        &settings,
        (&args.dataset, &cell.condition),
    )?;
    spinner.finish_and_clear();
    // Beside an SQLite store; in the working directory for a database.
    let beside = match args.store.as_path() {
        Some(p) => p
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        beside.join(
            [&args.dataset, &args.arch, &cell.condition]
                .iter()
                .filter(|s| !s.is_empty())
                .fold("families".to_string(), |a, s| format!("{a}-{s}")),
        )
    });
    let files = f.write(&out, &cell.dataset)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
    } else {
        print!("{}", f.to_text());
        println!("\n{} files written to {}", files.len(), out.display());
    }
    Ok(())
}
