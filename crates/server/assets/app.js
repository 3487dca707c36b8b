// shapelab explorer: the grid, a cell's runs, and a run's network with filters switched off.
// Plain JavaScript with no library; every number comes from the server's API, and the
// colour maps are the report's (crates/lab/src/draw.rs): gray maps, diverging kernels,
// viridis rates.
"use strict";

const $ = (id) => document.getElementById(id);
const pct = (v) => (100 * v).toFixed(0) + "%";
const pct1 = (v) => (100 * v).toFixed(1) + "%";
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

async function api(path, body, raw) {
  const init = body === undefined ? {} : raw
    ? { method: "POST", headers: { "content-type": "image/png" }, body }
    : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, init);
  const text = await r.text();
  let j;
  try { j = JSON.parse(text); } catch (_) { j = { error: text || r.statusText }; }
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}

// ---- colour maps, as crates/lab/src/draw.rs draws them ----------------------------------
const VIRIDIS = [[68, 1, 84], [70, 50, 127], [54, 92, 141], [39, 127, 142], [31, 161, 135], [74, 193, 109], [160, 218, 57], [253, 231, 37]];
function viridis(t) {
  const x = (Number.isNaN(t) ? 0 : Math.min(Math.max(t, 0), 1)) * 7;
  const i = Math.min(Math.floor(x), 6), f = x - i;
  return VIRIDIS[i].map((v, k) => Math.round(v + (VIRIDIS[i + 1][k] - v) * f));
}
function gray(t) { const v = Math.round((Number.isNaN(t) ? 0 : Math.min(Math.max(t, 0), 1)) * 255); return [v, v, v]; }
function diverging(t) {
  t = Number.isNaN(t) ? 0 : Math.min(Math.max(t, -1), 1);
  const end = t < 0 ? [33, 102, 172] : [178, 24, 43], f = Math.abs(t);
  return end.map((e) => Math.round(247 + (e - 247) * f));
}
const css = (c) => `rgb(${c.join(",")})`;

