// Charts of the usage dashboard and the operator page, drawn with Chart.js (vendored).
// Each <canvas data-chart="NAME" data-chart-source="ID"> takes its series from the
// json_script element ID (its NAME key, and "labels"); drawn on load and again after
// every htmx swap, so a change of range redraws them.
(function () {
  "use strict";

  const PALETTE = ["#2451c7", "#d9730d", "#1c7c3c", "#9c27b0", "#b42318", "#00838f",
    "#6d4c41", "#c2185b", "#546e7a"];
  const MONEY = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD",
    maximumFractionDigits: 4 });
  const COUNT = new Intl.NumberFormat();

  function usd(value) {
    return MONEY.format(value);
  }

  function ms(value) {
    return value >= 1000 ? (value / 1000).toFixed(1) + " s" : COUNT.format(value) + " ms";
  }

  function colour(index) {
    return PALETTE[index % PALETTE.length];
  }

  function bars(labels, series, format, stacked) {
    return {
      type: "bar",
      data: {
        labels: labels,
        datasets: series.map(function (set, index) {
          return { label: set.label, data: set.data,
            backgroundColor: set.color || colour(index), borderWidth: 0 };
        }),
      },
      options: options(format, stacked),
    };
  }

  function lines(labels, series, format) {
    return {
      type: "line",
      data: {
        labels: labels,
        datasets: series.map(function (set, index) {
          const line = set.color || colour(Math.floor(index / 2));
          return { label: set.label, data: set.data, borderColor: line,
            backgroundColor: line, spanGaps: true, tension: 0.2, pointRadius: 2,
            borderDash: index % 2 ? [6, 3] : [] };
        }),
      },
      options: options(format, false),
    };
  }

  function options(format, stacked) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 12 } },
        tooltip: {
          callbacks: {
            label: function (item) {
              return item.dataset.label + ": " + format(item.parsed.y);
            },
          },
        },
      },
      scales: {
        x: { stacked: stacked, ticks: { maxRotation: 0, autoSkip: true } },
        y: { stacked: stacked, beginAtZero: true, ticks: { callback: format } },
      },
    };
  }

  const BUILDERS = {
    spend: function (data) { return bars(data.labels, data.spend, usd, true); },
    requests: function (data) {
      return bars(data.labels, data.requests, function (v) { return COUNT.format(v); }, true);
    },
    latency: function (data) { return lines(data.labels, data.latency, ms); },
    revenue: function (data) { return bars(data.labels, data.revenue, usd, false); },
    active: function (data) {
      return lines(data.labels, data.active, function (v) { return COUNT.format(v); });
    },
  };

  function draw(root) {
    if (typeof window.Chart === "undefined") {
      return;
    }
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const source = document.getElementById(canvas.dataset.chartSource);
      const build = BUILDERS[canvas.dataset.chart];
      if (!source || !build) {
        return;
      }
      const existing = window.Chart.getChart(canvas);
      if (existing) {
        existing.destroy();
      }
      new window.Chart(canvas, build(JSON.parse(source.textContent)));
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:load", function (event) { draw(event.target); });
})();
