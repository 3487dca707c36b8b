//! `sweep`, `runs`, `summary` and `stuck`: parse, call `lab`, print.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use indicatif::ProgressBar;

use crate::cli::{
    EmitChoice, OutcomeChoice, RunsArgs, StoreFilter, StuckArgs, SummaryArgs, SweepArgs,
};
use crate::{cores, usage};
use lab::experiments::experiment::{parse_shard, DataSource, Plan};
use lab::experiments::outcome::Outcome;
use lab::experiments::store::{RunFilter, RunRow, Store, StoreUrl};
use lab::experiments::sweep::{SweepObserver, SweepOptions, WorkerOptions};
use lab::files::output::{check_disjoint, Input};

/// The first Ctrl-C asks for a clean stop; a second one exits at once.
pub(crate) fn install_ctrlc() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    // An error here means a handler exists already (tests, embedding): keep going without.
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(130);
        }
        eprintln!("\nstopping: what is in flight is abandoned, what is finished is kept; run the same command again to resume");
    });
    flag
}

/// Progress of a sweep: runs done/total, learned so far, ETA.
struct SweepProgress {
    bar: ProgressBar,
    learned: AtomicUsize,
    done: AtomicUsize,
    lines: bool,
    quiet: bool,
}

impl SweepProgress {
    /// A bar on a terminal, a line per run in a log, nothing with `--quiet`.
    fn new(quiet: bool) -> SweepProgress {
        let bar = crate::progress::bar(0, "runs {pos}/{len} [{bar:30}] {msg}, eta {eta}", quiet);
        SweepProgress {
            bar,
            learned: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            lines: crate::progress::lines(quiet),
            quiet,
        }
    }
}

impl SweepObserver for SweepProgress {
    /// A study sweeps twice (the grid, then the case nets): each sweep counts from zero.
    fn start(&self, total: usize, already: usize) {
        self.done.store(0, Ordering::SeqCst);
        self.learned.store(0, Ordering::SeqCst);
        self.bar.reset();
        self.bar.set_length((total - already) as u64);
        if already > 0 && !self.quiet {
            eprintln!(
                "{already} of {total} runs already in the store; {} to go",
                total - already
            );
        }
    }

    /// Warnings show even with `--quiet`: they say something about the results.
    fn note(&self, line: &str) {
        self.bar.suspend(|| eprintln!("warning: {line}"));
    }

    fn reconnecting(&self, why: &str) {
        self.bar
            .suspend(|| eprintln!("warning: {why}; reconnecting (--reconnect sets for how long)"));
    }

    fn stored(&self, row: &RunRow) {
        if row.outcome == Outcome::Learned {
            self.learned.fetch_add(1, Ordering::SeqCst);
        }
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let learned = self.learned.load(Ordering::SeqCst);
        self.bar.set_message(format!("{learned} learned"));
        self.bar.inc(1);
        if self.lines {
            eprintln!(
                "[{done}/{}] {} {} val acc {:.4}",
                self.bar.length().unwrap_or(0),
                row.key,
                row.outcome,
                row.val_acc
            );
        }
    }
}

/// The worker's name in the claims table: its Slurm array task or Kubernetes index if any.
fn worker_name() -> String {
    if let Ok(t) = std::env::var("SLURM_ARRAY_TASK_ID") {
        let job = std::env::var("SLURM_ARRAY_JOB_ID").unwrap_or_default();
        format!("slurm-{job}_{t}")
    } else if let Ok(i) = std::env::var("JOB_COMPLETION_INDEX") {
        format!("k8s-{i}")
    } else {
        "worker".into()
    }
}

/// `sweep --emit`: prints the recipe, trains nothing.
fn emit(args: &SweepArgs, plan: &Plan, kind: EmitChoice) -> Result<()> {
    let experiment = lab::files::output::resolve(&args.experiment);
    let binary = std::env::current_exe()?;
    let recipe = lab::experiments::recipes::Recipe {
        name: &plan.name,
        experiment: &experiment,
        text: &plan.text,
        binary: &binary,
        tasks: args.array,
        at_once: args.at_once,
        cores: args.jobs.map_or(1, |j| j as usize),
        lease: args.lease,
    };
    let text = match kind {
        EmitChoice::Slurm => lab::experiments::recipes::slurm(&recipe),
        EmitChoice::K8s => {
            let image = args.image.as_deref().ok_or_else(|| {
                usage("--emit k8s needs --image IMAGE: a container image with shapelab as its entrypoint".to_string())
            })?;
            lab::experiments::recipes::k8s(&recipe, image)
        }
    };
    print!("{text}");
    Ok(())
}

