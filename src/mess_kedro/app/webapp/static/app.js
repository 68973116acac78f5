// The listening room's page: plain DOM, no build step. Every value from the server is put in
// the page as text (textContent), never as HTML. URLs are relative, so the page works as well
// behind a reverse proxy that serves it under a sub-path.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, query: null, upload: null, offset: 0, passageEnd: null, triplet: null };

function status(message) { $("status").textContent = message || ""; }

async function api(path, options) {
  // Writes carry X-Mess-Kedro: a page of another site cannot send it without a preflight the room never grants.
  const request = { ...(options || {}) };
  if (request.method && request.method !== "GET") request.headers = { ...(request.headers || {}), "X-Mess-Kedro": "1" };
  const response = await fetch(path, request);
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function cell(row, text) { const td = row.insertCell(); td.textContent = text ?? ""; td.title = text ?? ""; return td; }
function button(label, onClick, className) {
  const b = document.createElement("button");
  b.textContent = label; b.addEventListener("click", onClick);
  if (className) b.className = className;
  return b;
}

// -- playing ------------------------------------------------------------------------------
function play(track, from, to) {
  const player = $("player");
  const url = `api/tracks/${encodeURIComponent(track.track_id)}/audio`;
  state.passageEnd = to ?? null;
  const start = () => { if (from) player.currentTime = from; player.play().catch(() => {}); };
  if (player.dataset.track !== track.track_id) {
    player.dataset.track = track.track_id;
    player.src = url;
    player.addEventListener("loadedmetadata", start, { once: true });
  } else {
    start();
  }
  $("now").textContent = `${track.title ?? track.track_id} · ${track.performer ?? ""}` +
    (from != null ? ` · from ${from.toFixed(1)} s` : "");
}

function initPlayer() {
  $("player").addEventListener("timeupdate", () => {
    const p = $("player");
    if (state.passageEnd != null && p.currentTime >= state.passageEnd) { p.pause(); state.passageEnd = null; }
  });
}

// -- collection ---------------------------------------------------------------------------
async function loadTracks(append) {
  if (!append) state.offset = 0;
  const params = new URLSearchParams({ sort: $("sort").value, descending: $("descending").checked,
    offset: state.offset, limit: 200 });
  if ($("filter").value) params.set("q", $("filter").value);
  if ($("split").value) params.set("split", $("split").value);
  const page = await api(`api/tracks?${params}`);
  const body = $("tracks").tBodies[0];
  if (!append) body.replaceChildren();
  for (const track of page.tracks) {
    const row = body.insertRow();
    row.dataset.track = track.track_id;
    row.insertCell().append(button("▶", () => play(track), "play"));
    for (const key of ["title", "composer", "performer", "piece", "split"]) cell(row, track[key] ?? "unknown");
    cell(row, track.duration_s != null ? track.duration_s.toFixed(1) : "");
    row.insertCell().append(button("similar", () => { selectQuery(track); search(); }, "query"));
  }
  state.offset += page.tracks.length;
  $("more").hidden = state.offset >= page.total;
  return page;
}

function selectQuery(track) {
  state.query = track; state.upload = null; $("upload").value = "";
  $("query-name").textContent = `${track.title ?? track.track_id} (${track.performer ?? "?"})`;
  for (const row of $("tracks").tBodies[0].rows) row.classList.toggle("current", row.dataset.track === track.track_id);
  $("passage-box").hidden = !state.info.passages;
}

// -- search -------------------------------------------------------------------------------
function searchParams() {
  const params = new URLSearchParams({ n: $("n").value });
  const mode = document.querySelector("input[name=mode]:checked").value;
  if (mode !== "fused") params.set("method", $("method").value);  // the whole-layer baseline is an aspect's
  if (mode === "aspect" && $("aspect").value) params.set("aspect", $("aspect").value);
  if (mode === "fused" && $("fused").value) params.set("fused", $("fused").value);
  if (mode === "weights") {
    const pairs = [...$("sliders").querySelectorAll("input")].filter((s) => Number(s.value) > 0)
      .map((s) => `${s.dataset.aspect}:${s.value}`);
    if (!pairs.length) throw new Error("move at least one slider above 0");
    params.set("weights", pairs.join(","));
  }
  return params;
}

async function search() {
  try {
    const params = searchParams();
    let answer;
    if (state.upload) {
      status(`embedding ${state.upload.name}…`);
      answer = await api(`api/similar?${params}`, { method: "POST", body: state.upload });
    } else if (state.query) {
      if ($("same-piece").checked) params.set("exclude_same_piece", "true");
      answer = await api(`api/similar/${encodeURIComponent(state.query.track_id)}?${params}`);
    } else {
      throw new Error("choose a track (similar) or a file first");
    }
    status(answer.note || "");
    showResults(answer);
  } catch (error) { status(error.message); }
}

function showResults(answer) {
  $("searched").textContent = `${answer.label}: ${answer.searched}`;
  const body = $("results").tBodies[0];
  body.replaceChildren();
  answer.results.forEach((track, i) => {
    const row = body.insertRow();
    row.dataset.track = track.track_id;
    cell(row, String(i + 1));
    for (const key of ["title", "performer", "piece"]) cell(row, track[key] ?? "unknown");
    // An aspect hit reads in the factor's units ("≈ 6 velocity softer"), not as a 4-decimal score.
    cell(row, track.difference ? `${track.difference}; closer than ${track.closer_than} %` : track.score.toFixed(4));
    const actions = row.insertCell();
    actions.append(button("▶", () => play(track), "play"));
    if (state.info.passages && state.query && track.piece === state.query.piece) {
      actions.append(button("▶ passage", () => playPassageIn(track), "passage"));  // the same bars as the query's
    }
  });
  document.body.dataset.results = String(answer.results.length);
}

function initUpload() {
  $("upload").addEventListener("change", () => {
    const file = $("upload").files[0];
    if (!file) return;
    if (file.size > state.info.max_upload_bytes) { status(`${file.name} is over the upload limit`); return; }
    state.upload = file; state.query = null;
    $("query-name").textContent = file.name;
    $("passage-box").hidden = true;
    const player = $("player");
    player.dataset.track = ""; player.src = URL.createObjectURL(file);
    $("now").textContent = `${file.name} (your file)`;
  });
}

// -- passages -----------------------------------------------------------------------------
function queryPassage() {
  // the passage starting where the player is in the query track (its start when another track plays)
  const at = $("player").dataset.track === state.query.track_id ? $("player").currentTime : 0;
  const params = new URLSearchParams({ at: at.toFixed(2), length: $("passage-length").value });
  return api(`api/passages/${encodeURIComponent(state.query.track_id)}?${params}`);
}

async function playPassageIn(track) {
  try {
    const found = (await queryPassage()).passages.find((p) => p.track_id === track.track_id);
    if (!found) { status(`no aligned passage in ${track.title ?? track.track_id}`); return; }
    status("");
    play(track, found.start_s, found.end_s);
  } catch (error) { status(error.message); }
}

async function findPassage() {
  if (!state.query) return;
  try {
    const answer = await queryPassage();
    const body = $("passages").tBodies[0];
    body.replaceChildren();
    for (const p of answer.passages) {
      const track = await api(`api/tracks/${encodeURIComponent(p.track_id)}`);
      const row = body.insertRow();
      cell(row, track.title ?? "unknown"); cell(row, track.performer ?? "unknown");
      cell(row, p.start_s.toFixed(1)); cell(row, p.end_s.toFixed(1)); cell(row, p.route);
      row.insertCell().append(button("▶ passage", () => play(track, p.start_s, p.end_s), "play"));
    }
    status("");
  } catch (error) { status(error.message); }
}

// -- tabs: map, probing, report -----------------------------------------------------------
function loadPlotly() {
  if (window.Plotly) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "static/plotly.min.js"; script.onload = resolve; script.onerror = reject;
    document.head.append(script);
  });
}

