//! `train`, `eval` and `predict`: parse into engine settings, call `lab`, print.

use anyhow::Result;
use indicatif::ProgressBar;
use lab::experiments::experiment::{OptimizerKind, TrainSettings};
use shapes::Split as Part;
use tinycnn::train::Observer;
use tinycnn::{Activation, Arch, EpochStats, Init, Scaling, TrainConfig};

use crate::cli::{
    ActivationChoice, ActivationsArgs, AnalyzeArgs, ColormapChoice, EvalArgs, FiltersArgs,
    InitChoice, KernelsArgs, NormChoice, OptimizerChoice, PredictArgs, PruneArgs, ScalingChoice,
    SplitChoice, StageChoice, TiesChoice, TrainArgs,
};
use crate::usage;
use lab::files::output::{check_disjoint, Input};
use lab::models::run::Run;
use lab::models::training::{check_compatible, engine_data, resolve_data, training_data};

pub(crate) fn part(s: SplitChoice) -> Part {
    match s {
        SplitChoice::Train => Part::Train,
        SplitChoice::Val => Part::Val,
        SplitChoice::Test => Part::Test,
    }
}

/// The split asked for with `flag`, refused when the data lacks it (only a test split can be
/// missing).
pub(crate) fn present(
    d: &lab::data::dataset::Dataset,
    (flag, s): (&str, SplitChoice),
    data_name: &str,
) -> Result<Part> {
    let p = part(s);
    if d.try_split(p).is_none() {
        return Err(usage(format!(
            "{flag} {}: {data_name} has no {} split (made before shapelab wrote one, or brought without it); use val, or generate the dataset again",
            p.name(),
            p.name()
        )));
    }
    Ok(p)
}

/// Turns the flags into an architecture and a training config (through the same
/// `TrainSettings` an experiment file fills in), checking every value.
fn plan(
    args: &TrainArgs,
    height: usize,
    width: usize,
    classes: usize,
) -> Result<(Arch, TrainConfig)> {
    let pool = match &args.pool {
        None => None,
        Some(flags) => Some(
            flags
                .iter()
                .map(|f| match f.as_str() {
                    "on" | "1" | "yes" | "true" => Ok(true),
                    "off" | "0" | "no" | "false" => Ok(false),
                    other => Err(usage(format!(
                        "--pool {other}: write on or off for each conv layer, e.g. --pool on,off"
                    ))),
                })
                .collect::<Result<Vec<bool>>>()?,
        ),
    };
    let settings = TrainSettings {
        optimizer: match args.optimizer {
            OptimizerChoice::Adam => OptimizerKind::Adam,
            OptimizerChoice::Sgd => OptimizerKind::Sgd,
        },
        lr: args.lr,
        momentum: args.momentum,
        batch: args.batch,
        scaling: match args.scaling {
            ScalingChoice::Unit => Scaling::Unit,
            ScalingChoice::Raw => Scaling::Raw,
        },
        init: match args.init {
            InitChoice::Glorot => Init::Glorot,
            InitChoice::He => Init::He,
        },
        early_stop: args.early_stop,
        activation: match args.activation {
            ActivationChoice::Relu => Activation::Relu,
            ActivationChoice::LeakyRelu => Activation::LeakyRelu,
            ActivationChoice::Tanh => Activation::Tanh,
        },
        kernel: args.kernel,
        pool,
        epochs: args.epochs,
    };
    let label: tinycnn::ArchLabel = args
        .arch
        .parse()
        .map_err(|e| usage(format!("--arch {e}")))?;
    let (arch, config) = settings
        .build(&label, height, width, classes, args.seed)
        .map_err(|e| match e {
            lab::Error::Usage(m) if m.starts_with("momentum") => usage(format!("--{m}")),
            lab::Error::Usage(m) => {
                usage(m.replacen("architecture ", &format!("--arch {label}: "), 1))
            }
            other => other.into(),
        })?;
    Ok((arch, config))
}

