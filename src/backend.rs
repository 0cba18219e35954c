//! Choosing where tensors live — once, at the edge (the CLI), from `runtime.backend`.
//!
//! - `cpu`: burn's `flex` backend (pure Rust, multi-threaded).
//! - `wgpu`: burn's wgpu backend on the adapter wgpu picks; an error if none initializes.
//! - `auto`: wgpu only on a hardware GPU adapter over Vulkan, Metal or DX12, else `cpu`. wgpu is
//!   probed in a child process with a time limit first: on a machine with Mesa's OpenGL but no
//!   Vulkan driver it picks llvmpipe (a software rasterizer, very slow) and can deadlock, so a
//!   probe that hangs, fails, or finds a CPU or GL adapter selects the CPU backend.
//!
//! On wgpu, burn's fusion compiles a kernel for each new chain of operations and autotune times
//! the candidates of each matmul and reduction shape. cubecl keeps both in one database file;
//! [`kernel_cache`] puts it where the user can see it (under the run store), so a second run on
//! the same device neither compiles nor tunes again.

use crate::recipe::BackendChoice;
use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden command line that runs the probe in a child process.
pub const PROBE_COMMAND: &str = "__probe-wgpu";
/// [`Compute::backend`] of the wgpu backend.
pub const WGPU: &str = "wgpu";
const PROBE_TIMEOUT: Duration = Duration::from_secs(45);

/// What a wgpu adapter says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    pub name: String,
    /// Graphics API: Vulkan, Metal, Dx12, Gl, BrowserWebGpu.
    pub api: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu, Other.
    pub device_type: String,
    pub driver: String,
}

impl AdapterInfo {
    /// A real GPU over an API that burn's wgpu kernels run well on.
    pub fn is_hardware(&self) -> bool {
        matches!(
            self.device_type.as_str(),
            "DiscreteGpu" | "IntegratedGpu" | "VirtualGpu"
        ) && matches!(self.api.as_str(), "Vulkan" | "Metal" | "Dx12")
    }
}

/// The chosen device and how to name it in reports.
#[derive(Debug, Clone)]
pub struct Compute {
    /// Plain (non-autodiff) device; training wraps it with `autodiff()`.
    pub device: Device,
    /// `wgpu` or `cpu (flex)`.
    pub backend: String,
    /// The adapter (GPU) or processor (CPU) the backend runs on.
    pub adapter: String,
    /// Why `auto` chose what it chose.
    pub reason: String,
    pub is_gpu: bool,
}

impl Compute {
    /// On wgpu, say on stderr where compiled kernels and autotune results are kept.
    pub fn say_kernel_cache(&self, dir: Option<&Path>) {
        if self.backend == WGPU {
            match dir {
                Some(dir) => eprintln!("wgpu kernel and autotune cache: {}", dir.display()),
                None => eprintln!("wgpu kernel and autotune cache: as cubecl.toml says"),
            }
        }
    }
}

/// How `auto` may look for a GPU.
#[derive(Debug, Clone)]
pub enum Probe {
    /// Run `exe __probe-wgpu` with a time limit (the CLI passes its own executable).
    ChildProcess(PathBuf),
    /// Do not probe: `auto` means the CPU backend (library use, tests).
    Skip,
}

/// Use at most `threads` CPU threads (0: all). Must run before the first tensor operation.
pub fn limit_threads(threads: usize) {
    if threads > 0 {
        // Read once by rayon when its global pool starts, which the CPU backend uses.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

pub fn cpu() -> Compute {
    Compute {
        device: Device::flex(),
        backend: "cpu (burn flex)".into(),
        adapter: crate::runtime::machine::Machine::detect().cpu,
        reason: String::new(),
        is_gpu: false,
    }
}

/// Mesa's Vulkan device-select layer (`VK_LAYER_MESA_device_select`, installed with
/// `mesa-vulkan-drivers`, lavapipe's package) asks libwayland-client for the session's compositor
/// each time wgpu enumerates adapters. With `XDG_RUNTIME_DIR` unset (no login session: CI,
/// containers, `sudo`) libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment." on every lookup, four times per wgpu start. An unset variable means there is no
/// compositor to find; pointing it at a path that holds no socket (`/dev/null`) makes the lookup
/// fail just as it would, silently, and the layer chooses as before. A variable that is set is
/// left alone.
fn quiet_wayland_lookup() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", "/dev/null");
    }
}

/// The kernel cache's folder inside a run store.
pub const KERNEL_CACHE_DIR: &str = "cubecl";

/// cubecl's configuration files, looked for in the working directory and every folder above it
/// (`cubecl.toml`; the `[cubecl]` table of `burn.toml`).
const CUBECL_CONFIG_FILES: [&str; 4] = ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"];