// Draws `values` ([h x w]) into a canvas of w x h pixels (enlarged by CSS, pixelated).
function paint(canvas, values, w, h, range, cmap) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const c = cmap(range > 0 ? values[i] / range : 0);
    img.data.set([c[0], c[1], c[2], 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}
const pixelsCanvas = (px, w, h) => paint(document.createElement("canvas"), px, w, h, 255, gray);

function failed(el, e) { el.innerHTML = `<p class="error">${esc(e.message)}</p>`; }

// ---- the grid and a cell's runs ---------------------------------------------------------
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
          h += `<td class="rate" style="background:${css(viridis(c.rate))};color:${light ? "#1d1d1b" : "#fff"}" title="Success rate: ${c.learned} of ${c.runs} runs learned (validation accuracy at the experiment's threshold); Wilson 95% interval ${pct(c.low)} to ${pct(c.high)}" data-e="${esc(c.experiment)}" data-d="${esc(c.dataset)}" data-c="${esc(c.condition)}" data-a="${esc(c.arch)}">${pct(c.rate)}<br><span class="ci">[${pct(c.low)}, ${pct(c.high)}]</span></td>`;
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
    let h = `<p>Show: <select id="outcome"><option value="">every outcome</option>${outcomes.map((o) => `<option>${esc(o)}</option>`).join("")}</select></p><table><tr><th>seed</th><th class="txt">outcome</th><th title="accuracy on the validation split after the last epoch">val acc</th><th title="accuracy on the held-out test split, which no choice saw">test acc</th><th class="txt">validation accuracy by epoch</th></tr>`;
    runs.forEach((r, i) => {
      h += `<tr class="run" data-i="${i}"><td>${r.seed}</td><td class="txt ${esc(r.outcome)}">${esc(r.outcome)}</td><td>${r.val_acc.toFixed(4)}</td><td>${r.test_acc == null ? "&ndash;" : r.test_acc.toFixed(4)}</td><td class="txt">${sparkline(r.curve)}</td></tr>`;
    });
    el.innerHTML = h + "</table>";
    for (const tr of el.querySelectorAll("tr.run")) {
      tr.addEventListener("click", () => showRun(runs[+tr.dataset.i].key));
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

// ---- the run view -----------------------------------------------------------------------
// What is shown: the run, the filters switched off ("l:f", 1-based), the image the network
// reads, the filter selected, the split measured on.
const cur = { key: null, view: null, off: new Set(), image: { panel: 0 }, selected: null, analysis: null, step: 0, seq: 0, other: null };
const offList = () => [...cur.off].map((s) => s.split(":").map(Number));

async function showRun(key, then) {
  $("run").hidden = false;
  $("run-title").textContent = `Run ${key}`;
  Object.assign(cur, { key, view: null, off: new Set(), image: { panel: 0 }, selected: null, analysis: null, step: 0, other: null });
  $("filter").hidden = true; $("compare").hidden = true;
  $("net").innerHTML = "loading the network&hellip;";
  try {
    const v = await api(`/api/run?run=${encodeURIComponent(key)}`);
    if (cur.key !== key) return;
    cur.view = v;
    const r = v.run;
    $("run-facts").innerHTML = `${esc(r.dataset)}, ${esc(r.arch)}, ${esc(r.condition)}, seed ${r.seed}: <span class="${esc(r.outcome)}">${esc(r.outcome)}</span>; validation accuracy <span class="def" title="after the last epoch, as the store recorded it">${r.val_acc.toFixed(4)}</span>${r.test_acc == null ? "" : `, held-out test <span class="def" title="the final network on the test split, which no choice saw">${r.test_acc.toFixed(4)}</span>`}.`;
    $("split").innerHTML = v.splits.map((s) => `<option value="${s}"${s === v.held_out ? " selected" : ""}>${s === "test" ? "test (held out)" : s === "val" ? "validation" : "train"}</option>`).join("");
    const q = new URLSearchParams({ experiment: r.experiment, dataset: r.dataset, condition: r.condition, arch: r.arch });
    const others = (await api(`/api/runs?${q}`)).filter((x) => x.key !== key);
    $("compare-with").innerHTML = `<option value="">${others.length ? "no other run" : "no other run in this cell"}</option>` + others.map((x) => `<option value="${esc(x.key)}">seed ${x.seed} (${esc(x.outcome)})</option>`).join("");
    drawNetwork();
    if (then) then();
    await refresh();
    loadAnalysis(key);
    $("run").scrollIntoView();
  } catch (e) { failed($("net"), e); }
}

// The network as columns: the input and the panel, each conv layer's filters, the classes.
function drawNetwork() {
  const v = cur.view;
  let h = `<div class="stage input"><h3 title="The image the network reads: a panel image, or your own below">Input</h3><canvas class="big" id="input-img"></canvas><div class="strip" id="strip"></div></div>`;
  v.filters.forEach((n, l) => {
    const cols = Math.max(2, Math.min(8, Math.ceil(Math.sqrt(n))));
    h += `<div class="stage"><h3 title="Each tile: a filter's map after the activation on the input, gray from 0 (black) to the layer's largest value on this image (white). Click a tile for its details, its corner to switch it off or on.">Layer ${l + 1}: ${n} filters</h3><div class="tiles" style="grid-template-columns:repeat(${cols}, 60px)">`;
    for (let f = 1; f <= n; f++) {
      const lab = v.dissection?.layers[l]?.[f - 1]?.label;
      h += `<div class="tile" data-l="${l + 1}" data-f="${f}"><canvas></canvas><button class="switch" title="switch L${l + 1} F${f} off or on">on</button><span class="name">L${l + 1} F${f}</span>${lab ? `<span class="tag" title="dissection label: the concept its most active pixels overlap best, above chance">${esc(lab)}</span>` : ""}</div>`;
    }
    h += "</div></div>";
  });
  h += `<div class="stage classes"><h3 title="Softmax probability of each class for the input">Output</h3><div id="probs"></div><div id="prediction"></div></div>`;
  $("net").innerHTML = h;
  const strip = $("strip");
  v.panel.images.forEach((px, i) => {
    const c = pixelsCanvas(px, v.width, v.height);
    c.title = `panel image ${i}: ${v.panel.captions[i] || ""}`;
    c.dataset.i = i;
    c.addEventListener("click", () => { cur.image = { panel: i }; refreshMaps(); });
    strip.appendChild(c);
  });
  for (const t of $("net").querySelectorAll(".tile")) {
    const id = `${t.dataset.l}:${t.dataset.f}`;
    t.querySelector(".switch").addEventListener("click", (ev) => { ev.stopPropagation(); toggle(id); });
    t.addEventListener("click", () => selectFilter(+t.dataset.l, +t.dataset.f));
  }
}

// The view as a link: #run=KEY&off=1:2,2:3&filter=2:5 opens it again.
function remember() {
  const h = new URLSearchParams({ run: cur.key });
  if (cur.off.size) h.set("off", [...cur.off].join(","));
  if (cur.selected) h.set("filter", `${cur.selected.l}:${cur.selected.f}`);
  history.replaceState(null, "", `#${h}`);
}

function toggle(id) {
  if (cur.off.has(id)) cur.off.delete(id); else cur.off.add(id);
  refresh();
}

// Everything that depends on the filters switched off, computed again.
async function refresh() {
  remember();
  for (const t of $("net").querySelectorAll(".tile")) {
    const off = cur.off.has(`${t.dataset.l}:${t.dataset.f}`);
    t.classList.toggle("off", off);
    t.querySelector(".switch").textContent = off ? "off" : "on";
  }
  const jobs = [refreshNumbers(), refreshMaps()];
  if (cur.selected) jobs.push(refreshFilterMaps());
  if (cur.other) jobs.push(refreshCompareMaps());
  await Promise.all(jobs);
}

async function refreshNumbers() {
  const el = $("numbers"), seq = ++cur.seq, off = offList();
  try {
    const e = await api("/api/eval", { run: cur.key, off, split: $("split").value });
    if (seq !== cur.seq) return;
    const names = e.by_class.map((c) => c[0]);
    let h = `<h3>Accuracy <b id="accuracy" data-value="${e.accuracy}" data-split="${esc(e.split)}" title="share of the ${e.images} images of the ${e.split} split predicted right by the network with these filters removed; equal to shapelab eval --remove">${e.accuracy.toFixed(4)}</b> <span class="sub">on ${e.images} ${esc(e.split)} images, <span class="def" title="mean cross-entropy">loss</span> ${e.loss.toFixed(4)}, with <span id="off-count">${off.length}</span> filter${off.length === 1 ? "" : "s"} off</span></h3>`;
    h += `<table><tr><th class="txt" title="true class down, predicted across">true \\ predicted</th>${names.map((n) => `<th>${esc(n)}</th>`).join("")}<th title="share of the class's images predicted right">right</th></tr>`;
    e.confusion.forEach((row, i) => {
      h += `<tr><td class="txt">${esc(names[i])}</td>${row.map((v) => `<td>${v}</td>`).join("")}<td>${pct1(e.by_class[i][1])}</td></tr>`;
    });
    h += "</table>";
    for (const [factor, bins] of e.by_factor) {
      h += `<h4 title="The thesis's Table 12: accuracy in five equal-width bins of the factor's range over the split">Accuracy by ${esc(factor)}</h4><table><tr><th class="txt">${esc(factor)}</th>${bins.map((b) => `<th>${b.low.toFixed(1)}&ndash;${b.high.toFixed(1)}</th>`).join("")}</tr><tr><td class="txt">accuracy</td>${bins.map((b) => `<td title="${b.images} images">${b.images ? pct1(b.accuracy) : "&ndash;"}</td>`).join("")}</tr></table>`;
    }
    el.innerHTML = h;
  } catch (err) { if (seq === cur.seq) failed(el, err); }
}

let mapsSeq = 0;
async function refreshMaps() {
  const v = cur.view, seq = ++mapsSeq;
  try {
    const m = await api("/api/maps", { run: cur.key, off: offList(), image: cur.image });
    if (seq !== mapsSeq) return;
    paint($("input-img"), m.pixels, v.width, v.height, 255, gray);
    for (const c of $("strip").children) c.classList.toggle("chosen", cur.image.panel === +c.dataset.i);
    m.layers.forEach((layer, l) => {
      const max = layer.maps.reduce((a, mp) => Math.max(a, ...mp), 0);
      const tiles = $("net").querySelectorAll(`.tile[data-l="${l + 1}"] canvas`);
      layer.maps.forEach((mp, f) => paint(tiles[f], mp, layer.width, layer.height, max, gray));
    });
    $("probs").innerHTML = m.probabilities.map((p, k) => `<div class="bar${k === m.predicted ? " top" : ""}"><span style="width:4.5rem">${esc(v.classes[k])}</span><span class="b" style="width:${Math.round(80 * p)}px"></span><span title="softmax probability">${pct1(p)}</span></div>`).join("");
    $("prediction").innerHTML = `Predicted: <b id="predicted">${esc(v.classes[m.predicted])}</b>`;
  } catch (err) { failed($("probs"), err); }
}

// ---- one filter -------------------------------------------------------------------------
async function selectFilter(l, f) {
  cur.selected = { l, f };
  remember();
  for (const t of $("net").querySelectorAll(".tile")) t.classList.toggle("selected", +t.dataset.l === l && +t.dataset.f === f);
  const v = cur.view, el = $("filter");
  el.hidden = false;
  const s = v.stats.filters.find((x) => x.layer === l && x.filter === f);
  let h = `<h3>L${l} F${f}</h3><div class="details"><div><h4 title="The filter's map after the activation on every panel image, gray from 0 to its largest value over the panel (the activation sheets' scale); with the filters switched off above">Maps over the panel <span class="sub" id="filter-max"></span></h4><div class="maps" id="filter-maps">computing&hellip;</div>`;
  h += `<h4 title="Weights per input channel, blue negative, red positive, one scale for the layer (its largest absolute weight)">Kernel</h4><div class="kernels" id="kernel"></div><p class="sub">bias ${v.kernels[l - 1].bias[f - 1].toFixed(4)}, layer scale &plusmn;${v.kernels[l - 1].range.toFixed(3)}</p></div><div>`;
  h += `<h4 title="On the ${esc(v.stats.split)} split (${v.stats.images} images), after the activation, before pooling">Statistics on ${esc(v.stats.split)}</h4><table>`;
  h += `<tr><td class="txt"><span class="def" title="mean activation over images and positions">mean</span></td><td>${s.mean.toFixed(4)}</td></tr>`;
  h += `<tr><td class="txt"><span class="def" title="share of (image, position) pairs where the activation is not zero">active</span></td><td>${pct1(s.active_fraction)}</td></tr>`;
  h += `<tr><td class="txt"><span class="def" title="share of images on which the whole map is zero (dead for that image)">silent</span></td><td>${pct1(s.silent_fraction)}</td></tr></table>`;
  const cmax = Math.max(...s.per_class, 1e-9);
  h += `<table><tr><th class="txt" title="mean activation over the class's images">class</th><th>mean</th><th></th></tr>${s.per_class.map((m, c) => `<tr><td class="txt">${esc(v.classes[c])}</td><td>${m.toFixed(4)}</td><td class="txt"><span class="hbar" style="width:${Math.round(70 * m / cmax)}px"></span></td></tr>`).join("")}</table>`;
  for (const fr of s.by_factor) {
    const fmax = Math.max(...fr.bins.map((b) => b.mean), 1e-9);
    h += `<table><tr><th class="txt" title="mean activation in equal-width bins of the factor">${esc(fr.factor)}</th><th>mean</th><th></th></tr>${fr.bins.map((b) => `<tr><td class="txt" title="${b.images} images">${b.low.toFixed(1)}&ndash;${b.high.toFixed(1)}</td><td>${b.mean.toFixed(4)}</td><td class="txt"><span class="hbar" style="width:${Math.round(70 * b.mean / fmax)}px"></span></td></tr>`).join("")}</table>`;
  }
  h += `</div><div>${recorded(l, f)}<div id="filter-analysis">${analysisOf(l, f)}</div></div></div>`;
  el.innerHTML = h;
  const k = v.kernel, w = v.kernels[l - 1];
  const kern = $("kernel");
  for (let c = 0; c < w.inputs; c++) {
    const cv = paint(document.createElement("canvas"), w.weights[f - 1].slice(c * k * k, (c + 1) * k * k), k, k, w.range, diverging);
    cv.title = l === 1 ? "the input" : `from L${l - 1} F${c + 1}`;
    kern.appendChild(cv);
  }
  await refreshFilterMaps();
}

// The dissection label and the family across seeds, as the store and the study recorded them.
function recorded(l, f) {
  const v = cur.view;
  let h = "<h4>What it detects</h4>";
  const d = v.dissection?.layers[l - 1]?.[f - 1];
  if (!v.dissection) h += `<p class="sub">Not dissected: run <code>shapelab dissect</code> (the study dissects every learned run).</p>`;
  else if (d.label) h += `<p>Dissection label <b>${esc(d.label)}</b> <span class="sub def" title="IoU of its top-quantile pixels with the concept's mask, on the ${esc(v.dissection.split)} split (${v.dissection.images} images), above the concept's chance level from initial filters by this margin">(IoU ${d.best_iou.toFixed(3)}, ${d.label_margin.toFixed(3)} above chance)</span></p>`;
  else h += `<p>No label: its best concept, ${esc(d.best)} <span class="sub">(IoU ${d.best_iou.toFixed(3)})</span>, <span class="def" title="the 95th percentile of the IoUs initial filters reach with that concept">does not clear chance</span>.</p>`;
  h += "<h4>Across seeds</h4>";
  if (v.families_error) return h + `<p class="error">${esc(v.families_error)}</p>`;
  if (!v.families) return h + `<p class="sub">No family recorded for this run: the study's stage 6 measures families for its case nets.</p>`;
  const fam = v.families.layers[l - 1]?.[f - 1];
  if (!fam) return h + `<p>A seed's own: no other learned run's matched filter clears the bar <span class="sub">(${esc(v.families.file)})</span>.</p>`;
  return h + `<p>Family of the reference's L${l} F${fam.family}${fam.correlation == null ? " (this run is the reference)" : `, correlation ${fam.correlation.toFixed(3)}`}: <span class="def" title="other learned runs whose matched filter correlates above the bar (the 95th percentile of initial filters' matched correlations, ${fam.bar.toFixed(3)}), with a Wilson 95% interval">${fam.learned_with} of ${fam.learned_runs} other learned runs have it [${pct(fam.interval[0])}, ${pct(fam.interval[1])}]</span>${fam.label ? `; most frequent label ${esc(fam.label[0])} (${fam.label[1]} of ${fam.label[2]} dissected)` : ""}.</p>`;
}

async function refreshFilterMaps() {
  const { l, f } = cur.selected, v = cur.view;
  try {
    const m = await api("/api/filter", { run: cur.key, off: offList(), layer: l, filter: f });
    if (!cur.selected || cur.selected.l !== l || cur.selected.f !== f) return;
    const el = $("filter-maps");
    el.innerHTML = "";
    m.maps.forEach((mp, i) => {
      const fig = document.createElement("figure");
      fig.appendChild(paint(document.createElement("canvas"), mp, m.width, m.height, m.max, gray));
      fig.insertAdjacentHTML("beforeend", `<figcaption>${esc(v.panel.captions[i] || i)}</figcaption>`);
      el.appendChild(fig);
    });
    $("filter-max").textContent = m.max > 0 ? `(white = ${m.max.toFixed(3)})` : "(silent on every panel image)";
  } catch (err) { failed($("filter-maps"), err); }
}

// ---- the pruning table and twins (computed once per run on the server) ------------------
async function loadAnalysis(key) {
  $("replay-step").textContent = "computing the table\u2026";
  try {
    const a = await api(`/api/analysis?run=${encodeURIComponent(key)}`);
    if (cur.key !== key) return;
    cur.analysis = a; cur.step = 0;
    showStep();
    if (cur.selected) $("filter-analysis").innerHTML = analysisOf(cur.selected.l, cur.selected.f);
  } catch (err) { $("replay-step").textContent = err.message; }
}

function showStep() {
  const a = cur.analysis;
  if (!a) return;
  const p = a.pruning, n = p.steps.length;
  const el = $("replay-step");
  if (cur.step === 0) {
    el.innerHTML = `step 0 of ${n}: the whole network, <span class="def" title="validation accuracy, the split the table chose on (${p.images} images)">${p.initial_accuracy.toFixed(4)}</span>`;
  } else {
    const st = p.steps[cur.step - 1];
    const held = p.held_out ? `, held-out ${p.held_out.after[cur.step - 1].toFixed(4)}` : "";
    el.innerHTML = `step ${cur.step} of ${n}: removed ${st.removed.map((r) => `L${r.layer} F${r.filter}`).join(", ")}; table <span class="def" title="validation accuracy after the step, as the table chose it; the number below is recomputed by the page on the split chosen">${st.accuracy_after.toFixed(4)}</span>${held}`;
  }
  el.title = a.source;
}

function replay(delta) {
  const a = cur.analysis;
  if (!a) return;
  cur.step = Math.min(Math.max(cur.step + delta, 0), a.pruning.steps.length);
  cur.off = new Set(a.pruning.steps.slice(0, cur.step).flatMap((s) => s.removed.map((r) => `${r.layer}:${r.filter}`)));
  showStep();
  refresh();
}

function analysisOf(l, f) {
  const a = cur.analysis;
  if (!a) return `<h4>Pruning and twins</h4><p class="sub">computing&hellip;</p>`;
  const p = a.pruning;
  const row = p.filters.findIndex((x) => x.layer === l && x.filter === f);
  let h = `<h4 title="Its row of the greedy pruning table: the validation accuracy if it were removed at each step; the step where it was removed is marked">Its row of the pruning table</h4><div class="scroll"><table><tr><th class="txt">step</th>${p.steps.map((_, i) => `<th>${i + 1}</th>`).join("")}</tr><tr><td class="txt">if removed</td>`;
  h += p.steps.map((st) => {
    const acc = st.accuracies[row];
    const removed = st.removed.some((r) => r.layer === l && r.filter === f);
    return `<td${removed ? ' style="background:#fde2a8;font-weight:600" title="removed at this step"' : ""}>${acc == null ? "&ndash;" : acc.toFixed(3)}</td>`;
  }).join("");
  h += "</tr></table></div>";
  if (p.survivors.some((x) => x.layer === l && x.filter === f)) h += `<p>It survives in the minimal network.</p>`;
  const sim = a.similarity.layers[l - 1];
  const corr = sim.activation_correlation || sim.activation_cosine;
  const others = corr[f - 1].map((c, j) => [c, j + 1]).filter(([, j]) => j !== f).sort((x, y) => y[0] - x[0]);
  const twins = others.filter(([c]) => c >= a.similarity.threshold);
  h += `<h4 title="Pearson correlation of the maps with each other filter of the layer over the held-out split; twins correlate at ${a.similarity.threshold}% or more">Twins</h4>`;
  h += twins.length ? `<p>${twins.map(([c, j]) => `L${l} F${j} (${c.toFixed(1)}%)`).join(", ")}</p>` : `<p>None at ${a.similarity.threshold}% or more.</p>`;
  h += `<p class="sub">Most alike: ${others.slice(0, 3).map(([c, j]) => `F${j} ${c.toFixed(1)}%`).join(", ")}${a.similarity.null ? `; median pair ${a.similarity.null.median_correlation[l - 1][0].toFixed(1)}% trained against ${a.similarity.null.median_correlation[l - 1][1].toFixed(1)}% at initialisation` : ""}.</p>`;
  return h;
}

// ---- two runs side by side ----------------------------------------------------------------
async function showCompare(other) {
  const el = $("compare");
  cur.other = null;
  if (!other) { el.hidden = true; return; }
  el.hidden = false;
  el.innerHTML = "matching the filters&hellip;";
  try {
    const [m, bv] = await Promise.all([
      api(`/api/compare?a=${encodeURIComponent(cur.key)}&b=${encodeURIComponent(other)}`),
      api(`/api/run?run=${encodeURIComponent(other)}`),
    ]);
    cur.other = { key: other, matching: m, view: bv };
    let h = `<h3>This run and ${esc(other)}, filter to filter</h3><p class="sub">Each of this run's filters beside the other run's filter matched to it (chosen on ${m.chosen_on}, the correlation of their maps measured on the ${m.split} split); maps on the input above, each pair on one scale.</p>`;
    m.layers.forEach((pairs, l) => {
      h += `<h4>Layer ${l + 1}</h4><div class="pairs">${pairs.map((p) => `<div class="pair" data-l="${l + 1}" data-a="${p.a + 1}" data-b="${p.b + 1}"><span>L${l + 1} F${p.a + 1}</span><canvas class="ma"></canvas><canvas class="mb"></canvas><span>F${p.b + 1}</span><span class="def" title="correlation of the two filters' maps over the ${m.split} split">r ${p.correlation.toFixed(2)}</span></div>`).join("")}</div>`;
    });
    el.innerHTML = h;
    await refreshCompareMaps();
  } catch (err) { failed(el, err); }
}

async function refreshCompareMaps() {
  const o = cur.other;
  if (!o) return;
  // The other run reads the same image, with every filter on.
  const image = cur.image;
  const [a, b] = await Promise.all([
    api("/api/maps", { run: cur.key, off: offList(), image }),
    api("/api/maps", { run: o.key, off: [], image: image.panel === undefined ? image : { pixels: cur.view.panel.images[image.panel] } }),
  ]);
  for (const div of $("compare").querySelectorAll(".pair")) {
    const l = +div.dataset.l - 1, ma = a.layers[l].maps[+div.dataset.a - 1], mb = b.layers[l].maps[+div.dataset.b - 1];
    const max = Math.max(...ma, ...mb);
    paint(div.querySelector(".ma"), ma, a.layers[l].width, a.layers[l].height, max, gray);
    paint(div.querySelector(".mb"), mb, b.layers[l].width, b.layers[l].height, max, gray);
  }
}

// ---- drawing and uploading ----------------------------------------------------------------
function setupPad() {
  const pad = $("pad"), ctx = pad.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let down = false, last = null;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
  pad.addEventListener("pointerdown", (e) => { down = true; last = at(e); pad.setPointerCapture(e.pointerId); });
  pad.addEventListener("pointermove", (e) => {
    if (!down) return;
    const p = at(e);
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 18; ctx.lineCap = "round";
    ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
    last = p;
  });
  pad.addEventListener("pointerup", () => { down = false; });
  $("pad-clear").addEventListener("click", clear);
  $("pad-use").addEventListener("click", () => readPad());
  $("upload").addEventListener("change", async () => {
    const file = $("upload").files[0];
    if (!file || !cur.key) return;
    try {
      const p = await api(`/api/image?run=${encodeURIComponent(cur.key)}`, await file.arrayBuffer(), true);
      useImage(p.pixels, `read ${file.name}`);
    } catch (err) { $("draw-note").innerHTML = `<span class="error">${esc(err.message)}</span>`; }
  });
}

// The drawing shrunk to the network's size (area average), as gray pixels.
function readPad() {
  const v = cur.view;
  if (!v) return;
  const small = document.createElement("canvas");
  small.width = v.width; small.height = v.height;
  const sctx = small.getContext("2d");
  sctx.imageSmoothingEnabled = true; sctx.imageSmoothingQuality = "high";
  sctx.drawImage($("pad"), 0, 0, v.width, v.height);
  const d = sctx.getImageData(0, 0, v.width, v.height).data;
  const px = [];
  for (let i = 0; i < v.width * v.height; i++) px.push(d[4 * i]);
  useImage(px, "read your drawing");
}

function useImage(pixels, note) {
  cur.image = { pixels };
  $("draw-note").textContent = `The network ${note}: see the input, the maps and the prediction above.`;
  refreshMaps();
  if (cur.other) refreshCompareMaps();
  $("net").scrollIntoView({ block: "nearest" });
}

// ---- wiring -----------------------------------------------------------------------------
$("split").addEventListener("change", refreshNumbers);
$("all-on").addEventListener("click", () => { cur.off = new Set(); cur.step = 0; showStep(); refresh(); });
$("replay-back").addEventListener("click", () => replay(-1));
$("replay-next").addEventListener("click", () => replay(1));
$("compare-with").addEventListener("change", () => showCompare($("compare-with").value));
setupPad();

(async () => {
  try {
    const s = await api("/api/source");
    $("served").textContent = s.name;
    const link = new URLSearchParams(location.hash.slice(1));
    if (s.kind === "run") {
      $("grid").hidden = true;
      $("intro").textContent = "One model directory, served alone. Click a filter for its details, its corner to switch it off: every number and map is computed again, exactly (the smaller network's).";
    } else await showGrid();
    const key = s.kind === "run" ? s.run : link.get("run");
    if (key) {
      await showRun(key, () => {
        if (link.get("off")) cur.off = new Set(link.get("off").split(","));
      });
      const [l, f] = (link.get("filter") || "").split(":").map(Number);
      if (l && f) await selectFilter(l, f);
    }
  } catch (e) { failed($("grid-body"), e); }
})();
