//! The `shapelab` binary: parse the command line, validate it into a plan, call `lab`, print,
//! and map the outcome to an exit code (0 success, 1 failure, 2 usage error).
//!
//! No computation lives here; see ARCHITECTURE.md.

mod cli;
mod compare_cmd;
mod dissect_cmd;
mod model_cmds;
mod progress;
mod sweep_cmds;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{BenchCommand, Cli, Command, Format, GenerateArgs, InspectArgs, StoreCommand};
use lab::data::inspect::Summary;
use lab::{Dataset, Loaded, PanelData};

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`shapelab ... | head`), as Unix tools do, instead of
    // panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: setting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match choose_kernels().and_then(|()| run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The one place errors become exit codes: 130 interrupted, 2 usage, 1 failure (the first
/// typed error in the chain decides; anything untyped is a failure).
/// The engine is pure and never reads the environment; its kernels' version is chosen here:
/// `TINYCNN_ISA=avx512|avx2|baseline`, or `TINYCNN_PORTABLE=1` for what an AVX2-only CPU runs.
fn choose_kernels() -> anyhow::Result<()> {
    use tinycnn::isa::{self, Isa};
    if let Some(name) = std::env::var_os("TINYCNN_ISA") {
        let name = name.to_string_lossy();
        let Some(want) = Isa::parse(&name) else {
            return Err(lab::Error::Usage(format!(
                "TINYCNN_ISA={name} is not a kernel version; use avx512, avx2 or baseline, or unset it"
            ))
            .into());
        };
        isa::choose(want).map_err(|e| lab::Error::Usage(format!("TINYCNN_ISA={name}: {e}")))?;
    } else if std::env::var_os("TINYCNN_PORTABLE").is_some() {
        tinycnn::use_portable_kernels();
    }
    Ok(())
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<lab::Error>() {
            return e.exit_code();
        }
        if cause.is::<shapes::SpecError>() {
            return 2;
        }
        if let Some(e) = cause.downcast_ref::<tinycnn::Error>() {
            return if e.is_usage() { 2 } else { 1 };
        }
        if let Some(e) = cause.downcast_ref::<server::Error>() {
            return match e {
                server::Error::Lab(e) => e.exit_code(),
                server::Error::Usage(_) => 2,
                _ => 1,
            };
        }
    }
    1
}

fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n as usize)
            .build_global()
            .context("setting up the thread pool")?;
    }
    match cli.command {
        Command::Study(args) => sweep_cmds::study(args, cli.quiet),
        Command::Report(args) => sweep_cmds::report(args),
        Command::Generate(args) => generate(args, cli.quiet),
        Command::Inspect(args) => inspect(args),
        Command::Train(args) => model_cmds::train(args, cli.quiet),
        Command::Eval(args) => model_cmds::eval(args),
        Command::Predict(args) => model_cmds::predict(args),
        Command::Sweep(args) => sweep_cmds::sweep(args, cli.quiet),
        Command::Runs(args) => sweep_cmds::runs(args),
        Command::Summary(args) => sweep_cmds::summary(args),
        Command::Stuck(args) => sweep_cmds::stuck(args, cli.quiet),
        Command::Activations(args) => model_cmds::activations(args),
        Command::Kernels(args) => model_cmds::kernels(args),
        Command::Filters(args) => model_cmds::filters(args),
        Command::Prune(args) => model_cmds::prune(args, cli.quiet),
        Command::Analyze(args) => model_cmds::analyze(args),
        Command::Dissect(args) => dissect_cmd::dissect(args, cli.quiet),
        Command::Compare(args) => compare_cmd::compare(args, cli.quiet),
        Command::Families(args) => compare_cmd::families(args, cli.quiet),
        Command::Serve(args) => serve(args),
        Command::Store(StoreCommand::Copy(args)) => store_copy(args),
        Command::Bench(BenchCommand::Generate(args)) => bench_generate(args),
        Command::Bench(BenchCommand::Train(args)) => bench_train(args),
        Command::Bench(BenchCommand::Sweep(args)) => bench_sweep(args),
        Command::Bench(BenchCommand::Prune(args)) => {
            let r = lab::bench::prune_speed(&args.arch, args.epochs, args.images, args.repeats)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "greedy pruning of a trained {} (accuracy {:.4}) on {} validation images: {} steps, {} evaluations in {:.3} s ({} threads; {} near-tie images re-checked exactly)",
                    r.arch, r.initial_accuracy, r.images, r.steps, r.evaluations, r.seconds, r.threads, r.rechecked_images
                );
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Families(args)) => {
            let r = lab::bench::families_speed(
                &args.arch,
                args.runs as usize,
                args.epochs,
                args.images,
                args.repeats,
            )?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "families of {} trained {} runs ({} validation images to match, {} test images to measure, {} initialisations as the null): {:.3} s; with the CKA matrix between all runs on {} images: {:.3} s ({} threads)",
                    r.runs, r.arch, r.images, r.images, r.null_seeds, r.align_seconds, r.cka_images, r.with_cka_seconds, r.threads
                );
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Dissect(args)) => {
            let r = lab::bench::dissect_speed(&args.arch, args.epochs, args.images, args.repeats)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "dissection of a trained {} on {} validation images ({} filters labelled of {}; chance level from {} initialisations): {:.3} s, masks included ({} threads)",
                    r.arch, r.images, r.labelled.0, r.labelled.1, r.null_seeds, r.seconds, r.threads
                );
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Toggle(args)) => {
            let r = lab::bench::toggle_speed(&args.arch, args.epochs, args.images, args.repeats)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} toggles of a trained {}'s filters, the network evaluated on {} validation images after each: median {:.1} ms, slowest {:.1} ms ({} threads)",
                    r.toggles, r.arch, r.images, r.median_ms, r.max_ms, r.threads
                );
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Activations(args)) => {
            let r = lab::bench::sheets_speed(&args.arch, args.repeats)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "activation sheets of a trained {} run on the {} panel ({} images): {} sheets computed, drawn and written in {:.3} s ({} threads)",
                    r.arch, r.panel, r.images, r.sheets, r.seconds, r.threads
                );
            }
            Ok(())
        }
    }
}

