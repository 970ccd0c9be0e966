// hookmap playground: pick or paste rules and a webhook; every edit posts them to
// /api/run (after a short pause in typing) and shows what comes back. Plain JavaScript,
// no build step; every value from the server goes in as text, never as HTML.
"use strict";

const PASTE = "(paste your own)";
const $ = (id) => document.getElementById(id);
const state = { catalog: { rulesets: [], webhooks: [] }, files: [], current: 0, seq: 0, timer: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind || "";
}

function options(select, names) {
  select.replaceChildren(...names.map((name, i) => el("option", { value: String(i) }, name)));
}

// -- rules: a rule set is several files; the editor shows one of them -----------------

function chooseRuleset(index) {
  const picked = state.catalog.rulesets[index];
  state.files = picked
    ? picked.files.map((f) => ({ path: f.path, text: f.text }))
    : [{ path: "playground.yaml", text: "" }];
  showFile(0);
  schedule();
}

function showFile(index) {
  state.current = index;
  options($("file"), state.files.map((f) => f.path));
  $("file").value = String(index);
  $("rules").value = state.files[index].text;
  showCaret();
}

function showCaret() {
  const area = $("rules");
  const before = area.value.slice(0, area.selectionStart).split("\n");
  $("caret").textContent = `line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

// put the caret where a diagnostic points: its file, line and column
function goTo(file, line, col) {
  const index = state.files.findIndex((f) => f.path === file);
  if (index < 0) return;
  if (index !== state.current) showFile(index);
  const lines = $("rules").value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += col - 1;
  const area = $("rules");
  area.focus();
  area.setSelectionRange(offset, offset);
  showCaret();
}

// -- the webhook ---------------------------------------------------------------------

function chooseExample(index) {
  const picked = state.catalog.webhooks[index];
  $("headers").value = picked ? picked.headers : "Content-Type: application/json\n";
  $("body").value = picked ? picked.body : "{}\n";
  $("mocks").value = picked && picked.mocks ? picked.mocks : "";
  $("mocks-box").open = Boolean(picked && picked.mocks);
  $("topic").value = "";
  schedule();
}

// -- running ------------------------------------------------------------------------

function schedule() {
  clearTimeout(state.timer);
  setStatus("…", "busy");
  state.timer = setTimeout(run, 250);
}

async function run() {
  const seq = ++state.seq;
  const request = {
    files: state.files,
    webhook: {
      headers: $("headers").value,
      body: $("body").value,
      topic: $("topic").value,
      mocks: $("mocks").value,
    },
  };
  let answer;
  try {
    const response = await fetch("/api/run", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    answer = await response.json();
  } catch (error) {
    if (seq === state.seq) setStatus(`the playground did not answer: ${error}`, "bad");
    return;
  }
  if (seq !== state.seq) return; // an older answer: a newer run is on its way
  show(answer);
}

function show(answer) {
  showDiagnostics(answer.diagnostics || []);
  showTests(answer.tests);
  const error = $("error");
  error.hidden = !answer.error;
  error.textContent = answer.error || "";
  const result = answer.result;
  $("summary").textContent = result
    ? `rule set '${result.ruleset}' (${result.api_version}), topic ${result.topic || "(none)"}: ${result.summary}`
    : "";
  $("events").replaceChildren(...(answer.cards || []).map(card));
  $("rule-trace").replaceChildren(
    ...(result ? result.explain.rules : []).map((r) =>
      el("li", {}, `${r.rule}: ${r.matched ? "matched" : "skipped"}: ${r.reason}`,
        r.where ? el("span", { class: "muted" }, `  [${r.where}]`) : null)),
    ...(result ? result.explain.skipped : []).map((s) => el("li", {}, `no event: ${s}`)),
  );
  $("report").textContent = answer.report || "";
  const errors = (answer.diagnostics || []).filter((d) => d.severity === "error").length;
  const dropped = (answer.cards || []).filter((c) => !c.sent).length;
  if (answer.error) setStatus(errors ? `${errors} error(s) in the rules` : "not processed", "bad");
  else if (dropped) setStatus(`${dropped} event(s) dropped`, "bad");
  else setStatus(result ? result.summary : "", "good");
}

function showDiagnostics(diagnostics) {
  $("diagnostics").replaceChildren(
    ...diagnostics.map((d) =>
      el("pre", {
        class: `diagnostic ${d.severity}`,
        title: "go there",
        onclick: () => d.file && goTo(d.file, d.line, d.col),
      }, d.rendered)),
  );
}

function showTests(tests) {
  const box = $("tests");
  if (!tests) {
    box.replaceChildren();
    return;
  }
  const failed = tests.failed.map((t) =>
    el("pre", { class: "diagnostic" }, `FAIL ${t.id}${t.where ? ` (${t.where})` : ""}\n  ${t.failures.join("\n  ")}`));
  box.replaceChildren(el("div", {}, `rule tests: ${tests.passed} passed, ${tests.failed.length} failed`), ...failed);
}

function value(v) {
  const text = JSON.stringify(v);
  return text === undefined ? "" : text;
}

function card(c) {
  const problems = c.problems.map((p) => el("li", { class: p.severity }, p.line));
  const rows = c.params.map((p) =>
    el("tr", {}, el("td", {}, p.name), el("td", {}, value(p.value)), el("td", {}, p.outcome),
      el("td", {}, p.expression || ""), el("td", { class: "muted" }, p.where || "")));
  const request = [];
  if (c.contact_curl) request.push(el("div", { class: "muted" }, "first, unless hookmap created this contact before:"), el("pre", { class: "curl" }, c.contact_curl));
  if (c.curl) request.push(el("pre", { class: "curl" }, c.curl));
  return el("article", { class: `event ${c.sent ? "send" : "drop"}` },
    el("h3", {}, el("span", { class: "badge" }, c.sent ? "SEND" : "DROP"),
      ` ${c.eventTypeKey} #${c.index} `,
      el("small", { class: "muted" }, `rule ${c.rule}${c.where ? `, ${c.where}` : ""}`)),
    el("div", { class: "contact" }, c.contact),
    problems.length ? el("ul", { class: "problems" }, ...problems) : null,
    el("details", { class: "trace" }, el("summary", {}, `params (${c.params.length}): value, outcome, expression, where`),
      el("table", { class: "params" },
        el("tr", {}, ...["param", "value", "outcome", "expression", "where"].map((h) => el("th", {}, h))),
        ...rows)),
    request.length ? el("details", { class: "request", open: "" }, el("summary", {}, "the request, as curl"), ...request) : null,
  );
}