async function drawMap() {
  try {
    const params = new URLSearchParams({ index: $("map-index").value, method: $("map-method").value });
    status("placing the collection…");
    const [answer] = await Promise.all([api(`api/map?${params}`), loadPlotly()]);
    const by = $("map-colour").value;
    const groups = {};
    for (const p of answer.points) (groups[p[by] ?? "?"] ??= []).push(p);
    const traces = Object.entries(groups).map(([name, points]) => ({
      type: answer.points.length > 2000 ? "scattergl" : "scatter", mode: "markers", name, x: points.map((p) => p.x), y: points.map((p) => p.y),
      text: points.map((p) => `${p.title} · ${p.performer}`), customdata: points.map((p) => p.track_id),
      hoverinfo: "text",
    }));
    await Plotly.newPlot("map", traces, { margin: { t: 20 }, legend: { font: { size: 10 } } }, { responsive: true });
    $("map").removeAllListeners?.("plotly_click");
    $("map").on("plotly_click", async (event) => {
      const id = event.points[0].customdata;
      play(await api(`api/tracks/${encodeURIComponent(id)}`));
    });
    document.body.dataset.map = answer.index;
    status("");
  } catch (error) { status(error.message); }
}

async function drawProbing() {
  try {
    const [answer] = await Promise.all([api("api/probing"), loadPlotly()]);
    await Plotly.newPlot("heatmap", [{ type: "heatmap", z: answer.r2, x: answer.targets, y: answer.layers,
      zmin: 0, zmax: 1, colorscale: "Viridis", colorbar: { title: "R²" } }],
    { title: `Probing R² (cross-validated, training split): ${answer.label}`, margin: { b: 140 } }, { responsive: true });
    document.body.dataset.probing = "drawn";
  } catch (error) { status(error.message); }
}

