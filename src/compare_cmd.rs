//! `compare`: load two runs, check they can be compared, call `lab::analyses::seeds`, write
//! the comparison and B permuted onto A, print.

use anyhow::Result;
use lab::analyses::seeds::compare::{compare as run_compare, Settings, Side};
use lab::models::run::Run;

use crate::cli::{CompareArgs, SplitChoice};
use crate::model_cmds::{check_derived_out, load_eval_data, present, run_name};
use crate::usage;

pub fn compare(args: CompareArgs) -> Result<()> {
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
    let (c, aligned) = run_compare(
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
    )?;
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