/// Progress of a training run: a bar on a terminal, one line per epoch otherwise.
struct Progress {
    bar: ProgressBar,
    epochs: usize,
    lines: bool,
}

impl Progress {
    fn new(epochs: usize, images: usize, quiet: bool) -> Progress {
        let bar = crate::progress::bar(
            (epochs * images) as u64,
            "{msg} [{bar:24}] {per_sec} eta {eta}",
            quiet,
        );
        bar.set_message(format!("epoch 1/{epochs}"));
        Progress {
            bar,
            epochs,
            lines: crate::progress::lines(quiet),
        }
    }
}

impl Observer for Progress {
    fn batch(&mut self, images: usize) {
        self.bar.inc(images as u64);
    }

    fn epoch(&mut self, s: &EpochStats) -> bool {
        let line = format!(
            "epoch {}/{}  loss {:.4}  acc {:.4}  val loss {:.4}  val acc {:.4}",
            s.epoch, self.epochs, s.train_loss, s.train_acc, s.val_loss, s.val_acc
        );
        if self.lines {
            eprintln!("{line}");
        }
        self.bar.set_message(line);
        true
    }
}

pub fn train(args: TrainArgs, quiet: bool) -> Result<()> {
    let data: Vec<Input> = Input::data(&args.data).into_iter().collect();
    check_disjoint(&args.out, "--out", &data)?;
    lab::files::fsio::prepare_dir(&args.out, args.force)?;
    let (dataset, data_ref) = resolve_data(&args.data, &|_| {})?;
    crate::warn_skipped(&dataset, &args.data);
    let (arch, config) = plan(
        &args,
        dataset.height,
        dataset.width,
        dataset.class_names.len(),
    )?;
    let mut progress = Progress::new(config.epochs, dataset.train.len(), quiet);
    let run = lab::models::training::train(&dataset, data_ref, &arch, &config, &mut progress)?;
    progress.bar.finish_and_clear();
    run.save(&args.out, args.force)?;
    let m = &run.meta;
    let data_name = m.data.name.clone().unwrap_or_else(|| m.data.source.clone());
    let epochs = run.history.len();
    print!(
        "trained {} ({} parameters) on {data_name} for {epochs} epochs in {:.1} s ({:.0} images/s)",
        arch.label(),
        arch.param_count(),
        m.seconds,
        m.images_per_s
    );
    if let Some(x) = &m.metrics {
        print!(
            ": train acc {:.4}, val acc {:.4}, val loss {:.4}",
            x.train_acc, x.val_acc, x.val_loss
        );
    }
    println!(" -> {}", args.out.display());
    match m.ending {
        tinycnn::Ending::EarlyStopped => println!("stopped early: validation accuracy reached 1.0 at epoch {epochs}"),
        tinycnn::Ending::Diverged => println!(
            "diverged in epoch {}: the loss became NaN or infinite; the saved weights are the last finite ones",
            epochs + 1
        ),
        _ => {}
    }
    Ok(())
}

/// What a command on the model directory `model` (loaded as `run`) reads or stands on, for
/// `check_disjoint`: the model, `--data`, the model's own dataset file or tree wherever it
/// still exists (even when a shapelab dataset is regenerated from its spec instead of read, it
/// is the user's copy of the data the model was trained on), and `extra` (a panel, a store).
fn model_inputs<'a>(
    model: &'a std::path::Path,
    run: &'a Run,
    data: Option<&'a str>,
    extra: Option<Input<'a>>,
) -> Vec<Input<'a>> {
    let mut v = vec![Input::Model(model)];
    v.extend(data.and_then(Input::data));
    v.extend(Input::data(&run.meta.data.source));
    v.extend(extra);
    v
}

