//! The command-line interface as parsed: flags only, no logic (see `main.rs` for the glue).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A laboratory for watching small convolutional networks learn.
///
/// Generate controlled datasets of ellipses, rectangles and triangles, train tiny CNNs over
/// many seeds, open up the ones that learned, and study the ones that got stuck.
/// `shapelab study` does all of it in one command and writes a report.
#[derive(Debug, Parser)]
#[command(
    name = "shapelab",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(help_expected = true)]
pub struct Cli {
    /// Worker threads (default: all cores). Results are identical at any count.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Print no progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole thesis in one command: datasets, sweep, stuck runs, case studies, what the
    /// filters detect, whether seeds agree, report.
    #[command(after_help = STUDY_EXAMPLES)]
    Study(StudyArgs),
    /// Rebuild a study's report.html from its store and pictures, recomputing nothing.
    Report(ReportArgs),
    /// Generate a dataset from a preset or a TOML spec, or an image panel.
    #[command(after_help = GENERATE_EXAMPLES)]
    Generate(GenerateArgs),
    /// Summarise a dataset or panel file and write its contact sheet.
    Inspect(InspectArgs),
    /// Train a tiny CNN and save it (weights, config, per-epoch history).
    #[command(after_help = TRAIN_EXAMPLES)]
    Train(TrainArgs),
    /// Accuracy, loss and confusion matrix of a trained model.
    Eval(EvalArgs),
    /// Class probabilities of a trained model for PNG images, or logits for a whole split.
    Predict(PredictArgs),
    /// Run every run of an experiment (TOML) into the results store; resumable.
    #[command(after_help = SWEEP_EXAMPLES)]
    Sweep(SweepArgs),
    /// List and filter the runs in a store.
    Runs(RunsArgs),
    /// Success rates per architecture grid (Wilson 95% intervals), heatmap, thesis tables.
    Summary(SummaryArgs),
    /// The stuck-run study: diagnoses across a sweep, and training stuck runs further.
    Stuck(StuckArgs),
    /// Activation sheets of a trained model on an image panel (the thesis's Figures 14-29).
    Activations(ActivationsArgs),
    /// Every filter's weights as diverging heatmaps, one sheet per layer.
    Kernels(KernelsArgs),
    /// Per-filter statistics over a dataset split (activation, silence, per class, per factor).
    Filters(FiltersArgs),
    /// The thesis's greedy filter pruning without retraining: table, curve, minimal network.
    Prune(PruneArgs),
    /// Every analysis of one run: pruning, L1/Taylor ranking, similarity, interaction, failures.
    Analyze(AnalyzeArgs),
    /// What each filter detects: Network Dissection against the generator's concept masks,
    /// with a chance level from random initialisations and a removal check.
    Dissect(DissectArgs),
    /// Do two runs learn the same filters? Matching, CKA, B permuted onto A, and the loss
    /// barrier on the straight line between them.
    Compare(CompareArgs),
    /// Which filters does every run of a cell learn? Every run aligned to a reference and
    /// its filters read as families, with shares, the seed-own filters and CKA between runs.
    Families(FamiliesArgs),
    /// Explore a store's runs in the browser: the grid, a cell's runs, a run's filters switched
    /// off with the accuracy computed again.
    Serve(ServeArgs),
    /// Move a store between SQLite and PostgreSQL.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Measure speed (not a test: prints figures for notes and comparisons).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every run, epoch, continuation and analysis of SRC into DST (created if needed),
    /// either way between SQLite and PostgreSQL, then check that DST reads back every row of
    /// SRC unchanged. Model directories stay where they are: read DST with --artifacts naming
    /// the directory they are under.
    #[command(
        after_help = "Example:\n  shapelab store copy results/exp.db postgres://ana@db.example/lab"
    )]
    Copy(StoreCopyArgs),
}

#[derive(Debug, Args)]
pub struct StoreCopyArgs {
    /// The store to copy from (read only).
    #[arg(value_name = "SRC")]
    pub src: lab::experiments::store::StoreUrl,

    /// The store to copy into.
    #[arg(value_name = "DST")]
    pub dst: lab::experiments::store::StoreUrl,
}