pub fn sweep(args: SweepArgs, quiet: bool) -> Result<()> {
    let plan = Plan::from_file(&args.experiment)?;
    if let Some(kind) = args.emit {
        return emit(&args, &plan, kind);
    }
    let url = args.store.clone().unwrap_or_else(|| {
        StoreUrl::Sqlite(
            args.experiment
                .parent()
                .unwrap_or(Path::new(""))
                .join("shapelab.db"),
        )
    });
    if let Some(path) = url.as_path() {
        let mut inputs = vec![Input::File(&args.experiment)];
        inputs.extend(plan.datasets.iter().filter_map(|d| match &d.source {
            DataSource::File(p) => Input::at(p),
            DataSource::Spec { .. } => None,
        }));
        check_disjoint(path, "--store", &inputs)?;
    }
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    let jobs = args.jobs.map_or_else(cores, |j| j as usize);
    let cancel = install_ctrlc();
    let progress = SweepProgress::new(quiet);
    let opts = SweepOptions {
        shard,
        worker: args.worker.then(|| WorkerOptions {
            lease: Duration::from_secs(args.lease),
            reconnect: Duration::from_secs(args.reconnect),
            name: worker_name(),
        }),
        jobs,
        cancel: &cancel,
    };
    let store = Store::open(&url)?.with_artifacts(args.artifacts.artifacts.clone());
    let report = lab::experiments::sweep::run(&plan, &args.experiment, &store, &opts, &progress)?;
    progress.bar.finish_and_clear();
    let counts: Vec<String> = report
        .outcomes
        .iter()
        .map(|(o, n)| format!("{n} {o}"))
        .collect();
    let scope = match shard {
        Some((i, n)) => format!(" (shard {}/{n})", i + 1),
        None => String::new(),
    };
    println!(
        "{}{scope}: {} runs, {} stored now, {} already there; {}; store {}",
        plan.name,
        report.total,
        report.stored,
        report.already,
        counts.join(", "),
        url
    );
    if let Some(first) = report.failures.first() {
        return Err(lab::Error::RunsFailed {
            count: report.failures.len(),
            first: first.clone(),
        }
        .into());
    }
    if report.cancelled {
        return Err(lab::Error::Interrupted(format!(
            "{} of {} runs are stored; run the same command to resume",
            report.already + report.stored,
            report.total
        ))
        .into());
    }
    Ok(())
}

fn filter_of(f: &StoreFilter, outcome: Option<OutcomeChoice>) -> Result<RunFilter> {
    let arch = f
        .arch
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| usage(format!("--arch {e}")))?;
    Ok(RunFilter {
        experiment: f.experiment.clone(),
        dataset: f.dataset.clone(),
        arch,
        outcome: outcome.map(|o| match o {
            OutcomeChoice::Learned => Outcome::Learned,
            OutcomeChoice::Stuck => Outcome::Stuck,
            OutcomeChoice::Collapsed => Outcome::Collapsed,
            OutcomeChoice::Partial => Outcome::Partial,
            OutcomeChoice::Diverged => Outcome::Diverged,
        }),
    })
}

/// A run's model directory as a user can open it, or as stored when the store's artifacts
/// root is unknown (a postgres:// store read without --artifacts).
fn shown_dir(store: &Store, r: &RunRow) -> String {
    store
        .resolve_model_dir(&r.model_dir)
        .map_or(r.model_dir.clone(), |p| p.display().to_string())
}

/// Opens a filter's store to read, with its artifacts root.
fn open_read(f: &StoreFilter) -> Result<Store> {
    Ok(Store::open_read(&f.store)?.with_artifacts(f.artifacts.artifacts.clone()))
}

fn run_json(store: &Store, r: &RunRow) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(r).expect("json");
    let o = v.as_object_mut().expect("object");
    o.insert("model_dir".into(), shown_dir(store, r).into());
    o.insert("seed".into(), r.seed.to_string().into());
    // Stored JSON that does not read back is an error naming the run, never a null.
    let bad = |what: &str, e: serde_json::Error| {
        store.fault(format!(
            "run {} has a {what} that does not read back: {e}",
            r.key
        ))
    };
    let config = serde_json::from_str(&r.config).map_err(|e| bad("config", e))?;
    o.insert("config".into(), config);
    let diagnosis = match r.diagnosis.as_deref() {
        Some(d) => serde_json::from_str(d).map_err(|e| bad("diagnosis", e))?,
        None => serde_json::Value::Null,
    };
    o.insert("diagnosis".into(), diagnosis);
    Ok(v)
}