/// The machine's cores: the default for `--jobs` and the thread counts benchmarks compare.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A usage error (exit code 2).
pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    lab::Error::Usage(msg.into()).into()
}

/// Names, on one stderr line, the files an ImageFolder read skipped.
pub(crate) fn warn_skipped(d: &Dataset, source: &str) {
    if let Some(note) = d.skipped_note(source) {
        eprintln!("warning: {note}");
    }
}

fn list_sources() {
    println!("presets (shapelab generate --preset NAME --out FILE.npz):");
    for p in shapes::presets::PRESETS {
        let aliases = if p.aliases.is_empty() {
            String::new()
        } else {
            format!(" (alias: {})", p.aliases.join(", "))
        };
        println!("  {:<14} {}{aliases}", p.name, p.description);
    }
    println!("\npanels (shapelab generate --panel NAME --out FILE.npz):");
    for (name, description) in shapes::panel::PANELS {
        println!("  {name:<16} {description}");
    }
}

fn generate(args: GenerateArgs, quiet: bool) -> Result<()> {
    if args.list {
        list_sources();
        return Ok(());
    }
    let out = args.out.clone().expect("clap requires --out");
    if let Some(name) = &args.panel {
        return generate_panel(name, &args, &out);
    }
    let (mut file, origin) = match (&args.spec, &args.preset) {
        (Some(path), None) => {
            let src = std::fs::read_to_string(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => lab::Error::NotFound(path.clone()),
                _ => lab::Error::io(path, e),
            })?;
            let file = shapes::SpecFile::from_toml(&src)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
            (file, path.display().to_string())
        }
        (None, Some(name)) => {
            let preset = shapes::presets::find(name).ok_or_else(|| {
                usage(format!(
                    "unknown preset `{name}`; choose one of {} (see --list)",
                    shapes::presets::names().join(", ")
                ))
            })?;
            (preset.spec_file(), format!("preset {}", preset.name))
        }
        (Some(_), Some(_)) => return Err(usage("give either a SPEC file or --preset, not both")),
        (None, None) => unreachable!("clap requires a source"),
    };
    // `--val` alone also sets the training count, to twice it (and the test count to it).
    let train = args.train.or(args.val.map(|v| v.saturating_mul(2)));
    file.override_counts(train, args.val, args.test.or(args.val));
    if args.seed.is_some() {
        file.seed = args.seed;
    }
    if args.image_size.is_some() {
        file.image_size = args.image_size;
    }
    let spec = file
        .resolve()
        .map_err(|e| usage(format!("{origin}: {e}")))?;

    let npz_path = match args.format {
        Format::Npz | Format::Both => Some(out.clone()),
        Format::Imagefolder => None,
    };
    let tree_path = match args.format {
        Format::Npz => None,
        Format::Imagefolder => Some(out.clone()),
        Format::Both => {
            if out.extension().is_none_or(|e| e != "npz") {
                return Err(usage(format!(
                    "--format both needs --out FILE.npz (the tree goes to FILE/), got {}",
                    out.display()
                )));
            }
            Some(out.with_extension(""))
        }
    };
    // Refuse an existing or overlapping output before spending time on generation.
    let spec_input: Vec<lab::files::output::Input> = args
        .spec
        .iter()
        .map(|p| lab::files::output::Input::File(p))
        .collect();
    if let Some(p) = &npz_path {
        lab::files::output::check_disjoint(p, "--out", &spec_input)?;
        lab::files::fsio::prepare_file(p, args.force)?;
    }
    if let Some(p) = &tree_path {
        lab::files::output::check_disjoint(p, "--out", &spec_input)?;
        lab::files::fsio::prepare_dir(p, args.force)?;
    }

    let started = Instant::now();
    let pb = progress::bar(
        (spec.train + spec.val + spec.test) as u64,
        "generating [{bar:30}] {pos}/{len} images, {per_sec}, eta {eta}",
        quiet,
    );
    let dataset = Dataset::generate(&spec, file.name.clone(), &|n| pb.inc(n as u64));
    pb.finish_and_clear();
    let masks = args
        .masks
        .then(|| lab::data::masks::ConceptMasks::of_spec(&spec));
    if let Some(p) = &npz_path {
        dataset.write_npz_with(p, args.force, masks.as_ref())?;
    }
    if let Some(p) = &tree_path {
        lab::data::imagefolder::write(&dataset, p, args.force)?;
        if let Some(m) = &masks {
            lab::data::masks::write_npz(m, &p.join("masks.npz"))?;
        }
    }
    let meta = dataset
        .meta
        .as_ref()
        .expect("generated datasets carry metadata");
    let written: Vec<String> = npz_path
        .iter()
        .map(|p| p.display().to_string())
        .chain(tree_path.iter().map(|p| format!("{}/", p.display())))
        .collect();
    println!(
        "wrote {}: {} train + {} val + {} test images{}, {}x{} px, {}, hash {} ({:.2} s)",
        written.join(" and "),
        spec.train,
        spec.val,
        spec.test,
        if masks.is_some() {
            " with concept masks"
        } else {
            ""
        },
        spec.image_size,
        spec.image_size,
        meta.name.as_deref().unwrap_or(&origin),
        meta.short_hash(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn generate_panel(name: &str, args: &GenerateArgs, out: &Path) -> Result<()> {
    if args.spec.is_some() || args.preset.is_some() {
        return Err(usage("give --panel alone, without a SPEC file or --preset"));
    }
    let panel = shapes::panel::find(name).ok_or_else(|| {
        let names: Vec<&str> = shapes::panel::PANELS.iter().map(|p| p.0).collect();
        usage(format!(
            "unknown panel `{name}`; choose one of {}",
            names.join(", ")
        ))
    })?;
    let side = args.image_size.unwrap_or(28);
    let (lo, hi) = shapes::spec::IMAGE_SIZE_RANGE;
    if !(lo..=hi).contains(&side) {
        return Err(lab::Error::Spec(shapes::SpecError::ImageSize(side)).into());
    }
    let data = PanelData::from_panel(&panel, side);
    let masks = args
        .masks
        .then(|| lab::data::masks::ConceptMasks::of_panel(&panel, side));
    data.write_npz_with(out, args.force, masks.as_ref())?;
    println!(
        "wrote {}: panel {}, {} images{}, {side}x{side} px",
        out.display(),
        panel.name,
        data.len(),
        if masks.is_some() {
            " with concept masks"
        } else {
            ""
        }
    );
    Ok(())
}

/// `data/size.npz` -> `data/size.contact.png`; `data/tree/` -> `data/tree.contact.png`.
fn default_sheet_path(path: &Path) -> PathBuf {
    let stem = if path.is_dir() {
        path.file_name()
            .map(|s| s.to_os_string())
            .unwrap_or_else(|| "dataset".into())
    } else {
        path.file_stem()
            .map(|s| s.to_os_string())
            .unwrap_or_else(|| "dataset".into())
    };
    let mut name = stem;
    name.push(".contact.png");
    path.parent().unwrap_or(Path::new("")).join(name)
}

fn inspect(args: InspectArgs) -> Result<()> {
    let loaded = lab::load(&args.path)?;
    let sheet_path = if args.no_sheet {
        None
    } else {
        Some(
            args.sheet
                .clone()
                .unwrap_or_else(|| default_sheet_path(&args.path)),
        )
    };
    if let Some(p) = &sheet_path {
        let input: Vec<lab::files::output::Input> = lab::files::output::Input::at(&args.path)
            .into_iter()
            .collect();
        lab::files::output::check_disjoint(p, "--sheet", &input)?;
        // The default sheet is derived data, refreshed; a file the user named needs --force.
        lab::files::fsio::prepare_file(p, args.force || args.sheet.is_none())?;
    }
    let shown = args.path.display().to_string();
    let title = args
        .path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.clone());
    let summary = match &loaded {
        Loaded::Dataset(d) => {
            warn_skipped(d, &shown);
            if let Some(p) = &sheet_path {
                lab::data::contact::dataset_sheet(d, &title, args.per_class as usize)
                    .save_png(p)?;
            }
            Summary::of_dataset(
                d,
                &shown,
                sheet_path.as_ref().map(|p| p.display().to_string()),
            )
        }
        Loaded::Panel(p) => {
            if let Some(s) = &sheet_path {
                lab::data::contact::panel_sheet(p, &title).save_png(s)?;
            }
            Summary::of_panel(
                p,
                &shown,
                sheet_path.as_ref().map(|p| p.display().to_string()),
            )
        }
    };
    let masks_sheet = match &sheet_path {
        Some(p) => masks_sheet(&args.path, &loaded, p, &title)?,
        None => None,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.to_text());
        if let Some(m) = masks_sheet {
            println!("  concept masks: {}", m.display());
        }
    }
    Ok(())
}

