//! Report pages as a user publishes them: `kdrun publish` writes a site whose links all resolve
//! and in which dataset and recipe text stays text; `kdrun report` re-renders pages from the
//! store; a recipe's template folder replaces kdrun's templates; and a real browser (headless
//! Chromium, when present: CI installs it) renders the index and a run page.
//!
//! One tiny run and one tiny two-trial sweep (on a CSV dataset whose sentences and class names
//! hold HTML) are shared by the tests of this file.

mod common;
use common::kdrun;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const SCRIPT: &str = "<script>alert(1)</script>";
/// As the `md` filter writes it.
const SCRIPT_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";
/// As minijinja's HTML escaping writes it.
const SCRIPT_ESCAPED_HTML: &str = "&lt;script&gt;alert(1)&lt;&#x2f;script&gt;";

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Fixture {
    root: PathBuf,
    store: PathBuf,
    reports: PathBuf,
    site: PathBuf,
}

/// Two classes told apart by their characters; the first test sentences hold a script tag and
/// carry the other class's characters, so the models get them wrong and the error analysis
/// shows them.
fn write_dataset(dir: &Path) {
    let car = "汽车发动机轮胎刹车油耗底盘";
    let sport = "比赛球队进球冠军联赛教练";
    let pick = |set: &str, i: usize, n: usize| -> String {
        let chars: Vec<char> = set.chars().collect();
        (0..n)
            .map(|k| chars[(i * 7 + k * 3) % chars.len()])
            .collect()
    };
    let mut train = String::from("text,label\n");
    for i in 0..60 {
        train.push_str(&format!("{},car\n", pick(car, i, 8)));
        train.push_str(&format!("{},<i>sport</i>\n", pick(sport, i, 8)));
    }
    train.push_str(&format!("\"{SCRIPT}{}\",car\n", pick(car, 99, 6)));
    let mut test = String::from("text,label\n");
    test.push_str(&format!("\"{SCRIPT}{}\",car\n", pick(sport, 1, 8)));
    test.push_str(&format!(
        "\"{SCRIPT} & |{}\",<i>sport</i>\n",
        pick(car, 2, 8)
    ));
    for i in 0..20 {
        test.push_str(&format!("{},car\n", pick(car, i + 100, 8)));
        test.push_str(&format!("{},<i>sport</i>\n", pick(sport, i + 100, 8)));
    }
    std::fs::write(dir.join("train.csv"), train).unwrap();
    std::fs::write(dir.join("test.csv"), test).unwrap();
}

fn quick_on_csv(f: &Path, extra: &[&str]) -> Command {
    let mut cmd = kdrun();
    cmd.arg("recipes/quick.toml");
    let sets = [
        "data.format=csv".to_string(),
        format!("data.train={}", f.join("data/train.csv").display()),
        format!("data.test={}", f.join("data/test.csv").display()),
        "data.classes=[]".to_string(),
        "data.max_per_class=0".to_string(),
        format!("runtime.store={}", f.join("runs").display()),
        format!("report.dir={}", f.join("reports").display()),
        format!("report.title=\"{SCRIPT} site test\""),
    ];
    for s in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
        cmd.args(["--set", s]);
    }
    cmd
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("site-test");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("data")).unwrap();
        write_dataset(&root.join("data"));
        ok(quick_on_csv(&root, &[]).output().unwrap(), "run");
        ok(
            quick_on_csv(&root, &["distill.temperature=1,2"])
                .output()
                .unwrap(),
            "sweep",
        );
        let site = root.join("site");
        ok(
            kdrun()
                .arg("publish")
                .arg(root.join("runs"))
                .arg("--out")
                .arg(&site)
                .output()
                .unwrap(),
            "publish",
        );
        Fixture {
            store: root.join("runs"),
            reports: root.join("reports"),
            site,
            root,
        }
    })
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The values of `attr="…"` in an HTML page, with the character references a browser decodes.
fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let pat = format!(" {attr}=\"");
    html.match_indices(&pat)
        .filter_map(|(i, _)| {
            let rest = &html[i + pat.len()..];
            rest.find('"').map(|end| {
                rest[..end]
                    .replace("&#x2f;", "/")
                    .replace("&#x27;", "'")
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            })
        })
        .collect()
}

/// The targets of Markdown links and images `](…)`.
fn md_targets(md: &str) -> Vec<String> {
    md.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &md[i + 2..];
            rest.find(')').map(|end| rest[..end].to_string())
        })
        .collect()
}

