/* cnnatlas atlas: the interactive charts and sortable tables. Plain JavaScript, no libraries,
   no network: every page carries its data in <script type="application/json"> elements. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, content, attrs) {
    var t = el("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    t.textContent = content;
    return t;
  }
  function human(n) {
    var units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < units.length; i++) if (Math.abs(n) >= units[i][0]) return (n / units[i][0]).toFixed(2) + units[i][1];
    return String(n);
  }
  function niceTicks(lo, hi, count) {
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count)));
    var err = (hi - lo) / count / step;
    step *= err >= 7.5 ? 10 : err >= 3 ? 5 : err >= 1.5 ? 2 : 1;
    var ticks = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(+v.toFixed(10));
    return ticks;
  }

  // -- tooltip ------------------------------------------------------------------------------
  var tip = null;
  function showTip(evt, html) {
    if (!tip) tip = document.getElementById("tooltip");
    if (!tip) {
      tip = document.createElement("div");
      tip.id = "tooltip";
      tip.setAttribute("role", "tooltip");
      document.body.appendChild(tip);
    }
    tip.innerHTML = html;
    tip.style.display = "block";
    var x = evt.clientX !== undefined ? evt.clientX : 20, y = evt.clientY !== undefined ? evt.clientY : 20;
    tip.style.left = Math.min(x + 14, window.innerWidth - 360) + "px";
    tip.style.top = y + 14 + "px";
  }
  function hideTip() { if (tip) tip.style.display = "none"; }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; }); }

  // -- marker shapes (shape as well as colour tells families apart) -------------------------
  function markerPath(shape, r) {
    var s = r * 0.886; // a square of the circle's area
    switch (shape) {
      case "s": return "M" + -s + "," + -s + "h" + 2 * s + "v" + 2 * s + "h" + -2 * s + "z";
      case "^": return "M0," + -1.3 * r + "L" + 1.15 * r + "," + 0.7 * r + "L" + -1.15 * r + "," + 0.7 * r + "z";
      case "v": return "M0," + 1.3 * r + "L" + 1.15 * r + "," + -0.7 * r + "L" + -1.15 * r + "," + -0.7 * r + "z";
      case "D": return "M0," + -1.25 * r + "L" + 1.25 * r + ",0L0," + 1.25 * r + "L" + -1.25 * r + ",0z";
      case "P": var a = r * 0.4; return "M" + -a + "," + -r + "h" + 2 * a + "v" + (r - a) + "h" + (r - a) + "v" + 2 * a + "h" + -(r - a) + "v" + (r - a) + "h" + -2 * a + "v" + -(r - a) + "h" + -(r - a) + "v" + -2 * a + "h" + (r - a) + "z";
      case "h": var p = []; for (var i = 0; i < 6; i++) p.push((r * 1.1 * Math.cos(Math.PI / 3 * i)).toFixed(2) + "," + (r * 1.1 * Math.sin(Math.PI / 3 * i)).toFixed(2)); return "M" + p.join("L") + "z";
      default: return "M" + -r + ",0a" + r + "," + r + " 0 1,0 " + 2 * r + ",0a" + r + "," + r + " 0 1,0 " + -2 * r + ",0";
    }
  }

  // -- bubble chart: top-1 accuracy vs G-MACs, area ∝ parameters ----------------------------
  function bubble(container, spec) {
    var W = 900, H = 560, m = { l: 60, r: 200, t: 20, b: 50 };
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": spec.title }, container);
    var pts = spec.points;
    var xs = pts.map(function (p) { return Math.log10(p.macs / 1e9); });
    var ys = pts.map(function (p) { return p.top1; });
    var x0 = Math.floor(Math.min.apply(null, xs) * 2) / 2 - 0.25, x1 = Math.ceil(Math.max.apply(null, xs) * 2) / 2 + 0.25;
    var y0 = Math.floor(Math.min.apply(null, ys) - 3), y1 = Math.ceil(Math.max.apply(null, ys) + 3);
    function X(v) { return m.l + (v - x0) / (x1 - x0) * (W - m.l - m.r); }
    function Y(v) { return H - m.b - (v - y0) / (y1 - y0) * (H - m.t - m.b); }
    var grid = el("g", { class: "grid" }, svg), axis = el("g", { class: "axis" }, svg);
    for (var e = Math.ceil(x0); e <= Math.floor(x1); e++) {
      el("line", { x1: X(e), x2: X(e), y1: m.t, y2: H - m.b }, grid);
      text(axis, X(e), H - m.b + 16, String(Math.pow(10, e)), { "text-anchor": "middle" });
    }
    niceTicks(y0, y1, 8).forEach(function (v) {
      el("line", { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }, grid);
      text(axis, m.l - 6, Y(v) + 4, String(v), { "text-anchor": "end" });
    });
    el("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: "none", stroke: "#888" }, axis);
    text(axis, (m.l + W - m.r) / 2, H - 12, "operations per image (G-MACs, log scale)", { "text-anchor": "middle" });
    text(axis, 16, (m.t + H - m.b) / 2, "top-1 accuracy (%)", { transform: "rotate(-90 16 " + (m.t + H - m.b) / 2 + ")", "text-anchor": "middle" });
    var layer = el("g", { class: "points" }, svg);
    pts.slice().sort(function (a, b) { return b.params - a.params; }).forEach(function (p) {
      var style = spec.families[p.family];
      var r = Math.max(3, Math.sqrt(p.params / 1e6) * 2.2);
      var link = el("a", { href: p.url, "aria-label": p.model }, layer);
      var shape = el("path", {
        d: markerPath(style.marker, r),
        transform: "translate(" + X(Math.log10(p.macs / 1e9)).toFixed(1) + "," + Y(p.top1).toFixed(1) + ")",
        class: "point" + (p.hollow ? " hollow" : ""),
        fill: style.colour, "fill-opacity": 0.55, stroke: style.colour, tabindex: 0,
        "data-model": p.model
      }, link);
      var html = "<b>" + esc(p.model) + "</b> (" + esc(p.family) + ")<br>" + human(p.params) + " parameters · " +
        human(p.macs) + " MACs<br>top-1 " + p.top1.toFixed(2) + "% · " + esc(p.protocol) + "<br>" + esc(p.source);
      shape.addEventListener("mousemove", function (evt) { showTip(evt, html); });
      shape.addEventListener("focus", function (evt) { showTip(evt, html); });
      shape.addEventListener("mouseleave", hideTip);
      shape.addEventListener("blur", hideTip);
    });
    // names beside the bubbles, greedily moved so no two labels overlap (6.2 px per character)
    var placed = [], labels = el("g", { class: "labels" }, svg);
    pts.slice().sort(function (a, b) { return b.top1 - a.top1; }).forEach(function (p) {
      var px = X(Math.log10(p.macs / 1e9)), py = Y(p.top1), w = p.model.length * 6.2, h = 11;
      var r = Math.max(3, Math.sqrt(p.params / 1e6) * 2.2);
      var tries = [];
      [0, 12, 24, 36, 50].forEach(function (d) {
        tries.push([r + 3 + d, 4], [r + 3 + d, -6 - d], [-r - 3 - w - d, 4], [-r - 3 - w - d, -6 - d],
          [-w / 2, -r - 4 - d], [-w / 2, r + 12 + d], [r + 3 + d, 16 + d], [-r - 3 - w - d, 16 + d]);
      });
      // a name that finds no free place is left to the tooltip rather than drawn over another
      for (var i = 0; i < tries.length; i++) {
        var box = { x: px + tries[i][0], y: py + tries[i][1] - h + 2, w: w, h: h };
        var free = box.x > m.l && box.x + w < W - m.r && box.y > m.t && box.y + h < H - m.b && placed.every(function (o) {
          return box.x + box.w < o.x || o.x + o.w < box.x || box.y + box.h < o.y || o.y + o.h < box.y;
        });
        if (free) {
          if (i >= 8)  // moved away from its bubble: a thin leader line
            el("line", { x1: px, y1: py, x2: box.x + (box.x > px ? 0 : w), y2: box.y + h / 2, stroke: "#999", "stroke-width": 0.5 }, labels);
          placed.push(box);
          text(labels, box.x, box.y + h - 2, p.model, { "font-size": "10", class: "label" });
          break;
        }
      }
    });
    // legend: families (shape + colour), protocol, sizes
    var lg = el("g", { class: "legend" }, svg), ly = m.t + 10, lx = W - m.r + 18;
    Object.keys(spec.families).forEach(function (f) {
      var st = spec.families[f];
      el("path", { d: markerPath(st.marker, 5), transform: "translate(" + lx + "," + ly + ")", fill: st.colour, stroke: st.colour }, lg);
      text(lg, lx + 12, ly + 4, f);
      ly += 17;
    });
    ly += 8;
    el("path", { d: markerPath("o", 5), transform: "translate(" + lx + "," + ly + ")", fill: "#555", stroke: "#555" }, lg);
    text(lg, lx + 12, ly + 4, spec.protocol + " (filled)");
    ly += 17;
    el("path", { d: markerPath("o", 5), transform: "translate(" + lx + "," + ly + ")", fill: "none", stroke: "#555" }, lg);
    text(lg, lx + 12, ly + 4, "another protocol (hollow)");
    ly += 24;
    [5, 25, 100].forEach(function (mp) {
      var r = Math.sqrt(mp) * 2.2;
      el("circle", { cx: lx + 8, cy: ly + r, r: r, fill: "none", stroke: "#888" }, lg);
      text(lg, lx + 34, ly + r + 4, mp + "M parameters");
      ly += 2 * r + 8;
    });
  }

  // -- ILSVRC winners --------------------------------------------------------------------------
  function winners(container, bars) {
    var W = 760, H = 360, m = { l: 55, r: 20, t: 20, b: 70 };
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "ILSVRC winners" }, container);
    var top = Math.max.apply(null, bars.map(function (b) { return b.error; })) * 1.25;
    function Y(v) { return H - m.b - v / top * (H - m.t - m.b); }
    var bw = (W - m.l - m.r) / bars.length, axis = el("g", { class: "axis" }, svg), grid = el("g", { class: "grid" }, svg);
    niceTicks(0, top, 6).forEach(function (v) {
      el("line", { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }, grid);
      text(axis, m.l - 6, Y(v) + 4, String(v), { "text-anchor": "end" });
    });
    text(axis, 14, (m.t + H - m.b) / 2, "top-5 test error (%)", { transform: "rotate(-90 14 " + (m.t + H - m.b) / 2 + ")", "text-anchor": "middle" });
    bars.forEach(function (b, i) {
      var x = m.l + i * bw + bw * 0.15, w = bw * 0.7;
      var link = el("a", { href: b.url }, svg);
      var rect = el("rect", { x: x, y: Y(b.error), width: w, height: Y(0) - Y(b.error), fill: b.place === 1 ? "#4C72B0" : "#A1B6D8", stroke: "#000", class: "bar" }, link);
      if (b.place !== 1) rect.setAttribute("stroke-dasharray", "4 2");
      var html = "<b>" + b.year + " " + esc(b.team) + "</b><br>" + b.error + "% top-5 · " + b.depth + " layers (" + esc(b.model) + ")<br>" + esc(b.source);
      rect.addEventListener("mousemove", function (evt) { showTip(evt, html); });
      rect.addEventListener("mouseleave", hideTip);
      text(svg, x + w / 2, Y(b.error) - 18, b.error + "%", { "text-anchor": "middle" });
      text(svg, x + w / 2, Y(b.error) - 5, b.depth + " layers", { "text-anchor": "middle" });
      text(svg, x + w / 2, H - m.b + 16, String(b.year), { "text-anchor": "middle" });
      text(svg, x + w / 2, H - m.b + 30, b.team + (b.place === 1 ? "" : " (2nd)"), { "text-anchor": "middle" });
      (b.extra || []).forEach(function (ex) {
        el("line", { x1: x, x2: x + w, y1: Y(ex.error), y2: Y(ex.error), stroke: "#000", "stroke-width": 2 }, svg);
        text(svg, x + w + 3, Y(ex.error) + 4, ex.error + "% (outside data)", { "font-size": "9" });
      });
    });
  }

  // -- per-layer bars ----------------------------------------------------------------------------
  var KIND = { conv: "#4C72B0", pool: "#8C8C8C", fc: "#DD8452" };
  function layerBars(container, spec) {
    var rows = spec.rows, W = Math.max(700, rows.length * 9 + 90), H = 220, m = { l: 70, r: 10, t: 10, b: 70 };
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": spec.label }, container);
    var top = Math.max.apply(null, rows.map(function (r) { return r.value; }).concat([1e-12]));
    function Y(v) { return H - m.b - v / top * (H - m.t - m.b); }
    var bw = (W - m.l - m.r) / rows.length, axis = el("g", { class: "axis" }, svg), grid = el("g", { class: "grid" }, svg);
    niceTicks(0, top, 4).forEach(function (v) {
      el("line", { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }, grid);
      text(axis, m.l - 4, Y(v) + 4, String(v), { "text-anchor": "end" });
    });
    text(axis, 12, (H - m.b) / 2, spec.unit, { transform: "rotate(-90 12 " + (H - m.b) / 2 + ")", "text-anchor": "middle", "font-size": "10" });
    var step = Math.max(1, Math.ceil(rows.length / 60));
    rows.forEach(function (r, i) {
      var x = m.l + i * bw;
      var bar = el("rect", { x: x + bw * 0.1, y: Y(r.value), width: Math.max(1, bw * 0.8), height: Y(0) - Y(r.value), fill: KIND[r.kind] || "#999", class: "bar" }, svg);
      if (r.kind === "fc") bar.setAttribute("stroke", "#000");
      var html = "<b>" + esc(r.name) + "</b><br>" + esc(spec.label) + ": " + r.value.toFixed(3) + " " + esc(spec.unit);
      bar.addEventListener("mousemove", function (evt) { showTip(evt, html); });
      bar.addEventListener("mouseleave", hideTip);
      if (i % step === 0) text(svg, x + bw / 2, H - m.b + 6, r.name, { transform: "rotate(90 " + (x + bw / 2) + " " + (H - m.b + 6) + ")", "font-size": "9" });
    });
  }

  // -- receptive field and jump ----------------------------------------------------------------------
  function rfChart(container, spec) {
    var rows = spec.rows, W = Math.max(700, rows.length * 14 + 120), H = 260, m = { l: 55, r: 55, t: 15, b: 70 };
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "receptive field" }, container);
    var topR = Math.max.apply(null, rows.map(function (r) { return r.rf; }).concat([spec.input]));
    var topJ = Math.max.apply(null, rows.map(function (r) { return r.jump; }));
    var dx = (W - m.l - m.r) / Math.max(1, rows.length - 1);
    function X(i) { return m.l + i * dx; }
    function YR(v) { return H - m.b - v / topR * (H - m.t - m.b); }
    function YJ(v) { return H - m.b - v / topJ * (H - m.t - m.b); }
    var axis = el("g", { class: "axis" }, svg), grid = el("g", { class: "grid" }, svg);
    niceTicks(0, topR, 5).forEach(function (v) { el("line", { x1: m.l, x2: W - m.r, y1: YR(v), y2: YR(v) }, grid); text(axis, m.l - 4, YR(v) + 4, String(v), { "text-anchor": "end" }); });
    niceTicks(0, topJ, 5).forEach(function (v) { text(axis, W - m.r + 4, YJ(v) + 4, String(v)); });
    el("line", { x1: m.l, x2: W - m.r, y1: YR(spec.input), y2: YR(spec.input), stroke: "#999", "stroke-dasharray": "2 3" }, svg);
    text(svg, m.l + 4, YR(spec.input) - 4, "input " + spec.input + " px", { "font-size": "9" });
    el("polyline", { points: rows.map(function (r, i) { return X(i) + "," + YR(r.rf); }).join(" "), fill: "none", stroke: "#4C72B0", "stroke-width": 2, class: "rf-line" }, svg);
    el("polyline", { points: rows.map(function (r, i) { return X(i) + "," + YJ(r.jump); }).join(" "), fill: "none", stroke: "#DD8452", "stroke-width": 1.5, "stroke-dasharray": "5 3" }, svg);
    var step = Math.max(1, Math.ceil(rows.length / 50));
    rows.forEach(function (r, i) {
      var c = el("circle", { cx: X(i), cy: YR(r.rf), r: 3, fill: "#4C72B0" }, svg);
      el("rect", { x: X(i) - 2.5, y: YJ(r.jump) - 2.5, width: 5, height: 5, fill: "#DD8452" }, svg);
      var html = "<b>" + esc(r.name) + "</b><br>receptive field " + r.rf + " px · jump " + r.jump + " px";
      c.addEventListener("mousemove", function (evt) { showTip(evt, html); });
      c.addEventListener("mouseleave", hideTip);
      if (i % step === 0) text(svg, X(i), H - m.b + 6, r.name, { transform: "rotate(90 " + X(i) + " " + (H - m.b + 6) + ")", "font-size": "9" });
    });
    text(axis, 12, (H - m.b) / 2, "receptive field (px) ●", { transform: "rotate(-90 12 " + (H - m.b) / 2 + ")", "text-anchor": "middle", "font-size": "10" });
    text(axis, W - 8, (H - m.b) / 2, "jump (px) ■ dashed", { transform: "rotate(90 " + (W - 8) + " " + (H - m.b) / 2 + ")", "text-anchor": "middle", "font-size": "10" });
  }

  // -- sortable, filterable tables ----------------------------------------------------------------
  function sortable(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-value") || a.cells[col].textContent;
          var y = b.cells[col].getAttribute("data-value") || b.cells[col].textContent;
          var nx = parseFloat(x), ny = parseFloat(y);
          var cmp = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
          return asc ? cmp : -cmp;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  function filterable(input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var b = data("bubble-data");
    if (b) bubble(document.getElementById("bubble"), b);
    var w = data("winners-data");
    if (w) winners(document.getElementById("winners"), w);
    var l = data("layers-data");
    if (l) l.charts.forEach(function (c) { layerBars(document.getElementById(c.id), c); });
    var r = data("rf-data");
    if (r && r.rows.length) rfChart(document.getElementById("rf"), r);
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), sortable);
    Array.prototype.forEach.call(document.querySelectorAll("input.filter"), filterable);
    document.documentElement.setAttribute("data-ready", "1");
  });
})();