const STUDY_EXAMPLES: &str = "\
Examples:
  shapelab study                          (the embedded default: ~3 minutes on 2 cores)
  shapelab study --scale thesis --out thesis-study
  shapelab study --config my-study.toml --out mine --jobs 8
  shapelab study --print-config > my-study.toml   (start a custom study from the default)
  shapelab study --store postgres://ana@db:5432/lab --out s   (results in PostgreSQL)
Stages: datasets, sweep, stuck runs trained further, case studies, report.html.
Ctrl-C stops cleanly; the same command resumes, reusing everything already done.";

/// Embedded study scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scale {
    /// Half the thesis's data, 15 epochs, 5 seeds per cell: minutes on a laptop.
    Default,
    /// The thesis's data sizes, 40 epochs, 5 seeds per cell, filters up to 32 (about 60 min
    /// on 2 cores).
    Thesis,
}

#[derive(Debug, Args)]
pub struct StudyArgs {
    /// Which embedded study to run.
    #[arg(long, value_enum, default_value = "default", conflicts_with = "config")]
    pub scale: Scale,

    /// Run a custom study: an experiment file with a [study] table (see --print-config).
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,

    /// The study's directory: data, store, model directories, case studies and report.html.
    #[arg(long, value_name = "DIR", default_value = "study")]
    pub out: PathBuf,

    /// Keep the results in a PostgreSQL database instead of DIR/shapelab.db:
    /// postgres://USER@HOST:PORT/DATABASE (the password from PGPASSWORD). DIR records the URL
    /// without its password, so resuming, `report` and `serve` find it again; model
    /// directories stay in DIR.
    #[arg(long, value_name = "URL")]
    pub store: Option<lab::experiments::store::StoreUrl>,

    /// Runs trained at once, one thread each (default: all cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,

    /// Print the chosen study's configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A directory written by `shapelab study`.
    #[arg(value_name = "DIR", default_value = "study")]
    pub dir: PathBuf,

    /// Read the study's results from this store instead of the one it was run with (a copy
    /// made with `shapelab store copy`): an SQLite file or a postgres:// URL.
    #[arg(long, value_name = "PATH|URL")]
    pub store: Option<lab::experiments::store::StoreUrl>,
}

const GENERATE_EXAMPLES: &str = "\
Examples:
  shapelab generate --preset thesis-1.3 --out data/size.npz
  shapelab generate --preset rotation --train 1200 --seed 7 --out data/rot.npz
  shapelab generate my-spec.toml --out data/mine.npz --format both
  shapelab generate --panel thesis-size --out data/panel-size.npz
  shapelab generate --list";

const TRAIN_EXAMPLES: &str = "\
Examples:
  shapelab train --data data/size.npz --arch 16-4 --epochs 40 --seed 7 --out runs/a
  shapelab train --data size --arch 2-4 --epochs 20 --out runs/b        (a preset, generated on the fly)
  shapelab train --data rotation --arch 8-4 --optimizer sgd --lr 0.01 --scaling raw --out runs/c";

/// Optimisers of `train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerChoice {
    /// Adam with Keras's defaults (lr 1e-3, betas 0.9/0.999, eps 1e-7).
    Adam,
    /// SGD, with --momentum (default 0: plain SGD; lr default 0.01).
    Sgd,
}

/// Weight initialisations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitChoice {
    /// Glorot (Xavier) uniform, Keras's default.
    Glorot,
    /// He uniform.
    He,
}

/// Input scalings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScalingChoice {
    /// Pixels / 255, in [0, 1].
    Unit,
    /// Raw 0-255 pixels (plain SGD then often sticks at 33%, as in the thesis).
    Raw,
}

/// Activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActivationChoice {
    Relu,
    LeakyRelu,
    Tanh,
}

