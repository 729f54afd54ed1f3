// The weather job's result on its card: the month as a chart, drawn as SVG by
// the page itself (no library): daily max and min temperature as lines,
// precipitation as bars, then the summary. `result` is the job's result,
// `root` the element to draw in, `card.el` builds elements with textContent.
(result, root, card) => {
  const NS = "http://www.w3.org/2000/svg";
  const daily = result.daily || {};
  const days = daily.time || [];
  const highs = daily.temperature_2m_max || [];
  const lows = daily.temperature_2m_min || [];
  const rain = daily.precipitation_sum || [];
  const W = 560, H = 220, left = 34, right = 34, top = 12, bottom = 26;
  const x = (i) => left + (days.length > 1 ? (i * (W - left - right)) / (days.length - 1) : 0);
  const temps = [...highs, ...lows].filter((v) => v != null);
  const tMin = Math.floor(Math.min(...temps, 0)), tMax = Math.ceil(Math.max(...temps, 1));
  const y = (t) => top + ((tMax - t) * (H - top - bottom)) / (tMax - tMin || 1);
  const rMax = Math.max(...rain.filter((v) => v != null), 1);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("id", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${days.length} days of weather`);
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
    if (text != null) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, stroke: "#dde2e8" });
  const barWidth = Math.max(2, (W - left - right) / Math.max(days.length, 1) - 3);
  rain.forEach((mm, i) => {
    if (mm == null) return;
    const h = (mm / rMax) * (H - top - bottom) * 0.5;
    add("rect", { class: "rain", x: x(i) - barWidth / 2, y: H - bottom - h, width: barWidth, height: h,
      fill: "#7fb3f5", "data-day": days[i], "data-mm": mm });
  });
  for (const [values, color, name] of [[highs, "#cf222e", "max"], [lows, "#1f6feb", "min"]]) {
    const points = values.map((t, i) => (t == null ? null : `${x(i)},${y(t)}`)).filter(Boolean);
    add("polyline", { class: `line-${name}`, points: points.join(" "), fill: "none", stroke: color,
      "stroke-width": 2, "data-points": points.length });
  }
  add("text", { x: 2, y: y(tMax) + 4, "font-size": 10, fill: "#5d6877" }, `${tMax}°`);
  add("text", { x: 2, y: y(tMin), "font-size": 10, fill: "#5d6877" }, `${tMin}°`);
  add("text", { x: W - 2, y: top + 10, "font-size": 10, fill: "#5d6877", "text-anchor": "end" }, `${rMax} mm`);
  if (days.length) {
    add("text", { x: left, y: H - 8, "font-size": 10, fill: "#5d6877" }, days[0]);
    add("text", { x: W - right, y: H - 8, "font-size": 10, fill: "#5d6877", "text-anchor": "end" }, days[days.length - 1]);
  }
  const s = result.summary || {};
  const swatch = (color) => { const b = card.el("span", { class: "swatch" }); b.style.background = color; return b; };
  root.append(
    svg,
    card.el("div", { class: "legend" },
      card.el("span", {}, swatch("#cf222e"), "daily max °C"),
      card.el("span", {}, swatch("#1f6feb"), "daily min °C"),
      card.el("span", {}, swatch("#7fb3f5"), "precipitation mm")),
    card.el("div", { class: "line", id: "summary", text:
      `${s.days} days · mean max ${s.mean_daily_max}° · mean min ${s.mean_daily_min}° · ` +
      `${s.total_precipitation} mm in all` +
      (s.wettest_day ? ` · wettest ${s.wettest_day.date} (${s.wettest_day.precipitation} mm)` : "") }),
  );
}
