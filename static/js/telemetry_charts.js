// Telemetry charts drawn by uPlot (npm, copied to static/dist by deploy/assets.mjs).
//
// Every [data-telemetry-chart] card is one chart: a metric over a time range, read from the
// aggregate API (avg with a min-max band for one series; one avg line per series otherwise),
// with a metric picker, ranges (1h, 6h, 24h, 7d, custom), a CSV link for exactly the data shown
// and, on a device page, live points from the device's websocket appended without a reload.
// The card's JSON configuration sits in the <script type="application/json"> it names.
(function () {
  "use strict";

  var RANGES = { "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400 };
  var PALETTE = ["#2456d6", "#1e7d4f", "#c0352b", "#b45309", "#7c5ce0", "#0f766e", "#be185d",
    "#4a5568"];
  var AGGREGATES = "avg,min,max";
  var NO_RETRY = [4401, 4403, 4404];

  function toSeconds(iso) { return Date.parse(iso) / 1000; }

  function formatValue(value, unit) {
    if (value === null || value === undefined) { return "—"; }
    var text = Math.abs(value) >= 1000 ? value.toFixed(0) : String(+value.toFixed(3));
    return unit ? text + " " + unit : text;
  }

  function Chart(node) {
    this.node = node;
    this.config = JSON.parse(document.getElementById(node.getAttribute("data-config")).textContent);
    this.metricSelect = node.querySelector("[data-chart-metric]");
    this.plotNode = node.querySelector("[data-chart-plot]");
    this.status = node.querySelector("[data-chart-status]");
    this.csv = node.querySelector("[data-chart-csv]");
    this.custom = node.querySelector("[data-chart-custom]");
    this.range = this.config.range || "1h";
    this.plot = null;
    this.data = null;
    this.lastLive = 0;
    this.request = 0;
    this.bind();
    this.load();
    if (this.config.live && "WebSocket" in window) { this.connect(1000); }
  }

  Chart.prototype.metric = function () {
    var option = this.metricSelect.options[this.metricSelect.selectedIndex];
    return { name: option.value, unit: option.getAttribute("data-unit") || "" };
  };

  Chart.prototype.bind = function () {
    var self = this;
    this.metricSelect.addEventListener("change", function () { self.load(); });
    this.node.querySelectorAll("[data-range]").forEach(function (button) {
      button.addEventListener("click", function () {
        if (button.getAttribute("data-range") === "custom") {
          self.custom.hidden = !self.custom.hidden;
          return;
        }
        self.custom.hidden = true;
        self.range = button.getAttribute("data-range");
        self.load();
      });
    });
    if (this.custom) {
      this.custom.addEventListener("submit", function (event) {
        event.preventDefault();
        var from = self.custom.elements.from.value, to = self.custom.elements.to.value;
        if (!from || !to) { return; }
        self.range = { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
        self.load();
      });
    }
    if ("ResizeObserver" in window) {
      new ResizeObserver(function () {
        if (self.plot) { self.plot.setSize(self.size()); }
      }).observe(this.plotNode);
    }
  };

  Chart.prototype.window = function () {
    if (typeof this.range === "object") { return this.range; }
    var to = new Date();
    var from = new Date(to.getTime() - RANGES[this.range] * 1000);
    return { from: from.toISOString(), to: to.toISOString() };
  };

  Chart.prototype.query = function (agg) {
    var span = this.window();
    var params = new URLSearchParams(this.config.params || {});
    params.set("metric", this.metric().name);
    params.set("agg", agg);
    params.set("from", span.from);
    params.set("to", span.to);
    params.set("bucket", "auto");
    return params.toString();
  };

  Chart.prototype.setState = function (state, message) {
    this.node.setAttribute("data-chart-state", state);
    this.status.textContent = message || "";
    this.node.querySelectorAll("[data-range]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-range") ===
        (typeof this.range === "object" ? "custom" : this.range)));
    }, this);
  };

  Chart.prototype.load = function () {
    var self = this, request = ++this.request;
    this.setState("loading", "Loading…");
    if (this.csv) { this.csv.href = this.config.export + "?" + this.query(AGGREGATES + ",count,last"); }
    fetch(this.config.api + "?" + this.query(AGGREGATES), {
      credentials: "same-origin", headers: { Accept: "application/json" }
    })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (request !== self.request) { return; } // a newer request superseded this one
        if (!answer.ok) { throw new Error(self.errorText(answer.body)); }
        self.show(answer.body);
      })
      .catch(function (error) {
        if (request === self.request) { self.setState("error", error.message); }
      });
  };

  Chart.prototype.errorText = function (body) {
    var error = (body && body.error) || {};
    var fields = error.fields || {};
    var first = Object.keys(fields)[0];
    return first ? fields[first][0] : (error.message || "Could not load the chart.");
  };

  // The API's columnar answer -> what the chart draws (seconds; one entry per series).
  Chart.prototype.show = function (body) {
    this.data = {
      bucket: body.bucket_seconds,
      xs: body.buckets.map(toSeconds),
      series: body.series.map(function (line) {
        return { label: line.label, count: line.count.slice(), avg: line.values.avg.slice(),
          min: line.values.min.slice(), max: line.values.max.slice() };
      })
    };
    this.draw();
  };

  Chart.prototype.size = function () {
    var width = Math.max(this.plotNode.clientWidth, 240);
    return { width: width, height: width < 600 ? 220 : 280 };
  };

  // Lines join samples across empty buckets (devices report at their own pace, often less
  // often than the bucket size); points are drawn while there are few enough to see.
  Chart.prototype.options = function () {
    var unit = this.metric().unit, single = this.data.series.length === 1;
    var width = this.size().width, series = [{}];
    this.data.series.forEach(function (line, index) {
      var color = single ? PALETTE[0] : PALETTE[index % PALETTE.length];
      var filled = line.avg.filter(function (v) { return v !== null; }).length;
      series.push({ label: single ? this.metric().name : line.label, stroke: color, width: 2,
        spanGaps: true, points: { show: filled <= width / 12, size: 5, fill: color },
        value: function (u, v) { return formatValue(v, unit); } });
    }, this);
    var options = Object.assign(this.size(), { series: series, cursor: { drag: { x: true, y: false } },
      legend: { live: true }, scales: { x: { time: true } },
      axes: [{ stroke: "#5d6879", grid: { stroke: "#eef1f5" }, ticks: { stroke: "#dde2ea" } },
        { stroke: "#5d6879", grid: { stroke: "#eef1f5" }, ticks: { stroke: "#dde2ea" },
          size: 56, values: function (u, values) {
            return values.map(function (v) { return formatValue(v, ""); });
          } }] });
    if (single) {
      series.push({ label: "min", stroke: "rgba(36, 86, 214, 0.35)", width: 1, spanGaps: true,
        points: { show: false }, value: function (u, v) { return formatValue(v, unit); } });
      series.push({ label: "max", stroke: "rgba(36, 86, 214, 0.35)", width: 1, spanGaps: true,
        points: { show: false }, value: function (u, v) { return formatValue(v, unit); } });
      options.bands = [{ series: [3, 2], fill: "rgba(36, 86, 214, 0.10)" }];
    }
    return options;
  };

  Chart.prototype.columns = function () {
    var columns = [this.data.xs];
    this.data.series.forEach(function (line) { columns.push(line.avg); });
    if (this.data.series.length === 1) {
      columns.push(this.data.series[0].min, this.data.series[0].max);
    }
    return columns;
  };

  Chart.prototype.draw = function () {
    if (this.plot) { this.plot.destroy(); this.plot = null; }
    var points = this.points();
    if (!this.data.series.length) {
      this.plotNode.hidden = true;
      this.setState("empty", "No data for " + this.metric().name + " in this range.");
      return;
    }
    this.plotNode.hidden = false;
    this.plot = new window.uPlot(this.options(), this.columns(), this.plotNode);
    this.setState("ready", this.summary(points));
  };

  Chart.prototype.points = function () {
    var total = 0;
    (this.data.series || []).forEach(function (line) {
      line.count.forEach(function (count) { total += count; });
    });
    this.node.setAttribute("data-chart-samples", String(total));
    this.node.setAttribute("data-chart-buckets", String(this.data.xs.length));
    return total;
  };

  Chart.prototype.summary = function (samples) {
    var bucket = this.data.bucket;
    var size = bucket >= 86400 ? bucket / 86400 + " d" : bucket >= 3600 ? bucket / 3600 + " h" :
      bucket >= 60 ? bucket / 60 + " min" : bucket + " s";
    return samples + " samples · " + size + " buckets" + (this.live ? " · live" : "");
  };

  // --- live points ----------------------------------------------------------------------------
  Chart.prototype.connect = function (delay) {
    var self = this;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + this.config.live);
    socket.addEventListener("open", function () {
      var reconnected = self.node.getAttribute("data-chart-live") === "closed";
      delay = 1000;
      self.live = true;
      self.node.setAttribute("data-chart-live", "open");
      self.node.querySelector("[data-chart-live-badge]").hidden = false;
      if (reconnected) { self.load(); } // pushes sent while the socket was down are lost
    });
    socket.addEventListener("message", function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (error) { return; }
      if (message.type === "telemetry.latest") { self.onLatest(message); }
    });
    socket.addEventListener("close", function (event) {
      self.live = false;
      self.node.setAttribute("data-chart-live", "closed");
      self.node.querySelector("[data-chart-live-badge]").hidden = true;
      if (NO_RETRY.indexOf(event.code) >= 0) { return; }
      window.setTimeout(function () { self.connect(Math.min(delay * 2, 30000)); }, delay);
    });
  };

  Chart.prototype.onLatest = function (message) {
    var name = this.metric().name, vital = name.indexOf("vitals.") === 0;
    var values = (vital ? message.vitals : message.metrics) || {};
    var value = values[vital ? name.slice(7) : name];
    var when = (vital ? message.vitals_at : message.metrics_at) || message.ts;
    if (typeof value === "boolean") { value = value ? 1 : 0; }
    if (typeof value !== "number" || !when || !this.data || typeof this.range === "object") {
      return;
    }
    var t = toSeconds(when);
    if (t <= this.lastLive) { return; } // a heartbeat repeats the unchanged metrics
    this.lastLive = t;
    if (this.data.series.length > 1) { return; }
    this.append(t, value);
  };

  // Fold one sample into its bucket (the API's buckets start at multiples of the bucket size
  // since the epoch), add buckets up to it, and slide the window forward.
  Chart.prototype.append = function (t, value) {
    var data = this.data, bucket = data.bucket;
    if (!data.series.length) {
      data.series.push({ label: this.metric().name, count: data.xs.map(function () { return 0; }),
        avg: data.xs.map(function () { return null; }), min: data.xs.map(function () { return null; }),
        max: data.xs.map(function () { return null; }) });
    }
    var line = data.series[0], start = Math.floor(t / bucket) * bucket;
    var last = data.xs.length ? data.xs[data.xs.length - 1] : start - bucket;
    while (last < start) {
      last += bucket;
      data.xs.push(last);
      line.count.push(0); line.avg.push(null); line.min.push(null); line.max.push(null);
    }
    var i = data.xs.lastIndexOf(start);
    if (i < 0) { return; } // older than the window
    var count = line.count[i];
    line.avg[i] = count ? (line.avg[i] * count + value) / (count + 1) : value;
    line.min[i] = count ? Math.min(line.min[i], value) : value;
    line.max[i] = count ? Math.max(line.max[i], value) : value;
    line.count[i] = count + 1;
    var oldest = Date.now() / 1000 - RANGES[this.range];
    while (data.xs.length > 1 && data.xs[0] + bucket <= oldest) {
      data.xs.shift();
      line.count.shift(); line.avg.shift(); line.min.shift(); line.max.shift();
    }
    this.node.setAttribute("data-chart-last", String(value));
    if (this.plot && this.plot.series.length === 4) {
      this.plot.setData(this.columns());
      this.setState("ready", this.summary(this.points()));
    } else {
      this.draw();
    }
  };

  function mountAll() {
    if (!window.uPlot) { return; }
    document.querySelectorAll("[data-telemetry-chart]").forEach(function (node) {
      if (!node.chart && node.querySelector("[data-chart-metric]")) { node.chart = new Chart(node); }
    });
  }

  document.addEventListener("DOMContentLoaded", mountAll);
})();