/// Dataset splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitChoice {
    Train,
    Val,
    /// The held-out split (datasets made before it existed have none).
    Test,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A dataset (.npz or ImageFolder directory) or a preset name (generated on the fly).
    #[arg(long, value_name = "FILE|PRESET")]
    pub data: String,

    /// Filters per conv layer, as the thesis writes them: 16-4, 8, 8-16-32.
    #[arg(long, value_name = "A")]
    pub arch: String,

    /// Training epochs.
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub epochs: usize,

    /// Seed of the initial weights and of every epoch's shuffle.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// The model directory to write.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,

    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch: usize,

    #[arg(long, value_enum, default_value_t = OptimizerChoice::Adam)]
    /// Optimiser.
    pub optimizer: OptimizerChoice,

    /// Learning rate (default: 1e-3 for Adam, 0.01 for SGD).
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,

    /// SGD momentum, 0 to below 1.
    #[arg(long, value_name = "M")]
    pub momentum: Option<f64>,

    /// Weight initialisation.
    #[arg(long, value_enum, default_value_t = InitChoice::Glorot)]
    pub init: InitChoice,

    /// Input scaling.
    #[arg(long, value_enum, default_value_t = ScalingChoice::Unit)]
    pub scaling: ScalingChoice,

    /// Activation after each convolution.
    #[arg(long, value_enum, default_value_t = ActivationChoice::Relu)]
    pub activation: ActivationChoice,

    /// Kernel side (odd).
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub kernel: usize,

    /// Max-pool after each conv layer, one flag per layer: e.g. on,off (default: all on).
    #[arg(long, value_name = "on|off,...", value_delimiter = ',')]
    pub pool: Option<Vec<String>>,

    /// Stop once validation accuracy reaches 1.0.
    #[arg(long)]
    pub early_stop: bool,

    /// Replace an existing model directory.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A model directory written by `shapelab train`.
    #[arg(value_name = "DIR")]
    pub model: PathBuf,

    /// Data to evaluate on (default: the model's own dataset, regenerated or re-read).
    #[arg(long, value_name = "FILE|PRESET")]
    pub data: Option<String>,

    /// Which split.
    #[arg(long, value_enum, default_value_t = SplitChoice::Val)]
    pub split: SplitChoice,

    /// Evaluate the network with these filters removed (physically pruned), as LAYER:FILTER,
    /// both from 1, e.g. --remove 1:2,2:1.
    #[arg(long, value_name = "L:F", value_delimiter = ',', value_parser = parse_filter)]
    pub remove: Vec<(usize, usize)>,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `L:F`, a conv layer and one of its filters, both from 1.
