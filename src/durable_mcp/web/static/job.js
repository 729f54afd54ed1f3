// One job: its arguments, status, progress or question, steps, result; cancel,
// retry and answer. Refreshed every second while it runs.
"use strict";

const jobName = document.querySelector('meta[name="job"]').content;
const api = `/jobs/api/job/${encodeURIComponent(jobName)}`;
let shown = "";
let answering = null; // the question whose form is on the page (kept while it waits)

function field(dt, dd) {
  return [el("dt", { text: dt }), el("dd", {}, dd)];
}

function pretty(value) {
  return el("pre", { text: JSON.stringify(value, null, 2) });
}

function summary(detail) {
  const job = detail.job;
  const list = el("dl", {},
    ...field("status", statusBadge(job.status)),
    ...field("kind", job.kind || "-"),
    ...field("created", job.created_at || "-"),
    ...field("ended", job.settled_at || "-"));
  const buttons = el("div", { class: "actions" });
  if (job.status === "running" || job.status === "input_required") {
    buttons.append(el("button", { class: "danger", id: "cancel", text: "Cancel", onclick: () => run("cancel") }));
  }
  if (job.status === "failed" || job.status === "cancelled") {
    buttons.append(el("button", { id: "retry", text: "Retry", onclick: () => run("retry") }));
  }
  return el("section", {}, el("h2", { text: "Job" }), list,
    buttons.children.length ? el("div", { class: "spaced" }, buttons) : null);
}

function argumentsOf(detail) {
  return el("section", {}, el("h2", { text: "Arguments" }), pretty(detail.arguments));
}

function progressSection(job) {
  const box = progressOf(job);
  return box ? el("section", {}, el("h2", { text: "Progress" }), box) : null;
}

function questionSection(job) {
  const question = job.question;
  if (answering && answering.id === question.id) return answering.section; // keep what is typed
  const schema = question.schema || { properties: {} };
  const properties = schema.properties || {};
  const required = new Set(schema.required || []);
  const form = el("form", { class: "answer", id: "answer" },
    ...Object.entries(properties).map(([name, s]) => fieldFor(name, s, required.has(name))),
    el("div", { class: "actions" },
      el("button", { class: "primary", type: "submit", text: "Answer" }),
      el("button", { type: "button", text: "Decline", onclick: () => answer(question, null, "decline") })));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    answer(question, answerFrom(form, properties), "accept");
  });
  const section = el("section", {}, el("h2", { text: "Waiting for an answer" }),
    el("p", { class: "question", text: question.message }), form);
  answering = { id: question.id, section };
  return section;
}

function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7200000) return `${Math.round(ms / 60000)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

function timeline(detail) {
  const steps = detail.steps;
  if (!steps.length) return el("section", {}, el("h2", { text: "Steps" }), el("p", { class: "muted", text: "No durable step yet." }));
  const start = Date.parse(detail.job.created_at);
  const now = Date.parse(detail.now);
  const end = Math.max(now, ...steps.map((s) => Date.parse(s.ended_at || detail.now)));
  const span = Math.max(end - start, 1);
  const items = steps.map((step) => {
    const from = Date.parse(step.started_at);
    const to = step.ended_at ? Date.parse(step.ended_at) : now;
    const bar = el("div", { class: step.state.startsWith("rejected") ? "rejected" : step.state });
    bar.style.left = `${(100 * (from - start)) / span}%`;
    bar.style.width = `${Math.max((100 * (to - from)) / span, 0.5)}%`;
    const took = step.ended_at ? duration(to - from) : "under way";
    const when = `${step.started_at.slice(11, 23)} · ${took}`;
    return el("li", { "data-step": step.id },
      el("span", { text: `${step.kind} ${step.seq}` }),
      el("div", { class: "track" }, bar),
      el("span", { class: "muted", text: `${when} (${step.state})` }));
  });
  return el("section", {}, el("h2", { text: "Steps" }), el("ol", { class: "timeline", id: "steps" }, ...items));
}

function outcome(job) {
  if (job.status === "completed") return el("section", {}, el("h2", { text: "Result" }), pretty(job.result));
  if (job.error) return el("section", {}, el("h2", { text: "Error" }), pretty(job.error));
  return null;
}

function render(detail) {
  const job = detail.job;
  document.getElementById("title").textContent = job.job_name;
  const parts = [summary(detail)];
  if (job.status === "not_found") {
    parts.push(el("section", {}, el("p", { text: "No job has this name (it may have been removed after its retention)." })));
  } else {
    parts.push(argumentsOf(detail));
    if (job.status === "input_required") parts.push(questionSection(job));
    else answering = null;
    parts.push(progressSection(job), timeline(detail), outcome(job));
  }
  document.getElementById("job").replaceChildren(...parts.filter(Boolean));
}

async function refresh() {
  let detail;
  try {
    detail = await getJSON(api);
  } catch (error) {
    showError(error.message);
    return;
  }
  const text = JSON.stringify([detail.job, detail.steps]);
  if (text !== shown) {
    shown = text;
    render(detail);
  }
}

async function run(action) {
  try {
    await act(action, { job_name: jobName });
    showError("");
  } catch (error) {
    showError(error.message);
  }
  shown = "";
  refresh();
}

async function answer(question, content, action) {
  try {
    await act("answer", { job_name: jobName, question_id: question.id, answer: content, action });
    showError("");
    answering = null;
  } catch (error) {
    showError(error.message);
  }
  shown = "";
  refresh();
}

refresh();
setInterval(() => { if (!document.hidden) refresh(); }, 1000);