// The report's markdown as elements (headings, tables, lists, code, paragraphs), every piece of
// text set with textContent: nothing from the server is parsed as HTML.
function renderMarkdown(text, into) {
  into.replaceChildren();
  const lines = text.split("\n");
  const add = (tag, content) => { const el = document.createElement(tag); if (content !== undefined) el.textContent = content; into.append(el); return el; };
  const cells = (line) => line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = []; for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      add("pre", code.join("\n"));
    } else if (/^#{1,6} /.test(line)) {
      add(`h${Math.min(6, line.indexOf(" "))}`, line.replace(/^#+ /, ""));
    } else if (line.trim().startsWith("|")) {
      const table = add("table"); const head = table.createTHead().insertRow();
      for (const c of cells(line)) { const th = document.createElement("th"); th.textContent = c; head.append(th); }
      const body = table.createTBody();
      for (i += 2; i < lines.length && lines[i].trim().startsWith("|"); i++) {
        const row = body.insertRow(); for (const c of cells(lines[i])) row.insertCell().textContent = c;
      }
      i--;
    } else if (/^\s*- /.test(line)) {
      const list = add("ul");
      for (; i < lines.length && /^\s*- /.test(lines[i]); i++) { const li = document.createElement("li"); li.textContent = lines[i].replace(/^\s*- /, ""); list.append(li); }
      i--;
    } else if (line.trim()) {
      add("p", line);
    }
  }
}

async function showReport() {
  try { renderMarkdown((await api("api/report")).markdown, $("report")); document.body.dataset.report = "shown"; }
  catch (error) { $("report").textContent = error.message; }
}

function initTabs() {
  const shown = { map: false, probing: false, report: false };
  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll("#tabs button")) {
        other.classList.toggle("active", other === tab);
        $(`tab-${other.dataset.tab}`).hidden = other !== tab;
      }
      const name = tab.dataset.tab;
      if (name in shown && !shown[name]) {
        shown[name] = true;
        ({ map: drawMap, probing: drawProbing, report: showReport })[name]();
      }
    });
  }
  $("draw-map").addEventListener("click", drawMap);
}

// -- annotation ---------------------------------------------------------------------------
function describe(id, track) { $(id).textContent = `${track.title ?? track.track_id} · ${track.performer ?? ""}`; }

async function nextTriplet() {
  const annotator = $("annotator").value.trim();
  if (!annotator) { status("enter your name first: answers are stored per annotator"); return; }
  localStorage.setItem("annotator", annotator);
  try {
    const params = new URLSearchParams({ aspect: $("annotate-aspect").value, annotator });
    const t = await api(`api/annotations/proposal?${params}`);
    state.triplet = t;
    describe("t-anchor", t.anchor); describe("t-a", t.a); describe("t-b", t.b);
    $("triplet-reason").textContent = "";  // shown after the answer: it must not sway it
    $("triplet").hidden = false;
    status("");
  } catch (error) { status(error.message); }
}