fn parse_filter(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("{s:?}: give LAYER:FILTER, both from 1, e.g. 1:2");
    let (l, f) = s.split_once(':').ok_or_else(bad)?;
    let (l, f) = (
        l.trim().parse::<usize>().map_err(|_| bad())?,
        f.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if l == 0 || f == 0 {
        return Err(bad());
    }
    Ok((l, f))
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").args(["images", "data"]).required(true)))]
pub struct PredictArgs {
    /// A model directory written by `shapelab train`.
    #[arg(value_name = "DIR")]
    pub model: PathBuf,

    /// 8-bit grayscale PNG images of the model's input size.
    #[arg(value_name = "IMAGE.png")]
    pub images: Vec<PathBuf>,

    /// Predict a whole split of a dataset instead (with --out).
    #[arg(long, value_name = "FILE|PRESET", requires = "out")]
    pub data: Option<String>,

    /// Which split of --data.
    #[arg(long, value_enum, default_value_t = SplitChoice::Val)]
    pub split: SplitChoice,

    /// Where to write the logits of --data: an .npz with `logits` (N, classes) float32.
    #[arg(long, value_name = "LOGITS.npz")]
    pub out: Option<PathBuf>,

    /// Replace an existing --out.
    #[arg(long)]
    pub force: bool,

    /// Print JSON, with the raw logits.
    #[arg(long)]
    pub json: bool,
}

const SWEEP_EXAMPLES: &str = "\
Examples:
  shapelab sweep examples/quick.toml                 (store: examples/shapelab.db)
  shapelab sweep exp.toml --store results/exp.db --jobs 2
  shapelab sweep exp.toml --store \"$SHAPELAB_STORE\" --artifacts /shared/runs --worker
                                                     (one of any number of workers)
  shapelab sweep exp.toml --emit slurm --array 16 > sweep.sbatch   (a Slurm job array)
  shapelab sweep exp.toml --shard $SLURM_ARRAY_TASK_ID/8   (one fixed slice of the runs)
Ctrl-C stops cleanly; the same command resumes, skipping finished runs.";

/// Cluster recipes `sweep --emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmitChoice {
    /// An sbatch script: a job array whose every task is a worker.
    Slurm,
    /// A Kubernetes Indexed Job whose every pod is a worker.
    K8s,
}

/// Where model directories live when they must be on shared storage.
#[derive(Debug, Args)]
pub struct ArtifactsArg {
    /// The directory model directories are written to and read from, one every node sees;
    /// the store records paths relative to it. Needed with a postgres:// store (default for
    /// an SQLite store: beside the file).
    #[arg(long, value_name = "DIR", env = "SHAPELAB_ARTIFACTS")]
    pub artifacts: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The experiment file.
    #[arg(value_name = "FILE.toml")]
    pub experiment: PathBuf,

    /// The results store: an SQLite file (default: shapelab.db beside the experiment file)
    /// or a postgres://USER@HOST:PORT/DATABASE URL (the password from PGPASSWORD).
    #[arg(long, value_name = "PATH|URL")]
    pub store: Option<lab::experiments::store::StoreUrl>,

    #[command(flatten)]
    pub artifacts: ArtifactsArg,

    /// Run only slice i of n (1-based), a deterministic split of the runs.
    #[arg(long, value_name = "i/n", conflicts_with = "worker")]
    pub shard: Option<String>,

    /// Claim runs one at a time from the store until every run is stored, sharing the sweep
    /// with any number of other workers; a killed worker's run is claimed again when its
    /// lease runs out, and each run is stored exactly once.
    #[arg(long)]
    pub worker: bool,

    /// Seconds a worker's claim lasts without renewal (it renews every third of it).
    #[arg(long, value_name = "SECS", default_value_t = 60, requires = "worker",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease: u64,

    /// Seconds a worker keeps reconnecting to a store it lost before it stops.
    #[arg(long, value_name = "SECS", default_value_t = 120, requires = "worker",
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub reconnect: u64,

    /// Print a cluster recipe whose tasks are workers of this sweep, and train nothing. The
    /// recipe reads the store's URL from SHAPELAB_STORE and the artifacts directory from
    /// SHAPELAB_ARTIFACTS when it runs; neither is written into it.
    #[arg(long, value_enum, value_name = "KIND", conflicts_with_all = ["worker", "shard"])]
    pub emit: Option<EmitChoice>,

    /// Workers the recipe starts (Slurm array tasks, Kubernetes pods).
    #[arg(long, value_name = "N", default_value_t = 8, requires = "emit",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub array: u32,

    /// Workers that may run at once (Slurm's %K, Kubernetes' parallelism; default: all).
    #[arg(long, value_name = "K", requires = "emit",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub at_once: Option<u32>,

    /// The container image of a Kubernetes recipe (one with shapelab as its entrypoint).
    #[arg(long, value_name = "IMAGE", requires = "emit")]
    pub image: Option<String>,

    /// Runs trained at once, one thread each (default: all cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
}

/// Formats of `runs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutcomeChoice {
    Learned,
    Stuck,
    Collapsed,
    Partial,
    Diverged,
}

#[derive(Debug, Args)]
pub struct StoreFilter {
    /// The results store: an SQLite file or a postgres:// URL.
    #[arg(long, value_name = "PATH|URL", default_value = "shapelab.db")]
    pub store: lab::experiments::store::StoreUrl,

    #[command(flatten)]
    pub artifacts: ArtifactsArg,

    /// Only this experiment.
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,

    /// Only this dataset (its label in run keys).
    #[arg(long, value_name = "LABEL")]
    pub dataset: Option<String>,

    /// Only this architecture, e.g. 16-4.
    #[arg(long, value_name = "A")]
    pub arch: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub filter: StoreFilter,

    /// Only runs with this outcome.
    #[arg(long, value_enum)]
    pub outcome: Option<OutcomeChoice>,

    /// Print JSON (one object per run).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,

    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub filter: StoreFilter,

    /// Where to write the heatmap (default: beside the store, STORE-summary.png).
    #[arg(long, value_name = "PNG")]
    pub out: Option<PathBuf>,

    /// Also export the thesis's table layout to PATH.csv and PATH.xlsx.
    #[arg(long, value_name = "PATH")]
    pub thesis_table: Option<PathBuf>,

