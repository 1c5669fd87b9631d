// gen-emotion studio: draws the Vega-Lite charts the pages carry as JSON, sends try-it texts, follows a job.
// Texts are only ever set with textContent, never parsed as HTML.
"use strict";

function drawCharts() {
  document.querySelectorAll("script[data-chart]").forEach(function (block) {
    var target = document.getElementById(block.dataset.chart);
    if (target) draw(target, JSON.parse(block.textContent));
  });
}

function draw(target, spec) {
  return vegaEmbed(target, spec, { actions: false, renderer: "svg" }).catch(function (err) {
    console.error("chart:", err);
  });
}

function element(tag, text, className) {
  var node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function setupTry() {
  var form = document.getElementById("try-form");
  if (!form) return;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var state = document.getElementById("try-state");
    var results = document.getElementById("try-results");
    var texts = document.getElementById("texts").value.split("\n").filter(function (t) { return t.trim(); });
    state.textContent = "labelling (the first time loads the model)...";
    fetch("/api/try/" + encodeURI(form.dataset.folder), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ texts: texts }),
    })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        results.replaceChildren();
        if (body.error) { state.textContent = body.error; return; }
        state.textContent = "";
        var list = element("ol", undefined, "try-list");
        body.predictions.forEach(function (row) {
          var item = element("li");
          item.appendChild(element("span", row.text, "text"));
          item.appendChild(element("span", " → "));
          item.appendChild(element("strong", row.labels.length ? row.labels.join(", ") : "none", "labels"));
          if (row.output) item.appendChild(element("code", " " + row.output, "output"));
          list.appendChild(item);
        });
        results.appendChild(list);
        var chart = document.getElementById("chart-try");
        if (body.chart) draw(chart, body.chart); else chart.replaceChildren();
      })
      .catch(function (err) { state.textContent = "failed: " + err; });
  });
}

function followJob() {
  var state = document.getElementById("job-state");
  if (!state) return;
  var log = document.getElementById("job-log");
  var stop = document.getElementById("stop");
  function poll() {
    fetch("/api/job/" + encodeURIComponent(state.dataset.job))
      .then(function (response) { return response.json(); })
      .then(function (body) {
        state.textContent = body.state;
        log.textContent = body.tail;
        log.scrollTop = log.scrollHeight;
        if (body.state === "running") setTimeout(poll, 1500); else if (stop) stop.disabled = true;
      })
      .catch(function (err) { console.warn("job:", err); setTimeout(poll, 3000); });
  }
  poll();
}

document.addEventListener("DOMContentLoaded", function () {
  drawCharts();
  setupTry();
  followJob();
});