pub fn runs(args: RunsArgs) -> Result<()> {
    let store = open_read(&args.filter)?;
    let rows = store.runs(&filter_of(&args.filter, args.outcome)?)?;
    if args.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| run_json(&store, r))
            .collect::<Result<_>>()?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if args.csv {
        let mut w = csv::Writer::from_writer(std::io::stdout());
        w.write_record([
            "key",
            "experiment",
            "dataset",
            "arch",
            "condition",
            "seed_index",
            "seed",
            "outcome",
            "plateau",
            "never_predicted",
            "epochs_run",
            "epochs_to_learn",
            "train_acc",
            "val_acc",
            "val_loss",
            "seconds",
            "model_dir",
        ])?;
        for r in &rows {
            w.write_record([
                r.key.clone(),
                r.experiment.clone(),
                r.dataset.clone(),
                r.arch.to_string(),
                r.condition.clone(),
                r.seed_index.to_string(),
                r.seed.to_string(),
                r.outcome.to_string(),
                r.plateau.map_or(String::new(), |p| p.to_string()),
                r.never_predicted.join(" "),
                r.epochs_run.to_string(),
                r.epochs_to_learn.map_or(String::new(), |e| e.to_string()),
                r.train_acc.to_string(),
                r.val_acc.to_string(),
                r.val_loss.to_string(),
                format!("{:.3}", r.seconds),
                shown_dir(&store, r),
            ])?;
        }
        w.flush()?;
        return Ok(());
    }
    let kw = rows
        .iter()
        .map(|r| lab::text::width(&r.key))
        .max()
        .unwrap_or(3)
        .max(3);
    println!(
        "{:kw$}  {:8}  {:>7}  {:>6}  never predicted",
        "key", "outcome", "val acc", "epochs"
    );
    for r in &rows {
        println!(
            "{:kw$}  {:8}  {:>7.4}  {:>6}  {}",
            r.key,
            r.outcome,
            r.val_acc,
            r.epochs_run,
            r.never_predicted.join(", ")
        );
    }
    println!("{} runs in {}", rows.len(), args.filter.store);
    Ok(())
}

fn beside_store(store: &Path, suffix: &str) -> PathBuf {
    let stem = store
        .file_stem()
        .map_or("shapelab".into(), |s| s.to_string_lossy().into_owned());
    store
        .parent()
        .unwrap_or(Path::new(""))
        .join(format!("{stem}-{suffix}"))
}

