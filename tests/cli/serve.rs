//! `shapelab serve` driven over real HTTP: the server started on a free port, its page and
//! API asked with a plain HTTP/1.1 client, every endpoint with good and bad input, and the
//! accuracy with filters switched off checked against `shapelab eval` of the pruned network.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command as Std, Stdio};

use crate::{fails, ok, workdir};

/// A running server, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(dir: &Path, target: &str) -> Server {
    start_with(dir, &[target])
}

/// `shapelab serve ARGS --port 0` in `dir`, once it says where it listens.
pub fn start_with(dir: &Path, args: &[&str]) -> Server {
    start_env(dir, args, &[])
}

/// [`start_with`], with these environment variables set for the server.
pub fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("shapelab"))
        .current_dir(dir)
        .envs(env.iter().copied())
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shapelab runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let at = line
        .find("http://")
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let addr = line[at + 7..].split('/').next().unwrap().to_string();
    Server { child, addr }
}

/// One request; returns the status and the body.
pub fn request(s: &Server, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut c = TcpStream::connect(&s.addr).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.addr,
        body.len()
    )
    .unwrap();
    let _ = c.write_all(body);
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap_or_else(|_| panic!("{text}"));
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A store `s.db` in `d` of two seeds of a 4-3 on a small size dataset with a test split.
pub fn sweep(d: &Path) {
    std::fs::write(
        d.join("exp.toml"),
        "name = \"e\"\nseeds = 2\nepochs = 4\n[[dataset]]\npreset = \"thesis-1.3\"\nname = \"size\"\ntrain = 300\nval = 150\ntest = 150\n[grid]\narchs = [\"4-3\"]\n",
    )
    .unwrap();
    ok(d, &["sweep", "exp.toml", "--store", "s.db", "-q"]);
}

#[test]
fn serve_answers_the_page_the_grid_the_runs_and_switched_off_filters() {
    let dir = workdir();
    let d = dir.path();
    sweep(d);
    let s = start(d, "s.db");

    let (status, page) = request(&s, "GET", "/", b"");
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"/app.js\">"), "{page}");
    assert_eq!(request(&s, "GET", "/app.js", b"").0, 200);
    assert_eq!(request(&s, "GET", "/nope", b"").0, 404);

    let grid = json(&request(&s, "GET", "/api/grid", b"").1);
    let cell = &grid[0];
    assert_eq!(
        (cell["experiment"].as_str(), cell["arch"].as_str()),
        (Some("e"), Some("4-3"))
    );
    assert_eq!(cell["runs"], 2);

    let (status, runs) = request(
        &s,
        "GET",
        "/api/runs?experiment=e&dataset=size&condition=&arch=4-3",
        b"",
    );
    assert_eq!(status, 200, "{runs}");
    let runs = json(&runs);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["curve"].as_array().unwrap().len(), 4);
    let key = runs[0]["key"].as_str().unwrap().to_string();
    assert_eq!(
        request(
            &s,
            "GET",
            "/api/runs?experiment=e&dataset=size&condition=&arch=x",
            b""
        )
        .0,
        400
    );

    // Two filters off: the accuracy equals `shapelab eval` of the network without them.
    let ask = serde_json::json!({ "run": key, "off": [[1, 2], [2, 1]], "split": "val" });
    let (status, e) = request(&s, "POST", "/api/eval", ask.to_string().as_bytes());
    assert_eq!(status, 200, "{e}");
    let e = json(&e);
    let model = find_model(d, &key);
    let cli = json(&ok(
        d,
        &[
            "eval",
            model.to_str().unwrap(),
            "--remove",
            "1:2,2:1",
            "--json",
        ],
    ));
    assert_eq!(e["accuracy"], cli["accuracy"], "{e} vs {cli}");
    assert_eq!(e["confusion"], cli["confusion"]);

    // Bad input: a run the store does not list, a filter out of range, a malformed or
    // oversized body.
    let (status, body) = request(
        &s,
        "POST",
        "/api/eval",
        br#"{"run": "../../etc", "split": "val"}"#,
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("is not served here"), "{body}");
    for escape in ["/etc/passwd", "e/../../s.db", "."] {
        let ask = serde_json::json!({ "run": escape, "split": "val" });
        let (status, body) = request(&s, "POST", "/api/eval", ask.to_string().as_bytes());
        assert_eq!(status, 404, "{escape}: {body}");
    }
    let far = serde_json::json!({ "run": key, "off": [[3, 1]], "split": "val" });
    let (status, body) = request(&s, "POST", "/api/eval", far.to_string().as_bytes());
    assert_eq!(status, 400);
    assert!(body.contains("filter 3:1 is not in a 4-3"), "{body}");
    assert_eq!(request(&s, "POST", "/api/eval", b"{not json").0, 400);
    let big = vec![b' '; 400 * 1024];
    assert_eq!(request(&s, "POST", "/api/eval", &big).0, 413);
}

