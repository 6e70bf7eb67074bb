/* simec run viewer: draws the Plotly figures prepared in Python and moves them with one slider. */
(function () {
  "use strict";
  var CONFIG = { displaylogo: false, responsive: true };
  var state = { view: null, index: 0, timer: null, plots: [] };

  function data(id) {
    return JSON.parse(document.getElementById(id).textContent);
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function fmt(p) { return Number(p).toFixed(4); }
  var TEMPLATE = null;  // Plotly's default template, stored once in the page
  function plot(div, fig) {
    if (TEMPLATE === null) TEMPLATE = data("simec-meta").template || {};
    fig.layout.template = TEMPLATE;
    Plotly.newPlot(div, fig.data, fig.layout, CONFIG);
    state.plots.push(div);
  }
  function missing(parent, id, text) {
    parent.appendChild(el("div", { "class": "missing", id: id }, text));
  }
  function frameFor(run, step) {
    var steps = run.frames.steps, f = 0;
    for (var i = 0; i < steps.length; i++) { if (steps[i] <= step) f = i; else break; }
    return f;
  }

  function column(run, j) {
    var col = el("div", { "class": "run", id: "run-" + j });
    col.appendChild(el("h3", {}, run.title));
    if (run.input) col.appendChild(el("div", { "class": "note" }, "input: " + run.input));
    run.notes.forEach(function (n) { col.appendChild(el("div", { "class": "note" }, n)); });
    var fig = el("div", { "class": "frame" });
    col.appendChild(fig);
    if (run.frames.kind === "image") {
      var img = el("img", { id: "picture-" + j, "class": "picture", alt: "decoded input" });
      img.src = run.frames.images[0];
      fig.appendChild(img);
    } else if (run.frames.kind === "text") {
      fig.appendChild(el("div", { id: "tokens-" + j, "class": "tokens" }));
      if (run.frames.alternatives) {
        fig.appendChild(el("div", { "class": "note" }, "alternative prompts (masked LM):"));
        fig.appendChild(el("ol", { id: "alternatives-" + j, "class": "alternatives" }));
      } else if (run.missing.alternatives) {
        missing(fig, "missing-alternatives-" + j, run.missing.alternatives);
      }
    } else {
      missing(fig, "missing-frames-" + j, run.missing.frames || "no decoded input");
    }
    fig.appendChild(el("div", { id: "frame-step-" + j, "class": "note" }));
    fig.appendChild(el("div", { id: "decoded-class-" + j, "class": "cls" }));
    fig.appendChild(el("div", { id: "embedding-class-" + j, "class": "cls" }));
    var bars = el("div", { id: "bars-" + j, "class": "plot" });
    col.appendChild(bars);
    var pstar = el("div", { id: "pstar-" + j, "class": "plot" });
    col.appendChild(pstar);
    var metrics = el("div", { id: "metrics-" + j, "class": "plot" });
    col.appendChild(metrics);
    ["lambda_max", "step_sizes", "drift"].forEach(function (key) {
      if (run.missing[key]) missing(col, "missing-" + key + "-" + j, run.missing[key]);
    });
    var importance = el("div", { id: "importance-" + j, "class": "plot" });
    col.appendChild(importance);
    if (!run.figures.importance) missing(col, "missing-importance-" + j, run.missing.importance);
    var facts = el("div", { "class": "facts" });
    var change = run.first_change === null ? "never (stays " + run.labels[run.initial_class] + ")"
      : "step " + run.first_change + " (" + run.labels[run.initial_class] + " \u2192 " +
        run.labels[run.predicted[run.first_change]] + ")";
    facts.appendChild(el("div", { id: "first-change-" + j }, "first class change: " + change));
    facts.appendChild(el("div", { id: "stop-" + j }, "stop reason: " + run.stop_reason +
      " after " + run.steps + " steps"));
    col.appendChild(facts);
    var details = el("details");
    details.appendChild(el("summary", {}, "configuration and model"));
    details.appendChild(el("pre", {}, JSON.stringify({ config: run.config, model: run.model }, null, 2)));
    col.appendChild(details);
    return { col: col, bars: bars, pstar: pstar, metrics: metrics, importance: importance };
  }

  function renderView(view) {
    stop();
    state.plots.forEach(function (d) { Plotly.purge(d); });
    state.plots = [];
    var root = document.getElementById("view");
    root.innerHTML = "";
    state.view = view;
    if (view.back) {  // a dataset input: the page title names the data set, this the input
      root.appendChild(el("a", { href: "#index" }, "\u2190 back to the index"));
      root.appendChild(el("h2", {}, view.title));
    }
    var controls = el("div", { "class": "controls" });
    var play = el("button", { id: "play", type: "button" }, "\u25b6 play");
    play.addEventListener("click", function () { if (state.timer) stop(); else start(); });
    var slider = el("input", { id: "slider", type: "range", min: "0", value: "0",
      max: String(view.slider_steps.length - 1), step: "1", "aria-label": "step" });
    slider.addEventListener("input", function () { show(Number(slider.value)); });
    controls.appendChild(play);
    controls.appendChild(slider);
    var label = el("span", { "class": "steplabel" }, "step ");
    label.appendChild(el("span", { id: "step" }, "0"));
    label.appendChild(document.createTextNode(" / " + view.slider_steps[view.slider_steps.length - 1]));
    controls.appendChild(label);
    root.appendChild(controls);
    if (view.note) root.appendChild(el("div", { "class": "note" }, view.note));
    var grid = el("div", { "class": "runs" });
    grid.style.gridTemplateColumns = view.runs.length === 1 ? "minmax(300px, 820px)"
      : "repeat(" + view.runs.length + ", minmax(300px, 1fr))";
    root.appendChild(grid);
    var parts = view.runs.map(function (run, j) { var p = column(run, j); grid.appendChild(p.col); return p; });
    view.runs.forEach(function (run, j) {
      plot(parts[j].bars, run.figures.bars);
      plot(parts[j].pstar, run.figures.pstar);
      if (run.figures.metrics) plot(parts[j].metrics, run.figures.metrics);
      if (run.figures.importance) plot(parts[j].importance, run.figures.importance);
    });
    show(0);
  }

  function show(i) {
    var view = state.view;
    i = Math.max(0, Math.min(view.slider_steps.length - 1, i));
    state.index = i;
    var step = view.slider_steps[i];
    document.getElementById("slider").value = String(i);
    document.getElementById("step").textContent = String(step);
    view.runs.forEach(function (run, j) {
      var k = Math.min(step, run.steps);
      var probs = run.probabilities[k], top = run.predicted[k];
      document.getElementById("embedding-class-" + j).textContent =
        "model at step " + k + ": " + run.labels[top] + " (p = " + fmt(probs[top]) + ")";
      if (run.frames.kind) {
        var f = frameFor(run, step);
        var c = run.frames.decoded_class[f];
        document.getElementById("frame-step-" + j).textContent =
          "decoded input of stored step " + run.frames.steps[f];
        document.getElementById("decoded-class-" + j).textContent =
          "model on the decoded " + (run.frames.kind === "image" ? "picture" : "tokens") + ": " +
          run.labels[c] + " (p = " + fmt(run.frames.decoded_prob[f]) + ")";
        if (run.frames.kind === "image") {
          document.getElementById("picture-" + j).src = run.frames.images[f];
        } else {
          var box = document.getElementById("tokens-" + j);
          box.innerHTML = "";
          run.frames.tokens[f].forEach(function (t, n) {
            box.appendChild(el("span", { "class": run.frames.changed[f][n] ? "tok changed" : "tok" }, t));
          });
          var list = document.getElementById("alternatives-" + j);
          if (list) {
            list.innerHTML = "";
            run.frames.alternatives[f].forEach(function (a) {
              list.appendChild(el("li", {}, a.text + " \u2192 " + run.labels[a["class"]] +
                " (p = " + fmt(a.p) + ")"));
            });
          }
        }
      }
      Plotly.restyle("bars-" + j, { y: [probs] }, [0]);
      Plotly.relayout("pstar-" + j, { "shapes[0].x0": k, "shapes[0].x1": k });
      if (run.figures.metrics) Plotly.relayout("metrics-" + j, { "shapes[0].x0": k, "shapes[0].x1": k });
    });
  }

  function start() {
    var view = state.view;
    if (state.index >= view.slider_steps.length - 1) show(0);
    document.getElementById("play").textContent = "\u23f8 pause";
    state.timer = setInterval(function () {
      if (state.index >= state.view.slider_steps.length - 1) { stop(); return; }
      show(state.index + 1);
    }, 120);
  }
  function stop() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    var play = document.getElementById("play");
    if (play) play.textContent = "\u25b6 play";
  }

  document.addEventListener("keydown", function (e) {
    if (!state.view || e.target.id === "slider") return;  // the slider moves itself
    if (e.key === "ArrowRight") { stop(); show(state.index + 1); e.preventDefault(); }
    if (e.key === "ArrowLeft") { stop(); show(state.index - 1); e.preventDefault(); }
  });

  function route() {
    var index = document.getElementById("index");
    var meta = data("simec-meta");
    if (!meta.dataset) { renderView(data("simec-view-0")); return; }
    var hash = window.location.hash;
    var found = hash.indexOf("#input-") === 0 ? meta.views[hash.slice(7)] : undefined;
    if (found === undefined) {
      stop();
      document.getElementById("view").style.display = "none";
      index.style.display = "";
      return;
    }
    index.style.display = "none";
    document.getElementById("view").style.display = "";
    renderView(data("simec-view-" + found));  // lazy: parsed and drawn only when opened
    window.scrollTo(0, 0);
  }

  function renderIndex() {
    var meta = data("simec-meta");
    if (!meta.dataset) return;
    var idx = data("simec-index");
    plot(document.getElementById("confusion"), idx.figures.confusion);
    if (idx.figures.histogram) plot(document.getElementById("histogram"), idx.figures.histogram);
    state.plots = [];  // index plots stay when views change
  }

  // plotly.js is inlined gzip-compressed (a third of its size) and unpacked here, offline
  function loadPlotly() {
    if (window.Plotly) return Promise.resolve();
    var node = document.getElementById("simec-plotly-gz");
    if (!node) return Promise.reject(new Error("plotly.js is missing from the page"));
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser cannot unpack the page (it needs " +
        "DecompressionStream: Chrome 80, Firefox 113, Safari 16.4 or later); write it with " +
        "simec view --no-compress"));
    }
    var bin = atob(node.textContent.trim()), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(function (code) {
      var script = document.createElement("script");
      script.textContent = code;
      document.head.appendChild(script);
    });
  }

  window.addEventListener("DOMContentLoaded", function () {
    loadPlotly().then(function () {
      window.addEventListener("hashchange", route);
      renderIndex();
      route();
      window.simecReady = true;
    }).catch(function (err) {
      var box = el("div", { "class": "missing", id: "load-error" }, String(err.message || err));
      document.body.insertBefore(box, document.body.firstChild);
      throw err;
    });
  });
})();