pub fn summary(args: SummaryArgs) -> Result<()> {
    let store = open_read(&args.filter)?;
    let rows = store.runs(&filter_of(&args.filter, None)?)?;
    if rows.is_empty() {
        return Err(usage(format!(
            "{} holds no runs matching the filter; run `shapelab sweep` first",
            args.filter.store
        )));
    }
    let groups = lab::experiments::summary::summarize(&rows);
    let png = match (&args.out, args.filter.store.as_path()) {
        (Some(p), _) => p.clone(),
        (None, Some(path)) => beside_store(path, "summary.png"),
        (None, None) => {
            return Err(usage(format!(
            "{} is a database, with no directory to write the heatmap beside: give --out FILE.png",
            args.filter.store
        )))
        }
    };
    let store_input: Vec<Input> = args
        .filter
        .store
        .as_path()
        .map(Input::Store)
        .into_iter()
        .collect();
    check_disjoint(&png, "--out", &store_input)?;
    // The default heatmap is derived data, refreshed; a file the user named needs --force.
    lab::files::fsio::prepare_file(&png, args.force || args.out.is_none())?;
    if let Some(base) = &args.thesis_table {
        for ext in ["csv", "xlsx"] {
            let p = base.with_extension(ext);
            check_disjoint(&p, "--thesis-table", &store_input)?;
            lab::files::fsio::prepare_file(&p, args.force)?;
        }
    }
    lab::experiments::summary::heatmap(&groups).save_png(&png)?;
    let tables = match &args.thesis_table {
        Some(base) => Some(lab::experiments::summary::write_thesis_table(&rows, base)?),
        None => None,
    };
    if args.json {
        let json = serde_json::json!({"groups": groups, "heatmap": png.display().to_string(),
            "thesis_table": tables.as_ref().map(|(c, x)| vec![c.display().to_string(), x.display().to_string()])});
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    print!("{}", lab::experiments::summary::to_text(&groups));
    println!("heatmap: {}", png.display());
    if let Some((c, x)) = tables {
        println!("thesis table: {} and {}", c.display(), x.display());
    }
    Ok(())
}

pub fn stuck(args: StuckArgs, quiet: bool) -> Result<()> {
    let store = open_read(&args.filter)?;
    let rows = store.runs(&filter_of(&args.filter, None)?)?;
    if rows.is_empty() {
        return Err(usage(format!(
            "{} holds no runs matching the filter; run `shapelab sweep` first",
            args.filter.store
        )));
    }
    if let Some(extra) = args.continue_epochs {
        let n = rows.iter().filter(|r| r.outcome == Outcome::Stuck).count();
        let bar = crate::progress::bar(
            n as u64,
            "stuck runs continued {pos}/{len} [{bar:30}] eta {eta}",
            quiet,
        );
        let jobs = args.jobs.map_or_else(cores, |j| j as usize);
        let rescue = match (&args.rescue, args.lr) {
            (Some(r), _) => r
                .parse::<lab::experiments::rescue::Rescue>()
                .map_err(|e| usage(format!("--{e}")))?,
            (None, Some(lr)) => lab::experiments::rescue::Rescue::Lr(lr),
            (None, None) => lab::experiments::rescue::Rescue::Same,
        };
        let stuck: Vec<RunRow> = rows
            .iter()
            .filter(|r| r.outcome == Outcome::Stuck)
            .cloned()
            .collect();
        let done =
            lab::experiments::stuck::continue_runs(&store, &stuck, extra, rescue, jobs, &|| {
                bar.inc(1)
            })?;
        bar.finish_and_clear();
        let escaped = done.iter().filter(|c| c.escaped).count();
        println!(
            "continued {} stuck runs {extra} more epochs: {escaped} escaped",
            done.len()
        );
    }
    let groups = lab::experiments::stuck::report(&store, &rows)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&groups)?);
    } else {
        print!("{}", lab::experiments::stuck::to_text(&groups));
    }
    Ok(())
}

/// Progress of a study: one line per stage, the sweep's bar, and bars for the later stages.
struct StudyProgress {
    sweep: SweepProgress,
    quiet: bool,
    started: std::time::Instant,
    stage_bar: std::sync::Mutex<Option<ProgressBar>>,
    /// Each stage's name (up to its first `:` or `,`) and when it began, in seconds.
    stages: std::sync::Mutex<Vec<(String, f64)>>,
}

impl StudyProgress {
    /// `stage times: NAME N s, ...`: how long each stage took, from the stage lines' times.
    fn stage_times(&self) -> String {
        let stages = self.stages.lock().expect("progress lock");
        let end = self.started.elapsed().as_secs_f64();
        let ends = stages
            .iter()
            .skip(1)
            .map(|s| s.1)
            .chain(std::iter::once(end));
        let parts: Vec<String> = stages
            .iter()
            .zip(ends)
            .map(|((name, start), end)| format!("{name} {:.0} s", end - start))
            .collect();
        format!("stage times: {}", parts.join(", "))
    }
}

impl SweepObserver for StudyProgress {
    fn start(&self, total: usize, already: usize) {
        self.sweep.start(total, already)
    }
    fn stored(&self, row: &RunRow) {
        self.sweep.stored(row)
    }
    fn note(&self, line: &str) {
        self.sweep.note(line)
    }
}