async function answer(closer) {
  const t = state.triplet;
  if (!t) return;
  try {
    await api("api/annotations", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ anchor: t.anchor.track_id, a: t.a.track_id, b: t.b.track_id, closer,
        aspect: t.aspect, annotator: $("annotator").value.trim() }) });
    $("triplet-reason").textContent = `Saved. Why this triplet: ${t.reason}.`;
    document.body.dataset.annotated = String(Number(document.body.dataset.annotated || 0) + 1);
    state.triplet = null;
  } catch (error) { status(error.message); }
}

function initAnnotation() {
  $("annotator").value = localStorage.getItem("annotator") || "";
  $("next-triplet").addEventListener("click", nextTriplet);
  $("play-anchor").addEventListener("click", () => state.triplet && play(state.triplet.anchor));
  $("play-a").addEventListener("click", () => state.triplet && play(state.triplet.a));
  $("play-b").addEventListener("click", () => state.triplet && play(state.triplet.b));
  $("answer-a").addEventListener("click", () => answer("a"));
  $("answer-b").addEventListener("click", () => answer("b"));
}

// -- start --------------------------------------------------------------------------------
function option(select, value, label) {
  const o = document.createElement("option"); o.value = value; o.textContent = label ?? value; select.append(o);
}

function showInfo(info) {
  $("served").textContent = `${info.label} · ${info.tracks} tracks · ${info.aspects.length} aspects`;
  // Each aspect not offered says why, on hover: measured not to rank by its aspect, or not measurable.
  $("served").title = (info.not_served || []).map((a) => `${a.name}: ${a.reason}`).join("\n");
  if (info.random_init) {
    const badge = document.createElement("span"); badge.className = "badge";
    badge.textContent = "random-init: not a trained model"; $("served").append(" ", badge);
  }
  for (const name of info.fused) option($("fused"), name);
  $("fused").value = info.default_fused ?? "";
  for (const a of info.aspects) {
    const label = a.low_confidence ? `${a.name} (low confidence)` : a.name;
    option($("aspect"), a.name, label); option($("annotate-aspect"), a.name, label);
    const slider = document.createElement("label");
    slider.innerHTML = "<span></span><input type=range min=0 max=1 step=0.05 value=0><output>0</output>";
    slider.querySelector("span").textContent = label;
    const input = slider.querySelector("input"); input.dataset.aspect = a.name;
    input.addEventListener("input", () => { slider.querySelector("output").textContent = input.value; });
    $("sliders").append(slider);
  }
  if (!info.aspects.length) {  // nothing to search "in this respect" or to judge: offer neither
    for (const mode of ["aspect", "weights"]) document.querySelector(`input[name=mode][value=${mode}]`).closest("label").hidden = true;
    $("aspect").hidden = true; $("method").hidden = true;
    document.querySelector("#tabs button[data-tab=annotate]").hidden = true; $("tab-annotate").hidden = true;
    document.body.dataset.noAspects = "1";
  }
  for (const key of info.indices) option($("map-index"), key);
  $("map-index").value = info.default_fused ? `fused-${info.default_fused}` : info.indices[0];
  for (const m of info.map_methods) option($("map-method"), m);
  $("n").value = info.results; $("n").max = info.max_results;
}

async function start() {
  initPlayer(); initUpload(); initTabs(); initAnnotation();
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => { $("sliders").hidden = radio.value !== "weights" || !radio.checked; });
  }
  $("go").addEventListener("click", search);
  $("find-passage").addEventListener("click", findPassage);
  $("more").addEventListener("click", () => loadTracks(true));
  let typing;
  $("filter").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => loadTracks(false), 200); });
  for (const id of ["split", "sort", "descending"]) $(id).addEventListener("change", () => loadTracks(false));
  try {
    state.info = await api("api/info");
    showInfo(state.info);
    const page = await loadTracks(false);
    for (const split of ["train", "validation", "test"]) option($("split"), split);
    if (page.tracks.length) { selectQuery(page.tracks[0]); await search(); }  // first results at once
  } catch (error) { status(error.message); }
}

document.addEventListener("DOMContentLoaded", start);
