//! `shapelab serve` driven over real HTTP: the server started on a free port, its page and
//! API asked with a plain HTTP/1.1 client, every endpoint with good and bad input, and the
//! accuracy with filters switched off checked against `shapelab eval` of the pruned network.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command as Std, Stdio};

use crate::{fails, ok, workdir};

/// A running server, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, target: &str) -> Server {
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("shapelab"))
        .current_dir(dir)
        .args(["serve", target, "--port", "0"])
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
fn request(s: &Server, method: &str, path: &str, body: &[u8]) -> (u16, String) {
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

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn serve_answers_the_page_the_grid_the_runs_and_switched_off_filters() {
    let dir = workdir();
    let d = dir.path();
    std::fs::write(
        d.join("exp.toml"),
        "name = \"e\"\nseeds = 2\nepochs = 4\n[[dataset]]\npreset = \"thesis-1.3\"\nname = \"size\"\ntrain = 300\nval = 150\ntest = 150\n[grid]\narchs = [\"4-3\"]\n",
    )
    .unwrap();
    ok(d, &["sweep", "exp.toml", "--store", "s.db", "-q"]);
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
    assert!(body.contains("not in the store"), "{body}");
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
    assert!(e.contains("holds no shapelab.db"), "{e}");
    std::fs::write(dir.path().join("junk.db"), b"not a store").unwrap();
    let e = fails(dir.path(), &["serve", "junk.db"], 1);
    assert!(e.contains("junk.db"), "{e}");
}

/// The page in headless Chromium: its script runs, asks the API, and draws the grid with a
/// clickable cell per architecture (scripts/test.sh installs Chromium and requires it).
#[test]
fn the_page_draws_the_grid_in_a_browser() {
    let Some(chromium) = crate::chromium() else {
        return;
    };
    let dir = workdir();
    let d = dir.path();
    std::fs::write(
        d.join("exp.toml"),
        "name = \"e\"\nseeds = 1\nepochs = 2\n[[dataset]]\npreset = \"thesis-1.3\"\nname = \"size\"\ntrain = 150\nval = 60\n[grid]\narchs = [\"2\", \"2-3\"]\n",
    )
    .unwrap();
    ok(d, &["sweep", "exp.toml", "--store", "s.db", "-q"]);
    let s = start(d, "s.db");
    let out = Std::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--dump-dom",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", d.join("profile").display()))
        .arg(format!("http://{}/", s.addr))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    for arch in ["2", "2-3"] {
        assert!(
            dom.contains(&format!("data-a=\"{arch}\"")),
            "no cell for {arch}: {dom}"
        );
    }
    assert!(dom.contains("e: size under"), "{dom}");
    assert!(!dom.contains("class=\"error\""), "{dom}");
}