/// Draws the sheet of concept masks beside the contact sheet (`NAME.masks.png`) when the file
/// holds masks; returns its path.
fn masks_sheet(path: &Path, loaded: &Loaded, sheet: &Path, title: &str) -> Result<Option<PathBuf>> {
    let (parts, side, images): (Vec<(&str, usize)>, _, &[u8]) = match loaded {
        Loaded::Dataset(d) => (d.part_sizes(), (d.height, d.width), &d.train.images),
        Loaded::Panel(p) => (vec![("panel", p.len())], (p.height, p.width), &p.images),
    };
    let Some(m) = lab::data::masks::ConceptMasks::of_file(path, &parts, side)? else {
        return Ok(None);
    };
    let out = sheet.with_file_name(
        sheet
            .file_name()
            .map(|n| n.to_string_lossy().replace(".contact.png", ".masks.png"))
            .unwrap_or_else(|| "masks.png".into()),
    );
    let out = if out == sheet {
        sheet.with_extension("masks.png")
    } else {
        out
    };
    m.sheet(
        parts[0].0,
        images,
        8,
        &format!("{title}: concept masks of the first {} images", parts[0].0),
    )
    .save_png(&out)?;
    Ok(Some(out))
}

fn bench_generate(args: cli::BenchGenerateArgs) -> Result<()> {
    if args.images == 0 {
        return Err(usage("--images 0: time at least one image"));
    }
    let cores = cores();
    let mut threads = vec![1];
    if cores > 1 {
        threads.push(cores);
    }
    let mut spec_file = shapes::presets::find("size-rotation")
        .expect("preset exists")
        .spec_file();
    (spec_file.train, spec_file.val) = (Some(args.images), Some(1));
    let spec = spec_file.resolve()?;
    let rates: Vec<lab::bench::Throughput> = threads
        .iter()
        .map(|&t| lab::bench::generation(&spec, t, args.repeats))
        .collect();
    let thesis = shapes::presets::find("thesis-1.3")
        .expect("preset exists")
        .spec()?;
    let end_to_end = lab::bench::generate_and_write(&thesis, cores)?;
    let mut dsprites = shapes::presets::find("size-rotation")
        .expect("preset exists")
        .spec_file();
    (dsprites.train, dsprites.val) = (Some(737_280), Some(1));
    let dsprites = lab::bench::generation(&dsprites.resolve()?, cores, 1);
    if args.json {
        let json = serde_json::json!({
            "benchmark": "generate",
            "image_size": 28,
            "preset": "size-rotation",
            "throughput": rates,
            "thesis_1_3_end_to_end": end_to_end,
            "dsprites_sized": dsprites,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("generation: 28x28 anti-aliased figures, size 0.3-0.9 and any rotation (preset size-rotation)");
    println!(
        "  {:>7}  {:>9}  {:>9}  {:>12}",
        "threads", "images", "seconds", "images/s"
    );
    for r in &rates {
        println!(
            "  {:>7}  {:>9}  {:>9.3}  {:>12.0}",
            r.threads, r.images, r.seconds, r.images_per_second
        );
    }
    println!(
        "thesis-1.3 ({} images) at {} threads: generate {:.3} s, write .npz {:.3} s ({:.1} MB)",
        end_to_end.images,
        end_to_end.threads,
        end_to_end.generate_seconds,
        end_to_end.write_seconds,
        end_to_end.file_bytes as f64 / 1e6
    );
    println!(
        "dSprites-sized set ({} images) at {} threads: generate {:.2} s ({:.0} images/s)",
        dsprites.images, dsprites.threads, dsprites.seconds, dsprites.images_per_second
    );
    Ok(())
}

fn bench_train(args: cli::BenchTrainArgs) -> Result<()> {
    if args.images == 0 || args.epochs == 0 || args.infer_batch == 0 {
        return Err(usage(
            "--images, --epochs and --infer-batch must be at least 1",
        ));
    }
    let cores = cores();
    let mut threads = vec![1];
    if cores > 1 {
        threads.push(cores);
    }
    let data = lab::bench::bench_data(args.images)?;
    let mut configs = Vec::new();
    let mut parallel = Vec::new();
    if !args.json {
        println!(
            "training: {} thesis-1.3 images (28x28), batch 32, Adam; inference at batch {}",
            args.images, args.infer_batch
        );
        println!(
            "kernels: {} (this CPU runs {}; TINYCNN_ISA chooses)",
            tinycnn::isa::isa().name(),
            tinycnn::isa::Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The fp32 multiply-add peak at each thread count, measured first on an idle machine.
    let peaks: Vec<(usize, f64)> = threads
        .iter()
        .map(|&t| (t, lab::bench::fma_peak_gflops(t)))
        .collect();
    let peak = |t: usize| peaks.iter().find(|p| p.0 == t).map_or(f64::NAN, |p| p.1);
    if !args.json {
        for (t, p) in &peaks {
            println!("fp32 multiply-add peak at {t} thread(s), measured: {p:.0} GFLOP/s");
        }
        println!(
            "GFLOP/s: the dense products' work per image x images/s (an effective rate: pooled \
             layers' weight gradients skip dz's zeros)"
        );
        println!(
            "  {:>6}  {:>7}  {:>12}  {:>14}  {:>12}",
            "arch", "threads", "train img/s", "GFLOP/s (peak)", "infer img/s"
        );
    }
    for arch in &args.arch {
        for &t in &threads {
            let r = lab::bench::train_speed(arch, &data, t, args.epochs, args.infer_batch)?;
            if !args.json {
                println!(
                    "  {:>6}  {:>7}  {:>12.0}  {:>14}  {:>12.0}",
                    r.arch,
                    r.threads,
                    r.train_images_per_s,
                    format!(
                        "{:.1} ({:.0}%)",
                        r.train_gflops,
                        100.0 * r.train_gflops / peak(t)
                    ),
                    r.infer_images_per_s
                );
            }
            configs.push(r);
        }
        if cores > 1 {
            let rate = lab::bench::parallel_runs(arch, &data, cores, args.epochs)?;
            let flops =
                tinycnn::Arch::parse(arch, data.height, data.width, data.class_names.len())?
                    .train_flops_per_image();
            let gflops = rate * flops / 1e9;
            if !args.json {
                println!(
                    "  {:>6}  {:>7}  {:>12.0}  {:>14}  {:>12}",
                    arch,
                    format!("{cores}x1"),
                    rate,
                    format!("{gflops:.1} ({:.0}%)", 100.0 * gflops / peak(cores)),
                    "-"
                );
            }
            parallel.push(serde_json::json!({"arch": arch, "runs": cores, "threads_each": 1, "train_images_per_s": rate, "train_gflops": gflops}));
        }
    }
    let rss = lab::bench::peak_rss_mb();
    if args.json {
        let json = serde_json::json!({
            "benchmark": "train",
            "images": args.images,
            "batch": 32,
            "kernels": tinycnn::isa::isa().name(),
            "fma_peak_gflops": peaks.iter().map(|(t, p)| serde_json::json!({"threads": t, "gflops": p})).collect::<Vec<_>>(),
            "configs": configs,
            "parallel_runs": parallel,
            "peak_rss_mb": rss,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("  ({cores}x1 = {cores} independent runs at 1 thread each, as a sweep runs them)");
        if let Some(mb) = rss {
            println!("peak RSS of this process: {mb:.1} MB");
        }
    }
    Ok(())
}

/// Fractions as percentages with `decimals` places, comma-separated.
fn percents(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{:.*}%", decimals, 100.0 * x))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bench_sweep(args: cli::BenchSweepArgs) -> Result<()> {
    if args.runs == 0 || args.epochs == 0 || args.images == 0 {
        return Err(usage("--runs, --epochs and --images must be at least 1"));
    }
    let cores = cores();
    let r = lab::bench::sweep_speed(
        &args.arch,
        (args.runs, args.epochs, args.images),
        (cores, args.rounds as usize),
        args.store.as_ref(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "sweep of {} runs of {} x {} epochs on {} thesis-1.3 images (500 validation) into {}{}, image-epochs/s, median of {} rounds:",
        r.runs,
        r.arch,
        r.epochs,
        r.train_images,
        r.store,
        if r.worker { " as workers" } else { "" },
        r.rounds
    );
    println!(
        "  engine alone, 1 thread, no store   {:>10.0}",
        r.engine_image_epochs_per_s
    );
    println!(
        "  sweep, 1 job                       {:>10.0}  (store and scheduling overhead {:.1}%; rounds {})",
        r.sweep_1_job_image_epochs_per_s,
        100.0 * r.overhead,
        percents(&r.overheads, 1)
    );
    println!(
        "  sweep, {} jobs                      {:>10.0}  ({:.2}x one job)",
        r.jobs, r.sweep_image_epochs_per_s, r.scaling
    );
    println!(
        "  in the store's statements: {:.2} ms per run, {:.2}% of the one-job sweep (rounds {})",
        r.store_ms_per_run,
        100.0 * r.store_share,
        percents(&r.store_shares, 2)
    );
    Ok(())
}

/// `serve`: the store behind `path` in the browser, until Ctrl-C.
/// `store copy SRC DST`: copies, verifies, prints what moved.
fn store_copy(args: cli::StoreCopyArgs) -> Result<()> {
    let report = lab::experiments::store::copy(&args.src, &args.dst)?;
    for (table, rows, added) in &report.tables {
        println!("{table:<14} {rows:>8} rows, {added:>8} added");
    }
    println!(
        "copied {} into {}: every row reads back the same (sha256 {})",
        args.src, args.dst, report.sha256
    );
    if let Some(p) = args.src.as_path() {
        let root = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        println!(
            "model directories stay under {}: read the copy with --artifacts {}",
            root.display(),
            root.display()
        );
    }
    Ok(())
}

fn serve(args: cli::ServeArgs) -> Result<()> {
    let source = server::Source::resolve_arg(&args.path, args.artifacts.artifacts.as_deref())?;
    let state = server::State::open(&source)?;
    if !args.host.is_loopback() {
        eprintln!(
            "warning: listening on {}: other machines can reach this server; use --host 127.0.0.1 to keep it local",
            args.host
        );
    }
    server::serve(
        state,
        std::net::SocketAddr::new(args.host, args.port),
        |addr| {
            println!("serving {} at http://{addr}/ (Ctrl-C stops)", source.name());
        },
    )?;
    Ok(())
}
