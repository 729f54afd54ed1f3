// What the jobs page (web/) and the job card (card/) share: elements built with
// textContent only, so that a job's name or value is always text, never HTML;
// and a question's JSON schema as form fields, read back as an answer.
"use strict";

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// One field of a question's schema: a select (enum), a checkbox, a number or a text input.
function fieldFor(name, schema, required) {
  const label = schema.title || name;
  let control;
  if (Array.isArray(schema.enum)) {
    control = el("select", { name }, ...schema.enum.map((v) => el("option", { value: JSON.stringify(v), text: String(v) })));
  } else if (schema.type === "boolean") {
    control = el("input", { type: "checkbox", name });
  } else if (schema.type === "integer" || schema.type === "number") {
    control = el("input", { type: "number", name, step: schema.type === "integer" ? "1" : "any" });
  } else {
    control = el("input", { type: "text", name });
  }
  if (required && schema.type !== "boolean") control.required = true;
  const text = el("span", { text: schema.description ? `${label} (${schema.description})` : label });
  if (schema.type === "boolean") return el("label", { class: "field check" }, control, text);
  return el("label", { class: "field" }, text, control);
}

// The answer a form of fieldFor's fields holds (an empty field is left out).
function answerFrom(form, properties) {
  const answer = {};
  for (const [name, schema] of Object.entries(properties)) {
    const control = form.elements[name];
    let value;
    if (Array.isArray(schema.enum)) value = JSON.parse(control.value);
    else if (schema.type === "boolean") value = control.checked;
    else if (control.value === "") value = undefined;
    else if (schema.type === "integer" || schema.type === "number") value = Number(control.value);
    else value = control.value;
    if (value !== undefined) answer[name] = value;
  }
  return answer;
}
