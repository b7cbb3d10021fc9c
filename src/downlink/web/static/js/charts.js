// Draws every chart described in the page's JSON data block with the vendored Chart.js.
// The data block is <script type="application/json" id="page-charts">, which the
// browser never executes; values are drawn as text by Chart.js, never parsed as HTML.
(function () {
  "use strict";
  var palette = ["#2f5fd0", "#e4572e", "#17bebb", "#ffc914", "#76b041", "#8e44ad", "#f28ab2",
    "#3d5a80", "#c1666b", "#48a9a6", "#d4b483", "#4b3f72", "#9bc53d", "#5bc0eb", "#fa7921"];
  var grey = "#9aa3b2";  // the "other" and "(none)" stacks
  var numbers = new Intl.NumberFormat("en-US");

  function color(label, i, severity) {
    if (severity && severity[label]) {
      // The severity palette of the stylesheet (--sev-1 .. --sev-4), as the tables use it.
      var css = getComputedStyle(document.documentElement).getPropertyValue("--sev-" + severity[label]);
      if (css.trim()) { return css.trim(); }
    }
    return label === "other" || label === "(none)" ? grey : palette[i % palette.length];
  }

  function isEmpty(spec) {
    return spec.labels.length === 0 || spec.datasets.every(function (ds) {
      return ds.data.every(function (v) { return !v; });
    });
  }

  function showEmpty(canvas) {
    // An empty grid reads as "broken"; say what it means instead.
    var note = document.createElement("p");
    note.className = "empty-chart";
    note.textContent = "No data in this period.";
    canvas.parentNode.insertBefore(note, canvas);
    canvas.hidden = true;
    canvas.setAttribute("data-empty", "1");
    canvas.setAttribute("data-rendered", "1");
  }

  function axis(title, stacked, isValue) {
    var scale = { stacked: !!stacked, title: { display: !!title, text: title } };
    if (isValue) {
      scale.beginAtZero = true;
      scale.ticks = { precision: 0, callback: function (v) { return numbers.format(v); } };
    }
    return scale;
  }

  function draw(spec) {
    var canvas = document.getElementById(spec.id);
    if (!canvas) { return; }
    if (isEmpty(spec)) { showEmpty(canvas); return; }
    var pie = spec.type === "pie" || spec.type === "doughnut";
    var datasets = spec.datasets.map(function (ds, i) {
      var byLabel = pie || (spec.severity && spec.datasets.length === 1 && !spec.severity[ds.label]);
      var colors = byLabel ? spec.labels.map(function (l, j) { return color(l, j, spec.severity); })
        : color(ds.label, i, spec.severity);
      return { label: ds.label, data: ds.data, backgroundColor: colors,
        borderColor: pie ? "#fff" : colors, fill: false, tension: 0.2 };
    });
    var options = { responsive: true, maintainAspectRatio: false, animation: false, locale: "en-US",
      plugins: { title: { display: !!spec.title, text: spec.title },
        legend: { display: pie || datasets.length > 1 },
        tooltip: { callbacks: { label: function (ctx) {
          var value = pie ? ctx.parsed : ctx.parsed.y;
          return (ctx.dataset.label && !pie ? ctx.dataset.label : ctx.label) + ": " + numbers.format(value);
        } } } } };
    if (!pie) {
      options.scales = { x: axis(spec.x_title, spec.stacked, false), y: axis(spec.y_title, spec.stacked, true) };
    }
    // Bars, slices, points and legend entries lead to what they count (the filtered
    // records, the group): links per label, per dataset and label, per legend entry.
    function target(element) {
      var cells = spec.cell_links && spec.cell_links[element.datasetIndex];
      if (cells && cells[element.index]) { return cells[element.index]; }
      return spec.links ? spec.links[element.index] : "";
    }
    function legendTarget(item) {
      if (pie) { return spec.links ? spec.links[item.index] : ""; }
      return spec.legend_links ? spec.legend_links[item.datasetIndex] : "";
    }
    if (spec.links || spec.cell_links) {
      options.onClick = function (_event, elements) {
        var href = elements.length ? target(elements[0]) : "";
        if (href) { window.location.href = href; }
      };
      options.onHover = function (event, elements) {
        event.native.target.style.cursor = elements.length && target(elements[0]) ? "pointer" : "default";
      };
    }
    if (spec.legend_links || (pie && spec.links)) {
      var toggle = Chart.defaults.plugins.legend.onClick;
      options.plugins.legend.onClick = function (event, item, legend) {
        var href = legendTarget(item);
        if (href) { window.location.href = href; } else { toggle.call(this, event, item, legend); }
      };
      options.plugins.legend.onHover = function (event, item) {
        event.native.target.style.cursor = legendTarget(item) ? "pointer" : "default";
      };
      options.plugins.legend.onLeave = function (event) {
        event.native.target.style.cursor = "default";
      };
    }
    new Chart(canvas, { type: spec.type, data: { labels: spec.labels, datasets: datasets }, options: options });
    canvas.setAttribute("data-rendered", "1");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var block = document.getElementById("page-charts");
    if (!block || typeof Chart === "undefined") { return; }
    if (window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches) {
      Chart.defaults.color = "#c8d0e0";
      Chart.defaults.borderColor = "#3a4356";
    }
    JSON.parse(block.textContent).forEach(draw);
  });
})();