impl lab::study::StudyObserver for StudyProgress {
    fn stage(&self, index: usize, total: usize, what: &str) {
        let name = what.split([':', ',']).next().unwrap_or(what);
        self.stages
            .lock()
            .expect("progress lock")
            .push((name.to_string(), self.started.elapsed().as_secs_f64()));
        self.sweep.bar.finish_and_clear();
        if let Some(b) = self.stage_bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
        if !self.quiet {
            eprintln!(
                "[{index}/{total}] {what} ({:.0} s elapsed)",
                self.started.elapsed().as_secs_f64()
            );
        }
    }
    fn continuing(&self, total: usize) {
        let bar = crate::progress::bar(
            total as u64,
            "stuck runs continued {pos}/{len} [{bar:30}] eta {eta}",
            self.quiet,
        );
        *self.stage_bar.lock().expect("progress lock") = Some(bar);
    }
    fn continued(&self) {
        if let Some(b) = self.stage_bar.lock().expect("progress lock").as_ref() {
            b.inc(1);
        }
    }
    fn case(&self, slug: &str, done: usize, total: usize) {
        if !self.quiet {
            eprintln!("      case {}/{total}: {slug}", done + 1);
        }
    }
    fn dissected(&self, done: usize, total: usize) {
        let mut slot = self.stage_bar.lock().expect("progress lock");
        let bar = slot.get_or_insert_with(|| {
            crate::progress::bar(
                total as u64,
                "runs dissected (or read back) {pos}/{len} [{bar:30}] eta {eta}",
                self.quiet,
            )
        });
        bar.set_position(done as u64);
    }
    fn paired(&self, done: usize, total: usize) {
        let mut slot = self.stage_bar.lock().expect("progress lock");
        let bar = slot.get_or_insert_with(|| {
            crate::progress::bar(
                total as u64,
                "pairs of seeds aligned {pos}/{len} [{bar:30}] eta {eta}",
                self.quiet,
            )
        });
        bar.set_position(done as u64);
    }
}

pub fn study(args: crate::cli::StudyArgs, quiet: bool) -> Result<()> {
    let (text, source) = match &args.config {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => lab::Error::Missing(format!(
                    "study file {} does not exist; check the path, or start one with `shapelab study --print-config > {}`",
                    path.display(),
                    path.display()
                )),
                _ => lab::Error::io(path, e),
            })?,
            path.display().to_string(),
        ),
        None => match args.scale {
            crate::cli::Scale::Default => (lab::study::DEFAULT.to_string(), "studies/default.toml (embedded)".into()),
            crate::cli::Scale::Thesis => (lab::study::THESIS.to_string(), "studies/thesis.toml (embedded)".into()),
        },
    };
    if args.print_config {
        print!("{text}");
        return Ok(());
    }
    if let Some(config) = &args.config {
        // The study keeps its own copy as DIR/study.toml; resuming from that copy is fine.
        let own = lab::files::output::resolve(&args.out.join("study.toml"));
        if lab::files::output::resolve(config) != own {
            check_disjoint(&args.out, "--out", &[Input::File(config)])?;
        }
    }
    lab::study::check_dir(&args.out, &text)?;
    let store = lab::study::location::choose(&args.out, args.store.as_ref())?;
    let jobs = args.jobs.map_or_else(cores, |j| j as usize);
    let cancel = install_ctrlc();
    let progress = StudyProgress {
        sweep: SweepProgress::new(quiet),
        quiet,
        started: std::time::Instant::now(),
        stage_bar: std::sync::Mutex::new(None),
        stages: std::sync::Mutex::new(Vec::new()),
    };
    if !quiet {
        eprintln!(
            "study {source} into {} (store {store}), {jobs} jobs",
            args.out.display()
        );
    }
    let result = lab::study::run(
        &text,
        &source,
        &args.out,
        args.store.as_ref(),
        jobs,
        &cancel,
        &progress,
    );
    progress.sweep.bar.finish_and_clear();
    if cancel.load(Ordering::SeqCst) {
        return Err(lab::Error::Interrupted(format!(
            "what is done is saved in {}; run the same command to resume",
            args.out.display()
        ))
        .into());
    }
    let report = result?;
    println!(
        "study done in {:.0} s: open {}",
        progress.started.elapsed().as_secs_f64(),
        report.display()
    );
    println!("{}", progress.stage_times());
    Ok(())
}

pub fn report(args: crate::cli::ReportArgs) -> Result<()> {
    if !args.dir.exists() {
        return Err(lab::Error::NotFound(args.dir.clone()).into());
    }
    if !args.dir.join("study.toml").exists() {
        return Err(usage(format!(
            "{} is not a study directory (no study.toml); give the --out of a `shapelab study` run",
            args.dir.display()
        )));
    }
    let url = lab::study::location::for_reading(&args.dir, args.store.as_ref())?;
    let store = Store::open_read(&url)?.with_artifacts(Some(args.dir.clone()));
    let path = lab::study::report::build(&args.dir, &store)?;
    println!("wrote {}", path.display());
    Ok(())
}