fn find_model(d: &Path, key: &str) -> std::path::PathBuf {
    let runs: serde_json::Value =
        serde_json::from_str(&ok(d, &["runs", "--store", "s.db", "--json"])).unwrap();
    let row = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap();
    d.join(row["model_dir"].as_str().unwrap())
}

#[test]
fn serve_refuses_what_it_cannot_serve() {
    let dir = workdir();
    let e = fails(dir.path(), &["serve", "nowhere"], 2);
    assert!(e.contains("nowhere does not exist"), "{e}");
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let e = fails(dir.path(), &["serve", "empty"], 2);
    assert!(
        e.contains("holds neither shapelab.db nor model.json"),
        "{e}"
    );
    std::fs::write(dir.path().join("junk.db"), b"not a store").unwrap();
    let e = fails(dir.path(), &["serve", "junk.db"], 1);
    assert!(e.contains("junk.db"), "{e}");
}

/// A `w x h` gray PNG of `pixels`.
fn png(w: u32, h: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, w, h);
    e.set_color(png::ColorType::Grayscale);
    e.set_depth(png::BitDepth::Eight);
    e.write_header().unwrap().write_image_data(pixels).unwrap();
    out
}

#[test]
fn serve_answers_a_run_view_its_maps_its_analysis_images_and_comparisons() {
    let dir = workdir();
    let d = dir.path();
    sweep(d);
    let s = start(d, "s.db");
    let source = json(&request(&s, "GET", "/api/source", b"").1);
    assert_eq!(source["kind"], "store");
    let runs = json(
        &request(
            &s,
            "GET",
            "/api/runs?experiment=e&dataset=size&condition=&arch=4-3",
            b"",
        )
        .1,
    );
    let (a, b) = (
        runs[0]["key"].as_str().unwrap().to_string(),
        runs[1]["key"].as_str().unwrap().to_string(),
    );
    let q = |k: &str| k.replace('/', "%2F");

    // The run view: shape, panel, kernels, statistics on the held-out split.
    let (status, v) = request(&s, "GET", &format!("/api/run?run={}", q(&a)), b"");
    assert_eq!(status, 200, "{v}");
    let v = json(&v);
    assert_eq!(v["filters"], serde_json::json!([4, 3]));
    assert_eq!(v["held_out"], "test");
    let panel = v["panel"]["images"].as_array().unwrap();
    assert!(!panel.is_empty() && panel[0].as_array().unwrap().len() == 784);
    assert_eq!(v["kernels"][1]["weights"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["kernels"][1]["weights"][0].as_array().unwrap().len(),
        4 * 9
    );
    assert_eq!(v["stats"]["split"], "test");
    assert_eq!(v["stats"]["filters"].as_array().unwrap().len(), 7);
    assert!(v["dissection"].is_null() && v["families"].is_null());
    let (status, body) = request(&s, "GET", "/api/run?run=nope", b"");
    assert_eq!(status, 404, "{body}");

    // Per factor bin: every test image in one bin of each factor.
    let ask = serde_json::json!({ "run": a, "off": [[1, 1]], "split": "test" });
    let e = json(&request(&s, "POST", "/api/eval", ask.to_string().as_bytes()).1);
    let factors = e["by_factor"].as_array().unwrap();
    assert!(!factors.is_empty(), "{e}");
    for f in factors {
        let images: u64 = f[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["images"].as_u64().unwrap())
            .sum();
        assert_eq!(images, 150, "{f}");
    }

    // The analysis: the greedy table, computed by the server, ends at one filter per layer.
    let (status, an) = request(&s, "GET", &format!("/api/analysis?run={}", q(&a)), b"");
    assert_eq!(status, 200, "{an}");
    let an = json(&an);
    assert_eq!(an["pruning"]["steps"].as_array().unwrap().len(), 5);
    assert!(an["source"]
        .as_str()
        .unwrap()
        .contains("computed by the server"));
    assert_eq!(an["similarity"]["layers"].as_array().unwrap().len(), 2);
    // The page's replay checks the table against a fresh evaluation: step 1 on val.
    let step = &an["pruning"]["steps"][0];
    let off: Vec<(u64, u64)> = step["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["layer"].as_u64().unwrap(), r["filter"].as_u64().unwrap()))
        .collect();
    let ask = serde_json::json!({ "run": a, "off": off, "split": "val" });
    let e = json(&request(&s, "POST", "/api/eval", ask.to_string().as_bytes()).1);
    assert_eq!(e["accuracy"], step["accuracy_after"], "{e} vs {step}");

    // Maps on a panel image and on given pixels agree; a filter switched off has zero maps.
    let ask = serde_json::json!({ "run": a, "off": [[1, 2]], "image": { "panel": 0 } });
    let (status, m) = request(&s, "POST", "/api/maps", ask.to_string().as_bytes());
    assert_eq!(status, 200, "{m}");
    let m = json(&m);
    assert_eq!(m["layers"][0]["maps"].as_array().unwrap().len(), 4);
    assert!(m["layers"][0]["maps"][1]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x == 0.0));
    let p: f64 = m["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-5);
    let ask = serde_json::json!({ "run": a, "off": [[1, 2]], "image": { "pixels": panel[0] } });
    let same = json(&request(&s, "POST", "/api/maps", ask.to_string().as_bytes()).1);
    assert_eq!(same, m);
    for (body, want) in [
        (
            serde_json::json!({ "run": a, "image": { "pixels": [0, 1, 2] } }),
            "has 3 pixels",
        ),
        (
            serde_json::json!({ "run": a, "image": { "panel": 999 } }),
            "panel image 999",
        ),
    ] {
        let (status, e) = request(&s, "POST", "/api/maps", body.to_string().as_bytes());
        assert_eq!(status, 400, "{e}");
        assert!(e.contains(want), "{e}");
    }

    // One filter's maps over the panel.
    let ask = serde_json::json!({ "run": a, "layer": 2, "filter": 3 });
    let f = json(&request(&s, "POST", "/api/filter", ask.to_string().as_bytes()).1);
    assert_eq!(f["maps"].as_array().unwrap().len(), panel.len());
    assert_eq!(
        (f["height"].as_u64(), f["width"].as_u64()),
        (Some(14), Some(14))
    );
    let ask = serde_json::json!({ "run": a, "layer": 2, "filter": 4 });
    let (status, e) = request(&s, "POST", "/api/filter", ask.to_string().as_bytes());
    assert_eq!(status, 400);
    assert!(e.contains("L2 F4"), "{e}");

    // Uploads: a PNG of the network's size reads as its pixels; others are 400s that say why.
    let pixels: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
    let (status, up) = request(
        &s,
        "POST",
        &format!("/api/image?run={}", q(&a)),
        &png(28, 28, &pixels),
    );
    assert_eq!(status, 200, "{up}");
    assert_eq!(json(&up)["pixels"], serde_json::json!(pixels));
    for (body, want) in [
        (png(64, 64, &[0; 4096]), "resize it to 28x28"),
        (b"GIF89a not a png".to_vec(), "not a PNG"),
        (vec![0u8; 300 * 1024], "at most 256 KB"),
    ] {
        let (status, e) = request(&s, "POST", &format!("/api/image?run={}", q(&a)), &body);
        assert_eq!(status, 400, "{e}");
        assert!(e.contains(want), "{e}");
    }

    // Two runs matched filter to filter, each of A's filters once.
    let (status, c) = request(
        &s,
        "GET",
        &format!("/api/compare?a={}&b={}", q(&a), q(&b)),
        b"",
    );
    assert_eq!(status, 200, "{c}");
    let c = json(&c);
    let layer1: Vec<u64> = c["layers"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["a"].as_u64().unwrap())
        .collect();
    assert_eq!(layer1, vec![0, 1, 2, 3]);
    assert_eq!(c["split"], "test");
    let (status, _) = request(
        &s,
        "GET",
        &format!("/api/compare?a={}&b=..%2Fx", q(&a)),
        b"",
    );
    assert_eq!(status, 404);
}

/// A model directory served alone: the page opens on it, and no other key is served.
#[test]
fn serve_opens_a_single_model_directory() {
    let dir = workdir();
    let d = dir.path();
    ok(
        d,
        &[
            "train",
            "--data",
            "thesis-1.3",
            "--arch",
            "2-2",
            "--epochs",
            "1",
            "--out",
            "m",
            "-q",
        ],
    );
    let s = start(d, "m");
    let source = json(&request(&s, "GET", "/api/source", b"").1);
    assert_eq!(
        (source["kind"].as_str(), source["run"].as_str()),
        (Some("run"), Some("m"))
    );
    let (status, v) = request(&s, "GET", "/api/run?run=m", b"");
    assert_eq!(status, 200, "{v}");
    assert_eq!(json(&v)["run"]["experiment"], "served alone");
    assert!(json(&request(&s, "GET", "/api/grid", b"").1)
        .as_array()
        .unwrap()
        .is_empty());
    let ask = serde_json::json!({ "run": "m", "off": [[2, 1]], "split": "val" });
    let (status, e) = request(&s, "POST", "/api/eval", ask.to_string().as_bytes());
    assert_eq!(status, 200, "{e}");
    let cli = json(&ok(d, &["eval", "m", "--remove", "2:1", "--json"]));
    assert_eq!(json(&e)["accuracy"], cli["accuracy"]);
    assert_eq!(request(&s, "GET", "/api/run?run=other", b"").0, 404);
}

/// A store whose model directory is a symlink out of the store's directory: the run is listed
/// but its model is not served.
#[test]
fn serve_refuses_a_model_directory_outside_the_store() {
    let outside = workdir();
    let dir = workdir();
    let d = dir.path();
    sweep(d);
    let key = {
        let db = rusqlite::Connection::open(d.join("s.db")).unwrap();
        let (key, model): (String, String) = db
            .query_row("SELECT key, model_dir FROM runs LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        std::fs::rename(d.join(&model), outside.path().join("m")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("m"), d.join(&model)).unwrap();
        key
    };
    let s = start(d, "s.db");
    let ask = serde_json::json!({ "run": key, "split": "val" });
    let (status, e) = request(&s, "POST", "/api/eval", ask.to_string().as_bytes());
    assert_eq!(status, 400, "{e}");
    assert!(e.contains("resolves outside the store's directory"), "{e}");
}

/// Ctrl-C (SIGINT) stops the server cleanly: exit 0, the port released.
#[test]
fn serve_stops_cleanly_on_ctrl_c() {
    let dir = workdir();
    let d = dir.path();
    sweep(d);
    let mut s = start(d, "s.db");
    assert_eq!(request(&s, "GET", "/api/grid", b"").0, 200);
    let pid = s.child.id().to_string();
    assert!(Std::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(&s.addr).is_err());
}