fn check_target(page: &Path, target: &str) -> Result<(), String> {
    let bad_start = ["http:", "https:", "//", "/", "file:", "javascript:"];
    if bad_start.iter().any(|s| target.starts_with(s)) {
        return Err(format!("{}: not a relative link: {target}", page.display()));
    }
    let path = target.split('#').next().unwrap_or_default();
    if path.is_empty() {
        return Ok(());
    }
    let resolved = page.parent().unwrap().join(path);
    if !resolved.exists() {
        return Err(format!(
            "{}: link to {target} does not resolve",
            page.display()
        ));
    }
    Ok(())
}

#[test]
fn published_links_resolve_and_text_stays_text() {
    let f = fixture();
    let site = &f.site;
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    // The index names no best test accuracy: each row shows the model chosen on validation, and
    // the sweep its setting chosen on validation.
    assert!(
        index.contains("test accuracy (valid-chosen)")
            && index.contains("setting chosen on validation")
            && !index.contains("best accuracy"),
        "{index}"
    );
    let html_pages = files(site, "html");
    let md_pages = files(site, "md");
    // Index, the run, the sweep and its two trials; each with a Markdown twin.
    assert_eq!(html_pages.len(), 5, "{html_pages:?}");
    assert_eq!(md_pages.len(), 5, "{md_pages:?}");
    let mut problems = Vec::new();
    let mut linked: BTreeSet<PathBuf> = BTreeSet::new();
    for page in &html_pages {
        let html = std::fs::read_to_string(page).unwrap();
        for t in attr_values(&html, "href")
            .into_iter()
            .chain(attr_values(&html, "src"))
        {
            match check_target(page, &t) {
                Ok(()) => {
                    if t.ends_with(".html") {
                        linked.insert(page.parent().unwrap().join(&t).canonicalize().unwrap());
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        assert!(html.contains("<table"), "{}: no table", page.display());
        assert!(
            !html.contains(SCRIPT) && !html.contains("<i>sport</i>"),
            "{}: unescaped dataset or recipe text",
            page.display()
        );
    }
    for page in &md_pages {
        let md = std::fs::read_to_string(page).unwrap();
        for t in md_targets(&md) {
            if let Err(e) = check_target(page, &t) {
                problems.push(e);
            }
        }
        assert!(
            !md.contains(SCRIPT) && !md.contains("<i>sport</i>"),
            "{}: raw HTML from the dataset or the recipe",
            page.display()
        );
    }
    for svg in files(site, "svg") {
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(!text.contains("<i>sport</i>"), "{}", svg.display());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every page is reachable from the index by links.
    for page in &html_pages {
        let p = page.canonicalize().unwrap();
        assert!(
            linked.contains(&p) || p == site.join("index.html").canonicalize().unwrap(),
            "{} is not linked from any page",
            page.display()
        );
    }
    // The run page shows the script sentence as text, in its error analysis.
    let run_page = html_pages
        .iter()
        .find(|p| {
            let h = std::fs::read_to_string(p).unwrap();
            h.contains("Error analysis") && h.contains("← all runs")
        })
        .expect("a run page linked to the index");
    let html = std::fs::read_to_string(run_page).unwrap();
    assert!(html.contains(SCRIPT_ESCAPED_HTML), "no escaped sentence");
    assert!(html.contains("&lt;i&gt;sport&lt;/i&gt;"));
    assert!(index.contains("sweep of 2 trials") && index.contains("quick"));
    // CSV twins of the index tables.
    let runs_csv = std::fs::read_to_string(site.join("runs.csv")).unwrap();
    assert_eq!(runs_csv.lines().count(), 3, "{runs_csv}");
}

#[test]
fn report_rerenders_the_pages_from_the_store() {
    let f = fixture();
    // The sweep ran last, so its pages are the recipe's report folder's.
    let page = f.reports.join("quick/index.html");
    let trial = f.reports.join("quick/trial-002/README.md");
    // Full-precision numbers too: results read back from JSON are the numbers that were written.
    let table = f.reports.join("quick/trial-002/comparison.csv");
    let before = (
        std::fs::read(&page).unwrap(),
        std::fs::read(&trial).unwrap(),
        std::fs::read(&table).unwrap(),
    );
    std::fs::remove_file(&page).unwrap();
    std::fs::remove_file(&trial).unwrap();
    std::fs::remove_file(&table).unwrap();
    let out = ok(
        kdrun().arg("report").arg(&f.store).output().unwrap(),
        "report",
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("index.html"), "{listed}");
    assert_eq!(std::fs::read(&page).unwrap(), before.0);
    assert_eq!(std::fs::read(&trial).unwrap(), before.1);
    assert_eq!(std::fs::read(&table).unwrap(), before.2);
    // A store that is not there is a clear error.
    let out = kdrun().args(["report", "no/such/store"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/store"));
}

#[test]
fn a_template_folder_replaces_kdruns_templates() {
    let f = fixture();
    let dir = f.root.join("templates-custom");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("report.md"),
        "CUSTOM {{ page.title|md }} {{ page.comparison.rows|length }} models\n",
    )
    .unwrap();
    let store = f.root.join("runs-custom");
    ok(
        quick_on_csv(
            &f.root,
            &[
                "name=custom",
                &format!("report.templates={}", dir.display()),
                &format!("runtime.store={}", store.display()),
            ],
        )
        .output()
        .unwrap(),
        "run with templates",
    );
    let md = std::fs::read_to_string(f.reports.join("custom/README.md")).unwrap();
    assert_eq!(
        md.trim_end(),
        format!("CUSTOM {SCRIPT_ESCAPED} site test 4 models")
    );
    // kdrun's HTML template still renders the page.
    assert!(std::fs::read_to_string(f.reports.join("custom/index.html"))
        .unwrap()
        .contains("<table"));
    // A file that replaces no template is an error that names it.
    std::fs::write(dir.join("reprot.html"), "x").unwrap();
    let out = kdrun()
        .args(["check", "recipes/quick.toml", "--set"])
        .arg(format!("report.templates={}", dir.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("report.templates") && err.contains("reprot.html"),
        "{err}"
    );
}

/// Headless Chromium, if this machine has it (`KDRUN_CHROMIUM` names the binary).
fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KDRUN_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

fn browser(bin: &Path, profile: &Path, args: &[String], url: &str) -> Output {
    let _ = std::fs::remove_dir_all(profile);
    std::fs::create_dir_all(profile).unwrap();
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium starts")
}

/// Share of pixels that differ from the most common colour, and the number of colours.
fn ink(png_file: &Path) -> (f64, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_file).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bpp = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(bpp).collect();
    let mut counts = std::collections::HashMap::new();
    for p in &pixels {
        *counts.entry(p.to_vec()).or_insert(0usize) += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    (1.0 - most as f64 / pixels.len().max(1) as f64, counts.len())
}

#[test]
fn a_browser_renders_the_index_and_a_run_page() {
    let Some(bin) = chromium() else {
        if std::env::var("KDRUN_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1") {
            panic!("KDRUN_REQUIRE_CHROMIUM=1 but no chromium was found (set KDRUN_CHROMIUM)");
        }
        eprintln!("skipped: no chromium on this machine (CI installs it)");
        return;
    };
    let f = fixture();
    let run_page = files(&f.site, "html")
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("Error analysis")
        })
        .unwrap();
    for (name, page, must) in [
        ("index", f.site.join("index.html"), ["Recipes", "Runs"]),
        ("run", run_page, ["Comparison", "Error analysis"]),
    ] {
        let url = format!("file://{}", page.canonicalize().unwrap().display());
        let out = browser(
            &bin,
            &f.root.join(format!("chromium-{name}-dom")),
            &["--dump-dom".into()],
            &url,
        );
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(
            dom.contains("<table") && must.iter().all(|m| dom.contains(m)),
            "{name}: the dumped DOM lacks its tables: {}\n{}",
            &dom[..dom.len().min(500)],
            String::from_utf8_lossy(&out.stderr)
        );
        // The sentence with a script tag is a text node, not a script.
        assert!(
            !dom.contains(SCRIPT),
            "{name}: a dataset script became markup"
        );
        let shot = f.root.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        let out = browser(
            &bin,
            &f.root.join(format!("chromium-{name}-shot")),
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1280,1600".into(),
            ],
            &url,
        );
        assert!(
            shot.is_file(),
            "{name}: no screenshot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (share, colours) = ink(&shot);
        assert!(
            share > 0.02 && colours > 20,
            "{name}: the screenshot looks blank ({:.2} % ink, {colours} colours)",
            share * 100.0
        );
    }
}
