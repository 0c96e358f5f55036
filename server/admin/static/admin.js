/* Settee admin: a little JavaScript on pages that work without it.
   Confirmations, the editor's JSON check, live _changes, polled _active_tasks.
   Values go into the page as text (textContent), never as HTML. */
"use strict";
document.documentElement.classList.add("js");

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function docHref(db, id) {
  for (const prefix of ["_design/", "_local/"]) {
    if (id.startsWith(prefix)) return db + "/" + prefix + encodeURIComponent(id.slice(prefix.length));
  }
  return db + "/" + encodeURIComponent(id);
}

// Forms that destroy something ask first.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// The document editor: JSON checked as it is typed, and a Format button.
function editor() {
  const area = document.getElementById("editor");
  const feedback = document.getElementById("feedback");
  if (!area || !feedback || area.dataset.format !== "json") return;
  const check = () => {
    try {
      const value = JSON.parse(area.value);
      const object = value !== null && typeof value === "object" && !Array.isArray(value);
      feedback.textContent = object || area.form.id !== "editor-form" ? "Valid JSON" : "A document is a JSON object: { ... }";
      feedback.className = "feedback " + (object || area.form.id !== "editor-form" ? "ok" : "bad");
      area.setAttribute("aria-invalid", object ? "false" : "true");
      return value;
    } catch (error) {
      let where = "";
      const match = /position (\d+)/.exec(error.message);
      if (match) {
        const before = area.value.slice(0, Number(match[1])).split("\n");
        where = ` (line ${before.length}, column ${before[before.length - 1].length + 1})`;
      }
      feedback.textContent = "Not valid JSON" + where + ": " + error.message;
      feedback.className = "feedback bad";
      area.setAttribute("aria-invalid", "true");
      return undefined;
    }
  };
  area.addEventListener("input", check);
  check();
  const format = document.getElementById("format-json");
  if (format) format.addEventListener("click", () => {
    const value = check();
    if (value !== undefined) area.value = JSON.stringify(value, null, 2);
  });
  area.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "s") {
      event.preventDefault();
      area.form.requestSubmit();
    }
  });
}

// _changes, live: new rows at the top, from the event source feed.
function liveChanges() {
  const live = document.getElementById("live");
  const table = document.querySelector("#changes tbody");
  if (!live || !table || !window.EventSource) return;
  const db = live.dataset.db;
  const source = new EventSource(live.dataset.feed + "&heartbeat=10000&timeout=600000");
  source.onmessage = (event) => {
    let change;
    try { change = JSON.parse(event.data); } catch (e) { return; }
    const empty = table.querySelector("tr.empty");
    if (empty) empty.remove();
    const row = el("tr", null, {class: "fresh"});
    row.append(el("td"), el("td"), el("td"), el("td"));
    row.cells[0].append(el("code", String(change.seq)));
    row.cells[1].append(el("a", change.id, {href: docHref(db, change.id)}));
    row.cells[2].append(el("code", change.changes && change.changes[0] ? change.changes[0].rev : ""));
    if (change.deleted) row.cells[3].append(el("span", "deleted", {class: "warn"}));
    table.prepend(row);
  };
}

// _active_tasks, polled: progress bars that move.
function pollTasks() {
  const table = document.getElementById("tasks");
  if (!table || !table.dataset.poll) return;
  const body = table.querySelector("tbody");
  const refresh = async () => {
    let tasks;
    try {
      const answer = await fetch(table.dataset.poll, {headers: {Accept: "application/json"}, credentials: "same-origin"});
      if (!answer.ok) return;
      tasks = await answer.json();
    } catch (e) { return; }
    body.replaceChildren();
    if (!tasks.length) {
      const row = el("tr", null, {class: "empty"});
      row.append(el("td", "Nothing running.", {colspan: "4", class: "muted"}));
      body.append(row);
    }
    for (const t of tasks) {
      const row = el("tr");
      const db = el("td");
      if (t.database) db.append(el("a", t.database, {href: "/" + encodeURIComponent(t.database)}));
      const progress = el("td");
      const pct = Number(t.progress || 0);
      progress.append(el("progress", pct + "%", {max: "100", value: String(pct)}),
                      " " + pct + "% ", el("span", `${t.changes_done || 0} / ${t.total_changes || 0}`, {class: "muted"}));
      row.append(el("td", t.type), db, el("td", t.design_document || t.doc_id || t.source || ""), progress);
      body.append(row);
    }
  };
  setInterval(refresh, 1000);
}

editor();
liveChanges();
pollTasks();