    /// Replace existing files given to --out or --thesis-table (the default heatmap beside the
    /// store is refreshed on every run).
    #[arg(long)]
    pub force: bool,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StuckArgs {
    #[command(flatten)]
    pub filter: StoreFilter,

    /// Train every stuck run N more epochs and record whether it escapes.
    #[arg(long = "continue", value_name = "N")]
    pub continue_epochs: Option<usize>,

    /// Learning rate for --continue (default: the run's own).
    #[arg(long, value_name = "LR", requires = "continue_epochs")]
    pub lr: Option<f64>,

    /// Continue with one change instead of the run's own settings: adam (Adam at 0.001 from
    /// the stuck weights), unit (inputs rescaled to [0, 1]) or reinit (dead last-layer
    /// filters drawn afresh).
    #[arg(
        long,
        value_name = "R",
        requires = "continue_epochs",
        conflicts_with = "lr"
    )]
    pub rescue: Option<String>,

    /// Runs continued at once (default: all cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A model directory written by `shapelab train` (or listed by `shapelab runs`).
    #[arg(value_name = "DIR")]
    pub model: PathBuf,

    /// Data to analyse on, its validation split (default: the model's own dataset).
    #[arg(long, value_name = "FILE|PRESET")]
    pub data: Option<String>,

    /// The directory to write the results to (replaced: they are derived data).
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,

    /// Also record the results in this store (the run must be one of its runs).
    #[arg(long, value_name = "PATH|URL")]
    pub store: Option<lab::experiments::store::StoreUrl>,

    #[command(flatten)]
    pub artifacts: ArtifactsArg,

    /// Print the whole report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run A: a model directory written by `shapelab train` (or listed by `shapelab runs`).
    #[arg(value_name = "RUN_A")]
    pub a: PathBuf,

    /// Run B, compared with A and permuted onto it.
    #[arg(value_name = "RUN_B")]
    pub b: PathBuf,

    /// Data to compare on (default: the runs' own dataset, which must be the same for both).
    #[arg(long, value_name = "FILE|PRESET")]
    pub data: Option<String>,

    /// The split everything is measured on (default: test, the held-out split, when the data
    /// has one; else val). The matching is always chosen on val.
    #[arg(long, value_enum)]
    pub split: Option<SplitChoice>,

    /// Glorot initialisations of B's architecture compared with A, as the control.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub null_seeds: u64,

    /// Points on the straight line from A to B, ends included.
    #[arg(long, value_name = "N", default_value_t = 21, value_parser = clap::value_parser!(u64).range(3..=201))]
    pub points: u64,

    /// The directory to write the results to (default: RUN_B/compare-with-<A>; replaced).
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A study directory (its shapelab.db), a store file, a model directory, or a
    /// postgres:// store (with --artifacts).
    #[arg(value_name = "STUDY_DIR|STORE|URL", default_value = "study")]
    pub path: String,

    #[command(flatten)]
    pub artifacts: ArtifactsArg,

    /// The port to listen on (0: any free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// The address to listen on. Anything but 127.0.0.1 lets other machines in.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
}

#[derive(Args, Debug)]
pub struct FamiliesArgs {
    /// The store of the sweep: an SQLite file or a postgres:// URL.
    #[arg(long, value_name = "PATH|URL")]
    pub store: lab::experiments::store::StoreUrl,

    #[command(flatten)]
    pub artifacts: ArtifactsArg,

    /// The cell's dataset (its label in run keys).
    #[arg(long, value_name = "LABEL")]
    pub dataset: String,

    /// The cell's architecture, e.g. 16-4.
    #[arg(long, value_name = "A")]
    pub arch: String,

    /// The cell's training condition, e.g. adam-unit (needed when the runs span several).
    #[arg(long, value_name = "NAME")]
    pub condition: Option<String>,

    /// Only this experiment's runs.
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,

    /// The split correlations are measured on (default: test, the held-out split, when the
    /// data has one; else val). The matching is always chosen on val.
    #[arg(long, value_enum)]
    pub split: Option<SplitChoice>,

    /// Glorot initialisations matched with the reference, as the null (each reference
    /// filter's bar is the 95th percentile of its matched correlations over them).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub null_seeds: u64,

    /// Images of the measured split the CKA matrix is computed on (at most).
    #[arg(long, value_name = "N", default_value_t = 300, value_parser = clap::value_parser!(u64).range(4..=100000))]
    pub cka_images: u64,

