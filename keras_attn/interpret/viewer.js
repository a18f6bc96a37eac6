/* keras-attn attention viewer: inlined into each page by viewer.py.
 *
 * The page embeds one JSON document (script#viewer-data):
 *   sequences: {name: [token, ...]}
 *   kinds:     {kind: {queries: sequence name, keys: sequence name}}
 *   views:     [{name, kinds: {kind: {heads: [heads per layer],
 *                                     layers: [[{s: scale, n: signed, d: base64}, ...], ...]}}}]
 *   scores:    {name: {sequence name: [number, ...]}}
 * Each matrix is row-major (queries x keys), quantised to one byte per weight on a square-root
 * scale (so small weights survive: 0.001 of a scale of 1 is byte 8) and zlib-compressed; it is
 * decoded the first time it is shown and kept.
 *
 * Only the visible token rows are drawn and, on hover, only the hovered token's weights, so the
 * page stays responsive on thousands of tokens. The URL hash holds the state (view, kind, layer,
 * head, query or key, scores) and setting it selects it; `probe` adds canvas checksums to
 * <body data-*> for tests.
 */
(function () {
  "use strict";

  const ROW = 18;             // pixels per token row
  const TOKEN_WIDTH = 150;    // pixels per token column
  const HEAT_SIZE = 480;      // the heatmap's longer side, in CSS pixels
  const MIN_ALPHA = 0.02;     // lines fainter than this are not drawn
  const TOP_KEYS = 8;         // weights listed under the heatmap

  const data = JSON.parse(document.getElementById("viewer-data").textContent);
  // The parsed copy is all the page needs: dropping the text frees its memory.
  document.getElementById("viewer-data").remove();
  const body = document.body;
  const $ = (id) => document.getElementById(id);
  const started = performance.now();

  const state = { view: 0, kind: null, layer: 0, head: "all", focus: null, pinned: null,
                  scores: "", probe: false };
  const cache = new Map();

  // ------------------------------------------------------------------ decoding

  function base64Bytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  function lookupTable(scale, signed) {
    const table = new Float32Array(256);
    for (let q = 0; q < 256; q++) {
      if (signed) {
        const r = (q - 128) / 127;
        table[q] = Math.sign(r) * r * r * scale;
      } else {
        const r = q / 255;
        table[q] = r * r * scale;
      }
    }
    return table;
  }

  async function decodeMatrix(encoded) {
    const bytes = await inflate(base64Bytes(encoded.d));
    const table = lookupTable(encoded.s, !!encoded.n);
    const values = new Float32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) values[i] = table[bytes[i]];
    return values;
  }

  function kindData(view, kind) { return data.views[view].kinds[kind]; }

  // The (queries x keys) matrix of one head, or the mean of a layer's heads for head "all".
  function matrix(view, kind, layer, head) {
    const key = [view, kind, layer, head].join("|");
    if (!cache.has(key)) {
      const entry = kindData(view, kind);
      let promise;
      if (head === "all") {
        const heads = entry.layers[layer].map((_, h) => matrix(view, kind, layer, h));
        promise = Promise.all(heads).then((all) => {
          const mean = new Float32Array(all[0].length);
          for (const values of all) for (let i = 0; i < mean.length; i++) mean[i] += values[i];
          for (let i = 0; i < mean.length; i++) mean[i] /= all.length;
          return mean;
        });
      } else {
        promise = decodeMatrix(entry.layers[layer][head]);
      }
      cache.set(key, promise);
    }
    return cache.get(key);
  }

  // ------------------------------------------------------------------ colours

  // Viridis at five stops (sequential) and a blue-white-red map (signed), 256 entries each.
  function ramp(stops) {
    const colors = new Uint8ClampedArray(256 * 3);
    for (let i = 0; i < 256; i++) {
      const t = (i / 255) * (stops.length - 1);
      const k = Math.min(Math.floor(t), stops.length - 2);
      const f = t - k;
      for (let c = 0; c < 3; c++) {
        colors[i * 3 + c] = stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f;
      }
    }
    return colors;
  }
  const SEQUENTIAL = ramp([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                           [253, 231, 37]]);
  const DIVERGING = ramp([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130],
                          [178, 24, 43]]);

  // ------------------------------------------------------------------ state

  function current() {
    const view = data.views[state.view];
    const kind = view.kinds[state.kind];
    return { view, kind, queries: data.sequences[data.kinds[state.kind].queries],
             keys: data.sequences[data.kinds[state.kind].keys] };
  }

  function clampState() {
    const view = data.views[state.view];
    if (!(state.kind in view.kinds)) state.kind = Object.keys(view.kinds)[0];
    const entry = view.kinds[state.kind];
    if (!(state.layer >= 0 && state.layer < entry.heads.length)) state.layer = 0;
    const heads = entry.heads[state.layer];
    if (state.head !== "all" && !(state.head >= 0 && state.head < heads)) state.head = "all";
    if (heads === 1 && state.head === "all") state.head = 0;
    const { queries, keys } = current();
    for (const which of ["focus", "pinned"]) {
      const focus = state[which];
      if (focus && !(focus.index >= 0 &&
                     focus.index < (focus.side === "query" ? queries : keys).length)) {
        state[which] = null;
      }
    }
    if (state.scores && !(state.scores in data.scores)) state.scores = "";
  }

  function readHash() {
    const params = new URLSearchParams(data.selected || {});
    for (const [name, value] of new URLSearchParams(location.hash.slice(1))) {
      params.set(name, value);
    }
    const viewName = params.get("view");
    const viewIndex = data.views.findIndex((v) => v.name === viewName);
    if (viewIndex >= 0) state.view = viewIndex;
    if (params.has("kind")) state.kind = params.get("kind");
    if (params.has("layer")) state.layer = parseInt(params.get("layer"), 10);
    if (params.has("head")) {
      const head = params.get("head");
      state.head = head === "all" ? "all" : parseInt(head, 10);
    }
    for (const side of ["query", "key"]) {
      if (params.has(side)) state.pinned = { side, index: parseInt(params.get(side), 10) };
    }
    if (params.has("scores")) state.scores = params.get("scores");
    state.probe = params.has("probe");
    state.focus = state.pinned;
  }

  function writeHash() {
    const params = new URLSearchParams();
    params.set("view", data.views[state.view].name);
    params.set("kind", state.kind);
    params.set("layer", state.layer);
    params.set("head", state.head);
    if (state.pinned) params.set(state.pinned.side, state.pinned.index);
    if (state.scores) params.set("scores", state.scores);
    if (state.probe) params.set("probe", "1");
    history.replaceState(null, "", "#" + params.toString());
  }

  // ------------------------------------------------------------------ controls

  function fillSelect(select, options, value) {
    select.textContent = "";
    for (const [optionValue, label] of options) {
      const option = document.createElement("option");
      option.value = String(optionValue);
      option.textContent = label;
      select.appendChild(option);
    }
    select.value = String(value);
    select.disabled = options.length < 2;
  }

  function syncControls() {
    const view = data.views[state.view];
    const entry = view.kinds[state.kind];
    fillSelect($("view"), data.views.map((v, i) => [i, v.name]), state.view);
    fillSelect($("kind"), Object.keys(view.kinds).map((k) => {
      const kind = data.kinds[k];
      return [k, kind.queries === kind.keys ? k : `${k} (${kind.queries} \u2192 ${kind.keys})`];
    }), state.kind);
    fillSelect($("layer"), entry.heads.map((_, l) => [l, String(l)]), state.layer);
    const heads = entry.heads[state.layer];
    const headOptions = [];
    if (heads > 1) headOptions.push(["all", "all (mean)"]);
    for (let h = 0; h < heads; h++) headOptions.push([h, String(h)]);
    fillSelect($("head"), headOptions, state.head);
    const scoreNames = Object.keys(data.scores);
    fillSelect($("scores"), [["", "none"], ...scoreNames.map((n) => [n, n])], state.scores);
    $("scores-label").style.display = scoreNames.length ? "" : "none";
  }

  function onControl(event) {
    const id = event.target.id;
    const value = event.target.value;
    if (id === "view") state.view = parseInt(value, 10);
    if (id === "kind") { state.kind = value; state.pinned = state.focus = null; }
    if (id === "layer") state.layer = parseInt(value, 10);
    if (id === "head") state.head = value === "all" ? "all" : parseInt(value, 10);
    if (id === "scores") state.scores = value;
    update();
  }

  // ------------------------------------------------------------------ drawing

  let shown = null;       // the matrix on screen: {values, rows, columns, max, signed}
  let heatImage = null;   // the matrix as an offscreen canvas, one pixel per weight

  function scaledCanvas(canvas, width, height) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    return context;
  }

  function paintHeatImage() {
    const { values, rows, columns, max, signed } = shown;
    const canvas = document.createElement("canvas");
    canvas.width = columns;
    canvas.height = rows;
    const context = canvas.getContext("2d");
    const image = context.createImageData(columns, rows);
    const pixels = image.data;
    const colors = signed ? DIVERGING : SEQUENTIAL;
    const inverse = max > 0 ? 1 / max : 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i] * inverse;
      // Square-root scale, as the encoding: small weights stay visible.
      const index = signed
        ? Math.round(127.5 + 127.5 * Math.sign(v) * Math.sqrt(Math.abs(v)))
        : Math.round(255 * Math.sqrt(Math.max(v, 0)));
      pixels[i * 4] = colors[index * 3];
      pixels[i * 4 + 1] = colors[index * 3 + 1];
      pixels[i * 4 + 2] = colors[index * 3 + 2];
      pixels[i * 4 + 3] = 255;
    }
    context.putImageData(image, 0, 0);
    heatImage = canvas;
  }

  function heatGeometry() {
    const { rows, columns } = shown;
    const scale = HEAT_SIZE / Math.max(rows, columns);
    return { width: Math.max(1, Math.round(columns * scale)),
             height: Math.max(1, Math.round(rows * scale)), scale };
  }

  function drawHeatmap() {
    const canvas = $("heatmap");
    const { width, height, scale } = heatGeometry();
    const context = scaledCanvas(canvas, width, height);
    context.imageSmoothingEnabled = shown.rows * 2 > height;
    context.drawImage(heatImage, 0, 0, width, height);
    const focus = state.focus;
    if (focus) {
      context.strokeStyle = "#ff3b30";
      context.lineWidth = Math.max(1, scale);
      context.beginPath();
      if (focus.side === "query") {
        const y = (focus.index + 0.5) * scale;
        context.moveTo(0, y); context.lineTo(width, y);
      } else {
        const x = (focus.index + 0.5) * scale;
        context.moveTo(x, 0); context.lineTo(x, height);
      }
      context.stroke();
    }
  }

  // The focused token's weights: a row (what a query attends to) or a column (who attends to a key).
  function focusWeights() {
    const focus = state.focus;
    if (!focus) return null;
    const { values, rows, columns } = shown;
    if (focus.side === "query") return values.subarray(focus.index * columns,
                                                       (focus.index + 1) * columns);
    const column = new Float32Array(rows);
    for (let r = 0; r < rows; r++) column[r] = values[r * columns + focus.index];
    return column;
  }

  function drawTokens() {
    const { queries, keys } = current();
    const scroll = $("tokens-scroll");
    const rowsShown = Math.max(queries.length, keys.length);
    $("tokens-spacer").style.height = Math.max(0, rowsShown * ROW - scroll.clientHeight) + "px";
    const width = scroll.clientWidth;
    const height = Math.min(scroll.clientHeight, rowsShown * ROW + 8);
    const context = scaledCanvas($("tokens"), width, height);
    const top = scroll.scrollTop;
    const first = Math.floor(top / ROW);
    const last = Math.min(rowsShown, Math.ceil((top + height) / ROW) + 1);
    const leftX = 12, rightX = width - TOKEN_WIDTH - 12;
    const y = (i) => i * ROW - top + ROW / 2 + 4;
    const weights = focusWeights();
    const signed = shown.signed;
    const focus = state.focus;

    context.clearRect(0, 0, width, height);
    if (weights) {
      let peak = 0;
      for (const w of weights) peak = Math.max(peak, Math.abs(w));
      const fromX = focus.side === "query" ? leftX + TOKEN_WIDTH : rightX;
      const toX = focus.side === "query" ? rightX : leftX + TOKEN_WIDTH;
      const others = focus.side === "query" ? keys : queries;
      const highlightX = focus.side === "query" ? rightX : leftX;
      for (let i = 0; i < weights.length; i++) {
        const alpha = peak > 0 ? Math.abs(weights[i]) / peak : 0;
        if (alpha < MIN_ALPHA) continue;
        const color = signed && weights[i] < 0 ? "178, 24, 43" : "46, 111, 183";
        context.strokeStyle = `rgba(${color}, ${alpha})`;
        context.lineWidth = 1 + 2 * alpha;
        context.beginPath();
        context.moveTo(fromX, y(focus.index));
        context.lineTo(toX, y(i));
        context.stroke();
        if (i >= first && i < last && i < others.length) {
          context.fillStyle = `rgba(${color}, ${0.6 * alpha})`;
          context.fillRect(highlightX, y(i) - ROW / 2 + 1, TOKEN_WIDTH, ROW - 2);
        }
      }
      context.fillStyle = "rgba(255, 200, 0, 0.55)";
      context.fillRect(focus.side === "query" ? leftX : rightX, y(focus.index) - ROW / 2 + 1,
                       TOKEN_WIDTH, ROW - 2);
    }
    const scores = state.scores ? data.scores[state.scores] : null;
    drawColumn(context, queries, leftX, "right", first, last, y,
               scores && scores[data.kinds[state.kind].queries]);
    drawColumn(context, keys, rightX, "left", first, last, y,
               scores && scores[data.kinds[state.kind].keys]);
  }

  function drawColumn(context, tokens, x, align, first, last, y, scores) {
    context.font = "13px ui-monospace, SFMono-Regular, Menlo, monospace";
    context.textBaseline = "middle";
    let peak = 0;
    if (scores) for (const s of scores) peak = Math.max(peak, Math.abs(s));
    for (let i = first; i < Math.min(last, tokens.length); i++) {
      if (scores && peak > 0) {
        const share = scores[i] / peak;
        context.fillStyle = share < 0 ? "rgba(178, 24, 43, 0.35)" : "rgba(46, 160, 67, 0.35)";
        const barWidth = Math.abs(share) * (TOKEN_WIDTH - 4);
        const barX = align === "right" ? x + TOKEN_WIDTH - barWidth : x;
        context.fillRect(barX, y(i) - ROW / 2 + 3, barWidth, ROW - 6);
      }
      context.fillStyle = "#1d2430";
      context.textAlign = align;
      const text = tokens[i].length > 18 ? tokens[i].slice(0, 17) + "\u2026" : tokens[i];
      context.fillText(text, align === "right" ? x + TOKEN_WIDTH - 4 : x + 4, y(i));
    }
  }

  function drawDetails() {
    const { queries, keys } = current();
    const focus = state.focus;
    const details = $("details");
    if (!focus) {
      details.textContent = "";
      body.dataset.focus = "";
      return;
    }
    const weights = focusWeights();
    const others = focus.side === "query" ? keys : queries;
    const order = Array.from(weights.keys())
      .sort((a, b) => Math.abs(weights[b]) - Math.abs(weights[a])).slice(0, TOP_KEYS);
    const own = (focus.side === "query" ? queries : keys)[focus.index];
    const verb = focus.side === "query" ? "attends to" : "is attended by";
    details.textContent = `${focus.side} ${focus.index} ${JSON.stringify(own)} ${verb}:\n` +
      order.map((i) => `  ${i} ${JSON.stringify(others[i])} ${weights[i].toFixed(4)}`).join("\n");
    body.dataset.focus = `${focus.side}:${focus.index}`;
  }

  function checksum(canvas) {
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let hash = 2166136261;
    for (let i = 0; i < pixels.length; i += 1) {
      hash = Math.imul(hash ^ pixels[i], 16777619);
    }
    return (hash >>> 0).toString(16);
  }

  function drawFocus() {
    const drawStart = performance.now();
    drawTokens();
    drawHeatmap();
    drawDetails();
    // What one hover costs: tests and curious readers find it on <body>.
    body.dataset.drawMs = (performance.now() - drawStart).toFixed(2);
    if (state.probe) {
      body.dataset.heatmapChecksum = checksum($("heatmap"));
      body.dataset.tokensChecksum = checksum($("tokens"));
    }
  }

  let generation = 0;
  async function update() {
    clampState();
    syncControls();
    writeHash();
    const ticket = ++generation;
    const values = await matrix(state.view, state.kind, state.layer, state.head);
    if (ticket !== generation) return;  // a newer choice was made meanwhile
    const { queries, keys, view } = current();
    let max = 0, signed = false;
    for (const v of values) { if (Math.abs(v) > max) max = Math.abs(v); if (v < 0) signed = true; }
    shown = { values, rows: queries.length, columns: keys.length, max, signed };
    paintHeatImage();
    const head = state.head === "all" ? "mean of heads" : `head ${state.head}`;
    $("heatmap-caption").textContent =
      `${view.name}, ${state.kind}, layer ${state.layer}, ${head}. Rows: ${queries.length} ` +
      `${data.kinds[state.kind].queries}; columns: ${keys.length} ` +
      `${data.kinds[state.kind].keys}; largest |weight| ${max.toFixed(4)}`;
    $("headings-left").textContent = data.kinds[state.kind].queries;
    $("headings-right").textContent = data.kinds[state.kind].keys;
    drawFocus();
    Object.assign(body.dataset, {
      view: view.name, kind: state.kind, layer: String(state.layer), head: String(state.head),
    });
  }

  // ------------------------------------------------------------------ events

  function tokenAt(event) {
    const canvas = $("tokens");
    const box = canvas.getBoundingClientRect();
    const x = event.clientX - box.left;
    const index = Math.floor((event.clientY - box.top + $("tokens-scroll").scrollTop) / ROW);
    const { queries, keys } = current();
    if (x < box.width / 2) return index < queries.length ? { side: "query", index } : null;
    return index < keys.length ? { side: "key", index } : null;
  }

  function heatmapAt(event) {
    if (!shown) return null;
    const box = $("heatmap").getBoundingClientRect();
    const { scale } = heatGeometry();
    const index = Math.floor((event.clientY - box.top) / scale);
    return index >= 0 && index < shown.rows ? { side: "query", index } : null;
  }

  function hover(focus) {
    const old = state.focus;
    state.focus = focus || state.pinned;
    const same = old && state.focus && old.side === state.focus.side &&
                 old.index === state.focus.index;
    if (shown && !same && (old || state.focus)) drawFocus();
  }

  function pin(focus) {
    const same = state.pinned && focus && state.pinned.side === focus.side &&
                 state.pinned.index === focus.index;
    state.pinned = same ? null : focus;
    state.focus = focus;
    writeHash();
    if (shown) drawFocus();
  }

  function start() {
    readHash();
    if (state.kind === null) state.kind = Object.keys(data.views[0].kinds)[0];
    if (data.title) $("title").textContent = data.title;
    for (const id of ["view", "kind", "layer", "head", "scores"]) {
      $(id).addEventListener("change", onControl);
    }
    const tokens = $("tokens");
    tokens.addEventListener("mousemove", (event) => hover(tokenAt(event)));
    tokens.addEventListener("mouseleave", () => hover(null));
    tokens.addEventListener("click", (event) => pin(tokenAt(event)));
    const heatmap = $("heatmap");
    heatmap.addEventListener("mousemove", (event) => hover(heatmapAt(event)));
    heatmap.addEventListener("mouseleave", () => hover(null));
    heatmap.addEventListener("click", (event) => pin(heatmapAt(event)));
    $("tokens-scroll").addEventListener("scroll", () => { if (shown) drawTokens(); },
                                        { passive: true });
    window.addEventListener("hashchange", () => { readHash(); update(); });
    window.addEventListener("resize", () => { if (shown) drawFocus(); });
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser lacks DecompressionStream; open the page in a current " +
                      "Chrome, Edge, Firefox or Safari");
    }
    update().then(() => {
      body.dataset.renderMs = (performance.now() - started).toFixed(1);
      body.dataset.loadMs = performance.now().toFixed(1);  // since navigation started
      body.dataset.ready = "1";
    });
  }

  start();
})();