/// Where wgpu's compiled kernels and autotune results are kept, set before the first wgpu device
/// starts: `<dir>/<environment>.db` (cubecl's file; its environment name is `default` unless
/// `CUBECL_ENVIRONMENT` names another). A cubecl configuration file above the working directory
/// (`cubecl.toml`, or `burn.toml`'s `[cubecl]` table) takes precedence: its `[environment] path`
/// is used as written. cubecl's variables (`CUBECL_AUTOTUNE_LEVEL`, `CUBECL_AUTOTUNE_CACHE`,
/// `CUBECL_ENVIRONMENT`, ...) apply either way. Returns the folder in use, or `None` when a
/// configuration file decides it.
///
/// Without this, cubecl keeps the database in `target/environment/` of the outermost Cargo
/// project above the working directory — inside kdrun's own build folder when run from its
/// checkout, in the user's cache folder elsewhere — where nobody would look for it.
pub fn kernel_cache(dir: &Path) -> Option<PathBuf> {
    use burn::cubecl::config::{cache::CacheConfig, CubeClRuntimeConfig, RuntimeConfig};
    let configured = std::env::current_dir().ok().is_some_and(|cwd| {
        cwd.ancestors()
            .any(|d| CUBECL_CONFIG_FILES.iter().any(|f| d.join(f).is_file()))
    });
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    let dir = if configured {
        None
    } else {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        config.environment.path = CacheConfig::Directory(dir.clone());
        Some(dir)
    };
    // Only the first configuration counts; a second call in one process changes nothing.
    if CubeClRuntimeConfig::try_set(config) {
        dir
    } else {
        None
    }
}

fn wgpu_in_process() -> Result<Compute> {
    quiet_wayland_lookup();
    let (device, setup) = Device::wgpu_options()
        .init_with_setup()
        .map_err(|e| anyhow!("no wgpu adapter could be initialized: {e}"))?;
    let info = adapter_info(&setup.adapter.get_info());
    Ok(Compute {
        device,
        backend: WGPU.into(),
        adapter: format!("{} ({}, {})", info.name, info.api, info.device_type),
        reason: String::new(),
        is_gpu: info.is_hardware(),
    })
}

fn adapter_info(info: &burn::tensor::wgpu::wgpu::AdapterInfo) -> AdapterInfo {
    AdapterInfo {
        name: info.name.clone(),
        api: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
    }
}

/// The body of `kdrun __probe-wgpu`: print the adapter wgpu selects as one JSON line.
pub fn probe_main() -> Result<()> {
    quiet_wayland_lookup();
    let (_, setup) = Device::wgpu_options()
        .init_with_setup()
        .map_err(|e| anyhow!("{e}"))?;
    println!(
        "{}",
        serde_json::to_string(&adapter_info(&setup.adapter.get_info()))?
    );
    Ok(())
}

/// Run the probe in a child process; `Err` says why no adapter was found.
pub fn probe_child(exe: &PathBuf) -> Result<AdapterInfo> {
    let mut child = Command::new(exe)
        .arg(PROBE_COMMAND)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > PROBE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the wgpu probe did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "no wgpu adapter: {}",
            err.lines().last().unwrap_or("probe failed").trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("unreadable probe answer {line:?}"))
}

/// Resolve `runtime.backend` to a device.
pub fn select(choice: BackendChoice, probe: &Probe) -> Result<Compute> {
    match choice {
        BackendChoice::Cpu => Ok(cpu()),
        BackendChoice::Wgpu => {
            let c = wgpu_in_process()?;
            if !c.is_gpu {
                eprintln!(
                    "warning: runtime.backend = \"wgpu\" runs on {}, which is not a hardware GPU; \
                     expect it to be slow (runtime.backend = \"cpu\" is faster there)",
                    c.adapter
                );
            }
            Ok(c)
        }
        BackendChoice::Auto => {
            let exe = match probe {
                Probe::ChildProcess(exe) => exe,
                Probe::Skip => {
                    let mut c = cpu();
                    c.reason = "auto: GPU probe skipped".into();
                    return Ok(c);
                }
            };
            match probe_child(exe) {
                Ok(info) if info.is_hardware() => {
                    let mut c = wgpu_in_process()?;
                    c.reason = format!("auto: hardware GPU adapter {}", info.name);
                    Ok(c)
                }
                Ok(info) => {
                    let mut c = cpu();
                    c.reason = format!(
                        "auto: wgpu offered only {} ({}, {}), not a hardware GPU",
                        info.name, info.api, info.device_type
                    );
                    Ok(c)
                }
                Err(e) => {
                    let mut c = cpu();
                    c.reason = format!("auto: {e}");
                    Ok(c)
                }
            }
        }
    }
}

