//! The subcommands beside running a recipe: `forward`, `bench`, `predict`, `schema`, `fetch`,
//! `export`, `report` (re-render) and `publish`.

use super::args::{
    BenchArgs, ExportArgs, FetchArgs, FetchModel, ForwardArgs, PredictArgs, PublishArgs,
    SchemaArgs, StoreArgs,
};
use super::{exit, failure};
use crate::backend::{self, Probe};
use crate::recipe;
use std::path::PathBuf;
use std::process::ExitCode;

pub(super) fn forward(args: &ForwardArgs) -> ExitCode {
    let device = burn::tensor::Device::flex();
    let result = crate::models::forward::forward_folder(&args.checkpoint, &args.input, &device)
        .and_then(|json| match &args.output {
            Some(path) => crate::store::write_atomic(path, json.as_bytes()).map(|_| ()),
            None => {
                println!("{json}");
                Ok(())
            }
        });
    exit(result)
}

pub(super) fn bench(args: &BenchArgs) -> ExitCode {
    backend::limit_threads(args.threads);
    let probe = match std::env::current_exe() {
        Ok(exe) => Probe::ChildProcess(exe),
        Err(_) => Probe::Skip,
    };
    let cache = backend::kernel_cache(&args.kernel_cache);
    let compute = match backend::select(args.backend.choice(), &probe) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --backend: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    compute.say_kernel_cache(cache.as_deref());
    if !compute.reason.is_empty() {
        eprintln!("backend: {} ({})", compute.backend, compute.reason);
    }
    let options = crate::bench::BenchOptions {
        quick: args.quick,
        only: args.only.clone(),
    };
    let result = crate::bench::run(&compute, &options).and_then(|report| {
        print!("{}", crate::bench::table(&report));
        if let Some(path) = &args.out {
            let json = serde_json::to_string_pretty(&report)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            crate::files::write_atomic(path, json.as_bytes())?;
            println!("results: {}", path.display());
        }
        Ok(())
    });
    exit(result)
}

pub(super) fn predict(args: &PredictArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let run = crate::deploy::Run::open(&crate::deploy::resolve(&args.run)?)?;
        let compute = backend::select(args.backend.choice(), &Probe::Skip)?;
        let dash = |p: &PathBuf| (p.as_os_str() != "-").then(|| p.clone());
        let options = crate::deploy::PredictOptions {
            model: args.model,
            input: dash(&args.input),
            input_format: args.format,
            output: dash(&args.output),
            top_k: args.top_k,
            batch_size: args.batch_size,
        };
        let s = crate::deploy::predict(&run, &options, &compute.device)?;
        eprintln!(
            "kdrun: {} sentence(s) classified by the {} model of {} in {:.2} s ({:.0} sentences/s, reading and tokenization included)",
            s.sentences,
            args.model.name(),
            run.dir.display(),
            s.seconds,
            s.sentences as f64 / s.seconds.max(1e-9)
        );
        Ok(())
    })();
    exit(result)
}

pub(super) fn schema(args: &SchemaArgs) -> ExitCode {
    if args.markdown {
        print!("{}", recipe::schema::reference_markdown());
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&recipe::schema::schema()).unwrap_or_default()
        );
    }
    ExitCode::SUCCESS
}

pub(super) fn fetch(args: &FetchArgs) -> ExitCode {
    use crate::deploy::fetch;
    let FetchModel::E5Small = args.model;
    let options = fetch::FetchOptions {
        out: args.dir.clone().unwrap_or_else(fetch::default_dir),
        wheels: args.wheels.clone(),
        unpinned: args.unpinned,
    };
    match fetch::fetch_e5(&options) {
        Ok((dir, built)) => {
            if !built {
                eprintln!("kdrun: {} is already there, whole", dir.display());
            }
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => failure(&e),
    }
}

pub(super) fn export(args: &ExportArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let run = crate::deploy::Run::open(&crate::deploy::resolve(&args.run)?)?;
        let compute = backend::select(recipe::BackendChoice::Cpu, &Probe::Skip)?;
        let dir = crate::deploy::export(&run, args.model, args.format, &args.out, &compute.device)?;
        println!("{}", dir.display());
        Ok(())
    })();
    exit(result)
}

pub(super) fn rerender(args: &StoreArgs) -> ExitCode {
    match crate::report::site::rerender(&args.store) {
        Ok(dirs) => {
            for d in &dirs {
                println!("{}", d.join("index.html").display());
            }
            eprintln!(
                "re-rendered {} report folder(s) from {}",
                dirs.len(),
                args.store.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn publish(args: &PublishArgs) -> ExitCode {
    match crate::report::site::publish(&args.store, &args.out) {
        Ok(p) => {
            println!(
                "site: {} ({} run(s), {} sweep(s){})",
                p.index.display(),
                p.runs,
                p.sweeps,
                if p.unfinished + p.unreadable > 0 {
                    format!(
                        ", {} unfinished and {} unreadable run folder(s) left out",
                        p.unfinished, p.unreadable
                    )
                } else {
                    String::new()
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
