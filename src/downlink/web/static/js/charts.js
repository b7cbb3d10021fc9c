// Draws every chart described in the page's JSON data block with the vendored Chart.js.
// The data block is <script type="application/json" id="page-charts">, which the
// browser never executes; values are drawn as text by Chart.js, never parsed as HTML.
(function () {
  "use strict";
  var palette = ["#2f5fd0", "#e4572e", "#17bebb", "#ffc914", "#76b041", "#8e44ad", "#f28ab2",
    "#3d5a80", "#c1666b", "#48a9a6", "#d4b483", "#4b3f72", "#9bc53d", "#5bc0eb", "#fa7921"];

  function draw(spec) {
    var canvas = document.getElementById(spec.id);
    if (!canvas) { return; }
    var pie = spec.type === "pie" || spec.type === "doughnut";
    var datasets = spec.datasets.map(function (ds, i) {
      var colors = pie ? spec.labels.map(function (_, j) { return palette[j % palette.length]; })
        : palette[i % palette.length];
      return { label: ds.label, data: ds.data, backgroundColor: colors,
        borderColor: pie ? "#fff" : colors, fill: false, tension: 0.2 };
    });
    var options = { responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { title: { display: !!spec.title, text: spec.title },
        legend: { display: pie || datasets.length > 1 } } };
    if (!pie) {
      options.scales = { x: { stacked: !!spec.stacked }, y: { stacked: !!spec.stacked, beginAtZero: true } };
    }
    new Chart(canvas, { type: spec.type, data: { labels: spec.labels, datasets: datasets }, options: options });
    canvas.setAttribute("data-rendered", "1");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var block = document.getElementById("page-charts");
    if (!block || typeof Chart === "undefined") { return; }
    JSON.parse(block.textContent).forEach(draw);
  });
})();