/// What to change after a GPU fault, from the message wgpu or cubecl (burn 0.22's) gave it — a
/// panic's or an error's — or `None` for any other message. The strings are theirs: wgpu's
/// uncaptured-error handler panics with "wgpu error: Out of Memory" (wgpu's `Error` display)
/// and wgpu-core says "Not enough memory left."; cubecl's allocators say "out of device memory
/// allocating N bytes" and its launches "An out-of-memory error happened during launch". A
/// lost adapter poisons cubecl's device ("The device is poisoned", "The device was poisoned
/// during launch", from the device-lost callback) or wgpu-core's ("Parent device is lost").
pub fn gpu_fault(message: &str) -> Option<&'static str> {
    const OUT_OF_MEMORY: &[&str] = &[
        "Out of Memory",
        "Not enough memory left",
        "out of device memory",
        "An out-of-memory error happened",
    ];
    const LOST: &[&str] = &[
        "The device is poisoned",
        "The device was poisoned",
        "Parent device is lost",
    ];
    if OUT_OF_MEMORY.iter().any(|m| message.contains(m)) {
        Some(
            "the GPU ran out of memory: lower teacher.batch_size and student.batch_size (or \
             data.max_len), or run on the CPU with --backend cpu",
        )
    } else if LOST.iter().any(|m| message.contains(m)) {
        Some(
            "the GPU adapter was lost (a driver reset or time-out, or the GPU went away): run \
             again (finished stages are kept in the store), or run on the CPU with --backend cpu",
        )
    } else {
        None
    }
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("")
}

/// A GPU fault's message for a person: what to change, then the first line wgpu or cubecl
/// wrote (their messages go on with backtraces).
pub fn gpu_fault_message(hint: &str, said: &str) -> String {
    let first = said.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    format!(
        "{hint} (wgpu said: {})",
        crate::recipe::shown_up_to(first.trim(), 200)
    )
}

/// Make a GPU fault that wgpu or cubecl raise as a panic (burn's tensor operations cannot
/// return one), on any thread, end the process with exit code 1 and [`gpu_fault`]'s advice
/// instead of a panic's message. The store stays whole: a stage is written to a temporary
/// folder and renamed when finished, and a dead process's temporary folders are removed by the
/// next run. Other panics are printed as before.
pub fn install_gpu_fault_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = panic_text(info.payload());
        match gpu_fault(text) {
            Some(hint) => {
                eprintln!("error: {}", gpu_fault_message(hint, text));
                std::process::exit(1);
            }
            None => previous(info),
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_faults_say_what_to_change() {
        // The messages as wgpu 30 / wgpu-core 30 / cubecl 0.11 (burn 0.22) write them.
        for oom in [
            "wgpu error: Out of Memory",
            "Validation Error\n\nCaused by:\n  In Device::create_buffer\n    Not enough memory left.",
            "out of device memory allocating 1073741824 bytes\nBacktrace:\n...",
            "An out-of-memory error happened during launch\nCaused by:\n  out of device memory",
        ] {
            let hint = gpu_fault(oom).unwrap_or_else(|| panic!("{oom}"));
            assert!(hint.contains("ran out of memory") && hint.contains("batch_size"));
            assert!(hint.contains("data.max_len") && hint.contains("--backend cpu"));
        }
        for lost in [
            "The device is poisoned\nCaused by:\n  Unknown: Device lost\nBacktrace:\n",
            "The device was poisoned during launch\nCaused by:\n  Unknown: VK_ERROR_DEVICE_LOST",
            "The device is poisoned: Unknown: the adapter is gone",
            "Parent device is lost",
        ] {
            let hint = gpu_fault(lost).unwrap_or_else(|| panic!("{lost}"));
            assert!(hint.contains("adapter was lost") && hint.contains("--backend cpu"));
        }
        for other in [
            "index out of bounds",
            "teacher: loss is NaN",
            "out of range",
        ] {
            assert_eq!(gpu_fault(other), None, "{other}");
        }
        let said = "\n  wgpu error: Out of Memory\nBacktrace:\n 0: x";
        let m = gpu_fault_message(gpu_fault(said).unwrap(), said);
        assert!(
            m.ends_with("(wgpu said: wgpu error: Out of Memory)") && !m.contains("Backtrace"),
            "{m}"
        );
    }

    #[test]
    fn only_hardware_adapters_count() {
        let mut a = AdapterInfo {
            name: "NVIDIA H100".into(),
            api: "Vulkan".into(),
            device_type: "DiscreteGpu".into(),
            driver: String::new(),
        };
        assert!(a.is_hardware());
        a.api = "Gl".into();
        assert!(!a.is_hardware());
        a.api = "Vulkan".into();
        a.device_type = "Cpu".into();
        assert!(
            !a.is_hardware(),
            "llvmpipe/lavapipe report a Cpu device type"
        );
    }
}
