// The jobs list: newest first, a page at a time, filtered, refreshed every 2 s.
"use strict";

const view = { cursors: [null], status: "", kind: "", name: "" };
const REFRESH_MS = 2000;

function query() {
  const params = new URLSearchParams();
  for (const key of ["status", "kind", "name"]) if (view[key]) params.set(key, view[key]);
  const cursor = view.cursors[view.cursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  return params;
}

function row(job, now) {
  const link = el("a", { href: `/jobs/job/${encodeURIComponent(job.job_name)}`, text: job.job_name });
  return el("tr", { "data-job": job.job_name },
    el("td", { class: "name" }, link),
    el("td", {}, statusBadge(job.status)),
    el("td", { text: job.kind || "" }),
    el("td", { class: "muted", title: job.created_at, text: age(job.created_at, now) }),
    el("td", {}, progressOf(job) || (job.question ? el("span", { text: job.question.message }) : "")),
  );
}

function fillKinds(kinds) {
  const select = document.getElementById("kind");
  if (select.options.length > 1) return;
  for (const kind of kinds) select.append(el("option", { value: kind, text: kind }));
}

let shown = "";
async function refresh() {
  let page;
  try {
    page = await getJSON(`/jobs/api/jobs?${query()}`);
  } catch (error) {
    showError(error.message);
    return;
  }
  showError("");
  fillKinds(page.kinds);
  const now = Date.parse(page.now);
  const text = JSON.stringify(page.jobs);
  const body = document.getElementById("rows");
  if (text !== shown) {
    shown = text;
    body.replaceChildren(...page.jobs.map((job) => row(job, now)));
  }
  document.getElementById("empty").hidden = page.jobs.length > 0;
  document.getElementById("table").hidden = page.jobs.length === 0;
  document.getElementById("newer").disabled = view.cursors.length === 1;
  const older = document.getElementById("older");
  older.disabled = !page.next_cursor;
  older.dataset.cursor = page.next_cursor || "";
  document.getElementById("page").textContent = `page ${view.cursors.length}`;
}

function filtered() {
  view.status = document.getElementById("status").value;
  view.kind = document.getElementById("kind").value;
  view.name = document.getElementById("name").value.trim();
  view.cursors = [null];
  shown = "";
  refresh();
}

document.getElementById("status").addEventListener("change", filtered);
document.getElementById("kind").addEventListener("change", filtered);
let typing;
document.getElementById("name").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(filtered, 250);
});
document.getElementById("older").addEventListener("click", (event) => {
  view.cursors.push(event.target.dataset.cursor);
  refresh();
});
document.getElementById("newer").addEventListener("click", () => {
  view.cursors.pop();
  refresh();
});

refresh();
setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
