// What both pages share: the API calls and the pieces of a page (el() and the
// question's fields come from question_form.js, loaded first).
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (response.status === 401) { location.reload(); throw new Error("logged out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// An action: a JSON POST with the page's CSRF token; a refusal's one-line error is thrown.
async function act(action, body) {
  const response = await fetch(`/jobs/api/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function statusBadge(status) {
  return el("span", { class: `status ${status}`, text: status.replace("_", " ") });
}

function age(iso, now) {
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

function progressOf(job) {
  const p = job.progress;
  if (!p) return null;
  const parts = [];
  if (p.total) parts.push(`${p.done} / ${p.total}`);
  else parts.push(`${p.done}`);
  if (p.message) parts.push(p.message);
  const box = el("div", { class: "progress" }, el("div", { text: parts.join(" · ") }));
  if (p.total) {
    const bar = el("div");
    bar.style.width = `${Math.min(100, (100 * p.done) / p.total)}%`;
    box.append(el("div", { class: "meter" }, bar));
  }
  return box;
}

function showError(message) {
  document.getElementById("error").textContent = message || "";
}