    /// The directory to write the results to (default: families-DATASET-ARCH-CONDITION
    /// beside the store; replaced).
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DissectArgs {
    /// A model directory written by `shapelab train` (or listed by `shapelab runs`). Without
    /// one, `--store` dissects every learned run of the store (narrowed by --experiment,
    /// --dataset, --arch and --condition) and summarises them cell by cell.
    #[arg(value_name = "DIR")]
    pub model: Option<PathBuf>,

    /// Data to dissect on (default: the model's own dataset).
    #[arg(long, value_name = "FILE|PRESET")]
    pub data: Option<String>,

    /// Which split (default: val for one run; for a store's runs their held-out split, test,
    /// which chose nothing, not even which runs count as learned).
    #[arg(long, value_enum)]
    pub split: Option<SplitChoice>,

    /// Threshold each filter at this top fraction of its activations, in (0, 0.5)
    /// (Network Dissection's 0.005).
    #[arg(long, value_name = "Q", default_value_t = 0.005)]
    pub quantile: f64,

    /// Glorot initialisations that set the chance level.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub null_seeds: u64,

    /// Keep only this conv layer (1-based) in the results.
    #[arg(long, value_name = "N")]
    pub layer: Option<usize>,

    /// Concept masks for data without a generator spec: an .npz with `masks_<split>` and
    /// `concept_names` (see docs/datasets.md).
    #[arg(long, value_name = "FILE.npz")]
    pub masks: Option<PathBuf>,

    /// The directory to write the results to (default: DIR/dissection-SPLIT for one run,
    /// dissections-SPLIT beside the store for its runs; replaced).
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// With DIR: also record the results in this store (the run must be one of its runs).
    /// Without: dissect the store's learned runs.
    #[arg(long, value_name = "PATH|URL")]
    pub store: Option<lab::experiments::store::StoreUrl>,

    #[command(flatten)]
    pub artifacts: ArtifactsArg,

    /// Only this experiment's runs (with --store and no DIR).
    #[arg(
        long,
        value_name = "NAME",
        requires = "store",
        conflicts_with = "model"
    )]
    pub experiment: Option<String>,

    /// Only this dataset's runs (its label in run keys).
    #[arg(
        long,
        value_name = "LABEL",
        requires = "store",
        conflicts_with = "model"
    )]
    pub dataset: Option<String>,

    /// Only this architecture's runs, e.g. 16-4.
    #[arg(long, value_name = "A", requires = "store", conflicts_with = "model")]
    pub arch: Option<String>,

    /// Only this condition's runs, e.g. adam-unit.
    #[arg(
        long,
        value_name = "NAME",
        requires = "store",
        conflicts_with = "model"
    )]
    pub condition: Option<String>,

    /// Print the whole result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Tie rules of `prune`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TiesChoice {
    /// When the best accuracy is 1.0, remove every filter that keeps 1.0 at once (the thesis).
    Batch,
    /// One filter per step; ties go to the lowest filter number (the thesis's rule).
    One,
    /// One filter per step; ties go to the lowest loss of the smaller network, then number.
    Loss,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// A model directory written by `shapelab train` (or listed by `shapelab runs`).
    #[arg(value_name = "DIR")]
    pub model: PathBuf,

    /// Data to measure accuracy on (default: the model's own dataset).
    #[arg(long, value_name = "FILE|PRESET")]
    pub data: Option<String>,

    /// Which split.
    #[arg(long, value_enum, default_value_t = SplitChoice::Val)]
    pub on: SplitChoice,

    /// When to stop: one-per-layer (every layer down to one filter), all (the same), or
    /// below:X (after the first step whose accuracy falls below X).
    #[arg(long, value_name = "RULE", default_value = "one-per-layer")]
    pub stop: String,

    /// How to handle several removals that keep accuracy 1.0.
    #[arg(long, value_enum, default_value_t = TiesChoice::Batch)]
    pub ties: TiesChoice,

    /// Where to write the table, curve and minimal network (default: DIR/prune-SPLIT-TIES).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Also record the result in this store (the run must be one of its runs).
    #[arg(long, value_name = "PATH|URL")]
    pub store: Option<lab::experiments::store::StoreUrl>,

    #[command(flatten)]
    pub artifacts: ArtifactsArg,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Stages of `activations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StageChoice {
    /// Convolution plus bias, before the activation.
    Pre,
    /// After the activation.
    Post,
    /// After the max-pool.
    Pooled,
}

/// Normalisations of `activations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NormChoice {
    /// Each map to its own maximum.
    Map,
    /// Each filter to its maximum over the panel.
    Filter,
    /// One scale per layer.
    Layer,
}

