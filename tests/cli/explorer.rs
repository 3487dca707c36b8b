//! The explorer (`shapelab serve`) clicked through in real headless Chromium over WebDriver
//! (Debian's `chromium-driver`, driven with fantoccini), on a study made for the test: a grid
//! cell, a run, a filter and its maps, two filters switched off (the accuracy shown equals
//! `shapelab eval --remove`), the greedy pruning replayed (the page's accuracy equals the
//! table's), a drawing read by the network, and two runs side by side. Screenshots are taken
//! along the way; with `SHAPELAB_SCREENSHOTS=DIR` they are kept in DIR (the README's).

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command as Std, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::serve::start;
use crate::{ok, workdir};

/// The WebDriver server, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's chromedriver on a free port, once it accepts connections.
fn driver() -> Option<(Driver, String)> {
    crate::browser_tool(&["chromedriver"])?;
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Std::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs");
    let d = Driver(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((d, format!("http://127.0.0.1:{port}")))
}

async fn browser(webdriver: &str, chromium: &str, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": which(chromium),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                     "--window-size=1300,1400", "--no-first-run",
                     "--disable-background-networking",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a WebDriver session")
}

fn which(program: &str) -> String {
    let out = Std::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until the page's JavaScript `expr` is true; panics with `what` after 60 s.
async fn until(c: &Client, expr: &str, what: &str) {
    let start = Instant::now();
    loop {
        let v = c
            .execute(&format!("return !!({expr});"), vec![])
            .await
            .unwrap();
        if v == Value::Bool(true) {
            return;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let error = c
                .execute(
                    "return [...document.querySelectorAll('.error')].map(e => e.textContent).join(' | ');",
                    vec![],
                )
                .await
                .unwrap();
            panic!("waited 60 s for {what} ({expr}); errors on the page: {error}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn js(c: &Client, expr: &str) -> Value {
    c.execute(&format!("return {expr};"), vec![]).await.unwrap()
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
}

/// Scrolls to `css`, then saves a screenshot as `name`.png in the test's directory and, when
/// asked, in `SHAPELAB_SCREENSHOTS`; checks it is a PNG of the window's width.
async fn shot(c: &Client, dir: &Path, name: &str, css: &str) {
    c.execute(
        &format!("document.querySelector('{css}').scrollIntoView(); window.scrollBy(0, -8);"),
        vec![],
    )
    .await
    .unwrap();
    let png = c.screenshot().await.unwrap();
    let info = png::Decoder::new(std::io::Cursor::new(&png[..]))
        .read_info()
        .unwrap()
        .info()
        .clone();
    assert_eq!(info.width, 1300, "{name}");
    std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    if let Some(keep) = std::env::var_os("SHAPELAB_SCREENSHOTS") {
        std::fs::write(Path::new(&keep).join(format!("{name}.png")), &png).unwrap();
    }
}

fn model_dir(d: &Path, key: &str) -> String {
    let runs: Value =
        serde_json::from_str(&ok(d, &["runs", "--store", "s/shapelab.db", "--json"])).unwrap();
    let row = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("{key} not in {runs}"))
        .clone();
    d.join(row["model_dir"].as_str().unwrap())
        .display()
        .to_string()
}

#[test]
fn the_explorer_clicked_through_in_a_browser() {
    let Some(chromium) = crate::chromium() else {
        return;
    };
    let Some((_driver, webdriver)) = driver() else {
        return;
    };
    let dir = workdir();
    let d = dir.path();
    std::fs::write(d.join("seeds.toml"), include_str!("seeds-study.toml")).unwrap();
    ok(
        d,
        &["--quiet", "study", "--config", "seeds.toml", "--out", "s"],
    );
    let server = start(d, "s");
    let url = format!("http://{}/", server.addr);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let c = browser(&webdriver, chromium, &d.join("profile")).await;
            clicks(&c, &url, d).await;
            c.close().await.unwrap();
        });
}

async fn clicks(c: &Client, url: &str, d: &Path) {
    // The study opens on its grid; a cell lists its runs; a run opens its network.
    c.goto(url).await.unwrap();
    until(
        c,
        "document.querySelector('td.rate[data-e=\"seeds-cases\"]')",
        "the grid",
    )
    .await;
    shot(c, d, "serve-grid", "h1").await;
    click(c, "td.rate[data-e=\"seeds-cases\"][data-a=\"6-4\"]").await;
    until(
        c,
        "document.querySelectorAll('tr.run').length === 4",
        "the cell's runs",
    )
    .await;
    click(c, "tr.run").await;
    until(
        c,
        "document.getElementById('accuracy')",
        "the run's accuracy",
    )
    .await;
    until(
        c,
        "document.querySelectorAll('.tile canvas').length === 10",
        "the network's tiles",
    )
    .await;
    let key = js(c, "cur.key").await.as_str().unwrap().to_string();

    // A filter: its maps over the panel appear, and they are not all black.
    click(c, ".tile[data-l=\"2\"][data-f=\"3\"] .name").await;
    until(
        c,
        "document.querySelectorAll('#filter-maps canvas').length === cur.view.panel.images.length",
        "the filter's maps",
    )
    .await;
    let lit = js(
        c,
        "[...document.querySelectorAll('#filter-maps canvas')].some(cv => cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data.some((v, i) => i % 4 !== 3 && v > 0))",
    )
    .await;
    assert_eq!(lit, Value::Bool(true), "the maps are all black");
    assert!(js(c, "document.getElementById('kernel').children.length").await == 6);

    // Two filters off: the accuracy shown (on the held-out split) is `shapelab eval`'s.
    click(c, ".tile[data-l=\"1\"][data-f=\"2\"] .switch").await;
    click(c, ".tile[data-l=\"2\"][data-f=\"1\"] .switch").await;
    until(
        c,
        "document.getElementById('off-count')?.textContent === '2'",
        "two filters off",
    )
    .await;
    until(
        c,
        "document.querySelectorAll('.tile.off').length === 2",
        "two tiles off",
    )
    .await;
    let shown: f64 = js(c, "document.getElementById('accuracy').dataset.value")
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let model = model_dir(d, &key);
    let cli: Value = serde_json::from_str(&ok(
        d,
        &[
            "eval", &model, "--remove", "1:2,2:1", "--split", "test", "--json",
        ],
    ))
    .unwrap();
    assert_eq!(shown, cli["accuracy"].as_f64().unwrap(), "page vs CLI");
    until(
        c,
        "document.getElementById('filter-analysis')?.textContent.includes('Twins')",
        "the filter's twins",
    )
    .await;
    shot(c, d, "serve-run", "#run-title").await;
    shot(c, d, "serve-filter", "#filter").await;

    // The greedy pruning replayed: on validation, the page's accuracy after step 1 is the
    // table's.
    until(c, "cur.analysis", "the pruning table").await;
    c.find(Locator::Id("split"))
        .await
        .unwrap()
        .select_by_value("val")
        .await
        .unwrap();
    click(c, "#replay-next").await;
    let table = js(c, "cur.analysis.pruning.steps[0].accuracy_after").await;
    let removed = js(c, "cur.analysis.pruning.steps[0].removed.length").await;
    until(
        c,
        &format!("document.getElementById('off-count')?.textContent === '{removed}' && document.getElementById('accuracy').dataset.split === 'val' && document.getElementById('accuracy').dataset.value == {table}"),
        "the replayed step's accuracy",
    )
    .await;

    // A drawing: the network reads it and predicts a class.
    click(c, "#all-on").await;
    let pad = c.find(Locator::Id("pad")).await.unwrap();
    let stroke = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: pad.clone(),
            duration: None,
            x: -50.0,
            y: -40.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(100)),
            x: 90.0,
            y: 0.0,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(100)),
            x: 0.0,
            y: 80.0,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(100)),
            x: -90.0,
            y: -80.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    c.perform_actions(stroke).await.unwrap();
    click(c, "#pad-use").await;
    until(
        c,
        "cur.image.pixels && cur.image.pixels.some(v => v > 128)",
        "the drawing read",
    )
    .await;
    until(
        c,
        "document.getElementById('draw-note').textContent.includes('your drawing') && cur.view.classes.includes(document.getElementById('predicted')?.textContent)",
        "a prediction for the drawing",
    )
    .await;

    // Two runs side by side, each of this run's filters beside its match.
    let other = js(
        c,
        "document.querySelectorAll('#compare-with option')[1].value",
    )
    .await;
    c.find(Locator::Id("compare-with"))
        .await
        .unwrap()
        .select_by_value(other.as_str().unwrap())
        .await
        .unwrap();
    until(
        c,
        "document.querySelectorAll('#compare .pair').length === 10",
        "the matched pairs",
    )
    .await;
    shot(c, d, "serve-compare", "#compare").await;
}