pub(crate) fn load_eval_data(run: &Run, data: &Option<String>) -> Result<(lab::Dataset, String)> {
    let (d, name) = match data {
        Some(arg) => (resolve_data(arg, &|_| {})?.0, arg.clone()),
        None => (
            training_data(&run.meta, &|_| {})?,
            run.meta
                .data
                .name
                .clone()
                .unwrap_or_else(|| run.meta.data.source.clone()),
        ),
    };
    check_compatible(run, &d)?;
    crate::warn_skipped(&d, &name);
    Ok((d, name))
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let mut run = Run::load(&args.model)?;
    if !args.remove.is_empty() {
        let keep = run
            .model
            .arch
            .keep_without(&args.remove)
            .map_err(|e| usage(format!("--remove: {e}")))?;
        run.model = run.model.pruned(&keep)?;
    }
    let (d, name) = load_eval_data(&run, &args.data)?;
    let split = present(&d, ("--split", args.split), &name)?;
    let e = tinycnn::train::evaluate(&run.model, &engine_data(&d, split), run.meta.train.scaling);
    if args.json {
        let json = serde_json::json!({
            "model": args.model.display().to_string(),
            "data": name,
            "split": split.name(),
            "class_names": d.class_names,
            "accuracy": e.accuracy,
            "loss": e.loss,
            "correct": e.correct,
            "total": e.total,
            "confusion": e.confusion,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!(
        "{} on {name} ({}, {} images): accuracy {:.4} ({}/{}), loss {:.4}",
        args.model.display(),
        split.name(),
        e.total,
        e.accuracy,
        e.correct,
        e.total,
        e.loss
    );
    let w = d
        .class_names
        .iter()
        .map(|c| lab::text::width(c))
        .max()
        .unwrap_or(5)
        .max(9);
    println!("\nconfusion matrix (rows: true class, columns: predicted)");
    print!("  {:w$}", "");
    for c in &d.class_names {
        print!(" {c:>w$}");
    }
    println!();
    for (c, row) in d.class_names.iter().zip(&e.confusion) {
        print!("  {c:w$}");
        for n in row {
            print!(" {n:>w$}");
        }
        println!();
    }
    Ok(())
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let run = Run::load(&args.model)?;
    let arch = &run.model.arch;
    let classes = &run.meta.class_names;
    if let Some(data) = &args.data {
        if !args.images.is_empty() {
            return Err(usage("give either IMAGE.png files or --data, not both"));
        }
        let out = args.out.as_ref().expect("clap requires --out with --data");
        let inputs = model_inputs(&args.model, &run, Some(data), None);
        check_disjoint(out, "--out", &inputs)?;
        lab::files::fsio::prepare_file(out, args.force)?;
        let (d, name) = load_eval_data(&run, &Some(data.clone()))?;
        let split = present(&d, ("--split", args.split), &name)?;
        let data = engine_data(&d, split);
        let logits = tinycnn::train::logits(&run.model, &data, run.meta.train.scaling);
        lab::models::predictions::write_logits(out, args.force, &logits, data.labels, classes)?;
        println!(
            "wrote {}: logits of {} {} images ({} classes)",
            out.display(),
            data.len(),
            split.name(),
            classes.len()
        );
        return Ok(());
    }
    if let Some(out) = &args.out {
        return Err(usage(format!(
            "--out {} writes the logits of --data; for IMAGE.png files the logits are in --json",
            out.display()
        )));
    }
    let mut images = Vec::new();
    for p in &args.images {
        let (w, h, px) = lab::data::imagefolder::decode_gray(p)?;
        if (w, h) != (arch.width, arch.height) {
            return Err(usage(format!(
                "{} is {w}x{h} but the model takes {}x{}; resize it first",
                p.display(),
                arch.width,
                arch.height
            )));
        }
        images.extend(px);
    }
    let labels = vec![0u8; args.images.len()];
    let data = tinycnn::Data {
        images: &images,
        labels: &labels,
        height: arch.height,
        width: arch.width,
    };
    let logits = tinycnn::train::logits(&run.model, &data, run.meta.train.scaling);
    let preds = lab::models::predictions::predictions(&logits, classes.len());
    if args.json {
        let json: Vec<serde_json::Value> = args
            .images
            .iter()
            .zip(&preds)
            .map(|(p, pr)| {
                serde_json::json!({
                    "image": p.display().to_string(),
                    "predicted": classes[pr.best],
                    "probabilities": classes.iter().zip(&pr.probabilities).map(|(c, v)| (c.clone(), serde_json::json!(v))).collect::<serde_json::Map<String, serde_json::Value>>(),
                    "logits": pr.logits,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    for (p, pr) in args.images.iter().zip(&preds) {
        let parts: Vec<String> = classes
            .iter()
            .zip(&pr.probabilities)
            .map(|(c, v)| format!("{c} {v:.4}"))
            .collect();
        println!(
            "{}: {} ({})",
            p.display(),
            classes[pr.best],
            parts.join(", ")
        );
    }
    Ok(())
}

/// A short name for a model directory in titles: its last two path components.
pub(crate) fn run_name(dir: &std::path::Path) -> String {
    let parts: Vec<String> = dir
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

pub fn activations(args: ActivationsArgs) -> Result<()> {
    let run = Run::load(&args.model)?;
    let panel_file = args
        .panel
        .as_deref()
        .map(std::path::Path::new)
        .filter(|p| p.exists())
        .map(Input::File);
    let inputs = model_inputs(&args.model, &run, None, panel_file);
    check_disjoint(&args.out, "--out", &inputs)?;
    lab::files::fsio::prepare_dir(&args.out, args.force)?;
    let data = if args.panel.is_none() && run.meta.data.spec.is_none() {
        Some(training_data(&run.meta, &|_| {})?)
    } else {
        None
    };
    let panel = lab::inside::maps::panel_for(&run, args.panel.as_deref(), data.as_ref())?;
    let o = lab::inside::maps::SheetOptions {
        stage: match args.stage {
            StageChoice::Pre => lab::inside::maps::Stage::Pre,
            StageChoice::Post => lab::inside::maps::Stage::Post,
            StageChoice::Pooled => lab::inside::maps::Stage::Pooled,
        },
        norm: match args.norm {
            NormChoice::Map => lab::inside::maps::Norm::Map,
            NormChoice::Filter => lab::inside::maps::Norm::Filter,
            NormChoice::Layer => lab::inside::maps::Norm::Layer,
        },
        colormap: args.colormap.map(|c| match c {
            ColormapChoice::Gray => lab::draw::Colormap::Gray,
            ColormapChoice::Viridis => lab::draw::Colormap::Viridis,
            ColormapChoice::Diverging => lab::draw::Colormap::Diverging,
        }),
        cell: args.cell as usize,
    };
    let name = format!("{} {}", run_name(&args.model), run.model.arch.label());
    let files = lab::inside::maps::write_sheets(
        &run.model,
        &panel,
        run.meta.train.scaling,
        &name,
        &o,
        &args.out,
        args.force,
    )?;
    let layers = run.model.arch.filters.len();
    println!(
        "wrote {} sheets to {}: {} per-filter sheets (layer-N.png) and {} per-image sheets (images/), panel {} ({} images)",
        files.len(),
        args.out.display(),
        layers,
        files.len() - layers,
        panel.meta.name,
        panel.len()
    );
    Ok(())
}

pub fn kernels(args: KernelsArgs) -> Result<()> {
    let run = Run::load(&args.model)?;
    let inputs = model_inputs(&args.model, &run, None, None);
    check_disjoint(&args.out, "--out", &inputs)?;
    lab::files::fsio::prepare_dir(&args.out, args.force)?;
    let name = format!("{} {}", run_name(&args.model), run.model.arch.label());
    let files = lab::inside::kernels::write_kernel_sheets(
        &run.model,
        &name,
        args.cell as usize,
        &args.out,
        args.force,
    )?;
    println!(
        "wrote {} kernel sheets to {}",
        files.len(),
        args.out.display()
    );
    Ok(())
}

pub fn filters(args: FiltersArgs) -> Result<()> {
    let run = Run::load(&args.model)?;
    if let Some(p) = &args.npz {
        let inputs = model_inputs(&args.model, &run, args.data.as_deref(), None);
        check_disjoint(p, "--npz", &inputs)?;
        lab::files::fsio::prepare_file(p, args.force)?;
    }
    let (d, name) = load_eval_data(&run, &args.data)?;
    let split = present(&d, ("--split", args.split), &name)?;
    let report = lab::inside::filterstats::filter_stats(
        &run.model,
        &d,
        split,
        run.meta.train.scaling,
        args.bins as usize,
    );
    // Kept beside the model, so later tools find it without recomputing.
    let (saved, json) = report.save(&args.model, split)?;
    if let Some(p) = &args.npz {
        lab::models::predictions::write_activations(
            p,
            args.force,
            &run.model,
            &d,
            split,
            run.meta.train.scaling,
        )?;
    }
    if args.json {
        print!("{json}");
    } else if args.csv {
        std::io::Write::write_all(&mut std::io::stdout(), &report.to_csv())?;
    } else {
        print!("{}", report.to_text());
        println!("\nsaved to {}", saved.display());
        if let Some(p) = &args.npz {
            println!("activations written to {}", p.display());
        }
    }
    Ok(())
}

pub fn prune(args: PruneArgs, quiet: bool) -> Result<()> {
    let run = Run::load(&args.model)?;
    let stop = match args.stop.as_str() {
        "one-per-layer" | "all" => tinycnn::prune::Stop::OnePerLayer,
        other => match other.strip_prefix("below:").and_then(|x| x.parse::<f64>().ok()) {
            Some(x) if (0.0..=1.0).contains(&x) => tinycnn::prune::Stop::Below(x),
            _ => {
                return Err(usage(format!(
                    "--stop {other}: use one-per-layer, all, or below:X with X an accuracy from 0 to 1 (e.g. below:0.9)"
                )))
            }
        },
    };
    let (ties, ties_name) = match args.ties {
        TiesChoice::Batch => (tinycnn::prune::Ties::Batch, "batch"),
        TiesChoice::One => (tinycnn::prune::Ties::One, "one"),
        TiesChoice::Loss => (tinycnn::prune::Ties::Loss, "loss"),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        args.model
            .join(format!("prune-{}-{ties_name}", part(args.on).name()))
    });
    let (d, data_name) = load_eval_data(&run, &args.data)?;
    let split = present(&d, ("--on", args.on), &data_name)?;
    check_derived_out(&out, &run, &args.model, &args.data, args.store.as_ref())?;
    let store = store_of_run(args.store.as_ref(), &args.artifacts, &args.model)?;
    let data = engine_data(&d, split);
    let start = std::time::Instant::now();
    let removable: usize = run.model.arch.filters.iter().map(|f| f - 1).sum();
    let bar = crate::progress::bar(
        removable as u64,
        "pruning [{bar:30}] {pos}/{len} filters removed, {elapsed}",
        quiet,
    );
    let p = tinycnn::prune::greedy_observed(
        &run.model,
        &data,
        run.meta.train.scaling,
        (ties, stop),
        &|gone| bar.set_position(gone as u64),
    );
    bar.finish_and_clear();
    let p = p.map_err(lab::Error::from)?;
    let seconds = start.elapsed().as_secs_f64();
    let mut json =
        lab::analyses::pruning::PruneJson::new(&p, split.name(), data.len(), ties_name, seconds);
    let held = d.held_out();
    if held != split {
        json.held_out = Some(lab::analyses::pruning::HeldOut::measure(
            &run.model,
            &p,
            &engine_data(&d, held),
            run.meta.train.scaling,
            held,
        )?);
    }
    let title = format!(
        "{} {} on {data_name} ({})",
        run_name(&args.model),
        run.model.arch.label(),
        split.name()
    );
    lab::analyses::pruning::write(&json, &title, &out)?;
    // The minimal network, as a model `shapelab eval` accepts.
    let minimal = lab::analyses::pruning::minimal_run(&run, &p.keep, &d)?;
    let e = tinycnn::train::evaluate(&minimal.model, &data, run.meta.train.scaling);
    minimal.save(&out.join("minimal"), true)?;
    if let Some((s, row)) = &store {
        let params = lab::experiments::recorded::PruneParams {
            data: &recorded_data(&args.data, row, &data_name),
            on: split.name(),
            stop: &args.stop,
            ties: ties_name,
        };
        s.put_pruning(&row.key, &params, &json)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", json.to_text());
        println!(
            "{} steps, {} evaluations in {:.3} s; table, curve and minimal network ({}, accuracy {:.4}) in {}",
            json.steps.len(),
            json.evaluations,
            seconds,
            minimal.model.arch.label(),
            e.accuracy,
            out.display()
        );
    }
    Ok(())
}

/// Checks the `--out` of `prune` and `analyze` before any work: disjoint from the model, its
/// data and the store, and a directory shapelab may refresh.
pub(crate) fn check_derived_out(
    out: &std::path::Path,
    run: &Run,
    model: &std::path::Path,
    data: &Option<String>,
    store: Option<&lab::experiments::store::StoreUrl>,
) -> Result<()> {
    // Only a store file can be written over; a database is not a path.
    let store = store.and_then(|u| u.as_path());
    let inputs = model_inputs(model, run, data.as_deref(), store.map(Input::Store));
    check_disjoint(out, "--out", &inputs)?;
    lab::files::fsio::prepare_dir(out, true)?;
    Ok(())
}

/// The name an analysis is recorded under: the run's dataset label in the store when it was
/// measured on the run's own data (as the study records its cases), else the `--data` given.
pub(crate) fn recorded_data(
    data: &Option<String>,
    row: &lab::experiments::store::RunRow,
    name: &str,
) -> String {
    match data {
        None => row.dataset.clone(),
        Some(_) => name.to_string(),
    }
}

/// With `--store`, the store and the row of the run whose model directory is `model`.
pub(crate) fn store_of_run(
    store: Option<&lab::experiments::store::StoreUrl>,
    artifacts: &crate::cli::ArtifactsArg,
    model: &std::path::Path,
) -> Result<
    Option<(
        lab::experiments::store::Store,
        lab::experiments::store::RunRow,
    )>,
> {
    let Some(p) = store else { return Ok(None) };
    let s = lab::experiments::store::Store::open_existing(p)?
        .with_artifacts(artifacts.artifacts.clone());
    let row = s.run_for_dir(model)?.ok_or_else(|| {
        usage(format!(
            "{} is not a run of {}; drop --store or pass one of its model directories{}",
            model.display(),
            p,
            if p.is_postgres() && artifacts.artifacts.is_none() {
                " (and give --artifacts: the directory the store's model directories are under)"
            } else {
                ""
            }
        ))
    })?;
    Ok(Some((s, row)))
}

pub fn analyze(args: AnalyzeArgs) -> Result<()> {
    let run = Run::load(&args.model)?;
    check_derived_out(
        &args.out,
        &run,
        &args.model,
        &args.data,
        args.store.as_ref(),
    )?;
    let store = store_of_run(args.store.as_ref(), &args.artifacts, &args.model)?;
    let (d, data_name) = load_eval_data(&run, &args.data)?;
    if d.val.is_empty() {
        return Err(usage(
            "the data's validation split is empty; analyses measure on it",
        ));
    }
    let name = run_name(&args.model);
    let report = lab::analyses::analysis::analyze(
        &run.model,
        &d,
        run.meta.train.scaling,
        &name,
        &data_name,
    )?;
    let files = lab::analyses::analysis::write(&report, &d, &args.out)?;
    if let Some((s, row)) = &store {
        s.put_run_analysis(
            &row.key,
            &recorded_data(&args.data, row, &data_name),
            &report,
        )?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
        println!("\n{} files written to {}", files.len(), args.out.display());
    }
    Ok(())
}