// -- start --------------------------------------------------------------------------

async function start() {
  const response = await fetch("/api/catalog");
  state.catalog = await response.json();
  options($("ruleset"), [...state.catalog.rulesets.map((r) => r.name), PASTE]);
  options($("example"), [...state.catalog.webhooks.map((w) => w.name), PASTE]);
  $("ruleset").addEventListener("change", (e) => chooseRuleset(Number(e.target.value)));
  $("file").addEventListener("change", (e) => showFile(Number(e.target.value)));
  $("example").addEventListener("change", (e) => chooseExample(Number(e.target.value)));
  $("rules").addEventListener("input", () => {
    state.files[state.current].text = $("rules").value;
    showCaret();
    schedule();
  });
  for (const event of ["click", "keyup"]) $("rules").addEventListener(event, showCaret);
  for (const id of ["headers", "body", "topic", "mocks"]) $(id).addEventListener("input", schedule);
  $("add-file").addEventListener("click", () => {
    const folder = state.files[0].path.includes("/") ? state.files[0].path.replace(/[^/]*$/, "") : "";
    const path = prompt("Path of the new file (it joins this rule set):", `${folder}more.yaml`);
    if (!path) return;
    state.files.push({ path, text: "" });
    showFile(state.files.length - 1);
    schedule();
  });
  chooseExample(state.catalog.webhooks.length ? 0 : -1);
  chooseRuleset(state.catalog.rulesets.length ? 0 : -1);
}

start().catch((error) => setStatus(`cannot start: ${error}`, "bad"));