/// Colour maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColormapChoice {
    Gray,
    Viridis,
    Diverging,
}

#[derive(Debug, Args)]
pub struct ActivationsArgs {
    /// A model directory written by `shapelab train` (or listed by `shapelab runs`).
    #[arg(value_name = "DIR")]
    pub model: PathBuf,

    /// thesis-size, thesis-rotation or a panel file (default: the panel matching the run's data).
    #[arg(long, value_name = "NAME|FILE")]
    pub panel: Option<String>,

    /// The directory to write the sheets to.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,

    /// Which maps.
    #[arg(long, value_enum, default_value_t = StageChoice::Post)]
    pub stage: StageChoice,

    /// How values map to colours.
    #[arg(long, value_enum, default_value_t = NormChoice::Filter)]
    pub norm: NormChoice,

    /// Colour map (default: gray, diverging for --stage pre).
    #[arg(long, value_enum)]
    pub colormap: Option<ColormapChoice>,

    /// Side of one map in pixels; maps are enlarged by whole pixels to fill it.
    #[arg(long, value_name = "PX", default_value_t = 28, value_parser = clap::value_parser!(u16).range(8..=256))]
    pub cell: u16,

    /// Replace an existing output directory.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct KernelsArgs {
    /// A model directory written by `shapelab train`.
    #[arg(value_name = "DIR")]
    pub model: PathBuf,

    /// The directory to write the sheets to.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,

    /// Side of one kernel in pixels.
    #[arg(long, value_name = "PX", default_value_t = 30, value_parser = clap::value_parser!(u16).range(3..=256))]
    pub cell: u16,

    /// Replace an existing output directory.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct FiltersArgs {
    /// A model directory written by `shapelab train`.
    #[arg(value_name = "DIR")]
    pub model: PathBuf,

    /// Data to measure on (default: the model's own dataset).
    #[arg(long, value_name = "FILE|PRESET")]
    pub data: Option<String>,

    /// Which split.
    #[arg(long, value_enum, default_value_t = SplitChoice::Val)]
    pub split: SplitChoice,

    /// Bins per latent factor.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub bins: u16,

    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,

    /// Print CSV.
    #[arg(long)]
    pub csv: bool,

    /// Also write every layer's activations for the split to this .npz.
    #[arg(long, value_name = "FILE.npz")]
    pub npz: Option<PathBuf>,

    /// Replace an existing --npz file.
    #[arg(long)]
    pub force: bool,
}

/// Output layouts of `generate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One .npz file that numpy.load reads.
    Npz,
    /// A train/CLASS/000001.png tree with factors.csv (Keras, torchvision).
    Imagefolder,
    /// Both: FILE.npz and the tree in FILE/.
    Both,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").args(["spec", "preset", "panel", "list"]).required(true)))]
pub struct GenerateArgs {
    /// A TOML dataset spec (see docs/specs.md).
    #[arg(value_name = "SPEC.toml")]
    pub spec: Option<PathBuf>,

    /// A named dataset (see --list), e.g. thesis-1.3, size, rotation, deform.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,

    /// A named image panel instead of a dataset: thesis-size or thesis-rotation.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["train", "val", "test", "seed", "format"])]
    pub panel: Option<String>,

    /// List the presets and panels and exit.
    #[arg(long)]
    pub list: bool,

    /// Where to write: a .npz file, or a directory for --format imagefolder.
    #[arg(long, short, value_name = "PATH", required_unless_present = "list")]
    pub out: Option<PathBuf>,

    /// Training images (validation defaults to half as many).
    #[arg(long, value_name = "N")]
    pub train: Option<usize>,

    /// Validation images (training defaults to twice as many).
    #[arg(long, value_name = "N")]
    pub val: Option<usize>,

    /// Held-out test images, what results are reported on (default: as many as validation;
    /// 0 for none).
    #[arg(long, value_name = "N")]
    pub test: Option<usize>,

    /// Seed of every random draw.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Image side in pixels, 8 to 256.
    #[arg(long, value_name = "PX")]
    pub image_size: Option<u32>,

    /// Output layout.
    #[arg(long, value_enum, default_value_t = Format::Npz)]
    pub format: Format,

