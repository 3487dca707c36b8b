// shapelab explorer: the grid, a cell's runs, a run's filters switched off and evaluated.
// Plain JavaScript with no library; every number comes from the server's API.
"use strict";

const $ = (id) => document.getElementById(id);
const pct = (v) => (100 * v).toFixed(0) + "%";
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}

// The report's viridis colour map, from dark purple (0) to yellow (1), in five stops.
function shade(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + f * (stops[i + 1][k] - v)));
  return `rgb(${c.join(",")})`;
}

function failed(el, e) { el.innerHTML = `<p class="error">${esc(e.message)}</p>`; }

async function showGrid() {
  const el = $("grid-body");
  try {
    const cells = await api("/api/grid");
    const groups = new Map();
    for (const c of cells) {
      const k = `${c.experiment}: ${c.dataset} under ${c.condition}`;
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(c);
    }
    let h = "";
    for (const [name, cs] of groups) {
      // Rows: the first layer's filters; columns: the second's ("one layer" for one-layer nets).
      const first = [...new Set(cs.map((c) => +c.arch.split("-")[0]))].sort((a, b) => a - b);
      const second = [...new Set(cs.map((c) => c.arch.split("-").slice(1).join("-")))]
        .sort((a, b) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b, undefined, { numeric: true })));
      const at = new Map(cs.map((c) => [c.arch, c]));
      h += `<div class="group"><h3>${esc(name)}</h3><table class="grid"><tr><th class="txt" title="filters of the first conv layer down, of the second across">F1 \\ F2</th>${second.map((f) => `<th>${f === "" ? "one layer" : esc(f)}</th>`).join("")}</tr>`;
      for (const f1 of first) {
        h += `<tr><th class="txt">${f1}</th>`;
        for (const f2 of second) {
          const c = at.get(f2 === "" ? `${f1}` : `${f1}-${f2}`);
          if (!c) { h += "<td></td>"; continue; }
          const light = c.rate > 0.55;
          h += `<td class="rate" style="background:${shade(c.rate)};color:${light ? "#1d1d1b" : "#fff"}" title="${c.learned} of ${c.runs} runs learned; Wilson 95% interval ${pct(c.low)} to ${pct(c.high)}" data-e="${esc(c.experiment)}" data-d="${esc(c.dataset)}" data-c="${esc(c.condition)}" data-a="${esc(c.arch)}">${pct(c.rate)}<br><span class="ci">[${pct(c.low)}, ${pct(c.high)}]</span></td>`;
        }
        h += "</tr>";
      }
      h += "</table></div>";
    }
    el.innerHTML = h || "<p>The store has no runs.</p>";
    for (const td of el.querySelectorAll("td.rate")) {
      td.addEventListener("click", () => showCell(td.dataset.e, td.dataset.d, td.dataset.c, td.dataset.a));
    }
  } catch (e) { failed(el, e); }
}

function sparkline(curve) {
  if (!curve.length) return "";
  const w = 120, h = 24, n = Math.max(curve.length - 1, 1);
  const pts = curve.map((v, i) => `${(i / n * w).toFixed(1)},${(h - v * h).toFixed(1)}`).join(" ");
  return `<svg width="${w}" height="${h}" aria-label="validation accuracy by epoch"><polyline fill="none" stroke="#2166ac" stroke-width="1.5" points="${pts}"/></svg>`;
}

async function showCell(experiment, dataset, condition, arch) {
  $("cell").hidden = false;
  $("cell-title").textContent = `${dataset}, ${arch}, ${condition}: its runs`;
  const el = $("cell-body");
  try {
    const q = new URLSearchParams({ experiment, dataset, condition, arch });
    const runs = await api(`/api/runs?${q}`);
    const outcomes = [...new Set(runs.map((r) => r.outcome))];
    let h = `<p>Show: <select id="outcome"><option value="">every outcome</option>${outcomes.map((o) => `<option>${esc(o)}</option>`).join("")}</select></p><table><tr><th>seed</th><th class="txt">outcome</th><th>val acc</th><th>test acc</th><th class="txt">validation accuracy by epoch</th></tr>`;
    runs.forEach((r, i) => {
      h += `<tr class="run" data-i="${i}"><td>${r.seed}</td><td class="txt ${esc(r.outcome)}">${esc(r.outcome)}</td><td>${r.val_acc.toFixed(4)}</td><td>${r.test_acc == null ? "&ndash;" : r.test_acc.toFixed(4)}</td><td class="txt">${sparkline(r.curve)}</td></tr>`;
    });
    el.innerHTML = h + "</table>";
    for (const tr of el.querySelectorAll("tr.run")) {
      tr.addEventListener("click", () => showRun(runs[+tr.dataset.i].key, arch));
    }
    $("outcome").addEventListener("change", () => {
      const want = $("outcome").value;
      for (const tr of el.querySelectorAll("tr.run")) {
        tr.hidden = want !== "" && runs[+tr.dataset.i].outcome !== want;
      }
    });
    $("cell").scrollIntoView();
  } catch (e) { failed(el, e); }
}

async function showRun(key, arch) {
  $("run").hidden = false;
  $("run-title").textContent = `${key}: switch filters off`;
  const widths = arch.split("-").map(Number);
  let h = `<p>Split: <select id="split"><option value="val">validation</option><option value="test">test (held out)</option></select></p><div class="filters">`;
  widths.forEach((n, l) => {
    h += `<p>Layer ${l + 1}: `;
    for (let f = 1; f <= n; f++) {
      h += `<label><input type="checkbox" checked data-l="${l + 1}" data-f="${f}"> F${f}</label>`;
    }
    h += "</p>";
  });
  h += `</div><div id="numbers">evaluating&hellip;</div>`;
  $("run-body").innerHTML = h;
  const update = () => evaluate(key);
  for (const box of $("run-body").querySelectorAll("input")) box.addEventListener("change", update);
  $("split").addEventListener("change", update);
  await update();
  $("run").scrollIntoView();
}

async function evaluate(key) {
  const el = $("numbers");
  const off = [...$("run-body").querySelectorAll("input:not(:checked)")].map((b) => [+b.dataset.l, +b.dataset.f]);
  for (const b of $("run-body").querySelectorAll("input")) b.parentElement.classList.toggle("off", !b.checked);
  try {
    const e = await api("/api/eval", { run: key, off, split: $("split").value });
    let h = `<p><b>Accuracy ${e.accuracy.toFixed(4)}</b> on ${e.images} images, loss ${e.loss.toFixed(4)}, with ${off.length} filter${off.length === 1 ? "" : "s"} off.</p>`;
    h += `<table><tr><th class="txt" title="true class">true \\ predicted</th>${e.per_class.map((c) => `<th>${esc(c[0])}</th>`).join("")}<th title="share of the class's images predicted right">right</th></tr>`;
    e.confusion.forEach((row, i) => {
      h += `<tr><td class="txt">${esc(e.per_class[i][0])}</td>${row.map((v) => `<td>${v}</td>`).join("")}<td>${pct(e.per_class[i][1])}</td></tr>`;
    });
    el.innerHTML = h + "</table>";
  } catch (err) { failed(el, err); }
}

showGrid();
