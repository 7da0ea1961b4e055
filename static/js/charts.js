// Usage charts: each <canvas data-chart-url data-chart-query> draws the JSON its URL
// returns (rollup tables, never raw logs). Buttons with data-chart-target switch the
// period. A file, not an inline script: the CSP forbids inline scripts.
(function () {
  "use strict";

  var NUMBER = new Intl.NumberFormat("en-US");

  // The console's money display rule (core/money.py, format_usd) for amounts in
  // USD: two decimals, never shown larger than it is (nor a debt smaller); below a
  // cent two significant digits; a minus sign (U+2212) for a negative amount.
  function usd(value) {
    var size = Math.abs(value);
    var places = 2;
    if (size > 0 && size < 0.01) {
      places = Math.min(6, 1 - Math.floor(Math.log10(size)));
    }
    var scale = Math.pow(10, places);
    var shown = value < 0 ? Math.ceil(size * scale - 1e-9) / scale : Math.floor(size * scale + 1e-9) / scale;
    var text = "$" + shown.toLocaleString("en-US", { minimumFractionDigits: places, maximumFractionDigits: places });
    return value < 0 ? "\u2212" + text : text;
  }

  // Text and grid colours come from the page's theme (Pico's CSS variables), read
  // again whenever the theme changes, so labels keep their contrast in dark mode.
  function themeColors() {
    var style = window.getComputedStyle(document.documentElement);
    var read = function (name, fallback) { return style.getPropertyValue(name).trim() || fallback; };
    return {
      text: read("--pico-color", "#373c44"),
      grid: read("--pico-muted-border-color", "#e7eaf0")
    };
  }

  function options(data) {
    var colors = themeColors();
    var money = data.unit === "cost";
    var format = function (value) { return money ? usd(value) : NUMBER.format(value); };
    var axis = function (extra) {
      var scale = { ticks: { color: colors.text }, grid: { color: colors.grid }, border: { color: colors.grid } };
      Object.keys(extra).forEach(function (key) {
        scale[key] = key === "ticks" ? Object.assign(scale.ticks, extra.ticks) : extra[key];
      });
      return scale;
    };
    var scales = {
      x: axis({ stacked: !!data.stacked, ticks: { maxTicksLimit: 12, autoSkip: true } }),
      y: axis({ stacked: !!data.stacked, beginAtZero: true, ticks: { callback: format } })
    };
    var twoAxes = data.datasets.some(function (set) { return set.axis === "y1"; });
    if (twoAxes) {
      scales.y.title = { display: true, text: data.datasets[0].label, color: colors.text };
      scales.y1 = axis({ position: "right", beginAtZero: true, grid: { drawOnChartArea: false, color: colors.grid },
                         title: { display: true, text: data.datasets[1].label, color: colors.text } });
    }
    return {
      animation: false,
      responsive: true,
      interaction: { mode: "index", intersect: false },
      scales: scales,
      plugins: {
        legend: { display: data.datasets.length > 1, labels: { color: colors.text } },
        tooltip: { callbacks: { label: function (item) {
          return item.dataset.label + ": " + format(item.parsed.y);
        } } }
      }
    };
  }

  function draw(canvas, data) {
    canvas.chartData = data;  // kept to draw again in the other theme
    var old = window.Chart.getChart(canvas);
    if (old) old.destroy();
    var datasets = data.datasets.map(function (set) {
      var copy = { label: set.label, data: set.data, pointRadius: 0, borderWidth: 1.5 };
      if (set.axis) copy.yAxisID = set.axis;
      return copy;
    });
    new window.Chart(canvas, {
      type: data.kind === "bar" || data.stacked ? "bar" : "line",
      data: { labels: data.labels, datasets: datasets },
      options: options(data)
    });
    canvas.setAttribute("data-chart-ready", "true");
  }

  function load(canvas) {
    var url = canvas.getAttribute("data-chart-url");
    var query = canvas.getAttribute("data-chart-query") || "";
    canvas.removeAttribute("data-chart-ready");
    fetch(url + (query ? "?" + query : ""), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("chart " + url + " answered " + response.status);
        return response.json();
      })
      .then(function (data) { draw(canvas, data); })
      .catch(function (error) { canvas.replaceWith(document.createTextNode(document.body.dataset.chartError)); console.warn(error); });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-chart-target]");
    if (!button) return;
    var canvas = document.getElementById(button.getAttribute("data-chart-target"));
    if (!canvas) return;
    canvas.setAttribute("data-chart-query", button.getAttribute("data-chart-query"));
    button.parentElement.querySelectorAll("[data-chart-target]").forEach(function (other) {
      other.setAttribute("aria-pressed", other === button ? "true" : "false");
    });
    load(canvas);
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.Chart) return;
    document.querySelectorAll("canvas[data-chart-url]").forEach(load);
  });

  // A theme chosen in the header, or the system's changing, redraws in its colours.
  function redraw() {
    document.querySelectorAll("canvas[data-chart-ready]").forEach(function (canvas) {
      if (canvas.chartData) draw(canvas, canvas.chartData);
    });
  }
  document.addEventListener("comet:theme-change", redraw);
  if (window.matchMedia) {
    var scheme = window.matchMedia("(prefers-color-scheme: dark)");
    if (scheme.addEventListener) scheme.addEventListener("change", redraw);
  }
})();