    /// Also store each image's concept masks (interior, outline, edges by the direction they
    /// face, corners, background) as `masks_<split>` in the npz (`masks.npz` in a tree).
    #[arg(long)]
    pub masks: bool,

    /// Replace an existing output.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A dataset (.npz or ImageFolder directory) or a panel (.npz).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,

    /// Where to write the contact sheet (default: beside PATH, as NAME.contact.png, refreshed
    /// on every run).
    #[arg(long, value_name = "PNG", conflicts_with = "no_sheet")]
    pub sheet: Option<PathBuf>,

    /// Replace an existing file given to --sheet.
    #[arg(long, requires = "sheet")]
    pub force: bool,

    /// Do not write a contact sheet.
    #[arg(long)]
    pub no_sheet: bool,

    /// Examples per class on the contact sheet.
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub per_class: u16,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Images per second drawing anti-aliased figures, at 1 thread and all threads.
    Generate(BenchGenerateArgs),
    /// Training and inference images per second and peak memory of the thesis's networks.
    Train(BenchTrainArgs),
    /// Sweep throughput against the engine alone: what the store and scheduling cost.
    Sweep(BenchSweepArgs),
    /// Time to compute and write every activation sheet of a run on the 27-image panel.
    Activations(BenchActivationsArgs),
    /// Time of a full greedy pruning of a trained network.
    Prune(BenchPruneArgs),
    /// Dissect a trained 16-16 (concept masks drawn, every filter against them, the chance
    /// level from 5 initialisations, the removal check).
    Dissect(BenchPruneArgs),
    /// Align many trained runs of one architecture to a reference and read their families
    /// (the CKA matrix between all runs timed apart).
    Families(BenchFamiliesArgs),
    /// Switch a trained 16-16's filters off and on one at a time, as `serve` does, the
    /// network evaluated after each toggle (target: under 50 ms on 1,000 images).
    Toggle(BenchPruneArgs),
}

#[derive(Debug, Args)]
pub struct BenchFamiliesArgs {
    /// Architecture of the runs.
    #[arg(long, value_name = "A", default_value = "16-16")]
    pub arch: String,

    /// Runs trained (not timed) and aligned.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub runs: u64,

    /// Training epochs of each run (not timed).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub epochs: usize,

    /// Images of the validation split (the matching) and of the test split (the measure).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub images: usize,

    /// Timed repetitions (the best is reported).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeats: usize,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchPruneArgs {
    /// Architecture of the run.
    #[arg(long, value_name = "A", default_value = "16-16")]
    pub arch: String,

    /// Training epochs before pruning (not timed).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub epochs: usize,

    /// Validation images measured at every candidate.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub images: usize,

    /// Timed repetitions (the best is reported).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeats: usize,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchActivationsArgs {
    /// Architecture of the run.
    #[arg(long, value_name = "A", default_value = "16-16")]
    pub arch: String,

    /// Timed repetitions (the best is reported).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub repeats: usize,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchSweepArgs {
    /// Architecture of every run.
    #[arg(long, value_name = "A", default_value = "16-4")]
    pub arch: String,

    /// Runs (seeds).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub runs: usize,

    /// Epochs per run.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub epochs: usize,

    /// Training images per run (thesis-1.3; 500 validation images).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub images: usize,

    /// Sweep into this store (postgres://... or a file) as workers claiming runs, under
    /// experiment names of their own, instead of a temporary SQLite file as one sweep.
    #[arg(long, value_name = "URL")]
    pub store: Option<lab::experiments::store::StoreUrl>,

    /// Rounds, each timing the engine and the sweeps in turn (medians are printed).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rounds: u64,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Architectures to time, comma-separated.
    #[arg(long, value_name = "A,B", value_delimiter = ',', default_values_t = ["2-4".to_string(), "16-4".into(), "16-16".into(), "32-32".into()])]
    pub arch: Vec<String>,

    /// Training images (28x28, thesis-1.3), batch 32, Adam.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub images: usize,

    /// Timed epochs per setting (the best is reported).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub epochs: usize,

    /// Images per inference batch.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub infer_batch: usize,

    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchGenerateArgs {
    /// Images per timed run.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub images: usize,

    /// Timed runs per setting (the best is reported).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeats: usize,

    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
